//! The composition root: the one place that chooses backends and builds every part of a
//! process from its settings, plugs the domains into the hub and the HTTP router, and runs the
//! long-running tasks.
//!
//! - Backends are chosen once, together ([`Backends`]): with `REDIS_URL` the channel engine,
//!   the command queue and the waiting room's line are all Redis; without it, all in-process.
//! - With `DATABASE_URL` a node runs every domain ([`Services`]); without one it only relays
//!   channels (no purchase commands, queue joins or scans).
//! - Every long-running task is joined ([`tasks`]): one that ends before shutdown ends the
//!   node, with the reason logged, and `/ready` fails from that moment.
//! - [`worker`]: `marquee worker`, a booking worker in a process of its own.
//! - [`demo`]: `marquee demo`, one node with a seeded catalog, tokens and a simulated crowd.

pub mod demo;
pub mod tasks;
pub mod worker;

use crate::auth::Verifier;
use crate::booking::Booking;
use crate::booking::queue::{CommandQueue, RedisQueue};
use crate::catalog::CatalogState;
use crate::config::Config;
use crate::engine::{Engine, HistoryLimits};
use crate::hub::http::{Admission, HubState};
use crate::hub::registry::Registry;
use crate::hub::{Hub, connection};
use crate::payments::Payments;
use crate::payments::hook::HookState;
use crate::ticket_code::TicketKey;
use crate::tickets::checkin::Checkin;
use crate::tickets::http::TicketsState;
use crate::waiting_room::WaitingRoom;
use crate::waiting_room::line::Line;
use crate::{booking, catalog, db, engine, http, metrics, outbox, tickets, waiting_room};
use anyhow::Context as _;
use marquee_protocol::ChannelKind;
use sqlx::PgPool;
use std::future::Future;
use std::sync::Arc;
use tasks::Tasks;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
pub use worker::run_worker;

/// The backends every cross-node concern sits on, chosen together.
#[derive(Debug, Clone)]
pub struct Backends {
    /// Channel offsets, history and fan-out.
    pub engine: Engine,
    /// Purchase commands and event leases.
    pub queue: CommandQueue,
    /// The waiting room's places.
    pub line: Line,
}

impl Backends {
    /// Redis for everything when `redis` (URL and key prefix) is given, in-process otherwise.
    pub async fn connect(
        redis: Option<(&str, &str)>,
        history: HistoryLimits,
        registry: Arc<Registry>,
    ) -> anyhow::Result<Self> {
        let Some((url, prefix)) = redis else {
            return Ok(Self {
                engine: Engine::Memory(Arc::new(engine::memory::MemoryEngine::new(
                    history, registry,
                ))),
                queue: CommandQueue::Memory(Arc::default()),
                line: Line::memory(Arc::default()),
            });
        };
        let engine = engine::redis::RedisEngine::connect(url, prefix, history, registry)
            .await
            .context("connecting to Redis")?;
        let queue = RedisQueue::connect(url, prefix)
            .await
            .context("connecting the command queue to Redis")?;
        let line = waiting_room::line::redis::RedisLine::connect(url, prefix)
            .await
            .context("connecting the waiting room to Redis")?;
        Ok(Self {
            engine: Engine::Redis(Arc::new(engine)),
            queue: CommandQueue::Redis(Arc::new(queue)),
            line: Line::redis(Arc::new(line)),
        })
    }
}

/// Connections of the admission controller's pool: it runs one query at a time.
pub const ADMISSION_POOL: u32 = 2;

/// Everything a node with a database runs, built together.
#[derive(Debug, Clone)]
pub struct Services {
    /// The system of record, as clients' requests reach it (reads, joins, scans, acks).
    pub db: PgPool,
    /// The system of record, for the node's own work: booking workers, payment hooks, the
    /// outbox relay, notifications, pruning. A pool apart, so a flood of client reads never
    /// makes a batch commit or a hook wait for a connection.
    pub work: PgPool,
    /// The admission controller's own [`ADMISSION_POOL`] connections. It admits when its tick
    /// ends, and a tick reads settings and inventory and records admissions: on the work pool
    /// it queued for connections behind payment hooks and the relay. In the full-size onsale
    /// with faults, callers waited 2.7 s (median) for the nodes' connections and admission
    /// came in bursts of a second's worth, seconds apart (BENCHMARKS.md, runs 42 to 45).
    pub admission: PgPool,
    /// Purchase commands and acknowledgements.
    pub booking: Booking,
    /// The waiting room.
    pub waiting_room: WaitingRoom,
    /// Payment hooks and operators' order changes.
    pub payments: Payments,
    /// Scans.
    pub checkin: Checkin,
    /// Signs tickets' codes.
    pub ticket_key: TicketKey,
}

impl Services {
    /// Builds every domain on `db` and plugs them into `hub`.
    async fn build(
        config: &Config,
        (db, work, admission): (PgPool, PgPool, PgPool),
        hub: &Hub,
        backends: &Backends,
        verifier: &Arc<Verifier>,
    ) -> anyhow::Result<Self> {
        let walls = crate::walls::Walls::new(db.clone());
        hub.register_publish_policy(crate::walls::Publishers::new(walls.clone()));
        let booking = Booking::new(db.clone(), backends.queue.clone());
        booking::requests::register(&booking, hub, &walls);
        let waiting_room = WaitingRoom::new(
            backends.line.clone(),
            db.clone(),
            config.admission.key(),
            config.waiting_room.timing(),
            config.waiting_room.limits(),
        );
        waiting_room::requests::register(&waiting_room, hub, &walls);
        let ticket_key =
            crate::ticket_code::signing_key(&db, config.tickets.ticket_key.as_ref()).await?;
        let checkin = Checkin {
            db: db.clone(),
            key: ticket_key.clone(),
        };
        tickets::requests::register(&checkin, hub, &walls);
        let payments = Payments::new(&db, &work, verifier.clone(), &config.payments);
        Ok(Self {
            db,
            work,
            admission,
            booking,
            waiting_room,
            payments,
            checkin,
            ticket_key,
        })
    }

    /// Every domain's public routes.
    fn routes(&self, verifier: &Arc<Verifier>, config: &Config) -> Vec<axum::Router> {
        vec![
            catalog::router(CatalogState {
                db: self.db.clone(),
                verifier: verifier.clone(),
                pauses: Some(Arc::new(self.waiting_room.clone())),
            }),
            tickets::http::router(TicketsState {
                checkin: self.checkin.clone(),
                verifier: verifier.clone(),
                notify: config.notify.enabled(),
            }),
            self.payments.routes(),
            waiting_room::http::routes(self.db.clone()),
            crate::analytics::routes(crate::analytics::AnalyticsState {
                db: self.db.clone(),
                verifier: verifier.clone(),
            }),
            crate::sessions::routes(crate::sessions::SessionsState {
                db: self.db.clone(),
                verifier: verifier.clone(),
            }),
            http::openapi_routes(),
        ]
    }
}

/// A hub node, built and ready to serve.
#[derive(Debug)]
pub struct Node {
    config: Config,
    hub: Hub,
    verifier: Arc<Verifier>,
    node_id: Arc<str>,
    backends: Backends,
    /// Every domain, when the node has a database.
    services: Option<Services>,
    /// Where the internal routes (payment hooks) are served, if anywhere.
    internal: Option<TcpListener>,
    /// Records connections, when the node has a database; its writer is taken by the task
    /// that writes.
    sessions: Option<(crate::sessions::Recorder, Option<crate::sessions::Writer>)>,
}

impl Node {
    /// Builds a node: verifier, backends, hub, and every domain when there is a database.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.check_secrets()?;
        let verifier = Arc::new(Verifier::from_args(&config.auth).context("configuring JWT")?);
        let registry = Arc::new(Registry::default());
        let redis = config
            .redis_url
            .as_ref()
            .map(|url| (url.expose(), config.redis_prefix.as_str()));
        let backends = Backends::connect(redis, config.hub.history(), registry.clone()).await?;
        let hub = Hub::new(registry, backends.engine.clone());
        let services = match &config.database_url {
            Some(url) => {
                let db = db::connect(url.expose(), config.database_pool, "client").await?;
                db::migrate(&db).await?;
                crate::sessions::load(&db, verifier.revocations()).await?;
                let work = db::connect(url.expose(), config.database_work_pool, "work").await?;
                let admission = db::connect(url.expose(), ADMISSION_POOL, "admission").await?;
                let pools = (db, work, admission);
                Some(Services::build(&config, pools, &hub, &backends, &verifier).await?)
            }
            None => {
                // A relay: channels only, and only those it can let through without the
                // catalog (`walls`): staff channels are refused.
                booking::requests::register_policies(&hub, None);
                waiting_room::requests::register_policies(&hub, None);
                hub.register_policy(ChannelKind::Gate, Arc::new(crate::walls::Unchecked));
                None
            }
        };
        let node_id: Arc<str> = config
            .node_id
            .clone()
            .unwrap_or_else(|| format!("hub-{:016x}", rand::random::<u64>()))
            .into();
        let sessions = services.as_ref().map(|_| {
            let (recorder, writer) = crate::sessions::recorder(node_id.clone());
            (recorder, Some(writer))
        });
        Ok(Self {
            config,
            hub,
            verifier,
            node_id,
            backends,
            services,
            internal: None,
            sessions,
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
    pub fn payment_hooks(&self) -> Option<&HookState> {
        self.services.as_ref().map(|s| &s.payments.hooks)
    }

    /// The node's hub: publish from other modules, register snapshot providers.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The Postgres pool, when the node has a database.
    pub fn db(&self) -> Option<&PgPool> {
        self.services.as_ref().map(|s| &s.db)
    }

    /// The node's booking handle, when it has a database.
    pub fn booking(&self) -> Option<&Booking> {
        self.services.as_ref().map(|s| &s.booking)
    }

    /// The node's waiting room, when it has a database.
    pub fn waiting_room(&self) -> Option<&WaitingRoom> {
        self.services.as_ref().map(|s| &s.waiting_room)
    }

    /// The node's name.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Starts the node's long-running tasks.
    fn spawn_tasks(
        &mut self,
        stop: &CancellationToken,
        internal: Option<std::net::SocketAddr>,
    ) -> Tasks {
        let mut tasks = Tasks::default();
        let Some(services) = self.services.clone() else {
            return tasks;
        };
        let config = &self.config;
        // Everything started here is the node's own work, on the pool apart from clients'.
        let db = services.work.clone();
        if let Some(sender) = config.notify.sender(&db) {
            let stop = stop.clone();
            tasks.spawn("notification sender", sender.run(stop));
        }
        tasks.spawn(
            "result pruning",
            booking::retention::run(db.clone(), config.booking.retention(), stop.clone()),
        );
        if let Some(writer) = self.sessions.as_mut().and_then(|(_, w)| w.take()) {
            // Stopped with the other background tasks, after the connections have drained,
            // so their ends are written.
            let retention = config.sessions.session_retention;
            tasks.spawn(
                "session recorder",
                crate::sessions::run(db.clone(), writer, retention, stop.clone()),
            );
        }
        tasks.spawn(
            "ended sessions",
            crate::sessions::follow(
                db.clone(),
                self.verifier.revocations().clone(),
                self.hub.clone(),
                stop.clone(),
            ),
        );
        if config.outbox_relay != outbox::relay::RelayMode::Off {
            let (hub, stop_relay) = (self.hub.clone(), stop.clone());
            tasks.spawn(
                "outbox relay",
                outbox::relay::run(db.clone(), hub, config.outbox_relay, stop_relay),
            );
        }
        let provider = services.payments.provider(internal);
        match &provider {
            Some(p) if config.booking.workers > 0 => {
                tracing::warn!(
                    provider = p.name(),
                    "payments are started with a provider that takes no money"
                )
            }
            _ => tracing::info!(provider = ?config.payments.provider, "payment provider"),
        }
        for i in 0..config.booking.workers {
            let mut settings = config.booking.settings();
            settings.admission = config.admission.key();
            settings.notify = config.notify.enabled();
            settings.slots = Some(Arc::new(self.backends.line.clone()));
            settings.ticket_key = Some(services.ticket_key.clone());
            settings.provider.clone_from(&provider);
            let worker = booking::worker::Worker {
                id: format!("{}-w{i}", self.node_id),
                db: db.clone(),
                queue: self.backends.queue.clone(),
                settings,
                effects_due: Default::default(),
            };
            tasks.spawn("booking worker", worker.run(stop.clone()));
        }
        let room = services.waiting_room.clone();
        if let Some(writer) = room.take_join_records(stop.clone()) {
            tasks.spawn("join record", writer);
        }
        let controller = waiting_room::controller::Controller {
            id: self.node_id.to_string(),
            db: services.admission.clone(),
            line: room.line().clone(),
            hub: self.hub.clone(),
            timing: *room.timing(),
            purchases: Some(Arc::new(services.booking.clone())),
            key: config.admission.key(),
        };
        tasks.spawn("admission controller", controller.run(stop.clone()));
        tasks.spawn("waiting room heartbeat", room.clone().beat(stop.clone()));
        tasks.spawn("waiting room", room.run(stop.clone()));
        tasks
    }

    /// Serves until `shutdown` completes (or a task the node needs ends), then drains: every
    /// client is advised to reconnect and closed with 1012, within the configured deadline.
    /// Returns an error naming the task if one ended first.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let prometheus = metrics::prometheus();
        // Cancelled when the node starts draining: connections are advised to reconnect and
        // `/ready` fails.
        let draining = CancellationToken::new();
        // Cancelled once connections have drained: background tasks stop.
        let background = CancellationToken::new();
        let internal = self.internal.take();
        let internal_addr = internal.as_ref().and_then(|l| l.local_addr().ok());
        let mut tasks = self.spawn_tasks(&background, internal_addr);
        let tracker = TaskTracker::new();
        let hub_state = HubState {
            hub: self.hub.clone(),
            verifier: self.verifier.clone(),
            connection: connection::Context {
                hub: self.hub.clone(),
                verifier: self.verifier.clone(),
                limits: Arc::new(self.config.hub.limits()),
                shutdown: draining.clone(),
                node_id: self.node_id.clone(),
                sessions: self.sessions.as_ref().map(|(recorder, _)| {
                    Arc::new(recorder.clone()) as Arc<dyn crate::hub::ConnectionLog>
                }),
            },
            admission: Arc::new(Admission::new(self.config.hub.admission())),
            sockets: self.config.hub.sockets(),
            tracker: tracker.clone(),
        };
        if let Some(internal) = internal {
            // Operators' publishing, and the payment hooks when there is a database.
            let mut routes = crate::hub::http::internal_routes(hub_state.clone())
                .merge(http::internal_openapi_routes());
            if let Some(services) = &self.services {
                routes = routes.merge(services.payments.hook_routes());
            }
            tracing::info!(addr = ?internal_addr, "serving the internal routes");
            let (stop, limits) = (background.clone(), self.config.listeners.internal());
            tasks.spawn("internal listener", async move {
                http::serve::serve(internal, routes, limits, stop.cancelled_owned())
                    .await
                    .map_err(anyhow::Error::from)
            });
        }
        let domains = self
            .services
            .as_ref()
            .map(|s| s.routes(&self.verifier, &self.config))
            .unwrap_or_default();
        let app = http::router(
            crate::hub::http::routes(hub_state),
            http::Probes {
                hub: self.hub.clone(),
                prometheus,
                draining: draining.clone(),
                pools: self
                    .services
                    .as_ref()
                    .map(|s| {
                        vec![
                            ("client", s.db.clone()),
                            ("work", s.work.clone()),
                            ("admission", s.admission.clone()),
                        ]
                    })
                    .unwrap_or_default(),
            },
            domains,
        );
        tracing::info!(
            addr = ?listener.local_addr().ok(),
            node = %self.node_id,
            engine = self.hub.engine().name(),
            "serving"
        );
        let server = tokio::spawn(http::serve::serve(
            listener,
            app,
            self.config.listeners.public(),
            draining.clone().cancelled_owned(),
        ));
        // Whatever comes first: the shutdown asked for, or a task that ended.
        let failed = tokio::select! {
            () = shutdown => None,
            Some(exit) = tasks.first_exit() => Some(exit),
        };
        match &failed {
            None => tracing::info!("shutting down: advising clients to reconnect"),
            Some(exit) => tracing::error!(reason = %exit, "a task the node needs ended; draining"),
        }
        draining.cancel();
        tracker.close();
        let deadline = self.config.shutdown_timeout;
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
        tasks.join_all().await;
        match failed {
            None => Ok(()),
            Some(exit) => Err(anyhow::anyhow!("{exit}")),
        }
    }
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
