//! The two sub-protocols and their codecs.
//!
//! `marquee.v1.json` carries UTF-8 JSON in text frames; `marquee.v1.msgpack` carries MessagePack
//! in binary frames, with structs encoded as maps (field names included) so that any MessagePack
//! library can read them without a schema. Both carry exactly the same messages.
//!
//! Decoding never panics on any input, limits nesting depth, and, when a frame is not a valid
//! message, still tries to recover its `id` so the error reply can name the request.

use crate::message::{ClientMessage, RequestId};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::fmt;

/// Deepest nesting accepted when decoding (objects and arrays inside `data` included).
pub const MAX_DEPTH: usize = 64;

/// A wire encoding, chosen by WebSocket sub-protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// `marquee.v1.json`: JSON in text frames. The default when no sub-protocol is asked for.
    Json,
    /// `marquee.v1.msgpack`: MessagePack in binary frames.
    MsgPack,
}

/// An encoded frame, ready to hand to a WebSocket library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text frame (JSON).
    Text(String),
    /// A binary frame (MessagePack).
    Binary(Vec<u8>),
}

impl Frame {
    /// The frame's payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(s) => s.as_bytes(),
            Self::Binary(b) => b,
        }
    }
}

/// A frame that could not be decoded into a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The request id, if the frame had a readable one.
    pub id: Option<RequestId>,
    /// What was wrong, for the human reading the error.
    pub reason: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for DecodeError {}

/// A message that could not be encoded (only possible for payloads with non-string map keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError(pub String);

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot encode message: {}", self.0)
    }
}

impl std::error::Error for EncodeError {}

/// Just enough of a request to name it in an error reply.
#[derive(Deserialize)]
struct Envelope {
    id: Option<RequestId>,
}

impl Codec {
    /// Sub-protocol name of the JSON codec.
    pub const JSON_PROTOCOL: &'static str = "marquee.v1.json";
    /// Sub-protocol name of the MessagePack codec.
    pub const MSGPACK_PROTOCOL: &'static str = "marquee.v1.msgpack";

    /// The sub-protocol name of this codec.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Self::Json => Self::JSON_PROTOCOL,
            Self::MsgPack => Self::MSGPACK_PROTOCOL,
        }
    }

    /// The codec for a sub-protocol name.
    pub fn from_subprotocol(name: &str) -> Option<Self> {
        match name.trim() {
            Self::JSON_PROTOCOL => Some(Self::Json),
            Self::MSGPACK_PROTOCOL => Some(Self::MsgPack),
            _ => None,
        }
    }

    /// Picks the first supported codec from a `Sec-WebSocket-Protocol` header value
    /// (comma-separated, client preference order).
    pub fn negotiate(header: &str) -> Option<Self> {
        header.split(',').find_map(Self::from_subprotocol)
    }

    /// Whether this codec uses binary frames.
    pub fn is_binary(self) -> bool {
        matches!(self, Self::MsgPack)
    }

    /// Encodes a message into a frame of the right kind.
    pub fn encode<T: Serialize>(self, message: &T) -> Result<Frame, EncodeError> {
        match self {
            Self::Json => serde_json::to_string(message)
                .map(Frame::Text)
                .map_err(|e| EncodeError(e.to_string())),
            Self::MsgPack => rmp_serde::to_vec_named(message)
                .map(Frame::Binary)
                .map_err(|e| EncodeError(e.to_string())),
        }
    }

    /// Decodes a frame's payload into a message.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, DecodeError> {
        self.decode_raw(bytes).map_err(|reason| DecodeError {
            id: self.recover_id(bytes),
            reason,
        })
    }

    /// Decodes a client request; on failure, names its id when the frame had a readable one.
    pub fn decode_client(self, bytes: &[u8]) -> Result<ClientMessage, DecodeError> {
        self.decode(bytes)
    }

    fn decode_raw<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, String> {
        match self {
            Self::Json => {
                // serde_json already refuses nesting deeper than 128; MAX_DEPTH is enforced by
                // a cheap pre-scan so both codecs accept exactly the same messages.
                if json_depth(bytes) > MAX_DEPTH {
                    return Err(format!("nesting deeper than {MAX_DEPTH}"));
                }
                serde_json::from_slice(bytes).map_err(|e| e.to_string())
            }
            Self::MsgPack => {
                let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(bytes));
                de.set_max_depth(MAX_DEPTH);
                let value = T::deserialize(&mut de).map_err(|e| e.to_string())?;
                if de.position() != bytes.len() as u64 {
                    return Err("trailing bytes after message".to_owned());
                }
                Ok(value)
            }
        }
    }

    fn recover_id(self, bytes: &[u8]) -> Option<RequestId> {
        self.decode_raw::<Envelope>(bytes).ok().and_then(|e| e.id)
    }
}

/// The maximum nesting depth of a JSON document, counting brackets outside strings. Malformed
/// input is left to the parser to reject.
fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorCode, ServerMessage};

    #[test]
    fn negotiation_takes_the_first_supported_protocol() {
        assert_eq!(
            Codec::negotiate("chat, marquee.v1.msgpack, marquee.v1.json"),
            Some(Codec::MsgPack)
        );
        assert_eq!(Codec::negotiate("marquee.v1.json"), Some(Codec::Json));
        assert_eq!(Codec::negotiate("marquee.v2.json"), None);
    }

    #[test]
    fn a_bad_request_still_names_its_id() {
        for codec in [Codec::Json, Codec::MsgPack] {
            let frame = codec
                .encode(&serde_json::json!({"type": "fly", "id": 7}))
                .unwrap();
            let err = codec.decode_client(frame.as_bytes()).unwrap_err();
            assert_eq!(err.id, Some(7), "{codec:?}: {}", err.reason);
        }
    }

    #[test]
    fn nesting_beyond_the_limit_is_refused_by_both_codecs() {
        let mut data = serde_json::json!(1);
        for _ in 0..MAX_DEPTH + 1 {
            data = serde_json::json!([data]);
        }
        let msg = ServerMessage::Pub(crate::Publication {
            channel: "seats:e".into(),
            epoch: "e".into(),
            offset: 1,
            data,
        });
        for codec in [Codec::Json, Codec::MsgPack] {
            let frame = codec.encode(&msg).unwrap();
            assert!(codec.decode::<ServerMessage>(frame.as_bytes()).is_err());
        }
    }

    #[test]
    fn trailing_bytes_after_a_msgpack_message_are_refused() {
        let frame = Codec::MsgPack
            .encode(&ServerMessage::error(None, ErrorCode::Internal, "x"))
            .unwrap();
        let mut bytes = frame.as_bytes().to_vec();
        bytes.push(0xc0);
        assert!(Codec::MsgPack.decode::<ServerMessage>(&bytes).is_err());
    }
}
