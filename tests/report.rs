//! The backtest report: rendered in headless Chromium, its tear-sheet numbers recomputed here from the run's
//! Parquet files, its PNGs decoded, and `report compare` on two runs.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, clippy::missing_panics_doc)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{Datelike, NaiveDate};
use stockcast_features::polars::prelude::*;

mod common;
use common::{read_parquet, root, run, text};

/// A small backtest of us5: a boosted-tree model, a linear one (both with feature importance) and a rule.
fn backtest(dir: &Path, seed: u64) -> PathBuf {
    let cfg = dir.join("bt.toml");
    // TOML strings of the bundled files' paths.
    let data = format!("{:?}", root().join("datasets/us5_daily.csv").display().to_string());
    let index = format!("{:?}", root().join("datasets/sp500_index_close.csv").display().to_string());
    std::fs::write(
        &cfg,
        format!(
            r#"seed = {seed}
[data]
prices = {data}
index = {index}
horizon = 5
[split]
min_train_days = 504
test_days = 252
valid_days = 63
[[models]]
name = "gbm"
model = {{ kind = "gbm", rounds = 40, eta = 0.1, max_depth = 3, subsample = 0.8, early_stopping_rounds = 10, nthread = 2 }}
[[models]]
name = "linear"
model = {{ kind = "linear", alpha = 0.001 }}
[[models]]
name = "momentum"
model = {{ kind = "rule", rule = "momentum", lookback = 60 }}
[strategy]
kind = "top_k"
k = 2
rebalance_days = 5
[report]
quantiles = 3
"#
        ),
    )
    .unwrap();
    let out = dir.join(format!("run{seed}"));
    let o = run(&["--quiet", "backtest", "--config", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    out
}

fn chromium() -> String {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new("which").arg(c).output().is_ok_and(|o| o.status.success()) {
            return c.to_owned();
        }
    }
    panic!("headless Chromium is needed (scripts/setup.sh installs the Debian package `chromium`)");
}

/// Attribute `name` of every `<tag ...>` in `html` whose opening tag contains `marker`.
fn attrs(html: &str, marker: &str, name: &str) -> Vec<String> {
    html.split('<')
        .filter(|t| t.contains(marker))
        .filter_map(|t| {
            let at = t.find(&format!("{name}=\""))? + name.len() + 2;
            Some(t[at..at + t[at..].find('"')?].to_owned())
        })
        .collect()
}

/// A page that frames the report (REPORT_URL), clicks, hovers and drags on its equity chart, and writes what
/// happened as JSON into `#out`.
const DRIVER: &str = r#"<html><body><div id="out">pending</div>
<iframe id="f" src="REPORT_URL" width="1200" height="900"></iframe>
<script>
document.getElementById("f").addEventListener("load", function () {
  var out = {};
  try {
    var fig = document.getElementById("f").contentDocument.getElementById("chart-equity");
    var paths = function () { return fig.querySelectorAll("path.series").length; };
    var firstDate = function () {
      return Array.prototype.map.call(fig.querySelectorAll("svg text"), function (t) { return t.textContent; })
        .filter(function (t) { return /^\d{4}-/.test(t); })[0];
    };
    var overlay = function () { var r = fig.querySelectorAll("svg rect"); return r[r.length - 1]; };
    var ev = function (type, x) {
      var r = fig.querySelector("svg").getBoundingClientRect();
      overlay().dispatchEvent(new MouseEvent(type, {bubbles: true, clientX: r.left + x * r.width, clientY: r.top + r.height / 2}));
    };
    out.before = paths();
    out.shadesAtLoad = fig.querySelectorAll("rect.shade").length;
    fig.querySelector(".legend span").dispatchEvent(new MouseEvent("click", {bubbles: true}));
    out.afterToggle = paths();
    out.labelBefore = firstDate();
    ev("mousemove", 0.5);
    out.tip = fig.querySelector(".tip").style.display + "|" + fig.querySelector(".tip").textContent;
    ev("mousedown", 0.5); ev("mousemove", 0.7); ev("mouseup", 0.7);
    out.labelAfter = firstDate();
    var yLabels = function () {
      return Array.prototype.map.call(fig.querySelectorAll("svg text"), function (t) { return t.textContent; })
        .filter(function (t) { return /%$/.test(t); }).join(",");
    };
    var yOfZero = function () {
      return Array.prototype.filter.call(fig.querySelectorAll("svg text"), function (t) { return t.textContent === "0.00%"; })
        .map(function (t) { return t.getAttribute("y"); }).join(",");
    };
    out.linear = yLabels() + "|" + yOfZero();
    var toggle = fig.querySelector(".log-toggle");
    toggle.checked = true; toggle.dispatchEvent(new Event("change"));
    out.log = yLabels() + "|" + yOfZero();
    var doc = document.getElementById("f").contentDocument, pick = doc.getElementById("model-select");
    var shown = function () {
      return Array.prototype.filter.call(doc.querySelectorAll("figure[data-model]"), function (f) {
        return !f.classList.contains("hidden-model");
      });
    };
    out.models = pick.options.length - 1;
    out.firstPicked = pick.value === pick.options[1].value;
    out.shownAtLoad = shown().map(function (f) { return f.getAttribute("data-model"); })
      .filter(function (m, i, a) { return a.indexOf(m) === i; });
    pick.value = pick.options[2].value; pick.dispatchEvent(new Event("change"));
    out.picked = pick.value;
    out.pathsPicked = paths();
    out.shades = fig.querySelectorAll("rect.shade").length;
    out.wrong = shown().filter(function (f) { return f.getAttribute("data-model") !== pick.value; }).length;
    pick.value = ""; pick.dispatchEvent(new Event("change"));
    out.hiddenAll = doc.querySelectorAll("figure.hidden-model").length;
  } catch (e) { out.error = String(e); }
  document.getElementById("out").textContent = JSON.stringify(out);
});
</script></body></html>"#;

fn decode_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn the_report_renders_in_chromium_with_every_section_and_chart_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = backtest(dir.path(), 42);
    let page = run_dir.join("report.html");
    let url = format!("file://{}", page.display());
    let browser = chromium();
    let headless = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"];
    let dom = Command::new(&browser).args(headless).args(["--dump-dom", &url]).output().unwrap();
    assert!(dom.status.success(), "{}", text(&dom.stderr));
    let (html, log) = (text(&dom.stdout), text(&dom.stderr));
    // The page logs nothing: any console line (an error, an uncaught exception) fails.
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console output: {console:?}");
    assert!(html.contains("data-charts-drawn=\"yes\""), "the chart script did not run to its end");
    for section in ["summary", "performance", "signal", "folds", "trades", "models", "conventions"] {
        assert!(html.contains(&format!("<section id=\"{section}\"")), "section {section} missing");
    }
    // Every chart in the page is drawn with data: its figure counts the paths/rects drawn, and the SVG has them.
    let ids = attrs(&html, "figure class=\"chart\"", "data-chart");
    let drawn = attrs(&html, "figure class=\"chart\"", "data-drawn");
    assert!(ids.len() >= 20, "{} charts", ids.len());
    assert_eq!(ids.len(), drawn.len(), "a figure was never drawn");
    for (id, n) in ids.iter().zip(&drawn) {
        assert!(n.parse::<usize>().unwrap() > 0, "chart {id} drew nothing");
        assert!(
            run_dir.join(format!("plots/{id}.png")).exists() && run_dir.join(format!("plots/{id}.parquet")).exists()
        );
    }
    for id in [
        "equity",
        "drawdown",
        "rolling_sharpe",
        "monthly_gbm",
        "quantile_cum_gbm",
        "ic_decay",
        "importance_gbm",
        "importance_linear",
    ] {
        assert!(ids.iter().any(|x| x == id), "chart {id} missing");
    }
    let paths = html.matches("<path d=\"M").count();
    assert!(paths >= 20, "{paths} drawn line paths");
    // The trades table lists trades; the tables are sortable.
    assert!(html.matches("<tr>").count() > 50 && html.contains("class=\"sortable\""));
    // Interaction, driven from a page that frames the report: a legend click hides a line, hovering shows the
    // values, a drag across the chart zooms into that date range.
    let wrapper = dir.path().join("drive.html");
    std::fs::write(&wrapper, DRIVER.replace("REPORT_URL", &url)).unwrap();
    let driven = Command::new(&browser)
        .args(headless)
        .args(["--allow-file-access-from-files", "--dump-dom", &format!("file://{}", wrapper.display())])
        .output()
        .unwrap();
    let dom = text(&driven.stdout);
    let at = dom.find("<div id=\"out\">").expect("the driver's output") + "<div id=\"out\">".len();
    let result: serde_json::Value = serde_json::from_str(&dom[at..at + dom[at..].find('<').unwrap()]).unwrap();
    assert!(result.get("error").is_none(), "{result}");
    assert_eq!(result["afterToggle"].as_u64().unwrap() + 1, result["before"].as_u64().unwrap(), "{result}");
    assert!(result["tip"].as_str().unwrap().starts_with("block|"), "{result}");
    let (before, after) = (result["labelBefore"].as_str().unwrap(), result["labelAfter"].as_str().unwrap());
    assert!(after > before, "zooming moved the first date from {before} to {after}");
    // The log toggle moves the axis labels (0 % sits elsewhere on a log scale of 1 + return). The picker starts
    // on the first model: only its per-model charts show, and its drawdowns are shaded. Picking the second shows
    // only that one's, shades its drawdowns and leaves the comparison lines alone; "all models" shows every chart.
    assert_ne!(result["linear"], result["log"], "{result}");
    assert!(result["models"].as_u64().unwrap() >= 2 && result["firstPicked"] == true, "{result}");
    assert_eq!(result["shownAtLoad"].as_array().unwrap().len(), 1, "{result}");
    assert!(result["shadesAtLoad"].as_u64().unwrap() > 0 && result["shades"].as_u64().unwrap() > 0, "{result}");
    assert_eq!(result["pathsPicked"], result["afterToggle"], "{result}");
    assert!(result["wrong"].as_u64() == Some(0) && result["hiddenAll"].as_u64() == Some(0), "{result}");
    // A screenshot of the rendered page.
    let shot = dir.path().join("report.png");
    let s = Command::new(&browser)
        .args(headless)
        .args([&format!("--screenshot={}", shot.display()), "--window-size=1200,2000", &url])
        .output()
        .unwrap();
    assert!(s.status.success(), "{}", text(&s.stderr));
    let (w, h, pixels) = decode_png(&shot);
    assert_eq!((w, h), (1200, 2000));
    let dark = pixels.chunks(3).filter(|p| p.iter().all(|&c| c < 200)).count();
    assert!(dark > 10_000, "the screenshot is nearly blank ({dark} dark pixels)");
}

#[test]
fn every_png_is_a_real_image_of_the_stated_size() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = backtest(dir.path(), 42);
    let mut n = 0;
    for f in std::fs::read_dir(run_dir.join("plots")).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "png") {
            let (w, h, pixels) = decode_png(&p);
            assert_eq!((w, h), stockcast_backtest::charts::PNG_SIZE, "{}", p.display());
            let coloured = pixels.chunks(3).filter(|px| px.iter().any(|&c| c < 230)).count();
            assert!(coloured > 2_000, "{}: {coloured} non-white pixels", p.display());
            n += 1;
        }
    }
    assert!(n >= 20, "{n} PNGs");
}

/// The four static SVG plots come from the same renderer and palette as the PNGs and the page: a document of the
/// PNG's size with its title, and each series drawn in its palette colour.
#[test]
fn the_static_svg_plots_share_the_renderer_and_palette() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = backtest(dir.path(), 42);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("report.json")).unwrap()).unwrap();
    let models = report["models"].as_object().unwrap().len();
    let palette: Vec<String> =
        stockcast_backtest::charts::palette_attr().split(',').map(str::to_ascii_uppercase).collect();
    let (w, h) = stockcast_backtest::charts::PNG_SIZE;
    for (file, title, series) in [
        ("equity.svg", "Equity vs benchmark", models + 1),
        ("drawdown.svg", "Drawdown", models),
        ("ic.svg", "Mean Rank IC per month", models),
        ("folds.svg", "Rank IC per fold", models),
    ] {
        let svg = std::fs::read_to_string(run_dir.join(file)).unwrap();
        assert!(svg.starts_with(&format!(r#"<svg width="{w}" height="{h}""#)), "{file}: {}", &svg[..80]);
        assert!(svg.contains(title), "{file}: no title");
        for color in palette.iter().take(series.min(palette.len())) {
            assert!(svg.to_ascii_uppercase().contains(color.as_str()), "{file}: no series in {color}");
        }
    }
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.contains(&format!(r#"data-palette="{}""#, stockcast_backtest::charts::palette_attr())));
}

fn column_f64(df: &DataFrame, name: &str) -> Vec<f64> {
    df.column(name)
        .unwrap()
        .cast(&DataType::Float64)
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect()
}

fn column_str(df: &DataFrame, name: &str) -> Vec<String> {
    let c = df.column(name).unwrap().cast(&DataType::String).unwrap();
    c.str().unwrap().iter().map(|v| v.unwrap_or_default().to_owned()).collect()
}

fn column_date(df: &DataFrame, name: &str) -> Vec<NaiveDate> {
    column_str(df, name).iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn tear_sheet_numbers_match_an_independent_computation_from_the_run_files() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = backtest(dir.path(), 42);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("report.json")).unwrap()).unwrap();
    let capital = report["config"]["strategy"]["capital"].as_f64().unwrap();
    let eq = read_parquet(&run_dir.join("equity.parquet"));
    let (models, dates, equity) = (column_str(&eq, "model"), column_date(&eq, "date"), column_f64(&eq, "equity"));
    for model in ["gbm", "linear", "momentum"] {
        let rows: Vec<usize> = (0..models.len()).filter(|&i| models[i] == model).collect();
        let d: Vec<NaiveDate> = rows.iter().map(|&i| dates[i]).collect();
        let e: Vec<f64> = rows.iter().map(|&i| equity[i]).collect();
        // Monthly returns: the month's growth of equity, from the last equity before the month (capital first).
        let mut month_end: BTreeMap<(i32, u32), f64> = BTreeMap::new();
        for (day, v) in d.iter().zip(&e) {
            month_end.insert((day.year(), day.month()), *v);
        }
        let mut expected = BTreeMap::new();
        let mut prev = capital;
        for (k, v) in &month_end {
            expected.insert(*k, v / prev - 1.0);
            prev = *v;
        }
        let plot = read_parquet(&run_dir.join(format!("plots/monthly_{model}.parquet")));
        let (years, months, values) = (column_str(&plot, "series"), column_str(&plot, "x"), column_f64(&plot, "value"));
        let names = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        let mut seen = 0;
        for ((y, m), v) in years.iter().zip(&months).zip(&values) {
            let key = (y.parse::<i32>().unwrap(), names.iter().position(|n| n == m).unwrap() as u32 + 1);
            match expected.get(&key) {
                Some(x) => {
                    assert!((x - v).abs() < 1e-9, "{model} {key:?}: {v} vs {x}");
                    seen += 1;
                }
                None => assert!(v.is_nan(), "{model} {key:?}: a value for a month without trading days"),
            }
        }
        assert_eq!(seen, expected.len(), "{model}: every month with trading days has a cell");
        // Drawdown periods: peaks, valleys and recoveries found by a direct scan of the equity curve.
        let mut periods = Vec::new();
        let (mut peak_i, mut peak) = (0, e[0]);
        let mut low: Option<usize> = None;
        for i in 0..e.len() {
            if e[i] >= peak {
                if let Some(v) = low.take() {
                    periods.push((d[peak_i], d[v], Some(d[i]), e[v] / peak - 1.0));
                }
                (peak_i, peak) = (i, e[i]);
            } else if low.is_none_or(|v| e[i] < e[v]) {
                low = Some(i);
            }
        }
        if let Some(v) = low {
            periods.push((d[peak_i], d[v], None, e[v] / peak - 1.0));
        }
        periods.sort_by(|a, b| a.3.total_cmp(&b.3));
        let listed = report["models"][model]["tearsheet"]["drawdown_periods"].as_array().unwrap();
        assert_eq!(listed.len(), 5.min(periods.len()));
        for (p, l) in periods.iter().zip(listed) {
            assert_eq!(l["start"].as_str().unwrap(), p.0.to_string(), "{model}");
            assert_eq!(l["valley"].as_str().unwrap(), p.1.to_string(), "{model}");
            assert_eq!(l["recovery"].as_str().map(str::to_owned), p.2.map(|x| x.to_string()), "{model}");
            assert!((l["depth"].as_f64().unwrap() - p.3).abs() < 1e-12, "{model}");
        }
        // The worst period is the maximum drawdown of the summary.
        let max_dd = report["models"][model]["max_drawdown"].as_f64().unwrap();
        assert!((listed[0]["depth"].as_f64().unwrap() - max_dd).abs() < 1e-9, "{model}: {max_dd}");
    }
    // Quantile returns: per date, the labelled rows cut into 3 bins as pandas.qcut does (edges: numpy's linear
    // percentiles at 0, 100/3, 200/3, 100 per cent; a value x is in bin (number of edges below x) − 1, the lowest
    // value in bin 0); the mean label per bin and date; each bin averaged over the dates where it has rows.
    let preds = read_parquet(&run_dir.join("predictions.parquet"));
    let (pm, pd) = (column_str(&preds, "model"), column_str(&preds, "date"));
    let (score, label) = (column_f64(&preds, "score"), column_f64(&preds, "label"));
    for model in ["gbm", "linear", "momentum"] {
        let mut by_date: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
        for i in (0..pm.len()).filter(|&i| pm[i] == model && score[i].is_finite() && label[i].is_finite()) {
            by_date.entry(pd[i].as_str()).or_default().push((score[i], label[i]));
        }
        let (mut sums, mut counts) = ([0.0; 3], [0u32; 3]);
        for rows in by_date.values().filter(|r| r.len() >= 2) {
            let mut sorted: Vec<f64> = rows.iter().map(|r| r.0).collect();
            sorted.sort_by(f64::total_cmp);
            let n = sorted.len();
            let edges: Vec<f64> = (0..=3)
                .map(|i| {
                    let pct = if i == 3 { 100.0 } else { f64::from(i) * (1.0 / 3.0) * 100.0 };
                    let v = (n - 1) as f64 * (pct / 100.0);
                    let lo = (v.floor() as usize).min(n - 1);
                    let (a, b, t) = (sorted[lo], sorted[(lo + 1).min(n - 1)], v - v.floor());
                    if t >= 0.5 { b - (b - a) * (1.0 - t) } else { a + (b - a) * t }
                })
                .collect();
            let mut groups = [(0.0, 0); 3];
            for r in rows {
                let below = edges.iter().filter(|e| **e < r.0).count();
                let bin = below.clamp(1, 3) - 1;
                groups[bin].0 += r.1;
                groups[bin].1 += 1;
            }
            for ((s, c), g) in sums.iter_mut().zip(counts.iter_mut()).zip(groups) {
                if g.1 > 0 {
                    *s += g.0 / f64::from(g.1);
                    *c += 1;
                }
            }
        }
        let dates_used = *counts.iter().min().unwrap();
        assert!(dates_used > 500, "{model}: {dates_used} dates");
        let plot = read_parquet(&run_dir.join(format!("plots/quantile_mean_{model}.parquet")));
        let got = column_f64(&plot, "value");
        assert_eq!(got.len(), 3);
        for (q, ((g, s), c)) in got.iter().zip(sums).zip(counts).enumerate() {
            let want = s / f64::from(c);
            assert!((g - want).abs() < 1e-12, "{model} Q{}: {g} vs {want}", q + 1);
        }
        let json_q = report["models"][model]["tearsheet"]["quantile_mean_label"].as_array().unwrap();
        assert!((json_q[0].as_f64().unwrap() - got[0]).abs() < 1e-15);
    }
}

#[test]
fn report_compare_shows_the_differing_metrics_and_config_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (backtest(dir.path(), 1), backtest(dir.path(), 2));
    let out = dir.path().join("cmp");
    let o = run(&["report", "compare", a.to_str().unwrap(), b.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let md = text(&o.stdout);
    assert!(md.contains("| seed | 1 | 2 |") && md.contains("| config.seed | 1 | 2 |"), "{md}");
    let cmp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    let keys: Vec<&str> = cmp["differences"].as_array().unwrap().iter().map(|d| d["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["config.seed", "seed"], "only the seed differs");
    // The seeded models (gbm subsamples rows) differ; the rule does not use the seed.
    let metric = |model: &str, key: &str| {
        cmp["metrics"].as_array().unwrap().iter().find(|m| m["model"] == model && m["metric"] == key).unwrap().clone()
    };
    let (ra, rb): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(&std::fs::read_to_string(a.join("report.json")).unwrap()).unwrap(),
        serde_json::from_str(&std::fs::read_to_string(b.join("report.json")).unwrap()).unwrap(),
    );
    let ic = metric("gbm", "ic");
    assert_eq!(ic["a"], ra["models"]["gbm"]["ic"]);
    assert_eq!(ic["b"], rb["models"]["gbm"]["ic"]);
    assert!((ic["diff"].as_f64().unwrap() - (ic["b"].as_f64().unwrap() - ic["a"].as_f64().unwrap())).abs() < 1e-15);
    assert!(ic["diff"].as_f64().unwrap().abs() > 0.0, "a different seed changes gbm's IC");
    assert_eq!(metric("momentum", "sharpe")["diff"].as_f64(), Some(0.0));
    assert!(cmp["changed_metrics"].as_u64().unwrap() > 0);
    // The page has both runs' equity curves; the PNG and its data exist.
    let html = std::fs::read_to_string(out.join("compare.html")).unwrap();
    assert!(html.contains("A:gbm") && html.contains("B:gbm") && html.contains("config.seed"));
    assert!(out.join("plots/equity_compare.png").exists() && out.join("plots/equity_compare.parquet").exists());
    // A directory that is not a run is named in the error.
    let o = run(&["report", "compare", a.to_str().unwrap(), dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("report.json"), "{}", text(&o.stderr));
}
