//! `stockcast serve` as a library call: the HTTP server on the promoted models until SIGTERM/SIGINT (or a time
//! limit), with a graceful drain.

use std::time::Duration;

use stockcast_infer::server::{self, ServeConfig};

use crate::prices::runtime;
use crate::{Ctx, Error, Result};

/// Serves `cfg` until a shutdown signal, or for `exit_after` when given; notes where it listens and which
/// models it serves.
///
/// # Errors
/// The address cannot be bound; the database or models cannot be loaded at start-up.
pub fn run(ctx: &Ctx, cfg: ServeConfig, exit_after: Option<Duration>) -> Result<()> {
    runtime()?.block_on(async move {
        let addr = cfg.addr;
        let state = server::build_state(cfg, ctx.clock().clone()).await?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Failed(format!("cannot listen on {addr}: {e}")))?;
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
