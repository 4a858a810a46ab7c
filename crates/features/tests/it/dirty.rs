//! A dirty panel like real exchange data (gaps, zero closes, OHLC-inconsistent rows, a raw split): `drop`
//! quarantines the row defects only; gaps and splits are findings with their own remedies.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use stockcast_features::{
    Check, LoadOptions, Policy, QualityConfig, SplitEvent, SynthConfig, load_prices, synth::weekdays, synth_prices,
};

use crate::write;

const SYMBOLS: usize = 30;
const DAYS: usize = 300;
const SPLIT_SYMBOL: &str = "S0006";
const SPLIT_DAY: usize = 150;

/// The panel as CSV text, and the (symbol, date) of every row defect planted in it.
fn dirty_panel() -> (String, BTreeSet<(String, String)>) {
    let df = synth_prices(&SynthConfig::new(SYMBOLS, DAYS, 77)).unwrap();
    let dates = weekdays(SynthConfig::new(1, 1, 0).start, DAYS);
    let col = |n: &str| -> Vec<f64> {
        df.column(n)
            .unwrap()
            .cast(&stockcast_features::polars::prelude::DataType::Float64)
            .unwrap()
            .f64()
            .unwrap()
            .into_no_null_iter()
            .collect()
    };
    let (open, high, low, close, volume) = (col("open"), col("high"), col("low"), col("close"), col("volume"));
    let mut text = String::from("date,symbol,open,high,low,close,volume\n");
    let mut defects = BTreeSet::new();
    for s in 0..SYMBOLS {
        let sym = format!("S{s:04}");
        for (t, day) in dates.iter().enumerate() {
            // Gaps: symbols 1, 2, 3 miss 10 trading days each.
            if (1..=3).contains(&s) && (100 + 20 * s..110 + 20 * s).contains(&t) {
                continue;
            }
            let i = s * DAYS + t;
            let (mut o, mut h, mut l, mut c, mut v) = (open[i], high[i], low[i], close[i], volume[i]);
            // The raw (unadjusted) 2:1 split: every price from the split day on halves, volume doubles.
            if sym == SPLIT_SYMBOL && t >= SPLIT_DAY {
                (o, h, l, c, v) = (o / 2.0, h / 2.0, l / 2.0, c / 2.0, v * 2.0);
            }
            let date = day.to_string();
            // Zero closes (5 rows) and a high below the close (5 rows).
            if s % 6 == 4 && t == 200 {
                c = 0.0;
                defects.insert((sym.clone(), date.clone()));
            } else if s % 6 == 5 && t == 201 {
                h = c * 0.98;
                defects.insert((sym.clone(), date.clone()));
            }
            let _ = writeln!(text, "{date},{sym},{o},{h},{l},{c},{v}");
        }
    }
    (text, defects)
}

fn options(quality: QualityConfig) -> LoadOptions {
    LoadOptions { quality: stockcast_features::Checked::new(quality).unwrap(), ..LoadOptions::default() }
}

#[test]
fn drop_quarantines_the_row_defects_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (text, defects) = dirty_panel();
    assert_eq!(defects.len(), 10);
    let path = write(dir.path(), "dirty.csv", &text);
    let cfg = QualityConfig { on_bad_rows: Some(Policy::Drop), ..QualityConfig::default() };
    let loaded = load_prices(&path, &options(cfg)).unwrap();
    let r = &loaded.report;
    let quarantined: BTreeSet<(String, String)> = r
        .quarantine
        .iter()
        .map(|q| (q.flag.symbol.clone(), q.flag.date.map(|d| d.to_string()).unwrap_or_default()))
        .collect();
    assert_eq!(quarantined, defects, "only the planted row defects are quarantined");
    assert_eq!(r.rows_quarantined, 10);
    assert_eq!(r.rows_kept, r.rows_read - 10);
    // The gaps (3 planted, plus the bars after the quarantined rows are not gaps: one day) and the split are
    // reported, not dropped.
    let gap = r.check(Check::Gap);
    assert!(gap.flagged >= 3 && gap.action == "warned", "{gap:?}");
    let split = r.check(Check::SuspectSplit);
    assert_eq!((split.flagged, split.action), (1, "warned"), "{split:?}");
    assert_eq!(split.examples[0].symbol, SPLIT_SYMBOL);
    assert!(r.split_adjustments.is_empty());
}

#[test]
fn splits_are_remedied_by_back_adjusting_declared_or_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (text, _) = dirty_panel();
    let path = write(dir.path(), "dirty.csv", &text);
    let split_date = weekdays(SynthConfig::new(1, 1, 0).start, DAYS)[SPLIT_DAY];
    let clean = synth_prices(&SynthConfig::new(SYMBOLS, DAYS, 77)).unwrap();
    let want_close: Vec<f64> = clean.column("close").unwrap().f64().unwrap().into_no_null_iter().collect();
    let splits_file = write(dir.path(), "splits.csv", &format!("symbol,date,ratio\n{SPLIT_SYMBOL},{split_date},2\n"));
    let declared = QualityConfig {
        on_bad_rows: Some(Policy::Drop),
        splits: stockcast_features::read_splits(&splits_file).unwrap(),
        ..QualityConfig::default()
    };
    let detected =
        QualityConfig { on_bad_rows: Some(Policy::Drop), adjust_detected_splits: true, ..QualityConfig::default() };
    for (cfg, source, flagged) in [(declared, "declared", 0), (detected, "detected", 1)] {
        let loaded = load_prices(&path, &options(cfg)).unwrap();
        let r = &loaded.report;
        assert_eq!(r.split_adjustments.len(), 1, "{source}");
        let a = &r.split_adjustments[0];
        assert_eq!(
            (a.symbol.as_str(), a.date, a.ratio, a.source, a.rows),
            (SPLIT_SYMBOL, split_date, 2.0, source, SPLIT_DAY)
        );
        assert_eq!(r.check(Check::SuspectSplit).flagged, flagged, "{source}");
        // Back-adjusted: the symbol's closes are the clean series halved (the split's own scale) throughout.
        let series = loaded.prices.series_with(stockcast_features::SeriesColumns::CLOSE).unwrap();
        let s = series.iter().find(|s| s.symbol == SPLIT_SYMBOL).unwrap();
        let k = SPLIT_SYMBOL[1..].parse::<usize>().unwrap();
        for (t, c) in s.close.iter().enumerate() {
            let want = want_close[k * DAYS + t] / 2.0;
            assert!((c - want).abs() < 1e-9 * want, "{source} day {t}: {c} vs {want}");
        }
    }
    // A bad splits file names the line.
    let bad = write(dir.path(), "bad.csv", "symbol,date,ratio\nS0001,2010-02-30,2\n");
    let e = stockcast_features::read_splits(&bad).unwrap_err().to_string();
    assert!(e.contains("bad.csv") && e.contains("line 2"), "{e}");
    let _ = SplitEvent { symbol: String::new(), date: split_date, ratio: 1.0 };
}

#[test]
fn a_bad_close_followed_by_a_normal_open_is_a_spike_not_a_split() {
    // Day 3's close is printed three times too high; day 4 opens where day 2 closed. The next open measured
    // against the bad close looks like a 3:1 split; measured against the close before the spike it is nothing.
    let dir = tempfile::tempdir().unwrap();
    let text = "date,symbol,open,close\n2024-01-02,X,10,10\n2024-01-03,X,10,10.1\n2024-01-04,X,10.1,30.3\n\
                2024-01-05,X,10.1,10.2\n2024-01-08,X,10.2,10.3\n";
    let path = write(dir.path(), "spike.csv", text);
    let cfg = QualityConfig { adjust_detected_splits: true, ..QualityConfig::default() };
    let loaded = load_prices(&path, &options(cfg)).unwrap();
    let r = &loaded.report;
    assert_eq!(r.check(Check::Spike).flagged, 1);
    assert_eq!(r.check(Check::SuspectSplit).flagged, 0, "{:?}", r.check(Check::SuspectSplit).examples);
    assert!(r.split_adjustments.is_empty());
}
