//! Operators' order changes: refund a paid order, cancel an order.
//!
//! `POST /v1/admin/orders/{order_id}/refund` and `POST /v1/admin/orders/{order_id}/cancel`
//! (role `admin`, the order's tenant). Like a provider's payment event, the change is recorded
//! in `payment_event` (provider `operator`) and applied by the owner of the order's event in its
//! next batch, so the seats go back on sale through the one place that holds the event's
//! inventory, with a seat delta, and the buyer hears of it on their inbox. The owner then asks
//! the payment provider that took the money to give it back.
//!
//! A refund needs a paid order; a cancellation an order awaiting payment or paid. Anything else
//! is 409 `conflict`. Each action is taken once per order: asking again answers the same with
//! `duplicate: true`. Both are audited.

use super::PaymentsState;
use crate::http::error::ApiError;
use crate::http::extract::Admin;
use crate::settlement::{OPERATOR, PAYMENTS_NOTIFY, PaymentEventKind};
use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

/// The answer to an operator's order change.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderChangeRequested {
    /// The order.
    pub order: Uuid,
    /// `refund` or `cancel`.
    pub action: String,
    /// The same action was asked for before; this request changed nothing.
    pub duplicate: bool,
}

async fn request(
    state: &PaymentsState,
    admin: &Admin,
    raw: &str,
    kind: PaymentEventKind,
) -> Result<Json<OrderChangeRequested>, ApiError> {
    let order = Uuid::parse_str(raw).map_err(|_| ApiError::not_found("order not found"))?;
    let action = if kind == PaymentEventKind::Refunded {
        "refund"
    } else {
        "cancel"
    };
    let allowed: &[&str] = if kind == PaymentEventKind::Refunded {
        &["paid"]
    } else {
        &["pending_payment", "paid"]
    };
    let mut tx = crate::db::begin(&state.db).await?;
    let found: Option<(Uuid, String, Option<String>)> = sqlx::query_as(
        "select event_id, status::text, payment_ref from ticket_order
         where tenant_id = $1 and ticket_order_id = $2 for update",
    )
    .bind(admin.tenant)
    .bind(order)
    .fetch_optional(&mut *tx)
    .await?;
    let (event, status, payment_ref) =
        found.ok_or_else(|| ApiError::not_found("order not found"))?;
    let event_id = format!("{action}:{order}");
    let seen: Option<bool> = sqlx::query_scalar(
        "select true from payment_event where provider = $1 and provider_event_id = $2",
    )
    .bind(OPERATOR)
    .bind(&event_id)
    .fetch_optional(&mut *tx)
    .await?;
    if seen.is_some() {
        return Ok(Json(OrderChangeRequested {
            order,
            action: action.into(),
            duplicate: true,
        }));
    }
    if !allowed.contains(&status.as_str()) {
        return Err(ApiError::conflict(format!(
            "cannot {action} an order that is {status}"
        )));
    }
    sqlx::query(
        "insert into payment_event (provider, provider_event_id, tenant_id, event_id, ticket_order_id,
                                    kind, payment_ref, signed_at, body)
         values ($1, $2, $3, $4, $5, $6, $7, now(), $8::json)",
    )
    .bind(OPERATOR)
    .bind(&event_id)
    .bind(admin.tenant)
    .bind(event)
    .bind(order)
    .bind(kind)
    .bind(payment_ref.unwrap_or_else(|| "none".into()))
    .bind(json!({"by": admin.user, "action": action}).to_string())
    .execute(&mut *tx)
    .await
    ?;
    crate::audit::record(
        &mut tx,
        admin.tenant,
        &admin.user,
        "ticket_order",
        &order.to_string(),
        action,
        &json!({"status_before": status}),
    )
    .await?;
    sqlx::query("select pg_notify($1, $2)")
        .bind(PAYMENTS_NOTIFY)
        .bind(event.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(OrderChangeRequested {
        order,
        action: action.into(),
        duplicate: false,
    }))
}

/// Refunds a paid order: its tickets stop working, its seats go back on sale, the provider
/// gives the money back.
#[utoipa::path(post, path = "/v1/admin/orders/{order_id}/refund", tag = "orders",
    params(("order_id" = Uuid, Path, description = "An order id; malformed ids are as unknown as missing ones (404)")), security(("bearer" = [])),
    responses((status = 200, body = OrderChangeRequested), (status = 404, body = marquee_protocol::ErrorBody), (status = 409, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn refund_order(
    State(state): State<PaymentsState>,
    admin: Admin,
    Path(raw): Path<String>,
) -> Result<Json<OrderChangeRequested>, ApiError> {
    request(&state, &admin, &raw, PaymentEventKind::Refunded).await
}

/// Cancels an order awaiting payment or paid: its seats go back on sale; a paid one's tickets
/// stop working and its money goes back.
#[utoipa::path(post, path = "/v1/admin/orders/{order_id}/cancel", tag = "orders",
    params(("order_id" = Uuid, Path, description = "An order id; malformed ids are as unknown as missing ones (404)")), security(("bearer" = [])),
    responses((status = 200, body = OrderChangeRequested), (status = 404, body = marquee_protocol::ErrorBody), (status = 409, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn cancel_order(
    State(state): State<PaymentsState>,
    admin: Admin,
    Path(raw): Path<String>,
) -> Result<Json<OrderChangeRequested>, ApiError> {
    request(&state, &admin, &raw, PaymentEventKind::Cancelled).await
}
