//! The waiting room's public HTTP route: an onsale's draw record, which anyone can check with
//! `marquee verify-shuffle`.

use super::shuffle;
use crate::http::error::ApiError;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

/// The waiting room's routes.
pub fn routes(db: PgPool) -> Router {
    Router::new()
        .route(
            "/v1/tenants/{tenant_id}/onsales/{onsale_id}/draw",
            get(onsale_draw),
        )
        .with_state(db)
}

/// The OpenAPI document of the waiting room's routes.
#[derive(OpenApi)]
#[openapi(paths(onsale_draw))]
struct ApiDoc;

/// The OpenAPI document of the waiting room's routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// An onsale's fairness record: the commitment to the pre-queue's shuffle seed from the moment
/// the pre-queue opens, then the seed and the order it gave once the onsale has started. With
/// all four fields present the body is exactly what `marquee verify-shuffle` checks.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DrawRecord {
    /// The onsale.
    pub onsale: String,
    /// Lowercase hex SHA-256 of the seed, fixed when the pre-queue opened.
    pub seed_sha256: String,
    /// The seed, lowercase hex; revealed at the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    /// The pre-queue's places in admission order; present from the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Vec<String>>,
}

/// The pre-queue draw of an onsale of a visible event: `404 not_found` until the pre-queue
/// opens (there is no commitment before).
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/onsales/{onsale_id}/draw", tag = "waiting room",
    params(("tenant_id" = Uuid, Path, description = "A tenant id; malformed ids are as unknown as missing ones (404)"), ("onsale_id" = Uuid, Path, description = "An onsale id; malformed ids are as unknown as missing ones (404)")),
    responses((status = 200, body = DrawRecord), (status = 404, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn onsale_draw(
    State(db): State<PgPool>,
    Path((tenant, onsale)): Path<(String, String)>,
) -> Result<Json<DrawRecord>, ApiError> {
    let not_found = || ApiError::not_found("onsale not found");
    let tenant = Uuid::parse_str(&tenant).map_err(|_| not_found())?;
    let onsale = Uuid::parse_str(&onsale).map_err(|_| not_found())?;
    // Only onsales of events the public can see (published, on sale or sold out).
    let row: Option<(Vec<u8>, Option<Vec<String>>)> = sqlx::query_as(
        "select o.shuffle_seed, o.shuffle_order from onsale o
         where o.tenant_id = $1 and o.onsale_id = $2 and o.shuffle_seed is not null
           and exists (select 1 from event where event_id = o.event_id
                       and status in ('published', 'on_sale', 'sold_out'))",
    )
    .bind(tenant)
    .bind(onsale)
    .fetch_optional(&db)
    .await?;
    let (seed, order) = row.ok_or_else(not_found)?;
    let seed: shuffle::Seed = seed.as_slice().try_into().map_err(|_| not_found())?;
    let revealed = order.is_some();
    Ok(Json(DrawRecord {
        onsale: onsale.to_string(),
        seed_sha256: shuffle::commitment(&seed),
        seed: revealed.then(|| hex::encode(seed)),
        order,
    }))
}
