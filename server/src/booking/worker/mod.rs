//! Booking workers: each competes for per-event leases and, for every event it owns, runs an
//! owner that decides that event's commands in memory and commits them in batches.
//!
//! An owner's loop: read up to `batch_max` commands (waiting briefly), look their request ids
//! up in `processed_request`, decide the new ones one after another against the in-memory
//! [`Inventory`](super::inventory::Inventory), expire the holds that are due, commit everything in one transaction
//! ([`store::commit`](super::store::commit)), and only then acknowledge the queue entries. The next batch is decided
//! while one commits (see [`owner`]). If a commit fails, the owner reloads the event from
//! Postgres and decides the same entries again; a redelivered entry whose result is already
//! stored (its worker died between commit and acknowledge) is acknowledged without a second
//! effect or a second result.
//!
//! - [`settings`]: a worker and its settings.
//! - [`discovery`]: finding events that need an owner, and leasing them.
//! - [`owner`]: the owner loop: decide, commit in pipelined batches, settle.
//! - [`effects`]: what a committed batch owes beyond Postgres (acknowledgements, slots,
//!   provider calls, metrics), and the payment news that wakes owners.

pub mod discovery;
pub mod effects;
pub mod owner;
pub mod settings;

pub use owner::delta_message;
pub use settings::{Worker, WorkerSettings};
