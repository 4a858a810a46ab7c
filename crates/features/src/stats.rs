//! The workspace's one mean, standard deviation and ranking, with their conventions stated: every crate (features,
//! models, backtest metrics) calls these instead of its own copy.

/// Arithmetic mean `Σx / n`; NaN when `v` is empty.
pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 }
}

/// Standard deviation `sqrt(Σ(x − mean)² / (n − ddof))`, two-pass: `ddof = 1` is the sample (unbiased variance)
/// estimate used for statistics of returns and cross-sections, `ddof = 0` the population one used to standardise
/// model inputs. NaN when `n ≤ ddof`.
pub fn std(v: &[f64], ddof: usize) -> f64 {
    if v.len() <= ddof {
        return f64::NAN;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - ddof) as f64).sqrt()
}

/// Ranks from 1 (smallest) to n in [`f64::total_cmp`] order, ties sharing their average rank ("average" ranking
/// of scipy's `rankdata`).
pub fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut pairs: Vec<(usize, f64)> = v.iter().copied().enumerate().collect();
    let mut ranks = vec![0.0; v.len()];
    sorted_average_ranks(&mut pairs, |row, rank| ranks[row] = rank);
    ranks
}

/// Mid-rank percentiles `(rank − 0.5) / n` of `(row, value)` pairs (average ranks, as [`average_ranks`]), passed
/// to `write(row, percentile)`. Sorts `pairs` by value. Used by the cross-sectional rank feature and the ensemble.
pub fn mid_rank_percentiles(pairs: &mut [(usize, f64)], mut write: impl FnMut(usize, f64)) {
    let n = pairs.len() as f64;
    sorted_average_ranks(pairs, |row, rank| write(row, (rank - 0.5) / n));
}

/// Sorts `pairs` by value and passes each row's average rank (from 1).
fn sorted_average_ranks(pairs: &mut [(usize, f64)], mut write: impl FnMut(usize, f64)) {
    pairs.sort_by(|a, b| a.1.total_cmp(&b.1));
    let n = pairs.len();
    let mut k = 0;
    while k < n {
        let mut e = k + 1;
        while e < n && pairs[e].1.total_cmp(&pairs[k].1).is_eq() {
            e += 1;
        }
        // Ranks k+1 ..= e share their average (k + 1 + e) / 2.
        let rank = (k + 1 + e) as f64 / 2.0;
        for &(row, _) in &pairs[k..e] {
            write(row, rank);
        }
        k = e;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conventions_by_hand() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert!((mean(&v) - 2.5).abs() < 1e-15);
        // Σ(x − 2.5)² = 5: sample variance 5/3, population 5/4.
        assert!((std(&v, 1) - (5.0f64 / 3.0).sqrt()).abs() < 1e-15);
        assert!((std(&v, 0) - 1.25f64.sqrt()).abs() < 1e-15);
        assert!(mean(&[]).is_nan() && std(&[1.0], 1).is_nan() && std(&[], 0).is_nan());
        let close = |a: &[f64], b: &[f64]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
        assert!(close(&average_ranks(&[3.0, 1.0, 2.0, 2.0]), &[4.0, 1.0, 2.5, 2.5]));
        let mut pairs = vec![(0, 5.0), (1, 5.0), (2, -1.0), (3, 7.0)];
        let mut pct = [0.0; 4];
        mid_rank_percentiles(&mut pairs, |r, p| pct[r] = p);
        // Ranks 2.5, 2.5, 1, 4 of n = 4.
        assert!(close(&pct, &[0.5, 0.5, 0.125, 0.875]), "{pct:?}");
    }
}
