//! Sequence windows: per symbol, the last `lookback` context rows of each row, standardised and left-padded.

use std::sync::Arc;

use super::{Device, Error, FeatureMatrix, HashMap, NaiveDate, Result, Rows, Saved, Tensor, TensorData};

/// Per symbol, the context rows in date order. A matrix whose rows come grouped by symbol, each symbol's in date
/// order (every matrix the features build), is indexed by each symbol's run of rows: a few bytes a symbol, where
/// a list of `(date, row)` per row is 16 bytes a row (400 MB over a 25 M-row context, built again by every fit and
/// prediction). Any other order lists the rows per symbol and sorts them.
pub(super) struct SeqIndex<'a> {
    pub(super) matrix: &'a FeatureMatrix,
    layout: Layout<'a>,
}

enum Layout<'a> {
    /// Each symbol's rows are the matrix rows of this range, dates not decreasing.
    Runs(HashMap<&'a str, std::ops::Range<usize>>),
    /// Each symbol's `(date, row)`s, sorted.
    Listed(HashMap<&'a str, Vec<(NaiveDate, usize)>>),
}

/// The context rows of one sequence, oldest first.
pub(super) enum Window<'a> {
    /// Consecutive matrix rows.
    Run(std::ops::Range<usize>),
    /// Listed rows.
    Listed(std::slice::Iter<'a, (NaiveDate, usize)>),
}

impl Iterator for Window<'_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        match self {
            Self::Run(r) => r.next(),
            Self::Listed(l) => l.next().map(|&(_, row)| row),
        }
    }
}

impl<'a> SeqIndex<'a> {
    pub(super) fn new(matrix: &'a FeatureMatrix) -> Self {
        let layout = Self::runs(matrix).map_or_else(|| Layout::Listed(Self::listed(matrix)), Layout::Runs);
        Self { matrix, layout }
    }

    /// Each symbol's range of rows, when every symbol's rows are one run with dates not decreasing.
    fn runs(matrix: &'a FeatureMatrix) -> Option<HashMap<&'a str, std::ops::Range<usize>>> {
        let index = &matrix.index;
        let mut runs: HashMap<&str, std::ops::Range<usize>> = HashMap::new();
        let mut start = 0;
        while start < index.len() {
            let symbol = &index[start].0;
            let mut end = start + 1;
            while end < index.len() && (Arc::ptr_eq(&index[end].0, symbol) || index[end].0 == *symbol) {
                if index[end].1 < index[end - 1].1 {
                    return None;
                }
                end += 1;
            }
            if runs.insert(&**symbol, start..end).is_some() {
                return None;
            }
            start = end;
        }
        Some(runs)
    }

    fn listed(matrix: &'a FeatureMatrix) -> HashMap<&'a str, Vec<(NaiveDate, usize)>> {
        let mut by_symbol: HashMap<&str, Vec<(NaiveDate, usize)>> = HashMap::new();
        for (i, (s, d)) in matrix.index.iter().enumerate() {
            by_symbol.entry(&**s).or_default().push((*d, i));
        }
        for rows in by_symbol.values_mut() {
            rows.sort_unstable();
        }
        by_symbol
    }

    /// The context rows of the sequence of `(symbol, date)`: how many zero steps pad it on the left, and its
    /// last `lookback` rows dated ≤ the date.
    pub(super) fn window(&self, key: &stockcast_features::matrix::RowKey, lookback: usize) -> (usize, Window<'_>) {
        let (len, rows) = match &self.layout {
            Layout::Runs(runs) => {
                let Some(r) = runs.get(&*key.0) else { return (lookback, Window::Run(0..0)) };
                let end = r.start + self.matrix.index[r.clone()].partition_point(|(_, d)| *d <= key.1);
                let start = end.saturating_sub(lookback).max(r.start);
                (end - start, Window::Run(start..end))
            }
            Layout::Listed(by_symbol) => {
                let Some(rows) = by_symbol.get(&*key.0) else { return (lookback, Window::Run(0..0)) };
                let end = rows.partition_point(|(d, _)| *d <= key.1);
                let start = end.saturating_sub(lookback);
                (end - start, Window::Listed(rows[start..end].iter()))
            }
        };
        (lookback - len, rows)
    }

    /// Whether the rows are indexed by runs (for tests).
    #[cfg(test)]
    pub(super) fn by_runs(&self) -> bool {
        matches!(self.layout, Layout::Runs(_))
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
        for (k, row) in rows.enumerate() {
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
