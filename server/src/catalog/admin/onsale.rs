//! Onsales: `/v1/admin/events/{event_id}/onsales` and `/v1/admin/onsales/{onsale_id}`, with
//! their statuses and live admission settings, announced on `admin:` and `queue:` channels.

use super::{
    Admin, AppJson, CatalogError, CatalogState, Created, Found, OnsaleStatusChange, audit, created,
    onsale_sources, own_event, own_row, transition,
};
use crate::catalog::id;
use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{PgConnection, Row as _};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// A new onsale.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOnsale {
    /// Name, e.g. `General sale`.
    #[serde(default)]
    #[schema(schema_with = onsale_name)]
    pub name: String,
    /// Opens (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: OffsetDateTime,
    /// Closes (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ends_at: Option<OffsetDateTime>,
    /// How long a hold lasts, in seconds: 1 to 86,400 (default 600).
    #[serde(default = "ten_minutes")]
    #[schema(minimum = 1, maximum = 86_400)]
    pub hold_duration_seconds: i64,
    /// Most seats or tickets one buyer may hold or own for the event: 1 to 1,000 (default 8).
    #[serde(default = "eight")]
    #[schema(minimum = 1, maximum = 1_000)]
    pub per_user_limit: i32,
    /// Whether purchase commands need a waiting-room admission (default true).
    #[serde(default = "yes")]
    pub requires_admission: bool,
    /// When the waiting room's pre-queue opens (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub prequeue_opens_at: Option<OffsetDateTime>,
    /// Admissions per second: above 0, at most 100,000 (default 10).
    #[serde(default = "ten_f")]
    #[schema(exclusive_minimum = 0, maximum = 100_000)]
    pub admission_rate: f64,
    /// Most active shoppers at once: 1 to 1,000,000 (default 500).
    #[serde(default = "five_hundred")]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub active_cap: i32,
}

/// Most admissions a second an onsale may be set to.
pub const MAX_ADMISSION_RATE: f64 = 100_000.0;
/// Most active shoppers an onsale may be set to.
pub const MAX_ACTIVE_CAP: i32 = 1_000_000;
/// Longest hold, in seconds (a day).
pub const MAX_HOLD_SECONDS: i64 = 86_400;
/// Most seats or tickets per buyer an onsale may allow.
pub const MAX_PER_USER: i32 = 1_000;

fn onsale_name() -> utoipa::openapi::Object {
    marquee_protocol::text::schema::optional(marquee_protocol::text::MAX_NAME_LEN)
}

/// Whether an admission rate is one an onsale takes: finite, above 0, at most the maximum.
fn rate_ok(rate: f64) -> bool {
    rate.is_finite() && rate > 0.0 && rate <= MAX_ADMISSION_RATE
}

fn ten_minutes() -> i64 {
    600
}
fn eight() -> i32 {
    8
}
fn yes() -> bool {
    true
}
fn ten_f() -> f64 {
    10.0
}
fn five_hundred() -> i32 {
    500
}

/// An onsale.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Onsale {
    /// Id.
    pub onsale_id: Uuid,
    /// The event.
    pub event_id: Uuid,
    /// Name.
    pub name: String,
    /// `scheduled`, `pre_queue`, `live`, `paused`, `sold_out` or `closed`.
    pub status: String,
    /// Opens.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: OffsetDateTime,
    /// Closes.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ends_at: Option<OffsetDateTime>,
    /// Hold duration in seconds.
    pub hold_duration_seconds: i64,
    /// Per-buyer limit.
    pub per_user_limit: i32,
    /// Whether commands need an admission.
    pub requires_admission: bool,
    /// Admissions per second.
    pub admission_rate: f64,
    /// Most active shoppers at once.
    pub active_cap: i32,
}

pub(crate) const ONSALE_COLUMNS: &str = "onsale_id, event_id, name, status::text as status, starts_at, ends_at,
    extract(epoch from hold_duration)::int8 as hold_duration_seconds, per_user_limit, requires_admission, admission_rate, active_cap";

pub(crate) fn onsale(r: &sqlx::postgres::PgRow) -> Onsale {
    Onsale {
        onsale_id: r.get("onsale_id"),
        event_id: r.get("event_id"),
        name: r.get("name"),
        status: r.get("status"),
        starts_at: r.get("starts_at"),
        ends_at: r.get("ends_at"),
        hold_duration_seconds: r.get("hold_duration_seconds"),
        per_user_limit: r.get("per_user_limit"),
        requires_admission: r.get("requires_admission"),
        admission_rate: r.get("admission_rate"),
        active_cap: r.get("active_cap"),
    }
}

/// Adds an onsale to an event (status `scheduled`).
#[utoipa::path(post, path = "/v1/admin/events/{event_id}/onsales", tag = "catalog",
    params(("event_id" = Uuid, Path, description = "An event id; malformed ids are as unknown as missing ones (404)")), request_body = NewOnsale, security(("bearer" = [])),
    responses((status = 201, body = Onsale), (status = 400, body = marquee_protocol::ErrorBody), (status = 404, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn create_onsale(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
    AppJson(body): AppJson<NewOnsale>,
) -> Created<Onsale> {
    super::field(marquee_protocol::text::optional(
        "name",
        &body.name,
        marquee_protocol::text::MAX_NAME_LEN,
    ))?;
    if !(1..=MAX_HOLD_SECONDS).contains(&body.hold_duration_seconds)
        || !(1..=MAX_PER_USER).contains(&body.per_user_limit)
        || !(1..=MAX_ACTIVE_CAP).contains(&body.active_cap)
        || !rate_ok(body.admission_rate)
    {
        return Err(CatalogError::BadRequest(format!(
            "need 1 <= hold_duration_seconds <= {MAX_HOLD_SECONDS}, 1 <= per_user_limit <= \
             {MAX_PER_USER}, 0 < admission_rate <= {MAX_ADMISSION_RATE} and 1 <= active_cap <= \
             {MAX_ACTIVE_CAP}"
        )));
    }
    if body.ends_at.is_some_and(|end| end <= body.starts_at)
        || body.prequeue_opens_at.is_some_and(|p| p > body.starts_at)
    {
        return Err(CatalogError::BadRequest(
            "need prequeue_opens_at <= starts_at < ends_at".into(),
        ));
    }
    let mut tx = crate::db::begin(&s.db).await?;
    let event_id = own_event(&mut tx, &admin, &raw).await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "insert into onsale (tenant_id, event_id, name, starts_at, ends_at, hold_duration, per_user_limit, requires_admission, prequeue_opens_at, admission_rate, active_cap)
         values ($1, $2, $3, $4, $5, make_interval(secs => $6), $7, $8, $9, $10, $11) returning {ONSALE_COLUMNS}"
    )))
    .bind(admin.tenant)
    .bind(event_id)
    .bind(&body.name)
    .bind(body.starts_at)
    .bind(body.ends_at)
    .bind(body.hold_duration_seconds as f64)
    .bind(body.per_user_limit)
    .bind(body.requires_admission)
    .bind(body.prequeue_opens_at)
    .bind(body.admission_rate)
    .bind(body.active_cap)
    .fetch_one(&mut *tx)
    .await
    ?;
    let o = onsale(&row);
    let detail = json!({"event": event_id});
    created(tx, &admin, "onsale", o.onsale_id, detail, o).await
}

/// An event's onsales.
#[utoipa::path(get, path = "/v1/admin/events/{event_id}/onsales", tag = "catalog",
    params(("event_id" = Uuid, Path, description = "An event id; malformed ids are as unknown as missing ones (404)")), security(("bearer" = [])),
    responses((status = 200, body = Vec<Onsale>), (status = 404, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn list_onsales(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
) -> Found<Vec<Onsale>> {
    let mut conn = crate::db::acquire(&s.db).await?;
    let event_id = own_event(&mut conn, &admin, &raw).await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "select {ONSALE_COLUMNS} from onsale where event_id = $1 order by starts_at"
    )))
    .bind(event_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Json(rows.iter().map(onsale).collect()))
}

/// One onsale.
#[utoipa::path(get, path = "/v1/admin/onsales/{onsale_id}", tag = "catalog",
    params(("onsale_id" = Uuid, Path, description = "An onsale id; malformed ids are as unknown as missing ones (404)")), security(("bearer" = [])),
    responses((status = 200, body = Onsale), (status = 404, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn get_onsale(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
) -> Found<Onsale> {
    own_row(&s.db, &admin, "onsale", ONSALE_COLUMNS, &raw, onsale).await
}

/// Moves an onsale along scheduled → pre_queue → live ⇄ paused → sold_out / closed.
#[utoipa::path(patch, path = "/v1/admin/onsales/{onsale_id}/status", tag = "catalog",
    params(("onsale_id" = Uuid, Path, description = "An onsale id; malformed ids are as unknown as missing ones (404)")), request_body = OnsaleStatusChange, security(("bearer" = [])),
    responses((status = 200, body = Onsale), (status = 404, body = marquee_protocol::ErrorBody), (status = 409, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn set_onsale_status(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
    AppJson(body): AppJson<OnsaleStatusChange>,
) -> Found<Onsale> {
    let mut tx = crate::db::begin(&s.db).await?;
    if matches!(body.status.as_str(), "pre_queue" | "live") {
        selling_event(&mut tx, &admin, &raw).await?;
    }
    let onsale = transition(
        &mut tx,
        &admin,
        "onsale",
        &raw,
        &body.status,
        onsale_sources,
    )
    .await?;
    if body.status == "pre_queue" {
        // The pre-queue's seed is drawn with the change, so its commitment is on the public
        // draw record the moment the pre-queue opens (the admission controller publishes it
        // and keeps this seed).
        let seed: [u8; 32] = rand::random();
        sqlx::query(
            "update onsale set shuffle_seed = coalesce(shuffle_seed, $2) where onsale_id = $1",
        )
        .bind(onsale)
        .bind(&seed[..])
        .execute(&mut *tx)
        .await?;
    }
    announce(&mut tx, &admin, onsale).await?;
    tx.commit().await?;
    if let (Some(pauses), "paused" | "live") = (&s.pauses, body.status.as_str()) {
        // After the commit: the admission controller, should it read the settings in
        // between, finds the line and Postgres agreeing.
        if let Err(error) = pauses.switch(onsale, body.status == "paused").await {
            tracing::warn!(%onsale, error, "the line did not switch now; the admission controller will within a second");
        }
    }
    get_onsale(State(s), admin, Path(raw)).await
}

/// Refuses opening an onsale whose event the public cannot see: a draft's (publish the event
/// first) or a cancelled one's.
async fn selling_event(
    tx: &mut sqlx::PgConnection,
    admin: &Admin,
    raw: &str,
) -> Result<(), CatalogError> {
    let onsale = id(raw, "onsale")?;
    let status: Option<String> = sqlx::query_scalar(
        "select e.status::text from onsale o join event e on e.event_id = o.event_id
         where o.tenant_id = $1 and o.onsale_id = $2",
    )
    .bind(admin.tenant)
    .bind(onsale)
    .fetch_optional(&mut *tx)
    .await?;
    match status.as_deref() {
        None => Err(CatalogError::NotFound("onsale")),
        Some(status @ ("draft" | "cancelled")) => Err(CatalogError::Conflict(format!(
            "an onsale of an event that is {status} cannot open; publish the event first"
        ))),
        Some(_) => Ok(()),
    }
}

/// Live admission settings: at least one of the two.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdmissionChange {
    /// Admissions per second: above 0, at most 100,000.
    #[serde(default, deserialize_with = "super::given")]
    #[schema(exclusive_minimum = 0, maximum = 100_000, nullable = false)]
    pub admission_rate: Option<f64>,
    /// Most active shoppers at once: 1 to 1,000,000.
    #[serde(default, deserialize_with = "super::given")]
    #[schema(minimum = 1, maximum = 1_000_000, nullable = false)]
    pub active_cap: Option<i32>,
}

/// Changes an onsale's admission rate or active-shopper cap, live: the admission controller
/// applies it within a second. Audited, and announced on `admin:{onsale}` and `queue:{onsale}`.
#[utoipa::path(patch, path = "/v1/admin/onsales/{onsale_id}/admission", tag = "catalog",
    params(("onsale_id" = Uuid, Path, description = "An onsale id; malformed ids are as unknown as missing ones (404)")), request_body = AdmissionChange, security(("bearer" = [])),
    responses((status = 200, body = Onsale), (status = 400, body = marquee_protocol::ErrorBody), (status = 404, body = marquee_protocol::ErrorBody), (status = 409, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn set_onsale_admission(
    State(s): State<CatalogState>,
    admin: Admin,
    Path(raw): Path<String>,
    AppJson(body): AppJson<AdmissionChange>,
) -> Found<Onsale> {
    let onsale_id = id(&raw, "onsale")?;
    if !body.admission_rate.is_none_or(rate_ok)
        || body
            .active_cap
            .is_some_and(|c| !(1..=MAX_ACTIVE_CAP).contains(&c))
    {
        return Err(CatalogError::BadRequest(format!(
            "admission_rate must be in (0, {MAX_ADMISSION_RATE}] and active_cap in 1..={MAX_ACTIVE_CAP}"
        )));
    }
    if body.admission_rate.is_none() && body.active_cap.is_none() {
        return Err(CatalogError::BadRequest(
            "give admission_rate, active_cap or both".into(),
        ));
    }
    let mut tx = crate::db::begin(&s.db).await?;
    let before: Option<(String, f64, i32)> = sqlx::query_as(
        "select status::text, admission_rate, active_cap from onsale
         where tenant_id = $1 and onsale_id = $2 for update",
    )
    .bind(admin.tenant)
    .bind(onsale_id)
    .fetch_optional(&mut *tx)
    .await?;
    let (status, rate, cap) = before.ok_or(CatalogError::NotFound("onsale"))?;
    if matches!(status.as_str(), "sold_out" | "closed") {
        return Err(CatalogError::Conflict(format!(
            "an onsale that is {status} admits nobody"
        )));
    }
    let (new_rate, new_cap) = (
        body.admission_rate.unwrap_or(rate),
        body.active_cap.unwrap_or(cap),
    );
    sqlx::query("update onsale set admission_rate = $3, active_cap = $4 where tenant_id = $1 and onsale_id = $2")
        .bind(admin.tenant)
        .bind(onsale_id)
        .bind(new_rate)
        .bind(new_cap)
        .execute(&mut *tx)
        .await
        ?;
    audit(
        &mut tx,
        &admin,
        "onsale",
        onsale_id,
        "admission_changed",
        json!({"from": {"admission_rate": rate, "active_cap": cap},
               "to": {"admission_rate": new_rate, "active_cap": new_cap}}),
    )
    .await?;
    announce(&mut tx, &admin, onsale_id).await?;
    tx.commit().await?;
    get_onsale(State(s), admin, Path(raw)).await
}

/// Tells `admin:{onsale}` (with who made it) and `queue:{onsale}` about an operator's change
/// to the onsale's status or admission settings, through the outbox: the announcement goes out
/// when, and only if, the change commits.
pub(crate) async fn announce(
    tx: &mut PgConnection,
    admin: &Admin,
    onsale: Uuid,
) -> Result<(), CatalogError> {
    use marquee_protocol::queue::{OnsaleChange, QueueEvent};
    use marquee_protocol::{Channel, ChannelKind};
    let (status, admission_rate, cap): (String, f64, i32) = sqlx::query_as(
        "select status::text, admission_rate, active_cap from onsale
         where tenant_id = $1 and onsale_id = $2",
    )
    .bind(admin.tenant)
    .bind(onsale)
    .fetch_one(&mut *tx)
    .await?;
    let message = |kind: ChannelKind, by: Option<String>| {
        let channel =
            Channel::new(kind, &onsale.to_string()).expect("a UUID is a valid channel id");
        let event = QueueEvent::Changed(OnsaleChange {
            status: status.clone(),
            admission_rate,
            active_cap: cap.max(0) as u64,
            by,
        });
        let data = serde_json::value::to_raw_value(&event).expect("queue events serialize");
        crate::outbox::message(channel.as_str(), &data)
    };
    let messages = [
        message(ChannelKind::Admin, Some(admin.user.clone())),
        message(ChannelKind::Queue, None),
    ];
    crate::outbox::write(tx, admin.tenant, None, &messages).await?;
    Ok(())
}
