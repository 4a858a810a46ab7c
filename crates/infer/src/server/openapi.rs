//! The OpenAPI 3.1 description served at `/openapi.json`, generated (utoipa) from the handlers' `#[utoipa::path]`
//! annotations and the typed bodies in [`super::api`]: a field added to a response type appears here.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::api;
use super::handlers;

// The route's handler lives here, so the document and the handlers it lists do not import each other; its
// operation id and tag are the ones it had among the handlers.
/// This document.
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", tag = "handlers", responses(
    (status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object),
))]
pub(super) async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document().to_string()).into_response()
}

/// Adds the bearer scheme of the protected routes.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "stockcast inference API",
        description = "Predictions and daily recommendations of the promoted stockcast models. Errors are JSON \
                       {error, message}; every response has an x-request-id header."
    ),
    paths(
        handlers::healthz,
        handlers::readyz,
        handlers::metrics,
        serve,
        handlers::models,
        handlers::predictions,
        handlers::recommendations,
        handlers::predict,
        handlers::run_recommendations,
        handlers::reload,
    ),
    components(schemas(
        api::ErrorBody,
        api::Health,
        api::Ready,
        api::Models,
        api::ModelInfo,
        api::Score,
        api::StoredPredictions,
        api::Recommendations,
        api::RecommendationRow,
        api::BarIn,
        api::PredictIn,
        api::Predicted,
        api::RunIn,
        api::RunOut,
        api::Runs,
        api::Refused,
        api::ReloadReport,
        crate::recommend::Action,
    )),
    modifiers(&Bearer)
)]
struct ApiDoc;

/// The document.
pub(super) fn document() -> serde_json::Value {
    let mut doc = ApiDoc::openapi();
    env!("CARGO_PKG_VERSION").clone_into(&mut doc.info.version);
    serde_json::to_value(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    /// The whole document, so a changed route, parameter or response field shows up in review.
    #[test]
    fn the_document_is_the_reviewed_snapshot() {
        let mut doc = super::document();
        // The crate version changes on every release; the interface is what is reviewed.
        doc["info"]["version"] = serde_json::json!("VERSION");
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        assert!(text.contains("/v1/recommendations/run"), "{text}");
        insta::assert_snapshot!("openapi", text);
    }
}
