//! Server settings: a TOML file, then flags and environment variables on top.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::recommend::RecommendConfig;

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut v = serde_json::to_value(self).map_err(|_| std::fmt::Error)?;
        if self.api_token.is_some() {
            v["api_token"] = serde_json::json!("***");
        }
        if let Some(url) = &self.database_url {
            v["database_url"] = serde_json::json!(crate::store::redact(url));
        }
        write!(f, "ServeConfig {v}")
    }
}

/// Server settings; every field has a default (TOML file, then flags / environment variables on top). `Debug`
/// shows no secret: the token is `***`, the database URL redacted.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Listen address.
    pub addr: SocketAddr,
    /// Registry root.
    pub models_dir: PathBuf,
    /// Postgres URL (required; `DATABASE_URL`).
    pub database_url: Option<String>,
    /// Bearer token of `POST /v1/recommendations/run` and `POST /v1/admin/reload` (`STOCKCAST_API_TOKEN`);
    /// without one those endpoints answer 401.
    pub api_token: Option<String>,
    /// Model references to serve (`NAME`, `NAME@ALIAS`, `NAME@VERSION`); empty: the champion of every model.
    pub models: Vec<stockcast_models::registry::ModelRef>,
    /// Apply pending migrations at start.
    pub migrate: bool,
    /// Largest request body, bytes (413 above).
    pub body_limit_bytes: usize,
    /// Per-request time limit, ms (503 `timeout` after it).
    pub request_timeout_ms: u64,
    /// A connection must deliver a complete request head within this long, ms, or it is closed. The timer starts
    /// whenever the connection waits for a request, so it is also the idle keep-alive timeout.
    pub header_read_timeout_ms: u64,
    /// Most open client connections; beyond it, new connections wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// Most open connections from one client address (an IPv6 client: its /64) under `max_connections`; more are
    /// closed at once (0 = no per-address bound).
    pub max_connections_per_address: usize,
    /// Proxies (CIDRs such as `10.0.0.0/8`, or addresses) whose `X-Forwarded-For` / `Forwarded: for=` name the
    /// client: for a request from one of them, the client is the right-most address of the header that is not a
    /// trusted proxy itself. Headers from anyone else are ignored (they cannot be trusted).
    pub trusted_proxies: Vec<String>,
    /// Keep connections open between requests (HTTP/1.1 keep-alive).
    pub keep_alive: bool,
    /// Requests per second allowed on /v1 routes per client (token bucket per API token, else per client IP; 0 =
    /// unlimited; 429 with Retry-After beyond).
    pub rate_limit_per_s: f64,
    /// Bucket size of the rate limit.
    pub rate_limit_burst: f64,
    /// Redis holding the buckets, shared by every replica (`redis://host:port[/db]`); none: buckets in this
    /// process. When Redis cannot be reached the in-process buckets take over.
    pub rate_limit_redis_url: Option<String>,
    /// Key prefix of the buckets in Redis.
    pub rate_limit_key: String,
    /// How long a `GET /v1/recommendations` answer is served from memory, ms (0 = no cache).
    pub cache_ttl_ms: u64,
    /// Most bytes of cached answers (the oldest go first beyond it).
    pub cache_max_bytes: usize,
    /// Expensive computations (scoring a day from the stored history) running at once; more wait up to the
    /// request timeout, and a request that finds `2 × heavy_slots` already waiting gets 503 with Retry-After.
    pub heavy_slots: usize,
    /// Expensive computations one client (its API token, else its address) may have in flight at once; more get
    /// 429 (0 = no per-client bound).
    pub compute_per_client: usize,
    /// Expensive computations one client may start per second (a token bucket of 20, in this process); 429
    /// `too_many_computations` beyond (0 = no bound). Cached answers do not count.
    pub compute_per_client_per_s: f64,
    /// Byte budget of the computed days' scores (every stored symbol's score for one model version and date); the
    /// earliest dates go first beyond it or beyond 64 days.
    pub day_cache_max_bytes: usize,
    /// Check the registry for new champions every this many seconds (0 = only on `POST /v1/admin/reload`).
    pub poll_s: u64,
    /// Probe the database every this many ms (`/healthz`, `stockcast_database_up`); 0 = only on `/readyz`.
    pub health_probe_ms: u64,
    /// Most database connections. Scoring a day reads the stored history over up to one per core (at most 4) at
    /// once, taking only those the pool gives within 200 ms.
    pub db_max_connections: u32,
    /// Wait for a pooled connection at most this long, ms (503 after it).
    pub db_acquire_timeout_ms: u64,
    /// Connection attempts at start before giving up.
    pub db_connect_attempts: u32,
    /// First back-off between attempts, ms (doubles each time).
    pub db_connect_backoff_ms: u64,
    /// Most symbols per request.
    pub max_symbols: usize,
    /// Most rows per response (`limit`).
    pub max_limit: usize,
    /// Most bars in a `POST /v1/predict` body.
    pub max_bars: usize,
    /// How recommendation runs rank and act.
    pub recommend: RecommendConfig,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            models_dir: PathBuf::from("models"),
            database_url: None,
            api_token: None,
            models: Vec::new(),
            migrate: false,
            body_limit_bytes: 1 << 20,
            request_timeout_ms: 30_000,
            header_read_timeout_ms: 10_000,
            max_connections: 4096,
            max_connections_per_address: 256,
            trusted_proxies: Vec::new(),
            keep_alive: true,
            rate_limit_per_s: 0.0,
            rate_limit_burst: 200.0,
            rate_limit_redis_url: None,
            rate_limit_key: "stockcast:ratelimit".into(),
            cache_ttl_ms: 1_000,
            cache_max_bytes: 64 << 20,
            heavy_slots: 2,
            compute_per_client: 1,
            compute_per_client_per_s: 2.0,
            day_cache_max_bytes: 256 << 20,
            poll_s: 30,
            health_probe_ms: 2_000,
            db_max_connections: 8,
            db_acquire_timeout_ms: 2_000,
            db_connect_attempts: 6,
            db_connect_backoff_ms: 250,
            max_symbols: 1_000,
            max_limit: 10_000,
            max_bars: 200_000,
            recommend: RecommendConfig::default(),
        }
    }
}

impl ServeConfig {
    /// Reads a TOML settings file.
    ///
    /// # Errors
    /// [`Error::Data`] naming the file and the bad key.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        Ok(stockcast_features::io::load_toml(path, "server settings")?)
    }
}

#[cfg(test)]
mod config_tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn the_documented_settings_file_holds_exactly_the_defaults() {
        let p =
            std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo and nextest at run time"))
                .join("../../configs/serve.toml");
        assert_eq!(super::ServeConfig::from_file(&p).unwrap(), super::ServeConfig::default());
        let e = toml::from_str::<super::ServeConfig>("colour = 1").unwrap_err().to_string();
        assert!(e.contains("colour"), "{e}");
    }
}

#[cfg(test)]
mod debug_tests {
    use super::ServeConfig;

    #[test]
    fn debug_output_holds_no_secret() {
        let cfg = ServeConfig {
            api_token: Some("s3cret-token".into()),
            database_url: Some("postgres://u:hunter2@h/db?password=hunter2".into()),
            ..ServeConfig::default()
        };
        let text = format!("{cfg:?}");
        assert!(!text.contains("s3cret-token") && !text.contains("hunter2"), "{text}");
        assert!(text.contains("***") && text.contains("postgres://u@h/db"), "{text}");
    }
}
