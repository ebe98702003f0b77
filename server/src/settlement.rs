//! Settlement: the contract between booking and payments, owned by neither.
//!
//! Payments records what providers report about a payment (a row in `payment_event`, then a
//! `NOTIFY` on [`PAYMENTS_NOTIFY`] naming the order's event) and talks to providers; booking
//! decides what each event does to its order, in the batch of the event's owner, and asks a
//! [`PaymentProvider`] to start a payment or to give one back. Both sides import this module;
//! neither imports the other.

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where the owners of events are told that an event has payment news (the payload is the
/// event id).
pub const PAYMENTS_NOTIFY: &str = "marquee_payments";

/// The provider name under which operators' order changes are recorded in `payment_event`.
pub const OPERATOR: &str = "operator";

/// What a provider event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "payment_event_kind", rename_all = "snake_case")]
pub enum PaymentEventKind {
    /// The money is taken.
    #[serde(rename = "payment.succeeded")]
    Succeeded,
    /// The payment failed for good.
    #[serde(rename = "payment.failed")]
    Failed,
    /// The provider needs more time (a bank transfer, a 3-D Secure challenge).
    #[serde(rename = "payment.processing")]
    Processing,
    /// The money was given back.
    #[serde(rename = "payment.refunded")]
    Refunded,
    /// An operator cancelled the order (recorded by Marquee itself, never accepted from a
    /// provider's hook).
    #[serde(rename = "order.cancelled")]
    Cancelled,
}

/// A payment to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    /// The order it pays.
    pub order: Uuid,
    /// The buyer.
    pub user: String,
    /// Amount in minor units.
    pub amount_minor: i64,
    /// ISO 4217 currency.
    pub currency: String,
    /// The same for every attempt to start this order's payment: a provider that is asked
    /// again with it answers the first attempt's payment instead of starting another.
    pub idempotency_key: String,
}

/// A provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payment provider: {0}")]
pub struct ProviderError(pub String);

/// A payment provider.
pub trait PaymentProvider: Send + Sync + std::fmt::Debug {
    /// The provider's name: the `{provider}` of its hook URL.
    fn name(&self) -> &str;

    /// Starts the payment of an order; the provider's reference for it.
    fn create<'a>(
        &'a self,
        request: &'a PaymentRequest,
    ) -> BoxFuture<'a, Result<String, ProviderError>>;

    /// Gives a payment's money back. `idempotency_key` is the same for every attempt to
    /// refund this payment: a provider asked again with it refunds nothing more.
    fn refund<'a>(
        &'a self,
        order: Uuid,
        payment_ref: &'a str,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, Result<(), ProviderError>>;
}
