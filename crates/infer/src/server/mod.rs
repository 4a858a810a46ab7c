//! The HTTP inference server (axum): stored predictions and recommendations from Postgres, live scoring with the
//! promoted model versions, recommendation runs, hot reload of champions, Prometheus metrics.
//!
//! Every error is JSON `{"error": code, "message": text}` with no SQL, paths or panic text in it; every response
//! carries `x-request-id`. Middleware, outermost first: request id → metrics → panic catcher → rate limit →
//! timeout → handler.

pub mod api;
mod handlers;
pub mod metrics;
mod openapi;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::NaiveDate;
use futures_util::FutureExt as _;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use stockcast_models::registry::Registry;

use crate::error::{Error, Result};
use crate::recommend::{RecommendConfig, Scorer};
use crate::store::{self, PoolConfig};
pub use metrics::Metrics;

/// Server settings; every field has a default (TOML file, then flags / environment variables on top).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    pub models: Vec<String>,
    /// Apply pending migrations at start.
    pub migrate: bool,
    /// Largest request body, bytes (413 above).
    pub body_limit_bytes: usize,
    /// Per-request time limit, ms (503 `timeout` after it).
    pub request_timeout_ms: u64,
    /// Requests per second allowed on /v1 routes (token bucket; 0 = unlimited; 429 beyond).
    pub rate_limit_per_s: f64,
    /// Bucket size of the rate limit.
    pub rate_limit_burst: f64,
    /// How long a `GET /v1/recommendations` answer is served from memory, ms (0 = no cache).
    pub cache_ttl_ms: u64,
    /// Check the registry for new champions every this many seconds (0 = only on `POST /v1/admin/reload`).
    pub poll_s: u64,
    /// Most database connections.
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
            rate_limit_per_s: 0.0,
            rate_limit_burst: 200.0,
            cache_ttl_ms: 1_000,
            poll_s: 30,
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
        let text = std::fs::read_to_string(path).map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| Error::Data(format!("{}: {e}", path.display())))
    }
}

pub use stockcast_features::Clock;

/// The model versions being served, by name.
#[derive(Debug, Default)]
pub struct ModelSet {
    /// Scorers by registry name.
    pub by_name: BTreeMap<String, Arc<Scorer>>,
}

impl ModelSet {
    fn versions(&self) -> Vec<(String, u64)> {
        self.by_name.values().map(|s| (s.name.clone(), s.version)).collect()
    }
}

/// Scores of one (model version, date), computed once from the stored prices.
type DayKey = (String, u64, NaiveDate);

/// Computed once: concurrent requests for the same day wait for the first computation instead of repeating it.
type DayCell = Arc<tokio::sync::OnceCell<Arc<BTreeMap<String, f64>>>>;

/// Shared state.
pub struct AppState {
    cfg: ServeConfig,
    registry: Registry,
    models: RwLock<Arc<ModelSet>>,
    pool: PgPool,
    /// Metrics.
    pub metrics: Metrics,
    cache: Mutex<HashMap<String, (Instant, Bytes)>>,
    days: Mutex<HashMap<DayKey, DayCell>>,
    db_up: AtomicBool,
    clock: Clock,
    request_seq: AtomicU64,
    bucket: Mutex<(f64, Instant)>,
    reload_lock: tokio::sync::Mutex<()>,
    refused: Mutex<Vec<(String, u64)>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

/// An API error: status, a stable code and a message for the caller (never internals).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_parameter", message)
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", message)
    }
    fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; the server log has the details")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code, "message": self.message });
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
        }
        r
    }
}

impl AppState {
    /// Maps an engine error to an API error, logging what the caller does not see.
    fn error(&self, e: Error) -> ApiError {
        match e {
            Error::Database(
                ref inner @ (sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)),
            ) => {
                self.db_up.store(false, Ordering::Relaxed);
                tracing::warn!(error = %inner, "database unavailable");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", "the database is unavailable")
            }
            Error::Unavailable(m) => {
                tracing::warn!(error = %m, "database unavailable");
                self.db_up.store(false, Ordering::Relaxed);
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", "the database is unavailable")
            }
            Error::Data(m) => ApiError::unprocessable(m),
            Error::Features(f) if f.is_user_error() => ApiError::unprocessable(f.to_string()),
            other => {
                tracing::error!(error = %other, "request failed");
                ApiError::internal()
            }
        }
    }

    /// The models being served now (a snapshot: a reload swaps the set without touching requests in flight).
    pub fn models(&self) -> Arc<ModelSet> {
        match self.models.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ServeConfig {
        &self.cfg
    }

    fn invalidate(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.clear();
        }
        if let Ok(mut d) = self.days.lock() {
            d.clear();
        }
    }

    /// The references to serve: the configured ones, or every model's champion.
    fn references(&self) -> Result<Vec<String>> {
        if !self.cfg.models.is_empty() {
            return Ok(self.cfg.models.clone());
        }
        crate::recommend::champion_references(&self.registry)
    }

    /// Loads new versions of the served references and swaps them in; a version that fails to load (missing
    /// or damaged files, wrong spec) is refused and the one already served stays.
    ///
    /// # Errors
    /// Registry errors listing the references.
    pub async fn reload(self: &Arc<Self>) -> Result<ReloadReport> {
        let _guard = self.reload_lock.lock().await;
        let current = self.models();
        let mut next = BTreeMap::new();
        let mut report = ReloadReport::default();
        for reference in self.references()? {
            let resolved = self.registry.resolve(&reference);
            let (name, version) = match resolved {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(model = %reference, error = %e, "model reference not found");
                    report
                        .refused
                        .push(Refused { model: reference.clone(), reason: "not found in the registry".into() });
                    continue;
                }
            };
            if let Some(s) = current.by_name.get(&name).filter(|s| s.version == version) {
                next.insert(name, s.clone());
                continue;
            }
            let registry = self.registry.clone();
            let label = format!("{name}@{version}");
            let loaded = tokio::task::spawn_blocking(move || Scorer::load(&registry, &label))
                .await
                .map_err(|e| Error::Data(format!("loading {name}@{version}: {e}")))?;
            match loaded {
                Ok(s) => {
                    report.loaded.push(s.label());
                    next.insert(name, Arc::new(s));
                }
                Err(e) => {
                    tracing::error!(model = %format!("{name}@{version}"), error = %e, "new model version refused");
                    if let Ok(mut r) = self.refused.lock() {
                        r.push((name.clone(), version));
                    }
                    report.refused.push(Refused {
                        model: format!("{name}@{version}"),
                        reason: "damaged or incompatible artifact (hashes, files or feature spec); see the server log"
                            .into(),
                    });
                    if let Some(old) = current.by_name.get(&name) {
                        next.insert(name, old.clone());
                    }
                }
            }
        }
        report.serving = next.values().map(|s| s.label()).collect();
        let changed = next.len() != current.by_name.len()
            || next.iter().any(|(n, s)| current.by_name.get(n).is_none_or(|o| o.version != s.version));
        if changed {
            if let Ok(mut w) = self.models.write() {
                *w = Arc::new(ModelSet { by_name: next });
            }
            self.invalidate();
        }
        self.metrics.reload(if report.refused.is_empty() { "ok" } else { "refused" });
        Ok(report)
    }

    /// True when the registry names versions other than those served (and not refused before).
    fn registry_changed(&self) -> bool {
        let Ok(refs) = self.references() else { return false };
        let current = self.models();
        let refused = self.refused.lock().map(|r| r.clone()).unwrap_or_default();
        refs.iter().any(|r| match self.registry.resolve(r) {
            Ok((name, version)) => {
                current.by_name.get(&name).is_none_or(|s| s.version != version) && !refused.contains(&(name, version))
            }
            Err(_) => false,
        })
    }
}

pub use api::{Refused, ReloadReport};

/// Connects with retries and exponential back-off.
///
/// # Errors
/// [`Error::Unavailable`] after the last attempt, naming the attempts and the last error.
pub async fn connect_with_retry(cfg: &ServeConfig) -> Result<PgPool> {
    let url = cfg
        .database_url
        .as_deref()
        .ok_or_else(|| Error::Data("no database URL: pass --database-url or set DATABASE_URL".into()))?;
    let pool_cfg = PoolConfig {
        max_connections: cfg.db_max_connections.max(1),
        acquire_timeout: Duration::from_millis(cfg.db_acquire_timeout_ms.max(1)),
    };
    let attempts = cfg.db_connect_attempts.max(1);
    let mut wait = Duration::from_millis(cfg.db_connect_backoff_ms);
    let mut last = String::new();
    for attempt in 1..=attempts {
        match store::connect(url, pool_cfg).await {
            Ok(p) => return Ok(p),
            Err(e) => {
                last = match e {
                    Error::Unavailable(m) => m,
                    other => other.to_string(),
                };
                if attempt < attempts {
                    tracing::warn!(attempt, of = attempts, retry_in_ms = wait.as_millis() as u64, error = %last, "database not reachable yet");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }
    Err(Error::Unavailable(format!("gave up after {attempts} attempts: {last}")))
}

/// Builds the state: connects (with retries), migrates when asked, loads the served models.
///
/// # Errors
/// Database unavailable after the retries; a configured model reference that cannot be loaded.
pub async fn build_state(cfg: ServeConfig, clock: Clock) -> Result<Arc<AppState>> {
    let pool = connect_with_retry(&cfg).await?;
    if cfg.migrate {
        store::migrate(&pool).await?;
    }
    let state = Arc::new(AppState {
        registry: Registry::new(&cfg.models_dir),
        models: RwLock::new(Arc::new(ModelSet::default())),
        pool,
        metrics: Metrics::default(),
        cache: Mutex::new(HashMap::new()),
        days: Mutex::new(HashMap::new()),
        db_up: AtomicBool::new(true),
        clock,
        request_seq: AtomicU64::new(0),
        bucket: Mutex::new((cfg.rate_limit_burst, Instant::now())),
        reload_lock: tokio::sync::Mutex::new(()),
        refused: Mutex::new(Vec::new()),
        cfg,
    });
    let report = state.reload().await?;
    if !state.cfg.models.is_empty() && !report.refused.is_empty() {
        let why: Vec<String> = report.refused.iter().map(|r| format!("{}: {}", r.model, r.reason)).collect();
        return Err(Error::Data(format!("cannot serve the configured models: {}", why.join("; "))));
    }
    if report.serving.is_empty() {
        tracing::warn!(models_dir = %state.cfg.models_dir.display(), "no champion model to serve: /readyz answers 503 until one is promoted and reloaded");
    }
    Ok(state)
}

/// The router with every route and middleware.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .route("/openapi.json", get(handlers::openapi))
        .route("/v1/models", get(handlers::models))
        .route("/v1/predictions", get(handlers::predictions))
        .route("/v1/recommendations", get(handlers::recommendations))
        .route("/v1/predict", post(handlers::predict))
        .route("/v1/recommendations/run", post(handlers::run_recommendations))
        .route("/v1/admin/reload", post(handlers::reload))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.cfg.body_limit_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), timeout))
        .layer(middleware::from_fn_with_state(state.clone(), rate_limit))
        .layer(middleware::from_fn(catch_panic))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(middleware::from_fn_with_state(state.clone(), request_id))
        .with_state(state)
}

async fn request_id(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned);
    let id = given.unwrap_or_else(|| format!("sc-{:x}", state.request_seq.fetch_add(1, Ordering::Relaxed) + 1));
    let value = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    req.headers_mut().insert("x-request-id", value.clone());
    let mut resp = next.run(req).await;
    resp.headers_mut().insert("x-request-id", value);
    resp
}

async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    // The route pattern the router matched (bounded label set); the fallback has none.
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    state.metrics.observe(&route, &method, resp.status().as_u16(), start.elapsed());
    resp
}

async fn catch_panic(req: Request, next: Next) -> Response {
    if let Ok(r) = std::panic::AssertUnwindSafe(next.run(req)).catch_unwind().await {
        r
    } else {
        tracing::error!("a request handler panicked");
        ApiError::internal().into_response()
    }
}

async fn rate_limit(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let rate = state.cfg.rate_limit_per_s;
    if rate > 0.0 && req.uri().path().starts_with("/v1/") {
        let allowed = state.bucket.lock().is_ok_and(|mut b| {
            let now = Instant::now();
            b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * rate).min(state.cfg.rate_limit_burst.max(1.0));
            b.1 = now;
            if b.0 >= 1.0 {
                b.0 -= 1.0;
                true
            } else {
                false
            }
        });
        if !allowed {
            return ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("more than {rate} requests per second; retry later"),
            )
            .into_response();
        }
    }
    next.run(req).await
}

async fn timeout(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let limit = Duration::from_millis(state.cfg.request_timeout_ms.max(1));
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request took longer than {} ms", limit.as_millis()),
        )
        .into_response(),
    }
}

/// Serves until `shutdown` resolves (then finishes the requests in flight); polls the registry for new
/// champions every `poll_s` seconds.
///
/// # Errors
/// I/O errors of the listener.
pub async fn serve(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let poller = (state.cfg.poll_s > 0).then(|| {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(state.cfg.poll_s));
            tick.tick().await;
            loop {
                tick.tick().await;
                let s = state.clone();
                let changed = tokio::task::spawn_blocking(move || s.registry_changed()).await.unwrap_or(false);
                if changed {
                    match state.reload().await {
                        Ok(r) => {
                            tracing::info!(loaded = ?r.loaded, refused = r.refused.len(), "registry poll: reloaded");
                        }
                        Err(e) => tracing::error!(error = %e, "registry poll: reload failed"),
                    }
                }
            }
        })
    });
    let app = router(state);
    let result = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    if let Some(p) = poller {
        p.abort();
    }
    result
}

/// A server on `cfg.addr` (port 0: a free one), running on the current tokio runtime until [`Background::stop`]
/// (or drop): for the demo, the benchmark and the tests.
#[derive(Debug)]
pub struct Background {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Background {
    /// Builds the state ([`build_state`]) and serves on `cfg.addr`.
    ///
    /// # Errors
    /// As [`build_state`]; [`Error::Io`] when no port can be bound.
    pub async fn start(cfg: ServeConfig, clock: Clock) -> Result<Self> {
        let addr = cfg.addr;
        let state = build_state(cfg, clock).await?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(state, listener, async move {
            let _ = rx.await;
        }));
        Ok(Self { addr, stop: Some(tx), task: Some(task) })
    }

    /// Graceful stop: returns when the requests in flight are done.
    ///
    /// # Errors
    /// The server's I/O error, or [`Error::Io`] when its task panicked.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.task.take() {
            Some(t) => Ok(t.await.map_err(|e| Error::Io(std::io::Error::other(e.to_string())))??),
            None => Ok(()),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
/// Resolves on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is called, not when the
/// future is first polled, so a signal that arrives after the server says it is serving is never the default
/// "terminate now". Call it inside the runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let wait = {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                }
                (Ok(mut one), Err(_)) | (Err(_), Ok(mut one)) => {
                    one.recv().await;
                }
                (Err(_), Err(_)) => std::future::pending::<()>().await,
            }
        }
    };
    #[cfg(not(unix))]
    let wait = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    async move {
        wait.await;
        tracing::info!("shutting down: finishing requests in flight");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testkit::HttpClient;

    #[tokio::test]
    async fn a_panicking_handler_becomes_a_json_500_without_the_panic_text() {
        async fn boom() -> &'static str {
            panic!("secret internal detail at /srv/x.rs:1")
        }
        let app = Router::new().route("/boom", get(boom)).layer(middleware::from_fn(catch_panic));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut c = HttpClient::connect(addr).await.unwrap();
        let r = c.send("GET", "/boom", &[], None).await.unwrap();
        assert_eq!(r.status, 500);
        assert_eq!(r.json()["error"], "internal");
        assert!(!r.text().contains("secret"), "{}", r.text());
        // The server keeps serving.
        let r = c.send("GET", "/boom", &[], None).await.unwrap();
        assert_eq!(r.status, 500);
    }
}

#[cfg(test)]
mod config_tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn the_documented_settings_file_holds_exactly_the_defaults() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/serve.toml");
        assert_eq!(super::ServeConfig::from_file(&p).unwrap(), super::ServeConfig::default());
        let e = toml::from_str::<super::ServeConfig>("colour = 1").unwrap_err().to_string();
        assert!(e.contains("colour"), "{e}");
    }
}
