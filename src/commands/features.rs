//! `stockcast features`: [`stockcast_pipeline::features::write`] and a summary.

use stockcast_pipeline::Ctx;
use stockcast_pipeline::features::{resolve_spec, write};

use super::out;
use crate::cli::FeaturesArgs;

pub(crate) fn run(ctx: &Ctx, args: &FeaturesArgs) -> anyhow::Result<()> {
    let spec = resolve_spec(args.spec.as_deref(), args.horizon, args.demean)?;
    let w = write(ctx, &args.data.input(), &spec, &args.out, args.quality_json.as_deref())?;
    let written = &w.written;
    out(&format!(
        "wrote {}: {} rows, {} symbols, {} features + label (horizon {}), spec hash {}",
        args.out.display(),
        written.rows,
        w.symbols,
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
