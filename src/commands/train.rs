//! `stockcast train`: the nightly job ([`stockcast_pipeline::train`]) with the command line's overrides, whole or
//! one step of a sharded run.

use std::path::PathBuf;

use stockcast_features::outputs::Replace;
use stockcast_pipeline::Ctx;
use stockcast_pipeline::sharded::{self, Step, Stepped};
use stockcast_pipeline::staging::Staging;
use stockcast_pipeline::train::{TrainConfig, TrainJob, TrainOptions};

use super::{out, policy};
use crate::cli::TrainArgs;

pub(crate) fn run(ctx: &Ctx, a: &TrainArgs) -> anyhow::Result<()> {
    let result = run_job(ctx, a);
    // The outcome for monitoring: a finished (whole or merged) run, or a failure; plans and shards write none.
    if let Some(path) = &a.metrics_file {
        let summary = match &result {
            Ok(Some(s)) => Some(s),
            Ok(None) => return Ok(()),
            Err(_) => None,
        };
        // The run's time: --created-at when given (as the manifests record it), else the clock's.
        let now = a
            .created_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or_else(|| ctx.clock().now(), |t| t.with_timezone(&chrono::Utc));
        let text = stockcast_pipeline::train::outcome_metrics(&a.config.display().to_string(), now, summary);
        stockcast_features::io::write_atomic(path, text.as_bytes())
            .map_err(|e| anyhow::anyhow!(e).context(format!("writing the metrics file {}", path.display())))?;
    }
    result.map(|_| ())
}

/// Runs the job; the summary of a finished run (`None` for a plan or a shard).
fn run_job(ctx: &Ctx, a: &TrainArgs) -> anyhow::Result<Option<stockcast_pipeline::train::TrainSummary>> {
    let mut config = TrainConfig::from_file(&a.config)?;
    if let Some(p) = a.prices.clone().or_else(|| a.database_url.as_ref().map(PathBuf::from)) {
        config.backtest.data.prices = Some(p);
    }
    config.backtest.seed = a.seed.unwrap_or(config.backtest.seed);
    let options = TrainOptions {
        models_dir: a.models_dir.clone(),
        as_of: a.as_of,
        created_at: a.created_at.clone(),
        on_bad_rows: a.on_bad_rows.map(policy),
    };
    let job = TrainJob { config, options };
    let shard = stockcast_pipeline::backtest::shard_id(a.shard.as_deref(), a.shards, |k| std::env::var(k).ok())?;
    let step = match (a.plan, shard, a.merge) {
        (true, ..) => Step::Plan,
        (false, Some(id), _) => Step::Shard(id),
        (false, None, true) => Step::Merge,
        (false, None, false) => Step::Whole,
    };
    let stage = a.run_dir.as_deref().map(|d| Staging::new(d, Replace::forced(a.force))).transpose()?;
    let done = match &stage {
        Some(stage) => sharded::step(job, ctx, stage, step)?,
        None => Stepped::Done(sharded::run(job, ctx)?),
    };
    match done {
        Stepped::Planned(plan) => out(&format!(
            "{} tasks ({} models × refit folds) planned in {}/plan.json",
            plan.tasks.len(),
            plan.models.len(),
            stage.as_ref().map(Staging::shown).unwrap_or_default()
        )),
        Stepped::Shard(r) => out(&format!(
            "shard {}: {} of {} tasks -> {}",
            r.id,
            r.tasks.0,
            r.tasks.1,
            stage.as_ref().map(|s| s.shown_shard(r.id)).unwrap_or_default()
        )),
        Stepped::Done(summary) => {
            out(&summary.feature_cache);
            for m in &summary.models {
                out(&m.line());
            }
            out(&format!("run summary: {}", summary.path.display()));
            return Ok(Some(summary));
        }
    }
    Ok(None)
}
