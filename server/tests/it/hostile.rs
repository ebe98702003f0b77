//! The hostile client, as tests. Every string a client sends, over the socket (JSON and
//! MessagePack frames) and over HTTP, is sent with U+0000, with another control character and
//! as 10 KiB of text, and MessagePack frames carry strings that are not UTF-8: each is refused
//! with a stable code (naming the field where the field is text), the connection carries on,
//! and nothing is queued or written. Then a property test: random commands with random strings
//! from one buyer never stop another buyer's purchases or results.

use crate::common;

use common::shop::{ShopSpec, admin_token, buyer_signed, node_config, shop, staff_token};
use common::{Raw, SECRET, TestNode};
use marquee_protocol::{Codec, ErrorCode, ServerMessage};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

/// The three ways a string goes wrong: the byte no text store takes, another control
/// character, and far more text than any field allows.
fn bad_strings() -> [(&'static str, String); 3] {
    [
        ("nul", "a\u{0}b".to_owned()),
        ("bell", "a\u{7}b".to_owned()),
        ("10 KiB", "x".repeat(10 * 1024)),
    ]
}

/// Sets the string at `pointer` (a JSON pointer) in `value`.
fn with(mut value: Value, pointer: &str, bad: &str) -> Value {
    *value.pointer_mut(pointer).expect("the field exists") = Value::String(bad.to_owned());
    value
}

/// Sends a frame built from `message` and returns the reply to request id 7 (skipping
/// pushes).
async fn ask(raw: &mut Raw, message: &Value) -> ServerMessage {
    match raw.codec.encode(message).unwrap() {
        marquee_protocol::Frame::Text(t) => raw.send_text(&t).await,
        marquee_protocol::Frame::Binary(b) => {
            use futures_util::SinkExt as _;
            raw.socket
                .send(tokio_tungstenite::tungstenite::Message::binary(b))
                .await
                .unwrap();
        }
    }
    reply(raw).await
}

async fn reply(raw: &mut Raw) -> ServerMessage {
    loop {
        match raw.recv().await {
            ServerMessage::Pub(_) => {}
            other => return other,
        }
    }
}

/// The connection still answers.
async fn still_open(raw: &mut Raw) {
    match ask(raw, &json!({"type": "ping", "id": 99})).await {
        ServerMessage::Pong { id: 99 } => {}
        other => panic!("expected pong, got {other:?}"),
    }
}

/// A MessagePack string of raw bytes (str8), UTF-8 or not.
fn mp_str(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0xd9, u8::try_from(bytes.len()).unwrap()];
    out.extend_from_slice(bytes);
    out
}

/// A MessagePack map (fixmap) of already encoded keys and values.
fn mp_map(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![0x80 | u8::try_from(entries.len()).unwrap()];
    for (k, v) in entries {
        out.extend(mp_str(k.as_bytes()));
        out.extend_from_slice(v);
    }
    out
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn every_string_a_socket_sends_is_refused_with_its_code_and_changes_nothing(pool: PgPool) {
    let node = TestNode::start(node_config(&pool)).await;
    let shop = shop(&pool, ShopSpec::default()).await;
    let onsale: Uuid = sqlx::query_scalar("select onsale_id from onsale where event_id = $1")
        .bind(shop.event)
        .fetch_one(&pool)
        .await
        .unwrap();
    let (event, category, ga) = (
        shop.event.to_string(),
        shop.category.to_string(),
        shop.ga.to_string(),
    );
    let hold = Uuid::new_v4().to_string();
    let command = |command: Value| json!({"type": "command", "id": 7, "request_id": "r-1", "command": command});
    // (message, pointer of the string, the code, a word the message must hold; "" for none)
    let buyer_cases: Vec<(Value, &str, ErrorCode, &str)> = vec![
        (
            command(json!({"kind": "hold_seats", "event": event, "seats": [1]})),
            "/request_id",
            ErrorCode::BadRequest,
            "request_id",
        ),
        (
            {
                let mut m = command(json!({"kind": "hold_seats", "event": event, "seats": [1]}));
                m["admission"] = json!("token");
                m
            },
            "/admission",
            ErrorCode::BadRequest,
            "admission",
        ),
        (
            command(json!({"kind": "hold_seats", "event": event, "seats": [1]})),
            "/command/event",
            ErrorCode::NotFound,
            "",
        ),
        (
            command(
                json!({"kind": "hold_best_available", "event": event, "category": category, "quantity": 1}),
            ),
            "/command/category",
            ErrorCode::UnknownCategory,
            "category",
        ),
        (
            command(json!({"kind": "hold_ga", "event": event, "ticket_type": ga, "quantity": 1})),
            "/command/ticket_type",
            ErrorCode::UnknownTicketType,
            "ticket_type",
        ),
        (
            command(json!({"kind": "release", "event": event, "hold": hold})),
            "/command/hold",
            ErrorCode::HoldNotFound,
            "hold",
        ),
        (
            command(json!({"kind": "checkout", "event": event, "hold": hold})),
            "/command/hold",
            ErrorCode::HoldNotFound,
            "hold",
        ),
        (
            json!({"type": "ack", "id": 7, "request_ids": ["fine", "x"]}),
            "/request_ids/1",
            ErrorCode::BadRequest,
            "request_ids[1]",
        ),
        (
            json!({"type": "subscribe", "id": 7, "channel": "x"}),
            "/channel",
            ErrorCode::BadRequest,
            "channel",
        ),
        (
            json!({"type": "unsubscribe", "id": 7, "channel": "x"}),
            "/channel",
            ErrorCode::BadRequest,
            "channel",
        ),
        (
            json!({"type": "refresh", "id": 7, "token": "x"}),
            "/token",
            ErrorCode::TokenMalformed,
            "",
        ),
        (
            json!({"type": "queue.join", "id": 7, "onsale": onsale}),
            "/onsale",
            ErrorCode::NotFound,
            "",
        ),
        (
            json!({"type": "queue.leave", "id": 7, "onsale": onsale}),
            "/onsale",
            ErrorCode::NotFound,
            "",
        ),
    ];
    let scan =
        json!({"type": "checkin.scan", "id": 7, "qr": "MQ1.x.y", "scan_id": "s-1", "event": event});
    let gate_cases: Vec<(Value, &str, ErrorCode, &str)> = vec![
        (scan.clone(), "/scan_id", ErrorCode::BadRequest, "scan_id"),
        (scan.clone(), "/qr", ErrorCode::BadRequest, "qr"),
        (scan, "/event", ErrorCode::BadRequest, "event"),
    ];
    let buyer = buyer_signed(SECRET, shop.tenant, "mallory");
    let gate = staff_token(&shop, "gate-1", "gate");
    for codec in [Codec::Json, Codec::MsgPack] {
        for (token, cases) in [(&buyer, &buyer_cases), (&gate, &gate_cases)] {
            let mut raw = Raw::connect_with(&node.ws_url(), token, codec).await;
            for (message, pointer, code, word) in cases {
                for (what, bad) in bad_strings() {
                    let case = format!("{codec:?} {pointer} {what}");
                    match ask(&mut raw, &with(message.clone(), pointer, &bad)).await {
                        ServerMessage::Error {
                            id: Some(7),
                            code: got,
                            message,
                        } => {
                            assert_eq!(got, *code, "{case}: {message}");
                            assert!(message.contains(word), "{case}: {message}");
                            assert!(message.len() < 1024, "{case}: the text is not echoed");
                        }
                        other => panic!("{case}: expected an error, got {other:?}"),
                    }
                }
                still_open(&mut raw).await;
            }
        }
    }

    // MessagePack strings that are not UTF-8: refused as unreadable frames, the connection
    // carries on.
    let mut raw = Raw::connect_with(&node.ws_url(), &buyer, Codec::MsgPack).await;
    let not_utf8 = [0x72, 0xff, 0xfe, 0x31];
    let frames = [
        mp_map(&[
            ("type", mp_str(b"command")),
            ("id", vec![7]),
            ("request_id", mp_str(&not_utf8)),
            (
                "command",
                mp_map(&[
                    ("kind", mp_str(b"hold_seats")),
                    ("event", mp_str(event.as_bytes())),
                    ("seats", vec![0x91, 0x01]),
                ]),
            ),
        ]),
        mp_map(&[
            ("type", mp_str(b"subscribe")),
            ("id", vec![7]),
            ("channel", mp_str(&not_utf8)),
        ]),
        mp_map(&[("type", mp_str(&not_utf8)), ("id", vec![7])]),
    ];
    for frame in frames {
        use futures_util::SinkExt as _;
        raw.socket
            .send(tokio_tungstenite::tungstenite::Message::binary(frame))
            .await
            .unwrap();
        match reply(&mut raw).await {
            ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::BadRequest),
            other => panic!("expected bad_request, got {other:?}"),
        }
        still_open(&mut raw).await;
    }

    for (table, sql) in [
        ("hold", "select count(*) from hold"),
        ("seat_claim", "select count(*) from seat_claim"),
        (
            "processed_request",
            "select count(*) from processed_request",
        ),
        ("checkin_scan", "select count(*) from checkin_scan"),
    ] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 0, "nothing was written to {table}");
    }
    node.shutdown().await;
}

/// Sends one HTTP request with `token`; status and JSON body.
async fn call(
    node: &TestNode,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    common::call_json(node.addr, Some(token), method, path, body).await
}

/// A route to spoil: token, method, path, a valid body, and the strings in it (pointer, a word
/// the refusal must hold).
type Route<'a> = (&'a str, &'a str, String, Value, Vec<(&'a str, &'a str)>);

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn every_string_an_http_body_or_query_carries_is_refused_by_name_and_changes_nothing(
    pool: PgPool,
) {
    let node = TestNode::start(node_config(&pool)).await;
    let shop = shop(&pool, ShopSpec::default()).await;
    let admin = admin_token(&shop);
    let buyer = buyer_signed(SECRET, shop.tenant, "mallory");
    let gate = staff_token(&shop, "gate-1", "gate");
    let venue: Uuid = sqlx::query_scalar("select venue_id from venue where tenant_id = $1")
        .bind(shop.tenant)
        .fetch_one(&pool)
        .await
        .unwrap();
    // A draft without a seat map, for the seat-map cases.
    let (status, draft) = call(
        &node,
        &admin,
        "POST",
        "/v1/admin/events",
        Some(&json!({"venue_id": venue, "name": "Draft", "starts_at": "2030-01-01T20:00:00Z"})),
    )
    .await;
    assert_eq!(status, 201, "{draft}");
    let draft = draft["event_id"].as_str().unwrap().to_owned();
    let (status, _) = call(
        &node,
        &admin,
        "POST",
        &format!("/v1/admin/events/{draft}/price-categories"),
        Some(&json!({"name": "Standard", "price_minor": 100, "currency": "EUR"})),
    )
    .await;
    assert_eq!(status, 201);
    let event = shop.event;
    let ticket = Uuid::new_v4();
    let spec = json!({"sections": [{"name": "S", "rows": "A", "seats": "1-3",
                                   "categories": [{"rows": "A", "category": "Standard"}]}]});
    // (token, method, path, a valid body, the strings to spoil: pointer and a word the refusal holds)
    let routes: Vec<Route<'_>> = vec![
        (
            &admin,
            "PUT",
            "/v1/admin/tenant".into(),
            json!({"name": "Shop"}),
            vec![("/name", "name")],
        ),
        (
            &admin,
            "POST",
            "/v1/admin/venues".into(),
            json!({"name": "H", "city": "C", "address": "A", "timezone": "UTC"}),
            vec![
                ("/name", "name"),
                ("/city", "city"),
                ("/address", "address"),
                ("/timezone", "timezone"),
            ],
        ),
        (
            &admin,
            "POST",
            "/v1/admin/events".into(),
            json!({"venue_id": venue, "name": "E", "description": "D", "category": "c", "starts_at": "2030-01-01T20:00:00Z"}),
            vec![
                ("/name", "name"),
                ("/description", "description"),
                ("/category", "category"),
            ],
        ),
        (
            &admin,
            "POST",
            format!("/v1/admin/events/{event}/price-categories"),
            json!({"name": "P", "price_minor": 1, "currency": "EUR"}),
            vec![("/name", "name"), ("/currency", "currency")],
        ),
        (
            &admin,
            "POST",
            format!("/v1/admin/events/{event}/ticket-types"),
            json!({"name": "T", "kind": "general_admission", "ga_quota": 5, "price_minor": 1, "currency": "EUR"}),
            vec![
                ("/name", "name"),
                ("/kind", "kind"),
                ("/currency", "currency"),
            ],
        ),
        (
            &admin,
            "POST",
            format!("/v1/admin/events/{event}/onsales"),
            json!({"name": "O", "starts_at": "2030-01-01T20:00:00Z"}),
            vec![("/name", "name")],
        ),
        (
            &admin,
            "PATCH",
            format!("/v1/admin/events/{event}/status"),
            json!({"status": "published"}),
            vec![("/status", "status")],
        ),
        (
            &admin,
            "POST",
            format!("/v1/admin/events/{draft}/seat-map"),
            spec.clone(),
            vec![
                ("/sections/0/name", "name"),
                ("/sections/0/rows", "row"),
                ("/sections/0/seats", "seat"),
                ("/sections/0/categories/0/category", "categor"),
            ],
        ),
        (
            &buyer,
            "POST",
            format!("/v1/me/tickets/{ticket}/transfer"),
            json!({"to": "bob"}),
            vec![("/to", "to")],
        ),
        (
            &gate,
            "POST",
            "/v1/checkin".into(),
            json!({"qr": "MQ1.x.y", "scan_id": "s-1", "event": event}),
            vec![("/scan_id", "scan_id"), ("/qr", "qr"), ("/event", "event")],
        ),
        (
            &gate,
            "POST",
            "/v1/checkin/batch".into(),
            json!({"scans": [{"qr": "MQ1.x.y", "scan_id": "s-1"}]}),
            vec![("/scans/0/scan_id", "scan_id")],
        ),
    ];
    let counts = "select (select count(*) from venue) + (select count(*) from event)
                    + (select count(*) from price_category) + (select count(*) from ticket_type)
                    + (select count(*) from onsale) + (select count(*) from seat_map)
                    + (select count(*) from checkin_scan) + (select count(*) from audit_log)";
    let before: i64 = sqlx::query_scalar(counts).fetch_one(&pool).await.unwrap();
    for (token, method, path, body, _) in &routes {
        let (status, _) = call(&node, token, method, path, Some(body)).await;
        assert!(
            status < 500 && status != 400,
            "{method} {path}: the valid body is not refused for its text ({status})"
        );
    }
    let valid: i64 = sqlx::query_scalar(counts).fetch_one(&pool).await.unwrap();
    let cases = routes
        .iter()
        .flat_map(|(token, method, path, body, fields)| {
            fields
                .iter()
                .map(move |(pointer, word)| (token, method, path, body, pointer, word))
        });
    for (token, method, path, body, pointer, word) in cases {
        for (what, bad) in bad_strings() {
            let (status, reply) = call(
                &node,
                token,
                method,
                path,
                Some(&with(body.clone(), pointer, &bad)),
            )
            .await;
            let case = format!("{method} {path} {pointer} {what}");
            assert_eq!(
                (status, reply["code"].as_str()),
                (400, Some("bad_request")),
                "{case}: {reply}"
            );
            let message = reply["message"].as_str().unwrap();
            assert!(message.contains(word), "{case}: {message}");
            assert!(message.len() < 1024, "{case}: the text is not echoed whole");
        }
    }
    for field in ["q", "category", "city"] {
        for (what, bad) in bad_strings() {
            let encoded: String = form_urlencoded::byte_serialize(bad.as_bytes()).collect();
            let path = format!("/v1/tenants/{}/events?{field}={encoded}", shop.tenant);
            let (status, reply) = call(&node, &buyer, "GET", &path, None).await;
            assert_eq!(
                (status, reply["code"].as_str()),
                (400, Some("bad_request")),
                "{field} {what}"
            );
            assert!(
                reply["message"].as_str().unwrap().contains(field),
                "{field} {what}: {reply}"
            );
        }
    }
    let after: i64 = sqlx::query_scalar(counts).fetch_one(&pool).await.unwrap();
    assert_eq!(after, valid, "no refused request wrote anything");
    assert!(valid > before, "the valid requests did write");
    node.shutdown().await;
}

/// Text a hostile client might send anywhere: printable, anything at all (control
/// characters and every plane included), short ids, or long runs.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,16}",
        any::<String>(),
        "[a-z0-9-]{1,12}",
        "x{100,400}",
    ]
}

/// One frame of a hostile buyer: a purchase command whose every string may be real or made
/// up, an acknowledgement of made-up ids, or text that is no message at all.
fn hostile_frame(event: String, category: String, ga: String) -> impl Strategy<Value = Value> {
    let id_or = |real: String| prop_oneof![Just(real), any_text()];
    let kind = prop_oneof![
        Just("hold_seats".to_owned()),
        Just("hold_best_available".to_owned()),
        Just("hold_ga".to_owned()),
        Just("release".to_owned()),
        Just("checkout".to_owned()),
        any_text(),
    ];
    let hold = prop_oneof![
        any::<u128>().prop_map(|n| Uuid::from_u128(n).to_string()),
        any_text()
    ];
    let command = (
        any_text(),
        kind,
        id_or(event),
        id_or(category),
        id_or(ga),
        hold,
        proptest::collection::vec(0u32..300, 0..12),
        0u32..20,
        proptest::option::of(any_text()),
    )
        .prop_map(
            |(request_id, kind, event, category, ticket_type, hold, seats, quantity, admission)| {
                let mut message = json!({"type": "command", "id": 1, "request_id": request_id,
                    "command": {"kind": kind, "event": event, "category": category,
                                "ticket_type": ticket_type, "hold": hold, "seats": seats,
                                "quantity": quantity}});
                if let Some(admission) = admission {
                    message["admission"] = json!(admission);
                }
                message
            },
        );
    let ack = proptest::collection::vec(any_text(), 0..4)
        .prop_map(|ids| json!({"type": "ack", "id": 1, "request_ids": ids}));
    let garbage = any_text().prop_map(Value::String);
    prop_oneof![6 => command, 1 => ack, 1 => garbage]
}

/// The request id of a command result pushed on the inbox, if `message` is one.
fn result_of(message: &ServerMessage) -> Option<String> {
    use marquee_protocol::booking::InboxMessage;
    let ServerMessage::Pub(p) = message else {
        return None;
    };
    match serde_json::from_value(p.data.clone()) {
        Ok(InboxMessage::Result(r)) => Some(r.request_id),
        _ => None,
    }
}

/// What a buyer's frames came to: the request ids the server accepted, and those of them it
/// still owes a result for (results that came while the frames were being answered are
/// struck).
async fn play(
    raw: &mut Raw,
    frames: &[Value],
) -> Result<(Vec<String>, Vec<String>), TestCaseError> {
    use futures_util::SinkExt as _;
    let mut accepted = Vec::new();
    let mut delivered = std::collections::HashSet::new();
    for frame in frames {
        match frame {
            Value::String(text) => raw
                .socket
                .send(tokio_tungstenite::tungstenite::Message::text(text.clone()))
                .await
                .map_err(|e| TestCaseError::fail(format!("send: {e}")))?,
            message => raw.send_text(&message.to_string()).await,
        }
        // Exactly one answer per frame, and never a closed connection.
        let answer = loop {
            let message = raw.recv().await;
            match result_of(&message) {
                Some(request_id) => {
                    delivered.insert(request_id);
                }
                None if matches!(message, ServerMessage::Pub(_)) => {}
                None => break message,
            }
        };
        match answer {
            ServerMessage::Accepted { .. } => {
                accepted.push(frame["request_id"].as_str().unwrap().to_owned());
            }
            ServerMessage::Error { code, .. } => {
                prop_assert!(code.as_str() != "internal", "{frame}: {code:?}");
            }
            ServerMessage::Acked { .. } => {}
            other => prop_assert!(false, "{frame}: unexpected {other:?}"),
        }
    }
    let owed = accepted
        .iter()
        .filter(|id| !delivered.contains(*id))
        .cloned()
        .collect();
    Ok((accepted, owed))
}

/// The request ids of the next results on `raw`'s inbox, until every one of `wanted` came.
async fn results_for(raw: &mut Raw, wanted: &[String]) -> Result<(), TestCaseError> {
    let mut missing: std::collections::HashSet<&str> = wanted.iter().map(String::as_str).collect();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while !missing.is_empty() {
        use futures_util::StreamExt as _;
        let frame = match tokio::time::timeout_at(deadline, raw.socket.next()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(other) => {
                prop_assert!(false, "the connection ended: {:?}", other);
                unreachable!()
            }
            Err(_) => {
                prop_assert!(false, "no result for {:?} in 15 s", missing);
                unreachable!()
            }
        };
        let tokio_tungstenite::tungstenite::Message::Text(text) = frame else {
            continue;
        };
        let message: ServerMessage = raw.codec.decode(text.as_bytes()).unwrap();
        if let Some(request_id) = result_of(&message) {
            missing.remove(request_id.as_str());
        }
    }
    Ok(())
}

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn random_commands_with_random_strings_never_stop_another_buyer(pool: PgPool) {
    let node = TestNode::start(node_config(&pool)).await;
    let shop = shop(
        &pool,
        ShopSpec {
            rows: 10,
            width: 30,
            ga_quota: 10_000,
            ..ShopSpec::default()
        },
    )
    .await;
    let url = node.ws_url();
    let strategy = proptest::collection::vec(
        hostile_frame(
            shop.event.to_string(),
            shop.category.to_string(),
            shop.ga.to_string(),
        ),
        1..16,
    );
    // The node runs on this test's runtime; the clients on a runtime of their own, on a
    // blocking thread, so proptest (which is synchronous) can drive them and shrink.
    let outcome = tokio::task::spawn_blocking(move || {
        let clients = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = ProptestConfig {
            cases: 48,
            max_shrink_iters: 24,
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        let mut runner = TestRunner::new(config);
        let round = std::sync::atomic::AtomicU32::new(0);
        let taken = std::sync::atomic::AtomicUsize::new(0);
        let result = runner.run(&strategy, |frames| {
            let n = round.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            clients.block_on(async {
                let mallory = buyer_signed(SECRET, shop.tenant, &format!("mallory-{n}"));
                let mut hostile = Raw::connect(&url, &mallory).await;
                let (accepted, owed) = play(&mut hostile, &frames).await?;
                taken.fetch_add(accepted.len(), std::sync::atomic::Ordering::Relaxed);
                // Every command taken gets its result: no input is lost or stops the owner.
                results_for(&mut hostile, &owed).await?;
                // And a buyer who did nothing wrong still buys, right after.
                let alice = buyer_signed(SECRET, shop.tenant, &format!("alice-{n}"));
                let mut honest = Raw::connect(&url, &alice).await;
                let hold = json!({"type": "command", "id": 1, "request_id": "a-hold",
                    "command": {"kind": "hold_ga", "event": shop.event, "ticket_type": shop.ga,
                                "quantity": 1}});
                let (accepted, owed) = play(&mut honest, &[hold]).await?;
                prop_assert_eq!(accepted, vec!["a-hold".to_owned()]);
                results_for(&mut honest, &owed).await?;
                Ok(())
            })
        });
        (result, taken.into_inner())
    })
    .await
    .unwrap();
    let (outcome, taken) = outcome;
    if let Err(e) = outcome {
        panic!("{e}");
    }
    assert!(
        taken >= 10,
        "the random commands reached the workers, not only the refusals ({taken} accepted)"
    );
    let sold: i64 =
        sqlx::query_scalar("select coalesce(sum(ga_held + ga_sold), 0) from ticket_type")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(sold >= 48, "every honest buyer held a ticket ({sold})");
    node.shutdown().await;
}
