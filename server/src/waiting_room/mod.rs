//! The virtual waiting room: fair, verifiable admission to high-demand onsales.
//!
//! - [`line`]: every onsale's places (join, attach, grace, draw, admit, expire), in memory or
//!   in Redis ([`line_redis`]), with positions computed from one view per tick.
//! - [`shuffle`]: the verifiable pre-queue order.
//!
//! Admissions are checked by the booking workers ([`crate::booking::admission`]).

pub mod line;
pub mod line_redis;
pub mod shuffle;
