//! Pins the JSON spelling of one example of every message. `docs/protocol.md` shows these same
//! examples; when a snapshot changes, the contract changed, so update the document too.

use marquee_protocol::booking::{
    Command, CommandResult, InboxMessage, OrderReason, OrderStatus, OrderUpdate, Outcome,
    SeatDelta, Ticket,
};
use marquee_protocol::checkin::{Scan, ScanNotice, ScanOutcome, ScanResult};
use marquee_protocol::message::ResyncReason;
use marquee_protocol::queue::{AdmissionGrant, PlaceState, PurchaseIntent, QueueStatus};
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
        ClientMessage::Command {
            id: 6,
            request_id: "b7d2-hold-1".into(),
            command: Command::HoldSeats {
                event: "0b9f3c1e-6c1a-4c55-9a43-5a7e1d2f4b10".into(),
                seats: vec![118, 119],
            },
            admission: None,
        },
        ClientMessage::Command {
            id: 7,
            request_id: "b7d2-best-1".into(),
            command: Command::HoldBestAvailable {
                event: "0b9f3c1e-6c1a-4c55-9a43-5a7e1d2f4b10".into(),
                category: "5d0e8f7a-1b2c-4d3e-8f90-a1b2c3d4e5f6".into(),
                quantity: 2,
            },
            admission: None,
        },
        ClientMessage::Ack {
            id: 8,
            request_ids: vec!["b7d2-hold-1".into()],
        },
        ClientMessage::QueueJoin {
            id: 9,
            onsale: "7d1e2f4a-0c3b-4e5d-8f6a-1b2c3d4e5f60".into(),
            intent: Some(PurchaseIntent {
                category: "c1a2b3c4-d5e6-4f70-8192-a3b4c5d6e7f8".into(),
                quantity: 2,
            }),
        },
        ClientMessage::QueueLeave {
            id: 10,
            onsale: "7d1e2f4a-0c3b-4e5d-8f6a-1b2c3d4e5f60".into(),
        },
        ClientMessage::CheckinScan {
            id: 11,
            scan: Scan {
                qr: "MQ1.AZNvDxwtfj-KS1xtfo-aCwufPB5sGkxVmkNafh0vSxAAAAAB.3q2-7w".into(),
                scan_id: "north-7f3a-000123".into(),
                event: Some("0b9f3c1e-6c1a-4c55-9a43-5a7e1d2f4b10".into()),
                scanned_at: None,
            },
        },
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
            inbox_snapshot: None,
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
        ServerMessage::Accepted {
            id: 6,
            request_id: "b7d2-hold-1".into(),
        },
        ServerMessage::Acked { id: 8 },
        ServerMessage::Pub(Publication {
            channel: "inbox:7c1d/u_123".into(),
            epoch: "9b1e07".into(),
            offset: 13,
            data: serde_json::to_value(InboxMessage::Result(CommandResult {
                request_id: "b7d2-hold-1".into(),
                event: "0b9f3c1e-6c1a-4c55-9a43-5a7e1d2f4b10".into(),
                command: "hold_seats".into(),
                outcome: Outcome::Held {
                    hold: "f3a9e2d4-0c4b-4b7e-9d1a-6e2f8c0b1a57".into(),
                    seats: vec![118, 119],
                    ticket_type: None,
                    quantity: 2,
                    expires_at: 1_795_000_600_000,
                },
            }))
            .unwrap(),
        }),
        ServerMessage::Pub(Publication {
            channel: "inbox:7c1d/u_123".into(),
            epoch: "9b1e07".into(),
            offset: 14,
            data: serde_json::to_value(InboxMessage::Result(CommandResult {
                request_id: "b7d2-hold-2".into(),
                event: "0b9f3c1e-6c1a-4c55-9a43-5a7e1d2f4b10".into(),
                command: "hold_seats".into(),
                outcome: Outcome::Rejected {
                    code: ErrorCode::SeatUnavailable,
                    message: "some of those seats are taken".into(),
                    alternative: Some(vec![140, 141]),
                },
            }))
            .unwrap(),
        }),
        ServerMessage::Pub(Publication {
            channel: "inbox:7c1d/u_123".into(),
            epoch: "9b1e07".into(),
            offset: 15,
            data: serde_json::to_value(InboxMessage::Order(OrderUpdate {
                request_id: "order:01936f0e-4a7b-7c3d-8e9f-0a1b2c3d4e5f:paid".into(),
                order: "01936f0e-4a7b-7c3d-8e9f-0a1b2c3d4e5f".into(),
                event: "0b9f3c1e-6c1a-4c55-9a43-5a7e1d2f4b10".into(),
                status: OrderStatus::Paid,
                payment_due_at: None,
                reason: None,
                tickets: vec![Ticket {
                    ticket: "01936f0f-1c2d-7e3f-8a4b-5c6d7e8f9a0b".into(),
                    event: "0b9f3c1e-6c1a-4c55-9a43-5a7e1d2f4b10".into(),
                    ticket_type: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d".into(),
                    seat: Some(118),
                    version: 1,
                    qr: "MQ1.AZNvDxwtfj-KS1xtfo-aCwufPB5sGkxVmkNafh0vSxAAAAAB.3q2-7w".into(),
                }],
            }))
            .unwrap(),
        }),
        ServerMessage::Pub(Publication {
            channel: "inbox:7c1d/u_123".into(),
            epoch: "9b1e07".into(),
            offset: 16,
            data: serde_json::to_value(InboxMessage::Order(OrderUpdate {
                request_id: "order:01936f0e-4a7b-7c3d-8e9f-0a1b2c3d4e5f:due-1795000900000".into(),
                order: "01936f0e-4a7b-7c3d-8e9f-0a1b2c3d4e5f".into(),
                event: "0b9f3c1e-6c1a-4c55-9a43-5a7e1d2f4b10".into(),
                status: OrderStatus::PendingPayment,
                payment_due_at: Some(1_795_000_900_000),
                reason: Some(OrderReason::PaymentProcessing),
                tickets: Vec::new(),
            }))
            .unwrap(),
        }),
        ServerMessage::Pub(Publication {
            channel: "seats:0b9f3c1e-6c1a-4c55-9a43-5a7e1d2f4b10".into(),
            epoch: "5f2c9a".into(),
            offset: 1042,
            data: serde_json::to_value(SeatDelta {
                v: 1042,
                held: vec![118, 119],
                free: vec![7],
                ..SeatDelta::default()
            })
            .unwrap(),
        }),
        ServerMessage::QueueJoined {
            id: 9,
            status: QueueStatus {
                onsale: "7d1e2f4a-0c3b-4e5d-8f6a-1b2c3d4e5f60".into(),
                place: "p0a1b2c3d4e5f60718293".into(),
                state: PlaceState::Waiting,
                position: Some(1204),
                ahead: Some(1203),
                eta_seconds: Some([108, 147]),
                paused: false,
                reason: None,
                admission: None,
            },
        },
        ServerMessage::QueueStatus(QueueStatus {
            onsale: "7d1e2f4a-0c3b-4e5d-8f6a-1b2c3d4e5f60".into(),
            place: "p0a1b2c3d4e5f60718293".into(),
            state: PlaceState::Admitted,
            position: None,
            ahead: None,
            eta_seconds: None,
            paused: false,
            reason: None,
            admission: Some(AdmissionGrant {
                token: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJidXllci0xIn0.c2lnbmF0dXJl".into(),
                expires_at: 1_795_000_000,
            }),
        }),
        ServerMessage::CheckinResult {
            id: 11,
            result: ScanResult {
                scan_id: "north-7f3a-000123".into(),
                ticket: Some("01936f0f-1c2d-7e3f-8a4b-5c6d7e8f9a0b".into()),
                outcome: ScanOutcome::Admitted {
                    event: "0b9f3c1e-6c1a-4c55-9a43-5a7e1d2f4b10".into(),
                    seat: Some(118),
                    ticket_type: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d".into(),
                    at: 1_795_003_600_000,
                },
            },
        },
        ServerMessage::CheckinResult {
            id: 12,
            result: ScanResult {
                scan_id: "south-11c2-000045".into(),
                ticket: Some("01936f0f-1c2d-7e3f-8a4b-5c6d7e8f9a0b".into()),
                outcome: ScanOutcome::AlreadyCheckedIn {
                    at: 1_795_003_600_000,
                    gate: "gate-north".into(),
                },
            },
        },
        ServerMessage::Pub(Publication {
            channel: "gate:0b9f3c1e-6c1a-4c55-9a43-5a7e1d2f4b10".into(),
            epoch: "44d0e1".into(),
            offset: 2,
            data: serde_json::to_value(ScanNotice {
                gate: "gate-south".into(),
                scanned_at: 1_795_003_601_200,
                result: ScanResult {
                    scan_id: "south-11c2-000045".into(),
                    ticket: Some("01936f0f-1c2d-7e3f-8a4b-5c6d7e8f9a0b".into()),
                    outcome: ScanOutcome::Rejected {
                        code: ErrorCode::TicketInvalid,
                        message: "the ticket was transferred; this code is no longer valid".into(),
                    },
                },
            })
            .unwrap(),
        }),
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
