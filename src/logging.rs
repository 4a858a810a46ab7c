//! tracing setup: text or JSON lines on stderr; level from `--quiet` or `STOCKCAST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Installs the global subscriber (once; later calls are ignored, which keeps tests that call `run` twice happy).
pub fn init(format: LogFormat, quiet: bool) {
    // sqlx logs the server's NOTICEs ("relation already exists, skipping") at info and slow statements at warn
    // (a full read of a large prices table is slow by nature): keep them out unless STOCKCAST_LOG asks.
    let default = if quiet { "warn,sqlx=error" } else { "info,sqlx=error" };
    let filter = EnvFilter::try_from_env("STOCKCAST_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
