//! Async Rust client for Marquee hub nodes.
//!
//! One [`Client`] keeps one WebSocket to a hub. It authenticates with tokens from a
//! [`TokenProvider`] (asked again before every reconnect and before the token expires),
//! reconnects with exponential backoff and full jitter, and resumes every subscription from
//! the last position it saw, so the application receives every message exactly once, in order,
//! or is told plainly that it must start over from a snapshot. Purchase commands
//! ([`Client::hold_seats`] and its siblings) wait for their durable result across reconnects;
//! the same request id never takes effect twice, and results are acknowledged once delivered.
//!
//! # Layout
//!
//! - [`client`]: the [`Client`] handle and the [`Events`] stream the application reads.
//! - [`config`]: [`ClientConfig`] and the [`TokenProvider`].
//! - [`event`]: the [`Event`]s, [`ClientError`]s and [`Subscribed`] outcomes it reports.
//! - `driver` (private): the background task that owns the socket, correlates requests and
//!   replies, resumes channels and reconnects.
//! - [`backoff`]: the reconnect delay policy.
//!
//! ```no_run
//! # async fn demo() -> Result<(), marquee_client::ClientError> {
//! use marquee_client::{Client, ClientConfig, Event, TokenProvider};
//! let config = ClientConfig::new("ws://127.0.0.1:8080/ws");
//! let (client, mut events) = Client::connect(config, TokenProvider::fixed("eyJ...")).await?;
//! let event = "4fb89289-9964-4fa3-9cdd-831bb809c4d9"; // printed by `marquee demo`
//! client.subscribe(&format!("seats:{event}")).await?;
//! let result = client.hold_seats(event, &[140, 141]).await?;
//! println!("{:?}", result.outcome);
//! while let Some(event) = events.next().await {
//!     if let Event::Publication(p) = event {
//!         println!("{} #{}: {}", p.channel, p.offset, p.data);
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod backoff;
pub mod client;
pub mod config;
mod driver;
pub mod event;
pub mod tls;

pub use client::{Client, Events};
pub use config::{ClientConfig, TokenProvider};
pub use event::{ClientError, Event, Subscribed};
pub use marquee_protocol as protocol;
pub use marquee_protocol::{Codec, Publication, StreamPosition};
pub use tls::Tls;
