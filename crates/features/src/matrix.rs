//! Dense model input: [`FeatureMatrix`] (f32 features, labels, `(symbol, date)` index) from a [`FeatureFrame`].

use std::sync::Arc;

use chrono::NaiveDate;
use ndarray::{Array1, Array2};
use polars::prelude::*;

use crate::build::{FeatureFrame, LABEL};
use crate::error::Result;
use crate::prices::days_to_date;
use crate::spec::{LabelSpec, SpecHash};

/// Which rows go into the matrix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatrixOptions {
    /// Keep only rows with a label (training); otherwise labels may be NaN (inference).
    pub require_label: bool,
    /// Drop rows where any feature is missing (warm-up rows); otherwise missing features are NaN.
    pub drop_incomplete: bool,
}

/// Shared symbol strings (a matrix's row index, out-of-sample predictions): one allocation per symbol, looked up by text (rows of one symbol
/// usually come together, so the last one is tried first).
#[derive(Debug, Default)]
pub struct SymbolTable {
    known: std::collections::HashSet<Arc<str>>,
    last: Option<Arc<str>>,
}

impl SymbolTable {
    /// The shared string of `symbol`.
    pub fn get(&mut self, symbol: &str) -> Arc<str> {
        if let Some(last) = self.last.as_ref().filter(|l| &***l == symbol) {
            return Arc::clone(last);
        }
        let shared = if let Some(s) = self.known.get(symbol) {
            Arc::clone(s)
        } else {
            let s: Arc<str> = Arc::from(symbol);
            self.known.insert(Arc::clone(&s));
            s
        };
        self.last = Some(Arc::clone(&shared));
        shared
    }
}

/// A row's `(symbol, date)`.
pub type RowKey = (Arc<str>, NaiveDate);

/// Features as a dense `rows × features` f32 array with labels and a `(symbol, date)` row index.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMatrix {
    /// Features, row-major; missing values are NaN.
    pub x: Array2<f32>,
    /// Labels (NaN where unknown), when the frame had a label column.
    pub y: Option<Array1<f32>>,
    /// `(symbol, date)` of each row; the rows of a symbol share one string (an owned `String` a row was ~1.3 GB
    /// at 25 M rows).
    pub index: Vec<RowKey>,
    /// Column names of `x`.
    pub feature_names: Vec<String>,
    /// Hash of the spec the features came from.
    pub spec_hash: SpecHash,
    /// The label `y` holds (the spec's): its horizon is the one every model targets.
    pub label: LabelSpec,
}

impl FeatureMatrix {
    /// Converts a feature frame, one column at a time (no second copy of the whole frame: the 5 M-row, 68-feature
    /// frame converts with one f64 column in flight beside the f32 matrix).
    pub fn from_frame(frame: &FeatureFrame, opts: MatrixOptions) -> Result<Self> {
        Self::from_df(frame.df(), frame.features(), frame.spec_hash(), frame.label_spec(), opts)
    }

    /// The matrix of [`build_features`](crate::build_features)' frame, built from the pieces of
    /// [`for_each_shard`](crate::for_each_shard): each piece becomes f32 rows as it is computed, so the f64 frame
    /// (5 M rows × 68 features: 2.7 GB) is never whole. The same matrix as converting the whole frame.
    ///
    /// # Errors
    /// As [`build_features`](crate::build_features).
    pub fn from_shards(
        prices: &crate::PriceFrame,
        spec: &crate::Checked<crate::FeatureSpec>,
        opts: MatrixOptions,
        shard_rows: usize,
    ) -> Result<Self> {
        let hash = spec.hash();
        let (mut x, mut y, mut index): (Vec<f32>, Vec<f32>, Vec<RowKey>) = (Vec::new(), Vec::new(), Vec::new());
        let written = crate::for_each_shard(prices, spec, shard_rows, |df, features| {
            let part = Self::from_df(&df, features, &hash, &spec.label, opts)?;
            if x.capacity() == 0 {
                x.reserve_exact(prices.height() * features.len());
            }
            x.extend(part.x.iter());
            y.extend(part.y.iter().flatten());
            index.extend(part.index);
            Ok(())
        })?;
        let x = Array2::from_shape_vec((index.len(), written.features.len()), x)
            .map_err(|e| crate::Error::Config { what: "features", message: format!("feature matrix: {e}") })?;
        Ok(Self {
            x,
            y: Some(Array1::from(y)),
            index,
            feature_names: written.features,
            spec_hash: hash,
            label: spec.label.clone(),
        })
    }

    fn from_df(
        df: &DataFrame,
        features: &[String],
        spec_hash: &SpecHash,
        label_spec: &LabelSpec,
        opts: MatrixOptions,
    ) -> Result<Self> {
        let n = df.height();
        let label = df.column(LABEL)?.f64()?;
        let mut keep_mask: Vec<bool> =
            if opts.require_label { label.iter().map(|v| v.is_some()).collect() } else { vec![true; n] };
        if opts.drop_incomplete {
            for name in features {
                let col = df.column(name)?.as_materialized_series();
                if col.null_count() > 0 {
                    for (k, valid) in keep_mask.iter_mut().zip(col.is_not_null().iter()) {
                        *k &= valid.unwrap_or(false);
                    }
                }
            }
        }
        let keep: Vec<usize> = (0..n).filter(|&i| keep_mask[i]).collect();
        drop(keep_mask);
        let all = keep.len() == n;
        let mut x = Array2::<f32>::zeros((keep.len(), features.len()));
        for (j, name) in features.iter().enumerate() {
            // Through f64, as the frame's values are: integer columns round once, the same as before.
            let col = df.column(name)?.cast(&DataType::Float64)?;
            let col = col.f64()?;
            let mut dst = x.column_mut(j);
            if all && col.null_count() == 0 {
                for (slot, v) in dst.iter_mut().zip(col.into_no_null_iter()) {
                    *slot = v as f32;
                }
            } else if all {
                for (slot, v) in dst.iter_mut().zip(col.iter()) {
                    *slot = v.map_or(f32::NAN, |v| v as f32);
                }
            } else {
                for (slot, &i) in dst.iter_mut().zip(&keep) {
                    *slot = col.get(i).map_or(f32::NAN, |v| v as f32);
                }
            }
        }
        let y = Array1::from_iter(keep.iter().map(|&i| label.get(i).map_or(f32::NAN, |v| v as f32)));
        let symbols = df.column("symbol")?.str()?.clone();
        let dates = df.column("date")?.date()?.physical().clone();
        let mut shared = SymbolTable::default();
        let index = keep
            .iter()
            .map(|&i| {
                let s = shared.get(symbols.get(i).unwrap_or_default());
                let d = dates.get(i).and_then(days_to_date).unwrap_or_default();
                (s, d)
            })
            .collect();
        Ok(Self {
            x,
            y: Some(y),
            index,
            feature_names: features.to_vec(),
            spec_hash: spec_hash.clone(),
            label: label_spec.clone(),
        })
    }

    /// Number of rows.
    pub fn nrows(&self) -> usize {
        self.x.nrows()
    }

    /// Number of features.
    pub fn ncols(&self) -> usize {
        self.x.ncols()
    }
}
