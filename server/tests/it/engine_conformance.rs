//! One conformance suite, run against both channel engines: the in-process `memory` engine and
//! the `redis` engine on a real Redis (with a per-test key prefix).

use crate::common;

use bytes::Bytes;
use marquee_protocol::StreamPosition;
use marquee_server::engine::memory::MemoryEngine;
use marquee_server::engine::redis::RedisEngine;
use marquee_server::engine::{ChannelEngine, EnginePublication, HistoryLimits, Sink};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Records what the engine delivers to the node.
#[derive(Default)]
struct Recorder {
    delivered: Mutex<Vec<EnginePublication>>,
}

impl Sink for Recorder {
    fn deliver(&self, publication: EnginePublication) {
        self.delivered.lock().unwrap().push(publication);
    }
    fn interrupted(&self, _heads: Option<marquee_server::engine::Heads>) {}
}

impl Recorder {
    fn offsets(&self, channel: &str) -> Vec<u64> {
        self.delivered
            .lock()
            .unwrap()
            .iter()
            .filter(|p| &*p.channel == channel)
            .map(|p| p.offset)
            .collect()
    }

    async fn wait_for(&self, channel: &str, count: usize) -> Vec<u64> {
        for _ in 0..200 {
            let offsets = self.offsets(channel);
            if offsets.len() >= count {
                return offsets;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.offsets(channel)
    }
}

fn limits(size: usize, ttl: Duration) -> HistoryLimits {
    HistoryLimits { size, ttl }
}

fn data(i: u64) -> Bytes {
    Bytes::from(format!(r#"{{"i":{i}}}"#))
}

async fn memory(limits: HistoryLimits) -> (Arc<MemoryEngine>, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    (
        Arc::new(MemoryEngine::new(limits, recorder.clone())),
        recorder,
    )
}

async fn redis(limits: HistoryLimits) -> (Arc<RedisEngine>, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let engine = RedisEngine::connect(
        &common::redis_url(),
        &common::unique_prefix(),
        limits,
        recorder.clone(),
    )
    .await
    .expect("Redis reachable");
    (Arc::new(engine), recorder)
}

// ---- the suite -------------------------------------------------------------------------------

async fn offsets_are_contiguous_and_delivered_in_order<E: ChannelEngine>(e: &E, rec: &Recorder) {
    e.subscribe("seats:a").await.unwrap();
    let mut positions = Vec::new();
    for i in 1..=50 {
        positions.push(e.publish("seats:a", data(i)).await.unwrap());
    }
    let epoch = positions[0].epoch.clone();
    assert!(positions.iter().all(|p| p.epoch == epoch), "one epoch");
    assert_eq!(
        positions.iter().map(|p| p.offset).collect::<Vec<_>>(),
        (1..=50).collect::<Vec<_>>()
    );
    assert_eq!(
        rec.wait_for("seats:a", 50).await,
        (1..=50).collect::<Vec<_>>()
    );
    let payloads: Vec<Bytes> = rec
        .delivered
        .lock()
        .unwrap()
        .iter()
        .filter(|p| &*p.channel == "seats:a")
        .map(|p| p.data.clone())
        .collect();
    assert_eq!(payloads[9], data(10));
}

async fn concurrent_publishers_never_share_an_offset<E: ChannelEngine>(e: Arc<E>) {
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let e = e.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..25 {
                mine.push(
                    e.publish("queue:c", data(t * 100 + i))
                        .await
                        .unwrap()
                        .offset,
                );
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=100).collect::<Vec<_>>());
}

async fn history_replays_exactly_what_follows_since<E: ChannelEngine>(e: &E) {
    for i in 1..=10 {
        e.publish("seats:h", data(i)).await.unwrap();
    }
    let now = e.history("seats:h", None).await.unwrap();
    assert_eq!(now.position.offset, 10);
    assert!(!now.recovered, "no since, nothing to recover");
    assert!(now.publications.is_empty());

    let since = StreamPosition::new(now.position.epoch.clone(), 6);
    let h = e.history("seats:h", Some(&since)).await.unwrap();
    assert!(h.recovered);
    assert_eq!(
        h.publications.iter().map(|p| p.offset).collect::<Vec<_>>(),
        [7, 8, 9, 10]
    );
    assert_eq!(h.publications[0].data, data(7));

    let at_top = StreamPosition::new(now.position.epoch.clone(), 10);
    let h = e.history("seats:h", Some(&at_top)).await.unwrap();
    assert!(h.recovered, "nothing missed is a full recovery");
    assert!(h.publications.is_empty());
}

async fn a_position_history_no_longer_covers_is_not_recovered<E: ChannelEngine>(e: &E) {
    // History keeps 5 messages in this suite.
    for i in 1..=12 {
        e.publish("seats:g", data(i)).await.unwrap();
    }
    let epoch = e.history("seats:g", None).await.unwrap().position.epoch;
    let covered = e
        .history("seats:g", Some(&StreamPosition::new(epoch.clone(), 7)))
        .await
        .unwrap();
    assert!(covered.recovered);
    assert_eq!(covered.publications.len(), 5);
    let gone = e
        .history("seats:g", Some(&StreamPosition::new(epoch.clone(), 6)))
        .await
        .unwrap();
    assert!(!gone.recovered);
    assert!(gone.publications.is_empty());
    assert_eq!(gone.position.offset, 12);
    let future = e
        .history("seats:g", Some(&StreamPosition::new(epoch, 99)))
        .await
        .unwrap();
    assert!(
        !future.recovered,
        "a position from the future is not trusted"
    );
}

async fn another_epoch_is_never_recovered<E: ChannelEngine>(e: &E) {
    e.publish("seats:x", data(1)).await.unwrap();
    let h = e
        .history("seats:x", Some(&StreamPosition::new("0000000000000000", 0)))
        .await
        .unwrap();
    assert!(!h.recovered);
    assert_eq!(h.position.offset, 1);
}

async fn a_fresh_channel_has_a_stable_epoch_at_offset_zero<E: ChannelEngine>(e: &E) {
    let first = e.history("inbox:nobody", None).await.unwrap().position;
    let again = e.history("inbox:nobody", None).await.unwrap().position;
    assert_eq!(first.offset, 0);
    assert_eq!(first, again);
    let published = e.publish("inbox:nobody", data(1)).await.unwrap();
    assert_eq!(published, StreamPosition::new(first.epoch.clone(), 1));
    let h = e.history("inbox:nobody", Some(&first)).await.unwrap();
    assert!(h.recovered);
    assert_eq!(h.publications.len(), 1);
}

async fn messages_older_than_the_ttl_are_not_recoverable<E: ChannelEngine>(e: &E) {
    let first = e.publish("seats:ttl", data(1)).await.unwrap();
    let since = StreamPosition::new(first.epoch.clone(), 0);
    assert!(
        e.history("seats:ttl", Some(&since))
            .await
            .unwrap()
            .recovered
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !e.history("seats:ttl", Some(&since))
            .await
            .unwrap()
            .recovered
    );
}

macro_rules! conformance {
    ($engine:ident) => {
        mod $engine {
            use super::*;

            fn suite_limits() -> HistoryLimits {
                limits(5, Duration::from_secs(60))
            }

            #[tokio::test]
            async fn offsets_are_contiguous_and_delivered_in_order() {
                let (e, rec) = super::$engine(limits(100, Duration::from_secs(60))).await;
                super::offsets_are_contiguous_and_delivered_in_order(&*e, &rec).await;
            }

            #[tokio::test]
            async fn concurrent_publishers_never_share_an_offset() {
                let (e, _) = super::$engine(suite_limits()).await;
                super::concurrent_publishers_never_share_an_offset(e).await;
            }

            #[tokio::test]
            async fn history_replays_exactly_what_follows_since() {
                let (e, _) = super::$engine(limits(100, Duration::from_secs(60))).await;
                super::history_replays_exactly_what_follows_since(&*e).await;
            }

            #[tokio::test]
            async fn a_position_history_no_longer_covers_is_not_recovered() {
                let (e, _) = super::$engine(suite_limits()).await;
                super::a_position_history_no_longer_covers_is_not_recovered(&*e).await;
            }

            #[tokio::test]
            async fn another_epoch_is_never_recovered() {
                let (e, _) = super::$engine(suite_limits()).await;
                super::another_epoch_is_never_recovered(&*e).await;
            }

            #[tokio::test]
            async fn a_fresh_channel_has_a_stable_epoch_at_offset_zero() {
                let (e, _) = super::$engine(suite_limits()).await;
                super::a_fresh_channel_has_a_stable_epoch_at_offset_zero(&*e).await;
            }

            #[tokio::test]
            async fn messages_older_than_the_ttl_are_not_recoverable() {
                let (e, _) = super::$engine(limits(100, Duration::from_millis(400))).await;
                super::messages_older_than_the_ttl_are_not_recoverable(&*e).await;
            }
        }
    };
}

conformance!(memory);
conformance!(redis);

#[tokio::test]
async fn the_redis_engine_only_delivers_subscribed_channels() {
    let (e, rec) = redis(limits(10, Duration::from_secs(60))).await;
    e.publish("seats:unheard", data(1)).await.unwrap();
    e.subscribe("seats:heard").await.unwrap();
    e.publish("seats:heard", data(1)).await.unwrap();
    assert_eq!(rec.wait_for("seats:heard", 1).await, [1]);
    e.unsubscribe("seats:heard").await.unwrap();
    e.publish("seats:heard", data(2)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rec.offsets("seats:heard"), [1]);
    assert!(rec.offsets("seats:unheard").is_empty());
}

#[tokio::test]
async fn the_redis_engine_publishes_a_named_publication_once() {
    let (e, rec) = redis(limits(10, Duration::from_secs(60))).await;
    e.subscribe("seats:once").await.unwrap();
    let first = e.publish_once("seats:once", data(1), "7.0").await.unwrap();
    // Sent again after an unknown outcome: nothing new, and the first one's position.
    let again = e.publish_once("seats:once", data(1), "7.0").await.unwrap();
    assert_eq!(again, first);
    let next = e.publish_once("seats:once", data(2), "7.1").await.unwrap();
    assert_eq!(next.offset, first.offset + 1);
    // The same id on another channel is another publication.
    e.subscribe("seats:other").await.unwrap();
    e.publish_once("seats:other", data(1), "7.0").await.unwrap();
    assert_eq!(rec.wait_for("seats:once", 2).await, [1, 2]);
    assert_eq!(rec.wait_for("seats:other", 1).await, [1]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rec.offsets("seats:once"), [1, 2], "delivered once each");
}

#[tokio::test]
async fn a_lost_store_starts_a_new_epoch_and_old_positions_are_not_recovered() {
    // Memory: clearing is what a restart does.
    let (m, _) = memory(limits(10, Duration::from_secs(60))).await;
    let before = m.publish("seats:l", data(1)).await.unwrap();
    m.clear();
    let h = m.history("seats:l", Some(&before)).await.unwrap();
    assert!(!h.recovered);
    assert_ne!(h.position.epoch, before.epoch);

    // Redis: delete the channel's keys, as a flush or a restart without persistence would.
    let prefix = common::unique_prefix();
    let recorder = Arc::new(Recorder::default());
    let r = RedisEngine::connect(
        &common::redis_url(),
        &prefix,
        limits(10, Duration::from_secs(60)),
        recorder,
    )
    .await
    .unwrap();
    let before = r.publish("seats:l", data(1)).await.unwrap();
    let client = fred::prelude::Builder::from_config(
        fred::prelude::Config::from_url(&common::redis_url()).unwrap(),
    )
    .build()
    .unwrap();
    fred::prelude::ClientLike::init(&client).await.unwrap();
    let _: i64 = fred::prelude::KeysInterface::del(
        &client,
        vec![
            format!("{prefix}:ch:{{seats:l}}:meta"),
            format!("{prefix}:ch:{{seats:l}}:hist"),
        ],
    )
    .await
    .unwrap();
    let h = r.history("seats:l", Some(&before)).await.unwrap();
    assert!(!h.recovered);
    assert_ne!(h.position.epoch, before.epoch);
    assert_eq!(h.position.offset, 0);
}
