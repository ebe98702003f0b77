//! The command queue: where hub nodes put purchase commands and workers take them, plus the
//! per-event leases that make one worker the owner of an event at a time.
//!
//! Two implementations, chosen like the channel engine:
//! - `memory`: in-process, for a single node running its own workers (`serve --workers N`).
//! - `redis`: one Redis stream per event (`P:cmd:{event}`) read by the consumer group
//!   `workers`, a set of events that have streams (`P:cmd:events`), and a lease key per event
//!   (`P:lease:{event}`, `SET NX PX`, renewed by a compare-and-extend script). Delivery is
//!   at-least-once: an entry stays pending until its owner acknowledges it after the batch that
//!   contains it committed, and a new owner re-claims every pending entry of the event first.
//!
//! Entries are acknowledged and then deleted, so a stream holds only unfinished work. That
//! work is capped: an event with [`MAX_BACKLOG`] commands not yet finished refuses the next
//! one ([`QueueError::Full`], which buyers get as `over_capacity`) rather than grow without
//! bound while its owner is stuck. A refusal, not `XADD MAXLEN ~` trimming: trimming would drop
//! accepted commands nobody decided, each a result its buyer waits for forever.

use fred::prelude::{SetsInterface, StreamsInterface};
use fred::types::scripts::Script;
use fred::types::streams::XReadResponse;
use marquee_protocol::booking::Command;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use uuid::Uuid;

/// A command as it travels on the queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// The buyer's tenant.
    pub tenant: Uuid,
    /// The buyer.
    pub user: String,
    /// The buyer's inbox channel, where the result goes.
    pub inbox: String,
    /// The buyer's idempotency key.
    pub request_id: String,
    /// The command.
    pub command: Command,
    /// The waiting-room admission presented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission: Option<String>,
    /// When the hub accepted it (unix ms), for latency metrics.
    pub accepted_at_ms: u64,
}

/// Stream entries as fred returns them: id and field map.
type RawEntries = Vec<(String, HashMap<String, String>)>;

/// An entry read from the queue.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The queue's id for the entry (a stream id for Redis).
    pub id: String,
    /// The command.
    pub envelope: Envelope,
}

/// Most commands an event's queue holds unfinished (queued or delivered, not acknowledged).
pub const MAX_BACKLOG: usize = 100_000;

/// A queue operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// Redis could not be reached or refused the command.
    #[error("command queue unavailable: {0}")]
    Unavailable(String),
    /// The event already has [`MAX_BACKLOG`] commands unfinished.
    #[error("the event's command queue is full")]
    Full,
}

fn unavailable(e: impl std::fmt::Display) -> QueueError {
    crate::metrics::METRICS.redis_errors.increment(1);
    QueueError::Unavailable(e.to_string())
}

/// The queue a node or worker uses.
#[derive(Debug, Clone)]
pub enum CommandQueue {
    /// In-process.
    Memory(Arc<MemoryQueue>),
    /// Redis Streams.
    Redis(Arc<RedisQueue>),
}

impl CommandQueue {
    /// Appends a command to its event's queue. Returns the entry id.
    pub async fn enqueue(&self, event: Uuid, envelope: &Envelope) -> Result<String, QueueError> {
        match self {
            Self::Memory(q) => q.enqueue(event, envelope.clone()),
            Self::Redis(q) => q.enqueue(event, envelope).await,
        }
    }

    /// Events that have (or had) commands queued: the ones workers compete to own.
    pub async fn events(&self) -> Result<Vec<Uuid>, QueueError> {
        match self {
            Self::Memory(q) => Ok(q.events()),
            Self::Redis(q) => q.events().await,
        }
    }

    /// Registers an event so workers own it even before a command arrives (it has holds to
    /// expire).
    pub async fn register(&self, event: Uuid) -> Result<(), QueueError> {
        match self {
            Self::Memory(q) => {
                q.queue(event);
                Ok(())
            }
            Self::Redis(q) => q.register(event).await,
        }
    }

    /// Tries to become (or stay) the owner of `event` for `ttl`.
    pub async fn lease(
        &self,
        event: Uuid,
        worker: &str,
        ttl: Duration,
    ) -> Result<bool, QueueError> {
        match self {
            Self::Memory(q) => Ok(q.lease(event, worker, ttl)),
            Self::Redis(q) => q.lease(event, worker, ttl).await,
        }
    }

    /// Gives up ownership of `event` if `worker` holds it.
    pub async fn unlease(&self, event: Uuid, worker: &str) -> Result<(), QueueError> {
        match self {
            Self::Memory(q) => {
                q.unlease(event, worker);
                Ok(())
            }
            Self::Redis(q) => q.unlease(event, worker).await,
        }
    }

    /// A reader for one event, used by its owner.
    pub async fn reader(&self, event: Uuid, worker: &str) -> Result<Reader, QueueError> {
        match self {
            Self::Memory(q) => Ok(Reader::Memory {
                queue: q.clone(),
                event,
            }),
            Self::Redis(q) => q.reader(event, worker).await,
        }
    }
}

/// Reads one event's commands for its owner.
#[derive(Debug)]
pub enum Reader {
    /// In-process.
    Memory {
        /// The queue.
        queue: Arc<MemoryQueue>,
        /// The event.
        event: Uuid,
    },
    /// Redis, with a connection of its own (reads block).
    Redis {
        /// Shared settings and the non-blocking client.
        queue: Arc<RedisQueue>,
        /// This reader's connection.
        client: fred::clients::Client,
        /// The event.
        event: Uuid,
        /// The event's stream key.
        key: String,
        /// Consumer name (the worker).
        consumer: String,
    },
}

impl Reader {
    /// Takes over every entry of the event that was delivered but never acknowledged (its
    /// previous owner died or lost the lease).
    pub async fn claim_pending(&self) -> Result<Vec<Entry>, QueueError> {
        match self {
            Self::Memory { queue, event } => Ok(queue.claim_pending(*event)),
            Self::Redis {
                queue,
                client,
                event,
                key,
                consumer,
            } => match queue.claim_pending(client, key, consumer).await {
                Err(QueueError::Unavailable(e)) if e.contains("NOGROUP") => {
                    queue.recreate(*event).await?;
                    queue.claim_pending(client, key, consumer).await
                }
                claimed => claimed,
            },
        }
    }

    /// Up to `max` new entries, waiting at most `wait` for the first.
    pub async fn read(&self, max: usize, wait: Duration) -> Result<Vec<Entry>, QueueError> {
        match self {
            Self::Memory { queue, event } => Ok(queue.read(*event, max, wait).await),
            Self::Redis {
                queue,
                client,
                event,
                key,
                consumer,
            } => match RedisQueue::read(client, key, consumer, max, wait).await {
                Err(QueueError::Unavailable(e)) if e.contains("NOGROUP") => {
                    queue.recreate(*event).await?;
                    Ok(Vec::new())
                }
                read => read,
            },
        }
    }

    /// Acknowledges entries whose batch committed.
    pub async fn ack(&self, ids: &[String]) -> Result<(), QueueError> {
        if ids.is_empty() {
            return Ok(());
        }
        match self {
            Self::Memory { queue, event } => {
                queue.ack(*event, ids);
                Ok(())
            }
            Self::Redis { client, key, .. } => RedisQueue::ack(client, key, ids).await,
        }
    }
}

/// Random per process, so in-process entry ids never repeat across restarts.
static BOOT: std::sync::LazyLock<u64> = std::sync::LazyLock::new(rand::random);

/// The in-process queue.
#[derive(Debug)]
pub struct MemoryQueue {
    inner: Mutex<MemoryInner>,
    max_backlog: usize,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            max_backlog: MAX_BACKLOG,
        }
    }
}

impl MemoryQueue {
    /// The queue, with another cap on each event's unfinished commands than [`MAX_BACKLOG`].
    #[must_use]
    pub fn with_max_backlog(mut self, max: usize) -> Self {
        self.max_backlog = max;
        self
    }
}

#[derive(Debug, Default)]
struct MemoryInner {
    next_id: u64,
    events: HashMap<Uuid, Arc<EventQueue>>,
    leases: HashMap<Uuid, (String, Instant)>,
}

#[derive(Debug, Default)]
struct EventQueue {
    entries: Mutex<EventEntries>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct EventEntries {
    /// Not yet delivered.
    ready: VecDeque<Entry>,
    /// Delivered, not yet acknowledged, in delivery order.
    pending: VecDeque<Entry>,
}

impl MemoryQueue {
    fn queue(&self, event: Uuid) -> Arc<EventQueue> {
        self.inner
            .lock()
            .expect("queue lock")
            .events
            .entry(event)
            .or_default()
            .clone()
    }

    fn enqueue(&self, event: Uuid, envelope: Envelope) -> Result<String, QueueError> {
        let queue = self.queue(event);
        let mut entries = queue.entries.lock().expect("queue lock");
        if entries.ready.len() + entries.pending.len() >= self.max_backlog {
            return Err(QueueError::Full);
        }
        let id = {
            let mut inner = self.inner.lock().expect("queue lock");
            inner.next_id += 1;
            // Unique across restarts too: processed requests remember the entry id, and a
            // restarted process must never reuse one (it would read as a redelivery).
            format!("m{:016x}-{}", *BOOT, inner.next_id)
        };
        entries.ready.push_back(Entry {
            id: id.clone(),
            envelope,
        });
        drop(entries);
        queue.notify.notify_one();
        Ok(id)
    }

    fn events(&self) -> Vec<Uuid> {
        self.inner
            .lock()
            .expect("queue lock")
            .events
            .keys()
            .copied()
            .collect()
    }

    fn lease(&self, event: Uuid, worker: &str, ttl: Duration) -> bool {
        let mut inner = self.inner.lock().expect("queue lock");
        let now = Instant::now();
        match inner.leases.get(&event) {
            Some((owner, until)) if owner != worker && *until > now => false,
            _ => {
                inner.leases.insert(event, (worker.to_owned(), now + ttl));
                true
            }
        }
    }

    fn unlease(&self, event: Uuid, worker: &str) {
        let mut inner = self.inner.lock().expect("queue lock");
        if inner.leases.get(&event).is_some_and(|(w, _)| w == worker) {
            inner.leases.remove(&event);
        }
    }

    fn claim_pending(&self, event: Uuid) -> Vec<Entry> {
        let queue = self.queue(event);
        let entries = queue.entries.lock().expect("queue lock");
        entries.pending.iter().cloned().collect()
    }

    async fn read(&self, event: Uuid, max: usize, wait: Duration) -> Vec<Entry> {
        let queue = self.queue(event);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = queue.notify.notified();
            {
                let mut entries = queue.entries.lock().expect("queue lock");
                let n = entries.ready.len().min(max);
                if n > 0 {
                    let batch: Vec<Entry> = entries.ready.drain(..n).collect();
                    entries.pending.extend(batch.iter().cloned());
                    if !entries.ready.is_empty() {
                        queue.notify.notify_one();
                    }
                    return batch;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Vec::new();
            }
        }
    }

    /// Entries of an event not yet acknowledged (waiting or being processed).
    pub fn backlog(&self, event: Uuid) -> usize {
        let queue = self.queue(event);
        let entries = queue.entries.lock().expect("queue lock");
        entries.ready.len() + entries.pending.len()
    }

    fn ack(&self, event: Uuid, ids: &[String]) {
        let queue = self.queue(event);
        let ids: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
        let mut entries = queue.entries.lock().expect("queue lock");
        entries.pending.retain(|e| !ids.contains(e.id.as_str()));
    }
}

const GROUP: &str = "workers";

/// Appends a command unless the stream already holds `ARGV[1]` unfinished entries (answers
/// nil then). The stream exists: `register` created it with its group.
/// Appends a command unless the event's backlog is full. A stream that does not exist (Redis
/// lost it: a flush, a restart without persistence, a failover) is created again with its
/// group first, and the answer says so (`{id, 1}`), so the caller registers the event again.
const ENQUEUE_LUA: &str = r"
local created = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[3], '$', 'MKSTREAM')
  created = 1
end
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
return {redis.call('XADD', KEYS[1], '*', 'c', ARGV[2]), created}
";

/// The Redis Streams queue.
pub struct RedisQueue {
    client: fred::clients::Client,
    /// Where readers open their own connections (their reads block).
    url: String,
    prefix: String,
    lease_script: Script,
    unlease_script: Script,
    enqueue_script: Script,
    max_backlog: usize,
    /// Events this process already registered, so enqueueing costs one round trip (the
    /// enqueue script says when Redis forgot one).
    registered: Mutex<std::collections::HashSet<Uuid>>,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisQueue {
    /// The queue, with another cap on each event's unfinished commands than [`MAX_BACKLOG`].
    #[must_use]
    pub fn with_max_backlog(mut self, max: usize) -> Self {
        self.max_backlog = max;
        self
    }

    /// Connects to Redis; keys go under `prefix` (shared with the channel engine's).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, QueueError> {
        let client = crate::redis::client(url).await.map_err(unavailable)?;
        Ok(Self {
            client,
            url: url.to_owned(),
            prefix: prefix.to_owned(),
            lease_script: Script::from_lua(crate::redis::LEASE_LUA),
            unlease_script: Script::from_lua(crate::redis::UNLEASE_LUA),
            enqueue_script: Script::from_lua(ENQUEUE_LUA),
            max_backlog: MAX_BACKLOG,
            registered: Mutex::new(std::collections::HashSet::new()),
        })
    }

    fn stream_key(&self, event: Uuid) -> String {
        format!("{}:cmd:{{{event}}}", self.prefix)
    }

    fn events_key(&self) -> String {
        format!("{}:cmd:events", self.prefix)
    }

    fn lease_key(&self, event: Uuid) -> String {
        format!("{}:lease:{{{event}}}", self.prefix)
    }

    /// Registers `event` unless this process did already (the enqueue path).
    async fn register_once(&self, event: Uuid) -> Result<(), QueueError> {
        if self
            .registered
            .lock()
            .expect("registered lock")
            .contains(&event)
        {
            return Ok(());
        }
        self.register(event).await
    }

    /// Creates the event's stream and group unless they exist, and lists the event among
    /// those workers own. Asks Redis every time: Redis may have lost them since.
    async fn register(&self, event: Uuid) -> Result<(), QueueError> {
        self.create_group(event, "$").await?;
        let () = self
            .client
            .sadd(self.events_key(), event.to_string())
            .await
            .map_err(unavailable)?;
        self.registered
            .lock()
            .expect("registered lock")
            .insert(event);
        Ok(())
    }

    /// Creates the event's stream (if need be) and its group, reading from `from` (`$`: what
    /// comes next; `0`: everything the stream holds).
    async fn create_group(&self, event: Uuid, from: &str) -> Result<(), QueueError> {
        let key = self.stream_key(event);
        // MKSTREAM creates the stream with the group; BUSYGROUP means it exists already.
        let created: Result<(), _> = self.client.xgroup_create(&key, GROUP, from, true).await;
        if let Err(e) = created
            && !e.details().contains("BUSYGROUP")
        {
            return Err(unavailable(e));
        }
        Ok(())
    }

    /// A reader found the event's group gone (Redis lost it): create it again over whatever
    /// the stream holds, and register the event again.
    async fn recreate(&self, event: Uuid) -> Result<(), QueueError> {
        tracing::warn!(%event, "the command stream's group is gone (Redis lost it); creating it again");
        self.create_group(event, "0").await?;
        self.register(event).await
    }

    async fn enqueue(&self, event: Uuid, envelope: &Envelope) -> Result<String, QueueError> {
        self.register_once(event).await?;
        let body = serde_json::to_string(envelope).expect("an envelope always serializes");
        let added: Option<(String, i64)> = self
            .enqueue_script
            .evalsha_with_reload(
                &self.client,
                vec![self.stream_key(event)],
                vec![self.max_backlog.to_string(), body, GROUP.to_owned()],
            )
            .await
            .map_err(unavailable)?;
        let (id, created) = added.ok_or(QueueError::Full)?;
        if created == 1 {
            // Redis had lost the stream: workers must find the event again.
            tracing::warn!(%event, "the command stream was gone (Redis lost it); created it again");
            self.register(event).await?;
        }
        Ok(id)
    }

    async fn events(&self) -> Result<Vec<Uuid>, QueueError> {
        let members: Vec<String> = self
            .client
            .smembers(self.events_key())
            .await
            .map_err(unavailable)?;
        Ok(members
            .iter()
            .filter_map(|m| Uuid::parse_str(m).ok())
            .collect())
    }

    async fn lease(&self, event: Uuid, worker: &str, ttl: Duration) -> Result<bool, QueueError> {
        let got: i64 = self
            .lease_script
            .evalsha_with_reload(
                &self.client,
                vec![self.lease_key(event)],
                vec![worker.to_owned(), ttl.as_millis().to_string()],
            )
            .await
            .map_err(unavailable)?;
        Ok(got == 1)
    }

    async fn unlease(&self, event: Uuid, worker: &str) -> Result<(), QueueError> {
        let _: i64 = self
            .unlease_script
            .evalsha_with_reload(
                &self.client,
                vec![self.lease_key(event)],
                vec![worker.to_owned()],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn reader(self: &Arc<Self>, event: Uuid, worker: &str) -> Result<Reader, QueueError> {
        self.register(event).await?;
        let client = crate::redis::client(&self.url).await.map_err(unavailable)?;
        Ok(Reader::Redis {
            queue: self.clone(),
            client,
            event,
            key: self.stream_key(event),
            consumer: worker.to_owned(),
        })
    }

    fn entries(raw: RawEntries) -> Vec<Entry> {
        raw.into_iter()
            .filter_map(|(id, fields)| {
                let body = fields.get("c")?;
                match serde_json::from_str(body) {
                    Ok(envelope) => Some(Entry { id, envelope }),
                    Err(e) => {
                        tracing::error!(%id, error = %e, "dropping an unreadable queue entry");
                        None
                    }
                }
            })
            .collect()
    }

    async fn claim_pending(
        &self,
        client: &fred::clients::Client,
        key: &str,
        consumer: &str,
    ) -> Result<Vec<Entry>, QueueError> {
        let mut out = Vec::new();
        let mut cursor = "0-0".to_owned();
        loop {
            let (next, raw): (String, RawEntries) = client
                .xautoclaim_values(key, GROUP, consumer, 0, cursor.as_str(), Some(1000), false)
                .await
                .map_err(unavailable)?;
            let done = raw.is_empty() || next == "0-0";
            out.extend(Self::entries(raw));
            if done {
                return Ok(out);
            }
            cursor = next;
        }
    }

    async fn read(
        client: &fred::clients::Client,
        key: &str,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Entry>, QueueError> {
        let value: fred::types::Value = client
            .xreadgroup(
                GROUP,
                consumer,
                Some(max as u64),
                Some(wait.as_millis().max(1) as u64),
                false,
                key,
                ">",
            )
            .await
            .map_err(unavailable)?;
        // A read that times out answers nil, which is no stream response at all.
        if value.is_null() {
            return Ok(Vec::new());
        }
        let response: XReadResponse<String, String, String, String> =
            value.into_xread_response().map_err(unavailable)?;
        Ok(response.into_values().flat_map(Self::entries).collect())
    }

    async fn ack(
        client: &fred::clients::Client,
        key: &str,
        ids: &[String],
    ) -> Result<(), QueueError> {
        let pipeline = client.pipeline();
        let () = pipeline
            .xack(key, GROUP, ids.to_vec())
            .await
            .map_err(unavailable)?;
        let () = pipeline
            .xdel(key, ids.to_vec())
            .await
            .map_err(unavailable)?;
        let _: Vec<fred::types::Value> = pipeline.all().await.map_err(unavailable)?;
        Ok(())
    }
}
