//! `stockcast fit` and `stockcast predict`: use one model by hand.

use anyhow::Context;
use stockcast_features::outputs::check_output_dir;
use stockcast_features::{FeatureSpec, MatrixOptions};
use stockcast_models::{DatasetOptions, MODEL_MARKER, ModelConfig, Replace, TrainedModel};

use super::out;
use crate::UsageError;
use crate::cli::{FitArgs, PredictArgs};
use crate::ctx::Ctx;
use crate::features::{dataset, resolve_spec};
use crate::prices::load;

pub(crate) fn fit(ctx: &Ctx, a: &FitArgs) -> anyhow::Result<()> {
    let config =
        ModelConfig::from_file(&a.model).with_context(|| format!("reading model config {}", a.model.display()))?;
    if !(0.0..0.9).contains(&a.valid_fraction) {
        return Err(UsageError(format!("--valid-fraction must be in [0, 0.9), got {}", a.valid_fraction)).into());
    }
    let spec = resolve_spec(a.spec.as_deref(), a.horizon, false)?;
    // Checked before any work (and again by the save): a refused directory costs nothing.
    let replace = Replace::forced(a.force);
    check_output_dir(&a.out, "saved model", &[MODEL_MARKER], replace)?;
    let loaded = load(ctx, &a.data.input(), &a.out, None)?;
    let opts = DatasetOptions {
        matrix: MatrixOptions { require_label: true, drop_incomplete: true },
        context: config.uses_sequences(),
    };
    let data = dataset(ctx, &loaded.prices.until(a.train_until)?, &spec, opts)?;
    if data.is_empty() {
        return Err(UsageError(format!(
            "no training rows up to {}: the data needs more history than the longest feature window plus the \
             label horizon",
            a.train_until
        ))
        .into());
    }
    let (train, valid) = if config.uses_validation() {
        data.split_validation(a.valid_fraction, spec.label.span_rows())
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
        .save(&a.out, &[("spec.toml", spec.to_toml().as_bytes())], replace)
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

pub(crate) fn predict(ctx: &Ctx, a: &PredictArgs) -> anyhow::Result<()> {
    let model = TrainedModel::load(&a.model_dir)?;
    let spec_path = a.model_dir.join("spec.toml");
    let spec = FeatureSpec::from_file(&spec_path).with_context(|| format!("reading {}", spec_path.display()))?;
    let quarantine_beside = a.out.clone().unwrap_or_else(|| "predictions.csv".into());
    let loaded = load(ctx, &a.data.input(), &quarantine_beside, None)?;
    let opts = DatasetOptions { matrix: MatrixOptions::default(), context: model.meta.config.uses_sequences() };
    let all = dataset(ctx, &loaded.prices.until(a.date)?, &spec, opts)?;
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
