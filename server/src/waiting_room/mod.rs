//! The virtual waiting room: fair, verifiable admission to high-demand onsales.
//!
//! So far: the verifiable pre-queue shuffle ([`shuffle`]). Admissions themselves are checked by
//! the booking workers ([`crate::booking::admission`]).

pub mod shuffle;
