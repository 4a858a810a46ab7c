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

/// The finite values of one column: how many, their [`mean`] and their [`std`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    /// Finite values.
    pub n: usize,
    /// [`mean`] of the finite values (NaN when there are none).
    pub mean: f64,
    /// [`std`] of the finite values with the `ddof` asked for (NaN when `n ≤ ddof`).
    pub std: f64,
}

/// [`Moments`] of each column of `x` over the rows `rows`, counting finite values only: [`mean`] and [`std`] of
/// the column's finite values, the same sums in the same order (so the same bits), read row by row. Reading a
/// column at a time strides across the row-major matrix, a cache miss per value. Used to standardise model inputs.
pub fn column_moments(x: &ndarray::Array2<f32>, rows: &[usize], ddof: usize) -> Vec<Moments> {
    let p = x.ncols();
    // −0.0: the neutral element `Iterator::sum` starts from.
    let (mut sum, mut count) = (vec![-0.0f64; p], vec![0usize; p]);
    for &i in rows {
        for ((s, n), v) in sum.iter_mut().zip(&mut count).zip(x.row(i)) {
            let v = f64::from(*v);
            if v.is_finite() {
                *s += v;
                *n += 1;
            }
        }
    }
    let means: Vec<f64> = sum.iter().zip(&count).map(|(s, &n)| if n == 0 { f64::NAN } else { s / n as f64 }).collect();
    let mut squares = vec![-0.0f64; p];
    for &i in rows {
        for ((q, m), v) in squares.iter_mut().zip(&means).zip(x.row(i)) {
            let v = f64::from(*v);
            if v.is_finite() {
                *q += (v - m).powi(2);
            }
        }
    }
    (0..p)
        .map(|c| {
            let n = count[c];
            let std = if n <= ddof { f64::NAN } else { (squares[c] / (n - ddof) as f64).sqrt() };
            Moments { n, mean: means[c], std }
        })
        .collect()
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
    // Unstable: rows of equal value share one average rank, so their order among themselves changes nothing.
    pairs.sort_unstable_by(|a, b| a.1.total_cmp(&b.1));
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

    /// The row-wise moments are `mean` / `std` of each column's finite values, bit for bit: missing values, an
    /// empty column, a constant one, a column of −0.0, a subset of rows, both `ddof`s.
    #[test]
    fn column_moments_equal_the_statistics_of_each_column() {
        let mut state = 7u64;
        let mut x = ndarray::Array2::from_shape_fn((3000, 6), |_| {
            // A small LCG: uniform in [0, 1), every 10th value missing.
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            if u < 0.1 { f32::NAN } else { (u * 50.0 - 20.0) as f32 }
        });
        x.column_mut(3).fill(f32::NAN);
        x.column_mut(4).fill(2.5);
        x.column_mut(5).fill(-0.0);
        let rows: Vec<usize> = (0..3000).filter(|i| i % 7 != 3).collect();
        for ddof in [0, 1] {
            for (c, m) in column_moments(&x, &rows, ddof).into_iter().enumerate() {
                let vals: Vec<f64> = rows.iter().map(|&i| f64::from(x[[i, c]])).filter(|v| v.is_finite()).collect();
                assert_eq!(m.n, vals.len(), "column {c}");
                assert_eq!(m.mean.to_bits(), mean(&vals).to_bits(), "column {c} mean");
                assert_eq!(m.std.to_bits(), std(&vals, ddof).to_bits(), "column {c} std, ddof {ddof}");
            }
        }
    }

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
