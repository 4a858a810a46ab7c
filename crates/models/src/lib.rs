//! Models for stockcast behind one interface: configure ([`ModelConfig`]) → [`fit`] → [`TrainedModel`] →
//! predict → save / load. Kinds: `gbm` (the real libxgboost), `lstm` (burn), `linear` (linfa elastic net), `forecast` (Prophet-style and ETS per symbol), `rule`
//! (buy-and-hold, SMA crossover, momentum) and `ensemble`. Every score is the expected forward return over the
//! label horizon (rules: a signal of the same sign convention), so backtests never care which model made it.
//! XGBoost types stay inside `gbm`.

pub mod data;
pub mod ensemble;
pub mod error;
pub mod forecast;
pub mod gbm;
pub mod kinds;
pub mod linalg;
pub mod linear;
pub mod lstm;
pub mod model;
pub mod progress;
pub mod registry;
pub mod rules;

pub use data::{Dataset, DatasetOptions, DayContext, History, Predictions, Rows, SymbolHistory};
pub use error::{Error, Result};
pub use model::{
    Importance, MODEL_MARKER, Model, ModelConfig, ModelKind, ModelMeta, Replace, TrainedModel, fit, fit_rows,
};
