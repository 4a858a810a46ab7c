//! Prediction without burn: the fitted weights read out once and run by the CPU kernel on both cores.

use std::hash::{BuildHasherDefault, Hasher};

use super::{Error, HashMap, LayerWeights, Net, Result, Saved, SeqIndex, Tensor, kernel};

/// Hashes a context row number by one multiplication (Fibonacci hashing): the prediction looks up every step of
/// every window (1.5 M lookups for 50,000 sequences of 30 steps), where SipHash's resistance to chosen keys buys
/// nothing (the keys are row positions).
#[derive(Default)]
struct RowHasher(u64);

impl Hasher for RowHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b) ^ self.0.rotate_left(8));
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }
}

/// Prediction without burn: the fitted network's weights read out once and its forward pass in ndarray matmuls
/// (matrixmultiply's kernels) and element-wise loops that vectorise. burn's CPU backend evaluates a sigmoid as one
/// scalar libm `expf` per element, most of the prediction time; this agrees with burn's forward pass to float
/// rounding (tested) and is what `predict` runs.
#[derive(Debug)]
pub(super) struct Inference {
    pub(super) layers: Vec<LayerWeights>,
    pub(super) head: ndarray::Array1<f32>,
    pub(super) head_bias: f32,
}

pub(super) fn values(t: &Tensor<2>) -> Result<ndarray::Array2<f32>> {
    let [r, c] = t.dims();
    let v = t.to_data().try_to_vec::<f32>().map_err(|e| Error::Data(format!("lstm: reading weights: {e:?}")))?;
    ndarray::Array2::from_shape_vec((r, c), v).map_err(|e| Error::Data(format!("lstm: weights: {e}")))
}

/// The LSTM layers' weights of `net`, read out of burn.
pub(super) fn layer_weights(net: &Net) -> Result<Vec<LayerWeights>> {
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
    pub(super) fn of(net: &Net) -> Result<Self> {
        let layers = layer_weights(net)?;
        let head = values(&net.head.weight.val())?.column(0).to_owned();
        let head_bias = match &net.head.bias {
            Some(b) => values(&b.val().reshape([1, 1]))?[[0, 0]],
            None => 0.0,
        };
        Ok(Self { layers, head, head_bias })
    }

    /// Standardised scores of the sequences of `keys`.
    pub(super) fn predict(
        &self,
        index: &SeqIndex<'_>,
        keys: &[&stockcast_features::matrix::RowKey],
        saved: &Saved,
    ) -> Vec<f32> {
        let (lookback, f) = (saved.config.lookback, saved.inputs);
        let n = keys.len();
        // Each distinct context row normalised and projected once; slot 0 is the zero row of the padding.
        let mut slot: HashMap<usize, usize, BuildHasherDefault<RowHasher>> = HashMap::default();
        let mut rows = vec![0.0f32; f];
        let mut gather: Vec<usize> = Vec::with_capacity(n * lookback);
        for key in keys {
            let (offset, window) = index.window(key, lookback);
            gather.extend(std::iter::repeat_n(0, offset));
            for row in window {
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
        // Layer 0's gates of step t: row k is key k's step-t context row, projected.
        let four = projected.ncols();
        let last = kernel::forward_last(&self.layers, lookback, n, |t, gates| {
            for (k, row) in gates.chunks_exact_mut(four).enumerate() {
                row.copy_from_slice(projected.row(gather[k * lookback + t]).as_slice().expect("row-major"));
            }
        });
        (last.dot(&self.head) + self.head_bias).to_vec()
    }
}
