//! Layouts, aliases, adjustment, and every kind of bad input.

use stockcast_features::polars::prelude::*;
use stockcast_features::{
    Check, Error, FeatureSpec, Layout, LoadOptions, Policy, PriceField, QualityConfig, ReadOptions, build_features,
    load_prices,
};

use crate::{col_f64, col_str, dataset, load, write};

const HEADER: &str = "date,symbol,open,high,low,close,volume\n";

fn long(rows: &[&str]) -> String {
    let mut s = HEADER.to_owned();
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s
}

fn with_policy(p: Policy) -> LoadOptions {
    let quality = QualityConfig { on_bad_rows: Some(p), ..Default::default() };
    LoadOptions { quality: stockcast_features::Checked::new(quality).unwrap(), ..Default::default() }
}

#[test]
fn bundled_us5_loads_adjusted_with_five_symbols() {
    let loaded = load(&dataset("us5_daily.csv")).unwrap();
    let p = &loaded.prices;
    assert_eq!(p.symbols().unwrap(), ["AAPL", "FB", "GOOG", "IBM", "MSFT"]);
    assert_eq!(p.height(), 12_154);
    assert!(p.adjusted());
    assert_eq!(loaded.report.layout, Layout::Long);
    assert_eq!(loaded.report.rows_read, loaded.report.rows_kept + loaded.report.rows_quarantined);
    // Adjusted close equals the file's adj_close; raw close is kept.
    let close = col_f64(p.df(), "close");
    let raw = col_f64(p.df(), "raw_close");
    assert!((close[0].unwrap() - 4.186_662_803_811).abs() < 1e-9);
    assert!((raw[0].unwrap() - 130.31).abs() < 1e-9);
}

#[test]
fn split_day_is_not_a_fake_fifty_percent_drop() {
    // AAPL split 2:1 on 2000-06-21; raw closes show about -50 %.
    let loaded = load(&dataset("us5_daily.csv")).unwrap();
    let spec = FeatureSpec::from_toml("[[features]]\nfamily='returns'\nwindows=[1]").unwrap();
    let ff = build_features(&loaded.prices, &spec).unwrap();
    let df = ff.df();
    let syms = col_str(df, "symbol");
    let dates: Vec<String> = df
        .column("date")
        .unwrap()
        .cast(&DataType::String)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|d| d.unwrap().to_owned())
        .collect();
    let ret = col_f64(df, "ret_1");
    for day in ["2000-06-21", "2005-02-28"] {
        let i = (0..df.height()).find(|&i| syms[i] == "AAPL" && dates[i] == day).unwrap();
        let r = ret[i].unwrap();
        assert!(r.abs() < 0.15, "AAPL {day}: adjusted return {r}");
    }
    // No suspected split remains once adj_close is applied.
    assert_eq!(loaded.report.check(Check::SuspectSplit).flagged, 0);
}

#[test]
fn raw_prices_without_adj_close_warn_about_the_split() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(dataset("us5_daily.csv")).unwrap();
    let raw: String = text
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0)
        .filter(|l| l.starts_with("date") || l.contains(",AAPL,"))
        .collect::<Vec<_>>()
        .join("\n");
    let p = write(dir.path(), "aapl_raw.csv", &raw);
    let loaded = load(&p).unwrap();
    let split = loaded.report.check(Check::SuspectSplit);
    assert_eq!(split.policy, Policy::Warn);
    let dates: Vec<String> = split.examples.iter().map(|e| e.date.unwrap().to_string()).collect();
    assert!(dates.contains(&"2000-06-21".to_owned()), "{dates:?}");
    assert!(dates.contains(&"2005-02-28".to_owned()), "{dates:?}");
    assert!(!loaded.prices.adjusted());
}

#[test]
fn wide_close_only_file() {
    let loaded = load(&dataset("sp500_20_adjclose_wide.csv")).unwrap();
    assert_eq!(loaded.report.layout, Layout::Wide);
    assert_eq!(loaded.prices.symbols().unwrap().len(), 20);
    assert!(loaded.prices.has(PriceField::Close));
    assert!(!loaded.prices.has(PriceField::High) && !loaded.prices.has(PriceField::Volume));
    let ff =
        build_features(&loaded.prices, &stockcast_features::Checked::new(FeatureSpec::default()).unwrap()).unwrap();
    let skipped: Vec<&str> = ff.skipped().iter().map(|s| s.family.name()).collect();
    for fam in ["atr", "stochastic", "volume_z", "price_volume_corr", "hl_range", "open_gap"] {
        assert!(skipped.contains(&fam), "{fam} not skipped: {skipped:?}");
    }
    assert!(ff.features().contains(&"ret_5".to_owned()));
    assert!(ff.features().len() >= 40);
}

#[test]
fn single_symbol_file_with_aliases_and_symbol_from_flag_or_stem() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "acme.csv",
        "Date,Open,High,Low,Close,Adj Close,Volume\n2020-01-02,10,11,9,10,5,100\n2020-01-03,10,12,10,11,5.5,200\n",
    );
    let loaded = load(&p).unwrap();
    assert_eq!(loaded.report.layout, Layout::SingleSymbol);
    assert_eq!(loaded.prices.symbols().unwrap(), ["acme"]);
    assert!(loaded.prices.adjusted());
    assert_eq!(col_f64(loaded.prices.df(), "close"), [Some(5.0), Some(5.5)]);
    assert_eq!(col_f64(loaded.prices.df(), "high"), [Some(5.5), Some(6.0)]);
    // Volume is scaled by the inverse factor (share counts before a split double).
    assert_eq!(col_f64(loaded.prices.df(), "volume"), [Some(200.0), Some(400.0)]);
    let opts =
        LoadOptions { read: ReadOptions { symbol: Some("ACME".into()), ..Default::default() }, ..Default::default() };
    let loaded = load_prices(&p, &opts).unwrap();
    assert_eq!(loaded.prices.symbols().unwrap(), ["ACME"]);
}

#[test]
fn parquet_input_gives_the_same_prices_as_csv() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dataset("us5_daily.csv");
    let mut df = CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(csv.clone()))
        .unwrap()
        .finish()
        .unwrap();
    let pq = dir.path().join("us5.parquet");
    stockcast_features::io::write_frame(&mut df, &pq).unwrap();
    let a = load(&csv).unwrap();
    let b = load(&pq).unwrap();
    assert_eq!(a.prices.data_hash(), b.prices.data_hash());
    assert_eq!(b.report.rows_kept, 12_154);
}

#[test]
fn securities_file_adds_sector() {
    let dir = tempfile::tempdir().unwrap();
    let sec = write(
        dir.path(),
        "sec.csv",
        "symbol,name,sector\nAAPL,Apple,Tech\nIBM,IBM,Tech\nMSFT,Microsoft,Tech\nGOOG,Alphabet,Comm\n",
    );
    let opts = LoadOptions { securities: Some(sec), ..Default::default() };
    let loaded = load_prices(&dataset("us5_daily.csv"), &opts).unwrap();
    let sector: Vec<Option<String>> =
        loaded.prices.df().column("sector").unwrap().str().unwrap().iter().map(|s| s.map(str::to_owned)).collect();
    assert_eq!(sector[0].as_deref(), Some("Tech"));
    assert!(sector.iter().any(Option::is_none), "FB has no sector in the file");
    let dup = write(dir.path(), "dup.csv", "symbol,sector\nA,x\nA,y\n");
    let err = load_prices(&dataset("us5_daily.csv"), &LoadOptions { securities: Some(dup), ..Default::default() })
        .unwrap_err();
    assert!(err.to_string().contains("line 3"), "{err}");
}

// ---- bad input ----

fn err_of(text: &str, opts: &LoadOptions) -> Error {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "bad.csv", text);
    load_prices(&p, opts).unwrap_err()
}

#[test]
fn duplicated_headers_too_many_columns_and_bad_symbols_are_refused() {
    let text = |header: &str| format!("{header}\n2020-01-02,A,1,5\n");
    let e = err_of(&text("date,symbol,close,close"), &LoadOptions::default()).to_string();
    assert!(e.contains("bad.csv") && e.contains("names column `close` more than once"), "{e}");
    let e = err_of(&text("date,symbol,Close,close"), &LoadOptions::default()).to_string();
    assert!(e.contains("`Close` and `close` both name `close`"), "{e}");
    let e = err_of(&text("date,ticker,symbol,close"), &LoadOptions::default()).to_string();
    assert!(e.contains("`ticker` and `symbol`"), "{e}");
    // More than 10,000 columns: refused from the header, naming the count.
    let wide = format!(
        "date,{}\n2020-01-02,{}\n",
        (0..10_001).map(|i| format!("S{i}")).collect::<Vec<_>>().join(","),
        vec!["1"; 10_001].join(",")
    );
    let e = err_of(&wide, &LoadOptions::default()).to_string();
    assert!(e.contains("10002 columns") && e.contains("at most 10000"), "{e}");
    // A NUL byte or 100,000 characters in a symbol: a row defect naming the line (quarantined under drop).
    let long_symbol = "X".repeat(100_000);
    let rows = format!(
        "{HEADER}2020-01-02,A\u{0}B,10,11,9,10,100\n2020-01-02,{long_symbol},10,11,9,10,100\n2020-01-02,OK,10,11,9,10,100\n"
    );
    let e = err_of(&rows, &LoadOptions::default()).to_string();
    assert!(e.contains("line 2") && e.contains("control character") && e.contains("\\0"), "{e}");
    assert!(e.len() < 2_000, "the long symbol is shortened in messages: {} bytes", e.len());
    let dir = tempfile::tempdir().unwrap();
    let loaded = load_prices(&write(dir.path(), "s.csv", &rows), &with_policy(Policy::Drop)).unwrap();
    assert_eq!((loaded.report.rows_read, loaded.report.rows_quarantined), (3, 2));
    assert_eq!(loaded.prices.symbols().unwrap(), ["OK"]);
    // A wide file's column that is not a symbol, and a file stem that is not one.
    let e = err_of("date,A\tB\n2020-01-02,1\n", &LoadOptions::default()).to_string();
    assert!(e.contains("control character"), "{e}");
}

#[test]
fn empty_file_and_header_only() {
    let e = err_of("", &LoadOptions::default());
    assert!(e.to_string().contains("bad.csv") && e.to_string().contains("empty"), "{e}");
    assert!(e.is_user_error());
    let e = err_of(HEADER, &LoadOptions::default());
    assert!(e.to_string().contains("no data rows"), "{e}");
}

#[test]
fn missing_columns() {
    let e = err_of("symbol,close\nA,1\n", &LoadOptions::default());
    assert!(e.to_string().contains("no date column"), "{e}");
    let e = err_of("date,symbol,open\n2020-01-01,A,1\n", &LoadOptions::default());
    assert!(e.to_string().contains("no `close`"), "{e}");
    assert!(e.is_user_error());
}

#[test]
fn unparseable_number_names_file_line_and_column() {
    let text = long(&["2020-01-02,A,10,11,9,10,100", "2020-01-03,A,10,11,9,abc,100"]);
    let e = err_of(&text, &LoadOptions::default());
    let msg = e.to_string();
    assert!(
        msg.contains("bad.csv") && msg.contains("line 3") && msg.contains("column `close`") && msg.contains("\"abc\""),
        "{msg}"
    );
    assert!(e.is_user_error());
    // Unparseable date, too.
    let text = long(&["2020-01-02,A,10,11,9,10,100", "2020-13-45,A,10,11,9,10,100"]);
    let msg = err_of(&text, &LoadOptions::default()).to_string();
    assert!(msg.contains("line 3") && msg.contains("column `date`"), "{msg}");
}

#[test]
fn unparseable_rows_are_quarantined_under_drop() {
    let dir = tempfile::tempdir().unwrap();
    let text = long(&["2020-01-02,A,10,11,9,10,100", "2020-01-03,A,10,11,9,abc,100", "2020-01-06,A,10,11,9,10,100"]);
    let p = write(dir.path(), "bad.csv", &text);
    let loaded = load_prices(&p, &with_policy(Policy::Drop)).unwrap();
    assert_eq!(loaded.report.rows_read, 3);
    assert_eq!(loaded.report.rows_kept, 2);
    assert_eq!(loaded.report.quarantine.len(), 1);
    assert_eq!(loaded.report.quarantine[0].flag.line, 3);
    let q = dir.path().join("q.csv");
    loaded.report.write_quarantine(&q).unwrap();
    let qtext = std::fs::read_to_string(&q).unwrap();
    assert_eq!(qtext.lines().count(), 2, "{qtext}");
    assert!(qtext.lines().nth(1).unwrap().contains(",3,A,2020-01-03,unparseable,close,"), "{qtext}");
}

#[test]
fn duplicate_rows() {
    let text = long(&["2020-01-02,A,10,11,9,10,100", "2020-01-03,A,10,11,9,10,100", "2020-01-03,A,10,11,9,10.5,100"]);
    let msg = err_of(&text, &LoadOptions::default()).to_string();
    assert!(msg.contains("duplicate") && msg.contains("line 4") && msg.contains("line 3"), "{msg}");
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "d.csv", &text);
    let loaded = load_prices(&p, &with_policy(Policy::Drop)).unwrap();
    assert_eq!(loaded.report.rows_kept, 2);
    // The first occurrence is kept.
    assert_eq!(col_f64(loaded.prices.df(), "close"), [Some(10.0), Some(10.0)]);
    assert_eq!(loaded.report.quarantine[0].flag.line, 4);
}

#[test]
fn nan_and_inf_values() {
    for bad in ["NaN", "inf", ""] {
        let text = long(&["2020-01-02,A,10,11,9,10,100", &format!("2020-01-03,A,10,11,9,{bad},100")]);
        let e = err_of(&text, &LoadOptions::default());
        let msg = e.to_string();
        assert!(msg.contains("non_finite") && msg.contains("line 3") && msg.contains("close"), "{bad}: {msg}");
    }
}

#[test]
fn zero_and_negative_prices() {
    for bad in ["0", "-5"] {
        let text = long(&["2020-01-02,A,10,11,9,10,100", &format!("2020-01-03,A,{bad},11,9,10,100")]);
        let msg = err_of(&text, &LoadOptions::default()).to_string();
        assert!(msg.contains("non_positive") && msg.contains("line 3") && msg.contains("column `open`"), "{msg}");
    }
    let text = long(&["2020-01-02,A,10,11,9,10,-1"]);
    let msg = err_of(&text, &LoadOptions::default()).to_string();
    assert!(msg.contains("negative_volume"), "{msg}");
}

#[test]
fn ohlc_inconsistent_rows_are_dropped_by_default_and_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let text = long(&[
        "2020-01-02,A,10,11,9,10,100",
        "2020-01-03,A,10,9.5,9,10,100",
        "2020-01-06,A,10,11,10.5,10,100",
        "2020-01-07,A,10,11,9,10,100",
    ]);
    let p = write(dir.path(), "o.csv", &text);
    let loaded = load(&p).unwrap();
    let c = loaded.report.check(Check::OhlcInconsistent);
    assert_eq!((c.flagged, c.action), (2, "dropped"));
    assert_eq!(loaded.report.rows_kept, 2);
    let lines: Vec<u64> = loaded.report.quarantine.iter().map(|q| q.flag.line).collect();
    assert_eq!(lines, [3, 4]);
    assert!(loaded.report.quarantine[0].flag.detail.contains("high 9.5 below max"));
    // With error policy it fails naming the row.
    let mut quality = QualityConfig::default();
    quality.policies.insert(Check::OhlcInconsistent, Policy::Error);
    let opts = LoadOptions { quality: stockcast_features::Checked::new(quality).unwrap(), ..LoadOptions::default() };
    let msg = load_prices(&p, &opts).unwrap_err().to_string();
    assert!(msg.contains("line 3") && msg.contains("ohlc_inconsistent"), "{msg}");
}

#[test]
fn unsorted_input_is_sorted_with_a_warning_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = long(&[
        "2020-01-03,B,10,11,9,10,100",
        "2020-01-03,A,10,11,9,10,100",
        "2020-01-02,A,10,11,9,10.5,100",
        "2020-01-02,B,10,11,9,10,100",
    ]);
    let p = write(dir.path(), "u.csv", &text);
    let loaded = load(&p).unwrap();
    assert_eq!(loaded.report.check(Check::Unsorted).action, "sorted");
    assert_eq!(loaded.report.rows_kept, 4);
    assert_eq!(col_str(loaded.prices.df(), "symbol"), ["A", "A", "B", "B"]);
    assert_eq!(col_f64(loaded.prices.df(), "close")[0], Some(10.5));
    let mut quality = QualityConfig::default();
    quality.policies.insert(Check::Unsorted, Policy::Error);
    let opts = LoadOptions { quality: stockcast_features::Checked::new(quality).unwrap(), ..LoadOptions::default() };
    let msg = load_prices(&p, &opts).unwrap_err().to_string();
    assert!(msg.contains("unsorted") && msg.contains("line 4"), "{msg}");
}

#[test]
fn wide_file_with_a_non_numeric_column() {
    let text = "date,AAA,Name,BBB\n2020-01-02,1.0,foo,2.0\n2020-01-03,1.1,bar,2.1\n";
    let e = err_of(text, &LoadOptions::default());
    let msg = e.to_string();
    assert!(msg.contains("column `Name`") && msg.contains("line 2") && msg.contains("\"foo\""), "{msg}");
    assert!(e.is_user_error());
}

#[test]
fn wide_file_empty_cells_are_not_rows() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "w.csv", "date,AAA,BBB\n2020-01-02,,2.0\n2020-01-03,1.1,2.1\n");
    let loaded = load(&p).unwrap();
    assert_eq!(loaded.report.rows_read, 3);
    assert_eq!(loaded.report.empty_wide_cells, 1);
    assert_eq!(loaded.prices.symbols().unwrap(), ["AAA", "BBB"]);
}

#[test]
fn gaps_and_zero_volume_streaks_warn() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = vec![];
    for d in 1..=9 {
        rows.push(format!("2020-03-0{d},A,10,11,9,10,0"));
        rows.push(format!("2020-03-0{d},B,10,11,9,10,100"));
    }
    rows.push("2020-04-20,A,10,11,9,10,100".into());
    let refs: Vec<&str> = rows.iter().map(String::as_str).collect();
    let p = write(dir.path(), "g.csv", &long(&refs));
    let loaded = load(&p).unwrap();
    assert_eq!(loaded.report.check(Check::Gap).flagged, 1);
    assert_eq!(loaded.report.check(Check::ZeroVolumeStreak).flagged, 9);
    assert_eq!(loaded.report.rows_kept, 19);
}

#[test]
fn a_missing_file_is_a_user_error_naming_it() {
    let e = load(std::path::Path::new("/nonexistent/prices.csv")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/prices.csv"));
    assert!(e.is_user_error());
}

#[test]
fn quality_error_carries_the_report() {
    let text = long(&["2020-01-02,A,10,11,9,10,100", "2020-01-02,A,10,11,9,10,100"]);
    match err_of(&text, &LoadOptions::default()) {
        Error::Quality { report: Some(r), check, .. } => {
            assert_eq!(check, "duplicate");
            assert_eq!(r.check(Check::Duplicate).action, "failed");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn default_label_on_us5_is_the_next_open_to_open_return() {
    // label(t) = open(t+1+h) / open(t+1) - 1 with opens adjusted by adj_close / close, computed here from the CSV.
    let loaded = load(&dataset("us5_daily.csv")).unwrap();
    assert_eq!(loaded.report.rows_quarantined, 0);
    let spec = FeatureSpec::default();
    let h = spec.label.horizon;
    let ff = build_features(&loaded.prices, &stockcast_features::Checked::new(spec.clone()).unwrap()).unwrap();
    let df = ff.df();
    let got: std::collections::HashMap<(String, String), Option<f64>> = col_str(df, "symbol")
        .into_iter()
        .zip(df.column("date").unwrap().cast(&DataType::String).unwrap().str().unwrap().iter())
        .zip(col_f64(df, "label"))
        .map(|((s, d), l)| ((s, d.unwrap().to_owned()), l))
        .collect();
    let text = std::fs::read_to_string(dataset("us5_daily.csv")).unwrap();
    let mut rows: std::collections::BTreeMap<String, Vec<(String, f64)>> = std::collections::BTreeMap::new();
    for line in text.lines().skip(1) {
        let c: Vec<&str> = line.split(',').collect();
        let (open, close, adj): (f64, f64, f64) = (c[2].parse().unwrap(), c[5].parse().unwrap(), c[7].parse().unwrap());
        rows.entry(c[1].to_owned()).or_default().push((c[0].to_owned(), open * adj / close));
    }
    let mut checked = 0;
    for (sym, mut v) in rows {
        v.sort_by(|a, b| a.0.cmp(&b.0));
        for t in 0..v.len() {
            let want = (t + 1 + h < v.len()).then(|| v[t + 1 + h].1 / v[t + 1].1 - 1.0);
            let have = got[&(sym.clone(), v[t].0.clone())];
            match (want, have) {
                (Some(w), Some(g)) => {
                    assert!((w - g).abs() < 1e-9 * (1.0 + w.abs()), "{sym} {}: {g} vs {w}", v[t].0);
                    checked += 1;
                }
                (None, None) => {}
                other => panic!("{sym} {}: {other:?}", v[t].0),
            }
        }
    }
    assert!(checked > 12_000, "{checked}");
}

mod fuzz {
    //! The loader on arbitrary input: every outcome is a value or a clear error, never a panic.
    use proptest::prelude::*;
    use stockcast_features::{LoadOptions, load_prices};

    /// Lines that look like price rows, with any of them mangled.
    fn near_csv() -> impl Strategy<Value = String> {
        let cell = prop_oneof![
            Just(String::new()),
            "[0-9]{1,6}(\\.[0-9]{1,4})?",
            "-?[0-9]{1,3}e[0-9]{1,3}",
            Just("NaN".to_owned()),
            Just("inf".to_owned()),
            "20[0-2][0-9]-[01][0-9]-[0-3][0-9]",
            "[A-Z]{1,5}",
            ".{0,12}",
        ];
        let row = proptest::collection::vec(cell, 0..9).prop_map(|c| c.join(","));
        (
            prop_oneof![
                Just("date,symbol,open,high,low,close,volume".to_owned()),
                Just("date,close".to_owned()),
                Just("date,A,B".to_owned()),
                ".{0,40}",
            ],
            proptest::collection::vec(row, 0..30),
        )
            .prop_map(|(h, rows)| format!("{h}\n{}", rows.join("\n")))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn arbitrary_csv_is_loaded_or_refused_clearly(text in near_csv()) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("fuzz.csv");
            std::fs::write(&path, &text).unwrap();
            if let Err(e) = load_prices(&path, &LoadOptions::default()) {
                let m = e.to_string();
                prop_assert!(!m.is_empty() && !m.contains("panicked"), "{m}");
            }
        }

        #[test]
        fn arbitrary_bytes_as_csv_or_parquet_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), parquet in any::<bool>()) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(if parquet { "fuzz.parquet" } else { "fuzz.csv" });
            std::fs::write(&path, &bytes).unwrap();
            let _ = load_prices(&path, &LoadOptions::default());
        }
    }
}
