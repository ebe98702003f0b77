//! The HTTP surface of a node: the WebSocket upgrade at `/ws`, health and readiness, metrics,
//! the operators' publish endpoint, and (on nodes with a database) the [`crate::catalog`] routes.
//!
//! Every error is an [`ApiError`], rendered as `{"code", "message"}` with a stable
//! [`ErrorCode`].

use crate::auth::{AuthError, Identity, Role, Verifier};
use crate::engine::ChannelEngine;
use crate::hub::{Hub, connection};
use crate::metrics::{self, METRICS};
use axum::extract::rejection::JsonRejection;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{FromRequest, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use marquee_protocol::{Channel, Codec, ErrorBody, ErrorCode};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio_util::task::TaskTracker;

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

    fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// A refused token: 401, with the RFC 6750 challenge.
    pub fn auth(error: &AuthError) -> Self {
        metrics::auth_failure(error.reason());
        let challenge = match error {
            AuthError::Missing => r#"Bearer realm="marquee""#,
            _ => r#"Bearer realm="marquee", error="invalid_token""#,
        };
        Self::new(StatusCode::UNAUTHORIZED, error.code(), error.to_string()).with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        )
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

/// A JSON body whose rejection is an [`ApiError`].
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct AppJson<T>(pub T);

/// Decides whether a new connection may be opened: a global cap and a connect-rate bucket.
#[derive(Debug)]
pub struct Admission {
    active: Arc<AtomicUsize>,
    max: usize,
    rate: DefaultDirectRateLimiter,
}

/// Holds one connection slot; the slot returns when this is dropped.
#[derive(Debug)]
pub struct Permit(Arc<AtomicUsize>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    /// Creates the admission policy.
    pub fn new(max: usize, rate: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(rate.max(1)).expect("max(1) is non-zero");
        let burst = NonZeroU32::new(burst.max(1)).expect("max(1) is non-zero");
        Self {
            active: Arc::new(AtomicUsize::new(0)),
            max,
            rate: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
        }
    }

    /// Takes a connection slot, or refuses with 503.
    pub fn admit(&self) -> Result<Permit, ApiError> {
        if self.rate.check().is_err() {
            return Err(ApiError::over_capacity(
                "too many new connections; retry later",
            ));
        }
        let taken = self.active.fetch_add(1, Ordering::AcqRel);
        let permit = Permit(self.active.clone());
        if taken >= self.max {
            return Err(ApiError::over_capacity("this node is full; retry later"));
        }
        Ok(permit)
    }
}

/// WebSocket buffer and size settings applied to every upgrade.
#[derive(Debug, Clone, Copy)]
pub struct SocketSettings {
    /// Read buffer per socket, bytes.
    pub read_buffer: usize,
    /// Write buffer target, bytes.
    pub write_buffer: usize,
    /// Largest inbound message, bytes.
    pub max_message_size: usize,
}

/// Everything the HTTP handlers need. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The hub.
    pub hub: Hub,
    /// Token verifier.
    pub verifier: Arc<Verifier>,
    /// Shared by every connection.
    pub connection: connection::Context,
    /// Connection admission.
    pub admission: Arc<Admission>,
    /// Socket settings.
    pub sockets: SocketSettings,
    /// Renders `/metrics`.
    pub prometheus: PrometheusHandle,
    /// Tracks live connections so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// The catalog routes, when the node has a database.
    pub catalog: Option<crate::catalog::CatalogState>,
    /// The ticket and check-in routes, when the node has a database.
    pub tickets: Option<crate::tickets::http::TicketsState>,
}

/// The node's routes.
pub fn router(state: AppState) -> Router {
    let catalog = state.catalog.clone();
    let tickets = state.tickets.clone();
    let mut app = Router::new()
        .route("/ws", get(upgrade))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .route("/internal/publish", post(publish))
        .with_state(state);
    if let Some(catalog) = catalog {
        app = app.merge(crate::catalog::router(catalog));
    }
    if let Some(tickets) = tickets {
        app = app.merge(crate::tickets::http::router(tickets));
    }
    app.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(1024 * 1024))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn query_token(uri: &Uri) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.into_owned())
}

/// Verifies the `Authorization: Bearer` token of an HTTP API call.
pub fn bearer_identity(verifier: &Verifier, headers: &HeaderMap) -> Result<Identity, ApiError> {
    let token = bearer(headers).ok_or_else(|| ApiError::auth(&AuthError::Missing))?;
    verifier.verify(token).map_err(|e| ApiError::auth(&e))
}

/// Verifies the caller's token from the header or, for browsers, the query string.
fn authenticate(verifier: &Verifier, headers: &HeaderMap, uri: &Uri) -> Result<Identity, ApiError> {
    let token = match bearer(headers) {
        Some(t) => Some(t.to_owned()),
        None => query_token(uri),
    };
    let token = token.ok_or_else(|| ApiError::auth(&AuthError::Missing))?;
    verifier.verify(&token).map_err(|e| ApiError::auth(&e))
}

async fn upgrade(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    uri: Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // Admission comes first, before any token is verified: a flood of upgrade attempts is
    // refused at the cost of an atomic and a token bucket, not of a signature check.
    let permit = state.admission.admit()?;
    let identity = authenticate(&state.verifier, &headers, &uri)?;
    let ws = ws.map_err(|r| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            r.body_text(),
        )
    })?;
    let requested = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let codec = if requested.trim().is_empty() {
        Codec::Json
    } else {
        Codec::negotiate(&requested).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                format!(
                    "no supported sub-protocol; use {} or {}",
                    Codec::JSON_PROTOCOL,
                    Codec::MSGPACK_PROTOCOL
                ),
            )
        })?
    };
    let s = state.sockets;
    let mut ws = ws
        .read_buffer_size(s.read_buffer)
        .write_buffer_size(s.write_buffer)
        .max_write_buffer_size(s.write_buffer.max(s.max_message_size) * 64)
        .max_message_size(s.max_message_size)
        .max_frame_size(s.max_message_size);
    if !requested.trim().is_empty() {
        ws = ws.protocols([codec.subprotocol()]);
    }
    // The peer's address, when the listener records it (`serve` does; a router built for a
    // test may not).
    let peer = extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let ctx = state.connection.clone();
    let token = state.tracker.token();
    Ok(ws.on_upgrade(move |socket| async move {
        let _permit = permit;
        let _token = token;
        connection::run(socket, identity, codec, ctx, peer).await;
    }))
}

#[derive(Serialize)]
struct Status {
    status: &'static str,
    engine: &'static str,
}

async fn health(State(state): State<AppState>) -> Json<Status> {
    Json(Status {
        status: "ok",
        engine: state.hub.engine().name(),
    })
}

async fn ready(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    state.hub.engine().ready().await.map_err(|e| {
        tracing::warn!(error = %e, "not ready");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "the channel engine is unreachable",
        )
    })?;
    Ok(Json(Status {
        status: "ready",
        engine: state.hub.engine().name(),
    }))
}

async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Some(rss) = resident_memory_bytes() {
        ::metrics::gauge!("process_resident_memory_bytes").set(rss as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.prometheus.render(),
    )
}

/// This process's resident set size, from `/proc/self/statm` (Linux only).
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Body of `POST /internal/publish`.
#[derive(Debug, Deserialize)]
struct PublishRequest {
    channel: String,
    data: Value,
}

/// Reply of `POST /internal/publish`.
#[derive(Debug, Serialize)]
struct Published {
    channel: String,
    epoch: String,
    offset: u64,
}

async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<AppJson<PublishRequest>, ApiError>,
) -> Result<Json<Published>, ApiError> {
    let identity = authenticate(&state.verifier, &headers, &uri)?;
    if !identity.has_role(Role::Admin) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "publishing needs the admin role",
        ));
    }
    let AppJson(request) = body?;
    let channel = Channel::parse(&request.channel).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            e.to_string(),
        )
    })?;
    // Only what every client can decode goes out: the protocol's nesting limit applies.
    let encoded = serde_json::to_vec(&request.data).unwrap_or_default();
    if let Err(e) = Codec::Json.decode::<Value>(&encoded) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            format!("data cannot be sent to clients: {e}"),
        ));
    }
    let position = state
        .hub
        .publish(&channel, &request.data)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "publish failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                "the channel engine is unavailable",
            )
        })?;
    Ok(Json(Published {
        channel: request.channel,
        epoch: position.epoch,
        offset: position.offset,
    }))
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::BadRequest,
        "method not allowed on this route",
    )
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such route")
}
