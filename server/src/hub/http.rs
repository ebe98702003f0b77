//! The hub's HTTP side: the authenticated WebSocket upgrade at `/ws`, the admission of new
//! connections, the operators' `POST /internal/publish`, and the hub's settings ([`Args`]).

use super::Hub;
use super::connection::{self, Limits};
use crate::auth::{Identity, Role, Verifier};
use crate::engine::HistoryLimits;
use crate::http::error::{ApiError, AppJson};
use crate::http::extract::{bearer_identity, header_or_query_identity};
use crate::security::SecurityEvent;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{FromRef, State};
use axum::http::HeaderValue;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, RateLimiter};
use marquee_protocol::{Channel, ChannelKind, Codec, ErrorCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio_util::task::TaskTracker;

/// The hub's settings: connections, their limits, and channel history.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
#[command(next_help_heading = "Hub")]
pub struct Args {
    /// What each channel keeps for resume.
    #[command(flatten)]
    pub history: crate::engine::HistoryArgs,

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

    /// New connections a node greets at once (subscribing the inbox and reading its
    /// snapshot); up to 16 times as many more wait their turn, upgraded, for up to
    /// `welcome_wait`; the rest, and those whose wait runs out, are sent away with a
    /// `reconnect` advice of 2 to 10 s. The connect rate bounds how many arrive; this bounds
    /// how many are in the channel engine and the database at once, so that a reconnect
    /// storm after a node is lost (its buyers all arriving at the others within a second)
    /// waits in the node and in the clients, spread out, instead of in Redis, where it would
    /// slow down the connections already open and time out, and every time-out would be
    /// another reconnect.
    #[arg(long, env = "MARQUEE_MAX_WELCOMING", default_value_t = 64)]
    pub max_welcoming: usize,

    /// How long a new connection may wait for its welcome before it is sent away (shorter
    /// than clients' connect timeout, 10 s in the SDKs, so the advice reaches them).
    #[arg(long, env = "MARQUEE_WELCOME_WAIT", default_value = "5s", value_parser = crate::clock::parse_duration)]
    pub welcome_wait: Duration,

    /// Upgrade attempts per second from one client address (checked before the token, so a
    /// flooder spends its own bucket, not the node's); more get 429. Generous, because a
    /// venue's or a carrier's NAT puts many buyers behind one address; behind a proxy that
    /// hides client addresses, raise it (every client then shares the proxy's).
    #[arg(long, env = "MARQUEE_CONNECT_RATE_PER_ADDRESS", default_value_t = 100)]
    pub connect_rate_per_address: u32,

    /// Burst size of each address's bucket.
    #[arg(long, env = "MARQUEE_CONNECT_BURST_PER_ADDRESS", default_value_t = 500)]
    pub connect_burst_per_address: u32,

    /// Concurrent connections one account (tenant and user) may hold on a node: tabs and
    /// devices, not a crowd; more get 429.
    #[arg(
        long,
        env = "MARQUEE_MAX_CONNECTIONS_PER_ACCOUNT",
        default_value_t = 16
    )]
    pub max_connections_per_account: usize,

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
        self.history.limits()
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
            welcoming: Arc::new(tokio::sync::Semaphore::new(self.max_welcoming.max(1))),
            welcome_queue: Arc::default(),
            welcome_wait: self.welcome_wait,
            welcome_permits: self.max_welcoming.max(1),
        }
    }

    /// What admission of new connections keeps to.
    pub fn admission(&self) -> AdmissionLimits {
        AdmissionLimits {
            max_connections: self.max_connections,
            connect_rate: (self.connect_rate, self.connect_burst),
            per_address: (
                self.connect_rate_per_address,
                self.connect_burst_per_address,
            ),
            per_account: self.max_connections_per_account,
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

/// Decides whether a new connection may be opened, cheapest check first, so that a flood is
/// refused at the flooder's cost:
///
/// 1. [`Admission::screen`], before the token is looked at: the caller's address has its own
///    bucket, and a full node refuses at once;
/// 2. [`Admission::admit`], only for a valid token and a well-formed upgrade: the node's
///    connect-rate bucket, its connection cap and the account's own cap.
///
/// Unauthenticated or malformed upgrades therefore never spend the bucket real buyers share,
/// and one account cannot take every slot.
#[derive(Debug)]
pub struct Admission {
    active: Arc<AtomicUsize>,
    max: usize,
    rate: DefaultDirectRateLimiter,
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    /// When `per_address` last forgot idle addresses (seconds since `started`).
    swept_s: AtomicU64,
    started: std::time::Instant,
    per_account: Accounts,
    max_per_account: usize,
}

/// Connections open per account (`tenant/user`).
type Accounts = Arc<Mutex<HashMap<String, usize>>>;

/// Holds one connection slot (and the account's); both return when this is dropped.
#[derive(Debug)]
pub struct Permit {
    active: Arc<AtomicUsize>,
    account: Option<(Accounts, String)>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::AcqRel);
        if let Some((accounts, key)) = self.account.take() {
            let mut accounts = accounts.lock().expect("admission lock");
            if let Some(n) = accounts.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    accounts.remove(&key);
                }
            }
        }
    }
}

/// The numbers [`Admission`] keeps to.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionLimits {
    /// Concurrent connections on the node.
    pub max_connections: usize,
    /// New connections a second on the node, and its burst.
    pub connect_rate: (u32, u32),
    /// Upgrade attempts a second from one address, and its burst.
    pub per_address: (u32, u32),
    /// Concurrent connections of one account.
    pub per_account: usize,
}

impl Admission {
    /// Creates the admission policy.
    pub fn new(limits: AdmissionLimits) -> Self {
        let (rate, burst) = limits.connect_rate;
        let (address_rate, address_burst) = limits.per_address;
        Self {
            active: Arc::new(AtomicUsize::new(0)),
            max: limits.max_connections,
            rate: RateLimiter::direct(crate::rate::per_second(rate, burst)),
            per_address: RateLimiter::keyed(crate::rate::per_second(address_rate, address_burst)),
            swept_s: AtomicU64::new(0),
            started: std::time::Instant::now(),
            per_account: Arc::default(),
            max_per_account: limits.per_account.max(1),
        }
    }

    /// The checks made before the token is verified: the address's bucket (429) and whether
    /// the node is full (503).
    pub fn screen(&self, peer: Option<IpAddr>) -> Result<(), ApiError> {
        if let Some(ip) = peer {
            // Forget addresses whose bucket is full again, at most once a second, so a flood
            // of addresses cannot grow the map for long.
            let now = self.started.elapsed().as_secs();
            if self.swept_s.swap(now, Ordering::AcqRel) != now {
                self.per_address.retain_recent();
            }
            if self.per_address.check_key(&ip).is_err() {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::RateLimited,
                    "too many connection attempts from this address; slow down",
                )
                .with_header(header::RETRY_AFTER, HeaderValue::from(1u32))
                .security(SecurityEvent::connection_refused("address_rate")));
            }
        }
        if self.active.load(Ordering::Acquire) >= self.max {
            return Err(full());
        }
        Ok(())
    }

    /// Takes a connection slot for `identity`, whose token has been verified: refused with
    /// 503 when the node's bucket is empty or it is full, 429 when the account already holds
    /// its most connections.
    pub fn admit(&self, identity: &Identity) -> Result<Permit, ApiError> {
        if self.rate.check().is_err() {
            return Err(
                ApiError::over_capacity("too many new connections; retry later")
                    .security(SecurityEvent::connection_refused("connect_rate")),
            );
        }
        let taken = self.active.fetch_add(1, Ordering::AcqRel);
        let mut permit = Permit {
            active: self.active.clone(),
            account: None,
        };
        if taken >= self.max {
            return Err(full());
        }
        let key = format!(
            "{}/{}",
            identity.tenant.as_deref().unwrap_or(""),
            identity.user
        );
        let mut accounts = self.per_account.lock().expect("admission lock");
        let held = accounts.entry(key.clone()).or_insert(0);
        if *held >= self.max_per_account {
            if *held == 0 {
                accounts.remove(&key);
            }
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                format!(
                    "this account already has {} connections open on this node",
                    self.max_per_account
                ),
            )
            .security(SecurityEvent::connection_refused("account")));
        }
        *held += 1;
        drop(accounts);
        permit.account = Some((self.per_account.clone(), key));
        Ok(permit)
    }
}

/// The refusal when the node holds its most connections.
fn full() -> ApiError {
    ApiError::over_capacity("this node is full; retry later")
        .security(SecurityEvent::connection_refused("full"))
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

/// The OpenAPI document of `/ws`: only its HTTP side, the upgrade and its refusals (the
/// protocol spoken after it is docs/protocol.md).
#[derive(utoipa::OpenApi)]
#[openapi(paths(upgrade))]
struct WsDoc;

/// The OpenAPI document of `/ws`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    WsDoc::openapi()
}

/// The OpenAPI document of `POST /internal/publish`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(publish))]
struct PublishDoc;

/// The OpenAPI document of `POST /internal/publish`.
pub fn internal_openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    PublishDoc::openapi()
}

/// `/ws`, for the public listener.
pub fn routes(state: HubState) -> Router {
    Router::new().route("/ws", get(upgrade)).with_state(state)
}

/// `POST /internal/publish`, for the internal listener only: it writes on channels every
/// client trusts.
pub fn internal_routes(state: HubState) -> Router {
    Router::new()
        .route("/internal/publish", post(publish))
        .with_state(state)
}

/// Opens the realtime connection: a WebSocket upgrade (RFC 6455) with a token in
/// `Authorization: Bearer` or, for browsers, the `access_token` query parameter, and the
/// sub-protocol `marquee.v1.json` or `marquee.v1.msgpack`. Refused before the upgrade, in this
/// order: the address's connect rate (429), the token (401), the upgrade itself or the
/// sub-protocol (400), the node's connect rate or capacity (503, with `Retry-After`), the
/// account's connection cap (429).
#[utoipa::path(get, path = "/ws", tag = "realtime", security(("bearer" = [])),
    params(("access_token" = Option<String>, Query, description = "The token, for browsers that cannot set headers on an upgrade")),
    responses((status = 101, description = "Switching protocols: the WebSocket is open"),
        (status = 400, description = "Not a WebSocket upgrade, or no supported sub-protocol", body = marquee_protocol::ErrorBody),
        (status = 429, description = "Too many upgrades from this address, or too many connections of this account", body = marquee_protocol::ErrorBody),
        (status = 503, description = "The node is at its connect rate or capacity (`over_capacity`, with Retry-After)", body = marquee_protocol::ErrorBody)))]
async fn upgrade(
    State(state): State<HubState>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    uri: Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // The peer's address, when the listener records it (`serve` does; a router built for a
    // test may not).
    let peer = extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    // The address's own bucket comes first, before any token is verified: a flood of upgrade
    // attempts is refused at the cost of a token bucket, not of a signature check, and does
    // not spend the node's bucket (taken below, once the token and the upgrade are good).
    state.admission.screen(peer)?;
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
    let permit = state.admission.admit(&identity)?;
    let ctx = state.connection.clone();
    let token = state.tracker.token();
    let user_agent = ctx
        .sessions
        .as_ref()
        .and_then(|_| headers.get(header::USER_AGENT)?.to_str().ok())
        .map(str::to_owned);
    // The upgrade's task keeps what its callback captured, and room for the callback's
    // future, for as long as the connection lives: both are boxed, so an idle connection's
    // task holds two pointers instead of a second copy of its identity and context and room
    // for the largest future (about 900 bytes of the per-connection memory budget).
    let setup = Box::new((identity, ctx, peer, user_agent, permit, token));
    Ok(ws.on_upgrade(move |socket| {
        let (identity, ctx, peer, user_agent, permit, token) = *setup;
        let arrival = connection::Arrival { peer, user_agent };
        let serve = Box::pin(connection::run(socket, identity, codec, ctx, arrival));
        async move {
            let _permit = permit;
            let _token = token;
            serve.await;
        }
    }))
}

/// Body of `POST /internal/publish`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    /// A channel of the caller's tenant (`seats:`, `queue:`, `admin:` or `gate:`; never an
    /// inbox).
    #[schema(pattern = r"^(seats|queue|admin|gate):[A-Za-z0-9_.@/-]{1,128}$")]
    channel: String,
    /// What to publish: any JSON the protocol's nesting limit allows.
    data: Value,
}

/// Reply of `POST /internal/publish`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Published {
    /// The channel.
    channel: String,
    /// The channel's epoch.
    epoch: String,
    /// The message's offset in it.
    offset: u64,
}

/// Whether `identity` may publish on `channel`: an admin, never on an inbox (results and
/// order updates come from the server alone); a tenant's admin, never on a live seat map (the
/// booking engine's versioned stream) and only on a channel of its own tenant, as the node's
/// [`PublishPolicy`] tells. A token without a tenant is the deployment's own operator.
async fn may_publish(hub: &Hub, identity: &Identity, channel: &Channel) -> Result<(), ApiError> {
    if !identity.has_role(Role::Admin) {
        return Err(ApiError::forbidden("publishing needs the admin role"));
    }
    if channel.kind() == ChannelKind::Inbox {
        return Err(ApiError::forbidden(
            "inbox channels carry what only the server writes; they cannot be published on",
        ));
    }
    if identity.tenant.is_none() {
        return Ok(());
    }
    if channel.kind() == ChannelKind::Seats {
        // The live seat map is the booking engine's versioned stream: a message written into
        // it from outside (a made-up `v`) would break every later snapshot of the map.
        return Err(ApiError::forbidden(
            "seats channels carry the booking engine's own versioned deltas; they cannot be published on",
        ));
    }
    let Some(policy) = hub.publish_policy() else {
        return Err(ApiError::forbidden(format!(
            "this node cannot tell which tenant owns {channel} (it has no database)"
        )));
    };
    policy.check(identity, channel).await.map_err(|refusal| {
        let status = match refusal.code {
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::FORBIDDEN,
        };
        ApiError::new(status, refusal.code, refusal.message)
    })
}

/// Publishes a message on a channel of the caller's tenant (role `admin`, bearer header only).
#[utoipa::path(post, path = "/internal/publish", tag = "publishing", security(("bearer" = [])),
    request_body = PublishRequest,
    responses((status = 200, body = Published),
        (status = 403, description = "Not an admin, an inbox, a live seat map (for a tenant's admin), or a channel of another tenant (or one this node cannot check)", body = marquee_protocol::ErrorBody)))]
async fn publish(
    State(state): State<HubState>,
    headers: HeaderMap,
    body: Result<AppJson<PublishRequest>, ApiError>,
) -> Result<Json<Published>, ApiError> {
    // The header only: a token in a query string ends up in access logs.
    let identity = bearer_identity(&state.verifier, &headers)?;
    if !identity.has_role(Role::Admin) {
        return Err(ApiError::forbidden("publishing needs the admin role"));
    }
    let AppJson(request) = body?;
    let channel =
        Channel::parse(&request.channel).map_err(|e| ApiError::bad_request(e.to_string()))?;
    may_publish(&state.hub, &identity, &channel).await?;
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
