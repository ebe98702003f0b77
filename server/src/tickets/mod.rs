//! Tickets: what a paid order turns into, and what a gate scans.
//!
//! - [`checkin`]: scans: a ticket is admitted exactly once, every scan is published to the
//!   event's gates.
//! - [`http`]: the buyer's tickets, the public key, check-in over HTTP.

pub mod checkin;
pub mod http;
pub mod requests;
