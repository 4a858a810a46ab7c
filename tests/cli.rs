//! End-to-end tests of the `stockcast` binary: commands, outputs, exit codes, messages.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, clippy::missing_panics_doc)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use stockcast_features::polars::prelude::*;

mod common;
use common::{bin, dataset, every_kind_config, read_parquet, report_results, root, run, text};

fn feature_columns(df: &DataFrame) -> Vec<String> {
    df.get_column_names()
        .iter()
        .map(ToString::to_string)
        .filter(|c| !["symbol", "date", "sector", "label"].contains(&c.as_str()))
        .collect()
}

#[test]
fn features_on_bundled_data_writes_60_plus_features_for_all_symbols() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.parquet");
    let o = run(&["features", "--prices", &dataset("us5_daily.csv"), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let df = read_parquet(&out);
    assert!(feature_columns(&df).len() >= 60, "{:?}", feature_columns(&df));
    assert!(df.column("label").is_ok());
    let syms = df.column("symbol").unwrap().unique().unwrap();
    assert_eq!(syms.len(), 5);
    assert_eq!(df.height(), 12_154);
    assert!(text(&o.stdout).contains("5 symbols"), "{}", text(&o.stdout));
}

#[test]
fn features_on_wide_close_only_data_names_skipped_families() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.csv");
    let o = run(&["features", "--prices", &dataset("sp500_20_adjclose_wide.csv"), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    let stderr = text(&o.stderr);
    assert!(stdout.contains("skipped families") && stdout.contains("atr") && stdout.contains("volume_z"), "{stdout}");
    assert!(stderr.contains("note: skipped `stochastic`"), "{stderr}");
    let header = std::fs::read_to_string(&out).unwrap().lines().next().unwrap().to_owned();
    assert!(header.starts_with("symbol,date,ret_1,"), "{header}");
    assert!(!header.contains("atr_"));
}

#[test]
fn bad_input_exits_2_and_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.csv");
    std::fs::write(&p, "date,symbol,open,high,low,close\n2020-01-02,A,1,1,1,1\n2020-01-03,A,1,1,1,x1\n").unwrap();
    let o =
        run(&["features", "--prices", p.to_str().unwrap(), "--out", dir.path().join("f.parquet").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains("line 3") && err.contains("column `close`") && err.contains("bad.csv"), "{err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");
    assert!(!dir.path().join("f.parquet").exists());
}

#[test]
fn bad_own_data_inputs_exit_2_naming_the_file_and_line_or_position() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let write = |name: &str, text: &str| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let prices = dataset("us5_daily.csv");
    let good_spec = write("spec.toml", "[[features]]\nfamily = \"returns\"\nwindows = [5]\n");
    // (what the [data] section adds, what the error must name)
    let cases = [
        (
            format!(
                "[[data.factors]]\nfile = {:?}\nlag_days = 45\n",
                write("dup.csv", "symbol,date,book\nAAPL,2005-03-31,1\nIBM,2005-03-31,2\nAAPL,2005-03-31,3\n")
            ),
            vec!["dup.csv", "line 4", "line 2"],
        ),
        (
            format!(
                "[[data.factors]]\nfile = {:?}\n",
                write("early.csv", "symbol,date,available_date,book\nAAPL,2005-03-31,2005-03-30,1\n")
            ),
            vec!["early.csv", "line 2", "available_date"],
        ),
        (
            format!(
                "universe = {:?}\n",
                write("u.txt", "AAPL\t2001-01-02\t2010-01-01\nMSFT\t2005-01-03\t2004-12-31\n")
            ),
            vec!["u.txt", "line 2", "before it starts"],
        ),
        (
            format!(
                "classification = {:?}\n",
                write("c.csv", "symbol,start,end,sector\nAAPL,2000-01-01,,IT\nAAPL,2010-01-01,,Tech\n")
            ),
            vec!["c.csv", "line 3", "overlaps the one on line 2"],
        ),
    ];
    for (extra, want) in cases {
        let cfg = write(
            "bt.toml",
            &format!(
                "[data]\nprices = {prices:?}\nspec = {good_spec:?}\n{extra}[[models]]\nname = \"m\"\nmodel = {{ kind = \"rule\", rule = \"momentum\", lookback = 20 }}\n"
            ),
        );
        let o = run(&["backtest", "--config", &cfg, "--out", d.join("run").to_str().unwrap()]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra}: {err}");
        assert!(want.iter().all(|w| err.contains(w)), "{extra}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!d.join("run").exists(), "no run written");
    }
    // A formula with a typo: the feature and the column of the formula.
    let spec = write(
        "typo.toml",
        "[[features]]\nfamily = \"expr\"\nname = \"x\"\nexpr = \"mean($close, 5) / mena($close, 20)\"\n",
    );
    let o = run(&["features", "--prices", &prices, "--spec", &spec, "--out", d.join("f.parquet").to_str().unwrap()]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("typo.toml") && err.contains("`x`, column 19") && err.contains("mena"), "{err}");
}

#[test]
fn missing_file_and_bad_usage_exit_2() {
    let o = run(&["quality", "--prices", "/nonexistent.csv"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("/nonexistent.csv"));
    let o = run(&["features", "--prices"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["no-such-command"]);
    assert_eq!(o.status.code(), Some(2));
}

/// The first `n` rows of us5's AAPL as a single-symbol CSV written by `row` (header first), so one price history
/// can be written in other dialects and compared.
fn aapl_rows(dir: &Path, name: &str, n: usize, row: impl Fn(&[&str]) -> String) -> PathBuf {
    fn pick<'a>(keep: &[usize], fields: &[&'a str]) -> Vec<&'a str> {
        keep.iter().map(|&i| fields[i]).collect()
    }
    let text = std::fs::read_to_string(dataset("us5_daily.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let sym = header.iter().position(|h| *h == "symbol").unwrap();
    let keep: Vec<usize> = (0..header.len()).filter(|&i| i != sym).collect();
    let mut out = vec![row(&pick(&keep, &header))];
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        if f[sym] == "AAPL" && out.len() <= n {
            out.push(row(&pick(&keep, &f)));
        }
    }
    let path = dir.join(name);
    std::fs::write(&path, out.join("\n") + "\n").unwrap();
    path
}

fn features_of(prices: &Path, extra: &[&str]) -> DataFrame {
    let out = prices.with_extension("features.parquet");
    let o = bin()
        .args(["--quiet", "features", "--symbol", "AAPL", "--prices"])
        .arg(prices)
        .arg("--out")
        .arg(&out)
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    read_parquet(&out)
}

#[test]
fn dialects_and_date_formats_read_the_same_prices_and_bad_rows_are_named_once() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = aapl_rows(tmp.path(), "iso.csv", 300, |f| f.join(","));
    let expected = features_of(&iso, &[]);
    assert_eq!(expected.height(), 300);
    // A European spreadsheet export: ';' separated, decimal commas. Read, and the report says how.
    let semi = aapl_rows(tmp.path(), "semi.csv", 300, |f| {
        f.iter().map(|v| v.replacen('.', ",", 1)).collect::<Vec<_>>().join(";")
    });
    assert!(std::fs::read_to_string(&semi).unwrap().contains(';'));
    assert!(expected.equals_missing(&features_of(&semi, &[])));
    let o = run(&["quality", "--symbol", "AAPL", "--prices", semi.to_str().unwrap()]);
    assert!(text(&o.stderr).contains("';'-separated, decimal commas read"), "{}", text(&o.stderr));

    // Excel's M/D/YYYY: refused with a hint naming --date-format (dropping the rows would drop them all), then
    // read with it.
    let us_date = |d: &str| {
        let p: Vec<&str> = d.split('-').collect();
        if p.len() == 3 && p[0].len() == 4 {
            format!("{}/{}/{}", p[1].trim_start_matches('0'), p[2].trim_start_matches('0'), p[0])
        } else {
            d.to_owned()
        }
    };
    let excel = aapl_rows(tmp.path(), "excel.csv", 300, |f| {
        f.iter()
            .enumerate()
            .map(|(i, v)| if i == 0 { us_date(v) } else { (*v).to_owned() })
            .collect::<Vec<_>>()
            .join(",")
    });
    let o = run(&["quality", "--symbol", "AAPL", "--prices", excel.to_str().unwrap()]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--date-format '%m/%d/%Y'"), "{err}");
    assert!(!err.contains("--on-bad-rows drop"), "{err}");
    assert!(err.contains("stopped at the failed check `unparseable`") && !err.contains("300 kept"), "{err}");
    assert!(expected.equals_missing(&features_of(&excel, &["--date-format", "%m/%d/%Y"])));

    // A Yahoo `null` row: one row flagged, listed once, with every column that did not parse.
    let yahoo = aapl_rows(tmp.path(), "yahoo.csv", 20, |f| {
        if f[0] == "2000-03-07" { format!("{},null,null,null,null,null,null", f[0]) } else { f.join(",") }
    });
    let o = run(&["quality", "--symbol", "AAPL", "--prices", yahoo.to_str().unwrap()]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("unparseable                1 row(s)"), "{err}");
    assert_eq!(err.matches("2000-03-07: cannot parse").count(), 1, "{err}");
    assert!(err.contains("as a number in open, high, low, close, volume, adj_close"), "{err}");

    // A missing file's cause is said once.
    let o = run(&["quality", "--prices", "/nonexistent.csv"]);
    assert_eq!(text(&o.stderr).matches("No such file or directory").count(), 1, "{}", text(&o.stderr));

    // A row with more fields than the header: the file and the separator, no Polars option names.
    let ragged = tmp.path().join("ragged.csv");
    std::fs::write(&ragged, "date;open;high;low;close;volume\n2020-01-02;1;1;1;1;1;7\n").unwrap();
    let o = run(&["quality", "--prices", ragged.to_str().unwrap(), "--symbol", "X"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("more fields than the header (';' separated)") && !err.contains("truncate_ragged"), "{err}");
}

#[test]
fn lstm_epochs_are_debug_events_and_each_fit_one_info_line() {
    let tmp = tempfile::tempdir().unwrap();
    let fit = |level: &str| {
        let o = bin()
            .env("STOCKCAST_LOG", level)
            .args(["fit", "--model", "configs/models/lstm.toml", "--prices", &dataset("us5_daily.csv")])
            .args(["--train-until", "2004-12-31", "--out"])
            .arg(tmp.path().join(level))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stderr)
    };
    let info = fit("info");
    assert_eq!(info.matches("lstm fitted").count(), 1, "{info}");
    assert_eq!(info.matches("lstm epoch").count(), 0, "{info}");
    let debug = fit("debug");
    assert!(debug.matches("lstm epoch").count() >= 2, "{debug}");
}

#[test]
fn quality_drop_writes_quarantine_and_json_report() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.csv");
    std::fs::write(
        &p,
        "date,symbol,open,high,low,close,volume\n2020-01-02,A,10,11,9,10,1\n2020-01-03,A,10,11,9,oops,1\n\
         2020-01-06,A,10,9,9,10,1\n2020-01-07,A,10,11,9,10,1\n",
    )
    .unwrap();
    let q = dir.path().join("q.csv");
    let j = dir.path().join("r.json");
    let o = run(&[
        "quality",
        "--prices",
        p.to_str().unwrap(),
        "--on-bad-rows",
        "drop",
        "--quarantine",
        q.to_str().unwrap(),
        "--json",
        j.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&j).unwrap()).unwrap();
    assert_eq!(report["rows_read"], 4);
    assert_eq!(report["rows_kept"], 2);
    assert_eq!(report["rows_quarantined"], 2);
    let quarantine = std::fs::read_to_string(&q).unwrap();
    assert_eq!(quarantine.lines().count(), 3, "{quarantine}");
    assert!(quarantine.contains("unparseable") && quarantine.contains("ohlc_inconsistent"));
    assert!(text(&o.stderr).contains("quarantined"), "{}", text(&o.stderr));
    // Default policy (error) on the same file: exit 2, and the JSON report is still written.
    let j2 = dir.path().join("r2.json");
    let o = run(&["quality", "--prices", p.to_str().unwrap(), "--json", j2.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&j2).unwrap()).unwrap();
    let failed: Vec<&serde_json::Value> =
        report["checks"].as_array().unwrap().iter().filter(|c| c["action"] == "failed").collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["check"], "unparseable");
}

#[test]
fn synth_is_deterministic_and_feeds_features() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.csv");
    let b = dir.path().join("b.csv");
    for p in [&a, &b] {
        let o =
            run(&["datasets", "synth", "--symbols", "3", "--days", "300", "--seed", "5", "--out", p.to_str().unwrap()]);
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let out = dir.path().join("f.parquet");
    let o = run(&["features", "--prices", a.to_str().unwrap(), "--out", out.to_str().unwrap(), "--horizon", "3"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(read_parquet(&out).height(), 900);
}

#[test]
fn json_logs_are_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.parquet");
    let o = run(&[
        "--log-format",
        "json",
        "features",
        "--prices",
        &dataset("msft_daily.csv"),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let logs: Vec<serde_json::Value> =
        text(&o.stderr).lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(logs.iter().any(|l| l["message"] == "features computed"), "{}", text(&o.stderr));
}

#[test]
fn spec_prints_a_loadable_spec_with_its_hash() {
    let o = run(&["spec"]);
    assert!(o.status.success());
    let s = text(&o.stdout);
    let spec = stockcast_features::FeatureSpec::from_toml(&s).unwrap();
    assert!(s.contains(&format!("hash: {}", spec.hash())));
}

#[test]
fn demo_runs_every_stage() {
    let dir = tempfile::tempdir().unwrap();
    let out: PathBuf = dir.path().join("demo");
    let o = run(&["demo", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}\n{}", text(&o.stdout), text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(stdout.contains("3/6 model matrix") && stdout.contains("done"), "{stdout}");
    assert!(stdout.contains("5/6 walk-forward") && stdout.contains("| benchmark (equal weight)"), "{stdout}");
    // Step 6: a throwaway Postgres, import, training from the table, recommendations, the server answering.
    assert!(stdout.contains("6/6 Postgres") && stdout.contains("imported 12154 price rows"), "{stdout}");
    assert!(stdout.contains("recommendations (") && stdout.contains("in one transaction"), "{stdout}");
    assert!(stdout.contains("/v1/recommendations?limit=3'\n    200 {"), "{stdout}");
    assert!(stdout.contains("/v1/predict\n    200 {"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("backtest/report.json")).unwrap()).unwrap();
    for kind in ["gbm", "lstm", "linear", "forecast", "momentum", "ensemble"] {
        assert!(report["models"][kind]["sharpe"].is_number(), "{kind} in the demo backtest");
    }
    for kind in ["gbm", "lstm", "linear", "forecast", "rule", "ensemble"] {
        assert!(out.join("models").join(kind).join("model.json").exists(), "{kind}");
        assert!(stdout.contains(&format!("    {kind}")), "{stdout}");
    }
    let df = read_parquet(&out.join("features.parquet"));
    assert!(feature_columns(&df).len() >= 60);
    let q: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("quality.json")).unwrap()).unwrap();
    assert_eq!(q["rows_kept"], 12_154);
    assert_eq!(q["adjusted"], true);
}

#[test]
fn quality_config_file_sets_per_check_policies() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.csv");
    std::fs::write(
        &p,
        "date,symbol,open,high,low,close,volume\n2020-01-02,A,10,11,9,10,1\n2020-03-02,A,10,11,9,10,1\n",
    )
    .unwrap();
    let ok = run(&["quality", "--prices", p.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stderr).contains("gap"), "{}", text(&ok.stderr));
    let cfg = dir.path().join("q.toml");
    std::fs::write(&cfg, "max_gap_calendar_days = 30\n[policies]\ngap = \"error\"\n").unwrap();
    let o = run(&["quality", "--prices", p.to_str().unwrap(), "--quality-config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("check `gap` failed") && text(&o.stderr).contains("line 3"),
        "{}",
        text(&o.stderr)
    );
    std::fs::write(&cfg, "[policies]\nno_such_check = \"error\"\n").unwrap();
    let o = run(&["quality", "--prices", p.to_str().unwrap(), "--quality-config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("invalid quality config"), "{}", text(&o.stderr));
}

fn predict(model_dir: &Path, date: &str) -> Output {
    run(&["predict", "--model-dir", model_dir.to_str().unwrap(), "--prices", &dataset("us5_daily.csv"), "--date", date])
}

#[test]
fn fit_then_predict_with_every_example_config() {
    let dir = tempfile::tempdir().unwrap();
    for kind in ["gbm", "lstm", "linear", "forecast", "rule", "ensemble"] {
        let model_dir = dir.path().join(kind);
        let cfg = format!("configs/models/{kind}.toml");
        let o = run(&[
            "-q",
            "fit",
            "--model",
            &cfg,
            "--prices",
            &dataset("us5_daily.csv"),
            "--train-until",
            "2011-12-30",
            "--out",
            model_dir.to_str().unwrap(),
            "--seed",
            "3",
        ]);
        assert!(o.status.success(), "{kind}: {}", text(&o.stderr));
        assert!(model_dir.join("model.json").exists() && model_dir.join("spec.toml").exists());
        let p = predict(&model_dir, "2012-06-01");
        assert!(p.status.success(), "{kind}: {}", text(&p.stderr));
        let csv = text(&p.stdout);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "symbol,date,score");
        assert_eq!(lines.len(), 6, "{kind}: {csv}");
        assert!(lines[1].starts_with("AAPL,2012-06-01,"));
        let again = predict(&model_dir, "2012-06-01");
        assert_eq!(text(&again.stdout), csv, "{kind}: predictions are reproducible");
    }
    // A date without prices, and a tampered model, are clear user errors.
    let o = predict(&dir.path().join("linear"), "2012-06-02");
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("no prices on 2012-06-02"), "{}", text(&o.stderr));
    std::fs::write(dir.path().join("linear/linear.json"), "{}").unwrap();
    let o = predict(&dir.path().join("linear"), "2012-06-01");
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("altered or truncated"), "{}", text(&o.stderr));
}

/// The files and columns `notebooks/backtest_report.ipynb` declares it reads (its `SCHEMA` line).
fn notebook_schema() -> Vec<(String, Vec<String>)> {
    let nb: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::root().join("notebooks/backtest_report.ipynb")).unwrap())
            .unwrap();
    let line = nb["cells"]
        .as_array()
        .unwrap()
        .iter()
        // nbformat writes a cell's source as one string or as a list of lines.
        .flat_map(|c| {
            let source = match &c["source"] {
                serde_json::Value::Array(parts) => parts.iter().filter_map(|p| p.as_str()).collect::<String>(),
                other => other.as_str().unwrap_or_default().to_owned(),
            };
            source.lines().map(str::to_owned).collect::<Vec<_>>()
        })
        .find(|l| l.starts_with("SCHEMA = "))
        .expect("the notebook declares SCHEMA");
    let schema: serde_json::Value = serde_json::from_str(line.trim_start_matches("SCHEMA = ")).unwrap();
    schema
        .as_object()
        .unwrap()
        .iter()
        .map(|(f, cols)| (f.clone(), cols.as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect()))
        .collect()
}

#[test]
fn backtest_writes_the_documented_report_and_the_files_the_notebook_reads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = run(&["backtest", "--config", "configs/backtest_sma_cross.toml", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(stdout.contains("| sma_10_20 |") && stdout.contains("report.html"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let m = &report["models"]["sma_10_20"];
    for key in stockcast_backtest::report::MODEL_KEYS {
        assert!(m.get(key).is_some(), "report.json lacks models.sma_10_20.{key}");
    }
    assert!(m["total_return"].is_number() && m["trades"].as_u64().unwrap() > 20, "{m}");
    // One symbol: no cross-sectional IC, written as null rather than a made-up number.
    assert!(m["ic"].is_null() && m["rank_ic"].is_null());
    assert_eq!(report["conventions"]["trading_days_per_year"], 252.0);
    assert!(report["feature_spec_hash"].as_str().unwrap().len() >= 16);
    assert!(report["data"]["data_hash"].is_string() && report["seed"] == 0);
    for f in ["report.md", "report.html", "equity.svg", "drawdown.svg", "ic.svg", "folds.svg", "trades.csv"] {
        assert!(out.join(f).exists(), "{f}");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    // Self-contained: the script and the chart data are inline; nothing is fetched at view time.
    assert!(html.contains("id=\"chart-data\"") && html.contains("<script>"), "inline script and data");
    for remote in ["src=\"http", "href=\"http", "src=\"//", "@import"] {
        assert!(!html.contains(remote), "report.html references {remote}");
    }
    for (file, cols) in notebook_schema() {
        let have: Vec<String> = if file == "report.json" {
            report.as_object().unwrap().keys().cloned().collect()
        } else {
            read_parquet(&out.join(&file)).get_column_names().iter().map(ToString::to_string).collect()
        };
        for c in cols {
            assert!(have.contains(&c), "{file} lacks {c} (has {have:?})");
        }
    }
    let eq = read_parquet(&out.join("equity.parquet"));
    assert_eq!(eq.column("date").unwrap().dtype(), &DataType::Date);
}

#[test]
fn backtest_config_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        format!(
            "[data]\nprices = {:?}\nhorizon = 5\n[split]\ngap_days = 2\n[[models]]\nname = \"m\"\nmodel = {{ kind = \"rule\", rule = \"buy_and_hold\" }}\n",
            dataset("us5_daily.csv")
        ),
    )
    .unwrap();
    let o = run(&["backtest", "--config", cfg.to_str().unwrap(), "--out", dir.path().join("r").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("shorter than the label horizon"), "{}", text(&o.stderr));
    std::fs::write(&cfg, "[[models]]\nname = \"m\"\nmodel = { kind = \"rule\", rule = \"nope\" }\n").unwrap();
    let o = run(&["backtest", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("bad.toml") && text(&o.stderr).contains("unknown variant"), "{}", text(&o.stderr));
}

/// Every file under `dir`, relative, with its contents (what must survive a refused command).
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn out_never_deletes_a_folder_stockcast_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let rules = |name: &str| {
        format!(
            "{name}[data]\nprices = {:?}\nhorizon = 5\n[split]\nmin_train_days = 504\ntest_days = 252\n[[models]]\n\
             name = \"m\"\nmodel = {{ kind = \"rule\", rule = \"momentum\", lookback = 20 }}\n",
            dataset("us5_daily.csv")
        )
    };
    let cfg = dir.path().join("bt.toml");
    std::fs::write(&cfg, rules("")).unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let linear = root().join("configs/models/linear.toml");
    let fit_into = |out: &str, cwd: &Path, force: bool| {
        let mut c = bin();
        c.current_dir(cwd).args(["fit", "--model", linear.to_str().unwrap(), "--prices", &dataset("us5_daily.csv")]);
        c.args(["--train-until", "2011-12-30", "--out", out]);
        if force {
            c.arg("--force");
        }
        c.output().unwrap()
    };
    let refused = |o: &Output, what: &str| {
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        assert!(err.contains("refusing to write") && !err.contains("panicked"), "{what}: {err}");
    };

    // A research folder: backtest, fit, features, quality --json and demo refuse it; every file stays.
    let research = dir.path().join("research");
    std::fs::create_dir_all(research.join("data")).unwrap();
    std::fs::write(research.join("thesis.txt"), "years of work").unwrap();
    std::fs::write(research.join("data/x.csv"), "a,b\n1,2\n").unwrap();
    let before = tree(&research);
    let r = research.to_str().unwrap();
    let o = backtest(&cfg, &research, &[]);
    refused(&o, "backtest");
    assert!(text(&o.stderr).contains("thesis.txt") && text(&o.stderr).contains("--force"), "{}", text(&o.stderr));
    refused(&fit_into(r, &root(), false), "fit");
    refused(&run(&["features", "--prices", &dataset("us5_daily.csv"), "--out", r]), "features");
    refused(&run(&["quality", "--prices", &dataset("us5_daily.csv"), "--json", r]), "quality --json");
    refused(&run(&["demo", "--out", r]), "demo");
    assert_eq!(tree(&research), before);
    // Nothing was left beside it (no temporary or moved-aside directory).
    let beside: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(beside.len(), 2, "{beside:?}");

    // `.` and `..` in a scratch working directory, --force or not: refused, nothing removed.
    let scratch = dir.path().join("scratch/work");
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::write(scratch.join("keep.txt"), "keep").unwrap();
    std::fs::write(dir.path().join("scratch/sibling.txt"), "sibling").unwrap();
    let whole = tree(&dir.path().join("scratch"));
    for out in [".", "..", "./", scratch.to_str().unwrap()] {
        for force in [false, true] {
            let mut c = bin();
            c.current_dir(&scratch).args(["backtest", "--config", cfg_s, "--out", out]);
            if force {
                c.arg("--force");
            }
            refused(&c.output().unwrap(), &format!("backtest --out {out} (force {force})"));
            refused(&fit_into(out, &scratch, force), &format!("fit --out {out} (force {force})"));
        }
    }
    assert_eq!(tree(&dir.path().join("scratch")), whole);

    // `name = "/abs/path"` is no run name (the default output would have been that path).
    let victim = dir.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("v.txt"), "v").unwrap();
    let abs = dir.path().join("abs.toml");
    std::fs::write(&abs, rules(&format!("name = {:?}\n", victim.display().to_string()))).unwrap();
    let o = bin().current_dir(&scratch).args(["backtest", "--config", abs.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("plain name"), "{}", text(&o.stderr));
    assert_eq!(std::fs::read_to_string(victim.join("v.txt")).unwrap(), "v");

    // Re-running into an earlier run (or model) replaces it whole.
    let run_dir = dir.path().join("run");
    assert!(backtest(&cfg, &run_dir, &[]).status.success());
    std::fs::write(run_dir.join("stale.txt"), "from the earlier run").unwrap();
    let o = backtest(&cfg, &run_dir, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!run_dir.join("stale.txt").exists() && run_dir.join("report.json").is_file());
    let model_dir = dir.path().join("model");
    assert!(fit_into(model_dir.to_str().unwrap(), &root(), false).status.success());
    std::fs::write(model_dir.join("stale.txt"), "old").unwrap();
    assert!(fit_into(model_dir.to_str().unwrap(), &root(), false).status.success());
    assert!(!model_dir.join("stale.txt").exists() && model_dir.join("model.json").is_file());

    // --force replaces a folder that is not a run, with everything in it.
    let o = backtest(&cfg, &research, &["--force"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!research.join("thesis.txt").exists() && research.join("report.json").is_file());
}

/// A small nightly config (linear + a rule, yearly folds) with a gate floor of `min`.
fn nightly_config(dir: &Path, min: f64, prices: &str) -> PathBuf {
    let p = dir.join(format!("nightly-{min}.toml"));
    std::fs::write(
        &p,
        format!(
            "seed = 7\n[data]\nprices = {prices:?}\nhorizon = 5\n[split]\nmin_train_days = 504\ntest_days = 504\n\
             [[models]]\nname = \"lin\"\nmodel = {{ kind = \"linear\", alpha = 0.01 }}\n\
             [[models]]\nname = \"mom\"\nmodel = {{ kind = \"rule\", rule = \"momentum\", lookback = 20 }}\n\
             [gate]\nmetric = \"rank_ic\"\nmin = {min}\n[final]\ntrain_days = 756\n"
        ),
    )
    .unwrap();
    p
}

fn train(config: &Path, models: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--config",
        config.to_str().unwrap(),
        "--models-dir",
        models.to_str().unwrap(),
        "--as-of",
        "2012-12-31",
        "--created-at",
        "2026-11-23T00:00:00Z",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn train_publishes_promotes_and_models_list_shows_the_champion() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let cfg = nightly_config(dir.path(), -1.0, &dataset("us5_daily.csv"));
    let o = train(&cfg, &models, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(stdout.contains("lin: published version 1") && stdout.contains("PROMOTED to champion"), "{stdout}");
    let list = run(&["models", "list", "--models-dir", models.to_str().unwrap()]);
    let listed = text(&list.stdout);
    assert!(listed.contains("lin@1 [champion]") && listed.contains("mom@1 [champion]"), "{listed}");
    let show = run(&["models", "show", "lin@champion", "--verify", "--models-dir", models.to_str().unwrap()]);
    assert!(show.status.success() && text(&show.stdout).contains("match their sha256"), "{}", text(&show.stderr));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(models.join("lin/1/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["data"]["last_date"], "2012-12-31");
    assert!(manifest["metrics"]["rank_ic"].is_number() && manifest["files"]["model.json"].is_string());
    // The overfitting statistics travel with the version: DSR deflated for the run's trials (2 models).
    let m = &manifest["metrics"];
    assert_eq!(m["trials"], 2, "{m}");
    assert!(m["dsr"].as_f64().is_some_and(|v| (0.0..=1.0).contains(&v)) && m["psr"].is_number(), "{m}");
    assert!(m["dsr"].as_f64() <= m["psr"].as_f64(), "deflating never raises the PSR: {m}");
    // A second run is compared with the champion on the same folds and publishes version 2.
    let o = train(&cfg, &models, &[]);
    assert!(o.status.success() && text(&o.stdout).contains("(champion v1"), "{}", text(&o.stdout));
    assert!(text(&o.stdout).contains("features: reused all"), "{}", text(&o.stdout));
    // Tampering is caught by --verify (exit 2), and rollback restores the previous champion.
    std::fs::write(models.join("lin/2/linear.json"), "{}").unwrap();
    let v = run(&["models", "show", "lin@2", "--verify", "--models-dir", models.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(2), "{}", text(&v.stderr));
    let r = run(&["models", "rollback", "lin", "--models-dir", models.to_str().unwrap()]);
    assert!(r.status.success() && text(&r.stdout).contains("champion 2 -> 1"), "{}", text(&r.stderr));
}

#[test]
fn a_failing_gate_publishes_without_promoting() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let o = train(&nightly_config(dir.path(), 1.0, &dataset("us5_daily.csv")), &models, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("NOT promoted: rank_ic"), "{}", text(&o.stdout));
    assert!(models.join("lin/1/manifest.json").exists());
    let listed = text(&run(&["models", "list", "--models-dir", models.to_str().unwrap()]).stdout);
    assert!(listed.contains("lin@1") && !listed.contains("champion"), "{listed}");
}

#[test]
fn same_config_data_seed_and_as_of_give_identical_metrics_and_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = nightly_config(dir.path(), -1.0, &dataset("us5_daily.csv"));
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    assert!(train(&cfg, &a, &[]).status.success());
    assert!(train(&cfg, &b, &[]).status.success());
    for name in ["lin", "mom"] {
        let read = |root: &Path| -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(root.join(name).join("1/manifest.json")).unwrap()).unwrap()
        };
        assert_eq!(read(&a)["metrics"], read(&b)["metrics"], "{name}");
        let pa = predict(&a.join(name).join("1"), "2012-12-31");
        let pb = predict(&b.join(name).join("1"), "2012-12-31");
        assert!(pa.status.success(), "{}", text(&pa.stderr));
        assert_eq!(text(&pa.stdout), text(&pb.stdout), "{name}");
    }
}

#[test]
fn the_registry_lock_keeps_train_and_models_commands_apart() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let cfg = nightly_config(dir.path(), -1.0, &dataset("us5_daily.csv"));
    let reg = stockcast_models::registry::Registry::new(&models);
    // A live holder whose lock file is still empty (it has not written its pid yet): never taken over.
    std::fs::create_dir_all(&models).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(models.join(stockcast_models::registry::LOCK_FILE))
        .unwrap();
    file.lock().unwrap();
    assert_eq!(std::fs::read_to_string(models.join(stockcast_models::registry::LOCK_FILE)).unwrap(), "");
    let o = train(&cfg, &models, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("holds the registry lock"), "{}", text(&o.stderr));
    assert!(!models.join("lin").exists(), "nothing published while locked");
    file.unlock().unwrap();
    // A lock file left by a dead process (any text) is no lock at all: the kernel released it.
    std::fs::write(models.join(stockcast_models::registry::LOCK_FILE), "pid 999999999 train\n").unwrap();
    let o = train(&cfg, &models, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = train(&cfg, &models, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(reg.versions("lin").unwrap(), [1, 2]);
    // `models gc` waits for a held lock instead of racing a publish, then keeps the champion.
    let held = reg.try_lock("test").unwrap().expect("the lock is free");
    let mut gc = bin()
        .args(["models", "gc", "--models-dir", models.to_str().unwrap(), "--keep", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert!(gc.try_wait().unwrap().is_none(), "gc must wait while the registry is locked");
    drop(held);
    let out = gc.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("waiting for the registry lock held by pid"), "{}", text(&out.stderr));
    let champion = reg.aliases("lin").unwrap().aliases["champion"];
    assert!(reg.versions("lin").unwrap().contains(&champion), "the champion survives gc");
    // Version numbers never go back: after gc removed version 1, the next publish is 3, not a reused number.
    let o = train(&cfg, &models, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(reg.versions("lin").unwrap().last(), Some(&3));
    // --keep 0 is refused.
    let o = bin().args(["models", "gc", "--models-dir", models.to_str().unwrap(), "--keep", "0"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
}

#[test]
fn train_exits_3_on_a_data_quality_failure() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    let mut text_in = std::fs::read_to_string(dataset("us5_daily.csv")).unwrap();
    text_in.push_str("2013-03-04,MSFT,-1,1,1,1,100,1\n");
    std::fs::write(&bad, text_in).unwrap();
    let o = train(&nightly_config(dir.path(), -1.0, bad.to_str().unwrap()), &dir.path().join("m"), &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("MSFT"), "{}", text(&o.stderr));
}

#[test]
fn train_and_recommend_read_the_postgres_prices_table() {
    let cluster = stockcast_infer::testkit::LocalCluster::start().unwrap();
    let url = cluster.create_database("e2e").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let o = run(&[
        "db",
        "import-prices",
        "--database-url",
        &url,
        "--prices",
        &dataset("us5_daily.csv"),
        "--securities",
        &dataset("us5_securities.csv"),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("imported 12154 price rows of 5 symbols"), "{}", text(&o.stdout));

    // The same nightly job from the table and from the file gives the same walk-forward metrics.
    let from_db = dir.path().join("db-models");
    let o = train(&nightly_config(dir.path(), -1.0, &url), &from_db, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("(prices table)"), "{}", text(&o.stderr));
    let from_file = dir.path().join("file-models");
    let file_cfg = dir.path().join("file");
    std::fs::create_dir_all(&file_cfg).unwrap();
    let o = train(&nightly_config(&file_cfg, -1.0, &dataset("us5_daily.csv")), &from_file, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let manifest = |root: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(root.join("lin/1/manifest.json")).unwrap()).unwrap()
    };
    let (mut a, mut b) = (manifest(&from_db), manifest(&from_file));
    // The table carries the securities' sectors (imported with them), the file none: only the sector statistics
    // of the tear sheet differ.
    assert!(a["metrics"]["tearsheet"]["sector_neutral_rank_ic"].is_number(), "{}", a["metrics"]["tearsheet"]);
    assert!(b["metrics"]["tearsheet"]["sector_neutral_rank_ic"].is_null());
    // The attribution splits sector from selection by those sectors: their sum, the market term and the rest agree.
    let part = |m: &serde_json::Value, k: &str| m["metrics"]["attribution"][k].as_f64().unwrap();
    assert!(part(&a, "sector").abs() > 0.0 && part(&b, "sector") == 0.0);
    let split = |m: &serde_json::Value| part(m, "sector") + part(m, "selection");
    assert!((split(&a) - split(&b)).abs() < 1e-12, "{} vs {}", split(&a), split(&b));
    for k in ["market", "other", "total"] {
        assert!((part(&a, k) - part(&b, k)).abs() < 1e-12, "attribution.{k}");
    }
    for m in [&mut a, &mut b] {
        let sheet = m["metrics"]["tearsheet"].as_object_mut().unwrap();
        sheet.remove("ic_by_group");
        sheet.remove("quantile_mean_by_group");
        sheet.remove("sector_neutral_rank_ic");
        m["metrics"].as_object_mut().unwrap().remove("attribution");
    }
    assert_eq!(a["metrics"], b["metrics"]);
    assert!(a["data"]["source"].as_str().unwrap().ends_with("/e2e (prices table)"), "{}", a["data"]);

    // The URL from the environment (not on the command line, where `ps` shows it), with a password parameter:
    // the table is read, and the password appears in no output, log or manifest.
    let from_env = dir.path().join("env-models");
    // The key percent-encoded (`p%61ssword`): the driver decodes it to `password`, so it is the same secret.
    let secret_url = format!("{url}?p%61ssword=hunter2&application_name=stockcast");
    let o = bin()
        .args(["train", "--config"])
        .arg(nightly_config(&file_cfg, -1.0, &dataset("us5_daily.csv")))
        .args([
            "--models-dir",
            from_env.to_str().unwrap(),
            "--as-of",
            "2012-12-31",
            "--created-at",
            "2026-11-23T00:00:00Z",
        ])
        .env("STOCKCAST_DATABASE_URL", &secret_url)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("(prices table)"), "{}", text(&o.stderr));
    let everything = format!(
        "{}{}{}",
        text(&o.stdout),
        text(&o.stderr),
        std::fs::read_to_string(from_env.join("lin/1/manifest.json")).unwrap()
    );
    assert!(!everything.contains("hunter2"), "{everything}");
    assert!(everything.contains("p%61ssword=***"), "{everything}");
    assert_eq!(manifest(&from_env)["metrics"], manifest(&from_db)["metrics"]);

    // Recommendations for a date: stored, then replaced by a rerun.
    let rec = |date: &str| {
        run(&[
            "recommend",
            "--date",
            date,
            "--models-dir",
            from_db.to_str().unwrap(),
            "--database-url",
            &url,
            "--model",
            "lin",
        ])
    };
    let o = rec("2012-12-31");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(
        stdout.contains("lin@1 as of 2012-12-31: 5 recommendations (1 buy, 3 hold, 1 sell) stored as run"),
        "{stdout}"
    );
    assert!(stdout.contains("Information Technology"), "{stdout}");
    let o = rec("2012-12-31");
    assert!(text(&o.stdout).contains("replaced run"), "{}", text(&o.stdout));
    // A holiday is not a trading day of the data: exit 2 with the reason.
    let o = rec("2012-12-25");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("no prices on 2012-12-25"), "{}", text(&o.stderr));
    // An unknown model is a usage error too.
    let o = run(&[
        "recommend",
        "--date",
        "2012-12-31",
        "--models-dir",
        from_db.to_str().unwrap(),
        "--database-url",
        &url,
        "--model",
        "nope",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
}

/// A `stockcast serve` child started from `cmd` (with `--addr` added), after it said it is serving: the child,
/// its remaining stderr, its address and the line that said so.
fn start_serve(
    mut cmd: Command,
) -> (std::process::Child, std::io::BufReader<std::process::ChildStderr>, String, String) {
    use std::io::BufRead as _;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = cmd.args(["--addr", &addr]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("serving") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "server exited before listening");
    }
    (child, stderr, addr, line)
}

/// One `GET path` to `addr` on its own connection: the whole raw response.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

#[test]
fn serve_starts_answers_and_stops_gracefully_on_sigterm() {
    use std::io::Read as _;
    let cluster = stockcast_infer::testkit::LocalCluster::start().unwrap();
    let url = cluster.create_database("serve").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cmd.args(["serve", "--migrate", "--models-dir", dir.path().to_str().unwrap()]).env("DATABASE_URL", &url);
    let (mut child, mut stderr, addr, line) = start_serve(cmd);
    assert!(line.contains("no model yet"), "{line}");
    let resp = http_get(&addr, "/readyz");
    // No champion yet: alive but not ready.
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    assert!(resp.contains("\"database\":\"ok\""), "{resp}");
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
    let status = child.wait().unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "{rest}");
    assert!(rest.contains("server stopped"), "{rest}");

    // Without a database: a usage error (exit 2) that says what to set.
    let o = run(&["serve", "--models-dir", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("DATABASE_URL"), "{}", text(&o.stderr));
}

#[test]
fn created_at_must_be_rfc3339() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = nightly_config(dir.path(), -1.0, &dataset("us5_daily.csv"));
    for bad in ["../x", "2026-11-30", "yesterday", "2026-11-30T22:30:00Z/../../etc"] {
        let o = run(&[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--models-dir",
            dir.path().join("m").to_str().unwrap(),
            "--created-at",
            bad,
        ]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains("RFC 3339"), "{}", text(&o.stderr));
        assert!(!dir.path().join("m").join("runs").exists());
    }
}

#[test]
fn a_concurrent_train_and_gc_lose_no_version_and_no_promotion() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let cfg = nightly_config(dir.path(), -1.0, &dataset("us5_daily.csv"));
    for _ in 0..2 {
        let o = train(&cfg, &models, &[]);
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    // A slower train (a gbm over 11 folds) holds the registry lock while gc --keep 1 is started.
    let slow = dir.path().join("slow.toml");
    std::fs::write(
        &slow,
        format!(
            "[data]\nprices = {:?}\n[split]\nmin_train_days = 504\ntest_days = 252\n[[models]]\nname = \"lin\"\n\
             model = {{ kind = \"gbm\", rounds = 60, max_depth = 4, early_stopping_rounds = 0, nthread = 1 }}\n\
             [gate]\nmetric = \"rank_ic\"\nmin = -1.0\nbeat_champion = false\n",
            dataset("us5_daily.csv")
        ),
    )
    .unwrap();
    let lock = models.join(stockcast_models::registry::LOCK_FILE);
    let first = bin()
        .args(["train", "--config", slow.to_str().unwrap(), "--models-dir", models.to_str().unwrap()])
        .args(["--as-of", "2012-12-31", "--created-at", "2026-11-24T00:00:00Z"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while !std::fs::read_to_string(&lock).unwrap_or_default().contains("train") && t.elapsed().as_secs() < 30 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let gc = bin().args(["models", "gc", "--models-dir", models.to_str().unwrap(), "--keep", "1"]).output().unwrap();
    let trained = first.wait_with_output().unwrap();
    assert!(trained.status.success(), "{}", text(&trained.stderr));
    assert!(gc.status.success(), "{}", text(&gc.stderr));
    assert!(text(&gc.stderr).contains("waiting for the registry lock held by"), "{}", text(&gc.stderr));
    // gc ran after the publish: the new version (3) and the champion survive; numbers never repeat.
    let reg = stockcast_models::registry::Registry::new(&models);
    let versions = reg.versions("lin").unwrap();
    let champion = reg.aliases("lin").unwrap().aliases["champion"];
    assert!(versions.contains(&3) && versions.contains(&champion), "{versions:?}, champion {champion}");
    for v in &versions {
        reg.load("lin", *v).unwrap();
    }
}

/// Runs `stockcast backtest --config cfg --out out` with `extra` arguments.
fn backtest(cfg: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["backtest", "--config", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn a_backtest_in_four_shard_processes_merges_to_the_single_process_run_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    // Every model kind, and a sweep of the ridge's alpha.
    let cfg = every_kind_config(dir.path(), "[sweep.linear]\nalpha = [0.001, 0.1]\n");
    let single = dir.path().join("single");
    let o = backtest(&cfg, &single, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));

    let sharded = dir.path().join("sharded");
    let o = backtest(&cfg, &sharded, &["--plan"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sharded.join("plan.json")).unwrap()).unwrap();
    let tasks = plan["tasks"].as_array().unwrap().len();
    assert!(text(&o.stdout).starts_with(&format!("{tasks} tasks")), "{}", text(&o.stdout));
    // Four processes at once, one fit each; shard 1 reads its index from a Kubernetes-style environment.
    let outputs = all_succeed((0..4).map(|i| {
        let mut c = bin();
        c.args(["backtest", "--config", cfg.to_str().unwrap(), "--out", sharded.to_str().unwrap(), "--jobs", "1"]);
        if i == 1 {
            c.args(["--shards", "4"]).env("JOB_COMPLETION_INDEX", "1");
        } else {
            c.args(["--shard", &format!("{i}/4")]);
        }
        c
    }));
    for (i, o) in outputs.iter().enumerate() {
        assert!(text(&o.stdout).starts_with(&format!("shard {i}/4")), "{}", text(&o.stdout));
    }
    let merge = || run(&["backtest", "merge", "--out", sharded.to_str().unwrap()]);
    let o = merge();
    assert!(o.status.success(), "{}", text(&o.stderr));

    let same = |a: &Path, b: &Path| {
        let (ra, rb) = (report_results(a), report_results(b));
        let names: Vec<&String> = ra["models"].as_object().unwrap().keys().collect();
        for kind in ["gbm", "lstm", "linear[alpha=0.001]", "linear[alpha=0.1]", "forecast", "momentum", "ensemble"] {
            assert!(names.iter().any(|n| *n == kind), "{kind} not in {names:?}");
        }
        assert_eq!(ra, rb, "report.json metrics differ");
        for f in ["predictions.parquet", "equity.parquet"] {
            assert_eq!(std::fs::read(a.join(f)).unwrap(), std::fs::read(b.join(f)).unwrap(), "{f} differs");
        }
    };
    same(&single, &sharded);
    // The merge kept the plan and the shards beside the report.
    assert!(sharded.join("plan.json").exists() && sharded.join("shards/3/shard.json").exists());

    // A scheduler's retry of a shard replaces its output: the merge is unchanged.
    let o = backtest(&cfg, &sharded, &["--shard", "2/4"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(merge().status.success());
    same(&single, &sharded);

    // Three flipped bytes in a shard's predictions (a damaged disk or copy): the merge refuses, naming the file;
    // rerunning the shard repairs it.
    let file = sharded.join("shards/0/predictions.parquet");
    let mut bytes = std::fs::read(&file).unwrap();
    for k in [bytes.len() / 3, bytes.len() / 2, bytes.len() / 2 + 7] {
        bytes[k] ^= 0x5a;
    }
    std::fs::write(&file, &bytes).unwrap();
    let o = merge();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("shards/0/predictions.parquet") && err.contains("damaged or was changed"), "{err}");
    let o = backtest(&cfg, &sharded, &["--shard", "0/4"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(merge().status.success());
    same(&single, &sharded);

    // A shard run with another seed than the plan is refused before any work.
    let o = backtest(&cfg, &sharded, &["--shard", "0/4", "--seed", "9"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("plan.json is stale"), "{}", text(&o.stderr));

    // A missing shard is named.
    std::fs::remove_dir_all(sharded.join("shards/3")).unwrap();
    let o = merge();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("shard(s) 3 of 4 missing"), "{}", text(&o.stderr));

    // Shards of an older plan are named as stale once the plan changes.
    let o = backtest(&cfg, &sharded, &["--plan", "--seed", "9"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = merge();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("shard 0") && text(&o.stderr).contains("stale"), "{}", text(&o.stderr));
}

/// A single-node Slurm cluster started by `scripts/slurm-local.sh`, stopped on drop.
struct Slurm {
    dir: PathBuf,
}

impl Slurm {
    fn start(dir: PathBuf) -> Self {
        let o = Command::new(common::root().join("scripts/slurm-local.sh")).arg("start").arg(&dir).output().unwrap();
        assert!(o.status.success(), "slurm-local.sh start: {}{}", text(&o.stdout), text(&o.stderr));
        Self { dir }
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("slurm.conf")
    }

    /// Waits until job `id` has ended; its final state.
    fn wait(&self, id: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_mins(15);
        loop {
            let s = self.states(id);
            if let Some(s) =
                s.first().filter(|s| !["PENDING", "RUNNING", "CONFIGURING", "COMPLETING"].contains(&s.as_str()))
            {
                return s.clone();
            }
            assert!(std::time::Instant::now() < deadline, "job {id} still {s:?}");
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }

    /// `JobState` of every task of job `id` (`scontrol show job`).
    fn states(&self, id: &str) -> Vec<String> {
        let o =
            Command::new("scontrol").args(["show", "job", "-o", id]).env("SLURM_CONF", self.conf()).output().unwrap();
        text(&o.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().find_map(|f| f.strip_prefix("JobState=")).map(str::to_owned))
            .collect()
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        let _ = Command::new(common::root().join("scripts/slurm-local.sh")).arg("stop").arg(&self.dir).status();
    }
}

#[test]
fn slurm_arrays_of_shards_and_their_merge_jobs_equal_the_single_process_runs() {
    let dir = tempfile::tempdir().unwrap();
    let slurm = Slurm::start(dir.path().join("slurm"));
    let cfg = every_kind_config(dir.path(), "");
    let single = dir.path().join("single");
    let o = backtest(&cfg, &single, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));

    let out = dir.path().join("sharded");
    let o = Command::new(common::root().join("deploy/slurm/submit.sh"))
        .arg(&cfg)
        .arg(&out)
        .arg("4")
        .env("SLURM_CONF", slurm.conf())
        .env("STOCKCAST_BIN", env!("CARGO_BIN_EXE_stockcast"))
        .output()
        .unwrap();
    assert!(o.status.success(), "submit.sh: {}", text(&o.stderr));
    let ids: Vec<String> = text(&o.stdout).split_whitespace().map(str::to_owned).collect();
    assert_eq!(ids.len(), 2, "{}", text(&o.stdout));
    let merge_state = slurm.wait(&ids[1]);
    let log = |f: &str| std::fs::read_to_string(out.join("logs").join(f)).unwrap_or_default();
    assert_eq!(merge_state, "COMPLETED", "merge: {}\nshard 0: {}", log("merge.out"), log("shard-0.out"));
    // Four array tasks, each completed, each with its log kept beside the report.
    let tasks = slurm.states(&ids[0]);
    assert_eq!(tasks, vec!["COMPLETED"; 4], "{tasks:?}");
    for i in 0..4 {
        assert!(log(&format!("shard-{i}.out")).contains(&format!("shard {i}/4")), "{}", log(&format!("shard-{i}.out")));
    }
    assert_eq!(report_results(&single), report_results(&out), "report.json metrics differ");
    for f in ["predictions.parquet", "equity.parquet"] {
        assert_eq!(std::fs::read(single.join(f)).unwrap(), std::fs::read(out.join(f)).unwrap(), "{f} differs");
    }

    // A nightly run as a 2-task array and its merge publishes what one process publishes.
    let nightly = nightly_config(dir.path(), -1.0, &dataset("us5_daily.csv"));
    let (one, many) = (dir.path().join("registry-one"), dir.path().join("registry-slurm"));
    let o = run(&["train", "--config", nightly.to_str().unwrap(), "--models-dir", one.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let run_dir = dir.path().join("nightly-run");
    let o = Command::new(common::root().join("deploy/slurm/submit.sh"))
        .arg("--train")
        .arg(&nightly)
        .arg(&run_dir)
        .arg("2")
        .env("SLURM_CONF", slurm.conf())
        .env("STOCKCAST_BIN", env!("CARGO_BIN_EXE_stockcast"))
        .env("STOCKCAST_MODELS_DIR", &many)
        .output()
        .unwrap();
    assert!(o.status.success(), "submit.sh --train: {}", text(&o.stderr));
    let ids: Vec<String> = text(&o.stdout).split_whitespace().map(str::to_owned).collect();
    let merge_log = || std::fs::read_to_string(run_dir.join("logs/merge.out")).unwrap_or_default();
    assert_eq!(slurm.wait(&ids[1]), "COMPLETED", "{}", merge_log());
    for name in ["lin", "mom"] {
        let manifest = |r: &Path| -> serde_json::Value {
            let m = r.join(name).join("1/manifest.json");
            let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&m).unwrap()).unwrap();
            v.as_object_mut().unwrap().remove("created_at");
            v
        };
        // The same files (sha256 of each), metrics and data: the same version.
        assert_eq!(manifest(&one), manifest(&many), "{name}");
    }
}

/// Starts every command at once, then waits for all of them; each must succeed.
fn all_succeed(commands: impl Iterator<Item = Command>) -> Vec<Output> {
    let children: Vec<_> = commands
        .map(|mut c| c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap())
        .collect();
    children
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", text(&o.stderr));
            o
        })
        .collect()
}

/// `bin()` with the environment of an S3 client of `s3`.
fn s3_bin(s3: &stockcast_infer::testkit::LocalS3) -> Command {
    let mut c = bin();
    for (k, v) in s3.env() {
        c.env(k, v);
    }
    c
}

fn s3_run(s3: &stockcast_infer::testkit::LocalS3, args: &[&str]) -> Output {
    s3_bin(s3).args(args).output().unwrap()
}

#[test]
fn runs_prices_and_shards_on_an_s3_server_give_the_local_results() {
    let s3 = stockcast_infer::testkit::LocalS3::start().unwrap();
    s3.create_bucket("stockcast").unwrap();
    let csv = std::fs::read(dataset("us5_daily.csv")).unwrap();
    s3.put_object("stockcast", "data/us5_daily.csv", &csv).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("backtest.toml");
    std::fs::write(
        &cfg,
        format!(
            "seed = 7\n[data]\nprices = {:?}\nhorizon = 5\n[split]\nmin_train_days = 504\ntest_days = 504\n\
             [[models]]\nname = \"lin\"\nmodel = {{ kind = \"linear\", alpha = 0.01 }}\n\
             [[models]]\nname = \"mom\"\nmodel = {{ kind = \"rule\", rule = \"momentum\", lookback = 20 }}\n",
            dataset("us5_daily.csv")
        ),
    )
    .unwrap();
    let local = dir.path().join("local");
    let o = backtest(&cfg, &local, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));

    // Prices read from the bucket, the run written to it.
    let prices = "s3://stockcast/data/us5_daily.csv";
    let o = s3_run(
        &s3,
        &["backtest", "--config", cfg.to_str().unwrap(), "--prices", prices, "--out", "s3://stockcast/runs/a"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("s3://stockcast/runs/a/report.html"), "{}", text(&o.stdout));
    let fetched = |run: &str, to: &Path| {
        std::fs::create_dir_all(to).unwrap();
        for f in ["report.json", "predictions.parquet", "equity.parquet"] {
            let bytes = s3.get_object("stockcast", &format!("runs/{run}/{f}")).unwrap();
            std::fs::write(to.join(f), bytes.unwrap_or_else(|| panic!("runs/{run}/{f} not uploaded"))).unwrap();
        }
    };
    let same = |run: &Path| {
        // The same results; only the recorded price source differs (the file, or its copy in the bucket).
        let (mut a, mut b) = (report_results(&local), report_results(run));
        for r in [&mut a, &mut b] {
            r["data"].as_object_mut().unwrap().remove("prices");
        }
        assert!(a == b, "report.json metrics differ");
        for f in ["predictions.parquet", "equity.parquet"] {
            assert_eq!(std::fs::read(local.join(f)).unwrap(), std::fs::read(run.join(f)).unwrap(), "{f} differs");
        }
    };
    fetched("a", &dir.path().join("a"));
    same(&dir.path().join("a"));
    let keys = s3.list("stockcast", "runs/a").unwrap();
    assert!(keys.iter().any(|k| k.starts_with("runs/a/plots/")), "{keys:?}");
    assert!(!keys.iter().any(|k| k.ends_with("upload.json")), "the upload marker is removed at the end");

    // A rerun killed during its upload (the fault hook aborts the process before its 4th object write) leaves a
    // prefix that does not look like a finished run: the earlier report.json was removed before any new file went
    // up, and the upload marker says what it is. A rerun then replaces it (the marker makes the prefix ours).
    let again = ["backtest", "--config", cfg.to_str().unwrap(), "--prices", prices, "--out", "s3://stockcast/runs/a"];
    let o =
        s3_bin(&s3).env("STOCKCAST_FAULT_ABORT_AFTER_PUTS", "3").args(again).args(["--seed", "9"]).output().unwrap();
    assert!(!o.status.success(), "the fault hook stops the upload");
    assert!(s3.get_object("stockcast", "runs/a/report.json").unwrap().is_none(), "an old report.json beside new files");
    assert!(s3.get_object("stockcast", "runs/a/upload.json").unwrap().is_some());
    let o = s3_run(&s3, &again);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(s3.get_object("stockcast", "runs/a/report.json").unwrap().is_some());
    assert!(s3.get_object("stockcast", "runs/a/upload.json").unwrap().is_none());
    fetched("a", &dir.path().join("a2"));
    same(&dir.path().join("a2"));

    // A sharded run whose plan, shards and report all live in the bucket.
    let out = "s3://stockcast/runs/b";
    let c = cfg.to_str().unwrap();
    let o = s3_run(&s3, &["backtest", "--config", c, "--out", out, "--plan"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for i in 0..2 {
        let o = s3_run(&s3, &["backtest", "--config", c, "--out", out, "--shard", &format!("{i}/2")]);
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    let o = s3_run(&s3, &["backtest", "merge", "--out", out]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    fetched("b", &dir.path().join("b"));
    same(&dir.path().join("b"));
    assert!(s3.get_object("stockcast", "runs/b/shards/1/shard.json").unwrap().is_some(), "shards kept");
    // A missing shard is named, as on a filesystem.
    let o = s3_run(&s3, &["backtest", "--config", c, "--out", "s3://stockcast/runs/c", "--shard", "1/2"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = s3_run(&s3, &["backtest", "merge", "--out", "s3://stockcast/runs/c"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("shard(s) 0 of 2 missing"), "{}", text(&o.stderr));
    // A prefix holding objects that are no run's is refused (exit 2) and keeps them; --force replaces them.
    s3.put_object("stockcast", "research/thesis.txt", b"years of work").unwrap();
    let o = s3_run(&s3, &["backtest", "--config", c, "--out", "s3://stockcast/research"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("research/thesis.txt") || text(&o.stderr).contains("thesis.txt"));
    assert_eq!(s3.list("stockcast", "research").unwrap(), ["research/thesis.txt"]);
    let o = s3_run(&s3, &["backtest", "--config", c, "--out", "s3://stockcast/research", "--force"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(s3.get_object("stockcast", "research/thesis.txt").unwrap().is_none());
    assert!(s3.get_object("stockcast", "research/report.json").unwrap().is_some());
}

#[test]
fn an_s3_registry_takes_concurrent_trains_and_promotions_and_loses_nothing() {
    let s3 = stockcast_infer::testkit::LocalS3::start().unwrap();
    s3.create_bucket("stockcast").unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A floor every run passes: each train promotes what it publishes.
    let cfg = nightly_config(dir.path(), -1.0, &dataset("us5_daily.csv"));
    let models = "s3://stockcast/models";
    // Two nightly jobs at once: there is no lock on an object store, so both run to the end.
    all_succeed((0..2).map(|i| {
        let mut c = s3_bin(&s3);
        c.args(["train", "--config", cfg.to_str().unwrap(), "--models-dir", models])
            .args(["--created-at", &format!("2026-11-30T22:0{i}:00Z")]);
        c
    }));
    let aliases = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&s3.get_object("stockcast", &format!("models/{name}/aliases.json")).unwrap().unwrap())
            .unwrap()
    };
    for name in ["lin", "mom"] {
        // Two distinct versions, each complete; both promotions recorded.
        for v in [1, 2] {
            let o = s3_run(&s3, &["models", "show", &format!("{name}@{v}"), "--verify", "--models-dir", models]);
            assert!(o.status.success(), "{name}@{v}: {}", text(&o.stderr));
            assert!(text(&o.stdout).contains("match their sha256"), "{}", text(&o.stdout));
        }
        assert!(s3.get_object("stockcast", &format!("models/{name}/3/manifest.json")).unwrap().is_none());
        let history = aliases(name)["history"].as_array().unwrap().len();
        assert_eq!(history, 2, "{name}: {}", aliases(name));
    }
    // Eight promotions at once through conditional puts: every move is in the history, none overwritten.
    all_succeed((0..8).map(|i| {
        let mut c = s3_bin(&s3);
        c.args(["models", "promote", "lin", &(1 + i % 2).to_string(), "--models-dir", models])
            .args(["--alias", if i < 4 { "champion" } else { "staging" }]);
        c
    }));
    let a = aliases("lin");
    assert_eq!(a["history"].as_array().unwrap().len(), 10, "{a}");
    let staging = a["history"].as_array().unwrap().iter().filter(|m| m["alias"] == "staging").count();
    assert_eq!(staging, 4, "{a}");
    // The list reads the bucket like a directory.
    let o = s3_run(&s3, &["models", "list", "--models-dir", models]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let listed = text(&o.stdout);
    assert_eq!(listed.lines().filter(|l| l.starts_with("lin@")).count(), 2, "{listed}");
    assert_eq!(s3.list("stockcast", "models/runs").unwrap().len(), 2, "both run summaries uploaded");

    // The server loads the champions from the bucket.
    let cluster = stockcast_infer::testkit::LocalCluster::start().unwrap();
    let url = cluster.create_database("s3serve").unwrap();
    let mut cmd = s3_bin(&s3);
    cmd.args(["serve", "--migrate", "--models-dir", models]).env("DATABASE_URL", &url);
    let (mut child, _stderr, addr, _) = start_serve(cmd);
    let resp = http_get(&addr, "/v1/models");
    let _ = child.kill();
    let _ = child.wait();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let champion = a["aliases"]["champion"].as_u64().unwrap();
    assert!(resp.contains("\"lin\"") && resp.contains(&format!("\"version\":{champion}")), "{resp}");
}

#[test]
fn a_sharded_nightly_run_publishes_and_promotes_what_one_process_does() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = nightly_config(dir.path(), -1.0, &dataset("us5_daily.csv"));
    // `train` of the other tests with this run's creation time instead of theirs.
    let train = |cfg: &Path, models: &Path, extra: &[&str]| {
        let (at, rest) = extra.split_at(2);
        let mut args = vec!["train", "--config", cfg.to_str().unwrap(), "--models-dir", models.to_str().unwrap()];
        args.extend_from_slice(&["--as-of", "2012-12-31", at[0], at[1]]);
        args.extend_from_slice(rest);
        run(&args)
    };
    let (single, sharded) = (dir.path().join("single"), dir.path().join("sharded"));
    let version_files = |models: &Path, v: u64| -> Vec<(String, Vec<u8>)> {
        ["lin", "mom"]
            .iter()
            .flat_map(|m| {
                let d = models.join(m).join(v.to_string());
                let mut files: Vec<_> = std::fs::read_dir(&d)
                    .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
                    .map(|e| e.unwrap().path())
                    .collect();
                files.sort();
                files.into_iter().map(|f| {
                    (f.display().to_string().replace(&*models.to_string_lossy(), ""), std::fs::read(&f).unwrap())
                })
            })
            .collect()
    };
    // Two nightly rounds (the second evaluates the first's champions too), each once in one process and once as
    // a plan, two shard processes and a merge.
    for (round, created) in [(1, "2026-11-23T00:00:00Z"), (2, "2026-11-24T00:00:00Z")] {
        let run_dir = dir.path().join(format!("run{round}"));
        let rd = run_dir.to_str().unwrap();
        let at = ["--created-at", created];
        let o = train(&cfg, &single, &at);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let o = train(&cfg, &sharded, &[&at[..], &["--run-dir", rd, "--plan"]].concat());
        assert!(o.status.success(), "{}", text(&o.stderr));
        for i in 0..2 {
            let o = train(&cfg, &sharded, &[&at[..], &["--run-dir", rd, "--shard", &format!("{i}/2")]].concat());
            assert!(o.status.success(), "{}", text(&o.stderr));
        }
        assert!(!sharded.join("lin").join(round.to_string()).exists(), "shards publish nothing");
        let o = train(&cfg, &sharded, &[&at[..], &["--run-dir", rd, "--merge"]].concat());
        assert!(o.status.success(), "{}", text(&o.stderr));
        // Bit for bit the same versions (model files, manifests with their metrics) and the same promotions.
        assert_eq!(version_files(&single, round), version_files(&sharded, round), "round {round}");
        for m in ["lin", "mom"] {
            let aliases = |d: &Path| std::fs::read(d.join(m).join("aliases.json")).unwrap();
            assert_eq!(aliases(&single), aliases(&sharded), "{m} aliases, round {round}");
        }
    }
    // Shards planned before a champion moved are stale: their walk-forward compared against another champion.
    let rd = dir.path().join("run3");
    let rd = rd.to_str().unwrap();
    let at = ["--created-at", "2026-11-25T00:00:00Z"];
    for extra in [&["--plan"][..], &["--shard", "0/1"][..]] {
        let o = train(&cfg, &sharded, &[&at[..], &["--run-dir", rd], extra].concat());
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    let o = train(&cfg, &sharded, &at);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = train(&cfg, &sharded, &[&at[..], &["--run-dir", rd, "--merge"]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("stale"), "{}", text(&o.stderr));
}

#[test]
fn the_nightly_outcome_is_written_as_metrics_and_the_alert_rules_pass_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let prices = dataset("us5_daily.csv");
    let metrics = dir.path().join("stockcast_train.prom");
    let m = metrics.to_str().unwrap();
    // A finished run: success, when (the --created-at time), what it published and promoted, the gate values.
    let o = train(&nightly_config(dir.path(), -1.0, &prices), &dir.path().join("models"), &["--metrics-file", m]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let ok = std::fs::read_to_string(&metrics).unwrap();
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(series) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert!((value(&ok, "stockcast_train_success") - 1.0).abs() < 1e-9, "{ok}");
    let created = chrono::DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z").unwrap().timestamp() as f64;
    assert!((value(&ok, "stockcast_train_last_success_timestamp_seconds") - created).abs() < 1e-9, "{ok}");
    assert!((value(&ok, "stockcast_train_versions_published") - 2.0).abs() < 1e-9, "{ok}");
    assert!(
        ok.contains("stockcast_train_promoted{")
            && ok.contains("model=\"lin\"")
            && ok.contains("stockcast_train_gate_value{")
    );
    let as_of =
        chrono::NaiveDate::from_ymd_opt(2012, 12, 31).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp();
    assert!((value(&ok, "stockcast_train_data_last_date_timestamp_seconds") - as_of as f64).abs() < 1e-9);
    // A failed run (its prices are missing): success 0, and the error still exits 2.
    let o = train(
        &nightly_config(dir.path(), -1.0, "/nonexistent/prices.csv"),
        &dir.path().join("models"),
        &["--metrics-file", m],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let failed = std::fs::read_to_string(&metrics).unwrap();
    assert!(value(&failed, "stockcast_train_success").abs() < 1e-9, "{failed}");
    assert!(!failed.contains("stockcast_train_last_success_timestamp_seconds"), "{failed}");
    // Both are valid exposition text, and the alert rules load and pass their unit tests.
    let promtool = |args: &[&str], stdin: Option<&str>| {
        let mut c = Command::new("promtool");
        c.args(args).current_dir(common::root().join("deploy/prometheus"));
        if let Some(s) = stdin {
            use std::io::Write as _;
            let mut child = c
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
            child.wait_with_output().unwrap()
        } else {
            c.output().unwrap()
        }
    };
    for text in [&ok, &failed] {
        let o = promtool(&["check", "metrics"], Some(text));
        assert!(o.status.success(), "{}{}\n{text}", self::text(&o.stdout), self::text(&o.stderr));
    }
    let o = promtool(&["check", "rules", "stockcast-alerts.yml"], None);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    let o = promtool(&["test", "rules", "stockcast-alerts.test.yml"], None);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    // Every series the alert rules and the Grafana dashboard query is one stockcast exports: the nightly file
    // above or the server's exposition.
    let server = stockcast_infer::server::metrics::Metrics::default();
    server.observe("/v1/predict", "POST", 200, std::time::Duration::from_millis(1));
    server.reload("ok");
    let exported: std::collections::BTreeSet<String> =
        [ok.as_str(), &server.render(&stockcast_infer::server::metrics::Snapshot::default())]
            .iter()
            .flat_map(|t| t.lines())
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next().map(str::to_owned))
            .collect();
    let deploy = common::root().join("deploy");
    let dashboard = std::fs::read_to_string(deploy.join("grafana/stockcast.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(parsed["panels"].as_array().is_some_and(|p| p.len() >= 10));
    let rules = std::fs::read_to_string(deploy.join("prometheus/stockcast-alerts.yml")).unwrap();
    let mut queried = std::collections::BTreeSet::new();
    for text in [&dashboard, &rules] {
        let mut rest = text.as_str();
        while let Some(i) = rest.find("stockcast_") {
            let name: String =
                rest[i..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
            rest = &rest[i + name.len()..];
            queried.insert(name);
        }
    }
    let missing: Vec<&String> = queried.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}\nexported: {exported:?}");
}
