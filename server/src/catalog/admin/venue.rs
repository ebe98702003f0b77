//! Venues: `/v1/admin/venues`.

use super::{
    Admin, AppJson, CatalogState, Created, Found, created, ensure_tenant, field, label, name,
    own_row, own_rows,
};
use axum::extract::{Path, State};
use marquee_protocol::text;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row as _;
use utoipa::ToSchema;
use uuid::Uuid;

/// A new venue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVenue {
    /// Name.
    #[schema(schema_with = marquee_protocol::text::schema::name)]
    pub name: String,
    /// City (the public search filters by it).
    #[schema(schema_with = marquee_protocol::text::schema::label)]
    pub city: String,
    /// Street address.
    #[serde(default)]
    #[schema(schema_with = address_schema)]
    pub address: String,
    /// IANA time zone, e.g. `Europe/Lisbon` (default `UTC`).
    #[serde(default = "utc")]
    #[schema(schema_with = marquee_protocol::text::schema::label)]
    pub timezone: String,
}

/// Longest street address, in characters.
const MAX_ADDRESS_LEN: usize = 500;

fn address_schema() -> utoipa::openapi::Object {
    marquee_protocol::text::schema::optional(MAX_ADDRESS_LEN)
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
#[utoipa::path(post, path = "/v1/admin/venues", tag = "catalog", request_body = NewVenue, security(("bearer" = [])),
    responses((status = 201, body = Venue), (status = 400, body = marquee_protocol::ErrorBody), (status = 404, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn create_venue(
    State(s): State<CatalogState>,
    admin: Admin,
    AppJson(body): AppJson<NewVenue>,
) -> Created<Venue> {
    name(&body.name, "name")?;
    label(&body.city, "city", true)?;
    field(text::optional("address", &body.address, MAX_ADDRESS_LEN))?;
    label(&body.timezone, "timezone", true)?;
    let mut tx = crate::db::begin(&s.db).await?;
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
    let detail = json!({"name": v.name});
    created(tx, &admin, "venue", v.venue_id, detail, v).await
}

/// The tenant's venues.
#[utoipa::path(get, path = "/v1/admin/venues", tag = "catalog", security(("bearer" = [])), responses((status = 200, body = Vec<Venue>)))]
pub(crate) async fn list_venues(State(s): State<CatalogState>, admin: Admin) -> Found<Vec<Venue>> {
    own_rows(
        &s.db,
        &admin,
        "venue",
        VENUE_COLUMNS,
        "name, venue_id",
        venue,
    )
    .await
}

/// One venue.
#[utoipa::path(get, path = "/v1/admin/venues/{venue_id}", tag = "catalog",
    params(("venue_id" = Uuid, Path, description = "A venue id; malformed ids are as unknown as missing ones (404)")), security(("bearer" = [])),
    responses((status = 200, body = Venue), (status = 404, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn get_venue(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
) -> Found<Venue> {
    own_row(&s.db, &admin, "venue", VENUE_COLUMNS, &raw, venue).await
}
