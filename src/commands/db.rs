//! `stockcast db migrate | import-prices`.

use std::time::Duration;

use stockcast_infer::store::{self, PoolConfig};

use super::out;
use crate::cli::{DbArgs, DbCommand};
use stockcast_pipeline::Ctx;
use stockcast_pipeline::prices::{load, runtime};

async fn pool(a: &DbArgs) -> anyhow::Result<sqlx::PgPool> {
    let cfg = PoolConfig {
        max_connections: a.db_max_connections.max(1),
        acquire_timeout: Duration::from_secs(a.db_timeout_s),
    };
    Ok(store::connect(&a.database_url, cfg).await?)
}

pub(crate) fn run(ctx: &Ctx, cmd: DbCommand) -> anyhow::Result<()> {
    let rt = runtime()?;
    match cmd {
        DbCommand::Migrate(a) => rt.block_on(async {
            let pool = pool(&a).await?;
            store::migrate(&pool).await?;
            out(&format!("migrations applied to {}", store::redact(&a.database_url)));
            Ok(())
        }),
        DbCommand::ImportPrices { db: a, data } => {
            let loaded = load(ctx, &data.input(), &data.prices, None)?;
            rt.block_on(async {
                let pool = pool(&a).await?;
                store::migrate(&pool).await?;
                let s = store::import_prices(&pool, &loaded.prices, loaded.prices.securities()).await?;
                out(&format!(
                    "imported {} price rows of {} symbols from {} ({} new, {} updated) in one transaction",
                    s.rows,
                    s.symbols,
                    data.prices.display(),
                    s.inserted,
                    s.updated
                ));
                Ok(())
            })
        }
    }
}
