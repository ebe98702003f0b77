//! The audit trail: every state change an operator, a buyer or the system makes to what is on
//! sale, as rows of `audit_log` written in the transaction of the change itself (so a change
//! is never without its row, nor a row without its change).

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// Who made a change: an operator's or buyer's user id, or [`SYSTEM`].
pub type Actor<'a> = &'a str;

/// The actor of changes nobody asked for (schedules, the admission controller).
pub const SYSTEM: Actor<'static> = "system";

/// Records that `actor` did `action` to `entity` `entity_id` of `tenant`, with `detail`.
pub async fn record(
    conn: &mut PgConnection,
    tenant: Uuid,
    actor: Actor<'_>,
    entity: &str,
    entity_id: &str,
    action: &str,
    detail: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into audit_log (tenant_id, actor, entity, entity_id, action, detail)
         values ($1, $2, $3, $4, $5, $6::json)",
    )
    .bind(tenant)
    .bind(actor)
    .bind(entity)
    .bind(entity_id)
    .bind(action)
    .bind(detail.to_string())
    .execute(conn)
    .await?;
    Ok(())
}
