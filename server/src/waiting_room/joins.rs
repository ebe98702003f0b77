//! The record of joins: every new place a node hands out, written to `queue_join` in batches,
//! for the sales funnel (joined → admitted → held → paid) and the time buyers spent in the
//! queue (`crate::analytics`). The line in Redis is what queues; this is its durable record,
//! like `admission` is of admissions.
//!
//! A join never waits for it: the room hands the record to a bounded queue and [`run`] writes
//! what gathered once a second, with one `COPY` per few thousand. If the database is away long
//! enough to fill the queue, records are dropped and counted
//! (`marquee_join_records_dropped_total`); the funnel then undercounts joins, and nobody loses
//! a place.

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
        match copy(db, chunk).await {
            // Rows of this chunk are in already: a write that failed after the database took
            // it (the connection lost before its answer). The insert skips them.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => insert(db, chunk).await?,
            done => done?,
        }
    }
    Ok(())
}

/// Writes the records with `COPY`: 40,000 rows took the database 124 ms, against 226 ms with
/// [`insert`]. At 40,000 joins a second the insert was 7 to 8 % of a 2-core machine's time,
/// taken from the node and Redis (`benches/waiting_room.rs`, BENCHMARKS.md). All or nothing,
/// like a statement.
async fn copy(db: &PgPool, records: &[JoinRecord]) -> Result<(), sqlx::Error> {
    use sqlx::postgres::PgPoolCopyExt;
    use std::io::Write;
    let mut data = Vec::with_capacity(records.len() * 160);
    for r in records {
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(r.at_ms) * 1_000_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let at = at
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| sqlx::Error::Encode(e.into()))?;
        write!(data, "{}\t{}\t", r.onsale, r.tenant).expect("writes to a vector");
        copy_text(&mut data, &r.user);
        data.push(b'\t');
        copy_text(&mut data, &r.place);
        data.push(b'\t');
        data.extend_from_slice(at.as_bytes());
        data.push(b'\n');
    }
    let mut copy = db
        .copy_in_raw(
            "copy queue_join (onsale_id, tenant_id, user_id, place_id, joined_at) from stdin",
        )
        .await?;
    copy.send(data).await?;
    copy.finish().await.map(drop)
}

/// A value in `COPY`'s text format: its separators and escape character escaped.
fn copy_text(out: &mut Vec<u8>, value: &str) {
    for b in value.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// Writes the records with an insert that skips those already in.
async fn insert(db: &PgPool, records: &[JoinRecord]) -> Result<(), sqlx::Error> {
    let onsales: Vec<Uuid> = records.iter().map(|r| r.onsale).collect();
    let tenants: Vec<Uuid> = records.iter().map(|r| r.tenant).collect();
    let users: Vec<&str> = records.iter().map(|r| r.user.as_str()).collect();
    let places: Vec<&str> = records.iter().map(|r| r.place.as_str()).collect();
    let ats: Vec<f64> = records.iter().map(|r| r.at_ms as f64 / 1000.0).collect();
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{JoinRecord, copy_text, write};
    use sqlx::PgPool;
    use uuid::Uuid;

    fn record(onsale: Uuid, tenant: Uuid, user: &str, place: &str) -> JoinRecord {
        JoinRecord {
            onsale,
            tenant,
            user: user.to_owned(),
            place: place.to_owned(),
            at_ms: 1_796_000_000_123,
        }
    }

    #[sqlx::test(migrator = "crate::db::MIGRATOR")]
    async fn records_are_copied_once_even_when_written_again(pool: PgPool) {
        let (onsale, tenant) = (Uuid::new_v4(), Uuid::new_v4());
        let first = [
            record(onsale, tenant, "ana", "p1"),
            record(onsale, tenant, "tab\there\\and\nthere", "p2"),
        ];
        write(&pool, &first).await.unwrap();
        // A write the database took but whose answer was lost is made again, with what came
        // after it: the copy fails on the rows already in and the insert skips them.
        let again = [
            record(onsale, tenant, "ana", "p1"),
            record(onsale, tenant, "tab\there\\and\nthere", "p2"),
            record(onsale, tenant, "ben", "p3"),
        ];
        write(&pool, &again).await.unwrap();
        let rows: Vec<(String, String, f64)> = sqlx::query_as(
            "select user_id, place_id, extract(epoch from joined_at)::float8 from queue_join
             where onsale_id = $1 and tenant_id = $2 order by place_id",
        )
        .bind(onsale)
        .bind(tenant)
        .fetch_all(&pool)
        .await
        .unwrap();
        let expected = [
            ("ana", "p1"),
            ("tab\there\\and\nthere", "p2"),
            ("ben", "p3"),
        ];
        assert_eq!(rows.len(), expected.len(), "{rows:?}");
        for ((user, place, at), (want_user, want_place)) in rows.iter().zip(expected) {
            assert_eq!((user.as_str(), place.as_str()), (want_user, want_place));
            assert!((at - 1_796_000_000.123).abs() < 1e-6, "joined at {at}");
        }
    }

    #[test]
    fn copy_text_escapes_what_copy_reads_as_syntax() {
        let mut out = Vec::new();
        copy_text(&mut out, "a\tb\nc\rd\\e f");
        assert_eq!(out, b"a\\tb\\nc\\rd\\\\e f");
    }
}
