//! The in-process engine: one node, no external services.
//!
//! Streams live in a sharded map. A publication is appended and handed to the sink while its
//! shard is locked, so the sink sees every channel's messages in offset order and a concurrent
//! `history` never sees a message the sink has not.

use super::{
    ChannelEngine, EngineError, EnginePublication, History, HistoryLimits, Sink, new_epoch, now_ms,
};
use bytes::Bytes;
use marquee_protocol::StreamPosition;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

const SHARDS: usize = 32;

/// One channel's stream.
#[derive(Debug)]
struct Stream {
    name: Arc<str>,
    epoch: Arc<str>,
    /// Offset of the newest message (0 before the first).
    top: u64,
    /// `(offset, published_at_ms, data)`, oldest first; offsets are contiguous.
    entries: VecDeque<(u64, u64, Bytes)>,
}

impl Stream {
    fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            epoch: new_epoch().into(),
            top: 0,
            entries: VecDeque::new(),
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
type Shard = HashMap<Box<str>, Stream>;

fn stream_mut<'a>(shard: &'a mut Shard, channel: &str) -> &'a mut Stream {
    if !shard.contains_key(channel) {
        shard.insert(channel.into(), Stream::new(channel));
    }
    shard.get_mut(channel).expect("inserted above")
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
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            limits,
            sink,
        }
    }

    fn shard(&self, channel: &str) -> &Mutex<Shard> {
        let mut h = DefaultHasher::new();
        channel.hash(&mut h);
        &self.shards[h.finish() as usize % SHARDS]
    }

    /// Forgets every stream, as a restarted store would: later reads see new epochs.
    pub fn clear(&self) {
        for shard in &*self.shards {
            shard.lock().expect("memory engine lock").clear();
        }
    }
}

impl ChannelEngine for MemoryEngine {
    async fn publish(&self, channel: &str, data: Bytes) -> Result<StreamPosition, EngineError> {
        let now = now_ms();
        let mut shard = self.shard(channel).lock().expect("memory engine lock");
        let stream = stream_mut(&mut shard, channel);
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
        let stream = stream_mut(&mut shard, channel);
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
