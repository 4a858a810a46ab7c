//! `stockcast report compare RUN_A RUN_B`: two run directories side by side (MLflow's "compare runs"): every
//! model's metrics with the difference B − A, both runs' equity curves, and what differs between them (config
//! keys, data and feature-spec hashes, seeds, versions).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use chrono::NaiveDate;
use serde::Serialize;
use serde_json::{Value, json};
use stockcast_features::polars::prelude::*;

use crate::charts::{Chart, Kind, Section};
use crate::error::{Error, Result};
use crate::report::{MODEL_KEYS, Table};

/// One metric of one model in both runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricDiff {
    /// Model name.
    pub model: String,
    /// Metric key (`report.json` → `models.<name>.<key>`).
    pub metric: String,
    /// Value in run A (None: absent or null).
    pub a: Option<f64>,
    /// Value in run B.
    pub b: Option<f64>,
    /// b − a where both exist.
    pub diff: Option<f64>,
}

/// A setting that differs between the runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigDiff {
    /// Dotted key (`config.seed`, `config.strategy.k`, `data.data_hash`, ...).
    pub key: String,
    /// Value in run A (None: absent).
    pub a: Option<Value>,
    /// Value in run B.
    pub b: Option<Value>,
}

/// The comparison of two runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Run A's directory.
    pub a: String,
    /// Run B's directory.
    pub b: String,
    /// Models in both runs, A's order.
    pub models: Vec<String>,
    /// Models in only one run: (name, "a" or "b").
    pub only_in: Vec<(String, String)>,
    /// Every metric of every common model.
    pub metrics: Vec<MetricDiff>,
    /// Metrics whose values differ (|b − a| > 1e-12, or present in one run only).
    pub changed_metrics: usize,
    /// Settings and facts that differ.
    pub differences: Vec<ConfigDiff>,
    /// Both runs' equity curves (series `A:<model>`, `B:<model>`).
    #[serde(skip)]
    pub equity: Chart,
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Data(format!("{}: {e} (not a run directory written by `stockcast backtest`?)", path.display()))
    })?;
    serde_json::from_str(&text).map_err(|e| Error::Data(format!("{}: not a report.json ({e})", path.display())))
}

/// Dotted keys of every leaf of `v` under `prefix`.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                flatten(&format!("{prefix}.{k}"), x, out);
            }
        }
        Value::Array(a) if a.iter().any(Value::is_object) => {
            for (i, x) in a.iter().enumerate() {
                // Model entries are named: key them by name, so reordering is not a difference.
                let key = x.get("name").and_then(Value::as_str).map_or_else(|| i.to_string(), str::to_owned);
                flatten(&format!("{prefix}[{key}]"), x, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

/// (date, equity) per model from a run's `equity.parquet`.
fn equity_curves(dir: &Path) -> Result<BTreeMap<String, Vec<(NaiveDate, f64)>>> {
    let path = dir.join("equity.parquet");
    let file = std::fs::File::open(&path).map_err(|e| {
        Error::Data(format!("{}: {e} (not a run directory written by `stockcast backtest`?)", path.display()))
    })?;
    let bad = |e: PolarsError| Error::Data(format!("{}: {e}", path.display()));
    let df = ParquetReader::new(file).finish().map_err(bad)?;
    let models = df.column("model").map_err(bad)?.str().map_err(bad)?.clone();
    let dates = df.column("date").map_err(bad)?.cast(&DataType::Int32).map_err(bad)?;
    let dates = dates.i32().map_err(bad)?.clone();
    let equity = df.column("equity").map_err(bad)?.f64().map_err(bad)?.clone();
    let mut out: BTreeMap<String, Vec<(NaiveDate, f64)>> = BTreeMap::new();
    for ((m, d), e) in models.iter().zip(dates.iter()).zip(equity.iter()) {
        if let (Some(m), Some(d), Some(e)) = (m, d.and_then(stockcast_features::prices::days_to_date), e) {
            out.entry(m.to_owned()).or_default().push((d, e));
        }
    }
    Ok(out)
}

/// Compares the run directories `a` and `b` (each written by `stockcast backtest`).
///
/// # Errors
/// A missing or unreadable `report.json` or `equity.parquet`, naming the file.
pub fn compare(a: &Path, b: &Path) -> Result<Comparison> {
    let (ra, rb) = (read_json(&a.join("report.json"))?, read_json(&b.join("report.json"))?);
    let names = |r: &Value| -> Vec<String> {
        r.get("models").and_then(Value::as_object).map(|m| m.keys().cloned().collect()).unwrap_or_default()
    };
    let order = |r: &Value| -> Vec<String> {
        // The config lists the models in run order.
        r.pointer("/config/models")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|m| m.get("name").and_then(Value::as_str).map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let (na, nb): (BTreeSet<String>, BTreeSet<String>) =
        (names(&ra).into_iter().collect(), names(&rb).into_iter().collect());
    let mut models: Vec<String> = order(&ra).into_iter().filter(|m| na.contains(m) && nb.contains(m)).collect();
    for m in na.intersection(&nb) {
        if !models.contains(m) {
            models.push(m.clone());
        }
    }
    let only_in = na
        .difference(&nb)
        .map(|m| (m.clone(), "a".to_owned()))
        .chain(nb.difference(&na).map(|m| (m.clone(), "b".to_owned())))
        .collect();
    let keys: Vec<&str> = MODEL_KEYS.iter().copied().chain(["psr", "dsr", "mae", "relative_mae"]).collect();
    let mut metrics = Vec::new();
    for m in &models {
        for k in &keys {
            let get = |r: &Value| r.pointer(&format!("/models/{m}/{k}")).and_then(Value::as_f64);
            let (x, y) = (get(&ra), get(&rb));
            let diff = x.zip(y).map(|(x, y)| y - x);
            metrics.push(MetricDiff { model: m.clone(), metric: (*k).to_owned(), a: x, b: y, diff });
        }
    }
    let changed_metrics = metrics
        .iter()
        .filter(|d| match (d.a, d.b) {
            (Some(x), Some(y)) => (y - x).abs() > 1e-12,
            (None, None) => false,
            _ => true,
        })
        .count();
    let (mut fa, mut fb) = (BTreeMap::new(), BTreeMap::new());
    for key in ["config", "data", "seed", "feature_spec_hash", "label_horizon", "stockcast_version", "label"] {
        if let Some(v) = ra.get(key) {
            flatten(key, v, &mut fa);
        }
        if let Some(v) = rb.get(key) {
            flatten(key, v, &mut fb);
        }
    }
    let all: BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    let differences = all
        .into_iter()
        .filter(|k| fa.get(*k) != fb.get(*k))
        .map(|k| ConfigDiff { key: k.clone(), a: fa.get(k).cloned(), b: fb.get(k).cloned() })
        .collect();
    let (ea, eb) = (equity_curves(a)?, equity_curves(b)?);
    let dates: BTreeSet<NaiveDate> = ea.values().chain(eb.values()).flat_map(|v| v.iter().map(|x| x.0)).collect();
    let dates: Vec<NaiveDate> = dates.into_iter().collect();
    let mut equity =
        Chart::dated("equity_compare", Section::Performance, "Equity: run A vs run B", Kind::Line, &dates, false);
    for m in &models {
        for (tag, curves) in [("A", &ea), ("B", &eb)] {
            if let Some(v) = curves.get(m) {
                let by: BTreeMap<NaiveDate, f64> = v.iter().copied().collect();
                equity = equity.with(
                    &format!("{tag}:{m}"),
                    dates.iter().map(|d| by.get(d).copied().unwrap_or(f64::NAN)).collect(),
                );
            }
        }
    }
    Ok(Comparison {
        a: a.display().to_string(),
        b: b.display().to_string(),
        models,
        only_in,
        metrics,
        changed_metrics,
        differences,
        equity,
    })
}

fn cell(v: Option<f64>) -> String {
    v.map_or_else(
        || "–".to_owned(),
        |x| {
            if x.fract() == 0.0 && x.abs() < 1e12 {
                format!("{x:.0}")
            } else if x.abs() >= 100.0 {
                format!("{x:.1}")
            } else {
                format!("{x:.4}")
            }
        },
    )
}

fn value(v: Option<&Value>) -> String {
    v.map_or_else(|| "(absent)".to_owned(), |x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
}

impl Comparison {
    /// Metrics side by side: model, metric, A, B, B − A.
    pub fn metrics_table(&self) -> Table {
        Table {
            header: ["model", "metric", "A", "B", "B − A"].map(str::to_owned).to_vec(),
            rows: self
                .metrics
                .iter()
                .map(|d| vec![d.model.clone(), d.metric.clone(), cell(d.a), cell(d.b), cell(d.diff)])
                .collect(),
        }
    }

    /// Settings that differ: key, A, B.
    pub fn differences_table(&self) -> Table {
        Table {
            header: ["key", "A", "B"].map(str::to_owned).to_vec(),
            rows: self
                .differences
                .iter()
                .map(|d| vec![d.key.clone(), value(d.a.as_ref()), value(d.b.as_ref())])
                .collect(),
        }
    }

    /// The comparison as Markdown (printed by the CLI, `compare.md`).
    pub fn markdown(&self) -> String {
        let mut s = format!("# Compare runs\n\nA: `{}`\nB: `{}`\n\n", self.a, self.b);
        let _ = write!(s, "## What differs ({} settings)\n\n", self.differences.len());
        if self.differences.is_empty() {
            s.push_str("Nothing: same config, data, spec, seed and version.\n");
        } else {
            s.push_str(&self.differences_table().markdown());
        }
        for (m, side) in &self.only_in {
            let _ = write!(s, "\nModel `{m}` is only in run {}.\n", side.to_uppercase());
        }
        let _ = write!(s, "\n## Metrics ({} of {} differ)\n\n", self.changed_metrics, self.metrics.len());
        s.push_str(&self.metrics_table().markdown());
        s
    }

    /// `compare.html`: the tables and both equity curves, interactive, self-contained.
    ///
    /// # Errors
    /// Template or serialisation errors.
    pub fn html(&self) -> Result<String> {
        let mut env = minijinja::Environment::new();
        env.add_template("compare.html", include_str!("compare.html.j2"))
            .map_err(|e| Error::Data(format!("compare template: {e}")))?;
        let table = |t: &Table| json!({"header": t.header, "rows": t.rows});
        let data =
            serde_json::to_string(&[&self.equity]).map_err(|e| Error::Data(e.to_string()))?.replace("</", "<\\/");
        let ctx = json!({
            "a": self.a, "b": self.b,
            "differences": table(&self.differences_table()),
            "metrics": table(&self.metrics_table()),
            "changed": self.changed_metrics, "total": self.metrics.len(),
            "only_in": self.only_in,
            "chart": {"id": self.equity.id, "title": self.equity.title},
            "chart_data": data,
            "palette": crate::charts::palette_attr(),
            "script": include_str!("report.js"),
        });
        env.get_template("compare.html")
            .and_then(|t| t.render(ctx))
            .map_err(|e| Error::Data(format!("compare template: {e}")))
    }

    /// Writes `compare.md`, `compare.json`, `compare.html` and `plots/equity_compare.{png,parquet}` into `dir`.
    ///
    /// # Errors
    /// I/O errors naming the file.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let plots = dir.join("plots");
        std::fs::create_dir_all(&plots).map_err(|e| Error::file(&plots, e))?;
        let write = |name: &str, bytes: &[u8]| {
            stockcast_features::io::write_atomic(&dir.join(name), bytes).map_err(Error::from)
        };
        write("compare.md", self.markdown().as_bytes())?;
        write("compare.json", &serde_json::to_vec_pretty(self).map_err(|e| Error::Data(e.to_string()))?)?;
        write("compare.html", self.html()?.as_bytes())?;
        write("plots/equity_compare.png", &self.equity.png()?)?;
        let mut df = self.equity.frame()?;
        stockcast_features::io::write_frame(&mut df, &plots.join("equity_compare.parquet"))?;
        Ok(())
    }
}
