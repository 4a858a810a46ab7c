//! Prediction without burn: the fitted weights read out once and run by the CPU kernel on both cores.

use super::{Error, HashMap, LayerWeights, Net, Result, Saved, SeqIndex, Tensor, kernel};

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
