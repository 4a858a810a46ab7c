//! Overfitting statistics against values computed independently from the published formulas, and PBO on
//! constructed cases.

use rand::{Rng, SeedableRng};
use stockcast_backtest::metrics;
use stockcast_backtest::overfit::{self, Bootstrap};

/// 20 daily returns; the reference values below were computed from the published formulas with Python's
/// standard library (`statistics.mean`, `statistics.stdev`, `statistics.NormalDist().cdf/inv_cdf`), not with
/// stockcast.
const R: [f64; 20] = [
    0.012, -0.004, 0.007, 0.021, -0.015, 0.003, 0.009, -0.002, 0.011, -0.008, 0.016, 0.001, -0.006, 0.013, 0.004,
    -0.011, 0.018, 0.002, -0.003, 0.008,
];

fn near(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn normal_distribution_matches_the_reference() {
    assert!(near(overfit::normal_quantile(0.975), 1.959_963_984_540_053_6, 1e-12));
    assert!(near(overfit::normal_quantile(1e-10), -6.361_340_902_404_056, 1e-9));
    assert!(near(overfit::normal_cdf(-1.3), 0.096_800_484_585_610_36, 1e-14));
    for p in [1e-6, 0.01, 0.3, 0.5, 0.77, 0.999] {
        assert!(near(overfit::normal_cdf(overfit::normal_quantile(p)), p, 1e-13 * (1.0 + 1.0 / p)), "{p}");
    }
}

#[test]
fn psr_and_dsr_match_values_computed_by_hand_from_the_published_formulas() {
    // SR = mean / stdev (ddof 1) = 0.38353; skewness (biased) −0.09797; kurtosis (non-excess) 2.15240.
    assert!(near(overfit::period_sharpe(&R, 0.0), 0.383_528_545_743_282_5, 1e-12));
    let (g3, g4) = overfit::skew_kurtosis(&R);
    assert!(near(g3, -0.097_972_162_766_231_47, 1e-12) && near(g4, 2.152_398_164_257_211, 1e-12));
    // PSR(0) = Φ(SR·√(n−1) / √(1 − γ3·SR + (γ4−1)/4·SR²)).
    assert!(near(overfit::probabilistic_sharpe(&R, 0.0, 0.0), 0.946_157_818_517_150_6, 1e-10));
    // DSR with 5 trials whose daily Sharpe ratios are 0.05, 0.12, −0.03, 0.2, 0.08 (variance 0.00723):
    // SR0 = √V((1−γ)Φ⁻¹(1 − 1/5) + γΦ⁻¹(1 − 1/(5e))) = 0.10141, DSR = PSR(SR0) = 0.88166.
    let sr0 = overfit::expected_max_sharpe(0.00723, 5);
    assert!(near(sr0, 0.101_405_560_313_940_5, 1e-10), "{sr0}");
    assert!(near(overfit::probabilistic_sharpe(&R, 0.0, sr0), 0.881_664_580_698_280_1, 1e-9));
    // One trial: nothing to deflate for.
    assert!(near(overfit::expected_max_sharpe(0.00723, 1), 0.0, 0.0));
}

fn noise(n: usize, mean: f64, seed: u64) -> Vec<f64> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            // Sum of 12 uniforms − 6: approximately standard normal.
            let z: f64 = (0..12).map(|_| rng.random::<f64>()).sum::<f64>() - 6.0;
            mean + 0.01 * z
        })
        .collect()
}

#[test]
fn pbo_is_high_when_the_in_sample_winner_is_noise_and_low_for_a_real_signal() {
    // Ten configurations of pure noise: the in-sample winner is a random one out of sample.
    let pure: Vec<Vec<f64>> = (0..10).map(|i| noise(1600, 0.0, 100 + i)).collect();
    let p = overfit::pbo_cscv(&pure, 16).unwrap();
    assert_eq!(p.splits, 12_870);
    assert!(p.pbo > 0.3, "noise only: PBO {}", p.pbo);
    // One configuration with a real edge (mean 0.3 sd a day) among nine noise ones: it wins in and out of sample.
    let mut real = pure.clone();
    real[3] = noise(1600, 0.003, 7);
    let p = overfit::pbo_cscv(&real, 16).unwrap();
    assert!(p.pbo < 0.05, "a real signal: PBO {}", p.pbo);
    assert!(p.median_logit > 0.0);
    // Undefined inputs.
    assert!(overfit::pbo_cscv(&pure[..1], 16).is_none());
    assert!(overfit::pbo_cscv(&pure, 7).is_none());
}

#[test]
fn bootstrap_intervals_are_reproducible_with_the_seed_and_cover_the_estimate() {
    let r = noise(750, 0.0008, 5);
    let sharpe = |x: &[f64]| metrics::sharpe(x, 0.0);
    let a = overfit::bootstrap_interval(&r, sharpe, &Bootstrap::new(42)).unwrap();
    let b = overfit::bootstrap_interval(&r, sharpe, &Bootstrap::new(42)).unwrap();
    let c = overfit::bootstrap_interval(&r, sharpe, &Bootstrap::new(43)).unwrap();
    assert_eq!(a.map(f64::to_bits), b.map(f64::to_bits));
    assert_ne!(a.map(f64::to_bits), c.map(f64::to_bits));
    let est = sharpe(&r);
    assert!(a[0] < est && est < a[1], "{a:?} vs {est}");
    // The interval of an annualised Sharpe over 3 years is wide: about ±2·√(252/750)·√252/√252 ≈ ±1.2.
    assert!(a[1] - a[0] > 1.0 && a[1] - a[0] < 4.0, "{a:?}");
    let m = overfit::bootstrap_interval(&r, metrics::mean, &Bootstrap::new(1)).unwrap();
    assert!(m[0] < metrics::mean(&r) && metrics::mean(&r) < m[1]);
    assert!(overfit::bootstrap_interval(&r[..5], metrics::mean, &Bootstrap::new(1)).is_none());
}
