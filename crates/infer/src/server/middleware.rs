//! Middleware of the router, outermost first: request id → metrics → panic catcher (tower-http) → rate limit →
//! timeout → handler. The request id and the timeout stay hand-written: tower-http's keep any client id as given
//! (no length/charset check) and answer a timeout with an empty 408, where ours is a JSON 503 `timeout`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::AppState;

pub(super) async fn request_id(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
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

pub(super) async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    // The route pattern the router matched (bounded label set); the fallback has none.
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    state.metrics.observe(&route, &method, resp.status().as_u16(), start.elapsed());
    resp
}

/// The panic catcher: a handler that panics answers the JSON 500 of every internal error (the panic text goes
/// to the log only) and the server keeps serving.
pub(super) fn catch_panic() -> tower_http::catch_panic::CatchPanicLayer<fn(Box<dyn std::any::Any + Send>) -> Response> {
    fn answer(_: Box<dyn std::any::Any + Send>) -> Response {
        tracing::error!("a request handler panicked");
        ApiError::internal().into_response()
    }
    tower_http::catch_panic::CatchPanicLayer::custom(answer as fn(Box<dyn std::any::Any + Send>) -> Response)
}

/// The peer address of the connection a request came on (set by the accept loop).
#[derive(Debug, Clone, Copy)]
pub(super) struct ClientAddr(pub(super) std::net::IpAddr);

/// Who a request is counted for (the rate limit, the per-client bound on computations): `token:<hash>` for the
/// configured API token, else `ip:<address>` of the client (behind a trusted proxy: the one its headers name).
/// Worked out only where it is needed: a limited request, a computation.
pub(super) fn client_of(state: &AppState, headers: &axum::http::HeaderMap, peer: Option<std::net::IpAddr>) -> String {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        // Compared in constant time (a guessed token must not show in the response time); a wrong token counts
        // against the client's address like no token (it buys no bucket of its own).
        .filter(|t| {
            state.cfg.api_token.as_deref().is_some_and(|c| !c.is_empty() && super::handlers::token_matches(t, c))
        });
    let ip = peer.map(|p| super::ratelimit::forwarded_client(p, &state.trusted_proxies, headers));
    super::ratelimit::client_key(token, ip)
}

pub(super) async fn rate_limit(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if !state.limiter.enabled() || !req.uri().path().starts_with("/v1/") {
        return next.run(req).await;
    }
    let client = client_of(&state, req.headers(), req.extensions().get::<ClientAddr>().map(|c| c.0));
    let d = state.limiter.take(&client).await;
    let mut resp = if d.allowed {
        next.run(req).await
    } else {
        let mut r = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("more than {} requests per second from this client; retry later", state.cfg.rate_limit_per_s),
        )
        .into_response();
        r.headers_mut().insert("retry-after", HeaderValue::from(d.retry_after_s));
        r
    };
    let h = resp.headers_mut();
    h.insert("ratelimit-limit", HeaderValue::from(state.limiter.burst() as u64));
    h.insert("ratelimit-remaining", HeaderValue::from(d.remaining.floor() as u64));
    h.insert("ratelimit-reset", HeaderValue::from(d.reset_s));
    resp
}

pub(super) async fn timeout(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;

    /// No socket: the router is called as a tower service.
    #[tokio::test]
    async fn a_panicking_handler_becomes_a_json_500_without_the_panic_text() {
        async fn boom() -> &'static str {
            panic!("secret internal detail at /srv/x.rs:1")
        }
        let app = Router::new().route("/boom", get(boom)).layer(catch_panic());
        // Twice: the service keeps answering after a panic.
        for _ in 0..2 {
            let req = axum::http::Request::builder().uri("/boom").body(Body::empty()).unwrap();
            let resp = app.clone().oneshot(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains("secret"), "{text}");
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v["error"], "internal");
        }
    }
}
