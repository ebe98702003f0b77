//! Payments: provider hook calls, signed and replay-protected.
//!
//! - [`signature`]: the `Marquee-Signature` header (HMAC-SHA256 over timestamp and body,
//!   several secrets for rotation, a tolerance window).
//! - [`hook`]: `POST /hooks/payments/{provider}` on the internal listener: checks the
//!   signature, records the provider's event once (its id is the deduplication key) and
//!   answers; a duplicate is acknowledged and ignored.
//! - [`provider`]: the `PaymentProvider` trait and the built-in simulated provider.
//! - [`operator`]: operators refunding and cancelling orders.

pub mod hook;
pub mod operator;
pub mod provider;
pub mod signature;
