//! The LSTM's configuration: loss, device, sizes, training schedule, and its checks.

use super::{
    Dataset, Deserialize, Device, Error, LstmModel, Model, ModelKind, ModelMeta, Path, Result, Rows, Serialize, fit,
};

/// Training loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// Mean squared error.
    #[default]
    Mse,
    /// Huber loss (quadratic within `huber_delta` standard deviations of the label, linear beyond).
    Huber,
}

/// Where the network runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// burn's flex CPU backend.
    #[default]
    Cpu,
    /// CUDA (needs the `cuda` cargo feature and an NVIDIA GPU).
    Cuda,
}

/// Parameters of the LSTM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LstmConfig {
    /// Trading days per input sequence.
    #[serde(default = "default_lookback")]
    pub lookback: usize,
    /// Hidden units per layer.
    #[serde(default = "default_hidden")]
    pub hidden: usize,
    /// Stacked LSTM layers.
    #[serde(default = "default_layers")]
    pub layers: usize,
    /// Dropout after each LSTM layer while training.
    #[serde(default)]
    pub dropout: f64,
    /// Maximum epochs.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Sequences per mini-batch.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Adam learning rate.
    #[serde(default = "default_lr")]
    pub learning_rate: f64,
    /// Adam weight decay (L2), 0 for none.
    #[serde(default)]
    pub weight_decay: f64,
    /// Loss on the standardised label.
    #[serde(default)]
    pub loss: LossKind,
    /// Huber threshold in label standard deviations.
    #[serde(default = "default_delta")]
    pub huber_delta: f64,
    /// Stop when the validation loss has not improved for this many epochs (0: no early stopping, no validation).
    #[serde(default = "default_patience")]
    pub patience: usize,
    /// Train on at most this many of the most recent labelled rows (0: all).
    #[serde(default)]
    pub max_train_rows: usize,
    /// Where to run.
    #[serde(default)]
    pub device: DeviceKind,
}

pub(super) fn default_lookback() -> usize {
    20
}
pub(super) fn default_hidden() -> usize {
    32
}
pub(super) fn default_layers() -> usize {
    1
}
pub(super) fn default_epochs() -> usize {
    10
}
pub(super) fn default_batch() -> usize {
    256
}
pub(super) fn default_lr() -> f64 {
    1e-3
}
pub(super) fn default_delta() -> f64 {
    1.0
}
pub(super) fn default_patience() -> usize {
    3
}

impl LstmConfig {
    /// Checks every parameter (see [`ModelKind::validate`]).
    pub(crate) fn check(&self) -> Result<()> {
        let err = |m: String| Err(Error::Config(format!("lstm: {m}")));
        for (name, v) in [
            ("lookback", self.lookback),
            ("hidden", self.hidden),
            ("layers", self.layers),
            ("epochs", self.epochs),
            ("batch_size", self.batch_size),
        ] {
            if v == 0 {
                return err(format!("{name} must be at least 1"));
            }
        }
        if self.lookback > 1000 || self.hidden > 4096 || self.layers > 8 {
            return err("lookback ≤ 1000, hidden ≤ 4096 and layers ≤ 8 please".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return err(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return err(format!("learning_rate must be positive, got {}", self.learning_rate));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return err(format!("weight_decay must be ≥ 0, got {}", self.weight_decay));
        }
        if !(self.huber_delta > 0.0 && self.huber_delta.is_finite()) {
            return err(format!("huber_delta must be positive, got {}", self.huber_delta));
        }
        if self.device == DeviceKind::Cuda && !cfg!(feature = "cuda") {
            return err("device = \"cuda\" needs stockcast built with `--features cuda`".into());
        }
        Ok(())
    }

    pub(super) fn device(&self) -> Device {
        match self.device {
            DeviceKind::Cpu => Device::flex(),
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda => Device::cuda(0),
            #[cfg(not(feature = "cuda"))]
            DeviceKind::Cuda => unreachable!("validate refuses cuda without the feature"),
        }
    }
}

impl ModelKind for LstmConfig {
    fn name(&self) -> &'static str {
        "lstm"
    }
    fn check_params(&self) -> Result<()> {
        self.check()
    }
    fn fit(&self, train: &Dataset, valid: Option<&Dataset>, seed: u64) -> Result<Box<dyn Model>> {
        Ok(Box::new(fit(self, Rows::all(train), valid.map(Rows::all), seed)?))
    }
    /// In place when the rows' dataset carries a context (a walk-forward's does): a fold's training rows are
    /// most of the matrix, and a copy of them (features, labels, keys) cost ~3 GB per fit on 5,000 × 2,520.
    /// Without one, a copy: the sequences of a copy read only its own rows.
    fn fit_rows(&self, train: Rows<'_>, valid: Option<Rows<'_>>, seed: u64) -> Result<Box<dyn Model>> {
        let in_place = |r: &Rows<'_>| r.positions.is_none() || r.data.context.is_some();
        if in_place(&train) && valid.as_ref().is_none_or(in_place) {
            return Ok(Box::new(fit(self, train, valid, seed)?));
        }
        let valid = valid.map(|v| v.materialize());
        self.fit(&train.materialize(), valid.as_ref(), seed)
    }
    fn load(&self, dir: &Path, _meta: &ModelMeta) -> Result<Box<dyn Model>> {
        Ok(Box::new(LstmModel::load(dir)?))
    }
    fn uses_sequences(&self) -> bool {
        true
    }
    fn uses_validation(&self) -> bool {
        self.patience > 0
    }
    fn history_days(&self, warmup: usize) -> Option<usize> {
        Some(warmup + self.lookback)
    }
    /// In place: the labelled rows' positions (8 bytes a row), then the rows kept (`max_train_rows`) with their
    /// keys and standardised labels (20 bytes each); mini-batches are a few MB.
    fn fit_bytes(&self, rows: usize, _features: usize) -> u64 {
        let kept = if self.max_train_rows > 0 { rows.min(self.max_train_rows) } else { rows };
        8 * rows as u64 + 20 * kept as u64
    }
}
