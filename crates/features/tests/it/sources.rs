//! Folder, hive, Arrow IPC and glob sources: the same rows as the long file, and bad input named by file and line.

use std::collections::BTreeMap;
use std::path::Path;

use stockcast_features::polars::prelude::*;
use stockcast_features::{Layout, LoadOptions, ReadOptions, load_prices};

use crate::{dataset, load, write};

/// us5's rows per symbol, as CSV text without the symbol column (header first).
fn per_symbol() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(dataset("us5_daily.csv")).unwrap();
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        let body =
            out.entry(cells[1].to_owned()).or_insert_with(|| "date,open,high,low,close,volume,adj_close\n".into());
        let mut row = vec![cells[0]];
        row.extend(&cells[2..]);
        body.push_str(&row.join(","));
        body.push('\n');
    }
    out
}

fn csv_frame(path: &Path) -> DataFrame {
    CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .unwrap()
        .finish()
        .unwrap()
}

#[test]
fn a_folder_a_hive_dataset_an_ipc_file_and_a_pattern_load_as_the_long_file_does() {
    let long = load(&dataset("us5_daily.csv")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (csv, hive) = (dir.path().join("csv"), dir.path().join("hive"));
    std::fs::create_dir_all(&csv).unwrap();
    for (symbol, body) in per_symbol() {
        let file = write(&csv, &format!("{symbol}.csv"), &body);
        let part = hive.join(format!("symbol={symbol}"));
        std::fs::create_dir_all(&part).unwrap();
        let mut df = csv_frame(&file);
        ParquetWriter::new(std::fs::File::create(part.join("part-0.parquet")).unwrap()).finish(&mut df).unwrap();
    }
    // Spark's marker files and hidden files are not price files.
    write(&hive, "_SUCCESS", "");
    write(&csv, ".DS_Store", "junk");
    let mut whole = csv_frame(&dataset("us5_daily.csv"));
    let ipc = dir.path().join("us5.arrow");
    IpcWriter::new(std::fs::File::create(&ipc).unwrap()).finish(&mut whole).unwrap();
    let pattern = csv.join("*.csv");
    for source in [&csv, &hive, &ipc, &pattern] {
        let got = load(source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        assert!(got.prices.df().equals_missing(long.prices.df()), "{}: frames differ", source.display());
        assert_eq!(got.prices.data_hash(), long.prices.data_hash(), "{}", source.display());
        assert_eq!(got.report.rows_read, long.report.rows_read);
        let layout = if source == &ipc { Layout::Long } else { Layout::Files };
        assert_eq!(got.report.layout, layout, "{}", source.display());
    }
}

#[test]
fn a_bad_value_in_one_file_of_a_folder_is_named_by_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "AAA.csv", "date,close\n2024-01-02,10\n2024-01-03,11\n");
    write(dir.path(), "BBB.csv", "date,close\n2024-01-02,20\n2024-01-03,abc\n");
    let e = load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("BBB.csv line 3") && e.contains("abc"), "{e}");
    // Duplicates across files name both files.
    let dup = tempfile::tempdir().unwrap();
    write(dup.path(), "a.csv", "date,symbol,close\n2024-01-02,X,10\n");
    write(dup.path(), "b.csv", "date,symbol,close\n2024-01-02,X,10\n");
    let e = load(dup.path()).unwrap_err().to_string();
    assert!(e.contains("b.csv line 2") && e.contains("a.csv line 2"), "{e}");
}

#[test]
fn files_with_other_columns_empty_folders_and_unmatched_patterns_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "AAA.csv", "date,open,close\n2024-01-02,10,10\n");
    write(dir.path(), "BBB.csv", "date,close\n2024-01-02,20\n");
    let e = load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("BBB.csv") && e.contains("AAA.csv") && e.contains("same columns"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    write(empty.path(), "notes.md", "no prices here");
    let e = load(empty.path()).unwrap_err().to_string();
    assert!(e.contains("no price files"), "{e}");
    let e = load(&empty.path().join("*.parquet")).unwrap_err().to_string();
    assert!(e.contains("no file matches"), "{e}");
}

#[test]
fn a_symbol_filter_reads_only_the_files_that_can_hold_the_symbol() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "AAA.csv", "date,close\n2024-01-02,10\n2024-01-03,11\n");
    // Not a readable price file: it is skipped without reading its rows, because its name says it holds ZZZ.
    write(dir.path(), "ZZZ.csv", "date,close\n2024-01-02,not a number\n");
    let opts = LoadOptions {
        read: ReadOptions { symbol: Some("AAA".into()), ..Default::default() },
        ..LoadOptions::default()
    };
    let got = load_prices(dir.path(), &opts).unwrap();
    assert_eq!(got.prices.symbols().unwrap(), ["AAA"]);
    assert_eq!(got.prices.height(), 2);
    let e = load_prices(
        dir.path(),
        &LoadOptions { read: ReadOptions { symbol: Some("QQQ".into()), ..Default::default() }, ..opts.clone() },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("QQQ") && e.contains("none of its 2 files"), "{e}");
    // A job's symbol list (data.symbols) skips the other files the same way.
    let only = ReadOptions { symbols: vec!["AAA".into()], ..Default::default() };
    let got = load_prices(dir.path(), &LoadOptions { read: only, ..opts }).unwrap();
    assert_eq!((got.prices.symbols().unwrap(), got.prices.height()), (vec!["AAA".to_owned()], 2));
}

#[test]
fn cross_sectional_features_rank_only_the_members_of_each_date() {
    use std::fmt::Write as _;
    use stockcast_features::{FeatureSpec, Universe, build_features};
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("date,symbol,close\n");
    for (i, d) in ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"].iter().enumerate() {
        for (s, base) in [("A", 10.0), ("B", 20.0), ("C", 30.0)] {
            // Day-to-day returns: A +1 %, B +2 %, C +3 % per day.
            let r = match s {
                "A" => 1.01_f64,
                "B" => 1.02,
                _ => 1.03,
            };
            let _ = writeln!(text, "{d},{s},{}", base * r.powi(i as i32));
        }
    }
    let prices = load(&write(dir.path(), "p.csv", &text)).unwrap().prices;
    let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2024, 1, d).unwrap();
    // C leaves the universe after 2024-01-03.
    let u = Universe::from_spans(
        "u.txt",
        [("A".to_owned(), day(2), day(5)), ("B".to_owned(), day(2), day(5)), ("C".to_owned(), day(2), day(3))],
    );
    let spec = FeatureSpec::from_toml(
        "[[features]]\nfamily = \"returns\"\nwindows = [1]\n[[features]]\nfamily = \"cs_rank\"\nof = [\"ret_1\"]\n",
    )
    .unwrap();
    let all = build_features(&prices, &spec).unwrap();
    let members = build_features(&prices.with_universe(&u).unwrap(), &spec).unwrap();
    assert_ne!(prices.data_hash(), prices.with_universe(&u).unwrap().data_hash());
    let rank = |f: &stockcast_features::FeatureFrame| -> Vec<Option<f64>> {
        f.df().column("cs_rank_ret_1").unwrap().f64().unwrap().iter().collect()
    };
    let (ra, rm) = (rank(&all), rank(&members));
    let names: Vec<String> =
        all.df().column("symbol").unwrap().str().unwrap().iter().map(|s| s.unwrap().to_owned()).collect();
    let dates: Vec<i32> =
        all.df().column("date").unwrap().date().unwrap().physical().iter().map(Option::unwrap).collect();
    let jan4 = stockcast_features::prices::date_to_days(day(4));
    for i in 0..names.len() {
        if dates[i] != jan4 {
            continue;
        }
        // All three: ranks (r − 0.5)/3; members A and B only: (r − 0.5)/2, C none.
        match names[i].as_str() {
            "A" => assert_eq!((ra[i], rm[i]), (Some(0.5 / 3.0), Some(0.25))),
            "B" => assert_eq!((ra[i], rm[i]), (Some(1.5 / 3.0), Some(0.75))),
            _ => assert_eq!((ra[i], rm[i]), (Some(2.5 / 3.0), None)),
        }
    }
    // Time-series features do not depend on membership.
    let ret = |f: &stockcast_features::FeatureFrame| -> Vec<Option<f64>> {
        f.df().column("ret_1").unwrap().f64().unwrap().iter().collect()
    };
    assert_eq!(ret(&all), ret(&members));
}
