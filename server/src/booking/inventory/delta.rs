//! The seat map's delta: what a batch changed, published as one [`SeatDelta`].

use super::model::Inventory;
use marquee_protocol::booking::{SeatDelta, SeatIndex, SeatState};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// Seat and general-admission changes accumulated over a batch, published as one
/// [`SeatDelta`].
#[derive(Debug, Default)]
pub struct DeltaBuilder {
    pub(super) seats: BTreeMap<SeatIndex, SeatState>,
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

impl Inventory {
    /// Sets a seat's state and records it in the batch's delta.
    pub(super) fn set_seat(&mut self, seat: SeatIndex, state: SeatState, delta: &mut DeltaBuilder) {
        self.state[seat as usize] = state;
        delta.seats.insert(seat, state);
    }
}
