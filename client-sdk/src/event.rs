//! What a client reports: its events, its errors, and how a subscription started.

use marquee_protocol::booking::CommandResult;
use marquee_protocol::{ErrorCode, Publication, StreamPosition};
use serde_json::Value;
use std::time::Duration;

/// A client failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server refused the token (HTTP 401).
    #[error("unauthorized ({code}): {message}")]
    Unauthorized {
        /// Stable code.
        code: ErrorCode,
        /// Detail.
        message: String,
    },
    /// The node is full or refusing connections for now (HTTP 503).
    #[error("over capacity; retry after {retry_after:?}")]
    OverCapacity {
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The connection could not be established.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The token provider failed.
    #[error("token provider failed: {0}")]
    Token(String),
    /// The server answered the request with an error.
    #[error("{code}: {message}")]
    Server {
        /// Stable code.
        code: ErrorCode,
        /// Detail.
        message: String,
    },
    /// No reply within the request timeout.
    #[error("request timed out")]
    Timeout,
    /// The connection dropped before the reply arrived.
    #[error("disconnected before the reply")]
    Disconnected,
    /// The client was closed.
    #[error("client closed")]
    Closed,
}

/// The outcome of a (re)subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribed {
    /// Channel name.
    pub channel: String,
    /// Every later publication follows this position without a gap.
    pub position: StreamPosition,
    /// Whether the missed messages follow (`true`), or the application must start over from
    /// `snapshot` or its own fetch (`false`).
    pub recovered: bool,
    /// The channel's state at `position`, where the channel has snapshots.
    pub snapshot: Option<Value>,
    /// `true` when the client resubscribed by itself (after a reconnect or a resync).
    pub automatic: bool,
}

/// What the client reports to the application, in order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A connection was established (the first one or a reconnect).
    Connected {
        /// Node name.
        node: String,
        /// The user's inbox channel (subscribed by the server).
        inbox: String,
    },
    /// A channel was (re)subscribed.
    Subscribed(Subscribed),
    /// A message, delivered exactly once and in order per channel.
    Publication(Publication),
    /// A server queued a purchase command (answered `accepted`): its result will come, on
    /// this connection or a later one. At most once per request id, and never after its
    /// result. A command never accepted (the servers kept answering `unavailable` until it
    /// timed out) may or may not have been queued (a server whose queue timed out cannot
    /// tell); its caller gets an error, and sending it again under the same request id takes
    /// effect at most once.
    Accepted {
        /// The command's request id.
        request_id: String,
    },
    /// The result of a purchase command, delivered once per request id (and then acknowledged
    /// to the server), whether or not this client is still waiting for it.
    Result(CommandResult),
    /// The connection dropped; the client reconnects by itself unless `reconnect_in` is `None`.
    Disconnected {
        /// The close code, if the server sent one.
        code: Option<u16>,
        /// Why.
        reason: String,
        /// When the next attempt starts.
        reconnect_in: Option<Duration>,
    },
    /// A waiting-room status: pushed by the server as the place moves (position, admission,
    /// end), and the answer to the automatic `queue.join` the client sends for every queue it
    /// joined after each reconnect (it attaches to the same place).
    QueueStatus(marquee_protocol::queue::QueueStatus),
    /// A server error not tied to a pending request (or an automatic resubscribe that failed).
    Error {
        /// Stable code.
        code: ErrorCode,
        /// Detail.
        message: String,
    },
}
