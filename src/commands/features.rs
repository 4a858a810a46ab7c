//! `stockcast features`.

use std::time::Instant;

use anyhow::Context;
use stockcast_features::{FeatureFrame, FeatureSpec, PriceFrame, build_features};

use super::{Ctx, load, out};
use crate::UsageError;
use crate::cli::FeaturesArgs;

/// The spec from `--spec` (or the default) with `--horizon`/`--demean` applied.
pub(crate) fn resolve_spec(
    path: Option<&std::path::Path>,
    horizon: Option<usize>,
    demean: bool,
) -> anyhow::Result<FeatureSpec> {
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

/// Builds features with a progress spinner and logs what was skipped.
pub(crate) fn compute(ctx: Ctx, prices: &PriceFrame, spec: &FeatureSpec) -> anyhow::Result<FeatureFrame> {
    let pb = ctx.progress.step("computing features");
    let t = Instant::now();
    let frame = build_features(prices, spec).context("computing features")?;
    pb.finish_and_clear();
    tracing::info!(
        rows = frame.df().height(),
        features = frame.features().len(),
        seconds = t.elapsed().as_secs_f64(),
        "features computed"
    );
    Ok(frame)
}

pub(crate) fn run(ctx: Ctx, args: &FeaturesArgs) -> anyhow::Result<()> {
    let spec = resolve_spec(args.spec.as_deref(), args.horizon, args.demean)?;
    let loaded = load(ctx, &args.data, &args.out, args.quality_json.as_deref())?;
    let frame = compute(ctx, &loaded.prices, &spec)?;
    for note in frame.notes() {
        ctx.note(&format!("note: {note}"));
    }
    let pb = ctx.progress.step(&format!("writing {}", args.out.display()));
    frame.write(&args.out).with_context(|| format!("writing {}", args.out.display()))?;
    pb.finish_and_clear();
    let symbols = loaded.prices.symbols()?;
    out(&format!(
        "wrote {}: {} rows, {} symbols, {} features + label (horizon {}), spec hash {}",
        args.out.display(),
        frame.df().height(),
        symbols.len(),
        frame.features().len(),
        spec.label.horizon,
        frame.spec_hash()
    ));
    if !frame.skipped().is_empty() {
        let fams: Vec<String> =
            frame.skipped().iter().map(|s| format!("{} ({})", s.family.name(), s.features.len())).collect();
        out(&format!("skipped families (feature count; see the notes on stderr): {}", fams.join(", ")));
    }
    Ok(())
}
