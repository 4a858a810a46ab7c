//! Feature specs and datasets for the jobs: the spec a run asks for, and prices → [`Dataset`] with a progress
//! spinner and a log line.

use std::path::Path;
use std::time::Instant;

use stockcast_features::{Checked, FeatureFrame, FeatureSpec, PriceFrame, build_features, build_labels};
use stockcast_models::{Dataset, DatasetOptions};

use crate::prices::{PriceInput, load};
use crate::{Context, Ctx, Error, Result};

/// Rows per shard of a sharded feature build (whole symbols): 250k rows of 68 f64 features are ~140 MB in flight,
/// one Parquet row group (512² rows at most) per shard; the last shard's encoding is the tail of a streamed build.
pub const SHARD_ROWS: usize = 250_000;

/// The spec from `path` (or the default spec) with `horizon` and `demean` applied.
pub fn resolve_spec(path: Option<&Path>, horizon: Option<usize>, demean: bool) -> Result<Checked<FeatureSpec>> {
    let mut spec = match path {
        Some(p) => {
            FeatureSpec::from_file(p).with_context(|| format!("reading feature spec {}", p.display()))?.into_inner()
        }
        None => FeatureSpec::default(),
    };
    if let Some(h) = horizon {
        if h == 0 {
            return Err(Error::Usage("--horizon must be at least 1".into()));
        }
        spec.label.horizon = h;
    }
    if demean && !spec.label.demean.is_on() {
        spec.label.demean = stockcast_features::spec::Demean::Date;
    }
    Ok(Checked::new(spec)?)
}

/// Builds features with a progress spinner and logs what was computed.
pub fn compute(ctx: &Ctx, prices: &PriceFrame, spec: &Checked<FeatureSpec>) -> Result<FeatureFrame> {
    timed(ctx, "computing features", || build_features(prices, spec), |f| (f.height(), f.features().len()))
}

/// Runs a feature build under a progress spinner named `step` and logs `features computed` with the rows and
/// feature columns `counts` reads off its result, and the seconds it took.
pub(crate) fn timed<T, E: Into<Error>>(
    ctx: &Ctx,
    step: &str,
    build: impl FnOnce() -> Result<T, E>,
    counts: impl Fn(&T) -> (usize, usize),
) -> Result<T> {
    let pb = ctx.step(step);
    let t = Instant::now();
    let built = build().context("computing features")?;
    pb.finish();
    let (rows, features) = counts(&built);
    tracing::info!(rows, features, seconds = t.elapsed().as_secs_f64(), "features computed");
    Ok(built)
}

/// What [`write`] wrote.
#[derive(Debug)]
pub struct Written {
    /// The file's rows, features, skipped families and spec hash.
    pub written: stockcast_features::WrittenFeatures,
    /// Symbols in the prices.
    pub symbols: usize,
}

/// `stockcast features`: prices (through the quality checks, the report written to `quality_json` when given)
/// → the features and label of `spec` → a Parquet or CSV file at `out`, built shard by shard.
///
/// # Errors
/// A refused output (a directory); loading, quality and feature errors; the write's.
pub fn write(
    ctx: &Ctx,
    input: &PriceInput,
    spec: &Checked<FeatureSpec>,
    out: &Path,
    quality_json: Option<&Path>,
) -> Result<Written> {
    // Checked before the work (and again when written): a file output never replaces a directory.
    stockcast_features::outputs::check_output_file(out)?;
    let loaded = load(ctx, input, out, quality_json)?;
    let written = timed(
        ctx,
        &format!("computing features and writing {}", out.display()),
        || stockcast_features::write_features(&loaded.prices, spec, out, SHARD_ROWS),
        |w| (w.rows, w.features.len()),
    )
    .with_context(|| format!("writing {}", out.display()))?;
    for note in written.notes() {
        ctx.note(&format!("note: {note}"));
    }
    Ok(Written { written, symbols: loaded.prices.symbols()?.len() })
}

/// [`Dataset::from_frame`] of freshly computed features, with the spinner of [`compute`].
pub fn dataset(ctx: &Ctx, prices: &PriceFrame, spec: &Checked<FeatureSpec>, opts: DatasetOptions) -> Result<Dataset> {
    let frame = compute(ctx, prices, spec)?;
    Ok(Dataset::from_frame(&frame, prices, opts)?)
}

/// The dataset `models` read: the features of `spec` ([`Dataset::from_prices_sharded`]: [`dataset`]'s result,
/// built shard by shard) when any of them reads features, otherwise the label of `spec` alone ([`build_labels`]:
/// the same rows, no feature columns), which is all rules need.
pub fn dataset_for(
    ctx: &Ctx,
    prices: &PriceFrame,
    spec: &Checked<FeatureSpec>,
    models: &[stockcast_backtest::ModelSpec],
    opts: DatasetOptions,
) -> Result<Dataset> {
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
