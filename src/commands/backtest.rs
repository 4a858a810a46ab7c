//! `stockcast backtest`: parse the overrides, run [`crate::backtest::run`], write the report, print a summary.

use std::path::{Path, PathBuf};
use std::time::Instant;

use stockcast_backtest::BacktestConfig;

use super::{out, policy};
use crate::UsageError;
use crate::backtest::{BacktestData, run as run_backtest};
use crate::cli::BacktestArgs;
use crate::ctx::Ctx;

/// Reads the config and applies the command-line overrides.
fn config(a: &BacktestArgs) -> anyhow::Result<BacktestConfig> {
    let mut cfg = BacktestConfig::from_file(&a.config)?;
    if let Some(p) = a.prices.clone().or_else(|| a.database_url.as_ref().map(PathBuf::from)) {
        cfg.data.prices = Some(p);
    }
    if let Some(p) = &a.index {
        cfg.data.index = Some(p.clone());
    }
    if !a.models.is_empty() {
        for name in &a.models {
            if !cfg.models.iter().any(|m| &m.name == name) {
                let known: Vec<&str> = cfg.models.iter().map(|m| m.name.as_str()).collect();
                return Err(
                    UsageError(format!("--model {name}: not in the config (it has {})", known.join(", "))).into()
                );
            }
        }
        cfg.models.retain(|m| a.models.contains(&m.name));
    }
    cfg.seed = a.seed.unwrap_or(cfg.seed);
    cfg.jobs = a.jobs.unwrap_or(cfg.jobs).max(1);
    cfg.data.horizon = a.horizon.or(cfg.data.horizon);
    cfg.split.test_days = a.test_days.unwrap_or(cfg.split.test_days);
    cfg.split.min_train_days = a.min_train_days.unwrap_or(cfg.split.min_train_days);
    cfg.strategy.rebalance_days = a.rebalance_days.unwrap_or(cfg.strategy.rebalance_days);
    cfg.strategy.commission_bps = a.commission_bps.unwrap_or(cfg.strategy.commission_bps);
    cfg.strategy.slippage_bps = a.slippage_bps.unwrap_or(cfg.strategy.slippage_bps);
    cfg.strategy.validate()?;
    Ok(cfg)
}

pub(crate) fn run(ctx: &Ctx, a: &BacktestArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let cfg = config(a)?;
    let out_dir = a.out.clone().unwrap_or_else(|| Path::new("runs").join(&cfg.name));
    let data = BacktestData::load(ctx, &cfg, a.on_bad_rows.map(policy), &out_dir.with_extension("prices.csv"))?;
    let bt = run_backtest(ctx, &cfg, &data)?;
    let dir = bt.write(&out_dir)?;
    out(&format!("{}, {:.1} s", bt.headline(), started.elapsed().as_secs_f64()));
    out(bt.summary_table().trim_end());
    out(&format!("report: {}", dir.join("report.html").display()));
    Ok(())
}
