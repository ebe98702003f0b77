//! What one booking transaction writes ([`Batch`]), and how the store spells order statuses.

use crate::booking::inventory::Change;
use marquee_protocol::booking::OrderStatus;
use serde_json::value::RawValue;

/// A batch could not be committed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// Another owner committed since this owner loaded the event: its memory is stale.
    #[error("the event's inventory moved on (another owner committed)")]
    Fenced,
    /// The database refused the batch (a constraint, or it is unreachable).
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl CommitError {
    /// Whether the batch itself is at fault: Postgres refused what it holds (a value no
    /// column takes, a constraint it breaks), so committing it again would fail again, and
    /// the entry that makes it fail must be found and set apart. Not when the database was
    /// out of reach, busy or shutting down, nor when another owner moved on: those pass.
    pub fn is_the_batchs_fault(&self) -> bool {
        match self {
            Self::Fenced => false,
            Self::Db(e) => refused_for_its_data(e),
        }
    }
}

/// Whether Postgres refused a statement for the data it carried (so the same data fails
/// again), rather than for being out of reach, busy or shutting down.
pub fn refused_for_its_data(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(e) => e.code().is_some_and(|code| {
            // SQLSTATE classes: 22 data exception (U+0000 in text, a value out of range),
            // 23 integrity constraint violation, 54 a program limit exceeded. Not 42: an
            // undefined table or a missing grant is the deployment's, not the data's, and
            // passes once it is mended.
            matches!(code.get(..2), Some("22" | "23" | "54"))
        }),
        sqlx::Error::Encode(_) | sqlx::Error::TypeNotFound { .. } => true,
        _ => false,
    }
}

/// A processed request to record: its idempotency key and its result.
#[derive(Debug, Clone)]
pub struct Processed {
    /// The buyer.
    pub user: String,
    /// The client's request id.
    pub request_id: String,
    /// The queue entry that carried it.
    pub command_id: String,
    /// The result, as JSON text (serialized once, stored and published as it is).
    pub result: Box<RawValue>,
}

/// Everything one transaction writes.
#[derive(Debug, Default)]
pub struct Batch {
    /// State changes, in decision order.
    pub changes: Vec<Change>,
    /// Requests that took effect or were rejected, with their results.
    pub processed: Vec<Processed>,
    /// Messages for the outbox relay, in publication order, each made by [`crate::outbox::message`].
    pub messages: Vec<String>,
    /// Whether availability changed (then the inventory version moves up by one).
    pub bump: bool,
    /// Payment events applied: `(provider, event id, outcome)`.
    pub payments: Vec<(String, String, &'static str)>,
    /// Write notifications for the orders it pays, refunds or cancels.
    pub notify: bool,
    /// The payment provider its checkouts start payments with, recorded on their orders.
    pub checkout_provider: Option<String>,
    /// Side effects it makes owed, carried out by the effect relay once it commits.
    pub effects: Vec<Effect>,
}

/// A side effect a batch makes owed beyond Postgres (a row of the `effect` table): written in
/// the batch's transaction, carried out by the effect relay
/// ([`crate::booking::worker::effects`]) and marked done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect {
    /// `payment.start`, `payment.refund` or `slot.finish`.
    pub kind: &'static str,
    /// The provider called (payment kinds only).
    pub provider: Option<String>,
    /// Given to the provider with the call; the same effect is never written twice.
    pub idempotency_key: String,
    /// What the call needs, as JSON.
    pub data: serde_json::Value,
}

impl Batch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
            && self.processed.is_empty()
            && self.messages.is_empty()
            && self.payments.is_empty()
            && self.effects.is_empty()
    }
}

/// The database spelling of an order status.
pub fn order_status(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::PendingPayment => "pending_payment",
        OrderStatus::Paid => "paid",
        OrderStatus::Failed => "failed",
        OrderStatus::Expired => "expired",
        OrderStatus::Cancelled => "cancelled",
        OrderStatus::Refunded => "refunded",
        _ => "unknown",
    }
}

/// An order status as the database spells it.
pub(crate) fn parse_order_status(text: &str) -> OrderStatus {
    match text {
        "pending_payment" => OrderStatus::PendingPayment,
        "paid" => OrderStatus::Paid,
        "failed" => OrderStatus::Failed,
        "expired" => OrderStatus::Expired,
        "cancelled" => OrderStatus::Cancelled,
        "refunded" => OrderStatus::Refunded,
        _ => OrderStatus::Unknown,
    }
}
