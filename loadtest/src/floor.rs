//! The floor: the least work a server can do to deliver the fan-out scenario's messages.
//!
//! `fanout --target floor` runs this instead of a hub. It accepts WebSocket upgrades on any
//! path (no token, no subprotocol, no channels) and takes publications on `POST /publish`
//! (`{"channel": …, "data": …}`, the body Marquee's internal publish takes). Each publication is
//! serialized once as the very frame a Marquee node sends (`{"type":"pub", …}`, offsets
//! counting up), framed once as an unmasked WebSocket text frame, and the same bytes are
//! written to every socket, every frame waiting for a socket in one write (one system call for
//! many frames, as a hub tuned for fan-out writes). Nothing else happens: no protocol, no history, no buffering
//! beyond a bounded queue per socket (a socket that falls behind by more loses frames, which
//! the subscribers count as lost). What a hub spends beyond this, per delivered message, is
//! the cost of being a hub.

use anyhow::{Context as _, bail};
use bytes::{BufMut as _, Bytes, BytesMut};
use marquee_protocol::{Publication, ServerMessage};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Frames a socket may be behind before it loses some.
const QUEUE: usize = 4096;
/// The largest request head or body taken.
const MAX_REQUEST: usize = 1 << 20;
/// The most frames one write carries.
const FRAMES_PER_WRITE: usize = 64;

/// Serves until the process is killed.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let (frames, _) = broadcast::channel::<Bytes>(QUEUE);
    let offset = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (frames, offset) = (frames.clone(), offset.clone());
        tokio::spawn(async move {
            let _ = connection(stream, frames, offset).await;
        });
    }
}

/// One HTTP request's head: method, path and the headers the floor reads.
#[derive(Debug, Default)]
struct Head {
    method: String,
    path: String,
    websocket_key: Option<String>,
    content_length: usize,
}

/// Reads a request head (up to the blank line); `None` at a clean end of the connection.
async fn read_head(stream: &mut TcpStream, buffer: &mut BytesMut) -> anyhow::Result<Option<Head>> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let raw = buffer.split_to(end + 4);
            let text = std::str::from_utf8(&raw).context("request head is not UTF-8")?;
            let mut lines = text.split("\r\n");
            let mut start = lines.next().unwrap_or_default().split(' ');
            let mut head = Head {
                method: start.next().unwrap_or_default().to_owned(),
                path: start.next().unwrap_or_default().to_owned(),
                ..Head::default()
            };
            for line in lines {
                let Some((name, value)) = line.split_once(':') else {
                    continue;
                };
                let value = value.trim();
                if name.eq_ignore_ascii_case("sec-websocket-key") {
                    head.websocket_key = Some(value.to_owned());
                } else if name.eq_ignore_ascii_case("content-length") {
                    head.content_length = value.parse().context("content-length")?;
                }
            }
            return Ok(Some(head));
        }
        if buffer.len() > MAX_REQUEST {
            bail!("request head too large");
        }
        if fill(stream, buffer).await? == 0 {
            return Ok(None);
        }
    }
}

async fn fill(
    stream: &mut (impl AsyncRead + Unpin),
    buffer: &mut BytesMut,
) -> anyhow::Result<usize> {
    buffer.reserve(4096);
    Ok(stream.read_buf(buffer).await?)
}

async fn connection(
    mut stream: TcpStream,
    frames: broadcast::Sender<Bytes>,
    offset: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut buffer = BytesMut::new();
    while let Some(head) = read_head(&mut stream, &mut buffer).await? {
        if let Some(key) = &head.websocket_key {
            let accept = derive_accept_key(key.as_bytes());
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            stream.write_all(response.as_bytes()).await?;
            return subscriber(stream, frames.subscribe()).await;
        }
        if head.content_length > MAX_REQUEST {
            bail!("body too large");
        }
        while buffer.len() < head.content_length {
            if fill(&mut stream, &mut buffer).await? == 0 {
                return Ok(());
            }
        }
        let body = buffer.split_to(head.content_length);
        let (status, text) = match (head.method.as_str(), head.path.as_str()) {
            ("POST", "/publish") => match publish(&body, &frames, &offset) {
                Ok(()) => ("200 OK", String::new()),
                Err(e) => ("400 Bad Request", e.to_string()),
            },
            _ => ("404 Not Found", String::new()),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
        stream.write_all(response.as_bytes()).await?;
    }
    Ok(())
}

/// The body of a publish, as Marquee's internal publish takes it.
#[derive(serde::Deserialize)]
struct Publish {
    channel: String,
    data: serde_json::Value,
}

/// Serializes and frames one publication, once, for every socket.
fn publish(
    body: &[u8],
    frames: &broadcast::Sender<Bytes>,
    offset: &AtomicU64,
) -> anyhow::Result<()> {
    let Publish { channel, data } = serde_json::from_slice(body)?;
    let message = ServerMessage::Pub(Publication {
        channel,
        epoch: "floor".into(),
        offset: offset.fetch_add(1, Ordering::Relaxed) + 1,
        data,
    });
    let payload = serde_json::to_vec(&message)?;
    // Nobody listening is no error.
    let _ = frames.send(text_frame(&payload));
    Ok(())
}

/// An unmasked, final WebSocket text frame (RFC 6455 §5.2), as a server sends it.
fn text_frame(payload: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(payload.len() + 10);
    frame.put_u8(0x81);
    match payload.len() {
        n if n < 126 => frame.put_u8(n as u8),
        n if n <= usize::from(u16::MAX) => {
            frame.put_u8(126);
            frame.put_u16(n as u16);
        }
        n => {
            frame.put_u8(127);
            frame.put_u64(n as u64);
        }
    }
    frame.put_slice(payload);
    frame.freeze()
}

/// Writes every frame to one socket until it closes, the frames waiting for it (up to
/// `FRAMES_PER_WRITE`) in one write. What the client sends is read and dropped (a close ends
/// the connection).
async fn subscriber(
    stream: TcpStream,
    mut frames: broadcast::Receiver<Bytes>,
) -> anyhow::Result<()> {
    let (mut read, mut write) = stream.into_split();
    let mut reader = tokio::spawn(async move {
        let mut sink = [0u8; 1024];
        while matches!(read.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    loop {
        tokio::select! {
            _ = &mut reader => return Ok(()),
            frame = frames.recv() => match frame {
                Ok(frame) => {
                    let mut waiting = Vec::new();
                    while waiting.len() < FRAMES_PER_WRITE - 1 {
                        match frames.try_recv() {
                            Ok(next) => waiting.push(next),
                            Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                            Err(_) => break,
                        }
                    }
                    if waiting.is_empty() {
                        write.write_all(&frame).await?;
                    } else {
                        let size = frame.len() + waiting.iter().map(Bytes::len).sum::<usize>();
                        let mut batch = BytesMut::with_capacity(size);
                        batch.put_slice(&frame);
                        for next in &waiting {
                            batch.put_slice(next);
                        }
                        write.write_all(&batch).await?;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;

    #[test]
    fn frames_carry_their_length_in_the_shortest_form() {
        assert_eq!(&text_frame(b"hi")[..], b"\x81\x02hi");
        let medium = text_frame(&[b'x'; 300]);
        assert_eq!(&medium[..4], &[0x81, 126, 1, 44]);
        assert_eq!(medium.len(), 304);
        let large = text_frame(&vec![b'x'; 70_000]);
        assert_eq!(large[1], 127);
        assert_eq!(u64::from_be_bytes(large[2..10].try_into().unwrap()), 70_000);
    }

    #[tokio::test]
    async fn a_websocket_client_receives_what_is_published_as_marquee_frames() {
        let port = crate::servers::free_port().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let server = tokio::spawn(serve(addr));
        let mut ws = None;
        for _ in 0..100 {
            if let Ok((socket, _)) =
                tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await
            {
                ws = Some(socket);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let mut ws = ws.expect("the floor accepts a WebSocket");
        let mut publisher = crate::wire::Publisher::connect(crate::wire::Target::Floor, addr, "")
            .await
            .unwrap();
        for seq in 1..=3 {
            publisher.publish("seats:fanout", seq, 200).await.unwrap();
        }
        for seq in 1..=3u64 {
            let Some(Ok(Message::Text(text))) = ws.next().await else {
                panic!("a text frame")
            };
            let ServerMessage::Pub(p) = serde_json::from_str(&text).unwrap() else {
                panic!("a pub frame: {text}")
            };
            assert_eq!((p.channel.as_str(), p.offset), ("seats:fanout", seq));
            assert_eq!(p.data["seq"], seq);
        }
        server.abort();
    }
}
