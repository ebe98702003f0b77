//! Several nodes on one Redis: cross-node delivery, a node killed under a live stream, and a
//! Redis restart in the middle of a stream.

use crate::common;

use common::processes::{PrivateRedis, free_port};
use common::*;
use marquee_client::{Client, ClientConfig, ClientError, Event, Events, TokenProvider};
use marquee_protocol::message::ResyncReason;
use marquee_protocol::{Channel, ServerMessage};
use marquee_server::secret::Secret;
use serde_json::json;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `marquee serve` process, killed (SIGKILL) when dropped.
struct NodeProcess {
    child: Child,
    addr: SocketAddr,
}

impl NodeProcess {
    async fn start(prefix: &str, redis_url: &str) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_marquee"))
            .arg("serve")
            .env("MARQUEE_LISTEN", addr.to_string())
            .env("MARQUEE_JWT_SECRET", SECRET)
            .env("REDIS_URL", redis_url)
            .env("MARQUEE_REDIS_PREFIX", prefix)
            .env("MARQUEE_NODE_ID", "proc-a")
            // A relay, like the in-process node it fails over to: channels only, so the
            // test's made-up channel names pass (a node with a database checks them).
            .env_remove("DATABASE_URL")
            .env("MARQUEE_INTERNAL_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("marquee binary runs");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                let ready = http(addr, "GET", "/ready", &[], None).await;
                if ready.status == 200 {
                    return Self { child, addr };
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("node process did not become ready on {addr}");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn next_publication(events: &mut Events, channel: &str) -> u64 {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(15), events.next())
            .await
            .expect("an event in time")
            .expect("client open");
        if let Event::Publication(p) = event
            && p.channel == channel
        {
            return p.data["n"].as_u64().unwrap();
        }
    }
}

#[tokio::test]
async fn a_client_on_one_node_receives_what_is_published_on_another() {
    let prefix = unique_prefix();
    let a = TestNode::start(redis_config(&prefix)).await;
    let b = TestNode::start(redis_config(&prefix)).await;
    let mut on_a = Raw::connect(&a.ws_url(), &token("u1", &[])).await;
    on_a.must_subscribe(1, "seats:x").await;
    let channel = Channel::parse("seats:x").unwrap();
    for n in 1..=5 {
        b.hub.publish(&channel, &json!({ "n": n })).await.unwrap();
    }
    for n in 1..=5u64 {
        let ServerMessage::Pub(p) = on_a.recv().await else {
            panic!("pub")
        };
        assert_eq!((p.offset, p.data["n"].as_u64()), (n, Some(n)));
    }
    // The inbox of a user connected to A is reachable from B as well.
    b.hub
        .publish(
            &Channel::parse("inbox:u1").unwrap(),
            &json!({"result": "ok"}),
        )
        .await
        .unwrap();
    let ServerMessage::Pub(p) = on_a.recv().await else {
        panic!("pub")
    };
    assert_eq!(p.channel, "inbox:u1");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn killing_a_node_moves_its_clients_to_another_with_nothing_lost_or_duplicated() {
    let prefix = unique_prefix();
    let mut a = NodeProcess::start(&prefix, &redis_url()).await;
    let b = TestNode::start(redis_config(&prefix)).await;

    let mut config = ClientConfig::with_urls([format!("ws://{}/ws", a.addr), b.ws_url()]);
    config.backoff_base = Duration::from_millis(50);
    config.backoff_cap = Duration::from_millis(200);
    let (client, mut events) = Client::connect(config, TokenProvider::fixed(token("u1", &[])))
        .await
        .unwrap();
    client.subscribe("seats:kill").await.unwrap();

    let hub = b.hub.clone();
    let total = 400u64;
    let publisher = tokio::spawn(async move {
        let channel = Channel::parse("seats:kill").unwrap();
        for n in 1..=total {
            hub.publish(&channel, &json!({ "n": n })).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });

    let mut seen = Vec::new();
    while seen.len() < 100 {
        seen.push(next_publication(&mut events, "seats:kill").await);
    }
    a.kill(); // SIGKILL: no goodbye, no reconnect advice
    while seen.len() < total as usize {
        seen.push(next_publication(&mut events, "seats:kill").await);
    }
    publisher.await.unwrap();
    assert_eq!(
        seen,
        (1..=total).collect::<Vec<_>>(),
        "exact sequence across the kill"
    );
    client.close().await;
    b.shutdown().await;
}

#[tokio::test]
async fn sigterm_advises_clients_to_reconnect_and_closes_with_1012() {
    let prefix = unique_prefix();
    let mut node = NodeProcess::start(&prefix, &redis_url()).await;
    let mut raw = Raw::connect(&format!("ws://{}/ws", node.addr), &token("u1", &[])).await;
    let status = Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (close, seen) = raw.until_close(Duration::from_secs(10)).await;
    assert!(
        matches!(seen.as_slice(), [ServerMessage::Reconnect { .. }]),
        "reconnect advice first: {seen:?}"
    );
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1012));
    let exit = tokio::task::spawn_blocking(move || node.child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "a drained node exits cleanly: {exit:?}");
}

#[tokio::test]
async fn the_sdk_follows_the_reconnect_advice_of_a_draining_node() {
    let prefix = unique_prefix();
    let mut draining = redis_config(&prefix);
    draining.hub.reconnect_spread = Duration::ZERO; // advice: reconnect at once
    let a = TestNode::start(draining).await;
    let b = TestNode::start(redis_config(&prefix)).await;
    let mut config = ClientConfig::with_urls([a.ws_url(), b.ws_url()]);
    // A backoff this long would show if the advice were ignored.
    config.backoff_base = Duration::from_secs(30);
    config.backoff_cap = Duration::from_secs(30);
    let (client, mut events) = Client::connect(config, TokenProvider::fixed(token("u1", &[])))
        .await
        .unwrap();
    client.subscribe("seats:adv").await.unwrap();
    let channel = Channel::parse("seats:adv").unwrap();
    for n in 1..=5 {
        b.hub.publish(&channel, &json!({ "n": n })).await.unwrap();
    }
    for n in 1..=5 {
        assert_eq!(next_publication(&mut events, "seats:adv").await, n);
    }
    a.shutdown().await;
    let disconnected = loop {
        match tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap()
        {
            Some(Event::Disconnected {
                code, reconnect_in, ..
            }) => break (code, reconnect_in),
            Some(_) => {}
            None => panic!("client closed"),
        }
    };
    assert_eq!(disconnected, (Some(1012), Some(Duration::ZERO)));
    for n in 6..=10 {
        b.hub.publish(&channel, &json!({ "n": n })).await.unwrap();
    }
    for n in 6..=10 {
        assert_eq!(next_publication(&mut events, "seats:adv").await, n);
    }
    client.close().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_redis_restart_mid_stream_makes_subscribers_resync_never_silently_lose() {
    let mut redis = PrivateRedis::start().await;
    let mut config = config();
    config.redis_url = Some(Secret::new(redis.url()));
    config.redis_prefix = unique_prefix();
    let node = TestNode::start(config).await;
    let channel = Channel::parse("seats:r").unwrap();

    let mut raw = Raw::connect(&node.ws_url(), &token("u1", &[])).await;
    let ServerMessage::Subscribed {
        epoch: old_epoch, ..
    } = raw.subscribe(1, "seats:r").await
    else {
        panic!("subscribed")
    };
    let mut sdk_config = ClientConfig::new(node.ws_url());
    sdk_config.backoff_base = Duration::from_millis(50);
    let (client, mut events) = Client::connect(sdk_config, TokenProvider::fixed(token("u2", &[])))
        .await
        .unwrap();
    client.subscribe("seats:r").await.unwrap();

    for n in 1..=3 {
        node.hub
            .publish(&channel, &json!({ "n": n }))
            .await
            .unwrap();
    }
    for n in 1..=3 {
        assert_eq!(next_publication(&mut events, "seats:r").await, n);
        let ServerMessage::Pub(p) = raw.recv().await else {
            panic!("pub")
        };
        assert_eq!(p.data["n"], n);
    }

    redis.stop();
    // While Redis is down a publisher is told so: nothing is accepted and then lost.
    assert!(
        node.hub
            .publish(&channel, &json!({ "n": 0 }))
            .await
            .is_err()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.launch().await;

    // The raw client is told plainly to resync every channel (its inbox too).
    let mut resynced = Vec::new();
    while resynced.len() < 2 {
        match raw.recv().await {
            ServerMessage::Resync { channel, reason } => {
                assert_eq!(reason, ResyncReason::StreamInterrupted);
                resynced.push(channel);
            }
            other => panic!("expected a resync, got {other:?}"),
        }
    }
    resynced.sort();
    assert_eq!(resynced, ["inbox:u1", "seats:r"]);
    // The SDK resubscribes by itself; Redis lost the history, so it is not recovered.
    let verdict = next_subscribed(&mut events, "seats:r").await;
    assert!(verdict.automatic);
    assert!(!verdict.recovered, "the old epoch is gone with Redis' data");
    assert_ne!(
        verdict.position.epoch, old_epoch,
        "a new epoch after the data loss"
    );

    // Publishing works again, and new messages flow to the resubscribed client.
    let mut published = None;
    for _ in 0..100 {
        match node.hub.publish(&channel, &json!({ "n": 100 })).await {
            Ok(p) => {
                published = Some(p);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let published = published.expect("publishing resumes after Redis is back");
    assert_eq!(published.epoch, verdict.position.epoch);
    assert_eq!(next_publication(&mut events, "seats:r").await, 100);
    client.close().await;
    node.shutdown().await;
}

/// A node whose feed from Redis was cut asks to resync only the subscriptions that missed
/// something: where a channel's stream moved during the gap, its subscribers resync (and
/// recover the missed message from history); every other subscription, the inbox too, goes on
/// without a gap and without a resync. After a Redis restart this is the difference between a
/// few resubscribes and every client of the node resubscribing its inbox at once.
#[tokio::test]
async fn after_a_cut_feed_only_the_subscriptions_that_missed_a_message_resync() {
    use fred::prelude::{ClientLike as _, HashesInterface as _, ListInterface as _};
    let redis = PrivateRedis::start().await;
    let mut config = config();
    config.redis_url = Some(Secret::new(redis.url()));
    config.redis_prefix = unique_prefix();
    let prefix = config.redis_prefix.clone();
    let node = TestNode::start(config).await;
    let (still, moved) = (
        Channel::parse("seats:still").unwrap(),
        Channel::parse("seats:moved").unwrap(),
    );

    let mut raw = Raw::connect(&node.ws_url(), &token("u1", &[])).await;
    for (id, channel) in [(1, &still), (2, &moved)] {
        assert!(matches!(
            raw.subscribe(id, channel.as_str()).await,
            ServerMessage::Subscribed { .. }
        ));
        let sent = node.hub.publish(channel, &json!({ "n": 1 })).await.unwrap();
        assert_eq!(sent.offset, 1);
        let ServerMessage::Pub(p) = raw.recv().await else {
            panic!("pub")
        };
        assert_eq!((p.channel.as_str(), p.offset), (channel.as_str(), 1));
    }
    let before_gap = node.hub.publish(&moved, &json!({ "n": 0 })).await.unwrap();
    let ServerMessage::Pub(p) = raw.recv().await else {
        panic!("pub")
    };
    assert_eq!(p.offset, 2);

    // A publication the feed never carried, as one made while the node was cut off looks:
    // in the stream (the engine's meta and history keys), its live message lost.
    let redis_client =
        fred::prelude::Builder::from_config(fred::prelude::Config::from_url(&redis.url()).unwrap())
            .build()
            .unwrap();
    redis_client.init().await.unwrap();
    let meta = format!("{prefix}:ch:{{seats:moved}}:meta");
    let hist = format!("{prefix}:ch:{{seats:moved}}:hist");
    let offset: u64 = redis_client.hincrby(&meta, "o", 1).await.unwrap();
    assert_eq!(offset, 3);
    let entry = format!("3|{}|{{\"n\":3}}", marquee_server::engine::now_ms());
    let _: i64 = redis_client.rpush(&hist, entry).await.unwrap();
    // The node's subscriber connection is cut; it reconnects at once.
    let _: fred::types::Value = redis_client
        .custom(fred::cmd!("CLIENT"), vec!["KILL", "TYPE", "pubsub"])
        .await
        .unwrap();

    match raw.recv_within(Duration::from_secs(15)).await {
        Some(ServerMessage::Resync { channel, reason }) => {
            assert_eq!(channel, "seats:moved");
            assert_eq!(reason, ResyncReason::StreamInterrupted);
        }
        other => panic!("expected the moved channel's resync first, got {other:?}"),
    }
    // Nothing else was missed: the other channel flows on from where it was.
    node.hub.publish(&still, &json!({ "n": 2 })).await.unwrap();
    match raw.recv().await {
        ServerMessage::Pub(p) => assert_eq!((p.channel.as_str(), p.offset), ("seats:still", 2)),
        other => panic!("expected the next seats:still message, got {other:?}"),
    }
    // The resynced channel recovers the message it missed.
    raw.send(&marquee_protocol::ClientMessage::Subscribe {
        id: 3,
        channel: "seats:moved".into(),
        since: Some(before_gap),
    })
    .await;
    match raw.recv().await {
        ServerMessage::Subscribed { recovered, .. } => assert!(recovered),
        other => panic!("expected subscribed, got {other:?}"),
    }
    match raw.recv().await {
        ServerMessage::Pub(p) => {
            assert_eq!((p.channel.as_str(), p.offset), ("seats:moved", 3));
            assert_eq!(p.data, json!({ "n": 3 }));
        }
        other => panic!("expected the missed message, got {other:?}"),
    }
    assert!(
        raw.recv_within(Duration::from_millis(500)).await.is_none(),
        "nothing else: no resync of the inbox or the other channel"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn the_sdk_starts_on_the_next_node_when_the_first_is_down() {
    let node = TestNode::start(config()).await;
    let dead = format!("ws://127.0.0.1:{}/ws", free_port());
    let (client, _events) = Client::connect(
        ClientConfig::with_urls([dead, node.ws_url()]),
        TokenProvider::fixed(token("u1", &[])),
    )
    .await
    .expect("the second node takes the first connection");
    client.ping().await.unwrap();
    client.close().await;
    node.shutdown().await;
}

/// When every URL fails the first connection, a full node's advice to come back later is what
/// the caller hears, not the refusal of a dead node tried after it: the caller waits as told
/// instead of counting a failed try.
#[tokio::test]
async fn the_sdk_first_connection_reports_a_full_nodes_advice_over_a_dead_nodes_refusal() {
    let mut full = config();
    full.hub.max_connections = 0;
    let node = TestNode::start(full).await;
    let dead = format!("ws://127.0.0.1:{}/ws", free_port());
    for urls in [[node.ws_url(), dead.clone()], [dead.clone(), node.ws_url()]] {
        let Err(refused) = Client::connect(
            ClientConfig::with_urls(urls.clone()),
            TokenProvider::fixed(token("u1", &[])),
        )
        .await
        else {
            panic!("{urls:?}: no node should take the connection");
        };
        match refused {
            ClientError::OverCapacity {
                retry_after: Some(after),
            } => assert!((1..=5).contains(&after.as_secs()), "{after:?}"),
            other => panic!("{urls:?}: {other:?}"),
        }
    }
    node.shutdown().await;
}

/// A client whose node is gone tries its other URLs at once when one of them cannot be
/// reached either (a node killed and still in the list): it waits its backoff only after
/// every URL failed in a row, not each time the rotation comes to a dead one.
#[tokio::test]
async fn the_sdk_passes_over_an_unreachable_url_without_waiting() {
    let prefix = unique_prefix();
    let mut draining = redis_config(&prefix);
    draining.hub.reconnect_spread = Duration::ZERO; // advice: reconnect at once
    let a = TestNode::start(draining).await;
    let b = TestNode::start(redis_config(&prefix)).await;
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("ws://{}/ws", listener.local_addr().unwrap())
    };
    let mut config = ClientConfig::with_urls([a.ws_url(), dead, b.ws_url()]);
    // A backoff this long would show if the unreachable URL cost a wait.
    config.backoff_base = Duration::from_secs(30);
    config.backoff_cap = Duration::from_secs(30);
    let (client, mut events) = Client::connect(config, TokenProvider::fixed(token("u1", &[])))
        .await
        .unwrap();
    a.shutdown().await;
    let mut waits = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("connected again within 10 s")
        {
            Some(Event::Disconnected { reconnect_in, .. }) => waits.push(reconnect_in),
            // The first session's, before `a` went.
            Some(Event::Connected { .. }) if waits.is_empty() => {}
            Some(Event::Connected { .. }) => break,
            Some(_) => {}
            None => panic!("client closed"),
        }
    }
    // The drain's advice (at once), then the unreachable URL passed over at once.
    assert_eq!(waits, vec![Some(Duration::ZERO), Some(Duration::ZERO)]);
    client.close().await;
    b.shutdown().await;
}

/// `local_address` is the address a client connects from: with a node that lets one
/// connection in per address, a second client from 127.0.0.2 is refused and one from
/// 127.0.0.3 gets in.
#[tokio::test]
async fn the_sdk_connects_from_the_local_address_it_is_given() {
    let mut node_config = config();
    node_config.hub.connect_rate_per_address = 1;
    node_config.hub.connect_burst_per_address = 1;
    let node = TestNode::start(node_config).await;
    let from = |last: u8| {
        let mut c = ClientConfig::new(node.ws_url());
        c.local_address = Some(std::net::IpAddr::V4(std::net::Ipv4Addr::new(
            127, 0, 0, last,
        )));
        c
    };
    let (first, _first_events) = Client::connect(from(2), TokenProvider::fixed(token("u1", &[])))
        .await
        .expect("the first client from 127.0.0.2 gets in");
    let second = Client::connect(from(2), TokenProvider::fixed(token("u2", &[]))).await;
    assert!(
        second.is_err(),
        "127.0.0.2 had spent its one connection, so this did not come from it"
    );
    let (third, _third_events) = Client::connect(from(3), TokenProvider::fixed(token("u3", &[])))
        .await
        .expect("a client from 127.0.0.3 has a bucket of its own");
    first.close().await;
    third.close().await;
    node.shutdown().await;
}
