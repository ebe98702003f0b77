//! Purchase commands, their results, and the live seat map's snapshot and deltas.
//!
//! A buyer sends a [`Command`] inside a `command` message with a client-chosen `request_id`.
//! The node answers `accepted` at once; the [`CommandResult`] arrives later on the buyer's
//! inbox as an [`InboxMessage`], durable in the server's database until the buyer sends `ack`.
//! A retry with the same `request_id` never takes effect twice: it gets the first result again.
//!
//! Seats are named by their index in the event's map (`0..n`, listed with labels and
//! coordinates by the HTTP seat-map endpoint), which keeps commands, deltas and the 2-bit
//! [`SeatSnapshot`] small.

use crate::error::ErrorCode;
use serde::{Deserialize, Serialize};

/// A seat's index in its event's map.
pub type SeatIndex = u32;

/// The longest request id a client may choose.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The most seats one command may name.
pub const MAX_SEATS_PER_COMMAND: usize = 64;

/// A purchase command. Ids (`event`, `category`, `ticket_type`, `hold`) are UUID strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Command {
    /// Hold these exact seats, all or none.
    HoldSeats {
        /// The event.
        event: String,
        /// Seat indexes; at most [`MAX_SEATS_PER_COMMAND`], no duplicates.
        seats: Vec<SeatIndex>,
    },
    /// Hold the best `quantity` adjacent seats of a price category.
    HoldBestAvailable {
        /// The event.
        event: String,
        /// The price category.
        category: String,
        /// How many seats.
        quantity: u32,
    },
    /// Hold `quantity` general-admission tickets of a ticket type.
    HoldGa {
        /// The event.
        event: String,
        /// The general-admission ticket type.
        ticket_type: String,
        /// How many tickets.
        quantity: u32,
    },
    /// Give a hold back before it expires.
    Release {
        /// The event.
        event: String,
        /// The hold.
        hold: String,
    },
    /// Turn a hold into an order awaiting payment.
    Checkout {
        /// The event.
        event: String,
        /// The hold.
        hold: String,
    },
}

impl Command {
    /// The event the command is about; the command queue routes by it.
    pub fn event(&self) -> &str {
        match self {
            Self::HoldSeats { event, .. }
            | Self::HoldBestAvailable { event, .. }
            | Self::HoldGa { event, .. }
            | Self::Release { event, .. }
            | Self::Checkout { event, .. } => event,
        }
    }

    /// The command's `kind` as it appears on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::HoldSeats { .. } => "hold_seats",
            Self::HoldBestAvailable { .. } => "hold_best_available",
            Self::HoldGa { .. } => "hold_ga",
            Self::Release { .. } => "release",
            Self::Checkout { .. } => "checkout",
        }
    }
}

/// What became of one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    /// The client's request id.
    pub request_id: String,
    /// The event the command was about.
    pub event: String,
    /// The command's `kind`.
    pub command: String,
    /// The outcome.
    pub outcome: Outcome,
}

/// The outcome of a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// Inventory is held for the buyer until `expires_at`.
    Held {
        /// The new hold.
        hold: String,
        /// The seats held (empty for general admission).
        seats: Vec<SeatIndex>,
        /// The general-admission ticket type, for `hold_ga`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ticket_type: Option<String>,
        /// How many tickets the hold covers.
        quantity: u32,
        /// When the hold lapses (unix milliseconds).
        expires_at: u64,
    },
    /// The hold was given back.
    Released {
        /// The hold.
        hold: String,
    },
    /// An order awaits payment.
    CheckedOut {
        /// The new order.
        order: String,
        /// The hold it came from.
        hold: String,
        /// Total price in minor units.
        total_minor: i64,
        /// ISO 4217 currency.
        currency: String,
        /// Pay before this (unix milliseconds) or the order expires.
        payment_due_at: u64,
    },
    /// The command changed nothing.
    Rejected {
        /// Stable error code.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
        /// For `seat_unavailable`: the nearest block of free seats equivalent to the request,
        /// when there is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alternative: Option<Vec<SeatIndex>>,
    },
}

impl Outcome {
    /// A rejection without an alternative.
    pub fn rejected(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Rejected {
            code,
            message: message.into(),
            alternative: None,
        }
    }
}

/// What the server pushes on a buyer's inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum InboxMessage {
    /// A command's result. It stays pending (and is delivered again after a resync) until the
    /// buyer acknowledges its `request_id`.
    Result(CommandResult),
    /// An order moved on (its payment succeeded, failed, needs more time, was refunded, or it
    /// expired). Pending, like a result, until the buyer acknowledges its `request_id`.
    Order(OrderUpdate),
}

/// The inbox channel's snapshot: every result and order update the buyer has not acknowledged
/// yet, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InboxSnapshot {
    /// Pending results.
    pub pending: Vec<CommandResult>,
    /// Pending order updates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orders: Vec<OrderUpdate>,
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OrderStatus {
    /// Checked out; the payment has not succeeded yet.
    PendingPayment,
    /// Paid; its tickets are issued.
    Paid,
    /// The payment failed; the seats went back on sale.
    Failed,
    /// Not paid in time; the seats went back on sale.
    Expired,
    /// Cancelled by an operator.
    Cancelled,
    /// The money went back to the buyer.
    Refunded,
    /// A status this version of the crate does not know.
    #[serde(other)]
    Unknown,
}

/// Why an order update happened, where the status alone does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OrderReason {
    /// The provider needs more time; `payment_due_at` moved later.
    PaymentProcessing,
    /// The payment arrived after the order expired and its seats were still free: they are
    /// the buyer's again.
    LatePaymentAccepted,
    /// The payment arrived after the order expired and its seats had been sold to someone else:
    /// the money goes back.
    LatePaymentRefunded,
    /// A reason this version of the crate does not know.
    #[serde(other)]
    Unknown,
}

/// An order update on the buyer's inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderUpdate {
    /// The id to acknowledge (with `ack`, like a command's request id).
    pub request_id: String,
    /// The order.
    pub order: String,
    /// Its event.
    pub event: String,
    /// Where it stands now.
    pub status: OrderStatus,
    /// For an order awaiting payment: pay before this (unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_due_at: Option<u64>,
    /// Why, where the status does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<OrderReason>,
    /// For a paid order: its tickets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tickets: Vec<Ticket>,
}

/// A ticket: one seat, or one general-admission entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Ticket {
    /// The ticket.
    pub ticket: String,
    /// Its event.
    pub event: String,
    /// Its ticket type.
    pub ticket_type: String,
    /// The seat (index on the event's map), for a seated ticket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat: Option<SeatIndex>,
    /// Grows when the ticket changes hands; older QR codes stop working.
    pub version: u32,
    /// What the QR code encodes: signed, so a gate can check it offline.
    pub qr: String,
}

/// A seat's state in the live map (two bits per seat in a [`SeatSnapshot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum SeatState {
    /// Can be held.
    Free = 0,
    /// Held by a buyer; may come back.
    Held = 1,
    /// Sold (or in an order awaiting payment).
    Sold = 2,
}

impl SeatState {
    /// Decodes the two-bit form.
    pub fn from_bits(bits: u8) -> Option<Self> {
        match bits {
            0 => Some(Self::Free),
            1 => Some(Self::Held),
            2 => Some(Self::Sold),
            _ => None,
        }
    }
}

/// General-admission availability of one ticket type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GaAvailability {
    /// The ticket type.
    pub ticket_type: String,
    /// Tickets that can still be held.
    pub available: u32,
}

/// A change to the live seat map, published on `seats:{event}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SeatDelta {
    /// The inventory version after this change; versions grow by one per change.
    pub v: u64,
    /// Seats that became free.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub free: Vec<SeatIndex>,
    /// Seats that became held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<SeatIndex>,
    /// Seats that became sold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sold: Vec<SeatIndex>,
    /// General-admission ticket types whose availability changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ga: Vec<GaAvailability>,
}

/// The whole live seat map: the `seats:{event}` channel's snapshot.
///
/// `state` packs four seats per byte, seat `i` in bits `2*(i%4)..2*(i%4)+2` of byte `i/4`
/// (values of [`SeatState`]), then base64 (standard alphabet, padded). A 50,000-seat map is
/// 16,668 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatSnapshot {
    /// The inventory version this state is at; deltas follow with `v + 1`, `v + 2`, ...
    pub v: u64,
    /// How many seats the map has.
    pub seats: u32,
    /// The packed states.
    pub state: String,
    /// General-admission availability per ticket type.
    pub ga: Vec<GaAvailability>,
}

/// Packs seat states two bits each, four to a byte (see [`SeatSnapshot`]).
pub fn pack_seat_states(states: impl ExactSizeIterator<Item = SeatState>) -> Vec<u8> {
    let mut bytes = vec![0u8; states.len().div_ceil(4)];
    for (i, state) in states.enumerate() {
        bytes[i / 4] |= (state as u8) << (2 * (i % 4));
    }
    bytes
}

/// Unpacks `count` seat states packed by [`pack_seat_states`]; `None` if the bytes are short or
/// hold an unknown state.
pub fn unpack_seat_states(bytes: &[u8], count: usize) -> Option<Vec<SeatState>> {
    if bytes.len() < count.div_ceil(4) {
        return None;
    }
    (0..count)
        .map(|i| SeatState::from_bits((bytes[i / 4] >> (2 * (i % 4))) & 0b11))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn packed_seat_states_unpack_to_the_same_states(raw in proptest::collection::vec(0u8..3, 0..300)) {
            let states: Vec<SeatState> = raw.iter().map(|b| SeatState::from_bits(*b).unwrap()).collect();
            let packed = pack_seat_states(states.iter().copied());
            prop_assert_eq!(packed.len(), states.len().div_ceil(4));
            prop_assert_eq!(unpack_seat_states(&packed, states.len()), Some(states));
        }
    }

    #[test]
    fn a_command_reads_as_documented() {
        let json = r#"{"kind":"hold_best_available","event":"e1","category":"c1","quantity":2}"#;
        let command: Command = serde_json::from_str(json).unwrap();
        assert_eq!(command.event(), "e1");
        assert_eq!(command.kind(), "hold_best_available");
        assert_eq!(serde_json::to_string(&command).unwrap(), json);
    }
}
