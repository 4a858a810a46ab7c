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
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Axis, s};

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
        let mut out = Array2::zeros((x.nrows(), self.bias.len()));
        self.project_into(x, &mut out);
        out
    }

    /// [`Self::project`] into `out` (`[rows, 4·hidden]`), overwriting it: the bias, then `x·W_x` added.
    pub(super) fn project_into(&self, x: ArrayView2<'_, f32>, out: &mut Array2<f32>) {
        for mut row in out.rows_mut() {
            row.assign(&self.bias);
        }
        general_mat_mul(1.0, &x, &self.input, 1.0, out);
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
            add_recurrent(prev, &w.recurrent, gates.slice_mut(s![now.clone(), ..]));
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

/// A prediction's pass over every step that keeps only what the next step reads (each layer's `h` and `c` of
/// `batch` rows), instead of the whole [`Tape`]: the same operations on the same values as [`forward`] (one
/// layer after another there, one step of every layer after another here), so the last hidden state is
/// bit-identical. `first` writes layer 0's projected inputs of step t into its `[batch, 4·hidden]` argument.
pub(super) fn forward_last(
    layers: &[LayerWeights],
    steps: usize,
    batch: usize,
    first: impl Fn(usize, &mut [f32]),
) -> Array2<f32> {
    struct State {
        gates: Array2<f32>,
        h: Array2<f32>,
        c: Array2<f32>,
        c_next: Array2<f32>,
        tc: Array2<f32>,
    }
    let mut states: Vec<State> = layers
        .iter()
        .map(|w| {
            let hidden = w.recurrent.nrows();
            State {
                gates: Array2::zeros((batch, 4 * hidden)),
                h: Array2::zeros((batch, hidden)),
                c: Array2::zeros((batch, hidden)),
                c_next: Array2::zeros((batch, hidden)),
                tc: Array2::zeros((batch, hidden)),
            }
        })
        .collect();
    for t in 0..steps {
        for (l, w) in layers.iter().enumerate() {
            let (below, rest) = states.split_at_mut(l);
            let st = &mut rest[0];
            let hidden = w.recurrent.nrows();
            match below.last() {
                None => first(t, st.gates.as_slice_mut().expect("row-major")),
                // The layer below's `h_t`, projected: per row the same matmul as on all steps at once.
                Some(b) => w.project_into(b.h.view(), &mut st.gates),
            }
            // `h_{t−1}·W_h` from the previous step's `h`, which this step then overwrites.
            if t > 0 {
                add_recurrent(st.h.view(), &w.recurrent, st.gates.view_mut());
            }
            let c_prev = (t > 0).then(|| st.c.as_slice().expect("row-major"));
            forward_step(
                st.gates.as_slice_mut().expect("row-major"),
                c_prev,
                st.c_next.as_slice_mut().expect("row-major"),
                st.tc.as_slice_mut().expect("row-major"),
                st.h.as_slice_mut().expect("row-major"),
                hidden,
            );
            std::mem::swap(&mut st.c, &mut st.c_next);
        }
    }
    states.pop().map_or_else(|| Array2::zeros((batch, 0)), |s| s.h)
}

/// `gates += h·W_h` (`[rows, hidden] × [hidden, 4·hidden]`). Where the CPU has AVX-512, a kernel that keeps `W_h`
/// in L1 and two rows' gates in registers: each output is the FMA chain over k = 0, 1, … from zero, added to the
/// gate once, which is what matrixmultiply's AVX-512 and FMA kernels compute for an inner dimension of at most
/// its `kc` (256), so the result is bit-identical (tested); elsewhere, and for other shapes, matrixmultiply.
pub(super) fn add_recurrent(h: ArrayView2<'_, f32>, w: &Array2<f32>, mut gates: ArrayViewMut2<'_, f32>) {
    #[cfg(target_arch = "x86_64")]
    {
        let (k, n) = w.dim();
        if std::arch::is_x86_feature_detected!("avx512f")
            && (1..=256).contains(&k)
            && n % 16 == 0
            && h.ncols() == k
            && gates.dim() == (h.nrows(), n)
            && let (Some(hs), Some(ws)) = (h.as_slice(), w.as_slice())
            && let Some(gs) = gates.as_slice_mut()
        {
            // SAFETY: the CPU has AVX-512F (checked above); the slices hold `rows·k`, `k·n` and `rows·n` floats
            // in row-major order (checked shapes, contiguous views), which is all the kernel reads and writes.
            #[allow(unsafe_code)]
            unsafe {
                avx512::add_recurrent(hs, k, ws, n, gs);
            }
            return;
        }
    }
    general_mat_mul(1.0, &h, w, 1.0, &mut gates);
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512 {
    use std::arch::x86_64::{
        __m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
    };

    /// `g += h·w` for row-major `h` (`[rows, k]`), `w` (`[k, n]`, n a multiple of 16) and `g` (`[rows, n]`), in
    /// column panels of up to 128 and pairs of rows.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `h.len() == rows·k`, `w.len() == k·n`, `g.len() == rows·n`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn add_recurrent(h: &[f32], k: usize, w: &[f32], n: usize, g: &mut [f32]) {
        let mut col = 0;
        while col < n {
            let width = (n - col).min(128);
            // SAFETY: the caller's contract, and `col + width ≤ n`.
            unsafe {
                match width / 16 {
                    8 => panel::<8>(h, k, w, n, g, col),
                    7 => panel::<7>(h, k, w, n, g, col),
                    6 => panel::<6>(h, k, w, n, g, col),
                    5 => panel::<5>(h, k, w, n, g, col),
                    4 => panel::<4>(h, k, w, n, g, col),
                    3 => panel::<3>(h, k, w, n, g, col),
                    2 => panel::<2>(h, k, w, n, g, col),
                    _ => panel::<1>(h, k, w, n, g, col),
                }
            }
            col += width;
        }
    }

    /// Columns `col..col + 16·P` of every row.
    ///
    /// # Safety
    /// As [`add_recurrent`], and `col + 16·P ≤ n`.
    #[target_feature(enable = "avx512f")]
    unsafe fn panel<const P: usize>(h: &[f32], k: usize, w: &[f32], n: usize, g: &mut [f32], col: usize) {
        let rows = h.len() / k;
        let (hp, wp, gp) = (h.as_ptr(), w.as_ptr(), g.as_mut_ptr());
        let mut r = 0;
        // SAFETY (every pointer below): rows `r`, `r + 1` < rows, `kk` < k, columns `col + 16·v + 0..16` < n.
        unsafe {
            while r + 1 < rows {
                let mut a: [__m512; P] = [_mm512_setzero_ps(); P];
                let mut b: [__m512; P] = [_mm512_setzero_ps(); P];
                for kk in 0..k {
                    let (x, y) = (_mm512_set1_ps(*hp.add(r * k + kk)), _mm512_set1_ps(*hp.add((r + 1) * k + kk)));
                    let wr = wp.add(kk * n + col);
                    for v in 0..P {
                        let wv = _mm512_loadu_ps(wr.add(16 * v));
                        a[v] = _mm512_fmadd_ps(x, wv, a[v]);
                        b[v] = _mm512_fmadd_ps(y, wv, b[v]);
                    }
                }
                for v in 0..P {
                    let (p, q) = (gp.add(r * n + col + 16 * v), gp.add((r + 1) * n + col + 16 * v));
                    _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), a[v]));
                    _mm512_storeu_ps(q, _mm512_add_ps(_mm512_loadu_ps(q), b[v]));
                }
                r += 2;
            }
            if r < rows {
                let mut a: [__m512; P] = [_mm512_setzero_ps(); P];
                for kk in 0..k {
                    let x = _mm512_set1_ps(*hp.add(r * k + kk));
                    let wr = wp.add(kk * n + col);
                    for (v, acc) in a.iter_mut().enumerate() {
                        *acc = _mm512_fmadd_ps(x, _mm512_loadu_ps(wr.add(16 * v)), *acc);
                    }
                }
                for (v, acc) in a.iter().enumerate() {
                    let p = gp.add(r * n + col + 16 * v);
                    _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), *acc));
                }
            }
        }
    }
}

/// Defines `fn $name`, which runs its body compiled for AVX-512 or AVX2 where the CPU has them (detected at run
/// time, once per process) and for baseline x86-64 elsewhere. The bodies are element-wise float arithmetic without
/// `mul_add`, which Rust never contracts into FMAs: the same IEEE operations on 16 or 8 lanes instead of 4, so
/// results are bit-identical.
macro_rules! simd_dispatch {
    ($(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn generic($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) {
                    generic($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) {
                    generic($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F, checked on the line above.
                    #[allow(unsafe_code)]
                    return unsafe { avx512($($arg),*) };
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

simd_dispatch! {
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

simd_dispatch! {
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
    use rand::{Rng, SeedableRng};

    use super::*;

    fn random(rng: &mut rand_chacha::ChaCha8Rng, rows: usize, cols: usize) -> Array2<f32> {
        Array2::from_shape_fn((rows, cols), |_| rng.random::<f32>() * 2.0 - 1.0)
    }

    #[test]
    fn the_recurrent_kernel_equals_matrixmultiply_bit_for_bit() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        // Inner dimensions up to matrixmultiply's kc, panels of 1–8 vectors and a remainder, odd row counts,
        // and shapes the kernel leaves to matrixmultiply (n not a multiple of 16, k above 256).
        for &(rows, k, n) in &[
            (1, 1, 16),
            (2, 8, 128),
            (3, 32, 128),
            (17, 32, 144),
            (256, 32, 128),
            (255, 64, 256),
            (9, 33, 512),
            (5, 256, 48),
            (4, 300, 64),
            (6, 16, 12),
        ] {
            let (h, w, g) = (random(&mut rng, rows, k), random(&mut rng, k, n), random(&mut rng, rows, n));
            let mut want = g.clone();
            general_mat_mul(1.0, &h, &w, 1.0, &mut want);
            let mut got = g.clone();
            add_recurrent(h.view(), &w, got.view_mut());
            let same = want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same,
                "rows {rows}, k {k}, n {n}: max difference {}",
                (&want - &got).iter().fold(0.0f32, |m, v| m.max(v.abs()))
            );
        }
    }

    #[test]
    fn the_last_state_pass_equals_the_full_forward_pass_bit_for_bit() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let (steps, batch, inputs) = (7, 13, 5);
        for hidden in [4, 16, 32] {
            let layer = |rng: &mut rand_chacha::ChaCha8Rng, inputs: usize| LayerWeights {
                input: random(rng, inputs, 4 * hidden),
                bias: Array1::from_shape_fn(4 * hidden, |_| rng.random::<f32>() - 0.5),
                recurrent: random(rng, hidden, 4 * hidden),
            };
            let layers = vec![layer(&mut rng, inputs), layer(&mut rng, hidden), layer(&mut rng, hidden)];
            // Step-major inputs, projected by layer 0 as prediction does.
            let x = random(&mut rng, steps * batch, inputs);
            let projected = layers[0].project(x.view());
            let mut tape = forward(&layers[0], projected.clone(), steps);
            for w in &layers[1..] {
                tape = forward(w, w.project(tape.hidden.view()), steps);
            }
            let four = 4 * hidden;
            let last = forward_last(&layers, steps, batch, |t, gates| {
                gates.copy_from_slice(&projected.as_slice().unwrap()[t * batch * four..(t + 1) * batch * four]);
            });
            assert_eq!(last.dim(), (batch, hidden));
            let same = tape.last(batch).iter().zip(&last).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "hidden {hidden}");
        }
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
}
