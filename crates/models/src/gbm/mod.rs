//! `gbm`: gradient-boosted trees with the real libxgboost (hist tree method), early stopping on the validation
//! tail, feature importance (total gain) recorded in `model.json`, the model saved in XGBoost's own JSON format
//! (`xgboost.json`, loadable by any XGBoost tool).

mod ffi;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Rows};
use crate::error::{Error, Result};
use crate::model::{Model, ModelKind, ModelMeta};
use ffi::{Booster, DMatrix};

/// XGBoost parameters (names as in XGBoost).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GbmConfig {
    /// Maximum boosting rounds.
    #[serde(default = "default_rounds")]
    pub rounds: usize,
    /// Learning rate.
    #[serde(default = "default_eta")]
    pub eta: f64,
    /// Maximum tree depth.
    #[serde(default = "default_depth")]
    pub max_depth: u32,
    /// Row subsample ratio per tree.
    #[serde(default = "default_one")]
    pub subsample: f64,
    /// Column subsample ratio per tree.
    #[serde(default = "default_one")]
    pub colsample_bytree: f64,
    /// Minimum hessian (row count for squared error) in a child.
    #[serde(default = "default_one")]
    pub min_child_weight: f64,
    /// L2 regularisation on leaf weights.
    #[serde(default = "default_one")]
    pub lambda: f64,
    /// Stop when the validation RMSE has not improved for this many rounds (0: off).
    #[serde(default = "default_early")]
    pub early_stopping_rounds: usize,
    /// Threads (0: XGBoost's default, all cores). Results are reproducible for a fixed thread count.
    #[serde(default)]
    pub nthread: usize,
}

fn default_rounds() -> usize {
    200
}
fn default_eta() -> f64 {
    0.1
}
fn default_depth() -> u32 {
    6
}
fn default_one() -> f64 {
    1.0
}
fn default_early() -> usize {
    20
}

impl GbmConfig {
    /// Checks every parameter (see [`ModelKind::validate`]).
    pub(crate) fn check(&self) -> Result<()> {
        let err = |m: String| Err(Error::Config(format!("gbm: {m}")));
        if self.rounds == 0 {
            return err("rounds must be at least 1".into());
        }
        if !(self.eta > 0.0 && self.eta <= 1.0) {
            return err(format!("eta must be in (0, 1], got {}", self.eta));
        }
        if self.max_depth == 0 {
            return err("max_depth must be at least 1".into());
        }
        for (name, v) in [("subsample", self.subsample), ("colsample_bytree", self.colsample_bytree)] {
            if !(v > 0.0 && v <= 1.0) {
                return err(format!("{name} must be in (0, 1], got {v}"));
            }
        }
        if !(self.min_child_weight >= 0.0 && self.lambda >= 0.0) {
            return err("min_child_weight and lambda must be ≥ 0".into());
        }
        Ok(())
    }

    fn params(&self, seed: u64) -> Vec<(&'static str, String)> {
        let mut p = vec![
            ("booster", "gbtree".to_owned()),
            ("objective", "reg:squarederror".to_owned()),
            ("tree_method", "hist".to_owned()),
            ("eval_metric", "rmse".to_owned()),
            ("eta", self.eta.to_string()),
            ("max_depth", self.max_depth.to_string()),
            ("subsample", self.subsample.to_string()),
            ("colsample_bytree", self.colsample_bytree.to_string()),
            ("min_child_weight", self.min_child_weight.to_string()),
            ("lambda", self.lambda.to_string()),
            ("seed", (seed % (1 << 31)).to_string()),
            ("verbosity", "0".to_owned()),
        ];
        if self.nthread > 0 {
            p.push(("nthread", self.nthread.to_string()));
        }
        p
    }
}

impl ModelKind for GbmConfig {
    fn name(&self) -> &'static str {
        "gbm"
    }
    fn check_params(&self) -> Result<()> {
        self.check()
    }
    fn fit(&self, train: &Dataset, valid: Option<&Dataset>, seed: u64) -> Result<Box<dyn Model>> {
        self.fit_rows(Rows::all(train), valid.map(Rows::all), seed)
    }
    fn fit_rows(&self, train: Rows<'_>, valid: Option<Rows<'_>>, seed: u64) -> Result<Box<dyn Model>> {
        Ok(Box::new(fit(self, train, valid, seed)?))
    }
    fn load(&self, dir: &Path, meta: &ModelMeta) -> Result<Box<dyn Model>> {
        Ok(Box::new(Gbm::load(dir, meta)?))
    }
    fn uses_validation(&self) -> bool {
        true
    }
    /// XGBoost's quantised matrix (a byte per feature and row at 256 bins), its column matrix (the same again)
    /// and per-row gradients, predictions, labels and row partitions: ~175 bytes a row at 68 features, measured
    /// as the resident growth of a 21 M-row fit.
    fn fit_bytes(&self, rows: usize, features: usize) -> u64 {
        (rows as u64) * (2 * features as u64 + 40)
    }
}

/// A fitted XGBoost model.
#[derive(Debug)]
pub struct Gbm {
    booster: Booster,
    feature_names: Vec<String>,
    best_rounds: usize,
}

/// The DMatrix of `data`'s features (no labels: prediction).
fn matrix(data: &Dataset) -> Result<DMatrix> {
    let x = data.matrix.x.as_standard_layout();
    let values = x.as_slice().ok_or_else(|| Error::Data("feature matrix is not contiguous".into()))?;
    DMatrix::dense(values, x.nrows(), x.ncols(), &data.matrix.feature_names)
}

/// Parses the metric value out of XGBoost's evaluation text `[i]\tname-rmse:value`.
fn metric_value(text: &str) -> Option<f64> {
    text.rsplit(':').next()?.trim().parse().ok()
}

/// Rows per batch XGBoost reads while building a QuantileDMatrix from selected rows: 64 Ki rows of 68 f32
/// features are a 17 MB buffer.
const BATCH_ROWS: usize = 1 << 16;

/// The QuantileDMatrix of labelled rows (see [`DMatrix::quantile`]), sharing `reference`'s bin edges when given.
fn quantile_matrix(rows: Rows<'_>, reference: Option<&DMatrix>, nthread: usize, batch_rows: usize) -> Result<DMatrix> {
    let m = &rows.data.matrix;
    let x = m.x.as_standard_layout();
    let values = x.as_slice().ok_or_else(|| Error::Data("feature matrix is not contiguous".into()))?;
    let y = rows.data.labels()?;
    let labels = y.as_slice().ok_or_else(|| Error::Data("labels are not contiguous".into()))?;
    if rows.iter().any(|i| !labels[i].is_finite()) {
        return Err(Error::Data("gbm: training labels must be finite (keep only rows with a label)".into()));
    }
    DMatrix::quantile(values, x.ncols(), labels, rows.positions, &m.feature_names, reference, nthread, batch_rows)
}

pub(crate) fn fit(cfg: &GbmConfig, train: Rows<'_>, valid: Option<Rows<'_>>, seed: u64) -> Result<Gbm> {
    fit_batched(cfg, train, valid, seed, BATCH_ROWS)
}

fn fit_batched(cfg: &GbmConfig, train: Rows<'_>, valid: Option<Rows<'_>>, seed: u64, batch_rows: usize) -> Result<Gbm> {
    if train.is_empty() {
        return Err(Error::Data("gbm: no training rows".into()));
    }
    let dtrain = quantile_matrix(train, None, cfg.nthread, batch_rows)?;
    let dvalid = valid
        .filter(|v| !v.is_empty())
        .map(|v| quantile_matrix(v, Some(&dtrain), cfg.nthread, batch_rows))
        .transpose()?;
    let mut cache = vec![&dtrain];
    if let Some(v) = &dvalid {
        cache.push(v);
    }
    let mut booster = Booster::new(&cache)?;
    for (k, v) in cfg.params(seed) {
        booster.set_param(k, &v)?;
    }
    let (mut best, mut best_round, mut rounds) = (f64::INFINITY, 0, 0);
    for i in 0..cfg.rounds {
        booster.update(i, &dtrain)?;
        rounds = i + 1;
        if let Some(v) = &dvalid {
            let text = booster.eval(i, v, "valid")?;
            let value =
                metric_value(&text).ok_or_else(|| Error::Xgboost(format!("cannot read metric from {text:?}")))?;
            if value < best {
                (best, best_round) = (value, i);
            } else if cfg.early_stopping_rounds > 0 && i - best_round >= cfg.early_stopping_rounds {
                break;
            }
        }
    }
    let best_rounds = if dvalid.is_some() { best_round + 1 } else { rounds };
    tracing::debug!(rounds, best_rounds, valid_rmse = best, "gbm trained");
    let booster = if best_rounds < rounds { booster.slice(best_rounds)? } else { booster };
    Ok(Gbm { booster, feature_names: train.data.matrix.feature_names.clone(), best_rounds })
}

impl Gbm {
    /// Loads `xgboost.json`; names and best round come from the already verified `model.json`.
    pub(crate) fn load(dir: &Path, meta: &ModelMeta) -> Result<Self> {
        let p = dir.join("xgboost.json");
        let booster = Booster::load(&p).map_err(|e| Error::artifact(dir, format!("xgboost.json: {e}")))?;
        let best_rounds =
            meta.extra.get("best_rounds").and_then(serde_json::Value::as_u64).unwrap_or_default() as usize;
        Ok(Self { booster, feature_names: meta.feature_names.clone(), best_rounds })
    }
}

impl Model for Gbm {
    fn predict_rows(&self, data: &Dataset) -> Result<Vec<f64>> {
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let m = matrix(data)?;
        Ok(self.booster.predict(&m, data.len())?.into_iter().map(f64::from).collect())
    }

    fn save_files(&self, dir: &Path) -> Result<BTreeMap<String, serde_json::Value>> {
        self.booster.save(&dir.join("xgboost.json"))?;
        let importance = self.importance(&self.feature_names)?.map(|i| i.values).unwrap_or_default();
        let mut extra = BTreeMap::new();
        extra.insert("best_rounds".to_owned(), serde_json::json!(self.best_rounds));
        extra.insert(
            "importance_total_gain".to_owned(),
            serde_json::Value::Object(importance.into_iter().map(|(k, v)| (k, serde_json::json!(v))).collect()),
        );
        Ok(extra)
    }

    fn fit_summary(&self) -> Result<Option<String>> {
        let top = self.importance(&self.feature_names)?.map(|i| i.values).unwrap_or_default();
        let top: Vec<&str> = top.iter().take(5).map(|(name, _)| name.as_str()).collect();
        Ok(Some(format!("best rounds {}; top features by gain: {}", self.best_rounds, top.join(", "))))
    }

    fn importance(&self, feature_names: &[String]) -> Result<Option<crate::model::Importance>> {
        // A sliced booster (early stopping) reports features as `f<column>`: map them back to names.
        let mut values: Vec<(String, f64)> = self
            .booster
            .importance()?
            .into_iter()
            .map(|(name, gain)| {
                let named = name
                    .strip_prefix('f')
                    .and_then(|i| i.parse::<usize>().ok())
                    .and_then(|i| feature_names.get(i))
                    .cloned();
                (named.unwrap_or(name), gain)
            })
            .collect();
        values.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(Some(crate::model::Importance { measure: "total_gain".into(), values }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rand::{Rng, SeedableRng};
    use stockcast_features::{FeatureMatrix, SpecHash};

    use super::*;
    use crate::data::History;

    #[test]
    fn reads_xgboost_eval_text() {
        assert_eq!(metric_value("[12]\tvalid-rmse:0.0123"), Some(0.0123));
        assert_eq!(metric_value("garbage"), None);
    }

    /// `n` rows of 6 uniform features (5 % missing) and a label that depends on two of them.
    fn data(n: usize) -> Dataset {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let x = ndarray::Array2::from_shape_fn((n, 6), |_| {
            if rng.random::<f64>() < 0.05 { f32::NAN } else { rng.random::<f32>() }
        });
        let y = (0..n).map(|i| x[[i, 0]].max(0.0) - 0.5 * x[[i, 3]].max(0.0) + 0.1 * rng.random::<f32>()).collect();
        let day = chrono::NaiveDate::from_ymd_opt(2001, 1, 1).unwrap();
        let index =
            (0..n).map(|i| (format!("S{}", i % 7).into(), day + chrono::Duration::days(i as i64 / 7))).collect();
        let matrix = FeatureMatrix {
            x,
            y: Some(y),
            index,
            feature_names: (0..6).map(|j| format!("f{j}")).collect(),
            spec_hash: SpecHash("test".into()),
            label: stockcast_features::spec::LabelSpec::default(),
        };
        Dataset::new(matrix, Arc::new(History::default()))
    }

    /// XGBoost pushes every batch into the same per-column sketches in row order: the bins, the trees and the
    /// predictions are the same whether the rows come in one batch or in many (gathered or read in place).
    #[test]
    fn the_model_does_not_depend_on_the_batch_size() {
        let all = data(9000);
        let cfg: GbmConfig =
            serde_json::from_str(r#"{"rounds": 30, "nthread": 2, "subsample": 0.8, "colsample_bytree": 0.8}"#).unwrap();
        let (train, valid): (Vec<usize>, Vec<usize>) = (0..8000).partition(|i| i % 5 != 0);
        let fit = |batch| {
            let m = fit_batched(&cfg, Rows::of(&all, &train), Some(Rows::of(&all, &valid)), 3, batch).unwrap();
            m.predict_rows(&all.rows(&(8000..9000).collect::<Vec<_>>())).unwrap()
        };
        let one = fit(usize::MAX);
        assert!(one.iter().all(|p| p.is_finite()));
        for batch in [1000, 4099] {
            let many = fit(batch);
            let differ = one.iter().zip(&many).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            assert_eq!(differ, 0, "batches of {batch}: {differ} predictions differ");
        }
        // Every row, in place (no gathering), in batches and whole.
        let whole = |batch| fit_batched(&cfg, Rows::all(&all), None, 3, batch).unwrap().predict_rows(&all).unwrap();
        let (a, b) = (whole(usize::MAX), whole(2500));
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}
