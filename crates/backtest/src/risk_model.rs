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

/// Mean-variance weights: argmax μᵀw − (λ/2) wᵀΣw subject to Σw = `total`, 0 ≤ w ≤ `upper` and, for each of
/// `groups` (indices, cap), Σ_{i ∈ group} w_i ≤ cap (PyPortfolioOpt's sector constraints), solved by Clarabel
/// (½ wᵀ(λΣ)w − μᵀw, the equality as a zero cone, the bounds and caps as nonnegative cones). The solution is
/// checked against every constraint (to 1e-7); a violation or a solver failure is an error naming it.
///
/// # Errors
/// The solver's status when it did not solve, or the constraint the solution breaks.
pub fn mean_variance(
    mu: &[f64],
    cov: &Shrunk,
    risk_aversion: f64,
    total: f64,
    upper: f64,
    groups: &[(Vec<usize>, f64)],
) -> Result<Vec<f64>, String> {
    use clarabel::algebra::CscMatrix;
    use clarabel::solver::{DefaultSettingsBuilder, DefaultSolver, IPSolver, SolverStatus, SupportedConeT};
    let p = mu.len();
    if p == 0 {
        return Ok(Vec::new());
    }
    if (p as f64) * upper < total - 1e-12 {
        return Err(format!("{p} names cannot hold {total} with at most {upper} each"));
    }
    // P = λΣ, upper triangle, column by column.
    let (mut colptr, mut rowval, mut nzval) = (vec![0], Vec::new(), Vec::new());
    for j in 0..p {
        for i in 0..=j {
            rowval.push(i);
            nzval.push(risk_aversion * cov.at(i, j));
        }
        colptr.push(rowval.len());
    }
    let pm = CscMatrix::new(p, p, colptr, rowval, nzval);
    let q: Vec<f64> = mu.iter().map(|m| -m).collect();
    // Groups that cover every name hold at most Σ min(cap, size · upper).
    let most: f64 = groups.iter().map(|(names, cap)| cap.min(names.len() as f64 * upper)).sum();
    if groups.iter().map(|g| g.0.len()).sum::<usize>() == p && most < total - 1e-12 {
        return Err(format!("{} groups under their caps cannot hold {total} (at most {most})", groups.len()));
    }
    // Rows: 1ᵀw = total; −w ≤ 0; w ≤ upper; Σ_{i ∈ g} w_i ≤ cap_g.
    let (mut colptr, mut rowval, mut nzval) = (vec![0], Vec::new(), Vec::new());
    for j in 0..p {
        rowval.extend([0, 1 + j, 1 + p + j]);
        nzval.extend([1.0, -1.0, 1.0]);
        for (g, _) in groups.iter().enumerate().filter(|(_, g)| g.0.contains(&j)) {
            rowval.push(1 + 2 * p + g);
            nzval.push(1.0);
        }
        colptr.push(rowval.len());
    }
    let a = CscMatrix::new(1 + 2 * p + groups.len(), p, colptr, rowval, nzval);
    let mut b = vec![total];
    b.extend(std::iter::repeat_n(0.0, p));
    b.extend(std::iter::repeat_n(upper, p));
    b.extend(groups.iter().map(|g| g.1));
    let cones = [SupportedConeT::ZeroConeT(1), SupportedConeT::NonnegativeConeT(2 * p + groups.len())];
    let settings = DefaultSettingsBuilder::default()
        .verbose(false)
        .tol_gap_abs(1e-10)
        .tol_gap_rel(1e-10)
        .tol_feas(1e-10)
        .build()
        .map_err(|e| format!("solver settings: {e}"))?;
    let mut solver =
        DefaultSolver::new(&pm, &q, &a, &b, &cones, settings).map_err(|e| format!("the QP solver refused: {e:?}"))?;
    solver.solve();
    let status = solver.solution.status;
    if !matches!(status, SolverStatus::Solved | SolverStatus::AlmostSolved) {
        return Err(format!("the QP solver stopped: {status:?}"));
    }
    let w = solver.solution.x.clone();
    let sum: f64 = w.iter().sum();
    if (sum - total).abs() > 1e-7 {
        return Err(format!("the weights sum to {sum}, not {total}"));
    }
    if let Some(v) = w.iter().find(|v| **v < -1e-7 || **v > upper + 1e-7) {
        return Err(format!("a weight of {v} is outside [0, {upper}]"));
    }
    for (names, cap) in groups {
        let sum: f64 = names.iter().map(|&i| w[i]).sum();
        if sum > cap + 1e-7 {
            return Err(format!("a group of {} names holds {sum}, above its cap {cap}", names.len()));
        }
    }
    Ok(w)
}

/// Equal-risk-contribution weights summing to `total`: the minimiser y of ½ yᵀΣy − (1/p) Σ ln y_i (Spinu 2013),
/// rescaled; at it every name's risk contribution y_i (Σy)_i equals 1/p. Newton's method with a step that keeps
/// y positive, to a gradient norm of 1e-12.
///
/// # Errors
/// When it does not converge in 100 steps or Σ is not positive definite on the path.
pub fn risk_parity(cov: &Shrunk, total: f64) -> Result<Vec<f64>, String> {
    let p = cov.p;
    let b = 1.0 / p as f64;
    // Start from inverse volatility.
    let mut y: Vec<f64> = (0..p).map(|i| 1.0 / cov.at(i, i).sqrt()).collect();
    let scale = (1.0 / cov.variance(&y)).sqrt();
    for v in &mut y {
        *v *= scale;
    }
    for _ in 0..100 {
        let sy: Vec<f64> = (0..p).map(|i| (0..p).map(|j| cov.at(i, j) * y[j]).sum()).collect();
        let g: Vec<f64> = (0..p).map(|i| sy[i] - b / y[i]).collect();
        if g.iter().map(|v| v * v).sum::<f64>().sqrt() < 1e-12 {
            let sum: f64 = y.iter().sum();
            return Ok(y.iter().map(|v| v / sum * total).collect());
        }
        // Newton step: (Σ + diag(b / y²)) Δ = −g, by Cholesky.
        let mut h: Vec<f64> = cov.cov.clone();
        for i in 0..p {
            h[i * p + i] += b / (y[i] * y[i]);
        }
        stockcast_models::linalg::cholesky(&mut h, p)
            .ok_or_else(|| "risk parity: the covariance is not positive definite".to_owned())?;
        let mut delta: Vec<f64> = g.iter().map(|v| -v).collect();
        stockcast_models::linalg::cholesky_solve(&h, p, &mut delta);
        let mut t = 1.0;
        while (0..p).any(|i| y[i] + t * delta[i] <= 0.0) {
            t *= 0.5;
        }
        for i in 0..p {
            y[i] += t * delta[i];
        }
    }
    Err("risk parity: Newton's method did not converge in 100 steps".to_owned())
}

/// The close-to-close returns of `symbols` over the `days` trading dates up to and including date index `d`,
/// one row per date on which every one of them has both closes (a date where one is missing is left out).
pub fn trailing_returns(market: &Market, symbols: &[usize], d: usize, days: usize) -> Vec<Vec<f64>> {
    let from = (d + 1).saturating_sub(days).max(1);
    (from..=d)
        .filter_map(|t| symbols.iter().map(|&s| market.close_return(s, t - 1, t)).collect::<Option<Vec<f64>>>())
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

    #[test]
    #[allow(clippy::unreadable_literal)] // PyPortfolioOpt's output, digit for digit
    fn mean_variance_and_risk_parity_equal_pypfopt_and_skfolio() {
        // PyPortfolioOpt 1.5: EfficientFrontier(mu, S, weight_bounds=(0, ub), solver="CLARABEL")
        //   .max_quadratic_utility(risk_aversion=lam), S = LedoitWolf().fit(X).covariance_ for
        // X[i][j] = sin(1 + 0.7 i + 1.3 j) (1 + j) / 100 + 0.001 j (12 × 4), mu = [0.012, 0.008, 0.015, 0.004].
        let x: Vec<Vec<f64>> = (0..12)
            .map(|i| {
                (0..4)
                    .map(|j| {
                        (1.0 + 0.7 * f64::from(i) + 1.3 * f64::from(j)).sin() * (1.0 + f64::from(j)) / 100.0
                            + 0.001 * f64::from(j)
                    })
                    .collect()
            })
            .collect();
        let s = ledoit_wolf(&x).unwrap();
        let mu = [0.012, 0.008, 0.015, 0.004];
        for (lam, ub, want) in [
            (50.0, 1.0, [0.6416023623856747, 1.800071729e-07, 0.3583970879673377, 3.69639941e-07]),
            (50.0, 0.4, [0.3999999972755368, 0.1788670796277784, 0.3999999847332568, 0.0211329383634281]),
            (200.0, 0.4, [0.3999999666107716, 0.274113520317651, 0.1698325363862419, 0.1560539766854732]),
        ] {
            let w = mean_variance(&mu, &s, lam, 1.0, ub, &[]).unwrap();
            for (got, want) in w.iter().zip(want) {
                assert!((got - want).abs() < 1e-6, "λ {lam}, ub {ub}: {w:?}");
            }
        }
        // Sector caps: the same with .add_sector_constraints({0: A, 1: B, 2: A, 3: B}, lower 0, upper cap for both).
        for (lam, ub, cap, want) in [
            (50.0, 1.0, 0.6, [0.4045140283742257, 0.2977123978589699, 0.1954859215814147, 0.1022876521853898]),
            (50.0, 0.4, 0.55, [0.3756222993094891, 0.3326237777161551, 0.1743776953765314, 0.1173762275978242]),
            (200.0, 1.0, 0.5, [0.424181195080703, 0.3116941566265292, 0.075818804840051, 0.1883058434526936]),
        ] {
            let groups = [(vec![0, 2], cap), (vec![1, 3], cap)];
            let w = mean_variance(&mu, &s, lam, 1.0, ub, &groups).unwrap();
            for (got, want) in w.iter().zip(want) {
                assert!((got - want).abs() < 1e-6, "λ {lam}, ub {ub}, sector cap {cap}: {w:?}");
            }
        }
        // Sector caps that cannot hold the book are refused before solving.
        let groups = [(vec![0, 2], 0.4), (vec![1, 3], 0.4)];
        assert!(mean_variance(&mu, &s, 50.0, 1.0, 1.0, &groups).unwrap_err().contains("cannot hold"));
        // Equal risk contributions: skfolio 0.x RiskBudgeting(risk_measure=VARIANCE, prior_estimator=
        // EmpiricalPrior(covariance_estimator=LedoitWolf()), scale_objective=1e3, scale_constraints=1e3, Clarabel at
        // 1e-12 tolerances) on the same X: its risk contributions are equal to 4e-11.
        let want = [0.42978771050411807, 0.2635595762495622, 0.11596196519064106, 0.19069074805567865];
        let w = risk_parity(&s, 1.0).unwrap();
        for (got, want) in w.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{w:?}");
        }
        let contributions: Vec<f64> = (0..4).map(|i| w[i] * (0..4).map(|j| s.at(i, j) * w[j]).sum::<f64>()).collect();
        let total: f64 = contributions.iter().sum();
        assert!(contributions.iter().all(|c| (c / total - 0.25).abs() < 1e-10), "{contributions:?}");
        // A cap the names cannot meet is refused before solving.
        assert!(mean_variance(&mu, &s, 50.0, 1.0, 0.2, &[]).unwrap_err().contains("cannot hold"));
    }
}
