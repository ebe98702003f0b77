//! What becomes of an order after checkout: the rules for payment events and for orders that
//! are not paid in time. Pure, like the rest of [`Inventory`]: the owner passes in the order
//! as Postgres has it and `now`, and persists the [`Change`]s returned.
//!
//! An order only moves forward:
//!
//! ```text
//! pending_payment ──succeeded──▶ paid ──refunded──▶ refunded
//!        │ ──failed / refunded──▶ failed / refunded        (seats back on sale)
//!        │ ──not paid by payment_due_at──▶ expired          (seats back on sale)
//!        └ ──processing──▶ pending_payment, later due (never past created + cap)
//! expired / failed ──succeeded──▶ paid (same seats, if all still free)
//!                             └─▶ refunded (seats taken: the money goes back)
//! ```
//!
//! Everything else (a `failed` after `succeeded`, a second `succeeded`, anything after a refund)
//! is recorded as applied and changes nothing, except that money taken for an order already
//! refunded or cancelled is given back.

use super::inventory::{Change, DeltaBuilder, Inventory};
use crate::payments::hook::PaymentEventKind;
use marquee_protocol::booking::{OrderReason, OrderStatus, SeatIndex, SeatState};
use std::cmp::Reverse;
use uuid::Uuid;

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
}

/// The provider name under which operators' order changes are recorded.
pub const OPERATOR: &str = "operator";

/// A payment event to apply (or an operator's change, under provider [`OPERATOR`]).
#[derive(Debug, Clone, Copy)]
pub struct PaymentEvent<'a> {
    /// What happened.
    pub kind: PaymentEventKind,
    /// Who reported it.
    pub provider: &'a str,
    /// The provider's payment reference.
    pub payment_ref: &'a str,
}

impl OrderRecord {
    fn seats(&self) -> Vec<SeatIndex> {
        self.lines
            .iter()
            .filter_map(|l| l.seat.map(|s| s.1))
            .collect()
    }

    fn ga(&self) -> Option<(Uuid, u32)> {
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
    fn ignored(outcome: &'static str) -> Self {
        Self {
            outcome,
            change: None,
            news: None,
            refund: None,
        }
    }
}

/// Tickets for an order's lines: one per seat, one per general-admission unit.
fn issue(lines: &[StoredLine]) -> Vec<NewTicket> {
    lines
        .iter()
        .flat_map(|line| {
            (0..line.quantity).map(move |_| NewTicket {
                id: Uuid::now_v7(),
                ticket_type: line.ticket_type,
                seat: line.seat,
            })
        })
        .collect()
}

impl Inventory {
    /// Records an order awaiting payment (at checkout, or when the owner loads the event).
    pub fn add_pending(&mut self, order: Uuid, pending: PendingOrder) {
        self.order_expiry.push(Reverse((pending.due, order)));
        self.pending.insert(order, pending);
    }

    /// Gives an order's seats and tickets back to the sale.
    fn give_back(
        &mut self,
        user: &str,
        seats: &[SeatIndex],
        ga: Option<(Uuid, u32)>,
        delta: &mut DeltaBuilder,
    ) {
        for &s in seats {
            self.set_seat(s, SeatState::Free, delta);
        }
        if let Some((t, q)) = ga {
            if let Some(counts) = self.ticket_types.get_mut(&t).and_then(|t| t.ga.as_mut()) {
                counts.sold = counts.sold.saturating_sub(q);
            }
            delta.ga.insert(t);
        }
        let quantity = seats.len() as u32 + ga.map_or(0, |(_, q)| q);
        if let Some(n) = self.per_user.get_mut(user) {
            *n = n.saturating_sub(quantity);
        }
    }

    /// Ends a pending order without a sale; its seats go back on sale.
    fn end_pending(
        &mut self,
        order: Uuid,
        to: OrderStatus,
        delta: &mut DeltaBuilder,
    ) -> Option<(Change, OrderNews)> {
        let pending = self.pending.remove(&order)?;
        self.give_back(&pending.user, &pending.seats, pending.ga, delta);
        Some((
            Change::OrderEnded {
                order,
                to,
                reason: None,
                freed: true,
                ga: pending.ga,
                void_tickets: false,
            },
            OrderNews {
                order,
                user: pending.user,
                status: to,
                due: None,
                reason: None,
                tickets: Vec::new(),
            },
        ))
    }

    /// Applies a payment event about `order` (as Postgres has it). `cap_ms` bounds how long
    /// after checkout a payment may still be processing.
    pub fn apply_payment(
        &mut self,
        order: &OrderRecord,
        event: PaymentEvent<'_>,
        now: i64,
        cap_ms: i64,
        delta: &mut DeltaBuilder,
    ) -> PaymentDecision {
        use OrderStatus as S;
        use PaymentEventKind as K;
        let pending = self.pending.contains_key(&order.id);
        let kind = event.kind;
        match (order.status, kind) {
            (S::PendingPayment, _) if !pending => {
                // Postgres says pending but this owner does not know it: only possible if the
                // order is not this event's. Never act on it.
                PaymentDecision::ignored("ignored_unknown_order")
            }
            (S::PendingPayment, K::Succeeded) => {
                let p = self.pending.remove(&order.id).expect("checked above");
                let tickets = issue(&order.lines);
                PaymentDecision {
                    outcome: "paid",
                    change: Some(Change::Paid {
                        order: order.id,
                        provider: event.provider.to_owned(),
                        payment_ref: event.payment_ref.to_owned(),
                        tickets: tickets.clone(),
                        reclaimed: None,
                    }),
                    news: Some(OrderNews {
                        order: order.id,
                        user: p.user,
                        status: S::Paid,
                        due: None,
                        reason: None,
                        tickets,
                    }),
                    refund: None,
                }
            }
            (S::PendingPayment, K::Failed | K::Refunded | K::Cancelled) => {
                let (to, outcome) = match kind {
                    K::Failed => (S::Failed, "failed"),
                    K::Refunded => (S::Refunded, "refunded"),
                    _ => (S::Cancelled, "cancelled"),
                };
                let (change, news) = self
                    .end_pending(order.id, to, delta)
                    .expect("checked above");
                PaymentDecision {
                    outcome,
                    change: Some(change),
                    news: Some(news),
                    refund: None,
                }
            }
            (S::PendingPayment, K::Processing) => {
                let p = self.pending.get(&order.id).expect("checked above");
                let hold_ms = p
                    .onsale
                    .and_then(|o| self.onsales.iter().find(|s| s.id == o))
                    .map_or(600_000, |o| o.hold_ms);
                let due = (now + hold_ms).min(p.created + cap_ms);
                if due <= p.due {
                    return PaymentDecision::ignored("processing_at_cap");
                }
                let user = p.user.clone();
                if let Some(p) = self.pending.get_mut(&order.id) {
                    p.due = due;
                }
                self.order_expiry.push(Reverse((due, order.id)));
                PaymentDecision {
                    outcome: "extended",
                    change: Some(Change::OrderExtended {
                        order: order.id,
                        due,
                    }),
                    news: Some(OrderNews {
                        order: order.id,
                        user,
                        status: S::PendingPayment,
                        due: Some(due),
                        reason: Some(OrderReason::PaymentProcessing),
                        tickets: Vec::new(),
                    }),
                    refund: None,
                }
            }
            (S::Expired | S::Failed, K::Succeeded) => self.late_payment(order, event, delta),
            (S::Paid, K::Refunded | K::Cancelled) => {
                let seats = order.seats();
                let ga = order.ga();
                self.give_back(&order.user, &seats, ga, delta);
                let (to, outcome) = if kind == K::Refunded {
                    (S::Refunded, "refunded")
                } else {
                    (S::Cancelled, "cancelled")
                };
                PaymentDecision {
                    outcome,
                    change: Some(Change::OrderEnded {
                        order: order.id,
                        to,
                        reason: None,
                        freed: true,
                        ga,
                        void_tickets: true,
                    }),
                    news: Some(OrderNews {
                        order: order.id,
                        user: order.user.clone(),
                        status: to,
                        due: None,
                        reason: None,
                        tickets: Vec::new(),
                    }),
                    // A provider's refund event reports money already back; an operator's
                    // refund or cancellation asks the provider that took it.
                    refund: (event.provider == OPERATOR)
                        .then(|| order.paid_with.clone())
                        .flatten(),
                }
            }
            (S::Paid, _) => PaymentDecision::ignored("ignored_already_paid"),
            (S::Refunded | S::Cancelled, K::Succeeded) => PaymentDecision {
                // Money taken for an order that no longer sells anything: it goes back.
                refund: Some((event.provider.to_owned(), event.payment_ref.to_owned())),
                ..PaymentDecision::ignored("refunded_order_ended")
            },
            (S::Refunded | S::Cancelled, _) => PaymentDecision::ignored("ignored_order_ended"),
            (S::Expired | S::Failed, _) => PaymentDecision::ignored("ignored_order_ended"),
            (S::Unknown, _) => PaymentDecision::ignored("ignored_unknown_status"),
            _ => PaymentDecision::ignored("ignored"),
        }
    }

    /// A payment that succeeded after its order ended: the same seats again if every one is
    /// still free (and the general-admission tickets still available), otherwise a refund.
    fn late_payment(
        &mut self,
        order: &OrderRecord,
        event: PaymentEvent<'_>,
        delta: &mut DeltaBuilder,
    ) -> PaymentDecision {
        let seats = order.seats();
        let ga = order.ga();
        let seats_free = seats
            .iter()
            .all(|&s| self.state.get(s as usize) == Some(&SeatState::Free));
        let ga_free = ga.is_none_or(|(t, q)| {
            self.ticket_types
                .get(&t)
                .and_then(|t| t.ga)
                .is_some_and(|c| c.quota.saturating_sub(c.held + c.sold) >= q)
        });
        if !(seats_free && ga_free) {
            return PaymentDecision {
                outcome: "late_payment_refunded",
                change: Some(Change::OrderEnded {
                    order: order.id,
                    to: OrderStatus::Refunded,
                    reason: Some("late_payment_seats_taken"),
                    freed: false,
                    ga: None,
                    void_tickets: false,
                }),
                news: Some(OrderNews {
                    order: order.id,
                    user: order.user.clone(),
                    status: OrderStatus::Refunded,
                    due: None,
                    reason: Some(OrderReason::LatePaymentRefunded),
                    tickets: Vec::new(),
                }),
                refund: Some((event.provider.to_owned(), event.payment_ref.to_owned())),
            };
        }
        for &s in &seats {
            self.set_seat(s, SeatState::Sold, delta);
        }
        if let Some((t, q)) = ga {
            if let Some(counts) = self.ticket_types.get_mut(&t).and_then(|t| t.ga.as_mut()) {
                counts.sold += q;
            }
            delta.ga.insert(t);
        }
        *self.per_user.entry(order.user.clone()).or_default() +=
            seats.len() as u32 + ga.map_or(0, |(_, q)| q);
        let tickets = issue(&order.lines);
        PaymentDecision {
            outcome: "late_payment_accepted",
            change: Some(Change::Paid {
                order: order.id,
                provider: event.provider.to_owned(),
                payment_ref: event.payment_ref.to_owned(),
                tickets: tickets.clone(),
                reclaimed: Some(Reclaimed {
                    seats: order
                        .lines
                        .iter()
                        .filter_map(|l| l.seat.map(|s| s.0))
                        .collect(),
                    ga,
                }),
            }),
            news: Some(OrderNews {
                order: order.id,
                user: order.user.clone(),
                status: OrderStatus::Paid,
                due: None,
                reason: Some(OrderReason::LatePaymentAccepted),
                tickets,
            }),
            refund: None,
        }
    }

    /// Expires every order awaiting payment whose deadline is at or before `now`, up to `max`.
    pub fn expire_orders(
        &mut self,
        now: i64,
        max: usize,
        delta: &mut DeltaBuilder,
    ) -> Vec<(Change, OrderNews)> {
        let mut expired = Vec::new();
        while expired.len() < max {
            let Some(Reverse((at, order))) = self.order_expiry.peek().copied() else {
                break;
            };
            if at > now {
                break;
            }
            self.order_expiry.pop();
            // Entries of paid, ended or extended orders are stale: skip them.
            if self.pending.get(&order).is_none_or(|p| p.due != at) {
                continue;
            }
            expired.extend(self.end_pending(order, OrderStatus::Expired, delta));
        }
        expired
    }

    /// When the next order awaiting payment is due, if any.
    pub fn next_order_due(&mut self) -> Option<i64> {
        while let Some(Reverse((at, order))) = self.order_expiry.peek().copied() {
            if self.pending.get(&order).is_some_and(|p| p.due == at) {
                return Some(at);
            }
            self.order_expiry.pop();
        }
        None
    }
}
