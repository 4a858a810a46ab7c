//! The recommendation job as a library call: score a day with published model versions (the champions, or
//! pinned references), rank, assign actions, and store each run in Postgres.

use std::path::Path;

use chrono::NaiveDate;
use sqlx::PgPool;
use stockcast_features::PriceFrame;
use stockcast_infer::recommend::{self, Action, DayRun, RecommendConfig, Scorer};
use stockcast_infer::store::{self, StoredRun};
use stockcast_models::registry::{ModelRef, Registry};

use crate::prices::{PriceInput, runtime};
use crate::{Ctx, Error, Result};

/// The model references to run: the given ones, or every registry name that has a champion.
///
/// # Errors
/// A usage error when nothing is given and the registry has no champion.
pub fn references(reg: &Registry, given: &[ModelRef]) -> Result<Vec<ModelRef>> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    let refs = recommend::champion_references(reg)?;
    if refs.is_empty() {
        return Err(Error::Usage(format!(
            "no champion model in {} (run `stockcast train` or pass --model NAME@VERSION)",
            reg.root().display()
        )));
    }
    Ok(refs)
}

/// Loads the scorers of `refs` (hashes verified); an unknown reference is a usage error.
pub fn scorers(reg: &Registry, refs: &[ModelRef]) -> Result<Vec<Scorer>> {
    refs.iter().map(|r| Scorer::load(reg, r).map_err(|e| Error::Usage(format!("model {r}: {e}")))).collect()
}

/// One stored day of one model version.
#[derive(Debug, Clone)]
pub struct StoredDay {
    /// `name@version`.
    pub model: String,
    /// The as-of date.
    pub date: NaiveDate,
    /// The rows and parameters computed.
    pub day: DayRun,
    /// What the store did.
    pub stored: StoredRun,
}

impl StoredDay {
    /// A summary line and the top rows, for the console.
    pub fn lines(&self, top: usize) -> Vec<String> {
        let counts = recommend::action_counts(&self.day.rows);
        let count = |x: Action| counts.get(&x).copied().unwrap_or(0);
        let mut lines = vec![format!(
            "{} as of {}: {} recommendations ({} buy, {} hold, {} sell) {} run {} in one transaction",
            self.model,
            self.date,
            self.stored.rows,
            count(Action::Buy),
            count(Action::Hold),
            count(Action::Sell),
            if self.stored.replaced { "replaced" } else { "stored as" },
            self.stored.run_id
        )];
        for r in self.day.rows.iter().take(top) {
            lines.push(format!(
                "  #{:<3} {:<8} expected {:+.4}  {:<4}  {}",
                r.rank,
                r.symbol,
                r.expected_return,
                r.action.as_str(),
                r.sector.as_deref().unwrap_or("")
            ));
        }
        lines
    }
}

/// Scores `date` with each scorer, then stores every run in ONE transaction (all model versions or none).
///
/// # Errors
/// Usage errors for a date without prices or a bad action rule; database and model errors.
pub fn store_days(
    ctx: &Ctx,
    rt: &tokio::runtime::Runtime,
    pool: &PgPool,
    scorers: &[Scorer],
    prices: &PriceFrame,
    date: NaiveDate,
    cfg: &RecommendConfig,
) -> Result<Vec<StoredDay>> {
    rt.block_on(store::migrate(pool))?;
    let created_at = ctx.clock().now();
    let mut days = Vec::new();
    for scorer in scorers {
        let pb = ctx.step(&format!("scoring {} as of {date}", scorer.label()));
        let day = recommend::compute_day(scorer, prices, date, cfg, &recommend::Cancel::new());
        pb.finish();
        days.push(day.map_err(|e| if e.is_user_error() { Error::Usage(e.to_string()) } else { e.into() })?);
    }
    let runs: Vec<store::NewRun<'_>> = scorers
        .iter()
        .zip(&days)
        .map(|(scorer, day)| store::NewRun {
            manifest: &scorer.manifest,
            as_of: date,
            created_at,
            params: day.params.clone(),
            rows: &day.rows,
        })
        .collect();
    let stored = rt.block_on(store::store_runs(pool, &runs))?;
    drop(runs);
    let mut out = Vec::new();
    for ((scorer, day), stored) in scorers.iter().zip(days).zip(stored) {
        for (symbol, why) in &day.skipped {
            ctx.note(&format!("  not scored: {symbol}: {why}"));
        }
        for symbol in &day.unscored {
            ctx.note(&format!("  unscored: {symbol}: the model gave no finite score (not ranked, no action)"));
        }
        out.push(StoredDay { model: scorer.label(), date, day, stored });
    }
    Ok(out)
}

pub use crate::db::Database;

/// The whole job: load the scorers from `models_dir` and the prices (a file, or the database's `prices` table,
/// through the quality checks; removed rows quarantined as `recommend-prices.quarantine.csv`), then score and
/// store `date`.
///
/// # Errors
/// As [`crate::prices::load`], [`references`], [`scorers`] and [`store_days`].
pub fn run(
    ctx: &Ctx,
    models_dir: &Path,
    models: &[ModelRef],
    prices: &PriceInput,
    date: NaiveDate,
    cfg: &RecommendConfig,
    db: &Database,
) -> Result<Vec<StoredDay>> {
    let loaded = crate::prices::load(ctx, prices, Path::new("recommend-prices.csv"), None)?;
    let prices = &loaded.prices;
    let reg = Registry::new(models_dir);
    let scorers = scorers(&reg, &references(&reg, models)?)?;
    let rt = runtime()?;
    let pool = rt.block_on(db.connect())?;
    let result = store_days(ctx, &rt, &pool, &scorers, prices, date, cfg);
    rt.block_on(pool.close());
    result
}
