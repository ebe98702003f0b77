//! The Redis engine (fred): any number of hub nodes sharing one Redis.
//!
//! Per channel `C` under prefix `P`:
//! - `P:ch:{C}:meta`, a hash: `e` the epoch, `o` the newest offset;
//! - `P:ch:{C}:hist`, a list of `offset|unix_ms|json`, capped by count and expired by age;
//! - `P:ch:{C}`, the pub/sub channel, carrying `epoch|offset|unix_ms|json`.
//!
//! The braces make both keys of a channel hash to one Redis Cluster slot. A Lua script assigns
//! the offset, appends to history and publishes in one atomic step, so history and the live
//! feed can never disagree. A second script reads the position and the missed messages
//! atomically; a read of a channel that has no epoch yet creates one that lives
//! [`IDLE_STREAM_TTL`] unless something is published. If Redis loses its data, the next access creates a new epoch, and resumes from
//! the old one are answered `recovered: false`.
//!
//! Each node keeps one dedicated subscriber connection and subscribes it only to channels that
//! have local subscribers. After that connection reconnects, it re-subscribes every channel
//! first, then reads where each channel's stream stands (one pipelined `HMGET` of its meta per
//! channel) and reports the interruption with those heads to the sink: only subscribers that
//! were not sent everything up to their channel's head resync, and they read history once the
//! live feed is flowing again. Without the heads, every client of the node (tens of thousands)
//! would resubscribe its inbox at once after a Redis restart, each a history read, and the
//! reads would time out in Redis faster than it could answer them. A lagging live buffer is
//! reported the same way.

use super::{
    ChannelEngine, EngineError, EnginePublication, Heads, History, HistoryLimits, IDLE_STREAM_TTL,
    Sink, new_epoch,
};
use bytes::Bytes;
use fred::clients::SubscriberClient;
use fred::prelude::{
    Builder, ClientLike, Config, EventInterface, HashesInterface, PubsubInterface, ReconnectPolicy,
};
use fred::types::scripts::Script;
use fred::types::{Key, Value};
use marquee_protocol::StreamPosition;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How long a channel's epoch outlives its last message. Past this an idle channel is forgotten
/// and resumes from before are answered `recovered: false`.
const META_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// KEYS[3], when given, names the publication: if it was made within the last minute (the
/// key holds its offset), nothing is published and that one's position is returned.
const PUBLISH_LUA: &str = r"
local meta, history = KEYS[1], KEYS[2]
if KEYS[3] then
  local done = redis.call('GET', KEYS[3])
  if done then
    return {redis.call('HGET', meta, 'e') or '', tonumber(done)}
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSETNX', meta, 'e', ARGV[1])
local epoch = redis.call('HGET', meta, 'e')
local off = redis.call('HINCRBY', meta, 'o', 1)
local entry = string.format('%d|%d|', off, now) .. ARGV[2]
if KEYS[3] then
  redis.call('SET', KEYS[3], off, 'PX', 60000)
end
redis.call('RPUSH', history, entry)
redis.call('LTRIM', history, -tonumber(ARGV[3]), -1)
redis.call('PEXPIRE', history, ARGV[4])
redis.call('PEXPIRE', meta, ARGV[6])
redis.call('PUBLISH', ARGV[5], epoch .. '|' .. entry)
return {epoch, off}
";

const HISTORY_LUA: &str = r"
local meta, history = KEYS[1], KEYS[2]
if redis.call('HSETNX', meta, 'e', ARGV[1]) == 1 then
  redis.call('PEXPIRE', meta, ARGV[5])
end
local epoch = redis.call('HGET', meta, 'e')
local top = tonumber(redis.call('HGET', meta, 'o') or '0')
if ARGV[2] == '' or ARGV[2] ~= epoch then return {epoch, top, 0} end
local since = tonumber(ARGV[3])
if since > top then return {epoch, top, 0} end
if since == top then return {epoch, top, 1} end
local need = top - since
if need > redis.call('LLEN', history) then return {epoch, top, 0} end
local entries = redis.call('LRANGE', history, -need, -1)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local first_ts = tonumber(string.match(entries[1], '^%d+|(%d+)|'))
if first_ts == nil or first_ts < now - tonumber(ARGV[4]) then return {epoch, top, 0} end
local reply = {epoch, top, 1}
for i = 1, #entries do reply[#reply + 1] = entries[i] end
return reply
";

/// The Redis-backed channel engine.
pub struct RedisEngine {
    client: fred::clients::Client,
    subscriber: SubscriberClient,
    prefix: String,
    limits: HistoryLimits,
    publish_script: Script,
    history_script: Script,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for RedisEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEngine")
            .field("prefix", &self.prefix)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisEngine {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> EngineError {
    crate::metrics::METRICS.redis_errors.increment(1);
    EngineError::Unavailable(e.to_string())
}

impl RedisEngine {
    /// Connects to Redis and starts delivering subscribed channels to `sink`.
    pub async fn connect(
        url: &str,
        prefix: &str,
        limits: HistoryLimits,
        sink: Arc<dyn Sink>,
    ) -> Result<Self, EngineError> {
        let config = Config::from_url(url).map_err(unavailable)?;
        let mut builder = Builder::from_config(config);
        builder
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2))
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(5);
            })
            .with_performance_config(|p| {
                p.default_command_timeout = Duration::from_secs(5);
                // Deep enough to ride out bursts; a lag is reported to the sink, never ignored.
                p.broadcast_channel_capacity = 65_536;
            });
        let client = builder.build().map_err(unavailable)?;
        let subscriber = builder.build_subscriber_client().map_err(unavailable)?;
        client.init().await.map_err(unavailable)?;
        subscriber.init().await.map_err(unavailable)?;

        let prefix_owned = format!("{prefix}:ch:");
        let mut tasks = Vec::new();

        // Live feed: every message on a subscribed channel goes to the sink in arrival order.
        // A lag (messages dropped from the buffer) is handed to the interruptions task.
        let lagged = Arc::new(Notify::new());
        let lag = lagged.clone();
        let mut messages = subscriber.message_rx();
        let feed_sink = sink.clone();
        let feed_prefix = prefix_owned.clone();
        tasks.push(tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match messages.recv().await {
                    Ok(message) => {
                        let channel = message.channel.to_string();
                        let Some(channel) = channel.strip_prefix(&feed_prefix) else {
                            continue;
                        };
                        let Some(raw) = message.value.as_bytes() else {
                            continue;
                        };
                        match parse_live(channel, raw) {
                            Some(publication) => feed_sink.deliver(publication),
                            None => tracing::warn!(channel, "unparseable message on channel"),
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(
                            missed,
                            "redis subscriber lagged; subscribers who missed messages resync"
                        );
                        lag.notify_one();
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        }));

        // Interruptions, one at a time so that the heads the sink holds are always those read
        // after the latest one: after a reconnect re-subscribe everything, then (after a lag
        // too) read every channel's head and report the gap.
        let mut reconnects = subscriber.reconnect_rx();
        let resubscriber = subscriber.clone();
        let reader = client.clone();
        let heads_prefix = prefix_owned.clone();
        tasks.push(tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                let feed_flowing = tokio::select! {
                    event = reconnects.recv() => {
                        if let Err(RecvError::Closed) = event {
                            break;
                        }
                        tracing::info!("redis subscriber reconnected; re-subscribing channels");
                        match resubscriber.resubscribe_all().await {
                            Ok(()) => true,
                            Err(e) => {
                                tracing::error!(error = %e, "re-subscribing after reconnect failed");
                                false
                            }
                        }
                    }
                    () = lagged.notified() => true,
                };
                let heads = if feed_flowing {
                    read_heads(&reader, &resubscriber, &heads_prefix).await
                } else {
                    None
                };
                sink.interrupted(heads);
            }
        }));

        Ok(Self {
            client,
            subscriber,
            prefix: prefix_owned,
            limits,
            publish_script: Script::from_lua(PUBLISH_LUA),
            history_script: Script::from_lua(HISTORY_LUA),
            tasks,
        })
    }

    fn keys(&self, channel: &str) -> (Key, Key) {
        (
            Key::from(meta_key(&self.prefix, channel)),
            Key::from(format!("{}{{{channel}}}:hist", self.prefix)),
        )
    }

    fn pubsub_channel(&self, channel: &str) -> String {
        format!("{}{channel}", self.prefix)
    }

    /// Publishes: `sent` is the key that names the publication, if it has one.
    async fn run_publish(
        &self,
        channel: &str,
        data: Bytes,
        sent: Option<Key>,
    ) -> Result<StreamPosition, EngineError> {
        let (meta, hist) = self.keys(channel);
        let args: Vec<Value> = vec![
            new_epoch().into(),
            Value::Bytes(data),
            (self.limits.size.max(1) as i64).into(),
            (self.limits.ttl.as_millis() as i64).into(),
            self.pubsub_channel(channel).into(),
            (META_TTL.as_millis() as i64).into(),
        ];
        let keys: Vec<Key> = [meta, hist].into_iter().chain(sent).collect();
        let reply: Vec<Value> = self
            .publish_script
            .evalsha_with_reload(&self.client, keys, args)
            .await
            .map_err(unavailable)?;
        match reply.as_slice() {
            [epoch, offset] => Ok(StreamPosition::new(value_str(epoch)?, value_u64(offset)?)),
            _ => Err(EngineError::Corrupt(format!("publish reply {reply:?}"))),
        }
    }
}

impl ChannelEngine for RedisEngine {
    async fn publish(&self, channel: &str, data: Bytes) -> Result<StreamPosition, EngineError> {
        self.run_publish(channel, data, None).await
    }

    async fn publish_once(
        &self,
        channel: &str,
        data: Bytes,
        id: &str,
    ) -> Result<StreamPosition, EngineError> {
        let sent = Key::from(format!("{}{{{channel}}}:sent:{id}", self.prefix));
        self.run_publish(channel, data, Some(sent)).await
    }

    async fn history(
        &self,
        channel: &str,
        since: Option<&StreamPosition>,
    ) -> Result<History, EngineError> {
        let (meta, hist) = self.keys(channel);
        let (since_epoch, since_offset) = match since {
            Some(p) => (p.epoch.clone(), p.offset as i64),
            None => (String::new(), 0),
        };
        let args: Vec<Value> = vec![
            new_epoch().into(),
            since_epoch.into(),
            since_offset.into(),
            (self.limits.ttl.as_millis() as i64).into(),
            // A read creates the epoch of a channel nobody published on yet, so that a later
            // publish continues it; only for a while (the first publish extends it).
            (IDLE_STREAM_TTL.as_millis() as i64).into(),
        ];
        let reply: Vec<Value> = self
            .history_script
            .evalsha_with_reload(&self.client, vec![meta, hist], args)
            .await
            .map_err(unavailable)?;
        let [epoch, top, recovered, entries @ ..] = reply.as_slice() else {
            return Err(EngineError::Corrupt(format!("history reply {reply:?}")));
        };
        let epoch: Arc<str> = value_str(epoch)?.into();
        let position = StreamPosition::new(&*epoch, value_u64(top)?);
        let recovered = value_u64(recovered)? == 1;
        let name: Arc<str> = channel.into();
        let mut publications = Vec::with_capacity(entries.len());
        for entry in entries {
            let raw = entry
                .as_bytes()
                .ok_or_else(|| EngineError::Corrupt("history entry is not a string".into()))?;
            let (offset, ts, data) = parse_entry(raw)
                .ok_or_else(|| EngineError::Corrupt("malformed history entry".into()))?;
            publications.push(EnginePublication {
                channel: name.clone(),
                epoch: epoch.clone(),
                offset,
                data,
                published_at_ms: ts,
            });
        }
        Ok(History {
            position,
            recovered,
            publications,
        })
    }

    async fn subscribe(&self, channel: &str) -> Result<(), EngineError> {
        self.subscriber
            .subscribe(self.pubsub_channel(channel))
            .await
            .map_err(unavailable)
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), EngineError> {
        self.subscriber
            .unsubscribe(self.pubsub_channel(channel))
            .await
            .map_err(unavailable)
    }

    async fn ready(&self) -> Result<(), EngineError> {
        let _: String = self.client.ping(None).await.map_err(unavailable)?;
        Ok(())
    }
}

/// Channels whose heads one pipeline reads.
const HEADS_PER_PIPELINE: usize = 1_000;

/// Tries at reading the heads after an interruption, a second apart, before every subscriber
/// of the node is told to resync: Redis just restarted is busy (every node and client comes
/// back at once), and a resync of every subscriber would only add to that.
const HEADS_ATTEMPTS: u32 = 3;

/// Where the stream of every channel `subscriber` listens to stands now; `None` if Redis could
/// not say in [`HEADS_ATTEMPTS`] tries (every subscriber then resyncs).
async fn read_heads(
    client: &fred::clients::Client,
    subscriber: &SubscriberClient,
    prefix: &str,
) -> Option<Heads> {
    for attempt in 1..=HEADS_ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // Read again on every try: the channels may have changed.
        let channels: Vec<Arc<str>> = subscriber
            .tracked_channels()
            .iter()
            .filter_map(|name| name.strip_prefix(prefix).map(Arc::from))
            .collect();
        match read_channel_heads(client, prefix, &channels).await {
            Ok(heads) => return Some(heads),
            Err(e) => {
                crate::metrics::METRICS.redis_errors.increment(1);
                tracing::warn!(error = %e, attempt, "reading channel heads failed");
            }
        }
    }
    tracing::warn!("no channel heads: every subscriber of this node resyncs");
    None
}

async fn read_channel_heads(
    client: &fred::clients::Client,
    prefix: &str,
    channels: &[Arc<str>],
) -> Result<Heads, fred::error::Error> {
    let mut heads = Heads::with_capacity(channels.len());
    for batch in channels.chunks(HEADS_PER_PIPELINE) {
        let replies = read_head_batch(client, prefix, batch).await?;
        for (channel, reply) in batch.iter().zip(replies) {
            if let Some(head) = parse_head(reply) {
                heads.insert(channel.clone(), head);
            }
        }
    }
    Ok(heads)
}

/// The key of a channel's meta hash (`e` the epoch, `o` the newest offset).
fn meta_key(prefix: &str, channel: &str) -> String {
    format!("{prefix}{{{channel}}}:meta")
}

/// One pipeline of `HMGET meta e o`, a reply per channel.
async fn read_head_batch(
    client: &fred::clients::Client,
    prefix: &str,
    channels: &[Arc<str>],
) -> Result<Vec<Value>, fred::error::Error> {
    let pipeline = client.pipeline();
    for channel in channels {
        pipeline
            .hmget::<(), _, _>(meta_key(prefix, channel), vec!["e", "o"])
            .await?;
    }
    pipeline.all().await
}

/// A channel's head from `HMGET meta e o`: none without an epoch (the stream is gone); offset 0
/// when nothing was published in the epoch yet.
fn parse_head(reply: Value) -> Option<StreamPosition> {
    let Value::Array(fields) = reply else {
        return None;
    };
    let [epoch, offset] = fields.as_slice() else {
        return None;
    };
    let epoch = epoch.as_string()?;
    let offset = if offset.is_null() {
        0
    } else {
        offset.as_u64()?
    };
    Some(StreamPosition::new(epoch, offset))
}

fn value_str(v: &Value) -> Result<String, EngineError> {
    v.as_string()
        .ok_or_else(|| EngineError::Corrupt(format!("expected a string, got {v:?}")))
}

fn value_u64(v: &Value) -> Result<u64, EngineError> {
    v.as_u64()
        .ok_or_else(|| EngineError::Corrupt(format!("expected an integer, got {v:?}")))
}

/// Splits `offset|unix_ms|json`.
fn parse_entry(raw: &[u8]) -> Option<(u64, u64, Bytes)> {
    let mut parts = raw.splitn(3, |b| *b == b'|');
    let offset = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let ts = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let data = Bytes::copy_from_slice(parts.next()?);
    Some((offset, ts, data))
}

/// Splits `epoch|offset|unix_ms|json` from the live feed.
fn parse_live(channel: &str, raw: &[u8]) -> Option<EnginePublication> {
    let at = raw.iter().position(|b| *b == b'|')?;
    let epoch = std::str::from_utf8(&raw[..at]).ok()?;
    let (offset, ts, data) = parse_entry(&raw[at + 1..])?;
    Some(EnginePublication {
        channel: channel.into(),
        epoch: epoch.into(),
        offset,
        data,
        published_at_ms: ts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_message_splits_into_its_parts_even_when_the_payload_has_bars() {
        let p = parse_live("seats:e", br#"ab12|7|1700000000000|{"x":"a|b"}"#).unwrap();
        assert_eq!(&*p.epoch, "ab12");
        assert_eq!(p.offset, 7);
        assert_eq!(p.published_at_ms, 1_700_000_000_000);
        assert_eq!(&p.data[..], br#"{"x":"a|b"}"#);
    }

    #[test]
    fn a_truncated_message_is_refused() {
        assert!(parse_live("seats:e", b"ab12|7").is_none());
        assert!(parse_live("seats:e", b"ab12|x|1|{}").is_none());
    }
}
