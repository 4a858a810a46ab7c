//! Reads: the models served, stored predictions and recommendations (cached, ETags, stale answers), and their
//! typed query strings.

use super::{
    Action, ApiError, ApiResult, AppState, Arc, BTreeSet, Bytes, HeaderMap, Json, NaiveDate, Ordering, Query,
    QueryRejection, Response, State, Uri, api, check_symbols, etagged, query, stale, store, stored_model, tagged,
};

/// `GET /v1/predictions?…`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(in crate::server) struct PredictionsQuery {
    /// As-of date (default: the newest run).
    pub(super) date: Option<NaiveDate>,
    /// Comma-separated symbols (default: all).
    pub(super) symbols: Option<String>,
    /// NAME, NAME@VERSION or NAME@ALIAS (default: the only model served).
    pub(super) model: Option<String>,
}

/// `GET /v1/recommendations?…`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(in crate::server) struct RecommendationsQuery {
    /// As-of date (default: the newest run).
    pub(super) date: Option<NaiveDate>,
    /// Only this sector (1–100 characters).
    pub(super) sector: Option<String>,
    /// Only this action.
    pub(super) action: Option<Action>,
    /// Most rows (default 100, at most the server's `max_limit`).
    #[param(minimum = 1)]
    pub(super) limit: Option<usize>,
    /// Cursor: only ranks after this one (the previous page's `next_after`).
    #[param(minimum = 0)]
    pub(super) after: Option<u32>,
    /// NAME, NAME@VERSION or NAME@ALIAS (default: the only model served).
    pub(super) model: Option<String>,
}

/// Model versions served, with their manifests' metrics.
#[utoipa::path(get, tag = "handlers", path = "/v1/models", responses((status = 200, description = "models", body = api::Models)))]
pub(in crate::server) async fn models(State(state): State<Arc<AppState>>) -> Json<api::Models> {
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
pub(super) async fn find_run(
    state: &AppState,
    name: &str,
    version: u64,
    date: Option<NaiveDate>,
) -> ApiResult<store::RunRow> {
    let run = store::find_run(&state.pool, name, version, date).await.map_err(|e| state.error(e))?;
    run.ok_or_else(|| {
        ApiError::not_found(match date {
            Some(d) => format!("no recommendation run of {name}@{version} for {d}"),
            None => format!("no recommendation run of {name}@{version} yet"),
        })
    })
}

/// Stored scores of a recommendation run.
#[utoipa::path(get, tag = "handlers", path = "/v1/predictions",
    params(PredictionsQuery),
    responses(
        (status = 200, description = "predictions (with an ETag)", body = api::StoredPredictions),
        (status = 304, description = "unchanged since the ETag in If-None-Match"),
        (status = 400, description = "invalid query parameter", body = api::ErrorBody),
        (status = 404, description = "no such model, run or symbol", body = api::ErrorBody),
        (status = 503, description = "database unavailable, no model served, or timeout", body = api::ErrorBody),
    )
)]
pub(in crate::server) async fn predictions(
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

/// A checked `GET /v1/recommendations` query and its response-cache key.
struct Page {
    name: String,
    version: u64,
    date: Option<NaiveDate>,
    sector: Option<String>,
    action: Option<Action>,
    limit: usize,
    after: Option<i32>,
    key: String,
}

impl Page {
    fn of(state: &AppState, q: RecommendationsQuery) -> ApiResult<Self> {
        let RecommendationsQuery { date, sector, action, limit, after, model } = q;
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
        let (name, version) = stored_model(state, model.as_deref())?;
        // The key holds the parsed values (one spelling per query), so `limit=010` and `limit=10` share an entry.
        let key = format!(
            "{name}@{version}|{}|{}|{limit}|{}|{}",
            date.map(|d| d.to_string()).unwrap_or_default(),
            sector.as_deref().unwrap_or(""),
            action.map_or("", Action::as_str),
            after.map(|a| a.to_string()).unwrap_or_default(),
        );
        Ok(Self { name, version, date, sector, action, limit, after, key })
    }
}

/// The answer [`recommendations`] gives from its fresh cache entry, without the router: `None` for anything
/// else (a query it would refuse, a miss, an expired entry), which then takes the routed path. The same parser,
/// checks, key and response as the handler's first branch.
pub(in crate::server) fn cached_recommendations(state: &AppState, uri: &Uri, headers: &HeaderMap) -> Option<Response> {
    let Query(q) = Query::<RecommendationsQuery>::try_from_uri(uri).ok()?;
    fresh(state, &Page::of(state, q).ok()?.key, headers)
}

/// The fresh cache entry of `key` as the answer (counted as a cache hit), if there is one.
fn fresh(state: &AppState, key: &str, headers: &HeaderMap) -> Option<Response> {
    let answer = state.cached(key)?;
    state.metrics.cache_hits.inc();
    Some(tagged(headers, &answer))
}

/// Ranked recommendations of a run (cached in memory for cache_ttl_ms).
#[utoipa::path(get, tag = "handlers", path = "/v1/recommendations",
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
pub(in crate::server) async fn recommendations(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<RecommendationsQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Page { name, version, date, sector, action, limit, after, key } = Page::of(&state, query(q)?)?;
    if let Some(answer) = fresh(&state, &key, &headers) {
        return Ok(answer);
    }
    // The database is known to be down (the probe or an earlier request said so): answer from memory at once
    // rather than waiting for the pool's acquire timeout on every request.
    if !state.db_up.load(Ordering::Relaxed)
        && let Some(body) = state.cached_stale(&key)
    {
        return Ok(stale(tagged(&headers, &body), "database unavailable"));
    }
    // An expired answer is refreshed by one request at a time; the others meanwhile answer with the previous
    // body (stale by at most the TTL plus one request timeout), so a slow or lost database delays one request
    // per key, not all of them.
    let refresh = state.begin_refresh(&key);
    if refresh.is_none()
        && let Some(body) = state.cached_stale(&key)
    {
        return Ok(stale(tagged(&headers, &body), "refreshing"));
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
            Some(body) => return Ok(stale(tagged(&headers, &body), "database unavailable")),
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
    let answer = crate::server::state::Tagged::new(bytes);
    state.cache_put(key, answer.clone());
    drop(refresh);
    Ok(tagged(&headers, &answer))
}
