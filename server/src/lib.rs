//! Marquee hub node: the server behind `marquee serve`.
//!
//! Buyers hold one authenticated WebSocket to a node. Over it they subscribe to channels
//! (live seat maps, queue counts, their private inbox) and resume them without loss after any
//! reconnect. Nodes share channels through an engine: in-process for one node, Redis for many.
//!
//! # Layout
//!
//! - [`config`]: the clap `Config` of a node (every flag is also an environment variable).
//! - [`auth`]: JWT verification with a pinned algorithm; the caller's [`auth::Identity`].
//! - [`booking`]: the booking engine: purchase commands, the command queue, workers that own
//!   events and commit in batches, holds and their sweeper, the outbox relay, the live seat
//!   map and durable results.
//! - [`catalog`]: the HTTP catalog: operators' admin API, public listing and search, the seat
//!   map's layout spec, the OpenAPI document, and the demo catalog.
//! - [`engine`]: the [`engine::ChannelEngine`] trait and its `memory` and `redis`
//!   implementations: offsets, bounded history, cross-node fan-out.
//! - [`hub`]: local subscriptions, the subscribe-and-resume algorithm, snapshot providers, the
//!   publish API for other modules, and the per-connection task ([`hub::connection`]).
//! - [`waiting_room`]: the virtual waiting room: places in line, live positions, the
//!   admission controller, the verifiable pre-queue shuffle.
//! - [`api`]: HTTP routes: `/ws`, `/health`, `/ready`, `/metrics`, `/internal/publish`.
//! - [`db`]: the Postgres pool and the schema migrations in `migrations/`.
//! - [`metrics`]: metric names and the Prometheus exporter.
//! - [`demo`]: `marquee demo`, a single node with ready-made tokens; [`embedded_pg`] gives it
//!   a private PostgreSQL when no `DATABASE_URL` is set.
//!
//! [`Node::build`] wires these together; [`Node::serve`] runs them on a listener until a
//! shutdown future completes, so tests bind port 0 and pass their own shutdown.

pub mod api;
pub mod auth;
pub mod booking;
pub mod catalog;
pub mod config;
pub mod db;
pub mod demo;
pub mod embedded_pg;
pub mod engine;
pub mod hub;
pub mod metrics;
pub mod notify;
pub mod outgoing;
pub mod payments;
pub mod tickets;
pub mod waiting_room;

use anyhow::Context as _;
use api::{Admission, AppState, SocketSettings};
use auth::Verifier;
pub use config::Config;
use engine::{Engine, HistoryLimits};
use hub::registry::Registry;
use hub::{Hub, connection};
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A hub node, built and ready to serve.
#[derive(Debug)]
pub struct Node {
    state: AppState,
    shutdown: CancellationToken,
    config: Config,
    /// The system of record, when `DATABASE_URL` is set (migrated at start-up).
    db: Option<sqlx::PgPool>,
    /// Purchase commands, when the node has a database.
    booking: Option<booking::Booking>,
    /// The waiting room, when the node has a database.
    waiting_room: Option<waiting_room::WaitingRoom>,
    /// The payment hooks, when the node has a database.
    hooks: Option<payments::hook::HookState>,
    /// Where the internal routes (payment hooks) are served, if anywhere.
    internal: Option<TcpListener>,
    /// Signs tickets' QR codes, when the node has a database.
    ticket_key: Option<tickets::qr::TicketKey>,
}

impl Node {
    /// Builds a node: verifier, engine (memory, or Redis when `redis_url` is set) and hub.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let prometheus = metrics::prometheus();
        let db = match &config.database_url {
            Some(url) => {
                let pool = db::connect(url.expose(), config.database_pool).await?;
                db::migrate(&pool).await?;
                Some(pool)
            }
            None => None,
        };
        let verifier = Arc::new(Verifier::from_config(&config).context("configuring JWT")?);
        let registry = Arc::new(Registry::default());
        let limits = HistoryLimits {
            size: config.history_size,
            ttl: config.history_ttl,
        };
        let engine = match &config.redis_url {
            Some(url) => Engine::Redis(Arc::new(
                engine::redis::RedisEngine::connect(
                    url.expose(),
                    &config.redis_prefix,
                    limits,
                    registry.clone(),
                )
                .await
                .context("connecting to Redis")?,
            )),
            None => Engine::Memory(Arc::new(engine::memory::MemoryEngine::new(
                limits,
                registry.clone(),
            ))),
        };
        let hub = Hub::new(registry, engine);
        let queue = match &config.redis_url {
            Some(url) => booking::queue::CommandQueue::Redis(Arc::new(
                booking::queue::RedisQueue::connect(url.expose(), &config.redis_prefix)
                    .await
                    .context("connecting the command queue to Redis")?,
            )),
            None => booking::queue::CommandQueue::Memory(Arc::default()),
        };
        let booking = db.as_ref().map(|db| {
            hub.register_snapshot(
                marquee_protocol::ChannelKind::Seats,
                Arc::new(booking::live::SeatSnapshots {
                    db: db.clone(),
                    hub: hub.clone(),
                }),
            );
            hub.register_snapshot(
                marquee_protocol::ChannelKind::Inbox,
                Arc::new(booking::live::InboxSnapshots {
                    db: db.clone(),
                    hub: hub.clone(),
                }),
            );
            booking::Booking::new(db.clone(), queue)
        });
        let waiting_room = match &db {
            Some(db) => {
                let line = match &config.redis_url {
                    Some(url) => waiting_room::line::Line::Redis(Arc::new(
                        waiting_room::line_redis::RedisLine::connect(
                            url.expose(),
                            &config.redis_prefix,
                        )
                        .await
                        .context("connecting the waiting room to Redis")?,
                    )),
                    None => waiting_room::line::Line::Memory(Arc::default()),
                };
                Some(waiting_room::WaitingRoom::new(
                    line,
                    db.clone(),
                    config
                        .booking
                        .admission_secret
                        .as_ref()
                        .map(booking::admission::AdmissionKey::new),
                    config.waiting_room.timing(),
                    config.waiting_room.limits(),
                ))
            }
            None => None,
        };
        let ticket_key = match &db {
            Some(db) => Some(tickets::signing_key(db, config.booking.ticket_key.as_ref()).await?),
            None => None,
        };
        let checkin =
            db.as_ref()
                .zip(ticket_key.clone())
                .map(|(db, key)| tickets::checkin::Checkin {
                    db: db.clone(),
                    key,
                });
        let hooks = db.as_ref().map(|db| {
            let mut secrets = config.payments.hook_secrets.clone();
            if secrets.of("simulated").is_none() {
                // The simulated provider runs in this process and signs with this secret, so
                // only this node accepts its calls: enough for one node and the demo.
                let made_up: [u8; 32] = rand::random();
                secrets.add("simulated", config::Secret::new(hex::encode(made_up)));
            }
            payments::hook::HookState {
                db: db.clone(),
                secrets: Arc::new(secrets),
                tolerance_secs: config.payments.hook_tolerance.as_secs(),
            }
        });
        let node_id: Arc<str> = config
            .node_id
            .clone()
            .unwrap_or_else(|| format!("hub-{:016x}", rand::random::<u64>()))
            .into();
        let shutdown = CancellationToken::new();
        let nonzero = |n: u32| NonZeroU32::new(n.max(1)).expect("max(1) is non-zero");
        let connection = connection::Context {
            hub: hub.clone(),
            verifier: verifier.clone(),
            limits: Arc::new(connection::Limits {
                outbound_queue: config.outbound_queue,
                heartbeat_interval: config.heartbeat_interval,
                heartbeat_timeout: config.heartbeat_timeout,
                inbound_rate: nonzero(config.inbound_rate),
                inbound_burst: nonzero(config.inbound_burst),
                abuse_limit: config.abuse_limit,
                max_subscriptions: config.max_subscriptions,
                write_timeout: config.write_timeout,
                reconnect_spread: config.reconnect_spread,
            }),
            shutdown: shutdown.clone(),
            node_id,
            booking: booking.clone(),
            waiting_room: waiting_room.clone(),
            checkin: checkin.clone(),
        };
        let tickets = checkin.clone().map(|checkin| tickets::http::TicketsState {
            checkin,
            verifier: verifier.clone(),
            notify: config.booking.notify_url.is_some(),
        });
        let catalog = db.as_ref().map(|db| catalog::CatalogState {
            db: db.clone(),
            verifier: verifier.clone(),
            hub: hub.clone(),
        });
        let state = AppState {
            hub,
            verifier,
            connection,
            admission: Arc::new(Admission::new(
                config.max_connections,
                config.connect_rate,
                config.connect_burst,
            )),
            sockets: SocketSettings {
                read_buffer: config.ws_read_buffer,
                write_buffer: config.ws_write_buffer,
                max_message_size: config.max_message_size,
            },
            prometheus,
            tracker: TaskTracker::new(),
            catalog,
            tickets,
        };
        Ok(Self {
            state,
            shutdown,
            config,
            db,
            booking,
            waiting_room,
            hooks,
            internal: None,
            ticket_key,
        })
    }

    /// Serves the internal routes (payment hooks) on `listener` too, from [`Node::serve`] on.
    /// Without it they are not served at all.
    #[must_use]
    pub fn with_internal_listener(mut self, listener: TcpListener) -> Self {
        self.internal = Some(listener);
        self
    }

    /// The payment hooks' settings (secrets included), when the node has a database.
    pub fn payment_hooks(&self) -> Option<&payments::hook::HookState> {
        self.hooks.as_ref()
    }

    /// The node's hub: publish from other modules, register snapshot providers.
    pub fn hub(&self) -> &Hub {
        &self.state.hub
    }

    /// The Postgres pool, when the node has a database.
    pub fn db(&self) -> Option<&sqlx::PgPool> {
        self.db.as_ref()
    }

    /// The node's booking handle, when it has a database.
    pub fn booking(&self) -> Option<&booking::Booking> {
        self.booking.as_ref()
    }

    /// The node's waiting room, when it has a database.
    pub fn waiting_room(&self) -> Option<&waiting_room::WaitingRoom> {
        self.waiting_room.as_ref()
    }

    /// The node's name.
    pub fn node_id(&self) -> &str {
        &self.state.connection.node_id
    }

    /// Serves until `shutdown` completes, then drains: every client is advised to reconnect
    /// and closed with 1012, within the configured deadline.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        use axum::serve::ListenerExt;
        let Self {
            state,
            shutdown: cancel,
            config,
            db,
            booking,
            waiting_room,
            hooks,
            internal,
            ticket_key,
        } = self;
        let tracker = state.tracker.clone();
        let local = listener.local_addr().ok();
        tracing::info!(
            addr = ?local,
            node = %state.connection.node_id,
            engine = state.hub.engine().name(),
            "serving"
        );
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let background = CancellationToken::new();
        let mut siblings = tokio::task::JoinSet::new();
        let db_for_room = db.clone();
        if let Some(sender) = notification_sender(db.as_ref(), &config.booking) {
            let stop = background.clone();
            siblings.spawn(async move { ("notification sender", sender.run(stop).await) });
        }
        let provider = simulated_provider(&config, hooks.as_ref(), internal.as_ref());
        if let (Some(db), Some(booking)) = (db, booking) {
            let (hub, stop) = (state.hub.clone(), background.clone());
            let relay_db = db.clone();
            siblings.spawn(async move {
                (
                    "outbox relay",
                    booking::relay::run(relay_db, hub, stop).await,
                )
            });
            for i in 0..config.booking.workers {
                let mut settings = config.booking.settings();
                settings.line = waiting_room.as_ref().map(|room| room.line().clone());
                settings.ticket_key.clone_from(&ticket_key);
                settings.provider.clone_from(&provider);
                let worker = booking::worker::Worker {
                    id: format!("{}-w{i}", state.connection.node_id),
                    db: db.clone(),
                    queue: booking.queue().clone(),
                    settings,
                };
                let stop = background.clone();
                siblings.spawn(async move { ("booking worker", worker.run(stop).await) });
            }
        }
        if let (Some(db), Some(room)) = (db_for_room, waiting_room) {
            let controller = waiting_room::controller::Controller {
                id: state.connection.node_id.to_string(),
                db,
                line: room.line().clone(),
                hub: state.hub.clone(),
                timing: *room.timing(),
                queue: state.connection.booking.as_ref().map(|b| b.queue().clone()),
                key: config
                    .booking
                    .admission_secret
                    .as_ref()
                    .map(booking::admission::AdmissionKey::new),
            };
            let stop = background.clone();
            siblings.spawn(async move { ("admission controller", controller.run(stop).await) });
            let stop = background.clone();
            siblings.spawn(async move { ("waiting room", room.run(stop).await) });
        }
        if let (Some(hooks), Some(internal)) = (hooks, internal) {
            tracing::info!(addr = ?internal.local_addr().ok(), "serving payment hooks");
            let stop = background.clone();
            siblings.spawn(async move {
                let served = axum::serve(internal, payments::hook::router(hooks))
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                ("internal listener", served.map_err(anyhow::Error::from))
            });
        }
        tokio::spawn(async move {
            while let Some(done) = siblings.join_next().await {
                match done {
                    Ok((name, Ok(()))) => tracing::info!(task = name, "stopped"),
                    Ok((name, Err(e))) => {
                        tracing::error!(task = name, error = format!("{e:#}"), "failed")
                    }
                    Err(e) => tracing::error!(error = %e, "background task panicked"),
                }
            }
        });
        let app = api::router(state);
        let stop = cancel.clone();
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: advising clients to reconnect");
            stop.cancel();
        });
        let deadline = config.shutdown_timeout;
        let server = tokio::spawn(async move { server.await });
        cancel.cancelled().await;
        tracker.close();
        let drained = tokio::time::timeout(deadline, async {
            tracker.wait().await;
            let _ = server.await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                ?deadline,
                "shutdown deadline passed with connections still open"
            );
        }
        background.cancel();
        Ok(())
    }
}

/// The simulated payment provider of an in-process worker: it calls this node's own internal
/// listener, signing with the newest `simulated` hook secret. `None` without an internal
/// listener (nothing would receive its calls).
fn simulated_provider(
    config: &Config,
    hooks: Option<&payments::hook::HookState>,
    internal: Option<&TcpListener>,
) -> Option<Arc<dyn payments::provider::PaymentProvider>> {
    if config.payments.provider != config::ProviderKind::Simulated {
        return None;
    }
    let mut addr = internal?.local_addr().ok()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let secret = hooks?.secrets.of("simulated")?.last()?.clone();
    Some(Arc::new(payments::provider::Simulated::new(
        format!("http://{addr}/hooks/payments/simulated"),
        secret,
        config.payments.simulated_delay,
        config.payments.simulated_outcomes,
    )))
}

/// The notification sender, when notifications are configured and there is a database.
fn notification_sender(
    db: Option<&sqlx::PgPool>,
    booking: &config::BookingArgs,
) -> Option<notify::Sender> {
    Some(notify::Sender::new(
        db?.clone(),
        booking.notify_url.clone()?,
        booking.notify_secret.clone()?,
    ))
}

/// Runs a booking worker process (`marquee worker`) until `shutdown` completes.
pub async fn run_worker(
    config: config::WorkerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let db = db::connect(config.database_url.expose(), config.database_pool).await?;
    db::migrate(&db).await?;
    let queue = booking::queue::CommandQueue::Redis(Arc::new(
        booking::queue::RedisQueue::connect(config.redis_url.expose(), &config.redis_prefix)
            .await
            .context("connecting the command queue to Redis")?,
    ));
    let mut settings = config.booking.settings();
    settings.ticket_key =
        Some(tickets::signing_key(&db, config.booking.ticket_key.as_ref()).await?);
    settings.line = Some(waiting_room::line::Line::Redis(Arc::new(
        waiting_room::line_redis::RedisLine::connect(
            config.redis_url.expose(),
            &config.redis_prefix,
        )
        .await
        .context("connecting to the waiting room's Redis")?,
    )));
    let worker = booking::worker::Worker {
        id: config
            .worker_id
            .clone()
            .unwrap_or_else(|| format!("worker-{:016x}", rand::random::<u64>())),
        db,
        queue,
        settings,
    };
    tracing::info!(worker = %worker.id, "booking worker started");
    let cancel = CancellationToken::new();
    if let Some(sender) = notification_sender(Some(&worker.db), &config.booking) {
        let stop = cancel.clone();
        tokio::spawn(async move {
            if let Err(e) = sender.run(stop).await {
                tracing::error!(error = format!("{e:#}"), "notification sender failed");
            }
        });
    }
    let stop = cancel.clone();
    tokio::spawn(async move {
        shutdown.await;
        stop.cancel();
    });
    worker.run(cancel).await
}

/// Builds a node and serves it until `shutdown` completes.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Node::build(config).await?.serve(listener, shutdown).await
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
