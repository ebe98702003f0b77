//! Marquee hub node: the server behind `marquee serve` and `marquee worker`.
//!
//! Buyers hold one authenticated WebSocket to a node. Over it they subscribe to channels
//! (live seat maps, queue counts, their private inbox) and resume them without loss after any
//! reconnect, queue in the waiting room, and send purchase commands whose results come back on
//! their inbox. Nodes share channels through an engine: in-process for one node, Redis for
//! many. `docs/architecture.md` is the map; this is its index.
//!
//! # Layout
//!
//! Modules form four layers, and imports only run downwards (a test, `layers` in the
//! integration tests, fails on an import that runs back up or between two domains):
//!
//! **Leaves** (import nothing of the server, or only other leaves):
//! - [`clock`]: now, in unix milliseconds and seconds; the duration syntax of settings.
//! - [`secret`]: secrets kept out of `Debug` output.
//! - [`rate`]: rate-limit quotas from settings.
//! - [`db`]: the Postgres pool, the migrations, the tenant cache.
//! - [`redis`]: the Redis client builder and the lease scripts.
//! - [`metrics`]: metric names and the Prometheus exporter.
//! - [`engine`]: the channel engines (`memory`, `redis`): offsets, history, fan-out.
//! - [`outgoing`]: outgoing HTTP calls.
//! - [`signature`]: the `Marquee-Signature` HMAC header.
//! - [`ticket_code`]: tickets' signed QR codes (Ed25519) and the key that signs them.
//! - [`embedded_pg`]: a private PostgreSQL for `marquee demo`.
//! - [`http::error`]: `ApiError` and the JSON extractor every route uses.
//! - [`security`]: security events (refused tokens and connections) counted and logged.
//!
//! **Infrastructure** (what domains plug into or share):
//! - [`auth`]: JWT verification with a pinned algorithm; the caller's [`auth::Identity`].
//! - [`http::extract`]: who calls an HTTP route (bearer, `Caller`, `Admin`).
//! - [`hub`]: the realtime transport: connections, subscribe/resume, snapshots, and the
//!   handlers, policies and hooks domains register.
//! - [`outbox`]: how a transaction's messages reach the channels (the relay), and
//!   notifications owed.
//! - [`admission`]: the contract between the waiting room and booking.
//! - [`settlement`]: the contract between booking and payments.
//! - [`audit`]: the audit trail.
//!
//! **Domains** (each imports leaves and infrastructure, never another domain):
//! - [`booking`]: purchase commands, the command queue, workers that own events and commit
//!   in batches, holds, orders, the live seat map and durable results.
//! - [`waiting_room`]: places in line, live positions, the admission controller, the
//!   verifiable pre-queue shuffle.
//! - [`payments`]: payment hooks, the simulated provider, operators' refunds and cancellations.
//! - [`tickets`]: check-in and the buyer's tickets.
//! - [`catalog`]: venues, events, seat maps, ticket types and onsales over HTTP.
//! - [`notify`]: notifications delivered to an outside service.
//! - [`analytics`]: what an event has sold and holds, for operators.
//! - [`sessions`]: every connection recorded, a buyer's list, ending a sign-in session.
//!
//! **Edges** (compose everything):
//! - [`config`]: the settings of each process, composed from each part's own `Args`.
//! - [`node`]: the composition root: [`Node::build`] chooses backends and builds every
//!   service; [`Node::serve`] runs them on a listener until a shutdown future completes, so
//!   tests bind port 0 and pass their own shutdown. `marquee worker` ([`node::worker`]) and
//!   `marquee demo` ([`node::demo`], a single node with ready-made tokens and a simulated
//!   crowd) are composed there too.
//! - [`http`]: the router that composes every part's routes, and the probes.

pub mod admission;
pub mod analytics;
pub mod audit;
pub mod auth;
pub mod booking;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod db;
pub mod embedded_pg;
pub mod engine;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod node;
pub mod notify;
pub mod outbox;
pub mod outgoing;
pub mod payments;
pub mod rate;
pub mod redis;
pub mod secret;
pub mod security;
pub mod sessions;
pub mod settlement;
pub mod signature;
pub mod ticket_code;
pub mod tickets;
pub mod waiting_room;
pub mod walls;

pub use config::Config;
pub use node::{Node, run, run_worker, shutdown_signal};
