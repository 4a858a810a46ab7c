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
//! ndarray matmuls (the recurrent one in a kernel of its own where the CPU has AVX-512, bit-identical to
//! matrixmultiply's) and hand-derived backpropagation through time in loops that vectorise (AVX-512 or AVX2 where
//! the CPU has them), the batch's two halves on their own threads; the head and loss stay in burn's autodiff, which
//! hands back the gradient of the last hidden state, and the layers' gradients go to burn's optimiser. The gradients
//! equal burn's autodiff of the same network to float rounding (tested); `device = "cuda"` trains through burn's
//! autodiff. Prediction reads the weights out of burn once and runs the same kernel on both cores ([`Inference`]),
//! projecting each distinct context row once, gathering the windows step by step and keeping only each layer's
//! current state (no tape of every step).
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

use crate::data::{Dataset, Rows};
use crate::error::{Error, Result};
use crate::model::{Model, ModelKind, ModelMeta};

mod config;
mod infer;
mod kernel;
mod net;
mod train;
mod windows;

pub use config::{DeviceKind, LossKind, LstmConfig};
use infer::{Inference, layer_weights, values};
use net::{Net, burn_rng_lock};
use train::{fit, in_parallel};
use windows::{PREDICT_CHUNK, SeqIndex, labelled, mean_std, sequences, tensor3, to_vec, usable_sd};

use kernel::LayerWeights;

/// The weight layout written now: 2, fused gates ([`FusedLstm`]).
pub(super) const NETWORK_FORMAT: u32 = 2;

pub(super) fn old_network_format() -> u32 {
    1
}

/// What is saved beside the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Saved {
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
        let keys: Vec<&stockcast_features::matrix::RowKey> = data.matrix.index.iter().collect();
        // Rows are independent: both halves run at once, each in chunks; the result does not depend on the split.
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).clamp(1, 2);
        let part = keys.len().div_ceil(threads).max(1);
        let halves: Vec<&[&stockcast_features::matrix::RowKey]> = keys.chunks(part).collect();
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

    use super::train::{autodiff_step, fused_step};

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
        let index = (0..n)
            .map(|i| (format!("S{:02}", i / days).into(), start + chrono::Duration::days((i % days) as i64)))
            .collect();
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

    /// A matrix in symbol and date order is indexed by runs, the same rows in another order by lists; both give
    /// every sequence the same context rows (by key), padding included, for dates inside, before and after the
    /// data, a date missing from a symbol, repeated dates and an unknown symbol.
    #[test]
    fn run_and_listed_sequence_indexes_give_the_same_windows() {
        let mut data = panel(30, 4);
        data.context = None;
        // A gap and a repeated date in symbol S03.
        let m = Arc::get_mut(&mut data.matrix).unwrap();
        m.index.remove(3 * 30 + 10);
        m.x = m.x.select(ndarray::Axis(0), &(0..m.x.nrows()).filter(|&i| i != 3 * 30 + 10).collect::<Vec<_>>());
        m.index[3 * 30 + 15].1 = m.index[3 * 30 + 14].1;
        let ordered = &*data.matrix;
        let mut order: Vec<usize> = (0..ordered.nrows()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(5));
        let shuffled = data.rows(&order);
        let (runs, listed) = (SeqIndex::new(ordered), SeqIndex::new(&shuffled.matrix));
        assert!(runs.by_runs() && !listed.by_runs());
        let start = NaiveDate::from_ymd_opt(2001, 1, 1).unwrap();
        let mut keys: Vec<stockcast_features::matrix::RowKey> = ordered.index.clone();
        keys.extend((-3..40).map(|k| ("S07".into(), start + chrono::Duration::days(k))));
        keys.push(("S03".into(), start + chrono::Duration::days(10)));
        keys.push(("NOPE".into(), start + chrono::Duration::days(5)));
        let mut checked = 0;
        for lookback in [1, 5, 12] {
            for key in &keys {
                let (pad_a, a) = runs.window(key, lookback);
                let (pad_b, b) = listed.window(key, lookback);
                let a: Vec<_> = a.map(|i| ordered.index[i].clone()).collect();
                let b: Vec<_> = b.map(|i| shuffled.matrix.index[i].clone()).collect();
                assert_eq!((pad_a, &a), (pad_b, &b), "{key:?}, lookback {lookback}");
                assert_eq!(pad_a + a.len(), lookback);
                assert!(a.iter().all(|(s, d)| *s == key.0 && *d <= key.1));
                checked += usize::from(!a.is_empty());
            }
        }
        assert!(checked > 3 * ordered.nrows());
        // Rows of a symbol in two runs, or dates going back within a run, are listed.
        let mut split = ordered.clone();
        split.index.swap(0, 30);
        assert!(!SeqIndex::new(&split).by_runs());
        let mut back = ordered.clone();
        back.index.swap(0, 1);
        assert!(!SeqIndex::new(&back).by_runs());
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
        let model = fit(&cfg, Rows::all(&data), None, 11).unwrap();
        // Rows of a date range, as a fold's test set: the window of their first dates reaches before the range.
        let from = NaiveDate::from_ymd_opt(2001, 1, 20).unwrap();
        let test = data.filter(|(_, d)| *d >= from);
        let fast = model.predict_rows(&test).unwrap();
        // Reference: the full normalised sequence of every row (zero-padded), through the plain forward pass.
        let index = SeqIndex::new(test.context.as_deref().unwrap());
        let keys: Vec<&stockcast_features::matrix::RowKey> = test.matrix.index.iter().collect();
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
        let model = fit(&LstmConfig { epochs: 1, ..cfg.clone() }, Rows::all(data), None, 2).unwrap();
        let saved = &model.saved;
        let base = cfg.device();
        let device = base.clone().autodiff();
        let net = {
            let _guard = burn_rng_lock();
            device.seed(9);
            Net::new(cfg, saved.inputs, &device)
        };
        let index = SeqIndex::new(data.context.as_deref().unwrap());
        let (rows, ys) = labelled(Rows::all(data), 0, Some(saved)).unwrap();
        let keys: Vec<&stockcast_features::matrix::RowKey> =
            rows.iter().take(75).map(|&i| &data.matrix.index[i]).collect();
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
        let scores = |seed| fit(&cfg, Rows::all(&data), None, seed).unwrap().predict_rows(&data).unwrap();
        let first = scores(4);
        assert_eq!(first, scores(4));
        assert!(first.iter().zip(scores(5)).any(|(a, b)| (a - b).abs() > 1e-9), "the seed changes nothing");
    }

    /// A walk-forward fits on rows of the whole dataset in place: the same network, bit for bit, as a fit on
    /// copies of those rows (training rows with gaps, a row cap and a validation set), with and without dropout.
    #[test]
    fn a_fit_on_rows_in_place_equals_the_fit_on_their_copy() {
        use chrono::Datelike;

        let data = panel(50, 12);
        let (train, valid): (Vec<usize>, Vec<usize>) = {
            let day = |i: usize| data.matrix.index[i].1.ordinal();
            (
                (0..data.len()).filter(|&i| day(i) <= 30 && i % 7 != 3).collect(),
                (0..data.len()).filter(|&i| day(i) > 36).collect(),
            )
        };
        for dropout in [0.0, 0.2] {
            let cfg = LstmConfig {
                lookback: 6,
                hidden: 8,
                layers: 2,
                dropout,
                epochs: 3,
                batch_size: 64,
                patience: 2,
                max_train_rows: 900,
                ..toml::from_str("").unwrap()
            };
            let (t, v) = (Rows::of(&data, &train), Rows::of(&data, &valid));
            let copy = cfg.fit(&t.materialize(), Some(&v.materialize()), 5).unwrap();
            let in_place = cfg.fit_rows(t, Some(v), 5).unwrap();
            let (a, b) = (copy.predict_rows(&data).unwrap(), in_place.predict_rows(&data).unwrap());
            assert_eq!(a.len(), data.len());
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "dropout {dropout}: scores differ");
            // The fits saw fewer rows than the panel (the cap and the gaps), so a wrong row set would show.
            let whole = cfg.fit(&data, None, 5).unwrap().predict_rows(&data).unwrap();
            assert!(whole.iter().zip(&a).any(|(x, y)| (x - y).abs() > 1e-9));
        }
    }

    #[test]
    fn weights_of_the_old_layout_are_refused_with_a_retrain_message() {
        let data = panel(30, 5);
        let cfg = LstmConfig { lookback: 4, hidden: 4, epochs: 1, patience: 0, ..toml::from_str("").unwrap() };
        let model = fit(&cfg, Rows::all(&data), None, 1).unwrap();
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
