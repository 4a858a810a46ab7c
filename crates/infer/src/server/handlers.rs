//! Route handlers and request validation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde::de::DeserializeOwned;
use serde_json::json;
use stockcast_features::BarsBuilder;

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

/// `GET /v1/predictions?…`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct PredictionsQuery {
    /// As-of date (default: the newest run).
    date: Option<NaiveDate>,
    /// Comma-separated symbols (default: all).
    symbols: Option<String>,
    /// NAME, NAME@VERSION or NAME@ALIAS (default: the only model served).
    model: Option<String>,
}

/// `GET /v1/recommendations?…`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct RecommendationsQuery {
    /// As-of date (default: the newest run).
    date: Option<NaiveDate>,
    /// Only this sector (1–100 characters).
    sector: Option<String>,
    /// Only this action.
    action: Option<Action>,
    /// Most rows (default 100, at most the server's `max_limit`).
    #[param(minimum = 1)]
    limit: Option<usize>,
    /// Cursor: only ranks after this one (the previous page's `next_after`).
    #[param(minimum = 0)]
    after: Option<u32>,
    /// NAME, NAME@VERSION or NAME@ALIAS (default: the only model served).
    model: Option<String>,
}

pub(super) fn valid_symbol(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._^-".contains(&b))
}

fn check_symbols(symbols: &[String], max: usize) -> ApiResult<()> {
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
fn model_param(model: Option<&str>) -> ApiResult<Option<ModelRef>> {
    model
        .map(|m| {
            m.parse::<ModelRef>().map_err(|_| {
                ApiError::bad_request(format!("`model` must be NAME, NAME@VERSION or NAME@ALIAS, got {m:?}"))
            })
        })
        .transpose()
}

/// The version an alias points to now.
fn alias_version(state: &AppState, r: &ModelRef) -> ApiResult<u64> {
    state
        .registry
        .resolve(r)
        .map(|(_, v)| v)
        .map_err(|_| ApiError::not_found(format!("{r}: no such model version or alias")))
}

/// The served model a request means: `NAME` (its served version), `NAME@VERSION` / `NAME@ALIAS` when that is
/// the version served, or the only model served.
fn served(state: &AppState, model: Option<&str>) -> ApiResult<Arc<Scorer>> {
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
fn stored_model(state: &AppState, model: Option<&str>) -> ApiResult<(String, u64)> {
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

/// Liveness, with the database state and the models served.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive", body = api::Health)))]
pub(super) async fn healthz(State(state): State<Arc<AppState>>) -> Json<api::Health> {
    let set = state.models();
    Json(api::Health {
        status: "ok".into(),
        database: if state.db_up.load(Ordering::Relaxed) { "ok" } else { "unavailable" }.into(),
        models: set.versions().iter().map(|(n, v)| format!("{n}@{v}")).collect(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// Ready when the database answers and a model is served.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "ready", body = api::Ready),
    (status = 503, description = "not ready (same body)", body = api::Ready),
))]
pub(super) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let db_ok = state.probe_database().await;
    let set = state.models();
    let ready = db_ok && !set.by_name.is_empty();
    let body = api::Ready {
        ready,
        database: if db_ok { "ok" } else { "unavailable" }.into(),
        models: set.versions().iter().map(|(n, v)| format!("{n}@{v}")).collect(),
    };
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", responses(
    (status = 200, description = "OpenMetrics text exposition format (prometheus-client)", content_type = "application/openmetrics-text", body = String),
))]
pub(super) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let models = state.models().versions();
    let now = super::metrics::Snapshot {
        models: &models,
        db_up: state.db_up.load(Ordering::Relaxed),
        heavy_busy: state.heavy.running(),
        cache: state.cache_size(),
    };
    let text = state.metrics.render(&now);
    ([(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)], text).into_response()
}

pub(super) async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see /openapi.json")
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route")
}

/// Model versions served, with their manifests' metrics.
#[utoipa::path(get, path = "/v1/models", responses((status = 200, description = "models", body = api::Models)))]
pub(super) async fn models(State(state): State<Arc<AppState>>) -> Json<api::Models> {
    let set = state.models();
    let models = set
        .by_name
        .values()
        .map(|s| {
            let m = &s.manifest;
            api::ModelInfo {
                name: m.name.clone(),
                version: m.version,
                kind: m.kind.clone(),
                created_at: m.created_at.clone(),
                feature_spec_hash: m.feature_spec_hash.clone(),
                horizon: s.spec.label.horizon,
                train_range: m.train_range,
                data_last_date: m.data.last_date,
                seed: m.seed,
                metrics: m.metrics.clone(),
            }
        })
        .collect();
    Json(api::Models { models })
}

/// The newest run of `name@version` (on `date` when given).
async fn find_run(state: &AppState, name: &str, version: u64, date: Option<NaiveDate>) -> ApiResult<store::RunRow> {
    let run = store::find_run(&state.pool, name, version, date).await.map_err(|e| state.error(e))?;
    run.ok_or_else(|| {
        ApiError::not_found(match date {
            Some(d) => format!("no recommendation run of {name}@{version} for {d}"),
            None => format!("no recommendation run of {name}@{version} yet"),
        })
    })
}

/// Stored scores of a recommendation run.
#[utoipa::path(get, path = "/v1/predictions",
    params(PredictionsQuery),
    responses(
        (status = 200, description = "predictions (with an ETag)", body = api::StoredPredictions),
        (status = 304, description = "unchanged since the ETag in If-None-Match"),
        (status = 400, description = "invalid query parameter", body = api::ErrorBody),
        (status = 404, description = "no such model, run or symbol", body = api::ErrorBody),
        (status = 503, description = "database unavailable, no model served, or timeout", body = api::ErrorBody),
    )
)]
pub(super) async fn predictions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<PredictionsQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let PredictionsQuery { date, symbols, model } = query(q)?;
    let symbols: Vec<String> = symbols
        .map(|s| s.split(',').map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect())
        .unwrap_or_default();
    check_symbols(&symbols, state.cfg.max_symbols)?;
    let (name, version) = stored_model(&state, model.as_deref())?;
    let store::RunRow { run_id, as_of, created_at } = find_run(&state, &name, version, date).await?;
    let rows = store::run_scores(&state.pool, run_id, &symbols).await.map_err(|e| state.error(e))?;
    let found: BTreeSet<&str> = rows.iter().map(|r| r.symbol.as_str()).collect();
    let missing: Vec<&String> = symbols.iter().filter(|s| !found.contains(s.as_str())).collect();
    if !symbols.is_empty() && rows.is_empty() {
        return Err(ApiError::not_found(format!("no predictions for {} on {as_of}", symbols.join(", "))));
    }
    let body = api::StoredPredictions {
        model: format!("{name}@{version}"),
        date: as_of,
        run_id,
        created_at,
        predictions: rows.into_iter().map(|r| api::Score { symbol: r.symbol, score: r.score }).collect(),
        missing: missing.into_iter().cloned().collect(),
    };
    Ok(etagged(&headers, Bytes::from(serde_json::to_vec(&body).map_err(|_| ApiError::internal())?)))
}

/// Ranked recommendations of a run (cached in memory for cache_ttl_ms).
#[utoipa::path(get, path = "/v1/recommendations",
    params(
        RecommendationsQuery,
        ("If-None-Match" = Option<String>, Header, description = "an ETag of an earlier answer: 304 when unchanged"),
    ),
    responses(
        (status = 200, description = "recommendations by rank (with an ETag)", body = api::Recommendations),
        (status = 304, description = "unchanged since the ETag in If-None-Match"),
        (status = 400, description = "invalid query parameter", body = api::ErrorBody),
        (status = 404, description = "no such model or run", body = api::ErrorBody),
        (status = 503, description = "database unavailable, no model served, or timeout", body = api::ErrorBody),
    )
)]
pub(super) async fn recommendations(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<RecommendationsQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let RecommendationsQuery { date, sector, action, limit, after, model } = query(q)?;
    let limit = match limit {
        Some(l) if !(1..=state.cfg.max_limit).contains(&l) => {
            return Err(ApiError::bad_request(format!("`limit` must be 1..={}, got {l}", state.cfg.max_limit)));
        }
        Some(l) => l,
        None => 100,
    };
    let after = after
        .map(|a| i32::try_from(a).map_err(|_| ApiError::bad_request(format!("`after` must be a rank, got {a}"))))
        .transpose()?;
    if sector.as_ref().is_some_and(|s| s.is_empty() || s.len() > 100) {
        return Err(ApiError::bad_request("`sector` must be 1–100 characters"));
    }
    let (name, version) = stored_model(&state, model.as_deref())?;
    // The key holds the parsed values (one spelling per query), so `limit=010` and `limit=10` share an entry.
    let key = format!(
        "{name}@{version}|{}|{}|{limit}|{}|{}",
        date.map(|d| d.to_string()).unwrap_or_default(),
        sector.as_deref().unwrap_or(""),
        action.map_or("", Action::as_str),
        after.map(|a| a.to_string()).unwrap_or_default(),
    );
    if let Some(body) = state.cached(&key) {
        state.metrics.cache_hits.inc();
        return Ok(etagged(&headers, body));
    }
    // The database is known to be down (the probe or an earlier request said so): answer from memory at once
    // rather than waiting for the pool's acquire timeout on every request.
    if !state.db_up.load(Ordering::Relaxed)
        && let Some(body) = state.cached_stale(&key)
    {
        return Ok(stale(etagged(&headers, body), "database unavailable"));
    }
    // An expired answer is refreshed by one request at a time; the others meanwhile answer with the previous
    // body (stale by at most the TTL plus one request timeout), so a slow or lost database delays one request
    // per key, not all of them.
    let refresh = state.begin_refresh(&key);
    if refresh.is_none()
        && let Some(body) = state.cached_stale(&key)
    {
        return Ok(stale(etagged(&headers, body), "refreshing"));
    }
    let q = store::RecommendationQuery { sector, action: action.map(|a| a.as_str().to_owned()), limit, after };
    let fetched = async {
        let run = find_run(&state, &name, version, date).await?;
        let rows = store::run_recommendations(&state.pool, run.run_id, &q).await.map_err(|e| state.error(e))?;
        Ok::<_, ApiError>((run, rows))
    }
    .await;
    let (store::RunRow { run_id, as_of, created_at }, rows) = match fetched {
        Ok(x) => x,
        // The database is down: an answer cached earlier (a stored run does not change until it is rerun) is
        // served, marked stale, instead of a 503.
        Err(e) if e.is_database_unavailable() => match state.cached_stale(&key) {
            Some(body) => return Ok(stale(etagged(&headers, body), "database unavailable")),
            None => return Err(e),
        },
        Err(e) => return Err(e),
    };
    let next_after = (rows.len() == limit).then(|| rows.last().map(|r| r.rank)).flatten();
    let body = api::Recommendations {
        model: format!("{name}@{version}"),
        date: as_of,
        run_id,
        created_at,
        recommendations: rows,
        next_after,
    };
    let bytes = Bytes::from(serde_json::to_vec(&body).map_err(|_| ApiError::internal())?);
    state.cache_put(key, bytes.clone());
    drop(refresh);
    Ok(etagged(&headers, bytes))
}

/// Marks an answer served from memory past its TTL: the database is unavailable, or another request is
/// refreshing it.
fn stale(mut r: Response, why: &'static str) -> Response {
    r.headers_mut().insert("x-stale", HeaderValue::from_static(why));
    r
}

/// A strong ETag of a body: FNV-1a (64 bit) of its bytes. The same run answers the same bytes on every replica,
/// so a client's ETag stays valid until the run is recomputed.
fn etag_of(body: &[u8]) -> String {
    format!("\"{:016x}\"", super::ratelimit::fnv1a(body))
}

/// The JSON `body` with its ETag, or 304 (no body) when `If-None-Match` names that ETag (or `*`).
fn etagged(headers: &HeaderMap, body: Bytes) -> Response {
    let tag = etag_of(&body);
    let matches =
        headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
            |t| {
                let t = t.trim();
                t == "*" || t.trim_start_matches("W/") == tag
            },
        );
    let value = HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
    if matches {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, value)]).into_response();
    }
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json")), (header::ETAG, value)], body)
        .into_response()
}

/// Runs CPU work (quality checks, features, scoring) through [`cancellable`]. A panic there is the JSON 500; the
/// work's own error goes through `special` first and, when that does not claim it, through [`AppState::error`].
async fn blocking<T: Send + 'static>(
    state: &Arc<AppState>,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
    work: impl FnOnce(&Cancel) -> Result<T, Error> + Send + 'static,
    special: fn(&Error) -> Option<ApiError>,
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
async fn heavy_slot(state: &AppState) -> ApiResult<tokio::sync::OwnedSemaphorePermit> {
    state.heavy.acquire().await.ok_or_else(ApiError::busy)
}

fn bars_frame(bars: &[api::BarIn]) -> Result<stockcast_features::Loaded, Error> {
    let mut builder = BarsBuilder::new("request body bars", "bar");
    for b in bars {
        builder.push(&b.symbol, b.date, [b.open, b.high, b.low, Some(b.close), b.volume, None]);
    }
    Ok(stockcast_features::check_bars(builder.finish(), &stockcast_features::Checked::default(), Vec::new(), false)?)
}

/// Reads the stored bars up to `until`: all of them, or only the last `days` trading dates (quality checks are
/// CPU work: [`checked_prices`] runs them on the blocking pool).
async fn stored_bars(
    state: &AppState,
    until: NaiveDate,
    days: Option<usize>,
) -> Result<(stockcast_features::load::Bars, Vec<stockcast_features::Security>), Error> {
    let since = match days {
        Some(n) => store::nth_last_date(&state.pool, until, n + 1).await?,
        None => None,
    };
    let q = PriceQuery { symbols: Vec::new(), until: Some(until), since };
    store::read_prices(&state.pool, "prices table", &q).await
}

/// Stored bars quality-checked as stored data.
fn checked_prices(
    bars: stockcast_features::load::Bars,
    securities: Vec<stockcast_features::Security>,
) -> Result<stockcast_features::PriceFrame, Error> {
    Ok(stockcast_features::check_bars(bars, &stockcast_features::Checked::default(), securities, true)?.prices)
}

async fn latest_price_date(state: &AppState) -> ApiResult<NaiveDate> {
    let d = store::latest_price_date(&state.pool).await.map_err(|e| state.error(e))?;
    d.ok_or_else(|| ApiError::not_found("the prices table is empty"))
}

/// Scores of every stored symbol on `date` by `scorer`, computed once per (version, date): concurrent requests
/// for a day not computed yet wait for one computation, which holds one heavy slot.
async fn day_scores(
    state: &Arc<AppState>,
    scorer: &Arc<Scorer>,
    date: NaiveDate,
) -> ApiResult<Arc<BTreeMap<String, f64>>> {
    // A date that is not a trading date of the stored prices is answered from the calendar (one indexed query,
    // remembered), never by reading and scoring the whole history.
    if !state.is_trading_date(date).await.map_err(|e| state.error(e))? {
        return Err(ApiError::not_found(format!("no prices on {date} (dates are trading days of the stored prices)")));
    }
    let key = (scorer.name.clone(), scorer.version, date);
    let Some(cell) = state.day_cell(key) else { return Err(ApiError::internal()) };
    if let Some(done) = cell.get() {
        return Ok(done.clone());
    }
    let map = cell
        .get_or_try_init(|| async {
            let slot = heavy_slot(state).await?;
            state.metrics.day_computations.inc();
            // Only the history the model needs: the same rows `score_day` would keep from a full read.
            let (bars, securities) =
                stored_bars(state, date, scorer.history_days()).await.map_err(|e| state.error(e))?;
            let s = scorer.clone();
            let work = move |cancel: &Cancel| {
                let prices = checked_prices(bars, securities)?;
                s.score_day_cancellable(&prices, date, cancel)
            };
            let day = blocking(state, Some(slot), work, |e| match e {
                Error::Data(m) => Some(ApiError::not_found(m.clone())),
                _ => None,
            })
            .await?;
            Ok::<_, ApiError>(Arc::new(day.symbols.into_iter().zip(day.scores).collect::<BTreeMap<_, _>>()))
        })
        .await?;
    Ok(map.clone())
}

/// Score symbols as of a date from the stored prices, or bars given in the body.
#[utoipa::path(post, path = "/v1/predict", request_body = api::PredictIn,
    responses(
        (status = 200, description = "scores", body = api::Predicted),
        (status = 400, description = "malformed JSON", body = api::ErrorBody),
        (status = 404, description = "no such model, or no prices on the date", body = api::ErrorBody),
        (status = 413, description = "request body too large", body = api::ErrorBody),
        (status = 415, description = "body is not JSON", body = api::ErrorBody),
        (status = 422, description = "body has wrong fields or values", body = api::ErrorBody),
        (status = 503, description = "database unavailable, no model served, busy (Retry-After), or timeout", body = api::ErrorBody),
    )
)]
pub(super) async fn predict(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody<api::PredictIn>,
) -> ApiResult<Json<api::Predicted>> {
    let scorer = served(&state, body.model.as_deref())?;
    let mut missing: Vec<String> = Vec::new();
    let (scores, date): (BTreeMap<String, f64>, NaiveDate) = match (body.symbols, body.bars) {
        (Some(_), Some(_)) => return Err(ApiError::unprocessable("give either `symbols` or `bars`, not both")),
        (None, None) => return Err(ApiError::unprocessable("give `symbols` (scored from stored prices) or `bars`")),
        (Some(symbols), None) => {
            if symbols.is_empty() {
                return Err(ApiError::unprocessable("`symbols` is empty"));
            }
            check_symbols(&symbols, state.cfg.max_symbols)?;
            let date = match body.date {
                Some(d) => d,
                None => latest_price_date(&state).await?,
            };
            let all = day_scores(&state, &scorer, date).await?;
            missing = symbols.iter().filter(|s| !all.contains_key(*s)).cloned().collect();
            (symbols.iter().filter_map(|s| all.get(s).map(|v| (s.clone(), *v))).collect(), date)
        }
        (None, Some(bars)) => {
            if bars.is_empty() || bars.len() > state.cfg.max_bars {
                return Err(ApiError::unprocessable(format!("`bars` must hold 1..={} bars", state.cfg.max_bars)));
            }
            if let Some(b) = bars.iter().find(|b| !valid_symbol(&b.symbol)) {
                return Err(ApiError::unprocessable(format!("invalid symbol {:?} in `bars`", b.symbol)));
            }
            let date = body.date.or_else(|| bars.iter().map(|b| b.date).max()).ok_or_else(ApiError::internal)?;
            let s = scorer.clone();
            let work = move |cancel: &Cancel| {
                let loaded = bars_frame(&bars)?;
                s.score_day_cancellable(&loaded.prices, date, cancel)
            };
            let slot = heavy_slot(&state).await?;
            // The caller's bars: any features error (even one not marked as the user's) is about them.
            let day = blocking(&state, Some(slot), work, |e| {
                matches!(e, Error::Features(_)).then(|| ApiError::unprocessable(e.to_string()))
            })
            .await?;
            (day.symbols.into_iter().zip(day.scores).collect(), date)
        }
    };
    if scores.is_empty() {
        return Err(ApiError::not_found(format!("none of the symbols has prices on {date}")));
    }
    Ok(Json(api::Predicted {
        model: scorer.label(),
        date,
        predictions: scores.into_iter().map(|(symbol, score)| api::Score { symbol, score }).collect(),
        missing,
    }))
}

fn authorize(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let Some(token) = state.cfg.api_token.as_deref().filter(|t| !t.is_empty()) else {
        return Err(unauthorized("this endpoint is disabled: no API token is configured (STOCKCAST_API_TOKEN)"));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("missing `authorization: Bearer <token>`"))?;
    // Constant-time comparison.
    let (a, b) = (given.as_bytes(), token.as_bytes());
    let diff = a.iter().zip(b).fold(a.len() ^ b.len(), |acc, (x, y)| acc | usize::from(x ^ y));
    if diff == 0 { Ok(()) } else { Err(unauthorized("invalid token")) }
}

/// Compute and store a day's recommendations (one transaction per model version; a rerun replaces).
#[utoipa::path(post, path = "/v1/recommendations/run", request_body = api::RunIn, security(("bearer" = [])),
    responses(
        (status = 200, description = "runs stored", body = api::Runs),
        (status = 401, description = "missing or wrong bearer token", body = api::ErrorBody),
        (status = 404, description = "no such model", body = api::ErrorBody),
        (status = 413, description = "request body too large", body = api::ErrorBody),
        (status = 422, description = "body has wrong fields or values", body = api::ErrorBody),
        (status = 503, description = "database unavailable, no model served, busy (Retry-After), or timeout", body = api::ErrorBody),
    )
)]
pub(super) async fn run_recommendations(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<JsonBody<api::RunIn>, ApiError>,
) -> ApiResult<Json<api::Runs>> {
    authorize(&state, &headers)?;
    let JsonBody(body) = body?;
    let scorers: Vec<Arc<Scorer>> = match body.model.as_deref() {
        Some(m) => vec![served(&state, Some(m))?],
        None => state.models().by_name.values().cloned().collect(),
    };
    if scorers.is_empty() {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_model", "no model is being served"));
    }
    let slot = heavy_slot(&state).await?;
    let (bars, securities) = stored_bars(&state, body.date, None).await.map_err(|e| state.error(e))?;
    // Compute every model's day first, then store them all in one transaction: all runs or none.
    let (models, cfg) = (scorers.clone(), state.cfg.recommend);
    let work = move |cancel: &Cancel| {
        let prices = checked_prices(bars, securities)?;
        models
            .iter()
            .map(|s| recommend::compute_day(s, &prices, body.date, &cfg, cancel))
            .collect::<Result<Vec<_>, _>>()
    };
    let days = blocking(&state, Some(slot), work, |_| None).await?;
    let created_at = state.clock.now();
    let new_runs: Vec<store::NewRun<'_>> = scorers
        .iter()
        .zip(&days)
        .map(|(scorer, day)| store::NewRun {
            manifest: &scorer.manifest,
            as_of: body.date,
            created_at,
            params: day.params.clone(),
            rows: &day.rows,
        })
        .collect();
    let stored_runs = store::store_runs(&state.pool, &new_runs).await.map_err(|e| state.error(e))?;
    let mut runs = Vec::new();
    for ((scorer, day), stored) in scorers.iter().zip(&days).zip(stored_runs) {
        state.metrics.recommendation_runs.inc();
        runs.push(api::RunOut {
            model: scorer.label(),
            date: body.date,
            run_id: stored.run_id,
            rows: stored.rows,
            replaced: stored.replaced,
            actions: recommend::action_counts(&day.rows).into_iter().map(|(a, n)| (a.as_str().to_owned(), n)).collect(),
            skipped: day.params["skipped"].clone(),
            unscored: day.unscored.clone(),
        });
    }
    state.invalidate();
    Ok(Json(api::Runs { runs }))
}

/// Load new champion versions (a damaged one is refused; the old one keeps serving).
#[utoipa::path(post, path = "/v1/admin/reload", security(("bearer" = [])),
    responses(
        (status = 200, description = "reloaded", body = api::ReloadReport),
        (status = 401, description = "missing or wrong bearer token", body = api::ErrorBody),
        (status = 409, description = "a new version was refused; the old one keeps serving", body = api::ErrorBody),
    )
)]
pub(super) async fn reload(State(state): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Response> {
    authorize(&state, &headers)?;
    let report = state.reload().await.map_err(|e| state.error(e))?;
    if report.refused.is_empty() {
        Ok((StatusCode::OK, Json(report)).into_response())
    } else {
        let models: Vec<&str> = report.refused.iter().map(|r| r.model.as_str()).collect();
        let body = json!({
            "error": "reload_refused",
            "message": format!("refused {}; still serving {}", models.join(", "), report.serving.join(", ")),
            "refused": report.refused,
            "loaded": report.loaded,
            "serving": report.serving,
        });
        Ok((StatusCode::CONFLICT, Json(body)).into_response())
    }
}
