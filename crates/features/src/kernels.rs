//! Per-symbol and per-column kernels of the feature build that replace slower Polars expression forms with
//! the same values, bit for bit: rolling statistics per symbol without `over(symbol)`'s group lists (and those
//! several features read, once), lags, leads and first-row masks that move values within each symbol, trailing
//! maxima and minima in O(n) whatever the window, and the one-pass NaN/inf-to-null cleaning of every output.
//! The tests compare each with the Polars form it replaces.

use std::sync::Arc;

use polars::prelude::*;
use polars_arrow::array::PrimitiveArray;
use polars_arrow::bitmap::{Bitmap, MutableBitmap};
use polars_time::prelude::SeriesOpsTime;

use crate::build::{ewm, null_f64, window};

/// A statistic of one symbol's rows that [`Runs::each`] evaluates: the Polars Series function that
/// `over(symbol)` would call on each symbol's group.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stat {
    Mean(usize),
    Std(usize),
    Var(usize),
    /// A sum over up to `w` rows (no minimum), as `rolling_corr` counts its valid pairs.
    Count(usize),
    Skew(usize),
    Kurtosis(usize),
    /// [`ewm`]`(alpha, min_periods)`.
    Ewm(f64, usize),
}

impl Stat {
    fn of(self, s: &Series) -> PolarsResult<Series> {
        match self {
            Stat::Mean(w) => s.rolling_mean(window(w)),
            Stat::Std(w) => s.rolling_std(window(w)),
            Stat::Var(w) => s.rolling_var(window(w)),
            Stat::Count(w) => {
                s.rolling_sum(RollingOptionsFixedWindow { window_size: w, min_periods: 0, ..Default::default() })
            }
            Stat::Skew(w) => rolling_skew(
                s,
                RollingOptionsFixedWindow { fn_params: Some(RollingFnParams::Skew { bias: true }), ..window(w) },
            ),
            Stat::Kurtosis(w) => rolling_kurtosis(
                s,
                RollingOptionsFixedWindow {
                    fn_params: Some(RollingFnParams::Kurtosis { fisher: true, bias: true }),
                    ..window(w)
                },
            ),
            Stat::Ewm(alpha, min_periods) => ewm_mean(s, ewm(alpha, min_periods)),
        }
    }
}

/// Each symbol's rows of a frame sorted by symbol: one contiguous run per symbol, given by the first row of
/// each run and, last, the row count.
///
/// Runs of some days ([`Runs::on_days`]) give each per-symbol result only at those days' rows, as a helper
/// column of one value per kept row: what a one-day build (or a sequence model's last rows) computes from every
/// row of the frame before it keeps those rows.
#[derive(Debug, Clone)]
pub(crate) struct Runs {
    starts: Arc<[usize]>,
    day: Option<Arc<Day>>,
}

/// The rows kept by [`Runs`] of some days, and the helper columns registered for them.
#[derive(Debug)]
struct Day {
    /// `(first row, end, kept row)` of each kept row (a run's rows together), in row order.
    rows: Vec<(usize, usize, usize)>,
    helpers: std::sync::Mutex<Vec<Expr>>,
}

impl Day {
    /// A column `name` of one value per kept row: `value(first row, end, kept row)` of its run.
    fn column(&self, name: PlSmallStr, value: impl Fn(usize, usize, usize) -> Option<f64>) -> Column {
        let values = self.rows.iter().map(|&(start, end, r)| value(start, end, r));
        Float64Chunked::from_iter_options(name, values).into_series().into_column()
    }
}

impl Runs {
    /// Runs from their first rows and, last, the row count.
    pub(crate) fn new(starts: Vec<usize>) -> Self {
        Self { starts: starts.into(), day: None }
    }

    /// The same runs for the rows dated one of `days` (ascending; `dates`: the frame's physical dates, ascending
    /// within a symbol). Each per-symbol result ([`Runs::each`], [`Runs::lag`], [`Runs::lead`], [`Runs::after`],
    /// [`Runs::extreme`], and so the statistics inside [`Runs::corr`]) is then a helper column (`__day_{n}`,
    /// [`Runs::take_helpers`]) computed from the whole frame, as the full build computes it, with one value for
    /// each of those rows (in row order), and read back as `col(name)` on those rows. A statistic is still
    /// computed over the symbol's whole run (Polars' rolling sums carry their error terms from a run's start), a
    /// moment statistic from its restart row (see [`moment_restart`]), then its values at the kept rows are
    /// taken; moved values and trailing extremes are read at each row.
    pub(crate) fn on_days(&self, dates: &Int32Chunked, days: &[i32]) -> Self {
        let rows = self
            .starts
            .windows(2)
            .flat_map(|run| {
                days.iter().filter_map(|&day| row_dated(dates, run[0], run[1], day)).map(|r| (run[0], run[1], r))
            })
            .collect();
        Self { starts: self.starts.clone(), day: Some(Arc::new(Day { rows, helpers: std::sync::Mutex::default() })) }
    }

    /// The dates of each symbol's last `rows` rows up to `day`, over the symbols with a row on `day`, ascending
    /// (`dates`: the frame's physical dates, ascending within a symbol): the days whose rows a sequence model's
    /// build keeps.
    pub(crate) fn dates_before(&self, dates: &Int32Chunked, day: i32, rows: usize) -> Vec<i32> {
        let mut out = Vec::new();
        for run in self.starts.windows(2) {
            let Some(r) = row_dated(dates, run[0], run[1], day) else { continue };
            out.extend((r.saturating_sub(rows.saturating_sub(1)).max(run[0])..=r).filter_map(|i| dates.get(i)));
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The helper columns of runs of some days registered so far (each aliased), in order: each reads only the
    /// whole frame's columns, never another helper, and has one value per row of the day.
    pub(crate) fn take_helpers(&self) -> Vec<Expr> {
        self.day
            .as_ref()
            .map(|d| std::mem::take(&mut *d.helpers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)))
            .unwrap_or_default()
    }

    /// The rows kept (runs of some days), or the frame's rows.
    pub(crate) fn out_rows(&self) -> usize {
        self.day.as_ref().map_or_else(|| self.starts.last().copied().unwrap_or(0), |d| d.rows.len())
    }

    /// True for runs of some days ([`Runs::on_days`]).
    pub(crate) fn keeps_days(&self) -> bool {
        self.day.is_some()
    }

    /// The runs of every row (no day): what a statistic that another statistic reads is computed with.
    pub(crate) fn whole(&self) -> Self {
        Self { starts: self.starts.clone(), day: None }
    }

    /// `e` itself, or for runs of some days a helper column computing it.
    fn helper(&self, e: Expr) -> Expr {
        let Some(d) = &self.day else { return e };
        let mut h = d.helpers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let name = format!("__day_{}", h.len());
        h.push(e.alias(name.as_str()));
        col(name.as_str())
    }

    /// `stat` of `e` per symbol, evaluated by calling the same Polars Series function that `e.over(symbol)`
    /// calls for each group, on the same rows (each run is a slice of the column): the same values, bit for bit,
    /// without `over`'s list of groups built and exploded back (which cost more than the statistics themselves:
    /// about 70 % of a default build's CPU went to window expressions).
    pub(crate) fn each(&self, e: Expr, stat: Stat) -> Expr {
        self.helper(self.each_expr(e, stat))
    }

    /// [`Runs::each`] as an expression, never a helper of the day ([`Shared`]'s helpers are columns already).
    fn each_expr(&self, e: Expr, stat: Stat) -> Expr {
        let runs = self.clone();
        e.apply(
            move |c| runs.apply(&c, stat),
            |_, field| Ok(Field::new(field.name().clone(), stat_dtype(field.dtype()))),
        )
    }

    /// `e` (as f64) from `k` rows earlier of the same symbol, null for each symbol's first `k` rows: what
    /// `e.shift(k)` masked by the row position gave (the values are moved, not computed).
    pub(crate) fn lag(&self, e: Expr, k: usize) -> Expr {
        let runs = self.clone();
        self.helper(e.apply(move |c| runs.moved(&c, k, false), |_, f| Ok(f64_field(f))))
    }

    /// `e` (as f64) from `k` rows later of the same symbol, null for each symbol's last `k` rows (labels only).
    pub(crate) fn lead(&self, e: Expr, k: usize) -> Expr {
        let runs = self.clone();
        self.helper(e.apply(move |c| runs.moved(&c, k, true), |_, f| Ok(f64_field(f))))
    }

    /// `e` (as f64) null for each symbol's first `skip` rows (a whole-column trailing window of `skip + 1` rows
    /// reaches into the symbol before), the values untouched.
    pub(crate) fn after(&self, e: Expr, skip: usize) -> Expr {
        let runs = self.clone();
        self.helper(e.apply(
            move |c| {
                let (s, arr) = runs.f64_of(&c)?;
                if let Some(day) = &runs.day {
                    return Ok(day.column(s.name().clone(), |start, _, r| (r - start >= skip).then(|| arr.get(r))?));
                }
                let mut valid = MutableBitmap::with_capacity(arr.len());
                for run in runs.starts.windows(2) {
                    let (start, len) = (run[0], run[1] - run[0]);
                    let masked = skip.min(len);
                    valid.extend_constant(masked, false);
                    extend_valid(&mut valid, arr.validity(), start + masked, len - masked);
                }
                let out = arr.clone().with_validity(Some(valid.into()));
                Ok(Float64Chunked::with_chunk(s.name().clone(), out).into_series().into_column())
            },
            |_, f| Ok(f64_field(f)),
        ))
    }

    /// The trailing `w`-row maximum (`max`) or minimum of `e` per symbol, null until the symbol has `w` rows:
    /// [`trailing_extreme`] on the whole column, its first `w - 1` rows of each symbol (which reach into the
    /// symbol before) masked. Runs of some days take the extreme of the `w` rows up to each kept row when the
    /// whole column is positive and finite (the van Herk path picks one of those values), and the whole column's
    /// [`trailing_extreme`] at that row otherwise.
    pub(crate) fn extreme(&self, e: Expr, w: usize, max: bool) -> Expr {
        let Some(day) = self.day.clone() else { return self.after(trailing_extreme(e, w, max), w.saturating_sub(1)) };
        self.helper(e.apply(
            move |c| {
                let s = c.as_materialized_series().rechunk();
                let window = |v: &[f64]| v.iter().copied().reduce(|a, b| if max { a.max(b) } else { a.min(b) });
                let full = |r: usize, start: usize| r - start + 1 >= w;
                let name = s.name().clone();
                match s.f64().map(|ca| ca.cont_slice()) {
                    Ok(Ok(values)) if w > 0 && positive_finite(values) => {
                        Ok(day.column(name, |start, _, r| full(r, start).then(|| window(&values[r + 1 - w..=r]))?))
                    }
                    _ => {
                        let whole = extreme_column(&Column::from(s.clone()), w, max)?;
                        let whole = whole.f64()?;
                        Ok(day.column(name, |start, _, r| full(r, start).then(|| whole.get(r))?))
                    }
                }
            },
            |_, f| Ok(f64_field(f)),
        ))
    }

    /// Each symbol's values moved `k` rows down (`ahead`: up) within the symbol, the rows left without a value null.
    fn moved(&self, c: &Column, k: usize, ahead: bool) -> PolarsResult<Column> {
        let (s, arr) = self.f64_of(c)?;
        if let Some(day) = &self.day {
            return Ok(day.column(s.name().clone(), |start, end, r| {
                let from = if ahead { (r + k < end).then_some(r + k) } else { (r - start >= k).then(|| r - k) };
                from.and_then(|i| arr.get(i))
            }));
        }
        let (values, n) = (arr.values().as_slice(), arr.len());
        let k_all = k.min(n);
        let mut out = Vec::with_capacity(n);
        if ahead {
            out.extend_from_slice(&values[k_all..]);
            out.resize(n, 0.0);
        } else {
            out.resize(k_all, 0.0);
            out.extend_from_slice(&values[..n - k_all]);
        }
        let mut valid = MutableBitmap::with_capacity(n);
        for run in self.starts.windows(2) {
            let (start, len) = (run[0], run[1] - run[0]);
            let kept = len.saturating_sub(k);
            if ahead {
                extend_valid(&mut valid, arr.validity(), start + k, kept);
                valid.extend_constant(len - kept, false);
            } else {
                valid.extend_constant(len - kept, false);
                extend_valid(&mut valid, arr.validity(), start, kept);
            }
        }
        let out = PrimitiveArray::from_vec(out).with_validity(Some(valid.into()));
        Ok(Float64Chunked::with_chunk(s.name().clone(), out).into_series().into_column())
    }

    /// `rolling_corr(x, y)` (ddof 1, a full window of `w`) per symbol, as Polars evaluates it for each group
    /// (`polars_expr::dispatch::rolling::rolling_corr_cov`): the rolling means and variances per symbol through
    /// [`Runs::each`], the element-wise steps on the whole column, in the same order. Where a symbol has nulls
    /// Polars masks x and y to the rows where both are present and counts those rows; without nulls it takes
    /// min(w, row + 1) as the count, which the same masked sum gives exactly.
    pub(crate) fn corr(&self, x: Expr, y: Expr, w: usize) -> Expr {
        let both = x.clone().is_not_null().and(y.clone().is_not_null());
        let masked = |e: Expr| when(both.clone()).then(e).otherwise(null_f64());
        let (xm, ym) = (masked(x.clone()), masked(y.clone()));
        let mean_xy = self.each(x * y, Stat::Mean(w));
        let count = self.each(both.cast(DataType::Float64), Stat::Count(w));
        let numerator = (mean_xy - self.each(xm.clone(), Stat::Mean(w)) * self.each(ym.clone(), Stat::Mean(w)))
            * (count.clone() / (count - lit(1.0)));
        let denominator = (self.each(xm, Stat::Var(w)) * self.each(ym, Stat::Var(w))).sqrt();
        numerator / denominator
    }

    /// The frame's rows, which a column must have.
    fn check_rows(&self, len: usize) -> PolarsResult<()> {
        let rows = self.starts.last().copied().unwrap_or(0);
        polars_ensure!(len == rows, ComputeError: "a per-symbol kernel got {len} rows for a frame of {rows}");
        Ok(())
    }

    /// `c` as one f64 chunk of the frame's rows.
    fn f64_of(&self, c: &Column) -> PolarsResult<(Series, PrimitiveArray<f64>)> {
        let s = c.as_materialized_series().cast(&DataType::Float64)?.rechunk();
        self.check_rows(s.len())?;
        let arr = s.f64()?.downcast_iter().next().cloned().unwrap_or_else(|| PrimitiveArray::from_vec(Vec::new()));
        Ok((s, arr))
    }

    fn apply(&self, c: &Column, stat: Stat) -> PolarsResult<Column> {
        let s = c.as_materialized_series().rechunk();
        self.check_rows(s.len())?;
        let mut out: Option<Series> = None;
        let mut push = |part: Series| {
            if let Some(o) = out.as_mut() {
                return o.append_owned(part).map(|_| ());
            }
            out = Some(part);
            Ok(())
        };
        match &self.day {
            // The kept rows' values: a moment statistic from the latest restart row of a symbol's first kept row
            // (see `moment_restart`) to its last, any other over the symbol's whole run.
            Some(day) => {
                let validity = s.chunks().first().and_then(|a| a.validity());
                for kept in day.rows.chunk_by(|a, b| a.0 == b.0) {
                    let (start, end, first, last) = (kept[0].0, kept[0].1, kept[0].2, kept[kept.len() - 1].2);
                    let (from, to) = match stat.moment_window() {
                        Some(w) => (moment_restart(validity, start, first, w), last + 1),
                        None => (start, end),
                    };
                    let part = stat.of(&s.slice(from as i64, to - from))?;
                    for &(_, _, r) in kept {
                        push(part.slice((r - from) as i64, 1))?;
                    }
                }
            }
            None => {
                for run in self.starts.windows(2) {
                    push(stat.of(&s.slice(run[0] as i64, run[1] - run[0]))?)?;
                }
            }
        }
        // No rows, no runs: an empty column (Polars' moment kernels index the first row, and `over` never
        // calls them on an empty frame either).
        let out =
            if let Some(o) = out { o.rechunk() } else { Series::new_empty(s.name().clone(), &stat_dtype(s.dtype())) };
        Ok(out.with_name(s.name().clone()).into_column())
    }
}

/// The row of `start..end` (one symbol's rows, dates ascending) dated `day`: a binary search where the dates are
/// one slice, a scan otherwise.
fn row_dated(dates: &Int32Chunked, start: usize, end: usize, day: i32) -> Option<usize> {
    match dates.cont_slice() {
        Ok(d) => d[start..end].binary_search(&day).ok().map(|i| start + i),
        Err(_) => (start..end).find(|&i| dates.get(i) == Some(day)),
    }
}

/// The first row from which Polars' moment window (`rolling_var`, and so `rolling_std`, `rolling_skew`,
/// `rolling_kurtosis`: `polars_compute::rolling::MomentWindow`) over a run from `start` reaches row `r` in the same
/// state, so with the same bits: the latest row `t - w` such that the window's front stack is empty before step
/// `t`, or `start`.
///
/// The window keeps two stacks: the values pushed since the last flip, aggregated in push order from a fresh
/// state (back), and suffix aggregates of the values flipped out of the back (front). A step pops the row that
/// leaves (from the front; when the front is empty, the back is flipped into it first), then pushes the row that
/// enters; a null is neither pushed nor popped, a NaN or infinity is pushed as 0 and counted. With the front empty
/// before step `t`, every value of the window `t - w .. t` is in the back, aggregated in order from a fresh
/// state: exactly the state of a window started at row `t - w` after its first `w` steps (the no-nulls kernel
/// pushes those rows at once, in the same order). Both then take the same steps. This replays the stack sizes
/// only (integers), for `w >= 2`; with `w = 1` every step starts afresh (the window is reset), so `r` itself.
fn moment_restart(validity: Option<&Bitmap>, start: usize, r: usize, w: usize) -> usize {
    if w <= 1 {
        return r;
    }
    let valid = |i: usize| validity.is_none_or(|v| v.get_bit(i));
    let (mut front, mut back, mut from) = (0usize, 0usize, start);
    for t in start..=r {
        if t >= start + w {
            if front == 0 {
                from = t - w;
            }
            if valid(t - w) {
                if front == 0 {
                    (front, back) = (back, 0);
                }
                front -= 1;
            }
        }
        back += usize::from(valid(t));
    }
    from
}

impl Stat {
    /// The window of a statistic that Polars computes with its moment window (see [`moment_restart`]).
    fn moment_window(self) -> Option<usize> {
        match self {
            Stat::Std(w) | Stat::Var(w) | Stat::Skew(w) | Stat::Kurtosis(w) => Some(w),
            Stat::Mean(_) | Stat::Count(_) | Stat::Ewm(..) => None,
        }
    }

    /// A name for the statistic, unique per kind and parameters (helper column names).
    fn key(self) -> String {
        match self {
            Stat::Mean(w) => format!("mean{w}"),
            Stat::Std(w) => format!("std{w}"),
            Stat::Var(w) => format!("var{w}"),
            Stat::Count(w) => format!("count{w}"),
            Stat::Skew(w) => format!("skew{w}"),
            Stat::Kurtosis(w) => format!("kurtosis{w}"),
            Stat::Ewm(alpha, min_periods) => format!("ewm{:x}_{min_periods}", alpha.to_bits()),
        }
    }
}

/// Per-symbol statistics of whole columns, each computed once as a helper column however many features read
/// it: the MA ratio and the Bollinger band both take the 20-day mean of the close, the EMA ratio and MACD the
/// 12- and 26-day EMAs, the price-volume correlation the means and variances that the Bollinger band and the
/// volume z-score take. A standard deviation is the square root of the shared variance, which is how Polars'
/// `rolling_std` computes it (`rolling_var`, then `sqrt` of each value), so the bits are the same.
pub(crate) struct Shared<'a> {
    runs: &'a Runs,
    helpers: std::cell::RefCell<Vec<(String, Expr)>>,
}

impl<'a> Shared<'a> {
    pub(crate) fn new(runs: &'a Runs) -> Self {
        Self { runs, helpers: std::cell::RefCell::new(Vec::new()) }
    }

    /// The symbols' runs, for statistics of expressions (computed where they are used).
    pub(crate) fn runs(&self) -> &Runs {
        self.runs
    }

    /// `stat` of `column` per symbol (its helper column).
    pub(crate) fn of(&self, column: &str, stat: Stat) -> Expr {
        if let Stat::Std(w) = stat {
            return self.of(column, Stat::Var(w)).sqrt();
        }
        let name = format!("__{}_{column}", stat.key());
        let mut helpers = self.helpers.borrow_mut();
        if !helpers.iter().any(|(n, _)| *n == name) {
            helpers.push((name.clone(), self.runs.each_expr(col(column), stat)));
        }
        col(name.as_str())
    }

    /// `rolling_corr(x, y)` per symbol (as [`Runs::corr`]) for columns without nulls: Polars then takes the
    /// means and variances of x and y unmasked, which are the shared ones, and counts min(w, row + 1) pairs,
    /// which is `w` on every row with a full window (the others are null).
    pub(crate) fn corr_complete(&self, x: &str, y: &str, w: usize) -> Expr {
        let count = || lit(w as f64);
        let mean_xy = self.runs.each(col(x) * col(y), Stat::Mean(w));
        let numerator =
            (mean_xy - self.of(x, Stat::Mean(w)) * self.of(y, Stat::Mean(w))) * (count() / (count() - lit(1.0)));
        let denominator = (self.of(x, Stat::Var(w)) * self.of(y, Stat::Var(w))).sqrt();
        numerator / denominator
    }

    /// The helper columns to compute before the features that read them.
    pub(crate) fn into_helpers(self) -> Vec<Expr> {
        self.helpers.into_inner().into_iter().map(|(name, e)| e.alias(name)).collect()
    }
}

/// A statistic's type for an input of `dtype`: f32 stays f32 (Polars computes it in f32), anything else is f64.
fn stat_dtype(dtype: &DataType) -> DataType {
    if dtype == &DataType::Float32 { DataType::Float32 } else { DataType::Float64 }
}

fn f64_field(field: &Field) -> Field {
    Field::new(field.name().clone(), DataType::Float64)
}

/// `len` validity bits of `validity` from `start` (all set without a bitmap).
fn extend_valid(out: &mut MutableBitmap, validity: Option<&Bitmap>, start: usize, len: usize) {
    if len == 0 {
        return;
    }
    match validity {
        Some(v) => {
            let (bytes, offset, _) = v.as_slice();
            out.extend_from_slice(bytes, offset + start, len);
        }
        None => out.extend_constant(len, true),
    }
}

/// `e` with NaN and ±inf made null, as f64: what `when(e.is_finite()).then(e).otherwise(null)` gave, in one
/// pass. A column without such values comes back as it is; otherwise their validity bits are cleared (and the
/// values under them zeroed).
pub(crate) fn finite(e: Expr) -> Expr {
    e.apply(|c| finite_column(&c), |_, f| Ok(f64_field(f)))
}

fn finite_column(c: &Column) -> PolarsResult<Column> {
    let s = c.as_materialized_series().cast(&DataType::Float64)?;
    let ca = s.f64()?;
    let chunks: Vec<PrimitiveArray<f64>> = ca
        .downcast_iter()
        .map(|arr| {
            let values = arr.values().as_slice();
            let clean = match arr.validity() {
                None => values.iter().all(|v| v.is_finite()),
                Some(valid) => values.iter().zip(valid.iter()).all(|(v, ok)| !ok || v.is_finite()),
            };
            if clean {
                return arr.clone();
            }
            let finite: Bitmap = values.iter().map(|v| v.is_finite()).collect();
            let validity = match arr.validity() {
                Some(valid) => valid & &finite,
                None => finite,
            };
            let kept: Vec<f64> = values.iter().map(|&v| if v.is_finite() { v } else { 0.0 }).collect();
            PrimitiveArray::from_vec(kept).with_validity(Some(validity))
        })
        .collect();
    Ok(Float64Chunked::from_chunk_iter(s.name().clone(), chunks).into_series().into_column())
}

/// The trailing `w`-row maximum (`max`) or minimum of the whole column, null for its first `w - 1` rows: Polars'
/// `rolling_max(window(w))` / `rolling_min`. When every value is a positive finite number (prices) it is computed
/// by van Herk / Gil-Werman (the extremes of each block of `w` rows from its start and from its end; a window
/// spans at most two blocks), three comparisons a row whatever `w`, where Polars' window rescans when its
/// extreme leaves; an extreme is one of the values, so the bits are the same. Any other column goes to Polars.
pub(crate) fn trailing_extreme(e: Expr, w: usize, max: bool) -> Expr {
    e.apply(move |c| extreme_column(&c, w, max), |_, f| Ok(f64_field(f)))
}

fn extreme_column(c: &Column, w: usize, max: bool) -> PolarsResult<Column> {
    let s = c.as_materialized_series().rechunk();
    let polars = || if max { s.rolling_max(window(w)) } else { s.rolling_min(window(w)) }.map(Column::from);
    let Ok(ca) = s.f64() else { return polars() };
    let Ok(values) = ca.cont_slice() else { return polars() };
    if w == 0 || !positive_finite(values) {
        return polars();
    }
    let n = values.len();
    let out = if max { van_herk::<true>(values, w) } else { van_herk::<false>(values, w) };
    let mut valid = MutableBitmap::with_capacity(n);
    valid.extend_constant((w - 1).min(n), false);
    valid.extend_constant(n - (w - 1).min(n), true);
    let arr = PrimitiveArray::from_vec(out).with_validity(Some(valid.into()));
    Ok(Float64Chunked::with_chunk(s.name().clone(), arr).into_series().into_column())
}

/// Every value is a positive finite number (counted rather than `all`, without an early exit, so it vectorises).
fn positive_finite(values: &[f64]) -> bool {
    values.iter().filter(|v| !(v.is_finite() && **v > 0.0)).count() == 0
}

/// The trailing extremes of `w >= 1` positive finite values, 0 in the first `w - 1` rows. `MAX` is a constant so
/// each direction compiles to its own max/min instructions instead of a comparison chosen at run time. For positive
/// finite values a plain comparison picks the same value as `f64::max` / `min`.
fn van_herk<const MAX: bool>(values: &[f64], w: usize) -> Vec<f64> {
    let pick = |a: f64, b: f64| {
        if MAX {
            if a > b { a } else { b }
        } else if a < b {
            a
        } else {
            b
        }
    };
    let n = values.len();
    // The extreme from each row to the end of its block of `w` rows, and from its block's start to it.
    let mut suffix = values.to_vec();
    for block in suffix.chunks_mut(w) {
        for i in (0..block.len().saturating_sub(1)).rev() {
            block[i] = pick(block[i + 1], block[i]);
        }
    }
    let mut out = values.to_vec();
    for block in out.chunks_mut(w) {
        for i in 1..block.len() {
            block[i] = pick(block[i - 1], block[i]);
        }
    }
    // The window i + 1 - w ..= i: the rest of the block before i's block, then i's block up to i.
    if n >= w {
        for (o, s) in out[w - 1..].iter_mut().zip(&suffix[..n + 1 - w]) {
            *o = pick(*s, *o);
        }
    }
    for v in out.iter_mut().take(w - 1) {
        *v = 0.0;
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A frame sorted by symbol (runs of 1 to 40 rows) with a column `x` of values that are sometimes null,
    /// NaN, ±inf, zero or negative, a column `y` with its own nulls, a positive column `p` (prices), `q`
    /// (`y` without nulls), and each row's position in its symbol from the start (`row`) and the end (`left`).
    fn frame(runs: &[usize], x: &[Option<f64>], y: &[Option<f64>]) -> (DataFrame, Runs) {
        let mut starts = vec![0];
        let mut symbols = Vec::new();
        for (k, &n) in runs.iter().enumerate() {
            symbols.extend(std::iter::repeat_n(format!("S{k:03}"), n));
            starts.push(starts.last().copied().unwrap_or(0) + n);
        }
        let n = symbols.len();
        let p: Vec<f64> = (0..n).map(|i| x[i % x.len()].map_or(1.5, |v| 1.0 + v.abs().min(1e6))).collect();
        let q: Vec<f64> = (0..n).map(|i| y[i % y.len()].unwrap_or(-0.25)).collect();
        let row: Vec<i64> = runs.iter().flat_map(|&n| 0..n as i64).collect();
        let left: Vec<i64> = runs.iter().flat_map(|&n| (0..n as i64).rev()).collect();
        let mut sym = Column::new("symbol".into(), symbols);
        sym.set_sorted_flag(polars::series::IsSorted::Ascending);
        let df = DataFrame::new_infer_height(vec![
            sym,
            Column::new("x".into(), (0..n).map(|i| x[i % x.len()]).collect::<Vec<_>>()),
            Column::new("y".into(), (0..n).map(|i| y[i % y.len()]).collect::<Vec<_>>()),
            Column::new("p".into(), p),
            Column::new("q".into(), q),
            Column::new("row".into(), row),
            Column::new("left".into(), left),
        ])
        .expect("frame");
        starts.dedup();
        (df, Runs::new(starts))
    }

    fn bits(df: &DataFrame, name: &str) -> Vec<Option<u64>> {
        df.column(name).expect("column").f64().expect("f64").iter().map(|v| v.map(f64::to_bits)).collect()
    }

    fn value() -> impl Strategy<Value = Option<f64>> {
        prop_oneof![
            6 => (-50.0f64..50.0).prop_map(Some),
            1 => Just(None),
            1 => prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY), Just(0.0), Just(-0.0)]
                .prop_map(Some),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// A moment statistic (variance, sd, skewness, kurtosis) at each row of a run is the same, bit for bit,
        /// computed from the row `moment_restart` gives as from the run's first row: with nulls, NaN and
        /// infinities, windows from 1 to 13, and the run after other rows.
        #[test]
        fn a_moment_window_restarted_where_its_front_is_empty_has_the_same_bits(
            before in prop::collection::vec(value(), 0..5),
            run in prop::collection::vec(value(), 1..90),
            w in 1usize..14,
            which in 0usize..4,
        ) {
            let stat = [Stat::Var(w), Stat::Std(w), Stat::Skew(w), Stat::Kurtosis(w)][which];
            let all: Vec<Option<f64>> = before.iter().chain(&run).copied().collect();
            let s = Series::new("x".into(), all).rechunk();
            let start = before.len();
            let whole = stat.of(&s.slice(start as i64, run.len())).unwrap();
            let validity = s.chunks().first().and_then(|a| a.validity());
            let bits = |s: &Series, i: usize| s.f64().unwrap().get(i).map(f64::to_bits);
            let mut restarted = 0;
            for r in start..start + run.len() {
                let from = moment_restart(validity, start, r, w);
                prop_assert!(from >= start && from <= r);
                restarted += usize::from(from > start);
                let part = stat.of(&s.slice(from as i64, r + 1 - from)).unwrap();
                prop_assert_eq!(bits(&whole, r - start), bits(&part, r - from), "{:?} row {} from {}", stat, r, from);
            }
            // Long runs do restart (the point of it).
            prop_assert!(run.len() < 4 * w + 4 || restarted > 0);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// Every per-symbol statistic (direct and shared), rolling_corr (with nulls, and the shared form
        /// without), the finite cleaning, the trailing extremes and the per-symbol lags, leads and masks equal
        /// the Polars expressions they replace, bit for bit (nulls where they have nulls).
        #[test]
        fn kernels_equal_the_polars_forms_they_replace(
            runs in prop::collection::vec(1usize..40, 1..12),
            x in prop::collection::vec(value(), 1..90),
            y in prop::collection::vec(value(), 1..90),
            w in prop_oneof![Just(1usize), Just(2), Just(3), Just(5), Just(20)],
        ) {
            let (df, runs) = frame(&runs, &x, &y);
            let shared = Shared::new(&runs);
            let over = |e: Expr| e.over([col("symbol")]).expect("over");
            let opts = |p: Option<RollingFnParams>| RollingOptionsFixedWindow { fn_params: p, ..window(w) };
            let alpha = 2.0 / (w as f64 + 1.0);
            // The masked whole-column forms that lag, lead and after replace.
            let masked = |position: &str, k: usize, e: Expr| {
                when(col(position).gt_eq(lit(k as i64))).then(e).otherwise(null_f64())
            };
            let cases: Vec<(Expr, Expr)> = vec![
                (runs.each(col("x"), Stat::Mean(w)), over(col("x").rolling_mean(window(w)))),
                (runs.each(col("x"), Stat::Std(w)), over(col("x").rolling_std(window(w)))),
                (runs.each(col("x"), Stat::Var(w)), over(col("x").rolling_var(window(w)))),
                (
                    runs.each(col("x"), Stat::Skew(w)),
                    over(col("x").rolling_skew(opts(Some(RollingFnParams::Skew { bias: true })))),
                ),
                (
                    runs.each(col("x"), Stat::Kurtosis(w)),
                    over(col("x").rolling_kurtosis(opts(Some(RollingFnParams::Kurtosis { fisher: true, bias: true })))),
                ),
                (runs.each(col("x"), Stat::Ewm(alpha, w)), over(col("x").ewm_mean(ewm(alpha, w)))),
                (runs.each(col("y"), Stat::Ewm(1.0 / w as f64, w)), over(col("y").ewm_mean(ewm(1.0 / w as f64, w)))),
                (
                    runs.corr(col("x"), col("y"), w),
                    over(rolling_corr(
                        col("x"),
                        col("y"),
                        RollingCovOptions { window_size: w as IdxSize, min_periods: w as IdxSize, ddof: 1 },
                    )),
                ),
                (
                    runs.corr(col("p"), col("y"), w),
                    over(rolling_corr(
                        col("p"),
                        col("y"),
                        RollingCovOptions { window_size: w as IdxSize, min_periods: w as IdxSize, ddof: 1 },
                    )),
                ),
                (
                    shared.corr_complete("p", "q", w),
                    over(rolling_corr(
                        col("p"),
                        col("q"),
                        RollingCovOptions { window_size: w as IdxSize, min_periods: w as IdxSize, ddof: 1 },
                    )),
                ),
                (shared.of("x", Stat::Std(w)), over(col("x").rolling_std(window(w)))),
                (shared.of("q", Stat::Ewm(alpha, w)), over(col("q").ewm_mean(ewm(alpha, w)))),
                (finite(col("x")), when(col("x").is_finite()).then(col("x")).otherwise(null_f64())),
                (runs.lag(col("x"), w), masked("row", w, col("x").shift(lit(w as i64)))),
                (runs.lag(col("x"), w - 1), masked("row", w - 1, col("x").shift(lit(w as i64 - 1)))),
                (runs.lead(col("x"), w), masked("left", w, col("x").shift(lit(-(w as i64))))),
                (runs.after(col("x"), w - 1), masked("row", w - 1, col("x"))),
                (trailing_extreme(col("p"), w, true), col("p").rolling_max(window(w))),
                (trailing_extreme(col("p"), w, false), col("p").rolling_min(window(w))),
                (trailing_extreme(col("x"), w, true), col("x").rolling_max(window(w))),
                (trailing_extreme(col("x"), w, false), col("x").rolling_min(window(w))),
            ];
            let helpers = shared.into_helpers();
            for (k, (ours, theirs)) in cases.into_iter().enumerate() {
                let out = df
                    .clone()
                    .lazy()
                    .with_columns(helpers.clone())
                    .with_columns([ours.alias("ours"), theirs.alias("theirs")])
                    .collect()
                    .expect("collect");
                prop_assert_eq!(bits(&out, "ours"), bits(&out, "theirs"), "case {} (w = {})", k, w);
            }
        }
    }

    /// A frame without rows (a date before the data) goes through every kernel to empty f64 columns.
    #[test]
    fn an_empty_frame_gives_empty_columns() {
        let (df, runs) = frame(&[], &[Some(1.0)], &[Some(1.0)]);
        assert_eq!(df.height(), 0);
        let shared = Shared::new(&runs);
        let stats = [Stat::Mean(5), Stat::Std(5), Stat::Var(5), Stat::Count(5), Stat::Skew(5), Stat::Kurtosis(5)];
        let mut cases: Vec<Expr> = stats.iter().map(|&s| runs.each(col("x"), s)).collect();
        cases.extend([
            runs.each(col("x"), Stat::Ewm(0.5, 3)),
            runs.corr(col("x"), col("y"), 5),
            shared.corr_complete("p", "q", 5),
            runs.lag(col("x"), 2),
            runs.lead(col("x"), 2),
            runs.after(col("x"), 2),
            trailing_extreme(col("p"), 5, true),
            finite(col("x")),
        ]);
        let helpers = shared.into_helpers();
        for (k, e) in cases.into_iter().enumerate() {
            let out = df.clone().lazy().with_columns(helpers.clone()).with_columns([e.alias("out")]).collect();
            let out = out.unwrap_or_else(|e| panic!("case {k}: {e}"));
            assert_eq!(out.column("out").expect("out").dtype(), &DataType::Float64, "case {k}");
            assert_eq!(out.height(), 0, "case {k}");
        }
    }

    /// The fast extreme path (positive values) is taken and equals Polars on long windows and a long column.
    #[test]
    fn trailing_extremes_of_prices_equal_polars_for_long_windows() {
        let n = 5_000;
        let p: Vec<f64> = (0..n).map(|i| 100.0 + ((i * 7919) % 1013) as f64 / 7.0 - (i % 17) as f64).collect();
        let df = DataFrame::new_infer_height(vec![Column::new("p".into(), p)]).expect("frame");
        for w in [1, 7, 64, 250, 4_999, 5_000, 6_000] {
            for max in [true, false] {
                let theirs = if max { col("p").rolling_max(window(w)) } else { col("p").rolling_min(window(w)) };
                let out = df
                    .clone()
                    .lazy()
                    .with_columns([trailing_extreme(col("p"), w, max).alias("ours"), theirs.alias("theirs")])
                    .collect()
                    .expect("collect");
                assert_eq!(bits(&out, "ours"), bits(&out, "theirs"), "w = {w}, max = {max}");
                let nulls = out.column("ours").expect("ours").null_count();
                assert_eq!(nulls, (w - 1).min(n), "w = {w}");
            }
        }
    }
}
