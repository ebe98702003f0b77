//! The outbox relay: publishes what booking transactions wrote to the `outbox` table on the hub
//! channels (seat deltas on `seats:{event}`, results on the buyers' inboxes), in `outbox_id`
//! order, then deletes the rows.
//!
//! A round's messages are published channel by channel: each channel's in order, one after
//! another, and up to [`CHANNELS_AT_ONCE`] channels at the same time. A batch of a thousand
//! holds writes a thousand results to a thousand inboxes; one publish at a time, each a Redis
//! round trip, let results reach buyers tens of seconds after their commit at 100,000 buyers
//! (BENCHMARKS.md, the whole onsale). No order across channels is promised to anyone. Each
//! message is published once under its row and index ([`Hub::publish_json_once`]), so a round
//! retried after a publish timed out (Redis slow or paused: the request may still be carried
//! out) repeats nothing.
//!
//! Every node with a database runs a relay; a transaction-scoped advisory lock lets exactly one
//! of them work at a time, which keeps each channel's messages in commit order. A row is
//! deleted in the same transaction that publishes it, after publishing: a relay that dies
//! midway leaves the row for the next one, which publishes what was not published yet (each
//! message's id holds for a minute on Redis; past that, or on the memory engine, a repeat is
//! still recognisable: seat deltas carry their version and results their request id). Commits wake the relay with
//! `NOTIFY`; it also polls, in case a notification is lost while its listener reconnects.

use super::NOTIFY;
use crate::hub::Hub;
use crate::metrics::METRICS;
use anyhow::Context as _;
use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use marquee_protocol::Channel;
use serde::Deserialize;
use serde_json::value::RawValue;
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Row as _};
use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The advisory lock key that elects the active relay ("mrqrelay" in ASCII).
const RELAY_LOCK: i64 = 0x6d72_7172_656c_6179;

/// Rows published per transaction.
const ROWS_PER_ROUND: i64 = 64;

/// Channels published to at the same time within a round. Each publish is one small script
/// on Redis; what bounds a round is how long each waits for its answer, most of it for the
/// relay's own process to be scheduled on a busy machine: at 64 at once a full-size onsale's
/// relay published about 300 messages a second (rounds of 4,000 to 6,300 channels took 13 to
/// 25 s, `slow outbox relay round`) while Redis used a sixth of a core.
const CHANNELS_AT_ONCE: usize = 512;

/// A round that takes this long is logged with where its time went.
const SLOW_ROUND: Duration = Duration::from_secs(1);

/// How often the relay looks for rows without a notification.
const POLL: Duration = Duration::from_millis(250);

/// One message of an outbox row, borrowed from the row's text: its data is published as it
/// was stored, without being parsed.
#[derive(Deserialize)]
struct OutboxMessage<'a> {
    #[serde(borrow)]
    channel: Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// Runs the relay until `cancel`.
pub async fn run(db: PgPool, hub: Hub, cancel: CancellationToken) -> anyhow::Result<()> {
    let mut listener = PgListener::connect_with(&db)
        .await
        .context("connecting the outbox listener")?;
    listener
        .listen(NOTIFY)
        .await
        .context("listening for outbox notifications")?;
    loop {
        match relay_once(&db, &hub).await {
            Ok(n) if n as i64 == ROWS_PER_ROUND => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "outbox relay round failed; retrying"
                );
                tokio::time::sleep(POLL).await;
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            _ = listener.recv() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Publishes up to [`ROWS_PER_ROUND`] rows if this relay holds the lock. Returns the rows
/// published.
pub(crate) async fn relay_once(db: &PgPool, hub: &Hub) -> anyhow::Result<usize> {
    let started = std::time::Instant::now();
    let mut tx = crate::db::begin(db).await?;
    let connected = started.elapsed();
    let leader: bool = sqlx::query_scalar("select pg_try_advisory_xact_lock($1)")
        .bind(RELAY_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !leader {
        METRICS.outbox_lag.set(0.0);
        return Ok(0);
    }
    let rows = sqlx::query(
        "select outbox_id, messages::text as messages,
                extract(epoch from now() - created_at)::float8 as age
         from outbox order by outbox_id limit $1",
    )
    .bind(ROWS_PER_ROUND)
    .fetch_all(&mut *tx)
    .await?;
    // The oldest row waiting (rows are deleted once published).
    METRICS.outbox_lag.set(
        rows.first()
            .map_or(0.0, |r| r.get::<f64, _>("age").max(0.0)),
    );
    if rows.is_empty() {
        return Ok(0);
    }
    let mut ids = Vec::with_capacity(rows.len());
    // Every channel's messages, in row order; channels in the order first seen.
    let mut channels: Vec<(Channel, Vec<(String, Bytes)>)> = Vec::new();
    let mut slot: HashMap<Cow<'_, str>, usize> = HashMap::new();
    for row in &rows {
        let id: i64 = row.get("outbox_id");
        let text: &str = row.get("messages");
        ids.push(id);
        let messages: Vec<OutboxMessage<'_>> = match serde_json::from_str(text) {
            Ok(messages) => messages,
            Err(e) => {
                // Retrying cannot fix it, and it must not block every row behind it.
                tracing::error!(outbox_id = id, error = %e, "skipping an outbox row that is not a list of messages");
                continue;
            }
        };
        for (index, message) in messages.into_iter().enumerate() {
            let at = match slot.get(&message.channel) {
                Some(at) => *at,
                None => {
                    let Ok(channel) = Channel::parse(&message.channel) else {
                        tracing::error!(
                            outbox_id = id,
                            "skipping an outbox message without a valid channel"
                        );
                        continue;
                    };
                    channels.push((channel, Vec::new()));
                    slot.insert(message.channel, channels.len() - 1);
                    channels.len() - 1
                }
            };
            // Named by row and place in it: a round retried after an unknown outcome (a
            // timeout) publishes each message once.
            channels[at].1.push((
                format!("{id}.{index}"),
                Bytes::copy_from_slice(message.data.get().as_bytes()),
            ));
        }
    }
    let (read, channel_count) = (started.elapsed(), channels.len());
    stream::iter(channels)
        .map(|(channel, messages)| async move {
            for (id, data) in messages {
                hub.publish_json_once(&channel, data, &id)
                    .await
                    .with_context(|| format!("publishing on {channel}"))?;
                METRICS.outbox_published.increment(1);
            }
            anyhow::Ok(())
        })
        .buffer_unordered(CHANNELS_AT_ONCE)
        .try_collect::<()>()
        .await?;
    let published = started.elapsed();
    sqlx::query("delete from outbox where outbox_id = any($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    if started.elapsed() >= SLOW_ROUND {
        // Where a slow round's time went: results wait for it (an operator's first clue).
        tracing::warn!(
            rows = ids.len(),
            channels = channel_count,
            connection_ms = connected.as_millis() as u64,
            read_ms = (read - connected).as_millis() as u64,
            publish_ms = (published - read).as_millis() as u64,
            commit_ms = (started.elapsed() - published).as_millis() as u64,
            "slow outbox relay round"
        );
    }
    Ok(ids.len())
}
