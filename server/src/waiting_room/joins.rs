//! The record of joins: every new place a node hands out, written to `queue_join` in batches,
//! for the sales funnel (joined → admitted → held → paid) and the time buyers spent in the
//! queue (`crate::analytics`). The line in Redis is what queues; this is its durable record,
//! like `admission` is of admissions.
//!
//! A join never waits for it: the room hands the record to a bounded queue and [`run`] writes
//! what gathered once a second, in one statement. If the database is away long enough to fill
//! the queue, records are dropped and counted (`marquee_join_records_dropped_total`); the
//! funnel then undercounts joins, and nobody loses a place.

use crate::clock::now_ms;
use sqlx::PgPool;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often gathered records are written.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Records a node keeps waiting before it drops new ones.
const QUEUE: usize = 100_000;

/// Rows per statement.
const BATCH: usize = 5_000;

/// A new place.
#[derive(Debug)]
pub(crate) struct JoinRecord {
    pub(crate) onsale: Uuid,
    pub(crate) tenant: Uuid,
    pub(crate) user: String,
    pub(crate) place: String,
    pub(crate) at_ms: u64,
}

/// Where the room hands its records.
#[derive(Debug, Clone)]
pub(crate) struct JoinLog {
    tx: mpsc::Sender<JoinRecord>,
}

/// A join log and the receiver [`run`] writes from.
pub(crate) fn log() -> (JoinLog, mpsc::Receiver<JoinRecord>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (JoinLog { tx }, rx)
}

impl JoinLog {
    /// Records a new place of `user` (never waits).
    pub(crate) fn joined(&self, onsale: Uuid, tenant: Uuid, user: &str, place: &str) {
        let record = JoinRecord {
            onsale,
            tenant,
            user: user.to_owned(),
            place: place.to_owned(),
            at_ms: now_ms(),
        };
        if self.tx.try_send(record).is_err() {
            metrics::counter!("marquee_join_records_dropped_total").increment(1);
        }
    }
}

/// Writes the gathered records every [`FLUSH_EVERY`] until `stop`, then what is left. A
/// failed write is logged and tried again with the next.
pub(crate) async fn run(
    db: PgPool,
    mut rx: mpsc::Receiver<JoinRecord>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending = Vec::new();
    loop {
        let stopping = tokio::select! {
            () = stop.cancelled() => true,
            _ = tick.tick() => false,
        };
        while pending.len() < QUEUE {
            match rx.try_recv() {
                Ok(record) => pending.push(record),
                Err(_) => break,
            }
        }
        match write(&db, &pending).await {
            Ok(()) => pending.clear(),
            Err(e) => tracing::warn!(error = %e, records = pending.len(), "cannot record joins"),
        }
        if stopping {
            return Ok(());
        }
    }
}

async fn write(db: &PgPool, records: &[JoinRecord]) -> Result<(), sqlx::Error> {
    for chunk in records.chunks(BATCH) {
        let onsales: Vec<Uuid> = chunk.iter().map(|r| r.onsale).collect();
        let tenants: Vec<Uuid> = chunk.iter().map(|r| r.tenant).collect();
        let users: Vec<&str> = chunk.iter().map(|r| r.user.as_str()).collect();
        let places: Vec<&str> = chunk.iter().map(|r| r.place.as_str()).collect();
        let ats: Vec<f64> = chunk.iter().map(|r| r.at_ms as f64 / 1000.0).collect();
        sqlx::query(
            "insert into queue_join (onsale_id, tenant_id, user_id, place_id, joined_at)
             select o, t, u, p, to_timestamp(a)
             from unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::float8[])
                  as x(o, t, u, p, a)
             on conflict (onsale_id, place_id) do nothing",
        )
        .bind(&onsales)
        .bind(&tenants)
        .bind(&users)
        .bind(&places)
        .bind(&ats)
        .execute(db)
        .await?;
    }
    Ok(())
}
