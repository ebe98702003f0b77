//! The client side of one connection, for every target, and the publisher.
//!
//! Marquee connections speak `marquee.v1.json` over raw tokio-tungstenite. Socket.IO connections
//! speak Engine.IO v4 over the raw WebSocket transport: the `0` open packet, `40` to join the
//! default namespace, `42[...]` events, and `2`/`3` ping/pong. Both subscribe to one channel;
//! floor connections only connect. All then read publications whose payload carries `seq` and
//! `ts` (unix microseconds).

use anyhow::{Context as _, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use marquee_protocol::{ClientMessage, Codec, ServerMessage, StreamPosition};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

/// Which server the load runs against.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Marquee hub nodes.
    Marquee,
    /// The Socket.IO 4 peer with the Redis adapter.
    Socketio,
    /// The floor ([`crate::floor`]): pre-framed messages written to bare sockets.
    Floor,
}

impl Target {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Marquee => "marquee",
            Self::Socketio => "socketio",
            Self::Floor => "floor",
        }
    }
}

/// A publication as the load test sees it.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// Publisher's sequence number.
    pub seq: u64,
    /// Publisher's clock at publish, unix microseconds.
    pub ts_us: u64,
}

/// Unix time in microseconds.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// How a worker reaches nodes behind TLS: the name their certificate carries and any private
/// CA to trust (the SDK's trust: webpki roots plus these).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WireTls {
    /// The name the certificate is checked against (and sent as SNI).
    pub server_name: String,
    /// PEM of extra certificate authorities.
    pub ca_pem: Option<String>,
}

impl WireTls {
    /// The connector, built once per worker process.
    pub fn connector(&self) -> anyhow::Result<Connector> {
        let mut tls = marquee_client::Tls::default();
        if let Some(pem) = &self.ca_pem {
            tls = tls.with_root_pem(pem.as_bytes())?;
        }
        Ok(tls.connector()?)
    }
}

/// One subscribed client connection.
#[derive(Debug)]
pub struct Conn {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    target: Target,
    channel: String,
    /// Marquee: the last position seen, to resume after a `resync`.
    position: Option<StreamPosition>,
    /// Marquee: `resync` notices handled.
    pub resyncs: u64,
}

fn ws_config() -> WebSocketConfig {
    // Small buffers: a worker holds tens of thousands of these.
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
}

async fn tcp(addr: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl Conn {
    /// Connects, authenticates (Marquee) or handshakes (Engine.IO), and subscribes; over TLS
    /// (`wss://`, checked against `tls`'s name) when given one.
    pub async fn open(
        target: Target,
        addr: SocketAddr,
        source: Option<IpAddr>,
        token: &str,
        channel: &str,
        tls: Option<&(Connector, String)>,
    ) -> anyhow::Result<Self> {
        let stream = tcp(addr, source).await?;
        let (scheme, host) = match tls {
            Some((_, name)) => ("wss", format!("{name}:{}", addr.port())),
            None => ("ws", addr.to_string()),
        };
        let url = match target {
            Target::Marquee | Target::Floor => format!("{scheme}://{host}/ws"),
            Target::Socketio => {
                format!("{scheme}://{host}/socket.io/?EIO=4&transport=websocket")
            }
        };
        let mut request = url.into_client_request()?;
        if target == Target::Marquee {
            request.headers_mut().insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {token}"))?,
            );
            request.headers_mut().insert(
                "sec-websocket-protocol",
                HeaderValue::from_static(Codec::JSON_PROTOCOL),
            );
        }
        let connector = tls.map(|(c, _)| c.clone());
        let (ws, _) = tokio_tungstenite::client_async_tls_with_config(
            request,
            stream,
            Some(ws_config()),
            // Without one, a `ws://` URL leaves the stream plain.
            Some(connector.unwrap_or(Connector::Plain)),
        )
        .await
        .context("websocket handshake")?;
        let mut conn = Self {
            ws,
            target,
            channel: channel.to_owned(),
            position: None,
            resyncs: 0,
        };
        match target {
            Target::Marquee => conn.marquee_subscribe(None).await?,
            Target::Socketio => conn.engineio_join().await?,
            // No protocol: every socket receives every publication.
            Target::Floor => {}
        }
        Ok(conn)
    }

    async fn text(&mut self) -> anyhow::Result<String> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
                Some(Ok(Message::Close(c))) => bail!("closed by server: {c:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => bail!("connection ended"),
            }
        }
    }

    async fn marquee_subscribe(&mut self, since: Option<StreamPosition>) -> anyhow::Result<()> {
        let request = ClientMessage::Subscribe {
            id: 1,
            channel: self.channel.clone(),
            since,
        };
        let text = serde_json::to_string(&request)?;
        self.ws.send(Message::text(text)).await?;
        loop {
            let msg: ServerMessage = serde_json::from_str(&self.text().await?)?;
            match msg {
                ServerMessage::Subscribed { epoch, offset, .. } => {
                    self.position = Some(StreamPosition::new(epoch, offset));
                    return Ok(());
                }
                ServerMessage::Error { code, message, .. } => {
                    bail!("subscribe refused: {code}: {message}")
                }
                _ => {}
            }
        }
    }

    async fn engineio_join(&mut self) -> anyhow::Result<()> {
        let open = self.text().await?;
        if !open.starts_with('0') {
            bail!("expected an Engine.IO open packet, got {open}");
        }
        self.ws.send(Message::text("40")).await?;
        loop {
            let packet = self.text().await?;
            if packet.starts_with("40") {
                break;
            }
            if packet == "2" {
                self.ws.send(Message::text("3")).await?;
            }
        }
        let subscribe = format!("42{}", json!(["subscribe", self.channel]));
        self.ws.send(Message::text(subscribe)).await?;
        loop {
            let packet = self.text().await?;
            if packet == "2" {
                self.ws.send(Message::text("3")).await?;
            } else if packet.starts_with("42") && packet.contains("\"subscribed\"") {
                return Ok(());
            }
        }
    }

    /// The next publication on the channel. Pings are answered; a Marquee `resync` resumes from
    /// the last position seen (which replays what was dropped). Frames are parsed only as far
    /// as the load test needs, so the client side costs the same for both targets.
    pub async fn next(&mut self) -> anyhow::Result<Received> {
        loop {
            let text = self.text().await?;
            match self.target {
                Target::Marquee | Target::Floor => {
                    let frame: MarqueeFrame<'_> = serde_json::from_str(&text)?;
                    match frame.kind.as_ref() {
                        "pub" => {
                            let (Some(epoch), Some(offset), Some(data)) =
                                (frame.epoch, frame.offset, frame.data)
                            else {
                                bail!("malformed pub frame: {text}");
                            };
                            self.position = Some(StreamPosition::new(epoch, offset));
                            return Ok(data.into());
                        }
                        "resync" => {
                            self.resyncs += 1;
                            let since = self.position.clone();
                            self.marquee_subscribe(since).await?;
                        }
                        _ => {}
                    }
                }
                Target::Socketio => {
                    if text == "2" {
                        self.ws.send(Message::text("3")).await?;
                        continue;
                    }
                    if let Some(event) = text.strip_prefix("42")
                        && let Ok((name, data)) = serde_json::from_str::<(&str, Payload)>(event)
                        && name == "pub"
                    {
                        return Ok(data.into());
                    }
                }
            }
        }
    }

    /// Keeps the connection alive without caring for its messages (answers pings).
    pub async fn idle(&mut self) -> anyhow::Result<()> {
        loop {
            let text = self.text().await?;
            if self.target == Target::Socketio && text == "2" {
                self.ws.send(Message::text("3")).await?;
            }
        }
    }
}

/// The fields of a Marquee frame the load test reads.
#[derive(serde::Deserialize)]
struct MarqueeFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    epoch: Option<String>,
    offset: Option<u64>,
    data: Option<Payload>,
}

/// The load test's payload (its padding is skipped).
#[derive(serde::Deserialize)]
struct Payload {
    seq: u64,
    ts: u64,
}

impl From<Payload> for Received {
    fn from(p: Payload) -> Self {
        Self {
            seq: p.seq,
            ts_us: p.ts,
        }
    }
}

/// Publishes payloads over one keep-alive HTTP/1.1 connection: `POST /internal/publish` on a
/// Marquee node (admin token), `POST /publish` on the Socket.IO peer and on the floor.
pub struct Publisher {
    /// The HTTP/1.1 connection's request half.
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    target: Target,
    addr: SocketAddr,
    token: String,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Opens the connection.
    pub async fn connect(
        target: Target,
        addr: SocketAddr,
        admin_token: &str,
    ) -> anyhow::Result<Self> {
        let stream = tcp(addr, None).await?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self {
            sender,
            target,
            addr,
            token: admin_token.to_owned(),
        })
    }

    /// Publishes `{seq, ts}` (plus padding) on `channel`.
    pub async fn publish(&mut self, channel: &str, seq: u64, pad: usize) -> anyhow::Result<()> {
        let data = json!({"seq": seq, "ts": now_us(), "pad": "x".repeat(pad)});
        let (path, body) = match self.target {
            Target::Marquee => (
                "/internal/publish",
                json!({"channel": channel, "data": data}),
            ),
            Target::Socketio => ("/publish", json!({"room": channel, "data": data})),
            Target::Floor => ("/publish", json!({"channel": channel, "data": data})),
        };
        let request = hyper::Request::post(path)
            .header("host", self.addr.to_string())
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", self.token))
            .body(Full::new(Bytes::from(serde_json::to_vec(&body)?)))?;
        self.sender.ready().await?;
        let response =
            tokio::time::timeout(Duration::from_secs(10), self.sender.send_request(request))
                .await
                .context("publish timed out")??;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!(
                "publish failed: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(())
    }
}
