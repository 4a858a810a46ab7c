//! Covariance of returns known at a signal date: Ledoit–Wolf shrinkage of the sample covariance towards a scaled
//! identity (Ledoit & Wolf 2004), exactly as scikit-learn's `LedoitWolf().fit(X)` computes it (columns centred,
//! the sample covariance with 1/n, the shrinkage intensity `min(β, δ) / δ`), and the trailing daily returns it is
//! estimated from.

use crate::portfolio::Market;

/// A shrunk covariance matrix (row-major, p × p) and the shrinkage intensity used.
#[derive(Debug, Clone, PartialEq)]
pub struct Shrunk {
    /// Number of assets.
    pub p: usize,
    /// `(1 − s) · S + s · μ · I`, S the sample covariance (1/n), μ = trace(S) / p.
    pub cov: Vec<f64>,
    /// The intensity s in [0, 1].
    pub shrinkage: f64,
}

impl Shrunk {
    /// Entry (i, j).
    pub fn at(&self, i: usize, j: usize) -> f64 {
        self.cov[i * self.p + j]
    }

    /// Variance of a portfolio: wᵀ Σ w.
    pub fn variance(&self, w: &[f64]) -> f64 {
        (0..self.p).map(|i| (0..self.p).map(|j| w[i] * self.at(i, j) * w[j]).sum::<f64>()).sum()
    }
}

/// Ledoit–Wolf covariance of the rows of `x` (n observations × p assets); `None` with fewer than two rows.
pub fn ledoit_wolf(x: &[Vec<f64>]) -> Option<Shrunk> {
    let n = x.len();
    let p = x.first()?.len();
    if n < 2 || p == 0 {
        return None;
    }
    let nf = n as f64;
    let means: Vec<f64> = (0..p).map(|j| x.iter().map(|r| r[j]).sum::<f64>() / nf).collect();
    let c: Vec<Vec<f64>> = x.iter().map(|r| r.iter().zip(&means).map(|(v, m)| v - m).collect()).collect();
    // S = XᵀX / n; the sums sklearn's ledoit_wolf_shrinkage forms.
    let mut s = vec![0.0; p * p];
    let mut x2tx2 = 0.0;
    for i in 0..p {
        for j in 0..p {
            let (mut xy, mut x2y2) = (0.0, 0.0);
            for r in &c {
                xy += r[i] * r[j];
                x2y2 += r[i] * r[i] * r[j] * r[j];
            }
            s[i * p + j] = xy / nf;
            x2tx2 += x2y2;
        }
    }
    let trace: f64 = (0..p).map(|i| s[i * p + i]).sum();
    let mu = trace / p as f64;
    // delta_ = Σ (XᵀX)² / n² = Σ S²; beta = (Σ (X²)ᵀX² / n − Σ S²) / (p n); delta = (Σ S² − 2 μ trace + p μ²) / p.
    let sum_s2: f64 = s.iter().map(|v| v * v).sum();
    let beta = (x2tx2 / nf - sum_s2) / (p as f64 * nf);
    let delta = (sum_s2 - 2.0 * mu * trace + p as f64 * mu * mu) / p as f64;
    let beta = beta.min(delta);
    // One asset (sklearn returns 0 for it) or no spread to shrink: the sample covariance itself.
    let shrinkage = if p == 1 || beta == 0.0 || delta <= 0.0 { 0.0 } else { beta / delta };
    let cov = (0..p * p)
        .map(|k| {
            let target = if k / p == k % p { mu } else { 0.0 };
            (1.0 - shrinkage) * s[k] + shrinkage * target
        })
        .collect();
    Some(Shrunk { p, cov, shrinkage })
}

/// The close-to-close returns of `symbols` over the `days` trading dates up to and including date index `d`,
/// one row per date on which every one of them has both closes (a date where one is missing is left out).
pub fn trailing_returns(market: &Market, symbols: &[usize], d: usize, days: usize) -> Vec<Vec<f64>> {
    let from = (d + 1).saturating_sub(days).max(1);
    (from..=d)
        .filter_map(|t| {
            symbols
                .iter()
                .map(|&s| {
                    let (a, b) = (market.close[s][t - 1], market.close[s][t]);
                    (a.is_finite() && b.is_finite() && a > 0.0).then(|| b / a - 1.0)
                })
                .collect::<Option<Vec<f64>>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unreadable_literal)] // sklearn's output, digit for digit
    fn ledoit_wolf_equals_scikit_learn() {
        // sklearn 1.x: LedoitWolf().fit(X) for x[i][j] = sin(1 + 0.7 i + 1.3 j) (1 + j) / 100, 12 × 4
        // (np.array([[np.sin(1 + i*0.7 + j*1.3) * (1 + j) / 100 for j in range(4)] for i in range(12)])).
        let x: Vec<Vec<f64>> = (0..12)
            .map(|i| {
                (0..4)
                    .map(|j| (1.0 + 0.7 * f64::from(i) + 1.3 * f64::from(j)).sin() * (1.0 + f64::from(j)) / 100.0)
                    .collect()
            })
            .collect();
        let lw = ledoit_wolf(&x).unwrap();
        let shrinkage = 0.16214612064489586;
        let cov = [
            0.00010071272120423568,
            2.1382576613050225e-05,
            -0.00011082398255094639,
            -0.00012181924793514005,
            2.1382576613050225e-05,
            0.00020748600761741516,
            5.5772873601424796e-05,
            -0.00025908438063450056,
            -0.00011082398255094639,
            5.5772873601424796e-05,
            0.0004352810622153511,
            0.0001575434388014533,
            -0.00012181924793514005,
            -0.00025908438063450056,
            0.0001575434388014533,
            0.0006886008349909631,
        ];
        assert!((lw.shrinkage - shrinkage).abs() < 1e-9, "{}", lw.shrinkage);
        for (got, want) in lw.cov.iter().zip(cov) {
            assert!((got - want).abs() < 1e-9 * want.abs().max(1e-6), "{got} vs {want}");
        }
        // A portfolio's variance is wᵀΣw.
        let w = [0.25; 4];
        let direct: f64 = cov.iter().sum::<f64>() / 16.0;
        assert!((lw.variance(&w) - direct).abs() < 1e-15);
    }
}
