//! The error every HTTP route answers with, and the JSON body extractor whose rejection is one.
//!
//! Every error body is `{"code", "message"}` with a stable [`ErrorCode`]. Database and internal
//! failures log their detail and answer a generic body: their text never reaches a client.

use crate::metrics::METRICS;
use crate::security::SecurityEvent;
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
    /// Set on refusals that are security events; carried on the response for
    /// [`crate::security::layer`].
    security: Option<SecurityEvent>,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody::new(code, message),
            headers: Vec::new(),
            security: None,
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

    /// Marks the refusal as a security event, counted and logged with the client's address.
    #[must_use]
    pub fn security(mut self, event: SecurityEvent) -> Self {
        self.security = Some(event);
        self
    }

    /// The stable code of its body.
    pub fn code(&self) -> ErrorCode {
        self.body.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        if let Some(event) = self.security {
            response.extensions_mut().insert(event);
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
    /// A database failure the route did not map to a client error, its detail logged, never
    /// sent: 503 `unavailable` when the database could not be reached in time (worth a
    /// retry), 500 `internal` otherwise.
    fn from(e: sqlx::Error) -> Self {
        if transient(&e) {
            METRICS.db_timeouts.increment(1);
            Self::unavailable("the database", &e)
        } else {
            Self::internal("database error", &e)
        }
    }
}

/// Whether a database error says the database was out of reach (no connection in time, the
/// connection broke) rather than that the query failed.
pub fn transient(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
    )
}

/// A JSON body whose rejection is an [`ApiError`]. A body with U+0000 in any string (or key)
/// is refused `bad_request` naming where: no text store takes it (Postgres refuses it in
/// `text`), so it must never get as far as a query.
#[derive(Debug)]
pub struct AppJson<T>(pub T);

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        use axum::extract::rejection::JsonRejection;
        // The body is read once and parsed twice: untyped for the U+0000 walk, then typed from
        // the same bytes so a malformed body's message keeps axum's line and column.
        let (parts, body) = req.into_parts();
        let bytes = axum::body::Bytes::from_request(
            axum::extract::Request::from_parts(parts.clone(), body),
            state,
        )
        .await
        .map_err(JsonRejection::from)?;
        let untyped =
            axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes.clone()));
        let axum::Json(mut value) =
            axum::Json::<serde_json::Value>::from_request(untyped, state).await?;
        if let Some(path) = nul_at(&value, &mut String::from("body")) {
            return Err(ApiError::bad_request(format!(
                "{path} must not contain control characters"
            )));
        }
        // JSON has one kind of number: `2.0` is the integer 2 (JSON Schema agrees), though
        // serde reads it only into a float. Such a body is read again with them as integers.
        let typed = if integral_floats(&mut value) {
            let bytes = serde_json::to_vec(&value).expect("a JSON value serializes");
            axum::Json::<T>::from_bytes(&bytes)?
        } else {
            axum::Json::<T>::from_bytes(&bytes)?
        };
        Ok(AppJson(typed.0))
    }
}

/// Reads a JSON body as `T`, taking whole-number floats (`2.0`) where integers are wanted, as
/// [`AppJson`] does, for routes that read their body themselves (a signed hook reads the exact
/// bytes first).
pub fn read_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes)?;
    integral_floats(&mut value);
    serde_json::from_value(value)
}

/// Turns every float in `value` that is a whole number within `i64` into an integer;
/// whether it found one.
fn integral_floats(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().expect("a float");
            // i64::MAX as f64 rounds up to 2^63, which no i64 holds: keep the bound exclusive.
            if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 {
                *value = Value::from(f as i64);
                true
            } else {
                false
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |found, item| integral_floats(item) | found),
        Value::Object(fields) => fields
            .values_mut()
            .fold(false, |found, item| integral_floats(item) | found),
        _ => false,
    }
}

/// Where in `value` a string holds U+0000, as a path (`body.sections[2].name`).
fn nul_at(value: &serde_json::Value, path: &mut String) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::String(s) if s.contains('\0') => Some(path.clone()),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = nul_at(item, path);
            path.truncate(len);
            found
        }),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                return Some(path.clone());
            }
            let len = path.len();
            path.push('.');
            path.push_str(key);
            let found = nul_at(item, path);
            path.truncate(len);
            found
        }),
        _ => None,
    }
}

/// Checks a client text field with one of [`marquee_protocol::text`]'s rules; a refusal is
/// `400 bad_request` naming the field.
pub fn text(result: Result<(), marquee_protocol::text::TextError>) -> Result<(), ApiError> {
    result.map_err(|e| ApiError::bad_request(e.to_string()))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_floats_become_integers_and_others_stay() {
        let mut body = serde_json::json!({"a": 240.0, "b": [1.5, -3.0], "c": 7, "d": 1e300});
        assert!(integral_floats(&mut body));
        assert_eq!(
            body,
            serde_json::json!({"a": 240, "b": [1.5, -3], "c": 7, "d": 1e300})
        );
        assert!(!integral_floats(&mut serde_json::json!({"a": 1, "b": 0.5})));
    }

    #[test]
    fn a_nul_anywhere_in_a_body_is_found_with_its_path() {
        let body =
            serde_json::json!({"name": "ok", "sections": [{"name": "fine"}, {"name": "bad\u{0}"}]});
        assert_eq!(
            nul_at(&body, &mut String::from("body")).as_deref(),
            Some("body.sections[1].name")
        );
        assert_eq!(
            nul_at(&serde_json::json!({"a": ["x", 1]}), &mut "body".into()),
            None
        );
    }
}
