//! Floods hit the flooder first: unauthenticated upgrades spend their own address's bucket,
//! not the one real buyers share; one account cannot take every slot; a silent or slow client
//! holds a socket for seconds, not forever; a listener caps its open connections.
//!
//! Clients here connect from distinct loopback addresses (127.0.0.2, 127.0.0.3, …), which
//! Linux routes like 127.0.0.1, so "another address" is real without leaving the machine.

use crate::common::{SECRET, TestNode, claims, config};
use marquee_server::auth::sign_hs256;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection to `to` from loopback address `127.0.0.{from}`.
async fn connect_from(from: u8, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, from)),
            0,
        ))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// The status of a `GET /ws` upgrade sent from `127.0.0.{from}` (with `token`, if any).
async fn upgrade_status(from: u8, to: SocketAddr, token: Option<&str>) -> u16 {
    let mut stream = connect_from(from, to).await;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {to}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{auth}\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut head))
        .await
        .expect("an answer")
        .unwrap();
    let line = String::from_utf8_lossy(&head[..n]).to_string();
    line.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {line:?}"))
}

fn buyer(user: &str) -> String {
    sign_hs256(SECRET, &claims(user, &[], 3600))
}

/// Reads until the server closes the connection; how long that took.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> Duration {
    let started = Instant::now();
    let mut sink = vec![0u8; 1024];
    loop {
        match tokio::time::timeout(within, stream.read(&mut sink)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the server kept the connection open for {within:?}"),
        }
    }
}

#[tokio::test]
async fn unauthenticated_upgrades_spend_their_own_bucket_not_the_buyers() {
    let mut config = config();
    // A node bucket so small that five refused attempts would empty it if they spent it.
    config.hub.connect_rate = 1;
    config.hub.connect_burst = 5;
    config.hub.connect_rate_per_address = 1;
    config.hub.connect_burst_per_address = 20;
    let node = TestNode::start(config).await;

    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let started = Instant::now();
    for _ in 0..300 {
        *statuses
            .entry(upgrade_status(2, node.addr, None).await)
            .or_default() += 1;
    }
    // The address's burst is answered 401 (no token), then it is throttled (429); its bucket
    // refills one a second while the flood runs.
    let refilled = started.elapsed().as_secs() as usize + 1;
    let unauthorized = statuses.get(&401).copied().unwrap_or(0);
    assert!((20..=20 + refilled).contains(&unauthorized), "{statuses:?}");
    assert_eq!(
        statuses.get(&429).copied().unwrap_or(0),
        300 - unauthorized,
        "{statuses:?}"
    );
    // A buyer from another address still gets in: the node's bucket was not touched.
    for i in 0..5 {
        let status = upgrade_status(3, node.addr, Some(&buyer(&format!("b{i}")))).await;
        assert_eq!(status, 101, "buyer {i}");
    }
    node.shutdown().await;
}

#[tokio::test]
async fn one_account_cannot_take_every_connection() {
    let mut config = config();
    config.hub.max_connections_per_account = 3;
    let node = TestNode::start(config).await;
    let token = buyer("greedy");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(crate::common::Raw::connect(&node.ws_url(), &token).await);
    }
    assert_eq!(upgrade_status(1, node.addr, Some(&token)).await, 429);
    // Someone else is not affected.
    assert_eq!(
        upgrade_status(1, node.addr, Some(&buyer("other"))).await,
        101
    );
    // A closed connection gives its slot back.
    drop(held.pop());
    let mut status = 0;
    for _ in 0..100 {
        status = upgrade_status(1, node.addr, Some(&token)).await;
        if status == 101 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 101, "the slot came back");
    node.shutdown().await;
}

#[tokio::test]
async fn silent_and_slow_clients_are_closed_on_both_listeners() {
    let mut config = config();
    config.listeners.header_timeout = Duration::from_millis(300);
    config.listeners.body_timeout = Duration::from_millis(300);
    let node = TestNode::start_internal(config).await;
    let internal = node.internal.unwrap();
    for addr in [node.addr, internal] {
        // Connects and sends nothing.
        let mut silent = connect_from(1, addr).await;
        let took = until_closed(&mut silent, Duration::from_secs(5)).await;
        assert!(took < Duration::from_secs(3), "silent: {took:?}");
        // Sends half a header, then nothing.
        let mut slow = connect_from(1, addr).await;
        slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let took = until_closed(&mut slow, Duration::from_secs(5)).await;
        assert!(took < Duration::from_secs(3), "slow header: {took:?}");
    }
    // A body promised and never sent is answered and closed, not waited for.
    let mut stalled = connect_from(1, internal).await;
    stalled
        .write_all(
            b"POST /internal/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Authorization: Bearer x\r\nContent-Length: 100\r\n\r\n{\"chan",
        )
        .await
        .unwrap();
    let mut answer = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), stalled.read(&mut answer))
        .await
        .expect("answered within the body timeout")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    node.shutdown().await;
}

#[tokio::test]
async fn a_listener_caps_its_open_connections() {
    let mut config = config();
    config.listeners.http_max_connections = 4;
    let node = TestNode::start(config).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(connect_from(1, node.addr).await);
    }
    // Give the server a moment to accept all four before the fifth.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut over = connect_from(1, node.addr).await;
    let took = until_closed(&mut over, Duration::from_secs(2)).await;
    assert!(took < Duration::from_secs(1), "over the cap: {took:?}");
    // One leaves; the next is served.
    drop(idle.pop());
    let mut served = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut stream = connect_from(1, node.addr).await;
        if stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .is_err()
        {
            continue;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer).await;
        if answer.starts_with("HTTP/1.1 200") {
            served = true;
            break;
        }
    }
    assert!(served, "a freed slot serves the next client");
    node.shutdown().await;
}
