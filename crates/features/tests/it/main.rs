//! Integration tests of the features crate: loading, quality, indicators against independent references,
//! look-ahead safety, synthetic data.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    clippy::float_cmp,
    clippy::type_complexity,
    clippy::missing_panics_doc,
    clippy::default_trait_access
)]

mod dirty;
mod exprs;
mod factors;
mod groups;
mod incremental;
mod indicators;
mod loading;
mod lookahead;
mod sources;
mod synth;

use std::path::{Path, PathBuf};

use stockcast_features::polars::prelude::*;
use stockcast_features::{LoadOptions, Loaded, load_prices};

/// Path of a bundled dataset.
pub fn dataset(name: &str) -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo and nextest at run time"))
        .join("../../datasets")
        .join(name)
}

/// Writes `text` to `name` in `dir` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Loads with default options.
pub fn load(path: &Path) -> stockcast_features::Result<Loaded> {
    load_prices(path, &LoadOptions::default())
}

/// A column as `Vec<Option<f64>>`.
pub fn col_f64(df: &DataFrame, name: &str) -> Vec<Option<f64>> {
    df.column(name).unwrap().cast(&DataType::Float64).unwrap().f64().unwrap().iter().collect()
}

/// A string column.
pub fn col_str(df: &DataFrame, name: &str) -> Vec<String> {
    df.column(name).unwrap().str().unwrap().iter().map(|s| s.unwrap_or_default().to_owned()).collect()
}

/// Asserts two optional series are equal: both null, or within `tol` relative (absolute below 1).
pub fn assert_close(got: &[Option<f64>], want: &[Option<f64>], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        match (g, w) {
            (None, None) => {}
            (Some(g), Some(w)) => {
                let scale = w.abs().max(1.0);
                assert!((g - w).abs() <= tol * scale, "{what}[{i}]: got {g}, want {w}");
            }
            _ => panic!("{what}[{i}]: got {g:?}, want {w:?}"),
        }
    }
}
