//! Every type that crosses the wire between Marquee hub nodes and their clients.
//!
//! This crate is shared by the server, the Rust SDK and the load generator, so no wire struct is
//! defined twice. It depends on serde and its two codecs only.
//!
//! # Layout
//!
//! - [`message`]: the frames themselves. [`ClientMessage`] is everything a client may send (each
//!   request carries a client-chosen `id`), [`ServerMessage`] everything the server sends: replies
//!   that carry that `id` back, and pushes on a channel that carry a [`StreamPosition`].
//! - [`booking`]: purchase commands and their results, the inbox's messages, and the live seat
//!   map's snapshot and deltas.
//! - [`queue`]: the waiting room: `queue.join`, a place's pushed [`queue::QueueStatus`] with
//!   its admission, and what `queue:{onsale}` publishes.
//! - [`channel`]: channel names (`seats:{event}`, `queue:{onsale}`, `inbox:{user}`,
//!   `admin:{onsale}`, `gate:{event}`) and who may subscribe to each.
//! - [`text`]: the rules for client text that reaches storage, keys or logs (lengths, no
//!   control characters), one check per kind of field.
//! - [`error`]: the stable snake_case [`ErrorCode`]s shared by WebSocket errors and HTTP error
//!   bodies ([`ErrorBody`]).
//! - [`close`]: the documented WebSocket close codes ([`CloseCode`]).
//! - [`codec`]: the two sub-protocols, `marquee.v1.json` (text frames) and `marquee.v1.msgpack`
//!   (binary frames), with decoding that never panics and names the request id of a bad request
//!   whenever it can be recovered.
//!
//! `docs/protocol.md` at the repository root is the human contract for all of this.

pub mod booking;
pub mod channel;
pub mod checkin;
pub mod close;
pub mod codec;
pub mod error;
pub mod message;
pub mod queue;
pub mod text;

pub use channel::{Channel, ChannelError, ChannelKind};
pub use close::CloseCode;
pub use codec::{Codec, DecodeError, Frame};
pub use error::{ErrorBody, ErrorCode};
pub use message::{
    ClientMessage, Publication, RequestId, RequestKind, ServerMessage, StreamPosition,
};
