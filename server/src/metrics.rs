//! Prometheus metrics: names, handles and the exporter.
//!
//! Handles are created once and kept, so the per-message paths touch an atomic, never the
//! registry.

use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::{LazyLock, OnceLock};

/// Cached metric handles used on hot paths.
#[derive(Debug)]
pub struct Metrics {
    /// `marquee_connections`: open WebSocket connections.
    pub connections: Gauge,
    /// `marquee_subscriptions`: channel subscriptions across all connections.
    pub subscriptions: Gauge,
    /// `marquee_messages_in_total`: frames received from clients.
    pub messages_in: Counter,
    /// `marquee_messages_out_total`: frames written to clients.
    pub messages_out: Counter,
    /// `marquee_bytes_in_total`: payload bytes received.
    pub bytes_in: Counter,
    /// `marquee_bytes_out_total`: payload bytes written.
    pub bytes_out: Counter,
    /// `marquee_messages_coalesced_total`: coalescible messages dropped for a full queue
    /// (the subscriber is told to resync).
    pub coalesced: Counter,
    /// `marquee_messages_dropped_total`: other messages that did not fit a full queue (the
    /// connection is closed as a slow consumer).
    pub dropped: Counter,
    /// `marquee_slow_consumer_closes_total`.
    pub slow_consumer_closes: Counter,
    /// `marquee_rate_limited_total`: inbound messages refused by the per-connection limit.
    pub rate_limited: Counter,
    /// `marquee_connections_refused_total`: upgrades refused for capacity or connect rate.
    pub connections_refused: Counter,
    /// `marquee_connections_opened_total`: WebSocket connections opened (its rate is the
    /// connect and reconnect rate).
    pub connections_opened: Counter,
    /// `marquee_batch_commit_seconds`: how long a booking batch's transaction took, from its
    /// `begin` to its commit (batches that commit only).
    pub batch_commit: Histogram,
    /// `marquee_outbox_lag_seconds`: the age of the oldest outbox row not yet published, as the
    /// relay holding the outbox last saw it (0 when it is empty, and on nodes that do not
    /// hold it: take the largest over nodes).
    pub outbox_lag: Gauge,
    /// `marquee_payment_hook_seconds`: how long a node takes to answer a payment hook call
    /// that it recorded (verifying, recording, notifying the owner).
    pub payment_hook: Histogram,
    /// `marquee_welcome_wait_seconds`: how long new connections waited for their turn to be
    /// greeted (`MARQUEE_MAX_WELCOMING` at once).
    pub welcome_wait: Histogram,
    /// `marquee_welcomes_timed_out_total`: connections sent away ungreeted (the queue of
    /// those waiting full, or `MARQUEE_WELCOME_WAIT` run out) with a `reconnect` advice.
    pub welcomes_timed_out: Counter,
    /// `marquee_publish_to_write_seconds`: from the engine accepting a publication to its frame
    /// being flushed to a subscriber's socket (sampled once per written batch).
    pub publish_to_write: Histogram,
    /// `marquee_commands_total`: purchase commands decided by workers.
    pub commands: Counter,
    /// `marquee_command_to_commit_seconds`: from a hub accepting a command to the commit of
    /// the batch that decided it.
    pub command_to_commit: Histogram,
    /// `marquee_booking_batch_size`: commands per committed batch.
    pub batch_size: Histogram,
    /// `marquee_holds_expired_total`: holds the sweeper expired.
    pub holds_expired: Counter,
    /// `marquee_payment_hooks_total`: new payment events recorded (duplicates not counted).
    pub payment_hooks: Counter,
    /// `marquee_payment_hooks_refused_total`: hook calls refused for their signature.
    pub payment_hooks_refused: Counter,
    /// `marquee_outbox_published_total`: outbox messages the relay published.
    pub outbox_published: Counter,
    /// `marquee_seat_map_reads_total`: seat maps read from Postgres for snapshots (the rest
    /// are served from the last read while the channel has not moved).
    pub seat_map_reads: Counter,
    /// `marquee_commands_set_apart_total`: commands (and payment events) that could not be
    /// committed and were answered alone with a rejection (or marked unapplicable).
    pub commands_set_apart: Counter,
    /// `marquee_dead_letters_total`: queue entries no transaction could take, set apart in
    /// `dead_letter`.
    pub dead_letters: Counter,
    /// `marquee_session_records_total`: connection starts and ends written to
    /// `connection_session`.
    pub session_records: Counter,
    /// `marquee_session_records_dropped_total`: starts and ends not recorded because the
    /// node's queue of them was full (the database was out of reach for long).
    pub session_records_dropped: Counter,
    /// `marquee_security_events_unlogged_total`: security events counted but left out of the
    /// log by its rate limit.
    pub security_events_unlogged: Counter,
    /// `marquee_ready`: 1 while the node would answer `/ready` with 200 (its channel engine
    /// reachable, not draining), 0 otherwise; sampled at each scrape.
    pub ready: Gauge,
    /// `marquee_redis_errors_total`: Redis calls that failed or timed out (channel engine,
    /// waiting room, command queue).
    pub redis_errors: Counter,
    /// `marquee_db_timeouts_total`: database calls that found no connection in time, or lost
    /// it (the pool exhausted or the database away).
    pub db_timeouts: Counter,
}

/// An onsale's waiting room, as its admission controller last saw it.
#[derive(Debug, Clone, Copy)]
pub struct OnsaleFigures {
    /// Places waiting, pre-queue included.
    pub waiting: u64,
    /// Admitted buyers shopping now.
    pub active: u64,
    /// The most admitted buyers shopping at once.
    pub cap: u64,
    /// Whether the line admits now (live, drawn, inventory left).
    pub admitting: bool,
}

impl Metrics {
    /// Sets an onsale's gauges, on the node whose controller holds it (`None`: it no longer
    /// does, and reports 0): `marquee_onsale_waiting`, `marquee_onsale_active`,
    /// `marquee_onsale_active_cap` and `marquee_onsale_admitting`, each by `onsale`. Onsales
    /// with a waiting room are few at a time, so the label stays bounded.
    pub fn onsale(&self, onsale: &str, figures: Option<OnsaleFigures>) {
        let f = figures.unwrap_or(OnsaleFigures {
            waiting: 0,
            active: 0,
            cap: 0,
            admitting: false,
        });
        let onsale = onsale.to_owned();
        metrics::gauge!("marquee_onsale_waiting", "onsale" => onsale.clone()).set(f.waiting as f64);
        metrics::gauge!("marquee_onsale_active", "onsale" => onsale.clone()).set(f.active as f64);
        metrics::gauge!("marquee_onsale_active_cap", "onsale" => onsale.clone()).set(f.cap as f64);
        metrics::gauge!("marquee_onsale_admitting", "onsale" => onsale).set(if f.admitting {
            1.0
        } else {
            0.0
        });
    }

    /// Counts admissions (`marquee_onsale_admissions_total{onsale}`).
    pub fn admitted(&self, onsale: &str, n: u64) {
        metrics::counter!("marquee_onsale_admissions_total", "onsale" => onsale.to_owned())
            .increment(n);
    }

    /// An event's holds and orders (`marquee_holds_active{event}`,
    /// `marquee_holds_expiring{event}` within the next minute, `marquee_orders{event, status}`),
    /// counted with the oversell guard by the holder of its onsale.
    pub fn event_counts(&self, event: &str, holds: (i64, i64), orders: &[(String, i64)]) {
        let event = event.to_owned();
        metrics::gauge!("marquee_holds_active", "event" => event.clone()).set(holds.0 as f64);
        metrics::gauge!("marquee_holds_expiring", "event" => event.clone()).set(holds.1 as f64);
        for (status, n) in orders {
            metrics::gauge!("marquee_orders", "event" => event.clone(), "status" => status.clone())
                .set(*n as f64);
        }
    }

    /// The oversell guard of an event (`marquee_oversold{event}`): tickets and holds beyond
    /// what exists, recounted by the holder of its onsale. Must always be 0.
    pub fn oversold(&self, event: &str, over: i64) {
        metrics::gauge!("marquee_oversold", "event" => event.to_owned()).set(over as f64);
    }

    /// Sets the gauges of one Postgres pool (`client` or `work` on nodes, `work` on workers):
    /// `marquee_db_pool_connections{pool, state}` (`idle`, `busy`) and
    /// `marquee_db_pool_max_connections{pool}`.
    pub fn db_pool(&self, pool: &'static str, size: u32, idle: usize, max: u32) {
        let idle = idle as f64;
        metrics::gauge!("marquee_db_pool_connections", "pool" => pool, "state" => "idle").set(idle);
        metrics::gauge!("marquee_db_pool_connections", "pool" => pool, "state" => "busy")
            .set((f64::from(size) - idle).max(0.0));
        metrics::gauge!("marquee_db_pool_max_connections", "pool" => pool).set(f64::from(max));
    }

    /// `marquee_db_pool_wait_seconds{pool}`: how long a transaction or a held connection
    /// waited for its pool to hand it a connection (see `crate::db::begin`).
    pub fn db_pool_wait(&self, pool: &'static str, waited: std::time::Duration) {
        metrics::histogram!("marquee_db_pool_wait_seconds", "pool" => pool)
            .record(waited.as_secs_f64());
    }

    /// `marquee_redis_up`: 1 when the node's ping of its channel engine's Redis at the
    /// scrape succeeded, 0 when it failed. Registered at the first scrape of a node on Redis
    /// only: absent on a node on the memory engine and on workers, so no alert takes a
    /// process without Redis for one whose Redis is down.
    pub fn redis_up(&self, up: bool) {
        metrics::gauge!("marquee_redis_up").set(if up { 1.0 } else { 0.0 });
    }

    /// Counts a security event (`marquee_security_events_total{kind, reason}`); both labels
    /// come from bounded sets (see `crate::security`).
    pub fn security_event(&self, kind: &'static str, reason: &'static str) {
        metrics::counter!("marquee_security_events_total", "kind" => kind, "reason" => reason)
            .increment(1);
    }
}

/// The process-wide metric handles.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    connections: metrics::gauge!("marquee_connections"),
    subscriptions: metrics::gauge!("marquee_subscriptions"),
    messages_in: metrics::counter!("marquee_messages_in_total"),
    messages_out: metrics::counter!("marquee_messages_out_total"),
    bytes_in: metrics::counter!("marquee_bytes_in_total"),
    bytes_out: metrics::counter!("marquee_bytes_out_total"),
    coalesced: metrics::counter!("marquee_messages_coalesced_total"),
    dropped: metrics::counter!("marquee_messages_dropped_total"),
    slow_consumer_closes: metrics::counter!("marquee_slow_consumer_closes_total"),
    rate_limited: metrics::counter!("marquee_rate_limited_total"),
    connections_refused: metrics::counter!("marquee_connections_refused_total"),
    connections_opened: metrics::counter!("marquee_connections_opened_total"),
    payment_hook: metrics::histogram!("marquee_payment_hook_seconds"),
    batch_commit: metrics::histogram!("marquee_batch_commit_seconds"),
    outbox_lag: metrics::gauge!("marquee_outbox_lag_seconds"),
    welcome_wait: metrics::histogram!("marquee_welcome_wait_seconds"),
    welcomes_timed_out: metrics::counter!("marquee_welcomes_timed_out_total"),
    publish_to_write: metrics::histogram!("marquee_publish_to_write_seconds"),
    commands: metrics::counter!("marquee_commands_total"),
    command_to_commit: metrics::histogram!("marquee_command_to_commit_seconds"),
    batch_size: metrics::histogram!("marquee_booking_batch_size"),
    holds_expired: metrics::counter!("marquee_holds_expired_total"),
    payment_hooks: metrics::counter!("marquee_payment_hooks_total"),
    payment_hooks_refused: metrics::counter!("marquee_payment_hooks_refused_total"),
    outbox_published: metrics::counter!("marquee_outbox_published_total"),
    seat_map_reads: metrics::counter!("marquee_seat_map_reads_total"),
    commands_set_apart: metrics::counter!("marquee_commands_set_apart_total"),
    dead_letters: metrics::counter!("marquee_dead_letters_total"),
    session_records: metrics::counter!("marquee_session_records_total"),
    session_records_dropped: metrics::counter!("marquee_session_records_dropped_total"),
    security_events_unlogged: metrics::counter!("marquee_security_events_unlogged_total"),
    ready: metrics::gauge!("marquee_ready"),
    redis_errors: metrics::counter!("marquee_redis_errors_total"),
    db_timeouts: metrics::counter!("marquee_db_timeouts_total"),
});

/// Counts an owed effect's attempt (`marquee_effects_total`), by kind (`payment.start`,
/// `payment.refund`, `slot.finish`) and outcome (`done`, `moot`, `retried`, `given_up`).
pub(crate) fn effect(kind: &str, outcome: &'static str) {
    let kind = match kind {
        "payment.start" => "payment.start",
        "payment.refund" => "payment.refund",
        "slot.finish" => "slot.finish",
        _ => "unknown",
    };
    metrics::counter!("marquee_effects_total", "kind" => kind, "outcome" => outcome).increment(1);
}

/// Counts a refused token, by reason.
pub(crate) fn auth_failure(reason: &'static str) {
    metrics::counter!("marquee_auth_failures_total", "reason" => reason).increment(1);
}

/// Installs the Prometheus recorder once per process and returns its handle. Several nodes in
/// one process (as in tests) share it.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ],
                )
                .expect("bucket list is not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            LazyLock::force(&METRICS);
            handle
        })
        .clone()
}

/// CPU time the process has used, user and system, in seconds (from `/proc/self/stat`, in the
/// kernel's fixed 100 ticks a second).
pub(crate) fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Sets the process gauges read from `/proc` at each scrape: resident memory and CPU time.
pub(crate) fn sample_process() {
    if let Some(rss) = resident_memory_bytes() {
        metrics::gauge!("process_resident_memory_bytes").set(rss as f64);
    }
    if let Some(cpu) = cpu_seconds() {
        // Only ever grows, so `rate()` reads it as Prometheus's usual counter; exported as a
        // gauge because the recorder's counters hold whole numbers.
        metrics::gauge!("process_cpu_seconds_total").set(cpu);
    }
}

/// This process's resident set size, from `/proc/self/statm` (Linux only).
pub(crate) fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
