//! Snapshot providers that make the booking engine's channels resumable from Postgres:
//!
//! - `seats:{event}`: the whole map packed two bits per seat ([`SeatSnapshot`]) plus general
//!   admission availability, at an inventory version `v` that matches the channel offset it is
//!   returned with, so snapshot + later deltas never overlap or leave a gap.
//! - `inbox:{tenant}/{user}`: every result and order update the buyer has not acknowledged
//!   ([`InboxSnapshot`]).
//!   This is how results survive a lost channel history (a Redis flush, a node loss): a client
//!   that cannot resume its inbox gets them again from the database.
//!
//! # Why the seat snapshot lines up with the stream
//!
//! Deltas are published by the outbox relay only after their batch committed, in version
//! order, and a row leaves the outbox only after it was published. So once the snapshot's
//! transaction sees no outbox row for the event, every delta up to its version `V` has been
//! published. Reading the channel's position afterwards gives offset `X`; the message at `X`
//! (if any) carries `v <= V` unless a newer batch slipped in between the two reads, in which
//! case the provider simply reads again. Every message after `X` then carries `v > V`.
//!
//! # One read per version
//!
//! A snapshot stays true for as long as the channel has not moved past its position: nothing
//! after it has been published. So each event's last snapshot is kept with its position, and
//! a subscriber who comes while the channel still stands there is served it without touching
//! Postgres; at most one read of an event's map runs at a time, and those who arrive during
//! it take its result. A crowd subscribing at the start of an onsale costs one read of the
//! map per published version, not one per subscriber.

use crate::engine::ChannelEngine;
use crate::engine::Engine;
use crate::hub::{HubError, SnapshotProvider};
use base64::Engine as _;
use futures_util::future::BoxFuture;
use marquee_protocol::booking::{
    GaAvailability, InboxMessage, InboxSnapshot, SeatSnapshot, SeatState, pack_seat_states,
};
use marquee_protocol::{Channel, StreamPosition};
use serde_json::Value;
use sqlx::{PgPool, Row as _};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// Most pending results an inbox snapshot carries (the oldest first).
pub const MAX_PENDING_RESULTS: i64 = 1000;

/// How often a seat snapshot waits for the relay before giving up.
const SNAPSHOT_ATTEMPTS: u32 = 200;

/// Most events whose last snapshot a node keeps; past it, the kept ones are forgotten (and
/// read again when next asked for). Only events that exist are kept.
const MAX_KEPT_MAPS: usize = 4096;

fn db_error(e: &sqlx::Error) -> HubError {
    HubError::Snapshot(format!("database: {e}"))
}

/// The live seat map's snapshots.
#[derive(Debug, Clone)]
pub struct SeatSnapshots {
    /// The system of record.
    pub db: PgPool,
    /// The engine that carries the channel. Not the hub: the hub holds its providers, and a
    /// provider holding the hub would keep both (and the pool) alive forever.
    pub engine: Engine,
    /// Each event's last snapshot, served again while the channel has not moved.
    kept: Arc<Mutex<HashMap<Uuid, Arc<KeptMap>>>>,
    /// Maps read from Postgres so far (what the keeping saves is the rest).
    reads: Arc<AtomicU64>,
}

/// One event's last snapshot and the lock that makes its readers take turns.
#[derive(Debug, Default)]
struct KeptMap {
    /// The snapshot and the position it is true at.
    last: Mutex<Option<(StreamPosition, Value)>>,
    /// Held while the map is read from Postgres, so concurrent subscribers wait for that
    /// read instead of each making their own.
    reading: tokio::sync::Mutex<()>,
}

impl KeptMap {
    /// The kept snapshot, if it is true at `position`.
    fn at(&self, position: &StreamPosition) -> Option<Value> {
        let last = self.last.lock().expect("kept map lock");
        last.as_ref()
            .filter(|(at, _)| at == position)
            .map(|(_, map)| map.clone())
    }
}

impl SeatSnapshots {
    /// Snapshots of the maps in `db`, positioned on `engine`'s channels.
    pub fn new(db: PgPool, engine: Engine) -> Self {
        Self {
            db,
            engine,
            kept: Arc::default(),
            reads: Arc::default(),
        }
    }

    /// How many maps these snapshots have read from Postgres.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    fn kept(&self, event: Uuid) -> Arc<KeptMap> {
        let mut kept = self.kept.lock().expect("kept maps lock");
        if kept.len() >= MAX_KEPT_MAPS && !kept.contains_key(&event) {
            kept.clear();
        }
        kept.entry(event).or_default().clone()
    }

    fn forget(&self, event: Uuid) {
        self.kept.lock().expect("kept maps lock").remove(&event);
    }

    /// The channel's current position.
    async fn position(&self, channel: &Channel) -> Result<StreamPosition, HubError> {
        Ok(self.engine.history(channel.as_str(), None).await?.position)
    }

    /// The map read from Postgres, lined up with the channel (module docs); `None` for an
    /// event that does not exist.
    async fn read(
        &self,
        event: Uuid,
        channel: &Channel,
    ) -> Result<(Option<SeatSnapshot>, StreamPosition), HubError> {
        for _ in 0..SNAPSHOT_ATTEMPTS {
            let Some(map) = read_map(&self.db, event).await.map_err(|e| db_error(&e))? else {
                // The relay has not published everything yet; it will shortly.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            };
            let position = self.position(channel).await?;
            let Some(map) = map else {
                return Ok((None, position));
            };
            match newest_version(&self.engine, channel.as_str(), &position).await? {
                Some(newest) if newest > map.v => continue,
                _ => return Ok((Some(map), position)),
            }
        }
        Err(HubError::Snapshot(format!(
            "the seat map of {channel} kept moving; try again"
        )))
    }
}

/// The map of an event that does not exist: empty, so subscribers of a bad id see nothing.
fn empty_map() -> Value {
    let empty = SeatSnapshot {
        v: 0,
        seats: 0,
        state: String::new(),
        ga: Vec::new(),
    };
    serde_json::to_value(empty).expect("serializes")
}

/// The map's state as Postgres has it: `None` while some of the event's outbox is unpublished.
async fn read_map(db: &PgPool, event: Uuid) -> Result<Option<Option<SeatSnapshot>>, sqlx::Error> {
    let mut tx = crate::db::begin(db).await?;
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    let Some(version) =
        sqlx::query_scalar::<_, i64>("select inventory_version from event where event_id = $1")
            .bind(event)
            .fetch_optional(&mut *tx)
            .await?
    else {
        return Ok(Some(None));
    };
    let unpublished: bool =
        sqlx::query_scalar("select exists (select 1 from outbox where event_id = $1)")
            .bind(event)
            .fetch_one(&mut *tx)
            .await?;
    if unpublished {
        return Ok(None);
    }
    let claims: Vec<(Option<String>,)> = sqlx::query_as(
        "select c.state::text from seat s
         left join seat_claim c on c.event_id = s.event_id and c.seat_id = s.seat_id
         where s.event_id = $1 order by s.seat_index",
    )
    .bind(event)
    .fetch_all(&mut *tx)
    .await?;
    let states = claims.iter().map(|(c,)| match c.as_deref() {
        None => SeatState::Free,
        Some("held") => SeatState::Held,
        Some(_) => SeatState::Sold,
    });
    let packed = pack_seat_states(states);
    let ga = sqlx::query(
        "select ticket_type_id, greatest(ga_quota - ga_held - ga_sold, 0) as available
         from ticket_type where event_id = $1 and ga_quota is not null order by ticket_type_id",
    )
    .bind(event)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| GaAvailability {
        ticket_type: r.get::<Uuid, _>("ticket_type_id").to_string(),
        available: r.get::<i32, _>("available").max(0) as u32,
    })
    .collect();
    tx.commit().await?;
    Ok(Some(Some(SeatSnapshot {
        v: version.max(0) as u64,
        seats: claims.len() as u32,
        state: base64::engine::general_purpose::STANDARD.encode(packed),
        ga,
    })))
}

/// The `v` of the newest message on the channel, if history still has it.
async fn newest_version(
    engine: &Engine,
    channel: &str,
    position: &StreamPosition,
) -> Result<Option<u64>, HubError> {
    if position.offset == 0 {
        return Ok(None);
    }
    let before = StreamPosition::new(position.epoch.clone(), position.offset - 1);
    let history = engine.history(channel, Some(&before)).await?;
    if !history.recovered {
        return Ok(None);
    }
    Ok(history.publications.last().and_then(|p| {
        serde_json::from_slice::<Value>(&p.data)
            .ok()
            .and_then(|v| v.get("v").and_then(Value::as_u64))
    }))
}

impl SnapshotProvider for SeatSnapshots {
    fn snapshot<'a>(
        &'a self,
        channel: &'a Channel,
    ) -> BoxFuture<'a, Result<(Value, StreamPosition), HubError>> {
        Box::pin(async move {
            let Ok(event) = Uuid::parse_str(channel.id()) else {
                return Ok((empty_map(), self.position(channel).await?));
            };
            let kept = self.kept(event);
            let position = self.position(channel).await?;
            if let Some(map) = kept.at(&position) {
                return Ok((map, position));
            }
            let _reading = kept.reading.lock().await;
            // Whoever held the lock before may have just read what is wanted.
            let position = self.position(channel).await?;
            if let Some(map) = kept.at(&position) {
                return Ok((map, position));
            }
            let (map, position) = self.read(event, channel).await?;
            let Some(map) = map else {
                self.forget(event);
                return Ok((empty_map(), position));
            };
            let map = serde_json::to_value(map).expect("serializes");
            *kept.last.lock().expect("kept map lock") = Some((position.clone(), map.clone()));
            self.reads.fetch_add(1, Ordering::Relaxed);
            crate::metrics::METRICS.seat_map_reads.increment(1);
            Ok((map, position))
        })
    }
}

/// The inbox's snapshots: pending results.
#[derive(Debug, Clone)]
pub struct InboxSnapshots {
    /// The system of record.
    pub db: PgPool,
    /// The engine that carries the channel. Not the hub: the hub holds its providers, and a
    /// provider holding the hub would keep both (and the pool) alive forever.
    pub engine: Engine,
}

impl SnapshotProvider for InboxSnapshots {
    fn snapshot<'a>(
        &'a self,
        channel: &'a Channel,
    ) -> BoxFuture<'a, Result<(Value, StreamPosition), HubError>> {
        Box::pin(async move {
            // Position first: a result published after it is replayed or delivered live; one
            // published before it is committed, so the query below finds it if unacknowledged.
            // A result can therefore appear in both; clients recognise it by request id.
            let position = self.engine.history(channel.as_str(), None).await?.position;
            let Some((tenant, user)) = channel
                .id()
                .split_once('/')
                .and_then(|(t, u)| Some((Uuid::parse_str(t).ok()?, u)))
            else {
                let empty = serde_json::to_value(InboxSnapshot::default()).expect("serializes");
                return Ok((empty, position));
            };
            let rows: Vec<(Value,)> = sqlx::query_as(
                "select result from processed_request
                 where tenant_id = $1 and user_id = $2 and acknowledged_at is null
                 order by created_at, request_id limit $3",
            )
            .bind(tenant)
            .bind(user)
            .bind(MAX_PENDING_RESULTS)
            .fetch_all(&self.db)
            .await
            .map_err(|e| db_error(&e))?;
            let mut snapshot = InboxSnapshot::default();
            for (v,) in rows {
                match serde_json::from_value(v) {
                    Ok(InboxMessage::Result(r)) => snapshot.pending.push(r),
                    Ok(InboxMessage::Order(o)) => snapshot.orders.push(o),
                    _ => {}
                }
            }
            let snapshot = serde_json::to_value(snapshot).expect("serializes");
            Ok((snapshot, position))
        })
    }
}
