//! Dense model input: [`FeatureMatrix`] (f32 features, labels, `(symbol, date)` index) from a [`FeatureFrame`].

use chrono::NaiveDate;
use ndarray::{Array1, Array2};
use polars::prelude::*;

use crate::build::{FeatureFrame, LABEL};
use crate::error::Result;
use crate::prices::days_to_date;
use crate::spec::SpecHash;

/// Which rows go into the matrix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatrixOptions {
    /// Keep only rows with a label (training); otherwise labels may be NaN (inference).
    pub require_label: bool,
    /// Drop rows where any feature is missing (warm-up rows); otherwise missing features are NaN.
    pub drop_incomplete: bool,
}

/// Features as a dense `rows × features` f32 array with labels and a `(symbol, date)` row index.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMatrix {
    /// Features, row-major; missing values are NaN.
    pub x: Array2<f32>,
    /// Labels (NaN where unknown), when the frame had a label column.
    pub y: Option<Array1<f32>>,
    /// `(symbol, date)` of each row.
    pub index: Vec<(String, NaiveDate)>,
    /// Column names of `x`.
    pub feature_names: Vec<String>,
    /// Hash of the spec the features came from.
    pub spec_hash: SpecHash,
}

impl FeatureMatrix {
    /// Converts a feature frame.
    pub fn from_frame(frame: &FeatureFrame, opts: MatrixOptions) -> Result<Self> {
        let df = frame.df();
        let n = df.height();
        let label: Vec<Option<f64>> = df.column(LABEL)?.f64()?.iter().collect();
        let feats: Vec<Vec<Option<f64>>> = frame
            .features()
            .iter()
            .map(|name| Ok(df.column(name)?.cast(&DataType::Float64)?.f64()?.iter().collect()))
            .collect::<Result<_>>()?;
        let keep: Vec<usize> = (0..n)
            .filter(|&i| !opts.require_label || label[i].is_some())
            .filter(|&i| !opts.drop_incomplete || feats.iter().all(|c| c[i].is_some()))
            .collect();
        let mut x = Array2::<f32>::zeros((keep.len(), feats.len()));
        for (j, c) in feats.iter().enumerate() {
            for (r, &i) in keep.iter().enumerate() {
                x[[r, j]] = c[i].map_or(f32::NAN, |v| v as f32);
            }
        }
        let y = Array1::from_iter(keep.iter().map(|&i| label[i].map_or(f32::NAN, |v| v as f32)));
        let symbols = df.column("symbol")?.str()?.clone();
        let dates = df.column("date")?.date()?.physical().clone();
        let index = keep
            .iter()
            .map(|&i| {
                let s = symbols.get(i).unwrap_or_default().to_owned();
                let d = dates.get(i).and_then(days_to_date).unwrap_or_default();
                (s, d)
            })
            .collect();
        Ok(Self {
            x,
            y: Some(y),
            index,
            feature_names: frame.features().to_vec(),
            spec_hash: frame.spec_hash().clone(),
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
