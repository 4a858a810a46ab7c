//! Liveness, readiness and metrics.

use super::{AppState, Arc, IntoResponse, Json, Ordering, Response, State, StatusCode, api, header};

/// Liveness, with the database state and the models served.
#[utoipa::path(get, tag = "handlers", path = "/healthz", responses((status = 200, description = "alive", body = api::Health)))]
pub(in crate::server) async fn healthz(State(state): State<Arc<AppState>>) -> Json<api::Health> {
    let set = state.models();
    Json(api::Health {
        status: "ok".into(),
        database: if state.db_up.load(Ordering::Relaxed) { "ok" } else { "unavailable" }.into(),
        models: set.versions().iter().map(|(n, v)| format!("{n}@{v}")).collect(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// Ready when the database answers and a model is served.
#[utoipa::path(get, tag = "handlers", path = "/readyz", responses(
    (status = 200, description = "ready", body = api::Ready),
    (status = 503, description = "not ready (same body)", body = api::Ready),
))]
pub(in crate::server) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
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
#[utoipa::path(get, tag = "handlers", path = "/metrics", responses(
    (status = 200, description = "OpenMetrics text exposition format (prometheus-client)", content_type = "application/openmetrics-text", body = String),
))]
pub(in crate::server) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let models = state.models().versions();
    let now = crate::server::metrics::Snapshot {
        models: &models,
        db_up: state.db_up.load(Ordering::Relaxed),
        heavy_busy: state.heavy.running(),
        cache: state.cache_size(),
        breaker_open: state.limiter.breaker_open(),
    };
    let text = state.metrics.render(&now);
    ([(header::CONTENT_TYPE, crate::server::metrics::CONTENT_TYPE)], text).into_response()
}
