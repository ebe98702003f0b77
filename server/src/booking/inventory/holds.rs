//! Holds: the rules for holding seats (named or best available) and general-admission
//! tickets, releasing them, and expiring them.

use super::delta::DeltaBuilder;
use super::model::{Change, HoldEnd, HoldInfo, Inventory, OnsaleInfo, Request, reject};
use crate::booking::best_available::{self, Seat};
use marquee_protocol::ErrorCode;
use marquee_protocol::booking::{Command, MAX_SEATS_PER_COMMAND, Outcome, SeatIndex, SeatState};
use std::cmp::Reverse;
use std::collections::HashSet;
use uuid::Uuid;

impl Inventory {
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

    pub(super) fn decide(
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

    pub(super) fn onsale_for(
        &self,
        request: &Request<'_>,
        now: i64,
    ) -> Result<OnsaleInfo, Outcome> {
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

    pub(super) fn category(&self, id: &str) -> Result<u32, Outcome> {
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

    pub(super) fn check_limit(
        &self,
        user: &str,
        onsale: &OnsaleInfo,
        more: u32,
    ) -> Result<(), Outcome> {
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

    pub(super) fn hold_seats(
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

    pub(super) fn hold_ga(
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

    pub(super) fn add_hold(
        &mut self,
        info: HoldInfo,
        seat_items: Vec<(Uuid, Uuid)>,
    ) -> (Outcome, Change) {
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
    pub(super) fn own_hold(&self, user: &str, hold: &str, now: i64) -> Result<Uuid, Outcome> {
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

    pub(super) fn end_hold(
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
}
