//! `stockcast serve`: the HTTP inference server.

use std::time::Duration;

use stockcast_infer::server::{self, ServeConfig};

use crate::UsageError;
use crate::cli::ServeArgs;
use stockcast_pipeline::Ctx;
use stockcast_pipeline::prices::runtime;

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
    let cfg = settings(a)?;
    let exit_after = a.exit_after_s.map(Duration::from_secs_f64);
    runtime()?.block_on(async move {
        let addr = cfg.addr;
        let state = server::build_state(cfg, ctx.clock().clone()).await?;
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        // Installed before "serving" is announced: from then on SIGTERM means a graceful stop.
        let signal = server::shutdown_signal();
        let models = state.models().by_name.values().map(|s| s.label()).collect::<Vec<_>>();
        ctx.note(&format!(
            "serving {} on http://{} (models: {})",
            if models.is_empty() { "no model yet" } else { "predictions" },
            listener.local_addr()?,
            if models.is_empty() { "none".to_owned() } else { models.join(", ") }
        ));
        let shutdown = async move {
            match exit_after {
                Some(d) => tokio::select! {
                    () = tokio::time::sleep(d) => {},
                    () = signal => {},
                },
                None => signal.await,
            }
        };
        server::serve(state, listener, shutdown).await?;
        ctx.note("server stopped");
        Ok(())
    })
}
