//! `stockcast db migrate | import-prices` ([`stockcast_pipeline::db`]).

use std::time::Duration;

use stockcast_infer::store;
use stockcast_pipeline::Ctx;
use stockcast_pipeline::db::{self, Database};

use super::out;
use crate::cli::{DbArgs, DbCommand};

impl DbArgs {
    /// The library's description of this database.
    pub(crate) fn database(&self) -> Database {
        Database {
            url: self.database_url.clone(),
            max_connections: self.db_max_connections,
            timeout: Duration::from_secs(self.db_timeout_s),
        }
    }
}

pub(crate) fn run(ctx: &Ctx, cmd: DbCommand) -> anyhow::Result<()> {
    match cmd {
        DbCommand::Migrate(a) => {
            db::migrate(&a.database())?;
            out(&format!("migrations applied to {}", store::redact(&a.database_url)));
        }
        DbCommand::ImportPrices { db: a, data } => {
            let s = db::import_prices(ctx, &a.database(), &data.input())?;
            out(&format!(
                "imported {} price rows of {} symbols from {} ({} new, {} updated) in one transaction",
                s.rows,
                s.symbols,
                data.prices.display(),
                s.inserted,
                s.updated
            ));
        }
    }
    Ok(())
}
