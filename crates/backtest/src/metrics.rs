//! Signal metrics (IC, Rank IC, ICIR, t-stat, hit rate), forecast metrics (MAE, RMSE, relative MAE, directional
//! accuracy) and performance statistics of an equity curve.
//!
//! Conventions (written into every report): 252 trading days a year; returns compound; the risk-free rate is an
//! annual rate turned into a daily one as (1 + rf)^(1/252) − 1; standard deviations are sample ones (n − 1);
//! undefined values (too few points, zero variance) are NaN, written as `null` in JSON.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;

/// Trading days per year.
pub const YEAR: f64 = 252.0;

/// Fewest (score, label) pairs on a date for its IC.
pub const MIN_PAIRS: usize = 3;

pub use stockcast_features::stats::{average_ranks, mean};

/// Sample standard deviation (`ddof = 1`; NaN below two points): [`stockcast_features::stats::std`].
pub fn std(v: &[f64]) -> f64 {
    stockcast_features::stats::std(v, 1)
}

/// Pearson correlation; NaN when either side is constant or fewer than two points.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    if x.len() < 2 || x.len() != y.len() {
        return f64::NAN;
    }
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    if sxx <= 0.0 || syy <= 0.0 { f64::NAN } else { sxy / (sxx * syy).sqrt() }
}

/// Spearman correlation (Pearson of average ranks).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&average_ranks(x), &average_ranks(y))
}

/// IC and Rank IC of one date.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DateIc {
    /// The date of the scores.
    pub date: NaiveDate,
    /// Pairs with a finite score and label.
    pub n: usize,
    /// Pearson correlation of score and realised label across symbols.
    pub ic: f64,
    /// Spearman correlation.
    pub rank_ic: f64,
}

/// Per-date IC over rows `(date, score, label)`; dates with fewer than [`MIN_PAIRS`] finite pairs are left out.
pub fn daily_ic(rows: impl IntoIterator<Item = (NaiveDate, f64, f64)>) -> Vec<DateIc> {
    let mut by_date: BTreeMap<NaiveDate, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for (d, s, l) in rows {
        if s.is_finite() && l.is_finite() {
            let e = by_date.entry(d).or_default();
            e.0.push(s);
            e.1.push(l);
        }
    }
    by_date
        .into_iter()
        .filter(|(_, (s, _))| s.len() >= MIN_PAIRS)
        .map(|(date, (s, l))| DateIc { date, n: s.len(), ic: pearson(&s, &l), rank_ic: spearman(&s, &l) })
        .collect()
}

/// Summary of per-date ICs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignalStats {
    /// Dates with an IC.
    pub dates: usize,
    /// Mean IC.
    pub ic: f64,
    /// Standard deviation of the daily IC.
    pub ic_std: f64,
    /// Mean IC / its standard deviation (per date, not annualised).
    pub icir: f64,
    /// Mean Rank IC.
    pub rank_ic: f64,
    /// Standard deviation of the daily Rank IC.
    pub rank_ic_std: f64,
    /// Mean Rank IC / its standard deviation.
    pub rank_icir: f64,
    /// t-statistic of the mean Rank IC: mean / std · √dates (overlapping labels make it optimistic).
    pub t_stat: f64,
    /// Share of dates with a positive Rank IC.
    pub hit_rate: f64,
}

/// Summarises per-date ICs (dates with an undefined IC, e.g. constant scores, are skipped for that statistic).
pub fn signal_stats(daily: &[DateIc]) -> SignalStats {
    let ic: Vec<f64> = daily.iter().map(|d| d.ic).filter(|v| v.is_finite()).collect();
    let ric: Vec<f64> = daily.iter().map(|d| d.rank_ic).filter(|v| v.is_finite()).collect();
    let (ic_m, ic_s, ric_m, ric_s) = (mean(&ic), std(&ic), mean(&ric), std(&ric));
    let ratio = |m: f64, s: f64| if s > 0.0 { m / s } else { f64::NAN };
    SignalStats {
        dates: daily.len(),
        ic: ic_m,
        ic_std: ic_s,
        icir: ratio(ic_m, ic_s),
        rank_ic: ric_m,
        rank_ic_std: ric_s,
        rank_icir: ratio(ric_m, ric_s),
        t_stat: ratio(ric_m, ric_s) * (ric.len() as f64).sqrt(),
        hit_rate: if ric.is_empty() {
            f64::NAN
        } else {
            ric.iter().filter(|v| **v > 0.0).count() as f64 / ric.len() as f64
        },
    }
}

/// Errors of the score read as a forecast of the realised label (the forward return).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForecastStats {
    /// Pairs with a finite score and label.
    pub n: usize,
    /// Mean absolute error.
    pub mae: f64,
    /// Root mean squared error.
    pub rmse: f64,
    /// MAE over the MAE of the zero-return forecast on the same rows (< 1: better than predicting no move).
    /// Not Hyndman's MASE, which scales by the in-sample MAE of the naive forecast.
    pub relative_mae: f64,
    /// Share of pairs where the score and the realised return have the same sign (zeros excluded).
    pub directional_accuracy: f64,
}

impl ForecastStats {
    /// For models whose score is not a forecast of the label (rules, ensembles of rank percentiles): every
    /// error is undefined (`null` in JSON), `n` is 0.
    pub fn not_applicable() -> Self {
        Self { n: 0, mae: f64::NAN, rmse: f64::NAN, relative_mae: f64::NAN, directional_accuracy: f64::NAN }
    }
}

/// Forecast errors of `(score, label)` pairs.
pub fn forecast_stats(pairs: impl IntoIterator<Item = (f64, f64)>) -> ForecastStats {
    let (mut n, mut abs, mut sq, mut naive, mut dir_n, mut dir_hit) = (0usize, 0.0, 0.0, 0.0, 0usize, 0usize);
    for (s, l) in pairs {
        if !(s.is_finite() && l.is_finite()) {
            continue;
        }
        n += 1;
        abs += (s - l).abs();
        sq += (s - l).powi(2);
        naive += l.abs();
        if s != 0.0 && l != 0.0 {
            dir_n += 1;
            dir_hit += usize::from((s > 0.0) == (l > 0.0));
        }
    }
    let nf = n as f64;
    ForecastStats {
        n,
        mae: if n == 0 { f64::NAN } else { abs / nf },
        rmse: if n == 0 { f64::NAN } else { (sq / nf).sqrt() },
        relative_mae: if naive > 0.0 { abs / naive } else { f64::NAN },
        directional_accuracy: if dir_n == 0 { f64::NAN } else { dir_hit as f64 / dir_n as f64 },
    }
}

/// Daily risk-free rate from an annual one.
pub fn daily_rf(annual: f64) -> f64 {
    (1.0 + annual).powf(1.0 / YEAR) - 1.0
}

/// Daily returns of a curve of closes that starts from `capital` before its first value: E_0 = capital.
pub fn curve_returns(capital: f64, curve: &[f64]) -> Vec<f64> {
    let mut eq = Vec::with_capacity(curve.len() + 1);
    eq.push(capital);
    eq.extend(curve);
    returns(&eq)
}

/// Period returns of an equity curve (`equity[0]` is the starting capital).
pub fn returns(equity: &[f64]) -> Vec<f64> {
    equity.windows(2).map(|w| w[1] / w[0] - 1.0).collect()
}

/// Compound annual growth rate over `returns.len()` trading days.
pub fn cagr(equity: &[f64]) -> f64 {
    let n = equity.len().saturating_sub(1);
    if n == 0 {
        return f64::NAN;
    }
    (equity[n] / equity[0]).powf(YEAR / n as f64) - 1.0
}

/// Annualised volatility of daily returns.
pub fn volatility(r: &[f64]) -> f64 {
    std(r) * YEAR.sqrt()
}

/// Annualised Sharpe ratio: mean excess daily return / std of daily returns · √252.
pub fn sharpe(r: &[f64], rf_annual: f64) -> f64 {
    let rf = daily_rf(rf_annual);
    let s = std(r);
    if s > 0.0 { (mean(r) - rf) / s * YEAR.sqrt() } else { f64::NAN }
}

/// Annualised Sortino ratio: mean excess daily return / downside deviation · √252, where the downside deviation
/// is √(mean over all days of min(r − rf, 0)²).
pub fn sortino(r: &[f64], rf_annual: f64) -> f64 {
    let rf = daily_rf(rf_annual);
    if r.is_empty() {
        return f64::NAN;
    }
    let dd = (r.iter().map(|x| (x - rf).min(0.0).powi(2)).sum::<f64>() / r.len() as f64).sqrt();
    if dd > 0.0 { (mean(r) - rf) / dd * YEAR.sqrt() } else { f64::NAN }
}

/// Maximum drawdown (a fraction ≤ 0) and the longest stretch, in trading days, spent below a previous peak.
pub fn max_drawdown(equity: &[f64]) -> (f64, usize) {
    let (mut peak, mut worst, mut under, mut longest) = (f64::NEG_INFINITY, 0.0_f64, 0usize, 0usize);
    for &e in equity {
        if e >= peak {
            peak = e;
            under = 0;
        } else {
            under += 1;
            longest = longest.max(under);
        }
        worst = worst.min(e / peak - 1.0);
    }
    (worst, longest)
}

/// Drawdown series: equity / running peak − 1.
pub fn drawdowns(equity: &[f64]) -> Vec<f64> {
    let mut peak = f64::NEG_INFINITY;
    equity
        .iter()
        .map(|&e| {
            peak = peak.max(e);
            e / peak - 1.0
        })
        .collect()
}

/// Calmar ratio: CAGR / |max drawdown|.
pub fn calmar(equity: &[f64]) -> f64 {
    let (dd, _) = max_drawdown(equity);
    if dd < 0.0 { cagr(equity) / dd.abs() } else { f64::NAN }
}
