//! `stockcast quality`.

use std::path::PathBuf;

use super::out;
use crate::cli::QualityArgs;
use stockcast_pipeline::Ctx;
use stockcast_pipeline::prices::load;

pub(crate) fn run(ctx: &Ctx, args: &QualityArgs) -> anyhow::Result<()> {
    // A database URL names no file: the quarantine goes to `prices.quarantine.csv`, never to a name with the URL.
    let beside = if stockcast_features::is_database_url(&args.data.prices) {
        PathBuf::from("prices")
    } else {
        PathBuf::from(args.data.prices.file_name().unwrap_or_default())
    };
    let loaded = load(ctx, &args.data.input(), &beside, args.json.as_deref())?;
    let r = &loaded.report;
    if args.json.as_deref() != Some(std::path::Path::new("-")) {
        out(&format!(
            "ok: {} rows of {} symbols kept ({} quarantined), data hash {}",
            r.rows_kept,
            r.symbols,
            r.rows_quarantined,
            loaded.prices.data_hash()
        ));
    }
    Ok(())
}
