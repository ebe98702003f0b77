//! The messages themselves: what clients send ([`ClientMessage`]) and what servers send
//! ([`ServerMessage`]).
//!
//! Every message is an object with a `type` field. Requests carry a client-chosen `id`
//! ([`RequestId`]); the reply to a request carries the same `id` back. Pushes on a channel
//! carry the channel name and the message's [`StreamPosition`] in that channel.

use crate::booking::Command;
use crate::error::ErrorCode;
use crate::queue::QueueStatus;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A client-chosen request id, echoed in the reply. Clients usually count up from 1.
pub type RequestId = u64;

/// Where a message sits in its channel's stream.
///
/// Offsets grow by exactly one per message within an epoch. The epoch changes whenever the
/// channel's history is lost (for example when the engine's storage is flushed); offsets from
/// one epoch mean nothing in another.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamPosition {
    /// Opaque identifier of the stream's current history.
    pub epoch: String,
    /// Offset of the last message seen (0 before the first message of an epoch).
    pub offset: u64,
}

impl StreamPosition {
    /// Builds a position.
    pub fn new(epoch: impl Into<String>, offset: u64) -> Self {
        Self {
            epoch: epoch.into(),
            offset,
        }
    }
}

/// Everything a client may send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientMessage {
    /// Subscribe to a channel, optionally resuming after `since`.
    Subscribe {
        /// Request id.
        id: RequestId,
        /// Channel name, e.g. `seats:evt_42`.
        channel: String,
        /// The last position the client has seen on this channel; the server then replays every
        /// later message (or answers `recovered: false`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<StreamPosition>,
    },
    /// Stop receiving a channel.
    Unsubscribe {
        /// Request id.
        id: RequestId,
        /// Channel name.
        channel: String,
    },
    /// Replace the connection's access token before it expires.
    Refresh {
        /// Request id.
        id: RequestId,
        /// A fresh JWT for the same user.
        token: String,
    },
    /// Application-level ping; the server answers `pong` with the same id.
    Ping {
        /// Request id.
        id: RequestId,
    },
    /// A purchase command. The server answers `accepted` once it is queued; the result arrives
    /// on the inbox. Sending the same `request_id` again never takes effect twice.
    Command {
        /// Request id (per connection, for the `accepted` reply).
        id: RequestId,
        /// The client's idempotency key for the command: unique per buyer, 1 to 128 bytes.
        request_id: String,
        /// The command.
        command: Command,
        /// The waiting room's admission token, for onsales that require one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        admission: Option<String>,
    },
    /// Acknowledge inbox results, so they are not delivered again.
    Ack {
        /// Request id.
        id: RequestId,
        /// The `request_id`s of the results received.
        request_ids: Vec<String>,
    },
    /// Takes (or attaches to) a place in an onsale's waiting room. Answered `queue.joined`;
    /// `queue.status` pushes follow while the connection lives.
    #[serde(rename = "queue.join")]
    QueueJoin {
        /// Request id.
        id: RequestId,
        /// The onsale.
        onsale: String,
        /// A purchase to attempt the instant the buyer is admitted (replaces one staged
        /// before).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        intent: Option<crate::queue::PurchaseIntent>,
    },
    /// Gives the place up at once (a disconnect keeps it for the grace period instead).
    #[serde(rename = "queue.leave")]
    QueueLeave {
        /// Request id.
        id: RequestId,
        /// The onsale.
        onsale: String,
    },
    /// A gate scanned a ticket (role `gate`). Answered `checkin.result`.
    #[serde(rename = "checkin.scan")]
    CheckinScan {
        /// Request id.
        id: RequestId,
        /// The scan.
        #[serde(flatten)]
        scan: crate::checkin::Scan,
    },
}

impl ClientMessage {
    /// The request id of this message.
    pub fn id(&self) -> RequestId {
        match self {
            Self::Subscribe { id, .. }
            | Self::Unsubscribe { id, .. }
            | Self::Refresh { id, .. }
            | Self::Ping { id }
            | Self::Command { id, .. }
            | Self::Ack { id, .. }
            | Self::QueueJoin { id, .. }
            | Self::QueueLeave { id, .. }
            | Self::CheckinScan { id, .. } => *id,
        }
    }
}

/// Which request a [`ClientMessage`] is: what a server dispatches it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequestKind {
    /// `subscribe`.
    Subscribe,
    /// `unsubscribe`.
    Unsubscribe,
    /// `refresh`.
    Refresh,
    /// `ping`.
    Ping,
    /// `command`.
    Command,
    /// `ack`.
    Ack,
    /// `queue.join`.
    QueueJoin,
    /// `queue.leave`.
    QueueLeave,
    /// `checkin.scan`.
    CheckinScan,
}

impl RequestKind {
    /// The request's `type` on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subscribe => "subscribe",
            Self::Unsubscribe => "unsubscribe",
            Self::Refresh => "refresh",
            Self::Ping => "ping",
            Self::Command => "command",
            Self::Ack => "ack",
            Self::QueueJoin => "queue.join",
            Self::QueueLeave => "queue.leave",
            Self::CheckinScan => "checkin.scan",
        }
    }
}

impl ClientMessage {
    /// Which request this is.
    pub fn kind(&self) -> RequestKind {
        match self {
            Self::Subscribe { .. } => RequestKind::Subscribe,
            Self::Unsubscribe { .. } => RequestKind::Unsubscribe,
            Self::Refresh { .. } => RequestKind::Refresh,
            Self::Ping { .. } => RequestKind::Ping,
            Self::Command { .. } => RequestKind::Command,
            Self::Ack { .. } => RequestKind::Ack,
            Self::QueueJoin { .. } => RequestKind::QueueJoin,
            Self::QueueLeave { .. } => RequestKind::QueueLeave,
            Self::CheckinScan { .. } => RequestKind::CheckinScan,
        }
    }
}

/// A message pushed on a channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Publication {
    /// Channel name.
    pub channel: String,
    /// Epoch of the channel's stream.
    pub epoch: String,
    /// Offset within the epoch; exactly one more than the previous message's.
    pub offset: u64,
    /// The payload; its shape depends on the channel.
    pub data: Value,
}

/// Why the server asks a subscriber to resync a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ResyncReason {
    /// The connection fell behind and coalescible messages were dropped.
    SlowConsumer,
    /// The node lost its feed from the engine for a while (for example a Redis reconnect).
    StreamInterrupted,
}

/// Everything a server may send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerMessage {
    /// First message on every connection.
    Welcome {
        /// This connection's id, for support and logs.
        session: String,
        /// The node that serves this connection.
        node: String,
        /// The authenticated user (`sub`).
        user: String,
        /// The user's private inbox, already subscribed.
        inbox: String,
        /// Position of the inbox stream at subscription time; inbox pushes follow it.
        inbox_position: StreamPosition,
        /// The inbox's state at `inbox_position` on nodes with a booking engine: every result
        /// not yet acknowledged (`{"pending": [...]}`, see `booking::InboxSnapshot`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inbox_snapshot: Option<Value>,
        /// When the access token expires (unix seconds); send `refresh` before then.
        expires_at: u64,
        /// How often the server pings (milliseconds).
        heartbeat_ms: u64,
    },
    /// Reply to `subscribe`.
    Subscribed {
        /// Request id.
        id: RequestId,
        /// Channel name.
        channel: String,
        /// The stream position the subscription starts from: every later `pub` on this channel
        /// follows it without a gap.
        epoch: String,
        /// See `epoch`.
        offset: u64,
        /// `true` when `since` was given and every message after it follows; `false` otherwise
        /// (then `snapshot`, where the channel has one, is the state at `offset`).
        recovered: bool,
        /// The channel's state at `offset`, for channels that have a snapshot provider. Never
        /// `null`: an absent field and `null` both mean "no snapshot".
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<Value>,
    },
    /// Reply to `unsubscribe`.
    Unsubscribed {
        /// Request id.
        id: RequestId,
        /// Channel name.
        channel: String,
    },
    /// Reply to `refresh`.
    Refreshed {
        /// Request id.
        id: RequestId,
        /// The new expiry (unix seconds).
        expires_at: u64,
    },
    /// Reply to `ping`.
    Pong {
        /// Request id.
        id: RequestId,
    },
    /// Reply to `command`: it is queued and its result will arrive on the inbox.
    Accepted {
        /// Request id.
        id: RequestId,
        /// The command's idempotency key.
        request_id: String,
    },
    /// Reply to `ack`.
    Acked {
        /// Request id.
        id: RequestId,
    },
    /// A request failed, or the server reports a problem not tied to a request.
    Error {
        /// The failed request's id, when it could be read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        /// Stable error code.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
    /// A message on a subscribed channel.
    Pub(Publication),
    /// Messages on this channel were lost for this connection; resubscribe with `since` set to
    /// the last position seen (which replays from history when it can).
    Resync {
        /// Channel name.
        channel: String,
        /// Why.
        reason: ResyncReason,
    },
    /// The server is about to close the connection (close code 1012); reconnect after
    /// `delay_ms` and resume.
    Reconnect {
        /// Suggested delay before reconnecting, jittered per connection.
        delay_ms: u64,
        /// Why, e.g. `shutdown`.
        reason: String,
    },
    /// The reply to `queue.join` (and to `queue.leave`, with state `ended`): the place's
    /// status now.
    #[serde(rename = "queue.joined")]
    QueueJoined {
        /// The request's id.
        id: RequestId,
        /// The place.
        status: QueueStatus,
    },
    /// A place's status changed (pushed; not a channel publication).
    #[serde(rename = "queue.status")]
    QueueStatus(QueueStatus),
    /// The answer to `checkin.scan`.
    #[serde(rename = "checkin.result")]
    CheckinResult {
        /// The request's id.
        id: RequestId,
        /// The answer.
        #[serde(flatten)]
        result: crate::checkin::ScanResult,
    },
}

impl ServerMessage {
    /// The request id this message replies to, if it is a reply.
    pub fn reply_to(&self) -> Option<RequestId> {
        match self {
            Self::Subscribed { id, .. }
            | Self::Unsubscribed { id, .. }
            | Self::Refreshed { id, .. }
            | Self::Pong { id }
            | Self::Accepted { id, .. }
            | Self::Acked { id }
            | Self::QueueJoined { id, .. }
            | Self::CheckinResult { id, .. } => Some(*id),
            Self::Error { id, .. } => *id,
            _ => None,
        }
    }

    /// Builds an error message.
    pub fn error(id: Option<RequestId>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            id,
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_kind_names_the_type_on_the_wire() {
        let scan: crate::checkin::Scan =
            serde_json::from_value(serde_json::json!({"qr": "MQ1.a.b", "scan_id": "s1"})).unwrap();
        let requests = [
            ClientMessage::Subscribe {
                id: 1,
                channel: "seats:e".into(),
                since: None,
            },
            ClientMessage::Unsubscribe {
                id: 1,
                channel: "seats:e".into(),
            },
            ClientMessage::Refresh {
                id: 1,
                token: "t".into(),
            },
            ClientMessage::Ping { id: 1 },
            ClientMessage::Command {
                id: 1,
                request_id: "r".into(),
                command: Command::Release {
                    event: "e".into(),
                    hold: "h".into(),
                },
                admission: None,
            },
            ClientMessage::Ack {
                id: 1,
                request_ids: vec![],
            },
            ClientMessage::QueueJoin {
                id: 1,
                onsale: "o".into(),
                intent: None,
            },
            ClientMessage::QueueLeave {
                id: 1,
                onsale: "o".into(),
            },
            ClientMessage::CheckinScan { id: 1, scan },
        ];
        for request in requests {
            let wire = serde_json::to_value(&request).unwrap();
            assert_eq!(wire["type"], request.kind().as_str(), "{request:?}");
        }
    }
}
