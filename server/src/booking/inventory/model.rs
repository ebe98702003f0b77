//! One event's inventory as its owner holds it: the seats, categories, ticket types, onsales,
//! holds and orders, and the changes ([`Change`]) the store persists.

use crate::admission::AdmissionPass;
use crate::booking::best_available::{Row, Seat};
use crate::settlement::PaymentEventKind;
use marquee_protocol::ErrorCode;
use marquee_protocol::booking::{
    Command, GaAvailability, OrderReason, OrderStatus, Outcome, SeatIndex, SeatState,
};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use uuid::Uuid;

/// A seat as the owner needs it.
#[derive(Debug, Clone)]
pub struct SeatInfo {
    /// Database id.
    pub seat_id: Uuid,
    /// Index into [`Inventory::categories`].
    pub category: u32,
}

/// A price category and the seated ticket type sold in it.
#[derive(Debug, Clone)]
pub struct CategoryInfo {
    /// Database id.
    pub id: Uuid,
    /// The seated ticket type for this category, if one is on sale.
    pub ticket_type: Option<Uuid>,
}

/// What a ticket type allows.
#[derive(Debug, Clone)]
pub struct TicketTypeInfo {
    /// Price per ticket in minor units.
    pub price_minor: i64,
    /// ISO 4217 currency.
    pub currency: String,
    /// Smallest quantity per order.
    pub min_per_order: u32,
    /// Largest quantity per order.
    pub max_per_order: u32,
    /// For general admission: quota, held and sold.
    pub ga: Option<GaCounts>,
}

/// General-admission counters, mirrored from `ticket_type`.
#[derive(Debug, Clone, Copy)]
pub struct GaCounts {
    /// How many exist.
    pub quota: u32,
    /// How many are held.
    pub held: u32,
    /// How many are sold.
    pub sold: u32,
}

impl GaCounts {
    pub(super) fn available(&self) -> u32 {
        self.quota.saturating_sub(self.held + self.sold)
    }
}

/// An onsale's rules, as far as commands are concerned.
#[derive(Debug, Clone)]
pub struct OnsaleInfo {
    /// Database id.
    pub id: Uuid,
    /// Whether its status is `live`.
    pub live: bool,
    /// Opens at (unix ms).
    pub starts_at: i64,
    /// Closes at (unix ms), if ever.
    pub ends_at: Option<i64>,
    /// How long a hold lasts (ms).
    pub hold_ms: i64,
    /// Most seats or tickets one buyer may hold or own for the event.
    pub per_user_limit: u32,
    /// Whether commands need a waiting-room admission.
    pub requires_admission: bool,
}

/// An active hold.
#[derive(Debug, Clone)]
pub struct HoldInfo {
    /// The buyer.
    pub user: String,
    /// The onsale it was made under.
    pub onsale: Uuid,
    /// Seats (indexes) held.
    pub seats: Vec<SeatIndex>,
    /// General admission: ticket type and quantity.
    pub ga: Option<(Uuid, u32)>,
    /// When it lapses (unix ms).
    pub expires_at: i64,
}

impl HoldInfo {
    pub(super) fn quantity(&self) -> u32 {
        self.seats.len() as u32 + self.ga.map_or(0, |(_, q)| q)
    }
}

/// How a hold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldEnd {
    /// The buyer gave it back.
    Released,
    /// The sweeper expired it.
    Expired,
}

/// One line of an order.
#[derive(Debug, Clone)]
pub struct OrderLine {
    /// Ticket type.
    pub ticket_type: Uuid,
    /// The seat, for seated tickets.
    pub seat: Option<Uuid>,
    /// Quantity (1 for a seat).
    pub quantity: u32,
    /// Price per ticket.
    pub unit_minor: i64,
}

/// A state change the store must persist.
#[derive(Debug, Clone)]
pub enum Change {
    /// A new hold.
    Hold {
        /// Its id.
        hold: Uuid,
        /// The hold itself.
        info: HoldInfo,
        /// `(seat id, ticket type)` per seat, in the order of `info.seats`.
        seat_items: Vec<(Uuid, Uuid)>,
    },
    /// A hold ended without a sale.
    End {
        /// The hold.
        hold: Uuid,
        /// Released or expired.
        how: HoldEnd,
        /// General admission given back.
        ga: Option<(Uuid, u32)>,
    },
    /// A hold became an order awaiting payment.
    Checkout {
        /// The hold.
        hold: Uuid,
        /// The new order.
        order: Uuid,
        /// The buyer.
        user: String,
        /// Total in minor units.
        total_minor: i64,
        /// Currency.
        currency: String,
        /// Payment due (unix ms).
        payment_due_at: i64,
        /// Its lines.
        lines: Vec<OrderLine>,
        /// General admission moving from held to sold.
        ga: Option<(Uuid, u32)>,
    },
    /// An order was paid: its tickets are issued.
    Paid {
        /// The order.
        order: Uuid,
        /// Its buyer.
        user: String,
        /// The provider that took the payment.
        provider: String,
        /// The provider's payment reference.
        payment_ref: String,
        /// The tickets.
        tickets: Vec<NewTicket>,
        /// For a late payment: the seats (database ids) and general-admission tickets claimed
        /// again, since the order's expiry had given them back.
        reclaimed: Option<Reclaimed>,
    },
    /// An order ended without (keeping) its sale.
    OrderEnded {
        /// The order.
        order: Uuid,
        /// Its buyer.
        user: String,
        /// Its new status.
        to: marquee_protocol::booking::OrderStatus,
        /// Recorded for operators.
        reason: Option<&'static str>,
        /// Its seat claims go (the seats are back on sale).
        freed: bool,
        /// General admission going from sold back to available, when freed.
        ga: Option<(Uuid, u32)>,
        /// Its tickets stop working.
        void_tickets: bool,
    },
    /// An order's payment deadline moved later.
    OrderExtended {
        /// The order.
        order: Uuid,
        /// The new deadline (unix ms).
        due: i64,
    },
}

/// One buyer's command, as the owner receives it.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The buyer.
    pub user: &'a str,
    /// The command.
    pub command: &'a Command,
    /// The waiting-room admission presented, if any, once its signature and expiry checked
    /// out (the inventory checks that it is this buyer's, for the onsale open now).
    pub admission: Option<&'a AdmissionPass>,
}

/// An order awaiting payment, as its event's owner keeps it in memory.
#[derive(Debug, Clone)]
pub struct PendingOrder {
    /// The buyer.
    pub user: String,
    /// The onsale its hold was made under (for the processing extension), if known.
    pub onsale: Option<Uuid>,
    /// Its seats.
    pub seats: Vec<SeatIndex>,
    /// Its general-admission tickets: ticket type and quantity.
    pub ga: Option<(Uuid, u32)>,
    /// Pay before this (unix ms).
    pub due: i64,
    /// When it was checked out (unix ms): extensions stop at `created + cap`.
    pub created: i64,
}

/// One line of an order, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLine {
    /// Ticket type.
    pub ticket_type: Uuid,
    /// The seat (database id and index on the map), for a seated line.
    pub seat: Option<(Uuid, SeatIndex)>,
    /// Quantity (1 for a seat).
    pub quantity: u32,
}

/// An order as Postgres has it, read for a payment event.
#[derive(Debug, Clone)]
pub struct OrderRecord {
    /// The order.
    pub id: Uuid,
    /// The buyer.
    pub user: String,
    /// Its status.
    pub status: OrderStatus,
    /// Its lines.
    pub lines: Vec<StoredLine>,
    /// The provider and reference of the payment that paid it, once paid.
    pub paid_with: Option<(String, String)>,
    /// What it costs, in minor units.
    pub total_minor: i64,
    /// In this currency.
    pub currency: String,
    /// The onsale it was bought in (its hold's), whose per-buyer limit a late payment keeps.
    pub onsale: Option<Uuid>,
    /// The payment its checkout started: the provider, and the reference once the provider
    /// gave it. `None` for orders whose payment is started elsewhere (no provider configured).
    pub started: Option<(String, Option<String>)>,
}

/// A payment event to apply (or an operator's change, under provider
/// [`crate::settlement::OPERATOR`]).
#[derive(Debug, Clone, Copy)]
pub struct PaymentEvent<'a> {
    /// What happened.
    pub kind: PaymentEventKind,
    /// Who reported it.
    pub provider: &'a str,
    /// The provider's payment reference.
    pub payment_ref: &'a str,
    /// The amount and currency the event reports, if it reports one.
    pub amount: Option<(i64, &'a str)>,
}

/// Where an order stands after this owner changed it: newer than the record Postgres gave
/// with a payment event, which was read before the owner's own batches committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderState {
    /// Its status.
    pub status: OrderStatus,
    /// The payment that paid it, once paid.
    pub paid_with: Option<(String, String)>,
}

impl OrderRecord {
    pub(super) fn seats(&self) -> Vec<SeatIndex> {
        self.lines
            .iter()
            .filter_map(|l| l.seat.map(|s| s.1))
            .collect()
    }

    pub(super) fn ga(&self) -> Option<(Uuid, u32)> {
        self.lines
            .iter()
            .find(|l| l.seat.is_none())
            .map(|l| (l.ticket_type, l.quantity))
    }
}

/// A ticket to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTicket {
    /// Its id.
    pub id: Uuid,
    /// Its ticket type.
    pub ticket_type: Uuid,
    /// The seat (database id and index), for a seated ticket.
    pub seat: Option<(Uuid, SeatIndex)>,
}

/// What a late payment claims again, after its order's expiry gave it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reclaimed {
    /// Seats (database ids).
    pub seats: Vec<Uuid>,
    /// General-admission tickets: ticket type and quantity.
    pub ga: Option<(Uuid, u32)>,
}

/// What the buyer is told about their order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderNews {
    /// The order.
    pub order: Uuid,
    /// The buyer.
    pub user: String,
    /// Where it stands now.
    pub status: OrderStatus,
    /// For an order still awaiting payment: the deadline (unix ms).
    pub due: Option<i64>,
    /// Why, where the status does not say.
    pub reason: Option<OrderReason>,
    /// For a paid order: the tickets issued.
    pub tickets: Vec<NewTicket>,
}

/// The result of applying one payment event.
#[derive(Debug, Clone)]
pub struct PaymentDecision {
    /// What it did, in a word, recorded on the payment event for operators.
    pub outcome: &'static str,
    /// What changes, for the store.
    pub change: Option<Change>,
    /// What the buyer is told, if anything changed for them.
    pub news: Option<OrderNews>,
    /// A provider must give money back: the late payment itself (its seats were sold), or,
    /// for an operator's refund or cancellation, the payment that paid the order.
    pub refund: Option<(String, String)>,
}

impl PaymentDecision {
    pub(super) fn ignored(outcome: &'static str) -> Self {
        Self {
            outcome,
            change: None,
            news: None,
            refund: None,
        }
    }
}

/// One event's inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// The tenant that owns the event.
    pub tenant: Uuid,
    /// The event.
    pub event: Uuid,
    /// The committed inventory version this state corresponds to.
    pub version: i64,
    /// Where best-available aims (the stage).
    pub focal: (f64, f64),
    /// Seats by index.
    pub seats: Vec<SeatInfo>,
    /// Each seat's state, by index.
    pub state: Vec<SeatState>,
    /// Seats grouped into rows in physical order, for the seat chooser.
    pub rows: Vec<Row>,
    /// Price categories; [`SeatInfo::category`] indexes this.
    pub categories: Vec<CategoryInfo>,
    /// Ticket types by id.
    pub ticket_types: HashMap<Uuid, TicketTypeInfo>,
    /// The event's onsales.
    pub onsales: Vec<OnsaleInfo>,
    /// Active holds by id.
    pub holds: HashMap<Uuid, HoldInfo>,
    /// Holds that ended while this owner held the event, so a late release or checkout can be
    /// told `hold_expired` rather than `hold_not_found`.
    pub ended: HashMap<Uuid, String>,
    /// Seats and tickets each buyer holds or owns (orders awaiting payment or paid).
    pub per_user: HashMap<String, u32>,
    /// Active holds by expiry, soonest first (entries of ended holds are skipped lazily).
    pub expiry: BinaryHeap<Reverse<(i64, Uuid)>>,
    /// Orders awaiting payment ([`super::orders`]).
    pub pending: HashMap<Uuid, PendingOrder>,
    /// Orders awaiting payment by deadline, soonest first (stale entries skipped lazily).
    pub order_expiry: BinaryHeap<Reverse<(i64, Uuid)>>,
    /// Orders this owner moved on (paid, ended), as it left them: payment events read before
    /// those changes committed are decided against this, not the older record they carry.
    pub orders: HashMap<Uuid, OrderState>,
}

/// Remembered ended holds beyond this are forgotten (they answer `hold_not_found`).
const MAX_ENDED: usize = 200_000;

/// A rejection with `code`.
pub(super) fn reject(code: ErrorCode, message: impl Into<String>) -> Outcome {
    Outcome::rejected(code, message)
}

impl Inventory {
    /// Builds the chooser's rows from `(row key, seat number, index, x, y)` per seat.
    pub fn build_rows(
        seats: &[SeatInfo],
        layout: &mut [(String, i32, SeatIndex, f64, f64)],
    ) -> Vec<Row> {
        layout.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let mut rows: Vec<Row> = Vec::new();
        let mut current: Option<&str> = None;
        for (key, _, index, x, y) in layout.iter() {
            if current != Some(key.as_str()) {
                rows.push(Row::default());
                current = Some(key.as_str());
            }
            let row = rows.last_mut().expect("pushed above");
            row.seats.push(Seat {
                id: *index,
                x: *x,
                y: *y,
                category: seats[*index as usize].category,
            });
        }
        rows
    }

    /// The onsale open at `now`, if any (the latest-starting one when several overlap).
    pub fn open_onsale(&self, now: i64) -> Option<&OnsaleInfo> {
        self.onsales
            .iter()
            .filter(|o| o.live && o.starts_at <= now && o.ends_at.is_none_or(|end| now < end))
            .max_by_key(|o| o.starts_at)
    }

    /// Availability of a general-admission ticket type.
    pub fn ga_availability(&self, ticket_type: Uuid) -> Option<GaAvailability> {
        let ga = self.ticket_types.get(&ticket_type)?.ga?;
        Some(GaAvailability {
            ticket_type: ticket_type.to_string(),
            available: ga.available(),
        })
    }

    /// Every general-admission ticket type's availability, ordered by id.
    pub fn all_ga(&self) -> Vec<GaAvailability> {
        let mut ids: Vec<Uuid> = self
            .ticket_types
            .iter()
            .filter(|(_, t)| t.ga.is_some())
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids.into_iter()
            .filter_map(|id| self.ga_availability(id))
            .collect()
    }

    pub(super) fn remember_ended(&mut self, hold: Uuid, user: String) {
        if self.ended.len() >= MAX_ENDED {
            self.ended.clear();
        }
        self.ended.insert(hold, user);
    }

    /// The chooser's view of a seat.
    pub(super) fn chooser_seat(&self, index: SeatIndex) -> Seat {
        self.rows
            .iter()
            .flat_map(|r| r.seats.iter())
            .find(|s| s.id == index)
            .copied()
            .unwrap_or(Seat {
                id: index,
                x: 0.0,
                y: 0.0,
                category: self.seats[index as usize].category,
            })
    }
}
