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
        assert_eq!((a.height(), b.height()), (listed(k), listed(k)), "day {day}");
        assert_same_frames(&a, &b, &format!("formulas on {day}"));
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

/// Two feature frames with the same features, columns, rows and bits (`what` names the case).
fn assert_same_frames(a: &stockcast_features::FeatureFrame, b: &stockcast_features::FeatureFrame, what: &str) {
    assert_eq!(a.features(), b.features(), "{what}");
    assert_same_dfs(a.df(), b.df(), what);
}

/// Two frames with the same columns, rows and bits.
fn assert_same_dfs(a: &DataFrame, b: &DataFrame, what: &str) {
    assert_eq!(a.get_column_names(), b.get_column_names(), "{what}");
    assert_eq!(a.height(), b.height(), "{what}");
    for name in a.get_column_names() {
        let (x, y) = (a.column(name).unwrap(), b.column(name).unwrap());
        match x.f64() {
            Ok(xf) => {
                let bits = |c: &Float64Chunked| c.iter().map(|v| v.map(f64::to_bits)).collect::<Vec<_>>();
                assert_eq!(bits(xf), bits(y.f64().unwrap()), "{what}: {name}");
            }
            Err(_) => assert!(x.equals_missing(y), "{what}: {name}"),
        }
    }
}

/// `build_features(prices, spec)?.on(day)` and `build_features_on(prices, spec, day)` are the same frames.
fn assert_same_day(prices: &PriceFrame, spec: &stockcast_features::Checked<FeatureSpec>, days: &[i32], what: &str) {
    let whole = build_features(prices, spec).unwrap();
    for &k in days {
        let day = days_to_date(k).unwrap();
        let b = stockcast_features::build_features_on(prices, spec, day).unwrap();
        assert_same_frames(&whole.on(day).unwrap(), &b, &format!("{what} on {day}"));
    }
}

/// `build_features_before(prices, spec, day, rows)` is the whole build's rows of its dates, and those hold each
/// symbol's last `rows` rows up to `day` (every symbol with a row on `day`).
fn assert_same_tail(
    prices: &PriceFrame,
    spec: &stockcast_features::Checked<FeatureSpec>,
    days: &[i32],
    rows: usize,
    what: &str,
) {
    let whole = build_features(prices, spec).unwrap();
    let keys = |df: &DataFrame| -> Vec<(String, i32)> {
        let s = df.column("symbol").unwrap().str().unwrap().clone();
        let d = df.column("date").unwrap().date().unwrap().physical().clone();
        s.iter().zip(d.iter()).map(|(s, d)| (s.unwrap().to_owned(), d.unwrap())).collect()
    };
    let all = keys(whole.df());
    for &k in days {
        let day = days_to_date(k).unwrap();
        let b = stockcast_features::build_features_before(prices, spec, day, rows).unwrap();
        let kept = keys(b.df());
        let mut dates: Vec<i32> = kept.iter().map(|(_, d)| *d).collect();
        dates.dedup();
        let mask: BooleanChunked = all.iter().map(|(_, d)| Some(dates.contains(d))).collect();
        assert_eq!(whole.features(), b.features());
        assert_same_dfs(&whole.df().filter(&mask).unwrap(), b.df(), &format!("{what}, {rows} rows before {day}"));
        for (symbol, _) in all.iter().filter(|(_, d)| *d == k) {
            let mine: Vec<i32> = all.iter().filter(|(s, d)| s == symbol && *d <= k).map(|(_, d)| *d).collect();
            let tail = &mine[mine.len().saturating_sub(rows)..];
            assert!(tail.iter().all(|d| kept.contains(&(symbol.clone(), *d))), "{what}: {symbol}'s last {rows} rows");
        }
    }
}

/// Every date of `p` and a date after the last.
fn every_day(p: &PriceFrame) -> Vec<i32> {
    let mut days: Vec<i32> = p.df().column("date").unwrap().date().unwrap().physical().iter().flatten().collect();
    days.sort_unstable();
    days.dedup();
    days.push(days.last().unwrap() + 30);
    days
}

/// A one-day build without formula features computes each per-symbol result from every row and the element-wise
/// steps on the day's rows only: on every date of a panel with a late listing, sectors that change, volume with
/// gaps (the price-volume correlation's masked form), highs with gaps, a factor column with gaps, universe membership, every
/// family, labels demeaned by date and by sector, and on a single symbol's days, each column is the whole build's, bit for bit.
#[test]
fn a_one_day_build_is_the_whole_builds_rows_of_that_day_on_every_date() {
    let base = panel(5, 70);
    let n = base.height();
    let mut df = base.df().clone();
    let volume = col_f64(&df, "volume");
    let gappy: Vec<Option<f64>> = volume.iter().enumerate().map(|(i, v)| if i % 37 == 5 { None } else { *v }).collect();
    df.with_column(Column::new("volume".into(), gappy)).unwrap();
    // A missing high: the trailing maximum of the stochastic takes Polars' path over the whole column.
    let high = col_f64(&df, "high");
    let gappy: Vec<Option<f64>> = high.iter().enumerate().map(|(i, v)| if i % 53 == 40 { None } else { *v }).collect();
    df.with_column(Column::new("high".into(), gappy)).unwrap();
    let book: Vec<Option<f64>> = (0..n).map(|i| (i % 11 != 3).then_some(1.0 + (i / 23) as f64 * 0.25)).collect();
    df.with_column(Column::new("book".into(), book)).unwrap();
    let member: Vec<bool> = (0..n).map(|i| i % 13 != 0).collect();
    df.with_column(Column::new(stockcast_features::universe::MEMBER.into(), member)).unwrap();
    let gaps = PriceFrame::from_df(df).unwrap();
    let first: BooleanChunked = base.df().column("symbol").unwrap().str().unwrap().equal("S0000");
    // In two chunks (as frames stacked from parts come): the date lookups' path for a column of several chunks.
    let one = base.df().filter(&first).unwrap();
    let half = one.height() / 2;
    let stacked = one.slice(0, half).vstack(&one.slice(half as i64, one.height() - half)).unwrap();
    assert_eq!(stacked.column("date").unwrap().as_materialized_series().n_chunks(), 2);
    let single = PriceFrame::from_df(stacked).unwrap();
    let extra = "[[features]]\nfamily = \"factor\"\nof = [\"book\"]\n\
         [[features]]\nfamily = \"factor_mean\"\nof = [\"book\"]\nwindows = [5]\n\
         [[features]]\nfamily = \"factor_std\"\nof = [\"book\"]\nwindows = [10]\n\
         [[features]]\nfamily = \"factor_zscore\"\nof = [\"book\"]\nwindows = [10]\n\
         [[features]]\nfamily = \"factor_change\"\nof = [\"book\"]\nwindows = [20]\n\
         [[features]]\nfamily = \"cs_zscore\"\nof = [\"f_book_chg_20\", \"pv_corr_20\", \"macd_signal_12_26_9\", \"stoch_k_14\"]\n";
    for (label, data, what) in [
        ("demean = \"sector\"\nkind = \"log\"\n", &gaps, "gaps, sector-demeaned log label"),
        ("demean = true\nprice = \"close\"\n", &gaps, "gaps, date-demeaned close label"),
        ("", &base, "complete data, default label"),
        ("", &single, "one symbol, two chunks"),
    ] {
        let label =
            FeatureSpec::from_toml(&format!("[label]\n{label}[[features]]\nfamily = \"returns\"\nwindows = [1]\n"))
                .unwrap()
                .label
                .clone();
        let default = FeatureSpec { label, ..FeatureSpec::default() }.to_toml();
        let factors = if data.df().column("book").is_ok() { extra } else { "" };
        let spec = FeatureSpec::from_toml(&format!("{default}\n{factors}")).unwrap();
        assert_same_day(data, &spec, &every_day(data), what);
        let some: Vec<i32> = every_day(data).into_iter().step_by(29).collect();
        for rows in [2, 25] {
            assert_same_tail(data, &spec, &some, rows, what);
        }
    }
    // The bundled raw panel (splits in it), default spec.
    let raw = crate::load(&crate::dataset("us5_daily.csv")).unwrap().prices;
    let days = every_day(&raw);
    let picks: Vec<i32> = days.iter().step_by(97).chain(&days[days.len() - 3..]).copied().collect();
    assert_same_day(&raw, &stockcast_features::Checked::default(), &picks, "us5");
}
