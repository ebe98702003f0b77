//! The booking engine. So far: choosing seats ([`best_available`]); the workers that own an
//! event's inventory and execute purchase commands come next.

pub mod best_available;
