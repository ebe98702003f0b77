//! Public routes (`/v1/tenants/{tenant_id}/...`): a tenant's published events, searchable, with
//! their seat maps and live availability. Drafts and cancelled events are invisible here.

use super::admin::{self, Category, EVENT_COLUMNS, Event, ONSALE_COLUMNS, Onsale, TicketType};
use super::{CatalogError, CatalogState, id};

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

const VISIBLE: &str = "status in ('published', 'on_sale', 'sold_out')";

/// Most search results one page may hold.
pub const MAX_LIMIT: i64 = 100;
/// Farthest a search may page.
pub const MAX_OFFSET: i64 = 10_000;

/// Search filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Full-text query over name, description and category (web search syntax).
    #[param(schema_with = marquee_protocol::text::schema::search)]
    pub q: Option<String>,
    /// Events starting at or after (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<OffsetDateTime>,
    /// Events starting before (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<OffsetDateTime>,
    /// Exact category.
    #[param(schema_with = marquee_protocol::text::schema::search)]
    pub category: Option<String>,
    /// Venue city (case-insensitive).
    #[param(schema_with = marquee_protocol::text::schema::search)]
    pub city: Option<String>,
    /// Page size: 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Results to skip: 0 to 10,000 (default 0).
    #[param(minimum = 0, maximum = 10_000)]
    pub offset: Option<i64>,
}

/// Lists and searches a tenant's public events, soonest first.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/events", tag = "storefront", params(("tenant_id" = Uuid, Path, description = "A tenant id; malformed ids are as unknown as missing ones (404)"), SearchQuery),
    responses((status = 200, body = Vec<Event>), (status = 400, body = marquee_protocol::ErrorBody),
        (status = 404, description = "No such tenant (or not a UUID)", body = marquee_protocol::ErrorBody)))]
pub(crate) async fn search_events(
    State(s): State<CatalogState>,
    Path(tenant): Path<String>,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<Event>>, CatalogError> {
    let Query(query) = query.map_err(|e| CatalogError::BadRequest(e.body_text()))?;
    for (what, value) in [
        ("q", &query.q),
        ("category", &query.category),
        ("city", &query.city),
    ] {
        if let Some(value) = value {
            super::admin::field(marquee_protocol::text::optional(
                what,
                value,
                marquee_protocol::text::MAX_SEARCH_LEN,
            ))?;
        }
    }
    let limit = query.limit.unwrap_or(20);
    let offset = query.offset.unwrap_or(0);
    if !(1..=MAX_LIMIT).contains(&limit) || !(0..=MAX_OFFSET).contains(&offset) {
        return Err(CatalogError::BadRequest(format!(
            "limit must be 1 to {MAX_LIMIT} and offset 0 to {MAX_OFFSET}"
        )));
    }
    let tenant = super::id(&tenant, "tenant")?;
    let known: bool =
        sqlx::query_scalar("select exists (select 1 from tenant where tenant_id = $1)")
            .bind(tenant)
            .fetch_one(&s.db)
            .await?;
    if !known {
        return Err(CatalogError::NotFound("tenant"));
    }
    let q = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "select {EVENT_COLUMNS} from event e
         where e.tenant_id = $1 and e.{VISIBLE}
           and ($2::text is null or e.search @@ websearch_to_tsquery('simple', $2))
           and ($3::timestamptz is null or e.starts_at >= $3)
           and ($4::timestamptz is null or e.starts_at < $4)
           and ($5::text is null or e.category = $5)
           and ($6::text is null or exists (select 1 from venue v where v.tenant_id = e.tenant_id
                                             and v.venue_id = e.venue_id and lower(v.city) = lower($6)))
         order by e.starts_at, e.event_id limit $7 offset $8"
    )))
    .bind(tenant)
    .bind(q)
    .bind(query.from)
    .bind(query.to)
    .bind(query.category.as_deref())
    .bind(query.city.as_deref())
    .bind(limit)
    .bind(offset)
    .fetch_all(&s.db)
    .await
    ?;
    Ok(Json(rows.iter().map(admin::event).collect()))
}

/// A public event with what a buyer needs to shop it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventDetail {
    /// The event.
    pub event: Event,
    /// Its venue.
    pub venue: VenueSummary,
    /// Price categories.
    pub categories: Vec<Category>,
    /// Ticket types.
    pub ticket_types: Vec<TicketType>,
    /// Onsales.
    pub onsales: Vec<Onsale>,
}

/// A venue as the public sees it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VenueSummary {
    /// Name.
    pub name: String,
    /// City.
    pub city: String,
    /// Address.
    pub address: String,
}

async fn visible_event(
    s: &CatalogState,
    tenant: &str,
    event: &str,
) -> Result<(Uuid, Uuid), CatalogError> {
    let tenant = id(tenant, "event")?;
    let event = id(event, "event")?;
    let found: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select exists (select 1 from event where tenant_id = $1 and event_id = $2 and {VISIBLE})"
    )))
    .bind(tenant)
    .bind(event)
    .fetch_one(&s.db)
    .await?;
    if found {
        Ok((tenant, event))
    } else {
        Err(CatalogError::NotFound("event"))
    }
}

/// A public event's detail.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/events/{event_id}", tag = "storefront",
    params(("tenant_id" = Uuid, Path, description = "A tenant id; malformed ids are as unknown as missing ones (404)"), ("event_id" = Uuid, Path, description = "An event id; malformed ids are as unknown as missing ones (404)")),
    responses((status = 200, body = EventDetail), (status = 404, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn event_detail(
    State(s): State<CatalogState>,
    Path((tenant, event)): Path<(String, String)>,
) -> Result<Json<EventDetail>, CatalogError> {
    let (tenant, event_id) = visible_event(&s, &tenant, &event).await?;
    let mut conn = crate::db::acquire(&s.db).await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "select {EVENT_COLUMNS} from event where tenant_id = $1 and event_id = $2"
    )))
    .bind(tenant)
    .bind(event_id)
    .fetch_one(&mut *conn)
    .await?;
    let event = admin::event(&row);
    let v =
        sqlx::query("select name, city, address from venue where tenant_id = $1 and venue_id = $2")
            .bind(tenant)
            .bind(event.venue_id)
            .fetch_one(&mut *conn)
            .await?;
    let onsales = sqlx::query(sqlx::AssertSqlSafe(format!(
        "select {ONSALE_COLUMNS} from onsale where event_id = $1 order by starts_at"
    )))
    .bind(event_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Json(EventDetail {
        event,
        venue: VenueSummary {
            name: v.get("name"),
            city: v.get("city"),
            address: v.get("address"),
        },
        categories: admin::categories(&mut conn, event_id).await?,
        ticket_types: admin::ticket_types(&mut conn, event_id).await?,
        onsales: onsales.iter().map(admin::onsale).collect(),
    }))
}

/// The static seat map: where every seat is. Live state comes from the `seats:{event}` channel.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SeatMap {
    /// Where best-available aims.
    pub focal: super::layout::Point,
    /// Every seat, by index.
    pub seats: Vec<SeatInfo>,
}

/// One seat of the map.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SeatInfo {
    /// The index commands and the live map use.
    pub index: i32,
    /// Section name.
    pub section: String,
    /// Row label.
    pub row: String,
    /// Seat number.
    pub number: i32,
    /// Position.
    pub x: f64,
    /// Position.
    pub y: f64,
    /// Price category id.
    pub category: Uuid,
    /// Accessible seat.
    pub accessible: bool,
    /// Companion seat.
    pub companion: bool,
    /// Restricted view.
    pub restricted_view: bool,
}

/// A public event's seat map.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/events/{event_id}/seats", tag = "storefront",
    params(("tenant_id" = Uuid, Path, description = "A tenant id; malformed ids are as unknown as missing ones (404)"), ("event_id" = Uuid, Path, description = "An event id; malformed ids are as unknown as missing ones (404)")),
    responses((status = 200, body = SeatMap), (status = 404, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn event_seats(
    State(s): State<CatalogState>,
    Path((tenant, event)): Path<(String, String)>,
) -> Result<Json<SeatMap>, CatalogError> {
    let (_, event_id) = visible_event(&s, &tenant, &event).await?;
    let focal = sqlx::query("select focal_x, focal_y from seat_map where event_id = $1")
        .bind(event_id)
        .fetch_optional(&s.db)
        .await?
        .map(|r| super::layout::Point {
            x: r.get("focal_x"),
            y: r.get("focal_y"),
        })
        .unwrap_or_default();
    let rows = sqlx::query(
        "select s.seat_index, c.name as section, s.row_label, s.seat_number, s.x, s.y, s.price_category_id,
                s.accessible, s.companion, s.restricted_view
         from seat s join section c on c.section_id = s.section_id
         where s.event_id = $1 order by s.seat_index",
    )
    .bind(event_id)
    .fetch_all(&s.db)
    .await
    ?;
    let seats = rows
        .iter()
        .map(|r| SeatInfo {
            index: r.get("seat_index"),
            section: r.get("section"),
            row: r.get("row_label"),
            number: r.get("seat_number"),
            x: r.get("x"),
            y: r.get("y"),
            category: r.get("price_category_id"),
            accessible: r.get("accessible"),
            companion: r.get("companion"),
            restricted_view: r.get("restricted_view"),
        })
        .collect();
    Ok(Json(SeatMap { focal, seats }))
}

/// Availability of an event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Availability {
    /// Per price category.
    pub categories: Vec<CategoryAvailability>,
    /// Per general-admission ticket type.
    pub general_admission: Vec<GaAvailability>,
}

/// Seats of one category.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CategoryAvailability {
    /// Category id.
    pub price_category_id: Uuid,
    /// Name.
    pub name: String,
    /// Price in minor units.
    pub price_minor: i64,
    /// Currency.
    pub currency: String,
    /// Seats in the category.
    pub total: i64,
    /// Seats neither held nor sold.
    pub free: i64,
}

/// One general-admission ticket type.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GaAvailability {
    /// Ticket type id.
    pub ticket_type_id: Uuid,
    /// Name.
    pub name: String,
    /// Quota.
    pub quota: i32,
    /// Tickets neither held nor sold.
    pub available: i32,
}

/// A summary of what is left, by category.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/events/{event_id}/availability", tag = "storefront",
    params(("tenant_id" = Uuid, Path, description = "A tenant id; malformed ids are as unknown as missing ones (404)"), ("event_id" = Uuid, Path, description = "An event id; malformed ids are as unknown as missing ones (404)")),
    responses((status = 200, body = Availability), (status = 404, body = marquee_protocol::ErrorBody)))]
pub async fn availability(
    State(s): State<CatalogState>,
    Path((tenant, event)): Path<(String, String)>,
) -> Result<Json<Availability>, CatalogError> {
    let (_, event_id) = visible_event(&s, &tenant, &event).await?;
    let categories = sqlx::query(
        "select p.price_category_id, p.name, p.price_minor, p.currency::text as currency,
                count(s.seat_id) as total, count(s.seat_id) filter (where c.seat_id is null) as free
         from price_category p
         left join seat s on s.event_id = p.event_id and s.price_category_id = p.price_category_id
         left join seat_claim c on c.event_id = s.event_id and c.seat_id = s.seat_id
         where p.event_id = $1
         group by p.price_category_id order by p.price_minor desc, p.name",
    )
    .bind(event_id)
    .fetch_all(&s.db)
    .await?
    .iter()
    .map(|r| CategoryAvailability {
        price_category_id: r.get("price_category_id"),
        name: r.get("name"),
        price_minor: r.get("price_minor"),
        currency: r.get("currency"),
        total: r.get("total"),
        free: r.get("free"),
    })
    .collect();
    let general_admission = sqlx::query(
        "select ticket_type_id, name, ga_quota, greatest(ga_quota - ga_held - ga_sold, 0) as available
         from ticket_type where event_id = $1 and ga_quota is not null order by name",
    )
    .bind(event_id)
    .fetch_all(&s.db)
    .await
    ?
    .iter()
    .map(|r| GaAvailability {
        ticket_type_id: r.get("ticket_type_id"),
        name: r.get("name"),
        quota: r.get("ga_quota"),
        available: r.get("available"),
    })
    .collect();
    Ok(Json(Availability {
        categories,
        general_admission,
    }))
}
