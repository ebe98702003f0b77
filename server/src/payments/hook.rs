//! `POST /hooks/payments/{provider}`: where payment providers report what became of a payment.
//!
//! Served on the internal listener (`--internal-listen`), apart from the public one, so it
//! need not be reachable from the internet at large: only the providers' callers (or a
//! gateway in front of them) must reach it.
//!
//! A call is taken in this order, and the first failure answers:
//! 1. the provider must be configured (it has hook secrets): otherwise 404 `not_found`;
//! 2. the body must fit in [`MAX_BODY`]: otherwise 413 `too_big`;
//! 3. the `Marquee-Signature` must be genuine and fresh ([`crate::signature`]): otherwise 400
//!    `signature_missing`, `signature_invalid` or `signature_expired`;
//! 4. the body must be a [`HookEvent`]: otherwise 400 `bad_request`;
//! 5. the order must exist: otherwise 404 `not_found`.
//!
//! Then the event is recorded once, keyed by `(provider, event id)`, and the call answered
//! 200 `{"received": true, "duplicate": <bool>}`: a duplicate is acknowledged (so the provider
//! stops retrying) and changes nothing. Nothing is changed by a refused call.

use crate::http::error::ApiError;
use crate::secret::Secret;
use crate::settlement::{PAYMENTS_NOTIFY, PaymentEventKind};
use crate::signature::{self, HEADER};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use marquee_protocol::ErrorCode;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// Largest hook body accepted. Provider events are a few hundred bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// Every provider's active hook secrets.
#[derive(Clone, Default)]
pub struct HookSecrets(HashMap<String, Vec<Secret>>);

impl std::fmt::Debug for HookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(p, s)| (p, s.len())))
            .finish()
    }
}

impl HookSecrets {
    /// Parses `provider:secret` pairs separated by commas; a provider may appear several times
    /// (rotation: every one of its secrets is active).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut secrets: HashMap<String, Vec<Secret>> = HashMap::new();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (provider, secret) = pair
                .split_once(':')
                .ok_or_else(|| format!("`{pair}` is not provider:secret"))?;
            if provider.is_empty()
                || !provider
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(format!(
                    "provider `{provider}` must be lowercase letters, digits or _"
                ));
            }
            if provider == crate::settlement::OPERATOR {
                // Operators' refunds and cancellations are recorded under this name; a hook
                // by it would pass for an operator's decision.
                return Err(format!(
                    "`{provider}` is reserved for operators' own actions"
                ));
            }
            if secret.len() < crate::secret::MIN_SECRET_LEN {
                return Err(format!(
                    "the secret of provider `{provider}` is shorter than {} bytes",
                    crate::secret::MIN_SECRET_LEN
                ));
            }
            secrets
                .entry(provider.to_owned())
                .or_default()
                .push(Secret::new(secret));
        }
        Ok(Self(secrets))
    }

    /// Adds an active secret for `provider`.
    pub fn add(&mut self, provider: &str, secret: Secret) {
        self.0.entry(provider.to_owned()).or_default().push(secret);
    }

    /// The active secrets of `provider`, if it is configured.
    pub fn of(&self, provider: &str) -> Option<&[Secret]> {
        self.0.get(provider).map(Vec::as_slice)
    }
}

/// Longest provider event id or payment reference, in characters.
pub const MAX_REFERENCE_LEN: usize = 255;

/// The body of a hook call: one provider event about one order's payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HookEvent {
    /// The provider's id for this event: the deduplication key.
    #[schema(schema_with = reference_schema)]
    pub id: String,
    /// What happened: `payment.succeeded`, `payment.failed`, `payment.processing` or
    /// `payment.refunded`.
    #[serde(rename = "type")]
    #[schema(schema_with = kind_schema)]
    pub kind: PaymentEventKind,
    /// The Marquee order the payment is for (the provider got it when the payment was made).
    pub order: Uuid,
    /// The provider's reference for the payment.
    #[schema(schema_with = reference_schema)]
    pub payment: String,
    /// Amount in minor units. Optional on the wire, but a `payment.succeeded` without the
    /// order's exact amount and currency pays nothing and is refunded (docs/payments.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub amount_minor: Option<i64>,
    /// ISO 4217 currency of `amount_minor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: Option<String>,
}

fn reference_schema() -> utoipa::openapi::Object {
    marquee_protocol::text::schema::required(MAX_REFERENCE_LEN)
}

fn kind_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some([
            "payment.succeeded",
            "payment.failed",
            "payment.processing",
            "payment.refunded",
        ]))
        .build()
}

/// The answer to an accepted call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HookReceipt {
    /// Always true: the event is recorded.
    pub received: bool,
    /// The event was recorded before; this call changed nothing.
    pub duplicate: bool,
}

/// What the hook needs.
#[derive(Debug, Clone)]
pub struct HookState {
    /// The system of record.
    pub db: PgPool,
    /// Every provider's active secrets.
    pub secrets: Arc<HookSecrets>,
    /// How far a signed timestamp may be from now, in seconds.
    pub tolerance_secs: u64,
}

/// The OpenAPI document of the hook.
#[derive(utoipa::OpenApi)]
#[openapi(paths(receive))]
struct ApiDoc;

/// The OpenAPI document of the hook.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    ApiDoc::openapi()
}

/// The internal listener's routes.
pub(crate) fn router(state: HookState) -> Router {
    Router::new()
        .route("/hooks/payments/{provider}", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

fn bad(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

fn unavailable(e: &sqlx::Error) -> ApiError {
    tracing::warn!(error = %e, "payment hook: database unavailable");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable,
        "the database is unavailable; retry",
    )
}

/// A payment provider reports what became of a payment, signed with the provider's secret in
/// `Marquee-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">` (docs/payments.md).
/// The provider's event id is the deduplication key: a duplicate is acknowledged, changes
/// nothing and says `duplicate: true`. Checked in this order: provider (404), size (413),
/// signature (400 `signature_missing`, `signature_invalid`, `signature_expired`), body (400),
/// order (404).
#[utoipa::path(post, path = "/hooks/payments/{provider}", tag = "hooks",
    params(("provider" = String, Path, description = "A configured provider's name")),
    request_body = HookEvent,
    responses((status = 200, body = HookReceipt),
        (status = 400, description = "No, a bad or an expired signature, or a body that is not a payment event", body = marquee_protocol::ErrorBody),
        (status = 404, description = "No such provider, or no such order", body = marquee_protocol::ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = marquee_protocol::ErrorBody)))]
async fn receive(
    State(state): State<HookState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<HookReceipt>, ApiError> {
    let received = std::time::Instant::now();
    let secrets = state.secrets.of(&provider).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such payment provider",
        )
    })?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::TooBig,
                format!("a hook body is at most {MAX_BODY} bytes"),
            )
        } else {
            bad(ErrorCode::BadRequest, rejection.body_text())
        }
    })?;
    let header = headers.get(HEADER).map(|v| v.to_str().unwrap_or(""));
    let secrets: Vec<&[u8]> = secrets.iter().map(|s| s.expose().as_bytes()).collect();
    let signed_at = signature::verify(
        header,
        &body,
        &secrets,
        crate::clock::now_secs(),
        state.tolerance_secs,
    )
    .map_err(|e| {
        crate::metrics::METRICS.payment_hooks_refused.increment(1);
        bad(e.code(), e.to_string())
    })?;
    let event: HookEvent = crate::http::error::read_json(&body)
        .map_err(|e| bad(ErrorCode::BadRequest, format!("not a payment event: {e}")))?;
    if event.kind == PaymentEventKind::Cancelled {
        return Err(bad(
            ErrorCode::BadRequest,
            "order.cancelled is not a provider event",
        ));
    }
    for (field, value) in [("id", &event.id), ("payment", &event.payment)] {
        marquee_protocol::text::required(field, value, MAX_REFERENCE_LEN)
            .map_err(|e| bad(ErrorCode::BadRequest, e.to_string()))?;
    }
    if event.amount_minor.is_some_and(|a| a < 0) {
        return Err(bad(
            ErrorCode::BadRequest,
            "amount_minor must not be negative",
        ));
    }
    if event
        .currency
        .as_deref()
        .is_some_and(|c| c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()))
    {
        return Err(bad(
            ErrorCode::BadRequest,
            "currency must be three capital letters",
        ));
    }
    let order: Option<(Uuid, Uuid)> =
        sqlx::query_as("select tenant_id, event_id from ticket_order where ticket_order_id = $1")
            .bind(event.order)
            .fetch_optional(&state.db)
            .await
            .map_err(|e| unavailable(&e))?;
    let (tenant, event_id) = order.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such order")
    })?;
    let raw = std::str::from_utf8(&body).map_err(|_| bad(ErrorCode::BadRequest, "not UTF-8"))?;
    // Recorded, and the event's owner woken (on commit), in one statement.
    let inserted: Option<bool> = sqlx::query_scalar(
        "with recorded as (
             insert into payment_event (provider, provider_event_id, tenant_id, event_id, ticket_order_id,
                                        kind, payment_ref, amount_minor, currency, signed_at, body)
             values ($1, $2, $3, $11, $4, $5, $6, $7, $8, to_timestamp($9), $10::json)
             on conflict (provider, provider_event_id) do nothing
             returning event_id
         )
         select pg_notify($12, event_id::text) is not null from recorded",
    )
    .bind(&provider)
    .bind(&event.id)
    .bind(tenant)
    .bind(event.order)
    .bind(event.kind)
    .bind(&event.payment)
    .bind(event.amount_minor)
    .bind(event.currency.as_deref())
    .bind(signed_at as f64)
    .bind(raw)
    .bind(event_id)
    .bind(PAYMENTS_NOTIFY)
    .fetch_optional(&state.db)
    .await
    .map_err(|e| unavailable(&e))?;
    let duplicate = inserted.is_none();
    crate::metrics::METRICS
        .payment_hooks
        .increment(u64::from(!duplicate));
    if !duplicate {
        let kind = match event.kind {
            PaymentEventKind::Succeeded => "succeeded",
            PaymentEventKind::Failed => "failed",
            PaymentEventKind::Processing => "processing",
            PaymentEventKind::Refunded => "refunded",
            PaymentEventKind::Cancelled => "cancelled",
        };
        metrics::counter!("marquee_payment_events_total", "kind" => kind).increment(1);
    }
    crate::metrics::METRICS
        .payment_hook
        .record(received.elapsed().as_secs_f64());
    tracing::info!(%provider, event = %event.id, order = %event.order, kind = ?event.kind, duplicate, "payment event");
    Ok(Json(HookReceipt {
        received: true,
        duplicate,
    }))
}
