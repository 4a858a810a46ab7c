//! What the two walk-forward jobs (backtest and nightly training) share: a plan of independent tasks, shards that
//! run any subset of them in other processes, and a merge that assembles the shards into the walk-forward the
//! whole run would have made, bit for bit. A job says how it prepares its data and plan, what its tasks read and
//! how it finishes ([`ShardedJob`]); [`run`], [`write_plan`], [`run_shard`] and [`merge`] are written once here,
//! and [`step`] runs one of them on a local or object-store run directory ([`Staging`]).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use stockcast_backtest::runner::{self, Plan, TaskOutput};
use stockcast_backtest::shard::{self, PlanFile, ShardId, Shards};
use stockcast_backtest::{ModelSpec, RunOptions, WalkForward};
use stockcast_models::Dataset;

use crate::staging::Staging;
use crate::{Ctx, Error, Result};

/// Seconds per stage of a run, recorded in its report.
pub type Timings = BTreeMap<String, f64>;

/// A job ready to run its walk-forward tasks: the plan file a shard adopts and a merge checks, the plan, and the
/// job's own state.
#[derive(Debug)]
pub struct Prepared<W> {
    /// The plan file this run makes from its configuration and data.
    pub file: PlanFile,
    /// Its calendar, folds and tasks.
    pub plan: Plan,
    /// What the job keeps for its finish.
    pub work: W,
}

/// What the walk-forward tasks read.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// The model input: built for the tasks, or borrowed from the job's state.
    pub dataset: Cow<'a, Dataset>,
    /// Horizon, purge span, seed and threads.
    pub options: RunOptions,
}

/// A walk-forward job that can run whole or as plan → shards → merge.
pub trait ShardedJob: Sized {
    /// The job's name in its plan file (`backtest`, `train`).
    const JOB: &'static str;
    /// What [`ShardedJob::prepare`] keeps for [`ShardedJob::finish`].
    type Work;
    /// The finished job.
    type Output;
    /// Held from preparing to finishing a whole run or a merge (the registry's lock for training).
    type Lock;

    /// Takes what a whole run or a merge holds while it runs.
    ///
    /// # Errors
    /// Another process holds it.
    fn lock(&self) -> Result<Self::Lock>;

    /// Reads the data and makes the plan, calling `check` on the plan file as soon as it is known (before any
    /// costly step that does not need it): a shard adopts it, a merge compares it with the plan it merges.
    ///
    /// # Errors
    /// Data, configuration and plan errors, and `check`'s.
    fn prepare(&self, ctx: &Ctx, check: &dyn Fn(&PlanFile) -> Result<()>) -> Result<Prepared<Self::Work>>;

    /// The models the walk-forward evaluates, in the plan's order.
    fn models(work: &Self::Work) -> &[ModelSpec];

    /// What the tasks read (features are built here when the job's state does not hold them).
    ///
    /// # Errors
    /// Feature errors.
    fn inputs<'a>(&self, ctx: &Ctx, work: &'a Self::Work) -> Result<Inputs<'a>>;

    /// Called by a whole run once the tasks' inputs are built, before the tasks run: the job may keep what its
    /// finish needs in a smaller form and free what only the inputs were built from. Nothing by default.
    ///
    /// # Errors
    /// The job's own.
    fn inputs_built(&mut self, _ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    /// Evaluates the assembled walk-forward and does the job's last step.
    ///
    /// # Errors
    /// The job's own.
    fn finish(self, ctx: &Ctx, work: Self::Work, wf: WalkForward, timings: Timings) -> Result<Self::Output>;

    /// A merge's finish on the checked `shards` of `p` in run directory `dir`: by default every task is read
    /// and assembled into the walk-forward, then [`ShardedJob::finish`]; a job may read them model by model
    /// instead, holding one model's predictions at a time. It owns the job, so it may free the job's data as soon
    /// as it is no longer needed. Records the seconds spent reading as `merge_read`.
    ///
    /// # Errors
    /// Unreadable shards; the finish's.
    fn finish_merge(
        self,
        ctx: &Ctx,
        p: Prepared<Self::Work>,
        shards: &Shards,
        _dir: &Path,
        mut timings: Timings,
    ) -> Result<Self::Output> {
        let t = Instant::now();
        let models = Self::models(&p.work);
        let tasks = shards.read(&p.file, models, &|_| true)?;
        let wf = runner::assemble(&p.plan, models, tasks);
        timings.insert("merge_read".to_owned(), t.elapsed().as_secs_f64());
        self.finish(ctx, p.work, wf, timings)
    }
}

/// Runs the tasks `which` of `p` with a progress bar named `label`.
fn run_tasks<J: ShardedJob>(
    ctx: &Ctx,
    p: &Prepared<J::Work>,
    inputs: &Inputs<'_>,
    which: &[usize],
    label: &str,
) -> Result<Vec<TaskOutput>> {
    let pb = ctx.bar(label);
    let models = J::models(&p.work);
    let outputs =
        runner::run_tasks(&inputs.dataset, &p.plan, models, which, inputs.options, &|model, fold, done, total| {
            pb.update(done as u64, total as u64, &format!("{label} {model} fold {fold}"));
            tracing::debug!(model, fold, done, total, "fold done");
        })?;
    pb.finish();
    Ok(outputs)
}

/// The inputs of `p`, timed as `features`.
fn timed_inputs<'a, J: ShardedJob>(job: &J, ctx: &Ctx, work: &'a J::Work, timings: &mut Timings) -> Result<Inputs<'a>> {
    let t = Instant::now();
    let inputs = job.inputs(ctx, work)?;
    timings.insert("features".to_owned(), t.elapsed().as_secs_f64());
    Ok(inputs)
}

/// The whole job in this process: every task, then the finish.
///
/// # Errors
/// The job's errors at each step.
pub fn run<J: ShardedJob>(mut job: J, ctx: &Ctx) -> Result<J::Output> {
    let _lock = job.lock()?;
    let p = job.prepare(ctx, &|_| Ok(()))?;
    let mut timings = Timings::new();
    let inputs = timed_inputs(&job, ctx, &p.work, &mut timings)?;
    job.inputs_built(ctx)?;
    let t = Instant::now();
    let all: Vec<usize> = (0..p.plan.tasks.len()).collect();
    let outputs = run_tasks::<J>(ctx, &p, &inputs, &all, "walk-forward")?;
    let wf = runner::assemble(&p.plan, J::models(&p.work), all.into_iter().zip(outputs));
    timings.insert("walk_forward".to_owned(), t.elapsed().as_secs_f64());
    // The model input is not needed to evaluate: freed before the finish.
    drop(inputs);
    job.finish(ctx, p.work, wf, timings)
}

/// `--plan`: writes `dir/plan.json` and returns it (nothing is fitted; the training job's registry is read only).
///
/// # Errors
/// As [`run`] before any fitting; the plan cannot be written.
pub fn write_plan<J: ShardedJob>(job: &J, ctx: &Ctx, dir: &Path) -> Result<PlanFile> {
    let p = job.prepare(ctx, &|_| Ok(()))?;
    p.file.write(dir)?;
    Ok(p.file)
}

/// What a shard did.
#[derive(Debug)]
pub struct ShardRun {
    /// Which shard.
    pub id: ShardId,
    /// Its output directory.
    pub dir: PathBuf,
    /// Tasks it ran, of how many in the plan.
    pub tasks: (usize, usize),
}

/// `--shard I/N`: runs the tasks of shard `id` and writes them to `dir/shards/<i>/` (replacing an earlier run of
/// it). When `dir/plan.json` exists it must be the plan this process makes (else a stale-plan error); when it
/// does not, it is written.
///
/// # Errors
/// A stale plan; as [`run`].
pub fn run_shard<J: ShardedJob>(job: &J, ctx: &Ctx, dir: &Path, id: ShardId) -> Result<ShardRun> {
    let p = job.prepare(ctx, &|file| Ok(file.adopt(dir)?))?;
    let mut timings = Timings::new();
    let inputs = timed_inputs(job, ctx, &p.work, &mut timings)?;
    let which = p.file.shard_tasks(id);
    let t = Instant::now();
    let outputs = run_tasks::<J>(ctx, &p, &inputs, &which, &format!("shard {id}:"))?;
    timings.insert("walk_forward".to_owned(), t.elapsed().as_secs_f64());
    let out = shard::write_shard(dir, &p.file, id, &outputs, timings)?;
    Ok(ShardRun { id, dir: out, tasks: (which.len(), p.plan.tasks.len()) })
}

/// The plan in `dir`, refused when another job made it.
///
/// # Errors
/// A missing or unreadable plan; a usage error for another job's plan.
pub fn read_plan<J: ShardedJob>(dir: &Path) -> Result<PlanFile> {
    let planned = PlanFile::read(dir)?;
    if planned.job != J::JOB {
        return Err(Error::usage(format!("{}: a plan of `{}`, not of a {}", dir.display(), planned.job, J::JOB)));
    }
    Ok(planned)
}

/// `merge`: checks that every shard in `dir` is there and ran the plan this process makes now (same
/// configuration, data, spec and models), assembles them and finishes exactly as [`run`] would have (the same
/// predictions and metrics, bit for bit).
///
/// # Errors
/// A missing, stale or incomplete shard, or data that is not what the plan was made from, each named.
pub fn merge<J: ShardedJob>(job: J, ctx: &Ctx, dir: &Path) -> Result<J::Output> {
    let _lock = job.lock()?;
    let planned = read_plan::<J>(dir)?;
    let p = job.prepare(ctx, &|file| Ok(planned.check_same(file, dir)?))?;
    let t = Instant::now();
    let shards = Shards::open(dir, &planned)?;
    let shard_timings = shards.timings();
    let mut timings = Timings::from([
        ("shards".to_owned(), shard_timings.len() as f64),
        ("merge_check".to_owned(), t.elapsed().as_secs_f64()),
    ]);
    for key in ["features", "walk_forward"] {
        let per: Vec<f64> = shard_timings.iter().filter_map(|t| t.get(key).copied()).collect();
        timings.insert(format!("{key}_shard_max"), per.iter().copied().fold(0.0, f64::max));
        timings.insert(format!("{key}_shard_total"), per.iter().sum());
    }
    job.finish_merge(ctx, p, &shards, dir, timings)
}

/// One step of a sharded run on a run directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Everything in this process.
    Whole,
    /// Write the plan.
    Plan,
    /// Run one shard's tasks.
    Shard(ShardId),
    /// Merge every shard and finish.
    Merge,
}

/// What a step did.
#[derive(Debug)]
pub enum Stepped<T> {
    /// The plan written.
    Planned(PlanFile),
    /// The shard run.
    Shard(ShardRun),
    /// The finished job (whole or merged).
    Done(T),
}

/// Runs `step` of `job` in `stage`: a whole run there, or one step of a sharded run, which downloads what it reads (the plan, and for a merge every complete shard) and
/// uploads what it wrote (the plan, a shard) when the run directory is on an object store.
///
/// # Errors
/// The step's; object-store errors.
pub fn step<J: ShardedJob>(job: J, ctx: &Ctx, stage: &Staging, step: Step) -> Result<Stepped<J::Output>> {
    Ok(match step {
        Step::Whole => Stepped::Done(run(job, ctx)?),
        Step::Plan => {
            let file = write_plan(&job, ctx, &stage.dir)?;
            stage.push_plan(true)?;
            Stepped::Planned(file)
        }
        Step::Shard(id) => {
            stage.pull(false)?;
            let r = run_shard(&job, ctx, &stage.dir, id)?;
            stage.push_shard(id)?;
            Stepped::Shard(r)
        }
        Step::Merge => {
            stage.pull(true)?;
            Stepped::Done(merge(job, ctx, &stage.dir)?)
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::Clock;
    use crate::backtest::{BacktestData, BacktestJob};
    use crate::train::{FinalFit, Gate, TrainConfig, TrainJob, TrainOptions};

    const MODELS: &str = "[[models]]\nname = \"lin\"\nmodel = { kind = \"linear\", alpha = 0.01 }\n\
                          [[models]]\nname = \"mom\"\nmodel = { kind = \"rule\", rule = \"momentum\", lookback = 20 }\n";

    fn bits(wf: &WalkForward) -> Vec<(String, String, chrono::NaiveDate, u64)> {
        wf.predictions
            .iter()
            .flat_map(|(m, v)| v.iter().map(move |p| (m.clone(), p.symbol.to_string(), p.date, p.score.to_bits())))
            .collect()
    }

    /// A CPCV backtest merged from two shards, streamed model by model: every path's statistics and the
    /// predictions file (path 0) are the whole run's, bit for bit.
    #[test]
    fn a_cpcv_merge_streams_every_path_of_each_model_as_the_whole_run_has_them() {
        let ctx = Ctx::quiet(Clock::fixed("2026-11-30T00:00:00Z".parse().unwrap()));
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::backtest::tests::config(MODELS);
        config.split.kind = stockcast_backtest::SplitKind::Cpcv;
        (config.split.groups, config.split.test_groups, config.split.valid_days) = (5, 2, 0);
        let data = BacktestData::load(&ctx, &config, None, &dir.path().join("q.csv")).unwrap();
        let job = BacktestJob::new(config, data);
        let whole = run(job.clone(), &ctx).unwrap();
        assert!(whole.walk_forward.paths.values().all(|p| p.len() == 4), "C(5,2) * 2 / 5 = 4 paths");

        let run_dir = dir.path().join("cpcv");
        write_plan(&job, &ctx, &run_dir).unwrap();
        for i in [1, 0] {
            run_shard(&job, &ctx, &run_dir, ShardId::new(i, 2).unwrap()).unwrap();
        }
        let merged = merge(job, &ctx, &run_dir).unwrap();
        let cpcv = |b: &crate::backtest::Backtest| -> Vec<(String, Vec<u64>, Vec<u64>)> {
            b.evaluation
                .models
                .iter()
                .map(|m| {
                    let c = m.cpcv.as_ref().unwrap();
                    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect();
                    (m.name.clone(), bits(&c.sharpe), bits(&c.rank_ic))
                })
                .collect()
        };
        assert_eq!(cpcv(&merged), cpcv(&whole));
        assert!(cpcv(&whole).iter().all(|(_, s, _)| s.len() == 4));
        let written = |b: &crate::backtest::Backtest, to: &Path| {
            b.write(to, stockcast_features::outputs::Replace::Own).unwrap();
            std::fs::read(to.join("predictions.parquet")).unwrap()
        };
        assert_eq!(written(&merged, &run_dir), written(&whole, &dir.path().join("whole")));
    }

    /// Both jobs through the one abstraction: plan, three shards in any order, merge — the same walk-forward as
    /// the whole run, bit for bit; a shard against a plan of other data, and a merge of another job's plan, refused.
    #[test]
    fn plan_shards_and_merge_give_the_whole_run_for_both_jobs() {
        let ctx = Ctx::quiet(Clock::fixed("2026-11-30T00:00:00Z".parse().unwrap()));
        let dir = tempfile::tempdir().unwrap();
        let config = crate::backtest::tests::config(MODELS);
        let data = BacktestData::load(&ctx, &config, None, &dir.path().join("q.csv")).unwrap();
        let job = BacktestJob::new(config.clone(), data);
        let whole = run(job.clone(), &ctx).unwrap();

        let run_dir = dir.path().join("sharded");
        let plan = write_plan(&job, &ctx, &run_dir).unwrap();
        assert_eq!(plan.job, "backtest");
        let mut ran = 0;
        for i in [2, 0, 1] {
            let r = run_shard(&job, &ctx, &run_dir, ShardId::new(i, 3).unwrap()).unwrap();
            assert_eq!(r.tasks.1, plan.tasks.len());
            ran += r.tasks.0;
        }
        assert_eq!(ran, plan.tasks.len(), "every task in exactly one shard");
        let merged = merge(job.clone(), &ctx, &run_dir).unwrap();
        assert!(!bits(&whole.walk_forward).is_empty());
        // The merge streamed each model's predictions to its predictions file: the same bytes as the whole run's.
        assert!(bits(&merged.walk_forward).is_empty() && merged.predictions_file.is_some());
        let written = |b: &crate::backtest::Backtest, to: &Path| {
            b.write(to, stockcast_features::outputs::Replace::Own).unwrap();
            std::fs::read(to.join("predictions.parquet")).unwrap()
        };
        assert_eq!(written(&merged, &run_dir), written(&whole, &dir.path().join("whole")));
        assert_eq!(merged.walk_forward.results.len(), whole.walk_forward.results.len());
        for (a, b) in merged.walk_forward.results.iter().zip(&whole.walk_forward.results) {
            assert_eq!((&a.model, a.fold, a.signal.rank_ic.to_bits()), (&b.model, b.fold, b.signal.rank_ic.to_bits()));
        }
        let total = |b: &crate::backtest::Backtest| b.evaluation.models[0].simulation.stats.total_return;
        assert_eq!(total(&merged).to_bits(), total(&whole).to_bits());

        // A shard of a job on other data does not adopt this plan.
        let mut other = config.clone();
        other.data.symbols = vec!["AAPL".into(), "MSFT".into()];
        let data = BacktestData::load(&ctx, &other, None, &dir.path().join("q.csv")).unwrap();
        let stale = BacktestJob::new(other, data);
        let e = run_shard(&stale, &ctx, &run_dir, ShardId::new(0, 3).unwrap()).unwrap_err();
        assert!(e.chain().contains("plan"), "{}", e.chain());

        // The nightly job refuses to merge a backtest's plan.
        let train = TrainJob {
            config: TrainConfig {
                path: "nightly.toml".into(),
                backtest: config,
                gate: Gate::default(),
                final_fit: FinalFit::default(),
            },
            options: TrainOptions { models_dir: dir.path().join("models"), ..TrainOptions::default() },
        };
        let e = merge(train, &ctx, &run_dir).unwrap_err();
        assert_eq!(e.kind(), crate::Kind::Usage, "{}", e.chain());
        assert!(e.chain().contains("not of a train"), "{}", e.chain());
    }
}
