//! The backtest job as a library call: prices → features → walk-forward of every configured model on the same
//! folds → signal, forecast and portfolio evaluation → a [`Backtest`] that writes the report directory.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;
use stockcast_backtest::config::ModelEntry;
use stockcast_backtest::predfile::{Layout, PredictionWriter, Spooled};
use stockcast_backtest::report::{self, Evaluation, RunMeta};
use stockcast_backtest::runner::FoldResult;
use stockcast_backtest::shard::{self, PlanFile, ShardId, Shards};
use stockcast_backtest::{
    BacktestConfig, Market, ModelSpec, RunOptions, WalkForward, label_alignment, portfolio, runner,
};
use stockcast_features::outputs::Replace;
use stockcast_features::{Checked, FeatureSpec, Policy, PriceFrame};
use stockcast_models::DatasetOptions;

use crate::prices::{PriceInput, load, require};
use crate::sharded::{self, Inputs, Prepared, ShardedJob, Step, Stepped, Timings};
use crate::staging::Staging;
use crate::{Context, Ctx, Error, Result, features};

/// The prices a backtest runs on, already loaded and checked.
#[derive(Debug, Clone)]
pub struct BacktestData {
    /// The prices (only `data.symbols` when the config names some).
    pub prices: PriceFrame,
    /// How the source is named in the report (a path, or a database URL without its password).
    pub source: String,
    /// Index closes for a second benchmark, when the config names an index file.
    pub index: Option<portfolio::Index>,
    /// The point-in-time universe, when the config names one (the prices then mark membership).
    pub universe: Option<stockcast_features::Universe>,
    /// The point-in-time classification, when the config names one (the prices then carry each date's sector).
    pub classification: Option<stockcast_features::Classification>,
    /// What the quality stage found and did.
    pub quality: stockcast_features::QualityReport,
}

/// The rows of `dataset` whose symbol is a member of `universe` on their date (all rows without one): only they
/// are trained on, scored and counted; a sequence model still reads the rows before each one (members or not)
/// from the whole matrix, kept as the context.
pub(crate) fn members(
    dataset: stockcast_models::Dataset,
    universe: Option<&stockcast_features::Universe>,
) -> stockcast_models::Dataset {
    let Some(u) = universe else { return dataset };
    let whole = std::sync::Arc::clone(dataset.context.as_ref().unwrap_or(&dataset.matrix));
    let mut kept = dataset.filter(|(s, d)| u.contains(s, *d));
    kept.context = Some(whole);
    kept
}

/// A one-day return beyond this (either way) in a portfolio or the benchmark is named in the report's banner.
pub const BIG_DAY: f64 = 0.25;

/// The report's data section: what the quality stage read, kept, removed and adjusted, and each finding with
/// its count and first examples.
fn data_quality(q: &stockcast_features::QualityReport) -> serde_json::Value {
    json!({
        "rows_read": q.rows_read,
        "rows_kept": q.rows_kept,
        "rows_quarantined": q.rows_quarantined,
        "findings": q.checks.iter().filter(|c| c.flagged > 0).map(|c| json!({
            "check": c.check.name(), "rows": c.flagged, "policy": c.policy.to_string(), "action": c.action,
            "examples": c.examples.iter().take(3).map(|e| format!("{} {}: {}", e.symbol,
                e.date.map(|d| d.to_string()).unwrap_or_default(), e.detail)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "split_adjustments": q.split_adjustments,
    })
}

/// The banner lines: findings the data kept that move prices (suspect splits, spikes, gaps warned but not
/// remedied), and one-day moves beyond [`BIG_DAY`] in a portfolio or the equal-weight benchmark.
fn banner(q: &stockcast_features::QualityReport, eval: &stockcast_backtest::report::Evaluation) -> Vec<String> {
    use stockcast_features::Check;
    let mut out = Vec::new();
    let kept: Vec<String> = [Check::SuspectSplit, Check::Spike, Check::Gap]
        .iter()
        .map(|c| q.check(*c))
        .filter(|c| c.flagged > 0 && c.action == "warned")
        .map(|c| {
            let e = c
                .examples
                .first()
                .map(|e| format!(", e.g. {} {}", e.symbol, e.date.map(|d| d.to_string()).unwrap_or_default()));
            format!("{} {} row(s){}", c.flagged, c.check.name(), e.unwrap_or_default())
        })
        .collect();
    if !kept.is_empty() {
        out.push(format!(
            "the data kept {} (policy warn): they move the benchmark and any portfolio holding those names; remedies: [data.quality] policies, declared splits or adjust_detected_splits (see data.quality)",
            kept.join("; ")
        ));
    }
    // The largest one-day move of a curve beyond BIG_DAY (returns from its first point: date i + 1's return).
    let big = |name: &str, dates: &[chrono::NaiveDate], curve: &[f64]| {
        let returns = stockcast_backtest::metrics::returns(curve);
        let worst = returns.iter().zip(dates.iter().skip(1)).filter(|(r, _)| r.is_finite() && r.abs() > BIG_DAY).fold(
            None,
            |w: Option<(f64, chrono::NaiveDate)>, (r, d)| match w {
                Some((x, _)) if x.abs() >= r.abs() => w,
                _ => Some((*r, *d)),
            },
        );
        worst.map(|(r, d)| {
            format!("{name} moved {:+.1} % on {d} (more than {:.0} % in one day)", 100.0 * r, 100.0 * BIG_DAY)
        })
    };
    if let Some(m) = eval.models.first() {
        out.extend(big("the equal-weight benchmark", &m.simulation.dates, &m.simulation.benchmark));
    }
    for m in &eval.models {
        out.extend(big(&m.name, &m.simulation.dates, &m.simulation.equity));
    }
    out
}

impl BacktestData {
    /// Loads what `cfg.data` names: prices through the quality checks (removed rows quarantined beside
    /// `quarantine_beside`), the symbol filter, and the index file.
    pub fn load(
        ctx: &Ctx,
        cfg: &BacktestConfig,
        on_bad_rows: Option<Policy>,
        quarantine_beside: &Path,
    ) -> Result<Self> {
        let path = require(cfg.data.prices.clone())?;
        let input = PriceInput {
            quality: cfg.data.quality.clone(),
            symbols: cfg.data.symbols.clone(),
            date_format: cfg.data.date_format.clone(),
            ..PriceInput::file(path.clone(), cfg.data.securities.clone(), on_bad_rows)
        };
        let loaded = load(ctx, &input, quarantine_beside, None)?;
        let mut prices = loaded.prices.filter_symbols(&cfg.data.symbols).context("data.symbols")?;
        let index = cfg.data.index.as_deref().map(|p| portfolio::load_index(p, cfg.data.index_kind)).transpose()?;
        let factors: Vec<_> = cfg
            .data
            .factors
            .iter()
            .map(stockcast_features::factors::FactorSource::load)
            .collect::<std::result::Result<_, _>>()?;
        prices = prices.with_factors(&factors)?;
        let universe = cfg.data.universe.as_deref().map(stockcast_features::Universe::load).transpose()?;
        if let Some(u) = &universe {
            prices = prices.with_universe(u)?;
        }
        let classification =
            cfg.data.classification.as_deref().map(stockcast_features::Classification::load).transpose()?;
        if let Some(c) = &classification {
            prices = prices.with_classification(c)?;
        }
        Ok(Self {
            prices,
            source: crate::prices::source_label(&path),
            index,
            universe,
            classification,
            quality: loaded.report,
        })
    }
}

/// A finished backtest: the walk-forward predictions and each model's evaluation.
#[derive(Debug)]
pub struct Backtest {
    /// The configuration it ran.
    pub config: BacktestConfig,
    /// The models, resolved from the config.
    pub models: Vec<ModelSpec>,
    /// The feature spec.
    pub spec: Checked<FeatureSpec>,
    /// Out-of-sample predictions and per-fold results.
    pub walk_forward: WalkForward,
    /// Signal, forecast and portfolio metrics per model.
    pub evaluation: Evaluation,
    /// What the report records about the run (config, data, hashes, seed, timings).
    pub meta: RunMeta,
    /// A streamed merge's `predictions.parquet`, written while it evaluated (its walk-forward then holds no
    /// predictions: they are read from this file); `None` when the walk-forward holds them.
    pub predictions_file: Option<Spooled>,
}

/// The spec a config asks for: its `data.spec` file (or the default spec) with `data.horizon` applied.
pub fn spec_of(cfg: &BacktestConfig) -> Result<Checked<FeatureSpec>> {
    features::resolve_spec(cfg.data.spec.as_deref(), cfg.data.horizon, false)
}

/// The backtest of a configuration on its data, as a [`ShardedJob`]: [`run`] whole, or plan → shards → merge
/// through [`sharded`].
#[derive(Debug, Clone)]
pub struct BacktestJob {
    /// The checked configuration.
    pub config: BacktestConfig,
    /// Its prices, loaded and checked.
    pub data: BacktestData,
    /// What the finish reads of the prices, once a whole run took it ([`ShardedJob::inputs_built`]) and freed
    /// the prices.
    facts: Option<PriceFacts>,
}

impl BacktestJob {
    /// The backtest of `config` on `data`.
    pub fn new(config: BacktestConfig, data: BacktestData) -> Self {
        Self { config, data, facts: None }
    }
}

/// What a backtest's finish reads of its prices: the market every simulation runs on and the facts the report
/// records. A whole run takes it as soon as the model input is built and frees the prices before the
/// walk-forward (the price frame is 1.6 GB at 25 M rows, the market's dense open/close/volume arrays 0.6 GB).
#[derive(Debug, Clone)]
struct PriceFacts {
    market: Market,
    range: Option<(chrono::NaiveDate, chrono::NaiveDate)>,
    data_hash: String,
    symbols: usize,
    rows: usize,
    member_rows: usize,
    adjusted: bool,
    /// Seconds spent building them (counted in `evaluate`, where they were built before).
    seconds: f64,
}

impl PriceFacts {
    fn of(prices: &PriceFrame) -> Result<Self> {
        let t = Instant::now();
        Ok(Self {
            market: Market::from_prices(prices)?,
            range: prices.date_range()?,
            data_hash: prices.data_hash().to_owned(),
            symbols: prices.symbols()?.len(),
            rows: prices.height(),
            member_rows: prices.member_rows(),
            adjusted: prices.adjusted(),
            seconds: t.elapsed().as_secs_f64(),
        })
    }
}

/// The models and spec of a backtest, resolved from its configuration.
#[derive(Debug)]
pub struct BacktestWork {
    models: Vec<ModelSpec>,
    spec: Checked<FeatureSpec>,
    dates: usize,
}

impl BacktestJob {
    /// `backtest merge`: the job a plan in `dir` records (its resolved configuration), on the data it names
    /// (`prices` replaces the recorded source: a database URL, whose password the plan leaves out).
    ///
    /// # Errors
    /// A missing plan or another job's; its configuration or data unusable.
    pub fn from_plan(ctx: &Ctx, stage: &Staging, prices: Option<PathBuf>, on_bad_rows: Option<Policy>) -> Result<Self> {
        stage.pull(true)?;
        let dir = &stage.dir;
        let planned = sharded::read_plan::<Self>(dir)?;
        let mut config = BacktestConfig::from_toml(&planned.config)
            .with_context(|| format!("the configuration in {}", dir.join(shard::PLAN_FILE).display()))?;
        if let Some(p) = prices {
            config.data.prices = Some(p);
        }
        let data = BacktestData::load(ctx, &config, on_bad_rows, &dir.with_extension("prices.csv"))?;
        Ok(Self::new(config, data))
    }
}

/// Runs `step` of `job` in `stage` and, when the run is done (whole or merged), writes its report directory
/// there (replacing an earlier run, or anything with `replace` = [`Replace::Force`]).
///
/// # Errors
/// As [`sharded::step`] and [`Backtest::save`].
pub fn execute(
    ctx: &Ctx,
    job: BacktestJob,
    stage: &Staging,
    step: Step,
    replace: Replace,
) -> Result<Stepped<Backtest>> {
    let done = sharded::step(job, ctx, stage, step)?;
    if let Stepped::Done(bt) = &done {
        bt.save(stage, replace)?;
    }
    Ok(done)
}

impl ShardedJob for BacktestJob {
    const JOB: &'static str = "backtest";
    type Work = BacktestWork;
    type Output = Backtest;
    type Lock = ();

    fn lock(&self) -> Result<()> {
        Ok(())
    }

    /// The plan over the prices' trading dates: no feature is built for it.
    fn prepare(&self, _: &Ctx, check: &dyn Fn(&PlanFile) -> Result<()>) -> Result<Prepared<BacktestWork>> {
        let (cfg, prices) = (&self.config, &self.data.prices);
        let (models, spec) = (cfg.model_specs()?, spec_of(cfg)?);
        let calendar = prices.calendar()?;
        let dates = calendar.len();
        let plan = runner::plan_calendar(calendar, &models, &cfg.split, spec.label.horizon)?;
        let config = toml::to_string(&resolved_config(cfg, &models)).context("writing the resolved config")?;
        let file = PlanFile::new(Self::JOB, config, prices.data_hash(), &spec.hash().0, cfg.seed, &models, &plan);
        check(&file)?;
        Ok(Prepared { file, plan, work: BacktestWork { models, spec, dates } })
    }

    fn models(work: &BacktestWork) -> &[ModelSpec] {
        &work.models
    }

    fn inputs<'a>(&self, ctx: &Ctx, work: &'a BacktestWork) -> Result<Inputs<'a>> {
        let cfg = &self.config;
        let dataset =
            features::dataset_for(ctx, &self.data.prices, &work.spec, &work.models, DatasetOptions::default())?;
        let dates = stockcast_backtest::split::calendar(dataset.matrix.index.iter().map(|(_, d)| *d)).len();
        if dates != work.dates {
            return Err(Error::Failed(format!("the dataset has {dates} trading dates, the prices {}", work.dates)));
        }
        let dataset = members(dataset, self.data.universe.as_ref());
        Ok(Inputs {
            dataset: Cow::Owned(dataset),
            options: RunOptions::new(&work.spec.label, cfg.seed, cfg.jobs).with_memory_gb(cfg.memory_gb),
        })
    }

    /// The market and the report's facts are taken from the prices, which are then freed (when the job held the
    /// last copy): the walk-forward and the evaluation read neither.
    fn inputs_built(&mut self, _: &Ctx) -> Result<()> {
        self.facts = Some(PriceFacts::of(&self.data.prices)?);
        self.data.prices = PriceFrame::empty();
        Ok(())
    }

    /// Evaluates a walk-forward (signal, forecast and portfolio metrics) and records the run.
    /// The prices are freed (when the job held the last copy) once the market is built from them.
    fn finish(mut self, ctx: &Ctx, work: BacktestWork, wf: WalkForward, timings: Timings) -> Result<Backtest> {
        let facts = self.take_facts()?;
        self.evaluate_and_record(ctx, work, facts, timings, |ev, _| {
            ev.walk_forward(&wf)?;
            Ok((wf, None))
        })
    }

    /// The merge streams: one model at a time (in name order, the order `predictions.parquet` lists them), its
    /// tasks are read from the shards, assembled, evaluated and appended to the run's `predictions.parquet`
    /// (written beside the run directory, then linked into it), so the merge holds one model's predictions,
    /// whatever the number of models. Every figure and file is the one the whole run makes, bit for bit. The
    /// prices are freed once the market the simulations read is built from them.
    fn finish_merge(
        mut self,
        ctx: &Ctx,
        p: Prepared<BacktestWork>,
        shards: &Shards,
        dir: &Path,
        timings: Timings,
    ) -> Result<Backtest> {
        let Prepared { file, plan, work } = p;
        let facts = self.take_facts()?;
        let models = work.models.clone();
        let mut order: Vec<usize> = (0..models.len()).collect();
        order.sort_by(|&a, &b| models[a].name.cmp(&models[b].name));
        // A hidden sibling of the run directory: writing the report replaces the directory's own entries.
        let name = dir.file_name().map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned());
        let spool = dir.with_file_name(format!(".{name}.predictions-{}.parquet", std::process::id()));
        self.evaluate_and_record(ctx, work, facts, timings, |ev, timings| {
            let mut writer = PredictionWriter::create(&spool, Layout::Report)?;
            let mut results: Vec<Vec<FoldResult>> = vec![Vec::new(); models.len()];
            let mut read = 0.0;
            // CPCV: every path is evaluated, path 0 is the model's predictions (as runner::assemble has them).
            let cpcv = plan.folds.iter().any(|f| !f.train_parts.is_empty());
            for m in order {
                let t = Instant::now();
                let (model_results, paths) = shards.read_model(&file, &models, &plan.folds, m)?;
                read += t.elapsed().as_secs_f64();
                let name = &models[m].name;
                let preds = paths.first().map_or(&[][..], Vec::as_slice);
                let refs: Vec<&FoldResult> = model_results.iter().collect();
                if !refs.is_empty() {
                    ev.model(name, preds, cpcv.then_some(paths.as_slice()), &refs)?;
                }
                writer.push(name, preds)?;
                tracing::debug!(model = %name, rows = preds.len(), "model merged");
                results[m] = model_results;
            }
            let (spooled, rows) = writer.finish_spooled()?;
            timings.insert("merge_read".to_owned(), read);
            timings.insert("merge_rows".to_owned(), rows as f64);
            let wf = WalkForward {
                calendar: plan.calendar,
                folds: plan.folds,
                results: results.into_iter().flatten().collect(),
                predictions: BTreeMap::new(),
                paths: BTreeMap::new(),
            };
            Ok((wf, Some(spooled)))
        })
    }
}

impl BacktestJob {
    /// The facts of the prices (taken now unless a whole run took them already); the prices are freed.
    fn take_facts(&mut self) -> Result<PriceFacts> {
        let facts = match self.facts.take() {
            Some(f) => f,
            None => PriceFacts::of(&self.data.prices)?,
        };
        self.data.prices = PriceFrame::empty();
        Ok(facts)
    }

    /// Evaluates the models `evaluate` passes to the evaluator (signal, forecast and portfolio metrics) and records
    /// the run; `evaluate` returns the walk-forward and, when it wrote them already, the predictions file.
    /// `prices` (the job's) are dropped once the market is built from them: the last copy is freed there.
    fn evaluate_and_record(
        &self,
        ctx: &Ctx,
        work: BacktestWork,
        facts: PriceFacts,
        mut timings: Timings,
        evaluate: impl FnOnce(&mut report::Evaluator<'_>, &mut Timings) -> Result<(WalkForward, Option<Spooled>)>,
    ) -> Result<Backtest> {
        let (cfg, data) = (&self.config, &self.data);
        let BacktestWork { models, spec, .. } = work;
        let alignment = label_alignment(&spec.label, cfg.strategy.fill);
        if let Some(w) = &alignment.warning {
            ctx.note(&format!("warning: {w}"));
        }
        let PriceFacts { market, range, data_hash, symbols, rows, member_rows, adjusted, seconds } = facts;
        let index_warning = data.index.as_ref().and_then(|i| i.kind.warning(adjusted));
        if let Some(w) = &index_warning {
            ctx.note(&format!("warning: {w}"));
        }
        let t = Instant::now();
        let (first, last) = range.unzip();
        let run = report::RunFacts { seed: cfg.seed, horizon: spec.label.horizon };
        let mut ev = report::Evaluator::new(&models, &market, &cfg.strategy, data.index.as_ref(), run, &cfg.report)?;
        let (wf, predictions_file) = evaluate(&mut ev, &mut timings)?;
        let evaluation = ev.finish(wf.folds.len());
        timings.insert("evaluate".to_owned(), seconds + t.elapsed().as_secs_f64());

        let mut quality = data_quality(&data.quality);
        let lines = banner(&data.quality, &evaluation);
        for line in &lines {
            ctx.note(&format!("warning: {line}"));
        }
        quality["banner"] = json!(lines);
        let mut resolved = serde_json::to_value(cfg)?;
        resolved["models_resolved"] = serde_json::to_value(&models)?;
        let meta = RunMeta {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            config: resolved,
            data: json!({
                "prices": data.source,
                "data_hash": data_hash,
                "symbols": symbols,
                "rows": rows,
                "first_date": first,
                "last_date": last,
                "quality": quality,
                "universe": data.universe.as_ref().map_or_else(
                    || json!("every symbol of the prices on every date it trades (no point-in-time membership: \
                              survivor-biased if the file holds today's members only)"),
                    |u| json!({"file": u.source.display().to_string(), "symbols": u.symbols(),
                               "member_rows": member_rows, "rows": rows}),
                ),
                "classification": data.classification.as_ref().map(|c| json!({
                    "file": c.source.display().to_string(), "symbols": c.symbols(), "spans": c.spans(),
                    "industry": c.has_industry,
                })),
                "index": cfg.data.index.as_ref().map(|p| json!({
                    "file": p.display().to_string(),
                    "kind": cfg.data.index_kind.name(),
                    "warning": index_warning,
                })),
            }),
            feature_spec_hash: spec.hash().0,
            horizon: spec.label.horizon,
            label: alignment,
            seed: cfg.seed,
            timings,
        };
        Ok(Backtest { config: cfg.clone(), models, spec, walk_forward: wf, evaluation, meta, predictions_file })
    }
}

/// Runs the backtest of `cfg` on `data` in this process.
///
/// # Errors
/// Invalid model or split configuration, too little data for the folds, feature and model errors.
pub fn run(ctx: &Ctx, cfg: &BacktestConfig, data: &BacktestData) -> Result<Backtest> {
    sharded::run(BacktestJob::new(cfg.clone(), data.clone()), ctx)
}

/// The configuration a plan records and its shards and merge run: every model inline (sweeps expanded, model
/// files read), `jobs` and `memory_gb` left out (they change no result), and a database URL without its password.
pub(crate) fn resolved_config(cfg: &BacktestConfig, models: &[ModelSpec]) -> BacktestConfig {
    let mut r = cfg.clone();
    r.models = models
        .iter()
        .map(|m| ModelEntry { name: m.name.clone(), config: None, model: Some(m.config.clone()) })
        .collect();
    r.sweep.clear();
    r.jobs = 1;
    r.memory_gb = None;
    if let Some(p) = r.data.prices.as_mut().filter(|p| stockcast_features::is_database_url(p)) {
        *p = PathBuf::from(stockcast_infer::store::redact(&p.to_string_lossy()));
    }
    r
}

/// The shard a process runs: `text` (`I/N`, or `env` for the scheduler's environment), or with only `shards`
/// given, the index from the environment. From the environment: a Slurm array task
/// (`SLURM_ARRAY_TASK_ID` − `SLURM_ARRAY_TASK_MIN` of `SLURM_ARRAY_TASK_COUNT`) or a Kubernetes Indexed Job
/// (`JOB_COMPLETION_INDEX` of `shards`). `env` reads a variable (the process environment in the CLI).
///
/// # Errors
/// A usage error naming what is missing or malformed.
pub fn shard_id(
    text: Option<&str>,
    shards: Option<usize>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<ShardId>> {
    let number = |name: &str| -> Result<Option<usize>> {
        env(name)
            .map(|v| v.trim().parse().map_err(|_| Error::usage(format!("{name}={v:?} is not a whole number"))))
            .transpose()
    };
    match (text, shards) {
        (None, None) => return Ok(None),
        (Some(t), _) if t != "env" => return Ok(Some(ShardId::parse(t).map_err(|e| Error::usage(e.to_string()))?)),
        _ => {}
    }
    let id = if let (Some(task), Some(count)) = (number("SLURM_ARRAY_TASK_ID")?, number("SLURM_ARRAY_TASK_COUNT")?) {
        let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let index =
            task.checked_sub(min).ok_or_else(|| Error::usage(format!("SLURM_ARRAY_TASK_ID {task} < MIN {min}")))?;
        ShardId::new(index, shards.unwrap_or(count))
    } else if let Some(index) = number("JOB_COMPLETION_INDEX")? {
        let n =
            shards.ok_or_else(|| Error::usage("JOB_COMPLETION_INDEX is set: give the shard count with --shards N"))?;
        ShardId::new(index, n)
    } else {
        return Err(Error::usage(
            "--shard without I/N reads the scheduler's environment, and neither SLURM_ARRAY_TASK_ID with \
             SLURM_ARRAY_TASK_COUNT nor JOB_COMPLETION_INDEX is set",
        ));
    };
    Ok(Some(id.map_err(|e| Error::usage(e.to_string()))?))
}

impl Backtest {
    /// Writes the report directory (report.json/md/html, plots, Parquet frames, trades) atomically into `dir`,
    /// which must be absent, empty, an earlier run, or `replace` must be [`Replace::Force`].
    pub fn write(&self, dir: &Path, replace: Replace) -> Result<PathBuf> {
        stockcast_backtest::rundir::write_run(dir, self.parts(), replace)
            .with_context(|| format!("writing the run to {}", dir.display()))
    }

    /// What its run directory is written from.
    pub fn parts(&self) -> stockcast_backtest::rundir::RunParts<'_> {
        stockcast_backtest::rundir::RunParts {
            meta: &self.meta,
            wf: &self.walk_forward,
            eval: &self.evaluation,
            strategy: &self.config.strategy,
            predictions: self.predictions_file.as_ref(),
        }
    }

    /// Writes the report directory into `stage` and uploads it when the run directory is on an object store.
    ///
    /// # Errors
    /// As [`Backtest::write`]; object-store errors.
    pub fn save(&self, stage: &Staging, replace: Replace) -> Result<()> {
        self.write(&stage.dir, replace)?;
        stage.push_run()
    }

    /// One line saying what ran.
    pub fn headline(&self) -> String {
        let wf = &self.walk_forward;
        format!(
            "backtest {}: {} model(s), {} folds ({} .. {}), horizon {}, strategy {:?}",
            self.config.name,
            self.models.len(),
            wf.folds.len(),
            wf.results.first().map(|r| r.test_start.to_string()).unwrap_or_default(),
            wf.results.iter().map(|r| r.test_end).max().map(|d| d.to_string()).unwrap_or_default(),
            self.spec.label.horizon,
            self.config.strategy.rule,
        )
    }

    /// The per-model summary table (Markdown).
    pub fn summary_table(&self) -> String {
        report::summary_table(&self.evaluation.models)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::Clock;
    use chrono::NaiveDate;
    use stockcast_backtest::config::Overrides;
    use stockcast_backtest::portfolio::IndexKind;
    use stockcast_models::Dataset;

    pub(crate) fn us5() -> PathBuf {
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo and nextest at run time"))
            .join("../../datasets/us5_daily.csv")
    }

    pub(crate) fn config(models: &str) -> BacktestConfig {
        let text = format!(
            "seed = 7\n[data]\nprices = {:?}\nhorizon = 5\n[split]\nmin_train_days = 504\ntest_days = 252\n\
             valid_days = 63\n{models}\n[strategy]\nkind = \"top_k\"\nk = 2\nrebalance_days = 5\n",
            us5().display().to_string()
        );
        BacktestConfig::from_toml(&text).unwrap()
    }

    const MODELS: &str = "[[models]]\nname = \"lin\"\nmodel = { kind = \"linear\", alpha = 0.01 }\n\
                          [[models]]\nname = \"mom\"\nmodel = { kind = \"rule\", rule = \"momentum\", lookback = 20 }\n";

    #[test]
    fn backtest_runs_as_a_library_call_and_is_reproducible() {
        let ctx = Ctx::quiet(Clock::fixed("2026-11-30T00:00:00Z".parse().unwrap()));
        let cfg = config(MODELS);
        let dir = tempfile::tempdir().unwrap();
        let data = BacktestData::load(&ctx, &cfg, None, &dir.path().join("q.csv")).unwrap();
        let a = run(&ctx, &cfg, &data).unwrap();
        let names: Vec<&str> = a.evaluation.models.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["lin", "mom"]);
        assert!(a.walk_forward.folds.len() >= 5, "{} folds", a.walk_forward.folds.len());
        // Every out-of-sample prediction is dated after its fold's training window plus the label horizon.
        let calendar = &a.walk_forward.calendar;
        for r in &a.walk_forward.results {
            let train_end = calendar.binary_search(&r.train_end).unwrap();
            let test_start = calendar.binary_search(&r.test_start).unwrap();
            assert!(test_start > train_end + 5, "fold {} of {}: gap {}", r.fold, r.model, test_start - train_end);
            // `train_end` is the last row trained on: its label, open(t+1) -> open(t+6), ends on the last date
            // before the test window (the window itself ends one date later; that row's label reaches the test).
            if r.model == "lin" {
                assert_eq!(
                    test_start - train_end,
                    7,
                    "fold {}: train_end {} test_start {}",
                    r.fold,
                    r.train_end,
                    r.test_start
                );
            }
        }
        // Same data, config and seed: identical predictions.
        let b = run(&ctx, &cfg, &data).unwrap();
        let bits = |x: &Backtest| -> Vec<(String, String, NaiveDate, u64)> {
            x.walk_forward
                .predictions
                .iter()
                .flat_map(|(m, v)| v.iter().map(move |p| (m.clone(), p.symbol.to_string(), p.date, p.score.to_bits())))
                .collect()
        };
        assert!(!bits(&a).is_empty());
        assert_eq!(bits(&a), bits(&b));
        let out = a.write(&dir.path().join("run"), Replace::Own).unwrap();
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
        assert!(report["models"]["lin"]["rank_ic"].is_number(), "{}", report["models"]["lin"]);
        // Forecast errors only where the score forecasts the label: the momentum rule's are null.
        assert!(report["models"]["lin"]["mae"].is_number());
        assert!(report["models"]["mom"]["mae"].is_null() && report["models"]["mom"]["relative_mae"].is_null());
        // The default label starts at the default next-open fill.
        assert_eq!(report["label"]["aligned"], true);
        assert_eq!(report["label"]["price"], "open");
        assert_eq!(report["seed"], 7);
        // The key set users read from notebooks: a renamed or dropped key shows up in review.
        let mut keys = std::collections::BTreeSet::new();
        key_paths(&report, "", &mut keys);
        assert!(keys.contains("models.lin.rank_ic"), "{keys:?}");
        insta::assert_snapshot!("report_json_keys", keys.into_iter().collect::<Vec<_>>().join("\n"));
    }

    #[test]
    fn the_report_says_which_index_it_compares_with_and_warns_on_a_price_index() {
        let ctx = Ctx::quiet(Clock::fixed("2026-11-30T00:00:00Z".parse().unwrap()));
        let index = us5().with_file_name("sp500_index_close.csv");
        let dir = tempfile::tempdir().unwrap();
        let mom = "[[models]]\nname = \"mom\"\nmodel = { kind = \"rule\", rule = \"momentum\", lookback = 20 }\n";
        let mut reports = Vec::new();
        for kind in [None, Some(IndexKind::TotalReturn)] {
            let mut cfg = config(mom)
                .with_overrides(&Overrides { index: Some(index.clone()), index_kind: kind, ..Overrides::default() })
                .unwrap();
            cfg.name = format!("idx{}", reports.len());
            let data = BacktestData::load(&ctx, &cfg, None, &dir.path().join("q.csv")).unwrap();
            assert!(data.prices.adjusted(), "us5 is dividend-adjusted");
            let out = run(&ctx, &cfg, &data).unwrap().write(&dir.path().join(&cfg.name), Replace::Own).unwrap();
            let json: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
            reports.push((json, std::fs::read_to_string(out.join("report.md")).unwrap()));
        }
        // The default is a price index: against dividend-adjusted prices the report says what that does.
        let (price, md) = &reports[0];
        assert_eq!(price["data"]["index"]["kind"], "price");
        let warning = price["data"]["index"]["warning"].as_str().unwrap();
        assert!(warning.contains("price index") && warning.contains("dividend"), "{warning}");
        assert!(md.contains(warning) && md.contains("| index (price) |"), "{md}");
        let (total, md) = &reports[1];
        assert_eq!(total["data"]["index"]["kind"], "total_return");
        assert!(total["data"]["index"]["warning"].is_null());
        assert!(md.contains("| index (total return) |") && !md.contains("price index"), "{md}");
        // Same file either way: the kind labels the numbers, it does not change them.
        let ret = |r: &serde_json::Value| r["models"]["mom"]["index_total_return"].as_f64().unwrap();
        assert!((ret(price) - ret(total)).abs() < 1e-12);
    }

    /// Seeded xorshift noise, uniform in [−0.5, 0.5).
    fn noise(seed: u64) -> impl FnMut() -> f64 {
        let mut rng = seed;
        move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        }
    }

    /// Eight names over 500 weekdays: three fail (they fall 0.4 % a day from day 250 and their rows end at day
    /// 350), one joins the universe at day 200 though it trades from day 0.
    fn failing_panel(dir: &Path) -> PathBuf {
        use std::fmt::Write as _;
        let mut next = noise(0x2545_f491_4f6c_dd1d);
        let dates = stockcast_features::synth::weekdays(NaiveDate::from_ymd_opt(2015, 1, 5).unwrap(), 500);
        let mut text = String::from("date,symbol,open,close\n");
        for s in 0..8 {
            let mut px = 50.0;
            for (i, d) in dates.iter().enumerate() {
                let failing = s < 3;
                if failing && i >= 350 {
                    break;
                }
                let drift = if failing && i >= 250 { -0.004 } else { 0.0004 };
                let open = px * (1.0 + 0.005 * next());
                px = open * (1.0 + drift + 0.02 * next());
                let _ = writeln!(text, "{d},S{s},{open},{px}");
            }
        }
        let path = dir.join("panel.csv");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_point_in_time_universe_differs_from_the_survivors_and_the_report_says_which() {
        let ctx = Ctx::quiet(Clock::fixed("2026-11-30T00:00:00Z".parse().unwrap()));
        let dir = tempfile::tempdir().unwrap();
        let prices = failing_panel(dir.path());
        // Point in time: the failing names until their last day, S7 from its 201st day; survivors: the five that
        // are still trading at the end, over the whole period (what a list of today's members gives).
        let pit = dir.path().join("pit.txt");
        std::fs::write(
            &pit,
            "S0\t2015-01-05\t2016-05-06\nS1\t2015-01-05\t2016-05-06\nS2\t2015-01-05\t2016-05-06\n\
             S3\t2015-01-05\t2016-11-25\nS4\t2015-01-05\t2016-11-25\nS5\t2015-01-05\t2016-11-25\n\
             S6\t2015-01-05\t2016-11-25\nS7\t2015-10-12\t2016-11-25\n",
        )
        .unwrap();
        let survivors = dir.path().join("survivors.csv");
        std::fs::write(&survivors, "symbol,start,end\nS3,2015-01-05,2016-11-25\nS4,2015-01-05,2016-11-25\nS5,2015-01-05,2016-11-25\nS6,2015-01-05,2016-11-25\nS7,2015-01-05,2016-11-25\n").unwrap();
        let mom = "[[models]]\nname = \"mom\"\nmodel = { kind = \"rule\", rule = \"momentum\", lookback = 20 }\n";
        let run_with = |universe: &Path| {
            let text = format!(
                "seed = 7\n[data]\nprices = {:?}\nuniverse = {:?}\nhorizon = 5\n[split]\nmin_train_days = 150\n\
                 test_days = 100\n{mom}\n[strategy]\nkind = \"top_k\"\nk = 2\nrebalance_days = 5\n",
                prices.display().to_string(),
                universe.display().to_string()
            );
            let cfg = BacktestConfig::from_toml(&text).unwrap();
            let data = BacktestData::load(&ctx, &cfg, None, &dir.path().join("q.csv")).unwrap();
            run(&ctx, &cfg, &data).unwrap()
        };
        let (a, b) = (run_with(&pit), run_with(&survivors));
        let u = stockcast_features::Universe::load(&pit).unwrap();
        // Every prediction is of a member on its date; the point-in-time run scores the failing names, the
        // survivors' run never does.
        for p in &a.walk_forward.predictions["mom"] {
            assert!(u.contains(&p.symbol, p.date), "{} {} is not a member", p.symbol, p.date);
        }
        assert!(a.walk_forward.predictions["mom"].iter().any(|p| &*p.symbol == "S0"));
        assert!(!b.walk_forward.predictions["mom"].iter().any(|p| ["S0", "S1", "S2"].contains(&&*p.symbol)));
        let late = NaiveDate::from_ymd_opt(2015, 10, 12).unwrap();
        assert!(!a.walk_forward.predictions["mom"].iter().any(|p| &*p.symbol == "S7" && p.date < late));
        let (ra, rb) = (
            a.evaluation.models[0].simulation.stats.total_return,
            b.evaluation.models[0].simulation.stats.total_return,
        );
        assert!((ra - rb).abs() > 1e-3, "point in time {ra} vs survivors {rb}");
        // The equal-weight benchmark holds the previous date's members: recomputed from the file.
        let text = std::fs::read_to_string(&prices).unwrap();
        let mut close: std::collections::BTreeMap<(String, NaiveDate), f64> = std::collections::BTreeMap::new();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            close.insert((f[1].to_owned(), f[0].parse().unwrap()), f[3].parse().unwrap());
        }
        let sim = &a.evaluation.models[0].simulation;
        let mut bench = sim.benchmark[0];
        for w in sim.dates.windows(2).enumerate() {
            let (i, [prev, day]) = w else { unreachable!() };
            let rets: Vec<f64> = (0..8)
                .map(|k| format!("S{k}"))
                .filter(|s| u.contains(s, *prev))
                .filter_map(|s| Some(close.get(&(s.clone(), *day))? / close.get(&(s, *prev))? - 1.0))
                .collect();
            bench *= 1.0 + rets.iter().sum::<f64>() / rets.len() as f64;
            assert!((sim.benchmark[i + 1] / bench - 1.0).abs() < 1e-12, "{day}: {} vs {bench}", sim.benchmark[i + 1]);
        }
        // The report says which universe was used.
        assert_eq!(a.meta.data["universe"]["file"], pit.display().to_string());
        assert_eq!(a.meta.data["universe"]["symbols"], 8);
        assert!(
            a.meta.data["universe"]["member_rows"].as_u64().unwrap()
                < a.meta.data["universe"]["rows"].as_u64().unwrap()
        );
    }

    /// Six names over 500 weekdays as CSV rows (`date,symbol,open,close`); `dirty` plants an unadjusted 2:1
    /// split in S2 (its prices before day 300 doubled) and a bad print in S4 (day 200's close tripled), and
    /// `drop_print` leaves S4's day 200 out.
    fn planted_panel(dirty: bool, drop_print: bool) -> String {
        use std::fmt::Write as _;
        let mut next = noise(0x9e37_79b9_7f4a_7c15);
        let dates = stockcast_features::synth::weekdays(NaiveDate::from_ymd_opt(2015, 1, 5).unwrap(), 500);
        let mut text = String::from("date,symbol,open,close\n");
        for s in 0..6 {
            let mut px = 40.0 + 10.0 * f64::from(s);
            for (i, d) in dates.iter().enumerate() {
                let open = px * (1.0 + 0.004 * next());
                px = open * (1.0 + 0.0003 + 0.015 * next());
                let (mut o, mut c) = (open, px);
                if dirty && s == 2 && i < 300 {
                    (o, c) = (2.0 * o, 2.0 * c);
                }
                if s == 4 && i == 200 {
                    if drop_print {
                        continue;
                    }
                    if dirty {
                        c *= 3.0;
                    }
                }
                let _ = writeln!(text, "{d},S{s},{o},{c}");
            }
        }
        text
    }

    #[test]
    fn quality_remedies_in_the_config_give_the_clean_panels_backtest_and_without_them_the_report_says_why() {
        let ctx = Ctx::quiet(Clock::fixed("2026-11-30T00:00:00Z".parse().unwrap()));
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let (clean, dirty) =
            (write("clean.csv", planted_panel(false, true)), write("dirty.csv", planted_panel(true, false)));
        let mom = "[[models]]\nname = \"mom\"\nmodel = { kind = \"rule\", rule = \"momentum\", lookback = 20 }\n";
        let run_on = |prices: &Path, quality: &str| {
            let text = format!(
                "seed = 7\n[data]\nprices = {:?}\nhorizon = 5\n{quality}\n[split]\nmin_train_days = 150\n\
                 test_days = 100\n{mom}\n[strategy]\nkind = \"top_k\"\nk = 2\nrebalance_days = 5\n",
                prices.display().to_string()
            );
            let cfg = BacktestConfig::from_toml(&text).unwrap();
            let data = BacktestData::load(&ctx, &cfg, None, &dir.path().join("q.csv")).unwrap();
            run(&ctx, &cfg, &data).unwrap()
        };
        let remedies = "[data.quality]\nadjust_detected_splits = true\n[data.quality.policies]\nspike = \"drop\"\n";
        let (a, b, raw) = (run_on(&clean, ""), run_on(&dirty, remedies), run_on(&dirty, ""));
        let stats = |x: &Backtest| x.evaluation.models[0].simulation.stats.clone();
        let (sa, sb, sr) = (stats(&a), stats(&b), stats(&raw));
        assert!(
            (sa.total_return - sb.total_return).abs() < 1e-9 * (1.0 + sa.total_return.abs()),
            "{} vs {}",
            sa.total_return,
            sb.total_return
        );
        assert!((sa.benchmark_total_return - sb.benchmark_total_return).abs() < 1e-9);
        assert_eq!(a.walk_forward.predictions["mom"].len(), b.walk_forward.predictions["mom"].len());
        // The remedies are on record: one detected split adjusted, one spike row quarantined.
        let q = &b.meta.data["quality"];
        assert_eq!(q["split_adjustments"].as_array().unwrap().len(), 1, "{q}");
        assert_eq!(q["rows_quarantined"], 1);
        assert!(q["banner"].as_array().unwrap().is_empty(), "{q}");
        // Without them the numbers differ and the banner names what the data did.
        assert!((sr.benchmark_total_return - sa.benchmark_total_return).abs() > 1e-3);
        let banner: Vec<String> = raw.meta.warnings();
        let text = banner.join(" | ");
        assert!(text.contains("suspect_split") && text.contains("spike") && text.contains("S2"), "{text}");
        assert!(text.contains("more than 25 % in one day") || text.contains("suspect_split"), "{text}");
    }

    /// A bundled example config (`configs/NAME`) with its linear model only, a quiet context and a scratch folder.
    fn example_config(name: &str) -> (Ctx, BacktestConfig, tempfile::TempDir) {
        let path = us5().parent().unwrap().join("../configs").join(name);
        let cfg = BacktestConfig::from_file(&path)
            .unwrap()
            .with_overrides(&Overrides { models: vec!["linear".into()], ..Overrides::default() })
            .unwrap();
        (Ctx::quiet(Clock::fixed("2026-11-30T00:00:00Z".parse().unwrap())), cfg, tempfile::tempdir().unwrap())
    }

    #[test]
    fn the_factor_example_config_joins_book_value_point_in_time_and_trains_on_it() {
        let (ctx, cfg, dir) = example_config("backtest_factors.toml");
        let data = BacktestData::load(&ctx, &cfg, None, &dir.path().join("q.csv")).unwrap();
        assert!(data.prices.df().column("book_value").is_ok());
        let spec = spec_of(&cfg).unwrap();
        let dataset = crate::features::dataset_for(
            &ctx,
            &data.prices,
            &spec,
            &cfg.model_specs().unwrap(),
            DatasetOptions::default(),
        )
        .unwrap();
        for name in ["f_book_value", "f_book_value_chg_63", "cs_rank_f_book_value"] {
            assert!(
                dataset.matrix.feature_names.iter().any(|f| f == name),
                "{name}: {:?}",
                dataset.matrix.feature_names
            );
        }
        let a = run(&ctx, &cfg, &data).unwrap();
        assert!(a.evaluation.models[0].signal.rank_ic.is_finite());
    }

    #[test]
    fn the_own_data_guide_config_runs_with_its_universe_classification_factor_and_formulas() {
        let (ctx, cfg, dir) = example_config("backtest_own_data.toml");
        let data = BacktestData::load(&ctx, &cfg, None, &dir.path().join("q.csv")).unwrap();
        let a = run(&ctx, &cfg, &data).unwrap();
        // GOOG is scored from its S&P 500 inclusion (2006-03-31) only; FB (included after the panel) never.
        let joined = NaiveDate::from_ymd_opt(2006, 3, 31).unwrap();
        let preds = &a.walk_forward.predictions["linear"];
        assert!(preds.iter().all(|p| &*p.symbol != "FB" && (&*p.symbol != "GOOG" || p.date >= joined)));
        assert!(preds.iter().any(|p| &*p.symbol == "GOOG"));
        assert_eq!(a.meta.data["classification"]["spans"], 8);
        let sheet = &a.evaluation.models[0].sheet;
        assert_eq!(sheet.quantile_mean_by_group.len(), 1, "every us5 name was Information Technology until 2018");
        assert!(sheet.sector_neutral_rank_ic.is_some_and(f64::is_finite));
        let out = a.write(&dir.path().join("run"), Replace::Own).unwrap();
        let md = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(md.contains("## By sector") && md.contains("| linear | Information Technology |"), "{md}");
    }

    #[test]
    fn the_tear_sheet_has_ic_by_sector_and_a_sector_neutral_ic() {
        let ctx = Ctx::quiet(Clock::fixed("2026-11-30T00:00:00Z".parse().unwrap()));
        let mut cfg =
            config("[[models]]\nname = \"mom\"\nmodel = { kind = \"rule\", rule = \"momentum\", lookback = 20 }\n");
        cfg.data.securities = Some(us5().with_file_name("us5_securities.csv"));
        let dir = tempfile::tempdir().unwrap();
        let data = BacktestData::load(&ctx, &cfg, None, &dir.path().join("q.csv")).unwrap();
        let a = run(&ctx, &cfg, &data).unwrap();
        let sheet = &a.evaluation.models[0].sheet;
        // Three names are Information Technology (AAPL, IBM, MSFT): the only sector with an IC of its own.
        assert_eq!(sheet.ic_by_group.len(), 1, "{:?}", sheet.ic_by_group);
        assert_eq!(sheet.ic_by_group[0].0, "Information Technology");
        // Recomputed from the predictions: scores demeaned per (date, sector), Spearman with the label.
        let sector =
            |s: &str| if ["GOOG", "FB"].contains(&s) { "Communication Services" } else { "Information Technology" };
        let mut by_date: std::collections::BTreeMap<NaiveDate, Vec<(&str, f64, f64)>> =
            std::collections::BTreeMap::new();
        for p in a.walk_forward.predictions["mom"].iter().filter(|p| p.score.is_finite() && p.label.is_finite()) {
            by_date.entry(p.date).or_default().push((sector(&p.symbol), p.score, p.label));
        }
        let mut ics = Vec::new();
        for rows in by_date.values().filter(|r| r.len() >= 3) {
            let mean = |g: &str| {
                let v: Vec<f64> = rows.iter().filter(|r| r.0 == g).map(|r| r.1).collect();
                v.iter().sum::<f64>() / v.len() as f64
            };
            let (s, l): (Vec<f64>, Vec<f64>) = rows.iter().map(|r| (r.1 - mean(r.0), r.2)).unzip();
            let ic = stockcast_backtest::metrics::spearman(&s, &l);
            if ic.is_finite() {
                ics.push(ic);
            }
        }
        let want = ics.iter().sum::<f64>() / ics.len() as f64;
        let got = sheet.sector_neutral_rank_ic.unwrap();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        assert!((got - a.evaluation.models[0].signal.rank_ic).abs() > 1e-6, "the neutral IC is its own number");
    }

    #[test]
    fn a_point_in_time_classification_drives_the_per_sector_tables() {
        // A reclassification invented for the test: GOOG and FB move from Information Technology to
        // Communication Services on 2009-01-02 (the real move was in 2018, after the panel ends).
        let ctx = Ctx::quiet(Clock::fixed("2026-11-30T00:00:00Z".parse().unwrap()));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("classes.csv");
        std::fs::write(
            &file,
            "symbol,start,end,sector\nAAPL,1999-01-01,,Information Technology\nIBM,1999-01-01,,Information Technology\n\
             MSFT,1999-01-01,,Information Technology\nGOOG,1999-01-01,2008-12-31,Information Technology\n\
             GOOG,2009-01-02,,Communication Services\nFB,2009-01-02,,Communication Services\n",
        )
        .unwrap();
        let mut cfg =
            config("[[models]]\nname = \"mom\"\nmodel = { kind = \"rule\", rule = \"momentum\", lookback = 20 }\n");
        cfg.data.securities = Some(us5().with_file_name("us5_securities.csv"));
        cfg.data.classification = Some(file.clone());
        let data = BacktestData::load(&ctx, &cfg, None, &dir.path().join("q.csv")).unwrap();
        let a = run(&ctx, &cfg, &data).unwrap();
        assert_eq!(a.meta.data["classification"]["file"], file.display().to_string());
        assert_eq!(a.meta.data["classification"]["spans"], 6);
        let sheet = &a.evaluation.models[0].sheet;
        let cut = NaiveDate::from_ymd_opt(2009, 1, 2).unwrap();
        let sector = |s: &str, d: NaiveDate| {
            if s == "FB" || (s == "GOOG" && d >= cut) { "Communication Services" } else { "Information Technology" }
        };
        // Recomputed from the predictions. pandas.qcut(x, 5) puts the n sorted distinct scores of a date in
        // these bins (pandas 2.3.3): n = 2 → 0, 4; 3 → 0, 2, 4; 4 → 0, 1, 3, 4; 5 → 0..4.
        let bins: [&[usize]; 4] = [&[0, 4], &[0, 2, 4], &[0, 1, 3, 4], &[0, 1, 2, 3, 4]];
        let mut by_date: std::collections::BTreeMap<NaiveDate, Vec<(&str, f64, f64)>> =
            std::collections::BTreeMap::new();
        for p in a.walk_forward.predictions["mom"].iter().filter(|p| p.score.is_finite() && p.label.is_finite()) {
            by_date.entry(p.date).or_default().push((sector(&p.symbol, p.date), p.score, p.label));
        }
        let mut cells: std::collections::BTreeMap<(&str, usize), Vec<f64>> = std::collections::BTreeMap::new();
        let (mut neutral, mut it_ics) = (Vec::new(), Vec::new());
        for rows in by_date.values_mut().filter(|r| r.len() >= 2) {
            rows.sort_by(|x, y| x.1.total_cmp(&y.1));
            assert!(rows.windows(2).all(|w| w[0].1 < w[1].1), "distinct scores, so bins follow the table");
            let mut cell: std::collections::BTreeMap<(&str, usize), Vec<f64>> = std::collections::BTreeMap::new();
            for (rank, r) in rows.iter().enumerate() {
                cell.entry((r.0, bins[rows.len() - 2][rank])).or_default().push(r.2);
            }
            for (k, v) in cell {
                cells.entry(k).or_default().push(v.iter().sum::<f64>() / v.len() as f64);
            }
            let mean = |g: &str| {
                let v: Vec<f64> = rows.iter().filter(|r| r.0 == g).map(|r| r.1).collect();
                v.iter().sum::<f64>() / v.len() as f64
            };
            if rows.len() >= 3 {
                let (s, l): (Vec<f64>, Vec<f64>) = rows.iter().map(|r| (r.1 - mean(r.0), r.2)).unzip();
                neutral.push(stockcast_backtest::metrics::spearman(&s, &l));
            }
            let it: Vec<&(&str, f64, f64)> = rows.iter().filter(|r| r.0 == "Information Technology").collect();
            if it.len() >= 3 {
                let (s, l): (Vec<f64>, Vec<f64>) = it.iter().map(|r| (r.1, r.2)).unzip();
                it_ics.push(stockcast_backtest::metrics::spearman(&s, &l));
            }
        }
        let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let groups: Vec<&str> = sheet.quantile_mean_by_group.iter().map(|g| g.0.as_str()).collect();
        assert_eq!(groups, ["Communication Services", "Information Technology"]);
        for (g, means) in &sheet.quantile_mean_by_group {
            for (k, got) in means.iter().enumerate() {
                match cells.get(&(g.as_str(), k)) {
                    Some(v) => assert!((got - avg(v)).abs() < 1e-12, "{g} Q{}: {got} vs {}", k + 1, avg(v)),
                    None => assert!(got.is_nan(), "{g} Q{} never had names", k + 1),
                }
            }
        }
        // Communication Services never has 3 names: only IT has an IC of its own, on every date.
        assert_eq!(sheet.ic_by_group.len(), 1);
        assert!((sheet.ic_by_group[0].1 - avg(&it_ics)).abs() < 1e-12);
        assert_eq!(sheet.ic_by_group[0].2, it_ics.len());
        let got = sheet.sector_neutral_rank_ic.unwrap();
        assert!((got - avg(&neutral)).abs() < 1e-12, "{got} vs {}", avg(&neutral));
        // The securities file's static sectors (today's) give other numbers.
        cfg.data.classification = None;
        let data = BacktestData::load(&ctx, &cfg, None, &dir.path().join("q.csv")).unwrap();
        let b = run(&ctx, &cfg, &data).unwrap();
        let other = b.evaluation.models[0].sheet.sector_neutral_rank_ic.unwrap();
        assert!((got - other).abs() > 1e-6, "{got} vs {other}");
    }

    #[test]
    fn a_universe_span_that_ends_before_it_starts_is_refused_naming_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("u.txt");
        std::fs::write(&bad, "AAPL\t2001-01-02\t2010-01-01\nMSFT\t2005-01-03\t2004-12-31\n").unwrap();
        let e = stockcast_features::Universe::load(&bad).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("MSFT") && e.contains("before it starts"), "{e}");
        std::fs::write(&bad, "AAPL 2001-01-02 2010-01-01\n").unwrap();
        assert!(stockcast_features::Universe::load(&bad).unwrap_err().to_string().contains("line 1"));
    }

    /// `--horizon 10` (what the CLI sets: `data.horizon`) moves the labels, the purge gap and every model's target
    /// together; the forecast kind follows the label instead of its own 5 days.
    #[test]
    fn one_horizon_moves_labels_purge_and_every_models_target() {
        let ctx = Ctx::quiet(Clock::fixed("2026-11-30T00:00:00Z".parse().unwrap()));
        let models = "[[models]]\nname = \"lin\"\nmodel = { kind = \"linear\", alpha = 0.01 }\n\
                      [[models]]\nname = \"ets\"\nmodel = { kind = \"forecast\", method = \"ets\", history_days = 200 }\n";
        let mut cfg = config(models);
        cfg.data.horizon = Some(10);
        let dir = tempfile::tempdir().unwrap();
        let data = BacktestData::load(&ctx, &cfg, None, &dir.path().join("q.csv")).unwrap();
        let bt = run(&ctx, &cfg, &data).unwrap();
        assert_eq!(bt.meta.horizon, 10);
        // Labels: open(t+1+10) / open(t+1) - 1 of the symbol's own rows, for every model's predictions.
        let series = data.prices.series().unwrap();
        let mut checked = 0;
        for (model, preds) in &bt.walk_forward.predictions {
            for p in preds.iter().filter(|p| p.label.is_finite()).step_by(97) {
                let s = series.iter().find(|s| *s.symbol == *p.symbol).unwrap();
                let open = s.open.as_ref().unwrap();
                let i = s.dates.binary_search(&p.date).unwrap();
                let want = open[i + 11] / open[i + 1] - 1.0;
                assert!((p.label - want).abs() < 1e-6, "{model} {} {}: {} vs {want}", p.symbol, p.date, p.label);
                checked += 1;
            }
        }
        assert!(checked > 20, "{checked}");
        // Purge: no training label window (11 rows with next-open labels) reaches its fold's test start.
        let calendar = &bt.walk_forward.calendar;
        for r in &bt.walk_forward.results {
            let train_end = calendar.binary_search(&r.train_end).unwrap();
            let test_start = calendar.binary_search(&r.test_start).unwrap();
            assert!(test_start > train_end + 10, "fold {} of {}: gap {}", r.fold, r.model, test_start - train_end);
        }
        // The forecast's target: a fit on these rows forecasts 10 days ahead, and a config that says 5 is refused.
        let spec = spec_of(&cfg).unwrap();
        assert_eq!(spec.label.horizon, 10);
        let train = Dataset::from_prices(
            &data.prices.until(NaiveDate::from_ymd_opt(2008, 12, 31).unwrap()).unwrap(),
            &spec,
            DatasetOptions {
                matrix: stockcast_features::MatrixOptions { require_label: true, drop_incomplete: true },
                context: false,
            },
        )
        .unwrap();
        assert_eq!(train.matrix.label.horizon, 10);
        let ets = stockcast_models::ModelConfig::from_toml("kind = \"forecast\"\nmethod = \"ets\"\n").unwrap();
        let fitted = stockcast_models::fit(&ets, &train, None, 1).unwrap();
        let saved = dir.path().join("ets");
        fitted.save(&saved, &[], Replace::Own).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(saved.join("forecast.json")).unwrap()).unwrap();
        assert_eq!(json["horizon"], 10);
        let five =
            stockcast_models::ModelConfig::from_toml("kind = \"forecast\"\nmethod = \"ets\"\nhorizon = 5\n").unwrap();
        let e = stockcast_models::fit(&five, &train, None, 1).unwrap_err().to_string();
        assert!(e.contains("label horizon is 10"), "{e}");
    }

    #[test]
    fn a_run_never_replaces_a_directory_it_did_not_write() {
        let ctx = Ctx::quiet(Clock::fixed("2026-11-30T00:00:00Z".parse().unwrap()));
        let cfg =
            config("[[models]]\nname = \"mom\"\nmodel = { kind = \"rule\", rule = \"momentum\", lookback = 20 }\n");
        let dir = tempfile::tempdir().unwrap();
        let data = BacktestData::load(&ctx, &cfg, None, &dir.path().join("q.csv")).unwrap();
        let bt = run(&ctx, &cfg, &data).unwrap();
        let listing = || {
            let mut v: Vec<String> =
                std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
            v.sort();
            v
        };
        // A user's folder: refused (exit code 2), every file intact, nothing left beside it.
        let user = dir.path().join("research");
        std::fs::create_dir_all(user.join("data")).unwrap();
        std::fs::write(user.join("thesis.txt"), "years of work").unwrap();
        std::fs::write(user.join("data/x.csv"), "a,b").unwrap();
        let before = listing();
        let e = bt.write(&user, Replace::Own).unwrap_err();
        assert_eq!(e.kind(), crate::Kind::Usage, "{}", e.chain());
        assert!(e.chain().contains("thesis.txt"), "{}", e.chain());
        assert_eq!(std::fs::read_to_string(user.join("thesis.txt")).unwrap(), "years of work");
        assert_eq!(std::fs::read_to_string(user.join("data/x.csv")).unwrap(), "a,b");
        assert_eq!(listing(), before);
        // An earlier run is replaced whole.
        let run_dir = dir.path().join("run");
        bt.write(&run_dir, Replace::Own).unwrap();
        std::fs::write(run_dir.join("stale.txt"), "from the earlier run").unwrap();
        bt.write(&run_dir, Replace::Own).unwrap();
        assert!(!run_dir.join("stale.txt").exists() && run_dir.join("report.html").is_file());
        // A crash between moving the earlier run aside and renaming the new one in leaves the earlier run complete.
        std::fs::write(run_dir.join("stale.txt"), "from the earlier run").unwrap();
        let files = |d: &Path| {
            let mut v: Vec<String> =
                std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
            v.sort();
            v
        };
        let earlier = files(&run_dir);
        let report_before = std::fs::read(run_dir.join("report.json")).unwrap();
        let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            stockcast_backtest::rundir::write_run_with(&run_dir, bt.parts(), Replace::Own, &|_| {
                panic!("injected crash")
            })
        }));
        assert!(crashed.is_err());
        let aside = dir.path().join(format!(".run.old-{}", std::process::id()));
        assert_eq!(files(&aside), earlier);
        assert_eq!(std::fs::read(aside.join("report.json")).unwrap(), report_before);
        // --force replaces the user's folder.
        bt.write(&user, Replace::Force).unwrap();
        assert!(!user.join("thesis.txt").exists() && user.join("report.json").is_file());
    }

    /// Dotted paths of every key (`[]` for array elements, the union over them).
    fn key_paths(v: &serde_json::Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    out.insert(p.clone());
                    key_paths(x, &p, out);
                }
            }
            serde_json::Value::Array(a) => {
                for x in a {
                    key_paths(x, &format!("{prefix}[]"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn a_rules_only_run_computes_no_features_and_scores_the_same() {
        let ctx = Ctx::quiet(Clock::fixed("2026-11-30T00:00:00Z".parse().unwrap()));
        let dir = tempfile::tempdir().unwrap();
        let both = config(MODELS);
        let data = BacktestData::load(&ctx, &both, None, &dir.path().join("q.csv")).unwrap();
        let rules =
            config("[[models]]\nname = \"mom\"\nmodel = { kind = \"rule\", rule = \"momentum\", lookback = 20 }\n");
        let models = rules.model_specs().unwrap();
        let spec = spec_of(&rules).unwrap();
        let only = crate::features::dataset_for(&ctx, &data.prices, &spec, &models, DatasetOptions::default()).unwrap();
        assert_eq!(only.matrix.ncols(), 0, "{:?}", only.matrix.feature_names);
        let full = crate::features::dataset_for(
            &ctx,
            &data.prices,
            &spec,
            &both.model_specs().unwrap(),
            DatasetOptions::default(),
        )
        .unwrap();
        assert!(full.matrix.ncols() > 60);
        // The same rows and labels, bit for bit.
        assert_eq!(only.matrix.index, full.matrix.index);
        let bits = |d: &Dataset| d.matrix.y.as_ref().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&only), bits(&full));
        // So the rule's out-of-sample scores, and its portfolio, do not depend on what else ran.
        let (a, b) = (run(&ctx, &rules, &data).unwrap(), run(&ctx, &both, &data).unwrap());
        let scores = |x: &Backtest| -> Vec<(String, NaiveDate, u64)> {
            x.walk_forward.predictions["mom"]
                .iter()
                .map(|p| (p.symbol.to_string(), p.date, p.score.to_bits()))
                .collect()
        };
        assert!(!scores(&a).is_empty());
        assert_eq!(scores(&a), scores(&b));
        let ret = |x: &Backtest| {
            let r = x.evaluation.models.iter().find(|r| r.name == "mom").unwrap();
            r.simulation.stats.total_return
        };
        assert!((ret(&a) - ret(&b)).abs() < 1e-12, "{} vs {}", ret(&a), ret(&b));
    }

    #[test]
    fn the_shard_comes_from_the_flag_or_the_schedulers_environment() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
        };
        let id = |t: Option<&str>, n: Option<usize>, vars| shard_id(t, n, env(vars));
        assert_eq!(id(None, None, &[("SLURM_ARRAY_TASK_ID", "1")]).unwrap(), None, "not sharded unless asked");
        assert_eq!(id(Some("2/4"), None, &[]).unwrap(), Some(ShardId { index: 2, count: 4 }));
        let slurm = &[("SLURM_ARRAY_TASK_ID", "5"), ("SLURM_ARRAY_TASK_COUNT", "4"), ("SLURM_ARRAY_TASK_MIN", "3")];
        assert_eq!(id(Some("env"), None, slurm).unwrap(), Some(ShardId { index: 2, count: 4 }));
        let k8s = &[("JOB_COMPLETION_INDEX", "3")];
        assert_eq!(id(None, Some(4), k8s).unwrap(), Some(ShardId { index: 3, count: 4 }));
        for (t, n, vars, says) in [
            (Some("4/4"), None, &[][..], "below the count"),
            (Some("x"), None, &[][..], "I/N"),
            (Some("env"), None, &[][..], "SLURM_ARRAY_TASK_ID"),
            (Some("env"), None, k8s, "--shards"),
            (None, Some(3), k8s, "3/3"),
            (None, Some(2), &[("JOB_COMPLETION_INDEX", "one")][..], "JOB_COMPLETION_INDEX"),
        ] {
            let e = id(t, n, vars).unwrap_err();
            assert_eq!(e.kind(), crate::Kind::Usage, "{}", e.chain());
            assert!(e.chain().contains(says), "{says}: {}", e.chain());
        }
    }

    #[test]
    fn an_unknown_symbol_filter_is_a_usage_error() {
        let ctx = Ctx::quiet(Clock::fixed("2026-11-30T00:00:00Z".parse().unwrap()));
        let mut cfg = config(MODELS);
        cfg.data.symbols = vec!["NOPE".into()];
        let dir = tempfile::tempdir().unwrap();
        let e = BacktestData::load(&ctx, &cfg, None, &dir.path().join("q.csv")).unwrap_err();
        assert_eq!(e.kind(), crate::Kind::Usage);
        assert!(e.chain().contains("NOPE"), "{}", e.chain());
    }
}
