//! Ticket types, seated or general admission: `/v1/admin/events/{event_id}/ticket-types`.

use super::{
    Admin, AppJson, CatalogError, CatalogState, Created, Found, created, currency, name, own_event,
};
use crate::catalog::on_constraint;
use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{PgConnection, Row as _};
use utoipa::ToSchema;
use uuid::Uuid;

/// A new ticket type.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTicketType {
    /// Name, unique in the event.
    #[schema(schema_with = marquee_protocol::text::schema::name)]
    pub name: String,
    /// `seated` (with a `price_category_id`, no `ga_quota`) or `general_admission` (with a
    /// `ga_quota`, no `price_category_id`).
    #[schema(schema_with = kind_schema)]
    pub kind: String,
    /// For seated tickets: the price category whose seats it sells (one of this event's).
    #[serde(default)]
    pub price_category_id: Option<Uuid>,
    /// Price in minor units (0 to 10^12).
    #[schema(schema_with = super::price_schema)]
    pub price_minor: i64,
    /// ISO 4217 currency, the event's one.
    #[schema(schema_with = super::currency_schema)]
    pub currency: String,
    /// Smallest quantity per order: 1 to 1,000 (default 1).
    #[serde(default = "one")]
    #[schema(minimum = 1, maximum = 1_000)]
    pub min_per_order: i32,
    /// Largest quantity per order: `min_per_order` to 1,000 (default 10).
    #[serde(default = "ten")]
    #[schema(minimum = 1, maximum = 1_000)]
    pub max_per_order: i32,
    /// For general admission: how many exist, 1 to 1,000,000.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub ga_quota: Option<i32>,
}

/// The refusal of a ticket type whose `price_category_id` names no category of its event. A
/// 400, not a 404: the event exists; an id inside the body is part of a request that cannot
/// be served.
const UNKNOWN_CATEGORY: &str = "price_category_id names no price category of this event";

fn kind_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(["seated", "general_admission"]))
        .build()
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
#[utoipa::path(post, path = "/v1/admin/events/{event_id}/ticket-types", tag = "catalog",
    params(("event_id" = Uuid, Path, description = "An event id; malformed ids are as unknown as missing ones (404)")), request_body = NewTicketType, security(("bearer" = [])),
    responses((status = 201, body = TicketType), (status = 400, body = marquee_protocol::ErrorBody), (status = 404, body = marquee_protocol::ErrorBody), (status = 409, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn create_ticket_type(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
    AppJson(body): AppJson<NewTicketType>,
) -> Created<TicketType> {
    name(&body.name, "name")?;
    currency(&body.currency)?;
    match (body.kind.as_str(), body.price_category_id, body.ga_quota) {
        ("seated", Some(_), None) => {}
        ("seated", _, _) => {
            return Err(CatalogError::BadRequest(
                "a seated ticket type needs a price_category_id and no ga_quota".into(),
            ));
        }
        ("general_admission", None, Some(q)) if (1..=super::MAX_GA_QUOTA).contains(&q) => {}
        ("general_admission", _, _) => return Err(CatalogError::BadRequest(
            "a general_admission ticket type needs a ga_quota of 1 to 1000000 and no price_category_id"
                .into(),
        )),
        _ => {
            return Err(CatalogError::BadRequest(
                "kind must be seated or general_admission".into(),
            ));
        }
    }
    super::price(body.price_minor)?;
    if body.min_per_order < 1
        || body.max_per_order < body.min_per_order
        || body.max_per_order > super::MAX_PER_ORDER
    {
        return Err(CatalogError::BadRequest(format!(
            "need 1 <= min_per_order <= max_per_order <= {}",
            super::MAX_PER_ORDER
        )));
    }
    let mut tx = crate::db::begin(&s.db).await?;
    let event_id = own_event(&mut tx, &admin, &raw).await?;
    if let Some(category) = body.price_category_id {
        // The category must be this event's: one of another event would sell nothing here.
        let ours: bool = sqlx::query_scalar(
            "select exists (select 1 from price_category
             where tenant_id = $1 and event_id = $2 and price_category_id = $3)",
        )
        .bind(admin.tenant)
        .bind(event_id)
        .bind(category)
        .fetch_one(&mut *tx)
        .await?;
        if !ours {
            return Err(CatalogError::BadRequest(UNKNOWN_CATEGORY.into()));
        }
    }
    super::event_currency(&mut tx, event_id, &body.currency).await?;
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
            ("ticket_type_category_same_tenant", || CatalogError::BadRequest(UNKNOWN_CATEGORY.into())),
        ])
    })?;
    let t = ticket_type(&row);
    let detail = json!({"event": event_id, "name": t.name});
    super::catalog_changed(&mut tx, event_id).await?;
    created(tx, &admin, "ticket_type", t.ticket_type_id, detail, t).await
}

/// An event's ticket types.
#[utoipa::path(get, path = "/v1/admin/events/{event_id}/ticket-types", tag = "catalog",
    params(("event_id" = Uuid, Path, description = "An event id; malformed ids are as unknown as missing ones (404)")), security(("bearer" = [])),
    responses((status = 200, body = Vec<TicketType>), (status = 404, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn list_ticket_types(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
) -> Found<Vec<TicketType>> {
    let mut conn = crate::db::acquire(&s.db).await?;
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
