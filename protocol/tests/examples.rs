//! Pins the JSON spelling of one example of every message. `docs/protocol.md` shows these same
//! examples; when a snapshot changes, the contract changed, so update the document too.

use marquee_protocol::message::ResyncReason;
use marquee_protocol::{
    ClientMessage, Codec, ErrorBody, ErrorCode, Publication, ServerMessage, StreamPosition,
};
use serde_json::json;

fn json<T: serde::Serialize>(msg: &T) -> String {
    match Codec::Json.encode(msg).unwrap() {
        marquee_protocol::Frame::Text(s) => s,
        marquee_protocol::Frame::Binary(_) => unreachable!("json encodes to text"),
    }
}

#[test]
fn client_messages_are_spelled_as_documented() {
    let examples = [
        ClientMessage::Subscribe {
            id: 1,
            channel: "seats:evt_42".into(),
            since: None,
        },
        ClientMessage::Subscribe {
            id: 2,
            channel: "seats:evt_42".into(),
            since: Some(StreamPosition::new("5f2c9a", 1041)),
        },
        ClientMessage::Unsubscribe {
            id: 3,
            channel: "seats:evt_42".into(),
        },
        ClientMessage::Refresh {
            id: 4,
            token: "eyJhbGciOiJIUzI1NiJ9.e30.sig".into(),
        },
        ClientMessage::Ping { id: 5 },
    ];
    let text: Vec<String> = examples.iter().map(json).collect();
    insta::assert_snapshot!(text.join("\n"));
}

#[test]
fn server_messages_are_spelled_as_documented() {
    let examples = [
        ServerMessage::Welcome {
            session: "c0a8012e-17".into(),
            node: "hub-1".into(),
            user: "u_123".into(),
            inbox: "inbox:u_123".into(),
            inbox_position: StreamPosition::new("9b1e07", 12),
            expires_at: 1_795_000_000,
            heartbeat_ms: 25_000,
        },
        ServerMessage::Subscribed {
            id: 1,
            channel: "seats:evt_42".into(),
            epoch: "5f2c9a".into(),
            offset: 1041,
            recovered: false,
            snapshot: Some(json!({"available": 812})),
        },
        ServerMessage::Subscribed {
            id: 2,
            channel: "seats:evt_42".into(),
            epoch: "5f2c9a".into(),
            offset: 1041,
            recovered: true,
            snapshot: None,
        },
        ServerMessage::Unsubscribed {
            id: 3,
            channel: "seats:evt_42".into(),
        },
        ServerMessage::Refreshed {
            id: 4,
            expires_at: 1_795_000_900,
        },
        ServerMessage::Pong { id: 5 },
        ServerMessage::error(Some(6), ErrorCode::Forbidden, "inbox:u_9 is private"),
        ServerMessage::Pub(Publication {
            channel: "seats:evt_42".into(),
            epoch: "5f2c9a".into(),
            offset: 1042,
            data: json!({"seat": "A-12-7", "state": "held"}),
        }),
        ServerMessage::Resync {
            channel: "seats:evt_42".into(),
            reason: ResyncReason::SlowConsumer,
        },
        ServerMessage::Reconnect {
            delay_ms: 2140,
            reason: "shutdown".into(),
        },
    ];
    let text: Vec<String> = examples.iter().map(json).collect();
    insta::assert_snapshot!(text.join("\n"));
}

#[test]
fn http_error_bodies_are_spelled_as_documented() {
    insta::assert_snapshot!(json(&ErrorBody::new(
        ErrorCode::TokenExpired,
        "token expired"
    )));
}
