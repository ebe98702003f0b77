//! Command-line and environment configuration.
//!
//! Every flag is also an environment variable (`.env.example` lists them all). Durations take
//! human forms such as `25s`, `500ms` or `10m`.

use clap::{Args, ValueEnum};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// A secret string that never appears in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

fn duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

/// The JWT algorithm the server pins. Tokens signed with any other algorithm (including `none`)
/// are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with the shared secret `MARQUEE_JWT_SECRET`.
    #[value(name = "HS256")]
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256, verified with the public key `MARQUEE_JWT_PUBLIC_KEY`.
    #[value(name = "RS256")]
    Rs256,
    /// Ed25519, verified with the public key `MARQUEE_JWT_PUBLIC_KEY`.
    #[value(name = "EdDSA")]
    EdDsa,
}

/// Configuration of one hub node (`marquee serve`).
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address the public HTTP and WebSocket listener binds to.
    #[arg(long, env = "MARQUEE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Name of this node, reported to clients and in logs. Random when unset.
    #[arg(long, env = "MARQUEE_NODE_ID")]
    pub node_id: Option<String>,

    /// Shared secret for HS256 access tokens.
    #[arg(long, env = "MARQUEE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,

    /// PEM public key (or a path to a PEM file) for RS256 or EdDSA access tokens.
    #[arg(long, env = "MARQUEE_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<String>,

    /// Pinned token algorithm. Defaults to HS256 with a secret and RS256 with a public key.
    #[arg(long, env = "MARQUEE_JWT_ALGORITHM", value_enum)]
    pub jwt_algorithm: Option<JwtAlgorithm>,

    /// Required `iss` claim, when set.
    #[arg(long, env = "MARQUEE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` claim, when set.
    #[arg(long, env = "MARQUEE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Clock skew tolerated when checking `exp` and `nbf`.
    #[arg(long, env = "MARQUEE_JWT_LEEWAY", default_value = "5s", value_parser = duration)]
    pub jwt_leeway: Duration,

    /// Redis URL. When set, the `redis` engine is used and nodes form a cluster; otherwise the
    /// in-process `memory` engine serves a single node.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,

    /// Postgres URL of the system of record. When set, migrations are applied at start-up.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,

    /// Connections in the Postgres pool.
    #[arg(long, env = "MARQUEE_DATABASE_POOL", default_value_t = 10)]
    pub database_pool: u32,

    /// Prefix for every Redis key and pub/sub channel, so several deployments (or tests) can
    /// share one Redis.
    #[arg(long, env = "MARQUEE_REDIS_PREFIX", default_value = "marquee")]
    pub redis_prefix: String,

    /// Messages kept per channel for resume.
    #[arg(long, env = "MARQUEE_HISTORY_SIZE", default_value_t = 1000)]
    pub history_size: usize,

    /// How long messages are kept for resume.
    #[arg(long, env = "MARQUEE_HISTORY_TTL", default_value = "5m", value_parser = duration)]
    pub history_ttl: Duration,

    /// Interval between server pings.
    #[arg(long, env = "MARQUEE_HEARTBEAT_INTERVAL", default_value = "25s", value_parser = duration)]
    pub heartbeat_interval: Duration,

    /// How long a ping may go unanswered before the connection is closed (4004).
    #[arg(long, env = "MARQUEE_HEARTBEAT_TIMEOUT", default_value = "10s", value_parser = duration)]
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
    #[arg(long, env = "MARQUEE_WRITE_TIMEOUT", default_value = "10s", value_parser = duration)]
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

    /// Time allowed for a graceful shutdown before remaining connections are dropped.
    #[arg(long, env = "MARQUEE_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub shutdown_timeout: Duration,

    /// Upper bound of the jittered reconnect delay advised to clients on shutdown.
    #[arg(long, env = "MARQUEE_RECONNECT_SPREAD", default_value = "5s", value_parser = duration)]
    pub reconnect_spread: Duration,

    /// Booking workers.
    #[command(flatten)]
    pub booking: BookingArgs,

    /// Waiting room.
    #[command(flatten)]
    pub waiting_room: WaitingRoomArgs,

    /// Payments.
    #[command(flatten)]
    pub payments: PaymentArgs,
}

/// Payment hooks.
#[derive(Debug, Clone, Args)]
pub struct PaymentArgs {
    /// Address of the internal listener, which serves the payment hooks
    /// (`POST /hooks/payments/{provider}`). Keep it off the public internet; only payment
    /// providers (or the gateway relaying their calls) need to reach it.
    #[arg(
        long,
        env = "MARQUEE_INTERNAL_LISTEN",
        default_value = "127.0.0.1:8090"
    )]
    pub internal_listen: SocketAddr,

    /// Payment providers' hook secrets, `provider:secret` pairs separated by commas. A provider
    /// may be named more than once: all its secrets are active, which is how a secret is
    /// rotated. Without one for `simulated`, each node makes up its own at start-up, which
    /// works on one node only.
    #[arg(long, env = "MARQUEE_PAYMENT_HOOK_SECRETS", hide_env_values = true,
          value_parser = hook_secrets, default_value = "")]
    pub hook_secrets: crate::payments::hook::HookSecrets,

    /// How far a hook call's signed timestamp may lie from this node's clock, either way.
    #[arg(long, env = "MARQUEE_PAYMENT_HOOK_TOLERANCE", default_value = "300s", value_parser = duration)]
    pub hook_tolerance: Duration,

    /// Which payment provider in-process workers start payments with: `simulated` (built in;
    /// calls this node's own hook) or `none` (orders wait for payment events from elsewhere).
    #[arg(long, env = "MARQUEE_PAYMENT_PROVIDER", value_enum, default_value_t = ProviderKind::Simulated)]
    pub provider: ProviderKind,

    /// How long the simulated provider takes to report a payment (and, for `processing`, to
    /// report its success after that).
    #[arg(long, env = "MARQUEE_SIMULATED_PAYMENT_DELAY", default_value = "2s", value_parser = duration)]
    pub simulated_delay: Duration,

    /// How simulated payments end, as weights: `succeeded=8,failed=1,processing=1`
    /// (`processing` reports processing first, then success).
    #[arg(
        long,
        env = "MARQUEE_SIMULATED_PAYMENT_OUTCOMES",
        default_value = "succeeded=8,failed=1,processing=1"
    )]
    pub simulated_outcomes: crate::payments::provider::OutcomeMix,
}

/// The payment providers Marquee can start payments with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    /// The built-in simulated provider.
    Simulated,
    /// None: payment events come from elsewhere.
    None,
}

fn hook_secrets(text: &str) -> Result<crate::payments::hook::HookSecrets, String> {
    crate::payments::hook::HookSecrets::parse(text)
}

/// The waiting room's durations.
#[derive(Debug, Clone, Args)]
pub struct WaitingRoomArgs {
    /// How long a buyer's place is kept after their last connection closes.
    #[arg(long, env = "MARQUEE_QUEUE_GRACE", default_value = "2m", value_parser = duration)]
    pub queue_grace: Duration,

    /// How long an admission lasts (the shopping window, and the admission token's lifetime).
    #[arg(long, env = "MARQUEE_ADMISSION_TTL", default_value = "10m", value_parser = duration)]
    pub admission_ttl: Duration,

    /// How long a buyer admitted while away has to come back before the slot goes to the next.
    #[arg(long, env = "MARQUEE_SHOW_WINDOW", default_value = "30s", value_parser = duration)]
    pub show_window: Duration,

    /// `queue.join` requests per minute allowed per account (on each node).
    #[arg(long, env = "MARQUEE_QUEUE_JOINS_PER_ACCOUNT", default_value_t = 30)]
    pub queue_joins_per_account: u32,

    /// `queue.join` requests per minute allowed per client IP address (on each node; many
    /// buyers may share one address behind a NAT, so this is far above the per-account rate).
    #[arg(long, env = "MARQUEE_QUEUE_JOINS_PER_IP", default_value_t = 600)]
    pub queue_joins_per_ip: u32,

    /// Most onsale queues one account may wait in at once.
    #[arg(long, env = "MARQUEE_QUEUES_PER_ACCOUNT", default_value_t = 3)]
    pub queues_per_account: usize,
}

impl WaitingRoomArgs {
    /// The abuse limits these arguments describe.
    pub fn limits(&self) -> crate::waiting_room::room::JoinLimits {
        crate::waiting_room::room::JoinLimits::new(
            self.queue_joins_per_account,
            self.queue_joins_per_ip,
            self.queues_per_account,
        )
    }

    /// The timing these arguments describe.
    pub fn timing(&self) -> crate::waiting_room::line::Timing {
        crate::waiting_room::line::Timing {
            grace: self.queue_grace,
            admission_ttl: self.admission_ttl,
            show_window: self.show_window,
        }
    }
}

/// How booking workers run, in `serve` (in-process) and in `worker` (a process of its own).
#[derive(Debug, Clone, Args)]
pub struct BookingArgs {
    /// In-process booking workers (`serve` only; 0 leaves commands to `marquee worker`
    /// processes). Needs a database.
    #[arg(long, env = "MARQUEE_WORKERS", default_value_t = 1)]
    pub workers: usize,

    /// Most purchase commands decided and committed in one Postgres transaction.
    #[arg(long, env = "MARQUEE_BATCH_MAX", default_value_t = 1024)]
    pub batch_max: usize,

    /// How long a worker owns an event without renewing; after a worker dies, its events move
    /// to another worker within this time.
    #[arg(long, env = "MARQUEE_LEASE_TTL", default_value = "10s", value_parser = duration)]
    pub lease_ttl: Duration,

    /// Most holds expired in one sweep.
    #[arg(long, env = "MARQUEE_SWEEP_MAX", default_value_t = 10_000)]
    pub sweep_max: usize,

    /// Fault injection for tests: abort right after the first committed batch, before
    /// acknowledging it.
    #[arg(long, env = "MARQUEE_CRASH_AFTER_COMMIT", hide = true)]
    pub crash_after_commit: bool,

    /// Key that signs and checks waiting-room admissions (HS256). Every node and worker of a
    /// deployment needs the same one. Without it, onsales that require an admission refuse
    /// every purchase command.
    #[arg(long, env = "MARQUEE_ADMISSION_SECRET", hide_env_values = true)]
    pub admission_secret: Option<Secret>,

    /// Ed25519 seed (64 hex digits) that signs tickets' QR codes. Without it, the deployment's
    /// key is made once and kept in Postgres, shared by every node and worker.
    #[arg(long, env = "MARQUEE_TICKET_KEY", hide_env_values = true)]
    pub ticket_key: Option<Secret>,

    /// How long after checkout a payment may still be processing: `processing` events extend
    /// an order's deadline up to this, and no further.
    #[arg(long, env = "MARQUEE_PAYMENT_CAP", default_value = "30m", value_parser = duration)]
    pub payment_cap: Duration,

    /// Where notifications (order paid, refunded or cancelled, ticket transferred) are POSTed,
    /// signed with `--notify-secret`. Unset: no notifications are written or sent.
    #[arg(long, env = "MARQUEE_NOTIFY_URL", requires = "notify_secret")]
    pub notify_url: Option<String>,

    /// Signs notifications (`Marquee-Signature`, as on payment hooks).
    #[arg(long, env = "MARQUEE_NOTIFY_SECRET", hide_env_values = true)]
    pub notify_secret: Option<Secret>,
}

impl BookingArgs {
    /// The worker settings these arguments describe.
    pub fn settings(&self) -> crate::booking::worker::WorkerSettings {
        crate::booking::worker::WorkerSettings {
            batch_max: self.batch_max.max(1),
            lease_ttl: self.lease_ttl.max(Duration::from_millis(300)),
            sweep_max: self.sweep_max.max(1),
            crash_after_commit: self.crash_after_commit,
            admission: self
                .admission_secret
                .as_ref()
                .map(crate::booking::admission::AdmissionKey::new),
            payment_cap: self.payment_cap,
            notify: self.notify_url.is_some(),
            ..Default::default()
        }
    }
}

/// Configuration of a worker process (`marquee worker`): it needs Postgres and Redis.
#[derive(Debug, Clone, Args)]
pub struct WorkerConfig {
    /// Postgres URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Secret,

    /// Redis URL: the command queue the hub nodes write to.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Secret,

    /// Prefix of every Redis key (the hub nodes' prefix).
    #[arg(long, env = "MARQUEE_REDIS_PREFIX", default_value = "marquee")]
    pub redis_prefix: String,

    /// Connections in the Postgres pool.
    #[arg(long, env = "MARQUEE_DATABASE_POOL", default_value_t = 10)]
    pub database_pool: u32,

    /// Name of this worker (lease holder, stream consumer). Random when unset.
    #[arg(long, env = "MARQUEE_WORKER_ID")]
    pub worker_id: Option<String>,

    /// Booking settings (`--workers` is ignored: one process is one worker).
    #[command(flatten)]
    pub booking: BookingArgs,
}

impl Config {
    /// A configuration with every default and the given HS256 secret, for tests and the demo:
    /// the memory engine and no database, whatever the environment says.
    pub fn with_secret(secret: &str) -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        let mut config = Wrapper::parse_from(["marquee"]).config;
        config.jwt_secret = Some(Secret::new(secret));
        config.redis_url = None;
        config.database_url = None;
        config
    }
}
