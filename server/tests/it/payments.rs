//! Payments end to end over real HTTP, WebSockets and Postgres: the hook's signature table and
//! duplicates, then orders moving with their payments (tickets on success, seats back on sale on
//! failure, expiry and refund, processing extensions up to the cap, late payments).

use crate::common;

use common::shop::{
    Shop, ShopSpec, checkout, connect, hold_seats, node_config, order_update, result, send, shop,
};
use common::{TestNode, http};
use marquee_protocol::booking::{OrderReason, OrderStatus, Outcome};
use marquee_server::clock::now_secs;
use marquee_server::payments::ProviderKind;
use marquee_server::payments::hook::HookSecrets;
use marquee_server::signature::sign;
use marquee_server::ticket_code::{TicketClaim, TicketKey};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

const OLD: &str = "acme-old-secret-0123456789-0123456789";
const NEW: &str = "acme-new-secret-0123456789-0123456789";

async fn node(pool: &PgPool) -> TestNode {
    node_with_cap(pool, Duration::from_secs(30 * 60)).await
}

async fn node_with_cap(pool: &PgPool, payment_cap: Duration) -> TestNode {
    let mut config = node_config(pool);
    config.payments.hook_secrets =
        HookSecrets::parse(&format!("acme:{OLD},acme:{NEW}")).expect("valid secrets");
    config.booking.payment_cap = payment_cap;
    // These tests play the provider themselves.
    config.payments.provider = ProviderKind::None;
    TestNode::start_internal(config).await
}

/// An order awaiting payment, as a checkout leaves it.
async fn order(pool: &PgPool) -> Uuid {
    let shop = shop(pool, ShopSpec::default()).await;
    sqlx::query_scalar(
        "insert into ticket_order (tenant_id, event_id, user_id, total_minor, currency, payment_due_at)
         values ($1, $2, 'alice', 10000, 'EUR', now() + interval '10 minutes') returning ticket_order_id",
    )
    .bind(shop.tenant)
    .bind(shop.event)
    .fetch_one(pool)
    .await
    .unwrap()
}

fn event(id: &str, kind: &str, order: Uuid) -> String {
    json!({
        "id": id,
        "type": kind,
        "order": order,
        "payment": "pay_1",
    })
    .to_string()
}

/// Posts `body` to the hook of `provider` with `signature` (if any); status and JSON body.
async fn post(
    node: &TestNode,
    provider: &str,
    signature: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(s) = signature {
        headers.push(("marquee-signature", s));
    }
    let response = http(
        node.internal.expect("an internal listener"),
        "POST",
        &format!("/hooks/payments/{provider}"),
        &headers,
        Some(body),
    )
    .await;
    let json = serde_json::from_str(&response.body).unwrap_or(Value::Null);
    (response.status, json)
}

/// A refused call: (case, provider, signature, body, status, code).
type Refused<'a> = (&'a str, &'a str, Option<String>, &'a str, u16, &'a str);

async fn recorded(pool: &PgPool) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "select provider_event_id, kind::text, payment_ref from payment_event order by provider_event_id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn the_hook_takes_only_genuine_fresh_calls_and_a_refusal_changes_nothing(pool: PgPool) {
    let node = node(&pool).await;
    let order = order(&pool).await;
    let now = now_secs();
    let body = event("evt_1", "payment.succeeded", order);
    let tampered = body.replace("payment.succeeded", "payment.refunded");
    let valid = sign(NEW.as_bytes(), now, body.as_bytes());
    let unknown_order = event("evt_9", "payment.succeeded", Uuid::now_v7());
    let not_an_event = json!({"id": "evt_8", "type": "payment.won", "order": order}).to_string();
    let oversized = format!("{{\"id\":\"{}\"}}", "x".repeat(70 * 1024));
    let refused: Vec<Refused<'_>> = vec![
        (
            "missing header",
            "acme",
            None,
            &body,
            400,
            "signature_missing",
        ),
        (
            "malformed header",
            "acme",
            Some(format!("t={now}")),
            &body,
            400,
            "signature_invalid",
        ),
        (
            "tampered body",
            "acme",
            Some(valid.clone()),
            &tampered,
            400,
            "signature_invalid",
        ),
        (
            "wrong secret",
            "acme",
            Some(sign(
                b"not-acmes-secret-0123456789-0123456789",
                now,
                body.as_bytes(),
            )),
            &body,
            400,
            "signature_invalid",
        ),
        (
            "stale timestamp",
            "acme",
            Some(sign(NEW.as_bytes(), now - 301, body.as_bytes())),
            &body,
            400,
            "signature_expired",
        ),
        (
            "unknown provider",
            "nobody",
            Some(valid.clone()),
            &body,
            404,
            "not_found",
        ),
        (
            "unknown order",
            "acme",
            Some(sign(NEW.as_bytes(), now, unknown_order.as_bytes())),
            &unknown_order,
            404,
            "not_found",
        ),
        (
            "not a payment event",
            "acme",
            Some(sign(NEW.as_bytes(), now, not_an_event.as_bytes())),
            &not_an_event,
            400,
            "bad_request",
        ),
        (
            "body too big",
            "acme",
            Some(sign(NEW.as_bytes(), now, oversized.as_bytes())),
            &oversized,
            413,
            "too_big",
        ),
    ];
    for (case, provider, signature, body, status, code) in refused {
        let (got, json) = post(&node, provider, signature.as_deref(), body).await;
        assert_eq!(
            (got, json["code"].as_str()),
            (status, Some(code)),
            "case: {case}"
        );
        assert!(
            recorded(&pool).await.is_empty(),
            "case {case} changed nothing"
        );
    }

    // Genuine: signed with the new secret, then (rotation) with the old one.
    let (status, json) = post(&node, "acme", Some(&valid), &body).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json, json!({"received": true, "duplicate": false}));
    let second = event("evt_2", "payment.processing", order);
    let signed_old = sign(OLD.as_bytes(), now, second.as_bytes());
    let (status, json) = post(&node, "acme", Some(&signed_old), &second).await;
    assert_eq!((status, json["duplicate"].as_bool()), (200, Some(false)));
    assert_eq!(
        recorded(&pool).await,
        vec![
            ("evt_1".into(), "succeeded".into(), "pay_1".into()),
            ("evt_2".into(), "processing".into(), "pay_1".into()),
        ]
    );
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_duplicate_event_is_acknowledged_and_changes_nothing(pool: PgPool) {
    let node = node(&pool).await;
    let order = order(&pool).await;
    let body = event("evt_1", "payment.succeeded", order);
    let signature = sign(NEW.as_bytes(), now_secs(), body.as_bytes());
    let (status, json) = post(&node, "acme", Some(&signature), &body).await;
    assert_eq!((status, json["duplicate"].as_bool()), (200, Some(false)));
    // The same call again (a provider's retry), and the same event id with another body
    // signed later: both acknowledged, neither recorded.
    let (status, json) = post(&node, "acme", Some(&signature), &body).await;
    assert_eq!((status, json["duplicate"].as_bool()), (200, Some(true)));
    let other = event("evt_1", "payment.failed", order);
    let later = sign(NEW.as_bytes(), now_secs() + 1, other.as_bytes());
    let (status, json) = post(&node, "acme", Some(&later), &other).await;
    assert_eq!((status, json["duplicate"].as_bool()), (200, Some(true)));
    assert_eq!(
        recorded(&pool).await,
        vec![("evt_1".into(), "succeeded".into(), "pay_1".into())]
    );
    // The simulated provider is always configured (its secret made up at start-up): a call
    // signed with acme's secret is not taken as the simulated provider's.
    let (status, json) = post(&node, "simulated", Some(&later), &other).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (400, Some("signature_invalid"))
    );
    node.shutdown().await;
}

/// Reports a payment event of `order` to the node's hook as provider `acme` would: a success
/// carries the order's amount and currency, as the hook requires.
async fn report(
    pool: &PgPool,
    node: &TestNode,
    id: &str,
    kind: &str,
    order: Uuid,
) -> (u16, Option<bool>) {
    let mut body: Value = serde_json::from_str(&event(id, kind, order)).unwrap();
    if kind == "payment.succeeded" {
        let (total, currency): (i64, String) = sqlx::query_as(
            "select total_minor, currency::text from ticket_order where ticket_order_id = $1",
        )
        .bind(order)
        .fetch_one(pool)
        .await
        .unwrap();
        body["amount_minor"] = json!(total);
        body["currency"] = json!(currency);
    }
    let body = body.to_string();
    let signature = sign(NEW.as_bytes(), now_secs(), body.as_bytes());
    let (status, json) = post(node, "acme", Some(&signature), &body).await;
    (status, json["duplicate"].as_bool())
}

async fn order_status(pool: &PgPool, order: Uuid) -> String {
    sqlx::query_scalar("select status::text from ticket_order where ticket_order_id = $1")
        .bind(order)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The payment events' outcomes, in the order they were recorded.
async fn outcomes(pool: &PgPool) -> Vec<(String, Option<String>)> {
    sqlx::query_as("select provider_event_id, outcome from payment_event order by created_at")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn claimed_seats(pool: &PgPool, shop: &Shop) -> i64 {
    sqlx::query_scalar("select count(*) from seat_claim where event_id = $1")
        .bind(shop.event)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn ticket_key(pool: &PgPool) -> TicketKey {
    let seed: Vec<u8> =
        sqlx::query_scalar("select seed from ticket_signing_key where key_id = 'default'")
            .fetch_one(pool)
            .await
            .unwrap();
    TicketKey::from_seed(&seed.try_into().unwrap())
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_paid_order_gets_signed_tickets_in_the_same_transaction_and_on_the_inbox(pool: PgPool) {
    let node = node(&pool).await;
    let shop = shop(&pool, ShopSpec::default()).await;
    let (mut raw, order) = checkout(&node, &shop, "alice", &[3, 4]).await;
    // The request id the server will give this order's update is not the buyer's to take.
    let taken = format!("order:{order}:paid");
    common::shop::send_command(&mut raw, 7, &taken, hold_seats(&shop, &[9])).await;
    assert!(matches!(
        raw.recv().await,
        marquee_protocol::ServerMessage::Error {
            id: Some(7),
            code: marquee_protocol::ErrorCode::BadRequest,
            ..
        }
    ));
    assert_eq!(
        report(&pool, &node, "evt_1", "payment.succeeded", order).await,
        (200, Some(false))
    );
    let update = order_update(&mut raw).await;
    assert_eq!(update.order, order.to_string());
    assert_eq!(update.status, OrderStatus::Paid);
    assert_eq!(update.request_id, format!("order:{order}:paid"));
    let mut seats: Vec<u32> = update.tickets.iter().filter_map(|t| t.seat).collect();
    seats.sort_unstable();
    assert_eq!(seats, vec![3, 4], "one ticket per seat");
    let key = ticket_key(&pool).await;
    for ticket in &update.tickets {
        assert_eq!(
            key.verify(&ticket.qr),
            Ok(TicketClaim {
                ticket: ticket.ticket.parse().unwrap(),
                event: shop.event,
                version: 1,
            }),
            "a gate verifies the code offline"
        );
    }
    assert_eq!(order_status(&pool, order).await, "paid");
    let tickets: Vec<(Uuid, String)> = sqlx::query_as(
        "select ticket_id, holder from ticket where ticket_order_id = $1 and status = 'valid' order by ticket_id",
    )
    .bind(order)
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut pushed: Vec<Uuid> = update
        .tickets
        .iter()
        .map(|t| t.ticket.parse().unwrap())
        .collect();
    pushed.sort();
    assert_eq!(tickets.iter().map(|t| t.0).collect::<Vec<_>>(), pushed);
    assert!(tickets.iter().all(|t| t.1 == "alice"));
    assert_eq!(
        outcomes(&pool).await,
        vec![("evt_1".into(), Some("paid".into()))]
    );
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn events_only_move_an_order_forward_and_a_refund_returns_its_seats(pool: PgPool) {
    let node = node(&pool).await;
    let shop = shop(&pool, ShopSpec::default()).await;
    let (mut raw, order) = checkout(&node, &shop, "alice", &[10, 11]).await;
    assert_eq!(
        report(&pool, &node, "evt_1", "payment.succeeded", order).await,
        (200, Some(false))
    );
    assert_eq!(order_update(&mut raw).await.status, OrderStatus::Paid);
    // The provider repeats itself, then reports a failure and a processing after success.
    assert_eq!(
        report(&pool, &node, "evt_1", "payment.succeeded", order).await,
        (200, Some(true))
    );
    assert_eq!(
        report(&pool, &node, "evt_2", "payment.failed", order).await,
        (200, Some(false))
    );
    assert_eq!(
        report(&pool, &node, "evt_3", "payment.processing", order).await,
        (200, Some(false))
    );
    // Then a refund, which ends the order and gives its seats back.
    assert_eq!(
        report(&pool, &node, "evt_4", "payment.refunded", order).await,
        (200, Some(false))
    );
    let update = order_update(&mut raw).await;
    assert_eq!(update.status, OrderStatus::Refunded, "{update:?}");
    assert_eq!(
        outcomes(&pool).await,
        vec![
            ("evt_1".into(), Some("paid".into())),
            ("evt_2".into(), Some("ignored_already_paid".into())),
            ("evt_3".into(), Some("ignored_already_paid".into())),
            ("evt_4".into(), Some("refunded".into())),
        ]
    );
    assert_eq!(order_status(&pool, order).await, "refunded");
    let valid: i64 = sqlx::query_scalar("select count(*) from ticket where status = 'valid'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(valid, 0, "a refunded order's tickets stop working");
    assert_eq!(claimed_seats(&pool, &shop).await, 0);
    // The seats are on sale again.
    let mut bob = connect(&node, &shop, "bob").await;
    send(&mut bob, 1, "hold", hold_seats(&shop, &[10, 11])).await;
    assert!(matches!(
        result(&mut bob).await.outcome,
        Outcome::Held { .. }
    ));
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_failed_payment_puts_the_seats_back_on_sale_at_once(pool: PgPool) {
    let node = node(&pool).await;
    let shop = shop(&pool, ShopSpec::default()).await;
    let (mut raw, order) = checkout(&node, &shop, "alice", &[20]).await;
    let mut bob = connect(&node, &shop, "bob").await;
    send(&mut bob, 1, "hold", hold_seats(&shop, &[20])).await;
    assert!(matches!(
        result(&mut bob).await.outcome,
        Outcome::Rejected { .. }
    ));
    assert_eq!(
        report(&pool, &node, "evt_1", "payment.failed", order).await,
        (200, Some(false))
    );
    assert_eq!(order_update(&mut raw).await.status, OrderStatus::Failed);
    assert_eq!(order_status(&pool, order).await, "failed");
    send(&mut bob, 2, "hold-again", hold_seats(&shop, &[20])).await;
    assert!(matches!(
        result(&mut bob).await.outcome,
        Outcome::Held { .. }
    ));
    // A success after the failure finds the seat taken: the money goes back.
    assert_eq!(
        report(&pool, &node, "evt_2", "payment.succeeded", order).await,
        (200, Some(false))
    );
    let update = order_update(&mut raw).await;
    assert_eq!(
        (update.status, update.reason),
        (
            OrderStatus::Refunded,
            Some(OrderReason::LatePaymentRefunded)
        )
    );
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn processing_extends_the_deadline_up_to_the_cap_and_then_the_order_expires(pool: PgPool) {
    // Holds (and so payment deadlines) of 3 s; payments may take 5 s after checkout.
    let node = node_with_cap(&pool, Duration::from_secs(5)).await;
    let shop = shop(
        &pool,
        ShopSpec {
            hold: "3 seconds",
            ..ShopSpec::default()
        },
    )
    .await;
    let (mut raw, order) = checkout(&node, &shop, "alice", &[30, 31]).await;
    let due = || async {
        let due: Option<f64> = sqlx::query_scalar(
            "select extract(epoch from payment_due_at)::float8 * 1000 from ticket_order where ticket_order_id = $1",
        )
        .bind(order)
        .fetch_one(&pool)
        .await
        .unwrap();
        due.unwrap() as u64
    };
    let first_due = due().await;
    assert_eq!(
        report(&pool, &node, "evt_1", "payment.processing", order).await,
        (200, Some(false))
    );
    let update = order_update(&mut raw).await;
    assert_eq!(
        (update.status, update.reason),
        (
            OrderStatus::PendingPayment,
            Some(OrderReason::PaymentProcessing)
        )
    );
    let extended = update.payment_due_at.unwrap();
    assert!(extended > first_due, "{extended} > {first_due}");
    // 2.5 s later another processing: now + 3 s would pass the cap, so it stops at the cap.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        report(&pool, &node, "evt_2", "payment.processing", order).await,
        (200, Some(false))
    );
    let capped = order_update(&mut raw).await.payment_due_at.unwrap();
    assert!(capped > extended);
    assert!(
        capped <= first_due - 3000 + 5000 + 50,
        "at most 5 s after checkout"
    );
    // A third changes nothing: the cap is reached.
    assert_eq!(
        report(&pool, &node, "evt_3", "payment.processing", order).await,
        (200, Some(false))
    );
    // Then the deadline passes: the order expires and its seats go back on sale.
    let update = order_update(&mut raw).await;
    assert_eq!(update.status, OrderStatus::Expired, "{update:?}");
    assert!(now_ms() + 100 >= capped, "not before its deadline");
    assert_eq!(order_status(&pool, order).await, "expired");
    assert_eq!(claimed_seats(&pool, &shop).await, 0);
    assert_eq!(
        outcomes(&pool).await,
        vec![
            ("evt_1".into(), Some("extended".into())),
            ("evt_2".into(), Some("extended".into())),
            ("evt_3".into(), Some("processing_at_cap".into())),
        ]
    );
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_late_payment_gets_the_same_seats_when_free_and_a_refund_when_not(pool: PgPool) {
    let node = node(&pool).await;
    let shop = shop(
        &pool,
        ShopSpec {
            hold: "2 seconds",
            ..ShopSpec::default()
        },
    )
    .await;
    let (mut alice, free_order) = checkout(&node, &shop, "alice", &[40, 41]).await;
    let (mut bob, taken_order) = checkout(&node, &shop, "bob", &[50]).await;
    assert_eq!(order_update(&mut alice).await.status, OrderStatus::Expired);
    assert_eq!(order_update(&mut bob).await.status, OrderStatus::Expired);
    // Carol takes bob's seat meanwhile.
    let mut carol = connect(&node, &shop, "carol").await;
    send(&mut carol, 1, "hold", hold_seats(&shop, &[50])).await;
    assert!(matches!(
        result(&mut carol).await.outcome,
        Outcome::Held { .. }
    ));

    assert_eq!(
        report(&pool, &node, "evt_a", "payment.succeeded", free_order).await,
        (200, Some(false))
    );
    let update = order_update(&mut alice).await;
    assert_eq!(
        (update.status, update.reason, update.tickets.len()),
        (OrderStatus::Paid, Some(OrderReason::LatePaymentAccepted), 2)
    );
    assert_eq!(
        report(&pool, &node, "evt_b", "payment.succeeded", taken_order).await,
        (200, Some(false))
    );
    let update = order_update(&mut bob).await;
    assert_eq!(
        (update.status, update.reason, update.tickets.len()),
        (
            OrderStatus::Refunded,
            Some(OrderReason::LatePaymentRefunded),
            0
        )
    );
    assert_eq!(order_status(&pool, free_order).await, "paid");
    assert_eq!(order_status(&pool, taken_order).await, "refunded");
    // Alice's two seats are sold to her order again; seat 50 is carol's hold.
    let claims: Vec<(i32, String)> = sqlx::query_as(
        "select s.seat_index, c.state::text from seat_claim c join seat s using (event_id, seat_id)
         where c.event_id = $1 order by s.seat_index",
    )
    .bind(shop.event)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        claims,
        vec![
            (40, "sold".into()),
            (41, "sold".into()),
            (50, "held".into())
        ]
    );
    node.shutdown().await;
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn the_simulated_provider_pays_a_checkout_through_the_signed_hook(pool: PgPool) {
    let mut config = node_config(&pool);
    config.payments.simulated_delay = Duration::from_millis(200);
    // Every payment reports `processing`, then succeeds.
    config.payments.simulated_outcomes = "processing=1".parse().unwrap();
    let node = TestNode::start_internal(config).await;
    let shop = shop(&pool, ShopSpec::default()).await;
    let (mut raw, order) = checkout(&node, &shop, "alice", &[5]).await;
    let first = order_update(&mut raw).await;
    assert_eq!(
        (first.status, first.reason),
        (
            OrderStatus::PendingPayment,
            Some(OrderReason::PaymentProcessing)
        )
    );
    let paid = order_update(&mut raw).await;
    assert_eq!((paid.status, paid.tickets.len()), (OrderStatus::Paid, 1));
    let (status, payment_ref): (String, String) = sqlx::query_as(
        "select status::text, payment_ref from ticket_order where ticket_order_id = $1",
    )
    .bind(order)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(status, "paid");
    assert!(payment_ref.starts_with("sim_"), "{payment_ref}");
    let kinds: Vec<(String, String)> =
        sqlx::query_as("select provider, kind::text from payment_event order by created_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        kinds,
        vec![
            ("simulated".into(), "processing".into()),
            ("simulated".into(), "succeeded".into())
        ]
    );
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_paid_general_admission_order_gets_one_ticket_per_entry(pool: PgPool) {
    let node = node(&pool).await;
    let shop = shop(&pool, ShopSpec::default()).await;
    let mut raw = connect(&node, &shop, "alice").await;
    send(&mut raw, 1, "hold", common::shop::hold_ga(&shop, 3)).await;
    let Outcome::Held { hold, .. } = result(&mut raw).await.outcome else {
        panic!("held")
    };
    let checkout = marquee_protocol::booking::Command::Checkout {
        event: shop.event.to_string(),
        hold,
    };
    send(&mut raw, 2, "checkout", checkout).await;
    let Outcome::CheckedOut { order, .. } = result(&mut raw).await.outcome else {
        panic!("checked out")
    };
    let order: Uuid = order.parse().unwrap();
    assert_eq!(
        report(&pool, &node, "evt_1", "payment.succeeded", order).await,
        (200, Some(false))
    );
    let update = order_update(&mut raw).await;
    assert_eq!(update.tickets.len(), 3);
    assert!(
        update
            .tickets
            .iter()
            .all(|t| t.seat.is_none() && t.ticket_type == shop.ga.to_string())
    );
    let (sold, tickets): (i32, i64) = sqlx::query_as(
        "select ga_sold, (select count(*) from ticket where ticket_order_id = $2)
         from ticket_type where ticket_type_id = $1",
    )
    .bind(shop.ga)
    .bind(order)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((sold, tickets), (3, 3));
    // A refund gives the three back to the quota.
    assert_eq!(
        report(&pool, &node, "evt_2", "payment.refunded", order).await,
        (200, Some(false))
    );
    assert_eq!(order_update(&mut raw).await.status, OrderStatus::Refunded);
    let sold: i32 = sqlx::query_scalar("select ga_sold from ticket_type where ticket_type_id = $1")
        .bind(shop.ga)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(sold, 0);
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_success_pays_only_the_orders_exact_amount_in_its_currency(pool: PgPool) {
    let node = node(&pool).await;
    let order = order(&pool).await; // 10,000 EUR
    let signed = |body: &Value| {
        let body = body.to_string();
        (sign(NEW.as_bytes(), now_secs(), body.as_bytes()), body)
    };
    let cheap = json!({"id": "evt_cheap", "type": "payment.succeeded", "order": order,
                       "payment": "pay_1", "amount_minor": 1});
    let unpriced = json!({"id": "evt_unpriced", "type": "payment.succeeded", "order": order,
                          "payment": "pay_2"});
    let dollars = json!({"id": "evt_usd", "type": "payment.succeeded", "order": order,
                         "payment": "pay_3", "amount_minor": 10000, "currency": "USD"});
    for body in [&cheap, &unpriced, &dollars] {
        let (signature, body) = signed(body);
        let (status, _) = post(&node, "acme", Some(&signature), &body).await;
        assert_eq!(status, 200, "recorded, to be decided by the order's owner");
    }
    let decided = async {
        loop {
            let all = outcomes(&pool).await;
            if all.len() == 3 && all.iter().all(|(_, o)| o.is_some()) {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let all = tokio::time::timeout(Duration::from_secs(10), decided)
        .await
        .unwrap();
    for (id, outcome) in &all {
        assert_eq!(
            outcome.as_deref(),
            Some("refunded_wrong_amount"),
            "{id} paid nothing and its money goes back"
        );
    }
    assert_eq!(order_status(&pool, order).await, "pending_payment");
    assert_eq!(
        report(&pool, &node, "evt_exact", "payment.succeeded", order).await,
        (200, Some(false))
    );
    let paid = async {
        while order_status(&pool, order).await != "paid" {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), paid)
        .await
        .unwrap();
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn only_the_payment_the_checkout_started_pays_the_order(pool: PgPool) {
    let mut config = node_config(&pool);
    config.payments.hook_secrets =
        HookSecrets::parse(&format!("acme:{NEW}")).expect("a valid secret");
    // The simulated provider takes a second to pay, so acme's event comes first.
    config.payments.simulated_delay = Duration::from_secs(1);
    config.payments.simulated_outcomes = "succeeded=1".parse().unwrap();
    let node = TestNode::start_internal(config).await;
    let shop = shop(&pool, ShopSpec::default()).await;
    let (mut raw, order) = checkout(&node, &shop, "ana", &[3]).await;
    let started = async {
        loop {
            let row: (Option<String>, Option<String>) = sqlx::query_as(
                "select checkout_provider, checkout_payment_ref from ticket_order where ticket_order_id = $1",
            )
            .bind(order)
            .fetch_one(&pool)
            .await
            .unwrap();
            if row.1.is_some() {
                return row;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (provider, reference) = tokio::time::timeout(Duration::from_secs(5), started)
        .await
        .unwrap();
    assert_eq!(provider.as_deref(), Some("simulated"));
    assert!(reference.unwrap().starts_with("sim_"));
    // Another configured provider reports a success of the right amount: not the payment the
    // checkout started, so it pays nothing and goes back.
    assert_eq!(
        report(&pool, &node, "evt_acme", "payment.succeeded", order).await,
        (200, Some(false))
    );
    // Then the started payment succeeds and pays the order.
    assert_eq!(order_update(&mut raw).await.status, OrderStatus::Paid);
    let outcomes: Vec<(String, Option<String>)> =
        sqlx::query_as("select provider, outcome from payment_event order by created_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        outcomes,
        vec![
            ("acme".into(), Some("refunded_unstarted_payment".into())),
            ("simulated".into(), Some("paid".into())),
        ]
    );
    node.shutdown().await;
}
