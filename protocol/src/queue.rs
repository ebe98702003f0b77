//! The waiting room on the wire: joining an onsale's queue, the place's live status, and the
//! aggregate counts on `queue:{onsale}`.
//!
//! A buyer sends `queue.join` for an onsale and gets `queue.joined` with its place's status.
//! From then on the node pushes `queue.status` whenever that status changes (positions at most
//! once a second, coalesced; admissions, pauses and sold-out at once), for as long as the
//! connection lives. Joining again, from any tab, device or node, attaches to the same place.
//! Once admitted, the status carries the [`AdmissionGrant`] that purchase commands present.

use serde::{Deserialize, Serialize};

/// Where a buyer's place stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PlaceState {
    /// Joined before the start: the order is drawn at the start (no position yet).
    PreQueue,
    /// In line, with a position.
    Waiting,
    /// Admitted: the status carries the admission to present with purchase commands.
    Admitted,
    /// Nothing is left to sell right now; the place is kept and admission resumes if seats
    /// come back while the onsale is open.
    SoldOut,
    /// The onsale is closed; the place is gone.
    Closed,
    /// The place is gone: the admission ended, the buyer left, or the grace period after a
    /// disconnect passed. Joining again queues at the back.
    Ended,
}

/// Why a position went up, or why a place changed in a way a buyer would not expect. A
/// position only ever increases with one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StatusReason {
    /// The pre-queue was shuffled at the start; this is the place's first position.
    Drawn,
    /// The buyer joined again after the place was gone, and queues at the back.
    Rejoined,
    /// The operator paused admissions (positions hold still).
    Paused,
    /// The operator resumed admissions.
    Resumed,
    /// The event's inventory ran out.
    SoldOut,
    /// Inventory came back (for example expired holds) and admission resumed.
    Restocked,
    /// The admission was not used within its window after the buyer was admitted while away.
    NoShow,
    /// The admission's time ran out, or the buyer finished checkout or released.
    AdmissionEnded,
    /// The buyer left the queue.
    Left,
    /// The buyer was away longer than the grace period.
    GraceExpired,
    /// The operator closed the onsale.
    Closed,
}

/// A purchase staged while waiting ("shop while you wait"): the moment the buyer is admitted,
/// the waiting room holds the best `quantity` seats of `category` for them, as if they had sent
/// `hold_best_available` themselves with request id `intent-{place}`; the result arrives on
/// the inbox like any other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseIntent {
    /// The price category (UUID).
    pub category: String,
    /// How many seats, 1 to [`crate::booking::MAX_SEATS_PER_COMMAND`].
    pub quantity: u32,
}

/// The signed admission a buyer presents in the `admission` field of purchase commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionGrant {
    /// The token (opaque to clients).
    pub token: String,
    /// When it lapses (unix seconds).
    pub expires_at: u64,
}

/// A buyer's place in an onsale's queue, as pushed in `queue.status` and `queue.joined`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStatus {
    /// The onsale.
    pub onsale: String,
    /// The place's opaque id: the id the published pre-queue order names.
    pub place: String,
    /// Where the place stands.
    pub state: PlaceState,
    /// 1 for the next buyer to be admitted; only while `waiting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// Buyers ahead in line (`position - 1`); only while `waiting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ahead: Option<u64>,
    /// Estimated wait, in seconds, as a range `[earliest, latest]` from the measured rate of
    /// admissions; absent while nothing is admitted (paused, sold out, not yet measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<[u64; 2]>,
    /// Whether the operator has paused admissions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Why the status changed, when that is worth saying (always when a position went up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<StatusReason>,
    /// The admission, once `admitted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission: Option<AdmissionGrant>,
}

/// What `queue:{onsale}` publishes: aggregate counts for dashboards and for anybody watching
/// the onsale, and the fairness record (the seed's commitment, then the seed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum QueueEvent {
    /// The queue's counts, about once a second while anything moves.
    Counts(QueueCounts),
    /// The pre-queue opened: the SHA-256 of the shuffle seed, in hex, fixed from now on.
    Commitment {
        /// Lowercase hex SHA-256 of the seed.
        seed_sha256: String,
    },
    /// The start: the seed and the pre-queue order it produced (place ids, first admitted
    /// first). `marquee verify-shuffle` checks it.
    Draw {
        /// Lowercase hex SHA-256 of the seed.
        seed_sha256: String,
        /// The seed, lowercase hex.
        seed: String,
        /// The pre-queue's places in admission order.
        order: Vec<String>,
    },
    /// The onsale's settings or state changed (also published on `admin:{onsale}` with the
    /// operator's name).
    Changed(OnsaleChange),
}

/// An onsale's live counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueCounts {
    /// `scheduled`, `pre_queue`, `live`, `paused`, `sold_out` or `closed`.
    pub status: String,
    /// Places waiting (pre-queue included).
    pub waiting: u64,
    /// Admitted since the start.
    pub admitted: u64,
    /// Admitted shoppers whose admission is still running.
    pub active: u64,
    /// Configured admissions per second.
    pub admission_rate: f64,
    /// Configured most active shoppers.
    pub active_cap: u64,
    /// Admissions per second measured over the last ten seconds.
    pub outflow: f64,
    /// Whether the event's inventory is exhausted right now.
    pub sold_out: bool,
}

/// A change to an onsale's state or admission settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnsaleChange {
    /// The onsale's status after the change.
    pub status: String,
    /// Admissions per second after the change.
    pub admission_rate: f64,
    /// Most active shoppers after the change.
    pub active_cap: u64,
    /// Who made it: an operator's user id, or `system` for scheduled transitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}
