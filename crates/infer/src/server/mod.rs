//! The HTTP inference server (axum): stored predictions and recommendations from Postgres, live scoring with the
//! promoted model versions, recommendation runs, hot reload of champions, Prometheus metrics.
//!
//! Every error is JSON `{"error": code, "message": text}` with no SQL, paths or panic text in it; every response
//! carries `x-request-id`. Split by concern: [`config`] (settings), [`state`] (pool, served models, reload),
//! `error` (the JSON error), `middleware`, `handlers`, `work` (bounded, cancellable CPU work), [`api`] (typed bodies) and `openapi` (the document
//! generated from them).

pub mod api;
pub mod config;
mod error;
mod handlers;
pub mod metrics;
mod middleware;
mod openapi;
pub mod ratelimit;
pub mod state;
mod work;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use api::{Refused, ReloadReport};
pub use config::ServeConfig;
pub use error::ApiError;
pub use metrics::Metrics;
pub use middleware::{fast_answer, fast_prediction};
pub use state::{AppState, Clock, ModelSet, build_state, connect_with_retry};

use crate::error::{Error, Result};

/// Every route pattern of [`router`] (the metrics' route labels borrow these instead of allocating a copy per
/// request).
pub const ROUTES: [&str; 10] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/v1/models",
    "/v1/predictions",
    "/v1/recommendations",
    "/v1/predict",
    "/v1/recommendations/run",
    "/v1/admin/reload",
];

/// The router with every route and middleware.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .route("/openapi.json", get(openapi::serve))
        .route("/v1/models", get(handlers::models))
        .route("/v1/predictions", get(handlers::predictions))
        .route("/v1/recommendations", get(handlers::recommendations))
        .route("/v1/predict", post(handlers::predict))
        .route("/v1/recommendations/run", post(handlers::run_recommendations))
        .route("/v1/admin/reload", post(handlers::reload))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.cfg.body_limit_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::guard))
        // gzip when the client accepts it (bodies of 32 bytes or more); 5,000-row JSON pages shrink ~8×.
        .layer(tower_http::compression::CompressionLayer::new())
        .with_state(state)
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
    // The database probe: `/healthz` and `stockcast_database_up` recover by themselves after an outage.
    let prober = (state.cfg.health_probe_ms > 0).then(|| {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(state.cfg.health_probe_ms));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                state.probe_database().await;
            }
        })
    });
    let app = router(state.clone());
    let result = accept_loop(&state, listener, app, shutdown).await;
    for task in [poller, prober].into_iter().flatten() {
        task.abort();
    }
    result
}

/// Accepts connections until `shutdown`, each served by hyper's HTTP/1 connection with a header-read timeout,
/// at most `max_connections` at a time (the next accept waits for a free slot, so excess clients queue in the
/// listen backlog instead of exhausting file descriptors); then drains: connections finish their request in
/// flight and close.
async fn accept_loop(
    state: &Arc<AppState>,
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let cfg = &state.cfg;
    let slots = Arc::new(tokio::sync::Semaphore::new(cfg.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(cfg.header_read_timeout_ms.max(1)))
        .keep_alive(cfg.keep_alive);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s { Ok(s) => s, Err(_) => break },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a reset before accept: log, back off a little, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // One address may hold at most `max_connections_per_address` of the connections: beyond it, closed at once
        // (its global slot freed), so one client cannot fill the global cap and make everyone else wait.
        let Some(per_address) = ConnectionGuard::take(state, peer.ip()) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = Connection { app: app.clone(), state: state.clone(), client: middleware::ClientAddr(peer.ip()) };
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // Errors here are the client's (reset, header timeout, malformed request): nothing to report.
            let _ = conn.await;
            drop(per_address);
            drop(slot);
        });
    }
    drop(listener);
    // Requests in flight finish; idle keep-alive connections close at once.
    let _ = tokio::time::timeout(Duration::from_millis(cfg.request_timeout_ms.max(1000)), graceful.shutdown()).await;
    Ok(())
}

/// One connection's service: a fresh cached read answered by [`fast_answer`], a scored day's prediction by
/// [`fast_prediction`], everything else by the router, with the client's address (per-client rate limits) on the
/// request's extensions (a wrapper per connection, not a re-layered copy of every route).
#[derive(Clone)]
struct Connection {
    app: Router,
    state: Arc<AppState>,
    client: middleware::ClientAddr,
}

impl hyper::service::Service<axum::http::Request<hyper::body::Incoming>> for Connection {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = futures_util::future::Either<
        std::future::Ready<std::result::Result<Self::Response, Self::Error>>,
        futures_util::future::Either<
            std::pin::Pin<
                Box<dyn std::future::Future<Output = std::result::Result<Self::Response, Self::Error>> + Send>,
            >,
            tower::util::Oneshot<Router, axum::http::Request<hyper::body::Incoming>>,
        >,
    >;

    fn call(&self, mut req: axum::http::Request<hyper::body::Incoming>) -> Self::Future {
        use futures_util::future::Either;
        if let Some(resp) = fast_answer(&self.state, &req) {
            return Either::Left(std::future::ready(Ok(resp)));
        }
        if middleware::may_be_fast_prediction(&self.state, &req) {
            let answer = middleware::with_body(self.state.clone(), self.app.clone(), self.client, req);
            return Either::Right(Either::Left(Box::pin(async move { Ok(answer.await) })));
        }
        req.extensions_mut().insert(self.client);
        Either::Right(Either::Right(tower::ServiceExt::oneshot(self.app.clone(), req)))
    }
}

/// One open connection of an address ([`ServeConfig::max_connections_per_address`]), released on drop.
struct ConnectionGuard {
    state: Arc<AppState>,
    key: Option<String>,
}

impl ConnectionGuard {
    fn take(state: &Arc<AppState>, ip: std::net::IpAddr) -> Option<Self> {
        let limit = state.cfg.max_connections_per_address;
        if limit == 0 {
            return Some(Self { state: state.clone(), key: None });
        }
        let key = ratelimit::address_key(ip);
        let mut m = state.connections.lock().ok()?;
        let n = m.entry(key.clone()).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(Self { state: state.clone(), key: Some(key) })
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if let (Some(k), Ok(mut m)) = (&self.key, self.state.connections.lock())
            && let Some(n) = m.get_mut(k)
        {
            *n -= 1;
            if *n == 0 {
                m.remove(k);
            }
        }
    }
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
