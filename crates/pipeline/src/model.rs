//! `fit` and `predict` as library calls: one model by hand, on prices through the quality checks.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use stockcast_features::outputs::check_output_dir;
use stockcast_features::{FeatureSpec, MatrixOptions};
use stockcast_models::{DatasetOptions, MODEL_MARKER, ModelConfig, Predictions, Replace, TrainedModel};

use crate::features::{dataset, resolve_spec};
use crate::prices::{PriceInput, load};
use crate::{Context, Ctx, Error, Result};

/// What a fit reads and where it saves.
#[derive(Debug, Clone)]
pub struct FitRequest {
    /// The model configuration file.
    pub model: PathBuf,
    /// The prices.
    pub data: PriceInput,
    /// The feature spec (default: the built-in one).
    pub spec: Option<PathBuf>,
    /// Label horizon (default: the spec's).
    pub horizon: Option<usize>,
    /// Last training date.
    pub train_until: NaiveDate,
    /// Share of the training dates held out for early stopping, in [0, 0.9).
    pub valid_fraction: f64,
    /// Seed of the fit.
    pub seed: u64,
    /// The saved model's directory.
    pub out: PathBuf,
    /// Whether `out` may be a directory stockcast did not write.
    pub replace: Replace,
}

/// A saved fit.
#[derive(Debug)]
pub struct Fitted {
    /// The model as saved and loaded back (hashes verified).
    pub saved: TrainedModel,
    /// Rows held out for early stopping.
    pub valid_rows: Option<usize>,
    /// What the kind says about the fit (gbm: rounds kept, top features).
    pub summary: Option<String>,
}

/// Fits a model on prices up to `train_until` and saves it with its feature spec.
///
/// # Errors
/// Usage errors for a bad configuration, fraction, output directory or too little history; loading, feature
/// and model errors.
pub fn fit(ctx: &Ctx, r: &FitRequest) -> Result<Fitted> {
    let config =
        ModelConfig::from_file(&r.model).with_context(|| format!("reading model config {}", r.model.display()))?;
    if !(0.0..0.9).contains(&r.valid_fraction) {
        return Err(Error::usage(format!("--valid-fraction must be in [0, 0.9), got {}", r.valid_fraction)));
    }
    let spec = resolve_spec(r.spec.as_deref(), r.horizon, false)?;
    // Checked before any work (and again by the save): a refused directory costs nothing.
    check_output_dir(&r.out, "saved model", &[MODEL_MARKER], r.replace)?;
    let loaded = load(ctx, &r.data, &r.out, None)?;
    let opts = DatasetOptions {
        matrix: MatrixOptions { require_label: true, drop_incomplete: true },
        context: config.uses_sequences(),
    };
    let data = dataset(ctx, &loaded.prices.until(r.train_until)?, &spec, opts)?;
    if data.is_empty() {
        return Err(Error::usage(format!(
            "no training rows up to {}: the data needs more history than the longest feature window plus the \
             label horizon",
            r.train_until
        )));
    }
    let (train, valid) = if config.uses_validation() {
        data.split_validation(r.valid_fraction, spec.label.span_rows())
    } else {
        (data, None)
    };
    // Sequence models draw their own per-epoch bar.
    let pb =
        (!config.uses_sequences()).then(|| ctx.step(&format!("fitting {} on {} rows", config.kind(), train.len())));
    let model = stockcast_models::fit(&config, &train, valid.as_ref(), r.seed)?;
    if let Some(pb) = pb {
        pb.finish();
    }
    let summary = model.model.fit_summary()?;
    model
        .save(&r.out, &[(stockcast_features::spec::SPEC_FILE, spec.to_toml().as_bytes())], r.replace)
        .with_context(|| format!("saving to {}", r.out.display()))?;
    let saved = TrainedModel::load(&r.out)?;
    Ok(Fitted { saved, valid_rows: valid.as_ref().map(stockcast_models::Dataset::len), summary })
}

/// Scores one trading date with a saved model (its own feature spec).
///
/// # Errors
/// A usage error for a date without prices; loading, feature and model errors.
pub fn predict(
    ctx: &Ctx,
    model_dir: &Path,
    data: &PriceInput,
    date: NaiveDate,
    quarantine_beside: &Path,
) -> Result<Predictions> {
    let model = TrainedModel::load(model_dir)?;
    let spec_path = model_dir.join(stockcast_features::spec::SPEC_FILE);
    let spec = FeatureSpec::from_file(&spec_path).with_context(|| format!("reading {}", spec_path.display()))?;
    let loaded = load(ctx, data, quarantine_beside, None)?;
    let known = loaded.prices.until(date)?;
    let day = stockcast_models::Dataset::for_day(&known, &spec, date, model.meta.config.day_context())?;
    if day.is_empty() {
        let last = loaded.prices.date_range()?.map(|(_, l)| l.to_string()).unwrap_or_default();
        return Err(Error::usage(format!("no prices on {date} (the data ends on {last}; dates are trading days)")));
    }
    Ok(model.predict(&day)?)
}
