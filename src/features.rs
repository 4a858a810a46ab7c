//! Feature specs and datasets for the jobs: the spec a run asks for, and prices → [`Dataset`] with a progress
//! spinner and a log line.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use stockcast_features::{FeatureFrame, FeatureSpec, PriceFrame, build_features};
use stockcast_models::{Dataset, DatasetOptions};

use crate::UsageError;
use crate::ctx::Ctx;

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
    let pb = ctx.progress.step("computing features");
    let t = Instant::now();
    let frame = build_features(prices, spec).context("computing features")?;
    pb.finish_and_clear();
    tracing::info!(
        rows = frame.height(),
        features = frame.features().len(),
        seconds = t.elapsed().as_secs_f64(),
        "features computed"
    );
    Ok(frame)
}

/// [`Dataset::from_frame`] of freshly computed features, with the spinner of [`compute`].
pub fn dataset(ctx: &Ctx, prices: &PriceFrame, spec: &FeatureSpec, opts: DatasetOptions) -> anyhow::Result<Dataset> {
    let frame = compute(ctx, prices, spec)?;
    Ok(Dataset::from_frame(&frame, prices, opts)?)
}
