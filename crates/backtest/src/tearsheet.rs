//! Tear sheets: the performance plots of quantstats/pyfolio and the factor plots of alphalens, computed from a
//! model's simulation, its out-of-sample predictions and the prices. Every formula is stated on its field and in
//! docs/backtests.md (Conventions → report).
//!
//! Daily strategy returns are r_t = E_t / E_{t−1} − 1 with E_0 the starting capital. Forward returns follow the
//! label convention: a signal on date t is traded at the next open, so the h-day forward return is
//! px(t+1+h) / px(t+1) − 1 with px the open (the close where the data has no opens), in the symbol's own rows.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::metrics;
use crate::portfolio::{Market, Simulation};
use crate::runner::OosPrediction;

/// `[report]` settings of a backtest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// Score quantiles of the factor tear sheet (≥ 2).
    pub quantiles: usize,
    /// Horizons (trading days) of the IC decay.
    pub ic_horizons: Vec<usize>,
    /// Window (trading days) of the rolling Sharpe ratio and volatility.
    pub rolling_days: usize,
    /// Drawdown periods listed (the deepest first).
    pub drawdown_periods: usize,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self { quantiles: 5, ic_horizons: vec![1, 5, 10, 20], rolling_days: 126, drawdown_periods: 5 }
    }
}

/// The report's settings, checked where the configuration is read; the evaluation takes them checked.
impl stockcast_features::Params for ReportConfig {
    type Error = String;
    fn check(&self) -> Result<(), String> {
        if self.quantiles < 2 || self.quantiles > 20 {
            return Err(format!("report.quantiles must be in 2..=20, got {}", self.quantiles));
        }
        if self.ic_horizons.is_empty() || self.ic_horizons.contains(&0) {
            return Err("report.ic_horizons must list horizons ≥ 1".into());
        }
        if self.rolling_days < 2 {
            return Err(format!("report.rolling_days must be ≥ 2, got {}", self.rolling_days));
        }
        Ok(())
    }
}

/// One drawdown period: from a peak to the first date the equity is back at that peak.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrawdownPeriod {
    /// Last date at the peak before the fall.
    pub start: NaiveDate,
    /// Date of the lowest equity.
    pub valley: NaiveDate,
    /// First date the equity is at or above the peak again (None: not recovered by the end).
    pub recovery: Option<NaiveDate>,
    /// valley equity / peak equity − 1.
    pub depth: f64,
    /// Trading days from the peak to the recovery (or to the last date).
    pub days: usize,
}

/// A histogram: `counts[i]` values in [edges[i], edges[i+1]) (the last bin includes its upper edge).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    /// Bin edges (bins + 1).
    pub edges: Vec<f64>,
    /// Values per bin.
    pub counts: Vec<u64>,
}

/// Everything the report plots for one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tearsheet {
    /// (year, month 1–12, compounded return of the month's trading days).
    pub monthly: Vec<(i32, u32, f64)>,
    /// (year, strategy return, benchmark return), compounded over the year's trading days.
    pub yearly: Vec<(i32, f64, f64)>,
    /// Rolling annualised Sharpe ratio over `rolling_days` returns (NaN before a full window), per simulation date.
    pub rolling_sharpe: Vec<f64>,
    /// Rolling annualised volatility over `rolling_days` returns.
    pub rolling_vol: Vec<f64>,
    /// Equity / benchmark equity (above 1: ahead of the equal-weight buy-and-hold).
    pub relative: Vec<f64>,
    /// The deepest drawdown periods.
    pub drawdowns: Vec<DrawdownPeriod>,
    /// Distribution of daily returns (30 bins).
    pub returns_hist: Histogram,
    /// Mean label by score quantile (quantile 1 the lowest scores): per date, the scores cut into `quantiles`
    /// equal-frequency bins as `pandas.qcut` cuts them ([`qcut_bins`]), the label averaged in each bin; then each
    /// bin's mean over the dates where it has labelled rows.
    pub quantile_mean: Vec<f64>,
    /// Dates of the quantile cumulative returns.
    pub quantile_dates: Vec<NaiveDate>,
    /// Cumulative 1-day forward return of each quantile, equal-weighted and rebalanced daily: Π(1 + mean r1).
    pub quantile_cumulative: Vec<Vec<f64>>,
    /// Cumulative top-minus-bottom: Π(1 + mean r1(top) − mean r1(bottom)).
    pub spread_cumulative: Vec<f64>,
    /// (horizon, mean daily Rank IC of the score against the forward return over that horizon).
    pub ic_decay: Vec<(usize, f64)>,
    /// Distribution of the daily Rank IC (20 bins).
    pub ic_hist: Histogram,
    /// (date, Spearman correlation of the scores with the previous prediction date's, common symbols).
    pub rank_autocorr: Vec<(NaiveDate, f64)>,
    /// Per sector (the sector each name had on each date: securities or classification file): the mean over dates
    /// of the Rank IC among that sector's names (dates with ≥ 3 of them), and how many dates counted.
    pub ic_by_group: Vec<(String, f64, usize)>,
    /// Per sector: the mean label of each score quantile among that sector's names, quantiles cut over the whole
    /// date as for [`Tearsheet::quantile_mean`] (alphalens' `mean_return_by_quantile(by_group=True)` with the
    /// default `binning_by_group=False`): per (date, sector, quantile) the mean label, then its mean over the
    /// dates where that cell has rows; NaN for a quantile the sector never had.
    pub quantile_mean_by_group: Vec<(String, Vec<f64>)>,
    /// Mean over dates of the Rank IC of the scores demeaned per (date, sector) against the label: what the
    /// signal knows beyond picking sectors. `None` without sectors.
    pub sector_neutral_rank_ic: Option<f64>,
}

/// The per-sector tables of one model ([`Tearsheet::ic_by_group`], [`Tearsheet::quantile_mean_by_group`],
/// [`Tearsheet::sector_neutral_rank_ic`]).
struct GroupTables {
    ic: Vec<(String, f64, usize)>,
    quantile_mean: Vec<(String, Vec<f64>)>,
    neutral: Option<f64>,
}

/// The per-sector tables of `rows` with `q` quantiles (see [`GroupTables`]).
fn group_tables(rows: &BTreeMap<NaiveDate, DateRows>, market: &Market, q: usize) -> GroupTables {
    if market.sector.iter().all(Vec::is_empty) {
        return GroupTables { ic: Vec::new(), quantile_mean: Vec::new(), neutral: None };
    }
    let mut by_group: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut quantiles: BTreeMap<&str, Vec<(f64, usize)>> = BTreeMap::new();
    let mut neutral = Vec::new();
    for day in rows.values() {
        let labelled: Vec<&Row> = day.iter().filter(|r| r.3.is_finite()).collect();
        let bins = if labelled.len() >= 2 {
            qcut_bins(&labelled.iter().map(|r| r.2).collect::<Vec<_>>(), q)
        } else {
            vec![0; labelled.len()]
        };
        let mut groups: BTreeMap<&str, Vec<(&Row, usize)>> = BTreeMap::new();
        for (r, &k) in labelled.iter().zip(&bins) {
            if let Some(g) = market.sector_at(r.0, r.1) {
                groups.entry(g).or_default().push((r, k));
            }
        }
        let mut demeaned = Vec::new();
        for (g, members) in &groups {
            let mean = members.iter().map(|r| r.0.2).sum::<f64>() / members.len() as f64;
            demeaned.extend(members.iter().map(|r| (r.0.2 - mean, r.0.3)));
            if members.len() >= 3 {
                let (s, l): (Vec<f64>, Vec<f64>) = members.iter().map(|r| (r.0.2, r.0.3)).unzip();
                let ic = metrics::spearman(&s, &l);
                if ic.is_finite() {
                    by_group.entry(g).or_default().push(ic);
                }
            }
            if labelled.len() >= 2 {
                let mut cell = vec![(0.0, 0usize); q];
                for (r, k) in members {
                    cell[*k].0 += r.3;
                    cell[*k].1 += 1;
                }
                let sums = quantiles.entry(g).or_insert_with(|| vec![(0.0, 0); q]);
                for (s, c) in sums.iter_mut().zip(&cell).filter(|(_, c)| c.1 > 0) {
                    s.0 += c.0 / c.1 as f64;
                    s.1 += 1;
                }
            }
        }
        if demeaned.len() >= 3 {
            let (s, l): (Vec<f64>, Vec<f64>) = demeaned.into_iter().unzip();
            let ic = metrics::spearman(&s, &l);
            if ic.is_finite() {
                neutral.push(ic);
            }
        }
    }
    GroupTables {
        ic: by_group.into_iter().map(|(g, v)| (g.to_owned(), metrics::mean(&v), v.len())).collect(),
        quantile_mean: quantiles.into_iter().map(|(g, v)| (g.to_owned(), bin_means(&v))).collect(),
        neutral: (!neutral.is_empty()).then(|| metrics::mean(&neutral)),
    }
}

/// Each bin's mean of its per-date means (`(sum, dates)`), NaN for a bin without dates.
fn bin_means(sums: &[(f64, usize)]) -> Vec<f64> {
    sums.iter().map(|(s, n)| if *n > 0 { s / *n as f64 } else { f64::NAN }).collect()
}

/// Daily returns of a simulation: E_0 is the capital.
pub fn daily_returns(sim: &Simulation, capital: f64) -> Vec<f64> {
    metrics::curve_returns(capital, &sim.equity)
}

/// Compounded return per (year, month) of dated daily returns.
pub fn monthly_returns(dates: &[NaiveDate], r: &[f64]) -> Vec<(i32, u32, f64)> {
    let mut out: BTreeMap<(i32, u32), f64> = BTreeMap::new();
    for (d, x) in dates.iter().zip(r) {
        let g = out.entry((d.year(), d.month())).or_insert(1.0);
        *g *= 1.0 + x;
    }
    out.into_iter().map(|((y, m), g)| (y, m, g - 1.0)).collect()
}

fn yearly_returns(dates: &[NaiveDate], r: &[f64]) -> BTreeMap<i32, f64> {
    let mut out: BTreeMap<i32, f64> = BTreeMap::new();
    for (d, x) in dates.iter().zip(r) {
        *out.entry(d.year()).or_insert(1.0) *= 1.0 + x;
    }
    out.into_iter().map(|(y, g)| (y, g - 1.0)).collect()
}

/// The drawdown periods of an equity curve (dated), deepest first, at most `n`.
pub fn drawdown_periods(dates: &[NaiveDate], equity: &[f64], n: usize) -> Vec<DrawdownPeriod> {
    let mut out = Vec::new();
    let mut peak = (0usize, f64::NEG_INFINITY);
    let mut valley: Option<(usize, f64)> = None;
    for (i, &e) in equity.iter().enumerate() {
        if !e.is_finite() {
            continue;
        }
        if e >= peak.1 {
            if let Some((v, ve)) = valley.take() {
                out.push(DrawdownPeriod {
                    start: dates[peak.0],
                    valley: dates[v],
                    recovery: Some(dates[i]),
                    depth: ve / peak.1 - 1.0,
                    days: i - peak.0,
                });
            }
            peak = (i, e);
        } else if valley.is_none_or(|(_, ve)| e < ve) {
            valley = Some((i, e));
        }
    }
    if let Some((v, ve)) = valley {
        out.push(DrawdownPeriod {
            start: dates[peak.0],
            valley: dates[v],
            recovery: None,
            depth: ve / peak.1 - 1.0,
            days: equity.len() - 1 - peak.0,
        });
    }
    out.sort_by(|a, b| a.depth.total_cmp(&b.depth).then(a.start.cmp(&b.start)));
    out.truncate(n);
    out
}

/// A histogram of the finite values in `bins` equal bins between their min and max.
pub fn histogram(values: &[f64], bins: usize) -> Histogram {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let (lo, hi) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    if v.is_empty() || bins == 0 {
        return Histogram { edges: Vec::new(), counts: Vec::new() };
    }
    let width = if hi > lo { (hi - lo) / bins as f64 } else { 1.0 };
    let edges = (0..=bins).map(|i| lo + width * i as f64).collect();
    let mut counts = vec![0u64; bins];
    for x in v {
        let i = (((x - lo) / width) as usize).min(bins - 1);
        counts[i] += 1;
    }
    Histogram { edges, counts }
}

fn rolling(r: &[f64], window: usize, f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    (0..r.len()).map(|i| if i + 1 >= window { f(&r[i + 1 - window..=i]) } else { f64::NAN }).collect()
}

/// Forward returns on each symbol's own bars ([`Market::bars`], as the label counts them): prices are the open,
/// or the close where the data has no open. Built once per evaluation and read by every model's tear sheet.
#[derive(Debug)]
pub struct Forward<'a> {
    market: &'a Market,
    /// For each symbol whose bars are every date from its first to its last: that first date index (then its
    /// k-th bar after date t is date t + k, no search needed).
    dense: Vec<Option<usize>>,
    /// px of every (date, symbol), date-major: a date's rows (sorted by symbol) read one stretch of memory.
    px_by_date: Vec<f64>,
}

impl<'a> Forward<'a> {
    /// The prices of `market`, date-major.
    pub fn new(market: &'a Market) -> Self {
        let bars = market.bars();
        let dense = bars
            .iter()
            .map(|b| match (b.first(), b.last()) {
                (Some(&first), Some(&last)) if last - first + 1 == b.len() => Some(first),
                _ => None,
            })
            .collect();
        let n = market.symbols.len();
        let mut px_by_date = vec![f64::NAN; market.dates.len() * n];
        for s in 0..n {
            for d in 0..market.dates.len() {
                let o = market.open[s][d];
                px_by_date[d * n + s] = if o.is_finite() { o } else { market.close[s][d] };
            }
        }
        Self { market, dense, px_by_date }
    }

    fn px(&self, s: usize, d: usize) -> f64 {
        self.px_by_date[d * self.market.symbols.len() + s]
    }

    /// px(t+1+h) / px(t+1) − 1 at each of `horizons` into `out`, where t+k is the symbol's k-th bar after its
    /// bar at date index `t` (NaN past its data or when `t` is not one of its bars): a date on which the symbol
    /// has no bar is not counted. The bar at `t` is found once for every horizon.
    fn rets(&self, s: usize, t: usize, horizons: &[usize], out: &mut [f64]) {
        let bars = &self.market.bars()[s];
        // The position of date t among the symbol's bars, and the date of its k-th bar.
        let (p, date_of): (usize, &dyn Fn(usize) -> usize) = match self.dense[s] {
            Some(first) if t >= first && t - first < bars.len() => (t - first, &move |k| first + k),
            Some(_) => {
                out.fill(f64::NAN);
                return;
            }
            None => {
                let Ok(p) = bars.binary_search(&t) else {
                    out.fill(f64::NAN);
                    return;
                };
                (p, &|k| bars[k])
            }
        };
        let entry = (p + 1 < bars.len()).then(|| self.px(s, date_of(p + 1)));
        for (o, &h) in out.iter_mut().zip(horizons) {
            *o = match entry {
                Some(e) if p + 1 + h < bars.len() => self.px(s, date_of(p + 1 + h)) / e - 1.0,
                _ => f64::NAN,
            };
        }
    }
}

/// One prediction: (symbol index, market date index, score, label).
type Row = (usize, usize, f64, f64);
/// Rows of one prediction date.
type DateRows = Vec<Row>;

fn by_date(preds: &[OosPrediction], market: &Market) -> BTreeMap<NaiveDate, DateRows> {
    let mut out: BTreeMap<NaiveDate, DateRows> = BTreeMap::new();
    let mut locate = market.locator();
    for p in preds {
        if let Some((d, s)) = locate.find(p.date, &p.symbol).filter(|_| p.score.is_finite()) {
            out.entry(p.date).or_default().push((s, d, p.score, p.label));
        }
    }
    out
}

/// numpy's `_lerp` (`linear` quantiles): `a + (b − a)·t`, or `b − (b − a)·(1 − t)` for `t ≥ ½`.
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let diff = b - a;
    if t >= 0.5 { b - diff * (1.0 - t) } else { a + diff * t }
}

/// The `q + 1` edges `pandas.qcut(x, q)` cuts at, computed as pandas computes them, rounding included:
/// `Series.quantile(np.linspace(0, 1, q + 1))`, i.e. `np.percentile(x, p · 100)` with linear interpolation
/// (`p = i · (1/q)`, the last exactly 1; numpy divides the percentage by 100 again; virtual index `(n − 1)·p`).
/// `sorted` is ascending and finite.
fn qcut_edges(sorted: &[f64], q: usize) -> Vec<f64> {
    let n = sorted.len();
    let step = 1.0 / q as f64;
    (0..=q)
        .map(|i| {
            let p = if i == q { 1.0 } else { i as f64 * step };
            let v = (n - 1) as f64 * (p * 100.0 / 100.0);
            if v >= (n - 1) as f64 {
                return sorted[n - 1];
            }
            let lo = v.floor();
            lerp(sorted[lo as usize], sorted[lo as usize + 1], v - lo)
        })
        .collect()
}

/// The equal-frequency bin (0 = lowest scores) of each of `scores` (finite, at least one), as
/// `pandas.qcut(scores, q, labels=False)` gives it: right-closed intervals between the edges of
/// [`qcut_edges`], the lowest value in the first. Where ties make edges coincide pandas raises ("Bin edges must
/// be unique", so alphalens stops); here every edge is kept, so tied scores fall in the lowest bin whose upper
/// edge reaches them and the bins between stay empty that date. No bin depends on symbol names.
pub fn qcut_bins(scores: &[f64], q: usize) -> Vec<usize> {
    let mut sorted = scores.to_vec();
    sorted.sort_by(f64::total_cmp);
    let edges = qcut_edges(&sorted, q);
    scores
        .iter()
        .map(|&x| {
            // searchsorted(edges, x, side = "left") − 1; the lowest value (no edge below it) in the first bin.
            edges.partition_point(|e| *e < x).clamp(1, q) - 1
        })
        .collect()
}

/// What one prediction date adds to the tear sheet: its IC decay, quantile means and curves, and rank
/// autocorrelation, before they are gathered in date order.
struct DayStats {
    /// Per IC-decay horizon: the date's Rank IC, when it has enough pairs and is finite.
    decay: Vec<Option<f64>>,
    /// Label sums and counts per quantile of the labelled rows (at least 2 of them).
    labelled: Option<Vec<(f64, usize)>>,
    /// 1-day forward return sums and counts per quantile of the rows that have one (at least 2).
    forward: Option<Vec<(f64, usize)>>,
    /// Spearman correlation of the date's scores with the previous date's of the same symbols (at least 3).
    autocorr: Option<f64>,
}

/// The [`DayStats`] of `day` (`prev`: the date before, if any). `before` is scratch indexed by symbol, NaN
/// throughout, and left so.
fn day_stats(
    day: &DateRows,
    prev: Option<&DateRows>,
    fw: &Forward<'_>,
    horizons: &[usize],
    q: usize,
    before: &mut [f64],
) -> DayStats {
    // Forward returns of each row at each horizon (row-major: the row's 1-day return first).
    let mut fwd = vec![f64::NAN; horizons.len()];
    let mut day_fwd = Vec::with_capacity(day.len() * horizons.len());
    for r in day {
        fw.rets(r.0, r.1, horizons, &mut fwd);
        day_fwd.extend_from_slice(&fwd);
    }
    // IC decay: this date's Rank IC of the scores (all finite: `by_date` keeps no other) against each horizon's
    // forward return (as daily_ic). The scores' ranks are the same for every horizon whose returns are all
    // finite: ranked once.
    let mut score_ranks: Option<Vec<f64>> = None;
    let decay = (1..horizons.len())
        .map(|h| {
            let (a, b): (Vec<f64>, Vec<f64>) = day
                .iter()
                .zip(day_fwd.chunks(horizons.len()))
                .map(|(r, f)| (r.2, f[h]))
                .filter(|(_, f)| f.is_finite())
                .unzip();
            if a.len() < metrics::MIN_PAIRS {
                return None;
            }
            let ic = if a.len() == day.len() {
                let ranks = score_ranks.get_or_insert_with(|| metrics::average_ranks(&a));
                metrics::pearson(ranks, &metrics::average_ranks(&b))
            } else {
                metrics::spearman(&a, &b)
            };
            ic.is_finite().then_some(ic)
        })
        .collect();
    // Mean label by quantile: the bins of the labelled rows (alphalens drops rows without a forward return before
    // it bins), each quantile's mean over the dates where it has rows (`mean_return_by_quantile`, not demeaned): a
    // date with an empty quantile still counts for the others.
    let labelled: Vec<&Row> = day.iter().filter(|r| r.3.is_finite()).collect();
    let labelled = (labelled.len() >= 2).then(|| {
        let quant = qcut_bins(&labelled.iter().map(|r| r.2).collect::<Vec<_>>(), q);
        let mut lab = vec![(0.0, 0usize); q];
        for (row, &k) in labelled.iter().zip(&quant) {
            lab[k].0 += row.3;
            lab[k].1 += 1;
        }
        lab
    });
    // Cumulative 1-day returns: the bins of the rows with a 1-day forward return (the curves take the dates where
    // every quantile has one).
    let forward: Vec<(f64, f64)> = day
        .iter()
        .zip(day_fwd.chunks(horizons.len()))
        .map(|(r, f)| (r.2, f[0]))
        .filter(|(_, f)| f.is_finite())
        .collect();
    let forward = (forward.len() >= 2).then(|| {
        let quant = qcut_bins(&forward.iter().map(|x| x.0).collect::<Vec<_>>(), q);
        let mut one = vec![(0.0, 0usize); q];
        for ((_, f), &k) in forward.iter().zip(&quant) {
            one[k].0 += f;
            one[k].1 += 1;
        }
        one
    });
    // Rank autocorrelation: the scores of the symbols the previous date scored too (its scores, all finite, laid
    // out by symbol in `before`).
    let autocorr = prev.and_then(|p| {
        for x in p {
            before[x.0] = x.2;
        }
        let (a, b): (Vec<f64>, Vec<f64>) =
            day.iter().filter(|x| !before[x.0].is_nan()).map(|x| (before[x.0], x.2)).unzip();
        for x in p {
            before[x.0] = f64::NAN;
        }
        (a.len() >= 3).then(|| metrics::spearman(&a, &b))
    });
    DayStats { decay, labelled, forward, autocorr }
}

/// `f(i, scratch)` for every `i < n`, in order of `i`, computed in contiguous blocks on up to one thread per core,
/// each block with its own scratch of `width` NaNs (which `f` leaves NaN). Results do not depend on the threads.
fn per_day<T: Send>(n: usize, width: usize, f: impl Fn(usize, &mut [f64]) -> T + Sync) -> Vec<T> {
    per_day_on(std::thread::available_parallelism().map_or(1, usize::from).clamp(1, 8), n, width, f)
}

/// [`per_day`] on `threads` threads (at most one per item).
fn per_day_on<T: Send>(threads: usize, n: usize, width: usize, f: impl Fn(usize, &mut [f64]) -> T + Sync) -> Vec<T> {
    let threads = threads.clamp(1, n.max(1));
    let block = n.div_ceil(threads);
    let run = |t: usize| {
        let mut scratch = vec![f64::NAN; width];
        (t * block..((t + 1) * block).min(n)).map(|i| f(i, &mut scratch)).collect::<Vec<T>>()
    };
    std::thread::scope(|s| {
        let others: Vec<_> = (1..threads).map(|t| s.spawn(move || run(t))).collect();
        let mut out = run(0);
        for h in others {
            out.extend(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        out
    })
}

/// Builds the tear sheet of one model.
pub fn tearsheet(
    sim: &Simulation,
    capital: f64,
    risk_free: f64,
    preds: &[OosPrediction],
    daily_ic: &[metrics::DateIc],
    fw: &Forward<'_>,
    cfg: &ReportConfig,
) -> Tearsheet {
    let market = fw.market;
    let r = daily_returns(sim, capital);
    let bench = metrics::curve_returns(capital, &sim.benchmark);
    let years = yearly_returns(&sim.dates, &r);
    let bench_years = yearly_returns(&sim.dates, &bench);
    let w = cfg.rolling_days.max(2);
    let rows = by_date(preds, market);
    let q = cfg.quantiles.max(2);
    // The horizons of the IC decay, and the 1-day forward return the quantile curves read, found together.
    let mut horizons = vec![1];
    horizons.extend(cfg.ic_horizons.iter().copied());
    // Each date's statistics on its own (on every core), then gathered in date order as one loop would.
    let days: Vec<(&NaiveDate, &DateRows)> = rows.iter().collect();
    let stats = per_day(days.len(), market.symbols.len(), |i, before| {
        day_stats(days[i].1, i.checked_sub(1).map(|p| days[p].1), fw, &horizons, q, before)
    });
    let mut sums = vec![(0.0, 0usize); q];
    let mut cum = vec![1.0; q];
    let mut spread = 1.0;
    let (mut qdates, mut qcum, mut scum) = (Vec::new(), vec![Vec::new(); q], Vec::new());
    let mut autocorr = Vec::new();
    let mut decay: Vec<Vec<f64>> = vec![Vec::new(); cfg.ic_horizons.len()];
    for ((date, _), st) in days.iter().zip(stats) {
        for (ics, ic) in decay.iter_mut().zip(st.decay) {
            ics.extend(ic);
        }
        if let Some(lab) = st.labelled {
            for (s, l) in sums.iter_mut().zip(&lab).filter(|(_, l)| l.1 > 0) {
                s.0 += l.0 / l.1 as f64;
                s.1 += 1;
            }
        }
        if let Some(one) = st.forward.filter(|one| one.iter().all(|x| x.1 > 0)) {
            let means: Vec<f64> = one.iter().map(|x| x.0 / x.1 as f64).collect();
            for ((c, m), series) in cum.iter_mut().zip(&means).zip(qcum.iter_mut()) {
                *c *= 1.0 + m;
                series.push(*c);
            }
            spread *= 1.0 + means[q - 1] - means[0];
            scum.push(spread);
            qdates.push(**date);
        }
        if let Some(ac) = st.autocorr {
            autocorr.push((**date, ac));
        }
    }
    let ic_decay = cfg
        .ic_horizons
        .iter()
        .zip(&decay)
        .map(|(&h, v)| (h, if v.is_empty() { f64::NAN } else { metrics::mean(v) }))
        .collect();
    let rank_ics: Vec<f64> = daily_ic.iter().map(|d| d.rank_ic).collect();
    let groups = group_tables(&rows, market, q);
    Tearsheet {
        monthly: monthly_returns(&sim.dates, &r),
        yearly: years.iter().map(|(y, v)| (*y, *v, bench_years.get(y).copied().unwrap_or(f64::NAN))).collect(),
        rolling_sharpe: rolling(&r, w, |x| metrics::sharpe(x, risk_free)),
        rolling_vol: rolling(&r, w, metrics::volatility),
        relative: sim.equity.iter().zip(&sim.benchmark).map(|(e, b)| e / b).collect(),
        drawdowns: drawdown_periods(&sim.dates, &sim.equity, cfg.drawdown_periods),
        returns_hist: histogram(&r, 30),
        quantile_mean: bin_means(&sums),
        quantile_dates: qdates,
        quantile_cumulative: qcum,
        spread_cumulative: scum,
        ic_decay,
        ic_hist: histogram(&rank_ics, 20),
        rank_autocorr: autocorr,
        ic_by_group: groups.ic,
        quantile_mean_by_group: groups.quantile_mean,
        sector_neutral_rank_ic: groups.neutral,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The days come back in order, each computed once with a clean scratch, whatever the number of threads.
    #[test]
    fn per_day_results_do_not_depend_on_the_threads() {
        let f = |i: usize, scratch: &mut [f64]| {
            assert!(scratch.iter().all(|x| x.is_nan()), "scratch left dirty before day {i}");
            let k = i % scratch.len();
            scratch[k] = i as f64;
            let seen = scratch.iter().filter(|x| !x.is_nan()).count();
            scratch[k] = f64::NAN;
            (i * i, seen)
        };
        for n in [0, 1, 2, 7, 100] {
            let expected: Vec<(usize, usize)> = (0..n).map(|i| (i * i, 1)).collect();
            for threads in [1, 2, 3, 8, 200] {
                assert_eq!(per_day_on(threads, n, 5, f), expected, "{n} days on {threads} threads");
            }
        }
    }
}
