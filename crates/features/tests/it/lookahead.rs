//! No look-ahead: features computed on data truncated at a random date equal those computed on the full data,
//! for every feature of the default spec and formula features (time-series, cross-sectional and per-sector ones,
//! with sectors from a point-in-time classification), on every row up to that date.

use std::fmt::Write as _;

use proptest::prelude::*;
use stockcast_features::polars::prelude::*;
use stockcast_features::prices::days_to_date;
use stockcast_features::{FeatureSpec, PriceFrame, SynthConfig, build_features, synth_prices};

use crate::col_f64;

fn panel(seed: u64, late_start: usize) -> PriceFrame {
    let df = synth_prices(&SynthConfig::new(3, 320, seed)).unwrap();
    // Give one symbol a later listing date so symbols have different histories.
    let sym = df.column("symbol").unwrap().str().unwrap().clone();
    let first = df.column("date").unwrap().date().unwrap().physical().get(0).unwrap();
    let dates = df.column("date").unwrap().date().unwrap().physical().clone();
    let keep: BooleanChunked = sym
        .iter()
        .zip(dates.iter())
        .map(|(s, d)| Some(s != Some("S0002") || d.unwrap() >= first + late_start as i32))
        .collect();
    let df = df.filter(&keep).unwrap();
    let df = df.select(["symbol", "date", "open", "high", "low", "close", "volume"]).unwrap();
    // Sectors over time: S0001 moves from Energy to Tech on day 150.
    let dir = tempfile::tempdir().unwrap();
    let day = |k: i32| days_to_date(first + k).unwrap();
    let classes = crate::write(
        dir.path(),
        "classes.csv",
        &format!(
            "symbol,start,end,sector\nS0000,2000-01-01,,Tech\nS0001,2000-01-01,{},Energy\nS0001,{},,Tech\n\
             S0002,2000-01-01,,Energy\n",
            day(149),
            day(150)
        ),
    );
    let classes = stockcast_features::Classification::load(&classes).unwrap();
    PriceFrame::from_df(df).unwrap().with_classification(&classes).unwrap()
}

/// The default spec with formula features of every kind appended.
fn spec_with_formulas() -> FeatureSpec {
    let mut toml = FeatureSpec::default().to_toml();
    for (name, expr) in [
        ("f_mom", "ref($close, 5) / $close - 1"),
        ("f_corr", "corr($close, log($volume + 1), 10)"),
        ("f_rank", "rank($close, 10)"),
        ("f_cs", "cs_zscore(mean($close, 5) / $close)"),
        ("f_group", "group_rank(std($close, 10) / $close, sector)"),
    ] {
        let _ = write!(toml, "\n[[features]]\nfamily = \"expr\"\nname = \"{name}\"\nexpr = \"{expr}\"\n");
    }
    FeatureSpec::from_toml(&toml).unwrap().into_inner()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn features_at_t_ignore_rows_after_t(seed in 0u64..1_000, cut in 5usize..310, late in 0usize..60) {
        let full = panel(seed, late);
        let dates = full.df().column("date").unwrap().date().unwrap().physical().clone();
        let first = dates.min().unwrap();
        let cut_day = days_to_date(first + cut as i32).unwrap();
        let truncated = full.until(cut_day).unwrap();
        prop_assume!(truncated.height() > 0);
        let spec = spec_with_formulas();
        prop_assert!(spec.output_names().iter().any(|n| n == "f_group"));
        let a = build_features(&full, &stockcast_features::Checked::new(spec.clone()).unwrap()).unwrap();
        let b = build_features(&truncated, &stockcast_features::Checked::new(spec.clone()).unwrap()).unwrap();
        prop_assert_eq!(a.features(), b.features());
        prop_assert!(["f_mom", "f_cs", "f_group"].iter().all(|f| a.features().iter().any(|n| n == f)), "{:?}", a.features());
        // Row i of the truncated frame is the i-th row with date ≤ cut of the full frame.
        let mask = full.df().column("date").unwrap().date().unwrap().physical().lt_eq(first + cut as i32);
        let a_cut = a.df().filter(&mask).unwrap();
        prop_assert_eq!(a_cut.height(), b.df().height());
        for name in a.features() {
            let (x, y) = (col_f64(&a_cut, name), col_f64(b.df(), name));
            for (i, (x, y)) in x.iter().zip(&y).enumerate() {
                match (x, y) {
                    (None, None) => {}
                    (Some(x), Some(y)) => {
                        let tol = 1e-9 * x.abs().max(y.abs()).max(1e-300);
                        prop_assert!((x - y).abs() <= tol, "{name} row {i}: full {x} vs truncated {y}");
                    }
                    _ => prop_assert!(false, "{name} row {i}: full {x:?} vs truncated {y:?}"),
                }
            }
        }
    }
}

#[test]
fn changing_a_future_price_does_not_change_past_features() {
    let full = panel(7, 0);
    let spec = FeatureSpec::default();
    let a = build_features(&full, &stockcast_features::Checked::new(spec.clone()).unwrap()).unwrap();
    // Multiply every price after row 200 of each symbol by 3.
    let df = full.df().clone();
    let n = df.height();
    let mut df2 = df.clone();
    for c in ["open", "high", "low", "close"] {
        let v = col_f64(&df, c);
        let bumped: Vec<f64> = (0..n).map(|i| v[i].unwrap() * if i % 320 > 200 { 3.0 } else { 1.0 }).collect();
        df2.with_column(Column::new(c.into(), bumped)).unwrap();
    }
    let b =
        build_features(&PriceFrame::from_df(df2).unwrap(), &stockcast_features::Checked::new(spec.clone()).unwrap())
            .unwrap();
    for name in a.features() {
        let (x, y) = (col_f64(a.df(), name), col_f64(b.df(), name));
        for i in (0..n).filter(|i| i % 320 <= 200) {
            assert_eq!(x[i].map(f64::to_bits), y[i].map(f64::to_bits), "{name} row {i}");
        }
    }
    // The label does look forward (by design): at row 196 (open(t+1) → open(t+6)) it changes.
    let (la, lb) = (col_f64(a.df(), "label"), col_f64(b.df(), "label"));
    assert!((la[196].unwrap() - lb[196].unwrap()).abs() > 0.5);
}

#[test]
fn one_days_features_are_the_whole_builds_rows_of_that_day() {
    let full = panel(11, 40);
    let spec = stockcast_features::Checked::new(spec_with_formulas()).unwrap();
    let whole = build_features(&full, &spec).unwrap();
    let dates = full.df().column("date").unwrap().date().unwrap().physical().clone();
    let mut days: Vec<i32> = dates.iter().flatten().collect();
    days.sort_unstable();
    days.dedup();
    let listed = |d: i32| dates.iter().filter(|x| *x == Some(d)).count();
    // The first date (two symbols listed), the late listing's first date, the sector change, the last date, and
    // a date without prices.
    let late = *days.iter().find(|&&d| listed(d) == 3).unwrap();
    let last = *days.last().unwrap();
    let probes = [days[0], late, days[150], last, last + 30];
    assert_eq!(probes.map(listed), [2, 3, 3, 3, 0]);
    for k in probes {
        let day = days_to_date(k).unwrap();
        let a = whole.on(day).unwrap();
        let b = stockcast_features::build_features_on(&full, &spec, day).unwrap();
        assert_eq!(a.features(), b.features());
        assert_eq!((a.height(), b.height()), (listed(k), listed(k)), "day {day}");
        assert_eq!(a.df().get_column_names(), b.df().get_column_names());
        for name in a.df().get_column_names() {
            let (x, y) = (a.df().column(name).unwrap(), b.df().column(name).unwrap());
            match x.f64() {
                Ok(xf) => {
                    let bits = |c: &Float64Chunked| c.iter().map(|v| v.map(f64::to_bits)).collect::<Vec<_>>();
                    assert_eq!(bits(xf), bits(y.f64().unwrap()), "{name} on {day}");
                }
                Err(_) => assert!(x.equals_missing(y), "{name} on {day}"),
            }
        }
    }
    // The ranks are over the day's three symbols (mid-rank percentiles 1/6, 1/2, 5/6), not over one row.
    let on_last = stockcast_features::build_features_on(&full, &spec, days_to_date(last).unwrap()).unwrap();
    let mut ranks: Vec<f64> = col_f64(on_last.df(), "cs_rank_ret_5").into_iter().flatten().collect();
    ranks.sort_by(f64::total_cmp);
    assert_eq!(ranks.len(), 3);
    for (r, e) in ranks.iter().zip([1.0 / 6.0, 0.5, 5.0 / 6.0]) {
        assert!((r - e).abs() < 1e-12, "{ranks:?}");
    }
}
