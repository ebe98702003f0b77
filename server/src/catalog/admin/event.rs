//! Events: `/v1/admin/events`, created as drafts and moved along their statuses.

use super::{
    Admin, AppJson, CatalogError, CatalogState, Created, EventStatusChange, Found, audit, created,
    ensure_tenant, event_sources, field, label, name, own_row, own_rows, transition,
};
use crate::catalog::on_constraint;
use axum::extract::{Path, State};
use marquee_protocol::text;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row as _;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// A new event (created as a draft).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    /// The venue.
    pub venue_id: Uuid,
    /// Name.
    #[schema(schema_with = marquee_protocol::text::schema::name)]
    pub name: String,
    /// Description (searched); may span lines.
    #[serde(default)]
    #[schema(schema_with = marquee_protocol::text::schema::text)]
    pub description: String,
    /// Category, e.g. `concert` (searched and filtered).
    #[serde(default)]
    #[schema(schema_with = marquee_protocol::text::schema::optional_label)]
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

/// The refusal of an event whose `venue_id` names no venue of the caller's tenant. A 400, not a
/// 404: the route exists; an id inside the body is part of a request that cannot be served.
const UNKNOWN_VENUE: &str = "venue_id names no venue of this tenant";

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
#[utoipa::path(post, path = "/v1/admin/events", tag = "catalog", request_body = NewEvent, security(("bearer" = [])),
    responses((status = 201, body = Event), (status = 400, body = marquee_protocol::ErrorBody), (status = 404, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn create_event(
    State(s): State<CatalogState>,
    admin: Admin,
    AppJson(body): AppJson<NewEvent>,
) -> Created<Event> {
    name(&body.name, "name")?;
    field(text::multiline(
        "description",
        &body.description,
        text::MAX_TEXT_LEN,
    ))?;
    label(&body.category, "category", false)?;
    if body.ends_at.is_some_and(|end| end <= body.starts_at) {
        return Err(CatalogError::BadRequest(
            "ends_at must be after starts_at".into(),
        ));
    }
    let mut tx = crate::db::begin(&s.db).await?;
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
                CatalogError::BadRequest(UNKNOWN_VENUE.into())
            })],
        )
    })?;
    let e = event(&row);
    let detail = json!({"name": e.name});
    created(tx, &admin, "event", e.event_id, detail, e).await
}

/// The tenant's events, soonest first.
#[utoipa::path(get, path = "/v1/admin/events", tag = "catalog", security(("bearer" = [])), responses((status = 200, body = Vec<Event>)))]
pub(crate) async fn list_events(State(s): State<CatalogState>, admin: Admin) -> Found<Vec<Event>> {
    own_rows(
        &s.db,
        &admin,
        "event",
        EVENT_COLUMNS,
        "starts_at, event_id",
        event,
    )
    .await
}

/// One event.
#[utoipa::path(get, path = "/v1/admin/events/{event_id}", tag = "catalog",
    params(("event_id" = Uuid, Path, description = "An event id; malformed ids are as unknown as missing ones (404)")), security(("bearer" = [])),
    responses((status = 200, body = Event), (status = 404, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn get_event(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
) -> Found<Event> {
    own_row(&s.db, &admin, "event", EVENT_COLUMNS, &raw, event).await
}

/// Moves an event along draft → published → on_sale → sold_out, or to cancelled.
#[utoipa::path(patch, path = "/v1/admin/events/{event_id}/status", tag = "catalog",
    params(("event_id" = Uuid, Path, description = "An event id; malformed ids are as unknown as missing ones (404)")), request_body = EventStatusChange, security(("bearer" = [])),
    responses((status = 200, body = Event), (status = 404, body = marquee_protocol::ErrorBody), (status = 409, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn set_event_status(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
    AppJson(body): AppJson<EventStatusChange>,
) -> Found<Event> {
    let mut tx = crate::db::begin(&s.db).await?;
    let event = transition(&mut tx, &admin, "event", &raw, &body.status, event_sources).await?;
    if body.status == "cancelled" {
        // A cancelled event sells nothing more: its onsales close with it, in this
        // transaction, and say so on their channels. Its paid orders stand until an operator
        // refunds or cancels them; its tickets no longer admit at the gates.
        let closed: Vec<uuid::Uuid> = sqlx::query_scalar(
            "update onsale set status = 'closed' where event_id = $1 and status <> 'closed'
             returning onsale_id",
        )
        .bind(event)
        .fetch_all(&mut *tx)
        .await?;
        for onsale in closed {
            audit(
                &mut tx,
                &admin,
                "onsale",
                onsale,
                "status_changed",
                json!({"to": "closed", "because": "event_cancelled"}),
            )
            .await?;
            super::onsale::announce(&mut tx, &admin, onsale).await?;
        }
    }
    tx.commit().await?;
    get_event(State(s), admin, Path(raw)).await
}
