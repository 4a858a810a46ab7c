//! Dense symmetric positive definite solves (Cholesky) for the small systems of the forecast and ridge fits.

/// Cholesky factor (lower triangle, in place) of the symmetric positive definite `k × k` matrix `a`.
pub fn cholesky(a: &mut [f64], k: usize) -> Option<()> {
    for j in 0..k {
        let mut d = a[j * k + j];
        for m in 0..j {
            d -= a[j * k + m] * a[j * k + m];
        }
        if d.is_nan() || d <= 1e-15 * a[j * k + j].abs() || d <= 0.0 {
            return None;
        }
        let d = d.sqrt();
        a[j * k + j] = d;
        for i in j + 1..k {
            let mut v = a[i * k + j];
            for m in 0..j {
                v -= a[i * k + m] * a[j * k + m];
            }
            a[i * k + j] = v / d;
        }
    }
    Some(())
}

/// Solves `L Lᵀ x = b` in place with the factor from [`cholesky`].
pub fn cholesky_solve(l: &[f64], k: usize, b: &mut [f64]) {
    for i in 0..k {
        let v = b[i] - (0..i).map(|m| l[i * k + m] * b[m]).sum::<f64>();
        b[i] = v / l[i * k + i];
    }
    for i in (0..k).rev() {
        let v = b[i] - (i + 1..k).map(|m| l[m * k + i] * b[m]).sum::<f64>();
        b[i] = v / l[i * k + i];
    }
}
