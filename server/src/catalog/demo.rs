//! The catalog `marquee demo` seeds: one venue with a realistic seat map, an event on sale and
//! a live onsale behind the waiting room.

use super::admin::create_seat_map;
use super::layout::LayoutSpec;
use anyhow::Context as _;
use sqlx::PgPool;
use uuid::Uuid;

/// What the demo seeded.
#[derive(Debug, Clone)]
pub struct DemoCatalog {
    /// The demo tenant (put it in buyers' tokens).
    pub tenant_id: Uuid,
    /// The event on sale.
    pub event_id: Uuid,
    /// Its open onsale.
    pub onsale_id: Uuid,
    /// Seats on the map.
    pub seats: usize,
    /// Price categories: id and name.
    pub categories: Vec<(Uuid, String)>,
    /// The standing (general admission) ticket type.
    pub ga_ticket_type: Uuid,
}

/// The demo hall: stalls in front of the stage, a circle and a balcony above, 2,708 seats.
fn hall() -> LayoutSpec {
    serde_json::from_value(serde_json::json!({
        "focal": {"x": 0.0, "y": 0.0},
        "sections": [
            {"name": "Stalls", "rows": "A-AD", "seats": "1-50", "origin": {"x": -24.5, "y": 4.0},
             "row_spacing": 1.1,
             "categories": [{"rows": "A", "category": "Accessible"}, {"rows": "B-J", "category": "Premium"},
                            {"rows": "K-AD", "category": "Standard"}],
             "accessible": [{"rows": "A"}]},
            {"name": "Circle", "rows": "A-P", "seats": "1-44", "origin": {"x": -21.5, "y": 40.0},
             "row_spacing": 1.2,
             "categories": [{"rows": "A-E", "category": "Premium"}, {"rows": "F-P", "category": "Standard"}],
             "restricted_view": [{"rows": "N-P", "seats": "1-4"}, {"rows": "N-P", "seats": "41-44"}]},
            {"name": "Balcony", "rows": "A-N", "seats": "1-36", "origin": {"x": -17.5, "y": 62.0},
             "row_spacing": 1.3,
             "categories": [{"rows": "A-N", "category": "Balcony"}]}
        ]
    }))
    .expect("the demo hall is a valid layout")
}

/// Seeds the demo catalog into an empty database.
pub async fn seed_demo(db: &PgPool) -> anyhow::Result<DemoCatalog> {
    // Behind the waiting room like any high-demand onsale: five admissions a second, at most
    // fifty shoppers at once, so a demo crowd makes a queue one can watch move.
    seed(
        db,
        &hall(),
        &[
            ("Premium", 8900),
            ("Standard", 5900),
            ("Balcony", 3900),
            ("Accessible", 5900),
        ],
        500,
        &OnsaleSpec {
            prequeue_for: None,
            rate: 5.0,
            cap: 50,
            per_user_limit: 8,
            hold: std::time::Duration::from_secs(600),
        },
    )
    .await
}

/// The onsale a seeded catalog sells through.
#[derive(Debug, Clone)]
pub struct OnsaleSpec {
    /// A pre-queue open now for this long before the start (the onsale goes live when it
    /// ends); `None`: live at once.
    pub prequeue_for: Option<std::time::Duration>,
    /// Admissions a second.
    pub rate: f64,
    /// Admissions running at once, at most.
    pub cap: i32,
    /// Tickets one buyer may hold and buy.
    pub per_user_limit: i32,
    /// How long a hold lasts.
    pub hold: std::time::Duration,
}

/// Seeds a catalog of `rows` × `per_row` seats in `categories` (rows shared out evenly, front
/// rows first) plus `ga_quota` standing tickets, with an onsale behind the waiting room: what
/// the load test's onsale scenario sells.
pub async fn seed_venue(
    db: &PgPool,
    rows: u32,
    per_row: u32,
    categories: u32,
    ga_quota: i32,
    onsale: &OnsaleSpec,
) -> anyhow::Result<DemoCatalog> {
    let categories = categories.clamp(1, rows.max(1));
    let names: Vec<String> = (1..=categories).map(|c| format!("Category {c}")).collect();
    let share = rows.div_ceil(categories);
    let spread: Vec<serde_json::Value> = names
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let first = i as u32 * share + 1;
            let last = ((i as u32 + 1) * share).min(rows);
            (first <= last)
                .then(|| serde_json::json!({"rows": format!("{first}-{last}"), "category": name}))
        })
        .collect();
    let layout: LayoutSpec = serde_json::from_value(serde_json::json!({
        "focal": {"x": 0.0, "y": 0.0},
        "sections": [{"name": "Hall", "rows": format!("1-{rows}"), "seats": format!("1-{per_row}"),
                      "origin": {"x": -(per_row as f64) / 2.0, "y": 2.0}, "row_spacing": 1.0,
                      "categories": spread}]
    }))
    .context("a generated layout")?;
    let prices: Vec<(&str, i64)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), 9000 - 1000 * i as i64))
        .collect();
    seed(db, &layout, &prices, ga_quota, onsale).await
}

async fn seed(
    db: &PgPool,
    layout: &LayoutSpec,
    categories_priced: &[(&str, i64)],
    ga_quota: i32,
    onsale: &OnsaleSpec,
) -> anyhow::Result<DemoCatalog> {
    let mut tx = crate::db::begin(db).await?;
    let tenant_id: Uuid =
        sqlx::query_scalar("insert into tenant (name) values ('Marquee Demo') returning tenant_id")
            .fetch_one(&mut *tx)
            .await?;
    let venue: Uuid = sqlx::query_scalar(
        "insert into venue (tenant_id, name, city, address, timezone)
         values ($1, 'Grand Hall', 'Lisbon', 'Avenida da Liberdade 1', 'Europe/Lisbon') returning venue_id",
    )
    .bind(tenant_id)
    .fetch_one(&mut *tx)
    .await?;
    let event_id: Uuid = sqlx::query_scalar(
        "insert into event (tenant_id, venue_id, name, description, category, starts_at, ends_at, status)
         values ($1, $2, 'The Midnight Orchestra', 'A night of film scores, live.', 'concert',
                 date_trunc('hour', now()) + interval '7 days 20 hours',
                 date_trunc('hour', now()) + interval '7 days 23 hours', 'on_sale')
         returning event_id",
    )
    .bind(tenant_id)
    .bind(venue)
    .fetch_one(&mut *tx)
    .await?;
    let mut categories = Vec::new();
    for &(name, price) in categories_priced {
        let id: Uuid = sqlx::query_scalar(
            "insert into price_category (tenant_id, event_id, name, price_minor, currency)
             values ($1, $2, $3, $4, 'EUR') returning price_category_id",
        )
        .bind(tenant_id)
        .bind(event_id)
        .bind(name)
        .bind(price)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "insert into ticket_type (tenant_id, event_id, name, kind, price_category_id, price_minor, currency, max_per_order)
             values ($1, $2, $3, 'seated', $4, $5, 'EUR', 8)",
        )
        .bind(tenant_id)
        .bind(event_id)
        .bind(name)
        .bind(id)
        .bind(price)
        .execute(&mut *tx)
        .await?;
        categories.push((id, name.to_owned()));
    }
    let ga_ticket_type: Uuid = sqlx::query_scalar(
        "insert into ticket_type (tenant_id, event_id, name, kind, price_minor, currency, max_per_order, ga_quota)
         values ($1, $2, 'Standing', 'general_admission', 3500, 'EUR', 6, $3) returning ticket_type_id",
    )
    .bind(tenant_id)
    .bind(event_id)
    .bind(ga_quota)
    .fetch_one(&mut *tx)
    .await?;
    let map = create_seat_map(&mut tx, tenant_id, event_id, layout)
        .await
        .context("creating the seat map")?;
    let (status, prequeue) = match onsale.prequeue_for {
        Some(d) => ("scheduled", d.as_secs_f64()),
        None => ("live", 0.0),
    };
    let onsale_id: Uuid = sqlx::query_scalar(
        "insert into onsale (tenant_id, event_id, name, status, prequeue_opens_at, starts_at, hold_duration,
                             per_user_limit, requires_admission, admission_rate, active_cap)
         values ($1, $2, 'General sale', $3::onsale_status,
                 case when $4 > 0 then now() end, now() + make_interval(secs => $4),
                 make_interval(secs => $5), $6, true, $7, $8)
         returning onsale_id",
    )
    .bind(tenant_id)
    .bind(event_id)
    .bind(status)
    .bind(prequeue)
    .bind(onsale.hold.as_secs_f64())
    .bind(onsale.per_user_limit)
    .bind(onsale.rate)
    .bind(onsale.cap)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(DemoCatalog {
        tenant_id,
        event_id,
        onsale_id,
        seats: map.seats,
        categories,
        ga_ticket_type,
    })
}
