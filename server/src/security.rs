//! Security events: refused tokens and refused connections, counted and logged with the
//! client's address.
//!
//! A route that refuses marks its error with [`SecurityEvent`] ([`ApiError::security`]); the
//! [`layer`] over every public route finds the mark on the response, counts it in
//! `marquee_security_events_total{kind, reason}` and logs it (target `marquee::security`,
//! level `warn`) with the address the listener recorded. The log is rate-limited across the
//! node ([`LOG_RATE`] lines a second, burst [`LOG_BURST`]) so a flood cannot fill the disk;
//! lines left out are counted in `marquee_security_events_unlogged_total`, and the counter of
//! events counts every one.
//!
//! Kinds and their reasons (bounded, so the labels are too):
//! - `auth_failure`: a refused token, by [`crate::auth::AuthError::reason`] (`expired`,
//!   `signature`, `revoked`, …);
//! - `connection_refused`: a WebSocket upgrade refused by the node's admission
//!   (`address_rate`, `full`, `busy`, `connect_rate`, `account`).
//!
//! [`ApiError::security`]: crate::http::error::ApiError::security

use crate::metrics::METRICS;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use governor::{DefaultDirectRateLimiter, RateLimiter};
use std::net::SocketAddr;
use std::sync::LazyLock;

/// Security log lines a second, per node.
pub const LOG_RATE: u32 = 10;

/// Security log lines in a burst.
pub const LOG_BURST: u32 = 100;

static LOG: LazyLock<DefaultDirectRateLimiter> =
    LazyLock::new(|| RateLimiter::direct(crate::rate::per_second(LOG_RATE, LOG_BURST)));

/// What a refusal was, as carried on its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecurityEvent {
    /// `auth_failure` or `connection_refused`.
    pub kind: &'static str,
    /// Why, from a bounded set per kind.
    pub reason: &'static str,
}

impl SecurityEvent {
    /// A refused token.
    pub fn auth_failure(reason: &'static str) -> Self {
        Self {
            kind: "auth_failure",
            reason,
        }
    }

    /// A refused WebSocket upgrade.
    pub fn connection_refused(reason: &'static str) -> Self {
        Self {
            kind: "connection_refused",
            reason,
        }
    }
}

/// Counts and logs the security event a response carries, with the client's address.
pub async fn layer(request: Request, next: Next) -> Response {
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    if let Some(event) = response.extensions().get::<SecurityEvent>() {
        METRICS.security_event(event.kind, event.reason);
        if LOG.check().is_ok() {
            tracing::warn!(
                target: "marquee::security",
                kind = event.kind,
                reason = event.reason,
                address = ?address,
                path,
                status = response.status().as_u16(),
                "security event"
            );
        } else {
            METRICS.security_events_unlogged.increment(1);
        }
    }
    response
}
