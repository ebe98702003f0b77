//! Stable error codes, shared by WebSocket `error` messages and HTTP error bodies.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A stable, machine-readable error code.
///
/// A code never changes meaning once shipped; new codes may be added, so clients must treat an
/// unknown code (decoded as [`ErrorCode::Unknown`]) as a generic failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame could not be decoded, had an unknown `type`, or a field was invalid.
    BadRequest,
    /// No token was presented (neither `Authorization: Bearer` nor `access_token`).
    TokenMissing,
    /// The token is not a well-formed JWT.
    TokenMalformed,
    /// The token's signature, algorithm, issuer or audience is not accepted.
    TokenInvalid,
    /// The token's `exp` has passed.
    TokenExpired,
    /// The token's `nbf` lies in the future.
    TokenNotYetValid,
    /// The caller is authenticated but may not do this (private channel, missing role).
    Forbidden,
    /// The thing asked for does not exist.
    NotFound,
    /// Too many requests; slow down.
    RateLimited,
    /// The message or body is larger than the server accepts.
    TooBig,
    /// The node is at its connection cap or connect rate; retry after the advised delay.
    OverCapacity,
    /// `unsubscribe` for a channel this connection is not subscribed to.
    NotSubscribed,
    /// This connection already has the maximum number of subscriptions.
    TooManySubscriptions,
    /// The change conflicts with the current state (it exists already, or the state forbids it).
    Conflict,
    /// A seat index that is not on the event's map.
    UnknownSeat,
    /// A price category that does not belong to the event.
    UnknownCategory,
    /// A ticket type that does not belong to the event, or is of the wrong kind.
    UnknownTicketType,
    /// A quantity of zero, or outside the ticket type's per-order minimum and maximum.
    InvalidQuantity,
    /// The buyer would hold or own more of the event than the onsale's per-user limit.
    LimitExceeded,
    /// A requested seat is held or sold; the result suggests the nearest equivalent block.
    SeatUnavailable,
    /// Not enough inventory is left for the request.
    SoldOut,
    /// No such hold for this buyer and event.
    HoldNotFound,
    /// The hold is no longer active (expired, released or already checked out).
    HoldExpired,
    /// The event has no onsale open right now.
    OnsaleClosed,
    /// The onsale requires an admission from its waiting room.
    AdmissionRequired,
    /// A scanned code is not a genuine ticket, or names an unknown, cancelled or refunded
    /// ticket, or a version superseded by a transfer.
    TicketInvalid,
    /// A scanned ticket is for another event than the gate's.
    WrongEvent,
    /// A payment hook call without a `Marquee-Signature` header.
    SignatureMissing,
    /// A payment hook call whose signature is malformed, or matches no active secret (wrong
    /// secret or altered body).
    SignatureInvalid,
    /// A genuine payment hook call signed outside the tolerance window (a replay, or a wrong
    /// clock).
    SignatureExpired,
    /// A backing service (the channel engine) is unreachable; retry later.
    Unavailable,
    /// An unexpected server error; details are in the server log, never in the message.
    Internal,
    /// A code this version of the crate does not know (sent by a newer server).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The wire spelling of the code, e.g. `"token_expired"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::TokenMissing => "token_missing",
            Self::TokenMalformed => "token_malformed",
            Self::TokenInvalid => "token_invalid",
            Self::TokenExpired => "token_expired",
            Self::TokenNotYetValid => "token_not_yet_valid",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::RateLimited => "rate_limited",
            Self::TooBig => "too_big",
            Self::OverCapacity => "over_capacity",
            Self::NotSubscribed => "not_subscribed",
            Self::TooManySubscriptions => "too_many_subscriptions",
            Self::Conflict => "conflict",
            Self::UnknownSeat => "unknown_seat",
            Self::UnknownCategory => "unknown_category",
            Self::UnknownTicketType => "unknown_ticket_type",
            Self::InvalidQuantity => "invalid_quantity",
            Self::LimitExceeded => "limit_exceeded",
            Self::SeatUnavailable => "seat_unavailable",
            Self::SoldOut => "sold_out",
            Self::HoldNotFound => "hold_not_found",
            Self::HoldExpired => "hold_expired",
            Self::OnsaleClosed => "onsale_closed",
            Self::AdmissionRequired => "admission_required",
            Self::TicketInvalid => "ticket_invalid",
            Self::WrongEvent => "wrong_event",
            Self::SignatureMissing => "signature_missing",
            Self::SignatureInvalid => "signature_invalid",
            Self::SignatureExpired => "signature_expired",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::Unknown => "unknown",
        }
    }

    /// Every code, in declaration order (used by tests and documentation checks).
    pub const ALL: &'static [ErrorCode] = &[
        Self::BadRequest,
        Self::TokenMissing,
        Self::TokenMalformed,
        Self::TokenInvalid,
        Self::TokenExpired,
        Self::TokenNotYetValid,
        Self::Forbidden,
        Self::NotFound,
        Self::RateLimited,
        Self::TooBig,
        Self::OverCapacity,
        Self::NotSubscribed,
        Self::TooManySubscriptions,
        Self::Conflict,
        Self::UnknownSeat,
        Self::UnknownCategory,
        Self::UnknownTicketType,
        Self::InvalidQuantity,
        Self::LimitExceeded,
        Self::SeatUnavailable,
        Self::SoldOut,
        Self::HoldNotFound,
        Self::HoldExpired,
        Self::OnsaleClosed,
        Self::AdmissionRequired,
        Self::TicketInvalid,
        Self::WrongEvent,
        Self::SignatureMissing,
        Self::SignatureInvalid,
        Self::SignatureExpired,
        Self::Unavailable,
        Self::Internal,
        Self::Unknown,
    ];
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every HTTP error response: `{"code": "...", "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The stable code; branch on this.
    pub code: ErrorCode,
    /// A human-readable explanation; wording may change, never branch on it.
    pub message: String,
}

impl ErrorBody {
    /// Builds an error body.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_spelling_matches_serde_for_every_code() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn an_unknown_code_from_a_newer_server_decodes_as_unknown() {
        let code: ErrorCode = serde_json::from_str("\"seat_on_fire\"").unwrap();
        assert_eq!(code, ErrorCode::Unknown);
    }
}
