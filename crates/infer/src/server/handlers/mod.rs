//! Route handlers and request validation: shared extractors, checks and helpers here, the routes by job in
//! [`health`], [`reads`] and [`compute`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde::de::DeserializeOwned;
use serde_json::json;
use stockcast_features::BarsBuilder;

mod compute;
mod health;
mod reads;

pub(super) use compute::*;
pub(super) use health::*;
pub(super) use reads::*;

use super::work::cancellable;
use super::{ApiError, AppState, api};
use crate::error::Error;
use crate::recommend::{self, Action, Cancel, Scorer};
use crate::store::{self, PriceQuery};
use stockcast_models::registry::{At, ModelRef};

type ApiResult<T> = Result<T, ApiError>;

/// JSON body extractor whose rejections are API errors: malformed JSON → 400, wrong fields or types → 422,
/// too large → 413, not JSON → 415.
pub(super) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(r: &JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonDataError(e) => ApiError::unprocessable(format!("invalid request body: {}", e.body_text())),
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", "the body is not valid JSON")
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `content-type: application/json`",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large")
        }
        other => ApiError::new(other.status(), "invalid_body", "the request body could not be read"),
    }
}

/// A query string parsed into its typed struct (the same type the OpenAPI parameters are generated from, so the
/// document cannot drift from the parser): unknown and repeated keys and malformed values are 400s naming them.
fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(t)| t).map_err(|e| {
        let text = e.body_text();
        let detail = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text);
        ApiError::bad_request(format!("invalid query: {detail}"))
    })
}

pub(super) fn valid_symbol(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._^-".contains(&b))
}

pub(super) fn check_symbols(symbols: &[String], max: usize) -> ApiResult<()> {
    if let Some(bad) = symbols.iter().find(|s| !valid_symbol(s)) {
        return Err(ApiError::bad_request(format!(
            "invalid symbol {bad:?}: 1–32 characters of letters, digits and . _ ^ -"
        )));
    }
    if symbols.len() > max {
        return Err(ApiError::bad_request(format!("at most {max} symbols per request, got {}", symbols.len())));
    }
    Ok(())
}

/// The `model` query parameter, in the one reference grammar ([`ModelRef`]).
pub(super) fn model_param(model: Option<&str>) -> ApiResult<Option<ModelRef>> {
    model
        .map(|m| {
            m.parse::<ModelRef>().map_err(|_| {
                ApiError::bad_request(format!("`model` must be NAME, NAME@VERSION or NAME@ALIAS, got {m:?}"))
            })
        })
        .transpose()
}

/// The version an alias points to now.
pub(super) fn alias_version(state: &AppState, r: &ModelRef) -> ApiResult<u64> {
    state
        .registry
        .resolve(r)
        .map(|(_, v)| v)
        .map_err(|_| ApiError::not_found(format!("{r}: no such model version or alias")))
}

/// The served model a request means: `NAME` (its served version), `NAME@VERSION` / `NAME@ALIAS` when that is
/// the version served, or the only model served.
pub(super) fn served(state: &AppState, model: Option<&str>) -> ApiResult<Arc<Scorer>> {
    let set = state.models();
    match model_param(model)? {
        Some(r) => {
            let s = set
                .by_name
                .get(&r.name)
                .ok_or_else(|| ApiError::not_found(format!("model {:?} is not being served", r.name)))?;
            let wanted = match &r.at {
                At::Default => None,
                At::Version(v) => Some(*v),
                At::Alias(_) => Some(alias_version(state, &r)?),
            };
            if wanted.is_some_and(|v| v != s.version) {
                return Err(ApiError::not_found(format!("{r} is not being served (serving {})", s.label())));
            }
            Ok(s.clone())
        }
        None => match set.by_name.len() {
            1 => Ok(set.by_name.values().next().cloned().ok_or_else(ApiError::internal)?),
            0 => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_model", "no model is being served")),
            _ => Err(ApiError::bad_request(format!(
                "several models are served ({}): pass `model`",
                set.by_name.keys().cloned().collect::<Vec<_>>().join(", ")
            ))),
        },
    }
}

/// `NAME@VERSION` of a stored run: a served name, or an explicit version or alias (which need not be served).
pub(super) fn stored_model(state: &AppState, model: Option<&str>) -> ApiResult<(String, u64)> {
    if let Some(r) = model_param(model)? {
        match &r.at {
            At::Version(v) => return Ok((r.name, *v)),
            At::Alias(_) => return Ok((r.name.clone(), alias_version(state, &r)?)),
            At::Default => {}
        }
    }
    let s = served(state, model)?;
    Ok((s.name.clone(), s.version))
}

pub(in crate::server) async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see /openapi.json")
}

pub(in crate::server) async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route")
}

/// Marks an answer served from memory past its TTL: the database is unavailable, or another request is
/// refreshing it.
pub(super) fn stale(mut r: Response, why: &'static str) -> Response {
    r.headers_mut().insert("x-stale", HeaderValue::from_static(why));
    r
}

/// A strong ETag of a body: FNV-1a (64 bit) of its bytes. The same run answers the same bytes on every replica,
/// so a client's ETag stays valid until the run is recomputed.
pub(super) fn etag_of(body: &[u8]) -> String {
    format!("\"{:016x}\"", super::ratelimit::fnv1a(body))
}

/// The JSON `body` with its ETag, or 304 (no body) when `If-None-Match` names that ETag (or `*`).
pub(super) fn etagged(headers: &HeaderMap, body: Bytes) -> Response {
    tagged(headers, &super::state::Tagged::new(body))
}

/// [`etagged`] for a body whose ETag is known (a cached answer: hashed once, when it was cached).
pub(super) fn tagged(headers: &HeaderMap, answer: &super::state::Tagged) -> Response {
    let (body, etag) = (&answer.body, &answer.etag);
    let tag = etag.as_bytes();
    let matches =
        headers.get_all(header::IF_NONE_MATCH).iter().flat_map(|v| v.as_bytes().split(|b| *b == b',')).any(|t| {
            let mut t = t.trim_ascii();
            if t == b"*" {
                return true;
            }
            while let Some(rest) = t.strip_prefix(b"W/") {
                t = rest;
            }
            t == tag
        });
    if matches {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag.clone())]).into_response();
    }
    let json = HeaderValue::from_static("application/json");
    let plain = ([(header::CONTENT_TYPE, json.clone()), (header::ETAG, etag.clone())], body.clone()).into_response();
    // The answer's gzip copy, compressed once (the compression layer leaves an encoded answer as it is), and only
    // for a client that takes it: an answer made per request is not compressed for identity clients.
    match (compressible(&plain) && gzip_wanted(headers)).then(|| answer.gzipped()).flatten() {
        Some(gz) => (
            [
                (header::CONTENT_TYPE, json),
                (header::ETAG, etag.clone()),
                (header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
                (header::VARY, HeaderValue::from_static("accept-encoding")),
            ],
            gz.clone(),
        )
            .into_response(),
        None => plain,
    }
}

/// Whether the compression layer would compress `resp` for a client that takes gzip (and says so in `Vary`): not
/// encoded already, not a range, and its default predicate (32 bytes or more, not gRPC, an image or events).
pub(super) fn compressible(resp: &Response) -> bool {
    !resp.headers().contains_key(header::CONTENT_ENCODING)
        && !resp.headers().contains_key(header::CONTENT_RANGE)
        && tower_http::compression::Predicate::should_compress(&tower_http::compression::DefaultPredicate::new(), resp)
}

/// Whether the client's `Accept-Encoding` picks gzip, decided as the compression layer (tower-http 0.6, gzip its
/// only codec) decides: among the entries naming gzip, x-gzip or identity (any case; others ignored) with a
/// q-value above 0 (absent: 1; malformed: the entry is ignored), the highest q wins, gzip over identity on a tie;
/// none: identity.
pub(super) fn gzip_wanted(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|entry| {
            let mut parts = entry.splitn(2, ';');
            let name = parts.next()?.trim();
            let gzip = if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
                true
            } else if name.eq_ignore_ascii_case("identity") {
                false
            } else {
                return None;
            };
            let q = match parts.next() {
                Some(q) => q_value(q.trim())?,
                None => 1000,
            };
            Some((q, gzip))
        })
        .filter(|&(q, _)| q > 0)
        .max()
        .is_some_and(|(_, gzip)| gzip)
}

/// An `Accept-Encoding` q-value (`q=0`, `q=1`, `q=0.5`, at most three decimals, at most 1) in thousandths.
fn q_value(s: &str) -> Option<u16> {
    let rest = s.strip_prefix(['q', 'Q'])?.strip_prefix('=')?;
    let (whole, decimals) = rest.split_once('.').map_or((rest, None), |(w, d)| (w, Some(d)));
    let mut value: u16 = match whole {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    if let Some(d) = decimals {
        if d.len() > 3 || !d.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        for (b, factor) in d.bytes().zip([100u16, 10, 1]) {
            value += factor * u16::from(b - b'0');
        }
    }
    (value <= 1000).then_some(value)
}

/// Runs CPU work (quality checks, features, scoring) through [`cancellable`]. A panic there is the JSON 500; the
/// work's own error goes through `special` first and, when that does not claim it, through [`AppState::error`].
pub(super) async fn blocking<T: Send + 'static>(
    state: &Arc<AppState>,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
    work: impl FnOnce(&Cancel) -> Result<T, Error> + Send + 'static,
    special: impl Fn(&Error) -> Option<ApiError>,
) -> ApiResult<T> {
    let st = Arc::clone(state);
    let counted = move |cancel: &Cancel| {
        let r = work(cancel);
        if matches!(r, Err(Error::Cancelled)) {
            st.metrics.cancelled_work.inc();
        }
        r
    };
    match cancellable(slot, counted).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(special(&e).unwrap_or_else(|| state.error(e))),
        Err(e) => {
            tracing::error!(error = %e, "blocking work failed");
            Err(ApiError::internal())
        }
    }
}

/// One of the `heavy_slots` for expensive work, or 503 `busy` with Retry-After when the short queue is full.
pub(super) async fn heavy_slot(state: &AppState) -> ApiResult<tokio::sync::OwnedSemaphorePermit> {
    state.heavy.acquire().await.ok_or_else(ApiError::busy)
}

pub(super) fn authorize(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let Some(token) = state.cfg.api_token.as_deref().filter(|t| !t.is_empty()) else {
        return Err(unauthorized("this endpoint is disabled: no API token is configured (STOCKCAST_API_TOKEN)"));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("missing `authorization: Bearer <token>`"))?;
    if token_matches(given, token) { Ok(()) } else { Err(unauthorized("invalid token")) }
}

/// Whether `given` is the configured API token, in time independent of where they differ and of their lengths:
/// the SHA-256 digests (always 32 bytes) are compared with no early exit.
pub(crate) fn token_matches(given: &str, configured: &str) -> bool {
    use sha2::Digest as _;
    let (a, b) = (sha2::Sha256::digest(given.as_bytes()), sha2::Sha256::digest(configured.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_token_matches_only_itself() {
        let t = "s3cret-token-0123456789";
        assert!(super::token_matches(t, t));
        for wrong in ["", "s3cret", "s3cret-token-012345678", "s3cret-token-01234567890", "S3cret-token-0123456789"] {
            assert!(!super::token_matches(wrong, t), "{wrong}");
        }
    }

    /// `gzip_wanted` decides as the compression layer does: every listed header and every pair of entries (as one
    /// header and as two), each sent through a router with tower-http's `CompressionLayer`.
    #[tokio::test]
    async fn gzip_is_wanted_exactly_when_the_compression_layer_would_gzip() {
        use axum::body::Body;
        use axum::http::{HeaderMap, HeaderValue, Request, header};
        use tower::ServiceExt as _;
        let app = axum::Router::new()
            .route("/", axum::routing::get(|| async { "x".repeat(100) }))
            .layer(tower_http::compression::CompressionLayer::new());
        let entries = [
            "gzip",
            "GZIP",
            "x-gzip",
            " gzip ",
            "gzip;q=0",
            "gzip;q=0.5",
            "gzip; q=0.5",
            "gzip;q=1.",
            "gzip;q=1.5",
            "gzip;q=0.0001",
            "gzip;q=0.001",
            "gzip;Q=0.3",
            "gzip;q=",
            "gzip;level=1",
            "identity",
            "identity;q=0",
            "identity;q=0.5",
            "IDENTITY;q=0.3",
            "br",
            "deflate;q=1.0",
            "*",
            "",
            "zstd;q=0.9",
        ];
        let mut cases: Vec<Vec<String>> = vec![vec![]];
        cases.extend(entries.iter().map(|e| vec![(*e).to_owned()]));
        for a in entries {
            for b in entries {
                cases.push(vec![format!("{a},{b}")]);
                cases.push(vec![a.to_owned(), b.to_owned()]);
            }
        }
        let mut gzipped = 0;
        for values in &cases {
            let mut req = Request::builder().uri("/");
            let mut headers = HeaderMap::new();
            for v in values {
                req = req.header(header::ACCEPT_ENCODING, v.as_str());
                headers.append(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            }
            let resp = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
            let layer = resp.headers().get(header::CONTENT_ENCODING).is_some_and(|v| v == "gzip");
            assert_eq!(super::gzip_wanted(&headers), layer, "accept-encoding {values:?}");
            gzipped += usize::from(layer);
        }
        // Both answers occur often enough for the comparison to mean something.
        assert!(gzipped > 100 && cases.len() - gzipped > 100, "{gzipped} of {}", cases.len());
    }
}
