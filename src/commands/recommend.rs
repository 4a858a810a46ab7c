//! `stockcast recommend`: score a day with the champion (or pinned) versions and store the recommendations.

use std::path::PathBuf;
use std::time::Duration;

use stockcast_infer::db::{self, PoolConfig};
use stockcast_infer::recommend::{self, Action, ActionRule, RecommendConfig, Scorer};
use stockcast_models::registry::Registry;

use super::{Ctx, load, out, runtime};
use crate::UsageError;
use crate::cli::{ActionMethod, DataArgs, RecommendArgs};

/// The model references to run: the given ones, or every registry name that has a champion.
pub(crate) fn references(reg: &Registry, given: &[String]) -> anyhow::Result<Vec<String>> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    let refs = recommend::champion_references(reg)?;
    if refs.is_empty() {
        return Err(UsageError(format!(
            "no champion model in {} (run `stockcast train` or pass --model NAME@VERSION)",
            reg.root().display()
        ))
        .into());
    }
    Ok(refs)
}

fn config(a: &RecommendArgs) -> RecommendConfig {
    let actions = match a.actions {
        ActionMethod::Quantile => ActionRule::Quantile { buy_fraction: a.buy_fraction, sell_fraction: a.sell_fraction },
        ActionMethod::Threshold => ActionRule::Threshold { buy_above: a.buy_above, sell_below: a.sell_below },
    };
    RecommendConfig { actions, calibration_days: a.calibration_days }
}

pub(crate) fn run(ctx: Ctx, a: &RecommendArgs) -> anyhow::Result<()> {
    let cfg = config(a);
    cfg.actions.validate().map_err(|e| UsageError(e.to_string()))?;
    let created_at = match &a.created_at {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|e| UsageError(format!("--created-at {t:?}: {e}")))?
            .with_timezone(&chrono::Utc),
        None => chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now()),
    };
    let reg = Registry::new(&a.dir.models_dir);
    let scorers = references(&reg, &a.models)?
        .iter()
        .map(|r| Scorer::load(&reg, r).map_err(|e| UsageError(format!("model {r}: {e}")).into()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let prices = a.prices.clone().unwrap_or_else(|| PathBuf::from(&a.db.database_url));
    let data = DataArgs::file(prices, a.securities.clone(), a.on_bad_rows);
    let loaded = load(ctx, &data, std::path::Path::new("recommend-prices.csv"), None)?;
    let rt = runtime()?;
    let pool = rt.block_on(db::connect(
        &a.db.database_url,
        PoolConfig {
            max_connections: a.db.db_max_connections.max(1),
            acquire_timeout: Duration::from_secs(a.db.db_timeout_s),
        },
    ))?;
    let result = store_days(ctx, &rt, &pool, &scorers, &loaded.prices, a.date, &cfg, created_at);
    rt.block_on(pool.close());
    result
}

/// Scores `date` with each scorer and stores each run (one transaction per model version), printing a summary.
#[allow(clippy::too_many_arguments)]
pub(crate) fn store_days(
    ctx: Ctx,
    rt: &tokio::runtime::Runtime,
    pool: &sqlx::PgPool,
    scorers: &[Scorer],
    prices: &stockcast_features::PriceFrame,
    date: chrono::NaiveDate,
    cfg: &RecommendConfig,
    created_at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    rt.block_on(db::migrate(pool))?;
    for scorer in scorers {
        let pb = ctx.progress.step(&format!("scoring {} as of {date}", scorer.label()));
        let day = recommend::compute_day(scorer, prices, date, cfg);
        pb.finish_and_clear();
        let day =
            day.map_err(|e| if e.is_user_error() { anyhow::Error::from(UsageError(e.to_string())) } else { e.into() })?;
        let stored = rt.block_on(recommend::store_run(
            pool,
            &recommend::NewRun {
                manifest: &scorer.manifest,
                as_of: date,
                created_at,
                params: day.params.clone(),
                rows: &day.rows,
            },
        ))?;
        let counts = recommend::action_counts(&day.rows);
        let count = |x: Action| counts.get(&x).copied().unwrap_or(0);
        out(&format!(
            "{} as of {}: {} recommendations ({} buy, {} hold, {} sell) {} run {} in one transaction",
            scorer.label(),
            date,
            stored.rows,
            count(Action::Buy),
            count(Action::Hold),
            count(Action::Sell),
            if stored.replaced { "replaced" } else { "stored as" },
            stored.run_id
        ));
        for (symbol, why) in &day.skipped {
            ctx.note(&format!("  not scored: {symbol}: {why}"));
        }
        for r in day.rows.iter().take(5) {
            out(&format!(
                "  #{:<3} {:<8} expected {:+.4}  {:<4}  {}",
                r.rank,
                r.symbol,
                r.expected_return,
                r.action.as_str(),
                r.sector.as_deref().unwrap_or("")
            ));
        }
    }
    Ok(())
}
