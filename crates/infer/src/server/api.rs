//! The typed request and response bodies of the HTTP API. The OpenAPI document is generated from these types
//! (utoipa), so a field added here appears in `/openapi.json`.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error: a stable code and a message for people (never internals).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable error code (`invalid_parameter`, `not_found`, `unauthorized`, `rate_limited`, …).
    pub error: String,
    /// What went wrong, in words.
    pub message: String,
}

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the process answers.
    pub status: String,
    /// `ok` or `unavailable`.
    pub database: String,
    /// Versions served, `name@version`.
    pub models: Vec<String>,
    /// Server version.
    pub version: String,
}

/// `GET /readyz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Ready {
    /// True when the database answers and a model is served.
    pub ready: bool,
    /// `ok` or `unavailable`.
    pub database: String,
    /// Versions served, `name@version`.
    pub models: Vec<String>,
}

/// One served model version.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelInfo {
    /// Registry name.
    pub name: String,
    /// Version.
    pub version: u64,
    /// Model kind (`gbm`, `lstm`, `linear`, `forecast`, `rule`, `ensemble`).
    pub kind: String,
    /// When it was published.
    pub created_at: String,
    /// Hash of the feature spec it was trained with.
    pub feature_spec_hash: String,
    /// Label horizon in trading days.
    pub horizon: usize,
    /// First and last training date.
    #[schema(value_type = Option<Vec<NaiveDate>>)]
    pub train_range: Option<(NaiveDate, NaiveDate)>,
    /// Last date of the data it was trained on.
    pub data_last_date: Option<NaiveDate>,
    /// Seed of the fit.
    pub seed: u64,
    /// Walk-forward metrics from the manifest.
    #[schema(value_type = Object)]
    pub metrics: serde_json::Value,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Models {
    /// Versions served.
    pub models: Vec<ModelInfo>,
}

/// One score.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Score {
    /// Symbol.
    pub symbol: String,
    /// Model score (the expected h-day return for models that learn the label).
    pub score: f64,
}

/// `GET /v1/predictions`: the stored scores of a run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StoredPredictions {
    /// `name@version`.
    pub model: String,
    /// As-of date of the run.
    pub date: NaiveDate,
    /// Run id.
    pub run_id: i64,
    /// When the run was made.
    pub created_at: DateTime<Utc>,
    /// Scores by symbol.
    pub predictions: Vec<Score>,
    /// Requested symbols the run has no score for.
    pub missing: Vec<String>,
}

/// One recommendation row: the stored row as it is read (one type for the query and the response).
pub use crate::store::RecommendationRow;

/// `GET /v1/recommendations`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Recommendations {
    /// `name@version`.
    pub model: String,
    /// As-of date of the run.
    pub date: NaiveDate,
    /// Run id.
    pub run_id: i64,
    /// When the run was made.
    pub created_at: DateTime<Utc>,
    /// Rows by rank.
    pub recommendations: Vec<RecommendationRow>,
    /// The cursor of the next page (`after=` this rank) when this page is full; `null` on the last page.
    pub next_after: Option<i32>,
}

/// One bar of `POST /v1/predict`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BarIn {
    /// Symbol.
    pub symbol: String,
    /// Trading date.
    pub date: NaiveDate,
    /// Open.
    pub open: Option<f64>,
    /// High.
    pub high: Option<f64>,
    /// Low.
    pub low: Option<f64>,
    /// Close.
    pub close: f64,
    /// Volume.
    pub volume: Option<f64>,
}

/// `POST /v1/predict` body: `symbols` (scored from the stored prices) or `bars`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictIn {
    /// `NAME`, `NAME@VERSION` or `NAME@ALIAS` (default: the only model served).
    pub model: Option<String>,
    /// As-of date (default: the last stored date, or the last bar's date).
    pub date: Option<NaiveDate>,
    /// Symbols to score from the stored prices.
    pub symbols: Option<Vec<String>>,
    /// Bars to score instead (quality-checked like a file).
    pub bars: Option<Vec<BarIn>>,
}

/// `POST /v1/predict` response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Predicted {
    /// `name@version`.
    pub model: String,
    /// As-of date.
    pub date: NaiveDate,
    /// Scores by symbol.
    pub predictions: Vec<Score>,
    /// Requested symbols without a score on the date.
    pub missing: Vec<String>,
}

/// `POST /v1/recommendations/run` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunIn {
    /// As-of date.
    pub date: NaiveDate,
    /// `NAME`, `NAME@VERSION` or `NAME@ALIAS` (default: every model served).
    pub model: Option<String>,
}

/// One stored run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunOut {
    /// `name@version`.
    pub model: String,
    /// As-of date.
    pub date: NaiveDate,
    /// Run id.
    pub run_id: i64,
    /// Rows written.
    pub rows: usize,
    /// True when a run of the same date and version was replaced.
    pub replaced: bool,
    /// Rows per action.
    pub actions: BTreeMap<String, usize>,
    /// Symbols not scored, with the reason.
    #[schema(value_type = Object)]
    pub skipped: serde_json::Value,
    /// Symbols with prices on the date that the model gave no finite score: not ranked, no action stored.
    pub unscored: Vec<String>,
}

/// `POST /v1/recommendations/run` response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Runs {
    /// One per model version.
    pub runs: Vec<RunOut>,
}

/// A refused version.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Refused {
    /// `name@version` or the reference.
    pub model: String,
    /// Why.
    pub reason: String,
}

/// `POST /v1/admin/reload` response (also the body of a 409, with `error` and `message`).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ReloadReport {
    /// Versions newly loaded.
    pub loaded: Vec<String>,
    /// Versions refused, with the reason.
    pub refused: Vec<Refused>,
    /// Versions served after the reload.
    pub serving: Vec<String>,
}
