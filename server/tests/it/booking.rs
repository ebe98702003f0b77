//! The booking engine end to end: real nodes, real Postgres (a fresh database per test), real
//! WebSockets, and for the cluster cases real Redis and real worker processes.

use crate::common;

use common::shop::{
    ShopSpec, buyer_signed, connect, database_url, hold_ga, hold_seats, node_config, result, send,
    send_command, shop,
};
use common::{Raw, SECRET, TestNode};
use marquee_protocol::booking::{
    Command, CommandResult, InboxSnapshot, Outcome, SeatDelta, SeatSnapshot, SeatState,
    unpack_seat_states,
};
use marquee_protocol::{ClientMessage, Codec, ErrorCode, ServerMessage};
use marquee_server::booking::inventory::{DeltaBuilder, Request};
use marquee_server::booking::store::{self, Batch, CommitError};
use marquee_server::secret::Secret;
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

async fn node(pool: &PgPool) -> TestNode {
    TestNode::start(node_config(pool)).await
}

fn buyer(tenant: Uuid, user: &str) -> String {
    buyer_signed(SECRET, tenant, user)
}

fn rejection(result: &CommandResult) -> ErrorCode {
    match &result.outcome {
        Outcome::Rejected { code, .. } => *code,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn two_hundred_buyers_racing_for_one_hundred_seats_hold_each_seat_exactly_once(pool: PgPool) {
    let shop = shop(&pool, ShopSpec::default()).await;
    let node = node(&pool).await;
    let mut buyers = Vec::new();
    for i in 0..200 {
        buyers.push(connect(&node, &shop, &format!("buyer-{i}")).await);
    }
    // Buyer i and buyer i + 100 both want seat i.
    let tasks: Vec<_> = buyers
        .into_iter()
        .enumerate()
        .map(|(i, mut raw)| {
            tokio::spawn(async move {
                send(&mut raw, 1, "r-1", hold_seats(&shop, &[(i % 100) as u32])).await;
                (i % 100, result(&mut raw).await)
            })
        })
        .collect();
    let mut winners: HashMap<usize, usize> = HashMap::new();
    let mut losers = 0;
    for task in tasks {
        let (seat, r) = task.await.unwrap();
        match r.outcome {
            Outcome::Held { seats, .. } => {
                assert_eq!(seats, vec![seat as u32]);
                *winners.entry(seat).or_default() += 1;
            }
            Outcome::Rejected { code, .. } => {
                assert_eq!(code, ErrorCode::SeatUnavailable);
                losers += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(winners.len(), 100, "every seat was held");
    assert!(winners.values().all(|n| *n == 1), "no seat was held twice");
    assert_eq!(losers, 100);
    assert_eq!(count(&pool, "select count(*) from seat_claim").await, 100);
    assert_eq!(
        count(
            &pool,
            "select count(distinct seat_id) from seat_claim where state = 'held'"
        )
        .await,
        100
    );
    assert_eq!(
        count(&pool, "select count(*) from hold where status = 'active'").await,
        100
    );
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn five_hundred_buyers_never_push_general_admission_past_its_quota(pool: PgPool) {
    let shop = shop(
        &pool,
        ShopSpec {
            ga_quota: 100,
            ..ShopSpec::default()
        },
    )
    .await;
    let node = node(&pool).await;
    let mut buyers = Vec::new();
    for i in 0..500 {
        buyers.push(connect(&node, &shop, &format!("fan-{i}")).await);
    }
    let tasks: Vec<_> = buyers
        .into_iter()
        .enumerate()
        .map(|(i, mut raw)| {
            tokio::spawn(async move {
                // Mixed sizes, so the last tickets are fought over by groups too.
                send(&mut raw, 1, "ga", hold_ga(&shop, 1 + (i % 3) as u32)).await;
                result(&mut raw).await
            })
        })
        .collect();
    let mut held = 0;
    for task in tasks {
        match task.await.unwrap().outcome {
            Outcome::Held { quantity, .. } => held += quantity,
            Outcome::Rejected { code, .. } => assert_eq!(code, ErrorCode::SoldOut),
            other => panic!("{other:?}"),
        }
    }
    assert!(held <= 100, "held {held} of a quota of 100");
    assert!(
        held >= 98,
        "the quota was used up ({held}): only a group larger than what is left may miss"
    );
    let (quota, in_db): (i32, i32) = sqlx::query_as(
        "select ga_quota, ga_held + ga_sold from ticket_type where ticket_type_id = $1",
    )
    .bind(shop.ga)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(quota, 100);
    assert_eq!(in_db as u32, held);
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_retried_request_id_returns_the_first_result_even_after_a_reconnect(pool: PgPool) {
    let shop = shop(&pool, ShopSpec::default()).await;
    let node = node(&pool).await;
    let mut raw = connect(&node, &shop, "ana").await;
    send(&mut raw, 1, "once", hold_seats(&shop, &[10, 11])).await;
    let first = result(&mut raw).await;
    assert!(matches!(first.outcome, Outcome::Held { .. }), "{first:?}");
    // The same id again on the same connection: the same result, no new hold.
    send(&mut raw, 2, "once", hold_seats(&shop, &[10, 11])).await;
    assert_eq!(result(&mut raw).await, first);
    drop(raw);
    // And after a reconnect, even with a different command body.
    let mut raw = connect(&node, &shop, "ana").await;
    send(&mut raw, 1, "once", hold_seats(&shop, &[30])).await;
    assert_eq!(result(&mut raw).await, first);
    assert_eq!(count(&pool, "select count(*) from hold").await, 1);
    assert_eq!(count(&pool, "select count(*) from seat_claim").await, 2);
    assert_eq!(
        count(&pool, "select count(*) from processed_request").await,
        1
    );
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn retries_racing_the_first_commit_get_its_result_and_have_no_effect(pool: PgPool) {
    // The owner decides a batch while the one before it commits: retries arriving in any batch
    // (the first's, the one committing, or later) must all answer with the first result.
    let shop = shop(&pool, ShopSpec::default()).await;
    let node = node(&pool).await;
    let mut raw = connect(&node, &shop, "ana").await;
    for id in 1..=40u64 {
        // Not waiting for each `accepted` (`result` skips them): the retries keep coming
        // while the first batches decide and commit.
        raw.send(&ClientMessage::Command {
            id,
            request_id: "burst".into(),
            command: hold_seats(&shop, &[20, 21]),
            admission: None,
        })
        .await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let first = result(&mut raw).await;
    assert!(matches!(first.outcome, Outcome::Held { .. }), "{first:?}");
    for _ in 2..=40 {
        assert_eq!(result(&mut raw).await, first);
    }
    assert_eq!(count(&pool, "select count(*) from hold").await, 1);
    assert_eq!(count(&pool, "select count(*) from seat_claim").await, 2);
    assert_eq!(
        count(&pool, "select count(*) from processed_request").await,
        1
    );
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn only_the_buyers_own_live_admission_to_this_onsale_lets_a_command_through(pool: PgPool) {
    use marquee_server::admission::AdmissionKey;
    use marquee_server::clock::now_secs;
    let shop = shop(&pool, ShopSpec::default()).await;
    let other = self::shop(&pool, ShopSpec::default()).await;
    let onsale: Uuid = sqlx::query_scalar(
        "update onsale set requires_admission = true where event_id = $1 returning onsale_id",
    )
    .bind(shop.event)
    .fetch_one(&pool)
    .await
    .unwrap();
    let other_onsale: Uuid = sqlx::query_scalar("select onsale_id from onsale where event_id = $1")
        .bind(other.event)
        .fetch_one(&pool)
        .await
        .unwrap();
    let secret = "admission-secret-for-tests-0123456789";
    let key = AdmissionKey::new(&Secret::new(secret));
    let mut config = node_config(&pool);
    config.admission.admission_secret = Some(Secret::new(secret));
    let node = TestNode::start(config).await;
    let mut raw = connect(&node, &shop, "ana").await;
    let later = now_secs() + 600;
    let refused = [
        ("none", None),
        ("garbage", Some("admitted".to_owned())),
        (
            "another buyer's",
            Some(key.issue(shop.tenant, "bob", onsale, later)),
        ),
        (
            "another onsale's",
            Some(key.issue(shop.tenant, "ana", other_onsale, later)),
        ),
        (
            "another tenant's",
            Some(key.issue(other.tenant, "ana", onsale, later)),
        ),
        (
            "expired",
            Some(key.issue(shop.tenant, "ana", onsale, now_secs() - 1)),
        ),
        (
            "signed with another key",
            Some(
                AdmissionKey::new(&Secret::new("not-the-admission-secret-0123")).issue(
                    shop.tenant,
                    "ana",
                    onsale,
                    later,
                ),
            ),
        ),
        // A session token signed with the admission secret is not an admission.
        (
            "a session token",
            Some(buyer_signed(secret, shop.tenant, "ana")),
        ),
        // Genuine, hers, unexpired, but she has no admitted place in the line (never had, or
        // it ended).
        (
            "without an admitted place",
            Some(key.issue(shop.tenant, "ana", onsale, later)),
        ),
    ];
    for (i, (case, admission)) in refused.into_iter().enumerate() {
        raw.send(&ClientMessage::Command {
            id: i as u64 + 1,
            request_id: format!("r-{i}"),
            command: hold_seats(&shop, &[0]),
            admission,
        })
        .await;
        let r = result(&mut raw).await;
        assert_eq!(rejection(&r), ErrorCode::AdmissionRequired, "{case}");
    }
    assert_eq!(count(&pool, "select count(*) from hold").await, 0);
    assert_eq!(count(&pool, "select count(*) from seat_claim").await, 0);
    // Ana queues and is admitted: the admission she is given lets her hold.
    raw.send(&ClientMessage::QueueJoin {
        id: 99,
        onsale: onsale.to_string(),
        intent: None,
    })
    .await;
    let token = loop {
        match raw.recv().await {
            ServerMessage::QueueJoined { status, .. } | ServerMessage::QueueStatus(status)
                if status.admission.is_some() =>
            {
                break status.admission.unwrap().token;
            }
            _ => {}
        }
    };
    raw.send(&ClientMessage::Command {
        id: 100,
        request_id: "admitted".into(),
        command: hold_seats(&shop, &[0]),
        admission: Some(token),
    })
    .await;
    let r = result(&mut raw).await;
    assert!(matches!(r.outcome, Outcome::Held { .. }), "{r:?}");
    assert_eq!(count(&pool, "select count(*) from seat_claim").await, 1);
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn bad_commands_get_exact_codes_and_change_nothing(pool: PgPool) {
    let shop = shop(
        &pool,
        ShopSpec {
            per_user_limit: 4,
            ..ShopSpec::default()
        },
    )
    .await;
    let other = self::shop(&pool, ShopSpec::default()).await;
    let node = node(&pool).await;
    let mut raw = connect(&node, &shop, "eve").await;
    let cases = [
        (
            "unknown-seat",
            hold_seats(&shop, &[100]),
            ErrorCode::UnknownSeat,
        ),
        (
            "no-seats",
            hold_seats(&shop, &[]),
            ErrorCode::InvalidQuantity,
        ),
        ("twice", hold_seats(&shop, &[1, 1]), ErrorCode::BadRequest),
        ("zero-ga", hold_ga(&shop, 0), ErrorCode::InvalidQuantity),
        ("too-many-ga", hold_ga(&shop, 5), ErrorCode::InvalidQuantity),
        (
            "over-limit",
            hold_seats(&shop, &[1, 2, 3, 4, 5]),
            ErrorCode::LimitExceeded,
        ),
        (
            "zero-best",
            Command::HoldBestAvailable {
                event: shop.event.to_string(),
                category: shop.category.to_string(),
                quantity: 0,
            },
            ErrorCode::InvalidQuantity,
        ),
        (
            "foreign-category",
            Command::HoldBestAvailable {
                event: shop.event.to_string(),
                category: other.category.to_string(),
                quantity: 2,
            },
            ErrorCode::UnknownCategory,
        ),
        (
            "foreign-ticket-type",
            Command::HoldGa {
                event: shop.event.to_string(),
                ticket_type: other.ga.to_string(),
                quantity: 1,
            },
            ErrorCode::UnknownTicketType,
        ),
        (
            "no-such-hold",
            Command::Release {
                event: shop.event.to_string(),
                hold: Uuid::new_v4().to_string(),
            },
            ErrorCode::HoldNotFound,
        ),
    ];
    for (i, (request_id, command, code)) in cases.into_iter().enumerate() {
        send(&mut raw, i as u64 + 1, request_id, command).await;
        let r = result(&mut raw).await;
        assert_eq!(r.request_id, request_id);
        assert_eq!(rejection(&r), code, "{request_id}");
    }
    // Refused before the queue: another tenant's event, a malformed event id, a bad request id,
    // malformed hold, category and ticket type ids (answered as ids that name nothing).
    for (id, request_id, command, code) in [
        (
            100,
            "foreign-event",
            hold_seats(&other, &[1]),
            ErrorCode::NotFound,
        ),
        (
            101,
            "bad-event",
            Command::HoldSeats {
                event: "nope".into(),
                seats: vec![1],
            },
            ErrorCode::NotFound,
        ),
        (102, "", hold_seats(&shop, &[1]), ErrorCode::BadRequest),
        (
            103,
            "garbage-hold",
            Command::Checkout {
                event: shop.event.to_string(),
                hold: "not-a-uuid".into(),
            },
            ErrorCode::HoldNotFound,
        ),
        (
            104,
            "garbage-category",
            Command::HoldBestAvailable {
                event: shop.event.to_string(),
                category: "\u{0}".repeat(10_000),
                quantity: 1,
            },
            ErrorCode::UnknownCategory,
        ),
        (
            105,
            "garbage-ticket-type",
            Command::HoldGa {
                event: shop.event.to_string(),
                ticket_type: "x".into(),
                quantity: 1,
            },
            ErrorCode::UnknownTicketType,
        ),
    ] {
        send_command(&mut raw, id, request_id, command).await;
        match raw.recv().await {
            ServerMessage::Error {
                id: Some(got),
                code: c,
                ..
            } => {
                assert_eq!((got, c), (id, code), "{request_id}");
            }
            other => panic!("{request_id}: {other:?}"),
        }
    }
    assert_eq!(count(&pool, "select count(*) from hold").await, 0);
    assert_eq!(count(&pool, "select count(*) from seat_claim").await, 0);
    assert_eq!(
        count(
            &pool,
            "select coalesce(sum(ga_held + ga_sold), 0) from ticket_type"
        )
        .await,
        0
    );
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn another_tenants_buyer_cannot_touch_a_hold_or_an_event(pool: PgPool) {
    let shop = shop(&pool, ShopSpec::default()).await;
    let other = self::shop(&pool, ShopSpec::default()).await;
    let node = node(&pool).await;
    let mut ana = connect(&node, &shop, "ana").await;
    send(&mut ana, 1, "h", hold_seats(&shop, &[5])).await;
    let Outcome::Held { hold, .. } = result(&mut ana).await.outcome else {
        panic!()
    };
    // Same user name, other tenant: the event is not found at all.
    let mut mallory = connect(&node, &other, "ana").await;
    mallory
        .send(&ClientMessage::Command {
            id: 1,
            request_id: "steal".into(),
            command: Command::Release {
                event: shop.event.to_string(),
                hold: hold.clone(),
            },
            admission: None,
        })
        .await;
    assert!(matches!(
        mallory.recv().await,
        ServerMessage::Error {
            code: ErrorCode::NotFound,
            ..
        }
    ));
    // Another buyer of the same tenant: the hold is not theirs.
    let mut bob = connect(&node, &shop, "bob").await;
    send(
        &mut bob,
        1,
        "steal",
        Command::Release {
            event: shop.event.to_string(),
            hold,
        },
    )
    .await;
    assert_eq!(rejection(&result(&mut bob).await), ErrorCode::HoldNotFound);
    assert_eq!(count(&pool, "select count(*) from seat_claim").await, 1);
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn checkout_turns_a_hold_into_an_order_awaiting_payment(pool: PgPool) {
    let shop = shop(&pool, ShopSpec::default()).await;
    let node = node(&pool).await;
    let mut raw = connect(&node, &shop, "ana").await;
    send(
        &mut raw,
        1,
        "best",
        Command::HoldBestAvailable {
            event: shop.event.to_string(),
            category: shop.category.to_string(),
            quantity: 2,
        },
    )
    .await;
    let Outcome::Held { hold, seats, .. } = result(&mut raw).await.outcome else {
        panic!()
    };
    // Best available: two adjacent seats in the front row, centred on the focal point (x 9.5).
    assert_eq!(seats, vec![9, 10]);
    send(
        &mut raw,
        2,
        "pay",
        Command::Checkout {
            event: shop.event.to_string(),
            hold: hold.clone(),
        },
    )
    .await;
    let Outcome::CheckedOut {
        order,
        total_minor,
        currency,
        ..
    } = result(&mut raw).await.outcome
    else {
        panic!()
    };
    assert_eq!((total_minor, currency.as_str()), (10_000, "EUR"));
    let status: String = sqlx::query_scalar(
        "select status::text from ticket_order where ticket_order_id = $1::uuid",
    )
    .bind(&order)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(status, "pending_payment");
    assert_eq!(
        count(
            &pool,
            "select count(*) from seat_claim where state = 'sold'"
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &pool,
            "select count(*) from hold where status = 'converted'"
        )
        .await,
        1
    );
    // A second checkout of the same hold is refused.
    send(
        &mut raw,
        3,
        "pay-again",
        Command::Checkout {
            event: shop.event.to_string(),
            hold,
        },
    )
    .await;
    assert_eq!(rejection(&result(&mut raw).await), ErrorCode::HoldExpired);
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn expired_holds_free_their_seats_and_the_seat_map_says_so(pool: PgPool) {
    let shop = shop(
        &pool,
        ShopSpec {
            hold: "1 second",
            ..ShopSpec::default()
        },
    )
    .await;
    let node = node(&pool).await;
    let mut watcher = connect(&node, &shop, "watcher").await;
    let channel = format!("seats:{}", shop.event);
    let ServerMessage::Subscribed {
        snapshot: Some(snapshot),
        ..
    } = watcher.subscribe(1, &channel).await
    else {
        panic!("a snapshot")
    };
    let snapshot: SeatSnapshot = serde_json::from_value(snapshot).unwrap();
    assert_eq!((snapshot.v, snapshot.seats), (0, 100));
    let mut ana = connect(&node, &shop, "ana").await;
    send(&mut ana, 1, "h", hold_seats(&shop, &[40, 41])).await;
    assert!(matches!(
        result(&mut ana).await.outcome,
        Outcome::Held { .. }
    ));
    let mut deltas = Vec::new();
    while deltas.len() < 2 {
        if let ServerMessage::Pub(p) = watcher.recv().await {
            deltas.push(serde_json::from_value::<SeatDelta>(p.data).unwrap());
        }
    }
    assert_eq!((deltas[0].v, deltas[0].held.clone()), (1, vec![40, 41]));
    assert_eq!(
        (deltas[1].v, deltas[1].free.clone()),
        (2, vec![40, 41]),
        "the sweeper freed them"
    );
    assert_eq!(
        count(&pool, "select count(*) from hold where status = 'expired'").await,
        1
    );
    assert_eq!(count(&pool, "select count(*) from seat_claim").await, 0);
    // A late release is told the hold expired.
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_seat_map_subscriber_gets_the_state_at_the_snapshot_and_every_delta_after(pool: PgPool) {
    let shop = shop(&pool, ShopSpec::default()).await;
    let node = node(&pool).await;
    let mut ana = connect(&node, &shop, "ana").await;
    for i in 0..5u32 {
        send(
            &mut ana,
            u64::from(i),
            &format!("h{i}"),
            hold_seats(&shop, &[i]),
        )
        .await;
        result(&mut ana).await;
    }
    let mut watcher =
        Raw::connect_with(&node.ws_url(), &buyer(shop.tenant, "w"), Codec::MsgPack).await;
    let ServerMessage::Subscribed {
        snapshot: Some(snapshot),
        ..
    } = watcher.subscribe(1, &format!("seats:{}", shop.event)).await
    else {
        panic!()
    };
    let snapshot: SeatSnapshot = serde_json::from_value(snapshot).unwrap();
    use base64::Engine as _;
    let packed = base64::engine::general_purpose::STANDARD
        .decode(&snapshot.state)
        .unwrap();
    let states = unpack_seat_states(&packed, snapshot.seats as usize).unwrap();
    assert_eq!(snapshot.v, 5);
    assert_eq!(states.iter().filter(|s| **s == SeatState::Held).count(), 5);
    assert!(states[..5].iter().all(|s| *s == SeatState::Held));
    send(&mut ana, 9, "h9", hold_seats(&shop, &[50])).await;
    result(&mut ana).await;
    let delta = loop {
        if let ServerMessage::Pub(p) = watcher.recv().await {
            break serde_json::from_value::<SeatDelta>(p.data).unwrap();
        }
    };
    assert_eq!(
        (delta.v, delta.held),
        (6, vec![50]),
        "the next delta follows the snapshot exactly"
    );
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_crowd_subscribing_at_once_costs_one_read_of_the_map_per_version(pool: PgPool) {
    use marquee_server::booking::live::SeatSnapshots;
    use marquee_server::engine::ChannelEngine as _;
    use marquee_server::hub::SnapshotProvider as _;
    let shop = shop(&pool, ShopSpec::default()).await;
    let node = node(&pool).await;
    let mut ana = connect(&node, &shop, "ana").await;
    let channel = marquee_protocol::Channel::parse(&format!("seats:{}", shop.event)).unwrap();
    let snapshots = SeatSnapshots::new(pool.clone(), node.hub.engine().clone());
    for (version, seat) in [(1, 0u32), (2, 1)] {
        send(&mut ana, 1, &format!("h{seat}"), hold_seats(&shop, &[seat])).await;
        result(&mut ana).await;
        // The hold's delta is published once the relay has caught up; wait for it so every
        // subscriber below sees the same channel position.
        let published = async {
            while node
                .hub
                .engine()
                .history(channel.as_str(), None)
                .await
                .unwrap()
                .position
                .offset
                < version
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), published)
            .await
            .unwrap();
        let crowd = (0..100).map(|_| snapshots.snapshot(&channel));
        let maps = futures_util::future::try_join_all(crowd).await.unwrap();
        assert!(maps.iter().all(|m| *m == maps[0]), "one snapshot for all");
        let map: SeatSnapshot = serde_json::from_value(maps[0].0.clone()).unwrap();
        assert_eq!(map.v, version);
        assert_eq!(
            snapshots.reads(),
            version,
            "one read of the map per published version, whatever the crowd"
        );
    }
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_fifty_thousand_seat_snapshot_fits_in_sixty_four_kib_of_messagepack(pool: PgPool) {
    let shop = shop(
        &pool,
        ShopSpec {
            rows: 250,
            width: 200,
            ..ShopSpec::default()
        },
    )
    .await;
    let node = node(&pool).await;
    let mut raw = Raw::connect_with(&node.ws_url(), &buyer(shop.tenant, "w"), Codec::MsgPack).await;
    raw.send(&ClientMessage::Subscribe {
        id: 1,
        channel: format!("seats:{}", shop.event),
        since: None,
    })
    .await;
    use futures_util::StreamExt;
    let frame = loop {
        match raw.socket.next().await.unwrap().unwrap() {
            tokio_tungstenite::tungstenite::Message::Binary(b) => break b,
            _ => continue,
        }
    };
    let ServerMessage::Subscribed {
        snapshot: Some(snapshot),
        ..
    } = Codec::MsgPack.decode(&frame).unwrap()
    else {
        panic!()
    };
    let snapshot: SeatSnapshot = serde_json::from_value(snapshot).unwrap();
    assert_eq!(snapshot.seats, 50_000);
    assert!(
        frame.len() <= 64 * 1024,
        "subscribed frame is {} bytes",
        frame.len()
    );
    println!("50,000-seat snapshot: {} bytes of MessagePack", frame.len());
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn results_stay_pending_until_acknowledged_and_come_back_on_every_connect(pool: PgPool) {
    let shop = shop(&pool, ShopSpec::default()).await;
    let node = node(&pool).await;
    let token = buyer(shop.tenant, "ana");
    let mut raw = Raw::connect(&node.ws_url(), &token).await;
    send(&mut raw, 1, "a", hold_seats(&shop, &[1])).await;
    let a = result(&mut raw).await;
    send(&mut raw, 2, "b", hold_ga(&shop, 2)).await;
    let b = result(&mut raw).await;
    drop(raw);
    let pending = |welcome: ServerMessage| -> Vec<CommandResult> {
        let ServerMessage::Welcome {
            inbox_snapshot: Some(s),
            ..
        } = welcome
        else {
            panic!("welcome with an inbox snapshot")
        };
        serde_json::from_value::<InboxSnapshot>(s).unwrap().pending
    };
    let (mut raw, welcome) = Raw::connect_welcomed(&node.ws_url(), &token, Codec::Json).await;
    assert_eq!(pending(welcome), vec![a.clone(), b.clone()]);
    raw.send(&ClientMessage::Ack {
        id: 7,
        request_ids: vec!["a".into()],
    })
    .await;
    assert_eq!(raw.recv().await, ServerMessage::Acked { id: 7 });
    drop(raw);
    let (_raw, welcome) = Raw::connect_welcomed(&node.ws_url(), &token, Codec::Json).await;
    assert_eq!(pending(welcome), vec![b]);
    node.shutdown().await;
}

/// Acknowledgements arriving together are written together (`booking::acks`), and each still
/// marks only its own buyer's result: buyers who share a request id, half of whom acknowledge
/// at once.
#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn acknowledgements_written_together_mark_only_their_own_buyers_results(pool: PgPool) {
    let shop = shop(&pool, ShopSpec::default()).await;
    let node = node(&pool).await;
    let mut buyers = Vec::new();
    for n in 0..12 {
        let mut raw = connect(&node, &shop, &format!("buyer-{n}")).await;
        send(&mut raw, 1, "same", hold_ga(&shop, 1)).await;
        let held = result(&mut raw).await;
        assert!(matches!(held.outcome, Outcome::Held { .. }), "{held:?}");
        buyers.push(raw);
    }
    let acked = buyers.iter_mut().take(6).map(|raw| async move {
        raw.send(&ClientMessage::Ack {
            id: 9,
            request_ids: vec!["same".into(), "never-sent".into()],
        })
        .await;
        raw.recv().await
    });
    for answer in futures_util::future::join_all(acked).await {
        assert_eq!(answer, ServerMessage::Acked { id: 9 });
    }
    let mut rows: Vec<(String, bool)> =
        sqlx::query_as("select user_id, acknowledged_at is not null from processed_request")
            .fetch_all(&pool)
            .await
            .unwrap();
    rows.sort();
    let expected: Vec<(String, bool)> = (0..12)
        .map(|n| (format!("buyer-{n}"), n < 6))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect();
    assert_eq!(rows, expected);
    node.shutdown().await;
}

/// Two owners of one event at once (a lease lost mid-batch): the stale one cannot commit, and
/// even if it could get past the fence, the seat claim's key refuses the double sale.
#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn two_owners_of_one_event_never_sell_a_seat_twice(pool: PgPool) {
    let shop = shop(&pool, ShopSpec::default()).await;
    let mut first = store::load(&pool, shop.event).await.unwrap().unwrap();
    let mut second = first.clone();
    let decide = |inventory: &mut marquee_server::booking::inventory::Inventory, user: &str| {
        let command = hold_seats(&shop, &[7, 8]);
        let mut delta = DeltaBuilder::default();
        let (outcome, change) = inventory.apply(
            &Request {
                user,
                command: &command,
                admission: None,
            },
            marquee_server::clock::now_ms() as i64,
            &mut delta,
        );
        assert!(
            matches!(outcome, Outcome::Held { .. }),
            "each owner believes the seats are free"
        );
        Batch {
            changes: change.into_iter().collect(),
            bump: true,
            ..Batch::default()
        }
    };
    let batch_a = decide(&mut first, "ana");
    let batch_b = decide(&mut second, "bob");
    let v = store::commit(
        &pool,
        shop.tenant,
        shop.event,
        first.version,
        "owner-a",
        &batch_a,
    )
    .await
    .unwrap();
    assert_eq!(v, 1);
    let fenced = store::commit(
        &pool,
        shop.tenant,
        shop.event,
        second.version,
        "owner-b",
        &batch_b,
    )
    .await;
    assert!(matches!(fenced, Err(CommitError::Fenced)), "{fenced:?}");
    // Past the fence (as if the version check were wrong), the constraint still holds.
    let forced = store::commit(&pool, shop.tenant, shop.event, v, "owner-b", &batch_b).await;
    let Err(CommitError::Db(sqlx::Error::Database(e))) = forced else {
        panic!("{forced:?}")
    };
    assert_eq!(e.constraint(), Some("seat_claim_pkey"));
    assert_eq!(count(&pool, "select count(*) from seat_claim").await, 2);
    let owners: Vec<String> = sqlx::query_scalar(
        "select distinct h.user_id from seat_claim c join hold h using (hold_id)",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(owners, vec!["ana".to_owned()]);
}

/// A node on the shared Redis under `prefix` with no booking worker of its own: worker
/// processes decide its commands.
fn without_workers(pool: &PgPool, prefix: &str) -> marquee_server::Config {
    let mut config = node_config(pool);
    config.redis_url = Some(Secret::new(common::redis_url()));
    config.redis_prefix = prefix.to_owned();
    config.booking.workers = 0;
    config
}

/// A `marquee worker` process on the test database and Redis prefix.
fn worker_process(
    pool: &PgPool,
    prefix: &str,
    name: &str,
    crash: bool,
) -> common::processes::Process {
    let switch = [("MARQUEE_CRASH_AFTER_COMMIT", "true".to_owned())];
    common::processes::worker_process(
        &database_url(pool),
        &common::redis_url(),
        prefix,
        name,
        if crash { &switch } else { &[] },
    )
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_worker_killed_between_commit_and_acknowledge_delivers_the_result_exactly_once(
    pool: PgPool,
) {
    use fred::prelude::StreamsInterface as _;
    let shop = shop(&pool, ShopSpec::default()).await;
    let prefix = common::unique_prefix();
    let config = without_workers(&pool, &prefix);
    let node = TestNode::start(config).await;
    let mut doomed = worker_process(&pool, &prefix, "doomed", true);
    let mut raw = connect(&node, &shop, "ana").await;
    send(&mut raw, 1, "once", hold_seats(&shop, &[3, 4])).await;
    // The doomed worker commits (so the relay publishes the result), then dies before XACK.
    let first = result(&mut raw).await;
    assert!(matches!(first.outcome, Outcome::Held { .. }), "{first:?}");
    let status = tokio::task::spawn_blocking(move || doomed.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success(), "the worker aborted");
    let redis = common::redis_client().await;
    let stream = format!("{prefix}:cmd:{{{}}}", shop.event);
    let left: u64 = redis.xlen(&stream).await.unwrap();
    assert_eq!(left, 1, "the entry is still unacknowledged");
    // A second worker takes the lease over, re-claims the entry, finds its result stored and
    // acknowledges it without a second effect or a second result.
    let mut heir = worker_process(&pool, &prefix, "heir", false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left: u64 = redis.xlen(&stream).await.unwrap();
        if left == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the heir never acknowledged the entry"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = tokio::time::timeout(Duration::from_millis(1500), result(&mut raw)).await;
    assert!(again.is_err(), "a second result arrived: {again:?}");
    assert_eq!(count(&pool, "select count(*) from hold").await, 1);
    assert_eq!(
        count(&pool, "select count(*) from processed_request").await,
        1
    );
    let _ = heir.kill();
    let _ = heir.wait();
    node.shutdown().await;
}

/// Worker processes relay the outbox: with the node's relay off, a buyer still hears the
/// result of a command a worker process decided.
#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_worker_process_relays_results_for_a_node_that_does_not(pool: PgPool) {
    use marquee_server::outbox::relay::RelayMode;
    let shop = shop(&pool, ShopSpec::default()).await;
    let prefix = common::unique_prefix();
    let mut config = without_workers(&pool, &prefix);
    config.outbox_relay = RelayMode::Off;
    let node = TestNode::start(config).await;
    let mut worker = worker_process(&pool, &prefix, "relaying", false);
    let mut raw = connect(&node, &shop, "ana").await;
    send(&mut raw, 1, "held", hold_seats(&shop, &[5])).await;
    let first = result(&mut raw).await;
    assert!(matches!(first.outcome, Outcome::Held { .. }), "{first:?}");
    let _ = worker.kill();
    let _ = worker.wait();
    node.shutdown().await;
}

/// A node on standby leaves fresh outbox rows to the workers and relays what waited
/// [`STANDBY_AFTER`]: with no worker relaying (this node's own worker decides, and no worker
/// process runs), the result comes, but only after that.
#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_node_on_standby_relays_only_what_waited(pool: PgPool) {
    use marquee_server::outbox::relay::{RelayMode, STANDBY_AFTER};
    let shop = shop(&pool, ShopSpec::default()).await;
    let mut config = node_config(&pool);
    config.outbox_relay = RelayMode::Standby;
    let node = TestNode::start(config).await;
    let mut raw = connect(&node, &shop, "ana").await;
    send(&mut raw, 1, "late", hold_seats(&shop, &[6])).await;
    let early = tokio::time::timeout(STANDBY_AFTER / 2, result(&mut raw)).await;
    assert!(early.is_err(), "relayed before it waited: {early:?}");
    let late = result(&mut raw).await;
    assert!(matches!(late.outcome, Outcome::Held { .. }), "{late:?}");
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn results_come_back_from_postgres_after_redis_loses_the_inbox_history(pool: PgPool) {
    use fred::prelude::KeysInterface as _;
    let shop = shop(&pool, ShopSpec::default()).await;
    let prefix = common::unique_prefix();
    let mut config = node_config(&pool);
    config.redis_url = Some(Secret::new(common::redis_url()));
    config.redis_prefix = prefix.clone();
    let node = TestNode::start(config).await;
    let (mut raw, welcome) =
        Raw::connect_welcomed(&node.ws_url(), &buyer(shop.tenant, "ana"), Codec::Json).await;
    let ServerMessage::Welcome { inbox, .. } = welcome else {
        panic!()
    };
    send(&mut raw, 1, "kept", hold_seats(&shop, &[9])).await;
    let kept = result(&mut raw).await;
    drop(raw);
    // Redis loses everything under this test's prefix (as a flush would).
    let redis = common::redis_client().await;
    let keys = vec![
        format!("{prefix}:ch:{{{inbox}}}:meta"),
        format!("{prefix}:ch:{{{inbox}}}:hist"),
    ];
    let deleted: i64 = redis.del(keys).await.unwrap();
    assert_eq!(deleted, 2, "the inbox had a position and history in Redis");
    let mut raw = connect(&node, &shop, "ana").await;
    raw.send(&ClientMessage::Subscribe {
        id: 2,
        channel: inbox.clone(),
        since: Some(marquee_protocol::StreamPosition::new("lost-epoch", 1)),
    })
    .await;
    let ServerMessage::Subscribed {
        recovered,
        snapshot: Some(snapshot),
        ..
    } = raw.recv().await
    else {
        panic!("a snapshot of the inbox")
    };
    assert!(!recovered);
    let snapshot: InboxSnapshot = serde_json::from_value(snapshot).unwrap();
    assert_eq!(snapshot.pending, vec![kept]);
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn the_sdk_holds_through_a_dropped_connection_once_and_acknowledges_results(pool: PgPool) {
    use marquee_client::{Client, ClientConfig, Event, TokenProvider};
    let shop = shop(&pool, ShopSpec::default()).await;
    let node = node(&pool).await;
    let relay = common::Relay::start(node.addr).await;
    let (client, mut events) = Client::connect(
        ClientConfig::new(relay.ws_url()),
        TokenProvider::fixed(buyer(shop.tenant, "ana")),
    )
    .await
    .unwrap();
    let event = shop.event.to_string();
    let held = client.hold_seats(&event, &[20, 21]).await.unwrap();
    let Outcome::Held { hold, .. } = &held.outcome else {
        panic!("{held:?}")
    };
    // A command in flight while the network drops: sent again after the reconnect, it still
    // takes effect once.
    let in_flight = tokio::spawn({
        let client = client.clone();
        let ga = shop.ga.to_string();
        let event = event.clone();
        async move { client.hold_ga(&event, &ga, 2).await }
    });
    relay.cut();
    let ga = in_flight.await.unwrap().unwrap();
    assert!(
        matches!(ga.outcome, Outcome::Held { quantity: 2, .. }),
        "{ga:?}"
    );
    let checked_out = client.checkout(&event, hold).await.unwrap();
    assert!(
        matches!(checked_out.outcome, Outcome::CheckedOut { .. }),
        "{checked_out:?}"
    );
    assert_eq!(count(&pool, "select count(*) from hold").await, 2);
    assert_eq!(
        count(
            &pool,
            "select ga_held::int8 from ticket_type where ga_quota is not null"
        )
        .await,
        2
    );
    // Every result reached the application once, and was acknowledged; the application heard
    // each command was queued at most once, and never after its result.
    let (mut seen, mut accepted) = (HashMap::new(), HashMap::new());
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), events.next()).await {
        match e {
            Event::Result(r) => *seen.entry(r.request_id).or_insert(0) += 1,
            Event::Accepted { request_id } => {
                assert!(!seen.contains_key(&request_id), "accepted after its result");
                *accepted.entry(request_id).or_insert(0) += 1;
            }
            _ => {}
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    assert!(accepted.values().all(|n| *n == 1), "{accepted:?}");
    for result in [&held, &checked_out] {
        assert!(accepted.contains_key(&result.request_id), "{accepted:?}");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while count(
        &pool,
        "select count(*) from processed_request where acknowledged_at is null",
    )
    .await
        > 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "results were never acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.close().await;
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn results_are_pruned_after_their_retention_and_not_before(pool: PgPool) {
    use marquee_server::booking::retention::{Retention, prune};
    let shop = common::shop::shop(&pool, common::shop::ShopSpec::default()).await;
    // (request id, created days ago, acknowledged days ago)
    let rows: [(&str, i32, Option<i32>); 5] = [
        ("acked-long-ago", 40, Some(10)),
        ("acked-recently", 40, Some(2)),
        ("pending-ancient", 45, None),
        ("pending-recent", 5, None),
        ("fresh", 0, None),
    ];
    for (id, created, acked) in rows {
        sqlx::query(
            "insert into processed_request (tenant_id, user_id, request_id, event_id, command_id, result, created_at, acknowledged_at)
             values ($1, 'ana', $2, $3, $2, '{}'::jsonb, now() - make_interval(days => $4),
                     now() - make_interval(days => $5))",
        )
        .bind(shop.tenant)
        .bind(id)
        .bind(shop.event)
        .bind(created)
        .bind(acked)
        .execute(&pool)
        .await
        .unwrap();
    }
    let retention = Retention {
        acknowledged: Duration::from_secs(7 * 86_400),
        unacknowledged: Duration::from_secs(30 * 86_400),
        every: Duration::from_secs(600),
    };
    assert_eq!(prune(&pool, retention).await.unwrap(), 2);
    let left: Vec<String> =
        sqlx::query_scalar("select request_id from processed_request order by request_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(left, ["acked-recently", "fresh", "pending-recent"]);
    // Nothing more to do.
    assert_eq!(prune(&pool, retention).await.unwrap(), 0);
}

#[tokio::test]
async fn an_events_command_queue_refuses_past_its_backlog_and_takes_again_once_drained() {
    use marquee_server::booking::queue::{
        CommandQueue, Envelope, MemoryQueue, QueueError, RedisQueue,
    };
    let prefix = common::unique_prefix();
    let queues = [
        CommandQueue::Memory(std::sync::Arc::new(
            MemoryQueue::default().with_max_backlog(3),
        )),
        CommandQueue::Redis(std::sync::Arc::new(
            RedisQueue::connect(&common::redis_url(), &prefix)
                .await
                .unwrap()
                .with_max_backlog(3),
        )),
    ];
    for queue in queues {
        let event = Uuid::now_v7();
        let envelope = |n: u32| Envelope {
            tenant: Uuid::now_v7(),
            user: "ana".into(),
            inbox: "inbox:ana".into(),
            request_id: format!("r{n}"),
            command: Command::Release {
                event: event.to_string(),
                hold: Uuid::now_v7().to_string(),
            },
            admission: None,
            accepted_at_ms: 0,
        };
        for n in 0..3 {
            queue.enqueue(event, &envelope(n)).await.unwrap();
        }
        assert!(matches!(
            queue.enqueue(event, &envelope(3)).await,
            Err(QueueError::Full)
        ));
        // Delivered but unacknowledged entries still count: they are unfinished work.
        let reader = queue.reader(event, "w1").await.unwrap();
        let read = reader.read(10, Duration::from_millis(100)).await.unwrap();
        assert_eq!(read.len(), 3);
        assert!(matches!(
            queue.enqueue(event, &envelope(4)).await,
            Err(QueueError::Full)
        ));
        // Once finished, the queue takes commands again; nothing accepted was dropped.
        let ids: Vec<String> = read.iter().map(|e| e.id.clone()).collect();
        reader.ack(&ids).await.unwrap();
        queue.enqueue(event, &envelope(5)).await.unwrap();
        let next = reader.read(10, Duration::from_millis(100)).await.unwrap();
        assert_eq!(
            next.iter()
                .map(|e| e.envelope.request_id.as_str())
                .collect::<Vec<_>>(),
            ["r5"]
        );
    }
}

/// One bad input never stops anyone else: among a thousand good commands, one that Postgres
/// refuses outright (a request id with U+0000, as a queue entry from before the edge checked
/// it could hold) and one whose deciding panics (a fault switch standing for a bug). Both are
/// set apart, every other command commits in its batch, and the owner carries on.
#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_poisoned_and_a_panicking_command_among_a_thousand_are_set_apart_and_the_rest_commit(
    pool: PgPool,
) {
    use marquee_protocol::booking::InboxMessage;
    use marquee_server::booking::queue::{CommandQueue, Envelope};
    use marquee_server::booking::worker::{Worker, WorkerSettings};
    let shop = shop(
        &pool,
        ShopSpec {
            ga_quota: 10_000,
            ..ShopSpec::default()
        },
    )
    .await;
    let queue = CommandQueue::Memory(std::sync::Arc::default());
    let envelope = |user: &str, request_id: &str| Envelope {
        tenant: shop.tenant,
        user: user.to_owned(),
        inbox: format!("inbox:{}/{user}", shop.tenant),
        request_id: request_id.to_owned(),
        command: hold_ga(&shop, 1),
        admission: None,
        accepted_at_ms: marquee_server::clock::now_ms(),
    };
    for i in 0..1000 {
        if i == 250 {
            queue
                .enqueue(shop.event, &envelope("bea", "boom"))
                .await
                .unwrap();
        }
        if i == 500 {
            let poison = envelope("mallory", "poison\u{0}");
            queue.enqueue(shop.event, &poison).await.unwrap();
        }
        let user = format!("buyer-{i}");
        queue
            .enqueue(shop.event, &envelope(&user, "r"))
            .await
            .unwrap();
    }
    let worker = Worker {
        id: "w-1".into(),
        db: pool.clone(),
        queue,
        settings: WorkerSettings {
            panic_on_request: Some("boom".into()),
            ..WorkerSettings::default()
        },
        effects_due: Default::default(),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(worker.run(stop.clone()));
    let done = async {
        loop {
            let stored = count(&pool, "select count(*) from processed_request").await;
            let apart = count(&pool, "select count(*) from dead_letter").await;
            if stored == 1001 && apart == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), done)
        .await
        .expect("every command answered or set apart within a minute");
    let results: Vec<(String, serde_json::Value)> =
        sqlx::query_as("select user_id, result from processed_request")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut held = 0;
    for (user, result) in results {
        let InboxMessage::Result(r) = serde_json::from_value(result).unwrap() else {
            panic!("a command result")
        };
        if user == "bea" {
            assert_eq!(rejection(&r), ErrorCode::Internal, "the panicking command");
        } else {
            assert!(matches!(r.outcome, Outcome::Held { .. }), "{user}: {r:?}");
            held += 1;
        }
    }
    assert_eq!(held, 1000, "every good command took effect");
    assert_eq!(
        count(&pool, "select coalesce(sum(ga_held), 0) from ticket_type").await,
        1000
    );
    let envelope: Vec<u8> = sqlx::query_scalar("select envelope from dead_letter")
        .fetch_one(&pool)
        .await
        .unwrap();
    let envelope: Envelope = serde_json::from_slice(&envelope).unwrap();
    assert_eq!(
        (envelope.user.as_str(), envelope.request_id.as_str()),
        ("mallory", "poison\u{0}"),
        "the poison is kept as it came"
    );
    stop.cancel();
    running.await.unwrap().unwrap();
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_worker_process_serves_its_health_and_metrics(pool: PgPool) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut worker = std::process::Command::new(env!("CARGO_BIN_EXE_marquee"))
        .arg("worker")
        .env("DATABASE_URL", database_url(&pool))
        .env("REDIS_URL", common::redis_url())
        .env("MARQUEE_REDIS_PREFIX", common::unique_prefix())
        .env("MARQUEE_WORKER_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let up = async {
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), up)
        .await
        .expect("the worker listens");
    let health = common::http(addr, "GET", "/health", &[], None).await;
    assert_eq!(
        (health.status, health.json()["status"].clone()),
        (200, serde_json::json!("ok"))
    );
    let metrics = common::http(addr, "GET", "/metrics", &[], None).await;
    assert_eq!(metrics.status, 200);
    for name in [
        "marquee_commands_total",
        "marquee_booking_batch_size",
        "process_resident_memory_bytes",
    ] {
        assert!(
            metrics.body.contains(name),
            "{name} missing from:\n{}",
            metrics.body
        );
    }
    let _ = worker.kill();
    let _ = worker.wait();
}
