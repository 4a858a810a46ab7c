//! The nightly job as a library call: load prices up to the as-of date, check quality, build features (cached
//! incrementally per models directory), evaluate each configured model walk-forward together with its current
//! champion on the same folds, fit it on the most recent window, publish a version and promote it to
//! `champion` only when the gate passes. The run holds the registry's lock (an OS file lock the kernel releases
//! when the process ends): a second `train` fails fast, `models promote | rollback | gc` wait for it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stockcast_backtest::report;
use stockcast_backtest::shard::PlanFile;
use stockcast_backtest::{BacktestConfig, Market, ModelSpec, RunOptions, WalkForward, runner};
use stockcast_features::{Policy, PriceFrame};
use stockcast_models::registry::{CHAMPION, DataInfo, Publish, Registry};
use stockcast_models::{Dataset, DatasetOptions};

use crate::prices::{require, source_label};
use crate::sharded::{self, Inputs, Prepared, ShardedJob, Timings};
use crate::{Context, Ctx, Error, Result};

/// `[gate]`: when a new version becomes the champion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// Walk-forward metric compared (a key of the backtest report's per-model metrics, higher is better).
    #[serde(default = "default_gate_metric")]
    pub metric: String,
    /// Floor the metric must reach.
    #[serde(default)]
    pub min: f64,
    /// Also require at least the current champion's value, evaluated on the same folds and data.
    #[serde(default = "default_true")]
    pub beat_champion: bool,
}

fn default_gate_metric() -> String {
    "rank_ic".into()
}
fn default_true() -> bool {
    true
}
fn default_valid_fraction() -> f64 {
    0.1
}

impl Default for Gate {
    fn default() -> Self {
        Self { metric: default_gate_metric(), min: 0.0, beat_champion: true }
    }
}

/// `[final]`: the fit that is published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinalFit {
    /// Most recent trading dates to train on (0: all).
    #[serde(default)]
    pub train_days: usize,
    /// Share of those dates held out (after a gap of the horizon) for early stopping, for models that use it.
    #[serde(default = "default_valid_fraction")]
    pub valid_fraction: f64,
}

impl Default for FinalFit {
    fn default() -> Self {
        Self { train_days: 0, valid_fraction: default_valid_fraction() }
    }
}

/// A nightly configuration: a backtest config (data, split, models, strategy) plus `[gate]` and `[final]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// The file it was read from (named in the run summary).
    pub path: PathBuf,
    /// Data, split, models and strategy.
    pub backtest: BacktestConfig,
    /// When a new version is promoted.
    pub gate: Gate,
    /// The published fit.
    pub final_fit: FinalFit,
}

impl TrainConfig {
    /// Reads and checks a nightly config file.
    ///
    /// # Errors
    /// Usage errors naming the file and the table that is wrong.
    pub fn from_file(path: &Path) -> Result<Self> {
        let (backtest, extra) = BacktestConfig::from_file_with(path, &["gate", "final"])?;
        let gate: Gate = table(&extra, "gate", path)?;
        let final_fit: FinalFit = table(&extra, "final", path)?;
        if !(0.0..0.9).contains(&final_fit.valid_fraction) {
            return Err(Error::Usage("final.valid_fraction must be in [0, 0.9)".into()));
        }
        Ok(Self { path: path.to_path_buf(), backtest, gate, final_fit })
    }
}

/// The table `name` of a config file, or its default when absent.
fn table<T: serde::de::DeserializeOwned + Default>(extra: &toml::Table, name: &str, path: &Path) -> Result<T> {
    let value = extra.get(name).map(|v| v.clone().try_into()).transpose();
    Ok(value.map_err(|e| Error::Usage(format!("{}: [{name}]: {e}", path.display())))?.unwrap_or_default())
}

/// Where and as of when the job runs.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// The registry root (models, aliases, lock, feature cache, run summaries).
    pub models_dir: PathBuf,
    /// Train on data up to this date (default: the last date of the data).
    pub as_of: Option<NaiveDate>,
    /// The versions' creation time, RFC 3339 (default: the clock's now).
    pub created_at: Option<String>,
    /// Overrides every quality check's policy.
    pub on_bad_rows: Option<Policy>,
}

/// What happened to one configured model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelOutcome {
    /// Registry name.
    pub name: String,
    /// The version published.
    pub version: u64,
    /// Model kind.
    pub kind: String,
    /// The gate metric.
    pub metric: String,
    /// Its walk-forward value.
    pub value: f64,
    /// The champion version before this run.
    pub champion_before: Option<u64>,
    /// The champion's value on the same folds.
    pub champion_value: Option<f64>,
    /// True when the new version became the champion.
    pub promoted: bool,
    /// Why it was not promoted.
    pub reasons: Vec<String>,
    /// Walk-forward metrics (without timings).
    pub metrics: Value,
    /// Rows of the final fit.
    #[serde(skip)]
    pub train_rows: usize,
    /// Dates of the final fit.
    #[serde(skip)]
    pub train_range: Option<(NaiveDate, NaiveDate)>,
}

impl ModelOutcome {
    /// One line for the console.
    pub fn line(&self) -> String {
        let (first, last) = self.train_range.map(|r| (r.0.to_string(), r.1.to_string())).unwrap_or_default();
        format!(
            "{}: published version {} ({first} .. {last}, {} rows); {} {:.4}{}; {}",
            self.name,
            self.version,
            self.train_rows,
            self.metric,
            self.value,
            self.champion_value
                .map(|c| format!(" (champion v{} {c:.4})", self.champion_before.unwrap_or_default()))
                .unwrap_or_default(),
            if self.promoted {
                "PROMOTED to champion".to_owned()
            } else {
                format!("NOT promoted: {}", self.reasons.join("; "))
            }
        )
    }
}

/// The run summary (saved as `runs/train-<as-of>-<created-at>.json` in the models directory).
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    /// Creation time of the versions.
    pub created_at: String,
    /// Last date of the data used.
    pub as_of: NaiveDate,
    /// The config file.
    pub config: String,
    /// Seed of every fit.
    pub seed: u64,
    /// The data trained on.
    pub data: DataInfo,
    /// Hash of the feature spec.
    pub feature_spec_hash: String,
    /// The gate.
    pub gate: Gate,
    /// Walk-forward folds.
    pub folds: usize,
    /// One outcome per configured model.
    pub models: Vec<ModelOutcome>,
    /// Wall time of the run.
    pub seconds: f64,
    /// What the feature cache reused.
    #[serde(skip)]
    pub feature_cache: String,
    /// Where the summary was written.
    #[serde(skip)]
    pub path: PathBuf,
}

/// The outcome of a nightly run in the Prometheus text format, for node-exporter's textfile collector
/// (`--metrics-file`): whether it succeeded and when (`now`, RFC 3339, passed in), how long it took, what it
/// published and promoted, and each model's gate value and floor. `summary` is `None` for a failed run (only the
/// failure and its time are written; alerts fire on it). Metric names: `stockcast_train_*`.
pub fn outcome_metrics(config: &str, now: chrono::DateTime<chrono::Utc>, summary: Option<&TrainSummary>) -> String {
    use std::fmt::Write as _;
    let job = config.replace(['\\', '"', '\n'], "_");
    let mut s = String::new();
    let mut family = |name: &str, help: &str, rows: &[(String, f64)]| {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, v) in rows {
            let _ = writeln!(s, "{name}{{config=\"{job}\"{labels}}} {v}");
        }
    };
    let t = now.timestamp() as f64;
    family(
        "stockcast_train_success",
        "1 when the last nightly run finished (published and gated), 0 when it failed",
        &[(String::new(), f64::from(u8::from(summary.is_some())))],
    );
    family("stockcast_train_last_run_timestamp_seconds", "When the last nightly run ended", &[(String::new(), t)]);
    let Some(sum) = summary else { return s };
    family(
        "stockcast_train_last_success_timestamp_seconds",
        "When the last successful nightly run ended",
        &[(String::new(), t)],
    );
    family("stockcast_train_duration_seconds", "Wall time of the last nightly run", &[(String::new(), sum.seconds)]);
    let as_of = sum.as_of.and_hms_opt(0, 0, 0).map_or(0.0, |d| d.and_utc().timestamp() as f64);
    family(
        "stockcast_train_data_last_date_timestamp_seconds",
        "Last date of the prices trained on",
        &[(String::new(), as_of)],
    );
    family(
        "stockcast_train_versions_published",
        "Versions the last nightly run published",
        &[(String::new(), sum.models.len() as f64)],
    );
    let per = |f: &dyn Fn(&ModelOutcome) -> f64| -> Vec<(String, f64)> {
        sum.models.iter().map(|m| (format!(",model=\"{}\"", m.name.replace('"', "_")), f(m))).collect()
    };
    family(
        "stockcast_train_promoted",
        "1 when the model's new version became the champion",
        &per(&|m| f64::from(u8::from(m.promoted))),
    );
    family("stockcast_train_version", "The version the last run published", &per(&|m| m.version as f64));
    family("stockcast_train_gate_value", "The gate metric's walk-forward value of the new version", &per(&|m| m.value));
    family("stockcast_train_gate_min", "The gate's floor", &per(&|_| sum.gate.min));
    s
}

fn metric(metrics: &Value, key: &str) -> Result<f64> {
    metrics
        .get(key)
        .ok_or_else(|| Error::Usage(format!("gate.metric {key:?} is not a backtest metric")))
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

/// The nightly job of a configuration on a registry, as a [`ShardedJob`]: [`run`] whole, or plan → shards →
/// merge through [`sharded`].
#[derive(Debug, Clone)]
pub struct TrainJob {
    /// The nightly configuration.
    pub config: TrainConfig,
    /// The registry and as-of date.
    pub options: TrainOptions,
}

/// Runs the nightly job of `cfg` on the registry at `opts.models_dir`.
///
/// # Errors
/// [`Error::Quality`] when a data-quality check failed (exit code 3); usage errors for bad configuration; a held
/// lock; model, registry and I/O errors.
pub fn run(ctx: &Ctx, cfg: &TrainConfig, opts: &TrainOptions) -> Result<TrainSummary> {
    sharded::run(TrainJob { config: cfg.clone(), options: opts.clone() }, ctx)
}

/// A nightly run before its walk-forward: the data up to the as-of date, the dataset, and the models evaluated
/// (the candidates and, where the gate compares, each current champion as `<name>@<version>`).
#[derive(Debug)]
pub struct TrainWork {
    registry: Registry,
    created_at: String,
    prices: PriceFrame,
    as_of: NaiveDate,
    data: Dataset,
    data_info: DataInfo,
    feature_cache: String,
    spec: stockcast_features::Checked<stockcast_features::FeatureSpec>,
    models: Vec<ModelSpec>,
    specs: Vec<ModelSpec>,
    champions: BTreeMap<String, u64>,
    started: Instant,
}

impl ShardedJob for TrainJob {
    const JOB: &'static str = "train";
    type Work = TrainWork;
    type Output = TrainSummary;
    type Lock = stockcast_models::registry::RegistryLock;

    fn lock(&self) -> Result<Self::Lock> {
        let registry = Registry::new(&self.options.models_dir);
        registry.try_lock("train")?.ok_or_else(|| {
            Error::Failed(format!(
                "another stockcast process ({}) holds the registry lock of {}; wait for it to finish",
                registry.lock_holder(),
                self.options.models_dir.display()
            ))
        })
    }

    /// Loads the prices, builds (or reuses) the features and lists the champions: the plan's calendar is the
    /// dataset's. The registry is read, not changed.
    fn prepare(&self, ctx: &Ctx, check: &dyn Fn(&PlanFile) -> Result<()>) -> Result<Prepared<TrainWork>> {
        let work = prepare(ctx, &self.config, &self.options)?;
        let (file, plan) = plan_file(&self.config, &work)?;
        check(&file)?;
        Ok(Prepared { file, plan, work })
    }

    fn models(work: &TrainWork) -> &[ModelSpec] {
        &work.specs
    }

    fn inputs<'a>(&self, _: &Ctx, work: &'a TrainWork) -> Result<Inputs<'a>> {
        let bt = &self.config.backtest;
        Ok(Inputs {
            dataset: Cow::Borrowed(&work.data),
            options: RunOptions::new(&work.spec.label, bt.seed, bt.jobs).with_memory_gb(bt.memory_gb),
        })
    }

    fn finish(self, ctx: &Ctx, work: TrainWork, wf: WalkForward, _: Timings) -> Result<TrainSummary> {
        finish(ctx, &self.config, &self.options, work, &wf)
    }
}

fn prepare(ctx: &Ctx, cfg: &TrainConfig, opts: &TrainOptions) -> Result<TrainWork> {
    let started = Instant::now();
    let registry = Registry::new(&opts.models_dir);
    let bt = &cfg.backtest;
    let models = bt.model_specs()?;
    let spec = crate::backtest::spec_of(bt)?;
    let prices_path = require(bt.data.prices.clone())?;
    let created_at = opts.created_at.clone().unwrap_or_else(|| ctx.clock().now_rfc3339());
    // Local files of the run (quarantine, feature cache): beside a directory registry, or in a local cache
    // directory for an object-store one.
    let local_dir =
        if registry.is_remote() { std::env::temp_dir().join("stockcast-cache") } else { opts.models_dir.clone() };

    // Data up to the as-of date, loaded as a backtest loads it: quality settings, symbols, factors, universe.
    let loaded = crate::backtest::BacktestData::load(ctx, bt, opts.on_bad_rows, &local_dir.join("train-prices.csv"))
        .map_err(|e| if e.is_quality_check() { Error::Quality(Box::new(e)) } else { e })?;
    let universe = loaded.universe;
    let (_, last) = loaded.prices.date_range()?.ok_or_else(|| Error::usage("no prices"))?;
    let as_of = opts.as_of.unwrap_or(last);
    let prices = loaded.prices.until(as_of)?;
    let (first, last) = prices.date_range()?.ok_or_else(|| Error::usage(format!("no prices up to {as_of}")))?;
    let pb = ctx.step("computing features");
    let built = stockcast_features::build_features_cached(&prices, &spec, &local_dir.join(".cache"))
        .context("computing features")?;
    pb.finish();
    let data = Dataset::from_frame(&built.frame, &prices, DatasetOptions::default())?;
    let data = crate::backtest::members(data, universe.as_ref());
    let data_info = DataInfo {
        source: source_label(&prices_path),
        data_hash: prices.data_hash().to_owned(),
        first_date: Some(first),
        last_date: Some(last),
        symbols: prices.symbols()?.len(),
        rows: prices.height(),
    };

    // The candidates, and each current champion to be evaluated on the same folds.
    let mut specs: Vec<ModelSpec> = models.clone();
    let mut champions: BTreeMap<String, u64> = BTreeMap::new();
    for m in &models {
        if let Some(v) = registry.aliases(&m.name)?.aliases.get(CHAMPION).copied() {
            let manifest = registry.manifest(&m.name, v)?;
            if cfg.gate.beat_champion {
                specs.push(ModelSpec { name: format!("{}@{v}", m.name), config: manifest.config });
            }
            champions.insert(m.name.clone(), v);
        }
    }
    Ok(TrainWork {
        registry,
        created_at,
        prices,
        as_of,
        data,
        data_info,
        feature_cache: built.message,
        spec,
        models,
        specs,
        champions,
        started,
    })
}

/// The plan file of a sharded nightly run: the walk-forward tasks of the candidates and champions, with the
/// configuration (gate and final fit included), data and spec hashes they assume.
fn plan_file(cfg: &TrainConfig, p: &TrainWork) -> Result<(PlanFile, runner::Plan)> {
    let bt = &cfg.backtest;
    let plan = runner::plan(&p.data, &p.specs, &bt.split, RunOptions::new(&p.spec.label, bt.seed, bt.jobs))?;
    let mut config = toml::to_string(&crate::backtest::resolved_config(bt, &p.specs))?;
    let table = toml::Table::from_iter([
        ("gate".to_owned(), toml::Value::try_from(&cfg.gate)?),
        ("final".to_owned(), toml::Value::try_from(&cfg.final_fit)?),
        ("as_of".to_owned(), toml::Value::String(p.as_of.to_string())),
    ]);
    config.push_str(&toml::to_string(&table)?);
    let file = PlanFile::new(TrainJob::JOB, config, p.prices.data_hash(), &p.spec.hash().0, bt.seed, &p.specs, &plan);
    Ok((file, plan))
}

/// Evaluates the walk-forward, fits each candidate on the most recent window, publishes it and promotes it
/// when it passes the gate; writes the run summary.
fn finish(ctx: &Ctx, cfg: &TrainConfig, opts: &TrainOptions, p: TrainWork, wf: &WalkForward) -> Result<TrainSummary> {
    let bt = &cfg.backtest;
    let gate = &cfg.gate;
    let TrainWork {
        registry,
        created_at,
        prices,
        as_of,
        data,
        data_info,
        feature_cache,
        spec,
        models,
        specs,
        champions,
        started,
    } = p;
    let alignment = stockcast_backtest::label_alignment(&spec.label, bt.strategy.fill);
    if let Some(w) = &alignment.warning {
        ctx.note(&format!("warning: {w}"));
    }
    let facts = report::RunFacts { seed: bt.seed, horizon: spec.label.horizon };
    let evaluation =
        report::evaluate(wf, &specs, &Market::from_prices(&prices)?, &bt.strategy, None, facts, &bt.report)?;
    let meta = report::RunMeta {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        config: serde_json::to_value(bt)?,
        data: serde_json::to_value(&data_info)?,
        feature_spec_hash: spec.hash().0,
        horizon: spec.label.horizon,
        label: alignment,
        seed: bt.seed,
        timings: BTreeMap::new(),
    };
    let doc = report::report_json(&meta, wf, &evaluation, &bt.strategy)?;

    // Final fit on the most recent window, publish, gate.
    let calendar = &wf.calendar;
    let final_start = if cfg.final_fit.train_days > 0 {
        calendar[calendar.len().saturating_sub(cfg.final_fit.train_days)]
    } else {
        calendar[0]
    };
    let mut outcomes = Vec::new();
    for m in &models {
        let metrics = without_timings(doc["models"][&m.name].clone());
        let value = metric(&metrics, &gate.metric)?;
        let mut train = data.rows(&data.trainable_rows(final_start, as_of));
        train.context = m.config.uses_sequences().then(|| Arc::clone(&data.matrix));
        let (train, valid) = if m.config.uses_validation() {
            train.split_validation(cfg.final_fit.valid_fraction, spec.label.span_rows())
        } else {
            (train, None)
        };
        let model = stockcast_models::fit(&m.config, &train, valid.as_ref(), bt.seed)
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
        outcomes.push(ModelOutcome {
            name: m.name.clone(),
            version: manifest.version,
            kind: manifest.kind.clone(),
            metric: gate.metric.clone(),
            value,
            champion_before: champion,
            champion_value,
            promoted,
            reasons,
            metrics,
            train_rows: train.len(),
            train_range: manifest.train_range,
        });
    }
    let summary_rel = format!("runs/train-{as_of}-{}.json", created_at.replace(':', ""));
    let path = opts.models_dir.join(&summary_rel);
    let summary = TrainSummary {
        created_at,
        as_of,
        config: cfg.path.display().to_string(),
        seed: bt.seed,
        data: data_info,
        feature_spec_hash: spec.hash().0,
        gate: gate.clone(),
        folds: wf.folds.len(),
        models: outcomes,
        seconds: started.elapsed().as_secs_f64(),
        feature_cache,
        path,
    };
    registry.write_file(&summary_rel, serde_json::to_vec_pretty(&summary)?)?;
    tracing::info!(summary = %summary.path.display(), seconds = summary.seconds, "train finished");
    Ok(summary)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::Clock;

    fn nightly(min: f64) -> TrainConfig {
        let bt =
            crate::backtest::tests::config("[[models]]\nname = \"lin\"\nmodel = { kind = \"linear\", alpha = 0.01 }\n");
        let gate = Gate { min, ..Gate::default() };
        TrainConfig { path: "nightly.toml".into(), backtest: bt, gate, final_fit: FinalFit::default() }
    }

    #[test]
    fn the_nightly_job_publishes_gates_and_compares_with_the_champion_without_the_binary() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::fixed("2026-11-30T01:02:03Z".parse().unwrap());
        let ctx = Ctx::quiet(clock);
        let opts = TrainOptions { models_dir: dir.path().to_path_buf(), ..TrainOptions::default() };
        // A floor nobody reaches: published, not promoted.
        let first = run(&ctx, &nightly(1.0), &opts).unwrap();
        let m = &first.models[0];
        assert_eq!((m.version, m.promoted, m.champion_before), (1, false, None));
        assert!(m.reasons[0].contains("below the floor"), "{:?}", m.reasons);
        // The clock passed in is the versions' creation time and names the run summary.
        assert_eq!(first.created_at, "2026-11-30T01:02:03Z");
        assert!(first.path.ends_with(format!("runs/train-{}-2026-11-30T010203Z.json", first.as_of)));
        assert!(first.path.is_file());
        // A reachable floor: promoted; the next run is compared with that champion on the same folds.
        let second = run(&ctx, &nightly(-1.0), &opts).unwrap();
        assert_eq!((second.models[0].version, second.models[0].promoted), (2, true));
        let third = run(&ctx, &nightly(-1.0), &opts).unwrap();
        let m = &third.models[0];
        assert_eq!((m.version, m.champion_before), (3, Some(2)));
        // Same data, config and seed as the champion: the same walk-forward value, so it passes (≥).
        let champion = m.champion_value.unwrap();
        assert!((champion - m.value).abs() < 1e-12, "{champion} vs {}", m.value);
        assert!(m.promoted);
    }

    #[test]
    fn the_nightly_job_reads_the_universe_and_quality_settings_of_its_data_section() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Ctx::quiet(Clock::fixed("2026-11-30T01:02:03Z".parse().unwrap()));
        let opts = TrainOptions { models_dir: dir.path().join("m"), ..TrainOptions::default() };
        let plain = run(&ctx, &nightly(-1.0), &opts).unwrap();
        // Three of the five names are members: fewer rows are trained on, and the metrics differ.
        let universe = dir.path().join("u.txt");
        std::fs::write(
            &universe,
            "AAPL\t2000-01-01\t2013-12-31\nIBM\t2000-01-01\t2013-12-31\nMSFT\t2000-01-01\t2013-12-31\n",
        )
        .unwrap();
        let mut cfg = nightly(-1.0);
        cfg.backtest.data.universe = Some(universe);
        let opts = TrainOptions { models_dir: dir.path().join("u"), ..opts };
        let members = run(&ctx, &cfg, &opts).unwrap();
        let (a, b) = (&plain.models[0], &members.models[0]);
        assert!(b.train_rows < a.train_rows, "{} vs {}", b.train_rows, a.train_rows);
        assert!((a.value - b.value).abs() > 1e-9);
        // A quality setting that refuses the data is the data section's, as in a backtest.
        let mut strict = nightly(-1.0);
        strict.backtest.data.quality =
            Some(stockcast_features::QualityConfig { max_gap_calendar_days: 1, ..Default::default() });
        strict
            .backtest
            .data
            .quality
            .as_mut()
            .unwrap()
            .policies
            .insert(stockcast_features::Check::Gap, stockcast_features::Policy::Error);
        let e = run(&ctx, &strict, &TrainOptions { models_dir: dir.path().join("s"), ..opts }).unwrap_err();
        assert!(matches!(e, Error::Quality(_)) && e.chain().contains("gap"), "{}", e.chain());
    }
}
