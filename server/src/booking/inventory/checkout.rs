//! Checkout: a hold becomes an order awaiting payment, priced from its ticket types.

use super::delta::DeltaBuilder;
use super::model::{Change, Inventory, OrderLine, PendingOrder};
use marquee_protocol::booking::{Outcome, SeatState};
use uuid::Uuid;

impl Inventory {
    pub(super) fn checkout(
        &mut self,
        id: Uuid,
        now: i64,
        delta: &mut DeltaBuilder,
    ) -> (Outcome, Change) {
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
}
