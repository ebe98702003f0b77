//! One WebSocket connection: a single task that reads requests, writes pushes, pings, and
//! enforces the connection's limits.
//!
//! The task is written against any `Stream + Sink` of WebSocket messages, so it does not care
//! whether the socket came from axum or from a test.
//!
//! Outbound messages arrive on the connection's bounded queue (filled by the registry) and are
//! written in batches: everything waiting, up to `WRITE_BATCH` messages, is fed to the socket
//! and flushed once. Signals that must get through a full queue (dropped deltas, slow consumer,
//! engine interruption) arrive on [`ConnShared`]'s flags instead.

use super::Hub;
use super::handler::Session;
use super::registry::{ConnShared, Delivery, Outbound, signal};
use crate::auth::{AuthError, Identity, Verifier};
use crate::clock::{now_ms, now_secs};
use crate::engine::EnginePublication;
use crate::metrics::{self, METRICS};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use governor::DefaultDirectRateLimiter;
use marquee_protocol::message::ResyncReason;
use marquee_protocol::{
    Channel, ClientMessage, CloseCode, Codec, ErrorCode, Frame, RequestId, RequestKind,
    ServerMessage, StreamPosition,
};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

/// Most messages written between two flushes.
pub(crate) const WRITE_BATCH: usize = 64;

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// Per-connection limits, shared by every connection of a node.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Outbound queue capacity, in messages.
    pub outbound_queue: usize,
    /// Time between server pings.
    pub heartbeat_interval: Duration,
    /// Time a ping may go unanswered.
    pub heartbeat_timeout: Duration,
    /// Inbound messages per second.
    pub inbound_rate: u32,
    /// Inbound burst.
    pub inbound_burst: u32,
    /// Rate-limited messages tolerated in a row before closing.
    pub abuse_limit: u32,
    /// Subscriptions per connection.
    pub max_subscriptions: usize,
    /// Longest time one batch of writes may take.
    pub write_timeout: Duration,
    /// Upper bound of the reconnect delay advised on shutdown.
    pub reconnect_spread: Duration,
    /// One permit per connection being greeted (`MARQUEE_MAX_WELCOMING`), shared by the node.
    pub welcoming: Arc<Semaphore>,
    /// Connections waiting for a permit now, shared by the node.
    pub welcome_queue: Arc<AtomicU64>,
    /// How long a connection waits for a permit before it is sent away.
    pub welcome_wait: Duration,
    /// The permits `welcoming` was made with.
    pub welcome_permits: usize,
}

/// Connections that may wait for their welcome, per permit: more are sent away at once.
pub const WELCOME_QUEUE_PER_PERMIT: u64 = 16;

/// The delay advised to a connection sent away unwelcomed: uniform in this range, so the
/// crowd of a lost node comes back spread over several seconds rather than at once.
const BUSY_RETRY_MS: std::ops::Range<u64> = 2_000..10_000;

/// What every connection of a node shares.
#[derive(Debug, Clone)]
pub struct Context {
    /// The hub.
    pub hub: Hub,
    /// Verifies refreshed tokens.
    pub verifier: Arc<Verifier>,
    /// Limits.
    pub limits: Arc<Limits>,
    /// Cancelled when the node shuts down.
    pub shutdown: CancellationToken,
    /// This node's name.
    pub node_id: Arc<str>,
    /// Records every connection's start and end, when the node has a database.
    pub sessions: Option<Arc<dyn super::ConnectionLog>>,
}

/// Where a connection came from, and the node's permit to greet it.
#[derive(Debug, Default)]
pub struct Arrival {
    /// The client's address, for per-address limits and the session record (absent when
    /// unknown).
    pub peer: Option<std::net::IpAddr>,
    /// The client's `User-Agent`, for the session record.
    pub user_agent: Option<String>,
}

/// Where a subscription stands, from this connection's point of view.
#[derive(Debug)]
enum SubState {
    /// Messages flow; `next` is the offset expected next in `epoch`.
    Live { epoch: Arc<str>, next: u64 },
    /// The client was told to resync; nothing is sent until it subscribes again.
    Desynced,
}

impl SubState {
    /// Whether every message of the channel up to `head` was sent. Offsets are sent strictly in
    /// order (a gap resyncs), so a live subscription that expects an offset past the head
    /// already sent the head and everything before it.
    fn covers(&self, head: Option<&StreamPosition>) -> bool {
        match (self, head) {
            (Self::Live { epoch, next }, Some(head)) => {
                **epoch == *head.epoch && *next > head.offset
            }
            _ => false,
        }
    }
}

/// Why the connection loop stopped.
enum Exit {
    /// Close with this code.
    Close(CloseCode),
    /// The peer went away or the socket failed; nothing more to send.
    Gone,
}

/// Runs one authenticated connection until it closes: sets it up now and returns the future
/// that serves it.
///
/// Not an `async fn`: the arguments of one are kept in its future beside the connection they
/// are moved into, so every idle connection would carry its socket, identity and context
/// twice (about 600 bytes, a tenth of the per-connection memory budget). The future returned
/// holds the connection once.
pub fn run<S>(
    socket: S,
    identity: Identity,
    codec: Codec,
    ctx: Context,
    arrival: Arrival,
) -> impl Future<Output = ()> + Send
where
    S: Stream<Item = Result<Message, axum::Error>>
        + Sink<Message, Error = axum::Error>
        + Unpin
        + Send
        + 'static,
{
    let Arrival { peer, user_agent } = arrival;
    let record = ctx
        .sessions
        .as_ref()
        .map(|r| (r.clone(), r.opened(&identity, peer, user_agent.as_deref())));
    drop(user_agent);
    let id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
    let (shared, rx) = ConnShared::new(id, ctx.limits.outbound_queue);
    let limiter = crate::rate::direct(crate::rate::per_second(
        ctx.limits.inbound_rate,
        ctx.limits.inbound_burst,
    ));
    let mut conn = Connection {
        socket,
        shared,
        rx,
        subs: HashMap::new(),
        identity,
        codec,
        limiter,
        abuse: 0,
        peer,
        ctx,
    };
    METRICS.connections.increment(1.0);
    METRICS.connections_opened.increment(1);
    async move {
        let exit = conn.serve().await;
        let reason = match exit {
            Exit::Close(code) => {
                Box::pin(conn.close(code)).await;
                code.reason()
            }
            Exit::Gone => "gone",
        };
        conn.cleanup();
        if let Some((recorder, record)) = record {
            recorder.closed(record, reason);
        }
        METRICS.connections.decrement(1.0);
    }
}

struct Connection<S> {
    socket: S,
    shared: Arc<ConnShared>,
    rx: mpsc::Receiver<Outbound>,
    subs: HashMap<Arc<str>, SubState>,
    identity: Identity,
    codec: Codec,
    limiter: DefaultDirectRateLimiter,
    /// Rate-limited messages in a row.
    abuse: u32,
    /// The client's address, for per-address limits.
    peer: Option<std::net::IpAddr>,
    ctx: Context,
}

impl<S> Connection<S>
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin,
{
    /// The connection's main loop. Every handler is boxed: an idle connection then keeps only
    /// this loop's small state, and the larger states of handling a message or writing a
    /// batch exist only while that happens (the per-connection memory budget is a few KiB).
    async fn serve(&mut self) -> Exit {
        if let Err(exit) = Box::pin(self.welcome()).await {
            return exit;
        }
        let limits = self.ctx.limits.clone();
        // Futures that live as long as the loop are created once: registering with the node's
        // shared cancellation token, or with the timer, on every wake-up would cost a lock
        // per message on the fan-out path.
        let shutdown = self.ctx.shutdown.clone().cancelled_owned();
        tokio::pin!(shutdown);
        let mut awaiting_pong = false;
        let heartbeat = sleep_until(Instant::now() + limits.heartbeat_interval);
        tokio::pin!(heartbeat);
        let lapse = sleep_until(self.lapse_deadline());
        tokio::pin!(lapse);
        loop {
            let step = tokio::select! {
                biased;
                () = &mut shutdown => return Box::pin(self.advise_reconnect()).await,
                () = self.shared.notify.notified() => Box::pin(self.on_signals()).await,
                () = &mut lapse => return Exit::Close(CloseCode::AuthExpired),
                inbound = self.socket.next() => match inbound {
                    None => Err(Exit::Gone),
                    Some(Err(e)) => Err(socket_error(&e)),
                    Some(Ok(message)) => {
                        // Any frame from the peer proves it is alive.
                        if std::mem::take(&mut awaiting_pong) {
                            heartbeat.as_mut().reset(Instant::now() + limits.heartbeat_interval);
                        }
                        let before = self.identity.expires_at;
                        let step = Box::pin(self.on_message(message)).await;
                        if self.identity.expires_at != before {
                            lapse.as_mut().reset(self.lapse_deadline());
                        }
                        step
                    }
                },
                // After what came in: a node too busy to run this task for a while wakes up
                // with the timer and the pong both ready, and a pong waiting in the socket
                // proves the peer alive. Taking the timer first closed healthy connections
                // of every starved node as silent (and their reconnects starved it more).
                () = &mut heartbeat => {
                    if awaiting_pong {
                        return Exit::Close(CloseCode::HeartbeatTimeout);
                    }
                    awaiting_pong = true;
                    heartbeat.as_mut().reset(Instant::now() + limits.heartbeat_timeout);
                    Box::pin(self.send_now(Message::Ping(Bytes::new()))).await
                }
                Some(out) = self.rx.recv() => Box::pin(self.write_batch(out)).await,
            };
            if let Err(exit) = step {
                return exit;
            }
        }
    }

    /// The moment the token lapses, leeway included.
    fn lapse_deadline(&self) -> Instant {
        let now = now_secs();
        let until = self.identity.expires_at + self.ctx.verifier.leeway();
        Instant::now() + Duration::from_secs(until.saturating_sub(now))
    }

    /// Subscribes the inbox and greets the client, once the node's turn to greet comes.
    async fn welcome(&mut self) -> Result<(), Exit> {
        let Some(inbox) = self.identity.inbox() else {
            return Err(Exit::Close(CloseCode::InternalError));
        };
        // Wait for the node's turn to greet, in a queue of bounded length; sent away when it
        // is full or the wait runs out, told when to come back.
        let limits = self.ctx.limits.clone();
        let queue_cap = limits.welcome_permits as u64 * WELCOME_QUEUE_PER_PERMIT;
        let queued = QueueSlot::take(&limits.welcome_queue);
        let turn = if queued.ahead >= queue_cap {
            None
        } else {
            let waited = std::time::Instant::now();
            let turn = tokio::time::timeout(limits.welcome_wait, limits.welcoming.acquire()).await;
            METRICS.welcome_wait.record(waited.elapsed().as_secs_f64());
            turn.ok().and_then(Result::ok)
        };
        drop(queued);
        let Some(_turn) = turn else {
            METRICS.welcomes_timed_out.increment(1);
            let advice = ServerMessage::Reconnect {
                delay_ms: rand::random_range(BUSY_RETRY_MS),
                reason: "busy".to_owned(),
            };
            self.send_msg(&advice).await?;
            return Err(Exit::Close(CloseCode::ServiceRestart));
        };
        let subscription = match self.ctx.hub.subscribe(&self.shared, &inbox, None).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe inbox");
                self.send_msg(&ServerMessage::error(
                    None,
                    ErrorCode::Unavailable,
                    "the channel engine is unavailable; reconnect later",
                ))
                .await?;
                return Err(Exit::Close(CloseCode::InternalError));
            }
        };
        Hub::count_subscriptions(1.0);
        let position = subscription.position.clone();
        let welcome = ServerMessage::Welcome {
            session: format!("{}-{}", self.ctx.node_id, self.shared.id),
            node: self.ctx.node_id.to_string(),
            user: self.identity.user.clone(),
            inbox: inbox.to_string(),
            inbox_position: position.clone(),
            inbox_snapshot: subscription.snapshot,
            expires_at: self.identity.expires_at,
            heartbeat_ms: self.ctx.limits.heartbeat_interval.as_millis() as u64,
        };
        self.feed_msg(&welcome).await?;
        // Results published between the snapshot and now follow the welcome, in order.
        self.replay(&inbox, &position, subscription.replay).await?;
        self.flush().await
    }

    async fn on_signals(&mut self) -> Result<(), Exit> {
        let flags = self.shared.take_flags();
        if flags & signal::REVIEW != 0 && self.ctx.verifier.revocations().ended(&self.identity) {
            return Err(Exit::Close(CloseCode::SessionEnded));
        }
        if flags & signal::SLOW != 0 {
            METRICS.slow_consumer_closes.increment(1);
            return Err(Exit::Close(CloseCode::SlowConsumer));
        }
        if flags & signal::INTERRUPTED != 0 {
            // Only the subscriptions that may have missed something: not sent every message
            // up to where their channel stood once the feed resumed.
            let heads = self.ctx.hub.registry().heads();
            let channels: Vec<Arc<str>> = self
                .subs
                .iter()
                .filter(|(channel, state)| {
                    !state.covers(heads.as_deref().and_then(|h| h.get(&***channel)))
                })
                .map(|(channel, _)| channel.clone())
                .collect();
            for channel in channels {
                self.resync(&channel, ResyncReason::StreamInterrupted)
                    .await?;
            }
        }
        if flags & signal::DROPPED != 0 {
            for channel in self.shared.take_dropped() {
                self.resync(&channel, ResyncReason::SlowConsumer).await?;
            }
        }
        if flags & signal::LATEST != 0 {
            for message in self.shared.take_latest() {
                self.feed_msg(&message).await?;
            }
        }
        self.flush().await
    }

    /// Marks a live subscription desynced and tells the client (the caller flushes).
    async fn resync(&mut self, channel: &Arc<str>, reason: ResyncReason) -> Result<(), Exit> {
        match self.subs.get_mut(channel) {
            Some(state @ SubState::Live { .. }) => *state = SubState::Desynced,
            _ => return Ok(()),
        }
        let msg = ServerMessage::Resync {
            channel: channel.to_string(),
            reason,
        };
        self.feed_msg(&msg).await
    }

    /// Writes the queued publications, up to a batch, with one flush.
    async fn write_batch(&mut self, first: Outbound) -> Result<(), Exit> {
        let mut oldest_ms = u64::MAX;
        let mut next = Some(first);
        let mut written = 0;
        while let Some(Outbound::Pub(out)) = next {
            if self.forward(&out).await? {
                oldest_ms = oldest_ms.min(out.publication.published_at_ms);
            }
            written += 1;
            next = if written < WRITE_BATCH {
                self.rx.try_recv().ok()
            } else {
                None
            };
        }
        self.flush().await?;
        if oldest_ms != u64::MAX {
            let latency = now_ms().saturating_sub(oldest_ms) as f64 / 1000.0;
            METRICS.publish_to_write.record(latency);
        }
        Ok(())
    }

    /// Passes a live publication on if it is the next one the subscription expects. Returns
    /// whether it was written.
    async fn forward(&mut self, out: &Arc<Delivery>) -> Result<bool, Exit> {
        let p = &out.publication;
        let Some(SubState::Live { epoch, next }) = self.subs.get_mut(&p.channel) else {
            return Ok(false);
        };
        if **epoch != *p.epoch {
            let channel = p.channel.clone();
            self.resync(&channel, ResyncReason::StreamInterrupted)
                .await?;
            return Ok(false);
        }
        if p.offset < *next {
            return Ok(false); // already sent (replayed from history)
        }
        if p.offset > *next {
            // Something between was dropped for this connection.
            let channel = p.channel.clone();
            self.resync(&channel, ResyncReason::SlowConsumer).await?;
            return Ok(false);
        }
        *next += 1;
        match out.frame(self.codec) {
            Some(frame) => self.feed(frame).await.map(|()| true),
            None => {
                tracing::error!(channel = %p.channel, offset = p.offset, "unencodable publication");
                Ok(false)
            }
        }
    }

    async fn on_message(&mut self, message: Message) -> Result<(), Exit> {
        let (bytes, right_kind): (Bytes, bool) = match message {
            Message::Text(text) => (Bytes::from(text), self.codec == Codec::Json),
            Message::Binary(bytes) => (bytes, self.codec == Codec::MsgPack),
            Message::Close(_) => return Err(Exit::Gone),
            Message::Ping(_) | Message::Pong(_) => return Ok(()),
        };
        METRICS.messages_in.increment(1);
        METRICS.bytes_in.increment(bytes.len() as u64);
        // Every data frame counts against the rate limit, whatever it holds.
        let request = right_kind.then(|| self.codec.decode_client(&bytes));
        if self.limiter.check().is_err() {
            METRICS.rate_limited.increment(1);
            self.abuse += 1;
            if self.abuse > self.ctx.limits.abuse_limit {
                return Err(Exit::Close(CloseCode::RateLimited));
            }
            let id = match &request {
                Some(Ok(r)) => Some(r.id()),
                Some(Err(e)) => e.id,
                None => None,
            };
            return self
                .reply(ServerMessage::error(
                    id,
                    ErrorCode::RateLimited,
                    "too many messages; slow down",
                ))
                .await;
        }
        self.abuse = 0;
        let reply = match request {
            None => {
                let expected = if self.codec.is_binary() {
                    "binary"
                } else {
                    "text"
                };
                Some(ServerMessage::error(
                    None,
                    ErrorCode::BadRequest,
                    format!("{} carries {expected} frames", self.codec.subprotocol()),
                ))
            }
            Some(Ok(request)) => self.handle(request).await?,
            Some(Err(e)) => Some(ServerMessage::error(e.id, ErrorCode::BadRequest, e.reason)),
        };
        match reply {
            Some(reply) => self.reply(reply).await,
            None => self.flush().await,
        }
    }

    /// Handles a request. `None` means the reply was already written.
    async fn handle(&mut self, request: ClientMessage) -> Result<Option<ServerMessage>, Exit> {
        Ok(Some(match request {
            ClientMessage::Subscribe { id, channel, since } => {
                // Boxed: the subscribe path is large and rare; keeping it out of the
                // connection's future keeps idle connections small.
                return Box::pin(self.subscribe(id, &channel, since)).await;
            }
            ClientMessage::Unsubscribe { id, channel } => {
                if let Err(e) = Channel::parse(&channel) {
                    // Checked like a subscribe's name, so no client text that is not a channel
                    // name is ever echoed back or logged.
                    return Ok(Some(ServerMessage::error(
                        Some(id),
                        ErrorCode::BadRequest,
                        e.to_string(),
                    )));
                }
                if self.subs.remove(channel.as_str()).is_some() {
                    self.ctx.hub.unsubscribe(self.shared.id, &channel);
                    Hub::count_subscriptions(-1.0);
                    ServerMessage::Unsubscribed { id, channel }
                } else {
                    ServerMessage::error(
                        Some(id),
                        ErrorCode::NotSubscribed,
                        format!("not subscribed to {channel}"),
                    )
                }
            }
            ClientMessage::Refresh { id, token } => {
                let reply = self.refresh(id, &token);
                Box::pin(self.drop_lost_channels()).await?;
                reply
            }
            ClientMessage::Ping { id } => ServerMessage::Pong { id },
            other => {
                let (id, kind) = (other.id(), other.kind());
                match self.ctx.hub.handler(kind) {
                    Some(handler) => {
                        let session = Session {
                            identity: &self.identity,
                            peer: self.peer,
                            conn: &self.shared,
                        };
                        Box::pin(handler.handle(session, other)).await
                    }
                    None => unhandled(id, kind),
                }
            }
        }))
    }

    fn refresh(&mut self, id: RequestId, token: &str) -> ServerMessage {
        let result = self.ctx.verifier.verify(token).and_then(|fresh| {
            if fresh.user == self.identity.user
                && fresh.tenant == self.identity.tenant
                && fresh.sid == self.identity.sid
            {
                Ok(fresh)
            } else {
                Err(AuthError::UserChanged)
            }
        });
        match result {
            Ok(fresh) => {
                let expires_at = fresh.expires_at;
                self.identity = fresh;
                ServerMessage::Refreshed { id, expires_at }
            }
            Err(e) => {
                metrics::auth_failure(e.reason());
                ServerMessage::error(Some(id), e.code(), e.to_string())
            }
        }
    }

    /// After a refresh the roles may have changed: channels the new token does not open are
    /// left, and the client is told so with a `forbidden` error naming each.
    async fn drop_lost_channels(&mut self) -> Result<(), Exit> {
        let mut lost = Vec::new();
        for name in self.subs.keys() {
            if let Ok(channel) = Channel::parse(name)
                && self
                    .ctx
                    .hub
                    .may_subscribe(&self.identity, &channel)
                    .await
                    .is_err()
            {
                lost.push(name.clone());
            }
        }
        for channel in lost {
            self.subs.remove(&channel);
            self.ctx.hub.unsubscribe(self.shared.id, &channel);
            Hub::count_subscriptions(-1.0);
            let notice = ServerMessage::error(
                None,
                ErrorCode::Forbidden,
                format!("{channel} is no longer open to this connection"),
            );
            self.feed_msg(&notice).await?;
        }
        Ok(())
    }

    async fn subscribe(
        &mut self,
        id: RequestId,
        name: &str,
        since: Option<StreamPosition>,
    ) -> Result<Option<ServerMessage>, Exit> {
        let channel = match Channel::parse(name) {
            Ok(c) => c,
            Err(e) => {
                return Ok(Some(ServerMessage::error(
                    Some(id),
                    ErrorCode::BadRequest,
                    e.to_string(),
                )));
            }
        };
        if let Err(refusal) = self.ctx.hub.may_subscribe(&self.identity, &channel).await {
            return Ok(Some(refusal.reply(id)));
        }
        let resubscribe = self.subs.contains_key(channel.as_str());
        if !resubscribe && self.subs.len() >= self.ctx.limits.max_subscriptions {
            return Ok(Some(ServerMessage::error(
                Some(id),
                ErrorCode::TooManySubscriptions,
                format!(
                    "at most {} subscriptions per connection",
                    self.ctx.limits.max_subscriptions
                ),
            )));
        }
        // A resubscribe starts over: nothing of the old stream is passed on meanwhile.
        self.subs
            .insert(channel.as_str().into(), SubState::Desynced);
        let subscription = match self
            .ctx
            .hub
            .subscribe(&self.shared, &channel, since.as_ref())
            .await
        {
            Ok(s) => s,
            Err(e) => {
                self.subs.remove(channel.as_str());
                if resubscribe {
                    Hub::count_subscriptions(-1.0);
                }
                tracing::warn!(%channel, error = %e, "subscribe failed");
                return Ok(Some(ServerMessage::error(
                    Some(id),
                    ErrorCode::Unavailable,
                    "the channel engine is unavailable; retry later",
                )));
            }
        };
        if !resubscribe {
            Hub::count_subscriptions(1.0);
        }
        if since.is_some() {
            // A resume: from history (`recovered`), or a fresh snapshot (`resync`).
            let outcome = if subscription.recovered {
                "recovered"
            } else {
                "resync"
            };
            ::metrics::counter!("marquee_resumes_total", "outcome" => outcome).increment(1);
        }
        let position = subscription.position;
        let reply = ServerMessage::Subscribed {
            id,
            channel: channel.to_string(),
            epoch: position.epoch.clone(),
            offset: position.offset,
            recovered: subscription.recovered,
            snapshot: subscription.snapshot,
        };
        self.feed_msg(&reply).await?;
        self.replay(&channel, &position, subscription.replay)
            .await?;
        Ok(None)
    }

    /// Feeds the messages that follow a subscription's start, in order, and makes the
    /// subscription live from the one after them. Anything but the next offset of the start's
    /// epoch is skipped: the live queue brings it (or a gap there turns into a resync).
    async fn replay(
        &mut self,
        channel: &Channel,
        start: &StreamPosition,
        replay: Vec<EnginePublication>,
    ) -> Result<(), Exit> {
        let mut next = start.offset + 1;
        for publication in replay {
            if publication.offset != next || *publication.epoch != start.epoch {
                continue;
            }
            next += 1;
            self.feed_replayed(publication).await?;
        }
        self.subs.insert(
            channel.as_str().into(),
            SubState::Live {
                epoch: start.epoch.as_str().into(),
                next,
            },
        );
        Ok(())
    }

    async fn feed_replayed(&mut self, publication: EnginePublication) -> Result<(), Exit> {
        let out = Delivery::new(publication);
        match out.frame(self.codec) {
            Some(frame) => self.feed(frame).await,
            None => Ok(()),
        }
    }

    /// Encodes and feeds one message (not flushed).
    async fn feed_msg(&mut self, msg: &ServerMessage) -> Result<(), Exit> {
        let frame = match self.codec.encode(msg) {
            Ok(Frame::Text(text)) => Message::Text(Utf8Bytes::from(text)),
            Ok(Frame::Binary(bytes)) => Message::Binary(Bytes::from(bytes)),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a server message");
                return Err(Exit::Close(CloseCode::InternalError));
            }
        };
        self.feed(frame).await
    }

    /// Sends a reply and flushes.
    async fn reply(&mut self, msg: ServerMessage) -> Result<(), Exit> {
        self.feed_msg(&msg).await?;
        self.flush().await
    }

    /// Sends one message and flushes (used for the welcome).
    async fn send_msg(&mut self, msg: &ServerMessage) -> Result<(), Exit> {
        self.feed_msg(msg).await?;
        self.flush().await
    }

    async fn send_now(&mut self, message: Message) -> Result<(), Exit> {
        self.feed(message).await?;
        self.flush().await
    }

    async fn feed(&mut self, message: Message) -> Result<(), Exit> {
        let len = match &message {
            Message::Text(t) => t.len(),
            Message::Binary(b) => b.len(),
            _ => 0,
        };
        let write = tokio::time::timeout(self.ctx.limits.write_timeout, self.socket.feed(message));
        Self::watch_slow(&self.shared, write).await?;
        if len > 0 {
            METRICS.messages_out.increment(1);
            METRICS.bytes_out.increment(len as u64);
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Exit> {
        let write = tokio::time::timeout(self.ctx.limits.write_timeout, self.socket.flush());
        Self::watch_slow(&self.shared, write).await
    }

    /// Runs a socket write, giving up early if the hub condemns the connection meanwhile: a
    /// blocked write is exactly when the queue overflows. A write that times out is a slow
    /// consumer too.
    async fn watch_slow<F>(shared: &ConnShared, write: F) -> Result<(), Exit>
    where
        F: Future<Output = Result<Result<(), axum::Error>, tokio::time::error::Elapsed>>,
    {
        tokio::pin!(write);
        let mut other_signal = false;
        let result = loop {
            tokio::select! {
                biased;
                result = &mut write => break result,
                () = shared.notify.notified() => {
                    if shared.peek_flags() & signal::SLOW != 0 {
                        METRICS.slow_consumer_closes.increment(1);
                        return Err(Exit::Close(CloseCode::SlowConsumer));
                    }
                    other_signal = true;
                }
            }
        };
        if other_signal {
            // Hand the wake-up back to the main loop, which handles the other signals.
            shared.notify.notify_one();
        }
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Exit::Gone),
            Err(_) => {
                METRICS.slow_consumer_closes.increment(1);
                Err(Exit::Close(CloseCode::SlowConsumer))
            }
        }
    }

    /// Tells the client to come back later, then closes with 1012.
    async fn advise_reconnect(&mut self) -> Exit {
        let spread = self.ctx.limits.reconnect_spread.as_millis() as u64;
        let delay_ms = if spread == 0 {
            0
        } else {
            rand::random_range(0..spread)
        };
        let advice = ServerMessage::Reconnect {
            delay_ms,
            reason: "shutdown".to_owned(),
        };
        match self.send_msg(&advice).await {
            Ok(()) => Exit::Close(CloseCode::ServiceRestart),
            Err(exit) => exit,
        }
    }

    /// Sends a close frame (best effort, bounded by the write timeout: a slow consumer that
    /// catches up within it still learns why it was closed).
    async fn close(&mut self, code: CloseCode) {
        let frame = CloseFrame {
            code: code.code(),
            reason: Utf8Bytes::from_static(code.reason()),
        };
        let _ = tokio::time::timeout(
            self.ctx.limits.write_timeout,
            self.socket.send(Message::Close(Some(frame))),
        )
        .await;
    }

    /// Leaves every channel and tells the close hooks.
    fn cleanup(&mut self) {
        for (channel, _) in self.subs.drain() {
            self.ctx.hub.unsubscribe(self.shared.id, &channel);
            Hub::count_subscriptions(-1.0);
        }
        self.ctx.hub.closed(self.shared.id, &self.identity);
    }
}

/// A place in a node's queue of connections waiting to be greeted, given back on drop.
struct QueueSlot<'a> {
    queue: &'a AtomicU64,
    /// Connections that were waiting when this one arrived.
    ahead: u64,
}

impl<'a> QueueSlot<'a> {
    fn take(queue: &'a AtomicU64) -> Self {
        let ahead = queue.fetch_add(1, Ordering::AcqRel);
        Self { queue, ahead }
    }
}

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.queue.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Maps a socket read error to how the connection ends.
fn socket_error(error: &axum::Error) -> Exit {
    use std::error::Error as _;
    let mut source = error.source();
    while let Some(e) = source {
        if let Some(tungstenite::Error::Capacity(_)) = e.downcast_ref::<tungstenite::Error>() {
            return Exit::Close(CloseCode::TooBig);
        }
        source = e.source();
    }
    Exit::Gone
}

/// The reply to a request no domain on this node answers (a node without a database takes
/// no purchase commands, queue joins or scans).
fn unhandled(id: RequestId, kind: RequestKind) -> ServerMessage {
    ServerMessage::error(
        Some(id),
        ErrorCode::Unavailable,
        format!(
            "this node takes no {} requests (it has no database)",
            kind.as_str()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Args, Claims, sign_hs256};
    use crate::engine::{Engine, HistoryLimits, memory::MemoryEngine};
    use crate::hub::registry::Registry;
    use std::pin::Pin;
    use std::task::{Context as TaskContext, Poll};

    const SECRET: &str = "connection-test-secret-0123456789";

    /// A socket made of two channels: what the test sends arrives as frames, what the
    /// connection writes comes out of `written`.
    struct FakeSocket {
        incoming: mpsc::UnboundedReceiver<Result<Message, axum::Error>>,
        outgoing: mpsc::UnboundedSender<Message>,
    }

    impl Stream for FakeSocket {
        type Item = Result<Message, axum::Error>;
        fn poll_next(
            mut self: Pin<&mut Self>,
            cx: &mut TaskContext<'_>,
        ) -> Poll<Option<Self::Item>> {
            self.incoming.poll_recv(cx)
        }
    }

    impl Sink<Message> for FakeSocket {
        type Error = axum::Error;
        fn poll_ready(
            self: Pin<&mut Self>,
            _: &mut TaskContext<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
            let _ = self.outgoing.send(item);
            Ok(())
        }
        fn poll_flush(
            self: Pin<&mut Self>,
            _: &mut TaskContext<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: Pin<&mut Self>,
            _: &mut TaskContext<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
    }

    fn token(user: &str, ttl: i64) -> String {
        sign_hs256(
            SECRET,
            &Claims {
                sub: user.to_owned(),
                tenant: None,
                roles: Vec::new(),
                exp: (now_secs() as i64 + ttl) as u64,
                nbf: None,
                iss: None,
                aud: None,
                sid: None,
            },
        )
    }

    type ToServer = mpsc::UnboundedSender<Result<Message, axum::Error>>;

    /// A connection of `user` whose token lapses in `ttl` seconds, on a node of its own.
    fn connect(user: &str, ttl: i64) -> (ToServer, mpsc::UnboundedReceiver<Message>) {
        let (serve, to_server, from_server) = connection(user, ttl);
        tokio::spawn(serve);
        (to_server, from_server)
    }

    /// As [`connect`], the connection's future not started yet.
    fn connection(
        user: &str,
        ttl: i64,
    ) -> (
        impl Future<Output = ()> + Send + use<>,
        ToServer,
        mpsc::UnboundedReceiver<Message>,
    ) {
        let args = Args {
            jwt_secret: Some(crate::secret::Secret::new(SECRET)),
            jwt_public_key: None,
            jwt_algorithm: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_leeway: Duration::ZERO,
        };
        let verifier = Arc::new(Verifier::from_args(&args).unwrap());
        let identity = verifier.verify(&token(user, ttl)).unwrap();
        let registry = Arc::new(Registry::default());
        let limits = HistoryLimits {
            size: 16,
            ttl: Duration::from_secs(60),
        };
        let engine = Engine::Memory(Arc::new(MemoryEngine::new(limits, registry.clone())));
        let ctx = Context {
            hub: Hub::new(registry, engine),
            verifier,
            limits: Arc::new(Limits {
                outbound_queue: 16,
                heartbeat_interval: Duration::from_secs(3600),
                heartbeat_timeout: Duration::from_secs(3600),
                inbound_rate: 100,
                inbound_burst: 100,
                abuse_limit: 100,
                max_subscriptions: 8,
                write_timeout: Duration::from_secs(10),
                reconnect_spread: Duration::ZERO,
                welcoming: Arc::new(Semaphore::new(8)),
                welcome_queue: Arc::default(),
                welcome_wait: Duration::from_secs(10),
                welcome_permits: 8,
            }),
            shutdown: CancellationToken::new(),
            node_id: "test".into(),
            sessions: None,
        };
        let (to_server, incoming) = mpsc::unbounded_channel();
        let (outgoing, from_server) = mpsc::unbounded_channel();
        let socket = FakeSocket { incoming, outgoing };
        let serve = run(socket, identity, Codec::Json, ctx, Arrival::default());
        (serve, to_server, from_server)
    }

    /// The future of an idle connection is most of the memory it takes (its task holds it
    /// whole): it was 1,368 bytes (over this 16-byte socket) while `run` was an `async fn`,
    /// which kept its arguments beside the connection they were moved into. A field or a
    /// timer more in the connection loop shows here first.
    #[test]
    fn an_idle_connection_keeps_its_state_once() {
        let (serve, _to, _from) = connection("u1", 60);
        let size = std::mem::size_of_val(&serve);
        assert!(size <= 1024, "the connection's future takes {size} bytes");
    }

    fn send(to: &mpsc::UnboundedSender<Result<Message, axum::Error>>, msg: &ClientMessage) {
        let text = serde_json::to_string(msg).unwrap();
        to.send(Ok(Message::Text(text.into()))).unwrap();
    }

    /// The next message the server wrote (the welcome is skipped), or the close code.
    async fn next(from: &mut mpsc::UnboundedReceiver<Message>) -> Result<ServerMessage, u16> {
        loop {
            match from
                .recv()
                .await
                .expect("the connection writes until it closes")
            {
                Message::Text(text) => {
                    let msg: ServerMessage = serde_json::from_str(&text).unwrap();
                    if !matches!(msg, ServerMessage::Welcome { .. }) {
                        return Ok(msg);
                    }
                }
                Message::Close(frame) => return Err(frame.map_or(0, |f| f.code)),
                _ => {}
            }
        }
    }

    fn error_code(msg: &ServerMessage) -> (Option<u64>, ErrorCode) {
        match msg {
            ServerMessage::Error { id, code, .. } => (*id, *code),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lapsed_token_closes_with_4001_unless_refreshed() {
        // Lapses in 2 s.
        let (_lapsing, mut from_lapsing) = connect("u1", 2);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(next(&mut from_lapsing).await, Err(4001));

        // Refreshed in time: still open after the first expiry.
        let (to, mut from) = connect("u1", 2);
        send(
            &to,
            &ClientMessage::Refresh {
                id: 1,
                token: token("u2", 60),
            },
        );
        let reply = next(&mut from).await.unwrap();
        assert_eq!(
            error_code(&reply),
            (Some(1), ErrorCode::TokenInvalid),
            "another user's token is refused"
        );
        send(
            &to,
            &ClientMessage::Refresh {
                id: 2,
                token: token("u1", -10),
            },
        );
        assert_eq!(
            error_code(&next(&mut from).await.unwrap()),
            (Some(2), ErrorCode::TokenExpired)
        );
        send(
            &to,
            &ClientMessage::Refresh {
                id: 3,
                token: token("u1", 60),
            },
        );
        assert!(matches!(
            next(&mut from).await,
            Ok(ServerMessage::Refreshed { id: 3, .. })
        ));
        tokio::time::sleep(Duration::from_secs(3)).await;
        send(&to, &ClientMessage::Ping { id: 4 });
        assert_eq!(next(&mut from).await, Ok(ServerMessage::Pong { id: 4 }));
    }
}
