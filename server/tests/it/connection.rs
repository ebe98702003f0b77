//! Behaviour of one connection under bad input, abuse, slow reading, token lapse, missed
//! heartbeats and shutdown: each ends in its exact error or close code.

use crate::common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use marquee_protocol::message::ResyncReason;
use marquee_protocol::{Channel, ClientMessage, Codec, ErrorCode, ServerMessage};
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

fn error_code(msg: &ServerMessage) -> (Option<u64>, ErrorCode) {
    match msg {
        ServerMessage::Error { id, code, .. } => (*id, *code),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_frames_and_unknown_types_get_bad_request_and_the_connection_stays_open() {
    let node = TestNode::start(config()).await;
    let mut raw = Raw::connect(&node.ws_url(), &token("u1", &[])).await;

    raw.send_text("{not json").await;
    assert_eq!(error_code(&raw.recv().await), (None, ErrorCode::BadRequest));

    raw.send_text(r#"{"type":"teleport","id":41}"#).await;
    assert_eq!(
        error_code(&raw.recv().await),
        (Some(41), ErrorCode::BadRequest)
    );

    raw.send_text(r#"{"type":"subscribe","id":42}"#).await;
    assert_eq!(
        error_code(&raw.recv().await),
        (Some(42), ErrorCode::BadRequest)
    );

    raw.send_text(r#"{"type":"subscribe","id":43,"channel":"rooms:1"}"#)
        .await;
    assert_eq!(
        error_code(&raw.recv().await),
        (Some(43), ErrorCode::BadRequest)
    );

    // A binary frame on the JSON sub-protocol.
    raw.socket
        .send(Message::binary(vec![0x81, 0xa1, 0x61]))
        .await
        .unwrap();
    assert_eq!(error_code(&raw.recv().await), (None, ErrorCode::BadRequest));

    raw.send(&ClientMessage::Ping { id: 44 }).await;
    assert_eq!(raw.recv().await, ServerMessage::Pong { id: 44 });
    node.shutdown().await;
}

#[tokio::test]
async fn msgpack_clients_get_the_same_answers_in_binary_frames() {
    let node = TestNode::start(config()).await;
    let mut raw = Raw::connect_with(&node.ws_url(), &token("u1", &[]), Codec::MsgPack).await;
    let reply = raw.subscribe(1, "seats:e1").await;
    assert!(matches!(
        reply,
        ServerMessage::Subscribed {
            id: 1,
            recovered: false,
            ..
        }
    ));
    node.hub
        .publish(
            &Channel::parse("seats:e1").unwrap(),
            &json!({"seat": "A-1"}),
        )
        .await
        .unwrap();
    match raw.recv().await {
        ServerMessage::Pub(p) => assert_eq!(p.data, json!({"seat": "A-1"})),
        other => panic!("expected a pub, got {other:?}"),
    }
    raw.socket.send(Message::text("{}")).await.unwrap();
    assert_eq!(error_code(&raw.recv().await), (None, ErrorCode::BadRequest));
    node.shutdown().await;
}

#[tokio::test]
async fn an_oversized_message_closes_with_1009() {
    let mut config = config();
    config.hub.max_message_size = 1024;
    let node = TestNode::start(config).await;
    let mut raw = Raw::connect(&node.ws_url(), &token("u1", &[])).await;
    let big = format!(r#"{{"type":"ping","id":1,"pad":"{}"}}"#, "x".repeat(4096));
    raw.send_text(&big).await;
    let (close, _) = raw.until_close(Duration::from_secs(5)).await;
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1009));
    node.shutdown().await;
}

#[tokio::test]
async fn private_and_role_channels_are_forbidden_to_others() {
    let node = TestNode::start(config()).await;
    let mut buyer = Raw::connect(&node.ws_url(), &token("u1", &[])).await;
    for (id, channel) in [(1, "inbox:u2"), (2, "admin:onsale1"), (3, "gate:e1")] {
        let reply = buyer.subscribe(id, channel).await;
        assert_eq!(
            error_code(&reply),
            (Some(id), ErrorCode::Forbidden),
            "{channel}"
        );
    }
    // Its own inbox, public channels, and role channels with the role are fine.
    buyer.must_subscribe(4, "inbox:u1").await;
    buyer.must_subscribe(5, "queue:o1").await;
    // Staff channels with the role are checked against the catalog (`walls.rs`); this node
    // has none, so it refuses them, and another's inbox is refused whatever the role.
    let mut staff = Raw::connect(&node.ws_url(), &token("staff", &["admin", "gate"])).await;
    for (id, channel) in [(1, "admin:onsale1"), (2, "gate:e1"), (3, "inbox:u1")] {
        assert_eq!(
            error_code(&staff.subscribe(id, channel).await),
            (Some(id), ErrorCode::Forbidden),
            "{channel}"
        );
    }

    // Unsubscribing from something never subscribed is an error, not a silent success.
    buyer
        .send(&ClientMessage::Unsubscribe {
            id: 9,
            channel: "seats:zz".into(),
        })
        .await;
    assert_eq!(
        error_code(&buyer.recv().await),
        (Some(9), ErrorCode::NotSubscribed)
    );
    node.shutdown().await;
}

#[tokio::test]
async fn the_subscription_cap_is_enforced() {
    let mut config = config();
    config.hub.max_subscriptions = 3; // the inbox counts
    let node = TestNode::start(config).await;
    let mut raw = Raw::connect(&node.ws_url(), &token("u1", &[])).await;
    raw.must_subscribe(1, "seats:a").await;
    raw.must_subscribe(2, "seats:b").await;
    assert_eq!(
        error_code(&raw.subscribe(3, "seats:c").await),
        (Some(3), ErrorCode::TooManySubscriptions)
    );
    // Resubscribing an existing channel is not a new subscription.
    raw.must_subscribe(4, "seats:a").await;
    node.shutdown().await;
}

#[tokio::test]
async fn flooding_gets_rate_limited_then_closed_with_4003() {
    let mut config = config();
    config.hub.inbound_rate = 1;
    config.hub.inbound_burst = 3;
    config.hub.abuse_limit = 5;
    let node = TestNode::start(config).await;
    let mut raw = Raw::connect(&node.ws_url(), &token("u1", &[])).await;
    for id in 1..=20 {
        raw.send(&ClientMessage::Ping { id }).await;
    }
    let (close, seen) = raw.until_close(Duration::from_secs(5)).await;
    assert_flood_closed(close, &seen);
    node.shutdown().await;
}

#[tokio::test]
async fn frames_of_the_wrong_kind_count_against_the_rate_limit_too() {
    let mut config = config();
    config.hub.inbound_rate = 1;
    config.hub.inbound_burst = 3;
    config.hub.abuse_limit = 5;
    let node = TestNode::start(config).await;
    let mut raw = Raw::connect(&node.ws_url(), &token("u1", &[])).await;
    for _ in 0..20 {
        raw.socket.send(Message::binary(vec![0x80])).await.unwrap();
    }
    let (close, _) = raw.until_close(Duration::from_secs(5)).await;
    assert_eq!(close.map(|c| u16::from(c.code)), Some(4003));
    node.shutdown().await;
}

fn assert_flood_closed(
    close: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>,
    seen: &[ServerMessage],
) {
    let pongs = seen
        .iter()
        .filter(|m| matches!(m, ServerMessage::Pong { .. }))
        .count();
    let limited: Vec<_> = seen
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Error {
                id,
                code: ErrorCode::RateLimited,
                ..
            } => *id,
            _ => None,
        })
        .collect();
    assert_eq!(pongs, 3, "the burst passes");
    assert_eq!(limited, [4, 5, 6, 7, 8], "each refusal names its request");
    assert_eq!(close.map(|c| u16::from(c.code)), Some(4003));
}

/// Publishes `count` payloads of `size` bytes on a channel as fast as the engine takes them.
async fn flood(node: &TestNode, channel: &str, count: usize, size: usize) {
    let channel = Channel::parse(channel).unwrap();
    for i in 0..count {
        node.hub
            .publish(&channel, &json!({"i": i, "pad": "x".repeat(size)}))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_reader_that_falls_behind_on_results_is_closed_as_a_slow_consumer() {
    let mut config = config();
    config.hub.outbound_queue = 16;
    config.hub.write_timeout = Duration::from_secs(5);
    let node = TestNode::start(config).await;
    let mut raw = Raw::connect(&node.ws_url(), &token("u1", &[])).await;
    raw.must_subscribe(1, "queue:o1").await;
    // The client stops reading while 32 MB are published; socket buffers fill, then the queue.
    flood(&node, "queue:o1", 2000, 16 * 1024).await;
    let (close, seen) = raw.until_close(Duration::from_secs(30)).await;
    assert_eq!(close.map(|c| u16::from(c.code)), Some(4002));
    let delivered = seen
        .iter()
        .filter(|m| matches!(m, ServerMessage::Pub(_)))
        .count();
    assert!(delivered < 2000, "the connection was cut before the end");
    node.shutdown().await;
}

#[tokio::test]
async fn a_reader_that_falls_behind_on_seat_deltas_is_told_to_resync_and_recovers() {
    let mut config = config();
    config.hub.outbound_queue = 16;
    config.hub.history.history_size = 5000;
    let node = TestNode::start(config).await;
    let mut raw = Raw::connect(&node.ws_url(), &token("u1", &[])).await;
    let ServerMessage::Subscribed {
        epoch,
        offset: start,
        ..
    } = raw.subscribe(1, "seats:e1").await
    else {
        panic!("subscribed");
    };
    let total = 1500;
    flood(&node, "seats:e1", total, 16 * 1024).await;

    // Read what arrives: pubs in order, then a resync; the connection stays open.
    let mut last = start;
    loop {
        match raw.recv().await {
            ServerMessage::Pub(p) => {
                assert_eq!(p.offset, last + 1, "in order, no gap before the resync");
                last = p.offset;
            }
            ServerMessage::Resync { channel, reason } => {
                assert_eq!(
                    (channel.as_str(), reason),
                    ("seats:e1", ResyncReason::SlowConsumer)
                );
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(last < start + total as u64, "some deltas were dropped");
    // Resubscribing from the last position replays the rest from history.
    raw.send(&ClientMessage::Subscribe {
        id: 2,
        channel: "seats:e1".into(),
        since: Some(marquee_protocol::StreamPosition::new(epoch.clone(), last)),
    })
    .await;
    loop {
        match raw.recv().await {
            ServerMessage::Subscribed {
                id: 2, recovered, ..
            } => {
                assert!(recovered);
                break;
            }
            // Frames sent before the server saw the resubscribe are stale; skip them.
            ServerMessage::Pub(_) | ServerMessage::Resync { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    while last < start + total as u64 {
        match raw.recv().await {
            ServerMessage::Pub(p) => {
                assert_eq!(p.offset, last + 1);
                last = p.offset;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    node.shutdown().await;
}

/// A node too busy to run a connection's task for a while (here: its whole runtime blocked)
/// wakes with the heartbeat's timer run out and the peer's pong waiting in the socket: the
/// pong proves the peer alive, and the connection stays. The peer is a blocking client on a
/// thread of its own, answering each ping 150 ms late, so the node is often waiting for a
/// pong when it is blocked.
#[tokio::test(flavor = "current_thread")]
async fn a_pong_waiting_when_a_busy_node_wakes_keeps_the_connection() {
    use tungstenite::client::IntoClientRequest as _;
    let mut config = config();
    config.hub.heartbeat_interval = Duration::from_millis(200);
    config.hub.heartbeat_timeout = Duration::from_millis(300);
    let node = TestNode::start(config).await;
    let mut request = node.ws_url().into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", token("u1", &[])).parse().unwrap(),
    );
    let (closed_tx, closed_rx) = std::sync::mpsc::channel();
    let peer = std::thread::spawn(move || {
        let (mut socket, _) = tungstenite::connect(request).unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < until {
            match socket.read() {
                // Read (so answered) 150 ms after it came.
                Ok(Message::Ping(_)) => {
                    std::thread::sleep(Duration::from_millis(150));
                    socket.flush().unwrap();
                }
                Ok(Message::Close(frame)) => {
                    closed_tx.send(frame.map(|f| u16::from(f.code))).unwrap();
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    closed_tx.send(None).unwrap();
                    panic!("socket error {e}");
                }
            }
        }
    });
    // Block the node (the only thread of this runtime) fifteen times, 500 ms each, between
    // stretches of random length where it runs (a fixed one could fall into step with the
    // pings and always block between a pong and the next ping).
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..350))).await;
        std::thread::sleep(Duration::from_millis(500));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        closed_rx.try_recv().ok(),
        None,
        "a peer that answered every ping was closed"
    );
    node.shutdown().await;
    // The node closed the socket on shutdown; the peer thread ends with it or by its clock.
    let _ = tokio::task::spawn_blocking(move || peer.join()).await;
}

#[tokio::test]
async fn a_peer_that_never_answers_pings_is_closed_with_4004() {
    let mut config = config();
    config.hub.heartbeat_interval = Duration::from_millis(200);
    config.hub.heartbeat_timeout = Duration::from_millis(300);
    let node = TestNode::start(config).await;
    let mut raw = Raw::connect(&node.ws_url(), &token("u1", &[])).await;
    // Not reading means not answering pings (the client library answers when it reads).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut pings = 0;
    let close = loop {
        match raw.socket.next().await {
            Some(Ok(Message::Ping(_))) => pings += 1,
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(other)) => panic!("unexpected {other:?}"),
            Some(Err(e)) => panic!("socket error {e}"),
            None => break None,
        }
    };
    assert!(pings >= 1);
    assert_eq!(close.map(|c| u16::from(c.code)), Some(4004));

    // A client that keeps reading answers pings and stays.
    let mut alive = Raw::connect(&node.ws_url(), &token("u1", &[])).await;
    let until = tokio::time::Instant::now() + Duration::from_millis(1200);
    while tokio::time::Instant::now() < until {
        if let Ok(Some(Ok(Message::Close(c)))) =
            tokio::time::timeout(Duration::from_millis(50), alive.socket.next()).await
        {
            panic!("closed a live peer: {c:?}");
        }
    }
    alive.send(&ClientMessage::Ping { id: 1 }).await;
    assert_eq!(alive.recv().await, ServerMessage::Pong { id: 1 });
    node.shutdown().await;
}

#[tokio::test]
async fn shutdown_advises_every_client_to_reconnect_then_closes_with_1012() {
    let node = TestNode::start(config()).await;
    let mut clients = Vec::new();
    for i in 0..5 {
        clients.push(Raw::connect(&node.ws_url(), &token(&format!("u{i}"), &[])).await);
    }
    let shutdown = tokio::spawn(node.shutdown());
    for mut client in clients {
        let (close, seen) = client.until_close(Duration::from_secs(5)).await;
        match seen.as_slice() {
            [ServerMessage::Reconnect { delay_ms, reason }] => {
                assert!(*delay_ms < 5000);
                assert_eq!(reason, "shutdown");
            }
            other => panic!("expected one reconnect advice, got {other:?}"),
        }
        assert_eq!(close.map(|c| u16::from(c.code)), Some(1012));
    }
    shutdown.await.unwrap();
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_refresh_that_drops_a_role_leaves_the_channels_of_that_role(pool: sqlx::PgPool) {
    let shop = common::shop::shop(&pool, common::shop::ShopSpec::default()).await;
    let onsale: uuid::Uuid = sqlx::query_scalar("select onsale_id from onsale where event_id = $1")
        .bind(shop.event)
        .fetch_one(&pool)
        .await
        .unwrap();
    let node = TestNode::start(common::shop::node_config(&pool)).await;
    let signed = |roles: &[&str]| {
        let mut c = claims("op", roles, 3600);
        c.tenant = Some(shop.tenant.to_string());
        marquee_server::auth::sign_hs256(SECRET, &c)
    };
    let (admin, queue) = (format!("admin:{onsale}"), format!("queue:{onsale}"));
    let mut staff = Raw::connect(&node.ws_url(), &signed(&["admin"])).await;
    staff.must_subscribe(1, &admin).await;
    staff.must_subscribe(2, &queue).await;
    staff
        .send(&ClientMessage::Refresh {
            id: 3,
            token: signed(&[]),
        })
        .await;
    // The lost channel is named first, then the refresh is confirmed.
    assert_eq!(
        error_code(&staff.recv().await),
        (None, ErrorCode::Forbidden)
    );
    assert!(matches!(
        staff.recv().await,
        ServerMessage::Refreshed { id: 3, .. }
    ));
    node.hub
        .publish(&Channel::parse(&admin).unwrap(), &json!({"n": 1}))
        .await
        .unwrap();
    node.hub
        .publish(&Channel::parse(&queue).unwrap(), &json!({"n": 2}))
        .await
        .unwrap();
    match staff.recv().await {
        ServerMessage::Pub(p) => assert_eq!(p.channel, queue, "nothing more from {admin}"),
        other => panic!("unexpected {other:?}"),
    }
    node.shutdown().await;
}
