//! Price loading, data quality and feature engineering for stockcast.
//!
//! The flow is `load_prices` (read + quality checks + split adjustment) → [`PriceFrame`] →
//! [`build_features`] with a [`FeatureSpec`] → [`FeatureFrame`] → [`FeatureMatrix`] for the models.
//! This is the only stockcast crate whose public API names Polars types.

pub mod build;
pub mod checked;
pub mod clock;
mod encode;
pub mod error;
pub mod expr;
pub mod factors;
pub mod fields;
pub mod groups;
pub mod incremental;
pub mod io;
mod kernels;
pub mod load;
pub mod matrix;
pub mod objects;
pub mod outputs;
pub mod prices;
pub mod quality;
pub mod sources;
pub mod spec;
pub mod stats;
pub mod synth;
pub mod universe;

pub use build::{
    FeatureFrame, LABEL, Skipped, WrittenFeatures, build_features, build_features_before, build_features_on,
    build_labels, for_each_shard, write_features,
};
pub use checked::{Checked, Params};
pub use clock::Clock;
pub use error::{Error, Result};
pub use groups::Classification;
pub use incremental::{CachedBuild, build_features_cached};
pub use load::{BarsBuilder, Layout, PriceField, ReadOptions, Security};
pub use matrix::{FeatureMatrix, MatrixOptions, SymbolTable};
pub use prices::{
    LoadOptions, Loaded, PriceFrame, SeriesColumns, SymbolSeries, check_bars, is_database_url, load_prices,
};
pub use quality::{Check, Policy, QualityConfig, QualityReport, SplitAdjustment, SplitEvent, read_splits};
pub use spec::{Family, FeatureDef, FeatureSpec, LabelPrice, LabelSpec, ReturnKind, SpecHash};
pub use synth::{SynthConfig, synth_prices};
pub use universe::Universe;

/// Re-export of Polars for crates that need to build or inspect frames (only `features` names it in its API).
pub use polars;
