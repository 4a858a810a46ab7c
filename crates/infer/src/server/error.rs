//! API errors: a status, a stable code and a message for the caller, never internals (SQL, paths, panic text).

use std::sync::atomic::Ordering;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::state::AppState;
use crate::error::Error;

/// An API error: status, a stable code and a message for the caller (never internals).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_parameter", message)
    }
    pub(super) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub(super) fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", message)
    }
    /// True for 503 `database_unavailable`.
    pub(super) fn is_database_unavailable(&self) -> bool {
        self.code == "database_unavailable"
    }
    /// The server is at its limit for expensive work: 503 `busy` with Retry-After.
    pub(super) fn busy() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "too many computations in progress; retry shortly")
    }
    pub(super) fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; the server log has the details")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code, "message": self.message });
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS || self.code == "busy" {
            r.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
        }
        r
    }
}

impl AppState {
    /// Maps an engine error to an API error, logging what the caller does not see.
    pub(super) fn error(&self, e: Error) -> ApiError {
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
}
