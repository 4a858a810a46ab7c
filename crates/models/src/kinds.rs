//! The list of model kinds, in one place: [`ModelConfig`] (the serde entry point, TOML `kind = "…"`) is generated
//! from it, with its checks ([`Params`]) and the capabilities every caller asks about. Adding a kind is a file
//! implementing [`ModelKind`] and one line here.

use std::path::Path;

use serde::{Deserialize, Serialize};
use stockcast_features::{Checked, Params};

use crate::error::{Error, Result};
use crate::model::ModelKind;
use crate::{ensemble, forecast, gbm, linear, lstm, rules};

/// Declares [`ModelConfig`] from one list of kinds: each line is a variant (its TOML `kind` is the snake-case
/// variant name) and the type implementing [`ModelKind`] for it.
macro_rules! model_kinds {
    ($($(#[$doc:meta])* $variant:ident($ty:ty),)+) => {
        /// Which model to train, with its parameters (TOML: `kind = "gbm"` plus the kind's fields).
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        pub enum ModelConfig {
            $($(#[$doc])* $variant($ty),)+
        }

        impl ModelConfig {
            /// The kind's implementation.
            pub fn as_kind(&self) -> &dyn ModelKind {
                match self {
                    $(Self::$variant(c) => c,)+
                }
            }
        }
    };
}

model_kinds! {
    /// XGBoost gradient-boosted trees.
    Gbm(gbm::GbmConfig),
    /// A burn LSTM over the last `lookback` days of normalised features per symbol.
    Lstm(lstm::LstmConfig),
    /// Ridge / elastic net (linfa) on standardised features.
    Linear(linear::LinearConfig),
    /// Per-symbol Prophet-style or ETS forecasts of the log close.
    Forecast(forecast::ForecastConfig),
    /// A rule baseline (no fitting).
    Rule(rules::RuleConfig),
    /// Mean of per-date rank-normalised member scores.
    Ensemble(ensemble::EnsembleConfig),
}

impl ModelConfig {
    /// The kind's name.
    pub fn kind(&self) -> &'static str {
        self.as_kind().name()
    }

    /// Parses and checks a TOML config.
    pub fn from_toml(text: &str) -> Result<Checked<Self>> {
        let cfg: Self = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        Checked::new(cfg)
    }

    /// Reads and checks a config file.
    pub fn from_file(path: &Path) -> Result<Checked<Self>> {
        let text = stockcast_features::io::read_text(path)?;
        Self::from_toml(&text).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// See [`ModelKind::uses_sequences`].
    pub fn uses_sequences(&self) -> bool {
        self.as_kind().uses_sequences()
    }

    /// See [`ModelKind::uses_features`].
    pub fn uses_features(&self) -> bool {
        self.as_kind().uses_features()
    }

    /// See [`ModelKind::learns`].
    pub fn learns(&self) -> bool {
        self.as_kind().learns()
    }

    /// See [`ModelKind::uses_validation`].
    pub fn uses_validation(&self) -> bool {
        self.as_kind().uses_validation()
    }

    /// See [`ModelKind::history_days`].
    pub fn history_days(&self, warmup: usize) -> Option<usize> {
        self.as_kind().history_days(warmup)
    }

    /// The feature rows scoring a date reads beside its own: none without sequences; with them, the rows before
    /// it that [`ModelKind::history_days`] states without a feature warm-up (the look-back), else all of them.
    pub fn day_context(&self) -> crate::DayContext {
        if !self.uses_sequences() {
            return crate::DayContext::None;
        }
        self.history_days(0).map_or(crate::DayContext::All, |n| crate::DayContext::Rows(n.max(1)))
    }

    /// See [`ModelKind::fit_bytes`].
    pub fn fit_bytes(&self, rows: usize, features: usize) -> u64 {
        self.as_kind().fit_bytes(rows, features)
    }

    /// See [`ModelKind::score_is_label`].
    pub fn score_is_label(&self) -> bool {
        self.as_kind().score_is_label()
    }
}

/// Every parameter of the kind, checked once where a configuration enters (a file, a backtest's inline model,
/// a stored artifact): [`fit`] takes the [`Checked`] configuration and never checks again.
impl Params for ModelConfig {
    type Error = Error;
    fn check(&self) -> Result<()> {
        self.as_kind().check_params()
    }
}
