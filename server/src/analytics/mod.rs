//! Sales analytics for operators (role `admin`, their own tenant): what an event has sold and
//! holds right now, by price category and general-admission ticket type, its orders by
//! status, its payment events by outcome, and the holds about to expire. Read from Postgres,
//! the system of record; the operators' dashboard polls it every few seconds beside the live
//! `admin:` and `queue:` channels.
//!
//! - `GET /v1/admin/events/{event_id}/sales`: [`Sales`].
//! - [`report`]: sales over time and the funnel from queue to payment, as JSON or CSV.

pub mod report;

use crate::auth::Verifier;
use crate::http::error::ApiError;
use crate::http::extract::Admin;
use axum::extract::{FromRef, Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row as _};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

/// What the analytics routes need.
#[derive(Debug, Clone)]
pub struct AnalyticsState {
    /// The system of record.
    pub db: PgPool,
    /// Verifies operators' tokens.
    pub verifier: Arc<Verifier>,
}

impl FromRef<AnalyticsState> for Arc<Verifier> {
    fn from_ref(state: &AnalyticsState) -> Self {
        state.verifier.clone()
    }
}

/// The analytics routes.
pub fn routes(state: AnalyticsState) -> Router {
    Router::new()
        .route("/v1/admin/events/{event_id}/sales", get(event_sales))
        .route(
            "/v1/admin/events/{event_id}/sales/timeline",
            get(report::timeline),
        )
        .route("/v1/admin/onsales/{onsale_id}/funnel", get(report::funnel))
        .with_state(state)
}

/// One price category's seats.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CategorySales {
    /// The category.
    pub price_category_id: Uuid,
    /// Its name.
    pub name: String,
    /// Price per seat, minor units.
    pub price_minor: i64,
    /// ISO 4217 currency.
    pub currency: String,
    /// Seats on the map in this category.
    pub seats: i64,
    /// Seats sold (orders awaiting payment or paid).
    pub sold: i64,
    /// Seats held now.
    pub held: i64,
}

/// One general-admission ticket type.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GaSales {
    /// The ticket type.
    pub ticket_type_id: Uuid,
    /// Its name.
    pub name: String,
    /// Price per ticket, minor units.
    pub price_minor: i64,
    /// How many exist.
    pub quota: i32,
    /// Sold (orders awaiting payment or paid).
    pub sold: i32,
    /// Held now.
    pub held: i32,
}

/// An event's sales right now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Sales {
    /// The event.
    pub event_id: Uuid,
    /// Seats by price category.
    pub categories: Vec<CategorySales>,
    /// General admission by ticket type.
    pub ga: Vec<GaSales>,
    /// Active holds.
    pub holds_active: i64,
    /// Active holds that expire within the next minute.
    pub holds_expiring_next_minute: i64,
    /// Orders by status (`pending_payment`, `paid`, `expired`, `cancelled`, `refunded`).
    pub orders: BTreeMap<String, i64>,
    /// Revenue of paid orders, minor units, by currency.
    pub revenue_minor: BTreeMap<String, i64>,
    /// Payment events by the outcome their order's owner recorded (`paid`, `failed`,
    /// `extended`, `late_payment_refunded`, …; `pending` while not applied yet).
    pub payments: BTreeMap<String, i64>,
}

/// What an event has sold and holds now (role `admin`, the event's tenant).
#[utoipa::path(get, path = "/v1/admin/events/{event_id}/sales", tag = "analytics",
    params(("event_id" = Uuid, Path, description = "An event id; malformed ids are as unknown as missing ones (404)")), security(("bearer" = [])),
    responses((status = 200, body = Sales), (status = 401, body = marquee_protocol::ErrorBody),
        (status = 403, body = marquee_protocol::ErrorBody), (status = 404, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn event_sales(
    State(s): State<AnalyticsState>,
    admin: Admin,
    Path(raw): Path<String>,
) -> Result<Json<Sales>, ApiError> {
    let event = own_event(&s.db, &admin, &raw).await?;
    Ok(Json(sales_of(&s.db, event).await?))
}

/// The event `raw` names, if it is the operator's tenant's (404 otherwise, malformed ids
/// included).
pub(crate) async fn own_event(db: &PgPool, admin: &Admin, raw: &str) -> Result<Uuid, ApiError> {
    let not_found = || ApiError::not_found("event not found");
    let event = Uuid::parse_str(raw).map_err(|_| not_found())?;
    let owned: Option<bool> =
        sqlx::query_scalar("select true from event where tenant_id = $1 and event_id = $2")
            .bind(admin.tenant)
            .bind(event)
            .fetch_optional(db)
            .await?;
    owned.ok_or_else(not_found)?;
    Ok(event)
}

/// What `event` has sold and holds now, in one consistent view.
pub async fn sales_of(db: &PgPool, event: Uuid) -> Result<Sales, sqlx::Error> {
    let mut tx = crate::db::begin(db).await?;
    // One consistent view of every count.
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    let categories = sqlx::query(
        "select c.price_category_id, c.name, c.price_minor, c.currency::text as currency,
                count(s.seat_id) as seats,
                count(s.seat_id) filter (where sc.state = 'sold') as sold,
                count(s.seat_id) filter (where sc.state = 'held') as held
         from price_category c
         left join seat s on s.event_id = c.event_id and s.price_category_id = c.price_category_id
         left join seat_claim sc on sc.event_id = s.event_id and sc.seat_id = s.seat_id
         where c.event_id = $1
         group by c.price_category_id order by c.price_minor desc, c.name",
    )
    .bind(event)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| CategorySales {
        price_category_id: r.get("price_category_id"),
        name: r.get("name"),
        price_minor: r.get("price_minor"),
        currency: r.get("currency"),
        seats: r.get("seats"),
        sold: r.get("sold"),
        held: r.get("held"),
    })
    .collect();
    let ga = sqlx::query(
        "select ticket_type_id, name, price_minor, ga_quota, ga_sold, ga_held from ticket_type
         where event_id = $1 and ga_quota is not null order by name",
    )
    .bind(event)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| GaSales {
        ticket_type_id: r.get("ticket_type_id"),
        name: r.get("name"),
        price_minor: r.get("price_minor"),
        quota: r.get("ga_quota"),
        sold: r.get("ga_sold"),
        held: r.get("ga_held"),
    })
    .collect();
    let (holds_active, holds_expiring_next_minute): (i64, i64) = sqlx::query_as(
        "select count(*), count(*) filter (where expires_at <= now() + interval '1 minute')
         from hold where event_id = $1 and status = 'active'",
    )
    .bind(event)
    .fetch_one(&mut *tx)
    .await?;
    let mut orders = BTreeMap::new();
    let mut revenue_minor = BTreeMap::new();
    for r in sqlx::query(
        "select status::text as status, currency::text as currency, count(*) as n,
                sum(total_minor)::int8 as total
         from ticket_order where event_id = $1 group by status, currency",
    )
    .bind(event)
    .fetch_all(&mut *tx)
    .await?
    {
        let status: String = r.get("status");
        *orders.entry(status.clone()).or_insert(0) += r.get::<i64, _>("n");
        if status == "paid" {
            *revenue_minor.entry(r.get("currency")).or_insert(0) +=
                r.get::<Option<i64>, _>("total").unwrap_or(0);
        }
    }
    let payments = sqlx::query(
        "select coalesce(outcome, 'pending') as outcome, count(*) as n from payment_event
         where event_id = $1 group by 1",
    )
    .bind(event)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| (r.get("outcome"), r.get("n")))
    .collect();
    tx.commit().await?;
    Ok(Sales {
        event_id: event,
        categories,
        ga,
        holds_active,
        holds_expiring_next_minute,
        orders,
        revenue_minor,
        payments,
    })
}

/// The OpenAPI document of the analytics routes.
#[derive(OpenApi)]
#[openapi(paths(event_sales, report::timeline, report::funnel))]
struct ApiDoc;

/// The OpenAPI document of the analytics routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
