//! `stockcast db migrate | import-prices`.

use std::time::Duration;

use stockcast_infer::db::{self, PoolConfig};

use super::{Ctx, load, out, runtime};
use crate::cli::{DbArgs, DbCommand};

async fn pool(a: &DbArgs) -> anyhow::Result<sqlx::PgPool> {
    let cfg = PoolConfig {
        max_connections: a.db_max_connections.max(1),
        acquire_timeout: Duration::from_secs(a.db_timeout_s),
    };
    Ok(db::connect(&a.database_url, cfg).await?)
}

pub(crate) fn run(ctx: Ctx, cmd: DbCommand) -> anyhow::Result<()> {
    let rt = runtime()?;
    match cmd {
        DbCommand::Migrate(a) => rt.block_on(async {
            let pool = pool(&a).await?;
            db::migrate(&pool).await?;
            out(&format!("migrations applied to {}", db::redact(&a.database_url)));
            Ok(())
        }),
        DbCommand::ImportPrices { db: a, data } => {
            let loaded = load(ctx, &data, &data.prices, None)?;
            rt.block_on(async {
                let pool = pool(&a).await?;
                db::migrate(&pool).await?;
                let s = db::import_prices(&pool, &loaded.prices, loaded.prices.securities()).await?;
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
