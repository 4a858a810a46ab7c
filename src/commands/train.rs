//! `stockcast train`: the nightly job ([`crate::train::run`]) with the command line's overrides.

use std::path::PathBuf;

use super::{out, policy};
use crate::cli::TrainArgs;
use crate::ctx::Ctx;
use crate::train::{TrainConfig, TrainOptions};

pub(crate) fn run(ctx: &Ctx, a: &TrainArgs) -> anyhow::Result<()> {
    let mut cfg = TrainConfig::from_file(&a.config)?;
    if let Some(p) = a.prices.clone().or_else(|| a.database_url.as_ref().map(PathBuf::from)) {
        cfg.backtest.data.prices = Some(p);
    }
    cfg.backtest.seed = a.seed.unwrap_or(cfg.backtest.seed);
    let opts = TrainOptions {
        models_dir: a.models_dir.clone(),
        as_of: a.as_of,
        created_at: a.created_at.clone(),
        on_bad_rows: a.on_bad_rows.map(policy),
    };
    let summary = crate::train::run(ctx, &cfg, &opts)?;
    out(&summary.feature_cache);
    for m in &summary.models {
        out(&m.line());
    }
    out(&format!("run summary: {}", summary.path.display()));
    Ok(())
}
