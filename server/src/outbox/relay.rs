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
//!
//! # Who relays
//!
//! Every `marquee worker` relays ([`RelayMode::On`]), and so does a hub node by default. A hub
//! node that serves a crowd is the wrong place for it: its rounds wait behind tens of thousands
//! of connections for a share of the CPU and of its one Redis command connection. At full size
//! (100,000 buyers on seven nodes, BENCHMARKS.md run 26) rounds on the nodes published 70 to 90
//! messages a second while the two worker processes sat nearly idle, and buyers heard their holds
//! 22 s after they were decided. A node set to [`RelayMode::Standby`] (`MARQUEE_OUTBOX_RELAY`,
//! as the Compose and Kubernetes files set it beside worker processes) leaves the rows to the
//! workers and relays only rows that waited [`STANDBY_AFTER`]: no worker is relaying, or none
//! keeps up, and results still go out.

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

/// How old the oldest row must be before a relay on standby publishes.
pub const STANDBY_AFTER: Duration = Duration::from_secs(5);

/// How often a relay on standby looks at the oldest row's age.
const STANDBY_POLL: Duration = Duration::from_secs(1);

/// Whether a process relays whenever there are rows, or only when others do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RelayMode {
    /// Relays every row as soon as it is committed (when it holds the lock).
    #[default]
    On,
    /// Relays only rows older than [`STANDBY_AFTER`]: for hub nodes beside worker processes,
    /// which relay (module docs).
    Standby,
    /// Never relays: for a node whose outbox is certain to be relayed by worker processes
    /// (tests that must know who relayed). If none runs, results wait.
    Off,
}

/// One message of an outbox row, borrowed from the row's text: its data is published as it
/// was stored, without being parsed.
#[derive(Deserialize)]
struct OutboxMessage<'a> {
    #[serde(borrow)]
    channel: Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// Runs the relay until `cancel` ([`RelayMode::Off`]: returns at once).
pub async fn run(
    db: PgPool,
    hub: Hub,
    mode: RelayMode,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    // On standby nothing is published right after a commit, so nothing listens for commits.
    let mut listener = match mode {
        RelayMode::On => {
            let mut listener = PgListener::connect_with(&db)
                .await
                .context("connecting the outbox listener")?;
            listener
                .listen(NOTIFY)
                .await
                .context("listening for outbox notifications")?;
            Some(listener)
        }
        RelayMode::Standby => None,
        RelayMode::Off => return Ok(()),
    };
    let standby = listener.is_none();
    let poll = if standby { STANDBY_POLL } else { POLL };
    loop {
        let due = if standby {
            oldest_waited(&db, STANDBY_AFTER).await
        } else {
            Ok(true)
        };
        match due {
            Ok(false) => {}
            Ok(true) => match relay_once(&db, &hub).await {
                Ok(n) if n as i64 == ROWS_PER_ROUND => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "outbox relay round failed; retrying"
                    );
                    tokio::time::sleep(POLL).await;
                }
            },
            Err(e) => tracing::warn!(error = %e, "outbox relay cannot read the outbox; retrying"),
        }
        let committed = async {
            match &mut listener {
                Some(listener) => drop(listener.recv().await),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            () = committed => {}
            () = tokio::time::sleep(poll) => {}
        }
    }
}

/// Whether the oldest row in the outbox has waited at least `long`.
pub(crate) async fn oldest_waited(db: &PgPool, long: Duration) -> Result<bool, sqlx::Error> {
    let age: Option<f64> = sqlx::query_scalar(
        "select extract(epoch from now() - created_at)::float8
         from outbox order by outbox_id limit 1",
    )
    .fetch_optional(db)
    .await?;
    Ok(age.is_some_and(|age| age >= long.as_secs_f64()))
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
