//! `stockcast train`: the nightly job ([`crate::train::run`]) with the command line's overrides.

use std::path::PathBuf;

use stockcast_features::outputs::Replace;

use super::{out, policy};
use crate::cli::TrainArgs;
use crate::ctx::Ctx;
use crate::staging::Staging;
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
    let shard = crate::backtest::shard_id(a.shard.as_deref(), a.shards, |k| std::env::var(k).ok())?;
    let stage = a.run_dir.as_deref().map(|d| Staging::new(d, Replace::forced(a.force))).transpose()?;
    if let Some(stage) = &stage {
        if a.plan {
            let plan = crate::train::write_plan(ctx, &cfg, &opts, &stage.dir)?;
            stage.push_plan(true)?;
            out(&format!(
                "{} tasks ({} models × refit folds) planned in {}/plan.json",
                plan.tasks.len(),
                plan.models.len(),
                stage.shown()
            ));
            return Ok(());
        }
        if let Some(id) = shard {
            stage.pull(false)?;
            let (ran, of) = crate::train::run_shard(ctx, &cfg, &opts, &stage.dir, id)?;
            stage.push_shard(id)?;
            out(&format!("shard {id}: {ran} of {of} tasks -> {}/shards/{}", stage.shown(), id.index));
            return Ok(());
        }
    }
    let summary = match &stage {
        Some(stage) if a.merge => {
            stage.pull(true)?;
            crate::train::merge(ctx, &cfg, &opts, &stage.dir)?
        }
        _ => crate::train::run(ctx, &cfg, &opts)?,
    };
    out(&summary.feature_cache);
    for m in &summary.models {
        out(&m.line());
    }
    out(&format!("run summary: {}", summary.path.display()));
    Ok(())
}
