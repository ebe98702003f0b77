//! Reports over time and through the funnel, as JSON or CSV (`?format=csv`):
//!
//! - `GET /v1/admin/events/{event_id}/sales/timeline?interval=minute|hour|day`: tickets sold,
//!   revenue, and refunds, by ticket type and price category, per interval. A sale counts when
//!   its order was paid, a refund when its order was refunded (the order's last change).
//! - `GET /v1/admin/onsales/{onsale_id}/funnel`: buyers who joined the queue, were admitted,
//!   held, and paid, with the share lost at each step, and how long admitted buyers waited in
//!   the queue (p50 and p90, from their join to their admission). An onsale without a waiting
//!   room starts at `held`.
//!
//! Both read Postgres along an index each (`migrations/20261204000002_analytics.sql`); the
//! figures for an event of 100,000 orders are in BENCHMARKS.md.

use super::AnalyticsState;
use crate::http::error::ApiError;
use crate::http::extract::Admin;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row as _};
use std::fmt::Write as _;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// How a report is rendered.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `application/json` (the default).
    #[default]
    Json,
    /// `text/csv`, one header line then one line per row.
    Csv,
}

/// The width of a timeline's intervals.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    /// Minutes (an onsale's first hour).
    Minute,
    /// Hours (the default).
    #[default]
    Hour,
    /// Days.
    Day,
}

impl Interval {
    fn unit(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }
}

/// The timeline's query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TimelineQuery {
    /// `minute`, `hour` (default) or `day`.
    #[serde(default)]
    #[param(value_type = Option<Interval>)]
    pub interval: Interval,
    /// `json` (default) or `csv`.
    #[serde(default)]
    #[param(value_type = Option<Format>)]
    pub format: Format,
}

/// The funnel's query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FunnelQuery {
    /// `json` (default) or `csv`.
    #[serde(default)]
    #[param(value_type = Option<Format>)]
    pub format: Format,
}

/// One interval of one ticket type (and price category, for seats).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct TimelineRow {
    /// The interval's start (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub at: time::OffsetDateTime,
    /// The ticket type.
    pub ticket_type_id: Uuid,
    /// The seats' price category; absent for general admission.
    pub price_category_id: Option<Uuid>,
    /// ISO 4217 currency of the amounts.
    pub currency: String,
    /// Tickets sold (orders paid) in the interval.
    pub sold: i64,
    /// Their price, minor units.
    pub revenue_minor: i64,
    /// Tickets refunded in the interval.
    pub refunded: i64,
    /// Their price, minor units.
    pub refunded_minor: i64,
}

/// An event's sales over time.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Timeline {
    /// The event.
    pub event_id: Uuid,
    /// `minute`, `hour` or `day`.
    pub interval: String,
    /// Ascending by interval, then ticket type, then category.
    pub rows: Vec<TimelineRow>,
}

/// One step of the funnel.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct FunnelStep {
    /// `joined`, `admitted`, `held` or `paid`.
    pub step: String,
    /// Distinct buyers who reached it.
    pub buyers: i64,
    /// The share of the previous step's buyers who did not reach it (0 to 1); absent for the
    /// first step, or after a step nobody reached.
    pub dropped: Option<f64>,
}

/// Seconds from joining the queue to admission, over the admitted buyers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct QueueTime {
    /// Median.
    pub p50_s: f64,
    /// 90th percentile.
    pub p90_s: f64,
}

/// An onsale's funnel.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Funnel {
    /// The onsale.
    pub onsale_id: Uuid,
    /// Its event.
    pub event_id: Uuid,
    /// From the queue (when the onsale has a waiting room) to payment.
    pub steps: Vec<FunnelStep>,
    /// Time in the queue; absent without a waiting room or before any admission.
    pub queue_time: Option<QueueTime>,
}

/// An event's tickets sold, revenue and refunds by ticket type and category over time (role
/// `admin`, the event's tenant), as JSON or CSV.
#[utoipa::path(get, path = "/v1/admin/events/{event_id}/sales/timeline", tag = "analytics",
    params(("event_id" = Uuid, Path, description = "An event id; malformed ids are as unknown as missing ones (404)"), TimelineQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Timeline, description = "JSON, or `text/csv` with `format=csv`"),
        (status = 400, body = marquee_protocol::ErrorBody), (status = 401, body = marquee_protocol::ErrorBody),
        (status = 403, body = marquee_protocol::ErrorBody), (status = 404, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn timeline(
    State(s): State<AnalyticsState>,
    admin: Admin,
    Path(raw): Path<String>,
    query: Result<Query<TimelineQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let event = super::own_event(&s.db, &admin, &raw).await?;
    let report = Timeline {
        event_id: event,
        interval: query.interval.unit().to_owned(),
        rows: timeline_of(&s.db, event, query.interval).await?,
    };
    Ok(match query.format {
        Format::Json => Json(report).into_response(),
        Format::Csv => csv(
            "at,ticket_type_id,price_category_id,currency,sold,revenue_minor,refunded,refunded_minor",
            report.rows.iter().map(|r| {
                let at =
                    r.at.format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default();
                let category = r
                    .price_category_id
                    .map(|c| c.to_string())
                    .unwrap_or_default();
                format!(
                    "{at},{},{category},{},{},{},{},{}",
                    r.ticket_type_id,
                    r.currency,
                    r.sold,
                    r.revenue_minor,
                    r.refunded,
                    r.refunded_minor
                )
            }),
        ),
    })
}

/// An event's sales and refunds per interval, by ticket type and category.
pub async fn timeline_of(
    db: &PgPool,
    event: Uuid,
    interval: Interval,
) -> Result<Vec<TimelineRow>, sqlx::Error> {
    let rows = sqlx::query(
        "with lines as (
             select o.paid_at, o.status, o.updated_at, o.currency::text as currency,
                    i.ticket_type_id, s.price_category_id, i.quantity::int8 as quantity,
                    i.quantity::int8 * i.unit_minor as amount
             from ticket_order o
             join ticket_order_item i
               on i.event_id = o.event_id and i.ticket_order_id = o.ticket_order_id
             left join seat s on s.event_id = i.event_id and s.seat_id = i.seat_id
             where o.event_id = $1 and o.paid_at is not null
         ),
         moves as (
             select date_trunc($2, paid_at) as at, ticket_type_id, price_category_id, currency,
                    quantity as sold, amount as revenue, 0::int8 as refunded, 0::int8 as refunded_minor
             from lines
             union all
             select date_trunc($2, updated_at), ticket_type_id, price_category_id, currency,
                    0, 0, quantity, amount
             from lines where status = 'refunded'
         )
         select at, ticket_type_id, price_category_id, currency,
                sum(sold)::int8 as sold, sum(revenue)::int8 as revenue,
                sum(refunded)::int8 as refunded, sum(refunded_minor)::int8 as refunded_minor
         from moves
         group by at, ticket_type_id, price_category_id, currency
         order by at, ticket_type_id, price_category_id nulls first, currency",
    )
    .bind(event)
    .bind(interval.unit())
    .fetch_all(db)
    .await?
    .iter()
    .map(|r| TimelineRow {
        at: r.get("at"),
        ticket_type_id: r.get("ticket_type_id"),
        price_category_id: r.get("price_category_id"),
        currency: r.get("currency"),
        sold: r.get("sold"),
        revenue_minor: r.get("revenue"),
        refunded: r.get("refunded"),
        refunded_minor: r.get("refunded_minor"),
    })
    .collect::<Vec<_>>();
    Ok(rows)
}

/// An onsale's funnel from joining the queue to paying, with the drop-off at each step and
/// the time admitted buyers spent in the queue (role `admin`, the onsale's tenant), as JSON or
/// CSV.
#[utoipa::path(get, path = "/v1/admin/onsales/{onsale_id}/funnel", tag = "analytics",
    params(("onsale_id" = Uuid, Path, description = "An onsale id; malformed ids are as unknown as missing ones (404)"), FunnelQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Funnel, description = "JSON, or `text/csv` with `format=csv`"),
        (status = 400, body = marquee_protocol::ErrorBody), (status = 401, body = marquee_protocol::ErrorBody),
        (status = 403, body = marquee_protocol::ErrorBody), (status = 404, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn funnel(
    State(s): State<AnalyticsState>,
    admin: Admin,
    Path(raw): Path<String>,
    query: Result<Query<FunnelQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let not_found = || ApiError::not_found("onsale not found");
    let onsale = Uuid::parse_str(&raw).map_err(|_| not_found())?;
    let found: Option<(Uuid, bool)> = sqlx::query_as(
        "select event_id, requires_admission from onsale where tenant_id = $1 and onsale_id = $2",
    )
    .bind(admin.tenant)
    .bind(onsale)
    .fetch_optional(&s.db)
    .await?;
    let (event, queued) = found.ok_or_else(not_found)?;
    let (steps, queue_time) = funnel_of(&s.db, onsale, event, queued).await?;
    let report = Funnel {
        onsale_id: onsale,
        event_id: event,
        steps,
        queue_time,
    };
    Ok(match query.format {
        Format::Json => Json(report).into_response(),
        Format::Csv => {
            let (p50, p90) = report
                .queue_time
                .as_ref()
                .map(|q| (q.p50_s.to_string(), q.p90_s.to_string()))
                .unwrap_or_default();
            csv(
                "step,buyers,dropped,queue_p50_s,queue_p90_s",
                report.steps.iter().map(|s| {
                    let dropped = s.dropped.map(|d| d.to_string()).unwrap_or_default();
                    format!("{},{},{dropped},{p50},{p90}", s.step, s.buyers)
                }),
            )
        }
    })
}

/// An onsale's funnel (its steps, from `joined` when `queued`) and its buyers' time in queue.
pub async fn funnel_of(
    db: &PgPool,
    onsale: Uuid,
    event: Uuid,
    queued: bool,
) -> Result<(Vec<FunnelStep>, Option<QueueTime>), sqlx::Error> {
    let row = sqlx::query(
        "select
             (select count(distinct user_id) from queue_join where onsale_id = $1) as joined,
             (select count(distinct user_id) from admission where onsale_id = $1) as admitted,
             (select count(distinct user_id) from hold where onsale_id = $1) as held,
             (select count(distinct o.user_id) from ticket_order o
                join hold h on h.event_id = o.event_id and h.hold_id = o.hold_id
                where o.event_id = $2 and o.paid_at is not null and h.onsale_id = $1) as paid,
             (select percentile_cont(array[0.5, 0.9]) within group (
                         order by extract(epoch from a.admitted_at - j.joined_at))
                from admission a
                join queue_join j on j.onsale_id = a.onsale_id and j.place_id = a.place_id
                where a.onsale_id = $1) as queue",
    )
    .bind(onsale)
    .bind(event)
    .fetch_one(db)
    .await?;
    let mut counts = Vec::new();
    if queued {
        counts.push(("joined", row.get::<i64, _>("joined")));
        counts.push(("admitted", row.get::<i64, _>("admitted")));
    }
    counts.push(("held", row.get::<i64, _>("held")));
    counts.push(("paid", row.get::<i64, _>("paid")));
    let steps = counts
        .iter()
        .enumerate()
        .map(|(i, (step, buyers))| FunnelStep {
            step: (*step).to_owned(),
            buyers: *buyers,
            dropped: i
                .checked_sub(1)
                .map(|p| counts[p].1)
                .filter(|before| *before > 0)
                .map(|before| 1.0 - (*buyers as f64 / before as f64).min(1.0)),
        })
        .collect::<Vec<_>>();
    let queue_time = row
        .get::<Option<Vec<f64>>, _>("queue")
        .filter(|_| queued)
        .and_then(|q| {
            Some(QueueTime {
                p50_s: *q.first()?,
                p90_s: *q.get(1)?,
            })
        });
    Ok((steps, queue_time))
}

/// A CSV answer: `header`, then `lines`, each ended by CRLF (RFC 4180). Every field these
/// reports write is a number, an id, a timestamp, a currency code or a step name: none needs
/// quoting.
fn csv(header: &str, lines: impl Iterator<Item = String>) -> Response {
    let mut body = String::with_capacity(4096);
    let _ = write!(body, "{header}\r\n");
    for line in lines {
        body.push_str(&line);
        body.push_str("\r\n");
    }
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response()
}
