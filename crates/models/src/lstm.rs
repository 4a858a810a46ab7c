//! `lstm`: a burn LSTM over the last `lookback` trading days of normalised features per symbol, a linear head on
//! the last hidden state, MSE or Huber loss on the standardised label, Adam, shuffled mini-batches, early stopping
//! on the validation loss (the best epoch's weights are kept).
//!
//! The sequence of a row `(symbol, t)` is that symbol's feature rows at its last `lookback` dates ≤ t, taken from
//! the dataset's [`context`](crate::Dataset::context) (all feature rows known, also dates without a label) or,
//! without one, from the dataset's own rows; shorter histories are left-padded with zeros (the training mean).
//! Feature and label statistics are fitted on the training rows only and saved with the weights (`lstm.bpk`,
//! burnpack) and the network config (`lstm.json`).
//!
//! Each layer fuses its four gates: one input projection and one `[batch, hidden] × [hidden, 4·hidden]` matmul per
//! step. Prediction reads the weights out of burn once and runs the same network in ndarray matmuls and vectorised
//! loops on both cores ([`Inference`]), projecting each distinct context row once and gathering the windows.
//!
//! Runs on burn's flex CPU backend; the `cuda` cargo feature adds `device = "cuda"`. burn's random generator is
//! process-wide, so fits and loads hold a lock: with the same data, config and seed a fit is bit-identical.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use burn::module::Module;
use burn::nn::loss::{HuberLossConfig, MseLoss, Reduction};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor, TensorData};
use chrono::NaiveDate;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use stockcast_features::FeatureMatrix;

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::{Model, ModelKind, ModelMeta};

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

fn default_lookback() -> usize {
    20
}
fn default_hidden() -> usize {
    32
}
fn default_layers() -> usize {
    1
}
fn default_epochs() -> usize {
    10
}
fn default_batch() -> usize {
    256
}
fn default_lr() -> f64 {
    1e-3
}
fn default_delta() -> f64 {
    1.0
}
fn default_patience() -> usize {
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

    fn device(&self) -> Device {
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
    fn validate(&self) -> Result<()> {
        self.check()
    }
    fn fit(&self, train: &Dataset, valid: Option<&Dataset>, seed: u64) -> Result<Box<dyn Model>> {
        Ok(Box::new(fit(self, train, valid, seed)?))
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
}

/// One LSTM layer with its four gates fused: per step one `x_t·W_x + b` and one `h·W_h`
/// (`[batch, hidden] × [hidden, 4·hidden]`) give all four gates, laid out `[input, forget, output | cell]`.
///
/// One sigmoid covers all four: the cell candidate is `tanh(z) = 2σ(2z) − 1`, with its columns holding `2z`
/// (a reparametrisation of the standard LSTM, initialised accordingly), and the output `o·tanh(c)` uses the same
/// identity. burn's CPU `tanh` calls libm's scalar `tanhf` (through `expm1f`), three times the cost of its sigmoid:
/// it was a third of the training time. Otherwise initialised like PyTorch's `nn.LSTM` (uniform in ±1/√hidden).
#[derive(Module, Debug)]
struct FusedLstm {
    /// `[inputs, 4·hidden]` with the bias.
    input: Linear,
    /// `[hidden, 4·hidden]`, no bias.
    recurrent: Linear,
}

/// `t` with its last dimension scaled by `scale`, as a fresh leaf (trainable where the device records gradients).
fn scaled_leaf<const D: usize>(t: Tensor<D>, scale: &Tensor<1>) -> Tensor<D> {
    let trainable = t.is_require_grad();
    let dims = t.dims();
    let t = (t * scale.clone().unsqueeze::<D>().expand(dims)).detach();
    if trainable { t.require_grad() } else { t }
}

/// `tanh(x)` as `2σ(2x) − 1` (see [`FusedLstm`]).
fn tanh_via_sigmoid<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    sigmoid(x.mul_scalar(2.0)).mul_scalar(2.0).sub_scalar(1.0)
}

impl FusedLstm {
    fn new(inputs: usize, hidden: usize, device: &Device) -> Self {
        let k = 1.0 / (hidden as f64).sqrt();
        let init = Initializer::Uniform { min: -k, max: k };
        let mut input = LinearConfig::new(inputs, 4 * hidden).with_initializer(init.clone()).init(device);
        let mut recurrent = LinearConfig::new(hidden, 4 * hidden).with_bias(false).with_initializer(init).init(device);
        // The cell columns hold 2z: twice the standard initialisation.
        let scale: Vec<f32> = (0..4 * hidden).map(|c| if c >= 3 * hidden { 2.0 } else { 1.0 }).collect();
        let scale = Tensor::<1>::from_data(TensorData::new(scale, [4 * hidden]), device);
        input.weight = input.weight.map(|w| scaled_leaf(w, &scale));
        recurrent.weight = recurrent.weight.map(|w| scaled_leaf(w, &scale));
        input.bias = input.bias.take().map(|b| b.map(|b| scaled_leaf(b, &scale)));
        Self { input, recurrent }
    }

    /// Runs the recurrence from a zero state over the projected inputs of each step (`x_t·W_x + b`,
    /// `[batch, 4·hidden]` each); the hidden state of every step when `all`, else of the last step only.
    fn recur(&self, projected: impl Iterator<Item = Tensor<2>>, all: bool) -> Vec<Tensor<2>> {
        let w_h = self.recurrent.weight.val();
        let (mut h, mut c): (Option<Tensor<2>>, Option<Tensor<2>>) = (None, None);
        let mut outputs = Vec::new();
        for mut gates in projected {
            let hidden = gates.dims()[1] / 4;
            if let Some(h) = &h {
                gates = gates + h.clone().matmul(w_h.clone());
            }
            let s = sigmoid(gates);
            let input_gate = s.clone().narrow(1, 0, hidden);
            let output_gate = s.clone().narrow(1, 2 * hidden, hidden);
            let candidate = s.clone().narrow(1, 3 * hidden, hidden).mul_scalar(2.0).sub_scalar(1.0);
            let cell = match c {
                Some(c) => s.narrow(1, hidden, hidden) * c + input_gate * candidate,
                None => input_gate * candidate,
            };
            let next = output_gate * tanh_via_sigmoid(cell.clone());
            if all {
                outputs.push(next.clone());
            }
            (h, c) = (Some(next), Some(cell));
        }
        if !all {
            outputs.extend(h);
        }
        outputs
    }
}

/// The network: stacked fused LSTMs, dropout between them, a linear head on the last step's hidden state.
#[derive(Module, Debug)]
struct Net {
    layers: Vec<FusedLstm>,
    dropout: Dropout,
    head: Linear,
}

impl Net {
    fn new(cfg: &LstmConfig, inputs: usize, device: &Device) -> Self {
        let layers = (0..cfg.layers)
            .map(|i| FusedLstm::new(if i == 0 { inputs } else { cfg.hidden }, cfg.hidden, device))
            .collect();
        Self {
            layers,
            dropout: DropoutConfig::new(cfg.dropout).init(),
            head: LinearConfig::new(cfg.hidden, 1).init(device),
        }
    }

    /// `[batch, lookback, features]` → `[batch]`. Each step's input is sliced from the data (no gradient flows
    /// into it) and projected on its own: slicing one projection of all steps would cost a full-size zero tensor
    /// per step in the backward pass.
    fn forward(&self, x: &Tensor<3>) -> Tensor<1> {
        let [batch, steps, features] = x.dims();
        let first = &self.layers[0].input;
        self.forward_projected((0..steps).map(|t| first.forward(x.clone().narrow(1, t, 1).reshape([batch, features]))))
    }

    /// As [`Net::forward`], from the first layer's projected inputs of each step (`[batch, 4·hidden]`).
    fn forward_projected(&self, projected: impl Iterator<Item = Tensor<2>>) -> Tensor<1> {
        let last_layer = self.layers.len() - 1;
        let mut h: Vec<Tensor<2>> = self.layers[0].recur(projected, last_layer > 0);
        for (i, layer) in self.layers.iter().enumerate().skip(1) {
            let inputs: Vec<Tensor<2>> = h.into_iter().map(|x| layer.input.forward(self.dropout.forward(x))).collect();
            h = layer.recur(inputs.into_iter(), i < last_layer);
        }
        let last = h.pop().expect("a sequence has at least one step");
        let batch = last.dims()[0];
        self.head.forward(self.dropout.forward(last)).reshape([batch])
    }
}

/// burn's random generator is process-wide: whoever seeds and draws from it holds this.
fn burn_rng_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The weight layout written now: 2, fused gates ([`FusedLstm`]).
const NETWORK_FORMAT: u32 = 2;

fn old_network_format() -> u32 {
    1
}

/// What is saved beside the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Saved {
    /// Layout of the weights in `lstm.bpk` ([`NETWORK_FORMAT`]; absent: 1, burn's four-gate `Lstm` module).
    #[serde(default = "old_network_format")]
    network: u32,
    config: LstmConfig,
    inputs: usize,
    /// Training means and standard deviations per feature.
    means: Vec<f64>,
    stds: Vec<f64>,
    /// Training label mean and standard deviation.
    y_mean: f64,
    y_std: f64,
    /// Epochs run and the epoch whose weights were kept (1-based), with its losses.
    epochs_run: usize,
    best_epoch: usize,
    train_loss: Vec<f64>,
    valid_loss: Vec<f64>,
}

/// A fitted LSTM.
#[derive(Debug)]
pub struct LstmModel {
    saved: Saved,
    net: Net,
    /// The same network's weights for prediction without burn (see [`Inference`]).
    infer: Inference,
}

/// Per symbol, the context rows in date order.
struct SeqIndex<'a> {
    matrix: &'a FeatureMatrix,
    by_symbol: HashMap<&'a str, Vec<(NaiveDate, usize)>>,
}

impl<'a> SeqIndex<'a> {
    fn new(matrix: &'a FeatureMatrix) -> Self {
        let mut by_symbol: HashMap<&str, Vec<(NaiveDate, usize)>> = HashMap::new();
        for (i, (s, d)) in matrix.index.iter().enumerate() {
            by_symbol.entry(s.as_str()).or_default().push((*d, i));
        }
        for rows in by_symbol.values_mut() {
            rows.sort_unstable();
        }
        Self { matrix, by_symbol }
    }

    /// The context rows of the sequence of `(symbol, date)`: its last `lookback` rows dated ≤ the date, and how
    /// many zero steps pad them on the left.
    fn window(&self, key: &(String, NaiveDate), lookback: usize) -> (usize, &[(NaiveDate, usize)]) {
        let Some(rows) = self.by_symbol.get(key.0.as_str()) else { return (lookback, &[]) };
        let end = rows.partition_point(|(d, _)| *d <= key.1);
        let start = end.saturating_sub(lookback);
        (lookback - (end - start), &rows[start..end])
    }

    /// Writes context row `row` normalised by the training statistics (NaN → 0, clipped at ±10σ) into `out`.
    fn normalise(&self, row: usize, saved: &Saved, out: &mut [f32]) {
        for (j, (v, slot)) in self.matrix.x.row(row).iter().zip(out).enumerate() {
            let z = (f64::from(*v) - saved.means[j]) / saved.stds[j];
            *slot = if z.is_finite() { z.clamp(-10.0, 10.0) as f32 } else { 0.0 };
        }
    }

    /// Writes the normalised sequence of `(symbol, date)` (`lookback × features`) into `out`.
    fn fill(&self, key: &(String, NaiveDate), lookback: usize, saved: &Saved, out: &mut [f32]) {
        out.fill(0.0);
        let (offset, rows) = self.window(key, lookback);
        let f = saved.inputs;
        for (k, &(_, row)) in rows.iter().enumerate() {
            self.normalise(row, saved, &mut out[(offset + k) * f..(offset + k + 1) * f]);
        }
    }
}

/// Rows scored per forward pass when predicting.
const PREDICT_CHUNK: usize = 4096;

/// Sequences of `keys` as one `[n, lookback, features]` buffer.
fn sequences(index: &SeqIndex<'_>, keys: &[&(String, NaiveDate)], saved: &Saved) -> Vec<f32> {
    let per = saved.config.lookback * saved.inputs;
    let mut buf = vec![0.0f32; keys.len() * per];
    for (key, chunk) in keys.iter().zip(buf.chunks_mut(per)) {
        index.fill(key, saved.config.lookback, saved, chunk);
    }
    buf
}

fn tensor3(buf: Vec<f32>, n: usize, saved: &Saved, device: &Device) -> Tensor<3> {
    Tensor::from_data(TensorData::new(buf, [n, saved.config.lookback, saved.inputs]), device)
}

fn to_vec(t: &Tensor<1>) -> Result<Vec<f32>> {
    t.to_data().try_to_vec::<f32>().map_err(|e| Error::Data(format!("lstm: reading a tensor: {e:?}")))
}

/// Labelled rows of `data` (indices, standardised labels), the most recent `max` when `max > 0`.
fn labelled(data: &Dataset, max: usize, saved: Option<&Saved>) -> Result<(Vec<usize>, Vec<f32>)> {
    let y = data.labels()?;
    let mut rows: Vec<usize> = (0..data.len()).filter(|&i| y[i].is_finite()).collect();
    if max > 0 && rows.len() > max {
        rows.sort_by_key(|&i| data.matrix.index[i].1);
        rows.drain(..rows.len() - max);
        rows.sort_unstable();
    }
    let (m, s) = saved.map_or((0.0, 1.0), |s| (s.y_mean, s.y_std));
    let ys = rows.iter().map(|&i| ((f64::from(y[i]) - m) / s) as f32).collect();
    Ok((rows, ys))
}

/// Mean and population sd (`ddof = 0`) of the finite values; (0, 1) when there are none, sd 1 when constant.
fn mean_std(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let finite: Vec<f64> = values.filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return (0.0, 1.0);
    }
    let (m, sd) = (stockcast_features::stats::mean(&finite), stockcast_features::stats::std(&finite, 0));
    (m, if sd > 1e-12 && sd.is_finite() { sd } else { 1.0 })
}

fn loss(cfg: &LstmConfig, pred: Tensor<1>, target: Tensor<1>) -> Tensor<1> {
    match cfg.loss {
        LossKind::Mse => MseLoss::new().forward(pred, target, Reduction::Mean),
        LossKind::Huber => HuberLossConfig::new(cfg.huber_delta as f32).init().forward(pred, target, Reduction::Mean),
    }
}

/// Mean loss of `net` (in evaluation mode) over `keys`, in batches.
fn eval_loss(
    net: &Net,
    index: &SeqIndex<'_>,
    keys: &[&(String, NaiveDate)],
    ys: &[f32],
    saved: &Saved,
    device: &Device,
) -> Result<f64> {
    let mut total = 0.0;
    for (kb, yb) in keys.chunks(saved.config.batch_size * 4).zip(ys.chunks(saved.config.batch_size * 4)) {
        let x = tensor3(sequences(index, kb, saved), kb.len(), saved, device);
        let target = Tensor::from_data(TensorData::new(yb.to_vec(), [yb.len()]), device);
        let l = to_vec(&loss(&saved.config, net.forward(&x), target))?;
        total += f64::from(l[0]) * kb.len() as f64;
    }
    Ok(total / keys.len().max(1) as f64)
}

pub(crate) fn fit(cfg: &LstmConfig, train: &Dataset, valid: Option<&Dataset>, seed: u64) -> Result<LstmModel> {
    let inputs = train.matrix.feature_names.len();
    if inputs == 0 {
        return Err(Error::Data("lstm: the data has no features".into()));
    }
    let (rows, _) = labelled(train, cfg.max_train_rows, None)?;
    if rows.len() < 2 {
        return Err(Error::Data(format!("lstm: {} labelled training rows; need at least 2", rows.len())));
    }
    // Statistics from the training rows only.
    let x = &train.matrix.x;
    let (mut means, mut stds) = (Vec::with_capacity(inputs), Vec::with_capacity(inputs));
    for j in 0..inputs {
        let (m, s) = mean_std(rows.iter().map(|&i| f64::from(x[[i, j]])));
        means.push(m);
        stds.push(s);
    }
    let y = train.labels()?;
    let (y_mean, y_std) = mean_std(rows.iter().map(|&i| f64::from(y[i])));
    let mut saved = Saved {
        network: NETWORK_FORMAT,
        config: cfg.clone(),
        inputs,
        means,
        stds,
        y_mean,
        y_std,
        epochs_run: 0,
        best_epoch: 0,
        train_loss: Vec::new(),
        valid_loss: Vec::new(),
    };
    let (rows, ys) = labelled(train, cfg.max_train_rows, Some(&saved))?;
    let train_ctx = train.context.as_deref().unwrap_or(&train.matrix);
    let train_index = SeqIndex::new(train_ctx);
    let train_keys: Vec<&(String, NaiveDate)> = rows.iter().map(|&i| &train.matrix.index[i]).collect();
    let valid = valid.filter(|v| !v.is_empty() && cfg.patience > 0);
    let valid_parts = valid
        .map(|v| -> Result<_> {
            let (vrows, vys) = labelled(v, 0, Some(&saved))?;
            let keys: Vec<&(String, NaiveDate)> = vrows.iter().map(|&i| &v.matrix.index[i]).collect();
            Ok((SeqIndex::new(v.context.as_deref().unwrap_or(&v.matrix)), keys, vys))
        })
        .transpose()?
        .filter(|(_, keys, _)| !keys.is_empty());

    let base = cfg.device();
    let device = base.clone().autodiff();
    let _guard = burn_rng_lock();
    device.seed(seed);
    let mut net = Net::new(cfg, inputs, &device);
    let mut adam = AdamConfig::new();
    if cfg.weight_decay > 0.0 {
        adam = adam.with_weight_decay(Some(burn::optim::decay::WeightDecayConfig::new(cfg.weight_decay as f32)));
    }
    let mut optim = adam.init();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..train_keys.len()).collect();
    let (mut best, mut best_net, mut since_best) = (f64::INFINITY, None, 0usize);
    let bar = crate::progress::epochs(cfg.epochs as u64);
    for epoch in 1..=cfg.epochs {
        order.shuffle(&mut rng);
        let (mut sum, mut count) = (0.0, 0usize);
        for batch in order.chunks(cfg.batch_size) {
            let keys: Vec<_> = batch.iter().map(|&i| train_keys[i]).collect();
            let target: Vec<f32> = batch.iter().map(|&i| ys[i]).collect();
            let x = tensor3(sequences(&train_index, &keys, &saved), keys.len(), &saved, &device);
            let target = Tensor::from_data(TensorData::new(target, [batch.len()]), &device);
            let l = loss(cfg, net.forward(&x), target);
            sum += f64::from(to_vec(&l)?[0]) * batch.len() as f64;
            count += batch.len();
            let grads = GradientsParams::from_grads(l.backward(), &net);
            net = optim.step(cfg.learning_rate, net, grads);
        }
        let train_loss = sum / count as f64;
        if !train_loss.is_finite() {
            return Err(Error::Data(format!(
                "lstm: training loss is {train_loss} in epoch {epoch}; lower learning_rate or check the features"
            )));
        }
        saved.train_loss.push(train_loss);
        saved.epochs_run = epoch;
        let msg = if let Some((index, keys, vys)) = &valid_parts {
            let eval = net.valid();
            let v = eval_loss(&eval, index, keys, vys, &saved, &base)?;
            saved.valid_loss.push(v);
            if v < best {
                (best, since_best) = (v, 0);
                saved.best_epoch = epoch;
                best_net = Some(eval);
            } else {
                since_best += 1;
            }
            format!("loss {train_loss:.4}, valid {v:.4}")
        } else {
            saved.best_epoch = epoch;
            format!("loss {train_loss:.4}")
        };
        tracing::info!(epoch, train_loss, valid_loss = saved.valid_loss.last(), "lstm epoch");
        bar.set_message(msg);
        bar.inc(1);
        if valid_parts.is_some() && since_best >= cfg.patience {
            break;
        }
    }
    bar.finish_and_clear();
    let net = best_net.unwrap_or_else(|| net.valid());
    let infer = Inference::of(&net)?;
    Ok(LstmModel { saved, net, infer })
}

/// `e^x` for f32 in plain arithmetic that compilers vectorise (Cephes' `expf`: `x = n·ln 2 + r`, a degree-6
/// polynomial in r, `2^n` built in the exponent bits; no branch, no library call, no float-to-int conversion);
/// relative error below 2e-7 on the clamped range.
#[inline]
fn exp_approx(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2^23: adding it rounds to an integer, held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = if x < -87.3 { -87.3 } else { x };
    let x = if x > 88.0 { 88.0 } else { x };
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // n + 127 from the low bits of t, shifted into the exponent field: 2^n.
    let two_n = f32::from_bits(t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23);
    e * two_n
}

#[inline]
fn sigmoid_approx(x: f32) -> f32 {
    1.0 / (1.0 + exp_approx(-x))
}

/// One layer's weights as plain arrays: `[inputs, 4·hidden]`, `[4·hidden]`, `[hidden, 4·hidden]`.
#[derive(Debug)]
struct LayerWeights {
    input: ndarray::Array2<f32>,
    bias: ndarray::Array1<f32>,
    recurrent: ndarray::Array2<f32>,
}

/// Prediction without burn: the fitted network's weights read out once and its forward pass in ndarray matmuls
/// (matrixmultiply's kernels) and element-wise loops that vectorise. burn's CPU backend evaluates a sigmoid as one
/// scalar libm `expf` per element, most of the prediction time; this agrees with burn's forward pass to float
/// rounding (tested) and is what `predict` runs.
#[derive(Debug)]
struct Inference {
    layers: Vec<LayerWeights>,
    head: ndarray::Array1<f32>,
    head_bias: f32,
}

fn values(t: &Tensor<2>) -> Result<ndarray::Array2<f32>> {
    let [r, c] = t.dims();
    let v = t.to_data().try_to_vec::<f32>().map_err(|e| Error::Data(format!("lstm: reading weights: {e:?}")))?;
    ndarray::Array2::from_shape_vec((r, c), v).map_err(|e| Error::Data(format!("lstm: weights: {e}")))
}

impl Inference {
    fn of(net: &Net) -> Result<Self> {
        let layers = net
            .layers
            .iter()
            .map(|l| {
                let four = l.recurrent.weight.dims()[1];
                let bias = match &l.input.bias {
                    Some(b) => values(&b.val().reshape([1, four]))?.row(0).to_owned(),
                    None => ndarray::Array1::zeros(four),
                };
                Ok(LayerWeights {
                    input: values(&l.input.weight.val())?,
                    bias,
                    recurrent: values(&l.recurrent.weight.val())?,
                })
            })
            .collect::<Result<_>>()?;
        let head = values(&net.head.weight.val())?.column(0).to_owned();
        let head_bias = match &net.head.bias {
            Some(b) => values(&b.val().reshape([1, 1]))?[[0, 0]],
            None => 0.0,
        };
        Ok(Self { layers, head, head_bias })
    }

    /// Standardised scores of the sequences of `keys`.
    fn predict(&self, index: &SeqIndex<'_>, keys: &[&(String, NaiveDate)], saved: &Saved) -> Vec<f32> {
        let (lookback, f) = (saved.config.lookback, saved.inputs);
        let n = keys.len();
        // Each distinct context row normalised and projected once; slot 0 is the zero row of the padding.
        let mut slot: HashMap<usize, usize> = HashMap::new();
        let mut rows = vec![0.0f32; f];
        let mut gather: Vec<usize> = Vec::with_capacity(n * lookback);
        for key in keys {
            let (offset, window) = index.window(key, lookback);
            gather.extend(std::iter::repeat_n(0, offset));
            for &(_, row) in window {
                let next = slot.len() + 1;
                gather.push(*slot.entry(row).or_insert_with(|| {
                    let at = rows.len();
                    rows.resize(at + f, 0.0);
                    index.normalise(row, saved, &mut rows[at..]);
                    next
                }));
            }
        }
        let unique = ndarray::Array2::from_shape_vec((rows.len() / f, f), rows).expect("rows are whole");
        let first = &self.layers[0];
        let projected = unique.dot(&first.input) + &first.bias;
        let four = projected.ncols();
        // Layer 0's input at step t: the projected rows of the keys' step-t context rows.
        let mut inputs: Vec<ndarray::Array2<f32>> = (0..lookback)
            .map(|t| {
                let mut x = ndarray::Array2::<f32>::zeros((n, four));
                for (k, mut row) in x.rows_mut().into_iter().enumerate() {
                    row.assign(&projected.row(gather[k * lookback + t]));
                }
                x
            })
            .collect();
        let last = self.layers.len() - 1;
        let mut h = ndarray::Array2::<f32>::zeros((n, four / 4));
        for (l, layer) in self.layers.iter().enumerate() {
            if l > 0 {
                // The previous layer's outputs, projected by this layer.
                for x in &mut inputs {
                    *x = x.dot(&layer.input) + &layer.bias;
                }
            }
            let outputs = recur(layer, &inputs, l < last);
            h = outputs.last().cloned().unwrap_or(h);
            inputs = outputs;
        }
        (h.dot(&self.head) + self.head_bias).to_vec()
    }
}

/// The recurrence of one layer from a zero state over projected step inputs (`[n, 4·hidden]` each): every step's
/// hidden state when `all`, else the last one only. Gates `[i, f, o | g]`, the cell columns holding `2z`. One
/// gate buffer for all steps: `gates = x_t + h·W_h` in place.
fn recur(layer: &LayerWeights, inputs: &[ndarray::Array2<f32>], all: bool) -> Vec<ndarray::Array2<f32>> {
    let (n, four) = inputs[0].dim();
    let hidden = four / 4;
    let mut h = ndarray::Array2::<f32>::zeros((n, hidden));
    let mut c = ndarray::Array2::<f32>::zeros((n, hidden));
    let mut gates = ndarray::Array2::<f32>::zeros((n, four));
    let mut out = Vec::new();
    for (t, x) in inputs.iter().enumerate() {
        gates.assign(x);
        if t > 0 {
            ndarray::linalg::general_mat_mul(1.0, &h, &layer.recurrent, 1.0, &mut gates);
        }
        let g_all = gates.as_slice_mut().expect("gates are row-major");
        for g in g_all.iter_mut() {
            *g = sigmoid_approx(*g);
        }
        let (cs, hs) = (c.as_slice_mut().expect("row-major"), h.as_slice_mut().expect("row-major"));
        for ((g, c), h) in g_all.chunks_exact(four).zip(cs.chunks_exact_mut(hidden)).zip(hs.chunks_exact_mut(hidden)) {
            for j in 0..hidden {
                let (i, f, o, cand) = (g[j], g[hidden + j], g[2 * hidden + j], 2.0 * g[3 * hidden + j] - 1.0);
                c[j] = f * c[j] + i * cand;
                h[j] = o * (2.0 * sigmoid_approx(2.0 * c[j]) - 1.0);
            }
        }
        if all {
            out.push(h.clone());
        }
    }
    if !all {
        out.push(h);
    }
    out
}

impl LstmModel {
    pub(crate) fn load(dir: &Path) -> Result<Self> {
        let p = dir.join("lstm.json");
        let text = std::fs::read_to_string(&p).map_err(|e| Error::artifact(dir, format!("lstm.json: {e}")))?;
        let saved: Saved = serde_json::from_str(&text).map_err(|e| Error::artifact(dir, format!("lstm.json: {e}")))?;
        saved.config.check()?;
        if saved.network != NETWORK_FORMAT {
            return Err(Error::artifact(
                dir,
                format!(
                    "lstm.json: weight layout {} was written by an older stockcast (this one reads {NETWORK_FORMAT}, \
                     fused gates); retrain the model",
                    saved.network
                ),
            ));
        }
        if saved.means.len() != saved.inputs || saved.stds.len() != saved.inputs {
            return Err(Error::artifact(dir, "lstm.json: normaliser size differs from the input size"));
        }
        let device = saved.config.device();
        let net = {
            let _guard = burn_rng_lock();
            Net::new(&saved.config, saved.inputs, &device)
        };
        let net = net
            .try_load_file(dir.join("lstm.bpk"))
            .map_err(|e| Error::artifact(dir, format!("lstm.bpk: {e:?}")))?
            .valid();
        let infer = Inference::of(&net)?;
        Ok(Self { saved, net, infer })
    }
}

impl Model for LstmModel {
    fn predict_rows(&self, data: &Dataset) -> Result<Vec<f64>> {
        if data.matrix.feature_names.len() != self.saved.inputs {
            return Err(Error::Data(format!(
                "lstm: the data has {} features, the model {}",
                data.matrix.feature_names.len(),
                self.saved.inputs
            )));
        }
        let index = SeqIndex::new(data.context.as_deref().unwrap_or(&data.matrix));
        let keys: Vec<&(String, NaiveDate)> = data.matrix.index.iter().collect();
        // Rows are independent: both halves run at once, each in chunks; the result does not depend on the split.
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).clamp(1, 2);
        let part = keys.len().div_ceil(threads).max(1);
        let scores: Vec<Vec<f32>> = std::thread::scope(|scope| {
            let handles: Vec<_> = keys
                .chunks(part)
                .map(|mine| {
                    let index = &index;
                    scope.spawn(move || {
                        mine.chunks(PREDICT_CHUNK)
                            .flat_map(|chunk| self.infer.predict(index, chunk, &self.saved))
                            .collect::<Vec<f32>>()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
        });
        Ok(scores.into_iter().flatten().map(|v| f64::from(v) * self.saved.y_std + self.saved.y_mean).collect())
    }

    fn save_files(&self, dir: &Path) -> Result<BTreeMap<String, serde_json::Value>> {
        let json = serde_json::to_vec_pretty(&self.saved).map_err(|e| Error::Data(e.to_string()))?;
        std::fs::write(dir.join("lstm.json"), json).map_err(|e| Error::io(dir.join("lstm.json"), e))?;
        self.net
            .clone()
            .save_file(dir.join("lstm.bpk"))
            .map_err(|e| Error::Data(format!("lstm: saving weights: {e:?}")))?;
        let mut extra = BTreeMap::new();
        extra.insert("epochs_run".into(), self.saved.epochs_run.into());
        extra.insert("best_epoch".into(), self.saved.best_epoch.into());
        extra.insert("train_loss".into(), self.saved.train_loss.clone().into());
        extra.insert("valid_loss".into(), self.saved.valid_loss.clone().into());
        Ok(extra)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use rand::Rng;
    use stockcast_features::SpecHash;

    use super::*;
    use crate::data::History;

    /// A 40-symbol panel with NaNs sprinkled in, every row its own date per symbol; rows in symbol order.
    fn panel(days: usize, seed: u64) -> Dataset {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (symbols, cols) = (40, 6);
        let n = symbols * days;
        let start = NaiveDate::from_ymd_opt(2001, 1, 1).unwrap();
        let x = ndarray::Array2::from_shape_fn((n, cols), |_| {
            if rng.random::<f32>() < 0.02 { f32::NAN } else { rng.random::<f32>() * 2.0 - 1.0 }
        });
        let y = ndarray::Array1::from_shape_fn(n, |i| 0.5 * x[[i, 0]].max(0.0) - 0.2 * x[[i, 1]].min(0.0));
        let index =
            (0..n).map(|i| (format!("S{:02}", i / days), start + chrono::Duration::days((i % days) as i64))).collect();
        let matrix = FeatureMatrix {
            x,
            y: Some(y),
            index,
            feature_names: (0..cols).map(|j| format!("f{j}")).collect(),
            spec_hash: SpecHash("lstm-test".into()),
        };
        let mut d = Dataset::new(matrix, Arc::new(History::default()));
        d.context = Some(Arc::clone(&d.matrix));
        d
    }

    #[test]
    fn batched_prediction_equals_the_network_on_each_built_sequence() {
        let data = panel(60, 3);
        let cfg = LstmConfig {
            lookback: 8,
            hidden: 12,
            layers: 2,
            epochs: 2,
            batch_size: 128,
            patience: 0,
            ..toml::from_str("").unwrap()
        };
        let model = fit(&cfg, &data, None, 11).unwrap();
        // Rows of a date range, as a fold's test set: the window of their first dates reaches before the range.
        let from = NaiveDate::from_ymd_opt(2001, 1, 20).unwrap();
        let test = data.filter(|(_, d)| *d >= from);
        let fast = model.predict_rows(&test).unwrap();
        // Reference: the full normalised sequence of every row (zero-padded), through the plain forward pass.
        let index = SeqIndex::new(test.context.as_deref().unwrap());
        let keys: Vec<&(String, NaiveDate)> = test.matrix.index.iter().collect();
        let x = tensor3(sequences(&index, &keys, &model.saved), keys.len(), &model.saved, &model.saved.config.device());
        let slow: Vec<f64> = to_vec(&model.net.forward(&x))
            .unwrap()
            .iter()
            .map(|v| f64::from(*v) * model.saved.y_std + model.saved.y_mean)
            .collect();
        assert_eq!(fast.len(), slow.len());
        let worst = fast.iter().zip(&slow).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-5 * model.saved.y_std.max(1e-3), "largest difference {worst}");
        // Early dates of a symbol have short, padded windows: they are in the test set too.
        assert!(test.matrix.index.iter().any(|(_, d)| *d < from + chrono::Duration::days(8)));
    }

    #[test]
    fn the_vectorisable_exp_matches_libm_across_the_range() {
        let (mut worst, mut at) = (0.0f64, 0.0f32);
        for k in -87_000..=87_900 {
            let x = k as f32 * 1e-3;
            let (a, b) = (f64::from(exp_approx(x)), f64::from(x).exp());
            if (a - b).abs() / b > worst {
                (worst, at) = ((a - b).abs() / b, x);
            }
        }
        assert!(worst < 5e-7, "relative error {worst} at {at}");
        // Beyond the clamps: finite, and the sigmoid saturates.
        assert!(exp_approx(200.0).is_finite() && exp_approx(-200.0) >= 0.0);
        assert!((sigmoid_approx(-100.0)).abs() < 1e-30 && (sigmoid_approx(100.0) - 1.0).abs() < 1e-7);
    }

    #[test]
    fn weights_of_the_old_layout_are_refused_with_a_retrain_message() {
        let data = panel(30, 5);
        let cfg = LstmConfig { lookback: 4, hidden: 4, epochs: 1, patience: 0, ..toml::from_str("").unwrap() };
        let model = fit(&cfg, &data, None, 1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        model.save_files(dir.path()).unwrap();
        assert!(LstmModel::load(dir.path()).is_ok());
        let path = dir.path().join("lstm.json");
        let mut saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        saved.as_object_mut().unwrap().remove("network");
        std::fs::write(&path, saved.to_string()).unwrap();
        let e = LstmModel::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("layout 1") && e.contains("retrain"), "{e}");
    }
}
