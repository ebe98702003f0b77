//! A shop to sell from: an event with seats, a general-admission type and a live onsale,
//! and the node configuration and buyer tokens that go with it.

use super::{Raw, SECRET, TestNode, claims, config};
use marquee_protocol::booking::{Command, CommandResult, InboxMessage, OrderUpdate, Outcome};
use marquee_protocol::{ClientMessage, ServerMessage};
use marquee_server::auth::sign_hs256;
use marquee_server::secret::Secret;
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

/// An event on sale: `rows` × `width` seats in one category, a GA type, a live onsale.
#[derive(Debug, Clone, Copy)]
pub struct Shop {
    pub tenant: Uuid,
    pub event: Uuid,
    pub category: Uuid,
    pub ga: Uuid,
}

pub struct ShopSpec {
    pub rows: i32,
    pub width: i32,
    pub ga_quota: i32,
    pub hold: &'static str,
    pub per_user_limit: i32,
}

impl Default for ShopSpec {
    fn default() -> Self {
        Self {
            rows: 5,
            width: 20,
            ga_quota: 100,
            hold: "10 minutes",
            per_user_limit: 8,
        }
    }
}

pub async fn shop(pool: &PgPool, spec: ShopSpec) -> Shop {
    let tenant: Uuid =
        sqlx::query_scalar("insert into tenant (name) values ('Shop') returning tenant_id")
            .fetch_one(pool)
            .await
            .unwrap();
    let venue: Uuid = sqlx::query_scalar(
        "insert into venue (tenant_id, name, city) values ($1, 'Hall', 'Lisbon') returning venue_id",
    )
    .bind(tenant)
    .fetch_one(pool)
    .await
    .unwrap();
    let event: Uuid = sqlx::query_scalar(
        "insert into event (tenant_id, venue_id, name, starts_at, status)
         values ($1, $2, 'Show', now() + interval '7 days', 'on_sale') returning event_id",
    )
    .bind(tenant)
    .bind(venue)
    .fetch_one(pool)
    .await
    .unwrap();
    let map: Uuid = sqlx::query_scalar(
        "insert into seat_map (tenant_id, event_id, focal_x, focal_y) values ($1, $2, $3, 0) returning seat_map_id",
    )
    .bind(tenant)
    .bind(event)
    .bind(f64::from(spec.width - 1) / 2.0)
    .fetch_one(pool)
    .await
    .unwrap();
    let section: Uuid = sqlx::query_scalar(
        "insert into section (tenant_id, seat_map_id, name) values ($1, $2, 'Stalls') returning section_id",
    )
    .bind(tenant)
    .bind(map)
    .fetch_one(pool)
    .await
    .unwrap();
    let category: Uuid = sqlx::query_scalar(
        "insert into price_category (tenant_id, event_id, name, price_minor, currency)
         values ($1, $2, 'Standard', 5000, 'EUR') returning price_category_id",
    )
    .bind(tenant)
    .bind(event)
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into seat (tenant_id, event_id, section_id, row_label, seat_number, seat_index, x, y, price_category_id)
         select $1, $2, $3, 'R' || lpad(r::text, 3, '0'), n, r * $5 + n - 1, n - 1, r + 1, $4
         from generate_series(0, $6 - 1) r, generate_series(1, $5) n",
    )
    .bind(tenant)
    .bind(event)
    .bind(section)
    .bind(category)
    .bind(spec.width)
    .bind(spec.rows)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into ticket_type (tenant_id, event_id, name, kind, price_category_id, price_minor, currency, max_per_order)
         values ($1, $2, 'Seated', 'seated', $3, 5000, 'EUR', 8)",
    )
    .bind(tenant)
    .bind(event)
    .bind(category)
    .execute(pool)
    .await
    .unwrap();
    let ga: Uuid = sqlx::query_scalar(
        "insert into ticket_type (tenant_id, event_id, name, kind, price_minor, currency, max_per_order, ga_quota)
         values ($1, $2, 'Standing', 'general_admission', 2000, 'EUR', 4, $3) returning ticket_type_id",
    )
    .bind(tenant)
    .bind(event)
    .bind(spec.ga_quota)
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into onsale (tenant_id, event_id, status, starts_at, hold_duration, per_user_limit, requires_admission)
         values ($1, $2, 'live', now() - interval '1 minute', $3::interval, $4, false)",
    )
    .bind(tenant)
    .bind(event)
    .bind(spec.hold)
    .bind(spec.per_user_limit)
    .execute(pool)
    .await
    .unwrap();
    Shop {
        tenant,
        event,
        category,
        ga,
    }
}

pub fn database_url(pool: &PgPool) -> String {
    let db = pool.connect_options().get_database().unwrap().to_owned();
    let base = std::env::var("DATABASE_URL").unwrap();
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{db}")
}

pub fn node_config(pool: &PgPool) -> marquee_server::Config {
    let mut config = config();
    config.database_url = Some(Secret::new(database_url(pool)));
    config.database_pool = 8;
    // Hundreds of buyers connect at once from one test.
    config.hub.inbound_burst = 200;
    config
}

/// A buyer's session token signed with `secret`.
pub fn buyer_signed(secret: &str, tenant: Uuid, user: &str) -> String {
    let mut c = claims(user, &[], 3600);
    c.tenant = Some(tenant.to_string());
    sign_hs256(secret, &c)
}

/// A buyer of `shop` connected to `node`.
pub async fn connect(node: &TestNode, shop: &Shop, user: &str) -> Raw {
    Raw::connect(&node.ws_url(), &buyer_signed(SECRET, shop.tenant, user)).await
}

/// Sends a command without an admission (the answer is left to the caller).
pub async fn send_command(raw: &mut Raw, id: u64, request_id: &str, command: Command) {
    raw.send(&ClientMessage::Command {
        id,
        request_id: request_id.into(),
        command,
        admission: None,
    })
    .await;
}

/// Sends a command and expects `accepted`.
pub async fn send(raw: &mut Raw, id: u64, request_id: &str, command: Command) {
    send_command(raw, id, request_id, command).await;
    match raw.recv().await {
        ServerMessage::Accepted { id: got, .. } if got == id => {}
        other => panic!("expected accepted for {id}, got {other:?}"),
    }
}

/// The next message on the buyer's inbox, within 10 s.
pub async fn inbox(raw: &mut Raw) -> InboxMessage {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, raw.recv())
            .await
            .expect("an inbox message within 10 s");
        if let ServerMessage::Pub(p) = msg
            && p.channel.starts_with("inbox:")
        {
            return serde_json::from_value(p.data).expect("an inbox message");
        }
    }
}

/// The next command result on the inbox, within 10 s.
pub async fn result(raw: &mut Raw) -> CommandResult {
    match inbox(raw).await {
        InboxMessage::Result(r) => r,
        other => panic!("expected a command result, got {other:?}"),
    }
}

pub fn hold_seats(shop: &Shop, seats: &[u32]) -> Command {
    Command::HoldSeats {
        event: shop.event.to_string(),
        seats: seats.to_vec(),
    }
}

pub fn hold_ga(shop: &Shop, quantity: u32) -> Command {
    Command::HoldGa {
        event: shop.event.to_string(),
        ticket_type: shop.ga.to_string(),
        quantity,
    }
}

/// `user` holds `seats` and checks out: their connection and the order.
pub async fn checkout(node: &TestNode, shop: &Shop, user: &str, seats: &[u32]) -> (Raw, Uuid) {
    let mut raw = connect(node, shop, user).await;
    send(&mut raw, 1, "hold", hold_seats(shop, seats)).await;
    let Outcome::Held { hold, .. } = result(&mut raw).await.outcome else {
        panic!("the seats are held")
    };
    let checkout = Command::Checkout {
        event: shop.event.to_string(),
        hold,
    };
    send(&mut raw, 2, "checkout", checkout).await;
    let Outcome::CheckedOut { order, .. } = result(&mut raw).await.outcome else {
        panic!("checked out")
    };
    (raw, order.parse().unwrap())
}

/// The next order update on the buyer's inbox.
pub async fn order_update(raw: &mut Raw) -> OrderUpdate {
    match inbox(raw).await {
        InboxMessage::Order(update) => update,
        other => panic!("expected an order update, got {other:?}"),
    }
}

/// A staff token of `shop`'s tenant: `user` with the one role `role` (`admin`, `gate`).
pub fn staff_token(shop: &Shop, user: &str, role: &str) -> String {
    let mut c = claims(user, &[role], 3600);
    c.tenant = Some(shop.tenant.to_string());
    sign_hs256(SECRET, &c)
}

/// The operator of `shop`'s tenant.
pub fn admin_token(shop: &Shop) -> String {
    staff_token(shop, "operator-1", "admin")
}

/// A node configuration whose simulated provider pays every order 50 ms after checkout.
pub fn paying(mut config: marquee_server::Config) -> marquee_server::Config {
    config.payments.simulated_delay = Duration::from_millis(50);
    config.payments.simulated_outcomes = "succeeded=1".parse().unwrap();
    config
}

/// `user` buys `seats` on a [`paying`] node: their order and tickets.
pub async fn buy(
    node: &TestNode,
    shop: &Shop,
    user: &str,
    seats: &[u32],
) -> (Uuid, Vec<marquee_protocol::booking::Ticket>) {
    let (mut raw, order) = checkout(node, shop, user, seats).await;
    let update = order_update(&mut raw).await;
    assert_eq!(
        update.status,
        marquee_protocol::booking::OrderStatus::Paid,
        "{update:?}"
    );
    (order, update.tickets)
}
