//! `stockcast backtest`: read the config with the command line's overrides, run the step asked for
//! ([`stockcast_pipeline::backtest::execute`]), print a summary.

use std::path::{Path, PathBuf};
use std::time::Instant;

use stockcast_backtest::BacktestConfig;
use stockcast_backtest::config::Overrides;
use stockcast_backtest::portfolio::IndexKind;
use stockcast_features::outputs::Replace;
use stockcast_pipeline::Ctx;
use stockcast_pipeline::backtest::{self, Backtest, BacktestData, BacktestJob};
use stockcast_pipeline::sharded::{Step, Stepped};
use stockcast_pipeline::staging::Staging;

use super::{out, policy};
use crate::cli::{BacktestAction, BacktestArgs};

/// Reads the config and applies the command-line overrides; the library checks the result once.
fn config(a: &BacktestArgs) -> anyhow::Result<BacktestConfig> {
    let overrides = Overrides {
        prices: a.prices.clone().or_else(|| a.database_url.as_ref().map(PathBuf::from)),
        index: a.index.clone(),
        index_kind: a.index_kind.as_deref().map(|k| match k {
            "total_return" => IndexKind::TotalReturn,
            _ => IndexKind::Price,
        }),
        quality_config: a.quality.quality_config.clone(),
        splits: a.quality.splits.clone(),
        adjust_detected_splits: a.quality.adjust_detected_splits,
        models: a.models.clone(),
        seed: a.seed,
        jobs: a.jobs,
        memory_gb: a.memory_gb,
        horizon: a.horizon,
        test_days: a.test_days,
        min_train_days: a.min_train_days,
        rebalance_days: a.rebalance_days,
        commission_bps: a.commission_bps,
        slippage_bps: a.slippage_bps,
    };
    Ok(BacktestConfig::from_file(&a.config)?.with_overrides(&overrides)?)
}

pub(crate) fn run(ctx: &Ctx, a: &BacktestArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let (stage, job, step, replace) = if let Some(BacktestAction::Merge(m)) = &a.action {
        let stage = Staging::new(&m.out, Replace::Own)?;
        let job = BacktestJob::from_plan(ctx, &stage, m.prices.clone(), m.on_bad_rows.map(policy))?;
        (stage, job, Step::Merge, Replace::Own)
    } else {
        let cfg = config(a)?;
        let out_dir = a.out.clone().unwrap_or_else(|| Path::new("runs").join(&cfg.name));
        let shard = stockcast_pipeline::backtest::shard_id(a.shard.as_deref(), a.shards, |k| std::env::var(k).ok())?;
        let replace = Replace::forced(a.force);
        // Checked before any work: a refused directory costs nothing.
        let stage = Staging::new(&out_dir, replace)?;
        let data = BacktestData::load(ctx, &cfg, a.on_bad_rows.map(policy), &stage.dir.with_extension("prices.csv"))?;
        let step = match (a.plan, shard) {
            (true, _) => Step::Plan,
            (false, Some(id)) => Step::Shard(id),
            (false, None) => Step::Whole,
        };
        (stage, BacktestJob::new(cfg, data), step, replace)
    };
    match backtest::execute(ctx, job, &stage, step, replace)? {
        Stepped::Planned(plan) => out(&format!(
            "{} tasks ({} models × refit folds, {} folds) planned in {}/{}",
            plan.tasks.len(),
            plan.models.len(),
            plan.folds,
            stage.shown(),
            stockcast_backtest::shard::PLAN_FILE
        )),
        Stepped::Shard(r) => out(&format!(
            "shard {}: {} of {} tasks in {:.1} s -> {}",
            r.id,
            r.tasks.0,
            r.tasks.1,
            started.elapsed().as_secs_f64(),
            stage.shown_shard(r.id)
        )),
        Stepped::Done(bt) => summary(&bt, &stage.shown(), started),
    }
    Ok(())
}

fn summary(bt: &Backtest, dir: &str, started: Instant) {
    out(&format!("{}, {:.1} s", bt.headline(), started.elapsed().as_secs_f64()));
    out(bt.summary_table().trim_end());
    out(&format!("report: {dir}/report.html"));
}
