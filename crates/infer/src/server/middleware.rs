//! The router's middleware: one function per request, [`guard`], doing in order the request id → metrics → panic
//! catcher → rate limit → timeout → handler (one boxed future a request, not one per concern: each layer of its
//! own cost a service clone, a box and a move of the future; docs/benchmarks.md has what merging them bought). The
//! request id and the timeout stay hand-written: tower-http's keep any client id as given (no length/charset check)
//! and answer a timeout with an empty 408, where ours is a JSON 503 `timeout`.
//!
//! Before the router, each connection tries the two answers that need neither the database nor a computation — a
//! fresh cached `GET /v1/recommendations` ([`fast_answer`]) and `POST /v1/predict` of a day scored already
//! ([`fast_prediction`]) — with the same bytes, request id, metrics and panic catcher as the routed path, and only
//! where no layer between would change the answer (rate limits off; for the POST, a client that takes no gzip).
//! The cached GET's server CPU fell from 14–15 to 9–11 µs a request (docs/benchmarks.md, serving).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt as _;

use super::error::ApiError;
use super::state::AppState;

/// Every request's protections (see the module docs); the request id goes on the request for the handlers and on
/// every response, the panic's 500 and the limits' 429 and 503 included.
pub(super) async fn guard(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let id = request_id(&state, req.headers());
    req.headers_mut().insert("x-request-id", id.clone());
    // The route pattern the router matched (bounded label set); the fallback has none.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    // A request whose body was read before the router ([`with_body`]) counts from when it was received.
    let start = req.extensions().get::<Received>().map_or_else(Instant::now, |r| r.0);
    let mut resp = caught(rate_limited(&state, start, req, next)).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    state.metrics.observe(route, method.as_str(), resp.status().as_u16(), start.elapsed());
    resp.headers_mut().insert("x-request-id", id);
    resp
}

/// What the routed path ([`guard`], the router, compression) answers to a `GET /v1/recommendations` that the
/// handler would serve from its fresh cache entry, without the router: the same status, headers (in the same
/// order) and body, counted in the metrics and given a request id the same way; `None` for every other request,
/// which then takes the routed path. Only where nothing between would change the answer: rate limits off (the
/// answer's gzip copy is the handler's, which the compression layer passes as it is).
pub fn fast_answer<B>(state: &AppState, req: &axum::http::Request<B>) -> Option<Response> {
    if req.method() != Method::GET || req.uri().path() != "/v1/recommendations" || state.limiter.enabled() {
        return None;
    }
    answered(state, req.headers(), ("/v1/recommendations", "GET"), Instant::now(), || {
        super::handlers::cached_recommendations(state, req.uri(), req.headers())
    })
}

/// [`fast_answer`] for `POST /v1/predict` given its body: stored symbols on a day scored already (the route's
/// only answer that needs no database or computation); `None` for anything else. For a client that does not take
/// gzip (the compression layer would compress this answer for one that does).
pub fn fast_prediction(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
    prediction_received(state, headers, body, Instant::now())
}

/// [`fast_prediction`] of a request received at `start`.
fn prediction_received(state: &AppState, headers: &HeaderMap, body: &[u8], start: Instant) -> Option<Response> {
    if super::handlers::gzip_wanted(headers) {
        return None;
    }
    answered(state, headers, ("/v1/predict", "POST"), start, || super::handlers::cached_prediction(state, body))
}

/// Whether a request may be a [`fast_prediction`]: `POST /v1/predict` with a JSON body of a stated length of at
/// most 64 KiB (and within the body limit), read before the router by [`with_body`].
pub(super) fn may_be_fast_prediction<B>(state: &AppState, req: &axum::http::Request<B>) -> bool {
    let h = req.headers();
    req.method() == Method::POST
        && req.uri().path() == "/v1/predict"
        && !state.limiter.enabled()
        && !super::handlers::gzip_wanted(h)
        && h.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"application/json"))
        && !h.contains_key(header::TRANSFER_ENCODING)
        && h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
            .is_some_and(|n| n <= state.cfg.body_limit_bytes.min(64 << 10))
}

/// Reads the body of a [`may_be_fast_prediction`] request (under the request timeout, as the routed path reads
/// it) and answers it by [`fast_prediction`], else through the router with the body read.
pub(super) async fn with_body(
    state: Arc<AppState>,
    app: axum::Router,
    client: ClientAddr,
    req: axum::http::Request<hyper::body::Incoming>,
) -> Response {
    use http_body_util::BodyExt as _;
    let start = Instant::now();
    let (mut parts, body) = req.into_parts();
    // A small body usually came with the headers: read on the first poll, it needs no timer.
    let body = match within_timeout(&state, start, body.collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        failed => {
            let resp = match failed {
                Err(limit) => timeout_error(limit),
                _ => ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", "the request body could not be read")
                    .into_response(),
            };
            return finished(&state, &parts.headers, ("/v1/predict", "POST"), start, resp);
        }
    };
    if let Some(resp) = prediction_received(&state, &parts.headers, &body, start) {
        return resp;
    }
    parts.extensions.insert(client);
    // The routed path's timeout and latency count the time the body took.
    parts.extensions.insert(Received(start));
    let routed = tower::ServiceExt::oneshot(app, axum::http::Request::from_parts(parts, axum::body::Body::from(body)));
    match routed.await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

/// An answer made without the router, if `answer` gives one, with what [`guard`] and compression add ([`finished`]);
/// a panic in `answer` is the JSON 500, as in [`caught`].
fn answered(
    state: &AppState,
    headers: &HeaderMap,
    route: (&'static str, &'static str),
    start: Instant,
    answer: impl FnOnce() -> Option<Response>,
) -> Option<Response> {
    let resp = std::panic::catch_unwind(AssertUnwindSafe(answer)).unwrap_or_else(|_| {
        tracing::error!("a request handler panicked");
        Some(ApiError::internal().into_response())
    })?;
    Some(finished(state, headers, route, start, resp))
}

/// What [`guard`] and compression add to an answer made without them: the request id, the metrics and
/// compression's `Vary`.
fn finished(
    state: &AppState,
    headers: &HeaderMap,
    (route, method): (&'static str, &'static str),
    start: Instant,
    mut resp: Response,
) -> Response {
    let id = request_id(state, headers);
    state.metrics.observe(route, method, resp.status().as_u16(), start.elapsed());
    resp.headers_mut().insert("x-request-id", id);
    // What the compression layer adds to an answer it could have compressed and that does not say it yet.
    let says = resp
        .headers()
        .get_all(header::VARY)
        .iter()
        .any(|v| v.as_bytes().windows(15).any(|w| w.eq_ignore_ascii_case(b"accept-encoding")));
    if super::handlers::compressible(&resp) && !says {
        resp.headers_mut().append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    resp
}

/// The client's `x-request-id` when it is 1–128 visible ASCII characters, else `sc-<sequence number>`.
fn request_id(state: &AppState, headers: &HeaderMap) -> HeaderValue {
    headers
        .get("x-request-id")
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.as_bytes().iter().all(u8::is_ascii_graphic))
        .cloned()
        .unwrap_or_else(|| {
            let id = format!("sc-{:x}", state.request_seq.fetch_add(1, Ordering::Relaxed) + 1);
            HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
        })
}

/// The panic catcher: a handler that panics answers the JSON 500 of every internal error (the panic text goes
/// to the log only) and the server keeps serving.
pub(super) async fn caught(answer: impl Future<Output = Response>) -> Response {
    AssertUnwindSafe(answer).catch_unwind().await.unwrap_or_else(|_| {
        tracing::error!("a request handler panicked");
        ApiError::internal().into_response()
    })
}

/// When a request routed after [`with_body`] read its body was received.
#[derive(Debug, Clone, Copy)]
struct Received(Instant);

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

/// The per-client rate limit of `/v1/` routes (when configured): 429 with `retry-after` beyond it, the
/// `ratelimit-*` headers on every limited route's answer.
async fn rate_limited(state: &Arc<AppState>, start: Instant, req: Request, next: Next) -> Response {
    if !state.limiter.enabled() || !req.uri().path().starts_with("/v1/") {
        return timed(state, start, next.run(req)).await;
    }
    let client = client_of(state, req.headers(), req.extensions().get::<ClientAddr>().map(|c| c.0));
    let d = state.limiter.take(&client).await;
    let mut resp = if d.allowed {
        timed(state, start, next.run(req)).await
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

/// The request timeout: a JSON 503 `timeout` when the request takes longer than `request_timeout_ms` from `start`.
async fn timed(state: &AppState, start: Instant, answer: impl Future<Output = Response>) -> Response {
    within_timeout(state, start, answer).await.unwrap_or_else(timeout_error)
}

/// `work`'s output, or `Err(limit)` when it is not done `request_timeout_ms` after `start`. Work done on its first
/// poll (a cached read, a health check, a body that came with the headers) needs no timer: the deadline is armed,
/// from the request's start, only when it has to wait.
async fn within_timeout<T>(state: &AppState, start: Instant, work: impl Future<Output = T>) -> Result<T, Duration> {
    let limit = Duration::from_millis(state.cfg.request_timeout_ms.max(1));
    let mut work = std::pin::pin!(work);
    if let Poll::Ready(r) = std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await {
        return Ok(r);
    }
    tokio::time::timeout_at(tokio::time::Instant::from_std(start) + limit, work).await.map_err(|_| limit)
}

fn timeout_error(limit: Duration) -> Response {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "timeout",
        format!("the request took longer than {} ms", limit.as_millis()),
    )
    .into_response()
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
        let app = Router::new()
            .route("/boom", get(boom))
            .layer(axum::middleware::from_fn(|req: Request, next: Next| caught(next.run(req))));
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
