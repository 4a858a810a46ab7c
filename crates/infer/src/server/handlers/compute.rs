//! Computed on request: scores for symbols and a date from stored prices or bars in the body, a day's
//! recommendations run and stored, and the reload of the served models.

use super::{
    ApiError, ApiResult, AppState, Arc, BTreeMap, BarsBuilder, Cancel, Error, HeaderMap, IntoResponse, Json, JsonBody,
    NaiveDate, PriceQuery, Response, Scorer, State, StatusCode, api, authorize, blocking, check_symbols, heavy_slot,
    json, recommend, served, store, valid_symbol,
};

pub(super) fn bars_frame(bars: &[api::BarIn]) -> Result<stockcast_features::Loaded, Error> {
    let mut builder = BarsBuilder::new("request body bars", "bar");
    for b in bars {
        builder.push(&b.symbol, b.date, [b.open, b.high, b.low, Some(b.close), b.volume, None]);
    }
    Ok(stockcast_features::check_bars(builder.finish(), &stockcast_features::Checked::default(), Vec::new(), false)?)
}

/// Reads the stored bars up to `until`: all of them, or only the last `days` trading dates (quality checks are
/// CPU work: [`checked_prices`] runs them on the blocking pool).
pub(super) async fn stored_bars(
    state: &AppState,
    until: NaiveDate,
    days: Option<usize>,
) -> Result<(stockcast_features::load::Bars, Vec<stockcast_features::Security>), Error> {
    let since = match days {
        Some(n) => store::nth_last_date(&state.pool, until, n + 1).await?,
        None => None,
    };
    let q = PriceQuery { symbols: Vec::new(), until: Some(until), since, streams: None };
    store::read_prices(&state.pool, "prices table", &q).await
}

/// Stored bars quality-checked as stored data.
pub(super) fn checked_prices(
    bars: stockcast_features::load::Bars,
    securities: Vec<stockcast_features::Security>,
) -> Result<stockcast_features::PriceFrame, Error> {
    Ok(stockcast_features::check_bars(bars, &stockcast_features::Checked::default(), securities, true)?.prices)
}

pub(super) async fn latest_price_date(state: &AppState) -> ApiResult<NaiveDate> {
    let d = store::latest_price_date(&state.pool).await.map_err(|e| state.error(e))?;
    d.ok_or_else(|| ApiError::not_found("the prices table is empty"))
}

/// Scores of every stored symbol on `date` by `scorer`, computed once per (version, date): concurrent requests
/// for a day not computed yet wait for one computation, which holds one heavy slot.
pub(crate) async fn day_scores(
    state: &Arc<AppState>,
    scorer: &Arc<Scorer>,
    date: NaiveDate,
    client: &(dyn Fn() -> String + Sync),
) -> ApiResult<Arc<BTreeMap<String, f64>>> {
    let key = (scorer.name.clone(), scorer.version, date);
    // A day scored already is answered from memory, without a database round trip.
    if let Some(done) = state.day_done(&key) {
        return Ok(done);
    }
    // A date that is not a trading date of the stored prices is answered from the calendar (one indexed query,
    // remembered), never by reading and scoring the whole history.
    if !state.is_trading_date(date).await.map_err(|e| state.error(e))? {
        return Err(ApiError::not_found(format!("no prices on {date} (dates are trading days of the stored prices)")));
    }
    let Some(cell) = state.day_cell(key) else { return Err(ApiError::internal()) };
    if let Some(done) = cell.get() {
        return Ok(done.clone());
    }
    let map = cell
        .get_or_try_init(|| async {
            let _mine = compute_slot(state, &client()).await?;
            let slot = heavy_slot(state).await?;
            state.metrics.day_computations.inc();
            // Only the history the model needs: the same rows `score_day` would keep from a full read.
            let started = std::time::Instant::now();
            let (bars, securities) =
                stored_bars(state, date, scorer.history_days()).await.map_err(|e| state.error(e))?;
            let read_s = started.elapsed().as_secs_f64();
            let rows = bars.len();
            let s = scorer.clone();
            let work = move |cancel: &Cancel| {
                let started = std::time::Instant::now();
                let prices = checked_prices(bars, securities)?;
                let check_s = started.elapsed().as_secs_f64();
                s.score_day_cancellable(&prices, date, cancel).map(|d| (d, check_s, started.elapsed().as_secs_f64()))
            };
            let (day, check_s, work_s) = blocking(state, Some(slot), work, |e| match e {
                Error::Data(m) => Some(ApiError::not_found(m.clone())),
                _ => None,
            })
            .await?;
            tracing::info!(
                model = %scorer.label(), %date, rows, symbols = day.symbols.len(), read_s, check_s,
                score_s = work_s - check_s, "day scored"
            );
            Ok::<_, ApiError>(Arc::new(day.symbols.into_iter().zip(day.scores).collect::<BTreeMap<_, _>>()))
        })
        .await?;
    Ok(map.clone())
}

/// Computes every served model's scores for the latest stored date ahead of requests (started at start-up and
/// after each reload that changed the models); failures are only logged (a request computes it then).
pub(crate) async fn warm_latest(state: Arc<AppState>) {
    let date = match store::latest_price_date(&state.pool).await {
        Ok(Some(d)) => d,
        Ok(None) => return,
        Err(e) => {
            tracing::info!(error = %e, "warm-up: no latest price date; the first request computes it");
            return;
        }
    };
    for scorer in state.models().by_name.values() {
        match day_scores(&state, scorer, date, &|| "server:warm-up".to_owned()).await {
            Ok(m) => tracing::info!(model = %scorer.label(), %date, symbols = m.len(), "warm-up: latest day scored"),
            Err(e) => tracing::info!(model = %scorer.label(), %date, error = ?e, "warm-up: not scored"),
        }
    }
}

/// One of `client`'s computing slots, or 429 when it has `compute_per_client` computations in flight already or
/// has started more than `compute_per_client_per_s` (a bucket of 20).
async fn compute_slot<'a>(state: &'a AppState, client: &str) -> ApiResult<crate::server::state::ComputeGuard<'a>> {
    let refused = |m: String| ApiError::new(axum::http::StatusCode::TOO_MANY_REQUESTS, "too_many_computations", m);
    if state.compute_rate.enabled() && !state.compute_rate.take(client).await.allowed {
        return Err(refused(format!(
            "this client started more than {} computations per second (compute_per_client_per_s); retry later",
            state.cfg.compute_per_client_per_s
        )));
    }
    state.begin_compute(client).await.ok_or_else(|| {
        refused(format!(
            "this client has {} computation(s) in flight and twice as many waiting (compute_per_client); retry \
             when they are done",
            state.cfg.compute_per_client
        ))
    })
}

/// Score symbols as of a date from the stored prices, or bars given in the body.
#[utoipa::path(post, tag = "handlers", path = "/v1/predict", request_body = api::PredictIn,
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
pub(in crate::server) async fn predict(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    peer: Option<axum::Extension<crate::server::middleware::ClientAddr>>,
    JsonBody(body): JsonBody<api::PredictIn>,
) -> ApiResult<Json<api::Predicted>> {
    // Who is asking, for the per-client bounds of computations (worked out when one is needed).
    let client = || crate::server::middleware::client_of(&state, &headers, peer.as_ref().map(|p| p.0.0));
    let scorer = served(&state, body.model.as_deref())?;
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
            let all = day_scores(&state, &scorer, date, &client).await?;
            return Ok(Json(predicted(&scorer, date, &symbols, &all)?));
        }
        (None, Some(bars)) => {
            if bars.is_empty() || bars.len() > state.cfg.max_bars {
                return Err(ApiError::unprocessable(format!("`bars` must hold 1..={} bars", state.cfg.max_bars)));
            }
            if let Some(b) = bars.iter().find(|b| !valid_symbol(&b.symbol)) {
                return Err(ApiError::unprocessable(format!("invalid symbol {:?} in `bars`", b.symbol)));
            }
            let date = body.date.or_else(|| bars.iter().map(|b| b.date).max()).ok_or_else(ApiError::internal)?;
            // Columns no bar has (the schema makes all but close optional): named if the model needs them.
            let lacking: Vec<&str> = [
                ("open", bars.iter().all(|b| b.open.is_none())),
                ("high", bars.iter().all(|b| b.high.is_none())),
                ("low", bars.iter().all(|b| b.low.is_none())),
                ("volume", bars.iter().all(|b| b.volume.is_none())),
            ]
            .into_iter()
            .filter_map(|(name, absent)| absent.then_some(name))
            .collect();
            let s = scorer.clone();
            let work = move |cancel: &Cancel| {
                let loaded = bars_frame(&bars)?;
                s.score_day_cancellable(&loaded.prices, date, cancel)
            };
            let _mine = compute_slot(&state, &client()).await?;
            let slot = heavy_slot(&state).await?;
            // The caller's bars: any features error (even one not marked as the user's) is about them, and so is
            // a feature set other than the model's (families skipped for columns the bars lack).
            let day = blocking(&state, Some(slot), work, |e| match e {
                Error::Features(_) => Some(ApiError::unprocessable(e.to_string())),
                Error::Model(stockcast_models::Error::Data(m)) if !lacking.is_empty() => {
                    Some(ApiError::unprocessable(format!(
                        "the model's features need columns these bars lack ({}): send them with every bar ({m})",
                        lacking.join(", ")
                    )))
                }
                _ => None,
            })
            .await?;
            (day.symbols.into_iter().zip(day.scores).collect(), date)
        }
    };
    if scores.is_empty() {
        return Err(none_scored(date));
    }
    Ok(Json(api::Predicted {
        model: scorer.label(),
        date,
        predictions: scores.into_iter().map(|(symbol, score)| api::Score { symbol, score }).collect(),
        missing: Vec::new(),
    }))
}

fn none_scored(date: NaiveDate) -> ApiError {
    ApiError::not_found(format!("none of the symbols has prices on {date}"))
}

/// The answer for stored `symbols` from the day's scores `all`: each symbol's score in name order, the ones
/// without one named as missing; 404 when none has one.
fn predicted(
    scorer: &Scorer,
    date: NaiveDate,
    symbols: &[String],
    all: &BTreeMap<String, f64>,
) -> ApiResult<api::Predicted> {
    let scores: BTreeMap<&String, f64> = symbols.iter().filter_map(|s| all.get(s).map(|v| (s, *v))).collect();
    if scores.is_empty() {
        return Err(none_scored(date));
    }
    Ok(api::Predicted {
        model: scorer.label(),
        date,
        predictions: scores.into_iter().map(|(symbol, score)| api::Score { symbol: symbol.clone(), score }).collect(),
        missing: symbols.iter().filter(|s| !all.contains_key(*s)).cloned().collect(),
    })
}

/// The answer [`predict`] gives for stored symbols on a day scored already (given the request's JSON body),
/// without the router: `None` for anything else (no date, bars, a model not served, a day not in memory, a body
/// the handler would refuse, no symbol scored), which then takes the routed path.
pub(in crate::server) fn cached_prediction(state: &AppState, body: &[u8]) -> Option<Response> {
    let api::PredictIn { model, date: Some(date), symbols: Some(symbols), bars: None } =
        serde_json::from_slice(body).ok()?
    else {
        return None;
    };
    if symbols.is_empty() || check_symbols(&symbols, state.cfg.max_symbols).is_err() {
        return None;
    }
    let scorer = served(state, model.as_deref()).ok()?;
    let all = state.day_done(&(scorer.name.clone(), scorer.version, date))?;
    Some(Json(predicted(&scorer, date, &symbols, &all).ok()?).into_response())
}

/// Compute and store a day's recommendations (one transaction per model version; a rerun replaces).
#[utoipa::path(post, tag = "handlers", path = "/v1/recommendations/run", request_body = api::RunIn, security(("bearer" = [])),
    responses(
        (status = 200, description = "runs stored", body = api::Runs),
        (status = 401, description = "missing or wrong bearer token", body = api::ErrorBody),
        (status = 404, description = "no such model", body = api::ErrorBody),
        (status = 413, description = "request body too large", body = api::ErrorBody),
        (status = 422, description = "body has wrong fields or values", body = api::ErrorBody),
        (status = 503, description = "database unavailable, no model served, busy (Retry-After), or timeout", body = api::ErrorBody),
    )
)]
pub(in crate::server) async fn run_recommendations(
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
#[utoipa::path(post, tag = "handlers", path = "/v1/admin/reload", security(("bearer" = [])),
    responses(
        (status = 200, description = "reloaded", body = api::ReloadReport),
        (status = 401, description = "missing or wrong bearer token", body = api::ErrorBody),
        (status = 409, description = "a new version was refused; the old one keeps serving", body = api::ErrorBody),
    )
)]
pub(in crate::server) async fn reload(State(state): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Response> {
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
