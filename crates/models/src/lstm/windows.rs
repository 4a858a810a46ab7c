//! Sequence windows: per symbol, the last `lookback` context rows of each row, standardised and left-padded.

use super::{Device, Error, FeatureMatrix, HashMap, NaiveDate, Result, Rows, Saved, Tensor, TensorData};

/// Per symbol, the context rows in date order.
pub(super) struct SeqIndex<'a> {
    pub(super) matrix: &'a FeatureMatrix,
    pub(super) by_symbol: HashMap<&'a str, Vec<(NaiveDate, usize)>>,
}

impl<'a> SeqIndex<'a> {
    pub(super) fn new(matrix: &'a FeatureMatrix) -> Self {
        let mut by_symbol: HashMap<&str, Vec<(NaiveDate, usize)>> = HashMap::new();
        for (i, (s, d)) in matrix.index.iter().enumerate() {
            by_symbol.entry(&**s).or_default().push((*d, i));
        }
        for rows in by_symbol.values_mut() {
            rows.sort_unstable();
        }
        Self { matrix, by_symbol }
    }

    /// The context rows of the sequence of `(symbol, date)`: its last `lookback` rows dated ≤ the date, and how
    /// many zero steps pad them on the left.
    pub(super) fn window(
        &self,
        key: &stockcast_features::matrix::RowKey,
        lookback: usize,
    ) -> (usize, &[(NaiveDate, usize)]) {
        let Some(rows) = self.by_symbol.get(&*key.0) else { return (lookback, &[]) };
        let end = rows.partition_point(|(d, _)| *d <= key.1);
        let start = end.saturating_sub(lookback);
        (lookback - (end - start), &rows[start..end])
    }

    /// Writes context row `row` normalised by the training statistics (NaN → 0, clipped at ±10σ) into `out`.
    pub(super) fn normalise(&self, row: usize, saved: &Saved, out: &mut [f32]) {
        for (j, (v, slot)) in self.matrix.x.row(row).iter().zip(out).enumerate() {
            let z = (f64::from(*v) - saved.means[j]) / saved.stds[j];
            *slot = if z.is_finite() { z.clamp(-10.0, 10.0) as f32 } else { 0.0 };
        }
    }

    /// Writes the normalised sequence of `(symbol, date)` (`lookback × features`) into `out`.
    pub(super) fn fill(
        &self,
        key: &stockcast_features::matrix::RowKey,
        lookback: usize,
        saved: &Saved,
        out: &mut [f32],
    ) {
        out.fill(0.0);
        let (offset, rows) = self.window(key, lookback);
        let f = saved.inputs;
        for (k, &(_, row)) in rows.iter().enumerate() {
            self.normalise(row, saved, &mut out[(offset + k) * f..(offset + k + 1) * f]);
        }
    }
}

/// Rows scored per forward pass when predicting.
pub(super) const PREDICT_CHUNK: usize = 256;

/// Sequences of `keys` as one `[n, lookback, features]` buffer.
pub(super) fn sequences(index: &SeqIndex<'_>, keys: &[&stockcast_features::matrix::RowKey], saved: &Saved) -> Vec<f32> {
    let per = saved.config.lookback * saved.inputs;
    let mut buf = vec![0.0f32; keys.len() * per];
    for (key, chunk) in keys.iter().zip(buf.chunks_mut(per)) {
        index.fill(key, saved.config.lookback, saved, chunk);
    }
    buf
}

pub(super) fn tensor3(buf: Vec<f32>, n: usize, saved: &Saved, device: &Device) -> Tensor<3> {
    Tensor::from_data(TensorData::new(buf, [n, saved.config.lookback, saved.inputs]), device)
}

pub(super) fn to_vec(t: &Tensor<1>) -> Result<Vec<f32>> {
    t.to_data().try_to_vec::<f32>().map_err(|e| Error::Data(format!("lstm: reading a tensor: {e:?}")))
}

/// Labelled rows of `rows` (positions in `rows.data`, standardised labels), the most recent `max` when
/// `max > 0`: the same rows, in the same order, as on a [`Rows::materialize`]d copy.
pub(super) fn labelled(rows: Rows<'_>, max: usize, saved: Option<&Saved>) -> Result<(Vec<usize>, Vec<f32>)> {
    let data = rows.data;
    let y = data.labels()?;
    let at = |k: usize| rows.positions.map_or(k, |p| p[k]);
    // Worked out in the rows' own order (k), as a copy would be, then mapped to positions.
    let mut ks: Vec<usize> = (0..rows.len()).filter(|&k| y[at(k)].is_finite()).collect();
    if max > 0 && ks.len() > max {
        ks.sort_by_key(|&k| data.matrix.index[at(k)].1);
        ks.drain(..ks.len() - max);
        ks.sort_unstable();
    }
    let positions: Vec<usize> = ks.into_iter().map(at).collect();
    let (m, s) = saved.map_or((0.0, 1.0), |s| (s.y_mean, s.y_std));
    let ys = positions.iter().map(|&i| ((f64::from(y[i]) - m) / s) as f32).collect();
    Ok((positions, ys))
}

/// Mean and population sd (`ddof = 0`) of the finite values (the label's; the features' are
/// [`stockcast_features::stats::column_moments`]); (0, 1) when there are none, sd 1 when constant.
pub(super) fn mean_std(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let finite: Vec<f64> = values.filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return (0.0, 1.0);
    }
    let (m, sd) = (stockcast_features::stats::mean(&finite), stockcast_features::stats::std(&finite, 0));
    (m, usable_sd(sd))
}

/// `sd`, or 1 where it is (near) zero or undefined: a constant input is left unscaled.
pub(super) fn usable_sd(sd: f64) -> f64 {
    if sd > 1e-12 && sd.is_finite() { sd } else { 1.0 }
}
