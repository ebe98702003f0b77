//! One event's inventory as its owner holds it in memory, and the rules that decide each
//! command.
//!
//! [`Inventory::apply`] validates one command against the current state and, if it succeeds,
//! changes the state and returns the [`Change`] the store must persist. Nothing here touches
//! Postgres or the clock: the owner passes `now` in, loads the state through
//! [`crate::booking::store`], and commits the changes of many commands in one transaction.
//! Should that commit fail, the owner throws this state away and loads it again, so a failed
//! batch never leaves memory and database disagreeing.
//!
//! - [`model`]: the state and the [`Change`]s to persist.
//! - [`holds`]: holding seats and general admission, releasing, expiring.
//! - [`checkout`]: a hold becomes an order awaiting payment.
//! - [`orders`]: what payment events and deadlines do to orders.
//! - [`delta`]: what a batch changed on the seat map.

pub mod checkout;
pub mod delta;
pub mod holds;
pub mod model;
pub mod orders;

pub use delta::DeltaBuilder;
pub use model::*;

#[cfg(test)]
pub(crate) mod tests;
