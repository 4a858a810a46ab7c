//! Factor files joined point in time: the as-of rule, staleness, no look-ahead under scrambling, bad files.

use std::fmt::Write as _;
use std::path::Path;

use chrono::NaiveDate;
use proptest::prelude::*;
use stockcast_features::factors::FactorSource;
use stockcast_features::{FeatureSpec, PriceFrame, build_features};

use crate::{load, write};

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// Three symbols on weekdays from 2024-01-01 for 200 days.
fn prices(dir: &Path) -> PriceFrame {
    let dates = stockcast_features::synth::weekdays(day(2024, 1, 1), 200);
    let mut text = String::from("date,symbol,close\n");
    for (k, s) in ["A", "B", "C"].iter().enumerate() {
        for (i, d) in dates.iter().enumerate() {
            let _ = writeln!(text, "{d},{s},{}", 10.0 + k as f64 + (i as f64 * 0.1).sin());
        }
    }
    load(&write(dir, "prices.csv", &text)).unwrap().prices
}

/// Monthly factor rows (`date` = month end) per symbol, values from `value(symbol index, month)`.
fn factor_file(dir: &Path, name: &str, value: impl Fn(usize, u32) -> f64) -> std::path::PathBuf {
    let mut text = String::from("symbol,date,book\n");
    for (k, s) in ["A", "B", "C"].iter().enumerate() {
        for m in 1..=10u32 {
            let end = day(2024, m + 1, 1).pred_opt().unwrap();
            let _ = writeln!(text, "{s},{end},{}", value(k, m));
        }
    }
    write(dir, name, &text)
}

fn source(file: std::path::PathBuf, lag: i64, max_age: Option<i64>) -> FactorSource {
    FactorSource { file, lag_days: Some(lag), max_age_days: max_age, columns: Vec::new() }
}

fn column(p: &PriceFrame, name: &str, symbol: &str, d: NaiveDate) -> Option<f64> {
    let df = p.df();
    let (s, dates, v) = (
        df.column("symbol").unwrap().str().unwrap(),
        df.column("date").unwrap().date().unwrap(),
        df.column(name).unwrap().f64().unwrap(),
    );
    let t = stockcast_features::prices::date_to_days(d);
    (0..df.height()).find(|&i| s.get(i) == Some(symbol) && dates.physical().get(i) == Some(t)).and_then(|i| v.get(i))
}

#[test]
fn a_value_is_joined_from_the_day_it_became_known_until_it_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    let p = prices(dir.path());
    let file = factor_file(dir.path(), "f.csv", |k, m| f64::from(m) + 100.0 * k as f64);
    // January's value (dated 01-31) is known 45 days later, 2024-03-16 (a Saturday): first used Monday 03-18.
    let joined = p.with_factors(&[source(file.clone(), 45, None).load().unwrap()]).unwrap();
    assert_eq!(column(&joined, "book", "A", day(2024, 3, 15)), None);
    assert_eq!(column(&joined, "book", "A", day(2024, 3, 18)), Some(1.0));
    assert_eq!(column(&joined, "book", "B", day(2024, 3, 18)), Some(101.0));
    // February's (02-29 + 45 = 04-14, a Sunday) replaces it on Monday 04-15.
    assert_eq!(column(&joined, "book", "A", day(2024, 4, 12)), Some(1.0));
    assert_eq!(column(&joined, "book", "A", day(2024, 4, 15)), Some(2.0));
    // With max_age_days = 20, a value is missing 21 days after it became known if nothing newer came.
    let stale = p.with_factors(&[source(file, 45, Some(20)).load().unwrap()]).unwrap();
    assert_eq!(column(&stale, "book", "A", day(2024, 4, 5)), Some(1.0)); // 20 days after 03-16
    assert_eq!(column(&stale, "book", "A", day(2024, 4, 8)), None); // 23 days
    assert_ne!(stale.data_hash(), p.data_hash());
}

fn factor_spec() -> stockcast_features::Checked<FeatureSpec> {
    FeatureSpec::from_toml(
        "[[features]]\nfamily = \"returns\"\nwindows = [1]\n\
         [[features]]\nfamily = \"factor\"\nof = [\"book\"]\n\
         [[features]]\nfamily = \"factor_mean\"\nof = [\"book\"]\nwindows = [5]\n\
         [[features]]\nfamily = \"factor_zscore\"\nof = [\"book\"]\nwindows = [10]\n\
         [[features]]\nfamily = \"factor_change\"\nof = [\"book\"]\nwindows = [20]\n\
         [[features]]\nfamily = \"cs_rank\"\nof = [\"f_book\", \"f_book_chg_20\"]\n",
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    /// Changing any factor row that becomes known after t leaves every feature at t unchanged.
    #[test]
    fn scrambling_factor_rows_known_after_t_changes_no_feature_at_t(cut in 40usize..190, seed in 0u64..1000) {
        let dir = tempfile::tempdir().unwrap();
        let p = prices(dir.path());
        let dates = stockcast_features::synth::weekdays(day(2024, 1, 1), 200);
        let t = dates[cut];
        let lag = 30;
        let base = factor_file(dir.path(), "base.csv", |k, m| f64::from(m) * (1.0 + k as f64));
        // Rows known after t (month end + lag > t) get other values.
        let scrambled = factor_file(dir.path(), "scrambled.csv", |k, m| {
            let end = day(2024, m + 1, 1).pred_opt().unwrap();
            if end + chrono::Duration::days(lag) > t {
                ((seed + 7 * u64::from(m) + k as u64) % 97) as f64 - 40.0
            } else {
                f64::from(m) * (1.0 + k as f64)
            }
        });
        let spec = factor_spec();
        let build = |file| {
            let joined = p.with_factors(&[source(file, lag, None).load().unwrap()]).unwrap();
            build_features(&joined, &spec).unwrap()
        };
        let (a, b) = (build(base), build(scrambled));
        let until = stockcast_features::prices::date_to_days(t);
        let keep = |f: &stockcast_features::FeatureFrame| {
            let d = f.df().column("date").unwrap().date().unwrap().physical().clone();
            let mask: stockcast_features::polars::prelude::BooleanChunked = d.iter().map(|x| x.map(|x| x <= until)).collect();
            f.df().filter(&mask).unwrap()
        };
        let (a, b) = (keep(&a), keep(&b));
        prop_assert!(a.height() > 100);
        for name in factor_spec().output_names() {
            let (x, y) = (a.column(&name).unwrap().f64().unwrap(), b.column(&name).unwrap().f64().unwrap());
            for (u, v) in x.iter().zip(y.iter()) {
                prop_assert!(u.map(f64::to_bits) == v.map(f64::to_bits), "{name}: {u:?} vs {v:?} at or before {t}");
            }
        }
    }
}

#[test]
fn bad_factor_files_are_refused_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let load = |text: &str, lag: Option<i64>, columns: &[&str]| {
        let file = write(dir.path(), "bad.csv", text);
        FactorSource {
            file,
            lag_days: lag,
            max_age_days: None,
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
        }
        .load()
        .unwrap_err()
        .to_string()
    };
    let e = load("symbol,date,book\nA,2024-01-31,1\nA,2024-01-31,2\n", Some(10), &[]);
    assert!(e.contains("bad.csv") && e.contains("line 3") && e.contains("twice") && e.contains("line 2"), "{e}");
    let e = load("symbol,date,available_date,book\nA,2024-01-31,2024-01-15,1\n", None, &[]);
    assert!(e.contains("line 2") && e.contains("before the date"), "{e}");
    let e = load("symbol,date,book\nA,2024-01-31,1\n", None, &[]);
    assert!(e.contains("available_date") && e.contains("lag_days"), "{e}");
    let e = load("symbol,date,book\nA,2024-01-31,1\n", Some(10), &["bok"]);
    assert!(e.contains("`bok`") && e.contains("book"), "{e}");
    let e = load("symbol,date,book\nA,2024-01-31,abc\n", Some(10), &[]);
    assert!(e.contains("line 2") && e.contains("abc"), "{e}");
}
