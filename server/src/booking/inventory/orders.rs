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

use super::delta::DeltaBuilder;
use super::model::{
    Change, Inventory, NewTicket, OrderNews, OrderRecord, OrderState, PaymentDecision,
    PaymentEvent, PendingOrder, Reclaimed, StoredLine,
};
use crate::settlement::{OPERATOR, PaymentEventKind};
use marquee_protocol::booking::{OrderReason, OrderStatus, SeatIndex, SeatState};
use std::cmp::Reverse;
use uuid::Uuid;

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

/// An order paid by `event`: its tickets issued, the buyer told.
fn paid(
    order: &OrderRecord,
    event: PaymentEvent<'_>,
    reclaimed: Option<Reclaimed>,
    reason: Option<OrderReason>,
) -> PaymentDecision {
    let tickets = issue(&order.lines);
    PaymentDecision {
        outcome: if reclaimed.is_some() {
            "late_payment_accepted"
        } else {
            "paid"
        },
        change: Some(Change::Paid {
            order: order.id,
            user: order.user.clone(),
            provider: event.provider.to_owned(),
            payment_ref: event.payment_ref.to_owned(),
            tickets: tickets.clone(),
            reclaimed,
        }),
        news: Some(OrderNews {
            order: order.id,
            user: order.user.clone(),
            status: OrderStatus::Paid,
            due: None,
            reason,
            tickets,
        }),
        refund: None,
    }
}

impl Inventory {
    /// Records an order awaiting payment (at checkout, or when the owner loads the event).
    pub fn add_pending(&mut self, order: Uuid, pending: PendingOrder) {
        self.order_expiry.push(Reverse((pending.due, order)));
        self.pending.insert(order, pending);
    }

    /// Gives an order's seats and tickets back to the sale.
    pub(super) fn give_back(
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
    pub(super) fn end_pending(
        &mut self,
        order: Uuid,
        to: OrderStatus,
        delta: &mut DeltaBuilder,
    ) -> Option<(Change, OrderNews)> {
        let pending = self.pending.remove(&order)?;
        self.give_back(&pending.user, &pending.seats, pending.ga, delta);
        self.orders.insert(
            order,
            OrderState {
                status: to,
                paid_with: None,
            },
        );
        Some((
            Change::OrderEnded {
                order,
                user: pending.user.clone(),
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
        // The order as this owner last left it, if it changed it since Postgres was read.
        let mut order = order.clone();
        if let Some(state) = self.orders.get(&order.id) {
            order.status = state.status;
            order.paid_with.clone_from(&state.paid_with);
        }
        let decision = self.decide_payment(&order, event, now, cap_ms, delta);
        let status = match &decision.change {
            Some(Change::Paid { .. }) => Some(OrderStatus::Paid),
            Some(Change::OrderEnded { to, .. }) => Some(*to),
            _ => None,
        };
        if let Some(status) = status {
            let paid_with = (status == OrderStatus::Paid)
                .then(|| (event.provider.to_owned(), event.payment_ref.to_owned()))
                .or(order.paid_with);
            self.orders
                .insert(order.id, OrderState { status, paid_with });
        }
        decision
    }

    pub(super) fn decide_payment(
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
        let this_payment = || Some((event.provider.to_owned(), event.payment_ref.to_owned()));
        let from_operator = event.provider == OPERATOR;
        let same_payment = order
            .paid_with
            .as_ref()
            .is_some_and(|(provider, reference)| {
                provider == event.provider && reference == event.payment_ref
            });
        if order.status == S::Paid && same_payment && kind == K::Succeeded {
            // The payment that paid the order, reported again (another event id for it): it
            // changes nothing, whatever amount it names.
            return PaymentDecision::ignored("ignored_already_paid");
        }
        // A success pays only what the order costs, in its currency, and must say so: one
        // with another amount, another currency or no amount at all pays nothing, and the
        // money it reports goes back.
        let wrong_amount = event.amount.is_none_or(|(amount, currency)| {
            amount != order.total_minor || currency != order.currency
        });
        if kind == K::Succeeded && !from_operator && wrong_amount {
            return PaymentDecision {
                refund: this_payment(),
                ..PaymentDecision::ignored("refunded_wrong_amount")
            };
        }
        // Only the payment the checkout started speaks for the order: another provider's, or
        // (once the provider's reference is known) another payment's event. Money it reports
        // goes back; anything else of it changes nothing.
        let unstarted = !from_operator
            && order.started.as_ref().is_some_and(|(provider, reference)| {
                provider != event.provider
                    || reference.as_deref().is_some_and(|r| r != event.payment_ref)
            });
        if unstarted && order.status != S::Paid {
            return if kind == K::Succeeded {
                PaymentDecision {
                    refund: this_payment(),
                    ..PaymentDecision::ignored("refunded_unstarted_payment")
                }
            } else {
                PaymentDecision::ignored("ignored_other_payment")
            };
        }
        match (order.status, kind) {
            (S::PendingPayment, _) if !pending => {
                // Postgres says pending but this owner does not know it: only possible if the
                // order is not this event's. Never act on it.
                PaymentDecision::ignored("ignored_unknown_order")
            }
            (S::PendingPayment, K::Succeeded) => {
                self.pending.remove(&order.id);
                paid(order, event, None, None)
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
            (S::Paid, K::Refunded) if !from_operator && !same_payment => {
                // Another attempt's refund: the payment that paid the order stands.
                PaymentDecision::ignored("ignored_other_payment")
            }
            (S::Paid, K::Succeeded) if !same_payment => PaymentDecision {
                // A second payment for an order paid already: it goes back.
                refund: this_payment(),
                ..PaymentDecision::ignored("refunded_duplicate_payment")
            },
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
                        user: order.user.clone(),
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
                    refund: if from_operator {
                        order.paid_with.clone()
                    } else {
                        None
                    },
                }
            }
            (S::Paid, _) => PaymentDecision::ignored("ignored_already_paid"),
            (S::Refunded | S::Cancelled, K::Succeeded) => PaymentDecision {
                // Money taken for an order that no longer sells anything: it goes back.
                refund: this_payment(),
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
    pub(super) fn late_payment(
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
        // The buyer's seats and tickets meanwhile count against the onsale's per-buyer
        // limit: a late payment that would pass it is refunded too.
        let count = seats.len() as u32 + ga.map_or(0, |(_, q)| q);
        let limit = order
            .onsale
            .and_then(|o| self.onsales.iter().find(|s| s.id == o))
            .map(|o| o.per_user_limit);
        let owned = self.per_user.get(&order.user).copied().unwrap_or(0);
        let over_limit = limit.is_some_and(|limit| owned + count > limit);
        if !(seats_free && ga_free) || over_limit {
            return PaymentDecision {
                outcome: "late_payment_refunded",
                change: Some(Change::OrderEnded {
                    order: order.id,
                    user: order.user.clone(),
                    to: OrderStatus::Refunded,
                    reason: Some(if over_limit {
                        "late_payment_over_limit"
                    } else {
                        "late_payment_seats_taken"
                    }),
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
        let reclaimed = Reclaimed {
            seats: order
                .lines
                .iter()
                .filter_map(|l| l.seat.map(|s| s.0))
                .collect(),
            ga,
        };
        paid(
            order,
            event,
            Some(reclaimed),
            Some(OrderReason::LatePaymentAccepted),
        )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::booking::inventory::Request;
    use crate::booking::inventory::tests::{NOW, small_event};
    use marquee_protocol::booking::{Command, Outcome};

    /// `user` holds `seats` and checks out: the order as Postgres would record it.
    fn checked_out(inv: &mut Inventory, user: &str, seats: &[u32]) -> OrderRecord {
        let mut delta = DeltaBuilder::default();
        let event = inv.event.to_string();
        let hold = Command::HoldSeats {
            event: event.clone(),
            seats: seats.to_vec(),
        };
        let request = |command| Request {
            user,
            command,
            admission: None,
        };
        let (Outcome::Held { hold, .. }, _) = inv.apply(&request(&hold), NOW, &mut delta) else {
            panic!("held")
        };
        let checkout = Command::Checkout { event, hold };
        let (
            Outcome::CheckedOut {
                order,
                total_minor,
                currency,
                ..
            },
            _,
        ) = inv.apply(&request(&checkout), NOW, &mut delta)
        else {
            panic!("checked out")
        };
        let ticket_type = inv.categories[0].ticket_type.expect("a seated type");
        OrderRecord {
            id: order.parse().unwrap(),
            user: user.to_owned(),
            status: OrderStatus::PendingPayment,
            lines: seats
                .iter()
                .map(|&s| StoredLine {
                    ticket_type,
                    seat: Some((inv.seats[s as usize].seat_id, s)),
                    quantity: 1,
                })
                .collect(),
            paid_with: None,
            total_minor,
            currency,
            onsale: inv.onsales.first().map(|o| o.id),
            started: None,
        }
    }

    /// A provider's event about `record`'s payment, reporting its exact amount.
    fn event<'a>(
        record: &'a OrderRecord,
        kind: PaymentEventKind,
        payment_ref: &'a str,
    ) -> PaymentEvent<'a> {
        PaymentEvent {
            kind,
            provider: "acme",
            payment_ref,
            amount: Some((record.total_minor, record.currency.as_str())),
        }
    }

    fn apply(inv: &mut Inventory, order: &OrderRecord, e: PaymentEvent<'_>) -> PaymentDecision {
        inv.apply_payment(order, e, NOW, 1_800_000, &mut DeltaBuilder::default())
    }

    #[test]
    fn events_decided_together_see_each_others_changes() {
        let mut inv = small_event();
        // Both events were read with the order still awaiting payment.
        let record = checked_out(&mut inv, "u", &[0, 1]);
        let failed = apply(
            &mut inv,
            &record,
            event(&record, PaymentEventKind::Failed, "pay_1"),
        );
        assert_eq!(failed.outcome, "failed");
        assert_eq!(inv.state[0], SeatState::Free);
        let retried = apply(
            &mut inv,
            &record,
            event(&record, PaymentEventKind::Succeeded, "pay_2"),
        );
        assert_eq!(
            retried.outcome, "late_payment_accepted",
            "a success after the failure is a late payment, not an unknown order"
        );
        assert_eq!(inv.state[0], SeatState::Sold);
        // Two operator actions on the paid order: the second finds it ended.
        let refund = PaymentEvent {
            provider: OPERATOR,
            ..event(&record, PaymentEventKind::Refunded, "none")
        };
        assert_eq!(apply(&mut inv, &record, refund).outcome, "refunded");
        let cancel = PaymentEvent {
            provider: OPERATOR,
            ..event(&record, PaymentEventKind::Cancelled, "none")
        };
        assert_eq!(
            apply(&mut inv, &record, cancel).outcome,
            "ignored_order_ended"
        );
    }

    #[test]
    fn a_payment_read_before_its_order_expired_is_a_late_payment() {
        let mut inv = small_event();
        let record = checked_out(&mut inv, "u", &[7]);
        let due = inv.next_order_due().expect("a deadline");
        let expired = inv.expire_orders(due, 10, &mut DeltaBuilder::default());
        assert_eq!(expired.len(), 1);
        assert_eq!(inv.state[7], SeatState::Free);
        // The event was read while the order was still awaiting payment.
        let late = apply(
            &mut inv,
            &record,
            event(&record, PaymentEventKind::Succeeded, "pay_1"),
        );
        assert_eq!(late.outcome, "late_payment_accepted");
        assert_eq!(inv.state[7], SeatState::Sold);
    }

    #[test]
    fn a_late_payment_that_would_pass_the_per_buyer_limit_is_refunded() {
        let mut inv = small_event();
        inv.onsales[0].per_user_limit = 3;
        let record = checked_out(&mut inv, "u", &[7, 8]);
        let due = inv.next_order_due().expect("a deadline");
        inv.expire_orders(due, 10, &mut DeltaBuilder::default());
        // Meanwhile the buyer bought two other seats: with the late two they would own four.
        checked_out(&mut inv, "u", &[1, 2]);
        let late = apply(
            &mut inv,
            &record,
            event(&record, PaymentEventKind::Succeeded, "pay_1"),
        );
        assert_eq!(
            (late.outcome, late.refund.is_some()),
            ("late_payment_refunded", true)
        );
        assert_eq!(
            inv.state[7],
            SeatState::Free,
            "the late seats were not sold"
        );
        assert_eq!(inv.per_user.get("u"), Some(&2));
    }

    #[test]
    fn only_the_payment_the_checkout_started_speaks_for_the_order() {
        let mut inv = small_event();
        let mut record = checked_out(&mut inv, "u", &[4]);
        record.started = Some(("acme".into(), Some("pay_1".into())));
        let other_provider = PaymentEvent {
            provider: "other",
            ..event(&record, PaymentEventKind::Succeeded, "pay_1")
        };
        let decision = apply(&mut inv, &record, other_provider);
        assert_eq!(
            (decision.outcome, decision.refund),
            (
                "refunded_unstarted_payment",
                Some(("other".into(), "pay_1".into()))
            )
        );
        let other_payment = event(&record, PaymentEventKind::Succeeded, "pay_2");
        assert_eq!(
            apply(&mut inv, &record, other_payment).outcome,
            "refunded_unstarted_payment"
        );
        let failed_elsewhere = event(&record, PaymentEventKind::Failed, "pay_2");
        assert_eq!(
            apply(&mut inv, &record, failed_elsewhere).outcome,
            "ignored_other_payment"
        );
        assert!(
            inv.pending.contains_key(&record.id),
            "still awaiting payment"
        );
        assert_ne!(inv.state[4], SeatState::Free, "its seat is kept");
        let started = event(&record, PaymentEventKind::Succeeded, "pay_1");
        assert_eq!(apply(&mut inv, &record, started).outcome, "paid");
    }

    #[test]
    fn the_paying_payment_reported_again_changes_nothing_whatever_its_amount() {
        let mut inv = small_event();
        let record = checked_out(&mut inv, "u", &[6]);
        assert_eq!(
            apply(
                &mut inv,
                &record,
                event(&record, PaymentEventKind::Succeeded, "pay_1")
            )
            .outcome,
            "paid"
        );
        let paid = OrderRecord {
            status: OrderStatus::Paid,
            paid_with: Some(("acme".into(), "pay_1".into())),
            ..record.clone()
        };
        let again = PaymentEvent {
            amount: None,
            ..event(&paid, PaymentEventKind::Succeeded, "pay_1")
        };
        let decision = apply(&mut inv, &paid, again);
        assert_eq!(
            (decision.outcome, decision.refund),
            ("ignored_already_paid", None)
        );
    }

    #[test]
    fn only_the_payment_that_paid_counts_and_other_money_goes_back() {
        let mut inv = small_event();
        let record = checked_out(&mut inv, "u", &[3]);
        let paid = apply(
            &mut inv,
            &record,
            event(&record, PaymentEventKind::Succeeded, "pay_1"),
        );
        assert_eq!(paid.outcome, "paid");
        let twice = apply(
            &mut inv,
            &record,
            event(&record, PaymentEventKind::Succeeded, "pay_2"),
        );
        assert_eq!(
            (twice.outcome, twice.refund),
            (
                "refunded_duplicate_payment",
                Some(("acme".into(), "pay_2".into()))
            )
        );
        let other = apply(
            &mut inv,
            &record,
            event(&record, PaymentEventKind::Refunded, "pay_2"),
        );
        assert_eq!(other.outcome, "ignored_other_payment");
        assert_eq!(
            inv.state[3],
            SeatState::Sold,
            "the paid order keeps its seat"
        );
        let refunded = apply(
            &mut inv,
            &record,
            event(&record, PaymentEventKind::Refunded, "pay_1"),
        );
        assert_eq!((refunded.outcome, refunded.refund), ("refunded", None));
        assert_eq!(inv.state[3], SeatState::Free);
    }

    #[test]
    fn a_payment_of_the_wrong_amount_pays_nothing_and_goes_back() {
        let mut inv = small_event();
        let record = checked_out(&mut inv, "u", &[5]);
        let short = PaymentEvent {
            amount: Some((record.total_minor - 1, record.currency.as_str())),
            ..event(&record, PaymentEventKind::Succeeded, "pay_1")
        };
        let decision = apply(&mut inv, &record, short);
        assert_eq!(
            (
                decision.outcome,
                decision.refund.is_some(),
                decision.change.is_none()
            ),
            ("refunded_wrong_amount", true, true)
        );
        assert!(
            inv.pending.contains_key(&record.id),
            "still awaiting payment"
        );
        let exact = PaymentEvent {
            amount: Some((record.total_minor, record.currency.as_str())),
            ..event(&record, PaymentEventKind::Succeeded, "pay_2")
        };
        let unpriced = PaymentEvent {
            amount: None,
            ..event(&record, PaymentEventKind::Succeeded, "pay_3")
        };
        assert_eq!(
            apply(&mut inv, &record, unpriced).outcome,
            "refunded_wrong_amount",
            "a success that names no amount pays nothing"
        );
        let foreign = PaymentEvent {
            amount: Some((record.total_minor, "USD")),
            ..event(&record, PaymentEventKind::Succeeded, "pay_4")
        };
        assert_eq!(
            apply(&mut inv, &record, foreign).outcome,
            "refunded_wrong_amount"
        );
        assert_eq!(apply(&mut inv, &record, exact).outcome, "paid");
    }
}
