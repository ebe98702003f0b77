//! Tickets over HTTP: a buyer's tickets, the public key gates verify codes with, and check-in
//! for gates that speak plain HTTP.
//!
//! - `GET /v1/me/tickets`: the caller's valid tickets (any token with a tenant).
//! - `GET /v1/tickets/public-key`: the Ed25519 public key of the ticket codes (public).
//! - `POST /v1/checkin`: one scan (role `gate`), answered with its [`ScanResult`].
//! - `POST /v1/checkin/batch`: up to 1,000 scans an offline gate kept (role `gate`), each
//!   answered as if sent alone, in order.
//! - `POST /v1/me/tickets/{ticket_id}/transfer`: gives one of the caller's tickets to another
//!   account of the tenant. The ticket's version goes up, so every code signed before stops
//!   working at the gates; the new holder finds it, with its new code, in their tickets.

use super::checkin::{Checkin, CheckinError};
use crate::auth::{Identity, Role, Verifier};
use crate::http::error::{ApiError, AppJson};
use crate::http::extract::{bearer_identity, tenant_of};
use crate::ticket_code::TicketClaim;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use marquee_protocol::ErrorCode;
use marquee_protocol::booking::Ticket;
use marquee_protocol::checkin::{Scan, ScanResult};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

/// Most scans in one batch upload.
pub const MAX_BATCH: usize = 1000;

/// What the ticket routes need.
#[derive(Debug, Clone)]
pub struct TicketsState {
    /// Scans, and the database and key behind them.
    pub checkin: Checkin,
    /// Token verifier.
    pub verifier: Arc<Verifier>,
    /// Write a notification for every transfer ([`crate::notify`]).
    pub notify: bool,
}

/// The OpenAPI document of the ticket routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(my_tickets, ticket_qr, public_key, checkin, checkin_batch, transfer))]
struct ApiDoc;

/// The OpenAPI document of the ticket routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    ApiDoc::openapi()
}

/// The ticket routes.
pub(crate) fn router(state: TicketsState) -> Router {
    Router::new()
        .route("/v1/me/tickets", get(my_tickets))
        .route("/v1/tickets/public-key", get(public_key))
        .route("/v1/checkin", post(checkin))
        .route("/v1/checkin/batch", post(checkin_batch))
        .route("/v1/me/tickets/{ticket_id}/transfer", post(transfer))
        .route("/v1/me/tickets/{ticket_id}/qr.svg", get(ticket_qr))
        .with_state(state)
}

/// A gate: a token with the `gate` role and a tenant.
fn gate(state: &TicketsState, headers: &HeaderMap) -> Result<(Identity, Uuid), ApiError> {
    let identity = bearer_identity(&state.verifier, headers)?;
    let tenant = tenant_of(&identity)?;
    if !identity.has_role(Role::Gate) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "check-in needs the gate role",
        ));
    }
    Ok((identity, tenant))
}

impl From<CheckinError> for ApiError {
    fn from(e: CheckinError) -> Self {
        let status = match &e {
            CheckinError::BadRequest(_) => StatusCode::BAD_REQUEST,
            CheckinError::Conflict(_) => StatusCode::CONFLICT,
            CheckinError::Db(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.code(), e.message())
    }
}

/// The caller's tickets.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MyTickets {
    /// Valid tickets, oldest first, each with its current code.
    pub tickets: Vec<Ticket>,
}

/// The caller's valid tickets, each with its current code (403 for a token without a tenant).
#[utoipa::path(get, path = "/v1/me/tickets", tag = "tickets", security(("bearer" = [])),
    responses((status = 200, body = MyTickets)))]
async fn my_tickets(
    State(state): State<TicketsState>,
    headers: HeaderMap,
) -> Result<Json<MyTickets>, ApiError> {
    let identity = bearer_identity(&state.verifier, &headers)?;
    let tenant = tenant_of(&identity)?;
    let rows: Vec<(Uuid, Uuid, Uuid, Option<i32>, i32)> = sqlx::query_as(
        "select t.ticket_id, t.event_id, t.ticket_type_id, s.seat_index, t.version
         from ticket t left join seat s on s.event_id = t.event_id and s.seat_id = t.seat_id
         where t.tenant_id = $1 and t.holder = $2 and t.status = 'valid'
         order by t.ticket_id limit 10000",
    )
    .bind(tenant)
    .bind(&identity.user)
    .fetch_all(&state.checkin.db)
    .await
    .map_err(CheckinError::Db)?;
    let key = &state.checkin.key;
    let tickets = rows
        .into_iter()
        .map(|(ticket, event, ticket_type, seat, version)| Ticket {
            ticket: ticket.to_string(),
            event: event.to_string(),
            ticket_type: ticket_type.to_string(),
            seat: seat.map(|s| s as u32),
            version: version as u32,
            qr: key.sign(&TicketClaim {
                ticket,
                event,
                version: version as u32,
            }),
        })
        .collect();
    Ok(Json(MyTickets { tickets }))
}

/// One of the caller's valid tickets' code as a QR image (SVG), rendered here with the `qrcode`
/// crate so no page draws codes by hand. A page fetches it with its bearer token and shows it.
#[utoipa::path(get, path = "/v1/me/tickets/{ticket_id}/qr.svg", tag = "tickets", security(("bearer" = [])),
    params(("ticket_id" = Uuid, Path, description = "One of the caller's valid tickets")),
    responses((status = 200, description = "The code as an SVG image", content_type = "image/svg+xml", body = String),
        (status = 404, description = "No such valid ticket of the caller's (or not a UUID)", body = marquee_protocol::ErrorBody)))]
async fn ticket_qr(
    State(state): State<TicketsState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    let identity = bearer_identity(&state.verifier, &headers)?;
    let tenant = tenant_of(&identity)?;
    let not_found = || ApiError::not_found("no such ticket of yours");
    let ticket = Uuid::parse_str(&raw).map_err(|_| not_found())?;
    let row: Option<(Uuid, i32)> = sqlx::query_as(
        "select event_id, version from ticket
         where tenant_id = $1 and holder = $2 and ticket_id = $3 and status = 'valid'",
    )
    .bind(tenant)
    .bind(&identity.user)
    .bind(ticket)
    .fetch_optional(&state.checkin.db)
    .await
    .map_err(CheckinError::Db)?;
    let (event, version) = row.ok_or_else(not_found)?;
    let code = state.checkin.key.sign(&TicketClaim {
        ticket,
        event,
        version: version as u32,
    });
    let svg = qr_svg(&code);
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "image/svg+xml"),
            (axum::http::header::CACHE_CONTROL, "private, no-store"),
        ],
        svg,
    )
        .into_response())
}

/// A QR code of `text` as SVG: black modules on white with a quiet zone, scalable.
pub fn qr_svg(text: &str) -> String {
    use qrcode::render::svg;
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .expect("a ticket code fits in a QR code");
    code.render::<svg::Color<'_>>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build()
}

/// The key gates check codes with.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublicKey {
    /// Always `Ed25519`.
    pub algorithm: String,
    /// The public key, hex (32 bytes).
    pub public_key: String,
    /// The code format, `MQ1` (see docs/payments.md).
    pub format: String,
}

/// The Ed25519 public key gates verify ticket codes with, offline.
#[utoipa::path(get, path = "/v1/tickets/public-key", tag = "tickets",
    responses((status = 200, body = PublicKey)))]
async fn public_key(State(state): State<TicketsState>) -> Json<PublicKey> {
    Json(PublicKey {
        algorithm: "Ed25519".into(),
        public_key: state.checkin.key.public_hex(),
        format: "MQ1".into(),
    })
}

/// One scan by a gate (role `gate`): admitted, already checked in, or rejected. A scan sent
/// again with its `scan_id` gets its first answer; the id with another code is 409.
#[utoipa::path(post, path = "/v1/checkin", tag = "check-in", security(("bearer" = [])),
    request_body = Scan,
    responses((status = 200, body = ScanResult),
        (status = 409, description = "The scan_id was used before for another code or gate", body = marquee_protocol::ErrorBody)))]
async fn checkin(
    State(state): State<TicketsState>,
    headers: HeaderMap,
    body: AppJson<Scan>,
) -> Result<Json<ScanResult>, ApiError> {
    let (identity, tenant) = gate(&state, &headers)?;
    Ok(Json(
        state.checkin.scan(tenant, &identity.user, &body.0).await?,
    ))
}

/// Scans an offline gate kept.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanBatch {
    /// The scans, in the order they were made (at most 1,000).
    #[schema(max_items = 1000)]
    pub scans: Vec<Scan>,
}

/// The answers to a batch, in its order.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScanResults {
    /// One per scan.
    pub results: Vec<ScanResult>,
}

/// Up to 1,000 scans an offline gate kept, each answered as if sent alone, in order. Every
/// scan is checked before any is applied: a malformed one refuses the batch unchanged.
#[utoipa::path(post, path = "/v1/checkin/batch", tag = "check-in", security(("bearer" = [])),
    request_body = ScanBatch,
    responses((status = 200, body = ScanResults),
        (status = 409, description = "A scan_id was used before for another code or gate; the scans before it in the batch stand", body = marquee_protocol::ErrorBody)))]
async fn checkin_batch(
    State(state): State<TicketsState>,
    headers: HeaderMap,
    body: AppJson<ScanBatch>,
) -> Result<Json<ScanResults>, ApiError> {
    let (identity, tenant) = gate(&state, &headers)?;
    let scans = body.0.scans;
    if scans.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            format!("at most {MAX_BATCH} scans per batch"),
        ));
    }
    // Every scan is checked before any is applied: a bad one refuses the batch unchanged.
    for scan in &scans {
        Checkin::check(scan)?;
    }
    let mut results = Vec::with_capacity(scans.len());
    for scan in &scans {
        results.push(state.checkin.scan(tenant, &identity.user, scan).await?);
    }
    Ok(Json(ScanResults { results }))
}

/// A transfer: the account to give the ticket to.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// The new holder's user id (`sub`), in the caller's tenant: 1 to 91 characters from
    /// `[A-Za-z0-9_.@-]`, and not the caller.
    #[schema(pattern = r"^[A-Za-z0-9_.@-]{1,91}$")]
    pub to: String,
}

/// A done transfer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Transferred {
    /// The ticket.
    pub ticket: String,
    /// Its new holder.
    pub to: String,
    /// Its new version: codes of older versions no longer work.
    pub version: u32,
}

/// Gives one of the caller's valid tickets to another account of the tenant. Its version goes
/// up, so every code signed before stops working at the gates.
#[utoipa::path(post, path = "/v1/me/tickets/{ticket_id}/transfer", tag = "tickets", security(("bearer" = [])),
    params(("ticket_id" = Uuid, Path, description = "One of the caller's tickets")),
    request_body = TransferRequest,
    responses((status = 200, body = Transferred),
        (status = 404, description = "No such ticket of the caller's (or not a UUID)", body = marquee_protocol::ErrorBody),
        (status = 409, description = "The ticket was cancelled, refunded or checked in already", body = marquee_protocol::ErrorBody)))]
async fn transfer(
    State(state): State<TicketsState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: AppJson<TransferRequest>,
) -> Result<Json<Transferred>, ApiError> {
    let identity = bearer_identity(&state.verifier, &headers)?;
    let tenant = tenant_of(&identity)?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such ticket");
    let ticket = Uuid::parse_str(&raw).map_err(|_| not_found())?;
    let to = body.0.to;
    // A user id is what a token's `sub` may be: one that names an inbox of this tenant.
    let is_user_id = marquee_protocol::Channel::inbox(Some(&tenant.to_string()), &to).is_ok();
    if !is_user_id || to == identity.user {
        // A user id of a tenant fits its inbox's channel id: `{tenant}/{user}`.
        let longest = marquee_protocol::channel::MAX_CHANNEL_ID_LEN - tenant.to_string().len() - 1;
        return Err(ApiError::bad_request(format!(
            "to must be another user id: 1 to {longest} characters from [A-Za-z0-9_.@-]"
        )));
    }
    let db = &state.checkin.db;
    let mut tx = crate::db::begin(db).await.map_err(CheckinError::Db)?;
    let row: Option<(String, Option<i64>)> = sqlx::query_as(
        "select status::text, (extract(epoch from checked_in_at) * 1000)::int8
         from ticket where ticket_id = $1 and tenant_id = $2 and holder = $3 for update",
    )
    .bind(ticket)
    .bind(tenant)
    .bind(&identity.user)
    .fetch_optional(&mut *tx)
    .await
    .map_err(CheckinError::Db)?;
    let conflict = |m: &str| ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, m);
    match row {
        None => return Err(not_found()),
        Some((status, _)) if status != "valid" => {
            return Err(conflict("the ticket was cancelled or refunded"));
        }
        Some((_, Some(_))) => return Err(conflict("the ticket is checked in already")),
        Some(_) => {}
    }
    let version: i32 = sqlx::query_scalar(
        "update ticket set holder = $2, version = version + 1, updated_at = now()
         where ticket_id = $1 returning version",
    )
    .bind(ticket)
    .bind(&to)
    .fetch_one(&mut *tx)
    .await
    .map_err(CheckinError::Db)?;
    crate::audit::record(
        &mut tx,
        tenant,
        &identity.user,
        "ticket",
        &ticket.to_string(),
        "transferred",
        &serde_json::json!({"to": to, "version": version}),
    )
    .await
    .map_err(CheckinError::Db)?;
    if state.notify {
        let data = serde_json::json!({
            "ticket": ticket, "from": identity.user, "to": to, "version": version,
        });
        crate::outbox::notification(&mut tx, tenant, "ticket.transferred", &data)
            .await
            .map_err(CheckinError::Db)?;
    }
    tx.commit().await.map_err(CheckinError::Db)?;
    Ok(Json(Transferred {
        ticket: ticket.to_string(),
        to,
        version: version as u32,
    }))
}
