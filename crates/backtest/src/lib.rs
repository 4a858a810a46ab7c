//! Walk-forward evaluation for stockcast: [`split`] (expanding/rolling folds with a purge gap, or combinatorial
//! purged cross-validation), [`runner`] (fit per fold with a per-symbol label purge, out-of-sample predictions, in
//! parallel), [`metrics`] (IC, Rank IC, ICIR, forecast errors, performance statistics), [`portfolio`] (top-k /
//! long-short / threshold simulation with costs, delistings and orders waiting for a bar), [`overfit`] (bootstrap
//! intervals, PSR, DSR, PBO), [`report`] (run directory with JSON, Markdown, HTML, SVG plots and Parquet frames)
//! [`shard`] (plan files, shard outputs and the checks of a merge) and [`config`] (the TOML file, label/fill alignment).

pub mod attribution;
pub mod charts;
pub mod compare;
pub mod config;
pub mod error;
pub mod metrics;
pub mod overfit;
pub mod page;
pub mod portfolio;
pub mod predfile;
pub mod relative;
pub mod report;
pub mod risk_model;
pub mod rundir;
pub mod runner;
pub mod shard;
pub mod split;
pub mod tearsheet;

pub use config::{BacktestConfig, LabelAlignment, label_alignment};
pub use error::{Error, Result};
pub use portfolio::{Fill, Market, Rule, Simulation, StrategyConfig, StrategyKind};
pub use report::{Evaluation, ModelReport, RunMeta};
pub use runner::{ModelSpec, OosPrediction, RunOptions, WalkForward};
pub use split::{Fold, SplitConfig, SplitKind, WindowKind};
