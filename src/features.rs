//! Feature specs and datasets for the jobs: the spec a run asks for, and prices → [`Dataset`] with a progress
//! spinner and a log line.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use stockcast_features::{FeatureFrame, FeatureSpec, PriceFrame, build_features, build_labels};
use stockcast_models::{Dataset, DatasetOptions};

use crate::UsageError;
use crate::ctx::Ctx;

/// Rows per shard of a sharded feature build (whole symbols): 250k rows of 68 f64 features are ~140 MB in flight,
/// one Parquet row group (512² rows at most) per shard; the last shard's encoding is the tail of a streamed build.
pub const SHARD_ROWS: usize = 250_000;

/// The spec from `path` (or the default spec) with `horizon` and `demean` applied.
pub fn resolve_spec(path: Option<&Path>, horizon: Option<usize>, demean: bool) -> anyhow::Result<FeatureSpec> {
    let mut spec = match path {
        Some(p) => FeatureSpec::from_file(p).with_context(|| format!("reading feature spec {}", p.display()))?,
        None => FeatureSpec::default(),
    };
    if let Some(h) = horizon {
        if h == 0 {
            return Err(UsageError("--horizon must be at least 1".into()).into());
        }
        spec.label.horizon = h;
    }
    spec.label.demean |= demean;
    Ok(spec)
}

/// Builds features with a progress spinner and logs what was computed.
pub fn compute(ctx: &Ctx, prices: &PriceFrame, spec: &FeatureSpec) -> anyhow::Result<FeatureFrame> {
    timed(ctx, "computing features", || build_features(prices, spec), |f| (f.height(), f.features().len()))
}

/// Runs a feature build under a progress spinner named `step` and logs `features computed` with the rows and
/// feature columns `counts` reads off its result, and the seconds it took.
pub(crate) fn timed<T, E: std::error::Error + Send + Sync + 'static>(
    ctx: &Ctx,
    step: &str,
    build: impl FnOnce() -> Result<T, E>,
    counts: impl Fn(&T) -> (usize, usize),
) -> anyhow::Result<T> {
    let pb = ctx.progress.step(step);
    let t = Instant::now();
    let built = build().context("computing features")?;
    pb.finish_and_clear();
    let (rows, features) = counts(&built);
    tracing::info!(rows, features, seconds = t.elapsed().as_secs_f64(), "features computed");
    Ok(built)
}

/// [`Dataset::from_frame`] of freshly computed features, with the spinner of [`compute`].
pub fn dataset(ctx: &Ctx, prices: &PriceFrame, spec: &FeatureSpec, opts: DatasetOptions) -> anyhow::Result<Dataset> {
    let frame = compute(ctx, prices, spec)?;
    Ok(Dataset::from_frame(&frame, prices, opts)?)
}

/// The dataset `models` read: the features of `spec` ([`Dataset::from_prices_sharded`]: [`dataset`]'s result,
/// built shard by shard) when any of them reads features, otherwise the label of `spec` alone ([`build_labels`]:
/// the same rows, no feature columns), which is all rules need.
pub fn dataset_for(
    ctx: &Ctx,
    prices: &PriceFrame,
    spec: &FeatureSpec,
    models: &[stockcast_backtest::ModelSpec],
    opts: DatasetOptions,
) -> anyhow::Result<Dataset> {
    // Sequence models read every row before each row: keep it as the context once, here, rather than a copy of
    // the whole dataset in the runner.
    let opts = DatasetOptions { context: opts.context || models.iter().any(|m| m.config.uses_sequences()), ..opts };
    if models.iter().any(|m| m.config.uses_features()) {
        // Shard by shard: the f64 feature frame of a 5,000-symbol panel (6.9 GB) is never whole.
        return timed(
            ctx,
            "computing features",
            || Dataset::from_prices_sharded(prices, spec, opts, SHARD_ROWS),
            |d| (d.len(), d.matrix.ncols()),
        );
    }
    tracing::info!("no model reads features: computing the label only");
    let frame = timed(ctx, "computing features", || build_labels(prices, spec), |f| (f.height(), f.features().len()))?;
    Ok(Dataset::from_frame(&frame, prices, opts)?)
}
