//! Operators' routes (`/v1/admin/...`), one module per resource, everything scoped by the
//! caller's tenant; the helpers they share are here.
//!
//! - [`tenant`], [`venue`], [`event`], [`category`], [`seat_map`], [`ticket_type`],
//!   [`onsale`].

pub mod category;
pub mod event;
pub mod onsale;
pub mod seat_map;
pub mod tenant;
pub mod ticket_type;
pub mod venue;

pub use category::*;
pub use event::*;
pub use onsale::*;
pub use seat_map::*;
pub use tenant::*;
pub use ticket_type::*;
pub use venue::*;

use super::{CatalogError, CatalogState, id};
pub(crate) use crate::http::error::AppJson;
pub(crate) use crate::http::extract::Admin;
use axum::Json;
use axum::http::StatusCode;
use marquee_protocol::text::{self, TextError};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use utoipa::ToSchema;
use uuid::Uuid;

pub(crate) type Created<T> = Result<(StatusCode, Json<T>), CatalogError>;
pub(crate) type Found<T> = Result<Json<T>, CatalogError>;

/// Records an operator's change in the audit trail, in the change's transaction.
pub(crate) async fn audit(
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

pub(crate) async fn ensure_tenant(
    conn: &mut PgConnection,
    admin: &Admin,
) -> Result<(), CatalogError> {
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

pub(crate) async fn own_event(
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

/// A client text field checked with one of [`marquee_protocol::text`]'s rules.
pub(crate) fn field(result: Result<(), TextError>) -> Result<(), CatalogError> {
    result.map_err(|e| CatalogError::BadRequest(e.to_string()))
}

/// A name (of a venue, event, category, ticket type, tenant): 1 to 200 bytes, one line.
pub(crate) fn name(value: &str, what: &str) -> Result<(), CatalogError> {
    field(text::required(what, value, text::MAX_NAME_LEN))
}

/// A short label (a city, a time zone, an event category, a section): up to 100 bytes, one line.
pub(crate) fn label(value: &str, what: &str, required: bool) -> Result<(), CatalogError> {
    if required {
        field(text::required(what, value, text::MAX_LABEL_LEN))
    } else {
        field(text::optional(what, value, text::MAX_LABEL_LEN))
    }
}

pub(crate) fn currency(value: &str) -> Result<(), CatalogError> {
    if value.len() == 3 && value.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(CatalogError::BadRequest(format!(
            "currency {} is not an ISO 4217 code such as EUR",
            text::quoted(value)
        )))
    }
}

/// Keeps one currency per event: an order's total adds prices of one currency only, so a
/// price category or ticket type in another currency than the event's others is refused 409.
pub(crate) async fn event_currency(
    conn: &mut PgConnection,
    event: Uuid,
    currency: &str,
) -> Result<(), CatalogError> {
    // The event's row is locked first, so two prices in two currencies created at once are
    // decided one after the other.
    sqlx::query("select 1 from event where event_id = $1 for update")
        .bind(event)
        .execute(&mut *conn)
        .await?;
    let existing: Option<String> = sqlx::query_scalar(
        "select currency::text from price_category where event_id = $1
         union select currency::text from ticket_type where event_id = $1 limit 1",
    )
    .bind(event)
    .fetch_optional(conn)
    .await?;
    match existing {
        Some(existing) if existing != currency => Err(CatalogError::Conflict(format!(
            "the event's prices are in {existing}; one currency per event"
        ))),
        _ => Ok(()),
    }
}

/// Tells the event's owner that what the event sells changed (a price category, a ticket type
/// or the seat map added): it loads the event again within a second, in the middle of an
/// onsale too.
pub(crate) async fn catalog_changed(
    conn: &mut PgConnection,
    event: Uuid,
) -> Result<(), CatalogError> {
    sqlx::query("update event set catalog_version = catalog_version + 1 where event_id = $1")
        .bind(event)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a created row in the audit trail, commits, and answers 201 with the row.
pub(crate) async fn created<T>(
    mut tx: Transaction<'static, Postgres>,
    admin: &Admin,
    entity: &str,
    id: Uuid,
    detail: Value,
    row: T,
) -> Created<T> {
    audit(&mut tx, admin, entity, id, "created", detail).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(row)))
}

/// The caller's own row of `table` (`venue`, `event`, `onsale`) with the id `raw`, read with
/// `columns`: another tenant's, a missing and a malformed id all answer `404`.
pub(crate) async fn own_row<T>(
    db: &PgPool,
    admin: &Admin,
    table: &'static str,
    columns: &str,
    raw: &str,
    read: fn(&PgRow) -> T,
) -> Found<T> {
    let row_id = id(raw, table)?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "select {columns} from {table} where tenant_id = $1 and {table}_id = $2"
    )))
    .bind(admin.tenant)
    .bind(row_id)
    .fetch_optional(db)
    .await?
    .ok_or(CatalogError::NotFound(table))?;
    Ok(Json(read(&row)))
}

/// Every row of `table` the caller's tenant owns, in `order`.
pub(crate) async fn own_rows<T>(
    db: &PgPool,
    admin: &Admin,
    table: &'static str,
    columns: &str,
    order: &str,
    read: fn(&PgRow) -> T,
) -> Found<Vec<T>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "select {columns} from {table} where tenant_id = $1 order by {order}"
    )))
    .bind(admin.tenant)
    .fetch_all(db)
    .await?;
    Ok(Json(rows.iter().map(read).collect()))
}

/// An optional field that, when present, must hold a value: `null` is refused like any other
/// wrong type (`#[serde(default, deserialize_with = "given")]`), so the documented schema
/// (`nullable: false`) and the server agree.
pub(crate) fn given<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// Most an amount in minor units may be (10 billion in major units of a two-decimal currency):
/// an order's total adds up prices and must never overflow.
pub const MAX_PRICE_MINOR: i64 = 1_000_000_000_000;

/// Most of one ticket type one order may take, and most general-admission tickets a type may
/// have.
pub const MAX_PER_ORDER: i32 = 1_000;
/// See [`MAX_PER_ORDER`].
pub const MAX_GA_QUOTA: i32 = 1_000_000;

/// An event's status change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventStatusChange {
    /// The new status: `published`, `on_sale`, `sold_out` or `cancelled` (`draft` is only
    /// where events start).
    #[schema(schema_with = settable_event_status)]
    pub status: String,
}

/// An onsale's status change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OnsaleStatusChange {
    /// The new status: `pre_queue`, `live`, `paused`, `sold_out` or `closed` (`scheduled` is
    /// only where onsales start).
    #[schema(schema_with = settable_onsale_status)]
    pub status: String,
}

fn string_enum(values: &[&'static str]) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(values.iter().copied()))
        .build()
}

fn settable_event_status() -> utoipa::openapi::Object {
    string_enum(&["published", "on_sale", "sold_out", "cancelled"])
}

fn settable_onsale_status() -> utoipa::openapi::Object {
    string_enum(&["pre_queue", "live", "paused", "sold_out", "closed"])
}

/// A price in minor units, for schemas: 0 to [`MAX_PRICE_MINOR`].
pub(crate) fn price_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Integer)
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Int64,
        )))
        .minimum(Some(0))
        .maximum(Some(MAX_PRICE_MINOR))
        .build()
}

/// An ISO 4217 code, for schemas.
pub(crate) fn currency_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .pattern(Some("^[A-Z]{3}$"))
        .build()
}

/// A price in minor units from a client: 0 to [`MAX_PRICE_MINOR`].
pub(crate) fn price(value: i64) -> Result<(), CatalogError> {
    if (0..=MAX_PRICE_MINOR).contains(&value) {
        Ok(())
    } else {
        Err(CatalogError::BadRequest(format!(
            "price_minor must be 0 to {MAX_PRICE_MINOR}"
        )))
    }
}

/// The statuses an event may move to `to` from.
pub(crate) fn event_sources(to: &str) -> Option<&'static [&'static str]> {
    Some(match to {
        "published" => &["draft"],
        "on_sale" => &["published", "sold_out"],
        "sold_out" => &["on_sale"],
        "cancelled" => &["draft", "published", "on_sale", "sold_out"],
        _ => return None,
    })
}

/// The statuses an onsale may move to `to` from.
pub(crate) fn onsale_sources(to: &str) -> Option<&'static [&'static str]> {
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
pub(crate) async fn transition(
    tx: &mut PgConnection,
    admin: &Admin,
    table: &'static str,
    raw: &str,
    to: &str,
    sources: fn(&str) -> Option<&'static [&'static str]>,
) -> Result<Uuid, CatalogError> {
    let row_id = id(raw, table)?;
    let from = sources(to).ok_or_else(|| {
        CatalogError::BadRequest(format!(
            "{} is not an {table} status one can set",
            text::quoted(to)
        ))
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
