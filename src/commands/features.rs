//! `stockcast features`.

use anyhow::Context;

use super::out;
use crate::cli::FeaturesArgs;
use crate::ctx::Ctx;
use crate::features::{compute, resolve_spec};
use crate::prices::load;

pub(crate) fn run(ctx: &Ctx, args: &FeaturesArgs) -> anyhow::Result<()> {
    let spec = resolve_spec(args.spec.as_deref(), args.horizon, args.demean)?;
    let loaded = load(ctx, &args.data.input(), &args.out, args.quality_json.as_deref())?;
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
        frame.height(),
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
