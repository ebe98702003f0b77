//! The in-process engine: one node, no external services.
//!
//! Streams live in a sharded map. A publication is appended and handed to the sink while its
//! shard is locked, so the sink sees every channel's messages in offset order and a concurrent
//! `history` never sees a message the sink has not.
//!
//! A stream that holds no message (only read, or its history aged out) is dropped once it has
//! been idle for [`IDLE_STREAM_TTL`]: each shard sweeps itself at most every [`SWEEP_EVERY`].

use super::{
    ChannelEngine, EngineError, EnginePublication, History, HistoryLimits, IDLE_STREAM_TTL, Sink,
    new_epoch, now_ms,
};
use bytes::Bytes;
use marquee_protocol::StreamPosition;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SHARDS: usize = 32;
/// How often a shard looks for idle empty streams, at most.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// One channel's stream.
#[derive(Debug)]
struct Stream {
    name: Arc<str>,
    epoch: Arc<str>,
    /// Offset of the newest message (0 before the first).
    top: u64,
    /// `(offset, published_at_ms, data)`, oldest first; offsets are contiguous.
    entries: VecDeque<(u64, u64, Bytes)>,
    /// When it was last read or written (unix ms).
    touched_ms: u64,
}

impl Stream {
    fn new(name: &str, now: u64) -> Self {
        Self {
            name: name.into(),
            epoch: new_epoch().into(),
            top: 0,
            entries: VecDeque::new(),
            touched_ms: now,
        }
    }

    fn trim(&mut self, limits: HistoryLimits, now: u64) {
        let min_ts = now.saturating_sub(limits.ttl.as_millis() as u64);
        while self.entries.len() > limits.size
            || self.entries.front().is_some_and(|(_, ts, _)| *ts < min_ts)
        {
            self.entries.pop_front();
        }
    }
}

/// Streams of the channels that hash to one shard.
#[derive(Debug, Default)]
struct Shard {
    streams: HashMap<Box<str>, Stream>,
    /// When idle empty streams were last dropped (unix ms).
    swept_ms: u64,
}

impl Shard {
    /// The stream of `channel`, created if need be, marked as used now; sweeps first when due.
    fn stream_mut(&mut self, channel: &str, limits: HistoryLimits, now: u64) -> &mut Stream {
        if now.saturating_sub(self.swept_ms) >= SWEEP_EVERY.as_millis() as u64 {
            self.swept_ms = now;
            let idle = IDLE_STREAM_TTL.as_millis() as u64;
            self.streams.retain(|_, stream| {
                stream.trim(limits, now);
                !stream.entries.is_empty() || now.saturating_sub(stream.touched_ms) < idle
            });
        }
        let stream = self
            .streams
            .entry(channel.into())
            .or_insert_with(|| Stream::new(channel, now));
        stream.touched_ms = now;
        stream
    }
}

/// The in-process channel engine.
pub struct MemoryEngine {
    shards: Box<[Mutex<Shard>]>,
    limits: HistoryLimits,
    sink: Arc<dyn Sink>,
}

impl std::fmt::Debug for MemoryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryEngine")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl MemoryEngine {
    /// Creates an engine that delivers every publication to `sink`.
    pub fn new(limits: HistoryLimits, sink: Arc<dyn Sink>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            limits,
            sink,
        }
    }

    /// How many streams the engine holds.
    pub fn streams(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().expect("memory engine lock").streams.len())
            .sum()
    }

    fn shard(&self, channel: &str) -> &Mutex<Shard> {
        let mut h = DefaultHasher::new();
        channel.hash(&mut h);
        &self.shards[h.finish() as usize % SHARDS]
    }

    /// Forgets every stream, as a restarted store would: later reads see new epochs.
    pub fn clear(&self) {
        for shard in &*self.shards {
            shard.lock().expect("memory engine lock").streams.clear();
        }
    }
}

impl ChannelEngine for MemoryEngine {
    /// In memory a publish either happens or fails before returning, never both: nothing is
    /// ever published again after an unknown outcome, so the id has nothing to guard.
    async fn publish_once(
        &self,
        channel: &str,
        data: Bytes,
        _id: &str,
    ) -> Result<StreamPosition, EngineError> {
        self.publish(channel, data).await
    }

    async fn publish(&self, channel: &str, data: Bytes) -> Result<StreamPosition, EngineError> {
        let now = now_ms();
        let mut shard = self.shard(channel).lock().expect("memory engine lock");
        let stream = shard.stream_mut(channel, self.limits, now);
        let name = stream.name.clone();
        stream.top += 1;
        stream.entries.push_back((stream.top, now, data.clone()));
        stream.trim(self.limits, now);
        let position = StreamPosition::new(&*stream.epoch, stream.top);
        self.sink.deliver(EnginePublication {
            channel: name,
            epoch: stream.epoch.clone(),
            offset: stream.top,
            data,
            published_at_ms: now,
        });
        Ok(position)
    }

    async fn history(
        &self,
        channel: &str,
        since: Option<&StreamPosition>,
    ) -> Result<History, EngineError> {
        let now = now_ms();
        let mut shard = self.shard(channel).lock().expect("memory engine lock");
        let stream = shard.stream_mut(channel, self.limits, now);
        let name = stream.name.clone();
        stream.trim(self.limits, now);
        let position = StreamPosition::new(&*stream.epoch, stream.top);
        let mut history = History {
            position,
            recovered: false,
            publications: Vec::new(),
        };
        let Some(since) = since else {
            return Ok(history);
        };
        if *since.epoch != *stream.epoch || since.offset > stream.top {
            return Ok(history);
        }
        let first_needed = since.offset + 1;
        let oldest = stream.entries.front().map_or(stream.top + 1, |e| e.0);
        if first_needed < oldest {
            return Ok(history);
        }
        history.recovered = true;
        history.publications = stream
            .entries
            .iter()
            .filter(|(offset, _, _)| *offset >= first_needed)
            .map(|(offset, ts, data)| EnginePublication {
                channel: name.clone(),
                epoch: stream.epoch.clone(),
                offset: *offset,
                data: data.clone(),
                published_at_ms: *ts,
            })
            .collect();
        Ok(history)
    }

    async fn subscribe(&self, _channel: &str) -> Result<(), EngineError> {
        // Every publication already reaches this node's sink.
        Ok(())
    }

    async fn unsubscribe(&self, _channel: &str) -> Result<(), EngineError> {
        Ok(())
    }

    async fn ready(&self) -> Result<(), EngineError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HistoryLimits = HistoryLimits {
        size: 10,
        ttl: Duration::from_secs(60),
    };

    #[test]
    fn an_idle_empty_stream_is_dropped_and_a_stream_with_history_is_kept() {
        let mut shard = Shard::default();
        let idle = IDLE_STREAM_TTL.as_millis() as u64;
        shard.stream_mut("seats:read-only", LIMITS, 1);
        let kept = shard.stream_mut("seats:published", LIMITS, 1);
        kept.top = 1;
        kept.entries.push_back((1, 1, Bytes::from_static(b"{}")));
        // Touched again before it idles: kept.
        shard.stream_mut("seats:busy", LIMITS, 1);
        shard.stream_mut("seats:busy", LIMITS, idle / 2);

        // Within the idle time nothing is dropped.
        shard.stream_mut("seats:other", LIMITS, idle / 2 + 1);
        assert_eq!(shard.streams.len(), 4);

        // Later, the read-only stream has idled; the published one's history has aged out
        // too (60 s), so it is empty and idle as well; the busy one was touched at idle / 2.
        shard.stream_mut("seats:other", LIMITS, idle + 2);
        let mut left: Vec<&str> = shard.streams.keys().map(|k| &**k).collect();
        left.sort_unstable();
        assert_eq!(left, ["seats:busy", "seats:other"]);
    }

    #[test]
    fn a_stream_with_recoverable_history_is_kept_however_idle() {
        let limits = HistoryLimits {
            size: 10,
            ttl: IDLE_STREAM_TTL * 2,
        };
        let mut shard = Shard::default();
        let stream = shard.stream_mut("seats:a", limits, 1);
        stream.top = 1;
        stream.entries.push_back((1, 1, Bytes::from_static(b"{}")));
        let epoch = stream.epoch.clone();
        shard.stream_mut("seats:b", limits, IDLE_STREAM_TTL.as_millis() as u64 + 10);
        assert_eq!(shard.streams["seats:a"].epoch, epoch);
    }
}
