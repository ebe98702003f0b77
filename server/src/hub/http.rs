//! The hub's HTTP side: the authenticated WebSocket upgrade at `/ws`, the admission of new
//! connections, the operators' `POST /internal/publish`, and the hub's settings ([`Args`]).

use super::Hub;
use super::connection::{self, Limits};
use crate::auth::{Identity, Role, Verifier};
use crate::engine::HistoryLimits;
use crate::http::error::{ApiError, AppJson};
use crate::http::extract::header_or_query_identity;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use governor::{DefaultDirectRateLimiter, RateLimiter};
use marquee_protocol::{Channel, Codec, ErrorCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_util::task::TaskTracker;

/// The hub's settings: connections, their limits, and channel history.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
#[command(next_help_heading = "Hub")]
pub struct Args {
    /// Messages kept per channel for resume.
    #[arg(long, env = "MARQUEE_HISTORY_SIZE", default_value_t = 1000)]
    pub history_size: usize,

    /// How long messages are kept for resume.
    #[arg(long, env = "MARQUEE_HISTORY_TTL", default_value = "5m", value_parser = crate::clock::parse_duration)]
    pub history_ttl: Duration,

    /// Interval between server pings.
    #[arg(long, env = "MARQUEE_HEARTBEAT_INTERVAL", default_value = "25s", value_parser = crate::clock::parse_duration)]
    pub heartbeat_interval: Duration,

    /// How long a ping may go unanswered before the connection is closed (4004).
    #[arg(long, env = "MARQUEE_HEARTBEAT_TIMEOUT", default_value = "10s", value_parser = crate::clock::parse_duration)]
    pub heartbeat_timeout: Duration,

    /// Largest inbound message accepted, in bytes; larger closes with 1009.
    #[arg(long, env = "MARQUEE_MAX_MESSAGE_SIZE", default_value_t = 64 * 1024)]
    pub max_message_size: usize,

    /// Capacity of each connection's outbound queue, in messages.
    #[arg(long, env = "MARQUEE_OUTBOUND_QUEUE", default_value_t = 512)]
    pub outbound_queue: usize,

    /// WebSocket read buffer per connection, in bytes (allocated up front for every socket).
    #[arg(long, env = "MARQUEE_WS_READ_BUFFER", default_value_t = 1024)]
    pub ws_read_buffer: usize,

    /// Bytes gathered before a write reaches the socket (a flush writes earlier).
    #[arg(long, env = "MARQUEE_WS_WRITE_BUFFER", default_value_t = 8192)]
    pub ws_write_buffer: usize,

    /// How long a single batch of writes may take before the connection counts as stuck
    /// and is closed as a slow consumer.
    #[arg(long, env = "MARQUEE_WRITE_TIMEOUT", default_value = "10s", value_parser = crate::clock::parse_duration)]
    pub write_timeout: Duration,

    /// Maximum concurrent WebSocket connections on this node.
    #[arg(long, env = "MARQUEE_MAX_CONNECTIONS", default_value_t = 200_000)]
    pub max_connections: usize,

    /// New connections accepted per second (token bucket); more get 503 with `Retry-After`.
    #[arg(long, env = "MARQUEE_CONNECT_RATE", default_value_t = 5000)]
    pub connect_rate: u32,

    /// Burst size of the connect-rate bucket.
    #[arg(long, env = "MARQUEE_CONNECT_BURST", default_value_t = 10000)]
    pub connect_burst: u32,

    /// Inbound messages per second allowed per connection.
    #[arg(long, env = "MARQUEE_INBOUND_RATE", default_value_t = 20)]
    pub inbound_rate: u32,

    /// Burst size of the per-connection inbound bucket.
    #[arg(long, env = "MARQUEE_INBOUND_BURST", default_value_t = 50)]
    pub inbound_burst: u32,

    /// Rate-limited messages tolerated on one connection before it is closed (4003).
    #[arg(long, env = "MARQUEE_ABUSE_LIMIT", default_value_t = 100)]
    pub abuse_limit: u32,

    /// Maximum subscriptions per connection (the inbox included).
    #[arg(long, env = "MARQUEE_MAX_SUBSCRIPTIONS", default_value_t = 64)]
    pub max_subscriptions: usize,

    /// Upper bound of the jittered reconnect delay advised to clients on shutdown.
    #[arg(long, env = "MARQUEE_RECONNECT_SPREAD", default_value = "5s", value_parser = crate::clock::parse_duration)]
    pub reconnect_spread: Duration,
}

impl Args {
    /// What channel engines keep for resume.
    pub fn history(&self) -> HistoryLimits {
        HistoryLimits {
            size: self.history_size,
            ttl: self.history_ttl,
        }
    }

    /// The limits every connection runs under.
    pub fn limits(&self) -> Limits {
        Limits {
            outbound_queue: self.outbound_queue,
            heartbeat_interval: self.heartbeat_interval,
            heartbeat_timeout: self.heartbeat_timeout,
            inbound_rate: self.inbound_rate,
            inbound_burst: self.inbound_burst,
            abuse_limit: self.abuse_limit,
            max_subscriptions: self.max_subscriptions,
            write_timeout: self.write_timeout,
            reconnect_spread: self.reconnect_spread,
        }
    }

    /// The WebSocket buffers and sizes of every upgrade.
    pub fn sockets(&self) -> SocketSettings {
        SocketSettings {
            read_buffer: self.ws_read_buffer,
            write_buffer: self.ws_write_buffer,
            max_message_size: self.max_message_size,
        }
    }
}

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
        Self {
            active: Arc::new(AtomicUsize::new(0)),
            max,
            rate: RateLimiter::direct(crate::rate::per_second(rate, burst)),
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

/// What the hub's routes need. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HubState {
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
    /// Tracks live connections so shutdown can wait for them.
    pub tracker: TaskTracker,
}

impl FromRef<HubState> for Arc<Verifier> {
    fn from_ref(state: &HubState) -> Self {
        state.verifier.clone()
    }
}

/// `/ws` and `POST /internal/publish`.
pub fn routes(state: HubState) -> Router {
    Router::new()
        .route("/ws", get(upgrade))
        .route("/internal/publish", post(publish))
        .with_state(state)
}

async fn upgrade(
    State(state): State<HubState>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    uri: Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // Admission comes first, before any token is verified: a flood of upgrade attempts is
    // refused at the cost of an atomic and a token bucket, not of a signature check.
    let permit = state.admission.admit()?;
    let identity = header_or_query_identity(&state.verifier, &headers, &uri)?;
    let ws = ws.map_err(|r| ApiError::bad_request(r.body_text()))?;
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
            ApiError::bad_request(format!(
                "no supported sub-protocol; use {} or {}",
                Codec::JSON_PROTOCOL,
                Codec::MSGPACK_PROTOCOL
            ))
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

fn publisher(identity: &Identity) -> Result<(), ApiError> {
    if identity.has_role(Role::Admin) {
        Ok(())
    } else {
        Err(ApiError::forbidden("publishing needs the admin role"))
    }
}

async fn publish(
    State(state): State<HubState>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<AppJson<PublishRequest>, ApiError>,
) -> Result<Json<Published>, ApiError> {
    let identity = header_or_query_identity(&state.verifier, &headers, &uri)?;
    publisher(&identity)?;
    let AppJson(request) = body?;
    let channel =
        Channel::parse(&request.channel).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // Only what every client can decode goes out: the protocol's nesting limit applies.
    let encoded = serde_json::to_vec(&request.data).unwrap_or_default();
    if let Err(e) = Codec::Json.decode::<Value>(&encoded) {
        return Err(ApiError::bad_request(format!(
            "data cannot be sent to clients: {e}"
        )));
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
