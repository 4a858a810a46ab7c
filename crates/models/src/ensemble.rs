//! `ensemble`: the (weighted) mean of member models' per-date rank-normalised scores. Members are fitted with
//! seeds `seed + i` and saved in `member_<i>/` inside the ensemble's directory.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Rows};
use crate::error::{Error, Result};
use stockcast_features::Checked;

use crate::model::{Model, ModelConfig, ModelKind, ModelMeta, Replace, TrainedModel, fit_rows as fit_model};

/// Members and optional weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleConfig {
    /// Member models (`[[members]]` tables, each with its own `kind`).
    /// Each is checked as it is read.
    pub members: Vec<Checked<ModelConfig>>,
    /// Weights per member (default: equal).
    #[serde(default)]
    pub weights: Vec<f64>,
}

impl EnsembleConfig {
    /// Checks every parameter (see [`ModelKind::check_params`]).
    pub(crate) fn check_members(&self) -> Result<()> {
        if self.members.is_empty() {
            return Err(Error::Config("ensemble: no members".into()));
        }
        if !self.weights.is_empty()
            && (self.weights.len() != self.members.len() || self.weights.iter().any(|w| !(*w >= 0.0 && w.is_finite())))
        {
            return Err(Error::Config("ensemble: weights must be one non-negative number per member".into()));
        }
        if self.weights.iter().sum::<f64>() == 0.0 && !self.weights.is_empty() {
            return Err(Error::Config("ensemble: weights sum to 0".into()));
        }
        Ok(())
    }
}

impl ModelKind for EnsembleConfig {
    fn name(&self) -> &'static str {
        "ensemble"
    }
    fn check_params(&self) -> Result<()> {
        self.check_members()
    }
    fn fit(&self, train: &Dataset, valid: Option<&Dataset>, seed: u64) -> Result<Box<dyn Model>> {
        self.fit_rows(Rows::all(train), valid.map(Rows::all), seed)
    }
    fn fit_rows(&self, train: Rows<'_>, valid: Option<Rows<'_>>, seed: u64) -> Result<Box<dyn Model>> {
        Ok(Box::new(fit(self, train, valid, seed)?))
    }
    fn load(&self, dir: &Path, _meta: &ModelMeta) -> Result<Box<dyn Model>> {
        Ok(Box::new(Ensemble::load(dir)?))
    }
    fn uses_sequences(&self) -> bool {
        self.members.iter().any(|m| m.uses_sequences())
    }
    fn uses_validation(&self) -> bool {
        self.members.iter().any(|m| m.uses_validation())
    }
    fn learns(&self) -> bool {
        self.members.iter().any(|m| m.learns())
    }
    fn uses_features(&self) -> bool {
        self.members.iter().any(|m| m.uses_features())
    }
    fn history_days(&self, warmup: usize) -> Option<usize> {
        self.members.iter().map(|m| m.history_days(warmup)).try_fold(0, |acc, d| d.map(|d| acc.max(d)))
    }
    /// Never: the score is a (weighted) mean of per-date rank percentiles in (0, 1), not a return, whatever the
    /// members predict. Expected returns are calibrated from it like a rule's.
    fn score_is_label(&self) -> bool {
        false
    }
}

/// A fitted ensemble.
#[derive(Debug)]
pub struct Ensemble {
    members: Vec<TrainedModel>,
    weights: Vec<f64>,
}

pub(crate) fn fit(cfg: &EnsembleConfig, train: Rows<'_>, valid: Option<Rows<'_>>, seed: u64) -> Result<Ensemble> {
    let members = cfg
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| fit_model(m, train, valid, seed.wrapping_add(i as u64)))
        .collect::<Result<Vec<_>>>()?;
    let weights = if cfg.weights.is_empty() { vec![1.0; members.len()] } else { cfg.weights.clone() };
    Ok(Ensemble { members, weights })
}

/// Per-date mid-rank percentiles `(rank - 0.5) / n` of the finite scores (ties averaged); NaN stays NaN.
pub fn rank_normalise(index: &[stockcast_features::matrix::RowKey], scores: &[f64]) -> Vec<f64> {
    let mut by_date: HashMap<NaiveDate, Vec<(usize, f64)>> = HashMap::new();
    for (i, (_, d)) in index.iter().enumerate() {
        if scores[i].is_finite() {
            by_date.entry(*d).or_default().push((i, scores[i]));
        }
    }
    let mut out = vec![f64::NAN; scores.len()];
    for pairs in by_date.values_mut() {
        stockcast_features::stats::mid_rank_percentiles(pairs, |row, pct| out[row] = pct);
    }
    out
}

impl Ensemble {
    pub(crate) fn load(dir: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(dir.join("ensemble.json"))
            .map_err(|e| Error::artifact(dir, format!("ensemble.json: {e}")))?;
        let weights: Vec<f64> =
            serde_json::from_str(&text).map_err(|e| Error::artifact(dir, format!("ensemble.json: {e}")))?;
        let members = (0..weights.len())
            .map(|i| TrainedModel::load(&dir.join(format!("member_{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { members, weights })
    }
}

impl Model for Ensemble {
    fn predict_rows(&self, data: &Dataset) -> Result<Vec<f64>> {
        let n = data.len();
        let mut sum = vec![0.0; n];
        let mut wsum = vec![0.0; n];
        for (m, w) in self.members.iter().zip(&self.weights) {
            let ranks = rank_normalise(&data.matrix.index, &m.model.predict_rows(data)?);
            for i in 0..n {
                if ranks[i].is_finite() {
                    sum[i] += w * ranks[i];
                    wsum[i] += w;
                }
            }
        }
        Ok(sum.iter().zip(&wsum).map(|(s, w)| if *w > 0.0 { s / w } else { f64::NAN }).collect())
    }

    fn save_files(&self, dir: &Path) -> Result<BTreeMap<String, serde_json::Value>> {
        for (i, m) in self.members.iter().enumerate() {
            m.save(&dir.join(format!("member_{i}")), &[], Replace::Own)?;
        }
        let json = serde_json::to_vec(&self.weights).map_err(|e| Error::Data(e.to_string()))?;
        std::fs::write(dir.join("ensemble.json"), json).map_err(|e| Error::io(dir.join("ensemble.json"), e))?;
        Ok(BTreeMap::new())
    }
}
