//! One event's inventory as its owner holds it in memory, and the rules that decide each
//! command.
//!
//! [`Inventory::apply`] validates one command against the current state and, if it succeeds,
//! changes the state and returns the [`Change`] the store must persist. Nothing here touches
//! Postgres or the clock: the owner passes `now` in, loads the state through
//! [`crate::booking::store`], and commits the changes of many commands in one transaction.
//! Should that commit fail, the owner throws this state away and loads it again, so a failed
//! batch never leaves memory and database disagreeing.

use super::best_available::{self, Row, Seat};
use super::orders::{NewTicket, OrderState, PendingOrder, Reclaimed};
use crate::admission::AdmissionPass;
use marquee_protocol::ErrorCode;
use marquee_protocol::booking::{
    Command, GaAvailability, MAX_SEATS_PER_COMMAND, Outcome, SeatDelta, SeatIndex, SeatState,
};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
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
    fn available(&self) -> u32 {
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
    fn quantity(&self) -> u32 {
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

/// Seat and general-admission changes accumulated over a batch, published as one
/// [`SeatDelta`].
#[derive(Debug, Default)]
pub struct DeltaBuilder {
    seats: BTreeMap<SeatIndex, SeatState>,
    pub(super) ga: BTreeSet<Uuid>,
}

impl DeltaBuilder {
    /// Whether anything changed.
    pub fn is_empty(&self) -> bool {
        self.seats.is_empty() && self.ga.is_empty()
    }

    /// The delta at version `v`, with the final state of each changed seat.
    pub fn build(&self, v: u64, inventory: &Inventory) -> SeatDelta {
        let mut delta = SeatDelta {
            v,
            ..SeatDelta::default()
        };
        for (&seat, &state) in &self.seats {
            match state {
                SeatState::Free => delta.free.push(seat),
                SeatState::Held => delta.held.push(seat),
                SeatState::Sold => delta.sold.push(seat),
            }
        }
        delta.ga = self
            .ga
            .iter()
            .filter_map(|id| inventory.ga_availability(*id))
            .collect();
        delta
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

fn reject(code: ErrorCode, message: impl Into<String>) -> Outcome {
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

    /// Decides one command. On success the state already reflects it and the change to
    /// persist is returned with the outcome; a rejection changes nothing.
    pub fn apply(
        &mut self,
        request: &Request<'_>,
        now: i64,
        delta: &mut DeltaBuilder,
    ) -> (Outcome, Option<Change>) {
        match self.decide(request, now, delta) {
            Ok((outcome, change)) => (outcome, Some(change)),
            Err(outcome) => (outcome, None),
        }
    }

    fn decide(
        &mut self,
        request: &Request<'_>,
        now: i64,
        delta: &mut DeltaBuilder,
    ) -> Result<(Outcome, Change), Outcome> {
        match request.command {
            Command::HoldSeats { seats, .. } => {
                let onsale = self.onsale_for(request, now)?;
                self.hold_seats(request.user, &onsale, seats, now, delta)
            }
            Command::HoldBestAvailable {
                category, quantity, ..
            } => {
                let onsale = self.onsale_for(request, now)?;
                let category = self.category(category)?;
                let ticket_type =
                    self.categories[category as usize]
                        .ticket_type
                        .ok_or_else(|| {
                            reject(ErrorCode::UnknownCategory, "that category is not on sale")
                        })?;
                let max = self.ticket_types[&ticket_type]
                    .max_per_order
                    .min(MAX_SEATS_PER_COMMAND as u32);
                if *quantity == 0 || *quantity > max {
                    return Err(reject(
                        ErrorCode::InvalidQuantity,
                        format!("quantity must be between 1 and {max}"),
                    ));
                }
                self.check_limit(request.user, &onsale, *quantity)?;
                let state = &self.state;
                let chosen = best_available::best_available(
                    &self.rows,
                    category,
                    *quantity as usize,
                    self.focal,
                    |i| state[i as usize] == SeatState::Free,
                )
                .ok_or_else(|| {
                    reject(
                        ErrorCode::SoldOut,
                        format!("fewer than {quantity} seats are free in that category"),
                    )
                })?;
                self.hold_seats(request.user, &onsale, &chosen, now, delta)
            }
            Command::HoldGa {
                ticket_type,
                quantity,
                ..
            } => {
                let onsale = self.onsale_for(request, now)?;
                self.hold_ga(request.user, &onsale, ticket_type, *quantity, now, delta)
            }
            Command::Release { hold, .. } => {
                let id = self.own_hold(request.user, hold, now)?;
                let info = self.holds.remove(&id).expect("own_hold checked it");
                Ok((
                    Outcome::Released {
                        hold: id.to_string(),
                    },
                    self.end_hold(id, info, HoldEnd::Released, delta),
                ))
            }
            Command::Checkout { hold, .. } => {
                let id = self.own_hold(request.user, hold, now)?;
                Ok(self.checkout(id, now, delta))
            }
            _ => Err(reject(ErrorCode::BadRequest, "unknown command")),
        }
    }

    fn onsale_for(&self, request: &Request<'_>, now: i64) -> Result<OnsaleInfo, Outcome> {
        let onsale = self
            .open_onsale(now)
            .ok_or_else(|| reject(ErrorCode::OnsaleClosed, "the event has no onsale open now"))?;
        if onsale.requires_admission {
            let message = match request.admission {
                None => Some("this onsale admits buyers through its waiting room"),
                Some(pass) if pass.user != request.user || pass.tenant != self.tenant => {
                    Some("this admission belongs to another buyer")
                }
                Some(pass) if pass.onsale != onsale.id => {
                    Some("this admission is for another onsale")
                }
                Some(_) => None,
            };
            if let Some(message) = message {
                return Err(reject(ErrorCode::AdmissionRequired, message));
            }
        }
        Ok(onsale.clone())
    }

    fn category(&self, id: &str) -> Result<u32, Outcome> {
        let unknown = || {
            reject(
                ErrorCode::UnknownCategory,
                "no such price category for this event",
            )
        };
        let id = Uuid::parse_str(id).map_err(|_| unknown())?;
        self.categories
            .iter()
            .position(|c| c.id == id)
            .map(|i| i as u32)
            .ok_or_else(unknown)
    }

    fn check_limit(&self, user: &str, onsale: &OnsaleInfo, more: u32) -> Result<(), Outcome> {
        let has = self.per_user.get(user).copied().unwrap_or(0);
        if has + more > onsale.per_user_limit {
            return Err(reject(
                ErrorCode::LimitExceeded,
                format!(
                    "at most {} per buyer for this event; you have {has}",
                    onsale.per_user_limit
                ),
            ));
        }
        Ok(())
    }

    fn hold_seats(
        &mut self,
        user: &str,
        onsale: &OnsaleInfo,
        seats: &[SeatIndex],
        now: i64,
        delta: &mut DeltaBuilder,
    ) -> Result<(Outcome, Change), Outcome> {
        if seats.is_empty() || seats.len() > MAX_SEATS_PER_COMMAND {
            return Err(reject(
                ErrorCode::InvalidQuantity,
                format!("name between 1 and {MAX_SEATS_PER_COMMAND} seats"),
            ));
        }
        let mut seen = HashSet::with_capacity(seats.len());
        if let Some(dup) = seats.iter().find(|s| !seen.insert(**s)) {
            return Err(reject(
                ErrorCode::BadRequest,
                format!("seat {dup} is named twice"),
            ));
        }
        if let Some(bad) = seats.iter().find(|s| **s as usize >= self.seats.len()) {
            return Err(reject(
                ErrorCode::UnknownSeat,
                format!("seat {bad} is not on this event's map"),
            ));
        }
        let mut seat_items = Vec::with_capacity(seats.len());
        for &s in seats {
            let seat = &self.seats[s as usize];
            let ticket_type = self.categories[seat.category as usize]
                .ticket_type
                .ok_or_else(|| {
                    reject(
                        ErrorCode::SeatUnavailable,
                        format!("seat {s} is not on sale"),
                    )
                })?;
            seat_items.push((seat.seat_id, ticket_type));
        }
        let max = seat_items
            .iter()
            .map(|(_, t)| self.ticket_types[t].max_per_order)
            .min()
            .unwrap_or(0);
        let min = seat_items
            .iter()
            .map(|(_, t)| self.ticket_types[t].min_per_order)
            .max()
            .unwrap_or(1);
        if seats.len() as u32 > max || (seats.len() as u32) < min {
            return Err(reject(
                ErrorCode::InvalidQuantity,
                format!("between {min} and {max} seats per order"),
            ));
        }
        self.check_limit(user, onsale, seats.len() as u32)?;
        if seats
            .iter()
            .any(|s| self.state[*s as usize] != SeatState::Free)
        {
            let requested: Vec<Seat> = seats.iter().map(|s| self.chooser_seat(*s)).collect();
            let state = &self.state;
            let alternative = best_available::nearest_equivalent(&self.rows, &requested, |i| {
                state[i as usize] == SeatState::Free
            });
            return Err(Outcome::Rejected {
                code: ErrorCode::SeatUnavailable,
                message: "some of those seats are taken".into(),
                alternative,
            });
        }
        for &s in seats {
            self.set_seat(s, SeatState::Held, delta);
        }
        let info = HoldInfo {
            user: user.to_owned(),
            onsale: onsale.id,
            seats: seats.to_vec(),
            ga: None,
            expires_at: now + onsale.hold_ms,
        };
        Ok(self.add_hold(info, seat_items))
    }

    fn hold_ga(
        &mut self,
        user: &str,
        onsale: &OnsaleInfo,
        ticket_type: &str,
        quantity: u32,
        now: i64,
        delta: &mut DeltaBuilder,
    ) -> Result<(Outcome, Change), Outcome> {
        let unknown = || {
            reject(
                ErrorCode::UnknownTicketType,
                "no such general-admission ticket type for this event",
            )
        };
        let id = Uuid::parse_str(ticket_type).map_err(|_| unknown())?;
        let info = self.ticket_types.get(&id).ok_or_else(unknown)?;
        let ga = info.ga.ok_or_else(unknown)?;
        if quantity < info.min_per_order || quantity > info.max_per_order {
            return Err(reject(
                ErrorCode::InvalidQuantity,
                format!(
                    "quantity must be between {} and {}",
                    info.min_per_order, info.max_per_order
                ),
            ));
        }
        self.check_limit(user, onsale, quantity)?;
        if ga.available() < quantity {
            return Err(reject(
                ErrorCode::SoldOut,
                format!("only {} left", ga.available()),
            ));
        }
        if let Some(counts) = self.ticket_types.get_mut(&id).and_then(|t| t.ga.as_mut()) {
            counts.held += quantity;
        }
        delta.ga.insert(id);
        let info = HoldInfo {
            user: user.to_owned(),
            onsale: onsale.id,
            seats: Vec::new(),
            ga: Some((id, quantity)),
            expires_at: now + onsale.hold_ms,
        };
        Ok(self.add_hold(info, Vec::new()))
    }

    fn add_hold(&mut self, info: HoldInfo, seat_items: Vec<(Uuid, Uuid)>) -> (Outcome, Change) {
        let hold = Uuid::now_v7();
        *self.per_user.entry(info.user.clone()).or_default() += info.quantity();
        self.expiry.push(Reverse((info.expires_at, hold)));
        self.holds.insert(hold, info.clone());
        let outcome = Outcome::Held {
            hold: hold.to_string(),
            seats: info.seats.clone(),
            ticket_type: info.ga.map(|(t, _)| t.to_string()),
            quantity: info.quantity(),
            expires_at: info.expires_at.max(0) as u64,
        };
        (
            outcome,
            Change::Hold {
                hold,
                info,
                seat_items,
            },
        )
    }

    /// The buyer's active hold. One past its expiry counts as expired even before the sweeper
    /// (which runs at the end of the same batch) gets to it.
    fn own_hold(&self, user: &str, hold: &str, now: i64) -> Result<Uuid, Outcome> {
        let not_found = || {
            reject(
                ErrorCode::HoldNotFound,
                "no such hold for you on this event",
            )
        };
        let expired = || reject(ErrorCode::HoldExpired, "that hold is no longer active");
        let id = Uuid::parse_str(hold).map_err(|_| not_found())?;
        match self.holds.get(&id) {
            Some(h) if h.user == user && h.expires_at <= now => Err(expired()),
            Some(h) if h.user == user => Ok(id),
            Some(_) => Err(not_found()),
            None => match self.ended.get(&id) {
                Some(owner) if owner == user => Err(expired()),
                _ => Err(not_found()),
            },
        }
    }

    fn remember_ended(&mut self, hold: Uuid, user: String) {
        if self.ended.len() >= MAX_ENDED {
            self.ended.clear();
        }
        self.ended.insert(hold, user);
    }

    fn end_hold(
        &mut self,
        id: Uuid,
        info: HoldInfo,
        how: HoldEnd,
        delta: &mut DeltaBuilder,
    ) -> Change {
        for &s in &info.seats {
            self.set_seat(s, SeatState::Free, delta);
        }
        if let Some((t, q)) = info.ga {
            if let Some(counts) = self.ticket_types.get_mut(&t).and_then(|t| t.ga.as_mut()) {
                counts.held = counts.held.saturating_sub(q);
            }
            delta.ga.insert(t);
        }
        if let Some(n) = self.per_user.get_mut(&info.user) {
            *n = n.saturating_sub(info.quantity());
        }
        let ga = info.ga;
        self.remember_ended(id, info.user);
        Change::End { hold: id, how, ga }
    }

    fn checkout(&mut self, id: Uuid, now: i64, delta: &mut DeltaBuilder) -> (Outcome, Change) {
        let info = self.holds.remove(&id).expect("caller checked the hold");
        let mut lines = Vec::new();
        let mut currency = String::new();
        for &s in &info.seats {
            let seat = &self.seats[s as usize];
            let ticket_type = self.categories[seat.category as usize]
                .ticket_type
                .expect("a held seat has a ticket type");
            let t = &self.ticket_types[&ticket_type];
            currency.clone_from(&t.currency);
            lines.push(OrderLine {
                ticket_type,
                seat: Some(seat.seat_id),
                quantity: 1,
                unit_minor: t.price_minor,
            });
        }
        for &s in &info.seats {
            self.set_seat(s, SeatState::Sold, delta);
        }
        if let Some((t, q)) = info.ga {
            if let Some(tt) = self.ticket_types.get_mut(&t) {
                currency.clone_from(&tt.currency);
                lines.push(OrderLine {
                    ticket_type: t,
                    seat: None,
                    quantity: q,
                    unit_minor: tt.price_minor,
                });
                if let Some(counts) = tt.ga.as_mut() {
                    counts.held = counts.held.saturating_sub(q);
                    counts.sold += q;
                }
            }
            delta.ga.insert(t);
        }
        let total_minor = lines
            .iter()
            .map(|l| l.unit_minor * i64::from(l.quantity))
            .sum();
        let hold_ms = self
            .onsales
            .iter()
            .find(|o| o.id == info.onsale)
            .map_or(600_000, |o| o.hold_ms);
        let order = Uuid::now_v7();
        let payment_due_at = now + hold_ms;
        let ga = info.ga;
        let user = info.user.clone();
        self.add_pending(
            order,
            PendingOrder {
                user: user.clone(),
                onsale: Some(info.onsale),
                seats: info.seats.clone(),
                ga,
                due: payment_due_at,
                created: now,
            },
        );
        self.remember_ended(id, info.user);
        (
            Outcome::CheckedOut {
                order: order.to_string(),
                hold: id.to_string(),
                total_minor,
                currency: currency.clone(),
                payment_due_at: payment_due_at.max(0) as u64,
            },
            Change::Checkout {
                hold: id,
                order,
                user,
                total_minor,
                currency,
                payment_due_at,
                lines,
                ga,
            },
        )
    }

    /// Ends every active hold whose expiry is at or before `now`, up to `max` of them.
    pub fn expire_due(&mut self, now: i64, max: usize, delta: &mut DeltaBuilder) -> Vec<Change> {
        let mut changes = Vec::new();
        while changes.len() < max {
            let Some(Reverse((at, id))) = self.expiry.peek().copied() else {
                break;
            };
            if at > now {
                break;
            }
            self.expiry.pop();
            // Ended holds leave stale heap entries; skip them.
            let Some(info) = self.holds.remove(&id) else {
                continue;
            };
            changes.push(self.end_hold(id, info, HoldEnd::Expired, delta));
        }
        changes
    }

    /// When the next hold expires, if any is active.
    pub fn next_expiry(&mut self) -> Option<i64> {
        while let Some(Reverse((at, id))) = self.expiry.peek().copied() {
            if self.holds.contains_key(&id) {
                return Some(at);
            }
            self.expiry.pop();
        }
        None
    }

    pub(super) fn set_seat(&mut self, seat: SeatIndex, state: SeatState, delta: &mut DeltaBuilder) {
        self.state[seat as usize] = state;
        delta.seats.insert(seat, state);
    }

    fn chooser_seat(&self, index: SeatIndex) -> Seat {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const NOW: i64 = 1_000_000;

    /// Two rows of ten seats in one category, a GA type with quota 5, one live onsale.
    pub(crate) fn small_event() -> Inventory {
        let category = Uuid::from_u128(1);
        let seated = Uuid::from_u128(2);
        let ga = Uuid::from_u128(3);
        let seats: Vec<SeatInfo> = (0..20)
            .map(|i| SeatInfo {
                seat_id: Uuid::from_u128(1000 + i),
                category: 0,
            })
            .collect();
        let mut layout: Vec<(String, i32, SeatIndex, f64, f64)> = (0..20u32)
            .map(|i| {
                let row = if i < 10 { "A" } else { "B" };
                (
                    row.to_owned(),
                    (i % 10) as i32 + 1,
                    i,
                    f64::from(i % 10),
                    f64::from(i / 10) + 1.0,
                )
            })
            .collect();
        let rows = Inventory::build_rows(&seats, &mut layout);
        let mut ticket_types = HashMap::new();
        ticket_types.insert(
            seated,
            TicketTypeInfo {
                price_minor: 5000,
                currency: "EUR".into(),
                min_per_order: 1,
                max_per_order: 6,
                ga: None,
            },
        );
        ticket_types.insert(
            ga,
            TicketTypeInfo {
                price_minor: 2000,
                currency: "EUR".into(),
                min_per_order: 1,
                max_per_order: 4,
                ga: Some(GaCounts {
                    quota: 5,
                    held: 0,
                    sold: 0,
                }),
            },
        );
        Inventory {
            tenant: Uuid::from_u128(9),
            event: Uuid::from_u128(10),
            version: 0,
            focal: (4.5, 0.0),
            state: vec![SeatState::Free; seats.len()],
            seats,
            rows,
            categories: vec![CategoryInfo {
                id: category,
                ticket_type: Some(seated),
            }],
            ticket_types,
            onsales: vec![OnsaleInfo {
                id: Uuid::from_u128(11),
                live: true,
                starts_at: 0,
                ends_at: None,
                hold_ms: 600_000,
                per_user_limit: 8,
                requires_admission: false,
            }],
            holds: HashMap::new(),
            ended: HashMap::new(),
            per_user: HashMap::new(),
            expiry: BinaryHeap::new(),
            pending: HashMap::new(),
            order_expiry: BinaryHeap::new(),
            orders: HashMap::new(),
        }
    }

    fn run(inv: &mut Inventory, user: &str, command: &Command) -> Outcome {
        run_admitted(inv, user, command, None)
    }

    fn run_admitted(
        inv: &mut Inventory,
        user: &str,
        command: &Command,
        admission: Option<&AdmissionPass>,
    ) -> Outcome {
        let mut delta = DeltaBuilder::default();
        inv.apply(
            &Request {
                user,
                command,
                admission,
            },
            NOW,
            &mut delta,
        )
        .0
    }

    fn seats(seats: &[u32]) -> Command {
        Command::HoldSeats {
            event: Uuid::from_u128(10).to_string(),
            seats: seats.to_vec(),
        }
    }

    fn code(outcome: &Outcome) -> ErrorCode {
        match outcome {
            Outcome::Rejected { code, .. } => *code,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn a_seat_held_once_cannot_be_held_again_and_the_error_offers_the_nearest_block() {
        let mut inv = small_event();
        assert!(matches!(
            run(&mut inv, "u1", &seats(&[4, 5])),
            Outcome::Held { .. }
        ));
        let second = run(&mut inv, "u2", &seats(&[5, 6]));
        let Outcome::Rejected {
            code, alternative, ..
        } = second
        else {
            panic!("{second:?}")
        };
        assert_eq!(code, ErrorCode::SeatUnavailable);
        let alternative = alternative.expect("a free block exists");
        assert_eq!(alternative.len(), 2);
        assert!(
            alternative
                .iter()
                .all(|s| inv.state[*s as usize] == SeatState::Free)
        );
        assert_eq!(inv.per_user.get("u2"), None, "a rejection changes nothing");
    }

    #[test]
    fn bad_seat_requests_get_exact_codes_and_change_nothing() {
        let mut inv = small_event();
        assert_eq!(
            code(&run(&mut inv, "u", &seats(&[20]))),
            ErrorCode::UnknownSeat
        );
        assert_eq!(
            code(&run(&mut inv, "u", &seats(&[]))),
            ErrorCode::InvalidQuantity
        );
        assert_eq!(
            code(&run(&mut inv, "u", &seats(&[1, 1]))),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(&run(&mut inv, "u", &seats(&[0, 1, 2, 3, 4, 5, 6]))),
            ErrorCode::InvalidQuantity,
            "over the ticket type's max per order"
        );
        assert!(inv.state.iter().all(|s| *s == SeatState::Free));
        assert!(inv.holds.is_empty());
    }

    #[test]
    fn the_per_user_limit_counts_seats_and_tickets_together() {
        let mut inv = small_event();
        inv.onsales[0].per_user_limit = 4;
        assert!(matches!(
            run(&mut inv, "u", &seats(&[0, 1, 2])),
            Outcome::Held { .. }
        ));
        let ga = Command::HoldGa {
            event: inv.event.to_string(),
            ticket_type: Uuid::from_u128(3).to_string(),
            quantity: 2,
        };
        assert_eq!(code(&run(&mut inv, "u", &ga)), ErrorCode::LimitExceeded);
    }

    #[test]
    fn general_admission_never_goes_past_its_quota() {
        let mut inv = small_event();
        let ga = |q| Command::HoldGa {
            event: Uuid::from_u128(10).to_string(),
            ticket_type: Uuid::from_u128(3).to_string(),
            quantity: q,
        };
        assert!(matches!(run(&mut inv, "a", &ga(3)), Outcome::Held { .. }));
        assert_eq!(code(&run(&mut inv, "b", &ga(3))), ErrorCode::SoldOut);
        assert!(matches!(run(&mut inv, "b", &ga(2)), Outcome::Held { .. }));
        assert_eq!(code(&run(&mut inv, "c", &ga(1))), ErrorCode::SoldOut);
        assert_eq!(
            code(&run(&mut inv, "c", &ga(0))),
            ErrorCode::InvalidQuantity
        );
        assert_eq!(
            code(&run(&mut inv, "c", &ga(5))),
            ErrorCode::InvalidQuantity
        );
    }

    #[test]
    fn release_and_expiry_free_the_seats_and_only_the_owner_may_release() {
        let mut inv = small_event();
        let Outcome::Held { hold, .. } = run(&mut inv, "u", &seats(&[0, 1])) else {
            panic!()
        };
        let release = Command::Release {
            event: inv.event.to_string(),
            hold: hold.clone(),
        };
        assert_eq!(
            code(&run(&mut inv, "other", &release.clone())),
            ErrorCode::HoldNotFound
        );
        assert!(matches!(
            run(&mut inv, "u", &release.clone()),
            Outcome::Released { .. }
        ));
        assert_eq!(inv.state[0], SeatState::Free);
        assert_eq!(code(&run(&mut inv, "u", &release)), ErrorCode::HoldExpired);

        assert!(matches!(
            run(&mut inv, "u", &seats(&[3])),
            Outcome::Held { .. }
        ));
        let mut delta = DeltaBuilder::default();
        assert!(inv.expire_due(NOW + 599_999, 100, &mut delta).is_empty());
        let expired = inv.expire_due(NOW + 600_000, 100, &mut delta);
        assert_eq!(expired.len(), 1);
        assert_eq!(inv.state[3], SeatState::Free);
        assert_eq!(delta.build(1, &inv).free, vec![3]);
        assert_eq!(inv.per_user.get("u"), Some(&0));
    }

    #[test]
    fn a_hold_past_its_expiry_cannot_be_checked_out_even_before_the_sweep() {
        let mut inv = small_event();
        let Outcome::Held { hold, .. } = run(&mut inv, "u", &seats(&[2])) else {
            panic!()
        };
        let checkout = Command::Checkout {
            event: inv.event.to_string(),
            hold,
        };
        let mut delta = DeltaBuilder::default();
        let (outcome, change) = inv.apply(
            &Request {
                user: "u",
                command: &checkout,
                admission: None,
            },
            NOW + 600_000,
            &mut delta,
        );
        assert_eq!(code(&outcome), ErrorCode::HoldExpired);
        assert!(change.is_none());
        assert_eq!(
            inv.state[2],
            SeatState::Held,
            "the sweeper frees it, not the checkout"
        );
    }

    #[test]
    fn checkout_sells_the_held_seats_and_prices_the_order() {
        let mut inv = small_event();
        let Outcome::Held { hold, .. } = run(&mut inv, "u", &seats(&[7, 8])) else {
            panic!()
        };
        let checkout = Command::Checkout {
            event: inv.event.to_string(),
            hold,
        };
        let Outcome::CheckedOut {
            total_minor,
            currency,
            ..
        } = run(&mut inv, "u", &checkout)
        else {
            panic!()
        };
        assert_eq!((total_minor, currency.as_str()), (10_000, "EUR"));
        assert_eq!(inv.state[7], SeatState::Sold);
        assert_eq!(
            inv.per_user.get("u"),
            Some(&2),
            "an order still counts toward the limit"
        );
    }

    #[test]
    fn without_an_open_onsale_or_an_admission_nothing_is_held() {
        let mut inv = small_event();
        inv.onsales[0].requires_admission = true;
        assert_eq!(
            code(&run(&mut inv, "u", &seats(&[0]))),
            ErrorCode::AdmissionRequired
        );
        let pass = AdmissionPass {
            user: "u".into(),
            tenant: inv.tenant,
            onsale: inv.onsales[0].id,
        };
        // Another buyer's admission, another tenant's, another onsale's: refused.
        for wrong in [
            AdmissionPass {
                user: "v".into(),
                ..pass.clone()
            },
            AdmissionPass {
                tenant: Uuid::from_u128(999),
                ..pass.clone()
            },
            AdmissionPass {
                onsale: Uuid::from_u128(999),
                ..pass.clone()
            },
        ] {
            assert_eq!(
                code(&run_admitted(&mut inv, "u", &seats(&[0]), Some(&wrong))),
                ErrorCode::AdmissionRequired,
                "{wrong:?}"
            );
        }
        assert!(inv.holds.is_empty(), "nothing was held");
        assert!(matches!(
            run_admitted(&mut inv, "u", &seats(&[0]), Some(&pass)),
            Outcome::Held { .. }
        ));
        inv.onsales[0].live = false;
        assert_eq!(
            code(&run(&mut inv, "u", &seats(&[0]))),
            ErrorCode::OnsaleClosed
        );
    }

    #[test]
    fn best_available_holds_an_adjacent_block_near_the_focal_point() {
        let mut inv = small_event();
        let command = Command::HoldBestAvailable {
            event: inv.event.to_string(),
            category: Uuid::from_u128(1).to_string(),
            quantity: 2,
        };
        let Outcome::Held { seats, .. } = run(&mut inv, "u", &command) else {
            panic!()
        };
        assert_eq!(seats, vec![4, 5]);
    }
}
