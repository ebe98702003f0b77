//! Operators' routes (`/v1/admin/...`): everything scoped by the caller's tenant.

use super::layout::{self, LayoutSpec};
use super::{CatalogError, CatalogState, id, on_constraint};
use crate::http::error::AppJson;
use crate::http::extract::Admin;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::{PgConnection, Row as _};
use std::collections::HashMap;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

type Created<T> = Result<(StatusCode, Json<T>), CatalogError>;
type Found<T> = Result<Json<T>, CatalogError>;

/// Records an operator's change in the audit trail, in the change's transaction.
async fn audit(
    conn: &mut PgConnection,
    admin: &Admin,
    entity: &str,
    entity_id: Uuid,
    action: &str,
    detail: Value,
) -> Result<(), CatalogError> {
    crate::audit::record(
        conn,
        admin.tenant,
        &admin.user,
        entity,
        &entity_id.to_string(),
        action,
        &detail,
    )
    .await?;
    Ok(())
}

async fn ensure_tenant(conn: &mut PgConnection, admin: &Admin) -> Result<(), CatalogError> {
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from tenant where tenant_id = $1)")
            .bind(admin.tenant)
            .fetch_one(conn)
            .await?;
    if exists {
        Ok(())
    } else {
        Err(CatalogError::NotFound(
            "tenant (create it first with PUT /v1/admin/tenant)",
        ))
    }
}

async fn own_event(
    conn: &mut PgConnection,
    admin: &Admin,
    raw: &str,
) -> Result<Uuid, CatalogError> {
    let event = id(raw, "event")?;
    let found: bool = sqlx::query_scalar(
        "select exists (select 1 from event where tenant_id = $1 and event_id = $2)",
    )
    .bind(admin.tenant)
    .bind(event)
    .fetch_one(conn)
    .await?;
    if found {
        Ok(event)
    } else {
        Err(CatalogError::NotFound("event"))
    }
}

fn not_blank(value: &str, what: &str) -> Result<(), CatalogError> {
    if value.trim().is_empty() {
        return Err(CatalogError::BadRequest(format!(
            "{what} must not be blank"
        )));
    }
    Ok(())
}

fn currency(value: &str) -> Result<(), CatalogError> {
    if value.len() == 3 && value.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(CatalogError::BadRequest(format!(
            "currency {value:?} is not an ISO 4217 code such as EUR"
        )))
    }
}

/// The caller's tenant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    /// The tenant id (the token's `tenant` claim).
    #[serde(default)]
    pub tenant_id: Option<Uuid>,
    /// Display name.
    pub name: String,
}

/// Creates or renames the caller's own tenant.
#[utoipa::path(put, path = "/v1/admin/tenant", request_body = Tenant, security(("bearer" = [])),
    responses((status = 200, body = Tenant), (status = 400, body = marquee_protocol::ErrorBody)))]
pub async fn put_tenant(
    State(s): State<CatalogState>,
    admin: Admin,
    AppJson(body): AppJson<Tenant>,
) -> Found<Tenant> {
    not_blank(&body.name, "name")?;
    let mut tx = s.db.begin().await?;
    sqlx::query("insert into tenant (tenant_id, name) values ($1, $2) on conflict (tenant_id) do update set name = excluded.name")
        .bind(admin.tenant)
        .bind(&body.name)
        .execute(&mut *tx)
        .await
        ?;
    audit(
        &mut tx,
        &admin,
        "tenant",
        admin.tenant,
        "saved",
        json!({"name": body.name}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(Tenant {
        tenant_id: Some(admin.tenant),
        name: body.name,
    }))
}

/// A new venue.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewVenue {
    /// Name.
    pub name: String,
    /// City (the public search filters by it).
    pub city: String,
    /// Street address.
    #[serde(default)]
    pub address: String,
    /// IANA time zone, e.g. `Europe/Lisbon`.
    #[serde(default = "utc")]
    pub timezone: String,
}

fn utc() -> String {
    "UTC".into()
}

/// A venue.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Venue {
    /// Id.
    pub venue_id: Uuid,
    /// Name.
    pub name: String,
    /// City.
    pub city: String,
    /// Street address.
    pub address: String,
    /// Time zone.
    pub timezone: String,
}

const VENUE_COLUMNS: &str = "venue_id, name, city, address, timezone";

fn venue(r: &sqlx::postgres::PgRow) -> Venue {
    Venue {
        venue_id: r.get("venue_id"),
        name: r.get("name"),
        city: r.get("city"),
        address: r.get("address"),
        timezone: r.get("timezone"),
    }
}

/// Creates a venue.
#[utoipa::path(post, path = "/v1/admin/venues", request_body = NewVenue, security(("bearer" = [])),
    responses((status = 201, body = Venue), (status = 400, body = marquee_protocol::ErrorBody), (status = 404, body = marquee_protocol::ErrorBody)))]
pub async fn create_venue(
    State(s): State<CatalogState>,
    admin: Admin,
    AppJson(body): AppJson<NewVenue>,
) -> Created<Venue> {
    not_blank(&body.name, "name")?;
    not_blank(&body.city, "city")?;
    let mut tx = s.db.begin().await?;
    ensure_tenant(&mut tx, &admin).await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "insert into venue (tenant_id, name, city, address, timezone) values ($1, $2, $3, $4, $5) returning {VENUE_COLUMNS}"
    )))
    .bind(admin.tenant)
    .bind(&body.name)
    .bind(&body.city)
    .bind(&body.address)
    .bind(&body.timezone)
    .fetch_one(&mut *tx)
    .await
    ?;
    let v = venue(&row);
    audit(
        &mut tx,
        &admin,
        "venue",
        v.venue_id,
        "created",
        json!({"name": v.name}),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(v)))
}

/// The tenant's venues.
#[utoipa::path(get, path = "/v1/admin/venues", security(("bearer" = [])), responses((status = 200, body = Vec<Venue>)))]
pub async fn list_venues(State(s): State<CatalogState>, admin: Admin) -> Found<Vec<Venue>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "select {VENUE_COLUMNS} from venue where tenant_id = $1 order by name, venue_id"
    )))
    .bind(admin.tenant)
    .fetch_all(&s.db)
    .await?;
    Ok(Json(rows.iter().map(venue).collect()))
}

/// One venue.
#[utoipa::path(get, path = "/v1/admin/venues/{venue_id}", security(("bearer" = [])),
    responses((status = 200, body = Venue), (status = 404, body = marquee_protocol::ErrorBody)))]
pub async fn get_venue(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
) -> Found<Venue> {
    let venue_id = id(&raw, "venue")?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "select {VENUE_COLUMNS} from venue where tenant_id = $1 and venue_id = $2"
    )))
    .bind(admin.tenant)
    .bind(venue_id)
    .fetch_optional(&s.db)
    .await?
    .ok_or(CatalogError::NotFound("venue"))?;
    Ok(Json(venue(&row)))
}

/// A new event (created as a draft).
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewEvent {
    /// The venue.
    pub venue_id: Uuid,
    /// Name.
    pub name: String,
    /// Description (searched).
    #[serde(default)]
    pub description: String,
    /// Category, e.g. `concert` (searched and filtered).
    #[serde(default)]
    pub category: String,
    /// Start (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: OffsetDateTime,
    /// End (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ends_at: Option<OffsetDateTime>,
}

/// An event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Id.
    pub event_id: Uuid,
    /// The venue.
    pub venue_id: Uuid,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Category.
    pub category: String,
    /// Start.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: OffsetDateTime,
    /// End.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ends_at: Option<OffsetDateTime>,
    /// `draft`, `published`, `on_sale`, `sold_out` or `cancelled`.
    pub status: String,
}

pub(crate) const EVENT_COLUMNS: &str =
    "event_id, venue_id, name, description, category, starts_at, ends_at, status::text as status";

pub(crate) fn event(r: &sqlx::postgres::PgRow) -> Event {
    Event {
        event_id: r.get("event_id"),
        venue_id: r.get("venue_id"),
        name: r.get("name"),
        description: r.get("description"),
        category: r.get("category"),
        starts_at: r.get("starts_at"),
        ends_at: r.get("ends_at"),
        status: r.get("status"),
    }
}

/// Creates an event (a draft).
#[utoipa::path(post, path = "/v1/admin/events", request_body = NewEvent, security(("bearer" = [])),
    responses((status = 201, body = Event), (status = 400, body = marquee_protocol::ErrorBody), (status = 404, body = marquee_protocol::ErrorBody)))]
pub async fn create_event(
    State(s): State<CatalogState>,
    admin: Admin,
    AppJson(body): AppJson<NewEvent>,
) -> Created<Event> {
    not_blank(&body.name, "name")?;
    if body.ends_at.is_some_and(|end| end <= body.starts_at) {
        return Err(CatalogError::BadRequest(
            "ends_at must be after starts_at".into(),
        ));
    }
    let mut tx = s.db.begin().await?;
    ensure_tenant(&mut tx, &admin).await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "insert into event (tenant_id, venue_id, name, description, category, starts_at, ends_at)
         values ($1, $2, $3, $4, $5, $6, $7) returning {EVENT_COLUMNS}"
    )))
    .bind(admin.tenant)
    .bind(body.venue_id)
    .bind(&body.name)
    .bind(&body.description)
    .bind(&body.category)
    .bind(body.starts_at)
    .bind(body.ends_at)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| {
        on_constraint(
            e,
            &[("event_venue_same_tenant", || {
                CatalogError::NotFound("venue")
            })],
        )
    })?;
    let e = event(&row);
    audit(
        &mut tx,
        &admin,
        "event",
        e.event_id,
        "created",
        json!({"name": e.name}),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(e)))
}

/// The tenant's events, soonest first.
#[utoipa::path(get, path = "/v1/admin/events", security(("bearer" = [])), responses((status = 200, body = Vec<Event>)))]
pub async fn list_events(State(s): State<CatalogState>, admin: Admin) -> Found<Vec<Event>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "select {EVENT_COLUMNS} from event where tenant_id = $1 order by starts_at, event_id"
    )))
    .bind(admin.tenant)
    .fetch_all(&s.db)
    .await?;
    Ok(Json(rows.iter().map(event).collect()))
}

/// One event.
#[utoipa::path(get, path = "/v1/admin/events/{event_id}", security(("bearer" = [])),
    responses((status = 200, body = Event), (status = 404, body = marquee_protocol::ErrorBody)))]
pub async fn get_event(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
) -> Found<Event> {
    let event_id = id(&raw, "event")?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "select {EVENT_COLUMNS} from event where tenant_id = $1 and event_id = $2"
    )))
    .bind(admin.tenant)
    .bind(event_id)
    .fetch_optional(&s.db)
    .await?
    .ok_or(CatalogError::NotFound("event"))?;
    Ok(Json(event(&row)))
}

/// A status change.
#[derive(Debug, Deserialize, ToSchema)]
pub struct StatusChange {
    /// The new status.
    pub status: String,
}

/// The statuses an event may move to `to` from.
fn event_sources(to: &str) -> Option<&'static [&'static str]> {
    Some(match to {
        "published" => &["draft"],
        "on_sale" => &["published", "sold_out"],
        "sold_out" => &["on_sale"],
        "cancelled" => &["draft", "published", "on_sale", "sold_out"],
        _ => return None,
    })
}

/// The statuses an onsale may move to `to` from.
fn onsale_sources(to: &str) -> Option<&'static [&'static str]> {
    Some(match to {
        "pre_queue" => &["scheduled"],
        "live" => &["scheduled", "pre_queue", "paused"],
        "paused" => &["live"],
        "sold_out" => &["live", "paused"],
        "closed" => &["scheduled", "pre_queue", "live", "paused", "sold_out"],
        _ => return None,
    })
}

/// Moves a row of `table` to `to`, in the caller's transaction, if its current status allows
/// it.
async fn transition(
    tx: &mut PgConnection,
    admin: &Admin,
    table: &'static str,
    raw: &str,
    to: &str,
    sources: fn(&str) -> Option<&'static [&'static str]>,
) -> Result<Uuid, CatalogError> {
    let row_id = id(raw, table)?;
    let from = sources(to).ok_or_else(|| {
        CatalogError::BadRequest(format!("{to:?} is not an {table} status one can set"))
    })?;
    let current: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select status::text from {table} where tenant_id = $1 and {table}_id = $2 for update"
    )))
    .bind(admin.tenant)
    .bind(row_id)
    .fetch_optional(&mut *tx)
    .await?;
    let current = current.ok_or(CatalogError::NotFound(table))?;
    if !from.contains(&current.as_str()) {
        // Both tables with a status ("event", "onsale") take "an".
        return Err(CatalogError::Conflict(format!(
            "an {table} cannot go from {current} to {to}"
        )));
    }
    let ty = if table == "event" {
        "event_status"
    } else {
        "onsale_status"
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "update {table} set status = $3::{ty} where tenant_id = $1 and {table}_id = $2"
    )))
    .bind(admin.tenant)
    .bind(row_id)
    .bind(to)
    .execute(&mut *tx)
    .await?;
    audit(
        tx,
        admin,
        table,
        row_id,
        "status_changed",
        json!({"from": current, "to": to}),
    )
    .await?;
    Ok(row_id)
}

/// Moves an event along draft → published → on_sale → sold_out, or to cancelled.
#[utoipa::path(patch, path = "/v1/admin/events/{event_id}/status", request_body = StatusChange, security(("bearer" = [])),
    responses((status = 200, body = Event), (status = 404, body = marquee_protocol::ErrorBody), (status = 409, body = marquee_protocol::ErrorBody)))]
pub async fn set_event_status(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
    AppJson(body): AppJson<StatusChange>,
) -> Found<Event> {
    let mut tx = s.db.begin().await?;
    transition(&mut tx, &admin, "event", &raw, &body.status, event_sources).await?;
    tx.commit().await?;
    get_event(State(s), admin, Path(raw)).await
}

/// A new price category.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewCategory {
    /// Name, unique in the event (the layout spec refers to it).
    pub name: String,
    /// Price in minor units.
    pub price_minor: i64,
    /// ISO 4217 currency.
    pub currency: String,
}

/// A price category.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Category {
    /// Id.
    pub price_category_id: Uuid,
    /// Name.
    pub name: String,
    /// Price in minor units.
    pub price_minor: i64,
    /// Currency.
    pub currency: String,
}

/// Adds a price category to an event.
#[utoipa::path(post, path = "/v1/admin/events/{event_id}/price-categories", request_body = NewCategory, security(("bearer" = [])),
    responses((status = 201, body = Category), (status = 400, body = marquee_protocol::ErrorBody), (status = 404, body = marquee_protocol::ErrorBody), (status = 409, body = marquee_protocol::ErrorBody)))]
pub async fn create_category(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
    AppJson(body): AppJson<NewCategory>,
) -> Created<Category> {
    not_blank(&body.name, "name")?;
    currency(&body.currency)?;
    if body.price_minor < 0 {
        return Err(CatalogError::BadRequest(
            "price_minor must not be negative".into(),
        ));
    }
    let mut tx = s.db.begin().await?;
    let event_id = own_event(&mut tx, &admin, &raw).await?;
    let category_id: Uuid = sqlx::query_scalar(
        "insert into price_category (tenant_id, event_id, name, price_minor, currency) values ($1, $2, $3, $4, $5) returning price_category_id",
    )
    .bind(admin.tenant)
    .bind(event_id)
    .bind(&body.name)
    .bind(body.price_minor)
    .bind(&body.currency)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| on_constraint(e, &[("price_category_name_per_event", || CatalogError::Conflict("the event already has a category of that name".into()))]))?;
    audit(
        &mut tx,
        &admin,
        "price_category",
        category_id,
        "created",
        json!({"event": event_id, "name": body.name}),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(Category {
            price_category_id: category_id,
            name: body.name,
            price_minor: body.price_minor,
            currency: body.currency,
        }),
    ))
}

/// An event's price categories.
#[utoipa::path(get, path = "/v1/admin/events/{event_id}/price-categories", security(("bearer" = [])),
    responses((status = 200, body = Vec<Category>), (status = 404, body = marquee_protocol::ErrorBody)))]
pub async fn list_categories(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
) -> Found<Vec<Category>> {
    let mut conn = s.db.acquire().await?;
    let event_id = own_event(&mut conn, &admin, &raw).await?;
    Ok(Json(categories(&mut conn, event_id).await?))
}

pub(crate) async fn categories(
    conn: &mut PgConnection,
    event_id: Uuid,
) -> Result<Vec<Category>, CatalogError> {
    let rows = sqlx::query("select price_category_id, name, price_minor, currency::text as currency from price_category where event_id = $1 order by price_minor desc, name")
        .bind(event_id)
        .fetch_all(conn)
        .await?;
    Ok(rows
        .iter()
        .map(|r| Category {
            price_category_id: r.get("price_category_id"),
            name: r.get("name"),
            price_minor: r.get("price_minor"),
            currency: r.get("currency"),
        })
        .collect())
}

/// What creating a seat map made.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SeatMapCreated {
    /// The map.
    pub seat_map_id: Uuid,
    /// Sections created.
    pub sections: usize,
    /// Seats created (indexed 0..seats).
    pub seats: usize,
}

/// Creates an event's seat map from a layout spec, inside the caller's transaction. The
/// spec's category names must exist for the event.
pub async fn create_seat_map(
    conn: &mut PgConnection,
    tenant: Uuid,
    event_id: Uuid,
    spec: &LayoutSpec,
) -> Result<SeatMapCreated, CatalogError> {
    let plan = layout::expand(spec).map_err(|e| CatalogError::BadRequest(e.0))?;
    let known: HashMap<String, Uuid> =
        sqlx::query("select name, price_category_id from price_category where event_id = $1")
            .bind(event_id)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| (r.get("name"), r.get("price_category_id")))
            .collect();
    if let Some(unknown) = plan.iter().find(|s| !known.contains_key(&s.category)) {
        return Err(CatalogError::BadRequest(format!(
            "no price category named {:?} on this event",
            unknown.category
        )));
    }
    let seat_map_id: Uuid = sqlx::query_scalar(
        "insert into seat_map (tenant_id, event_id, focal_x, focal_y) values ($1, $2, $3, $4) returning seat_map_id",
    )
    .bind(tenant)
    .bind(event_id)
    .bind(spec.focal.x)
    .bind(spec.focal.y)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| on_constraint(e, &[("seat_map_one_per_event", || CatalogError::Conflict("the event already has a seat map".into()))]))?;
    let mut section_ids = Vec::with_capacity(spec.sections.len());
    for section in &spec.sections {
        let section_id: Uuid = sqlx::query_scalar("insert into section (tenant_id, seat_map_id, name) values ($1, $2, $3) returning section_id")
            .bind(tenant)
            .bind(seat_map_id)
            .bind(&section.name)
            .fetch_one(&mut *conn)
            .await?;
        section_ids.push(section_id);
    }
    let sections: Vec<Uuid> = plan.iter().map(|s| section_ids[s.section]).collect();
    let rows: Vec<&str> = plan.iter().map(|s| s.row.as_str()).collect();
    let numbers: Vec<i32> = plan.iter().map(|s| s.number).collect();
    let indexes: Vec<i32> = plan.iter().map(|s| s.index).collect();
    let xs: Vec<f64> = plan.iter().map(|s| s.x).collect();
    let ys: Vec<f64> = plan.iter().map(|s| s.y).collect();
    let cats: Vec<Uuid> = plan.iter().map(|s| known[&s.category]).collect();
    let accessible: Vec<bool> = plan.iter().map(|s| s.accessible).collect();
    let restricted: Vec<bool> = plan.iter().map(|s| s.restricted_view).collect();
    sqlx::query(
        "insert into seat (tenant_id, event_id, section_id, row_label, seat_number, seat_index, x, y, price_category_id, accessible, restricted_view)
         select $1, $2, s, r, n, i, x, y, c, a, v
         from unnest($3::uuid[], $4::text[], $5::int4[], $6::int4[], $7::float8[], $8::float8[], $9::uuid[], $10::bool[], $11::bool[])
           as t(s, r, n, i, x, y, c, a, v)",
    )
    .bind(tenant)
    .bind(event_id)
    .bind(&sections)
    .bind(&rows)
    .bind(&numbers)
    .bind(&indexes)
    .bind(&xs)
    .bind(&ys)
    .bind(&cats)
    .bind(&accessible)
    .bind(&restricted)
    .execute(&mut *conn)
    .await?;
    Ok(SeatMapCreated {
        seat_map_id,
        sections: section_ids.len(),
        seats: plan.len(),
    })
}

/// Creates an event's seat map from a compact layout spec (see the `layout` module docs).
#[utoipa::path(post, path = "/v1/admin/events/{event_id}/seat-map", request_body = LayoutSpec, security(("bearer" = [])),
    responses((status = 201, body = SeatMapCreated), (status = 400, body = marquee_protocol::ErrorBody), (status = 404, body = marquee_protocol::ErrorBody), (status = 409, body = marquee_protocol::ErrorBody)))]
pub async fn create_seat_map_route(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
    AppJson(spec): AppJson<LayoutSpec>,
) -> Created<SeatMapCreated> {
    let mut tx = s.db.begin().await?;
    let event_id = own_event(&mut tx, &admin, &raw).await?;
    let created = create_seat_map(&mut tx, admin.tenant, event_id, &spec).await?;
    audit(
        &mut tx,
        &admin,
        "seat_map",
        created.seat_map_id,
        "created",
        json!({"event": event_id, "seats": created.seats}),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// A new ticket type.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewTicketType {
    /// Name, unique in the event.
    pub name: String,
    /// `seated` or `general_admission`.
    pub kind: String,
    /// For seated tickets: the price category whose seats it sells.
    #[serde(default)]
    pub price_category_id: Option<Uuid>,
    /// Price in minor units.
    pub price_minor: i64,
    /// ISO 4217 currency.
    pub currency: String,
    /// Smallest quantity per order.
    #[serde(default = "one")]
    pub min_per_order: i32,
    /// Largest quantity per order.
    #[serde(default = "ten")]
    pub max_per_order: i32,
    /// For general admission: how many exist.
    #[serde(default)]
    pub ga_quota: Option<i32>,
}

fn one() -> i32 {
    1
}

fn ten() -> i32 {
    10
}

/// A ticket type.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TicketType {
    /// Id.
    pub ticket_type_id: Uuid,
    /// Name.
    pub name: String,
    /// `seated` or `general_admission`.
    pub kind: String,
    /// Price category (seated).
    pub price_category_id: Option<Uuid>,
    /// Price in minor units.
    pub price_minor: i64,
    /// Currency.
    pub currency: String,
    /// Smallest quantity per order.
    pub min_per_order: i32,
    /// Largest quantity per order.
    pub max_per_order: i32,
    /// General-admission quota.
    pub ga_quota: Option<i32>,
}

const TICKET_TYPE_COLUMNS: &str = "ticket_type_id, name, kind::text as kind, price_category_id, price_minor, currency::text as currency, min_per_order, max_per_order, ga_quota";

pub(crate) fn ticket_type(r: &sqlx::postgres::PgRow) -> TicketType {
    TicketType {
        ticket_type_id: r.get("ticket_type_id"),
        name: r.get("name"),
        kind: r.get("kind"),
        price_category_id: r.get("price_category_id"),
        price_minor: r.get("price_minor"),
        currency: r.get("currency"),
        min_per_order: r.get("min_per_order"),
        max_per_order: r.get("max_per_order"),
        ga_quota: r.get("ga_quota"),
    }
}

/// Adds a ticket type to an event.
#[utoipa::path(post, path = "/v1/admin/events/{event_id}/ticket-types", request_body = NewTicketType, security(("bearer" = [])),
    responses((status = 201, body = TicketType), (status = 400, body = marquee_protocol::ErrorBody), (status = 404, body = marquee_protocol::ErrorBody), (status = 409, body = marquee_protocol::ErrorBody)))]
pub async fn create_ticket_type(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
    AppJson(body): AppJson<NewTicketType>,
) -> Created<TicketType> {
    not_blank(&body.name, "name")?;
    currency(&body.currency)?;
    match (body.kind.as_str(), body.price_category_id, body.ga_quota) {
        ("seated", Some(_), None) => {}
        ("seated", _, _) => {
            return Err(CatalogError::BadRequest(
                "a seated ticket type needs a price_category_id and no ga_quota".into(),
            ));
        }
        ("general_admission", None, Some(q)) if q > 0 => {}
        ("general_admission", _, _) => return Err(CatalogError::BadRequest(
            "a general_admission ticket type needs a positive ga_quota and no price_category_id"
                .into(),
        )),
        _ => {
            return Err(CatalogError::BadRequest(
                "kind must be seated or general_admission".into(),
            ));
        }
    }
    if body.price_minor < 0 || body.min_per_order < 1 || body.max_per_order < body.min_per_order {
        return Err(CatalogError::BadRequest(
            "price_minor must not be negative and 1 <= min_per_order <= max_per_order".into(),
        ));
    }
    let mut tx = s.db.begin().await?;
    let event_id = own_event(&mut tx, &admin, &raw).await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "insert into ticket_type (tenant_id, event_id, name, kind, price_category_id, price_minor, currency, min_per_order, max_per_order, ga_quota)
         values ($1, $2, $3, $4::ticket_kind, $5, $6, $7, $8, $9, $10) returning {TICKET_TYPE_COLUMNS}"
    )))
    .bind(admin.tenant)
    .bind(event_id)
    .bind(&body.name)
    .bind(&body.kind)
    .bind(body.price_category_id)
    .bind(body.price_minor)
    .bind(&body.currency)
    .bind(body.min_per_order)
    .bind(body.max_per_order)
    .bind(body.ga_quota)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| {
        on_constraint(e, &[
            ("ticket_type_name_per_event", || CatalogError::Conflict("the event already has a ticket type of that name".into())),
            ("ticket_type_category_same_tenant", || CatalogError::NotFound("price category")),
        ])
    })?;
    let t = ticket_type(&row);
    audit(
        &mut tx,
        &admin,
        "ticket_type",
        t.ticket_type_id,
        "created",
        json!({"event": event_id, "name": t.name}),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(t)))
}

/// An event's ticket types.
#[utoipa::path(get, path = "/v1/admin/events/{event_id}/ticket-types", security(("bearer" = [])),
    responses((status = 200, body = Vec<TicketType>), (status = 404, body = marquee_protocol::ErrorBody)))]
pub async fn list_ticket_types(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
) -> Found<Vec<TicketType>> {
    let mut conn = s.db.acquire().await?;
    let event_id = own_event(&mut conn, &admin, &raw).await?;
    Ok(Json(ticket_types(&mut conn, event_id).await?))
}

pub(crate) async fn ticket_types(
    conn: &mut PgConnection,
    event_id: Uuid,
) -> Result<Vec<TicketType>, CatalogError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "select {TICKET_TYPE_COLUMNS} from ticket_type where event_id = $1 order by name"
    )))
    .bind(event_id)
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(ticket_type).collect())
}

/// A new onsale.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewOnsale {
    /// Name, e.g. `General sale`.
    #[serde(default)]
    pub name: String,
    /// Opens (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: OffsetDateTime,
    /// Closes (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ends_at: Option<OffsetDateTime>,
    /// How long a hold lasts, in seconds (default 600).
    #[serde(default = "ten_minutes")]
    pub hold_duration_seconds: i64,
    /// Most seats or tickets one buyer may hold or own for the event (default 8).
    #[serde(default = "eight")]
    pub per_user_limit: i32,
    /// Whether purchase commands need a waiting-room admission (default true).
    #[serde(default = "yes")]
    pub requires_admission: bool,
    /// When the waiting room's pre-queue opens (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub prequeue_opens_at: Option<OffsetDateTime>,
    /// Admissions per second (default 10).
    #[serde(default = "ten_f")]
    pub admission_rate: f64,
    /// Most active shoppers at once (default 500).
    #[serde(default = "five_hundred")]
    pub active_cap: i32,
}

fn ten_minutes() -> i64 {
    600
}
fn eight() -> i32 {
    8
}
fn yes() -> bool {
    true
}
fn ten_f() -> f64 {
    10.0
}
fn five_hundred() -> i32 {
    500
}

/// An onsale.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Onsale {
    /// Id.
    pub onsale_id: Uuid,
    /// The event.
    pub event_id: Uuid,
    /// Name.
    pub name: String,
    /// `scheduled`, `pre_queue`, `live`, `paused`, `sold_out` or `closed`.
    pub status: String,
    /// Opens.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: OffsetDateTime,
    /// Closes.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ends_at: Option<OffsetDateTime>,
    /// Hold duration in seconds.
    pub hold_duration_seconds: i64,
    /// Per-buyer limit.
    pub per_user_limit: i32,
    /// Whether commands need an admission.
    pub requires_admission: bool,
    /// Admissions per second.
    pub admission_rate: f64,
    /// Most active shoppers at once.
    pub active_cap: i32,
}

pub(crate) const ONSALE_COLUMNS: &str = "onsale_id, event_id, name, status::text as status, starts_at, ends_at,
    extract(epoch from hold_duration)::int8 as hold_duration_seconds, per_user_limit, requires_admission, admission_rate, active_cap";

pub(crate) fn onsale(r: &sqlx::postgres::PgRow) -> Onsale {
    Onsale {
        onsale_id: r.get("onsale_id"),
        event_id: r.get("event_id"),
        name: r.get("name"),
        status: r.get("status"),
        starts_at: r.get("starts_at"),
        ends_at: r.get("ends_at"),
        hold_duration_seconds: r.get("hold_duration_seconds"),
        per_user_limit: r.get("per_user_limit"),
        requires_admission: r.get("requires_admission"),
        admission_rate: r.get("admission_rate"),
        active_cap: r.get("active_cap"),
    }
}

/// Adds an onsale to an event (status `scheduled`).
#[utoipa::path(post, path = "/v1/admin/events/{event_id}/onsales", request_body = NewOnsale, security(("bearer" = [])),
    responses((status = 201, body = Onsale), (status = 400, body = marquee_protocol::ErrorBody), (status = 404, body = marquee_protocol::ErrorBody)))]
pub async fn create_onsale(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
    AppJson(body): AppJson<NewOnsale>,
) -> Created<Onsale> {
    if body.hold_duration_seconds <= 0
        || body.per_user_limit <= 0
        || body.active_cap <= 0
        || body.admission_rate.is_nan()
        || body.admission_rate <= 0.0
    {
        return Err(CatalogError::BadRequest(
            "hold_duration_seconds, per_user_limit, admission_rate and active_cap must be positive"
                .into(),
        ));
    }
    if body.ends_at.is_some_and(|end| end <= body.starts_at)
        || body.prequeue_opens_at.is_some_and(|p| p > body.starts_at)
    {
        return Err(CatalogError::BadRequest(
            "need prequeue_opens_at <= starts_at < ends_at".into(),
        ));
    }
    let mut tx = s.db.begin().await?;
    let event_id = own_event(&mut tx, &admin, &raw).await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "insert into onsale (tenant_id, event_id, name, starts_at, ends_at, hold_duration, per_user_limit, requires_admission, prequeue_opens_at, admission_rate, active_cap)
         values ($1, $2, $3, $4, $5, make_interval(secs => $6), $7, $8, $9, $10, $11) returning {ONSALE_COLUMNS}"
    )))
    .bind(admin.tenant)
    .bind(event_id)
    .bind(&body.name)
    .bind(body.starts_at)
    .bind(body.ends_at)
    .bind(body.hold_duration_seconds as f64)
    .bind(body.per_user_limit)
    .bind(body.requires_admission)
    .bind(body.prequeue_opens_at)
    .bind(body.admission_rate)
    .bind(body.active_cap)
    .fetch_one(&mut *tx)
    .await
    ?;
    let o = onsale(&row);
    audit(
        &mut tx,
        &admin,
        "onsale",
        o.onsale_id,
        "created",
        json!({"event": event_id}),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(o)))
}

/// An event's onsales.
#[utoipa::path(get, path = "/v1/admin/events/{event_id}/onsales", security(("bearer" = [])),
    responses((status = 200, body = Vec<Onsale>), (status = 404, body = marquee_protocol::ErrorBody)))]
pub async fn list_onsales(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
) -> Found<Vec<Onsale>> {
    let mut conn = s.db.acquire().await?;
    let event_id = own_event(&mut conn, &admin, &raw).await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "select {ONSALE_COLUMNS} from onsale where event_id = $1 order by starts_at"
    )))
    .bind(event_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Json(rows.iter().map(onsale).collect()))
}

/// One onsale.
#[utoipa::path(get, path = "/v1/admin/onsales/{onsale_id}", security(("bearer" = [])),
    responses((status = 200, body = Onsale), (status = 404, body = marquee_protocol::ErrorBody)))]
pub async fn get_onsale(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
) -> Found<Onsale> {
    let onsale_id = id(&raw, "onsale")?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "select {ONSALE_COLUMNS} from onsale where tenant_id = $1 and onsale_id = $2"
    )))
    .bind(admin.tenant)
    .bind(onsale_id)
    .fetch_optional(&s.db)
    .await?
    .ok_or(CatalogError::NotFound("onsale"))?;
    Ok(Json(onsale(&row)))
}

/// Moves an onsale along scheduled → pre_queue → live ⇄ paused → sold_out / closed.
#[utoipa::path(patch, path = "/v1/admin/onsales/{onsale_id}/status", request_body = StatusChange, security(("bearer" = [])),
    responses((status = 200, body = Onsale), (status = 404, body = marquee_protocol::ErrorBody), (status = 409, body = marquee_protocol::ErrorBody)))]
pub async fn set_onsale_status(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
    AppJson(body): AppJson<StatusChange>,
) -> Found<Onsale> {
    let mut tx = s.db.begin().await?;
    let onsale = transition(
        &mut tx,
        &admin,
        "onsale",
        &raw,
        &body.status,
        onsale_sources,
    )
    .await?;
    announce(&mut tx, &admin, onsale).await?;
    tx.commit().await?;
    get_onsale(State(s), admin, Path(raw)).await
}

/// Live admission settings; either may be left out.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdmissionChange {
    /// Admissions per second (positive).
    #[serde(default)]
    pub admission_rate: Option<f64>,
    /// Most active shoppers at once (positive).
    #[serde(default)]
    pub active_cap: Option<i32>,
}

/// Changes an onsale's admission rate or active-shopper cap, live: the admission controller
/// applies it within a second. Audited, and announced on `admin:{onsale}` and `queue:{onsale}`.
#[utoipa::path(patch, path = "/v1/admin/onsales/{onsale_id}/admission", request_body = AdmissionChange, security(("bearer" = [])),
    responses((status = 200, body = Onsale), (status = 400, body = marquee_protocol::ErrorBody), (status = 404, body = marquee_protocol::ErrorBody), (status = 409, body = marquee_protocol::ErrorBody)))]
pub async fn set_onsale_admission(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
    AppJson(body): AppJson<AdmissionChange>,
) -> Found<Onsale> {
    let onsale_id = id(&raw, "onsale")?;
    let rate_ok = body
        .admission_rate
        .is_none_or(|r| r.is_finite() && r > 0.0 && r <= 100_000.0);
    if !rate_ok || body.active_cap.is_some_and(|c| c <= 0) {
        return Err(CatalogError::BadRequest(
            "admission_rate must be in (0, 100000] and active_cap positive".into(),
        ));
    }
    if body.admission_rate.is_none() && body.active_cap.is_none() {
        return Err(CatalogError::BadRequest(
            "give admission_rate, active_cap or both".into(),
        ));
    }
    let mut tx = s.db.begin().await?;
    let before: Option<(String, f64, i32)> = sqlx::query_as(
        "select status::text, admission_rate, active_cap from onsale
         where tenant_id = $1 and onsale_id = $2 for update",
    )
    .bind(admin.tenant)
    .bind(onsale_id)
    .fetch_optional(&mut *tx)
    .await?;
    let (status, rate, cap) = before.ok_or(CatalogError::NotFound("onsale"))?;
    if matches!(status.as_str(), "sold_out" | "closed") {
        return Err(CatalogError::Conflict(format!(
            "an onsale that is {status} admits nobody"
        )));
    }
    let (new_rate, new_cap) = (
        body.admission_rate.unwrap_or(rate),
        body.active_cap.unwrap_or(cap),
    );
    sqlx::query("update onsale set admission_rate = $3, active_cap = $4 where tenant_id = $1 and onsale_id = $2")
        .bind(admin.tenant)
        .bind(onsale_id)
        .bind(new_rate)
        .bind(new_cap)
        .execute(&mut *tx)
        .await
        ?;
    audit(
        &mut tx,
        &admin,
        "onsale",
        onsale_id,
        "admission_changed",
        json!({"from": {"admission_rate": rate, "active_cap": cap},
               "to": {"admission_rate": new_rate, "active_cap": new_cap}}),
    )
    .await?;
    announce(&mut tx, &admin, onsale_id).await?;
    tx.commit().await?;
    get_onsale(State(s), admin, Path(raw)).await
}

/// Tells `admin:{onsale}` (with who made it) and `queue:{onsale}` about an operator's change
/// to the onsale's status or admission settings, through the outbox: the announcement goes out
/// when, and only if, the change commits.
async fn announce(tx: &mut PgConnection, admin: &Admin, onsale: Uuid) -> Result<(), CatalogError> {
    use marquee_protocol::queue::{OnsaleChange, QueueEvent};
    use marquee_protocol::{Channel, ChannelKind};
    let (status, admission_rate, cap): (String, f64, i32) = sqlx::query_as(
        "select status::text, admission_rate, active_cap from onsale
         where tenant_id = $1 and onsale_id = $2",
    )
    .bind(admin.tenant)
    .bind(onsale)
    .fetch_one(&mut *tx)
    .await?;
    let message = |kind: ChannelKind, by: Option<String>| {
        let channel =
            Channel::new(kind, &onsale.to_string()).expect("a UUID is a valid channel id");
        let event = QueueEvent::Changed(OnsaleChange {
            status: status.clone(),
            admission_rate,
            active_cap: cap.max(0) as u64,
            by,
        });
        let data = serde_json::value::to_raw_value(&event).expect("queue events serialize");
        crate::outbox::message(channel.as_str(), &data)
    };
    let messages = [
        message(ChannelKind::Admin, Some(admin.user.clone())),
        message(ChannelKind::Queue, None),
    ];
    crate::outbox::write(tx, admin.tenant, None, &messages).await?;
    Ok(())
}
