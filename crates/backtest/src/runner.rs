//! Walk-forward runner: for each model and fold, fit on the fold's training dates (validation tail for early
//! stopping where the model uses one), predict the test dates, and collect out-of-sample predictions and
//! per-fold metrics. Several models run on identical folds; fits run on `jobs` threads; a fold that does not
//! refit reuses the model of its refit fold. Every fit is seeded with `seed + fit fold`, so results do not depend
//! on the thread count or scheduling.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use chrono::NaiveDate;
use serde::Serialize;
use stockcast_features::Checked;
use stockcast_models::{Dataset, ModelConfig, Rows, TrainedModel};

use crate::error::{Error, Result};
use crate::metrics::{self, ForecastStats, SignalStats};
use crate::split::{Fold, Span, SplitConfig, calendar};

/// A model in a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSpec {
    /// Name in reports (unique in a run).
    pub name: String,
    /// Its configuration.
    pub config: Checked<ModelConfig>,
}

/// One out-of-sample prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OosPrediction {
    /// Symbol, shared by the rows of a symbol (a 5,000 × 5,040 walk-forward holds 23 M rows per model: a `String`
    /// each cost ~3 GB more over three models).
    pub symbol: Arc<str>,
    /// Date of the features (the signal date).
    pub date: NaiveDate,
    /// Fold that predicted it (`u32`: a row is 40 bytes, not 48, over hundreds of millions of rows).
    pub fold: u32,
    /// Score.
    pub score: f64,
    /// Realised label (NaN when the horizon runs past the data).
    pub label: f64,
}

/// Metrics of one model on one fold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FoldResult {
    /// Model name.
    pub model: String,
    /// Fold number.
    pub fold: usize,
    /// The fold whose fit made these predictions.
    pub fit_fold: usize,
    /// Date of the first row the fit trained on (validation included; rules, which train on none: the window's
    /// first date).
    pub train_start: NaiveDate,
    /// Date of the last row the fit trained on (validation included): after the per-symbol purge, the last row
    /// whose label window ends before the next window. Rules: the training window's last date.
    pub train_end: NaiveDate,
    /// First test date.
    pub test_start: NaiveDate,
    /// Last test date.
    pub test_end: NaiveDate,
    /// Rows fitted on (without validation; 0 for models that learn nothing, such as rules).
    pub train_rows: usize,
    /// Validation rows.
    pub valid_rows: usize,
    /// Rows predicted.
    pub test_rows: usize,
    /// Seconds spent fitting (0 for folds that reuse a fit).
    pub fit_seconds: f64,
    /// Seconds spent predicting.
    pub predict_seconds: f64,
    /// Signal metrics on the fold's test dates.
    pub signal: SignalStats,
    /// Forecast errors on the fold's test dates.
    pub forecast: ForecastStats,
    /// Feature importance of the fit (on the fold that fitted it; None for folds reusing a fit and for kinds
    /// without a measure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub importance: Option<stockcast_models::Importance>,
}

/// The outcome of a walk-forward run.
#[derive(Debug, Clone, PartialEq)]
pub struct WalkForward {
    /// Trading dates of the data.
    pub calendar: Vec<NaiveDate>,
    /// The folds.
    pub folds: Vec<Fold>,
    /// Per model and fold (model order of the run, then fold order).
    pub results: Vec<FoldResult>,
    /// Out-of-sample predictions per model, ordered by date then symbol (CPCV: path 0).
    pub predictions: BTreeMap<String, Vec<OosPrediction>>,
    /// CPCV: every path's predictions per model (path 0 first), each ordered by date then symbol; empty for
    /// walk-forward runs.
    pub paths: BTreeMap<String, Vec<Vec<OosPrediction>>>,
}

/// Run parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Label horizon of the data (the gap is at least this).
    pub horizon: usize,
    /// Rows of a symbol from a signal row to the last price its label reads ([`LabelSpec::span_rows`]): training
    /// rows whose label window, counted in the symbol's own rows, reaches the next window are purged.
    ///
    /// [`LabelSpec::span_rows`]: stockcast_features::LabelSpec::span_rows
    pub label_span: usize,
    /// Base seed.
    pub seed: u64,
    /// Fits in parallel (at least 1).
    pub jobs: usize,
    /// Resident memory the run keeps under, in bytes, by starting a task only while its estimated working memory
    /// fits beside the tasks running (see [`run_tasks`]); `None`: `jobs` tasks at a time whatever their size.
    pub memory_limit: Option<u64>,
}

impl RunOptions {
    /// Options for data labelled by `label`.
    pub fn new(label: &stockcast_features::LabelSpec, seed: u64, jobs: usize) -> Self {
        Self { horizon: label.horizon, label_span: label.span_rows(), seed, jobs, memory_limit: None }
    }

    /// With a memory limit of `gb` gigabytes (10^9 bytes), when given.
    #[must_use]
    pub fn with_memory_gb(self, gb: Option<f64>) -> Self {
        Self { memory_limit: gb.map(|g| (g * 1e9) as u64), ..self }
    }
}

/// Progress reports: (model name, fold, folds done so far over all models, total).
pub type Progress<'a> = &'a (dyn Fn(&str, usize, usize, usize) + Sync);

fn span_dates(cal: &[NaiveDate], s: &Span) -> Option<(NaiveDate, NaiveDate)> {
    (!s.is_empty()).then(|| (cal[s.start], cal[s.end - 1]))
}

/// Rows of `data` with a date in `range`.
fn select(data: &Dataset, range: Option<(NaiveDate, NaiveDate)>) -> Dataset {
    let Some((a, b)) = range else { return data.filter(|_| false) };
    data.filter(|(_, d)| *d >= a && *d <= b)
}

/// Rows of `data` that can be trained on for a window starting at `before`: dated in `[from, to]`, a finite
/// label, every feature present, and a label window that ends before `before` in the symbol's own rows (the row
/// `label_span` rows later is dated before `before`). This is the per-symbol purge: the calendar gap between
/// folds counts dates of the union calendar, so a symbol missing bars near the boundary would otherwise keep
/// training labels that end inside the next window.
pub fn training_rows(
    data: &Dataset,
    from: NaiveDate,
    to: NaiveDate,
    before: NaiveDate,
    label_span: usize,
) -> Vec<usize> {
    LabelEnds::new(data, label_span).rows(data, from, to, before)
}

/// Per row of a dataset, the date its label window ends (the symbol's own row `label_span` rows later) when the
/// row can be trained on (a finite label, every feature present): worked out once per run, so that each fit's
/// [`training_rows`] is one pass of date comparisons instead of reading every feature of its rows and looking
/// up the symbol's history per row (on a 25 M-row expanding run, seconds per fit, again for every model).
#[derive(Debug)]
pub struct LabelEnds(Vec<Option<NaiveDate>>);

impl LabelEnds {
    /// The ends of `data`'s rows.
    pub fn new(data: &Dataset, label_span: usize) -> Self {
        // Rows of a symbol usually come together: its history is looked up once a run.
        let mut last: Option<(&Arc<str>, Option<&stockcast_models::SymbolHistory>)> = None;
        let ends = data
            .matrix
            .index
            .iter()
            .enumerate()
            .map(|(i, (symbol, date))| {
                if !data.is_trainable(i) {
                    return None;
                }
                let history = match last {
                    Some((s, h)) if Arc::ptr_eq(s, symbol) => h,
                    _ => {
                        let h = data.history.get(symbol);
                        last = Some((symbol, h));
                        h
                    }
                }?;
                let p = history.dates.binary_search(date).ok()?;
                history.dates.get(p + label_span).copied()
            })
            .collect();
        Self(ends)
    }

    /// [`training_rows`] of `data` (the dataset these ends are of).
    pub fn rows(&self, data: &Dataset, from: NaiveDate, to: NaiveDate, before: NaiveDate) -> Vec<usize> {
        let index = &data.matrix.index;
        (0..index.len())
            .filter(|&i| {
                let d = index[i].1;
                d >= from && d <= to && self.0.get(i).copied().flatten().is_some_and(|end| end < before)
            })
            .collect()
    }
}

/// [`training_rows`] over the calendar span `span`, purged against the date at calendar index `before`.
fn span_training_rows(data: &Dataset, ends: &LabelEnds, cal: &[NaiveDate], span: &Span, before: usize) -> Vec<usize> {
    let Some((a, b)) = span_dates(cal, span) else { return Vec::new() };
    // Past the calendar's end nothing follows: every label known in the data may be used.
    let before = cal.get(before).copied().unwrap_or(NaiveDate::MAX);
    ends.rows(data, a, b, before)
}

/// One unit of walk-forward work: a model's fit on its refit fold and the predictions of every fold that uses
/// that fit. Tasks are independent: any subset can run in any process and [`assemble`] puts them together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Task {
    /// Index of the model in the run's model list.
    pub model: usize,
    /// The fold that fits.
    pub fit_fold: usize,
    /// The folds predicted with that fit (the fit fold first).
    pub folds: Vec<usize>,
}

/// What one task produced: per fold its result and out-of-sample predictions.
pub type TaskOutput = Vec<(FoldResult, Vec<OosPrediction>)>;

/// The work of a run, before any fitting: the calendar, the folds and the tasks (model-major, then fit fold).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Trading dates of the data.
    pub calendar: Vec<NaiveDate>,
    /// The folds.
    pub folds: Vec<Fold>,
    /// The tasks.
    pub tasks: Vec<Task>,
}

impl Plan {
    /// A task's expected size for balancing shards: the calendar dates its fit trains on (validation included,
    /// or every CPCV training part) plus the test dates it predicts. Fit costs grow with the rows trained on, and
    /// under an expanding window the later folds' fits are the large ones.
    pub fn weight(&self, t: &Task) -> usize {
        self.train_dates(t) + t.folds.iter().map(|&i| self.folds[i].test.len()).sum::<usize>()
    }

    /// The calendar dates a task's fit trains on: its fold's training and validation dates, or every CPCV
    /// training part.
    pub fn train_dates(&self, t: &Task) -> usize {
        let f = &self.folds[t.fit_fold];
        if f.train_parts.is_empty() {
            f.train.len() + f.valid.len()
        } else {
            f.train_parts.iter().map(|(s, _)| s.len()).sum()
        }
    }
}

/// Checks the models and splits the calendar of `data` into folds and tasks.
///
/// # Errors
/// [`Error::Config`] for no models, a name used twice or an invalid model or split; [`Error::Data`] for too few
/// dates.
pub fn plan(data: &Dataset, models: &[ModelSpec], split: &SplitConfig, opts: RunOptions) -> Result<Plan> {
    plan_calendar(calendar(data.matrix.index.iter().map(|(_, d)| *d)), models, split, opts.horizon)
}

/// [`plan`] over a known calendar.
///
/// # Errors
/// As [`plan`].
pub fn plan_calendar(cal: Vec<NaiveDate>, models: &[ModelSpec], split: &SplitConfig, horizon: usize) -> Result<Plan> {
    if models.is_empty() {
        return Err(Error::Config("no models to run".into()));
    }
    for (i, m) in models.iter().enumerate() {
        if models[..i].iter().any(|o| o.name == m.name) {
            return Err(Error::Config(format!("model name {:?} is used twice", m.name)));
        }
    }
    let folds = split.folds(cal.len(), horizon)?;
    let tasks = (0..models.len())
        .flat_map(|m| {
            let folds = &folds;
            folds.iter().filter(|f| f.fit_fold == f.id).map(move |f| Task {
                model: m,
                fit_fold: f.id,
                folds: folds.iter().filter(|g| g.fit_fold == f.id).map(|g| g.id).collect(),
            })
        })
        .collect();
    Ok(Plan { calendar: cal, folds, tasks })
}

/// Fits and predicts every model on every fold of `split` over the dates of `data` (all rows, labels NaN where
/// unknown): [`plan`], [`run_tasks`] of every task, [`assemble`].
///
/// # Errors
/// [`Error::Config`]/[`Error::Data`] for unusable splits or data, [`Error::Model`] naming the model and fold.
pub fn run(
    data: &Dataset,
    models: &[ModelSpec],
    split: &SplitConfig,
    opts: RunOptions,
    progress: Progress<'_>,
) -> Result<WalkForward> {
    let plan = plan(data, models, split, opts)?;
    let all: Vec<usize> = (0..plan.tasks.len()).collect();
    let outputs = run_tasks(data, &plan, models, &all, opts, progress)?;
    Ok(assemble(&plan, models, all.into_iter().zip(outputs)))
}

/// Runs the tasks `which` (indices into `plan.tasks`) of `plan` on `jobs` threads; the outputs come in the order
/// of `which`. `progress` counts the folds of these tasks.
///
/// With a memory limit, tasks are taken largest first, and a task starts only while its estimated working
/// memory ([`task_bytes`]) fits, beside the estimates of the tasks running and the predictions of those
/// finished, in what the limit leaves above the process's resident memory when the run starts (the dataset). A
/// worker whose next task does not fit takes the first later one that does, or waits for a running task to
/// finish; a task runs alone whatever its size. Which tasks run together changes no result: each fit is seeded
/// by its fold.
///
/// # Errors
/// The first failing task's error ([`Error::Model`] naming the model and fold, [`Error::Data`]).
pub fn run_tasks(
    data: &Dataset,
    plan: &Plan,
    models: &[ModelSpec],
    which: &[usize],
    opts: RunOptions,
    progress: Progress<'_>,
) -> Result<Vec<TaskOutput>> {
    // Sequence models look up the rows before each row in the full matrix, which the train/test views made
    // below do not carry; datasets built with `DatasetOptions::context` have it already (no copy here).
    let with_context;
    let data = if data.context.is_none() && which.iter().any(|&t| models[plan.tasks[t].model].config.uses_sequences()) {
        with_context = Dataset { context: Some(Arc::clone(&data.matrix)), ..data.clone() };
        &with_context
    } else {
        data
    };
    let tasks: Vec<&Task> = which.iter().map(|&t| &plan.tasks[t]).collect();
    let learns = tasks.iter().any(|t| models[t.model].config.learns());
    let ends = if learns { LabelEnds::new(data, opts.label_span) } else { LabelEnds(Vec::new()) };
    let work = Work { data, ends: &ends, cal: &plan.calendar, folds: &plan.folds };
    let sizes: Vec<u64> = tasks.iter().map(|t| task_bytes(plan, data, &models[t.model], t)).collect();
    let kept: Vec<u64> =
        tasks.iter().map(|t| predicted_rows(plan, data, t) * std::mem::size_of::<OosPrediction>() as u64).collect();
    let mut pending: Vec<usize> = (0..tasks.len()).collect();
    let budget = opts.memory_limit.map(|limit| {
        // Largest first: the large fits run while few predictions are held, the small ones fill in beside them.
        pending.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
        let resident = resident_bytes().unwrap_or(0);
        let budget = limit.saturating_sub(resident);
        tracing::info!(
            limit_mb = limit >> 20,
            resident_mb = resident >> 20,
            predictions_mb = kept.iter().sum::<u64>() >> 20,
            largest_task_mb = sizes.iter().max().copied().unwrap_or(0) >> 20,
            "walk-forward tasks scheduled under a memory limit"
        );
        budget
    });
    let total = tasks.iter().map(|t| t.folds.len()).sum();
    let done = AtomicUsize::new(0);
    let queue = Mutex::new(Queue { pending, running: 0, bytes: 0, kept: 0 });
    let finished = Condvar::new();
    let outputs: Mutex<Vec<Option<Result<TaskOutput>>>> = Mutex::new((0..tasks.len()).map(|_| None).collect());
    let worker = || {
        while let Some(i) = next_task(&queue, &finished, &sizes, budget) {
            let task = tasks[i];
            let out = run_task(&work, &models[task.model], task, opts, &|fold| {
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                progress(&models[task.model].name, fold, n, total);
            });
            let failed = out.is_err();
            outputs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[i] = Some(out);
            let mut q = queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            q.finish(sizes[i], kept[i]);
            if failed {
                // Stop handing out work; running tasks finish.
                q.pending.clear();
            }
            drop(q);
            finished.notify_all();
        }
    };
    std::thread::scope(|s| {
        for _ in 1..opts.jobs.max(1).min(tasks.len()) {
            s.spawn(worker);
        }
        worker();
    });
    let outputs = outputs.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut done = Vec::with_capacity(outputs.len());
    for out in outputs {
        match out {
            Some(Ok(v)) => done.push(v),
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    Ok(done)
}

/// The tasks not started yet (in the order they start when they fit), the estimated bytes of those running
/// and the predictions returned by those finished.
struct Queue {
    pending: Vec<usize>,
    running: usize,
    bytes: u64,
    kept: u64,
}

impl Queue {
    /// A running task of estimated `bytes` finished, returning predictions of `kept` bytes.
    fn finish(&mut self, bytes: u64, kept: u64) {
        self.running -= 1;
        self.bytes -= bytes;
        self.kept += kept;
    }
}

/// The next task to run: the first pending one that fits `budget` beside the running ones and the predictions
/// kept (any, when none runs), waiting for a running task to finish when none fits; `None` when nothing is left.
fn next_task(queue: &Mutex<Queue>, finished: &Condvar, sizes: &[u64], budget: Option<u64>) -> Option<usize> {
    let mut q = queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        if q.pending.is_empty() {
            return None;
        }
        let fits = |i: usize| q.running == 0 || budget.is_none_or(|b| q.kept + q.bytes + sizes[i] <= b);
        if let Some(k) = q.pending.iter().position(|&i| fits(i)) {
            let i = q.pending.remove(k);
            q.running += 1;
            q.bytes += sizes[i];
            return Some(i);
        }
        q = finished.wait(q).unwrap_or_else(std::sync::PoisonError::into_inner);
    }
}

/// A task's estimated working memory beyond the dataset, in bytes: its model's fit over the training rows
/// ([`ModelConfig::fit_bytes`]) and their positions, and the largest of its test folds as a copy of their rows
/// with its predictions. Rows are estimated from the calendar dates at the dataset's mean rows per date.
pub fn task_bytes(plan: &Plan, data: &Dataset, spec: &ModelSpec, task: &Task) -> u64 {
    let features = data.matrix.ncols();
    let fit = if spec.config.learns() {
        let train = rows_of_dates(plan, data, plan.train_dates(task));
        spec.config.fit_bytes(train, features) + 8 * train as u64
    } else {
        0
    };
    // A test fold's copy: features, label and key per row; the model's scores and keys; the predictions.
    let test_row = 4 * features as u64 + 4 + 2 * std::mem::size_of::<stockcast_features::matrix::RowKey>() as u64 + 8;
    let test = task.folds.iter().map(|&i| rows_of_dates(plan, data, plan.folds[i].test.len())).max().unwrap_or(0);
    fit + test as u64 * test_row
}

/// The predictions a task returns (rows of its test folds), estimated as in [`task_bytes`].
fn predicted_rows(plan: &Plan, data: &Dataset, task: &Task) -> u64 {
    task.folds.iter().map(|&i| rows_of_dates(plan, data, plan.folds[i].test.len()) as u64).sum()
}

/// The rows of `dates` calendar dates at `data`'s mean rows per date (rounded up).
fn rows_of_dates(plan: &Plan, data: &Dataset, dates: usize) -> usize {
    (dates as f64 * data.len() as f64 / plan.calendar.len().max(1) as f64).ceil() as usize
}

/// This process's resident memory (Linux: `VmRSS`), when known.
pub fn resident_bytes() -> Option<u64> {
    status_bytes("VmRSS:")
}

/// This process's peak resident memory (Linux: `VmHWM`), when known.
pub fn peak_resident_bytes() -> Option<u64> {
    status_bytes("VmHWM:")
}

/// A `kB` field of `/proc/self/status`, in bytes.
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status.lines().find_map(|l| l.strip_prefix(field))?.split_whitespace().next()?.parse().ok()?;
    Some(kb * 1024)
}

/// What every task of a run reads.
struct Work<'a> {
    data: &'a Dataset,
    ends: &'a LabelEnds,
    cal: &'a [NaiveDate],
    folds: &'a [Fold],
}

/// Puts task outputs (by task index; every task of `plan` once, in any order) together into the run's result:
/// results in model then fold order, predictions per model ordered by date then symbol.
pub fn assemble(
    plan: &Plan,
    models: &[ModelSpec],
    outputs: impl IntoIterator<Item = (usize, TaskOutput)>,
) -> WalkForward {
    let folds = &plan.folds;
    let mut per_model: Vec<Vec<(FoldResult, Vec<OosPrediction>)>> = (0..models.len()).map(|_| Vec::new()).collect();
    for (t, out) in outputs {
        per_model[plan.tasks[t].model].extend(out);
    }
    let mut results = Vec::new();
    let mut predictions = BTreeMap::new();
    let mut paths = BTreeMap::new();
    let n_paths = folds.iter().map(|f| f.path + 1).max().unwrap_or(1);
    let cpcv = folds.iter().any(|f| !f.train_parts.is_empty());
    for (m, mut rows) in models.iter().zip(per_model) {
        rows.sort_by_key(|(r, _)| r.fold);
        let mut by_path: Vec<Vec<OosPrediction>> = vec![Vec::new(); n_paths];
        let mut sizes = vec![0; n_paths];
        for (r, p) in &rows {
            sizes[folds[r.fold].path] += p.len();
        }
        for (preds, n) in by_path.iter_mut().zip(sizes) {
            preds.reserve_exact(n);
        }
        for (r, p) in rows {
            by_path[folds[r.fold].path].extend(p);
            results.push(r);
        }
        for preds in &mut by_path {
            let counted = sort_by_date_and_symbol(preds);
            tracing::debug!(model = %m.name, rows = preds.len(), counted, "predictions ordered by date and symbol");
        }
        if cpcv {
            predictions.insert(m.name.clone(), by_path[0].clone());
            paths.insert(m.name.clone(), by_path);
        } else {
            // One path: its rows are the predictions (not a copy of them: 24 M rows on a 5,000-symbol run).
            predictions.insert(m.name.clone(), by_path.swap_remove(0));
        }
    }
    WalkForward { calendar: plan.calendar.clone(), folds: plan.folds.clone(), results, predictions, paths }
}

/// Orders a path's predictions by (date, symbol), which is unique within a path (its folds' test dates do not
/// overlap). A fold's rows come grouped by symbol, in symbol order, each symbol's by date: a stable counting sort
/// by date puts them in (date, symbol) order in linear time, moving each row once. When the symbols of a date do
/// not come out ascending (rows in another order), a comparison sort gives the same order. True when the counting
/// sort alone ordered them.
pub(crate) fn sort_by_date_and_symbol(preds: &mut [OosPrediction]) -> bool {
    let by_key = |a: &OosPrediction, b: &OosPrediction| a.date.cmp(&b.date).then_with(|| a.symbol.cmp(&b.symbol));
    let (Some(first), Some(last)) = (preds.iter().map(|p| p.date).min(), preds.iter().map(|p| p.date).max()) else {
        return true;
    };
    let day = |d: NaiveDate| usize::try_from((d - first).num_days()).unwrap_or(0);
    let span = day(last) + 1;
    if u32::try_from(preds.len()).is_err() || span > 4 * preds.len() + 1024 {
        preds.sort_unstable_by(by_key);
        return false;
    }
    // Where each row goes: its date's first free place.
    let mut start = vec![0u32; span + 1];
    for p in preds.iter() {
        start[day(p.date) + 1] += 1;
    }
    for d in 0..span {
        start[d + 1] += start[d];
    }
    let mut dest: Vec<u32> = preds
        .iter()
        .map(|p| {
            let slot = &mut start[day(p.date)];
            *slot += 1;
            *slot - 1
        })
        .collect();
    // Each cycle of the permutation in place: row i swaps into its place until the row at i belongs there.
    for i in 0..preds.len() {
        while dest[i] as usize != i {
            let j = dest[i] as usize;
            preds.swap(i, j);
            dest.swap(i, j);
        }
    }
    if preds.windows(2).any(|w| by_key(&w[0], &w[1]) != std::cmp::Ordering::Less) {
        preds.sort_unstable_by(by_key);
        return false;
    }
    true
}

/// A fold's signal and forecast metrics from its out-of-sample rows (forecast errors only where the score
/// estimates the label).
pub fn fold_stats(config: &ModelConfig, rows: &[OosPrediction]) -> (SignalStats, ForecastStats) {
    let daily = metrics::daily_ic(rows.iter().map(|p| (p.date, p.score, p.label)));
    let forecast = if config.score_is_label() {
        metrics::forecast_stats(rows.iter().map(|p| (p.score, p.label)))
    } else {
        ForecastStats::not_applicable()
    };
    (metrics::signal_stats(&daily), forecast)
}

fn run_task(
    work: &Work<'_>,
    spec: &ModelSpec,
    task: &Task,
    opts: RunOptions,
    on_fold: &dyn Fn(usize),
) -> Result<TaskOutput> {
    let Work { data, ends, cal, folds } = *work;
    let fit_fold = &folds[task.fit_fold];
    let model_err =
        |fold: usize| move |e: stockcast_models::Error| Error::Model { model: spec.name.clone(), fold, source: e };
    let uses_valid = spec.config.uses_validation() && !fit_fold.valid.is_empty();
    // Without a validation set in use, the validation tail (and its gap) is trained on.
    let train_span = if uses_valid || fit_fold.valid.is_empty() {
        fit_fold.train.clone()
    } else {
        fit_fold.train.start..fit_fold.valid.end
    };
    // Training labels end before the next window (validation or test), validation labels before the test.
    let train_before = if uses_valid { fit_fold.valid.start } else { fit_fold.test.start };
    // Positions in `data`: the fit reads them in place (`fit_rows`), no copy of a fold's training matrix.
    let train_rows: Vec<usize> = if !spec.config.learns() {
        // Rules fit nothing: selecting (and purging) a training set would only cost time. `train_rows` is 0.
        Vec::new()
    } else if fit_fold.train_parts.is_empty() {
        span_training_rows(data, ends, cal, &train_span, train_before)
    } else {
        // CPCV: the training runs around the test groups, each purged against the group that follows it.
        fit_fold.train_parts.iter().flat_map(|(s, before)| span_training_rows(data, ends, cal, s, *before)).collect()
    };
    let valid_rows = uses_valid.then(|| span_training_rows(data, ends, cal, &fit_fold.valid, fit_fold.test.start));
    let train = Rows::of(data, &train_rows);
    let valid = valid_rows.as_deref().map(|v| Rows::of(data, v));
    if train.is_empty() && spec.config.learns() {
        return Err(Error::Data(format!(
            "model {}, fold {}: no training rows with a label and complete features in {:?}",
            spec.name,
            fit_fold.id,
            span_dates(cal, &train_span)
        )));
    }
    let seed = opts.seed.wrapping_add(task.fit_fold as u64);
    let t = Instant::now();
    let model: TrainedModel =
        stockcast_models::fit_rows(&spec.config, train, valid, seed).map_err(model_err(fit_fold.id))?;
    let fit_seconds = t.elapsed().as_secs_f64();
    let importance = model.importance().map_err(model_err(fit_fold.id))?;
    // The first and last rows trained on (validation included): after the per-symbol purge the last one is
    // earlier than the window's end. Rules train on no rows: their window is reported.
    let dates = train_rows.iter().chain(valid_rows.iter().flatten()).map(|&i| data.matrix.index[i].1);
    let (train_start, train_end) = match (dates.clone().min(), dates.max()) {
        (Some(a), Some(b)) => (a, b),
        _ => (cal[train_span.start], cal[if uses_valid { &fit_fold.valid } else { &train_span }.end - 1]),
    };
    let mut out = Vec::new();
    for &fid in &task.folds {
        let fold = &folds[fid];
        let test = select(data, span_dates(cal, &fold.test));
        let t = Instant::now();
        let preds = if test.is_empty() {
            stockcast_models::Predictions { index: Vec::new(), score: Vec::new() }
        } else {
            model.predict(&test).map_err(model_err(fid))?
        };
        let predict_seconds = t.elapsed().as_secs_f64();
        let labels: Vec<f64> = test
            .matrix
            .y
            .as_ref()
            .map_or_else(|| vec![f64::NAN; test.len()], |y| y.iter().map(|v| f64::from(*v)).collect());
        let fold_id = u32::try_from(fid).map_err(|_| Error::Config(format!("fold {fid}: more than 2^32 folds")))?;
        let rows: Vec<OosPrediction> = preds
            .index
            .iter()
            .zip(&preds.score)
            .zip(&labels)
            .map(|(((s, d), score), label)| OosPrediction {
                symbol: Arc::clone(s),
                date: *d,
                fold: fold_id,
                score: *score,
                label: *label,
            })
            .collect();
        let (signal, forecast) = fold_stats(&spec.config, &rows);
        let (test_start, test_end) = span_dates(cal, &fold.test).unwrap_or((cal[0], cal[0]));
        out.push((
            FoldResult {
                model: spec.name.clone(),
                fold: fid,
                fit_fold: task.fit_fold,
                train_start,
                train_end,
                test_start,
                test_end,
                train_rows: train.len(),
                valid_rows: valid.map_or(0, |v| v.len()),
                test_rows: test.len(),
                fit_seconds: if fid == task.fit_fold { fit_seconds } else { 0.0 },
                predict_seconds,
                signal,
                forecast,
                importance: if fid == task.fit_fold { importance.clone() } else { None },
            },
            rows,
        ));
        on_fold(fid);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Under a budget a worker takes the first pending task that fits beside the running ones and the predictions
    /// kept, skipping larger ones, any task when none runs, and waits when none fits until a running task
    /// finishes; without a budget, the pending order.
    #[test]
    fn tasks_start_in_order_while_they_fit_the_memory_budget() {
        let sizes = [5, 5, 1, 4, 9, 2];
        let queue = Mutex::new(Queue { pending: (0..sizes.len()).collect(), running: 0, bytes: 0, kept: 0 });
        let finished = Condvar::new();
        let take = || next_task(&queue, &finished, &sizes, Some(7));
        let release = |i: usize, kept: u64| {
            queue.lock().unwrap().finish(sizes[i], kept);
            finished.notify_all();
        };
        assert_eq!(take(), Some(0)); // 5
        assert_eq!(take(), Some(2)); // 5 + 1; task 1 (5) does not fit beside task 0
        release(0, 0);
        assert_eq!(take(), Some(1)); // 1 + 5
        release(2, 0);
        release(1, 1); // one byte of predictions kept from here on
        assert_eq!(take(), Some(3)); // 1 + 4; task 5 (2) fits beside it, task 4 (9) never beside anything
        assert_eq!(take(), Some(5)); // 1 + 4 + 2
        release(5, 0);
        // Task 4 is over the budget: it waits until task 3 finishes, then runs alone.
        std::thread::scope(|s| {
            let waiting = s.spawn(take);
            release(3, 0);
            assert_eq!(waiting.join().unwrap(), Some(4));
        });
        release(4, 0);
        assert_eq!(take(), None);
        let free = Mutex::new(Queue { pending: vec![3, 1, 0, 2], running: 0, bytes: 0, kept: 0 });
        let order: Vec<_> = (0..4).map(|_| next_task(&free, &finished, &sizes, None).unwrap()).collect();
        assert_eq!(order, [3, 1, 0, 2]);
    }

    /// The counting sort's order is the comparison sort's for rows grouped by symbol (its fast path), shuffled
    /// rows and rows whose symbols come in another order within a date (its fallback), with gaps in the dates.
    #[test]
    fn a_path_is_ordered_by_date_then_symbol_whatever_order_its_rows_come_in() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let start = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap();
        let symbols: Vec<Arc<str>> = ["AA", "B", "BA", "C", "ZZ"].iter().map(|s| Arc::from(*s)).collect();
        // Two folds, each grouped by symbol (symbol order, dates ascending), with dates some symbols skip.
        let mut grouped = Vec::new();
        for (fold, days) in [(0u32, 0..40i64), (1, 45..90)] {
            for s in &symbols {
                for d in days.clone() {
                    if rng.random::<f64>() < 0.2 {
                        continue;
                    }
                    let score = rng.random::<f64>();
                    let date = start + chrono::Duration::days(d);
                    grouped.push(OosPrediction { symbol: Arc::clone(s), date, fold, score, label: -score });
                }
            }
        }
        let mut want = grouped.clone();
        want.sort_unstable_by(|a, b| a.date.cmp(&b.date).then_with(|| a.symbol.cmp(&b.symbol)));
        let mut shuffled = grouped.clone();
        shuffled.shuffle(&mut rng);
        let mut reversed = grouped.clone();
        reversed.reverse();
        // Grouped rows are ordered by the counting sort alone; the others need the comparison sort.
        for (name, mut rows, counted) in
            [("grouped", grouped, true), ("shuffled", shuffled, false), ("reversed", reversed, false)]
        {
            assert_eq!(sort_by_date_and_symbol(&mut rows), counted, "{name}");
            assert_eq!(rows, want, "{name}");
        }
        let mut none: Vec<OosPrediction> = Vec::new();
        assert!(sort_by_date_and_symbol(&mut none));
        assert!(none.is_empty());
    }
}
