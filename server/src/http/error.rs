//! The error every HTTP route answers with, and the JSON body extractor whose rejection is one.
//!
//! Every error body is `{"code", "message"}` with a stable [`ErrorCode`]. Database and internal
//! failures log their detail and answer a generic body: their text never reaches a client.

use crate::metrics::METRICS;
use axum::Json;
use axum::extract::FromRequest;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use marquee_protocol::{ErrorBody, ErrorCode};

/// An HTTP error with a stable code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody::new(code, message),
            headers: Vec::new(),
        }
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
    }

    /// 503 `unavailable`, after logging what failed (the detail stays in the log).
    pub fn unavailable(what: &str, error: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %error, "{what} unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            format!("{what} is unavailable; retry"),
        )
    }

    /// 500 `internal`, after logging what failed (the detail stays in the log).
    pub fn internal(what: &str, error: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %error, "{what}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error",
        )
    }

    /// Adds a response header.
    #[must_use]
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// 503 with a jittered `Retry-After` of 1 to 5 seconds, so refused clients do not return
    /// in lockstep.
    pub fn over_capacity(message: &str) -> Self {
        METRICS.connections_refused.increment(1);
        let retry_after = rand::random_range(1..=5u32);
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::OverCapacity,
            message,
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from(retry_after))
    }

    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let (status, code) = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooBig)
        } else {
            (StatusCode::BAD_REQUEST, ErrorCode::BadRequest)
        };
        Self::new(status, code, rejection.body_text())
    }
}

impl From<sqlx::Error> for ApiError {
    /// A database failure the route did not map to a client error: 500 `internal`, its detail
    /// logged, never sent.
    fn from(e: sqlx::Error) -> Self {
        Self::internal("database error", &e)
    }
}

/// A JSON body whose rejection is an [`ApiError`].
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct AppJson<T>(pub T);

/// A constraint name and the client error its violation means.
pub type ConstraintError<E> = (&'static str, fn() -> E);

/// Maps a unique or check violation of a named constraint to the client error it means (the
/// realworld pattern: a 409 at the call site); any other database error stays one.
pub(crate) fn on_constraint<E: From<sqlx::Error>>(e: sqlx::Error, map: &[ConstraintError<E>]) -> E {
    if let sqlx::Error::Database(db) = &e
        && let Some(name) = db.constraint()
        && let Some((_, f)) = map.iter().find(|(n, _)| *n == name)
    {
        return f();
    }
    E::from(e)
}

/// The answer to a route that does not exist.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// The answer to a method a route does not take.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::BadRequest,
        "method not allowed on this route",
    )
}
