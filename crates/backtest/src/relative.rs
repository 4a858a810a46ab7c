//! Benchmark-relative and tail statistics of a strategy's daily returns (`report.json → models.<m>.risk`), with
//! the conventions of empyrical and quantstats so that a quant can recompute them with those libraries
//! (`bench/risk_empyrical.py` does, to 1e-9):
//!
//! - daily returns `r_t = E_t / E_(t−1) − 1` with `E_0` the capital; the benchmark's `b_t` likewise;
//! - CAPM regression `r − rf = α + β (b − rf) + ε` by least squares: `β = Σ(b−b̄)(r−r̄) / Σ(b−b̄)²` (empyrical's
//!   `beta`), daily `α = mean(r − rf − β (b − rf))`, annualised `(1 + α)^252 − 1` (empyrical's `alpha`); standard
//!   errors from the OLS residuals `s² = Σε² / (n − 2)`: `se(β) = s / √Σ(b−b̄)²`,
//!   `se(α) = s √(1/n + b̄² / Σ(b−b̄)²)` (daily), `t(α) = α / se(α)`;
//! - tracking error `sd(r − b) √252` (sample sd), information ratio `mean(r − b) · 252 / tracking error`;
//! - up (down) capture: the annual return of the strategy over the days the benchmark rose (fell) over the
//!   benchmark's on those days, each `(Π(1 + x))^(252 / days) − 1` (empyrical's `up_capture`, `down_capture`);
//! - historical VaR at 95 %: the 5th percentile of daily returns, linear interpolation (numpy's default); CVaR:
//!   the mean of the lowest `⌊(n − 1) · 0.05⌋ + 1` returns (empyrical's `conditional_value_at_risk`);
//! - tail ratio `|p95| / |p5|`; omega ratio at a 0 threshold `Σ max(r − rf, 0) / Σ max(rf − r, 0)`; profit
//!   factor `Σ r⁺ / |Σ r⁻|` over days (quantstats' `profit_factor`);
//! - minimum track record length (Bailey & López de Prado 2012) at 95 % against a Sharpe ratio of 0:
//!   `1 + (1 − γ3 SR + (γ4 − 1)/4 SR²) (z_0.95 / SR)²` days, SR the daily Sharpe ratio, γ3 the biased skewness,
//!   γ4 the non-excess kurtosis; none when SR ≤ 0;
//! - t-statistics of the mean daily Rank IC: plain `mean / (sd / √n)`, and with Newey–West standard errors
//!   (Bartlett weights, `L = horizon − 1` lags: consecutive labels overlap by that many days)
//!   `mean / √((γ0 + 2 Σ_(l=1..L) (1 − l/(L+1)) γ_l) / n)`, `γ_l = Σ_t (x_t − x̄)(x_(t−l) − x̄) / n` (statsmodels'
//!   HAC without small-sample correction).

use chrono::{Datelike, NaiveDate};
use serde::Serialize;

use crate::metrics;
use crate::overfit;

/// CAPM regression and relative statistics against one benchmark.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Relative {
    /// Annualised alpha `(1 + α_daily)^252 − 1`.
    pub alpha: f64,
    /// Daily alpha (the regression's intercept on excess returns).
    pub alpha_daily: f64,
    /// Standard error of the daily alpha.
    pub alpha_se: f64,
    /// t-statistic of the daily alpha.
    pub alpha_t: f64,
    /// Beta.
    pub beta: f64,
    /// Standard error of beta.
    pub beta_se: f64,
    /// Pearson correlation of daily returns.
    pub correlation: f64,
    /// Annualised tracking error.
    pub tracking_error: f64,
    /// Annualised mean active return / tracking error.
    pub information_ratio: f64,
    /// Annual return on the benchmark's up days / the benchmark's.
    pub up_capture: f64,
    /// Annual return on the benchmark's down days / the benchmark's.
    pub down_capture: f64,
}

/// Risk, tail and significance statistics of one model (`report.json → models.<m>.risk`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RiskStats {
    /// Against the equal-weight universe.
    pub benchmark: Relative,
    /// Against the index, when one is given.
    pub index: Option<Relative>,
    /// True when the strategy's total return exceeds the equal-weight benchmark's.
    pub beats_benchmark: bool,
    /// Historical 95 % value at risk of a day (a return, ≤ 0 for a loss).
    pub var_95: f64,
    /// Mean of the days at or below the 95 % VaR.
    pub cvar_95: f64,
    /// |95th percentile| / |5th percentile| of daily returns.
    pub tail_ratio: f64,
    /// Omega ratio at a zero threshold over the risk-free rate.
    pub omega: f64,
    /// Sum of gains / |sum of losses| over days.
    pub profit_factor: f64,
    /// Best and worst day.
    pub best_day: f64,
    /// Worst day.
    pub worst_day: f64,
    /// Best calendar month (compounded).
    pub best_month: f64,
    /// Worst calendar month.
    pub worst_month: f64,
    /// Minimum track record length at 95 % (trading days); none when the Sharpe ratio is not positive.
    pub min_track_record_days: Option<f64>,
    /// The same in years (/ 252).
    pub min_track_record_years: Option<f64>,
    /// Plain t-statistic of the mean daily Rank IC.
    pub rank_ic_t: f64,
    /// Its t-statistic with Newey–West standard errors.
    pub rank_ic_t_newey_west: f64,
    /// Newey–West lags (label horizon − 1).
    pub newey_west_lags: usize,
}

/// Linear-interpolated percentile `p` (0–100) of `x` (numpy's default); NaN when empty.
pub fn percentile(x: &[f64], p: f64) -> f64 {
    percentile_sorted(&sorted(x), p)
}

/// `x` without NaN, increasing.
fn sorted(x: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = x.iter().copied().filter(|v| !v.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// [`percentile`] of values already sorted, without NaN.
fn percentile_sorted(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let pos = p / 100.0 * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    let t = pos - lo as f64;
    // numpy's lerp: exact at both ends.
    if t >= 0.5 { v[hi] - (v[hi] - v[lo]) * (1.0 - t) } else { v[lo] + (v[hi] - v[lo]) * t }
}

/// `(Π(1 + x))^(252 / n) − 1` (empyrical's `annual_return`).
fn annual_return(x: &[f64]) -> f64 {
    if x.is_empty() {
        return f64::NAN;
    }
    let growth: f64 = x.iter().map(|v| 1.0 + v).product();
    growth.powf(metrics::YEAR / x.len() as f64) - 1.0
}

fn capture(r: &[f64], b: &[f64], up: bool) -> f64 {
    let (rs, bs): (Vec<f64>, Vec<f64>) =
        r.iter().zip(b).filter(|(_, y)| if up { **y > 0.0 } else { **y < 0.0 }).map(|(x, y)| (*x, *y)).unzip();
    annual_return(&rs) / annual_return(&bs)
}

/// CAPM and relative statistics of daily returns `r` against `b` (same dates), daily risk-free `rf`.
pub fn relative(r: &[f64], b: &[f64], rf: f64) -> Relative {
    let n = r.len().min(b.len());
    let (r, b) = (&r[..n], &b[..n]);
    let (br, rr) = (metrics::mean(b), metrics::mean(r));
    let sxx: f64 = b.iter().map(|y| (y - br).powi(2)).sum();
    let beta = if sxx > 0.0 { b.iter().zip(r).map(|(y, x)| (y - br) * x).sum::<f64>() / sxx } else { f64::NAN };
    let excess: Vec<f64> = r.iter().zip(b).map(|(x, y)| (x - rf) - beta * (y - rf)).collect();
    let alpha_daily = metrics::mean(&excess);
    // OLS of r on b (the intercept differs from alpha_daily by rf (1 − β), the residuals do not).
    let intercept = rr - beta * br;
    let sse: f64 = r.iter().zip(b).map(|(x, y)| (x - intercept - beta * y).powi(2)).sum();
    let s = if n > 2 { (sse / (n - 2) as f64).sqrt() } else { f64::NAN };
    let beta_se = s / sxx.sqrt();
    let alpha_se = s * (1.0 / n as f64 + br * br / sxx).sqrt();
    let active: Vec<f64> = r.iter().zip(b).map(|(x, y)| x - y).collect();
    let tracking_error = metrics::std(&active) * metrics::YEAR.sqrt();
    Relative {
        alpha: (1.0 + alpha_daily).powf(metrics::YEAR) - 1.0,
        alpha_daily,
        alpha_se,
        alpha_t: alpha_daily / alpha_se,
        beta,
        beta_se,
        correlation: metrics::pearson(r, b),
        tracking_error,
        information_ratio: metrics::mean(&active) * metrics::YEAR / tracking_error,
        up_capture: capture(r, b, true),
        down_capture: capture(r, b, false),
    }
}

/// The t-statistic of the mean of `x` with Newey–West standard errors over `lags` lags (Bartlett weights).
pub fn newey_west_t(x: &[f64], lags: usize) -> f64 {
    let n = x.len();
    if n < 2 {
        return f64::NAN;
    }
    let m = metrics::mean(x);
    let gamma = |l: usize| (l..n).map(|t| (x[t] - m) * (x[t - l] - m)).sum::<f64>() / n as f64;
    let mut var = gamma(0);
    for l in 1..=lags.min(n - 1) {
        var += 2.0 * (1.0 - l as f64 / (lags + 1) as f64) * gamma(l);
    }
    if var > 0.0 { m / (var / n as f64).sqrt() } else { f64::NAN }
}

/// Minimum track record length in periods at confidence 95 % against a Sharpe ratio of 0 (none when the
/// per-period Sharpe ratio is not positive).
pub fn min_track_record(r: &[f64], rf: f64) -> Option<f64> {
    let sr = overfit::period_sharpe(r, rf);
    let (g3, g4) = overfit::skew_kurtosis(r);
    if !(sr.is_finite() && sr > 0.0 && g3.is_finite()) {
        return None;
    }
    let z = overfit::normal_quantile(0.95);
    Some(1.0 + (1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr * sr) * (z / sr).powi(2))
}

/// Every statistic of [`RiskStats`] for daily returns `r` on `dates` against the benchmark's `b` (and the
/// index's), daily risk-free `rf`, the daily Rank ICs, and the label horizon.
#[allow(clippy::too_many_arguments)]
pub fn risk_stats(
    dates: &[NaiveDate],
    r: &[f64],
    b: &[f64],
    index: Option<&[f64]>,
    rf: f64,
    beats_benchmark: bool,
    rank_ic: &[f64],
    horizon: usize,
) -> RiskStats {
    let mut months: Vec<((i32, u32), f64)> = Vec::new();
    for (d, x) in dates.iter().zip(r) {
        match months.last_mut() {
            Some((k, g)) if *k == (d.year(), d.month()) => *g *= 1.0 + x,
            _ => months.push(((d.year(), d.month()), 1.0 + x)),
        }
    }
    let monthly: Vec<f64> = months.iter().map(|(_, g)| g - 1.0).collect();
    let sorted = sorted(r);
    let tail = if sorted.is_empty() { 0 } else { ((sorted.len() - 1) as f64 * 0.05) as usize + 1 };
    let gains: f64 = r.iter().filter(|x| **x >= 0.0).sum();
    let losses: f64 = r.iter().filter(|x| **x < 0.0).sum();
    let (up, down): (f64, f64) = r.iter().fold((0.0, 0.0), |(u, d), x| {
        let e = x - rf;
        if e > 0.0 { (u + e, d) } else { (u, d - e) }
    });
    let ics: Vec<f64> = rank_ic.iter().copied().filter(|v| v.is_finite()).collect();
    let lags = horizon.saturating_sub(1);
    let mtrl = min_track_record(r, rf);
    let extreme = |v: &[f64], max: bool| {
        v.iter().copied().filter(|x| !x.is_nan()).reduce(if max { f64::max } else { f64::min }).unwrap_or(f64::NAN)
    };
    RiskStats {
        benchmark: relative(r, b, rf),
        index: index.map(|i| relative(r, i, rf)),
        beats_benchmark,
        var_95: percentile_sorted(&sorted, 5.0),
        cvar_95: if tail == 0 { f64::NAN } else { metrics::mean(&sorted[..tail]) },
        tail_ratio: percentile_sorted(&sorted, 95.0).abs() / percentile_sorted(&sorted, 5.0).abs(),
        omega: if down > 0.0 { up / down } else { f64::NAN },
        profit_factor: if losses < 0.0 { gains / losses.abs() } else { f64::NAN },
        best_day: extreme(r, true),
        worst_day: extreme(r, false),
        best_month: extreme(&monthly, true),
        worst_month: extreme(&monthly, false),
        min_track_record_days: mtrl,
        min_track_record_years: mtrl.map(|d| d / metrics::YEAR),
        rank_ic_t: if ics.len() >= 2 {
            metrics::mean(&ics) / (metrics::std(&ics) / (ics.len() as f64).sqrt())
        } else {
            f64::NAN
        },
        rank_ic_t_newey_west: newey_west_t(&ics, lags),
        newey_west_lags: lags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_interpolates_like_numpy() {
        let x = [3.0, 1.0, 4.0, 1.0, 5.0];
        // numpy.percentile([3, 1, 4, 1, 5], [0, 5, 50, 95, 100]) = 1, 1, 3, 4.8, 5.
        for (p, want) in [(0.0, 1.0), (5.0, 1.0), (50.0, 3.0), (95.0, 4.8), (100.0, 5.0)] {
            assert!((percentile(&x, p) - want).abs() < 1e-12, "p{p}: {}", percentile(&x, p));
        }
    }

    #[test]
    fn a_strategy_that_is_twice_the_benchmark_plus_a_constant_has_that_beta_and_alpha() {
        let b: Vec<f64> = (0..300).map(|i| (f64::from(i * 37 % 101) - 50.0) / 5000.0).collect();
        let r: Vec<f64> = b.iter().map(|x| 2.0 * x + 0.0004).collect();
        let rel = relative(&r, &b, 0.0);
        assert!((rel.beta - 2.0).abs() < 1e-12 && (rel.alpha_daily - 0.0004).abs() < 1e-12, "{rel:?}");
        assert!((rel.correlation - 1.0).abs() < 1e-12);
        assert!(rel.beta_se < 1e-12, "an exact fit has no error: {}", rel.beta_se);
        // A noisy strategy: the standard errors are positive and beta is still near 2.
        let noisy: Vec<f64> = r.iter().enumerate().map(|(i, x)| x + ((i * 53 % 97) as f64 - 48.0) / 20000.0).collect();
        let rel = relative(&noisy, &b, 0.0);
        assert!(rel.beta_se > 0.0 && (rel.beta - 2.0).abs() < 5.0 * rel.beta_se, "{rel:?}");
    }

    #[test]
    fn newey_west_with_no_lags_is_the_population_t_and_grows_less_with_positive_autocorrelation() {
        let x: Vec<f64> = (0..200).map(|i| 0.02 + (f64::from(i * 31 % 17) - 8.0) / 100.0).collect();
        let n = x.len() as f64;
        let m = metrics::mean(&x);
        let pop = (x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n).sqrt();
        assert!((newey_west_t(&x, 0) - m / (pop / n.sqrt())).abs() < 1e-9);
        // Overlapping sums (positively autocorrelated): the HAC t is smaller than the plain one.
        let overlapping: Vec<f64> = x.windows(5).map(|w| w.iter().sum::<f64>()).collect();
        let plain = metrics::mean(&overlapping) / (metrics::std(&overlapping) / (overlapping.len() as f64).sqrt());
        assert!(newey_west_t(&overlapping, 4) < plain, "{} vs {plain}", newey_west_t(&overlapping, 4));
    }

    #[test]
    fn min_track_record_is_longer_for_a_weaker_sharpe_and_none_without_one() {
        let base: Vec<f64> = (0..500).map(|i| (f64::from(i * 37 % 101) - 50.0) / 3000.0).collect();
        let strong: Vec<f64> = base.iter().map(|x| x + 0.004).collect();
        let weak: Vec<f64> = base.iter().map(|x| x + 0.001).collect();
        let (s, w) = (min_track_record(&strong, 0.0).unwrap(), min_track_record(&weak, 0.0).unwrap());
        assert!(w > s && s > 1.0, "{w} vs {s}");
        let losing: Vec<f64> = base.iter().map(|x| x - 0.002).collect();
        assert!(min_track_record(&losing, 0.0).is_none());
    }
}
