//! The database jobs of `stockcast db`: apply the migrations, import a price file into the `prices` table (one
//! transaction, through the quality checks first).

use std::path::Path;
use std::time::Duration;

use sqlx::PgPool;
use stockcast_infer::store::{self, ImportStats, PoolConfig};

use crate::prices::{PriceInput, load, runtime};
use crate::{Ctx, Result};

/// A Postgres database and how to connect to it.
#[derive(Debug, Clone)]
pub struct Database {
    /// Postgres URL.
    pub url: String,
    /// Pool size (at least 1).
    pub max_connections: u32,
    /// Connection timeout.
    pub timeout: Duration,
}

impl Database {
    /// A pool of connections to it.
    ///
    /// # Errors
    /// The database cannot be reached (named without its password).
    pub async fn connect(&self) -> Result<PgPool> {
        let cfg = PoolConfig { max_connections: self.max_connections.max(1), acquire_timeout: self.timeout };
        Ok(store::connect(&self.url, cfg).await?)
    }
}

/// Applies the migrations.
///
/// # Errors
/// Connection and migration errors.
pub fn migrate(db: &Database) -> Result<()> {
    runtime()?.block_on(async {
        let pool = db.connect().await?;
        store::migrate(&pool).await?;
        pool.close().await;
        Ok(())
    })
}

/// Loads `input` through the quality checks (removed rows quarantined beside the file) and writes it into the
/// `prices` table in one transaction, with the securities' names and sectors.
///
/// # Errors
/// Loading and quality errors; connection, migration and write errors.
pub fn import_prices(ctx: &Ctx, db: &Database, input: &PriceInput) -> Result<ImportStats> {
    let loaded = load(ctx, input, Path::new(&input.prices), None)?;
    runtime()?.block_on(async {
        let pool = db.connect().await?;
        store::migrate(&pool).await?;
        let stats = store::import_prices(&pool, &loaded.prices, loaded.prices.securities()).await;
        pool.close().await;
        Ok(stats?)
    })
}
