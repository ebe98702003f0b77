//! `marquee worker`: a booking worker in a process of its own, beside any number of hub nodes
//! on the same Postgres and Redis.

use super::tasks::Tasks;
use crate::booking::queue::{CommandQueue, RedisQueue};
use crate::config::WorkerConfig;
use crate::engine::Engine;
use crate::engine::redis::RedisEngine;
use crate::hub::Hub;
use crate::hub::registry::Registry;
use crate::outbox::relay::RelayMode;
use crate::waiting_room::line::Line;
use crate::waiting_room::line::redis::RedisLine;
use crate::{booking, db};
use anyhow::Context as _;
use std::future::Future;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Runs a booking worker process until `shutdown` completes (or one of its tasks ends, which
/// is an error naming it).
pub async fn run_worker(
    config: WorkerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // The metrics recorder first: a handle made before it exists records nothing, ever, and
    // the probe listener (which would install it) may start after the booking worker.
    crate::metrics::prometheus();
    let db = db::connect(config.database_url.expose(), config.database_pool, "work").await?;
    db::migrate(&db).await?;
    let url = config.redis_url.expose();
    let queue = CommandQueue::Redis(Arc::new(
        RedisQueue::connect(url, &config.redis_prefix)
            .await
            .context("connecting the command queue to Redis")?,
    ));
    let line = Line::redis(Arc::new(
        RedisLine::connect(url, &config.redis_prefix)
            .await
            .context("connecting to the waiting room's Redis")?,
    ));
    let mut settings = config.booking.settings();
    settings.admission = config.admission.key();
    settings.notify = config.notify.enabled();
    settings.slots = Some(Arc::new(line));
    settings.provider = config.payments.worker_provider()?;
    settings.ticket_key =
        Some(crate::ticket_code::signing_key(&db, config.tickets.ticket_key.as_ref()).await?);
    let worker = booking::worker::Worker {
        id: config
            .worker_id
            .clone()
            .unwrap_or_else(|| format!("worker-{:016x}", rand::random::<u64>())),
        db: db.clone(),
        queue,
        settings,
        effects_due: Default::default(),
    };
    tracing::info!(worker = %worker.id, "booking worker started");
    let stop = CancellationToken::new();
    let mut tasks = Tasks::default();
    let probes = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the probe listener {} (--listen)", config.listen))?;
    tracing::info!(addr = ?probes.local_addr().ok(), "serving /health and /metrics");
    let limits = crate::http::serve::ListenerLimits {
        max_connections: 64,
        header_timeout: std::time::Duration::from_secs(10),
        body_timeout: std::time::Duration::from_secs(10),
    };
    let serving = stop.clone();
    let probe_pool = db.clone();
    tasks.spawn("probe listener", async move {
        crate::http::serve::serve(
            probes,
            crate::http::worker_routes("redis", probe_pool),
            limits,
            serving.cancelled_owned(),
        )
        .await
        .map_err(anyhow::Error::from)
    });
    if let Some(sender) = config.notify.sender(&db) {
        tasks.spawn("notification sender", sender.run(stop.clone()));
    }
    tasks.spawn("booking worker", worker.run(stop.clone()));
    // The outbox relay, on the worker rather than on hub nodes busy with their connections
    // (`outbox::relay`, "Who relays"). It only publishes: its hub has no connections, and its
    // engine subscribes to nothing.
    let registry = Arc::new(Registry::default());
    let engine = RedisEngine::connect(
        url,
        &config.redis_prefix,
        config.history.limits(),
        registry.clone(),
    )
    .await
    .context("connecting the outbox relay to Redis")?;
    let hub = Hub::new(registry, Engine::Redis(Arc::new(engine)));
    tasks.spawn(
        "outbox relay",
        crate::outbox::relay::run(db.clone(), hub, RelayMode::On, stop.clone()),
    );
    let failed = tokio::select! {
        () = shutdown => None,
        Some(exit) = tasks.first_exit() => Some(exit),
    };
    stop.cancel();
    tasks.join_all().await;
    match failed {
        None => Ok(()),
        Some(exit) => Err(anyhow::anyhow!("{exit}")),
    }
}
