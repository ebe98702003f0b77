//! Payment hooks over real HTTP on the internal listener, against real Postgres: the signature
//! table, duplicates, and every refusal leaving the database as it was.

mod common;

use common::shop::{ShopSpec, node_config, shop};
use common::{TestNode, http};
use marquee_server::auth::now_secs;
use marquee_server::payments::hook::HookSecrets;
use marquee_server::payments::signature::sign;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

const OLD: &str = "acme-old-secret-0123456789";
const NEW: &str = "acme-new-secret-0123456789";

async fn node(pool: &PgPool) -> TestNode {
    let mut config = node_config(pool);
    config.payments.hook_secrets =
        HookSecrets::parse(&format!("acme:{OLD},acme:{NEW}")).expect("valid secrets");
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
        "amount_minor": 10000,
        "currency": "EUR",
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
            Some(sign(b"not-acmes-secret-0123456789", now, body.as_bytes())),
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
