//! `stockcast backtest`: walk-forward evaluation of the configured models and a report directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;
use stockcast_backtest::report::{self, RunMeta};
use stockcast_backtest::{BacktestConfig, Market, ModelSpec, RunOptions, SplitConfig, WalkForward, portfolio, runner};
use stockcast_features::polars::prelude::*;
use stockcast_features::{FeatureMatrix, MatrixOptions, PriceFrame};
use stockcast_models::{Dataset, History};

use super::features::{compute, resolve_spec};
use super::{Ctx, load, out};
use crate::UsageError;
use crate::cli::{BacktestArgs, DataArgs};

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

/// Keeps only `symbols` (all when empty); unknown symbols are an error.
fn only_symbols(prices: PriceFrame, symbols: &[String]) -> anyhow::Result<PriceFrame> {
    if symbols.is_empty() {
        return Ok(prices);
    }
    let have = prices.symbols()?;
    if let Some(missing) = symbols.iter().find(|s| !have.contains(s)) {
        return Err(UsageError(format!("data.symbols: {missing} is not in the prices ({})", have.join(", "))).into());
    }
    let df = prices.df();
    let mask: BooleanChunked =
        df.column("symbol")?.str()?.iter().map(|s| s.is_some_and(|s| symbols.iter().any(|x| x == s))).collect();
    Ok(PriceFrame::from_df(df.filter(&mask)?)?)
}

/// The walk-forward run with a progress bar over every (model, fold).
pub(crate) fn walk_forward(
    ctx: Ctx,
    data: &Dataset,
    models: &[ModelSpec],
    split: &SplitConfig,
    opts: RunOptions,
) -> anyhow::Result<WalkForward> {
    let pb = ctx.progress.bar(0, "walk-forward");
    let wf = runner::run(data, models, split, opts, &|model, fold, done, total| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
        pb.set_message(format!("walk-forward {model} fold {fold}"));
        tracing::debug!(model, fold, done, total, "fold done");
    })?;
    pb.finish_and_clear();
    Ok(wf)
}

pub(crate) fn run(ctx: Ctx, a: &BacktestArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut timings = BTreeMap::new();
    let cfg = config(a)?;
    let prices_path = cfg
        .data
        .prices
        .clone()
        .ok_or_else(|| UsageError("no prices: set data.prices in the config or pass --prices".into()))?;
    let out_dir = a.out.clone().unwrap_or_else(|| Path::new("runs").join(&cfg.name));
    let models = cfg.model_specs()?;
    let spec = resolve_spec(cfg.data.spec.as_deref(), cfg.data.horizon, false)?;

    let t = Instant::now();
    let data_args = DataArgs::file(prices_path.clone(), cfg.data.securities.clone(), a.on_bad_rows);
    let quarantine_beside = out_dir.with_extension("prices.csv");
    let loaded = load(ctx, &data_args, &quarantine_beside, None)?;
    let prices = only_symbols(loaded.prices, &cfg.data.symbols)?;
    let index = cfg.data.index.as_deref().map(portfolio::load_index).transpose()?;
    timings.insert("load_quality".to_owned(), t.elapsed().as_secs_f64());

    let t = Instant::now();
    let frame = compute(ctx, &prices, &spec)?;
    let matrix = FeatureMatrix::from_frame(&frame, MatrixOptions::default())?;
    let data = Dataset::new(matrix, Arc::new(History::from_prices(&prices)?));
    timings.insert("features".to_owned(), t.elapsed().as_secs_f64());

    let t = Instant::now();
    let opts = RunOptions { horizon: spec.label.horizon, seed: cfg.seed, jobs: cfg.jobs };
    let wf = walk_forward(ctx, &data, &models, &cfg.split, opts)?;
    timings.insert("walk_forward".to_owned(), t.elapsed().as_secs_f64());

    let t = Instant::now();
    let market = Market::from_prices(&prices)?;
    let kinds = models.iter().map(|m| (m.name.clone(), m.config.kind().to_owned())).collect();
    let reports = report::evaluate(&wf, &kinds, &market, &cfg.strategy, index.as_ref())?;
    timings.insert("evaluate".to_owned(), t.elapsed().as_secs_f64());

    let t = Instant::now();
    let (first, last) = prices.date_range()?.unzip();
    let mut resolved = serde_json::to_value(&cfg)?;
    resolved["models_resolved"] = serde_json::to_value(&models)?;
    let meta = RunMeta {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        config: resolved,
        data: json!({
            "prices": prices_path.display().to_string(),
            "data_hash": prices.data_hash(),
            "symbols": prices.symbols()?.len(),
            "rows": prices.height(),
            "first_date": first,
            "last_date": last,
            "index": cfg.data.index.as_ref().map(|p| p.display().to_string()),
        }),
        feature_spec_hash: spec.hash().0,
        horizon: spec.label.horizon,
        seed: cfg.seed,
        timings: timings.clone(),
    };
    let dir: PathBuf = report::write_run(&out_dir, &meta, &wf, &reports, &cfg.strategy)
        .with_context(|| format!("writing the run to {}", out_dir.display()))?;
    tracing::info!(seconds = t.elapsed().as_secs_f64(), total = started.elapsed().as_secs_f64(), "report written");
    out(&format!(
        "backtest {}: {} model(s), {} folds ({} .. {}), horizon {}, strategy {:?}, {:.1} s",
        cfg.name,
        models.len(),
        wf.folds.len(),
        wf.results.first().map(|r| r.test_start.to_string()).unwrap_or_default(),
        wf.results.iter().map(|r| r.test_end).max().map(|d| d.to_string()).unwrap_or_default(),
        spec.label.horizon,
        cfg.strategy.rule(),
        started.elapsed().as_secs_f64()
    ));
    out(report::summary_table(&reports).trim_end());
    out(&format!("report: {}", dir.join("report.html").display()));
    Ok(())
}
