//! The burn network: fused-gate LSTM layers, dropout and the linear head.

use super::{
    Device, Dropout, DropoutConfig, Initializer, Linear, LinearConfig, LstmConfig, Module, Mutex, MutexGuard, Tensor,
    TensorData, sigmoid,
};

/// One LSTM layer with its four gates fused: per step one `x_t·W_x + b` and one `h·W_h`
/// (`[batch, hidden] × [hidden, 4·hidden]`) give all four gates, laid out `[input, forget, output | cell]`.
///
/// One sigmoid covers all four: the cell candidate is `tanh(z) = 2σ(2z) − 1`, with its columns holding `2z`
/// (a reparametrisation of the standard LSTM, initialised accordingly), and the output `o·tanh(c)` uses the same
/// identity. burn's CPU `tanh` calls libm's scalar `tanhf` (through `expm1f`), three times the cost of its sigmoid:
/// it was a third of the training time. Otherwise initialised like PyTorch's `nn.LSTM` (uniform in ±1/√hidden).
#[derive(Module, Debug)]
pub(super) struct FusedLstm {
    /// `[inputs, 4·hidden]` with the bias.
    pub(super) input: Linear,
    /// `[hidden, 4·hidden]`, no bias.
    pub(super) recurrent: Linear,
}

/// `t` with its last dimension scaled by `scale`, as a fresh leaf (trainable where the device records gradients).
pub(super) fn scaled_leaf<const D: usize>(t: Tensor<D>, scale: &Tensor<1>) -> Tensor<D> {
    let trainable = t.is_require_grad();
    let dims = t.dims();
    let t = (t * scale.clone().unsqueeze::<D>().expand(dims)).detach();
    if trainable { t.require_grad() } else { t }
}

/// `tanh(x)` as `2σ(2x) − 1` (see [`FusedLstm`]).
pub(super) fn tanh_via_sigmoid<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    sigmoid(x.mul_scalar(2.0)).mul_scalar(2.0).sub_scalar(1.0)
}

impl FusedLstm {
    pub(super) fn new(inputs: usize, hidden: usize, device: &Device) -> Self {
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
    pub(super) fn recur(&self, projected: impl Iterator<Item = Tensor<2>>, all: bool) -> Vec<Tensor<2>> {
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
pub(super) struct Net {
    pub(super) layers: Vec<FusedLstm>,
    pub(super) dropout: Dropout,
    pub(super) head: Linear,
}

impl Net {
    pub(super) fn new(cfg: &LstmConfig, inputs: usize, device: &Device) -> Self {
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
    pub(super) fn forward(&self, x: &Tensor<3>) -> Tensor<1> {
        let [batch, steps, features] = x.dims();
        let first = &self.layers[0].input;
        self.forward_projected((0..steps).map(|t| first.forward(x.clone().narrow(1, t, 1).reshape([batch, features]))))
    }

    /// As [`Net::forward`], from the first layer's projected inputs of each step (`[batch, 4·hidden]`).
    pub(super) fn forward_projected(&self, projected: impl Iterator<Item = Tensor<2>>) -> Tensor<1> {
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
pub(super) fn burn_rng_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
