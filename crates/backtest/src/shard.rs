//! Sharded walk-forward runs: a plan file, shard outputs and the checks of a merge.
//!
//! A run directory of a sharded run holds `plan.json` (the tasks of [`runner::plan`], the configuration and the
//! data and spec hashes they assume) and `shards/<i>/` per shard (`shard.json` and `predictions.parquet`, written
//! to a temporary directory and renamed into place, so a shard directory is complete or absent and a rerun
//! replaces it). [`Shards`] checks that every shard of one plan is there and puts the task outputs back
//! together; what it returns is exactly what the tasks produced in one process (scores and labels are stored as
//! the same f64 bits, fold metrics are recomputed from them by the same code).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use stockcast_features::polars::prelude::*;
use stockcast_features::prices::days_to_date;
use stockcast_models::Importance;

use crate::error::{Error, Result};
use crate::predfile::{Layout, PredictionWriter};
use crate::runner::{self, FoldResult, ModelSpec, OosPrediction, Plan, Task, TaskOutput};

/// The plan file's name in a run directory.
pub const PLAN_FILE: &str = "plan.json";
/// The folder of the shard outputs in a run directory.
pub const SHARDS_DIR: &str = "shards";
/// The folder deploy/slurm/submit.sh writes the scheduler's logs to.
pub const LOGS_DIR: &str = "logs";
/// What a sharded run keeps beside the report merged into its directory (the report replaces the rest).
pub const KEPT: [&str; 3] = [PLAN_FILE, SHARDS_DIR, LOGS_DIR];
const SHARD_FILE: &str = "shard.json";
const PREDICTIONS_FILE: &str = "predictions.parquet";
const FORMAT: u32 = 2;
/// Rows a merge reads from a shard's predictions file at once (whole folds).
const READ_ROWS: usize = 1 << 21;

/// Which part of a plan a process runs: shard `index` of `count` (its tasks: [`PlanFile::shard_tasks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardId {
    /// From 0.
    pub index: usize,
    /// Shards in all (at least 1).
    pub count: usize,
}

impl ShardId {
    /// Checks `index < count`.
    ///
    /// # Errors
    /// [`Error::Config`] naming both.
    pub fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 || index >= count {
            return Err(Error::Config(format!("shard {index}/{count}: the index must be below the count (from 0)")));
        }
        Ok(Self { index, count })
    }

    /// Parses `I/N`.
    ///
    /// # Errors
    /// [`Error::Config`] quoting the text.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || Error::Config(format!("shard {text:?}: expected I/N, e.g. 0/4 (I from 0 to N-1)"));
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        Self::new(i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?)
    }
}

/// The shard of each task, for tasks of `weights` over `count` shards: the largest task first, each to the shard
/// with the least weight so far (the lowest index on ties). Deterministic, so every process computes the same
/// assignment from the plan; with expanding windows it pairs late (large) folds with early (small) ones instead
/// of giving one shard every model's last folds.
pub fn assign(weights: &[usize], count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(weights[i]), i));
    let mut load = vec![0usize; count.max(1)];
    let mut shard = vec![0; weights.len()];
    for i in order {
        let s = (0..load.len()).min_by_key(|&s| (load[s], s)).unwrap_or(0);
        load[s] += weights[i];
        shard[i] = s;
    }
    shard
}

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A planned task as the plan file lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedTask {
    /// Index in the plan.
    pub id: usize,
    /// Model name.
    pub model: String,
    /// The task (`model` is the model's index).
    pub task: Task,
    /// Its expected size ([`Plan::weight`]), which shards are balanced by.
    pub weight: usize,
}

/// `plan.json`: what every shard of a run must agree on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    /// Format of this file.
    pub format: u32,
    /// `backtest` or `train`.
    pub job: String,
    /// The resolved configuration (TOML, every model inline) that shards and the merge run.
    pub config: String,
    /// Content hash of `config`.
    pub config_hash: String,
    /// Content hash of the prices.
    pub data_hash: String,
    /// Hash of the feature spec.
    pub feature_spec_hash: String,
    /// Base seed.
    pub seed: u64,
    /// Model names in run order.
    pub models: Vec<String>,
    /// First and last trading date and how many.
    pub calendar: (NaiveDate, NaiveDate, usize),
    /// Folds.
    pub folds: usize,
    /// The tasks.
    pub tasks: Vec<PlannedTask>,
}

impl PlanFile {
    /// The plan file of `plan` for a run of `job` with the resolved `config` (TOML).
    pub fn new(
        job: &str,
        config: String,
        data_hash: &str,
        feature_spec_hash: &str,
        seed: u64,
        models: &[ModelSpec],
        plan: &Plan,
    ) -> Self {
        let tasks = plan
            .tasks
            .iter()
            .enumerate()
            .map(|(id, t)| PlannedTask {
                id,
                model: models[t.model].name.clone(),
                task: t.clone(),
                weight: plan.weight(t),
            })
            .collect();
        let cal = &plan.calendar;
        let first_last = |i: usize| cal.get(i).copied().unwrap_or(NaiveDate::MIN);
        Self {
            format: FORMAT,
            job: job.to_owned(),
            config_hash: stockcast_features::spec::content_hash(config.as_bytes()),
            config,
            data_hash: data_hash.to_owned(),
            feature_spec_hash: feature_spec_hash.to_owned(),
            seed,
            models: models.iter().map(|m| m.name.clone()).collect(),
            calendar: (first_last(0), first_last(cal.len().saturating_sub(1)), cal.len()),
            folds: plan.folds.len(),
            tasks,
        }
    }

    /// The tasks shard `id` runs (ascending), as [`assign`] balances the plan's tasks over `id.count` shards.
    pub fn shard_tasks(&self, id: ShardId) -> Vec<usize> {
        let weights: Vec<usize> = self.tasks.iter().map(|t| t.weight).collect();
        assign(&weights, id.count).into_iter().enumerate().filter(|(_, s)| *s == id.index).map(|(t, _)| t).collect()
    }

    /// Content hash of the whole plan (what shards record).
    pub fn hash(&self) -> String {
        stockcast_features::spec::content_hash(&serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads `dir/plan.json`.
    ///
    /// # Errors
    /// [`Error::Data`] naming the file when it is missing or unreadable.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(PLAN_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::Data(format!("{}: {e} (write it with `--plan`, or run a shard, first)", path.display()))
        })?;
        let plan: Self = serde_json::from_str(&text)
            .map_err(|e| Error::Data(format!("{}: not a plan file: {e}", path.display())))?;
        if plan.format != FORMAT {
            return Err(Error::Data(format!(
                "{}: plan format {} (this stockcast reads {FORMAT})",
                path.display(),
                plan.format
            )));
        }
        Ok(plan)
    }

    /// Writes `dir/plan.json` atomically.
    ///
    /// # Errors
    /// [`Error::File`].
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(PLAN_FILE);
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Data(e.to_string()))?;
        stockcast_features::io::write_atomic(&path, &bytes)?;
        Ok(path)
    }

    /// What a shard does with the plan it computed: checks it against `dir/plan.json` when there is one (a stale
    /// plan is an error naming what differs), writes it there when there is none.
    ///
    /// # Errors
    /// A stale or unreadable plan file; [`Error::File`] when it cannot be written.
    pub fn adopt(&self, dir: &Path) -> Result<()> {
        if !dir.join(PLAN_FILE).exists() {
            self.write(dir)?;
            return Ok(());
        }
        Self::read(dir)?.check_same(self, dir)
    }

    /// Checks that `other` (the plan a process computed now) is this plan, naming what differs.
    ///
    /// # Errors
    /// [`Error::Data`] naming the first difference and `dir`'s plan file.
    pub fn check_same(&self, other: &Self, dir: &Path) -> Result<()> {
        let differs = if self.job != other.job {
            Some(format!("the job ({} vs {})", self.job, other.job))
        } else if self.config_hash != other.config_hash {
            Some(format!("the configuration (hash {} vs {})", self.config_hash, other.config_hash))
        } else if self.data_hash != other.data_hash {
            Some(format!("the data (hash {} vs {})", self.data_hash, other.data_hash))
        } else if self.feature_spec_hash != other.feature_spec_hash {
            Some(format!("the feature spec (hash {} vs {})", self.feature_spec_hash, other.feature_spec_hash))
        } else if self != other {
            Some("the tasks".to_owned())
        } else {
            None
        };
        match differs {
            None => Ok(()),
            Some(what) => Err(Error::Data(format!(
                "{} is stale: it was planned for different {what}; write a new plan (--plan) or use another --out",
                dir.join(PLAN_FILE).display()
            ))),
        }
    }
}

/// A fold result as stored by a shard (metrics are recomputed from the predictions on reading).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredFold {
    task: usize,
    model: String,
    fold: usize,
    fit_fold: usize,
    train_start: NaiveDate,
    train_end: NaiveDate,
    test_start: NaiveDate,
    test_end: NaiveDate,
    train_rows: usize,
    valid_rows: usize,
    test_rows: usize,
    fit_seconds: f64,
    predict_seconds: f64,
    /// Out-of-sample rows of this fold in `predictions.parquet`.
    predictions: usize,
    /// The importance measure and (feature, value bits): JSON keeps the exact f64.
    importance: Option<(String, Vec<(String, u64)>)>,
}

/// `shards/<i>/shard.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShardFile {
    format: u32,
    plan_hash: String,
    shard: ShardId,
    tasks: Vec<usize>,
    folds: Vec<StoredFold>,
    /// Seconds per stage of this shard's process.
    timings: BTreeMap<String, f64>,
    /// The size and SHA-256 of each data file of the shard (`predictions.parquet`), checked at merge.
    files: BTreeMap<String, (u64, String)>,
}

/// A shard's directory in run directory `dir`.
pub fn shard_dir(dir: &Path, index: usize) -> PathBuf {
    dir.join(SHARDS_DIR).join(index.to_string())
}

/// Writes the outputs of `shard` (its tasks' outputs in task order) into `dir/shards/<i>/`, replacing an
/// earlier run of the same shard; nothing is visible there until every file is written.
///
/// # Errors
/// [`Error::File`] and Parquet errors.
pub fn write_shard(
    dir: &Path,
    plan: &PlanFile,
    shard: ShardId,
    outputs: &[TaskOutput],
    timings: BTreeMap<String, f64>,
) -> Result<PathBuf> {
    let tasks = plan.shard_tasks(shard);
    let mut folds = Vec::new();
    for (&task, out) in tasks.iter().zip(outputs) {
        for (r, rows) in out {
            folds.push(StoredFold {
                task,
                model: r.model.clone(),
                fold: r.fold,
                fit_fold: r.fit_fold,
                train_start: r.train_start,
                train_end: r.train_end,
                test_start: r.test_start,
                test_end: r.test_end,
                train_rows: r.train_rows,
                valid_rows: r.valid_rows,
                test_rows: r.test_rows,
                fit_seconds: r.fit_seconds,
                predict_seconds: r.predict_seconds,
                predictions: rows.len(),
                importance: r
                    .importance
                    .as_ref()
                    .map(|i| (i.measure.clone(), i.values.iter().map(|(f, v)| (f.clone(), v.to_bits())).collect())),
            });
        }
    }
    let mut file = ShardFile {
        format: FORMAT,
        plan_hash: plan.hash(),
        shard,
        tasks: tasks.clone(),
        folds,
        timings,
        files: BTreeMap::new(),
    };
    let target = shard_dir(dir, shard.index);
    let parent = dir.join(SHARDS_DIR);
    let tmp = parent.join(format!(".{}.tmp-{}", shard.index, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| {
        std::fs::create_dir_all(&tmp).map_err(|e| Error::file(&tmp, e))?;
        // Streamed in row groups: the shard holds its tasks' rows once, not again as a frame.
        let mut writer = PredictionWriter::create(&tmp.join(PREDICTIONS_FILE), Layout::Shard)?;
        for (&task, out) in tasks.iter().zip(outputs) {
            for (_, rows) in out {
                writer.push_task(task, rows)?;
            }
        }
        writer.finish()?;
        file.files.insert(PREDICTIONS_FILE.into(), stockcast_features::io::sha256_file(&tmp.join(PREDICTIONS_FILE))?);
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| Error::Data(e.to_string()))?;
        stockcast_features::io::write_atomic(&tmp.join(SHARD_FILE), &bytes)?;
        // A rerun replaces the earlier output: the old directory moves aside, the complete new one is renamed in,
        // then the old one goes (a reader sees the old shard, none, or the new one).
        stockcast_features::outputs::replace_dir(&tmp, &target, &[], &|_| {})?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.map(|()| target)
}

/// The shards of a plan in a run directory, checked ([`Shards::open`]) and read task by task ([`Shards::read`]):
/// a merge reads one model's tasks at a time.
#[derive(Debug)]
pub struct Shards {
    dir: PathBuf,
    files: Vec<ShardFile>,
}

impl Shards {
    /// Checks that every shard of one shard count is in `dir/shards/`, ran `plan`, covers its tasks completely,
    /// and that each one's predictions file is the one it wrote (size and SHA-256) with the rows its `shard.json`
    /// lists.
    ///
    /// # Errors
    /// [`Error::Data`] naming the missing, stale, incomplete or damaged shard.
    pub fn open(dir: &Path, plan: &PlanFile) -> Result<Self> {
        let root = dir.join(SHARDS_DIR);
        let entries = std::fs::read_dir(&root).map_err(|e| {
            Error::Data(format!("{}: {e} (no shard has finished: run `--shard I/N` for every I first)", root.display()))
        })?;
        let mut found = BTreeSet::new();
        for e in entries {
            let e = e.map_err(|e| Error::file(&root, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue; // a shard still being written, or one that died while writing
            }
            let index: usize = name.parse().map_err(|_| {
                Error::Data(format!("{}: not a shard directory (shards are named 0, 1, ...)", e.path().display()))
            })?;
            found.insert(index);
        }
        let plan_hash = plan.hash();
        let mut files = Vec::new();
        let mut count = None;
        for &i in &found {
            let path = shard_dir(dir, i).join(SHARD_FILE);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::Data(format!("shard {i}: {}: {e}", path.display())))?;
            let f: ShardFile = serde_json::from_str(&text)
                .map_err(|e| Error::Data(format!("shard {i}: {}: unreadable: {e}", path.display())))?;
            if f.plan_hash != plan_hash {
                return Err(Error::Data(format!(
                    "shard {i} ({}) is stale: it ran plan {} but {} is plan {plan_hash}; rerun it",
                    shard_dir(dir, i).display(),
                    f.plan_hash,
                    dir.join(PLAN_FILE).display()
                )));
            }
            match count {
                None => count = Some(f.shard.count),
                Some(n) if n != f.shard.count => {
                    return Err(Error::Data(format!(
                        "shard {i} was run as one of {} shards, shard {} as one of {n}: rerun all with one count",
                        f.shard.count,
                        found.iter().next().copied().unwrap_or(0)
                    )));
                }
                Some(_) => {}
            }
            if f.format != FORMAT {
                return Err(Error::Data(format!(
                    "shard {i}: {} has format {} (this stockcast writes {FORMAT}): rerun the shard",
                    path.display(),
                    f.format
                )));
            }
            verify_files(dir, i, &f)?;
            if f.shard.index != i || f.tasks != plan.shard_tasks(f.shard) {
                return Err(Error::Data(format!(
                    "shard {i}: {} lists other tasks than shard {}",
                    path.display(),
                    f.shard
                )));
            }
            check_folds(dir, plan, &f)?;
            files.push(f);
        }
        let n = count.ok_or_else(|| Error::Data(format!("{}: no shard has finished", root.display())))?;
        let missing: Vec<String> = (0..n).filter(|i| !found.contains(i)).map(|i| i.to_string()).collect();
        if !missing.is_empty() {
            return Err(Error::Data(format!(
                "shard(s) {} of {n} missing in {} (run `--shard I/{n}` for each)",
                missing.join(", "),
                root.display()
            )));
        }
        if let Some(extra) = found.iter().find(|&&i| i >= n) {
            return Err(Error::Data(format!("{}: shard {extra} is beyond the count {n}", root.display())));
        }
        Ok(Self { dir: dir.to_owned(), files })
    }

    /// Each shard's stage timings (seconds), in shard order.
    pub fn timings(&self) -> Vec<BTreeMap<String, f64>> {
        self.files.iter().map(|f| f.timings.clone()).collect()
    }

    /// The outputs of the tasks `want` picks (by index in the plan), in task order.
    ///
    /// # Errors
    /// [`Error::Data`] naming the shard and file when its rows are not what its `shard.json` lists.
    pub fn read(
        &self,
        plan: &PlanFile,
        models: &[ModelSpec],
        want: &dyn Fn(usize) -> bool,
    ) -> Result<Vec<(usize, TaskOutput)>> {
        let mut rows: Vec<Vec<OosPrediction>> = Vec::new();
        let results = self.read_into(plan, models, want, &mut rows, &|_, rows| {
            rows.push(Vec::new());
            rows.len() - 1
        })?;
        let mut per_task: BTreeMap<usize, TaskOutput> = BTreeMap::new();
        for ((task, result), preds) in results.into_iter().zip(rows) {
            per_task.entry(task).or_default().push((result, preds));
        }
        Ok(per_task.into_iter().collect())
    }

    /// Model `model`'s fold results (fold order) and its predictions per backtest path (`folds`: the plan's
    /// folds, which say each fold's path), each path's rows ordered by date, then symbol: what
    /// [`runner::assemble`] makes of the model's tasks, with each row read straight into its path.
    ///
    /// # Errors
    /// As [`Shards::read`].
    pub fn read_model(
        &self,
        plan: &PlanFile,
        models: &[ModelSpec],
        folds: &[crate::split::Fold],
        model: usize,
    ) -> Result<(Vec<FoldResult>, Vec<Vec<OosPrediction>>)> {
        let want = |t: usize| plan.tasks.get(t).is_some_and(|t| t.task.model == model);
        let path_of = |fold: usize| folds.get(fold).map_or(0, |f| f.path);
        let n_paths = folds.iter().map(|f| f.path + 1).max().unwrap_or(1);
        let mut paths: Vec<Vec<OosPrediction>> = vec![Vec::new(); n_paths];
        for s in self.files.iter().flat_map(|f| &f.folds).filter(|s| want(s.task)) {
            paths[path_of(s.fold)].reserve_exact(s.predictions);
        }
        let results = self.read_into(plan, models, &want, &mut paths, &|s, _| path_of(s.fold))?;
        let mut results: Vec<FoldResult> = results.into_iter().map(|(_, r)| r).collect();
        results.sort_by_key(|r| r.fold);
        for p in &mut paths {
            runner::sort_by_date_and_symbol(p);
        }
        Ok((results, paths))
    }

    /// Reads the folds of the tasks `want` picks, shard by shard, appending each fold's rows to the vector of
    /// `dests` that `place` picks (it may add one); their (task, fold result) in reading order.
    fn read_into(
        &self,
        plan: &PlanFile,
        models: &[ModelSpec],
        want: &dyn Fn(usize) -> bool,
        dests: &mut Vec<Vec<OosPrediction>>,
        place: &dyn Fn(&StoredFold, &mut Vec<Vec<OosPrediction>>) -> usize,
    ) -> Result<Vec<(usize, FoldResult)>> {
        let mut results = Vec::new();
        for f in &self.files {
            let i = f.shard.index;
            let path = shard_dir(&self.dir, i).join(PREDICTIONS_FILE);
            // The wanted folds by the row ranges they take (a task's folds are consecutive rows), each range at
            // most READ_ROWS rows unless one fold is more: what is read at once stays small beside the result.
            let (mut at, mut ranges) = (0, Vec::<(usize, usize, Vec<&StoredFold>)>::new());
            for s in &f.folds {
                if want(s.task) {
                    match ranges.last_mut() {
                        Some((start, len, folds)) if *start + *len == at && *len + s.predictions <= READ_ROWS => {
                            *len += s.predictions;
                            folds.push(s);
                        }
                        _ => ranges.push((at, s.predictions, vec![s])),
                    }
                }
                at += s.predictions;
            }
            for (offset, len, folds) in ranges {
                let mut rows = PredictionRows::read(&path, i, (offset, len))?;
                let mut r = 0;
                for s in folds {
                    let task = &plan.tasks[s.task];
                    let spec = models.get(task.task.model).filter(|m| m.name == s.model).ok_or_else(|| {
                        Error::Data(format!(
                            "shard {i}: task {} is model {} in the plan, not {}",
                            s.task, task.model, s.model
                        ))
                    })?;
                    let d = place(s, dests);
                    let dest = &mut dests[d];
                    let start = dest.len();
                    for _ in 0..s.predictions {
                        match rows.get(r)?.filter(|(t, p)| *t == s.task && p.fold as usize == s.fold) {
                            Some((_, p)) => dest.push(p),
                            None => {
                                return Err(Error::Data(format!(
                                    "shard {i}: {} has fewer predictions for {} fold {} than shard.json lists ({})",
                                    path.display(),
                                    s.model,
                                    s.fold,
                                    s.predictions
                                )));
                            }
                        }
                        r += 1;
                    }
                    let (signal, forecast) = runner::fold_stats(&spec.config, &dest[start..]);
                    results.push((s.task, s.result(signal, forecast)));
                }
                if r < rows.len() {
                    return Err(Error::Data(format!(
                        "shard {i}: {} has rows shard.json does not list",
                        path.display()
                    )));
                }
            }
        }
        Ok(results)
    }
}

impl StoredFold {
    /// The fold result this stored fold records, with its metrics (recomputed from its predictions).
    fn result(&self, signal: crate::metrics::SignalStats, forecast: crate::metrics::ForecastStats) -> FoldResult {
        FoldResult {
            model: self.model.clone(),
            fold: self.fold,
            fit_fold: self.fit_fold,
            train_start: self.train_start,
            train_end: self.train_end,
            test_start: self.test_start,
            test_end: self.test_end,
            train_rows: self.train_rows,
            valid_rows: self.valid_rows,
            test_rows: self.test_rows,
            fit_seconds: self.fit_seconds,
            predict_seconds: self.predict_seconds,
            signal,
            forecast,
            importance: self.importance.as_ref().map(|(measure, v)| Importance {
                measure: measure.clone(),
                values: v.iter().map(|(f, b)| (f.clone(), f64::from_bits(*b))).collect(),
            }),
        }
    }
}

/// Checks the folds shard `f` lists against `plan`: each names one of the shard's tasks, each task's folds are
/// consecutive and the plan's, and the predictions file holds as many rows as the folds list.
fn check_folds(dir: &Path, plan: &PlanFile, f: &ShardFile) -> Result<()> {
    let i = f.shard.index;
    let mut got: BTreeMap<usize, Vec<usize>> = f.tasks.iter().map(|&t| (t, Vec::new())).collect();
    let mut last = None;
    for s in &f.folds {
        let (Some(_), Some(folds)) = (plan.tasks.get(s.task), got.get_mut(&s.task)) else {
            return Err(Error::Data(format!("shard {i}: fold {} names task {} it was not given", s.fold, s.task)));
        };
        if last != Some(s.task) && !folds.is_empty() {
            return Err(Error::Data(format!("shard {i}: the folds of task {} are not listed together", s.task)));
        }
        folds.push(s.fold);
        last = Some(s.task);
    }
    for (t, folds) in got {
        let want = &plan.tasks[t].task.folds;
        if &folds != want {
            return Err(Error::Data(format!(
                "shard {i} is incomplete: task {t} ({}) has folds {folds:?}, the plan {want:?}",
                plan.tasks[t].model
            )));
        }
    }
    let path = shard_dir(dir, i).join(PREDICTIONS_FILE);
    let bad = |e: PolarsError| Error::Data(format!("shard {i}: {}: {e}", path.display()));
    let file = std::fs::File::open(&path).map_err(|e| Error::Data(format!("shard {i}: {}: {e}", path.display())))?;
    let rows = ParquetReader::new(file).num_rows().map_err(bad)?;
    let listed: usize = f.folds.iter().map(|s| s.predictions).sum();
    if rows > listed {
        return Err(Error::Data(format!("shard {i}: {} has rows shard.json does not list", path.display())));
    }
    if rows < listed {
        return Err(Error::Data(format!(
            "shard {i}: {} has {rows} predictions, fewer than shard.json lists ({listed})",
            path.display()
        )));
    }
    Ok(())
}

/// Checks that each data file of shard `i` has the size and SHA-256 its `shard.json` recorded (a file changed,
/// truncated or damaged after the shard finished is refused, naming it).
fn verify_files(dir: &Path, i: usize, f: &ShardFile) -> Result<()> {
    if !f.files.contains_key(PREDICTIONS_FILE) {
        return Err(Error::Data(format!("shard {i}: {SHARD_FILE} records no digest of {PREDICTIONS_FILE}")));
    }
    for (name, (size, sha)) in &f.files {
        if name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(Error::Data(format!("shard {i}: {SHARD_FILE} names {name:?}, not a file of the shard")));
        }
        let path = shard_dir(dir, i).join(name);
        let (got_size, got_sha) =
            stockcast_features::io::sha256_file(&path).map_err(|e| Error::Data(format!("shard {i}: {e}")))?;
        if (got_size, &got_sha) != (*size, sha) {
            return Err(Error::Data(format!(
                "shard {i}: {} is damaged or was changed after the shard finished: {got_size} bytes, sha256 {got_sha}; \
                 {SHARD_FILE} recorded {size} bytes, sha256 {sha} (rerun the shard)",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Rows `offset .. offset + len` of a shard's predictions file, as read (each row is checked as it is taken).
struct PredictionRows {
    path: PathBuf,
    shard: usize,
    offset: usize,
    task: UInt32Chunked,
    symbol: StringChunked,
    date: Int32Chunked,
    fold: UInt32Chunked,
    score: Float64Chunked,
    label: Float64Chunked,
    symbols: stockcast_features::SymbolTable,
}

impl PredictionRows {
    fn read(path: &Path, shard: usize, (offset, len): (usize, usize)) -> Result<Self> {
        let bad = |e: PolarsError| Error::Data(format!("shard {shard}: {}: {e}", path.display()));
        let file =
            std::fs::File::open(path).map_err(|e| Error::Data(format!("shard {shard}: {}: {e}", path.display())))?;
        let df = ParquetReader::new(file).with_slice(Some((offset, len))).finish().map_err(bad)?;
        let col = |n: &str| df.column(n).map_err(bad);
        Ok(Self {
            path: path.to_owned(),
            shard,
            offset,
            task: col("task")?.u32().map_err(bad)?.rechunk().into_owned(),
            symbol: col("symbol")?.str().map_err(bad)?.rechunk().into_owned(),
            date: col("date")?.i32().map_err(bad)?.rechunk().into_owned(),
            fold: col("fold")?.u32().map_err(bad)?.rechunk().into_owned(),
            score: col("score")?.f64().map_err(bad)?.rechunk().into_owned(),
            label: col("label")?.f64().map_err(bad)?.rechunk().into_owned(),
            symbols: stockcast_features::SymbolTable::default(),
        })
    }

    fn len(&self) -> usize {
        self.task.len()
    }

    /// Row `r` (from the range's start) with its task; `None` past the end.
    ///
    /// # Errors
    /// A missing value, naming the row.
    fn get(&mut self, r: usize) -> Result<Option<(usize, OosPrediction)>> {
        if r >= self.len() {
            return Ok(None);
        }
        let row = (
            self.task.get(r),
            self.symbol.get(r),
            self.date.get(r).and_then(days_to_date),
            self.fold.get(r),
            self.score.get(r),
            self.label.get(r),
        );
        let (Some(t), Some(s), Some(date), Some(fold), Some(score), Some(label)) = row else {
            return Err(Error::Data(format!(
                "shard {}: {}: row {} has a missing value",
                self.shard,
                self.path.display(),
                self.offset + r
            )));
        };
        let symbol = self.symbols.get(s);
        Ok(Some((t as usize, OosPrediction { symbol, date, fold, score, label })))
    }
}
