//! The settings of each process, composed: every part of the server owns its own clap `Args`
//! (the hub, auth, booking, the waiting room, payments, admission, ticket signing,
//! notifications) and builds its own settings from them; this module only puts them
//! together, with the few settings that belong to the process itself (where it listens, what
//! it connects to).
//!
//! Every flag is also an environment variable (`.env.example` lists them all). Durations take
//! human forms such as `25s`, `500ms` or `10m`. Only the composition root ([`crate::node`])
//! and `main` read these structs.

use crate::secret::Secret;
use crate::{admission, auth, booking, hub, notify, payments, sessions, ticket_code, waiting_room};
use clap::Args;
use std::net::SocketAddr;
use std::time::Duration;

/// Configuration of one hub node (`marquee serve`).
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address the public HTTP and WebSocket listener binds to.
    #[arg(long, env = "MARQUEE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address of the internal listener, which serves the payment hooks
    /// (`POST /hooks/payments/{provider}`). Keep it off the public internet; only payment
    /// providers (or the gateway relaying their calls) need to reach it.
    #[arg(
        long,
        env = "MARQUEE_INTERNAL_LISTEN",
        default_value = "127.0.0.1:8090"
    )]
    pub internal_listen: SocketAddr,

    /// Name of this node, reported to clients and in logs. Random when unset.
    #[arg(long, env = "MARQUEE_NODE_ID")]
    pub node_id: Option<String>,

    /// Redis URL. When set, the `redis` engine is used and nodes form a cluster; otherwise the
    /// in-process `memory` engine serves a single node.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,

    /// Prefix for every Redis key and pub/sub channel, so several deployments (or tests) can
    /// share one Redis.
    #[arg(long, env = "MARQUEE_REDIS_PREFIX", default_value = "marquee")]
    pub redis_prefix: String,

    /// Postgres URL of the system of record. When set, migrations are applied at start-up.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,

    /// Connections in the Postgres pool that clients' requests use (catalog reads, queue
    /// joins, scans, acknowledgements, snapshots).
    #[arg(long, env = "MARQUEE_DATABASE_POOL", default_value_t = 10)]
    pub database_pool: u32,

    /// Connections in the second Postgres pool, for the node's own work: booking workers,
    /// payment hooks, the outbox relay, the admission controller, notifications and pruning.
    /// Kept apart so a flood of client reads never starves a batch commit or a hook, and a
    /// slow batch never starves a client.
    #[arg(long, env = "MARQUEE_DATABASE_WORK_POOL", default_value_t = 10)]
    pub database_work_pool: u32,

    /// Whether this node relays the outbox (results and seat changes, from Postgres to the
    /// channels) as soon as rows are committed (`on`), or leaves that to `marquee worker`
    /// processes and relays only rows they left waiting 5 s (`standby`), or never (`off`:
    /// results wait if no worker runs). Set `standby` beside worker processes: a node busy
    /// with its connections relays slowly.
    #[arg(long, env = "MARQUEE_OUTBOX_RELAY", value_enum, default_value_t = crate::outbox::relay::RelayMode::On)]
    pub outbox_relay: crate::outbox::relay::RelayMode,

    /// Time allowed for a graceful shutdown before remaining connections are dropped.
    #[arg(long, env = "MARQUEE_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = crate::clock::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Connections, their limits, channel history.
    #[command(flatten)]
    pub hub: hub::http::Args,

    /// Both listeners' connection caps and deadlines.
    #[command(flatten)]
    pub listeners: crate::http::serve::Args,

    /// Access tokens.
    #[command(flatten)]
    pub auth: auth::Args,

    /// Booking workers.
    #[command(flatten)]
    pub booking: booking::Args,

    /// Waiting room.
    #[command(flatten)]
    pub waiting_room: waiting_room::Args,

    /// Payments.
    #[command(flatten)]
    pub payments: payments::Args,

    /// Admission tokens.
    #[command(flatten)]
    pub admission: admission::Args,

    /// Ticket codes.
    #[command(flatten)]
    pub tickets: ticket_code::Args,

    /// Notifications.
    #[command(flatten)]
    pub notify: notify::Args,

    /// Session records.
    #[command(flatten)]
    pub sessions: sessions::Args,
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

    /// Address of the worker's probe listener: `/health` and `/metrics` (Prometheus). Give
    /// each worker on one machine its own port (`:0` picks a free one).
    #[arg(long, env = "MARQUEE_WORKER_LISTEN", default_value = "127.0.0.1:9091")]
    pub listen: SocketAddr,

    /// What each channel keeps for resume: the worker's outbox relay publishes, so it must
    /// use the hub nodes' settings.
    #[command(flatten)]
    pub history: crate::engine::HistoryArgs,

    /// Booking settings (`--workers` is ignored: one process is one worker).
    #[command(flatten)]
    pub booking: booking::Args,

    /// Admission tokens.
    #[command(flatten)]
    pub admission: admission::Args,

    /// Ticket codes.
    #[command(flatten)]
    pub tickets: ticket_code::Args,

    /// Notifications.
    #[command(flatten)]
    pub notify: notify::Args,

    /// Payments: the provider this worker starts payments and refunds with.
    #[command(flatten)]
    pub payments: payments::Args,
}

impl Config {
    /// Refuses signing secrets shorter than [`crate::secret::MIN_SECRET_LEN`], however the
    /// configuration was made (the command line refuses them already).
    pub fn check_secrets(&self) -> anyhow::Result<()> {
        let secrets = [
            ("MARQUEE_JWT_SECRET", &self.auth.jwt_secret),
            ("MARQUEE_ADMISSION_SECRET", &self.admission.admission_secret),
            ("MARQUEE_NOTIFY_SECRET", &self.notify.notify_secret),
        ];
        for (name, secret) in secrets {
            if let Some(secret) = secret {
                secret.clone().strong(name).map_err(anyhow::Error::msg)?;
            }
        }
        Ok(())
    }

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
        config.auth.jwt_secret = Some(Secret::new(secret));
        // Tests and the demo pay through the built-in simulated provider; `serve` never does
        // unless it is named.
        config.payments.provider = crate::payments::ProviderKind::Simulated;
        config.redis_url = None;
        config.database_url = None;
        config
    }
}
