//! Business rules that hold whatever a client or an operator sends: a cancelled event stops
//! selling and admitting, a draft cannot go on sale, an event keeps one currency, one tenant
//! has one spelling, and a node refuses weak secrets and takes no money by surprise.

use crate::common;

use common::shop::{
    ShopSpec, admin_token, buy, hold_ga, node_config, paying, result, send, shop, staff_token,
};
use common::{Raw, SECRET, TestNode, claims};
use marquee_protocol::ErrorCode;
use marquee_protocol::booking::Outcome;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::time::Duration;

async fn call(node: &TestNode, token: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
    common::call_json(node.addr, Some(token), method, path, Some(&body)).await
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_cancelled_event_stops_selling_and_its_tickets_stop_admitting(pool: PgPool) {
    let node = TestNode::start_internal(paying(node_config(&pool))).await;
    let shop = shop(&pool, ShopSpec::default()).await;
    let (_, tickets) = buy(&node, &shop, "alice", &[1]).await;
    let admin = admin_token(&shop);
    let (status, event) = call(
        &node,
        &admin,
        "PATCH",
        &format!("/v1/admin/events/{}/status", shop.event),
        json!({"status": "cancelled"}),
    )
    .await;
    assert_eq!((status, event["status"].as_str()), (200, Some("cancelled")));
    let onsales: Vec<String> =
        sqlx::query_scalar("select status::text from onsale where event_id = $1")
            .bind(shop.event)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(onsales, ["closed"], "its onsales closed in the same change");

    // The event's owner reads its onsales again within a second; from then on nothing sells.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut bob = common::shop::connect(&node, &shop, "bob").await;
    send(&mut bob, 1, "after-cancel", hold_ga(&shop, 1)).await;
    match result(&mut bob).await.outcome {
        Outcome::Rejected { code, .. } => assert_eq!(code, ErrorCode::OnsaleClosed),
        other => panic!("a cancelled event sold: {other:?}"),
    }
    // And the tickets it sold no longer open the doors.
    let gate = staff_token(&shop, "gate-1", "gate");
    let (status, scan) = call(
        &node,
        &gate,
        "POST",
        "/v1/checkin",
        json!({"qr": tickets[0].qr, "scan_id": "s-1", "event": shop.event}),
    )
    .await;
    assert_eq!(
        (status, scan["status"].as_str(), scan["code"].as_str()),
        (200, Some("rejected"), Some("ticket_invalid"))
    );
    // A cancelled onsale cannot be opened again, nor the event.
    let onsale: uuid::Uuid = sqlx::query_scalar("select onsale_id from onsale where event_id = $1")
        .bind(shop.event)
        .fetch_one(&pool)
        .await
        .unwrap();
    let (status, _) = call(
        &node,
        &admin,
        "PATCH",
        &format!("/v1/admin/onsales/{onsale}/status"),
        json!({"status": "live"}),
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = call(
        &node,
        &admin,
        "PATCH",
        &format!("/v1/admin/events/{}/status", shop.event),
        json!({"status": "on_sale"}),
    )
    .await;
    assert_eq!(status, 409);
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_draft_event_cannot_go_on_sale_and_an_event_keeps_one_currency(pool: PgPool) {
    let node = TestNode::start(node_config(&pool)).await;
    let shop = shop(&pool, ShopSpec::default()).await;
    let admin = admin_token(&shop);
    let venue: uuid::Uuid = sqlx::query_scalar("select venue_id from venue where tenant_id = $1")
        .bind(shop.tenant)
        .fetch_one(&pool)
        .await
        .unwrap();
    let (_, draft) = call(
        &node,
        &admin,
        "POST",
        "/v1/admin/events",
        json!({"venue_id": venue, "name": "Draft", "starts_at": "2030-01-01T20:00:00Z"}),
    )
    .await;
    let draft = draft["event_id"].as_str().unwrap().to_owned();
    let (status, onsale) = call(
        &node,
        &admin,
        "POST",
        &format!("/v1/admin/events/{draft}/onsales"),
        json!({"starts_at": "2030-01-01T10:00:00Z"}),
    )
    .await;
    assert_eq!(status, 201);
    let onsale = onsale["onsale_id"].as_str().unwrap().to_owned();
    for to in ["pre_queue", "live"] {
        let (status, body) = call(
            &node,
            &admin,
            "PATCH",
            &format!("/v1/admin/onsales/{onsale}/status"),
            json!({"status": to}),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (409, Some("conflict")),
            "{to}: {body}"
        );
    }
    let (status, _) = call(
        &node,
        &admin,
        "PATCH",
        &format!("/v1/admin/events/{draft}/status"),
        json!({"status": "on_sale"}),
    )
    .await;
    assert_eq!(status, 409, "a draft is published before it goes on sale");

    // The shop's prices are in EUR: a price in another currency is refused, whatever adds it.
    let (status, body) = call(
        &node,
        &admin,
        "POST",
        &format!("/v1/admin/events/{}/price-categories", shop.event),
        json!({"name": "Dollars", "price_minor": 100, "currency": "USD"}),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            409,
            json!({"code": "conflict", "message": "the event's prices are in EUR; one currency per event"})
        )
    );
    let (status, _) = call(
        &node,
        &admin,
        "POST",
        &format!("/v1/admin/events/{}/ticket-types", shop.event),
        json!({"name": "Dollars", "kind": "general_admission", "ga_quota": 5, "price_minor": 100, "currency": "USD"}),
    )
    .await;
    assert_eq!(status, 409);
    let usd: i64 = sqlx::query_scalar(
        "select (select count(*) from price_category where currency = 'USD')
              + (select count(*) from ticket_type where currency = 'USD')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(usd, 0);
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_tenant_claim_in_capitals_or_without_hyphens_hears_its_results(pool: PgPool) {
    let node = TestNode::start(node_config(&pool)).await;
    let shop = shop(&pool, ShopSpec::default()).await;
    let spellings = [
        shop.tenant.to_string().to_uppercase(),
        shop.tenant.simple().to_string(),
    ];
    for (i, tenant) in spellings.into_iter().enumerate() {
        let mut c = claims(&format!("carol-{i}"), &[], 3600);
        c.tenant = Some(tenant);
        let token = marquee_server::auth::sign_hs256(SECRET, &c);
        let mut raw = Raw::connect(&node.ws_url(), &token).await;
        send(&mut raw, 1, "hold", hold_ga(&shop, 1)).await;
        assert!(
            matches!(result(&mut raw).await.outcome, Outcome::Held { .. }),
            "the result reached the inbox of the one spelling"
        );
    }
    node.shutdown().await;
}

#[tokio::test]
async fn a_node_refuses_short_secrets_and_takes_no_money_unless_told() {
    let mut config = common::config();
    config.auth.jwt_secret = Some(marquee_server::secret::Secret::new("change-me"));
    let refused = marquee_server::Node::build(config).await.unwrap_err();
    assert!(
        refused.to_string().contains("MARQUEE_JWT_SECRET"),
        "{refused}"
    );
    let mut config = common::config();
    config.admission.admission_secret =
        Some(marquee_server::secret::Secret::new("0123456789abcdef"));
    assert!(marquee_server::Node::build(config).await.is_err());
    // `serve` starts payments with no provider unless one is named.
    use clap::Parser as _;
    #[derive(clap::Parser)]
    struct Serve {
        #[command(flatten)]
        config: marquee_server::Config,
    }
    let defaults = Serve::parse_from(["marquee"]).config;
    assert_eq!(
        defaults.payments.provider,
        marquee_server::payments::ProviderKind::None
    );
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_ticket_type_added_during_a_live_onsale_sells_within_a_second(pool: PgPool) {
    let node = TestNode::start(node_config(&pool)).await;
    let shop = shop(&pool, ShopSpec::default()).await;
    // The event's owner is running, its inventory in memory.
    let mut ana = common::shop::connect(&node, &shop, "ana").await;
    send(&mut ana, 1, "first", hold_ga(&shop, 1)).await;
    assert!(matches!(
        result(&mut ana).await.outcome,
        Outcome::Held { .. }
    ));
    let (status, added) = call(
        &node,
        &admin_token(&shop),
        "POST",
        &format!("/v1/admin/events/{}/ticket-types", shop.event),
        json!({"name": "Late release", "kind": "general_admission", "ga_quota": 10,
               "price_minor": 1500, "currency": "EUR"}),
    )
    .await;
    assert_eq!(status, 201, "{added}");
    let late = added["ticket_type_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let hold = marquee_protocol::booking::Command::HoldGa {
        event: shop.event.to_string(),
        ticket_type: late,
        quantity: 2,
    };
    send(&mut ana, 2, "late", hold).await;
    let outcome = result(&mut ana).await.outcome;
    assert!(
        matches!(outcome, Outcome::Held { .. }),
        "the running owner sells what was added: {outcome:?}"
    );
    node.shutdown().await;
}
