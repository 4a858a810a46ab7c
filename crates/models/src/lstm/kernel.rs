//! The fused LSTM layer on the CPU in ndarray: its forward pass (prediction and training) and, for training, its
//! backward pass through time derived by hand, so that a layer is a few large matmuls, two small ones per step and
//! element-wise loops that vectorise, instead of a dozen autodiff nodes per step with a scalar libm `expf` each.
//!
//! Layout: every buffer is step-major, row `t·batch + k` holding sequence k at step t. Gates `[i, f, o | g]`, the
//! cell columns holding `2z` (see [`super::FusedLstm`]): with `s = σ(gates)`,
//!
//! ```text
//! c_t = f ⊙ c_{t−1} + i ⊙ (2 s_g − 1)        h_t = o ⊙ tanh(c_t),  tanh(c) = 2σ(2c) − 1
//! ```
//!
//! and backwards, with `dh` the gradient reaching `h_t` (from above and from step t+1) and `dc` the one reaching
//! `c_t` from step t+1:
//!
//! ```text
//! dc  += dh ⊙ o ⊙ (1 − tanh²c_t)
//! dz_i = dc ⊙ (2 s_g − 1) ⊙ i(1 − i)      dz_f = dc ⊙ c_{t−1} ⊙ f(1 − f)
//! dz_o = dh ⊙ tanh c_t ⊙ o(1 − o)        dz_g = 2 dc ⊙ i ⊙ s_g(1 − s_g)
//! dc_{t−1} = dc ⊙ f                      dh_{t−1} = dz · W_hᵀ
//! dW_x = Xᵀ·dz    db = Σ dz    dW_h = H_{t−1}ᵀ·dz_t (all steps at once)    dX = dz · W_xᵀ
//! ```
//!
//! It is checked against burn's autodiff of the same network (`the_hand_derived_gradients_equal_burns_autodiff`).

use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, ArrayView2, Axis, s};

/// `e^x` for f32 in plain arithmetic that compilers vectorise (Cephes' `expf`: `x = n·ln 2 + r`, a degree-6
/// polynomial in r, `2^n` built in the exponent bits; no branch, no library call, no float-to-int conversion);
/// relative error below 2e-7 on the clamped range.
#[inline]
pub(super) fn exp_approx(x: f32) -> f32 {
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
pub(super) fn sigmoid_approx(x: f32) -> f32 {
    1.0 / (1.0 + exp_approx(-x))
}

/// One layer's weights as plain arrays: `[inputs, 4·hidden]`, `[4·hidden]`, `[hidden, 4·hidden]`.
#[derive(Debug, Clone)]
pub(super) struct LayerWeights {
    pub input: Array2<f32>,
    pub bias: Array1<f32>,
    pub recurrent: Array2<f32>,
}

impl LayerWeights {
    /// `x·W_x + b` for step-major rows `x` (`[steps·batch, inputs]`): the first term of every step's gates.
    pub(super) fn project(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        let mut out = Array2::from_shape_fn((x.nrows(), self.bias.len()), |(_, c)| self.bias[c]);
        general_mat_mul(1.0, &x, &self.input, 1.0, &mut out);
        out
    }
}

/// A layer's forward pass over every step, as the backward pass needs it (each `[steps·batch, ·]`).
#[derive(Debug)]
pub(super) struct Tape {
    /// σ of the gates.
    pub gates: Array2<f32>,
    pub cell: Array2<f32>,
    /// `tanh(c_t)`.
    pub tanh_cell: Array2<f32>,
    /// `h_t`.
    pub hidden: Array2<f32>,
}

impl Tape {
    /// The hidden states of the last step (`[batch, hidden]`).
    pub(super) fn last(&self, batch: usize) -> ArrayView2<'_, f32> {
        self.hidden.slice(s![self.hidden.nrows() - batch.., ..])
    }
}

/// Runs the recurrence from a zero state over `steps` steps of `gates` (the projected inputs `x_t·W_x + b`,
/// step-major), adding `h_{t−1}·W_h` in place.
pub(super) fn forward(w: &LayerWeights, mut gates: Array2<f32>, steps: usize) -> Tape {
    let (rows, four) = gates.dim();
    let (batch, hidden) = (rows / steps, four / 4);
    let mut cell = Array2::<f32>::zeros((rows, hidden));
    let mut tanh_cell = Array2::<f32>::zeros((rows, hidden));
    let mut h = Array2::<f32>::zeros((rows, hidden));
    for t in 0..steps {
        let now = t * batch..(t + 1) * batch;
        if t > 0 {
            let prev = h.slice(s![(t - 1) * batch..t * batch, ..]);
            general_mat_mul(1.0, &prev, &w.recurrent, 1.0, &mut gates.slice_mut(s![now.clone(), ..]));
        }
        let g = &mut gates.as_slice_mut().expect("row-major")[now.start * four..now.end * four];
        let (before, current) = cell.as_slice_mut().expect("row-major").split_at_mut(now.start * hidden);
        let c_prev = (t > 0).then(|| &before[(t - 1) * batch * hidden..]);
        let c_now = &mut current[..batch * hidden];
        let tc = &mut tanh_cell.as_slice_mut().expect("row-major")[now.start * hidden..now.end * hidden];
        let h_now = &mut h.as_slice_mut().expect("row-major")[now.start * hidden..now.end * hidden];
        forward_step(g, c_prev, c_now, tc, h_now, hidden);
    }
    Tape { gates, cell, tanh_cell, hidden: h }
}

/// Defines `fn $name`, which runs its body compiled for AVX2 where the CPU has it (detected at run time, once per
/// process) and for baseline x86-64 elsewhere. The bodies are element-wise float arithmetic without `mul_add`, which
/// Rust never contracts into FMAs: the same IEEE operations on 8 lanes instead of 4, so results are bit-identical.
macro_rules! avx2_dispatch {
    ($(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn generic($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) {
                    generic($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2, checked on the line above.
                    #[allow(unsafe_code)]
                    return unsafe { avx2($($arg),*) };
                }
            }
            generic($($arg),*)
        }
    };
}

avx2_dispatch! {
    /// One step's element-wise forward pass over `batch` rows: the gates `g` (`[batch, 4·hidden]`) become their
    /// sigmoids, then `c = f·c_prev + i·(2s_g − 1)` (no `c_prev` at the first step), `tanh c` and `h = o·tanh c`.
    fn forward_step(g: &mut [f32], c_prev: Option<&[f32]>, c: &mut [f32], tc: &mut [f32], h: &mut [f32], hidden: usize) {
        for v in g.iter_mut() {
            *v = sigmoid_approx(*v);
        }
        let four = 4 * hidden;
        for (k, g) in g.chunks_exact(four).enumerate() {
            let row = k * hidden..(k + 1) * hidden;
            let (c, tc, h) = (&mut c[row.clone()], &mut tc[row.clone()], &mut h[row.clone()]);
            let (i, f, o, cand) = (&g[..hidden], &g[hidden..2 * hidden], &g[2 * hidden..3 * hidden], &g[3 * hidden..]);
            match c_prev {
                Some(p) => {
                    let p = &p[row];
                    for j in 0..hidden {
                        c[j] = f[j] * p[j] + i[j] * (2.0 * cand[j] - 1.0);
                    }
                }
                None => {
                    for j in 0..hidden {
                        c[j] = i[j] * (2.0 * cand[j] - 1.0);
                    }
                }
            }
            for j in 0..hidden {
                tc[j] = 2.0 * sigmoid_approx(2.0 * c[j]) - 1.0;
                h[j] = o[j] * tc[j];
            }
        }
    }
}

/// What one step's backward pass reads of the forward pass: the gate sigmoids, `tanh c_t` and `c_{t−1}` (zeros at
/// the first step) of its rows.
#[derive(Clone, Copy)]
struct StepTape<'a> {
    sg: &'a [f32],
    tc: &'a [f32],
    c_prev: &'a [f32],
}

avx2_dispatch! {
    /// One step's element-wise backward pass over `batch` rows (see the module docs): from the forward pass's
    /// `tape`, the gradient of `h_t` from above (zeros where none comes) and from step t+1 (`dh_rec`), and of `c_t`
    /// from step t+1 (`dc`, replaced by that of `c_{t−1}`), writes the gates' gradients `dz`.
    fn backward_step(
        tape: StepTape<'_>,
        above: &[f32],
        dh_rec: &[f32],
        dc: &mut [f32],
        dz: &mut [f32],
        hidden: usize,
    ) {
        let StepTape { sg, tc, c_prev } = tape;
        for (k, (sg, dz)) in sg.chunks_exact(4 * hidden).zip(dz.chunks_exact_mut(4 * hidden)).enumerate() {
            let row = k * hidden..(k + 1) * hidden;
            let (tc, cp, up, dhr, dc) =
                (&tc[row.clone()], &c_prev[row.clone()], &above[row.clone()], &dh_rec[row.clone()], &mut dc[row]);
            let (i, f, o, g) = (&sg[..hidden], &sg[hidden..2 * hidden], &sg[2 * hidden..3 * hidden], &sg[3 * hidden..]);
            let (dzi, rest) = dz.split_at_mut(hidden);
            let (dzf, rest) = rest.split_at_mut(hidden);
            let (dzo, dzg) = rest.split_at_mut(hidden);
            for j in 0..hidden {
                let dh = dhr[j] + up[j];
                let d = dc[j] + dh * o[j] * (1.0 - tc[j] * tc[j]);
                dzi[j] = d * (2.0 * g[j] - 1.0) * i[j] * (1.0 - i[j]);
                dzf[j] = d * cp[j] * f[j] * (1.0 - f[j]);
                dzo[j] = dh * tc[j] * o[j] * (1.0 - o[j]);
                dzg[j] = 2.0 * d * i[j] * g[j] * (1.0 - g[j]);
                dc[j] = d * f[j];
            }
        }
    }
}

/// Gradients of one layer's parameters, laid out as [`LayerWeights`].
#[derive(Debug)]
pub(super) struct LayerGrads {
    pub input: Array2<f32>,
    pub bias: Array1<f32>,
    pub recurrent: Array2<f32>,
}

impl LayerGrads {
    /// Adds `other` (the same shapes) in place.
    pub(super) fn add(&mut self, other: &LayerGrads) {
        self.input += &other.input;
        self.bias += &other.bias;
        self.recurrent += &other.recurrent;
    }
}

/// The gradient reaching a layer's hidden states from outside the layer.
#[derive(Clone, Copy)]
pub(super) enum Upstream<'a> {
    /// Only the last step's (`[batch, hidden]`): the head reads the top layer's last state.
    Last(ArrayView2<'a, f32>),
    /// Every step's (`[steps·batch, hidden]`): the next layer reads them all.
    All(ArrayView2<'a, f32>),
}

/// Backpropagation through time of one layer whose forward pass is `tape` on the inputs `x` (step-major
/// `[steps·batch, inputs]`): the parameters' gradients and, when `input_grad`, the gradient of `x`.
pub(super) fn backward(
    w: &LayerWeights,
    x: ArrayView2<'_, f32>,
    tape: &Tape,
    upstream: Upstream<'_>,
    steps: usize,
    input_grad: bool,
) -> (LayerGrads, Option<Array2<f32>>) {
    let (rows, four) = tape.gates.dim();
    let (batch, hidden) = (rows / steps, four / 4);
    let recurrent_t = w.recurrent.t().as_standard_layout().into_owned();
    let mut dz = Array2::<f32>::zeros((rows, four));
    // The gradients reaching h_{t} and c_{t} from step t+1.
    let mut dh_rec = Array2::<f32>::zeros((batch, hidden));
    let mut dc_next = vec![0.0f32; batch * hidden];
    // `c_{−1}`, and the gradient from above at the steps no layer above reads.
    let zeros = vec![0.0f32; batch * hidden];
    let (s_all, c_all, tc_all) = (
        tape.gates.as_slice().expect("row-major"),
        tape.cell.as_slice().expect("row-major"),
        tape.tanh_cell.as_slice().expect("row-major"),
    );
    for t in (0..steps).rev() {
        let base = t * batch;
        let from_above: &[f32] = match &upstream {
            Upstream::Last(d) if t == steps - 1 => d.as_slice().expect("row-major"),
            Upstream::Last(_) => &zeros,
            Upstream::All(d) => &d.as_slice().expect("row-major")[base * hidden..(base + batch) * hidden],
        };
        let rows_t = base * hidden..(base + batch) * hidden;
        let step = StepTape {
            sg: &s_all[base * four..(base + batch) * four],
            tc: &tc_all[rows_t.clone()],
            c_prev: if t > 0 { &c_all[rows_t.start - batch * hidden..rows_t.start] } else { &zeros },
        };
        backward_step(
            step,
            from_above,
            dh_rec.as_slice().expect("row-major"),
            &mut dc_next,
            &mut dz.as_slice_mut().expect("row-major")[base * four..(base + batch) * four],
            hidden,
        );
        if t > 0 {
            let dz_t = dz.slice(s![base..base + batch, ..]);
            general_mat_mul(1.0, &dz_t, &recurrent_t, 0.0, &mut dh_rec);
        }
    }
    let recurrent = if steps > 1 {
        tape.hidden.slice(s![..rows - batch, ..]).t().dot(&dz.slice(s![batch.., ..]))
    } else {
        Array2::zeros((hidden, four))
    };
    let grads = LayerGrads { input: x.t().dot(&dz), bias: dz.sum_axis(Axis(0)), recurrent };
    let dx = input_grad.then(|| dz.dot(&w.input.t()));
    (grads, dx)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
