//! The virtual waiting room: fair, verifiable admission to high-demand onsales.
//!
//! A buyer joins an onsale's queue over the WebSocket and gets a place; the node it is
//! connected to pushes the place's live status; an admission controller somewhere in the
//! cluster admits places in order at the onsale's rate and the admitted buyer receives a
//! signed admission that the booking workers check on every purchase command.
//!
//! - [`line`]: every onsale's places (join, attach, grace, draw, admit, expire), in memory or
//!   in Redis ([`line_redis`]), with positions computed from one view per tick.
//! - [`room`]: a node's side: `queue.join` / `queue.leave` and the statuses pushed to its
//!   buyers.
//! - [`controller`]: the onsale's schedule, admission at a smooth rate under the active cap,
//!   expiry, sold-out detection and the counts on `queue:{onsale}`.
//! - [`shuffle`]: the verifiable pre-queue order.
//!
//! `docs/waiting-room.md` is the contract.

pub mod controller;
pub mod line;
pub mod line_redis;
pub mod room;
pub mod shuffle;

pub use room::WaitingRoom;
