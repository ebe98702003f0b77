//! Shared test harness: real nodes on port 0, real Redis, real sockets.
#![allow(dead_code)]

pub mod processes;
pub mod shop;
pub mod tls_proxy;

use futures_util::{SinkExt, StreamExt};
use marquee_protocol::{ClientMessage, Codec, Frame, ServerMessage};
use marquee_server::auth::{Claims, sign_hs256};
use marquee_server::clock::now_secs;
use marquee_server::hub::Hub;
use marquee_server::secret::Secret;
use marquee_server::{Config, Node};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "test-secret-0123456789abcdef-0123456789";

/// The Redis the tests use (a per-test key prefix keeps them apart).
pub fn redis_url() -> String {
    std::env::var("MARQUEE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A unique prefix for Redis keys and channels.
/// A client of the test Redis, for looking at what nodes left there.
pub async fn redis_client() -> fred::clients::Client {
    use fred::prelude::ClientLike as _;
    let client =
        fred::prelude::Builder::from_config(fred::prelude::Config::from_url(&redis_url()).unwrap())
            .build()
            .unwrap();
    client.init().await.unwrap();
    client
}

pub fn unique_prefix() -> String {
    format!("t{:016x}", rand::random::<u64>())
}

/// A default test configuration: memory engine, HS256.
pub fn config() -> Config {
    let mut config = Config::with_secret(SECRET);
    config.redis_url = None;
    config.auth.jwt_leeway = Duration::ZERO;
    config.shutdown_timeout = Duration::from_secs(5);
    // Every test client connects from 127.0.0.1; the flood tests set their own.
    config.hub.connect_rate_per_address = 100_000;
    config.hub.connect_burst_per_address = 100_000;
    config
}

/// A test configuration on the shared Redis with the given prefix.
pub fn redis_config(prefix: &str) -> Config {
    let mut config = config();
    config.redis_url = Some(Secret::new(redis_url()));
    config.redis_prefix = prefix.to_owned();
    config
}

/// A running node.
pub struct TestNode {
    pub addr: SocketAddr,
    /// The internal listener (payment hooks), when started with one.
    pub internal: Option<SocketAddr>,
    pub hub: Hub,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestNode {
    pub async fn start(config: Config) -> Self {
        let node = Node::build(config).await.expect("node builds");
        Self::serve(node).await
    }

    /// Starts a node that also serves its internal routes (payment hooks).
    pub async fn start_internal(config: Config) -> Self {
        let node = Node::build(config).await.expect("node builds");
        let internal = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let internal_addr = internal.local_addr().unwrap();
        let mut node = Self::serve(node.with_internal_listener(internal)).await;
        node.internal = Some(internal_addr);
        node
    }

    pub async fn serve(node: Node) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hub = node.hub().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(node.serve(listener, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            internal: None,
            hub,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Graceful shutdown; waits for the drain.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// A token for `sub` with roles, expiring `ttl` seconds from now.
pub fn token(sub: &str, roles: &[&str]) -> String {
    token_with(sub, roles, 3600)
}

pub fn token_with(sub: &str, roles: &[&str], ttl: i64) -> String {
    sign_hs256(SECRET, &claims(sub, roles, ttl))
}

pub fn claims(sub: &str, roles: &[&str], ttl: i64) -> Claims {
    Claims {
        sub: sub.to_owned(),
        tenant: None,
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        exp: (now_secs() as i64 + ttl) as u64,
        nbf: None,
        iss: None,
        aud: None,
        sid: None,
    }
}

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A raw WebSocket client, as a stranger would write one.
pub struct Raw {
    pub socket: Socket,
    pub codec: Codec,
    opened: std::time::Instant,
}

/// How long a test may read from one connection in all. A test that waits in a loop for a
/// message that never comes (other messages keep arriving, so no single read times out) fails
/// here instead of running until its token expires.
const READING_AT_MOST: Duration = Duration::from_secs(300);

impl Raw {
    pub async fn connect(url: &str, token: &str) -> Self {
        Self::connect_with(url, token, Codec::Json).await
    }

    pub async fn connect_with(url: &str, token: &str, codec: Codec) -> Self {
        Self::connect_welcomed(url, token, codec).await.0
    }

    /// Connects and returns the client with the server's `welcome`.
    pub async fn connect_welcomed(url: &str, token: &str, codec: Codec) -> (Self, ServerMessage) {
        Self::connect_welcomed_with(url, token, codec, &[]).await
    }

    /// Connects with `extra` request headers and returns the client with the `welcome`.
    pub async fn connect_welcomed_with(
        url: &str,
        token: &str,
        codec: Codec,
        extra: &[(&'static str, &str)],
    ) -> (Self, ServerMessage) {
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        for (name, value) in extra {
            request
                .headers_mut()
                .insert(*name, HeaderValue::from_str(value).unwrap());
        }
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(codec.subprotocol()),
        );
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("upgrade succeeds");
        let mut raw = Self {
            socket,
            codec,
            opened: std::time::Instant::now(),
        };
        match raw.recv().await {
            welcome @ ServerMessage::Welcome { .. } => (raw, welcome),
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    pub async fn send(&mut self, message: &ClientMessage) {
        let frame = match self.codec.encode(message).unwrap() {
            Frame::Text(t) => Message::text(t),
            Frame::Binary(b) => Message::binary(b),
        };
        self.socket.send(frame).await.unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        self.socket.send(Message::text(text)).await.unwrap();
    }

    /// The next protocol message (skipping pings), within 5 s.
    pub async fn recv(&mut self) -> ServerMessage {
        self.recv_within(Duration::from_secs(5))
            .await
            .expect("a message within 5 s")
    }

    /// The next protocol message (skipping pings), if one comes within `within`.
    pub async fn recv_within(&mut self, within: Duration) -> Option<ServerMessage> {
        assert!(
            self.opened.elapsed() < READING_AT_MOST,
            "this connection has been read for over {READING_AT_MOST:?}: a wait that never ends"
        );
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()?
                .expect("socket open")
                .expect("no socket error");
            let bytes = match &frame {
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Binary(b) => b.to_vec(),
                Message::Ping(_) | Message::Pong(_) => continue,
                Message::Close(c) => panic!("unexpected close {c:?}"),
                Message::Frame(_) => continue,
            };
            return Some(self.codec.decode(&bytes).expect("decodable server message"));
        }
    }

    /// Reads until the server closes; returns the close frame and the messages before it.
    pub async fn until_close(
        &mut self,
        within: Duration,
    ) -> (Option<CloseFrame>, Vec<ServerMessage>) {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("the server closes in time");
            match next {
                Some(Ok(Message::Close(frame))) => return (frame, seen),
                Some(Ok(Message::Text(t))) => seen.push(self.codec.decode(t.as_bytes()).unwrap()),
                Some(Ok(Message::Binary(b))) => seen.push(self.codec.decode(&b).unwrap()),
                Some(Ok(_)) => {}
                Some(Err(tungstenite::Error::ConnectionClosed)) | None => return (None, seen),
                Some(Err(e)) => panic!("socket error before close: {e}"),
            }
        }
    }

    /// Subscribes and asserts that the server accepted.
    pub async fn must_subscribe(&mut self, id: u64, channel: &str) {
        let reply = self.subscribe(id, channel).await;
        assert!(
            matches!(reply, ServerMessage::Subscribed { .. }),
            "subscribing {channel}: {reply:?}"
        );
    }

    pub async fn subscribe(&mut self, id: u64, channel: &str) -> ServerMessage {
        self.send(&ClientMessage::Subscribe {
            id,
            channel: channel.into(),
            since: None,
        })
        .await;
        self.recv().await
    }
}

/// An HTTP response, read with a minimal client over a raw TCP stream (no extra dependency).
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }
}

/// Sends one HTTP/1.1 request and reads the whole response (Connection: close).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> HttpResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\n");
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("connection"))
    {
        request.push_str("connection: close\r\n");
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    if let Some(body) = body {
        request.push_str(body);
    }
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .expect("response within 5 s")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    let body = if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// A JSON API call as a client makes one: the bearer token (if any), a JSON body (if any);
/// the status and the JSON answer (`null` when the answer is not JSON).
pub async fn call_json(
    addr: SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("authorization", auth));
    }
    let text = body.map(serde_json::Value::to_string);
    let response = http(addr, method, path, &headers, text.as_deref()).await;
    (
        response.status,
        serde_json::from_str(&response.body).unwrap_or(serde_json::Value::Null),
    )
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// A WebSocket upgrade request over raw HTTP, for checking refusals before the upgrade.
pub async fn upgrade_request(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> HttpResponse {
    let mut headers = vec![
        ("upgrade", "websocket"),
        // `close` makes the server end the connection after a refusal, so the body can be read
        // to the end.
        ("connection", "upgrade, close"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    headers.extend_from_slice(extra);
    http(addr, "GET", path, &headers, None).await
}

/// A TCP relay between clients and a node that can cut every connection at once, to simulate
/// a network drop without touching either side.
pub struct Relay {
    pub addr: SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl Relay {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, watch) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let mut watch = watch.clone();
                watch.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watch.changed() => {}
                    }
                });
            }
        });
        Self { addr, cut, task }
    }

    /// Drops every relayed connection (new ones still go through).
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits for the SDK's next (re)subscription verdict on `channel`; a publication on it before
/// the verdict fails the test (it would have skipped the resubscribe).
pub async fn next_subscribed(
    events: &mut marquee_client::Events,
    channel: &str,
) -> marquee_client::Subscribed {
    use marquee_client::Event;
    loop {
        match tokio::time::timeout(Duration::from_secs(15), events.next())
            .await
            .expect("a verdict in time")
        {
            Some(Event::Subscribed(s)) if s.channel == channel => return s,
            Some(Event::Publication(p)) if p.channel == channel => {
                panic!("a publication before the resubscribe verdict: {p:?}")
            }
            Some(_) => {}
            None => panic!("client closed"),
        }
    }
}
