//! Tickets and check-in end to end: tickets bought through the simulated provider, scanned by
//! gates over WebSockets on two nodes sharing Redis and Postgres, and over HTTP (one scan and
//! offline batches).

use crate::common;

use common::shop::{
    Shop, ShopSpec, admin_token, checkout, node_config, order_update, paying, shop, staff_token,
};
use common::{Raw, SECRET, TestNode, claims, redis_config, unique_prefix};
use marquee_protocol::booking::{OrderStatus, Ticket};
use marquee_protocol::checkin::{Scan, ScanNotice, ScanOutcome, ScanResult};
use marquee_protocol::{ClientMessage, ErrorCode, ServerMessage};
use marquee_server::auth::sign_hs256;
use marquee_server::ticket_code::{TicketClaim, TicketKey};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

fn scan(qr: &str, scan_id: &str, event: Option<Uuid>) -> Scan {
    Scan {
        qr: qr.to_owned(),
        scan_id: scan_id.to_owned(),
        event: event.map(|e| e.to_string()),
        scanned_at: None,
    }
}

fn gate_token(shop: &Shop, gate: &str) -> String {
    staff_token(shop, gate, "gate")
}

/// `user` buys `seats`; their tickets.
async fn buy(node: &TestNode, shop: &Shop, user: &str, seats: &[u32]) -> Vec<Ticket> {
    common::shop::buy(node, shop, user, seats).await.1
}

/// Sends `checkin.scan` and returns the `checkin.result` (skipping gate-channel publications).
async fn ws_scan(raw: &mut Raw, id: u64, scan: Scan) -> ScanResult {
    raw.send(&ClientMessage::CheckinScan { id, scan }).await;
    loop {
        match raw.recv().await {
            ServerMessage::CheckinResult { id: got, result } if got == id => return result,
            ServerMessage::Pub(_) => {}
            other => panic!("expected checkin.result, got {other:?}"),
        }
    }
}

/// The next notice on `gate:{event}`.
async fn notice(raw: &mut Raw) -> ScanNotice {
    loop {
        if let ServerMessage::Pub(p) = raw.recv().await
            && p.channel.starts_with("gate:")
        {
            return serde_json::from_value(p.data).expect("a scan notice");
        }
    }
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn two_gates_on_two_nodes_scanning_one_ticket_at_once_admit_it_exactly_once(pool: PgPool) {
    let prefix = unique_prefix();
    let cluster = |pool: &PgPool| {
        let mut config = paying(redis_config(&prefix));
        config.database_url = node_config(pool).database_url;
        config.database_pool = 8;
        config
    };
    let a = TestNode::start_internal(cluster(&pool)).await;
    let b = TestNode::start_internal(cluster(&pool)).await;
    let shop = shop(&pool, ShopSpec::default()).await;
    let tickets = buy(&a, &shop, "alice", &[1, 2]).await;
    assert_eq!(tickets.len(), 2);
    let gate_channel = format!("gate:{}", shop.event);
    let mut north = Raw::connect(&a.ws_url(), &gate_token(&shop, "gate-north")).await;
    let mut south = Raw::connect(&b.ws_url(), &gate_token(&shop, "gate-south")).await;
    north.must_subscribe(1, &gate_channel).await;
    south.must_subscribe(1, &gate_channel).await;

    // Both gates scan the first ticket at the same instant, on different nodes.
    let qr = tickets[0].qr.clone();
    let (first, second) = tokio::join!(
        ws_scan(&mut north, 2, scan(&qr, "north-1", Some(shop.event))),
        ws_scan(&mut south, 2, scan(&qr, "south-1", Some(shop.event))),
    );
    let (admitted, refused) = match (&first.outcome, &second.outcome) {
        (ScanOutcome::Admitted { .. }, ScanOutcome::AlreadyCheckedIn { .. }) => (first, second),
        (ScanOutcome::AlreadyCheckedIn { .. }, ScanOutcome::Admitted { .. }) => (second, first),
        other => panic!("exactly one admission expected, got {other:?}"),
    };
    let ScanOutcome::Admitted { at, seat, .. } = admitted.outcome else {
        unreachable!()
    };
    let winner = if admitted.scan_id == "north-1" {
        "gate-north"
    } else {
        "gate-south"
    };
    assert_eq!(seat, tickets[0].seat);
    assert_eq!(
        refused.outcome,
        ScanOutcome::AlreadyCheckedIn {
            at,
            gate: winner.into()
        },
        "the second gate learns when and where the ticket went in"
    );
    // Every gate of the event sees both scans, whichever node made them.
    for gate in [&mut north, &mut south] {
        let mut seen = [notice(gate).await, notice(gate).await];
        seen.sort_by(|x, y| x.result.scan_id.cmp(&y.result.scan_id));
        assert_eq!(
            seen.iter()
                .map(|n| (n.gate.as_str(), n.result.scan_id.as_str()))
                .collect::<Vec<_>>(),
            vec![("gate-north", "north-1"), ("gate-south", "south-1")]
        );
    }
    // The same scan id again: the first answer, unchanged.
    let again = ws_scan(&mut north, 3, scan(&qr, "north-1", Some(shop.event))).await;
    assert_eq!(
        again,
        if admitted.scan_id == "north-1" {
            admitted.clone()
        } else {
            refused.clone()
        }
    );
    let checked_in: i64 =
        sqlx::query_scalar("select count(*) from ticket where checked_in_at is not null")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(checked_in, 1);
    // A buyer's token cannot scan, nor listen to the gates.
    let mut buyer = common::shop::connect(&a, &shop, "alice").await;
    buyer
        .send(&ClientMessage::CheckinScan {
            id: 9,
            scan: scan(&tickets[1].qr, "x", None),
        })
        .await;
    loop {
        match buyer.recv().await {
            ServerMessage::Error { id, code, .. } => {
                assert_eq!((id, code), (Some(9), ErrorCode::Forbidden));
                break;
            }
            ServerMessage::Pub(_) => {}
            other => panic!("expected forbidden, got {other:?}"),
        }
    }
    assert!(matches!(
        buyer.subscribe(10, &gate_channel).await,
        ServerMessage::Error {
            code: ErrorCode::Forbidden,
            ..
        }
    ));
    a.shutdown().await;
    b.shutdown().await;
}

async fn post(node: &TestNode, path: &str, token: &str, body: &Value) -> (u16, Value) {
    common::call_json(node.addr, Some(token), "POST", path, Some(body)).await
}

async fn get(node: &TestNode, path: &str, token: Option<&str>) -> (u16, Value) {
    common::call_json(node.addr, token, "GET", path, None).await
}

fn status_of(result: &Value) -> (&str, Option<&str>) {
    (
        result["status"].as_str().unwrap_or(""),
        result["code"].as_str(),
    )
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn http_gates_scan_and_upload_offline_batches_idempotently(pool: PgPool) {
    let node = TestNode::start_internal(paying(node_config(&pool))).await;
    let shop = shop(&pool, ShopSpec::default()).await;
    let tickets = buy(&node, &shop, "alice", &[7, 8]).await;
    let gate = gate_token(&shop, "gate-east");

    // The buyer sees their tickets, with codes that verify under the published key.
    let buyer = common::shop::buyer_signed(SECRET, shop.tenant, "alice");
    let (status, mine) = get(&node, "/v1/me/tickets", Some(&buyer)).await;
    assert_eq!(status, 200);
    let listed: Vec<Ticket> = serde_json::from_value(mine["tickets"].clone()).unwrap();
    let mut pushed = tickets.clone();
    pushed.sort_by(|x, y| x.ticket.cmp(&y.ticket));
    assert_eq!(listed, pushed, "the same tickets and codes as pushed");
    let (status, key) = get(&node, "/v1/tickets/public-key", None).await;
    assert_eq!((status, key["algorithm"].as_str()), (200, Some("Ed25519")));
    let mut public = [0u8; 32];
    hex::decode_to_slice(key["public_key"].as_str().unwrap(), &mut public).unwrap();
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
    let claim = marquee_server::ticket_code::verify_with(&verifying, &listed[0].qr).unwrap();
    assert_eq!(claim.event, shop.event);
    let (status, _) = get(&node, "/v1/me/tickets", None).await;
    assert_eq!(status, 401);

    // One scan over HTTP; a forged code; a ticket of another event.
    let (status, result) = post(
        &node,
        "/v1/checkin",
        &gate,
        &json!({"qr": tickets[0].qr, "scan_id": "e-1", "event": shop.event}),
    )
    .await;
    assert_eq!((status, status_of(&result)), (200, ("admitted", None)));
    let forged = TicketKey::from_seed(&[9; 32]).sign(&TicketClaim {
        ticket: tickets[1].ticket.parse().unwrap(),
        event: shop.event,
        version: 1,
    });
    let (status, result) = post(
        &node,
        "/v1/checkin",
        &gate,
        &json!({"qr": forged, "scan_id": "e-2"}),
    )
    .await;
    assert_eq!(
        (status, status_of(&result)),
        (200, ("rejected", Some("ticket_invalid")))
    );
    let (_, result) = post(
        &node,
        "/v1/checkin",
        &gate,
        &json!({"qr": tickets[1].qr, "scan_id": "e-3", "event": Uuid::now_v7()}),
    )
    .await;
    assert_eq!(status_of(&result), ("rejected", Some("wrong_event")));

    // An offline gate uploads what it scanned: the second ticket twice, then the first (which
    // went in online meanwhile: the conflict is reported with who was first).
    let offline = json!({"scans": [
        {"qr": tickets[1].qr, "scan_id": "w-1", "scanned_at": 1_795_000_000_000u64},
        {"qr": tickets[1].qr, "scan_id": "w-2", "scanned_at": 1_795_000_060_000u64},
        {"qr": tickets[0].qr, "scan_id": "w-3", "scanned_at": 1_795_000_120_000u64},
    ]});
    let west = gate_token(&shop, "gate-west");
    let (status, first) = post(&node, "/v1/checkin/batch", &west, &offline).await;
    assert_eq!(status, 200, "{first}");
    let results: Vec<ScanResult> = serde_json::from_value(first["results"].clone()).unwrap();
    assert!(matches!(
        results[0].outcome,
        ScanOutcome::Admitted {
            at: 1_795_000_000_000,
            ..
        }
    ));
    assert_eq!(
        results[1].outcome,
        ScanOutcome::AlreadyCheckedIn {
            at: 1_795_000_000_000,
            gate: "gate-west".into()
        }
    );
    assert!(matches!(
        &results[2].outcome,
        ScanOutcome::AlreadyCheckedIn { gate, .. } if gate == "gate-east"
    ));
    // Uploading the same batch again answers the same and changes nothing.
    let (status, again) = post(&node, "/v1/checkin/batch", &west, &offline).await;
    assert_eq!((status, &again), (200, &first));

    // A batch with one bad scan is refused whole; a buyer cannot scan.
    let bad = json!({"scans": [
        {"qr": tickets[1].qr, "scan_id": "w-9"},
        {"qr": tickets[1].qr, "scan_id": ""},
    ]});
    let (status, body) = post(&node, "/v1/checkin/batch", &west, &bad).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")));
    let (status, body) = post(
        &node,
        "/v1/checkin",
        &buyer,
        &json!({"qr": tickets[1].qr, "scan_id": "b-1"}),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    let scans: Vec<String> =
        sqlx::query_scalar("select scan_id from checkin_scan order by scan_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(scans, vec!["e-1", "e-2", "e-3", "w-1", "w-2", "w-3"]);
    // Gates follow their own tenant's events only.
    let mut stranger = claims("gate-x", &["gate"], 3600);
    stranger.tenant = Some(Uuid::now_v7().to_string());
    let mut foreign = Raw::connect(&node.ws_url(), &sign_hs256(SECRET, &stranger)).await;
    assert!(matches!(
        foreign.subscribe(1, &format!("gate:{}", shop.event)).await,
        ServerMessage::Error {
            code: ErrorCode::Forbidden,
            ..
        }
    ));
    let mut own = Raw::connect(&node.ws_url(), &gate).await;
    own.must_subscribe(1, &format!("gate:{}", shop.event)).await;
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_transfer_moves_the_ticket_and_the_old_code_stops_working(pool: PgPool) {
    let node = TestNode::start_internal(paying(node_config(&pool))).await;
    let shop = shop(&pool, ShopSpec::default()).await;
    let old = buy(&node, &shop, "alice", &[3]).await.remove(0);
    let alice = common::shop::buyer_signed(SECRET, shop.tenant, "alice");
    let bob = common::shop::buyer_signed(SECRET, shop.tenant, "bob");
    let path = format!("/v1/me/tickets/{}/transfer", old.ticket);
    let (status, body) = post(&node, &path, &alice, &json!({"to": "alice"})).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")));
    let (status, body) = post(&node, &path, &bob, &json!({"to": "carol"})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_found")),
        "only the holder gives a ticket away"
    );
    let (status, body) = post(&node, &path, &alice, &json!({"to": "bob"})).await;
    assert_eq!((status, body["version"].as_u64()), (200, Some(2)), "{body}");
    let (_, mine) = get(&node, "/v1/me/tickets", Some(&alice)).await;
    assert_eq!(mine["tickets"], json!([]));
    let (_, theirs) = get(&node, "/v1/me/tickets", Some(&bob)).await;
    let new: Vec<Ticket> = serde_json::from_value(theirs["tickets"].clone()).unwrap();
    assert_eq!(
        (new.len(), new[0].ticket.as_str(), new[0].version),
        (1, old.ticket.as_str(), 2)
    );
    assert_ne!(new[0].qr, old.qr);
    let gate = gate_token(&shop, "gate-1");
    let (_, result) = post(
        &node,
        "/v1/checkin",
        &gate,
        &json!({"qr": old.qr, "scan_id": "s-old"}),
    )
    .await;
    assert_eq!(
        status_of(&result),
        ("rejected", Some("ticket_invalid")),
        "the seller's copy no longer gets in"
    );
    let (_, result) = post(
        &node,
        "/v1/checkin",
        &gate,
        &json!({"qr": new[0].qr, "scan_id": "s-new"}),
    )
    .await;
    assert_eq!(status_of(&result), ("admitted", None));
    let path = format!("/v1/me/tickets/{}/transfer", old.ticket);
    let (status, body) = post(&node, &path, &bob, &json!({"to": "carol"})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("conflict")),
        "a ticket inside stays with its holder"
    );
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn an_operator_refund_or_cancel_returns_the_seats_with_a_delta(pool: PgPool) {
    // Payments succeed 1.5 s after checkout: time to cancel an order before it is paid.
    let mut config = paying(node_config(&pool));
    config.payments.simulated_delay = Duration::from_millis(1500);
    let node = TestNode::start_internal(config).await;
    let shop = shop(&pool, ShopSpec::default()).await;
    let admin = admin_token(&shop);
    let mut watcher = common::shop::connect(&node, &shop, "watcher").await;
    watcher
        .must_subscribe(1, &format!("seats:{}", shop.event))
        .await;

    // A paid order, refunded by an operator.
    let tickets = buy(&node, &shop, "alice", &[12, 13]).await;
    let order: Uuid = sqlx::query_scalar("select ticket_order_id from ticket limit 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut alice = common::shop::connect(&node, &shop, "alice").await;
    let path = format!("/v1/admin/orders/{order}/refund");
    let (status, body) = post(&node, &path, &admin, &json!({})).await;
    assert_eq!(
        (status, body["duplicate"].as_bool()),
        (200, Some(false)),
        "{body}"
    );
    let refunded = loop {
        match common::shop::inbox(&mut alice).await {
            marquee_protocol::booking::InboxMessage::Order(u)
                if u.status == OrderStatus::Refunded =>
            {
                break u;
            }
            _ => {}
        }
    };
    assert_eq!(refunded.order, order.to_string());
    let freed = seats_freed(&mut watcher, &[12, 13]).await;
    assert!(freed, "the seat map shows the seats free again");
    let gate = gate_token(&shop, "gate-1");
    let (_, result) = post(
        &node,
        "/v1/checkin",
        &gate,
        &json!({"qr": tickets[0].qr, "scan_id": "s-1"}),
    )
    .await;
    assert_eq!(status_of(&result), ("rejected", Some("ticket_invalid")));
    let (status, body) = post(&node, &path, &admin, &json!({})).await;
    assert_eq!((status, body["duplicate"].as_bool()), (200, Some(true)));
    let (status, body) = post(
        &node,
        &format!("/v1/admin/orders/{order}/cancel"),
        &admin,
        &json!({}),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("conflict")));
    let (status, _) = post(
        &node,
        &format!("/v1/admin/orders/{}/refund", Uuid::now_v7()),
        &admin,
        &json!({}),
    )
    .await;
    assert_eq!(status, 404);
    let buyer = common::shop::buyer_signed(SECRET, shop.tenant, "alice");
    let (status, _) = post(&node, &path, &buyer, &json!({})).await;
    assert_eq!(status, 403, "operators only");

    // An order awaiting payment, cancelled before its payment arrives: seats back at once,
    // and the payment that arrives afterwards is given back.
    let (mut bob, pending) = checkout(&node, &shop, "bob", &[14]).await;
    let (status, _) = post(
        &node,
        &format!("/v1/admin/orders/{pending}/cancel"),
        &admin,
        &json!({}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(order_update(&mut bob).await.status, OrderStatus::Cancelled);
    assert!(seats_freed(&mut watcher, &[14]).await);
    let outcome = || async {
        sqlx::query_scalar::<_, Option<String>>(
            "select outcome from payment_event where ticket_order_id = $1 and provider = 'simulated'
             and kind = 'succeeded'",
        )
        .bind(pending)
        .fetch_optional(&pool)
        .await
        .unwrap()
        .flatten()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while outcome().await.is_none() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(outcome().await.as_deref(), Some("refunded_order_ended"));
    let audited: i64 = sqlx::query_scalar(
        "select count(*) from audit_log where entity = 'ticket_order' and actor = 'operator-1'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(audited, 2);
    node.shutdown().await;
}

/// Waits for seat deltas until every one of `seats` has been reported free.
async fn seats_freed(watcher: &mut Raw, seats: &[u32]) -> bool {
    let mut left: Vec<u32> = seats.to_vec();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !left.is_empty() {
        let Ok(msg) = tokio::time::timeout_at(deadline, watcher.recv()).await else {
            return false;
        };
        if let ServerMessage::Pub(p) = msg
            && p.channel.starts_with("seats:")
        {
            let delta: marquee_protocol::booking::SeatDelta =
                serde_json::from_value(p.data).unwrap();
            left.retain(|s| !delta.free.contains(s));
        }
    }
    true
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn notifications_reach_the_receiver_signed_and_are_retried_until_it_answers(pool: PgPool) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    use std::sync::{Arc, Mutex};
    const NOTIFY_SECRET: &str = "notify-secret-0123456789-0123456789";
    // A receiver that refuses its first call, then takes everything.
    // Each call's signature header and body.
    type Calls = Arc<Mutex<Vec<(Option<String>, Bytes)>>>;
    let received: Calls = Arc::default();
    let app = axum::Router::new().route(
        "/hooks/marquee",
        axum::routing::post({
            let received = received.clone();
            move |headers: HeaderMap, body: Bytes| {
                let received = received.clone();
                async move {
                    let mut seen = received.lock().unwrap();
                    let signature = headers
                        .get("marquee-signature")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    seen.push((signature, body));
                    if seen.len() == 1 {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/marquee", listener.local_addr().unwrap());
    let receiver = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut config = paying(node_config(&pool));
    config.notify.notify_url = Some(url);
    config.notify.notify_secret = Some(marquee_server::secret::Secret::new(NOTIFY_SECRET));
    let node = TestNode::start_internal(config).await;
    let shop = shop(&pool, ShopSpec::default()).await;
    let ticket = buy(&node, &shop, "alice", &[20]).await.remove(0);
    let alice = common::shop::buyer_signed(SECRET, shop.tenant, "alice");
    let path = format!("/v1/me/tickets/{}/transfer", ticket.ticket);
    let (status, _) = post(&node, &path, &alice, &json!({"to": "bob"})).await;
    assert_eq!(status, 200);
    let order: Uuid = sqlx::query_scalar("select ticket_order_id from ticket_order")
        .fetch_one(&pool)
        .await
        .unwrap();
    let (status, _) = post(
        &node,
        &format!("/v1/admin/orders/{order}/refund"),
        &admin_token(&shop),
        &json!({}),
    )
    .await;
    assert_eq!(status, 200);

    // Three notifications, the first delivered twice (refused once, then retried).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let delivered = || {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from notification where delivered_at is not null",
        )
        .fetch_one(&pool)
    };
    while delivered().await.unwrap() < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(delivered().await.unwrap(), 3);
    let calls = received.lock().unwrap().clone();
    let mut bodies = Vec::new();
    for (signature, body) in &calls {
        marquee_server::signature::verify(
            signature.as_deref(),
            body,
            &[NOTIFY_SECRET],
            marquee_server::clock::now_secs(),
            300,
        )
        .expect("every notification is signed with the notification secret");
        bodies.push(serde_json::from_slice::<Value>(body).unwrap());
    }
    assert_eq!(calls.len(), 4, "one retry after the refused call");
    let again: Vec<&Value> = bodies[1..]
        .iter()
        .filter(|b| b["id"] == bodies[0]["id"])
        .collect();
    assert_eq!(
        again,
        vec![&bodies[0]],
        "the refused one came again, the same"
    );
    let mut sorted: Vec<&str> = bodies[1..]
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        vec!["order.paid", "order.refunded", "ticket.transferred"]
    );
    let paid = bodies.iter().find(|b| b["type"] == "order.paid").unwrap();
    assert_eq!(paid["data"]["order"], json!(order));
    assert_eq!(paid["data"]["user"], json!("alice"));
    assert_eq!(paid["data"]["tickets"], json!([ticket.ticket]));
    let moved = bodies
        .iter()
        .find(|b| b["type"] == "ticket.transferred")
        .unwrap();
    assert_eq!(
        (&moved["data"]["from"], &moved["data"]["to"]),
        (&json!("alice"), &json!("bob"))
    );
    node.shutdown().await;
    receiver.abort();
}
