//! `rule`: naive baselines with the same interface, so every report can compare ML with a rule.
//! They need no fitting and read the close history up to each row's date (never after it).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::{Model, ModelKind, ModelMeta};

/// A rule (TOML: `kind = "rule"`, `rule = "sma_cross"`, parameters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleConfig {
    /// Always long: score 1.
    BuyAndHold,
    /// SMA crossover: `SMA(fast) / SMA(slow) - 1` of the closes up to the date (> 0: fast above slow, long).
    SmaCross {
        /// Fast window (trading days).
        fast: usize,
        /// Slow window (trading days).
        slow: usize,
    },
    /// Momentum: the past `lookback`-day return `close[t] / close[t - lookback] - 1`.
    Momentum {
        /// Look-back in trading days.
        lookback: usize,
    },
}

impl RuleConfig {
    /// Checks every parameter (see [`ModelKind::validate`]).
    pub(crate) fn check(&self) -> Result<()> {
        match self {
            Self::SmaCross { fast, slow } if *fast == 0 || fast >= slow => {
                Err(Error::Config(format!("sma_cross needs 0 < fast < slow, got fast {fast}, slow {slow}")))
            }
            Self::Momentum { lookback: 0 } => Err(Error::Config("momentum lookback must be at least 1".into())),
            _ => Ok(()),
        }
    }

    /// The rule's score from closes up to the date (last element = the date's close); NaN with too little history.
    pub fn score(&self, closes: &[f64]) -> f64 {
        let n = closes.len();
        let mean = |w: usize| closes[n - w..].iter().sum::<f64>() / w as f64;
        match self {
            Self::BuyAndHold => 1.0,
            Self::SmaCross { fast, slow } => {
                if n < *slow {
                    f64::NAN
                } else {
                    mean(*fast) / mean(*slow) - 1.0
                }
            }
            Self::Momentum { lookback } => {
                if n <= *lookback {
                    f64::NAN
                } else {
                    closes[n - 1] / closes[n - 1 - lookback] - 1.0
                }
            }
        }
    }
}

impl ModelKind for RuleConfig {
    fn name(&self) -> &'static str {
        "rule"
    }
    fn check_params(&self) -> Result<()> {
        self.check()
    }
    fn fit(&self, _train: &Dataset, _valid: Option<&Dataset>, _seed: u64) -> Result<Box<dyn Model>> {
        Ok(Box::new(self.clone()))
    }
    fn load(&self, _dir: &Path, _meta: &ModelMeta) -> Result<Box<dyn Model>> {
        Ok(Box::new(self.clone()))
    }
    fn learns(&self) -> bool {
        false
    }
    fn uses_features(&self) -> bool {
        false
    }
    fn history_days(&self, _warmup: usize) -> Option<usize> {
        None
    }
    fn score_is_label(&self) -> bool {
        false
    }
}

impl Model for RuleConfig {
    fn predict_rows(&self, data: &Dataset) -> Result<Vec<f64>> {
        // Rows come grouped by symbol: look each symbol's history up once per run of its rows.
        let mut current: Option<(&str, Option<&crate::data::SymbolHistory>)> = None;
        Ok(data
            .matrix
            .index
            .iter()
            .map(|(s, d)| {
                let h = match current {
                    Some((name, h)) if name == &**s => h,
                    _ => {
                        let h = data.history.get(s);
                        current = Some((&**s, h));
                        h
                    }
                };
                h.map_or(f64::NAN, |h| self.score(h.until(*d)))
            })
            .collect())
    }

    fn save_files(&self, _dir: &Path) -> Result<BTreeMap<String, serde_json::Value>> {
        // The rule is fully described by its config in model.json.
        Ok(BTreeMap::new())
    }
}
