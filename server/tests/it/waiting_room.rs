//! The waiting room end to end: real nodes, real Postgres (a fresh database per test), real
//! WebSockets, and real Redis for the cluster cases.

use crate::common;

use common::shop::{Shop, ShopSpec, admin_token, buyer_signed, node_config, shop};
use common::{Raw, SECRET, TestNode, http};
use marquee_protocol::booking::{Command, InboxMessage, Outcome};
use marquee_protocol::queue::{PlaceState, QueueEvent, QueueStatus, StatusReason};
use marquee_protocol::{ClientMessage, ErrorCode, ServerMessage};
use marquee_server::secret::Secret;
use marquee_server::waiting_room::shuffle::{self, PublishedOrder};
use sqlx::PgPool;
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

const ADMISSION_SECRET: &str = "admission-secret-for-tests-0123456789";

/// A node that admits, with a short grace period so tests need not wait two minutes.
fn config(pool: &PgPool, grace: Duration) -> marquee_server::Config {
    let mut config = node_config(pool);
    config.admission.admission_secret = Some(Secret::new(ADMISSION_SECRET));
    config.waiting_room.queue_grace = grace;
    config
}

/// [`config`] on the real Redis, under a prefix of its own (returned).
fn redis_config(pool: &PgPool, grace: Duration) -> (marquee_server::Config, String) {
    let prefix = common::unique_prefix();
    let mut c = config(pool, grace);
    c.redis_url = Some(Secret::new(common::redis_url()));
    c.redis_prefix = prefix.clone();
    (c, prefix)
}

/// Puts the shop's onsale behind the waiting room with these settings.
async fn gate(pool: &PgPool, shop: &Shop, status: &str, rate: f64, cap: i32) -> Uuid {
    sqlx::query_scalar(
        "update onsale set requires_admission = true, status = $2::onsale_status,
                admission_rate = $3, active_cap = $4
         where event_id = $1 returning onsale_id",
    )
    .bind(shop.event)
    .bind(status)
    .bind(rate)
    .bind(cap)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn connect(node: &TestNode, shop: &Shop, user: &str) -> Raw {
    Raw::connect(&node.ws_url(), &buyer_signed(SECRET, shop.tenant, user)).await
}

/// Joins and returns the place's status (panics on an error reply).
async fn join(raw: &mut Raw, id: u64, onsale: Uuid) -> QueueStatus {
    match join_reply(raw, id, onsale).await {
        Ok(status) => status,
        Err((code, message)) => panic!("join refused: {code} {message}"),
    }
}

/// Sends `queue.join` and waits for its reply: the place's status, or the refusal.
async fn join_reply(
    raw: &mut Raw,
    id: u64,
    onsale: Uuid,
) -> Result<QueueStatus, (ErrorCode, String)> {
    raw.send(&ClientMessage::QueueJoin {
        id,
        onsale: onsale.to_string(),
        intent: None,
    })
    .await;
    loop {
        match raw.recv().await {
            ServerMessage::QueueJoined { id: got, status } if got == id => return Ok(status),
            ServerMessage::Error {
                id: Some(got),
                code,
                message,
            } if got == id => return Err((code, message)),
            _ => {}
        }
    }
}

/// The next pushed status that satisfies `done`, within `within`; every status seen on the
/// way is returned too, oldest first.
async fn status_until(
    raw: &mut Raw,
    within: Duration,
    done: impl Fn(&QueueStatus) -> bool,
) -> Vec<QueueStatus> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let msg = raw
            .recv_within(deadline.saturating_duration_since(Instant::now()))
            .await
            .unwrap_or_else(|| panic!("no such status within {within:?}; saw {seen:?}"));
        if let ServerMessage::QueueStatus(status) = msg {
            let stop = done(&status);
            seen.push(status);
            if stop {
                return seen;
            }
        }
    }
}

/// Waits on every buyer at once until each is admitted: when each admission arrived, and
/// the statuses seen on the way, in the buyers' order.
async fn all_admitted(buyers: Vec<Raw>, within: Duration) -> Vec<(Raw, Instant, Vec<QueueStatus>)> {
    let mut set = tokio::task::JoinSet::new();
    for (i, mut raw) in buyers.into_iter().enumerate() {
        set.spawn(async move {
            let seen = status_until(&mut raw, within, admitted).await;
            (i, raw, Instant::now(), seen)
        });
    }
    let mut done = Vec::new();
    while let Some(r) = set.join_next().await {
        done.push(r.unwrap());
    }
    done.sort_by_key(|(i, ..)| *i);
    done.into_iter()
        .map(|(_, raw, at, seen)| (raw, at, seen))
        .collect()
}

fn admitted(s: &QueueStatus) -> bool {
    s.state == PlaceState::Admitted
}

/// Positions seen never go up unless a reason says why.
fn assert_never_backwards(statuses: &[QueueStatus]) {
    let mut last = None;
    for s in statuses {
        if let (Some(before), Some(now)) = (last, s.position) {
            assert!(
                now <= before || s.reason.is_some(),
                "position went {before} → {now}: {statuses:?}"
            );
        }
        last = s.position.or(last);
    }
}

async fn patch(node: &TestNode, shop: &Shop, path: String, body: &str) -> common::HttpResponse {
    let token = format!("Bearer {}", admin_token(shop));
    http(
        node.addr,
        "PATCH",
        &path,
        &[
            ("authorization", &token),
            ("content-type", "application/json"),
        ],
        Some(body),
    )
    .await
}

/// An operator's pause stops admission by the time the request returns, and the admission
/// controller, whose settings are up to a second old, does not switch it back; resuming
/// admits at once. In one node's memory and on Redis (the line's switch is a script there).
#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_pause_holds_from_the_moment_the_operator_request_returns(pool: PgPool) {
    let shop = shop(&pool, ShopSpec::default()).await;
    for on_redis in [false, true] {
        sqlx::query("delete from admission")
            .execute(&pool)
            .await
            .unwrap();
        let onsale = gate(&pool, &shop, "live", 1000.0, 100).await;
        let config = if on_redis {
            redis_config(&pool, Duration::from_secs(120)).0
        } else {
            config(&pool, Duration::from_secs(120))
        };
        let node = TestNode::start(config).await;
        // The controller has the onsale live: a first buyer is admitted.
        let mut first = connect(&node, &shop, "first").await;
        if join(&mut first, 1, onsale).await.state != PlaceState::Admitted {
            status_until(&mut first, Duration::from_secs(10), admitted).await;
        }
        let status = format!("/v1/admin/onsales/{onsale}/status");
        let paused = patch(&node, &shop, status.clone(), r#"{"status":"paused"}"#).await;
        assert_eq!(paused.status, 200, "{}", paused.body);
        let mut later = Vec::new();
        for i in 0..3 {
            let mut raw = connect(&node, &shop, &format!("later{i}")).await;
            let joined = join(&mut raw, 1, onsale).await;
            assert_eq!(
                (joined.state, joined.paused, joined.position),
                (PlaceState::Waiting, true, Some(i + 1)),
                "on_redis={on_redis}: {joined:?}"
            );
            later.push(raw);
        }
        // Longer than the controller's settings period: still nobody else admitted.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for raw in &mut later {
            while let Some(msg) = raw.recv_within(Duration::from_millis(10)).await {
                if let ServerMessage::QueueStatus(s) = msg {
                    assert_ne!(
                        s.state,
                        PlaceState::Admitted,
                        "on_redis={on_redis}: admitted while paused"
                    );
                }
            }
        }
        let admissions: i64 =
            sqlx::query_scalar("select count(*) from admission where onsale_id = $1")
                .bind(onsale)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(admissions, 1, "on_redis={on_redis}");
        let resumed = patch(&node, &shop, status, r#"{"status":"live"}"#).await;
        assert_eq!(resumed.status, 200, "{}", resumed.body);
        all_admitted(later, Duration::from_secs(5)).await;
        drop(first);
        node.shutdown().await;
    }
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn buyers_are_admitted_in_join_order_and_their_admission_buys(pool: PgPool) {
    let shop = shop(&pool, ShopSpec::default()).await;
    let onsale = gate(&pool, &shop, "paused", 3.0, 100).await;
    let node = TestNode::start(config(&pool, Duration::from_secs(120))).await;
    let mut operator = Raw::connect(&node.ws_url(), &admin_token(&shop)).await;
    operator.must_subscribe(1, &format!("admin:{onsale}")).await;
    let mut buyers = Vec::new();
    let mut places = Vec::new();
    for i in 0..4 {
        let mut raw = connect(&node, &shop, &format!("b{i}")).await;
        let status = join(&mut raw, 1, onsale).await;
        assert_eq!(status.state, PlaceState::Waiting);
        assert_eq!(status.position, Some(i + 1), "{status:?}");
        assert_eq!(status.ahead, Some(i));
        assert!(status.paused);
        places.push(status.place);
        buyers.push(raw);
    }
    // A second tab of b1 attaches to the same place.
    let mut tab = connect(&node, &shop, "b1").await;
    let again = join(&mut tab, 1, onsale).await;
    assert_eq!((&again.place, again.position), (&places[1], Some(2)));

    let resumed = patch(
        &node,
        &shop,
        format!("/v1/admin/onsales/{onsale}/status"),
        r#"{"status":"live"}"#,
    )
    .await;
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    // The operator channel hears of it, with who did it.
    let change = loop {
        if let ServerMessage::Pub(p) = operator.recv().await {
            break serde_json::from_value::<QueueEvent>(p.data).unwrap();
        }
    };
    let QueueEvent::Changed(change) = change else {
        panic!("{change:?}")
    };
    assert_eq!(
        (change.status.as_str(), change.by.as_deref()),
        ("live", Some("operator-1"))
    );

    let done = all_admitted(buyers, Duration::from_secs(10)).await;
    for (_, _, seen) in &done {
        assert_never_backwards(seen);
        let grant = seen
            .last()
            .unwrap()
            .admission
            .clone()
            .expect("an admission with the status");
        assert!(grant.expires_at > marquee_server::clock::now_secs());
    }
    // One every third of a second, in join order.
    assert!(
        done.windows(2).all(|w| w[0].1 < w[1].1),
        "admitted in join order"
    );
    // And recorded in Postgres in the order they were made, each place's sequence above the
    // one before, and numbered by the line in the order it made them.
    let recorded: Vec<(i64, i64)> = sqlx::query_as(
        "select seq, ordinal from admission where onsale_id = $1 order by admission_id",
    )
    .bind(onsale)
    .fetch_all(&pool)
    .await
    .unwrap();
    let made: Vec<i64> = (1..=done.len() as i64).collect();
    assert_eq!(recorded.iter().map(|r| r.0).collect::<Vec<_>>(), made);
    assert_eq!(recorded.iter().map(|r| r.1).collect::<Vec<_>>(), made);
    let mut buyers: Vec<Raw> = done.into_iter().map(|(raw, ..)| raw).collect();
    // The second tab is told too.
    status_until(&mut tab, Duration::from_secs(5), admitted).await;

    // The admission buys: b0 holds a seat with it.
    let b0 = &mut buyers[0];
    b0.send(&ClientMessage::QueueJoin {
        id: 7,
        onsale: onsale.to_string(),
        intent: None,
    })
    .await;
    let token = loop {
        if let ServerMessage::QueueJoined { status, .. } = b0.recv().await {
            break status.admission.expect("still admitted").token;
        }
    };
    b0.send(&ClientMessage::Command {
        id: 8,
        request_id: "r1".into(),
        command: Command::HoldSeats {
            event: shop.event.to_string(),
            seats: vec![0],
        },
        admission: Some(token),
    })
    .await;
    let outcome = loop {
        if let ServerMessage::Pub(p) = b0.recv().await
            && p.channel.starts_with("inbox:")
        {
            let InboxMessage::Result(r) = serde_json::from_value(p.data).unwrap() else {
                panic!()
            };
            break r.outcome;
        }
    };
    assert!(matches!(outcome, Outcome::Held { .. }), "{outcome:?}");
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn the_pre_queue_is_shuffled_at_the_start_and_admitted_in_the_published_order(pool: PgPool) {
    let shop = shop(&pool, ShopSpec::default()).await;
    let onsale = gate(&pool, &shop, "scheduled", 2.0, 100).await;
    sqlx::query(
        "update onsale set prequeue_opens_at = now() + interval '1 hour',
                starts_at = now() + interval '2 hours' where onsale_id = $1",
    )
    .bind(onsale)
    .execute(&pool)
    .await
    .unwrap();
    let node = marquee_server::Node::build(config(&pool, Duration::from_secs(120)))
        .await
        .unwrap();
    let line = node.waiting_room().unwrap().line().clone();
    let node = TestNode::serve(node).await;
    let mut watcher = connect(&node, &shop, "watcher").await;
    watcher.must_subscribe(1, &format!("queue:{onsale}")).await;
    // The pre-queue opens only once the watcher listens: the commitment is published once, when
    // it opens (a later listener reads it from the draw record).
    sqlx::query(
        "update onsale set prequeue_opens_at = now() - interval '1 second',
                starts_at = now() + interval '4 seconds' where onsale_id = $1",
    )
    .bind(onsale)
    .execute(&pool)
    .await
    .unwrap();
    let commitment = loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), watcher.recv())
            .await
            .expect("the commitment");
        if let ServerMessage::Pub(p) = msg
            && let Ok(QueueEvent::Commitment { seed_sha256 }) = serde_json::from_value(p.data)
        {
            break seed_sha256;
        }
    };
    // Before the start the record holds the commitment alone.
    let path = format!("/v1/tenants/{}/onsales/{onsale}/draw", shop.tenant);
    let before = http(node.addr, "GET", &path, &[], None).await;
    assert_eq!(before.status, 200, "{}", before.body);
    assert_eq!(
        before.json(),
        serde_json::json!({"onsale": onsale.to_string(), "seed_sha256": commitment})
    );
    let mut buyers = Vec::new();
    for i in 0..6 {
        let mut raw = connect(&node, &shop, &format!("p{i}")).await;
        let status = join(&mut raw, 1, onsale).await;
        assert_eq!(status.state, PlaceState::PreQueue, "{status:?}");
        assert_eq!(status.position, None);
        buyers.push((raw, status.place));
    }
    let (seed_sha256, seed, order) = loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), watcher.recv())
            .await
            .expect("the draw");
        if let ServerMessage::Pub(p) = msg
            && let Ok(QueueEvent::Draw {
                seed_sha256,
                seed,
                order,
            }) = serde_json::from_value(p.data)
        {
            break (seed_sha256, seed, order);
        }
    };
    assert_eq!(
        seed_sha256, commitment,
        "the seed revealed is the one committed to"
    );
    let published = PublishedOrder {
        onsale: onsale.to_string(),
        seed_sha256,
        seed,
        order: order.clone(),
    };
    shuffle::verify(&published).expect("anyone can recompute the order");
    let mut joined: Vec<String> = buyers.iter().map(|(_, p)| p.clone()).collect();
    joined.sort();
    let mut drawn = order.clone();
    drawn.sort();
    assert_eq!(drawn, joined, "every pre-queue place, once");
    // The record in Postgres says the same, for anyone checking later.
    let stored: Vec<String> =
        sqlx::query_scalar("select shuffle_order from onsale where onsale_id = $1")
            .bind(onsale)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stored, order);
    let record = http(
        node.addr,
        "GET",
        &format!("/v1/tenants/{}/onsales/{onsale}/draw", shop.tenant),
        &[],
        None,
    )
    .await;
    assert_eq!(record.status, 200, "{}", record.body);
    let record: PublishedOrder = serde_json::from_str(&record.body).unwrap();
    assert_eq!(
        (record.seed_sha256.as_str(), &record.order),
        (commitment.as_str(), &order)
    );
    shuffle::verify(&record).expect("the public record verifies too");
    // Each buyer's place is its index in the drawn order, its first position says it was
    // drawn, and admission follows the order: one every half second.
    for (i, (_, place)) in buyers.iter().enumerate() {
        let rank = order.iter().position(|p| p == place).unwrap() as u64;
        let record = line.place(onsale, &format!("p{i}")).await.unwrap().unwrap();
        assert_eq!(
            record.seq,
            rank + 1,
            "sequence = rank in the published order"
        );
    }
    let ranks: Vec<usize> = buyers
        .iter()
        .map(|(_, place)| order.iter().position(|p| p == place).unwrap())
        .collect();
    let done = all_admitted(
        buyers.into_iter().map(|(raw, _)| raw).collect(),
        Duration::from_secs(15),
    )
    .await;
    let mut admitted_at = Vec::new();
    for ((_, at, seen), rank) in done.iter().zip(&ranks) {
        let first = seen
            .iter()
            .find(|s| s.position.is_some() || admitted(s))
            .unwrap();
        if first.state == PlaceState::Waiting {
            assert_eq!(first.reason, Some(StatusReason::Drawn), "{seen:?}");
        }
        assert_never_backwards(seen);
        admitted_at.push((*rank, *at));
    }
    admitted_at.sort();
    assert!(
        admitted_at.windows(2).all(|w| w[0].1 < w[1].1),
        "admitted in drawn order: {admitted_at:?}"
    );
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn sold_out_tells_everyone_waiting_at_once_and_released_seats_bring_admission_back(
    pool: PgPool,
) {
    let spec = ShopSpec {
        rows: 1,
        width: 2,
        ga_quota: 0,
        ..ShopSpec::default()
    };
    let shop = shop(&pool, spec).await;
    let onsale = gate(&pool, &shop, "live", 20.0, 1).await;
    let node = TestNode::start(config(&pool, Duration::from_secs(120))).await;
    let mut first = connect(&node, &shop, "first").await;
    join(&mut first, 1, onsale).await;
    let seen = status_until(&mut first, Duration::from_secs(5), admitted).await;
    let token = seen.last().unwrap().admission.clone().unwrap().token;
    let mut waiting = Vec::new();
    for i in 0..3 {
        let mut raw = connect(&node, &shop, &format!("w{i}")).await;
        let status = join(&mut raw, 1, onsale).await;
        assert_eq!(status.state, PlaceState::Waiting, "the cap of one is taken");
        waiting.push(raw);
    }
    first
        .send(&ClientMessage::Command {
            id: 2,
            request_id: "all".into(),
            command: Command::HoldSeats {
                event: shop.event.to_string(),
                seats: vec![0, 1],
            },
            admission: Some(token),
        })
        .await;
    let hold = loop {
        if let ServerMessage::Pub(p) = first.recv().await
            && p.channel.starts_with("inbox:")
            && let Ok(InboxMessage::Result(r)) = serde_json::from_value(p.data)
        {
            match r.outcome {
                Outcome::Held { hold, .. } => break hold,
                other => panic!("{other:?}"),
            }
        }
    };
    for raw in &mut waiting {
        let seen = status_until(raw, Duration::from_secs(5), |s| {
            s.state == PlaceState::SoldOut
        })
        .await;
        assert_eq!(seen.last().unwrap().reason, Some(StatusReason::SoldOut));
        assert!(seen.last().unwrap().position.is_some(), "the place is kept");
    }
    // Nobody joins a sold-out onsale without being told so.
    let mut late = connect(&node, &shop, "late").await;
    let status = join(&mut late, 1, onsale).await;
    assert_eq!(status.state, PlaceState::SoldOut);
    first
        .send(&ClientMessage::Command {
            id: 3,
            request_id: "back".into(),
            command: Command::Release {
                event: shop.event.to_string(),
                hold,
            },
            admission: None,
        })
        .await;
    for raw in &mut waiting {
        let seen = status_until(raw, Duration::from_secs(5), |s| {
            s.state == PlaceState::Waiting
        })
        .await;
        assert_eq!(seen.last().unwrap().reason, Some(StatusReason::Restocked));
    }
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn one_place_per_account_across_two_nodes_kept_through_the_grace_period(pool: PgPool) {
    let shop = shop(&pool, ShopSpec::default()).await;
    let onsale = gate(&pool, &shop, "paused", 5.0, 100).await;
    let prefix = common::unique_prefix();
    let cluster = |pool: &PgPool| {
        let mut c = config(pool, Duration::from_secs(2));
        c.redis_url = Some(Secret::new(common::redis_url()));
        c.redis_prefix = prefix.clone();
        c
    };
    let a = TestNode::start(cluster(&pool)).await;
    let b = TestNode::start(cluster(&pool)).await;
    let mut leaver = connect(&a, &shop, "leaver").await;
    let gone = join(&mut leaver, 1, onsale).await;
    assert_eq!(gone.position, Some(1));
    let mut on_a = connect(&a, &shop, "ana").await;
    let mut on_b = connect(&b, &shop, "ana").await;
    let first = join(&mut on_a, 1, onsale).await;
    let second = join(&mut on_b, 1, onsale).await;
    assert_eq!(first.place, second.place, "one place, whichever node");
    assert_eq!((first.position, second.position), (Some(2), Some(2)));
    // Ana drops both connections and comes back within the grace period: same place.
    drop(on_a);
    drop(on_b);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut back = connect(&b, &shop, "ana").await;
    let again = join(&mut back, 1, onsale).await;
    assert_eq!((&again.place, again.position), (&first.place, Some(2)));
    // The leaver stays away past the grace period: Ana moves up, on a push.
    drop(leaver);
    let seen = status_until(&mut back, Duration::from_secs(6), |s| s.position == Some(1)).await;
    assert_never_backwards(&seen);
    // Coming back after the grace period is a new place at the back.
    let mut late = connect(&a, &shop, "leaver").await;
    let fresh = join(&mut late, 1, onsale).await;
    assert_ne!(fresh.place, gone.place);
    assert_eq!(fresh.position, Some(2));
    a.shutdown().await;
    b.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_killed_nodes_buyers_keep_their_places_and_admissions_or_start_their_grace(pool: PgPool) {
    let shop = shop(&pool, ShopSpec::default()).await;
    let onsale = gate(&pool, &shop, "live", 20.0, 1).await;
    let (c, prefix) = redis_config(&pool, Duration::from_secs(2));
    let b = TestNode::start(c).await;
    // Node a is a process of its own, killed (SIGKILL) with buyers on it: its connections
    // never detach, and only its missing heartbeat tells the cluster.
    let (mut a_process, a_addr) = common::processes::node_process(&[
        ("DATABASE_URL", common::shop::database_url(&pool)),
        ("REDIS_URL", common::redis_url()),
        ("MARQUEE_REDIS_PREFIX", prefix.clone()),
        ("MARQUEE_JWT_SECRET", SECRET.to_owned()),
        ("MARQUEE_ADMISSION_SECRET", ADMISSION_SECRET.to_owned()),
        ("MARQUEE_QUEUE_GRACE", "2s".to_owned()),
        ("MARQUEE_WORKERS", "0".to_owned()),
    ])
    .await;
    let on_a = |user: &'static str| {
        let token = buyer_signed(SECRET, shop.tenant, user);
        async move { Raw::connect(&format!("ws://{a_addr}/ws"), &token).await }
    };
    // The first is admitted (a cap of one); the others wait behind it.
    let mut shopper = on_a("shopper").await;
    let mut status = join(&mut shopper, 1, onsale).await;
    if !admitted(&status) {
        status = status_until(&mut shopper, Duration::from_secs(10), admitted)
            .await
            .pop()
            .unwrap();
    }
    let grant = status.admission.clone().unwrap();
    let mut stays = on_a("stays").await;
    let kept = join(&mut stays, 1, onsale).await;
    let mut gone = on_a("gone").await;
    join(&mut gone, 1, onsale).await;
    let mut third = connect(&b, &shop, "third").await;
    let before = join(&mut third, 1, onsale).await;
    assert_eq!(
        (kept.position, before.position),
        (Some(1), Some(3)),
        "{kept:?} {before:?}"
    );
    common::processes::kill(&mut a_process);
    drop((shopper, stays, gone));
    // Two of them come back on node b at once: the same place, the same admission.
    let mut stays = connect(&b, &shop, "stays").await;
    let again = join(&mut stays, 1, onsale).await;
    assert_eq!((&again.place, again.position), (&kept.place, Some(1)));
    let mut shopper = connect(&b, &shop, "shopper").await;
    let back = join(&mut shopper, 1, onsale).await;
    assert_eq!(back.state, PlaceState::Admitted, "{back:?}");
    hold_one(&mut shopper, &shop, 7, &grant.token).await;
    // The one who never comes back: node a's heartbeat runs out (10 s), the controller
    // detaches its connections, and after the grace period (2 s) the place is gone; the
    // buyer behind moves up, on a push.
    let seen = status_until(&mut third, Duration::from_secs(25), |s| {
        s.position == Some(2)
    })
    .await;
    assert_never_backwards(&seen);
    let after = join(&mut stays, 2, onsale).await;
    assert_eq!(
        (&after.place, after.position),
        (&kept.place, Some(1)),
        "stays kept its place"
    );
    b.shutdown().await;
}

/// An order recorded in Postgres is the order the line is drawn with, even when the
/// pre-queue changed after it was recorded (a controller that recorded it and died before
/// drawing, and a place that left meanwhile): the published record and the line agree, the
/// place that left is a gap.
#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn the_line_is_drawn_with_the_order_recorded_in_postgres(pool: PgPool) {
    let shop = shop(&pool, ShopSpec::default()).await;
    let onsale = gate(&pool, &shop, "scheduled", 2.0, 100).await;
    sqlx::query(
        "update onsale set prequeue_opens_at = now() - interval '1 second',
                starts_at = now() + interval '1 hour' where onsale_id = $1",
    )
    .bind(onsale)
    .execute(&pool)
    .await
    .unwrap();
    let node = marquee_server::Node::build(config(&pool, Duration::from_secs(120)))
        .await
        .unwrap();
    let line = node.waiting_room().unwrap().line().clone();
    let node = TestNode::serve(node).await;
    let seed: Vec<u8> = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let seed: Option<Vec<u8>> =
                sqlx::query_scalar("select shuffle_seed from onsale where onsale_id = $1")
                    .bind(onsale)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            if let Some(seed) = seed {
                return seed;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the pre-queue opens");
    let mut buyers = Vec::new();
    for i in 0..8 {
        let mut raw = connect(&node, &shop, &format!("p{i}")).await;
        let status = join(&mut raw, 1, onsale).await;
        assert_eq!(status.state, PlaceState::PreQueue, "{status:?}");
        buyers.push((raw, format!("p{i}"), status.place));
    }
    let mut places: Vec<String> = buyers.iter().map(|(_, _, p)| p.clone()).collect();
    places.sort();
    let recorded = shuffle::shuffle(&seed.as_slice().try_into().unwrap(), &places);
    sqlx::query("update onsale set shuffle_order = $2 where onsale_id = $1")
        .bind(onsale)
        .bind(&recorded)
        .execute(&pool)
        .await
        .unwrap();
    // The first in the recorded order leaves before the draw.
    let first = buyers
        .iter()
        .position(|(_, _, place)| *place == recorded[0])
        .unwrap();
    let (mut leaver, _, _) = buyers.remove(first);
    leaver
        .send(&ClientMessage::QueueLeave {
            id: 2,
            onsale: onsale.to_string(),
        })
        .await;
    status_until(&mut leaver, Duration::from_secs(10), |s| {
        s.state == PlaceState::Ended
    })
    .await;
    sqlx::query("update onsale set starts_at = now() - interval '1 second' where onsale_id = $1")
        .bind(onsale)
        .execute(&pool)
        .await
        .unwrap();
    let (_, user, _) = &buyers[0];
    tokio::time::timeout(Duration::from_secs(10), async {
        while line.place(onsale, user).await.unwrap().unwrap().seq == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the draw");
    // Each place's sequence is its rank in the recorded order: the leaver's is a gap.
    for (_, user, place) in &buyers {
        let rank = recorded.iter().position(|p| p == place).unwrap() as u64;
        let record = line.place(onsale, user).await.unwrap().unwrap();
        assert_eq!(
            record.seq,
            rank + 1,
            "{user}: its rank in the recorded order"
        );
    }
    let path = format!("/v1/tenants/{}/onsales/{onsale}/draw", shop.tenant);
    let record: PublishedOrder =
        serde_json::from_str(&http(node.addr, "GET", &path, &[], None).await.body).unwrap();
    assert_eq!(record.order, recorded);
    shuffle::verify(&record).expect("the record verifies");
    node.shutdown().await;
}

/// A node whose heartbeat lapsed (a stall, Redis restarting) takes one new presence id,
/// attaches its connections again under it, and goes on beating under it: it does not take
/// the new id's first heartbeat for another lapse, and its buyers keep their places.
#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_node_silent_too_long_takes_one_new_presence_and_keeps_its_buyers(pool: PgPool) {
    use fred::prelude::SortedSetsInterface as _;
    let shop = shop(&pool, ShopSpec::default()).await;
    let onsale = gate(&pool, &shop, "paused", 5.0, 100).await;
    let (c, prefix) = redis_config(&pool, Duration::from_secs(2));
    let node = TestNode::start(c).await;
    let mut first = connect(&node, &shop, "first").await;
    let kept = join(&mut first, 1, onsale).await;
    let mut second = connect(&node, &shop, "second").await;
    let behind = join(&mut second, 1, onsale).await;
    assert_eq!((kept.position, behind.position), (Some(1), Some(2)));
    let redis = common::redis_client().await;
    let nodes = format!("{prefix}:wr:nodes");
    let ids: Vec<String> = redis
        .zrange(&nodes, 0, -1, None, false, None, false)
        .await
        .unwrap();
    assert_eq!(ids.len(), 1, "{ids:?}");
    // The heartbeat lapses as in a stall: the node's time ran out ten seconds ago, so the
    // controller detaches its connections and its next heartbeat hears it was silent.
    let lapsed = marquee_server::clock::now_ms().saturating_sub(10_000) as f64;
    let () = redis
        .zadd(&nodes, None, None, false, false, (lapsed, ids[0].as_str()))
        .await
        .unwrap();
    // Past the grace period (2 s) and many heartbeats.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after: Vec<String> = redis
        .zrange(&nodes, 0, -1, None, false, None, false)
        .await
        .unwrap();
    assert_eq!(after.len(), 2, "the lapsed id and one new one: {after:?}");
    assert!(after.contains(&ids[0]), "{after:?}");
    // Both still hold their places, in their order.
    let again = join(&mut first, 2, onsale).await;
    assert_eq!((&again.place, again.position), (&kept.place, Some(1)));
    let again = join(&mut second, 2, onsale).await;
    assert_eq!((&again.place, again.position), (&behind.place, Some(2)));
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn the_sdk_joins_a_queue_and_keeps_its_place_across_a_reconnect(pool: PgPool) {
    use marquee_client::{Client, ClientConfig, Event, TokenProvider};
    let shop = shop(&pool, ShopSpec::default()).await;
    let onsale = gate(&pool, &shop, "paused", 5.0, 100).await;
    let node = TestNode::start(config(&pool, Duration::from_secs(120))).await;
    let mut first = connect(&node, &shop, "first").await;
    join(&mut first, 1, onsale).await;
    let relay = common::Relay::start(node.addr).await;
    let (client, mut events) = Client::connect(
        ClientConfig::new(relay.ws_url()),
        TokenProvider::fixed(buyer_signed(SECRET, shop.tenant, "ana")),
    )
    .await
    .unwrap();
    let joined = client.join_queue(&onsale.to_string()).await.unwrap();
    assert_eq!(
        (joined.state, joined.position),
        (PlaceState::Waiting, Some(2))
    );
    // The network drops: the client reconnects and joins again by itself, attaching to the
    // same place.
    relay.cut();
    let again = tokio::time::timeout(Duration::from_secs(15), async {
        // The join's own status comes first among the events; the one wanted follows the cut.
        let mut cut = false;
        loop {
            match events.next().await {
                Some(Event::Disconnected { .. }) => cut = true,
                Some(Event::QueueStatus(status)) if cut => return status,
                _ => {}
            }
        }
    })
    .await
    .expect("a status after the reconnect");
    assert_eq!((&again.place, again.position), (&joined.place, Some(2)));
    // Her place ends from another tab: the client hears it and, after the next reconnect,
    // takes no new place nobody asked for.
    let mut tab = connect(&node, &shop, "ana").await;
    tab.send(&ClientMessage::QueueLeave {
        id: 1,
        onsale: onsale.to_string(),
    })
    .await;
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(Event::QueueStatus(status)) = events.next().await
                && status.state == PlaceState::Ended
            {
                return;
            }
        }
    })
    .await
    .expect("the client hears its place ended");
    relay.cut();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut bob = connect(&node, &shop, "bob").await;
    let joined = join(&mut bob, 1, onsale).await;
    if joined.position != Some(2) {
        // (A join may be answered from the node's view of a moment ago; the next push is
        // exact.)
        status_until(&mut bob, Duration::from_secs(3), |s| s.position == Some(2)).await;
    }
    // Only the first buyer is ahead of Bob: the client did not queue Ana again.
    let again = join(&mut bob, 2, onsale).await;
    assert_eq!(again.position, Some(2));
    client.close().await;
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn joins_are_refused_with_exact_codes_outside_the_buyers_own_open_queue(pool: PgPool) {
    let shop = shop(&pool, ShopSpec::default()).await;
    let other = self::shop(&pool, ShopSpec::default()).await;
    let onsale = gate(&pool, &shop, "scheduled", 5.0, 100).await;
    sqlx::query("update onsale set starts_at = now() + interval '1 hour' where onsale_id = $1")
        .bind(onsale)
        .execute(&pool)
        .await
        .unwrap();
    let foreign = gate(&pool, &other, "live", 5.0, 100).await;
    let closed = {
        let third = self::shop(&pool, ShopSpec::default()).await;
        let id = gate(&pool, &third, "closed", 5.0, 100).await;
        (third, id)
    };
    let node = TestNode::start(config(&pool, Duration::from_secs(120))).await;
    let mut raw = connect(&node, &shop, "ana").await;
    let cases: [(&str, String, ErrorCode); 4] = [
        ("not a uuid", "nope".into(), ErrorCode::NotFound),
        ("unknown", Uuid::new_v4().to_string(), ErrorCode::NotFound),
        ("another tenant's", foreign.to_string(), ErrorCode::NotFound),
        ("not open yet", onsale.to_string(), ErrorCode::OnsaleClosed),
    ];
    for (i, (case, id, code)) in cases.into_iter().enumerate() {
        raw.send(&ClientMessage::QueueJoin {
            id: i as u64 + 1,
            onsale: id,
            intent: None,
        })
        .await;
        match raw.recv().await {
            ServerMessage::Error { code: got, .. } => assert_eq!(got, code, "{case}"),
            other => panic!("{case}: {other:?}"),
        }
    }
    let mut closed_buyer = connect(&node, &closed.0, "ana").await;
    // The controller mirrors the status into the line within a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        closed_buyer
            .send(&ClientMessage::QueueJoin {
                id: 9,
                onsale: closed.1.to_string(),
                intent: None,
            })
            .await;
        match closed_buyer.recv().await {
            ServerMessage::Error {
                code: ErrorCode::OnsaleClosed,
                ..
            } => break,
            other => assert!(Instant::now() < deadline, "{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Leaving a queue one is not in.
    raw.send(&ClientMessage::QueueLeave {
        id: 10,
        onsale: onsale.to_string(),
    })
    .await;
    match raw.recv().await {
        ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::NotFound),
        other => panic!("{other:?}"),
    }
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn operators_change_rate_and_cap_live_with_an_audit_and_bad_values_change_nothing(
    pool: PgPool,
) {
    let shop = shop(&pool, ShopSpec::default()).await;
    let onsale = gate(&pool, &shop, "live", 5.0, 100).await;
    let node = TestNode::start(config(&pool, Duration::from_secs(120))).await;
    let path = format!("/v1/admin/onsales/{onsale}/admission");
    for bad in [
        r#"{"admission_rate":0}"#,
        r#"{"active_cap":-1}"#,
        r#"{}"#,
        r#"{"admission_rate":"fast"}"#,
        r#"{"rate":3}"#,
    ] {
        let r = patch(&node, &shop, path.clone(), bad).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert_eq!(r.json()["code"], "bad_request", "{bad}");
    }
    let r = patch(
        &node,
        &shop,
        path.clone(),
        r#"{"admission_rate":2.5,"active_cap":40}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (
            r.json()["admission_rate"].as_f64(),
            r.json()["active_cap"].as_i64()
        ),
        (Some(2.5), Some(40))
    );
    let audits: i64 = sqlx::query_scalar(
        "select count(*) from audit_log where entity = 'onsale' and action = 'admission_changed' and actor = 'operator-1'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        audits, 1,
        "one audit row for one change, none for the refused ones"
    );
    // Another tenant's operator cannot see it.
    let other = self::shop(&pool, ShopSpec::default()).await;
    let r = patch(&node, &other, path, r#"{"active_cap":1}"#).await;
    assert_eq!(r.status, 404);
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn admissions_keep_to_the_configured_rate_within_five_percent_over_thirty_seconds(
    pool: PgPool,
) {
    const RATE: f64 = 20.0;
    let shop = shop(&pool, ShopSpec::default()).await;
    let onsale = gate(&pool, &shop, "live", RATE, 100_000).await;
    let mut c = config(&pool, Duration::from_secs(120));
    c.redis_url = Some(Secret::new(common::redis_url()));
    c.redis_prefix = common::unique_prefix();
    let node = marquee_server::Node::build(c).await.unwrap();
    let line = node.waiting_room().unwrap().line().clone();
    let node = TestNode::serve(node).await;
    // Wait until the controller has the onsale live in the line, then fill it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while line.view(onsale, 0).await.unwrap().status != "live" {
        assert!(
            Instant::now() < deadline,
            "the controller mirrors the onsale"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..800 {
        line.join(onsale, &format!("u{i}"), None).await.unwrap();
    }
    // Measure over thirty seconds, from the first admission on.
    while line.view(onsale, 0).await.unwrap().admitted_total == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (t0, n0) = (
        Instant::now(),
        line.view(onsale, 0).await.unwrap().admitted_total,
    );
    let mut per_second = Vec::new();
    let mut last = n0;
    for s in 1..=30 {
        tokio::time::sleep_until(t0 + Duration::from_secs(s)).await;
        let n = line.view(onsale, 0).await.unwrap().admitted_total;
        per_second.push(n - last);
        last = n;
    }
    let rate = (last - n0) as f64 / t0.elapsed().as_secs_f64();
    assert!(
        (rate - RATE).abs() <= RATE * 0.05,
        "admitted {rate:.2}/s for a setting of {RATE}/s; per second: {per_second:?}"
    );
    // Smooth: no second admits more than twice its share (no minute bursts).
    assert!(
        per_second.iter().all(|n| *n as f64 <= RATE * 2.0),
        "{per_second:?}"
    );
    node.shutdown().await;
}

/// Another onsale of the shop's event, behind the waiting room and live.
async fn another_onsale(pool: &PgPool, shop: &Shop) -> Uuid {
    sqlx::query_scalar(
        "insert into onsale (tenant_id, event_id, status, starts_at, requires_admission)
         values ($1, $2, 'live', now() - interval '1 minute', true) returning onsale_id",
    )
    .bind(shop.tenant)
    .bind(shop.event)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn join_error(raw: &mut Raw, id: u64, onsale: Uuid) -> ErrorCode {
    match join_reply(raw, id, onsale).await {
        Err((code, _)) => code,
        Ok(status) => panic!("joined: {status:?}"),
    }
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn an_account_waits_in_few_queues_and_joins_at_a_bounded_rate(pool: PgPool) {
    let shop = shop(&pool, ShopSpec::default()).await;
    let a = gate(&pool, &shop, "live", 0.001, 100).await;
    let b = another_onsale(&pool, &shop).await;
    let c = another_onsale(&pool, &shop).await;
    let mut cfg = config(&pool, Duration::from_secs(120));
    cfg.waiting_room.queues_per_account = 2;
    cfg.waiting_room.queue_joins_per_account = 5;
    let node = marquee_server::Node::build(cfg).await.unwrap();
    let line = node.waiting_room().unwrap().line().clone();
    let node = TestNode::serve(node).await;
    let mut raw = connect(&node, &shop, "ana").await;
    join(&mut raw, 1, a).await;
    join(&mut raw, 2, b).await;
    assert_eq!(join_error(&mut raw, 3, c).await, ErrorCode::LimitExceeded);
    // Another tab of the same account gets no third queue either.
    let mut tab = connect(&node, &shop, "ana").await;
    assert_eq!(join_error(&mut tab, 1, c).await, ErrorCode::LimitExceeded);
    raw.send(&ClientMessage::QueueLeave {
        id: 4,
        onsale: a.to_string(),
    })
    .await;
    match raw.recv().await {
        ServerMessage::QueueJoined { status, .. } => assert_eq!(status.state, PlaceState::Ended),
        other => panic!("{other:?}"),
    }
    join(&mut raw, 5, c).await;
    // Five joins a minute per account: the sixth is refused and changes nothing.
    assert_eq!(join_error(&mut raw, 6, a).await, ErrorCode::RateLimited);
    assert_eq!(
        line.place(a, "ana").await.unwrap(),
        None,
        "the refused join took no place"
    );
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn one_address_joins_at_a_bounded_rate_whatever_the_account(pool: PgPool) {
    let shop = shop(&pool, ShopSpec::default()).await;
    let onsale = gate(&pool, &shop, "live", 0.001, 100).await;
    let mut cfg = config(&pool, Duration::from_secs(120));
    cfg.waiting_room.queue_joins_per_ip = 3;
    let node = TestNode::start(cfg).await;
    for i in 0..3 {
        let mut raw = connect(&node, &shop, &format!("u{i}")).await;
        join(&mut raw, 1, onsale).await;
    }
    let mut fourth = connect(&node, &shop, "u3").await;
    assert_eq!(
        join_error(&mut fourth, 1, onsale).await,
        ErrorCode::RateLimited
    );
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_purchase_staged_while_waiting_is_held_the_moment_the_buyer_is_admitted(pool: PgPool) {
    use marquee_protocol::queue::PurchaseIntent;
    let shop = shop(&pool, ShopSpec::default()).await;
    let onsale = gate(&pool, &shop, "paused", 5.0, 100).await;
    let node = TestNode::start(config(&pool, Duration::from_secs(120))).await;
    let mut raw = connect(&node, &shop, "ana").await;
    let intent = |category: String, quantity| Some(PurchaseIntent { category, quantity });
    for (bad, code) in [
        (intent("not-a-uuid".into(), 2), ErrorCode::BadRequest),
        (
            intent(shop.category.to_string(), 0),
            ErrorCode::InvalidQuantity,
        ),
        (
            intent(shop.category.to_string(), 65),
            ErrorCode::InvalidQuantity,
        ),
    ] {
        raw.send(&ClientMessage::QueueJoin {
            id: 1,
            onsale: onsale.to_string(),
            intent: bad,
        })
        .await;
        match raw.recv().await {
            ServerMessage::Error { code: got, .. } => assert_eq!(got, code),
            other => panic!("{other:?}"),
        }
    }
    raw.send(&ClientMessage::QueueJoin {
        id: 2,
        onsale: onsale.to_string(),
        intent: intent(shop.category.to_string(), 3),
    })
    .await;
    let place = loop {
        if let ServerMessage::QueueJoined { status, .. } = raw.recv().await {
            break status.place;
        }
    };
    assert_eq!(
        sqlx::query_scalar::<_, i64>("select count(*) from hold")
            .fetch_one(&pool)
            .await
            .unwrap(),
        0
    );
    let resumed = patch(
        &node,
        &shop,
        format!("/v1/admin/onsales/{onsale}/status"),
        r#"{"status":"live"}"#,
    )
    .await;
    assert_eq!(resumed.status, 200);
    // Without sending anything, the buyer's inbox gets the hold.
    let result = inbox_result(&mut raw, None).await;
    assert_eq!(result.request_id, format!("intent-{place}"));
    match result.outcome {
        Outcome::Held {
            seats, quantity, ..
        } => assert_eq!((seats.len(), quantity), (3, 3)),
        other => panic!("{other:?}"),
    }
    node.shutdown().await;
}

/// Sends a command with an admission and returns its outcome from the inbox.
async fn command_outcome(raw: &mut Raw, id: u64, command: Command, admission: &str) -> Outcome {
    raw.send(&ClientMessage::Command {
        id,
        request_id: format!("r-{id}"),
        command,
        admission: Some(admission.to_owned()),
    })
    .await;
    inbox_result(raw, Some(&format!("r-{id}"))).await.outcome
}

/// The next command result on the inbox (for `request_id`, when given), within 10 s.
async fn inbox_result(
    raw: &mut Raw,
    request_id: Option<&str>,
) -> marquee_protocol::booking::CommandResult {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), raw.recv())
            .await
            .expect("a result");
        if let ServerMessage::Pub(p) = msg
            && p.channel.starts_with("inbox:")
            && let Ok(InboxMessage::Result(r)) = serde_json::from_value(p.data)
            && request_id.is_none_or(|id| r.request_id == id)
        {
            return r;
        }
    }
}

/// Holds one seat with an admission; returns the hold.
async fn hold_one(raw: &mut Raw, shop: &Shop, seat: u32, admission: &str) -> String {
    let command = Command::HoldSeats {
        event: shop.event.to_string(),
        seats: vec![seat],
    };
    match command_outcome(raw, 2, command, admission).await {
        Outcome::Held { hold, .. } => hold,
        other => panic!("expected a hold, got {other:?}"),
    }
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn checking_out_or_releasing_hands_the_admission_slot_to_the_next_buyer(pool: PgPool) {
    let shop = shop(&pool, ShopSpec::default()).await;
    let onsale = gate(&pool, &shop, "live", 20.0, 1).await;
    let node = TestNode::start(config(&pool, Duration::from_secs(120))).await;
    let admitted_token =
        |seen: Vec<QueueStatus>| seen.last().unwrap().admission.clone().unwrap().token;
    let mut ana = connect(&node, &shop, "ana").await;
    join(&mut ana, 1, onsale).await;
    let ana_token = admitted_token(status_until(&mut ana, Duration::from_secs(5), admitted).await);
    // A second tab of Ana's, attached to her place, that only watches its status.
    let mut ana_tab = connect(&node, &shop, "ana").await;
    assert_eq!(
        join(&mut ana_tab, 1, onsale).await.state,
        PlaceState::Admitted
    );
    let mut bob = connect(&node, &shop, "bob").await;
    assert_eq!(
        join(&mut bob, 1, onsale).await.state,
        PlaceState::Waiting,
        "the cap of one is taken"
    );
    // Ana holds and releases: her slot goes to Bob long before her admission would end.
    let event = shop.event.to_string();
    let hold = hold_one(&mut ana, &shop, 0, &ana_token).await;
    let released = command_outcome(
        &mut ana,
        3,
        Command::Release {
            event: event.clone(),
            hold,
        },
        &ana_token,
    )
    .await;
    assert!(matches!(released, Outcome::Released { .. }), "{released:?}");
    // Every connection on her place is told it ended, long before her admission would.
    let ended = |s: &QueueStatus| s.state == PlaceState::Ended;
    let told = status_until(&mut ana_tab, Duration::from_secs(5), ended).await;
    assert_eq!(
        told.last().unwrap().reason,
        Some(StatusReason::AdmissionEnded),
        "{told:?}"
    );
    let bob_token = admitted_token(status_until(&mut bob, Duration::from_secs(5), admitted).await);
    // Her admission token is still genuine and unexpired, but her place ended: it admits her
    // to nothing more.
    let again = command_outcome(
        &mut ana,
        4,
        Command::HoldSeats {
            event: event.clone(),
            seats: vec![5],
        },
        &ana_token,
    )
    .await;
    assert!(
        matches!(&again, Outcome::Rejected { code, .. } if *code == ErrorCode::AdmissionRequired),
        "{again:?}"
    );
    // Bob checks out: his slot goes to Cy.
    let mut cy = connect(&node, &shop, "cy").await;
    assert_eq!(join(&mut cy, 1, onsale).await.state, PlaceState::Waiting);
    let hold = hold_one(&mut bob, &shop, 1, &bob_token).await;
    let out = command_outcome(&mut bob, 3, Command::Checkout { event, hold }, &bob_token).await;
    assert!(matches!(out, Outcome::CheckedOut { .. }), "{out:?}");
    status_until(&mut cy, Duration::from_secs(5), admitted).await;
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn an_operator_opening_the_pre_queue_publishes_its_commitment_at_once(pool: PgPool) {
    let shop = shop(&pool, ShopSpec::default()).await;
    let onsale = gate(&pool, &shop, "scheduled", 2.0, 100).await;
    sqlx::query("update onsale set starts_at = now() + interval '1 hour' where onsale_id = $1")
        .bind(onsale)
        .execute(&pool)
        .await
        .unwrap();
    let node = TestNode::start(config(&pool, Duration::from_secs(120))).await;
    let mut watcher = connect(&node, &shop, "watcher").await;
    watcher.must_subscribe(1, &format!("queue:{onsale}")).await;
    let admin = admin_token(&shop);
    let (status, _) = common::call_json(
        node.addr,
        Some(&admin),
        "PATCH",
        &format!("/v1/admin/onsales/{onsale}/status"),
        Some(&serde_json::json!({"status": "pre_queue"})),
    )
    .await;
    assert_eq!(status, 200);
    // The very next request finds the commitment: it was drawn with the change.
    let path = format!("/v1/tenants/{}/onsales/{onsale}/draw", shop.tenant);
    let (status, record) = common::call_json(node.addr, None, "GET", &path, None).await;
    assert_eq!(status, 200, "{record}");
    let commitment = record["seed_sha256"].as_str().unwrap().to_owned();
    assert!(
        record.get("seed").is_none(),
        "the seed stays secret until the start"
    );
    // And the one the controller publishes on the queue channel is the same.
    let published = loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), watcher.recv())
            .await
            .expect("the commitment is published");
        if let ServerMessage::Pub(p) = msg
            && let Ok(QueueEvent::Commitment { seed_sha256 }) = serde_json::from_value(p.data)
        {
            break seed_sha256;
        }
    };
    assert_eq!(published, commitment);
    node.shutdown().await;
}

/// A connection answers a join while a tick's push to it waits unwritten (the connection task
/// is busy with the request): the answer is written first, so a push made before it would
/// follow it and show the position rising again. Seen at full size with retried joins.
#[sqlx::test(migrations = "../migrations")]
async fn a_push_older_than_a_join_answer_is_never_written_after_it(pool: PgPool) {
    use marquee_server::admission::AdmissionKey;
    use marquee_server::auth::Identity;
    use marquee_server::hub::registry::{ConnShared, signal};
    use marquee_server::waiting_room::WaitingRoom;
    use marquee_server::waiting_room::line::{Line, MemoryLine, Timing};
    use marquee_server::waiting_room::room::JoinLimits;
    use std::sync::Arc;

    let shop = shop(&pool, ShopSpec::default()).await;
    let onsale = gate(&pool, &shop, "live", 1.0, 10).await;
    let line = Line::memory(Arc::new(MemoryLine::default()));
    line.close_pre_queue(onsale).await.unwrap();
    line.draw(onsale, &[]).await.unwrap();
    let room = WaitingRoom::new(
        line.clone(),
        pool.clone(),
        Some(AdmissionKey::new(&Secret::new(ADMISSION_SECRET))),
        Timing {
            grace: Duration::from_secs(60),
            admission_ttl: Duration::from_secs(600),
            show_window: Duration::from_secs(30),
        },
        JoinLimits::default(),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(room.clone().run(stop.clone()));
    let buyer = |user: &str| Identity {
        user: user.to_owned(),
        tenant: Some(shop.tenant.to_string()),
        roles: Vec::new(),
        expires_at: u64::MAX,
        sid: None,
    };
    let raw_onsale = onsale.to_string();
    // `a` and `c` ahead of `b`, whose connection this is.
    for user in ["a", "c"] {
        let (other, _) = ConnShared::new(rand::random(), 16);
        room.join(&buyer(user), &other, None, &raw_onsale, None, None)
            .await
            .unwrap();
    }
    let (conn, _outbound) = ConnShared::new(1, 16);
    let (_, first) = room
        .join(&buyer("b"), &conn, None, &raw_onsale, None, None)
        .await
        .unwrap();
    assert_eq!(first.position, Some(3));

    // `a` leaves: a tick pushes position 2, and the connection does not write it yet.
    assert!(line.leave(onsale, "a").await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while conn.peek_flags() & signal::LATEST == 0 {
        assert!(
            Instant::now() < deadline,
            "no push after a buyer ahead left"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // `c` leaves, and the busy connection answers `b`'s join again (a retry, or a reconnect's
    // rejoin) from a view that knows it: position 1.
    assert!(line.leave(onsale, "c").await.unwrap());
    let (_, answer) = room
        .join(
            &buyer("b"),
            &conn,
            None,
            &raw_onsale,
            Some(&first.place),
            None,
        )
        .await
        .unwrap();
    assert_eq!(answer.position, Some(1));
    // What the connection writes after the answer never says more buyers are ahead.
    let after: Vec<Option<u64>> = conn
        .take_latest()
        .into_iter()
        .filter_map(|m| match m {
            ServerMessage::QueueStatus(s) => Some(s.position),
            _ => None,
        })
        .collect();
    assert!(
        after.iter().all(|p| *p <= answer.position),
        "written after the answer of position 1: {after:?}"
    );
    stop.cancel();
}
