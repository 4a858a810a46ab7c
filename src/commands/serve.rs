//! `stockcast serve`: the HTTP inference server.

use std::time::Duration;

use stockcast_infer::server::ServeConfig;

use crate::UsageError;
use crate::cli::ServeArgs;
use stockcast_pipeline::Ctx;

/// Settings: the file (when given), then flags and environment variables.
pub(crate) fn settings(a: &ServeArgs) -> anyhow::Result<ServeConfig> {
    let mut cfg = match &a.config {
        Some(p) => ServeConfig::from_file(p).map_err(|e| UsageError(e.to_string()))?,
        None => ServeConfig::default(),
    };
    if let Some(x) = a.addr {
        cfg.addr = x;
    }
    if let Some(x) = &a.models_dir {
        cfg.models_dir.clone_from(x);
    }
    if let Some(x) = &a.database_url {
        cfg.database_url = Some(x.clone());
    }
    if let Some(x) = &a.api_token {
        cfg.api_token = Some(x.clone());
    }
    cfg.migrate |= a.migrate;
    if cfg.database_url.is_none() {
        return Err(UsageError(
            "no database: pass --database-url, set DATABASE_URL, or database_url in --config".into(),
        )
        .into());
    }
    Ok(cfg)
}

pub(crate) fn run(ctx: &Ctx, a: &ServeArgs) -> anyhow::Result<()> {
    Ok(stockcast_pipeline::serve::run(ctx, settings(a)?, a.exit_after_s.map(Duration::from_secs_f64))?)
}
