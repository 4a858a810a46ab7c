//! `stockcast backtest`: parse the overrides, run [`crate::backtest::run`], write the report, print a summary.

use std::path::{Path, PathBuf};
use std::time::Instant;

use stockcast_backtest::BacktestConfig;
use stockcast_backtest::config::Overrides;
use stockcast_features::outputs::Replace;

use super::{out, policy};
use crate::backtest::{BacktestData, run as run_backtest};
use crate::cli::{BacktestAction, BacktestArgs};
use crate::ctx::Ctx;
use crate::staging::Staging;

/// Reads the config and applies the command-line overrides; the library checks the result once.
fn config(a: &BacktestArgs) -> anyhow::Result<BacktestConfig> {
    let overrides = Overrides {
        prices: a.prices.clone().or_else(|| a.database_url.as_ref().map(PathBuf::from)),
        index: a.index.clone(),
        models: a.models.clone(),
        seed: a.seed,
        jobs: a.jobs,
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
    if let Some(BacktestAction::Merge(m)) = &a.action {
        let stage = Staging::new(&m.out, Replace::Own)?;
        stage.pull(true)?;
        let bt = crate::backtest::merge(ctx, &stage.dir, m.prices.clone(), m.on_bad_rows.map(policy))?;
        bt.write(&stage.dir, Replace::Own)?;
        stage.push_run()?;
        summary(&bt, &stage.shown(), started);
        return Ok(());
    }
    let cfg = config(a)?;
    let out_dir = a.out.clone().unwrap_or_else(|| Path::new("runs").join(&cfg.name));
    let shard = crate::backtest::shard_id(a.shard.as_deref(), a.shards, |k| std::env::var(k).ok())?;
    let replace = Replace::forced(a.force);
    // Checked before any work: a refused directory costs nothing.
    let stage = Staging::new(&out_dir, replace)?;
    let data = BacktestData::load(ctx, &cfg, a.on_bad_rows.map(policy), &stage.dir.with_extension("prices.csv"))?;
    if a.plan {
        let plan = crate::backtest::write_plan(&cfg, &data, &stage.dir)?;
        stage.push_plan(true)?;
        out(&format!(
            "{} tasks ({} models × refit folds, {} folds) planned in {}/{}",
            plan.tasks.len(),
            plan.models.len(),
            plan.folds,
            stage.shown(),
            stockcast_backtest::shard::PLAN_FILE
        ));
        return Ok(());
    }
    if let Some(shard) = shard {
        stage.pull(false)?;
        let r = crate::backtest::run_shard(ctx, &cfg, &data, &stage.dir, shard)?;
        stage.push_shard(shard)?;
        out(&format!(
            "shard {shard}: {} of {} tasks in {:.1} s -> {}/shards/{}",
            r.tasks.0,
            r.tasks.1,
            started.elapsed().as_secs_f64(),
            stage.shown(),
            shard.index
        ));
        return Ok(());
    }
    let bt = run_backtest(ctx, &cfg, &data)?;
    bt.write(&stage.dir, replace)?;
    stage.push_run()?;
    summary(&bt, &stage.shown(), started);
    Ok(())
}

fn summary(bt: &crate::backtest::Backtest, dir: &str, started: Instant) {
    out(&format!("{}, {:.1} s", bt.headline(), started.elapsed().as_secs_f64()));
    out(bt.summary_table().trim_end());
    out(&format!("report: {dir}/report.html"));
}
