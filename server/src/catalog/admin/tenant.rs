//! The caller's own tenant: `PUT /v1/admin/tenant`.

use super::{Admin, AppJson, CatalogState, Found, audit, name};
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

/// The caller's tenant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// The tenant id (the token's `tenant` claim); if given, it must be that one.
    #[serde(default)]
    pub tenant_id: Option<Uuid>,
    /// Display name.
    #[schema(schema_with = marquee_protocol::text::schema::name)]
    pub name: String,
}

/// Creates or renames the caller's own tenant.
#[utoipa::path(put, path = "/v1/admin/tenant", tag = "catalog", request_body = Tenant, security(("bearer" = [])),
    responses((status = 200, body = Tenant), (status = 400, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn put_tenant(
    State(s): State<CatalogState>,
    admin: Admin,
    AppJson(body): AppJson<Tenant>,
) -> Found<Tenant> {
    name(&body.name, "name")?;
    if body.tenant_id.is_some_and(|id| id != admin.tenant) {
        return Err(super::CatalogError::BadRequest(
            "tenant_id must be the token's tenant (or left out)".into(),
        ));
    }
    let mut tx = crate::db::begin(&s.db).await?;
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
