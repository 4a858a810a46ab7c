//! `stockcast train`: the nightly job. Load prices (up to `--as-of`), check quality, build features, evaluate each
//! configured model walk-forward, fit it on the most recent window, publish a version to the registry and promote
//! it to `champion` only when the gate passes. One run at a time per models directory (a lock file; a stale lock
//! of a dead process is taken over).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use stockcast_backtest::report;
use stockcast_backtest::{BacktestConfig, Market, ModelSpec, RunOptions};
use stockcast_features::{FeatureMatrix, MatrixOptions};
use stockcast_models::registry::{CHAMPION, DataInfo, Publish, Registry};
use stockcast_models::{Dataset, History};

use super::features::resolve_spec;
use super::model::split_validation;
use super::{Ctx, load, out};
use crate::cli::{DataArgs, TrainArgs};
use crate::{QualityFailure, UsageError};

/// `[gate]`: when a new version becomes the champion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Gate {
    /// Walk-forward metric compared (a key of the backtest report's per-model metrics, higher is better).
    #[serde(default = "d_metric")]
    metric: String,
    /// Floor the metric must reach.
    #[serde(default)]
    min: f64,
    /// Also require at least the current champion's value, evaluated on the same folds and data.
    #[serde(default = "yes")]
    beat_champion: bool,
}

fn d_metric() -> String {
    "rank_ic".into()
}
fn yes() -> bool {
    true
}
fn d_valid() -> f64 {
    0.1
}

impl Default for Gate {
    fn default() -> Self {
        Self { metric: d_metric(), min: 0.0, beat_champion: true }
    }
}

/// `[final]`: the fit that is published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FinalFit {
    /// Most recent trading dates to train on (0: all).
    #[serde(default)]
    train_days: usize,
    /// Share of those dates held out (after a gap of the horizon) for early stopping, for models that use it.
    #[serde(default = "d_valid")]
    valid_fraction: f64,
}

impl Default for FinalFit {
    fn default() -> Self {
        Self { train_days: 0, valid_fraction: d_valid() }
    }
}

/// The lock of a models directory, removed on drop.
struct Lock {
    path: PathBuf,
}

fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

impl Lock {
    fn acquire(dir: &Path, ctx: Ctx) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(".train.lock");
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    writeln!(f, "{}", std::process::id()).with_context(|| format!("writing {}", path.display()))?;
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    match text.trim().parse::<u32>() {
                        Ok(pid) if pid_alive(pid) => {
                            anyhow::bail!(
                                "another `stockcast train` (pid {pid}) is running on {} (lock file {}); wait for it \
                                 to finish",
                                dir.display(),
                                path.display()
                            );
                        }
                        _ => {
                            ctx.note(&format!(
                                "removing a stale lock {} (pid {:?} is not running)",
                                path.display(),
                                text.trim()
                            ));
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
        anyhow::bail!("could not take the lock {}", path.display())
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The current time as RFC 3339 (UTC) — read here at the command-line boundary only.
pub(crate) fn now_rfc3339() -> String {
    chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn metric(metrics: &Value, key: &str) -> anyhow::Result<f64> {
    metrics
        .get(key)
        .ok_or_else(|| UsageError(format!("gate.metric {key:?} is not a backtest metric")).into())
        .map(|v| v.as_f64().unwrap_or(f64::NAN))
}

/// Metrics without wall-clock timings, so that reruns give identical manifests.
fn without_timings(mut v: Value) -> Value {
    match &mut v {
        Value::Object(m) => {
            m.retain(|k, _| !k.ends_with("_seconds"));
            for x in m.values_mut() {
                *x = without_timings(std::mem::take(x));
            }
        }
        Value::Array(a) => {
            for x in a.iter_mut() {
                *x = without_timings(std::mem::take(x));
            }
        }
        _ => {}
    }
    v
}

pub(crate) fn run(ctx: Ctx, a: &TrainArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let (mut cfg, extra) = BacktestConfig::from_file_with(&a.config, &["gate", "final"])?;
    let gate: Gate = extra
        .get("gate")
        .map(|v| v.clone().try_into())
        .transpose()
        .map_err(|e| UsageError(format!("{}: [gate]: {e}", a.config.display())))?
        .unwrap_or_default();
    let final_fit: FinalFit = extra
        .get("final")
        .map(|v| v.clone().try_into())
        .transpose()
        .map_err(|e| UsageError(format!("{}: [final]: {e}", a.config.display())))?
        .unwrap_or_default();
    if !(0.0..0.9).contains(&final_fit.valid_fraction) {
        return Err(UsageError("final.valid_fraction must be in [0, 0.9)".into()).into());
    }
    if let Some(p) = a.prices.clone().or_else(|| a.database_url.as_ref().map(PathBuf::from)) {
        cfg.data.prices = Some(p);
    }
    cfg.seed = a.seed.unwrap_or(cfg.seed);
    let models = cfg.model_specs()?;
    let spec = resolve_spec(cfg.data.spec.as_deref(), cfg.data.horizon, false)?;
    let prices_path =
        cfg.data.prices.clone().ok_or_else(|| UsageError("no prices: set data.prices or pass --prices".into()))?;
    let registry = Registry::new(&a.models_dir);
    let _lock = Lock::acquire(&a.models_dir, ctx)?;
    let created_at = a.created_at.clone().unwrap_or_else(now_rfc3339);

    // Data up to the as-of date.
    let data_args = DataArgs::file(prices_path.clone(), cfg.data.securities.clone(), a.on_bad_rows);
    let loaded = load(ctx, &data_args, &a.models_dir.join("train-prices.csv"), None).map_err(|e| {
        if e.chain().any(|c| matches!(c.downcast_ref(), Some(stockcast_features::Error::Quality { .. }))) {
            e.context(QualityFailure)
        } else {
            e
        }
    })?;
    let (_, last) = loaded.prices.date_range()?.context("no prices")?;
    let as_of = a.as_of.unwrap_or(last);
    let prices = loaded.prices.until(as_of)?;
    let (first, last) = prices.date_range()?.ok_or_else(|| UsageError(format!("no prices up to {as_of}")))?;
    let pb = ctx.progress.step("computing features");
    let built = stockcast_features::build_features_cached(&prices, &spec, &a.models_dir.join(".cache"))
        .context("computing features")?;
    pb.finish_and_clear();
    out(&built.message);
    let frame = built.frame;
    let data = Dataset::new(
        FeatureMatrix::from_frame(&frame, MatrixOptions::default())?,
        Arc::new(History::from_prices(&prices)?),
    );
    let data_info = DataInfo {
        source: super::source_label(&prices_path),
        data_hash: prices.data_hash().to_owned(),
        first_date: Some(first),
        last_date: Some(last),
        symbols: prices.symbols()?.len(),
        rows: prices.height(),
    };

    // Walk-forward evaluation of the candidates, and of each current champion on the same folds.
    let mut specs: Vec<ModelSpec> = models.clone();
    let mut champions: BTreeMap<String, u64> = BTreeMap::new();
    for m in &models {
        if let Some(v) = registry.aliases(&m.name)?.aliases.get(CHAMPION).copied() {
            let manifest = registry.manifest(&m.name, v)?;
            if gate.beat_champion {
                specs.push(ModelSpec { name: format!("{}@{v}", m.name), config: manifest.config });
            }
            champions.insert(m.name.clone(), v);
        }
    }
    let opts = RunOptions { horizon: spec.label.horizon, seed: cfg.seed, jobs: cfg.jobs };
    let wf = super::backtest::walk_forward(ctx, &data, &specs, &cfg.split, opts)?;
    let kinds = specs.iter().map(|m| (m.name.clone(), m.config.kind().to_owned())).collect();
    let reports = report::evaluate(&wf, &kinds, &Market::from_prices(&prices)?, &cfg.strategy, None)?;
    let meta = report::RunMeta {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        config: serde_json::to_value(&cfg)?,
        data: serde_json::to_value(&data_info)?,
        feature_spec_hash: spec.hash().0,
        horizon: spec.label.horizon,
        seed: cfg.seed,
        timings: BTreeMap::new(),
    };
    let doc = report::report_json(&meta, &wf, &reports, &cfg.strategy)?;

    // Final fit on the most recent window, publish, gate.
    let calendar = &wf.calendar;
    // The final fit trains on the most recent `final.train_days` dates (0: all).
    let final_start = if final_fit.train_days > 0 {
        calendar[calendar.len().saturating_sub(final_fit.train_days)]
    } else {
        calendar[0]
    };
    let mut summary = Vec::new();
    for m in &models {
        let metrics = without_timings(doc["models"][&m.name].clone());
        let value = metric(&metrics, &gate.metric)?;
        let mut train = data.rows(&data.trainable_rows(final_start, as_of));
        train.context = m.config.uses_sequences().then(|| Arc::new(data.matrix.clone()));
        let (train, valid) = if m.config.uses_validation() {
            split_validation(&train, final_fit.valid_fraction, spec.label.horizon)
        } else {
            (train, None)
        };
        let model = stockcast_models::fit(&m.config, &train, valid.as_ref(), cfg.seed)
            .with_context(|| format!("final fit of {}", m.name))?;
        let manifest = registry.publish(
            &m.name,
            &Publish {
                model: &model,
                spec_toml: &spec.to_toml(),
                created_at: &created_at,
                data: data_info.clone(),
                metrics: metrics.clone(),
                stockcast_version: env!("CARGO_PKG_VERSION"),
                git_commit: option_env!("STOCKCAST_GIT_COMMIT").map(str::to_owned),
            },
        )?;
        let champion = champions.get(&m.name).copied();
        let champion_value = match champion {
            Some(v) if gate.beat_champion => Some(metric(&doc["models"][&format!("{}@{v}", m.name)], &gate.metric)?),
            _ => None,
        };
        let mut reasons = Vec::new();
        if value.is_nan() || value < gate.min {
            reasons.push(format!("{} {value:.4} is below the floor {}", gate.metric, gate.min));
        }
        if let Some(c) = champion_value
            && value < c
        {
            reasons.push(format!(
                "{} {value:.4} is below the champion's {c:.4} (v{}) on the same folds",
                gate.metric,
                champion.unwrap_or_default()
            ));
        }
        let promoted = reasons.is_empty();
        if promoted {
            registry.set_alias(
                &m.name,
                CHAMPION,
                manifest.version,
                &created_at,
                &format!("promoted: {} {value:.4} passed the gate", gate.metric),
            )?;
        }
        out(&format!(
            "{}: published version {} ({} .. {}, {} rows); {} {value:.4}{}; {}",
            m.name,
            manifest.version,
            manifest.train_range.map(|r| r.0.to_string()).unwrap_or_default(),
            manifest.train_range.map(|r| r.1.to_string()).unwrap_or_default(),
            train.len(),
            gate.metric,
            champion_value.map(|c| format!(" (champion v{} {c:.4})", champion.unwrap_or_default())).unwrap_or_default(),
            if promoted { "PROMOTED to champion".to_owned() } else { format!("NOT promoted: {}", reasons.join("; ")) }
        ));
        summary.push(json!({
            "name": m.name, "version": manifest.version, "kind": manifest.kind, "metric": gate.metric, "value": value,
            "champion_before": champion, "champion_value": champion_value, "promoted": promoted, "reasons": reasons,
            "metrics": metrics,
        }));
    }
    let summary = json!({
        "created_at": created_at, "as_of": as_of, "config": a.config.display().to_string(), "seed": cfg.seed,
        "data": data_info, "feature_spec_hash": spec.hash().0, "gate": gate, "folds": wf.folds.len(),
        "models": summary, "seconds": started.elapsed().as_secs_f64(),
    });
    let path = a.models_dir.join("runs").join(format!("train-{as_of}-{}.json", created_at.replace(':', "")));
    stockcast_features::io::write_atomic(&path, &serde_json::to_vec_pretty(&summary)?)?;
    tracing::info!(summary = %path.display(), seconds = started.elapsed().as_secs_f64(), "train finished");
    out(&format!("run summary: {}", path.display()));
    Ok(())
}
