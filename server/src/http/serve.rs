//! Serving a router on a listener, with the limits a public listener needs and axum's `serve`
//! does not set: a cap on open connections, a deadline for a request's headers (which also
//! closes a keep-alive connection left idle), and a deadline for its body. A client that opens
//! sockets and sends nothing, or a header a byte a minute, holds a socket for seconds, not
//! forever.
//!
//! hyper's HTTP/1.1 connection builder with tokio's timer, as axum's own `serve` is built, plus
//! those settings. WebSocket upgrades leave the HTTP connection once upgraded: their lifetime
//! is the hub's (heartbeats, auth lapse), and their slot is the hub's admission's.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

/// The accept queue asked of the kernel for a public listener (it caps it at
/// `net.core.somaxconn`). When a node is lost, thousands of its buyers connect to each other
/// node within a second; past the usual 1,024 the kernel drops their SYNs, and a client's
/// kernel sends a dropped SYN again only after 1 s, then 3 s, then 7 s, so a burst the node
/// could take in a second stretches into its clients' connect time-outs.
pub const ACCEPT_BACKLOG: u32 = 8192;

/// Binds a public listener on `addr` with an accept queue of [`ACCEPT_BACKLOG`].
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// What one listener keeps to.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    /// Open connections at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// How long a request's headers may take to arrive, counted from the connection's start or
    /// the previous response: also how long a keep-alive connection may sit idle.
    pub header_timeout: Duration,
    /// How long reading a request's body may take (408 past it).
    pub body_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` completes, then waits for requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        limits.body_timeout,
    ));
    let open = Arc::new(Semaphore::new(limits.max_connections));
    // Connections in flight, and the signal that asks them to finish their request and close.
    let connections = TaskTracker::new();
    let stopping = CancellationToken::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was taken:
                    // pause briefly rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = open.clone().try_acquire_owned() else {
            crate::metrics::METRICS.connections_refused.increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer));
            app.clone().oneshot(request.map(axum::body::Body::new))
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let stopping = stopping.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = stopping.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    stopping.cancel();
    connections.close();
    connections.wait().await;
    Ok(())
}

/// The listeners' settings.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
#[command(next_help_heading = "Listeners")]
pub struct Args {
    /// Open connections on the public listener, WebSockets included (a WebSocket's own cap is
    /// `MARQUEE_MAX_CONNECTIONS`); one more is closed as soon as it is accepted.
    #[arg(long, env = "MARQUEE_HTTP_MAX_CONNECTIONS", default_value_t = 250_000)]
    pub http_max_connections: usize,

    /// Open connections on the internal listener.
    #[arg(long, env = "MARQUEE_INTERNAL_MAX_CONNECTIONS", default_value_t = 1024)]
    pub internal_max_connections: usize,

    /// How long a request's headers may take, and a keep-alive connection may sit idle.
    #[arg(long, env = "MARQUEE_HEADER_TIMEOUT", default_value = "10s", value_parser = crate::clock::parse_duration)]
    pub header_timeout: Duration,

    /// How long reading a request's body may take.
    #[arg(long, env = "MARQUEE_BODY_TIMEOUT", default_value = "30s", value_parser = crate::clock::parse_duration)]
    pub body_timeout: Duration,
}

impl Args {
    /// The public listener's limits.
    pub fn public(&self) -> ListenerLimits {
        ListenerLimits {
            max_connections: self.http_max_connections,
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
        }
    }

    /// The internal listener's limits.
    pub fn internal(&self) -> ListenerLimits {
        ListenerLimits {
            max_connections: self.internal_max_connections,
            ..self.public()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bound_listener_accepts_a_burst_larger_than_the_default_queue() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        // 1,500 connections before a single accept: the kernel queues what the default
        // backlog of 1,024 would not (its own cap, somaxconn, allowing).
        let mut clients = Vec::new();
        for _ in 0..1_500 {
            clients.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        let mut accepted = 0;
        while accepted < clients.len() {
            let (_socket, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
                .await
                .expect("every queued connection is accepted")
                .unwrap();
            accepted += 1;
        }
        assert_eq!(accepted, 1_500);
    }
}
