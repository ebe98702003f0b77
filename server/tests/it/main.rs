//! Marquee's integration tests, in one binary: every module starts real nodes on port 0
//! against real Postgres (a fresh database per test) and real Redis (a per-test key prefix),
//! and talks to them over real sockets, as a client would.
//!
//! One binary rather than one per file: each would link the whole server again, which costs
//! minutes on a small machine (the crates.io and zero2prod layout).

mod common;

mod analytics;
mod auth;
mod booking;
mod catalog;
mod checkin;
mod cluster;
mod connection;
mod contract;
mod demo;
mod engine_conformance;
mod faults;
mod floods;
mod hostile;
mod http_api;
mod layers;
mod monitoring;
mod payments;
mod resume;
mod rules;
mod schema;
mod sessions;
mod tls;
mod waiting_room;
mod waiting_room_line;
mod walls;
