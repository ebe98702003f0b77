//! Price categories: `/v1/admin/events/{event_id}/price-categories`.

use super::{
    Admin, AppJson, CatalogError, CatalogState, Created, Found, audit, currency, name, own_event,
};
use crate::catalog::on_constraint;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{PgConnection, Row as _};
use utoipa::ToSchema;
use uuid::Uuid;

/// A new price category.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCategory {
    /// Name, unique in the event (the layout spec refers to it).
    #[schema(schema_with = marquee_protocol::text::schema::name)]
    pub name: String,
    /// Price in minor units (0 to 10^12).
    #[schema(schema_with = super::price_schema)]
    pub price_minor: i64,
    /// ISO 4217 currency, the event's one.
    #[schema(schema_with = super::currency_schema)]
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
#[utoipa::path(post, path = "/v1/admin/events/{event_id}/price-categories", tag = "catalog",
    params(("event_id" = Uuid, Path, description = "An event id; malformed ids are as unknown as missing ones (404)")), request_body = NewCategory, security(("bearer" = [])),
    responses((status = 201, body = Category), (status = 400, body = marquee_protocol::ErrorBody), (status = 404, body = marquee_protocol::ErrorBody), (status = 409, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn create_category(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
    AppJson(body): AppJson<NewCategory>,
) -> Created<Category> {
    name(&body.name, "name")?;
    currency(&body.currency)?;
    super::price(body.price_minor)?;
    let mut tx = crate::db::begin(&s.db).await?;
    let event_id = own_event(&mut tx, &admin, &raw).await?;
    super::event_currency(&mut tx, event_id, &body.currency).await?;
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
    super::catalog_changed(&mut tx, event_id).await?;
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
#[utoipa::path(get, path = "/v1/admin/events/{event_id}/price-categories", tag = "catalog",
    params(("event_id" = Uuid, Path, description = "An event id; malformed ids are as unknown as missing ones (404)")), security(("bearer" = [])),
    responses((status = 200, body = Vec<Category>), (status = 404, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn list_categories(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
) -> Found<Vec<Category>> {
    let mut conn = crate::db::acquire(&s.db).await?;
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
