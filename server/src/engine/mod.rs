//! Channel engines: where a channel's offsets, history and cross-node fan-out live.
//!
//! The hub talks to one [`Engine`], which is either the in-process [`memory`] engine (a single
//! node, the default) or the [`redis`] engine (a cluster of nodes sharing one Redis). Both
//! implement [`ChannelEngine`] and pass the same conformance suite
//! (`server/tests/it/engine_conformance.rs`).
//!
//! An engine assigns every publication on a channel the next offset of the channel's current
//! epoch, appends it to a bounded history (by count and by age), and hands it to every node that
//! subscribed to the channel, through that node's [`Sink`], in offset order.

pub mod memory;
pub mod redis;

use bytes::Bytes;
use marquee_protocol::StreamPosition;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// A publication as engines carry it: the payload stays raw JSON, so each node encodes it into
/// frames once, not once per subscriber.
#[derive(Debug, Clone)]
pub struct EnginePublication {
    /// Channel name.
    pub channel: Arc<str>,
    /// Epoch of the channel's stream.
    pub epoch: Arc<str>,
    /// Offset in the epoch.
    pub offset: u64,
    /// Payload, as JSON text.
    pub data: Bytes,
    /// Wall-clock time the engine accepted it (unix milliseconds), for latency metrics.
    pub published_at_ms: u64,
}

/// What `history` found.
#[derive(Debug, Clone)]
pub struct History {
    /// The channel's current position (the offset of its newest message).
    pub position: StreamPosition,
    /// Whether every message after `since` is in `publications`. Always false without `since`.
    pub recovered: bool,
    /// The messages after `since`, in order, when `recovered`.
    pub publications: Vec<EnginePublication>,
}

/// How long an engine keeps the stream of a channel that holds no message: one that was only
/// read (a subscriber arrived before anything was published) or whose history has aged out.
/// A subscription to a name nobody publishes on therefore leaves nothing behind for long: the
/// state any client can create is bounded by its subscribe rate times this.
pub const IDLE_STREAM_TTL: Duration = Duration::from_secs(10 * 60);

/// The settings of what every process that publishes keeps per channel: hub nodes and the
/// booking workers (whose outbox relay publishes too) must agree, or a worker's publish would
/// trim a channel's history to other limits than a node's.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
pub struct HistoryArgs {
    /// Messages kept per channel for resume.
    #[arg(long, env = "MARQUEE_HISTORY_SIZE", default_value_t = 1000)]
    pub history_size: usize,

    /// How long messages are kept for resume.
    #[arg(long, env = "MARQUEE_HISTORY_TTL", default_value = "5m", value_parser = crate::clock::parse_duration)]
    pub history_ttl: Duration,
}

impl HistoryArgs {
    /// What channel engines keep for resume.
    pub fn limits(&self) -> HistoryLimits {
        HistoryLimits {
            size: self.history_size,
            ttl: self.history_ttl,
        }
    }
}

/// Limits on what an engine remembers per channel.
#[derive(Debug, Clone, Copy)]
pub struct HistoryLimits {
    /// Messages kept per channel.
    pub size: usize,
    /// How long a message stays recoverable.
    pub ttl: Duration,
}

/// Receives the publications of the channels a node subscribed to.
///
/// Called from the engine's delivery path, in offset order per channel; implementations must
/// not block (they hand messages to bounded per-connection queues).
pub trait Sink: Send + Sync + 'static {
    /// A publication on a channel this node subscribed to.
    fn deliver(&self, publication: EnginePublication);
    /// The node's feed from the engine was interrupted (a reconnect, a lagging buffer), so
    /// publications may have been missed on any channel. `heads`, when the engine could read
    /// them once the feed was flowing again, says where each channel's stream stood then: a
    /// subscriber that was sent every message up to its channel's head missed nothing (all
    /// later ones come through the feed). Every other subscriber, and every subscriber when
    /// `heads` is `None`, must resync.
    fn interrupted(&self, heads: Option<Heads>);
}

/// Where the streams of a node's channels stood, read just after its feed resumed: each
/// channel's newest position. A channel that has no stream any more is absent.
pub type Heads = HashMap<Arc<str>, StreamPosition>;

/// An engine failure. Callers report it as `unavailable`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The backing store could not be reached or answered with an error.
    #[error("channel engine unavailable: {0}")]
    Unavailable(String),
    /// The backing store answered with something this engine did not write.
    #[error("channel engine returned unexpected data: {0}")]
    Corrupt(String),
}

/// The operations every channel engine provides.
pub trait ChannelEngine: Send + Sync + 'static {
    /// Appends `data` (JSON text) to the channel, assigning the next offset, and fans it out to
    /// every subscribed node. Returns the message's position.
    fn publish(
        &self,
        channel: &str,
        data: Bytes,
    ) -> impl Future<Output = Result<StreamPosition, EngineError>> + Send;

    /// As [`publish`](Self::publish), unless a publication with this `id` was made on the
    /// channel within the last minute: then nothing is published and that one's position is
    /// returned. A publisher that never learned whether a publish took effect (a timeout: the
    /// request may still be carried out) sends it again under the same id, and it takes effect
    /// once. The outbox relay publishes every message this way.
    fn publish_once(
        &self,
        channel: &str,
        data: Bytes,
        id: &str,
    ) -> impl Future<Output = Result<StreamPosition, EngineError>> + Send;

    /// The channel's current position and, when `since` is given and still covered by history,
    /// every message after it.
    fn history(
        &self,
        channel: &str,
        since: Option<&StreamPosition>,
    ) -> impl Future<Output = Result<History, EngineError>> + Send;

    /// Starts delivering the channel's publications to this node's sink. Returns once delivery
    /// is guaranteed for every publication accepted afterwards.
    fn subscribe(&self, channel: &str) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Stops delivering the channel to this node.
    fn unsubscribe(&self, channel: &str) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Whether the engine can serve requests right now.
    fn ready(&self) -> impl Future<Output = Result<(), EngineError>> + Send;
}

/// The engine a node runs on.
#[derive(Debug, Clone)]
pub enum Engine {
    /// In-process, single node.
    Memory(Arc<memory::MemoryEngine>),
    /// Redis-backed, any number of nodes.
    Redis(Arc<redis::RedisEngine>),
}

impl Engine {
    /// The engine's name, as shown in logs and `/ready`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Redis(_) => "redis",
        }
    }
}

impl ChannelEngine for Engine {
    async fn publish(&self, channel: &str, data: Bytes) -> Result<StreamPosition, EngineError> {
        match self {
            Self::Memory(e) => e.publish(channel, data).await,
            Self::Redis(e) => e.publish(channel, data).await,
        }
    }

    async fn publish_once(
        &self,
        channel: &str,
        data: Bytes,
        id: &str,
    ) -> Result<StreamPosition, EngineError> {
        match self {
            Self::Memory(e) => e.publish_once(channel, data, id).await,
            Self::Redis(e) => e.publish_once(channel, data, id).await,
        }
    }

    async fn history(
        &self,
        channel: &str,
        since: Option<&StreamPosition>,
    ) -> Result<History, EngineError> {
        match self {
            Self::Memory(e) => e.history(channel, since).await,
            Self::Redis(e) => e.history(channel, since).await,
        }
    }

    async fn subscribe(&self, channel: &str) -> Result<(), EngineError> {
        match self {
            Self::Memory(e) => e.subscribe(channel).await,
            Self::Redis(e) => e.subscribe(channel).await,
        }
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), EngineError> {
        match self {
            Self::Memory(e) => e.unsubscribe(channel).await,
            Self::Redis(e) => e.unsubscribe(channel).await,
        }
    }

    async fn ready(&self) -> Result<(), EngineError> {
        match self {
            Self::Memory(e) => e.ready().await,
            Self::Redis(e) => e.ready().await,
        }
    }
}

/// A fresh random epoch: 16 hex digits.
pub(crate) fn new_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Current unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
