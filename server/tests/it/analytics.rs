//! Sales analytics against real Postgres, from a real onsale: tickets bought and refunded
//! through a node, buyers who joined a waiting room over WebSockets and were admitted by its
//! controller; the timeline and the funnel as JSON and CSV, and the tenant wall around them.

use crate::common;

use common::shop::{
    ShopSpec, admin_token, buyer_signed, hold_seats, inbox, node_config, paying, shop,
};
use common::{Raw, SECRET, TestNode, call_json, claims, http};
use marquee_protocol::ClientMessage;
use marquee_protocol::ServerMessage;
use marquee_protocol::booking::{Command, InboxMessage, OrderStatus, Outcome};
use marquee_protocol::queue::PlaceState;
use marquee_server::auth::sign_hs256;
use marquee_server::secret::Secret;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

/// Joins the queue and waits for the admission; the token to present with commands.
async fn admitted(raw: &mut Raw, onsale: Uuid) -> String {
    raw.send(&ClientMessage::QueueJoin {
        id: 1,
        onsale: onsale.to_string(),
        intent: None,
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match raw.recv_within(left).await {
            Some(
                ServerMessage::QueueJoined { status, .. } | ServerMessage::QueueStatus(status),
            ) if status.state == PlaceState::Admitted => {
                return status
                    .admission
                    .expect("an admitted place carries its admission")
                    .token;
            }
            Some(ServerMessage::Error { code, message, .. }) => {
                panic!("join refused: {code} {message}")
            }
            Some(_) => {}
            None => panic!("not admitted within 20 s"),
        }
    }
}

/// Sends a command with the admission and waits for its result.
async fn command(raw: &mut Raw, id: u64, admission: &str, command: Command) -> Outcome {
    raw.send(&ClientMessage::Command {
        id,
        request_id: format!("r{id}"),
        command,
        admission: Some(admission.to_owned()),
    })
    .await;
    loop {
        if let InboxMessage::Result(r) = inbox(raw).await
            && r.request_id == format!("r{id}")
        {
            return r.outcome;
        }
    }
}

/// A buyer who joins, is admitted, holds `seats` and checks out (paid by the simulated
/// provider); their connection and order.
async fn buy_through_the_queue(
    node: &TestNode,
    shop: &common::shop::Shop,
    onsale: Uuid,
    user: &str,
    seats: &[u32],
) -> (Raw, Uuid) {
    let token = buyer_signed(SECRET, shop.tenant, user);
    let mut raw = Raw::connect(&node.ws_url(), &token).await;
    let admission = admitted(&mut raw, onsale).await;
    let Outcome::Held { hold, .. } =
        command(&mut raw, 2, &admission, hold_seats(shop, seats)).await
    else {
        panic!("{user}'s seats are held")
    };
    let checkout = Command::Checkout {
        event: shop.event.to_string(),
        hold,
    };
    let Outcome::CheckedOut { order, .. } = command(&mut raw, 3, &admission, checkout).await else {
        panic!("{user} checked out")
    };
    loop {
        if let InboxMessage::Order(u) = inbox(&mut raw).await
            && u.status == OrderStatus::Paid
        {
            break;
        }
    }
    (raw, order.parse().unwrap())
}

async fn get(node: &TestNode, token: &str, path: &str) -> (u16, String) {
    let auth = format!("Bearer {token}");
    let response = http(node.addr, "GET", path, &[("authorization", &auth)], None).await;
    (response.status, response.body)
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn the_timeline_and_the_funnel_count_a_real_onsale(pool: PgPool) {
    let mut config = paying(node_config(&pool));
    config.admission.admission_secret = Some(Secret::new("analytics-admission-secret-0123456789"));
    let node = TestNode::start_internal(config).await;
    let shop = shop(&pool, ShopSpec::default()).await;
    let admin = admin_token(&shop);
    let price: i64 =
        sqlx::query_scalar("select price_minor from price_category where price_category_id = $1")
            .bind(shop.category)
            .fetch_one(&pool)
            .await
            .unwrap();

    // The onsale is behind a waiting room: Ana, Ben, Cat and Dan join over WebSockets and
    // its controller admits them; Ana buys two seats, Ben one, Cat one that an operator then
    // refunds, Dan nothing.
    let gated: Uuid = sqlx::query_scalar(
        "update onsale set requires_admission = true, admission_rate = 50, active_cap = 100
         where event_id = $1 returning onsale_id",
    )
    .bind(shop.event)
    .fetch_one(&pool)
    .await
    .unwrap();
    buy_through_the_queue(&node, &shop, gated, "ana", &[1, 2]).await;
    buy_through_the_queue(&node, &shop, gated, "ben", &[3]).await;
    let (mut cat, cat_order) = buy_through_the_queue(&node, &shop, gated, "cat", &[4]).await;
    let mut dan = Raw::connect(&node.ws_url(), &buyer_signed(SECRET, shop.tenant, "dan")).await;
    admitted(&mut dan, gated).await;
    let (status, body) = call_json(
        node.addr,
        Some(&admin),
        "POST",
        &format!("/v1/admin/orders/{cat_order}/refund"),
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    loop {
        if let InboxMessage::Order(u) = inbox(&mut cat).await
            && u.status == OrderStatus::Refunded
        {
            break;
        }
    }

    // The funnel: joins are written about once a second.
    let path = format!("/v1/admin/onsales/{gated}/funnel");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let funnel = loop {
        let (status, body) = call_json(node.addr, Some(&admin), "GET", &path, None).await;
        assert_eq!(status, 200, "{body}");
        if body["steps"][0]["buyers"] == 4 || tokio::time::Instant::now() >= deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let steps: Vec<(String, i64, Option<f64>)> = funnel["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_owned(),
                s["buyers"].as_i64().unwrap(),
                s["dropped"].as_f64(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("joined".to_owned(), 4, None),
            ("admitted".to_owned(), 4, Some(0.0)),
            ("held".to_owned(), 3, Some(0.25)),
            ("paid".to_owned(), 3, Some(0.0)),
        ],
        "{funnel}"
    );
    let p50 = funnel["queue_time"]["p50_s"]
        .as_f64()
        .expect("a queue time");
    let p90 = funnel["queue_time"]["p90_s"].as_f64().unwrap();
    assert!((0.0..20.0).contains(&p50) && p50 <= p90, "{funnel}");
    let (status, csv) = get(&node, &admin, &format!("{path}?format=csv")).await;
    assert_eq!(status, 200);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "step,buyers,dropped,queue_p50_s,queue_p90_s");
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(lines[3].starts_with("held,3,0.25,"), "{csv}");

    // The timeline: four seats sold, one refunded, by the seats' category.
    let path = format!(
        "/v1/admin/events/{}/sales/timeline?interval=minute",
        shop.event
    );
    let (status, timeline) = call_json(node.addr, Some(&admin), "GET", &path, None).await;
    assert_eq!(status, 200, "{timeline}");
    let rows = timeline["rows"].as_array().unwrap();
    let total = |field: &str| rows.iter().map(|r| r[field].as_i64().unwrap()).sum::<i64>();
    assert_eq!(
        (
            total("sold"),
            total("revenue_minor"),
            total("refunded"),
            total("refunded_minor")
        ),
        (4, 4 * price, 1, price),
        "{timeline}"
    );
    assert!(
        rows.iter()
            .all(|r| r["price_category_id"] == shop.category.to_string()),
        "{timeline}"
    );
    let (status, csv) = get(&node, &admin, &format!("{path}&format=csv")).await;
    assert_eq!(status, 200);
    assert_eq!(
        csv.lines().next(),
        Some(
            "at,ticket_type_id,price_category_id,currency,sold,revenue_minor,refunded,refunded_minor"
        )
    );
    assert_eq!(csv.lines().count(), rows.len() + 1, "{csv}");

    // Bad input is refused and the wall holds: another tenant's operator finds nothing, a
    // buyer may not look.
    for bad in ["?interval=week", "?format=xml", "?nope=1"] {
        let (status, _) = get(
            &node,
            &admin,
            &format!("/v1/admin/events/{}/sales/timeline{bad}", shop.event),
        )
        .await;
        assert_eq!(status, 400, "{bad}");
    }
    let mut stranger = claims("operator", &["admin"], 3600);
    stranger.tenant = Some(Uuid::new_v4().to_string());
    let stranger = sign_hs256(SECRET, &stranger);
    let buyer = buyer_signed(SECRET, shop.tenant, "ana");
    for path in [
        format!("/v1/admin/onsales/{gated}/funnel"),
        format!("/v1/admin/events/{}/sales/timeline", shop.event),
    ] {
        let (status, body): (u16, Value) =
            call_json(node.addr, Some(&stranger), "GET", &path, None).await;
        assert_eq!(status, 404, "{path}: {body}");
        let (status, _) = call_json(node.addr, Some(&buyer), "GET", &path, None).await;
        assert_eq!(status, 403, "{path}");
    }
    node.shutdown().await;
}
