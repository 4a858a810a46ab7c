//! `stockcast fit` and `stockcast predict`: use one model by hand.

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::Context;
use chrono::NaiveDate;
use stockcast_features::{FeatureMatrix, FeatureSpec, MatrixOptions, PriceFrame};
use stockcast_models::{Dataset, History, ModelConfig, TrainedModel};

use super::features::{compute, resolve_spec};
use super::{Ctx, load, out};
use crate::UsageError;
use crate::cli::{FitArgs, PredictArgs};

/// Features of `prices` (known at the close of `as_of`) as a dataset; with `context`, every known feature row is
/// kept beside the selected ones for sequence models.
pub(crate) fn dataset(
    ctx: Ctx,
    prices: &PriceFrame,
    spec: &FeatureSpec,
    as_of: NaiveDate,
    opts: MatrixOptions,
    context: bool,
) -> anyhow::Result<Dataset> {
    let known = prices.until(as_of)?;
    let frame = compute(ctx, &known, spec)?;
    let matrix = FeatureMatrix::from_frame(&frame, opts)?;
    let context = match (context, opts == MatrixOptions::default()) {
        (false, _) => None,
        (true, true) => Some(Arc::new(matrix.clone())),
        (true, false) => Some(Arc::new(FeatureMatrix::from_frame(&frame, MatrixOptions::default())?)),
    };
    Ok(Dataset { matrix, history: Arc::new(History::from_prices(&known)?), context })
}

/// Splits off the last `fraction` of dates as validation, leaving a gap of `gap` trading dates before it.
pub(crate) fn split_validation(data: &Dataset, fraction: f64, gap: usize) -> (Dataset, Option<Dataset>) {
    let dates: Vec<NaiveDate> =
        data.matrix.index.iter().map(|(_, d)| *d).collect::<BTreeSet<_>>().into_iter().collect();
    let n_valid = ((dates.len() as f64) * fraction).round() as usize;
    if fraction <= 0.0 || n_valid == 0 || dates.len() < n_valid + gap + 10 {
        return (data.clone(), None);
    }
    let valid_start = dates[dates.len() - n_valid];
    let train_end = dates[dates.len() - n_valid - gap - 1];
    (data.filter(|(_, d)| *d <= train_end), Some(data.filter(|(_, d)| *d >= valid_start)))
}

pub(crate) fn fit(ctx: Ctx, a: &FitArgs) -> anyhow::Result<()> {
    let config =
        ModelConfig::from_file(&a.model).with_context(|| format!("reading model config {}", a.model.display()))?;
    if !(0.0..0.9).contains(&a.valid_fraction) {
        return Err(UsageError(format!("--valid-fraction must be in [0, 0.9), got {}", a.valid_fraction)).into());
    }
    let spec = resolve_spec(a.spec.as_deref(), a.horizon, false)?;
    let loaded = load(ctx, &a.data, &a.out, None)?;
    let data = dataset(
        ctx,
        &loaded.prices,
        &spec,
        a.train_until,
        MatrixOptions { require_label: true, drop_incomplete: true },
        config.uses_sequences(),
    )?;
    if data.is_empty() {
        return Err(UsageError(format!(
            "no training rows up to {}: the data needs more history than the longest feature window plus the \
             label horizon",
            a.train_until
        ))
        .into());
    }
    let (train, valid) = if config.uses_validation() {
        split_validation(&data, a.valid_fraction, spec.label.horizon)
    } else {
        (data, None)
    };
    // Sequence models draw their own per-epoch bar.
    let pb = if config.uses_sequences() {
        indicatif::ProgressBar::hidden()
    } else {
        ctx.progress.step(&format!("fitting {} on {} rows", config.kind(), train.len()))
    };
    let model = stockcast_models::fit(&config, &train, valid.as_ref(), a.seed)?;
    pb.finish_and_clear();
    model
        .save(&a.out, &[("spec.toml", spec.to_toml().as_bytes())])
        .with_context(|| format!("saving to {}", a.out.display()))?;
    let saved = TrainedModel::load(&a.out)?;
    let (first, last) =
        saved.meta.train_range.map_or((String::new(), String::new()), |(f, l)| (f.to_string(), l.to_string()));
    out(&format!(
        "fitted {} on {} rows ({first} .. {last}){}, {} features, seed {}; saved to {}",
        saved.meta.kind,
        saved.meta.train_rows,
        valid.as_ref().map_or_else(String::new, |v| format!(" with {} validation rows", v.len())),
        saved.meta.feature_names.len(),
        a.seed,
        a.out.display()
    ));
    if let Some(serde_json::Value::Object(imp)) = saved.meta.extra.get("importance_total_gain") {
        let top: Vec<String> = imp.iter().take(5).map(|(k, _)| k.clone()).collect();
        let rounds = saved.meta.extra.get("best_rounds").cloned().unwrap_or_default();
        out(&format!("best rounds {rounds}; top features by gain: {}", top.join(", ")));
    }
    Ok(())
}

pub(crate) fn predict(ctx: Ctx, a: &PredictArgs) -> anyhow::Result<()> {
    let model = TrainedModel::load(&a.model_dir)?;
    let spec_path = a.model_dir.join("spec.toml");
    let spec = FeatureSpec::from_file(&spec_path).with_context(|| format!("reading {}", spec_path.display()))?;
    let quarantine_beside = a.out.clone().unwrap_or_else(|| "predictions.csv".into());
    let loaded = load(ctx, &a.data, &quarantine_beside, None)?;
    let sequences = model.meta.config.uses_sequences();
    let all = dataset(ctx, &loaded.prices, &spec, a.date, MatrixOptions::default(), sequences)?;
    let day = all.filter(|(_, d)| *d == a.date);
    if day.is_empty() {
        let last = loaded.prices.date_range()?.map(|(_, l)| l.to_string()).unwrap_or_default();
        return Err(
            UsageError(format!("no prices on {} (the data ends on {last}; dates are trading days)", a.date)).into()
        );
    }
    let preds = model.predict(&day)?;
    if let Some(p) = &a.out {
        preds.write_csv(p)?;
        ctx.note(&format!("wrote {} predictions to {}", preds.score.len(), p.display()));
    } else {
        out(preds.to_csv().trim_end());
    }
    Ok(())
}
