//! The node's local subscriptions: which connections listen to which channel.
//!
//! The registry is the engine's [`Sink`]: every publication for a channel with local subscribers
//! is encoded at most once per codec ([`Delivery`]) and offered to each subscriber's bounded
//! queue without waiting. A full queue never blocks the engine: coalescible messages are
//! dropped and the connection is told to resync that channel; anything else marks the
//! connection a slow consumer, and it closes.

use crate::engine::{EnginePublication, Heads, Sink};
use crate::metrics::METRICS;
use axum::extract::ws::{Message, Utf8Bytes};
use bytes::Bytes;
use marquee_protocol::{Channel, Codec, Publication, ServerMessage};
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{Notify, mpsc};

const SHARDS: usize = 64;

/// A publication on its way to local subscribers, with its frames encoded lazily, once per
/// codec, and shared by every connection.
#[derive(Debug)]
pub struct Delivery {
    /// The publication.
    pub publication: EnginePublication,
    json: OnceLock<Option<Message>>,
    msgpack: OnceLock<Option<Message>>,
}

impl Delivery {
    /// Wraps a publication.
    pub fn new(publication: EnginePublication) -> Self {
        Self {
            publication,
            json: OnceLock::new(),
            msgpack: OnceLock::new(),
        }
    }

    /// The `pub` frame for a codec; `None` if the stored payload is not valid JSON.
    pub fn frame(&self, codec: Codec) -> Option<Message> {
        match codec {
            Codec::Json => self.json.get_or_init(|| self.encode_json()).clone(),
            Codec::MsgPack => self.msgpack.get_or_init(|| self.encode_msgpack()).clone(),
        }
    }

    /// Splices the stored JSON payload into the frame without re-parsing it. Channel names are
    /// validated to need no escaping and epochs are hex, but both go through the JSON string
    /// encoder anyway.
    fn encode_json(&self) -> Option<Message> {
        let p = &self.publication;
        let data = std::str::from_utf8(&p.data).ok()?;
        let channel = serde_json::to_string(&*p.channel).ok()?;
        let epoch = serde_json::to_string(&*p.epoch).ok()?;
        let text = format!(
            r#"{{"type":"pub","channel":{channel},"epoch":{epoch},"offset":{},"data":{data}}}"#,
            p.offset
        );
        Some(Message::Text(Utf8Bytes::from(text)))
    }

    fn encode_msgpack(&self) -> Option<Message> {
        let p = &self.publication;
        let data = serde_json::from_slice(&p.data).ok()?;
        let msg = ServerMessage::Pub(Publication {
            channel: p.channel.to_string(),
            epoch: p.epoch.to_string(),
            offset: p.offset,
            data,
        });
        match Codec::MsgPack.encode(&msg).ok()? {
            marquee_protocol::Frame::Binary(b) => Some(Message::Binary(Bytes::from(b))),
            marquee_protocol::Frame::Text(_) => None,
        }
    }
}

/// What the hub hands a connection through its queue.
#[derive(Debug)]
pub enum Outbound {
    /// A publication on a channel the connection subscribed to.
    Pub(Arc<Delivery>),
}

/// Signal bits a connection picks up out of band (they must get through even when its queue
/// is full).
pub mod signal {
    /// Coalescible messages were dropped; see `ConnShared::take_dropped`.
    pub const DROPPED: u8 = 1;
    /// A non-coalescible message did not fit: close as a slow consumer.
    pub const SLOW: u8 = 2;
    /// The engine feed was interrupted: every subscription the connection did not send up to
    /// its channel's head (`Registry::heads`) must resync.
    pub const INTERRUPTED: u8 = 4;
    /// A latest-value push is waiting; see `ConnShared::take_latest`.
    pub const LATEST: u8 = 8;
    /// A sign-in session of the connection's user was ended: the connection checks whether
    /// it was its own.
    pub const REVIEW: u8 = 16;
}

/// The part of a connection the hub can reach: its queue and its signals.
#[derive(Debug)]
pub struct ConnShared {
    /// Unique within the process.
    pub id: u64,
    /// The bounded outbound queue.
    tx: mpsc::Sender<Outbound>,
    /// Pending `signal` bits.
    flags: AtomicU8,
    /// Wakes the connection task when a flag is set.
    pub notify: Notify,
    /// Channels whose messages were dropped since the connection last looked.
    dropped: Mutex<Vec<Arc<str>>>,
    /// Latest-value pushes not yet written, one per key: a newer value replaces an unwritten
    /// older one with the same key (a domain's live state, such as a waiting-room place's
    /// status), so this never holds more than one message per key and a slow connection only
    /// ever gets the latest.
    latest: Mutex<Vec<(Box<str>, ServerMessage)>>,
}

impl ConnShared {
    /// Creates the shared half of a connection with a queue of `capacity` messages.
    pub fn new(id: u64, capacity: usize) -> (Arc<Self>, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let shared = Arc::new(Self {
            id,
            tx,
            flags: AtomicU8::new(0),
            notify: Notify::new(),
            dropped: Mutex::new(Vec::new()),
            latest: Mutex::new(Vec::new()),
        });
        (shared, rx)
    }

    fn raise(&self, flag: u8) {
        if self.flags.fetch_or(flag, Ordering::AcqRel) & flag == 0 {
            self.notify.notify_one();
        }
    }

    /// The pending signal bits, left in place.
    pub fn peek_flags(&self) -> u8 {
        self.flags.load(Ordering::Acquire)
    }

    /// Takes and clears the pending signal bits.
    pub fn take_flags(&self) -> u8 {
        self.flags.swap(0, Ordering::AcqRel)
    }

    /// Takes the channels whose messages were dropped.
    pub fn take_dropped(&self) -> Vec<Arc<str>> {
        std::mem::take(&mut *self.dropped.lock().expect("dropped lock"))
    }

    /// Hands the connection the latest value of `key`, replacing any unwritten one with the
    /// same key. Never blocks and never fills the outbound queue.
    pub fn push_latest(&self, key: &str, message: ServerMessage) {
        let mut latest = self.latest.lock().expect("latest lock");
        match latest.iter_mut().find(|(k, _)| **k == *key) {
            Some(slot) => slot.1 = message,
            None => latest.push((key.into(), message)),
        }
        drop(latest);
        self.raise(signal::LATEST);
    }

    /// Forgets the unwritten latest value of `key`, if any: the caller is answering a request
    /// with a value of `key` computed after it (the answer is written first, the connection
    /// being busy with the request, so the older push would follow it and undo it).
    pub fn discard_latest(&self, key: &str) {
        self.latest
            .lock()
            .expect("latest lock")
            .retain(|(k, _)| **k != *key);
    }

    /// Takes the unwritten latest-value pushes, in the order their keys first came.
    pub fn take_latest(&self) -> Vec<ServerMessage> {
        std::mem::take(&mut *self.latest.lock().expect("latest lock"))
            .into_iter()
            .map(|(_, message)| message)
            .collect()
    }

    fn offer(&self, out: &Arc<Delivery>, coalescible: bool) {
        use mpsc::error::TrySendError;
        match self.tx.try_send(Outbound::Pub(out.clone())) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(_)) if coalescible => {
                METRICS.coalesced.increment(1);
                let channel = &out.publication.channel;
                let mut dropped = self.dropped.lock().expect("dropped lock");
                if !dropped.iter().any(|c| c == channel) {
                    dropped.push(channel.clone());
                }
                drop(dropped);
                self.raise(signal::DROPPED);
            }
            Err(TrySendError::Full(_)) => {
                METRICS.dropped.increment(1);
                self.raise(signal::SLOW);
            }
        }
    }
}

#[derive(Debug, Default)]
struct ChannelEntry {
    subscribers: HashMap<u64, Arc<ConnShared>>,
    /// Whether the engine delivers this channel to the node. Changed only under the hub's
    /// engine-operations lock, so subscribe and unsubscribe calls reach the engine in order.
    engine_subscribed: bool,
}

/// The channels that hash to one shard.
type Shard = HashMap<Arc<str>, ChannelEntry>;

/// Local subscriptions, sharded by channel.
#[derive(Debug)]
pub struct Registry {
    shards: Box<[Mutex<Shard>]>,
    /// Where the channels' streams stood after the latest interruption of the engine feed;
    /// `None` when the engine could not say (or none happened yet).
    heads: Mutex<Option<Arc<Heads>>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            heads: Mutex::new(None),
        }
    }
}

impl Registry {
    fn shard(&self, channel: &str) -> std::sync::MutexGuard<'_, Shard> {
        let mut h = DefaultHasher::new();
        channel.hash(&mut h);
        self.shards[h.finish() as usize % SHARDS]
            .lock()
            .expect("registry lock")
    }

    /// Adds a subscriber. Returns whether the engine already delivers the channel.
    pub fn add(&self, channel: &Channel, conn: &Arc<ConnShared>) -> bool {
        let mut shard = self.shard(channel.as_str());
        let entry = match shard.get_mut(channel.as_str()) {
            Some(entry) => entry,
            None => shard.entry(channel.as_str().into()).or_default(),
        };
        entry.subscribers.insert(conn.id, conn.clone());
        entry.engine_subscribed
    }

    /// Removes a subscriber. Returns whether the channel has no local subscriber left.
    pub fn remove(&self, channel: &str, conn_id: u64) -> bool {
        let mut shard = self.shard(channel);
        match shard.get_mut(channel) {
            Some(entry) => {
                entry.subscribers.remove(&conn_id);
                entry.subscribers.is_empty()
            }
            None => false,
        }
    }

    /// Whether the engine delivers the channel to this node.
    pub fn engine_subscribed(&self, channel: &str) -> bool {
        self.shard(channel)
            .get(channel)
            .is_some_and(|e| e.engine_subscribed)
    }

    /// Records that the engine now delivers the channel. Returns false if the channel lost all
    /// its subscribers meanwhile (the caller should then unsubscribe again).
    pub fn mark_engine_subscribed(&self, channel: &str) -> bool {
        match self.shard(channel).get_mut(channel) {
            Some(entry) => {
                entry.engine_subscribed = true;
                true
            }
            None => false,
        }
    }

    /// Drops the channel's entry if it has no subscribers. Returns whether the engine was
    /// delivering it (and so must be told to stop).
    pub fn remove_if_empty(&self, channel: &str) -> bool {
        let mut shard = self.shard(channel);
        match shard.get(channel) {
            Some(entry) if entry.subscribers.is_empty() => {
                let was = entry.engine_subscribed;
                shard.remove(channel);
                was
            }
            _ => false,
        }
    }

    /// Raises `flag` on every local subscriber of a channel.
    pub fn signal(&self, channel: &str, flag: u8) {
        let subscribers: Vec<Arc<ConnShared>> = match self.shard(channel).get(channel) {
            Some(entry) => entry.subscribers.values().cloned().collect(),
            None => return,
        };
        for conn in subscribers {
            conn.raise(flag);
        }
    }

    /// Where the channels' streams stood once the engine feed resumed after its latest
    /// interruption, read by a connection raised [`signal::INTERRUPTED`]; `None`: unknown, so
    /// every subscription resyncs.
    pub fn heads(&self) -> Option<Arc<Heads>> {
        self.heads.lock().expect("heads lock").clone()
    }

    /// Number of local subscribers of a channel.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.shard(channel)
            .get(channel)
            .map_or(0, |e| e.subscribers.len())
    }
}

impl Sink for Registry {
    fn deliver(&self, publication: EnginePublication) {
        let coalescible = Channel::parse(&publication.channel)
            .map(|c| c.kind().coalescible())
            .unwrap_or(false);
        let shard = self.shard(&publication.channel);
        let Some(entry) = shard.get(&*publication.channel) else {
            return;
        };
        if entry.subscribers.is_empty() {
            return;
        }
        let out = Arc::new(Delivery::new(publication));
        for conn in entry.subscribers.values() {
            conn.offer(&out, coalescible);
        }
    }

    fn interrupted(&self, heads: Option<Heads>) {
        // Stored before any connection is raised, so each one compares against these heads
        // (or later ones).
        *self.heads.lock().expect("heads lock") = heads.map(Arc::new);
        for shard in &*self.shards {
            let shard = shard.lock().expect("registry lock");
            for entry in shard.values() {
                for conn in entry.subscribers.values() {
                    conn.raise(signal::INTERRUPTED);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publication(channel: &str, offset: u64, data: &str) -> EnginePublication {
        EnginePublication {
            channel: channel.into(),
            epoch: "ab".into(),
            offset,
            data: Bytes::copy_from_slice(data.as_bytes()),
            published_at_ms: 0,
        }
    }

    #[test]
    fn the_spliced_json_frame_is_exactly_what_the_protocol_encoder_writes() {
        let out = Delivery::new(publication("seats:e1", 9, r#"{"n":[1,2],"seat":"A-1"}"#));
        let Some(Message::Text(text)) = out.frame(Codec::Json) else {
            panic!("json frames are text");
        };
        let expected = Codec::Json
            .encode(&ServerMessage::Pub(Publication {
                channel: "seats:e1".into(),
                epoch: "ab".into(),
                offset: 9,
                data: serde_json::json!({"seat": "A-1", "n": [1, 2]}),
            }))
            .unwrap();
        assert_eq!(text.as_str().as_bytes(), expected.as_bytes());
    }

    #[test]
    fn a_full_queue_drops_seat_deltas_but_condemns_anything_else() {
        let registry = Registry::default();
        let (conn, _rx) = ConnShared::new(1, 1);
        let seats = Channel::parse("seats:e1").unwrap();
        let inbox = Channel::parse("inbox:u1").unwrap();
        registry.add(&seats, &conn);
        registry.add(&inbox, &conn);

        registry.deliver(publication("seats:e1", 1, "{}"));
        registry.deliver(publication("seats:e1", 2, "{}"));
        assert_eq!(conn.take_flags(), signal::DROPPED);
        assert_eq!(conn.take_dropped(), vec![Arc::<str>::from("seats:e1")]);

        registry.deliver(publication("inbox:u1", 1, "{}"));
        assert_eq!(conn.take_flags(), signal::SLOW);
    }

    #[test]
    fn an_empty_channel_is_removed_and_reports_its_engine_subscription() {
        let registry = Registry::default();
        let (conn, _rx) = ConnShared::new(7, 4);
        let seats = Channel::parse("seats:e1").unwrap();
        assert!(!registry.add(&seats, &conn));
        assert!(registry.mark_engine_subscribed("seats:e1"));
        assert!(registry.remove("seats:e1", 7));
        assert!(registry.remove_if_empty("seats:e1"));
        assert_eq!(registry.subscriber_count("seats:e1"), 0);
        assert!(!registry.mark_engine_subscribed("seats:e1"));
    }
}
