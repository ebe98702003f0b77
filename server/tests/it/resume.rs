//! Lossless resume, end to end through the SDK and through raw sockets: drop a connection
//! mid-stream, publish during the gap, and the exact sequence arrives; a gap beyond history
//! says `recovered: false`; a snapshot is followed by exactly the deltas after it.

use crate::common;

use common::*;
use futures_util::future::BoxFuture;
use marquee_client::{Client, ClientConfig, Event, Events, TokenProvider};
use marquee_protocol::{Channel, ChannelKind, ClientMessage, ServerMessage, StreamPosition};
use marquee_server::engine::ChannelEngine;
use marquee_server::hub::{HubError, SnapshotProvider};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Reads events until `count` publications of `channel` arrived; returns their `n` fields.
async fn collect(events: &mut Events, channel: &str, count: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap_or_else(|_| panic!("timed out after {} of {count}: {seen:?}", seen.len()))
            .expect("client open");
        if let Event::Publication(p) = event
            && p.channel == channel
        {
            seen.push(p.data["n"].as_u64().unwrap());
        }
    }
    seen
}

async fn publish_n(node: &TestNode, channel: &str, range: std::ops::RangeInclusive<u64>) {
    let channel = Channel::parse(channel).unwrap();
    for n in range {
        node.hub
            .publish(&channel, &json!({ "n": n }))
            .await
            .unwrap();
    }
}

fn fast_reconnects(url: String) -> ClientConfig {
    let mut config = ClientConfig::new(url);
    config.backoff_base = Duration::from_millis(50);
    config.backoff_cap = Duration::from_millis(200);
    config
}

#[tokio::test]
async fn the_sdk_resumes_after_a_dropped_connection_with_nothing_lost_or_duplicated() {
    for codec in [
        marquee_protocol::Codec::Json,
        marquee_protocol::Codec::MsgPack,
    ] {
        let node = TestNode::start(config()).await;
        let relay = Relay::start(node.addr).await;
        let mut config = fast_reconnects(relay.ws_url());
        config.codec = codec;
        let (client, mut events) = Client::connect(config, TokenProvider::fixed(token("u1", &[])))
            .await
            .unwrap();
        client.subscribe("seats:e1").await.unwrap();
        publish_n(&node, "seats:e1", 1..=20).await;
        assert_eq!(
            collect(&mut events, "seats:e1", 20).await,
            (1..=20).collect::<Vec<_>>()
        );

        relay.cut();
        // Published while the client is away (it waits at least one backoff before returning).
        publish_n(&node, "seats:e1", 21..=60).await;
        let resumed = collect(&mut events, "seats:e1", 40).await;
        assert_eq!(resumed, (21..=60).collect::<Vec<_>>(), "{codec:?}");

        // And the stream continues live, still exactly once.
        publish_n(&node, "seats:e1", 61..=70).await;
        assert_eq!(
            collect(&mut events, "seats:e1", 10).await,
            (61..=70).collect::<Vec<_>>()
        );
        client.close().await;
        node.shutdown().await;
    }
}

#[tokio::test]
async fn the_inbox_is_resumed_too() {
    let node = TestNode::start(config()).await;
    let relay = Relay::start(node.addr).await;
    let (client, mut events) = Client::connect(
        fast_reconnects(relay.ws_url()),
        TokenProvider::fixed(token("u7", &[])),
    )
    .await
    .unwrap();
    publish_n(&node, "inbox:u7", 1..=5).await;
    assert_eq!(collect(&mut events, "inbox:u7", 5).await, [1, 2, 3, 4, 5]);
    relay.cut();
    publish_n(&node, "inbox:u7", 6..=12).await;
    assert_eq!(
        collect(&mut events, "inbox:u7", 7).await,
        (6..=12).collect::<Vec<_>>()
    );
    client.close().await;
    node.shutdown().await;
}

#[tokio::test]
async fn a_gap_beyond_history_is_reported_as_not_recovered() {
    let mut config = config();
    config.hub.history.history_size = 10;
    let node = TestNode::start(config).await;
    let relay = Relay::start(node.addr).await;
    let mut client_config = fast_reconnects(relay.ws_url());
    client_config.backoff_base = Duration::from_millis(300);
    client_config.backoff_cap = Duration::from_millis(300);
    let (client, mut events) =
        Client::connect(client_config, TokenProvider::fixed(token("u1", &[])))
            .await
            .unwrap();
    client.subscribe("seats:e1").await.unwrap();
    publish_n(&node, "seats:e1", 1..=3).await;
    assert_eq!(collect(&mut events, "seats:e1", 3).await, [1, 2, 3]);
    relay.cut();
    publish_n(&node, "seats:e1", 4..=40).await;
    let subscribed = next_subscribed(&mut events, "seats:e1").await;
    assert!(subscribed.automatic);
    assert!(
        !subscribed.recovered,
        "33 missed messages exceed a history of 10"
    );
    assert_eq!(subscribed.position.offset, 40);
    publish_n(&node, "seats:e1", 41..=42).await;
    assert_eq!(collect(&mut events, "seats:e1", 2).await, [41, 42]);
    client.close().await;
    node.shutdown().await;
}

#[tokio::test]
async fn a_raw_resume_replays_in_order_then_continues_live() {
    let node = TestNode::start(config()).await;
    let mut raw = Raw::connect(&node.ws_url(), &token("u1", &[])).await;
    let ServerMessage::Subscribed { epoch, offset, .. } = raw.subscribe(1, "queue:o1").await else {
        panic!("subscribed")
    };
    assert_eq!(offset, 0);
    publish_n(&node, "queue:o1", 1..=5).await;
    for n in 1..=5 {
        let ServerMessage::Pub(p) = raw.recv().await else {
            panic!("pub")
        };
        assert_eq!((p.offset, p.data["n"].as_u64()), (n, Some(n)));
    }
    drop(raw);
    publish_n(&node, "queue:o1", 6..=9).await;

    let mut raw = Raw::connect(&node.ws_url(), &token("u1", &[])).await;
    raw.send(&ClientMessage::Subscribe {
        id: 2,
        channel: "queue:o1".into(),
        since: Some(StreamPosition::new(epoch.clone(), 5)),
    })
    .await;
    assert_eq!(
        raw.recv().await,
        ServerMessage::Subscribed {
            id: 2,
            channel: "queue:o1".into(),
            epoch: epoch.clone(),
            offset: 5,
            recovered: true,
            snapshot: None,
        }
    );
    publish_n(&node, "queue:o1", 10..=11).await;
    for n in 6..=11 {
        let ServerMessage::Pub(p) = raw.recv().await else {
            panic!("pub")
        };
        assert_eq!(
            (p.offset, p.data["n"].as_u64()),
            (n, Some(n)),
            "exact sequence"
        );
    }
    node.shutdown().await;
}

/// A seat-map-like provider: the state is the list of every `n` published so far, read from
/// the engine's history at one position.
struct ListSnapshot {
    engine: marquee_server::engine::Engine,
}

impl SnapshotProvider for ListSnapshot {
    fn snapshot<'a>(
        &'a self,
        channel: &'a Channel,
    ) -> BoxFuture<'a, Result<(Value, StreamPosition), HubError>> {
        Box::pin(async move {
            let now = self.engine.history(channel.as_str(), None).await?;
            let start = StreamPosition::new(now.position.epoch.clone(), 0);
            let all = self.engine.history(channel.as_str(), Some(&start)).await?;
            let items: Vec<Value> = all
                .publications
                .iter()
                .filter(|p| p.offset <= now.position.offset)
                .map(|p| serde_json::from_slice::<Value>(&p.data).unwrap()["n"].clone())
                .collect();
            Ok((Value::Array(items), now.position))
        })
    }
}

#[tokio::test]
async fn a_snapshot_is_followed_by_exactly_the_deltas_after_it() {
    let mut config = config();
    config.hub.history.history_size = 10_000;
    let node = TestNode::start(config).await;
    node.hub.register_snapshot(
        ChannelKind::Seats,
        Arc::new(ListSnapshot {
            engine: node.hub.engine().clone(),
        }),
    );
    // A publisher runs while subscribers come and go.
    let hub = node.hub.clone();
    let publisher = tokio::spawn(async move {
        let channel = Channel::parse("seats:snap").unwrap();
        for n in 1..=600u64 {
            hub.publish(&channel, &json!({ "n": n })).await.unwrap();
            if n % 5 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    // Subscribers join at staggered moments, each checking snapshot + deltas = everything.
    let mut subscribers = Vec::new();
    for i in 0..6u64 {
        let url = node.ws_url();
        subscribers.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(i * 40)).await;
            let mut raw = Raw::connect(&url, &token("u1", &[])).await;
            let ServerMessage::Subscribed {
                offset,
                snapshot: Some(snapshot),
                recovered,
                ..
            } = raw.subscribe(1, "seats:snap").await
            else {
                panic!("a snapshot")
            };
            assert!(!recovered);
            let mut state: Vec<u64> = snapshot
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            assert_eq!(
                state.len() as u64,
                offset,
                "the snapshot holds exactly the first {offset}"
            );
            while *state.last().unwrap_or(&0) < 600 {
                match raw.recv().await {
                    ServerMessage::Pub(p) => state.push(p.data["n"].as_u64().unwrap()),
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(state, (1..=600).collect::<Vec<_>>(), "no gap, no duplicate");
            offset > 0 && offset < 600
        }));
    }
    let mut mid_stream = 0;
    for s in subscribers {
        mid_stream += usize::from(s.await.unwrap());
    }
    publisher.await.unwrap();
    assert!(
        mid_stream >= 2,
        "snapshots were taken while deltas kept coming: {mid_stream}"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn the_sdk_refreshes_its_token_before_expiry_and_stays_connected() {
    let node = TestNode::start(config()).await;
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    // Every token lives 3 s; the server would close at expiry without a refresh.
    let tokens = TokenProvider::from_fn(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { Ok(token_with("u1", &[], 3)) }
    });
    let (client, mut events) = Client::connect(ClientConfig::new(node.ws_url()), tokens)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(7);
    while let Ok(event) = tokio::time::timeout_at(deadline, events.next()).await {
        if let Some(Event::Disconnected { code, reason, .. }) = event {
            panic!("disconnected ({code:?}, {reason}) despite refreshing");
        }
    }
    client
        .ping()
        .await
        .expect("still connected after two token lifetimes");
    assert!(
        calls.load(std::sync::atomic::Ordering::SeqCst) >= 3,
        "the provider was asked again"
    );
    client.close().await;
    node.shutdown().await;
}

#[tokio::test]
async fn an_unsubscribed_channel_stays_unsubscribed_across_a_reconnect() {
    let node = TestNode::start(config()).await;
    let relay = Relay::start(node.addr).await;
    let (client, mut events) = Client::connect(
        fast_reconnects(relay.ws_url()),
        TokenProvider::fixed(token("u1", &[])),
    )
    .await
    .unwrap();
    client.subscribe("seats:keep").await.unwrap();
    client.subscribe("seats:drop").await.unwrap();
    client.unsubscribe("seats:drop").await.unwrap();
    relay.cut();
    publish_n(&node, "seats:drop", 1..=3).await;
    publish_n(&node, "seats:keep", 1..=3).await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("events in time")
            .expect("client open");
        if let Event::Publication(p) = event {
            seen.push((p.channel, p.data["n"].as_u64().unwrap()));
        }
    }
    // One more live message on each: only the kept channel delivers.
    publish_n(&node, "seats:drop", 4..=4).await;
    publish_n(&node, "seats:keep", 4..=4).await;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("events in time")
            .expect("client open");
        if let Event::Publication(p) = event {
            seen.push((p.channel, p.data["n"].as_u64().unwrap()));
            break;
        }
    }
    let expected: Vec<(String, u64)> = (1..=4).map(|n| ("seats:keep".to_owned(), n)).collect();
    assert_eq!(seen, expected);
    client.close().await;
    node.shutdown().await;
}

/// An automatic resubscribe the server cannot serve (here: the node it reconnected to cannot
/// read the catalog) is tried again with backoff until it can, never given up.
#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn the_sdk_tries_an_unavailable_resubscribe_again_until_it_is_served(pool: sqlx::PgPool) {
    use common::shop::{ShopSpec, buyer_signed, node_config, shop};
    let shop = shop(&pool, ShopSpec::default()).await;
    // Node a advises its clients to come back at once when it shuts down.
    let mut drains_fast = node_config(&pool);
    drains_fast.hub.reconnect_spread = Duration::from_millis(10);
    let a = TestNode::start(drains_fast).await;
    let b = TestNode::start(node_config(&pool)).await;
    let mut config = ClientConfig::with_urls([a.ws_url(), b.ws_url()]);
    config.backoff_base = Duration::from_millis(20);
    config.backoff_cap = Duration::from_millis(200);
    let token = buyer_signed(SECRET, shop.tenant, "ana");
    let (client, mut events) = Client::connect(config, TokenProvider::fixed(token))
        .await
        .unwrap();
    let channel = format!("seats:{}", shop.event);
    client.subscribe(&channel).await.unwrap();
    assert!(!next_subscribed(&mut events, &channel).await.automatic);
    // The catalog goes out of reach: node b, which has never looked this event up, cannot.
    sqlx::query("alter table event rename to event_away")
        .execute(&pool)
        .await
        .unwrap();
    a.shutdown().await;
    // The client is on b now, and its resubscribe is answered `unavailable`, again and again.
    let meanwhile = tokio::time::timeout(
        Duration::from_millis(800),
        next_subscribed(&mut events, &channel),
    )
    .await;
    assert!(meanwhile.is_err(), "not served while the catalog is away");
    sqlx::query("alter table event_away rename to event")
        .execute(&pool)
        .await
        .unwrap();
    let again = next_subscribed(&mut events, &channel).await;
    assert!(again.automatic, "resubscribed by the client itself");
    drop(client);
    b.shutdown().await;
}
