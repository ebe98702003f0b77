//! What domains plug into the hub, the way centrifuge's `OnRPC` / `OnSubscribe` /
//! `OnDisconnect` handlers plug into its node:
//!
//! - a [`RequestHandler`] per request kind the hub does not answer itself (`command`, `ack`,
//!   `queue.join`, `checkin.scan`, …);
//! - a [`SubscribePolicy`] per channel kind, which decides who may follow such a channel (the
//!   tenant checks live there, in the domain that knows the tenant);
//! - [`CloseHook`]s, told when a connection ends.
//!
//! The hub itself answers `subscribe`, `unsubscribe`, `refresh` and `ping`, and decides the
//! inbox (a connection's own, nobody else's). A request kind without a handler is answered
//! `unavailable`; a channel kind without a policy is `forbidden`.

use super::registry::ConnShared;
use crate::auth::{Identity, Role};
use futures_util::future::BoxFuture;
use marquee_protocol::{Channel, ClientMessage, ErrorCode, ServerMessage};
use std::net::IpAddr;
use std::sync::Arc;

/// A request or a subscription refused, with a stable code: what the client receives as an
/// `error` with that code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// Stable code.
    pub code: ErrorCode,
    /// Detail for the client.
    pub message: String,
}

impl Refusal {
    /// A refusal with `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The refusal of a channel this connection may not follow.
    pub fn not_open(channel: &Channel) -> Self {
        Self::new(
            ErrorCode::Forbidden,
            format!("{channel} is not open to this connection"),
        )
    }

    /// The `error` reply to request `id`.
    pub fn reply(self, id: u64) -> ServerMessage {
        ServerMessage::error(Some(id), self.code, self.message)
    }
}

/// The connection a request came from, as a handler sees it.
#[derive(Debug, Clone, Copy)]
pub struct Session<'a> {
    /// Who is connected (the token's claims, refreshed as the connection refreshes it).
    pub identity: &'a Identity,
    /// The client's address, when the listener knows it (for per-address limits).
    pub peer: Option<IpAddr>,
    /// The connection: its id, and its latest-value push slot
    /// ([`ConnShared::push_latest`]) for state a domain keeps pushing to it.
    pub conn: &'a Arc<ConnShared>,
}

/// Answers one kind of request.
pub trait RequestHandler: Send + Sync + 'static {
    /// Answers `request` (always of a kind this handler was registered for). The answer is the
    /// reply to the request's `id`: a success message or an `error`.
    fn handle<'a>(
        &'a self,
        session: Session<'a>,
        request: ClientMessage,
    ) -> BoxFuture<'a, ServerMessage>;
}

/// Decides who may subscribe to the channels of one kind.
pub trait SubscribePolicy: Send + Sync + 'static {
    /// `Ok` if `identity` may follow `channel`; otherwise the refusal to send.
    fn check<'a>(
        &'a self,
        identity: &'a Identity,
        channel: &'a Channel,
    ) -> BoxFuture<'a, Result<(), Refusal>>;
}

/// Decides whether an operator may publish on a channel through `POST /internal/publish`
/// (inbox channels are refused before it is asked, and tokens without a tenant are the
/// deployment's own operators, allowed without asking).
pub trait PublishPolicy: Send + Sync + 'static {
    /// `Ok` if `identity`, an admin of a tenant, may publish on `channel`.
    fn check<'a>(
        &'a self,
        identity: &'a Identity,
        channel: &'a Channel,
    ) -> BoxFuture<'a, Result<(), Refusal>>;
}

/// Told when a connection ends, whatever the reason.
pub trait CloseHook: Send + Sync + 'static {
    /// Connection `conn` of `identity` closed. Must not block: spawn what takes time.
    fn closed(&self, conn: u64, identity: &Identity);
}

/// Told when a connection opens and when it ends, and why: what a domain records of each
/// connection (`crate::sessions`). Both calls are on the connection's path: they must not
/// block or wait.
pub trait ConnectionLog: Send + Sync + std::fmt::Debug + 'static {
    /// A connection of `identity` opened from `peer` with `user_agent`; answers the id the
    /// log knows it by.
    fn opened(
        &self,
        identity: &Identity,
        peer: Option<std::net::IpAddr>,
        user_agent: Option<&str>,
    ) -> uuid::Uuid;

    /// Connection `id` ended, for `reason` (a close code's reason, or `gone`).
    fn closed(&self, id: uuid::Uuid, reason: &'static str);
}

/// Anyone connected may subscribe.
#[derive(Debug, Clone, Copy)]
pub struct Open;

impl SubscribePolicy for Open {
    fn check<'a>(&'a self, _: &'a Identity, _: &'a Channel) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(async { Ok(()) })
    }
}

/// Only callers with a role may subscribe.
#[derive(Debug, Clone, Copy)]
pub struct NeedsRole(pub Role);

impl SubscribePolicy for NeedsRole {
    fn check<'a>(
        &'a self,
        identity: &'a Identity,
        channel: &'a Channel,
    ) -> BoxFuture<'a, Result<(), Refusal>> {
        let allowed = identity.has_role(self.0);
        Box::pin(async move {
            if allowed {
                Ok(())
            } else {
                Err(Refusal::not_open(channel))
            }
        })
    }
}
