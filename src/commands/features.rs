//! `stockcast features`.

use anyhow::Context;

use super::out;
use crate::cli::FeaturesArgs;
use crate::ctx::Ctx;
use crate::features::{SHARD_ROWS, resolve_spec, timed};
use crate::prices::load;

pub(crate) fn run(ctx: &Ctx, args: &FeaturesArgs) -> anyhow::Result<()> {
    let spec = resolve_spec(args.spec.as_deref(), args.horizon, args.demean)?;
    // Checked before the work (and again when written): a file output never replaces a directory.
    stockcast_features::outputs::check_output_file(&args.out)?;
    let loaded = load(ctx, &args.data.input(), &args.out, args.quality_json.as_deref())?;
    let written = timed(
        ctx,
        &format!("computing features and writing {}", args.out.display()),
        || stockcast_features::write_features(&loaded.prices, &spec, &args.out, SHARD_ROWS),
        |w| (w.rows, w.features.len()),
    )
    .with_context(|| format!("writing {}", args.out.display()))?;
    for note in written.notes() {
        ctx.note(&format!("note: {note}"));
    }
    let symbols = loaded.prices.symbols()?;
    out(&format!(
        "wrote {}: {} rows, {} symbols, {} features + label (horizon {}), spec hash {}",
        args.out.display(),
        written.rows,
        symbols.len(),
        written.features.len(),
        spec.label.horizon,
        written.spec_hash
    ));
    if !written.skipped.is_empty() {
        let fams: Vec<String> =
            written.skipped.iter().map(|s| format!("{} ({})", s.family.name(), s.features.len())).collect();
        out(&format!("skipped families (feature count; see the notes on stderr): {}", fams.join(", ")));
    }
    Ok(())
}
