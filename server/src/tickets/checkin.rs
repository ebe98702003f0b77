//! Check-in: a gate scans a ticket's QR code and learns whether to let its holder in.
//!
//! One scan, in order:
//! 1. A scan id seen before (per tenant) gets its stored answer back; nothing else happens.
//! 2. The code's Ed25519 signature is checked ([`crate::ticket_code`]); a forged or garbled code is
//!    `ticket_invalid` without a database read of the ticket.
//! 3. In one transaction, the ticket row is locked (`for update`): unknown, another tenant's,
//!    void (refunded or cancelled) or of another version (transferred since) is
//!    `ticket_invalid`; another event than the gate's is `wrong_event`; already checked in is
//!    `already_checked_in` with the first scan's time and gate; otherwise it is checked in now.
//!    The scan is recorded under its id and published on `gate:{event}` through the outbox, in
//!    the same transaction.
//!
//! The row lock is what admits a ticket exactly once: two gates on two nodes scanning the same
//! ticket at the same instant take the lock one after the other, and the second finds the first
//! one's check-in. Offline gates upload their scans later, each with the time it was made; a
//! scan that finds the ticket already in answers `already_checked_in` (the conflict, with who
//! was first), and is recorded like any other.

use crate::clock::now_ms;
use crate::outbox;
use crate::ticket_code::TicketKey;
use marquee_protocol::checkin::{
    MAX_QR_LEN, MAX_SCAN_ID_LEN, MIN_SCANNED_AT, Scan, ScanNotice, ScanOutcome, ScanResult,
};
use marquee_protocol::{Channel, ChannelKind, ErrorCode, text};
use serde_json::value::to_raw_value;
use sqlx::{PgPool, Row as _};
use uuid::Uuid;

/// A scan that could not be answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckinError {
    /// The scan itself is malformed (its id); it changes nothing and is not recorded.
    #[error("{0}")]
    BadRequest(String),
    /// The scan id was used before for another code or by another gate: a gate must choose a
    /// fresh id per scan, so this is never the first scan's answer.
    #[error("scan_id {0:?} was used before for another code or gate")]
    Conflict(String),
    /// The database could not be reached; the gate retries with the same scan id. Its detail
    /// is logged ([`CheckinError::message`]), never sent.
    #[error("check-in database error: {0}")]
    Db(#[from] sqlx::Error),
}

impl CheckinError {
    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::Db(_) => ErrorCode::Unavailable,
        }
    }

    /// What the gate is told: the scan's own fault, or that check-in is unavailable (the
    /// database's text is logged here, never sent).
    pub fn message(&self) -> String {
        match self {
            Self::BadRequest(message) => message.clone(),
            Self::Conflict(_) => self.to_string(),
            Self::Db(e) => {
                tracing::warn!(error = %e, "check-in: database unavailable");
                "check-in is unavailable; retry with the same scan_id".to_owned()
            }
        }
    }
}

/// What check-in needs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Checkin {
    /// The system of record.
    pub db: PgPool,
    /// Checks the codes' signatures.
    pub key: TicketKey,
}

fn rejected(code: ErrorCode, message: &str) -> ScanOutcome {
    ScanOutcome::Rejected {
        code,
        message: message.to_owned(),
    }
}

impl Checkin {
    /// Checks a scan's own fields; returns the gate's event, if it names one.
    pub fn check(scan: &Scan) -> Result<Option<Uuid>, CheckinError> {
        let bad = |e: text::TextError| CheckinError::BadRequest(e.to_string());
        text::required("scan_id", &scan.scan_id, MAX_SCAN_ID_LEN).map_err(bad)?;
        text::optional("qr", &scan.qr, MAX_QR_LEN).map_err(bad)?;
        // From 2000 on, and no more than a day ahead of this node's clock.
        let latest = now_ms() + 24 * 3600 * 1000;
        if scan
            .scanned_at
            .is_some_and(|at| !(MIN_SCANNED_AT..=latest).contains(&at))
        {
            return Err(CheckinError::BadRequest(
                "scanned_at must be unix milliseconds, not in the future".into(),
            ));
        }
        scan.event
            .as_deref()
            .map(|raw| {
                Uuid::parse_str(raw).map_err(|_| {
                    CheckinError::BadRequest("event must be an event id (a UUID)".into())
                })
            })
            .transpose()
    }

    /// Answers one scan by `gate` (the scanning device's user id) of `tenant`.
    pub async fn scan(
        &self,
        tenant: Uuid,
        gate: &str,
        scan: &Scan,
    ) -> Result<ScanResult, CheckinError> {
        let gate_event = Self::check(scan)?;
        // A scan id seen before is found when its record is inserted (and this transaction
        // rolled back): the common case, a new scan, costs no extra round trip.
        let scanned_at = scan.scanned_at.unwrap_or_else(now_ms);
        let claim = match self.key.verify(&scan.qr) {
            Ok(claim) => claim,
            Err(e) => {
                let result = ScanResult {
                    scan_id: scan.scan_id.clone(),
                    ticket: None,
                    outcome: rejected(ErrorCode::TicketInvalid, &e.to_string()),
                };
                return self
                    .record(tenant, gate, scan, scanned_at, None, None, result)
                    .await;
            }
        };
        let mut tx = crate::db::begin(&self.db).await?;
        let row = sqlx::query(
            "select t.tenant_id, t.event_id, t.version, t.status::text as status, t.ticket_type_id,
                    s.seat_index, t.checked_in_gate, e.status::text as event_status,
                    (extract(epoch from t.checked_in_at) * 1000)::int8 as checked_in_ms
             from ticket t left join seat s on s.event_id = t.event_id and s.seat_id = t.seat_id
             join event e on e.event_id = t.event_id
             where t.ticket_id = $1
             for update of t",
        )
        .bind(claim.ticket)
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match &row {
            None => rejected(ErrorCode::TicketInvalid, "no such ticket"),
            Some(r) if r.get::<Uuid, _>("tenant_id") != tenant => {
                rejected(ErrorCode::TicketInvalid, "no such ticket")
            }
            Some(r) if r.get::<Uuid, _>("event_id") != claim.event => rejected(
                ErrorCode::TicketInvalid,
                "the code does not match the ticket",
            ),
            Some(r) if r.get::<String, _>("event_status") == "cancelled" => {
                rejected(ErrorCode::TicketInvalid, "the event was cancelled")
            }
            Some(r) if r.get::<String, _>("status") != "valid" => rejected(
                ErrorCode::TicketInvalid,
                "the ticket was cancelled or refunded",
            ),
            Some(r) if r.get::<i32, _>("version") as u32 != claim.version => rejected(
                ErrorCode::TicketInvalid,
                "the ticket was transferred; this code is no longer valid",
            ),
            Some(_) if gate_event.is_some_and(|e| e != claim.event) => {
                rejected(ErrorCode::WrongEvent, "the ticket is for another event")
            }
            Some(r) => match r.get::<Option<i64>, _>("checked_in_ms") {
                Some(at) => ScanOutcome::AlreadyCheckedIn {
                    at: at.max(0) as u64,
                    gate: r
                        .get::<Option<String>, _>("checked_in_gate")
                        .unwrap_or_default(),
                },
                None => ScanOutcome::Admitted {
                    event: claim.event.to_string(),
                    seat: r.get::<Option<i32>, _>("seat_index").map(|s| s as u32),
                    ticket_type: r.get::<Uuid, _>("ticket_type_id").to_string(),
                    at: scanned_at,
                },
            },
        };
        let event = row
            .as_ref()
            .filter(|r| r.get::<Uuid, _>("tenant_id") == tenant)
            .map(|_| claim.event);
        let result = ScanResult {
            scan_id: scan.scan_id.clone(),
            ticket: Some(claim.ticket.to_string()),
            outcome,
        };
        let recorded = insert_scan(
            &mut tx,
            tenant,
            gate,
            &scan.qr,
            scanned_at,
            Some(claim.ticket),
            event,
            &result,
        )
        .await?;
        // The first scan of a repeated id answered already; this one changes nothing.
        if !recorded {
            // The same scan id raced in from another node: its answer stands, not this one.
            tx.rollback().await?;
            count_scan("repeated");
            return self.first_answer(tenant, gate, scan, result).await;
        }
        tx.commit().await?;
        count_scan(outcome_name(&result.outcome));
        Ok(result)
    }

    /// The answer a scan id got the first time, if this scan is that scan again (the same code
    /// from the same gate); a conflict if the id was used for another code or gate.
    async fn first_answer(
        &self,
        tenant: Uuid,
        gate: &str,
        scan: &Scan,
        fallback: ScanResult,
    ) -> Result<ScanResult, CheckinError> {
        let stored: Option<(sqlx::types::Json<ScanResult>, String, Option<Vec<u8>>)> =
            sqlx::query_as(
                "select result, gate, code_sha256 from checkin_scan
                 where tenant_id = $1 and scan_id = $2",
            )
            .bind(tenant)
            .bind(&scan.scan_id)
            .fetch_optional(&self.db)
            .await?;
        let Some((result, first_gate, code)) = stored else {
            return Ok(fallback);
        };
        let same_code = code.is_none_or(|c| c == code_sha256(&scan.qr));
        if first_gate != gate || !same_code {
            return Err(CheckinError::Conflict(scan.scan_id.clone()));
        }
        Ok(result.0)
    }

    /// Records a scan that touched no ticket (a code that is not genuine).
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        tenant: Uuid,
        gate: &str,
        scan: &Scan,
        scanned_at: u64,
        ticket: Option<Uuid>,
        event: Option<Uuid>,
        result: ScanResult,
    ) -> Result<ScanResult, CheckinError> {
        let mut tx = crate::db::begin(&self.db).await?;
        if insert_scan(
            &mut tx, tenant, gate, &scan.qr, scanned_at, ticket, event, &result,
        )
        .await?
        {
            tx.commit().await?;
            count_scan(outcome_name(&result.outcome));
            return Ok(result);
        }
        tx.rollback().await?;
        count_scan("repeated");
        self.first_answer(tenant, gate, scan, result).await
    }
}

/// Inserts the scan record, checks the ticket in if the scan admits it, and, for a scan of a
/// known event, writes its notice on `gate:{event}` to the outbox (so it is published exactly
/// when the check-in commits): one round trip. Returns false if the scan id was recorded
/// already (the caller then rolls back, undoing the check-in too).
#[allow(clippy::too_many_arguments)]
async fn insert_scan(
    tx: &mut sqlx::PgConnection,
    tenant: Uuid,
    gate: &str,
    code: &str,
    scanned_at: u64,
    ticket: Option<Uuid>,
    event: Option<Uuid>,
    result: &ScanResult,
) -> Result<bool, sqlx::Error> {
    let json = serde_json::to_string(result).expect("a scan result always serializes");
    let message = event.map(|event| {
        let channel = Channel::new(ChannelKind::Gate, &event.to_string())
            .expect("a uuid is a valid channel id");
        let notice = to_raw_value(&ScanNotice {
            gate: gate.to_owned(),
            scanned_at,
            result: result.clone(),
        })
        .expect("a notice always serializes");
        format!("[{}]", outbox::message(channel.as_str(), &notice))
    });
    let admits = matches!(result.outcome, ScanOutcome::Admitted { .. });
    let inserted: Option<bool> = sqlx::query_scalar(
        "with scan as (
             insert into checkin_scan (tenant_id, scan_id, ticket_id, event_id, gate, scanned_at, result, code_sha256)
             values ($1, $2, $3, $4, $5, to_timestamp($6 / 1000.0), $7::json, $11)
             on conflict (tenant_id, scan_id) do nothing
             returning 1
         ), checked_in as (
             update ticket set checked_in_at = to_timestamp($6 / 1000.0), checked_in_gate = $5,
                    updated_at = now()
             where $10 and ticket_id = $3 and checked_in_at is null
             returning 1
         ), notice as (
             insert into outbox (tenant_id, messages)
             select $1, $8::json from scan where $8 is not null
             returning 1
         )
         select pg_notify($9, '') is not null from scan",
    )
    .bind(tenant)
    .bind(&result.scan_id)
    .bind(ticket)
    .bind(event)
    .bind(gate)
    .bind(scanned_at as i64)
    .bind(json)
    .bind(message)
    .bind(outbox::NOTIFY)
    .bind(admits)
    .bind(code_sha256(code))
    .fetch_optional(&mut *tx)
    .await?;
    Ok(inserted.is_some())
}

/// Counts a decided scan (`marquee_checkins_total{outcome}`): `admitted`, `already_checked_in`
/// (a ticket shown again: the duplicate scans a door sees), `rejected`, or `repeated` (a scan
/// id sent again, answered with its first result).
fn count_scan(outcome: &'static str) {
    metrics::counter!("marquee_checkins_total", "outcome" => outcome).increment(1);
}

/// A scan outcome's label.
fn outcome_name(outcome: &ScanOutcome) -> &'static str {
    match outcome {
        ScanOutcome::Admitted { .. } => "admitted",
        ScanOutcome::AlreadyCheckedIn { .. } => "already_checked_in",
        _ => "rejected",
    }
}

/// The SHA-256 of a scanned code, what binds a scan id to the code it was first used for.
fn code_sha256(code: &str) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(code.as_bytes()).to_vec()
}
