//! The booking engine's Postgres side: loading an event's inventory, and committing a batch of
//! decided commands in one transaction.
//!
//! A batch writes every hold, release, expiry and checkout it contains, the processed request
//! ids with their results, one outbox row carrying the seat delta and the buyers' results, and
//! one audit row, all with set-based statements (`unnest` over arrays), so its cost grows with
//! the rows written and not with round trips. The event's `inventory_version` fences the owner:
//! the batch commits only if the version is still the one the owner loaded, so a second owner
//! working from stale memory fails instead of writing. Behind that, the schema's constraints
//! (one `seat_claim` per seat, the GA quota check) refuse a double sale outright.
//!
//! - [`batch`]: what one transaction writes.
//! - [`load`](mod@load): reading an event's state.
//! - [`write`](mod@write): committing a batch.

pub mod batch;
pub mod load;
pub mod write;

pub use batch::{Batch, CommitError, Effect, Processed, order_status, refused_for_its_data};
pub use load::{UnappliedPayment, load};
pub(crate) use load::{catalog_version, load_onsales, processed, unapplied_payments};
pub use write::commit;
pub(crate) use write::{dead_letter, payment_unapplicable};
