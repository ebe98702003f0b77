//! Sessions against real Postgres and Redis, over real WebSockets and HTTP: every connection
//! recorded, a buyer's list, ending a sign-in session on every node, the tenant wall around
//! all of it, the sweep of a lost node's connections and the retention prune.

use crate::common;

use common::{Raw, SECRET, TestNode, call_json, claims, http, upgrade_request};
use marquee_protocol::{ClientMessage, CloseCode, Codec, ServerMessage};
use marquee_server::auth::sign_hs256;
use marquee_server::secret::Secret;
use serde_json::Value;
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

fn database_url(pool: &PgPool) -> String {
    let db = pool.connect_options().get_database().unwrap().to_owned();
    let base = std::env::var("DATABASE_URL").unwrap();
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{db}")
}

/// A node on this test's database and a Redis prefix shared with its siblings.
async fn node(pool: &PgPool, prefix: &str) -> TestNode {
    let mut config = common::redis_config(prefix);
    config.database_url = Some(Secret::new(database_url(pool)));
    config.database_pool = 4;
    config.database_work_pool = 4;
    config.booking.workers = 0;
    TestNode::start(config).await
}

/// A token of `user` in `tenant` for sign-in session `sid`.
fn token(tenant: Uuid, user: &str, sid: &str, roles: &[&str]) -> String {
    let mut c = claims(user, roles, 3600);
    c.tenant = Some(tenant.to_string());
    c.sid = Some(sid.to_owned());
    sign_hs256(SECRET, &c)
}

/// Connects with a `User-Agent`, as a browser would.
async fn connect(node: &TestNode, token: &str, agent: &str) -> Raw {
    let headers = [("user-agent", agent)];
    Raw::connect_welcomed_with(&node.ws_url(), token, Codec::Json, &headers)
        .await
        .0
}

/// `GET /v1/me/sessions` once `want` of its connections are in the state `live`, within 10 s
/// (records are written about once a second).
async fn listed(node: &TestNode, token: &str, want: usize, live: bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) =
            call_json(node.addr, Some(token), "GET", "/v1/me/sessions", None).await;
        assert_eq!(status, 200, "{body}");
        let connections = body["connections"].as_array().unwrap().clone();
        if connections.iter().filter(|c| c["live"] == live).count() >= want {
            return connections;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {want} connections with live={live}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn tenant(pool: &PgPool, name: &str) -> Uuid {
    sqlx::query_scalar("insert into tenant (name) values ($1) returning tenant_id")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn an_ended_session_is_refused_and_its_sockets_close_on_every_node(pool: PgPool) {
    let prefix = common::unique_prefix();
    let a = node(&pool, &prefix).await;
    let b = node(&pool, &prefix).await;
    let ours = tenant(&pool, "ours").await;
    let theirs = tenant(&pool, "theirs").await;
    let phone = token(ours, "ann", "sign-in-phone", &[]);
    let laptop = token(ours, "ann", "sign-in-laptop", &[]);

    // The phone's session has a socket on each node; the laptop's one on node a.
    let mut phone_a = connect(&a, &phone, "Phone/1.0").await;
    let mut phone_b = connect(&b, &phone, "Phone/1.0").await;
    let mut laptop_a = connect(&a, &laptop, "Laptop/2.0").await;

    // Every connection is recorded, with its node, address, user agent and session.
    let rows = listed(&a, &laptop, 3, true).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    for row in &rows {
        assert_eq!(row["address"], "127.0.0.1");
        assert!(row["ended_at"].is_null());
        let (sid, agent) = (
            row["sid"].as_str().unwrap(),
            row["user_agent"].as_str().unwrap(),
        );
        match sid {
            "sign-in-phone" => assert_eq!(agent, "Phone/1.0"),
            "sign-in-laptop" => assert_eq!(agent, "Laptop/2.0"),
            other => panic!("unexpected session {other}"),
        }
    }
    let nodes: std::collections::HashSet<&str> =
        rows.iter().map(|r| r["node"].as_str().unwrap()).collect();
    assert_eq!(nodes.len(), 2, "recorded on both nodes: {rows:?}");

    // The tenant wall: another user, an operator of another tenant, and an unknown or foreign
    // session see and end nothing.
    let bob = token(ours, "bob", "sign-in-bob", &[]);
    let (_, body) = call_json(a.addr, Some(&bob), "GET", "/v1/me/sessions", None).await;
    assert_eq!(body["connections"], Value::Array(Vec::new()));
    let (status, _) = call_json(
        a.addr,
        Some(&bob),
        "DELETE",
        "/v1/me/sessions/sign-in-phone",
        None,
    )
    .await;
    assert_eq!(status, 404, "bob cannot end ann's session");
    let stranger = token(theirs, "operator", "op", &["admin"]);
    let (status, body) = call_json(
        a.addr,
        Some(&stranger),
        "GET",
        "/v1/admin/users/ann/sessions",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["connections"], Value::Array(Vec::new()));
    let (status, _) = call_json(
        a.addr,
        Some(&stranger),
        "DELETE",
        "/v1/admin/users/ann/sessions/sign-in-phone",
        None,
    )
    .await;
    assert_eq!(status, 404, "an operator of another tenant cannot end it");
    let (status, _) = call_json(
        a.addr,
        Some(&laptop),
        "DELETE",
        "/v1/me/sessions/never-seen",
        None,
    )
    .await;
    assert_eq!(status, 404);
    // Hostile ids: a NUL byte, or a session id past its length, end nothing.
    for hostile in ["sign-in-phone%00", &"x".repeat(300)] {
        let path = format!("/v1/me/sessions/{hostile}");
        let (status, _) = call_json(a.addr, Some(&laptop), "DELETE", &path, None).await;
        assert_eq!(status, 404, "{path}");
    }
    // A token whose sid is not printable ASCII is refused outright.
    let mut bad = claims("ann", &[], 3600);
    bad.tenant = Some(ours.to_string());
    bad.sid = Some("with\0nul".to_owned());
    let (status, body) = call_json(
        a.addr,
        Some(&sign_hs256(SECRET, &bad)),
        "GET",
        "/v1/me/sessions",
        None,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("token_invalid"))
    );
    let ended: i64 = sqlx::query_scalar("select count(*) from ended_session")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(ended, 0, "nothing was ended by the refusals");
    let (status, _) = call_json(a.addr, Some(&bob), "GET", "/v1/me/sessions", None).await;
    assert_eq!(status, 200, "nothing was ended by the refusals");

    // Ann ends the phone's session from the laptop: both of its sockets close with 4005, on
    // the node that took the call and on the other.
    let (status, _) = call_json(
        a.addr,
        Some(&laptop),
        "DELETE",
        "/v1/me/sessions/sign-in-phone",
        None,
    )
    .await;
    assert_eq!(status, 204);
    for socket in [&mut phone_a, &mut phone_b] {
        let (frame, _) = socket.until_close(Duration::from_secs(10)).await;
        let frame = frame.expect("a close frame");
        assert_eq!(u16::from(frame.code), CloseCode::SessionEnded.code());
        assert_eq!(frame.reason.as_str(), "session_ended");
    }
    // Ending it again changes nothing.
    let (status, _) = call_json(
        a.addr,
        Some(&laptop),
        "DELETE",
        "/v1/me/sessions/sign-in-phone",
        None,
    )
    .await;
    assert_eq!(status, 204);

    // Its tokens are refused everywhere: the upgrade, the HTTP API, and a refresh.
    for n in [&a, &b] {
        let auth = format!("Bearer {phone}");
        let refused = upgrade_request(n.addr, "/ws", &[("authorization", &auth)]).await;
        assert_eq!(refused.status, 401);
        assert_eq!(refused.json()["code"], "token_invalid");
        let (status, body) = call_json(n.addr, Some(&phone), "GET", "/v1/me/sessions", None).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("token_invalid"))
        );
    }
    laptop_a
        .send(&ClientMessage::Refresh {
            id: 7,
            token: phone.clone(),
        })
        .await;
    match laptop_a.recv().await {
        ServerMessage::Error { id, code, .. } => {
            assert_eq!(id, Some(7));
            assert_eq!(code, marquee_protocol::ErrorCode::TokenInvalid);
        }
        other => panic!("a refresh into another session is refused, got {other:?}"),
    }

    // The laptop's socket is untouched and answers.
    laptop_a.send(&ClientMessage::Ping { id: 8 }).await;
    assert!(matches!(
        laptop_a.recv().await,
        ServerMessage::Pong { id: 8 }
    ));

    // The list shows the phone's sockets ended, and why.
    let rows = listed(&a, &laptop, 2, false).await;
    for row in rows.iter().filter(|r| r["sid"] == "sign-in-phone") {
        assert_eq!(row["close_reason"], "session_ended", "{row}");
        assert_eq!(row["live"], false);
    }

    // An operator of the tenant ends the laptop's session.
    let operator = token(ours, "operator", "op", &["admin"]);
    let (status, body) = call_json(
        a.addr,
        Some(&operator),
        "GET",
        "/v1/admin/users/ann/sessions",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["connections"].as_array().unwrap().len(), 3);
    let (status, _) = call_json(
        b.addr,
        Some(&operator),
        "DELETE",
        "/v1/admin/users/ann/sessions/sign-in-laptop",
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (frame, _) = laptop_a.until_close(Duration::from_secs(10)).await;
    assert_eq!(u16::from(frame.expect("close").code), 4005);
    let ended: Vec<(String, String)> =
        sqlx::query_as("select sid, ended_by from ended_session order by sid")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        ended,
        vec![
            ("sign-in-laptop".to_owned(), "operator".to_owned()),
            ("sign-in-phone".to_owned(), "ann".to_owned()),
        ]
    );

    // The refused attempts were security events, counted with their reason.
    let metrics = http(a.addr, "GET", "/metrics", &[], None).await.body;
    let revoked = metrics
        .lines()
        .find(|l| {
            l.starts_with("marquee_security_events_total")
                && l.contains(r#"kind="auth_failure""#)
                && l.contains(r#"reason="revoked""#)
        })
        .unwrap_or_else(|| panic!("no revoked auth failures counted:\n{metrics}"));
    let count: f64 = revoked.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 2.0, "{revoked}");

    a.shutdown().await;
    b.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_node_started_after_a_session_ended_refuses_it(pool: PgPool) {
    let prefix = common::unique_prefix();
    let ours = tenant(&pool, "ours").await;
    let phone = token(ours, "ann", "phone", &[]);
    let first = node(&pool, &prefix).await;
    let mut socket = connect(&first, &phone, "Phone/1.0").await;
    listed(&first, &phone, 1, true).await;
    let (status, _) = call_json(
        first.addr,
        Some(&phone),
        "DELETE",
        "/v1/me/sessions/phone",
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (frame, _) = socket.until_close(Duration::from_secs(10)).await;
    assert_eq!(u16::from(frame.expect("close").code), 4005);

    // A node that was not running when it ended loads the ended sessions when it starts.
    // A node that was not running when it ended loads the ended sessions before it serves:
    // its very first answer refuses the token.
    let later = node(&pool, &prefix).await;
    let auth = format!("Bearer {phone}");
    let answer = upgrade_request(later.addr, "/ws", &[("authorization", &auth)]).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.json()["code"], "token_invalid");
    first.shutdown().await;
    later.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_lost_nodes_connections_are_closed_and_old_records_pruned(pool: PgPool) {
    // A node that died two minutes ago left a connection open; one that is alive has one too.
    let (dead, alive) = (Uuid::new_v4(), Uuid::new_v4());
    sqlx::query(
        "insert into hub_node (boot, node, seen_at) values
             ($1, 'dead', now() - interval '2 minutes'), ($2, 'alive', now())",
    )
    .bind(dead)
    .bind(alive)
    .execute(&pool)
    .await
    .unwrap();
    for (boot, started) in [(dead, "now() - interval '5 minutes'"), (alive, "now()")] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "insert into connection_session (connection_id, user_id, node, boot, started_at)
             values (gen_random_uuid(), 'ann', 'n', $1, {started})"
        )))
        .bind(boot)
        .execute(&pool)
        .await
        .unwrap();
    }
    // And records past retention: a connection of 40 days ago and a session ended then.
    sqlx::query(
        "insert into connection_session (connection_id, user_id, node, boot, started_at, ended_at)
         values (gen_random_uuid(), 'old', 'n', $1, now() - interval '40 days',
                 now() - interval '40 days')",
    )
    .bind(alive)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into ended_session (sid, user_id, ended_by, ended_at)
         values ('old', 'old', 'old', now() - interval '40 days')",
    )
    .execute(&pool)
    .await
    .unwrap();

    marquee_server::sessions::close_lost_nodes(&pool)
        .await
        .unwrap();
    let states: Vec<(Option<String>, bool)> = sqlx::query_as(
        "select s.close_reason, exists(select 1 from hub_node h where h.boot = s.boot)
         from connection_session s where s.user_id = 'ann' order by s.started_at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    // The dead node's connection is closed and the node forgotten; the live one's untouched.
    assert_eq!(
        states,
        vec![(Some("node_lost".to_owned()), false), (None, true)]
    );

    let deleted = marquee_server::sessions::prune(&pool, Duration::from_secs(30 * 86_400))
        .await
        .unwrap();
    assert_eq!(deleted, 2);
    let left: i64 = sqlx::query_scalar("select count(*) from connection_session")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 2);
}
