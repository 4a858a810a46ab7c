//! Overfitting-aware statistics: how much of a backtest's Sharpe ratio and Rank IC survives resampling, the number
//! of configurations tried, and the selection among them.
//!
//! - **Bootstrap confidence intervals** of the annualised Sharpe ratio (daily portfolio returns) and of the mean
//!   Rank IC (daily Rank IC series) by the stationary block bootstrap (Politis & Romano 1994): resampled series
//!   are built from blocks that start at a uniform random index and have geometric lengths with mean `b`
//!   (default `round(n^(1/3))`, at least 1), wrapping around the end; percentile interval (linear interpolation
//!   between order statistics); seeded, so the same seed gives the same interval.
//! - **Probabilistic Sharpe Ratio** (Bailey & López de Prado 2012): with the per-period (daily, not annualised)
//!   Sharpe ratio `SR = (mean(r) - rf) / sd(r)` (sd with ddof 1), skewness `γ3` and (non-excess) kurtosis `γ4`
//!   of the daily returns (biased moments), and `n` returns:
//!   `PSR(SR*) = Φ((SR - SR*) · √(n - 1) / √(1 - γ3·SR + (γ4 - 1)/4 · SR²))`, reported with `SR* = 0`.
//! - **Deflated Sharpe Ratio** (Bailey & López de Prado 2014): `DSR = PSR(SR0)` where
//!   `SR0 = √V · ((1 - γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N·e)))`, `N` the number of trials (models × configurations
//!   evaluated in the run), `V` the sample variance (ddof 1) of their per-period Sharpe ratios and `γ` the
//!   Euler–Mascheroni constant. With one trial `SR0 = 0` and DSR equals PSR.
//! - **Probability of Backtest Overfitting** by combinatorially symmetric cross-validation (Bailey, Borwein, López
//!   de Prado & Zhu 2015): the models' aligned daily returns are cut into `S` equal contiguous blocks (`S` even,
//!   the number of folds rounded down to even, at most 16); for every choice of `S/2` blocks as in-sample, the
//!   model with the best in-sample Sharpe ratio is located in the out-of-sample ranking (`ω` = its rank among the
//!   `N` models, 1 = worst, over `N + 1`), `λ = ln(ω / (1 - ω))`; PBO is the share of the `C(S, S/2)` choices
//!   with `λ ≤ 0` (the in-sample winner does no better than the median out of sample).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::metrics;

/// The Euler–Mascheroni constant.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// Standard normal CDF.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// Acklam's coefficients (central region numerator).
const ACKLAM_A: [f64; 6] = [
    -3.969_683_028_665_376e1,
    2.209_460_984_245_205e2,
    -2.759_285_104_469_687e2,
    1.383_577_518_672_69e2,
    -3.066_479_806_614_716e1,
    2.506_628_277_459_239,
];
/// Central region denominator.
const ACKLAM_B: [f64; 5] = [
    -5.447_609_879_822_406e1,
    1.615_858_368_580_409e2,
    -1.556_989_798_598_866e2,
    6.680_131_188_771_972e1,
    -1.328_068_155_288_572e1,
];
/// Tail numerator.
const ACKLAM_C: [f64; 6] = [
    -7.784_894_002_430_293e-3,
    -3.223_964_580_411_365e-1,
    -2.400_758_277_161_838,
    -2.549_732_539_343_734,
    4.374_664_141_464_968,
    2.938_163_982_698_783,
];
/// Tail denominator.
const ACKLAM_D: [f64; 4] =
    [7.784_695_709_041_462e-3, 3.224_671_290_700_398e-1, 2.445_134_137_142_996, 3.754_408_661_907_416];
/// Standard normal quantile (Acklam's rational approximation refined by one Halley step: |error| < 1e-14).
pub fn normal_quantile(p: f64) -> f64 {
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let tail = |q: f64| {
        (((((ACKLAM_C[0] * q + ACKLAM_C[1]) * q + ACKLAM_C[2]) * q + ACKLAM_C[3]) * q + ACKLAM_C[4]) * q + ACKLAM_C[5])
            / ((((ACKLAM_D[0] * q + ACKLAM_D[1]) * q + ACKLAM_D[2]) * q + ACKLAM_D[3]) * q + 1.0)
    };
    let x = if p < 0.024_25 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.024_25 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((ACKLAM_A[0] * r + ACKLAM_A[1]) * r + ACKLAM_A[2]) * r + ACKLAM_A[3]) * r + ACKLAM_A[4]) * r + ACKLAM_A[5])
            * q
            / (((((ACKLAM_B[0] * r + ACKLAM_B[1]) * r + ACKLAM_B[2]) * r + ACKLAM_B[3]) * r + ACKLAM_B[4]) * r + 1.0)
    };
    // Halley refinement.
    let e = normal_cdf(x) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

/// Per-period Sharpe ratio `(mean(r) - rf) / sd(r)` (sd with ddof 1; NaN below two returns or with zero sd).
pub fn period_sharpe(r: &[f64], rf_period: f64) -> f64 {
    let s = metrics::std(r);
    if s > 0.0 { (metrics::mean(r) - rf_period) / s } else { f64::NAN }
}

/// Biased skewness and non-excess kurtosis of `r` (NaN with zero variance).
pub fn skew_kurtosis(r: &[f64]) -> (f64, f64) {
    let n = r.len() as f64;
    let m = metrics::mean(r);
    let m2 = r.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n;
    if m2.is_nan() || m2 <= 0.0 {
        return (f64::NAN, f64::NAN);
    }
    let m3 = r.iter().map(|x| (x - m).powi(3)).sum::<f64>() / n;
    let m4 = r.iter().map(|x| (x - m).powi(4)).sum::<f64>() / n;
    (m3 / m2.powf(1.5), m4 / (m2 * m2))
}

/// Probabilistic Sharpe Ratio of `r` against the per-period benchmark Sharpe ratio `sr_star`.
pub fn probabilistic_sharpe(r: &[f64], rf_period: f64, sr_star: f64) -> f64 {
    let n = r.len();
    let sr = period_sharpe(r, rf_period);
    let (g3, g4) = skew_kurtosis(r);
    let denom = 1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr * sr;
    if n < 2 || !sr.is_finite() || denom.is_nan() || denom <= 0.0 {
        return f64::NAN;
    }
    normal_cdf((sr - sr_star) * ((n - 1) as f64).sqrt() / denom.sqrt())
}

/// The expected maximum per-period Sharpe ratio of `trials` unskilled trials whose Sharpe ratios have variance
/// `variance` (0 with fewer than two trials or no variance).
pub fn expected_max_sharpe(variance: f64, trials: usize) -> f64 {
    if trials < 2 || variance.is_nan() || variance <= 0.0 {
        return 0.0;
    }
    let n = trials as f64;
    variance.sqrt()
        * ((1.0 - EULER_GAMMA) * normal_quantile(1.0 - 1.0 / n)
            + EULER_GAMMA * normal_quantile(1.0 - 1.0 / (n * std::f64::consts::E)))
}

/// Stationary block bootstrap settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bootstrap {
    /// Resampled series.
    pub resamples: usize,
    /// Two-sided confidence level (0.95).
    pub level: f64,
    /// Seed of the resampling.
    pub seed: u64,
}

impl Bootstrap {
    /// 1,000 resamples, 95 % interval.
    pub fn new(seed: u64) -> Self {
        Self { resamples: 1000, level: 0.95, seed }
    }
}

/// The mean block length used for a series of `n` values: `round(n^(1/3))`, at least 1.
pub fn mean_block(n: usize) -> f64 {
    (n as f64).cbrt().round().max(1.0)
}

/// Percentile interval of `stat` over stationary-bootstrap resamples of `x` (None below 10 values or when no
/// resample gives a finite statistic).
pub fn bootstrap_interval(x: &[f64], stat: impl Fn(&[f64]) -> f64, cfg: &Bootstrap) -> Option<[f64; 2]> {
    let n = x.len();
    if n < 10 {
        return None;
    }
    let p_new = 1.0 / mean_block(n);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut sample = vec![0.0; n];
    let mut stats: Vec<f64> = Vec::with_capacity(cfg.resamples);
    for _ in 0..cfg.resamples {
        let mut i = rng.random_range(0..n);
        for v in &mut sample {
            *v = x[i];
            i = if rng.random::<f64>() < p_new { rng.random_range(0..n) } else { (i + 1) % n };
        }
        let s = stat(&sample);
        if s.is_finite() {
            stats.push(s);
        }
    }
    if stats.is_empty() {
        return None;
    }
    stats.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let h = p * (stats.len() - 1) as f64;
        let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
        stats[lo] + (h - lo as f64) * (stats[hi] - stats[lo])
    };
    let a = (1.0 - cfg.level) / 2.0;
    Some([q(a), q(1.0 - a)])
}

/// Probability of Backtest Overfitting by CSCV.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pbo {
    /// Share of the in-sample/out-of-sample splits whose in-sample winner ranks at or below the median out of
    /// sample.
    pub pbo: f64,
    /// Blocks `S` the aligned returns were cut into.
    pub blocks: usize,
    /// Splits evaluated, `C(S, S/2)`.
    pub splits: usize,
    /// Models compared.
    pub models: usize,
    /// Aligned return dates used.
    pub dates: usize,
    /// Median logit `λ` over the splits.
    pub median_logit: f64,
}

/// PBO over the aligned per-period returns of `returns.len()` models (each the same length), cut into `blocks`
/// equal contiguous blocks (even, ≥ 2). None with fewer than two models, an odd or too large block count, or
/// fewer dates than two per block.
pub fn pbo_cscv(returns: &[Vec<f64>], blocks: usize) -> Option<Pbo> {
    let n_models = returns.len();
    let t = returns.first()?.len();
    if n_models < 2 || blocks < 2 || !blocks.is_multiple_of(2) || blocks > 24 || t < 2 * blocks {
        return None;
    }
    if returns.iter().any(|r| r.len() != t) {
        return None;
    }
    // Per model and block: count, sum, sum of squares (Sharpe of a union of blocks from these).
    let bounds: Vec<(usize, usize)> = (0..blocks).map(|b| (b * t / blocks, (b + 1) * t / blocks)).collect();
    let sums: Vec<Vec<(f64, f64, f64)>> = returns
        .iter()
        .map(|r| {
            bounds
                .iter()
                .map(|&(a, b)| {
                    let s = &r[a..b];
                    (s.len() as f64, s.iter().sum(), s.iter().map(|x| x * x).sum())
                })
                .collect()
        })
        .collect();
    let sharpe = |m: usize, mask: u32, inside: bool| {
        let (mut n, mut s, mut ss) = (0.0, 0.0, 0.0);
        for (b, &(bn, bs, bss)) in sums[m].iter().enumerate() {
            if ((mask >> b) & 1 == 1) == inside {
                n += bn;
                s += bs;
                ss += bss;
            }
        }
        let mean = s / n;
        let var = (ss - n * mean * mean) / (n - 1.0);
        if var > 0.0 { mean / var.sqrt() } else { f64::NAN }
    };
    let mut logits = Vec::new();
    for mask in 0u32..(1 << blocks) {
        if mask.count_ones() as usize != blocks / 2 {
            continue;
        }
        let is: Vec<f64> = (0..n_models).map(|m| sharpe(m, mask, true)).collect();
        let Some(best) =
            (0..n_models).filter(|&m| is[m].is_finite()).max_by(|&a, &b| is[a].total_cmp(&is[b]).then(b.cmp(&a)))
        else {
            continue;
        };
        let oos: Vec<f64> = (0..n_models).map(|m| sharpe(m, mask, false)).collect();
        if !oos[best].is_finite() {
            continue;
        }
        // Rank of the winner out of sample (1 = worst; ties averaged).
        let below = oos.iter().filter(|v| v.is_finite() && **v < oos[best]).count() as f64;
        let equal = oos.iter().filter(|v| v.total_cmp(&oos[best]).is_eq()).count() as f64;
        let rank = below + f64::midpoint(equal, 1.0);
        let omega = rank / (n_models as f64 + 1.0);
        logits.push((omega / (1.0 - omega)).ln());
    }
    if logits.is_empty() {
        return None;
    }
    let splits = logits.len();
    let pbo = logits.iter().filter(|l| **l <= 0.0).count() as f64 / splits as f64;
    logits.sort_by(f64::total_cmp);
    let median_logit =
        if splits % 2 == 1 { logits[splits / 2] } else { f64::midpoint(logits[splits / 2 - 1], logits[splits / 2]) };
    Some(Pbo { pbo, blocks, splits, models: n_models, dates: t, median_logit })
}

/// The per-model statistics in `report.json` → `models.<name>`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelOverfit {
    /// 95 % stationary-bootstrap interval of the annualised Sharpe ratio.
    pub sharpe_ci: Option<[f64; 2]>,
    /// 95 % stationary-bootstrap interval of the mean daily Rank IC.
    pub rank_ic_ci: Option<[f64; 2]>,
    /// Probabilistic Sharpe Ratio against a zero Sharpe ratio.
    pub psr: f64,
    /// Deflated Sharpe Ratio for the run's number of trials.
    pub dsr: f64,
    /// Trials the DSR deflates for (models × configurations evaluated in the run).
    pub trials: usize,
}

/// The run-level statistics in `report.json` → `overfitting`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunOverfit {
    /// Trials: models × configurations evaluated.
    pub trials: usize,
    /// Sample variance of the trials' daily Sharpe ratios.
    pub sharpe_variance: f64,
    /// Expected maximum daily Sharpe ratio of as many unskilled trials (the DSR's benchmark).
    pub expected_max_sharpe: f64,
    /// Bootstrap settings (mean block length per series: `round(n^(1/3))`).
    pub bootstrap: Bootstrap,
    /// PBO by CSCV (null with fewer than 2 models or 8 folds; `pbo_note` says why).
    pub pbo: Option<Pbo>,
    /// Why PBO is null, when it is.
    pub pbo_note: Option<String>,
}

/// Everything above for a run: per model (daily portfolio returns, daily Rank IC), in the order given, and the run.
pub fn evaluate(
    returns: &[(Vec<chrono::NaiveDate>, Vec<f64>)],
    rank_ics: &[Vec<f64>],
    rf_annual: f64,
    folds: usize,
    boot: Bootstrap,
) -> (Vec<ModelOverfit>, RunOverfit) {
    let rf = metrics::daily_rf(rf_annual);
    let trials = returns.len();
    let srs: Vec<f64> = returns.iter().map(|(_, r)| period_sharpe(r, rf)).filter(|v| v.is_finite()).collect();
    let variance = metrics::std(&srs).powi(2);
    let variance = if variance.is_finite() { variance } else { 0.0 };
    let sr0 = expected_max_sharpe(variance, trials);
    let per_model = returns
        .iter()
        .zip(rank_ics)
        .enumerate()
        .map(|(i, ((_, r), ic))| {
            // Each series gets its own stream of the seed, so adding a model does not move the others' intervals.
            let b = Bootstrap { seed: boot.seed.wrapping_add(2 * i as u64), ..boot };
            let c = Bootstrap { seed: boot.seed.wrapping_add(2 * i as u64 + 1), ..boot };
            ModelOverfit {
                sharpe_ci: bootstrap_interval(r, |x| metrics::sharpe(x, rf_annual), &b),
                rank_ic_ci: bootstrap_interval(ic, metrics::mean, &c),
                psr: probabilistic_sharpe(r, rf, 0.0),
                dsr: probabilistic_sharpe(r, rf, sr0),
                trials,
            }
        })
        .collect();
    let blocks = (folds.min(16) / 2) * 2;
    let (pbo, pbo_note) = if trials < 2 {
        (None, Some("PBO needs at least 2 models".to_owned()))
    } else if folds < 8 {
        (None, Some(format!("PBO needs at least 8 folds, the run has {folds}")))
    } else {
        let aligned = align(returns);
        match pbo_cscv(&aligned, blocks) {
            Some(p) => (Some(p), None),
            None => (None, Some("too few common dates for the blocks".to_owned())),
        }
    };
    let run =
        RunOverfit { trials, sharpe_variance: variance, expected_max_sharpe: sr0, bootstrap: boot, pbo, pbo_note };
    (per_model, run)
}

/// The returns of every model on the dates all of them have.
fn align(returns: &[(Vec<chrono::NaiveDate>, Vec<f64>)]) -> Vec<Vec<f64>> {
    let Some((first, _)) = returns.first() else { return Vec::new() };
    let common: Vec<chrono::NaiveDate> =
        first.iter().copied().filter(|d| returns.iter().all(|(ds, _)| ds.binary_search(d).is_ok())).collect();
    returns.iter().map(|(ds, r)| common.iter().map(|d| r[ds.binary_search(d).unwrap_or_default()]).collect()).collect()
}
