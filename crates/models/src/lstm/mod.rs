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
//! step. The network is a burn module (its parameters, initialisation, Adam, dropout before the head, the loss and
//! the saved weights are burn's). On the CPU a mini-batch's LSTM layers run forward and backward in [`kernel`]:
//! ndarray matmuls and hand-derived backpropagation through time in loops that vectorise (AVX2 where the CPU has it),
//! the batch's two halves on their own threads; the head and loss stay in burn's autodiff, which hands back the
//! gradient of the last hidden state, and the layers' gradients go to burn's optimiser. The gradients equal burn's
//! autodiff of the same network to float rounding (tested); `device = "cuda"` trains through burn's autodiff.
//! Prediction reads the weights out of burn once and runs the same kernel on both cores ([`Inference`]), projecting
//! each distinct context row once and gathering the windows.
//!
//! burn's random generator is process-wide, so fits and loads hold a lock: with the same data, config and seed a
//! fit is bit-identical.

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

mod kernel;

use kernel::LayerWeights;

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
    fn check_params(&self) -> Result<()> {
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
const PREDICT_CHUNK: usize = 256;

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

/// Mean and population sd (`ddof = 0`) of the finite values (the label's; the features' are
/// [`stockcast_features::stats::column_moments`]); (0, 1) when there are none, sd 1 when constant.
fn mean_std(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let finite: Vec<f64> = values.filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return (0.0, 1.0);
    }
    let (m, sd) = (stockcast_features::stats::mean(&finite), stockcast_features::stats::std(&finite, 0));
    (m, usable_sd(sd))
}

/// `sd`, or 1 where it is (near) zero or undefined: a constant input is left unscaled.
fn usable_sd(sd: f64) -> f64 {
    if sd > 1e-12 && sd.is_finite() { sd } else { 1.0 }
}

fn loss(cfg: &LstmConfig, pred: Tensor<1>, target: Tensor<1>) -> Tensor<1> {
    match cfg.loss {
        LossKind::Mse => MseLoss::new().forward(pred, target, Reduction::Mean),
        LossKind::Huber => HuberLossConfig::new(cfg.huber_delta as f32).init().forward(pred, target, Reduction::Mean),
    }
}

/// The loss of one standardised residual `r`, as burn's losses define it (their mean over a batch is the loss).
fn pointwise_loss(cfg: &LstmConfig, r: f64) -> f64 {
    match cfg.loss {
        LossKind::Mse => r * r,
        LossKind::Huber if r.abs() <= cfg.huber_delta => 0.5 * r * r,
        LossKind::Huber => cfg.huber_delta * (r.abs() - 0.5 * cfg.huber_delta),
    }
}

/// Mean loss of the network `infer` over `keys` (in evaluation mode: no dropout).
fn eval_loss(infer: &Inference, index: &SeqIndex<'_>, keys: &[&(String, NaiveDate)], ys: &[f32], saved: &Saved) -> f64 {
    let mut total = 0.0;
    for (kb, yb) in keys.chunks(PREDICT_CHUNK).zip(ys.chunks(PREDICT_CHUNK)) {
        let scores = infer.predict(index, kb, saved);
        total += scores.iter().zip(yb).map(|(p, y)| pointwise_loss(&saved.config, f64::from(*p - *y))).sum::<f64>();
    }
    total / keys.len().max(1) as f64
}

/// One mini-batch through burn's autodiff of the whole network (`x`: `[batch, lookback, inputs]`): the loss and
/// every parameter's gradient. Used where the network runs on a GPU, and as the reference of [`fused_step`].
fn autodiff_step(
    net: &Net,
    x: Vec<f32>,
    target: Tensor<1>,
    saved: &Saved,
    device: &Device,
) -> Result<(f64, GradientsParams)> {
    let n = target.dims()[0];
    let l = loss(&saved.config, net.forward(&tensor3(x, n, saved, device)), target);
    let value = f64::from(to_vec(&l)?[0]);
    Ok((value, GradientsParams::from_grads(l.backward(), net)))
}

/// A mini-batch on the CPU is split into this many contiguous parts, each run on its own thread; their gradients
/// are summed in part order, so a fit does not depend on how many cores the machine has.
const PARTS: usize = 2;

/// Seed offset of the dropout masks between layers on the CPU path (a stream apart from the shuffling's).
const DROPOUT_STREAM: u64 = 0x6d61_736b_7331;

/// `f(item)` for every item, each on its own scoped thread; results in item order.
fn in_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = items.iter().map(|item| scope.spawn(move || f(item))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

/// One part of a mini-batch on the CPU: its rows, each layer's step-major input (layer 0: the sequences; above:
/// the layer below's hidden states after dropout) and the dropout masks between layers.
struct Part {
    start: usize,
    batch: usize,
    inputs: Vec<ndarray::Array2<f32>>,
    masks: Vec<ndarray::Array2<f32>>,
}

/// An inverted-dropout mask: 0 with probability `p`, else `1 / (1 − p)`.
fn dropout_mask(rng: &mut ChaCha8Rng, rows: usize, cols: usize, p: f64) -> ndarray::Array2<f32> {
    use rand::Rng;
    let keep = (1.0 / (1.0 - p)) as f32;
    ndarray::Array2::from_shape_simple_fn((rows, cols), || if rng.random::<f64>() < p { 0.0 } else { keep })
}

/// One mini-batch on the CPU (`x`: `[batch, lookback, inputs]`): the LSTM layers' forward and backward passes by
/// hand ([`kernel`]), the parts of the batch on their own threads, and the head, its dropout and the loss in burn's
/// autodiff, which hands back the gradient of the last hidden state. The loss and every parameter's gradient (on
/// `base`, as burn's optimisers take them); agrees with [`autodiff_step`] to float rounding (tested).
fn fused_step(
    net: &Net,
    x: &[f32],
    target: Tensor<1>,
    saved: &Saved,
    base: &Device,
    rng: &mut ChaCha8Rng,
) -> Result<(f64, GradientsParams)> {
    let cfg = &saved.config;
    let (steps, f, hidden) = (cfg.lookback, saved.inputs, cfg.hidden);
    let n = target.dims()[0];
    let weights = layer_weights(net)?;
    let per = n.div_ceil(PARTS).max(1);
    let mut parts: Vec<Part> = (0..n)
        .step_by(per)
        .map(|start| {
            let batch = per.min(n - start);
            let mut first = ndarray::Array2::<f32>::zeros((steps * batch, f));
            for (r, mut row) in first.rows_mut().into_iter().enumerate() {
                let (t, k) = (r / batch, r % batch);
                let at = ((start + k) * steps + t) * f;
                row.assign(&ndarray::ArrayView1::from(&x[at..at + f]));
            }
            let masks = if cfg.dropout > 0.0 {
                (1..cfg.layers).map(|_| dropout_mask(rng, steps * batch, hidden, cfg.dropout)).collect()
            } else {
                Vec::new()
            };
            Part { start, batch, inputs: vec![first], masks }
        })
        .collect();
    let forward = |part: &Part| {
        let mut inputs = Vec::new();
        let mut tapes: Vec<kernel::Tape> = Vec::with_capacity(weights.len());
        for (l, w) in weights.iter().enumerate() {
            if l > 0 {
                let mut above = tapes[l - 1].hidden.clone();
                if let Some(m) = part.masks.get(l - 1) {
                    above *= m;
                }
                inputs.push(above);
            }
            let x = if l == 0 { &part.inputs[0] } else { &inputs[l - 1] };
            tapes.push(kernel::forward(w, w.project(x.view()), steps));
        }
        (inputs, tapes)
    };
    let mut tapes = Vec::with_capacity(parts.len());
    let ran = in_parallel(&parts, forward);
    for (part, (inputs, t)) in parts.iter_mut().zip(ran) {
        part.inputs.extend(inputs);
        tapes.push(t);
    }
    let mut last: Vec<f32> = Vec::with_capacity(n * hidden);
    for (part, t) in parts.iter().zip(&tapes) {
        last.extend(t[t.len() - 1].last(part.batch).iter());
    }
    let device = base.clone().autodiff();
    let leaf = Tensor::<2>::from_data(TensorData::new(last, [n, hidden]), &device).require_grad();
    let pred = net.head.forward(net.dropout.forward(leaf.clone())).reshape([n]);
    let l = loss(cfg, pred, target);
    let value = f64::from(to_vec(&l)?[0]);
    let mut grads = l.backward();
    let d_last = leaf.grad(&grads).ok_or_else(|| Error::Data("lstm: no gradient reached the last state".into()))?;
    let d_last = values(&d_last)?;
    let mut params = GradientsParams::from_module(&mut grads, &net.head);
    let work: Vec<(&Part, &Vec<kernel::Tape>)> = parts.iter().zip(&tapes).collect();
    let part_grads = in_parallel(&work, |(part, tapes)| {
        let d = d_last.slice(ndarray::s![part.start..part.start + part.batch, ..]);
        let mut below: Option<ndarray::Array2<f32>> = None;
        let mut out = Vec::with_capacity(weights.len());
        for l in (0..weights.len()).rev() {
            let upstream = match &below {
                None => kernel::Upstream::Last(d.view()),
                Some(a) => kernel::Upstream::All(a.view()),
            };
            let (g, dx) = kernel::backward(&weights[l], part.inputs[l].view(), &tapes[l], upstream, steps, l > 0);
            out.push(g);
            below = dx.map(|mut dx| {
                if let Some(m) = part.masks.get(l - 1) {
                    dx *= m;
                }
                dx
            });
        }
        out.reverse();
        out
    });
    let mut part_grads = part_grads.into_iter();
    let mut total = part_grads.next().expect("a batch has at least one part");
    for g in part_grads {
        for (t, g) in total.iter_mut().zip(&g) {
            t.add(g);
        }
    }
    let tensor2 = |a: ndarray::Array2<f32>| {
        let shape = [a.nrows(), a.ncols()];
        Tensor::<2>::from_data(TensorData::new(a.into_raw_vec_and_offset().0, shape), base)
    };
    for (layer, g) in net.layers.iter().zip(total) {
        params.register(layer.input.weight.id, tensor2(g.input));
        if let Some(b) = &layer.input.bias {
            let len = g.bias.len();
            params.register(b.id, Tensor::<1>::from_data(TensorData::new(g.bias.to_vec(), [len]), base));
        }
        params.register(layer.recurrent.weight.id, tensor2(g.recurrent));
    }
    Ok((value, params))
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
    let (means, stds): (Vec<f64>, Vec<f64>) = stockcast_features::stats::column_moments(&train.matrix.x, &rows, 0)
        .into_iter()
        .map(|m| if m.n == 0 { (0.0, 1.0) } else { (m.mean, usable_sd(m.std)) })
        .unzip();
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
    let mut mask_rng = ChaCha8Rng::seed_from_u64(seed ^ DROPOUT_STREAM);
    let mut order: Vec<usize> = (0..train_keys.len()).collect();
    let (mut best, mut best_net, mut since_best) = (f64::INFINITY, None, 0usize);
    let bar = crate::progress::epochs(cfg.epochs as u64);
    for epoch in 1..=cfg.epochs {
        order.shuffle(&mut rng);
        let (mut sum, mut count) = (0.0, 0usize);
        for batch in order.chunks(cfg.batch_size) {
            let keys: Vec<_> = batch.iter().map(|&i| train_keys[i]).collect();
            let target: Vec<f32> = batch.iter().map(|&i| ys[i]).collect();
            let x = sequences(&train_index, &keys, &saved);
            let target = Tensor::from_data(TensorData::new(target, [batch.len()]), &device);
            let (l, grads) = match cfg.device {
                DeviceKind::Cpu => fused_step(&net, &x, target, &saved, &base, &mut mask_rng)?,
                DeviceKind::Cuda => autodiff_step(&net, x, target, &saved, &device)?,
            };
            sum += l * batch.len() as f64;
            count += batch.len();
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
            let v = eval_loss(&Inference::of(&eval)?, index, keys, vys, &saved);
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

/// The LSTM layers' weights of `net`, read out of burn.
fn layer_weights(net: &Net) -> Result<Vec<LayerWeights>> {
    net.layers
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
        .collect()
}

impl Inference {
    fn of(net: &Net) -> Result<Self> {
        let layers = layer_weights(net)?;
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
        let projected = self.layers[0].project(unique.view());
        // Layer 0's gates before the recurrence, step-major: row t·n + k is key k's step-t context row, projected.
        let mut gates = ndarray::Array2::<f32>::zeros((lookback * n, projected.ncols()));
        for (r, mut row) in gates.rows_mut().into_iter().enumerate() {
            row.assign(&projected.row(gather[(r % n) * lookback + r / n]));
        }
        let mut tape = kernel::forward(&self.layers[0], gates, lookback);
        for layer in &self.layers[1..] {
            tape = kernel::forward(layer, layer.project(tape.hidden.view()), lookback);
        }
        (tape.last(n).dot(&self.head) + self.head_bias).to_vec()
    }
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
        let halves: Vec<&[&(String, NaiveDate)]> = keys.chunks(part).collect();
        let scores = in_parallel(&halves, |mine| {
            mine.chunks(PREDICT_CHUNK)
                .flat_map(|chunk| self.infer.predict(&index, chunk, &self.saved))
                .collect::<Vec<f32>>()
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
            label: stockcast_features::spec::LabelSpec::default(),
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

    /// Every parameter's gradient of one mini-batch, by `step`, for a fresh seeded network.
    fn gradients_of(cfg: &LstmConfig, data: &Dataset, fused: bool) -> (f64, Vec<(&'static str, Vec<f32>)>) {
        let model = fit(&LstmConfig { epochs: 1, ..cfg.clone() }, data, None, 2).unwrap();
        let saved = &model.saved;
        let base = cfg.device();
        let device = base.clone().autodiff();
        let net = {
            let _guard = burn_rng_lock();
            device.seed(9);
            Net::new(cfg, saved.inputs, &device)
        };
        let index = SeqIndex::new(data.context.as_deref().unwrap());
        let (rows, ys) = labelled(data, 0, Some(saved)).unwrap();
        let keys: Vec<&(String, NaiveDate)> = rows.iter().take(75).map(|&i| &data.matrix.index[i]).collect();
        let x = sequences(&index, &keys, saved);
        // Targets far from the untrained outputs, so Huber's linear branch is taken too.
        let target: Vec<f32> = ys.iter().take(keys.len()).map(|y| 3.0 * y).collect();
        let target = Tensor::from_data(TensorData::new(target, [keys.len()]), &device);
        let (loss, grads) = if fused {
            fused_step(&net, &x, target, saved, &base, &mut ChaCha8Rng::seed_from_u64(1)).unwrap()
        } else {
            autodiff_step(&net, x, target, saved, &device).unwrap()
        };
        let mut out = Vec::new();
        let flat = |t: Option<Tensor<2>>| t.unwrap().to_data().try_to_vec::<f32>().unwrap();
        for (l, layer) in net.layers.iter().enumerate() {
            let [a, b, c] = [["input0", "bias0", "recurrent0"], ["input1", "bias1", "recurrent1"]][l];
            out.push((a, flat(grads.get::<2>(layer.input.weight.id))));
            let bias: Tensor<1> = grads.get(layer.input.bias.as_ref().unwrap().id).unwrap();
            out.push((b, bias.to_data().try_to_vec::<f32>().unwrap()));
            out.push((c, flat(grads.get::<2>(layer.recurrent.weight.id))));
        }
        out.push(("head", flat(grads.get::<2>(net.head.weight.id))));
        (loss, out)
    }

    #[test]
    fn the_hand_derived_gradients_equal_burns_autodiff() {
        let data = panel(40, 8);
        for (layers, loss_kind) in [(1, LossKind::Mse), (2, LossKind::Huber)] {
            let cfg = LstmConfig {
                lookback: 6,
                hidden: 5,
                layers,
                loss: loss_kind,
                huber_delta: 0.5,
                patience: 0,
                ..toml::from_str("").unwrap()
            };
            let (fused_loss, fused) = gradients_of(&cfg, &data, true);
            let (reference_loss, reference) = gradients_of(&cfg, &data, false);
            assert!((fused_loss - reference_loss).abs() < 1e-5 * reference_loss, "{fused_loss} vs {reference_loss}");
            assert_eq!(fused.len(), 3 * layers + 1);
            for ((name, a), (_, b)) in fused.iter().zip(&reference) {
                assert_eq!(a.len(), b.len(), "{name}");
                let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                assert!(scale > 1e-6, "{name}: the reference gradient is zero");
                let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
                assert!(worst <= 1e-4 * scale, "layers {layers}, {name}: off by {worst} (scale {scale})");
            }
        }
    }

    #[test]
    fn a_seeded_fit_with_dropout_between_layers_is_bit_reproducible() {
        let data = panel(40, 9);
        let cfg = LstmConfig {
            lookback: 5,
            hidden: 6,
            layers: 2,
            dropout: 0.3,
            epochs: 2,
            batch_size: 64,
            patience: 0,
            ..toml::from_str("").unwrap()
        };
        let scores = |seed| fit(&cfg, &data, None, seed).unwrap().predict_rows(&data).unwrap();
        let first = scores(4);
        assert_eq!(first, scores(4));
        assert!(first.iter().zip(scores(5)).any(|(a, b)| (a - b).abs() > 1e-9), "the seed changes nothing");
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
