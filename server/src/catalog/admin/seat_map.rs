//! Seat maps: a whole hall from one layout spec, `/v1/admin/events/{event_id}/seat-map`.

use super::{Admin, AppJson, CatalogError, CatalogState, Created, audit, own_event};
use crate::catalog::layout::{self, LayoutSpec};
use crate::catalog::on_constraint;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{PgConnection, Row as _};
use std::collections::HashMap;
use utoipa::ToSchema;
use uuid::Uuid;

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
pub(crate) async fn create_seat_map(
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
            "no price category named {} on this event",
            marquee_protocol::text::quoted(&unknown.category)
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
#[utoipa::path(post, path = "/v1/admin/events/{event_id}/seat-map", tag = "catalog",
    params(("event_id" = Uuid, Path, description = "An event id; malformed ids are as unknown as missing ones (404)")), request_body = LayoutSpec, security(("bearer" = [])),
    responses((status = 201, body = SeatMapCreated), (status = 400, body = marquee_protocol::ErrorBody), (status = 404, body = marquee_protocol::ErrorBody), (status = 409, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn create_seat_map_route(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
    AppJson(spec): AppJson<LayoutSpec>,
) -> Created<SeatMapCreated> {
    let mut tx = crate::db::begin(&s.db).await?;
    let event_id = own_event(&mut tx, &admin, &raw).await?;
    let created = create_seat_map(&mut tx, admin.tenant, event_id, &spec).await?;
    super::catalog_changed(&mut tx, event_id).await?;
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
