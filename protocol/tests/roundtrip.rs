//! Property tests: every message survives both codecs unchanged, and no input makes a decoder
//! panic.

use marquee_protocol::booking::Command;
use marquee_protocol::message::ResyncReason;
use marquee_protocol::queue::{
    AdmissionGrant, PlaceState, PurchaseIntent, QueueStatus, StatusReason,
};
use marquee_protocol::{
    ClientMessage, Codec, ErrorCode, Publication, ServerMessage, StreamPosition,
};
use proptest::prelude::*;
use serde_json::Value;

fn codecs() -> impl Strategy<Value = Codec> {
    prop_oneof![Just(Codec::Json), Just(Codec::MsgPack)]
}

fn position() -> impl Strategy<Value = StreamPosition> {
    ("[a-f0-9]{1,16}", any::<u64>()).prop_map(|(epoch, offset)| StreamPosition { epoch, offset })
}

/// JSON values as they appear in payloads. Floats are left out: JSON text cannot carry every
/// f64 bit pattern (NaN, -0.0), and no Marquee payload uses them.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        (any::<u64>(), ".{0,40}", prop::option::of(position()))
            .prop_map(|(id, channel, since)| ClientMessage::Subscribe { id, channel, since }),
        (any::<u64>(), ".{0,40}")
            .prop_map(|(id, channel)| ClientMessage::Unsubscribe { id, channel }),
        (any::<u64>(), ".{0,200}").prop_map(|(id, token)| ClientMessage::Refresh { id, token }),
        any::<u64>().prop_map(|id| ClientMessage::Ping { id }),
        (
            any::<u64>(),
            ".{0,40}",
            command(),
            prop::option::of(".{0,40}")
        )
            .prop_map(
                |(id, request_id, command, admission)| ClientMessage::Command {
                    id,
                    request_id,
                    command,
                    admission
                }
            ),
        (any::<u64>(), prop::collection::vec(".{0,20}", 0..4))
            .prop_map(|(id, request_ids)| ClientMessage::Ack { id, request_ids }),
        (
            any::<u64>(),
            ".{0,36}",
            prop::option::of((".{0,36}", any::<u32>()))
        )
            .prop_map(|(id, onsale, intent)| ClientMessage::QueueJoin {
                id,
                onsale,
                intent: intent.map(|(category, quantity)| PurchaseIntent { category, quantity }),
            }),
        (any::<u64>(), ".{0,36}").prop_map(|(id, onsale)| ClientMessage::QueueLeave { id, onsale }),
        (
            any::<u64>(),
            ".{0,60}",
            ".{1,20}",
            proptest::option::of(".{0,36}"),
            proptest::option::of(any::<u64>())
        )
            .prop_map(
                |(id, qr, scan_id, event, scanned_at)| ClientMessage::CheckinScan {
                    id,
                    scan: marquee_protocol::checkin::Scan {
                        qr,
                        scan_id,
                        event,
                        scanned_at
                    },
                }
            ),
    ]
}

fn queue_status() -> impl Strategy<Value = QueueStatus> {
    let state = prop_oneof![
        Just(PlaceState::PreQueue),
        Just(PlaceState::Waiting),
        Just(PlaceState::Admitted),
        Just(PlaceState::SoldOut),
        Just(PlaceState::Closed),
        Just(PlaceState::Ended),
    ];
    let reason = prop_oneof![
        Just(StatusReason::Drawn),
        Just(StatusReason::Rejoined),
        Just(StatusReason::Paused),
        Just(StatusReason::SoldOut),
        Just(StatusReason::NoShow),
        Just(StatusReason::GraceExpired),
    ];
    (
        (".{0,36}", ".{0,24}", state),
        (
            prop::option::of(any::<u64>()),
            prop::option::of(any::<u64>()),
            prop::option::of(any::<[u64; 2]>()),
        ),
        (
            any::<bool>(),
            prop::option::of(reason),
            prop::option::of((".{0,60}", any::<u64>())),
        ),
    )
        .prop_map(
            |((onsale, place, state), (position, ahead, eta_seconds), (paused, reason, grant))| {
                QueueStatus {
                    onsale,
                    place,
                    state,
                    position,
                    ahead,
                    eta_seconds,
                    paused,
                    reason,
                    admission: grant
                        .map(|(token, expires_at)| AdmissionGrant { token, expires_at }),
                }
            },
        )
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (".{0,36}", prop::collection::vec(any::<u32>(), 0..8))
            .prop_map(|(event, seats)| Command::HoldSeats { event, seats }),
        (".{0,36}", ".{0,36}", any::<u32>()).prop_map(|(event, category, quantity)| {
            Command::HoldBestAvailable {
                event,
                category,
                quantity,
            }
        }),
        (".{0,36}", ".{0,36}", any::<u32>()).prop_map(|(event, ticket_type, quantity)| {
            Command::HoldGa {
                event,
                ticket_type,
                quantity,
            }
        }),
        (".{0,36}", ".{0,36}").prop_map(|(event, hold)| Command::Release { event, hold }),
        (".{0,36}", ".{0,36}").prop_map(|(event, hold)| Command::Checkout { event, hold }),
    ]
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(ErrorCode::ALL.to_vec())
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        (
            ".{0,20}",
            ".{0,20}",
            ".{0,20}",
            ".{0,40}",
            position(),
            prop::option::of(json_value().prop_filter("non-null", |v| !v.is_null())),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(
                |(
                    session,
                    node,
                    user,
                    inbox,
                    inbox_position,
                    inbox_snapshot,
                    expires_at,
                    heartbeat_ms,
                )| {
                    ServerMessage::Welcome {
                        session,
                        node,
                        user,
                        inbox,
                        inbox_position,
                        inbox_snapshot,
                        expires_at,
                        heartbeat_ms,
                    }
                }
            ),
        (any::<u64>(), ".{0,40}")
            .prop_map(|(id, request_id)| ServerMessage::Accepted { id, request_id }),
        any::<u64>().prop_map(|id| ServerMessage::Acked { id }),
        (
            any::<u64>(),
            ".{0,40}",
            position(),
            any::<bool>(),
            // A snapshot is never `null` (the hub refuses one): `null` means "no snapshot".
            prop::option::of(json_value().prop_filter("non-null", |v| !v.is_null()))
        )
            .prop_map(|(id, channel, pos, recovered, snapshot)| {
                ServerMessage::Subscribed {
                    id,
                    channel,
                    epoch: pos.epoch,
                    offset: pos.offset,
                    recovered,
                    snapshot,
                }
            }),
        (any::<u64>(), ".{0,40}")
            .prop_map(|(id, channel)| ServerMessage::Unsubscribed { id, channel }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(id, expires_at)| ServerMessage::Refreshed { id, expires_at }),
        any::<u64>().prop_map(|id| ServerMessage::Pong { id }),
        (prop::option::of(any::<u64>()), error_code(), ".{0,40}")
            .prop_map(|(id, code, message)| ServerMessage::Error { id, code, message }),
        (".{0,40}", position(), json_value()).prop_map(|(channel, pos, data)| {
            ServerMessage::Pub(Publication {
                channel,
                epoch: pos.epoch,
                offset: pos.offset,
                data,
            })
        }),
        (
            ".{0,40}",
            prop_oneof![
                Just(ResyncReason::SlowConsumer),
                Just(ResyncReason::StreamInterrupted)
            ]
        )
            .prop_map(|(channel, reason)| ServerMessage::Resync { channel, reason }),
        (any::<u64>(), ".{0,20}")
            .prop_map(|(delay_ms, reason)| ServerMessage::Reconnect { delay_ms, reason }),
        (any::<u64>(), queue_status())
            .prop_map(|(id, status)| ServerMessage::QueueJoined { id, status }),
        queue_status().prop_map(ServerMessage::QueueStatus),
        (any::<u64>(), ".{1,20}", any::<u64>(), ".{0,20}").prop_map(|(id, scan_id, at, gate)| {
            ServerMessage::CheckinResult {
                id,
                result: marquee_protocol::checkin::ScanResult {
                    scan_id,
                    ticket: None,
                    outcome: marquee_protocol::checkin::ScanOutcome::AlreadyCheckedIn { at, gate },
                },
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_client_message_round_trips(codec in codecs(), msg in client_message()) {
        let frame = codec.encode(&msg).unwrap();
        let back: ClientMessage = codec.decode(frame.as_bytes()).unwrap();
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn every_server_message_round_trips(codec in codecs(), msg in server_message()) {
        let frame = codec.encode(&msg).unwrap();
        let back: ServerMessage = codec.decode(frame.as_bytes()).unwrap();
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(codec in codecs(), bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = codec.decode::<ClientMessage>(&bytes);
        let _ = codec.decode::<ServerMessage>(&bytes);
    }

    #[test]
    fn decoding_mutated_valid_frames_never_panics(
        codec in codecs(),
        msg in client_message(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = codec.encode(&msg).unwrap().as_bytes().to_vec();
        for (at, byte) in flips {
            if !bytes.is_empty() {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
        }
        let _ = codec.decode_client(&bytes);
    }
}
