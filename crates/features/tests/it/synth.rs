//! The synthetic generator: seeded, valid OHLCV, passes the quality checks.

use stockcast_features::{Check, LoadOptions, SynthConfig, load_prices, synth_prices};

use crate::col_f64;

#[test]
fn same_seed_same_panel_other_seed_other_panel() {
    let a = synth_prices(&SynthConfig::new(4, 100, 1)).unwrap();
    let b = synth_prices(&SynthConfig::new(4, 100, 1)).unwrap();
    let c = synth_prices(&SynthConfig::new(4, 100, 2)).unwrap();
    assert!(a.equals(&b));
    assert!(!a.equals(&c));
    assert_eq!(a.height(), 400);
}

#[test]
fn bars_are_consistent_and_pass_quality() {
    let mut df = synth_prices(&SynthConfig::new(20, 500, 9)).unwrap();
    let (o, h, l, c, v) = (
        col_f64(&df, "open"),
        col_f64(&df, "high"),
        col_f64(&df, "low"),
        col_f64(&df, "close"),
        col_f64(&df, "volume"),
    );
    for i in 0..df.height() {
        let (o, h, l, c, v) = (o[i].unwrap(), h[i].unwrap(), l[i].unwrap(), c[i].unwrap(), v[i].unwrap());
        assert!(l > 0.0 && l <= o.min(c) && h >= o.max(c) && v >= 0.0, "row {i}: {o} {h} {l} {c} {v}");
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.parquet");
    stockcast_features::io::write_frame(&mut df, &p).unwrap();
    let loaded = load_prices(&p, &LoadOptions::default()).unwrap();
    assert_eq!(loaded.report.rows_kept, 10_000);
    for check in [Check::OhlcInconsistent, Check::Duplicate, Check::Gap, Check::NonPositive] {
        assert_eq!(loaded.report.check(check).flagged, 0, "{check:?}");
    }
    // Daily log-return volatility is in the configured 1–3 % band (plus the market factor).
    let lr: Vec<f64> = (1..500).map(|t| (c[t].unwrap() / c[t - 1].unwrap()).ln()).collect();
    let m = lr.iter().sum::<f64>() / lr.len() as f64;
    let sd = (lr.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (lr.len() as f64 - 1.0)).sqrt();
    assert!((0.005..0.06).contains(&sd), "{sd}");
}
