//! The training loop: mini-batches, the CPU kernel's forward and backward through time or burn's autodiff,
//! Adam, early stopping on the validation loss.

use super::{
    AdamConfig, ChaCha8Rng, Device, DeviceKind, Error, GradientsParams, HuberLossConfig, Inference, LossKind,
    LstmConfig, LstmModel, Module, MseLoss, NETWORK_FORMAT, Net, PREDICT_CHUNK, Reduction, Result, Rows, Saved,
    SeedableRng, SeqIndex, SliceRandom, Tensor, TensorData, burn_rng_lock, kernel, labelled, layer_weights, mean_std,
    sequences, tensor3, to_vec, usable_sd, values,
};

pub(super) fn loss(cfg: &LstmConfig, pred: Tensor<1>, target: Tensor<1>) -> Tensor<1> {
    match cfg.loss {
        LossKind::Mse => MseLoss::new().forward(pred, target, Reduction::Mean),
        LossKind::Huber => HuberLossConfig::new(cfg.huber_delta as f32).init().forward(pred, target, Reduction::Mean),
    }
}

/// The loss of one standardised residual `r`, as burn's losses define it (their mean over a batch is the loss).
pub(super) fn pointwise_loss(cfg: &LstmConfig, r: f64) -> f64 {
    match cfg.loss {
        LossKind::Mse => r * r,
        LossKind::Huber if r.abs() <= cfg.huber_delta => 0.5 * r * r,
        LossKind::Huber => cfg.huber_delta * (r.abs() - 0.5 * cfg.huber_delta),
    }
}

/// Mean loss of the network `infer` over `keys` (in evaluation mode: no dropout).
pub(super) fn eval_loss(
    infer: &Inference,
    index: &SeqIndex<'_>,
    keys: &[&stockcast_features::matrix::RowKey],
    ys: &[f32],
    saved: &Saved,
) -> f64 {
    let mut total = 0.0;
    for (kb, yb) in keys.chunks(PREDICT_CHUNK).zip(ys.chunks(PREDICT_CHUNK)) {
        let scores = infer.predict(index, kb, saved);
        total += scores.iter().zip(yb).map(|(p, y)| pointwise_loss(&saved.config, f64::from(*p - *y))).sum::<f64>();
    }
    total / keys.len().max(1) as f64
}

/// One mini-batch through burn's autodiff of the whole network (`x`: `[batch, lookback, inputs]`): the loss and
/// every parameter's gradient. Used where the network runs on a GPU, and as the reference of [`fused_step`].
pub(super) fn autodiff_step(
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
pub(super) const PARTS: usize = 2;

/// Seed offset of the dropout masks between layers on the CPU path (a stream apart from the shuffling's).
pub(super) const DROPOUT_STREAM: u64 = 0x6d61_736b_7331;

/// `f(item)` for every item, each on its own scoped thread; results in item order.
pub(super) fn in_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = items.iter().map(|item| scope.spawn(move || f(item))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

/// One part of a mini-batch on the CPU: its rows, each layer's step-major input (layer 0: the sequences; above:
/// the layer below's hidden states after dropout) and the dropout masks between layers.
pub(super) struct Part {
    pub(super) start: usize,
    pub(super) batch: usize,
    pub(super) inputs: Vec<ndarray::Array2<f32>>,
    pub(super) masks: Vec<ndarray::Array2<f32>>,
}

/// An inverted-dropout mask: 0 with probability `p`, else `1 / (1 − p)`.
pub(super) fn dropout_mask(rng: &mut ChaCha8Rng, rows: usize, cols: usize, p: f64) -> ndarray::Array2<f32> {
    use rand::Rng;
    let keep = (1.0 / (1.0 - p)) as f32;
    ndarray::Array2::from_shape_simple_fn((rows, cols), || if rng.random::<f64>() < p { 0.0 } else { keep })
}

/// One mini-batch on the CPU (`x`: `[batch, lookback, inputs]`): the LSTM layers' forward and backward passes by
/// hand ([`kernel`]), the parts of the batch on their own threads, and the head, its dropout and the loss in burn's
/// autodiff, which hands back the gradient of the last hidden state. The loss and every parameter's gradient (on
/// `base`, as burn's optimisers take them); agrees with [`autodiff_step`] to float rounding (tested).
pub(super) fn fused_step(
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

/// Fits on `train`, early-stopping on `valid`, reading the rows in place: the feature statistics, labels and
/// sequence keys come from the rows' positions, the sequences from the dataset's context. Without a context the
/// sequences would see the dataset's other rows, so such rows are fitted on a copy ([`LstmConfig::fit_rows`]).
pub(crate) fn fit(cfg: &LstmConfig, train: Rows<'_>, valid: Option<Rows<'_>>, seed: u64) -> Result<LstmModel> {
    let data = train.data;
    let inputs = data.matrix.feature_names.len();
    if inputs == 0 {
        return Err(Error::Data("lstm: the data has no features".into()));
    }
    let (rows, _) = labelled(train, cfg.max_train_rows, None)?;
    if rows.len() < 2 {
        return Err(Error::Data(format!("lstm: {} labelled training rows; need at least 2", rows.len())));
    }
    // Statistics from the training rows only.
    let (means, stds): (Vec<f64>, Vec<f64>) = stockcast_features::stats::column_moments(&data.matrix.x, &rows, 0)
        .into_iter()
        .map(|m| if m.n == 0 { (0.0, 1.0) } else { (m.mean, usable_sd(m.std)) })
        .unzip();
    let y = data.labels()?;
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
    let train_index = SeqIndex::new(data.context.as_deref().unwrap_or(&data.matrix));
    let train_keys: Vec<&stockcast_features::matrix::RowKey> = rows.iter().map(|&i| &data.matrix.index[i]).collect();
    let valid = valid.filter(|v| !v.is_empty() && cfg.patience > 0);
    let valid_parts = valid
        .map(|v| -> Result<_> {
            let (vrows, vys) = labelled(v, 0, Some(&saved))?;
            let keys: Vec<&stockcast_features::matrix::RowKey> =
                vrows.iter().map(|&i| &v.data.matrix.index[i]).collect();
            Ok((SeqIndex::new(v.data.context.as_deref().unwrap_or(&v.data.matrix)), keys, vys))
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
        tracing::debug!(epoch, train_loss, valid_loss = saved.valid_loss.last(), "lstm epoch");
        bar.set_message(msg);
        bar.inc(1);
        if valid_parts.is_some() && since_best >= cfg.patience {
            break;
        }
    }
    bar.finish_and_clear();
    // One line per fit (the epochs are debug events: STOCKCAST_LOG=debug).
    tracing::info!(
        epochs = saved.epochs_run,
        best_epoch = saved.best_epoch,
        train_loss = saved.train_loss.last(),
        valid_loss = saved.valid_loss.get(saved.best_epoch.saturating_sub(1)),
        "lstm fitted"
    );
    let net = best_net.unwrap_or_else(|| net.valid());
    let infer = Inference::of(&net)?;
    Ok(LstmModel { saved, net, infer })
}
