//! Check-in: gates scanning tickets' QR codes.
//!
//! A scan is answered with a [`ScanResult`] (over the WebSocket as `checkin.result`, over HTTP
//! as the body of `POST /v1/checkin`). A rejected ticket is a normal answer, not an error: the
//! gate shows it and moves on. Every scan is also published on `gate:{event}` as a
//! [`ScanNotice`], so every gate of the event sees every admission live.

use crate::booking::SeatIndex;
use crate::error::ErrorCode;
use serde::{Deserialize, Serialize};

/// Longest `scan_id` accepted, in characters.
pub const MAX_SCAN_ID_LEN: usize = 128;

/// Longest QR code text a scan may carry, in characters (a real code is about 150).
pub const MAX_QR_LEN: usize = 1024;

/// The earliest `scanned_at` taken: 2000-01-01, in unix ms. A scan may also be at most a day
/// ahead of the server's clock.
pub const MIN_SCANNED_AT: u64 = 946_684_800_000;

/// What a gate sends for one scan. Unknown fields are refused (`bad_request`), so a misspelt
/// one is never silently dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Scan {
    /// The QR code's text (at most 1,024 characters; an unreadable code is answered
    /// `ticket_invalid`).
    #[cfg_attr(feature = "openapi", schema(schema_with = qr_schema))]
    pub qr: String,
    /// The gate's id for this scan (1 to 128 characters): a scan sent again with the same id
    /// gets the first answer and changes nothing, so gates retry safely and upload offline
    /// scans more than once.
    #[cfg_attr(feature = "openapi", schema(schema_with = scan_id_schema))]
    pub scan_id: String,
    /// The event this gate admits to; a ticket for another event is refused `wrong_event`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = Uuid))]
    pub event: Option<String>,
    /// When an offline gate scanned it (unix ms, from 2000 to a day ahead of the server's
    /// clock); now when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 946_684_800_000_u64))]
    pub scanned_at: Option<u64>,
}

#[cfg(feature = "openapi")]
fn qr_schema() -> utoipa::openapi::Object {
    crate::text::schema::optional(MAX_QR_LEN)
}

#[cfg(feature = "openapi")]
fn scan_id_schema() -> utoipa::openapi::Object {
    crate::text::schema::required(MAX_SCAN_ID_LEN)
}

/// The answer to one scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScanResult {
    /// The scan's id.
    pub scan_id: String,
    /// The ticket the code names, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// What the gate should do.
    #[serde(flatten)]
    pub outcome: ScanOutcome,
}

/// What a scan found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ScanOutcome {
    /// Let them in: this scan checked the ticket in.
    Admitted {
        /// The event.
        event: String,
        /// The seat, for a seated ticket.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seat: Option<SeatIndex>,
        /// The ticket type.
        ticket_type: String,
        /// When (unix ms).
        at: u64,
    },
    /// The ticket was checked in before, by the scan described here.
    AlreadyCheckedIn {
        /// When it was first checked in (unix ms).
        at: u64,
        /// The gate that checked it in.
        gate: String,
    },
    /// Do not let them in.
    Rejected {
        /// `ticket_invalid` (not a genuine code, an unknown, cancelled or refunded ticket, or
        /// a code superseded by a transfer) or `wrong_event`.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
}

/// A scan as every gate of the event sees it on `gate:{event}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanNotice {
    /// The gate that scanned.
    pub gate: String,
    /// When it scanned (unix ms).
    pub scanned_at: u64,
    /// The answer it got.
    pub result: ScanResult,
}
