//! The hub: the realtime transport. It knows connections and channels, not what they carry.
//!
//! It keeps connecting (the authenticated upgrade, admission of new connections), token lapse
//! and refresh, heartbeats, rate limits, batched writes, subscribe / unsubscribe / resume and
//! snapshots. Domains plug in what they answer ([`handler`]): a request handler per request
//! kind, a subscription policy per channel kind, a snapshot provider per channel kind, and
//! hooks told when a connection closes. No part of the hub names a domain.
//!
//! - [`registry`] holds which connection listens to which channel and fans publications out to
//!   their bounded queues.
//! - [`connection`] runs one WebSocket: requests, pushes, heartbeats, token lapse, limits.
//! - [`handler`]: the traits domains implement to plug in.
//! - [`http`]: the `/ws` upgrade and `POST /internal/publish`, and the hub's settings.
//!
//! # Subscribe and resume
//!
//! A subscription first joins the registry, so every publication from then on queues up for the
//! connection, and only then asks the engine for history (or a snapshot). The connection sends
//! the reply and the replayed messages, and from its queue passes on exactly the messages that
//! follow the last one it sent: offsets it has already sent are skipped, and a gap or an epoch
//! change turns into a `resync` instead of a silent loss.

pub mod connection;
pub mod handler;
pub mod http;
pub mod registry;

use crate::auth::Identity;
use crate::engine::{ChannelEngine, Engine, EngineError, EnginePublication};
use crate::metrics::METRICS;
use bytes::Bytes;
use futures_util::future::BoxFuture;
pub use handler::{
    CloseHook, ConnectionLog, PublishPolicy, Refusal, RequestHandler, Session, SubscribePolicy,
};
use marquee_protocol::{Channel, ChannelKind, RequestKind, StreamPosition};
use registry::{ConnShared, Registry};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Provides the current state of a channel, so a subscriber can start from a snapshot and then
/// receive exactly the deltas after it.
pub trait SnapshotProvider: Send + Sync + 'static {
    /// The channel's state and the stream position it corresponds to: the snapshot includes
    /// every message up to and including that offset, and none after. The state must not be
    /// JSON `null` (on the wire that reads as "no snapshot").
    fn snapshot<'a>(
        &'a self,
        channel: &'a Channel,
    ) -> BoxFuture<'a, Result<(Value, StreamPosition), HubError>>;
}

/// A hub operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The engine could not be reached.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A snapshot provider failed.
    #[error("snapshot unavailable: {0}")]
    Snapshot(String),
}

/// How a subscription starts.
#[derive(Debug)]
pub struct Subscription {
    /// The position after which every message follows.
    pub position: StreamPosition,
    /// Whether the subscriber's `since` was honoured.
    pub recovered: bool,
    /// The channel's state at `position`, when it has a snapshot provider and was not recovered.
    pub snapshot: Option<Value>,
    /// Messages after the subscriber's `since` (or after the snapshot), to send before any live
    /// message.
    pub replay: Vec<EnginePublication>,
}

/// Handle to the node's hub. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    registry: Arc<Registry>,
    engine: Engine,
    /// Serialises engine subscribe/unsubscribe calls so they reach the engine in the order the
    /// registry decided them (a late unsubscribe must never undo a newer subscribe). One lock
    /// for the node, on purpose: it also paces new connections' inbox subscribes, one engine
    /// round trip at a time. With a lock per channel hash (64 at once) the full-size onsale
    /// without faults sold 518 tickets instead of 10,039 (BENCHMARKS.md, runs 19 and 20): the
    /// welcomes it let through at once crowded Redis and the nodes' runtimes for everyone.
    engine_ops: tokio::sync::Mutex<()>,
    snapshots: RwLock<HashMap<ChannelKind, Arc<dyn SnapshotProvider>>>,
    /// What domains answer, per request kind.
    handlers: RwLock<HashMap<RequestKind, Arc<dyn RequestHandler>>>,
    /// Who may follow which channels, per channel kind (the inbox is the hub's own).
    policies: RwLock<HashMap<ChannelKind, Arc<dyn SubscribePolicy>>>,
    /// Told when a connection closes.
    close_hooks: RwLock<Vec<Arc<dyn CloseHook>>>,
    /// Who may publish through `POST /internal/publish`, when anyone can tell.
    publishers: RwLock<Option<Arc<dyn PublishPolicy>>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("engine", &self.inner.engine.name())
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// Creates a hub over an engine whose sink is `registry`.
    pub fn new(registry: Arc<Registry>, engine: Engine) -> Self {
        Self {
            inner: Arc::new(HubInner {
                registry,
                engine,
                engine_ops: tokio::sync::Mutex::new(()),
                snapshots: RwLock::new(HashMap::new()),
                handlers: RwLock::new(HashMap::new()),
                policies: RwLock::new(HashMap::new()),
                close_hooks: RwLock::new(Vec::new()),
                publishers: RwLock::new(None),
            }),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The local registry.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Registers the snapshot provider for every channel of a kind.
    pub fn register_snapshot(&self, kind: ChannelKind, provider: Arc<dyn SnapshotProvider>) {
        self.inner
            .snapshots
            .write()
            .expect("snapshot lock")
            .insert(kind, provider);
    }

    /// Registers the handler of every request of a kind (replacing any earlier one).
    pub fn register_handler(&self, kind: RequestKind, handler: Arc<dyn RequestHandler>) {
        self.inner
            .handlers
            .write()
            .expect("handler lock")
            .insert(kind, handler);
    }

    /// The handler registered for a request kind.
    pub fn handler(&self, kind: RequestKind) -> Option<Arc<dyn RequestHandler>> {
        self.inner
            .handlers
            .read()
            .expect("handler lock")
            .get(&kind)
            .cloned()
    }

    /// Registers who may follow the channels of a kind (replacing any earlier policy).
    pub fn register_policy(&self, kind: ChannelKind, policy: Arc<dyn SubscribePolicy>) {
        self.inner
            .policies
            .write()
            .expect("policy lock")
            .insert(kind, policy);
    }

    /// Registers who may publish through `POST /internal/publish`. Without one, only the
    /// deployment's own operators (admin tokens without a tenant) may.
    pub fn register_publish_policy(&self, policy: Arc<dyn PublishPolicy>) {
        *self.inner.publishers.write().expect("publisher lock") = Some(policy);
    }

    /// The publish policy, if one was registered.
    pub(crate) fn publish_policy(&self) -> Option<Arc<dyn PublishPolicy>> {
        self.inner
            .publishers
            .read()
            .expect("publisher lock")
            .clone()
    }

    /// Registers a hook told of every connection that closes.
    pub fn register_close_hook(&self, hook: Arc<dyn CloseHook>) {
        self.inner
            .close_hooks
            .write()
            .expect("close hook lock")
            .push(hook);
    }

    /// Whether `identity` may follow `channel`: its own inbox only; other kinds as their
    /// policy says, and none without a policy.
    pub async fn may_subscribe(
        &self,
        identity: &Identity,
        channel: &Channel,
    ) -> Result<(), Refusal> {
        if channel.kind() == ChannelKind::Inbox {
            return if identity.inbox().as_ref() == Some(channel) {
                Ok(())
            } else {
                Err(Refusal::not_open(channel))
            };
        }
        let policy = self
            .inner
            .policies
            .read()
            .expect("policy lock")
            .get(&channel.kind())
            .cloned();
        match policy {
            Some(policy) => policy.check(identity, channel).await,
            None => Err(Refusal::not_open(channel)),
        }
    }

    /// Has every local connection of `user` check whether its sign-in session was ended (each
    /// closes with 4005 if so). Connections are found by the user's inbox, which every one
    /// follows.
    pub fn review_sessions(&self, tenant: Option<&str>, user: &str) {
        if let Ok(inbox) = Channel::inbox(tenant, user) {
            self.inner
                .registry
                .signal(inbox.as_str(), registry::signal::REVIEW);
        }
    }

    /// Tells every close hook that a connection closed.
    pub fn closed(&self, conn: u64, identity: &Identity) {
        let hooks = self
            .inner
            .close_hooks
            .read()
            .expect("close hook lock")
            .clone();
        for hook in hooks {
            hook.closed(conn, identity);
        }
    }

    /// Publishes a JSON payload on a channel, on every node. Returns its position.
    pub async fn publish(
        &self,
        channel: &Channel,
        data: &Value,
    ) -> Result<StreamPosition, HubError> {
        let bytes = Bytes::from(serde_json::to_vec(data).expect("a JSON value always serializes"));
        Ok(self.inner.engine.publish(channel.as_str(), bytes).await?)
    }

    /// Publishes a payload that is JSON text already, once under `id` however often it is
    /// asked (the outbox relay's messages, see [`ChannelEngine::publish_once`]).
    pub async fn publish_json_once(
        &self,
        channel: &Channel,
        data: Bytes,
        id: &str,
    ) -> Result<StreamPosition, HubError> {
        Ok(self
            .inner
            .engine
            .publish_once(channel.as_str(), data, id)
            .await?)
    }

    /// Subscribes a connection to a channel and works out where its stream starts.
    pub async fn subscribe(
        &self,
        conn: &Arc<ConnShared>,
        channel: &Channel,
        since: Option<&StreamPosition>,
    ) -> Result<Subscription, HubError> {
        self.inner.registry.add(channel, conn);
        match self.start(channel, since).await {
            Ok(subscription) => Ok(subscription),
            Err(e) => {
                self.unsubscribe(conn.id, channel.as_str());
                Err(e)
            }
        }
    }

    async fn start(
        &self,
        channel: &Channel,
        since: Option<&StreamPosition>,
    ) -> Result<Subscription, HubError> {
        self.ensure_engine_subscribed(channel.as_str()).await?;
        let engine = &self.inner.engine;
        let history = engine.history(channel.as_str(), since).await?;
        if history.recovered {
            return Ok(Subscription {
                position: since.cloned().expect("recovered implies since"),
                recovered: true,
                snapshot: None,
                replay: history.publications,
            });
        }
        let provider = self
            .inner
            .snapshots
            .read()
            .expect("snapshot lock")
            .get(&channel.kind())
            .cloned();
        let Some(provider) = provider else {
            return Ok(Subscription {
                position: history.position,
                recovered: false,
                snapshot: None,
                replay: Vec::new(),
            });
        };
        let (snapshot, position) = provider.snapshot(channel).await?;
        if snapshot.is_null() {
            // On the wire `null` reads as "no snapshot"; a provider must return real state.
            return Err(HubError::Snapshot(format!(
                "provider returned null for {channel}"
            )));
        }
        // Deltas published between the snapshot and now must follow it without a gap.
        let after = engine.history(channel.as_str(), Some(&position)).await?;
        if !after.recovered {
            return Err(HubError::Snapshot(format!(
                "snapshot of {channel} at {position:?} is no longer covered by history"
            )));
        }
        Ok(Subscription {
            position,
            recovered: false,
            snapshot: Some(snapshot),
            replay: after.publications,
        })
    }

    async fn ensure_engine_subscribed(&self, channel: &str) -> Result<(), EngineError> {
        let registry = &self.inner.registry;
        if registry.engine_subscribed(channel) {
            return Ok(());
        }
        let _ops = self.inner.engine_ops.lock().await;
        if registry.engine_subscribed(channel) {
            return Ok(());
        }
        self.inner.engine.subscribe(channel).await?;
        if !registry.mark_engine_subscribed(channel) {
            // Everyone left while we subscribed; undo it.
            self.inner.engine.unsubscribe(channel).await?;
        }
        Ok(())
    }

    /// Removes a connection from a channel; the engine stops delivering the channel to this
    /// node once nobody here listens.
    pub fn unsubscribe(&self, conn_id: u64, channel: &str) {
        if !self.inner.registry.remove(channel, conn_id) {
            return;
        }
        let hub = self.clone();
        let channel = channel.to_owned();
        tokio::spawn(async move {
            let _ops = hub.inner.engine_ops.lock().await;
            if hub.inner.registry.remove_if_empty(&channel)
                && let Err(e) = hub.inner.engine.unsubscribe(&channel).await
            {
                tracing::warn!(%channel, error = %e, "engine unsubscribe failed");
            }
        });
    }

    /// Records a subscription count change for metrics.
    pub(crate) fn count_subscriptions(delta: f64) {
        METRICS.subscriptions.increment(delta);
    }
}
