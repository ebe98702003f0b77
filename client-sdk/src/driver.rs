//! The background task behind a [`Client`](crate::Client): it owns the socket, sends requests
//! and routes replies, keeps subscriptions gap-free, refreshes the token and reconnects.
//!
//! # Exactly once, in order
//!
//! For every channel the driver remembers the position of the last publication it delivered.
//! A publication is delivered only if it is the very next offset of the same epoch; an older
//! one is a duplicate and is dropped; a newer one or another epoch means something was missed,
//! and the driver resubscribes with `since` set to the remembered position. While a
//! resubscribe is in flight the channel's publications are ignored: the server replays them
//! after its reply. After a reconnect every channel (the inbox included) is resubscribed the
//! same way.
//!
//! # Purchase commands and their results
//!
//! A command stays open until its result arrives; every new session sends the open commands
//! again (safe: the server answers a repeated request id with the first result). Results come
//! on the inbox, in its snapshot (`welcome`, or a resubscribe that could not resume) or live;
//! the driver hands each request id's result over once, then acknowledges it to the server.

use crate::backoff::Backoff;
use crate::config::{ClientConfig, TokenProvider};
use crate::event::{ClientError, Event, Subscribed};
use futures_util::{SinkExt, StreamExt};
use marquee_protocol::booking::{Command as Purchase, CommandResult, InboxMessage, InboxSnapshot};
use marquee_protocol::{
    ClientMessage, CloseCode, Codec, ErrorBody, ErrorCode, Frame, Publication, RequestId,
    ServerMessage, StreamPosition, message::ResyncReason,
};
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

type SubscribeReply = oneshot::Sender<Result<Subscribed, ClientError>>;
type ResultReply = oneshot::Sender<Result<CommandResult, ClientError>>;

/// Opens the TCP connection `request` goes over, from `local` when given (any port of it).
async fn tcp(
    request: &tungstenite::handshake::client::Request,
    local: Option<std::net::IpAddr>,
) -> Result<TcpStream, tungstenite::Error> {
    use tungstenite::error::UrlError;
    let uri = request.uri();
    let host = uri
        .host()
        .ok_or(tungstenite::Error::Url(UrlError::NoHostName))?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = uri
        .port_u16()
        .or(match uri.scheme_str() {
            Some("wss") => Some(443),
            Some("ws") => Some(80),
            _ => None,
        })
        .ok_or(tungstenite::Error::Url(UrlError::UnsupportedUrlScheme))?;
    let stream = match local {
        None => TcpStream::connect((host, port)).await?,
        Some(ip) => {
            let mut failed = std::io::Error::new(
                std::io::ErrorKind::AddrNotAvailable,
                format!("{host} has no address of the family of {ip}"),
            );
            let mut connected = None;
            for addr in tokio::net::lookup_host((host, port)).await? {
                if addr.is_ipv4() != ip.is_ipv4() {
                    continue;
                }
                let socket = if ip.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                socket.bind(std::net::SocketAddr::new(ip, 0))?;
                match socket.connect(addr).await {
                    Ok(stream) => {
                        connected = Some(stream);
                        break;
                    }
                    Err(e) => failed = e,
                }
            }
            connected.ok_or(failed)?
        }
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// How many delivered request ids the driver remembers, to drop a result delivered twice.
const REMEMBERED_RESULTS: usize = 10_000;

/// How long a client may wait, at random, before resubscribing to a channel whose stream the
/// node lost (`resync` with `stream_interrupted`): what every subscriber of the node hears at
/// once is spread over this long.
const RESYNC_SPREAD: Duration = Duration::from_secs(3);

/// What the [`Client`](crate::Client) handle asks of the driver.
pub(crate) enum Command {
    /// A request whose reply goes back on `reply`.
    Request {
        message: ClientMessage,
        reply: oneshot::Sender<Result<ServerMessage, ClientError>>,
    },
    /// Subscribe (and keep subscribed).
    Subscribe {
        channel: String,
        since: Option<StreamPosition>,
        reply: SubscribeReply,
    },
    /// A purchase command; `reply` gets its result.
    Submit {
        request_id: String,
        command: Purchase,
        admission: Option<String>,
        reply: ResultReply,
    },
    /// Close for good.
    Close,
}

/// A command whose result has not arrived.
struct Open {
    command: Purchase,
    admission: Option<String>,
    waiters: Vec<ResultReply>,
    /// When to send it again if its result has still not arrived.
    resend_at: Option<Instant>,
    /// How long after a send that is (doubling from `command_resend`, up to a minute).
    resend_after: Duration,
    /// Whether a server answered `accepted` (queued it) yet: [`Event::Accepted`] is emitted
    /// once.
    accepted: bool,
}

/// A request awaiting its reply.
enum Pending {
    Request(oneshot::Sender<Result<ServerMessage, ClientError>>),
    Subscribe {
        channel: String,
    },
    Refresh,
    /// A command; an error reply fails it.
    Command {
        request_id: String,
    },
    /// An acknowledgement of these results; once answered they need no resending.
    Ack(Vec<String>),
    /// The automatic `queue.join` after a reconnect: its reply is an event.
    Rejoin,
    /// A request whose reply needs nothing (the `queue.leave` of a place nobody asked for).
    Ignore,
}

/// A channel the application wants.
#[derive(Default)]
struct Sub {
    /// Position of the last publication delivered (or where the subscription started).
    position: Option<StreamPosition>,
    /// A (re)subscribe was sent and its reply has not arrived.
    in_flight: bool,
    /// Set when the subscribe was automatic (reconnect or resync).
    automatic: bool,
    /// Application calls waiting for the reply.
    waiters: Vec<SubscribeReply>,
    /// When to try again an automatic resubscribe the server could not serve (`unavailable`).
    retry_at: Option<Instant>,
    /// What spaces those tries, kept until one succeeds.
    backoff: Option<Backoff>,
}

/// How a session ended.
enum End {
    /// Stop for good.
    Stop,
    /// Reconnect, after the server's advice if it gave one.
    Reconnect {
        code: Option<u16>,
        reason: String,
        advised: Option<Duration>,
    },
}

pub(crate) struct Driver {
    config: ClientConfig,
    tokens: TokenProvider,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    ids: Arc<AtomicU64>,
    subs: HashMap<String, Sub>,
    pending: HashMap<RequestId, Pending>,
    inbox: Option<String>,
    backoff: Backoff,
    url_index: usize,
    /// Commands waiting for their results, by request id.
    open: HashMap<String, Open>,
    /// Request ids whose results were delivered, oldest first (bounded).
    delivered: VecDeque<String>,
    delivered_set: HashSet<String>,
    /// Results delivered but not yet acknowledged by the server: sent again on every new
    /// session, since an acknowledgement lost with a connection is otherwise never repeated.
    unacked: HashSet<String>,
    /// Onsales whose waiting room the application joined (and did not leave), with the place
    /// last heard of: joined again after every reconnect, attaching to the same place. Once
    /// the place has ended, the onsale is forgotten: a rejoin never takes a new place the
    /// application did not ask for.
    queues: HashMap<String, Option<String>>,
}

impl Driver {
    pub(crate) fn new(
        config: ClientConfig,
        tokens: TokenProvider,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
        ids: Arc<AtomicU64>,
    ) -> Self {
        let backoff = Backoff::new(config.backoff_base, config.backoff_cap);
        Self {
            config,
            tokens,
            commands,
            events,
            ids,
            subs: HashMap::new(),
            pending: HashMap::new(),
            inbox: None,
            backoff,
            url_index: 0,
            open: HashMap::new(),
            delivered: VecDeque::new(),
            delivered_set: HashSet::new(),
            unacked: HashSet::new(),
            queues: HashMap::new(),
        }
    }

    /// Sends a command (again) under a fresh request id of the connection.
    async fn send_command(&mut self, socket: &mut Socket, request_id: &str) -> Result<(), End> {
        let id = self.next_id();
        let Some(open) = self.open.get_mut(request_id) else {
            return Ok(());
        };
        open.resend_at = Some(Instant::now() + open.resend_after);
        open.resend_after = (open.resend_after * 2).min(Duration::from_secs(60));
        let message = ClientMessage::Command {
            id,
            request_id: request_id.to_owned(),
            command: open.command.clone(),
            admission: open.admission.clone(),
        };
        self.pending.insert(
            id,
            Pending::Command {
                request_id: request_id.to_owned(),
            },
        );
        self.send(socket, &message).await
    }

    /// Delivers results not delivered before, resolves their commands, and acknowledges them.
    async fn on_results(
        &mut self,
        socket: &mut Socket,
        results: Vec<CommandResult>,
    ) -> Result<(), End> {
        let mut acked = Vec::new();
        for result in results {
            let request_id = result.request_id.clone();
            // A command sent again after its result was delivered (the application retried
            // its request id) gets the first result again: its caller is answered, and the
            // event is not repeated.
            if let Some(open) = self.open.remove(&request_id) {
                for waiter in open.waiters {
                    let _ = waiter.send(Ok(result.clone()));
                }
            }
            if self.delivered_set.insert(request_id.clone()) {
                self.delivered.push_back(request_id.clone());
                if self.delivered.len() > REMEMBERED_RESULTS
                    && let Some(old) = self.delivered.pop_front()
                {
                    self.delivered_set.remove(&old);
                }
                self.emit(Event::Result(result)).await;
            }
            acked.push(request_id);
        }
        self.unacked.extend(acked.iter().cloned());
        self.send_ack(socket, acked).await
    }

    async fn send_ack(&mut self, socket: &mut Socket, request_ids: Vec<String>) -> Result<(), End> {
        if request_ids.is_empty() {
            return Ok(());
        }
        let id = self.next_id();
        self.pending.insert(id, Pending::Ack(request_ids.clone()));
        self.send(socket, &ClientMessage::Ack { id, request_ids })
            .await
    }

    /// Results in an inbox snapshot (`{"pending": [...]}`).
    fn snapshot_results(snapshot: Option<&Value>) -> Vec<CommandResult> {
        snapshot
            .and_then(|s| serde_json::from_value::<InboxSnapshot>(s.clone()).ok())
            .map(|s| s.pending)
            .unwrap_or_default()
    }

    fn next_id(&self) -> RequestId {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    async fn emit(&self, event: Event) {
        let _ = self.events.send(event).await;
    }

    pub(crate) async fn run(mut self, ready: oneshot::Sender<Result<(), ClientError>>) {
        let mut ready = Some(ready);
        // The first connection tries every URL once before it fails: a node that is down, or
        // too busy to greet one more connection, when the application starts is no reason to
        // give up while another may take it.
        let mut untried = self.config.urls.len().saturating_sub(1);
        // A node's advice to come back later, met on the way: if every URL fails, the caller
        // hears it rather than the last URL's own failure. A dead node tried after a busy one
        // would otherwise say `cannot connect`, and the caller would count a failed try where
        // it had been told when to come back (13 buyers of a full-size onsale gave up after a
        // node was killed, every live node busy greeting the dead one's buyers).
        let mut advice: Option<ClientError> = None;
        // Once connected, each wait before reconnecting starts a round: a URL whose node
        // cannot be reached (nothing listens, no answer) is followed at once by the next, and
        // only when every URL failed in a row does the client wait again. A node that is gone
        // (killed, not yet out of the list) would otherwise cost a whole backoff delay, up to
        // 20 s, each time the rotation came to it.
        let mut round_left = 0;
        loop {
            let (delay, code, reason) = match self.connect().await {
                Ok((socket, welcome)) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Ok(()));
                    }
                    self.backoff.reset();
                    round_left = self.config.urls.len().saturating_sub(1);
                    match self.session(socket, welcome).await {
                        End::Stop => return,
                        End::Reconnect {
                            code,
                            reason,
                            advised,
                        } => (advised, code, reason),
                    }
                }
                Err(error) => {
                    if ready.is_some()
                        && matches!(
                            error,
                            ClientError::OverCapacity {
                                retry_after: Some(_)
                            }
                        )
                    {
                        advice = Some(error.clone());
                    }
                    if ready.is_some()
                        && untried > 0
                        && matches!(
                            error,
                            ClientError::Connect(_)
                                | ClientError::Timeout
                                | ClientError::OverCapacity { .. }
                        )
                    {
                        untried -= 1;
                        self.url_index = (self.url_index + 1) % self.config.urls.len().max(1);
                        continue;
                    }
                    if let Some(ready) = ready.take() {
                        let error = match (error, advice.take()) {
                            (ClientError::Connect(_) | ClientError::Timeout, Some(advice)) => {
                                advice
                            }
                            (error, _) => error,
                        };
                        let _ = ready.send(Err(error));
                        return;
                    }
                    let advised = match &error {
                        ClientError::OverCapacity { retry_after } => *retry_after,
                        ClientError::Connect(_) if round_left > 0 => {
                            round_left -= 1;
                            Some(Duration::ZERO)
                        }
                        _ => None,
                    };
                    (advised, None, error.to_string())
                }
            };
            self.fail_pending();
            let delay = delay.unwrap_or_else(|| self.backoff.next_delay());
            if !delay.is_zero() {
                round_left = self.config.urls.len().saturating_sub(1);
            }
            self.url_index = (self.url_index + 1) % self.config.urls.len().max(1);
            self.emit(Event::Disconnected {
                code,
                reason,
                reconnect_in: Some(delay),
            })
            .await;
            if !self.wait(delay).await {
                return;
            }
        }
    }

    /// Sleeps before reconnecting while still taking commands. Returns false to stop.
    async fn wait(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                () = sleep_until(until) => return true,
                command = self.commands.recv() => match command {
                    None | Some(Command::Close) => return false,
                    Some(Command::Request { reply, .. }) => {
                        let _ = reply.send(Err(ClientError::Disconnected));
                    }
                    Some(Command::Subscribe { channel, since, reply }) => {
                        // Sent as soon as the next connection is up.
                        let sub = self.subs.entry(channel).or_default();
                        if since.is_some() {
                            sub.position = since;
                        }
                        sub.waiters.push(reply);
                    }
                    Some(Command::Submit { request_id, command, admission, reply }) => {
                        // Sent with the other open commands once the next connection is up.
                        let resend_after = self.config.command_resend;
                        self.open
                            .entry(request_id)
                            .or_insert_with(|| Open {
                                command,
                                admission,
                                waiters: Vec::new(),
                                resend_at: None,
                                resend_after,
                                accepted: false,
                            })
                            .waiters
                            .push(reply);
                    }
                },
            }
        }
    }

    /// Requests still waiting when a connection drops fail; subscriptions are resent later.
    fn fail_pending(&mut self) {
        for (_, pending) in self.pending.drain() {
            if let Pending::Request(reply) = pending {
                let _ = reply.send(Err(ClientError::Disconnected));
            }
        }
        for sub in self.subs.values_mut() {
            sub.in_flight = false;
        }
    }

    async fn connect(&mut self) -> Result<(Socket, Welcome), ClientError> {
        let token = self.tokens.token().await.map_err(ClientError::Token)?;
        let url = self
            .config
            .urls
            .get(self.url_index)
            .cloned()
            .unwrap_or_default();
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let headers = request.headers_mut();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| ClientError::Token(e.to_string()))?,
        );
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(self.config.codec.subprotocol()),
        );
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(16 * 1024)
            .write_buffer_size(0)
            .max_message_size(Some(16 << 20));
        // `wss://` through rustls; `ws://` URLs pass the connector by untouched.
        let connector = self.config.tls.connector()?;
        let local = self.config.local_address;
        let attempt = async move {
            let stream = tcp(&request, local).await?;
            tokio_tungstenite::client_async_tls_with_config(
                request,
                stream,
                Some(ws_config),
                Some(connector),
            )
            .await
        };
        let (mut socket, _) = match tokio::time::timeout(self.config.connect_timeout, attempt).await
        {
            Err(_) => return Err(ClientError::Connect("timed out".into())),
            Ok(Err(tungstenite::Error::Http(response))) => {
                return Err(http_error(&response));
            }
            Ok(Err(e)) => return Err(ClientError::Connect(e.to_string())),
            Ok(Ok(pair)) => pair,
        };
        // The first message is always the welcome.
        let first = tokio::time::timeout(self.config.connect_timeout, socket.next()).await;
        let welcome = match first {
            Ok(Some(Ok(message))) => match decode(self.config.codec, &message) {
                Some(ServerMessage::Welcome {
                    node,
                    inbox,
                    inbox_position,
                    inbox_snapshot,
                    expires_at,
                    ..
                }) => Welcome {
                    node,
                    inbox,
                    inbox_position,
                    inbox_snapshot,
                    expires_at,
                },
                Some(ServerMessage::Error { code, message, .. }) => {
                    return Err(ClientError::Server { code, message });
                }
                // A node too busy to greet says when to come back (protocol §1).
                Some(ServerMessage::Reconnect { delay_ms, .. }) => {
                    return Err(ClientError::OverCapacity {
                        retry_after: Some(Duration::from_millis(delay_ms)),
                    });
                }
                _ => return Err(ClientError::Connect("expected a welcome".into())),
            },
            _ => return Err(ClientError::Connect("no welcome from the server".into())),
        };
        Ok((socket, welcome))
    }

    async fn session(&mut self, mut socket: Socket, welcome: Welcome) -> End {
        self.emit(Event::Connected {
            node: welcome.node.clone(),
            inbox: welcome.inbox.clone(),
        })
        .await;
        // The inbox: resume it if we saw it before, otherwise start where the server says.
        let resume_inbox = self.inbox.as_deref() == Some(welcome.inbox.as_str())
            && self
                .subs
                .get(&welcome.inbox)
                .is_some_and(|s| s.position.is_some());
        if !resume_inbox {
            let sub = self.subs.entry(welcome.inbox.clone()).or_default();
            sub.position = Some(welcome.inbox_position.clone());
        }
        self.inbox = Some(welcome.inbox.clone());
        let channels: Vec<String> = self
            .subs
            .keys()
            .filter(|c| resume_inbox || **c != welcome.inbox)
            .cloned()
            .collect();
        for channel in channels {
            if let Err(end) = self.send_subscribe(&mut socket, &channel).await {
                return end;
            }
        }
        if !resume_inbox {
            let results = Self::snapshot_results(welcome.inbox_snapshot.as_ref());
            if let Err(end) = self.on_results(&mut socket, results).await {
                return end;
            }
        }
        let unacked: Vec<String> = self.unacked.iter().cloned().collect();
        if let Err(end) = self.send_ack(&mut socket, unacked).await {
            return end;
        }
        let open: Vec<String> = self.open.keys().cloned().collect();
        for request_id in open {
            if let Err(end) = self.send_command(&mut socket, &request_id).await {
                return end;
            }
        }
        let queues: Vec<String> = self.queues.keys().cloned().collect();
        for onsale in queues {
            let id = self.next_id();
            self.pending.insert(id, Pending::Rejoin);
            let join = ClientMessage::QueueJoin {
                id,
                onsale,
                intent: None,
            };
            if let Err(end) = self.send(&mut socket, &join).await {
                return end;
            }
        }

        let mut refresh_at = self.refresh_deadline(welcome.expires_at);
        let mut advised: Option<Duration> = None;
        loop {
            // The soonest automatic resubscribe waiting to be tried again, or command to be
            // sent again.
            let next_retry = self
                .subs
                .values()
                .filter_map(|s| s.retry_at)
                .chain(self.open.values().filter_map(|o| o.resend_at))
                .min();
            tokio::select! {
                command = self.commands.recv() => {
                    let step = match command {
                        None | Some(Command::Close) => {
                            let frame = CloseFrame {
                                code: WsCloseCode::Normal,
                                reason: "client closed".into(),
                            };
                            let _ = socket.send(Message::Close(Some(frame))).await;
                            return End::Stop;
                        }
                        Some(Command::Request { message, reply }) => {
                            match &message {
                                ClientMessage::Unsubscribe { channel, .. } => {
                                    // Not wanted any more: never resubscribed after a reconnect.
                                    self.subs.remove(channel);
                                }
                                ClientMessage::QueueJoin { onsale, .. } => {
                                    self.queues.entry(onsale.clone()).or_default();
                                }
                                ClientMessage::QueueLeave { onsale, .. } => {
                                    self.queues.remove(onsale);
                                }
                                _ => {}
                            }
                            self.pending.insert(message.id(), Pending::Request(reply));
                            self.send(&mut socket, &message).await
                        }
                        Some(Command::Submit { request_id, command, admission, reply }) => {
                            match self.open.get_mut(&request_id) {
                                Some(open) => {
                                    open.waiters.push(reply);
                                    Ok(())
                                }
                                None => {
                                    let resend_after = self.config.command_resend;
                                    self.open.insert(request_id.clone(), Open { command, admission, waiters: vec![reply], resend_at: None, resend_after, accepted: false });
                                    self.send_command(&mut socket, &request_id).await
                                }
                            }
                        }
                        Some(Command::Subscribe { channel, since, reply }) => {
                            let sub = self.subs.entry(channel.clone()).or_default();
                            sub.waiters.push(reply);
                            if since.is_some() {
                                sub.position = since;
                            }
                            if sub.in_flight {
                                Ok(())
                            } else {
                                self.send_subscribe(&mut socket, &channel).await
                            }
                        }
                    };
                    if let Err(end) = step {
                        return end;
                    }
                }
                () = sleep_until(next_retry.unwrap_or(refresh_at)), if next_retry.is_some() => {
                    let now = Instant::now();
                    let due: Vec<String> = self
                        .subs
                        .iter()
                        .filter(|(_, s)| s.retry_at.is_some_and(|at| at <= now))
                        .map(|(c, _)| c.clone())
                        .collect();
                    for channel in due {
                        if let Err(end) = self.send_subscribe(&mut socket, &channel).await {
                            return end;
                        }
                    }
                    let due: Vec<String> = self
                        .open
                        .iter()
                        .filter(|(_, o)| o.resend_at.is_some_and(|at| at <= now))
                        .map(|(r, _)| r.clone())
                        .collect();
                    for request_id in due {
                        tracing::debug!(%request_id, "no result yet; sending the command again");
                        if let Err(end) = self.send_command(&mut socket, &request_id).await {
                            return end;
                        }
                    }
                }
                () = sleep_until(refresh_at) => {
                    refresh_at = Instant::now() + Duration::from_secs(3600);
                    match self.tokens.token().await {
                        Ok(token) => {
                            let id = self.next_id();
                            self.pending.insert(id, Pending::Refresh);
                            if let Err(end) = self.send(&mut socket, &ClientMessage::Refresh { id, token }).await {
                                return end;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "token provider failed; the server will close at expiry"),
                    }
                }
                frame = socket.next() => {
                    let message = match frame {
                        Some(Ok(message)) => message,
                        Some(Err(e)) => return End::Reconnect { code: None, reason: e.to_string(), advised },
                        None => return End::Reconnect { code: None, reason: "connection closed".into(), advised },
                    };
                    if let Message::Close(frame) = &message {
                        let code = frame.as_ref().map(|f| u16::from(f.code));
                        let reason = frame.as_ref().map(|f| f.reason.to_string()).unwrap_or_default();
                        let final_close = code
                            .and_then(CloseCode::from_code)
                            .is_some_and(|c| !c.should_reconnect());
                        if final_close {
                            self.emit(Event::Disconnected { code, reason, reconnect_in: None }).await;
                            return End::Stop;
                        }
                        return End::Reconnect { code, reason, advised };
                    }
                    let Some(server) = decode(self.config.codec, &message) else {
                        continue;
                    };
                    match server {
                        ServerMessage::Reconnect { delay_ms, .. } => {
                            advised = Some(Duration::from_millis(delay_ms));
                        }
                        ServerMessage::Refreshed { id, expires_at } => {
                            self.pending.remove(&id);
                            refresh_at = self.refresh_deadline(expires_at);
                        }
                        other => {
                            if let Err(end) = self.on_server(&mut socket, other).await {
                                return end;
                            }
                        }
                    }
                }
            }
        }
    }

    /// When to refresh a token that expires at `expires_at` (unix seconds).
    fn refresh_deadline(&self, expires_at: u64) -> Instant {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let left = Duration::from_secs(expires_at.saturating_sub(now));
        let before = self.config.refresh_before.min(left / 2);
        Instant::now() + left.saturating_sub(before)
    }

    async fn on_server(&mut self, socket: &mut Socket, message: ServerMessage) -> Result<(), End> {
        match message {
            ServerMessage::Pub(publication) => self.on_publication(socket, publication).await,
            ServerMessage::Resync { channel, reason } => {
                let Some(sub) = self.subs.get_mut(&channel).filter(|s| !s.in_flight) else {
                    return Ok(());
                };
                if reason == ResyncReason::StreamInterrupted {
                    // The node lost its engine for a while (Redis restarted): every subscriber
                    // of every channel on it hears this at once, and all of them resubscribing
                    // that instant is a herd the engine cannot serve in time (each failure
                    // retried). So after a random wait within RESYNC_SPREAD; publications
                    // meanwhile are ignored, and replayed after the reply.
                    sub.in_flight = true;
                    let spread = RESYNC_SPREAD.as_millis() as u64;
                    sub.retry_at = Some(
                        Instant::now() + Duration::from_millis(rand::random_range(0..=spread)),
                    );
                    return Ok(());
                }
                self.send_subscribe(socket, &channel).await
            }
            ServerMessage::Subscribed {
                id,
                channel,
                epoch,
                offset,
                recovered,
                snapshot,
            } => {
                self.pending.remove(&id);
                let position = StreamPosition { epoch, offset };
                let Some(sub) = self.subs.get_mut(&channel) else {
                    return Ok(());
                };
                sub.in_flight = false;
                sub.retry_at = None;
                sub.backoff = None;
                sub.position = Some(position.clone());
                let subscribed = Subscribed {
                    channel,
                    position,
                    recovered,
                    snapshot,
                    automatic: sub.automatic,
                };
                for waiter in sub.waiters.drain(..) {
                    let _ = waiter.send(Ok(subscribed.clone()));
                }
                let inbox = self.inbox.as_deref() == Some(subscribed.channel.as_str());
                let results = if inbox {
                    Self::snapshot_results(subscribed.snapshot.as_ref())
                } else {
                    Vec::new()
                };
                let resynced = inbox && !subscribed.recovered;
                self.emit(Event::Subscribed(subscribed)).await;
                self.on_results(socket, results).await?;
                if resynced {
                    // The inbox could not be resumed (the server lost its history): whatever
                    // happened to the commands still without a result, the queue may have lost
                    // them too. Sent again under their request ids, each takes effect once.
                    let open: Vec<String> = self.open.keys().cloned().collect();
                    for request_id in open {
                        self.send_command(socket, &request_id).await?;
                    }
                }
                Ok(())
            }
            ServerMessage::Error { id, code, message } => {
                match id.and_then(|id| self.pending.remove(&id)) {
                    Some(Pending::Request(reply)) => {
                        let _ = reply.send(Err(ClientError::Server { code, message }));
                    }
                    Some(Pending::Subscribe { channel }) => {
                        let (base, cap) = (self.config.backoff_base, self.config.backoff_cap);
                        if let Some(sub) = self.subs.get_mut(&channel)
                            && sub.automatic
                            && code == ErrorCode::Unavailable
                        {
                            // The server could not serve it now (its engine or database is out
                            // of reach): a channel the application still wants is tried again
                            // later, never given up.
                            sub.in_flight = false;
                            let backoff =
                                sub.backoff.get_or_insert_with(|| Backoff::new(base, cap));
                            sub.retry_at = Some(Instant::now() + backoff.next_delay());
                            tracing::debug!(%channel, "resubscribe unavailable; trying again later");
                            return Ok(());
                        }
                        if let Some(mut sub) = self.subs.remove(&channel) {
                            let error = ClientError::Server {
                                code,
                                message: message.clone(),
                            };
                            for waiter in sub.waiters.drain(..) {
                                let _ = waiter.send(Err(error.clone()));
                            }
                        }
                        self.emit(Event::Error { code, message }).await;
                    }
                    Some(Pending::Command { request_id }) if code == ErrorCode::Unavailable => {
                        // The server could not queue it now (its queue or database is out of
                        // reach): sent again after a pause (an eighth of its resend interval, which
                        // doubles with each send), until its timeout.
                        if let Some(open) = self.open.get_mut(&request_id) {
                            open.resend_at = Some(Instant::now() + open.resend_after / 8);
                        }
                        tracing::debug!(%request_id, "command unavailable; sending it again later");
                    }
                    Some(Pending::Command { request_id }) => {
                        if let Some(open) = self.open.remove(&request_id) {
                            let error = ClientError::Server { code, message };
                            for waiter in open.waiters {
                                let _ = waiter.send(Err(error.clone()));
                            }
                        }
                    }
                    Some(
                        Pending::Refresh | Pending::Ack(_) | Pending::Rejoin | Pending::Ignore,
                    )
                    | None => {
                        self.emit(Event::Error { code, message }).await;
                    }
                }
                Ok(())
            }
            ServerMessage::QueueStatus(status) => {
                self.note_place(&status);
                self.emit(Event::QueueStatus(status)).await;
                Ok(())
            }
            other => {
                match other.reply_to().and_then(|id| self.pending.remove(&id)) {
                    Some(Pending::Request(reply)) => {
                        if let ServerMessage::QueueJoined { status, .. } = &other {
                            // Also an event, in the order the client learned it: pushes that
                            // came before this answer are older, and an application that
                            // shows the events alone never shows a position going back up.
                            self.note_place(status);
                            self.emit(Event::QueueStatus(status.clone())).await;
                        }
                        let _ = reply.send(Ok(other));
                    }
                    Some(Pending::Rejoin) => {
                        if let ServerMessage::QueueJoined { mut status, .. } = other {
                            let known = self.queues.get(&status.onsale).cloned().flatten();
                            if let Some(place) = known.filter(|p| *p != status.place) {
                                // The place ended while this client was away (its buyer
                                // checked out, or its grace period ran out): the rejoin took a
                                // new one at the back, which nobody asked for. Give it up, and
                                // tell the application its place ended.
                                let id = self.next_id();
                                let leave = ClientMessage::QueueLeave {
                                    id,
                                    onsale: status.onsale.clone(),
                                };
                                self.pending.insert(id, Pending::Ignore);
                                status.place = place;
                                status.state = marquee_protocol::queue::PlaceState::Ended;
                                status.position = None;
                                status.admission = None;
                                self.send(socket, &leave).await?;
                            }
                            self.note_place(&status);
                            self.emit(Event::QueueStatus(status)).await;
                        }
                    }
                    Some(Pending::Ack(request_ids)) => {
                        for request_id in &request_ids {
                            self.unacked.remove(request_id);
                        }
                    }
                    Some(Pending::Command { request_id })
                        if matches!(other, ServerMessage::Accepted { .. }) =>
                    {
                        if let Some(open) = self.open.get_mut(&request_id)
                            && !std::mem::replace(&mut open.accepted, true)
                        {
                            self.emit(Event::Accepted { request_id }).await;
                        }
                    }
                    _ => {}
                }
                Ok(())
            }
        }
    }

    /// Remembers the place a status names; forgets the onsale once its place ended.
    fn note_place(&mut self, status: &marquee_protocol::queue::QueueStatus) {
        use marquee_protocol::queue::PlaceState;
        if matches!(status.state, PlaceState::Ended | PlaceState::Closed) {
            self.queues.remove(&status.onsale);
        } else if let Some(place) = self.queues.get_mut(&status.onsale) {
            *place = Some(status.place.clone());
        }
    }

    async fn on_publication(
        &mut self,
        socket: &mut Socket,
        publication: Publication,
    ) -> Result<(), End> {
        let Some(sub) = self.subs.get_mut(&publication.channel) else {
            return Ok(());
        };
        if sub.in_flight {
            return Ok(()); // replayed after the subscribe reply
        }
        let Some(position) = &mut sub.position else {
            return Ok(());
        };
        if position.epoch == publication.epoch && publication.offset <= position.offset {
            return Ok(()); // duplicate
        }
        if position.epoch == publication.epoch && publication.offset == position.offset + 1 {
            position.offset = publication.offset;
            if self.inbox.as_deref() == Some(publication.channel.as_str())
                && let Ok(InboxMessage::Result(result)) =
                    serde_json::from_value::<InboxMessage>(publication.data.clone())
            {
                return self.on_results(socket, vec![result]).await;
            }
            self.emit(Event::Publication(publication)).await;
            return Ok(());
        }
        // A gap or a new epoch: ask for what we missed.
        let channel = publication.channel;
        self.send_subscribe(socket, &channel).await
    }

    async fn send_subscribe(&mut self, socket: &mut Socket, channel: &str) -> Result<(), End> {
        let id = self.next_id();
        let Some(sub) = self.subs.get_mut(channel) else {
            return Ok(());
        };
        sub.in_flight = true;
        sub.retry_at = None;
        sub.automatic = sub.waiters.is_empty();
        let message = ClientMessage::Subscribe {
            id,
            channel: channel.to_owned(),
            since: sub.position.clone(),
        };
        self.pending.insert(
            id,
            Pending::Subscribe {
                channel: channel.to_owned(),
            },
        );
        self.send(socket, &message).await
    }

    async fn send(&mut self, socket: &mut Socket, message: &ClientMessage) -> Result<(), End> {
        let frame = match self.config.codec.encode(message) {
            Ok(Frame::Text(text)) => Message::Text(text.into()),
            Ok(Frame::Binary(bytes)) => Message::Binary(bytes.into()),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode request");
                return Ok(());
            }
        };
        socket.send(frame).await.map_err(|e| End::Reconnect {
            code: None,
            reason: e.to_string(),
            advised: None,
        })
    }
}

struct Welcome {
    node: String,
    inbox: String,
    inbox_position: StreamPosition,
    inbox_snapshot: Option<Value>,
    expires_at: u64,
}

fn decode(codec: Codec, message: &Message) -> Option<ServerMessage> {
    let bytes: &[u8] = match message {
        Message::Text(text) => text.as_bytes(),
        Message::Binary(bytes) => bytes,
        _ => return None,
    };
    match codec.decode::<ServerMessage>(bytes) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(error = %e, "undecodable server message");
            None
        }
    }
}

fn http_error(response: &tungstenite::http::Response<Option<Vec<u8>>>) -> ClientError {
    let body: Option<ErrorBody> = response
        .body()
        .as_deref()
        .and_then(|b| serde_json::from_slice(b).ok());
    let status = response.status().as_u16();
    match status {
        401 => {
            let body = body.unwrap_or_else(|| ErrorBody::new(ErrorCode::TokenInvalid, "401"));
            ClientError::Unauthorized {
                code: body.code,
                message: body.message,
            }
        }
        503 => ClientError::OverCapacity {
            retry_after: response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        },
        _ => ClientError::Connect(match body {
            Some(b) => format!("HTTP {status}: {} ({})", b.message, b.code),
            None => format!("HTTP {status}"),
        }),
    }
}
