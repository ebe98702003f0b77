//! The plain HTTP endpoints: health, readiness, metrics and the operators' publish API, with
//! their exact error bodies.

use crate::common;

use common::*;
use marquee_protocol::ServerMessage;
use marquee_server::engine::ChannelEngine as _;

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn health_ready_and_unknown_routes() {
    let node = TestNode::start(config()).await;
    let health = http(node.addr, "GET", "/health", &[], None).await;
    assert_eq!(
        (health.status, health.json()["status"].as_str()),
        (200, Some("ok"))
    );
    let ready = http(node.addr, "GET", "/ready", &[], None).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["engine"], "memory");
    let wrong_method = http(node.addr, "POST", "/health", &[], Some("")).await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.json()["code"], "bad_request");
    let missing = http(node.addr, "GET", "/nope", &[], None).await;
    assert_eq!(missing.status, 404);
    insta::assert_snapshot!(missing.body, @r#"{"code":"not_found","message":"no such route"}"#);
    node.shutdown().await;
}

#[tokio::test]
async fn metrics_expose_the_hub_counters_in_prometheus_format() {
    let node = TestNode::start_internal(config()).await;
    let mut raw = Raw::connect(&node.ws_url(), &token("u1", &[])).await;
    raw.must_subscribe(1, "seats:m").await;
    let _refused = upgrade_request(node.addr, "/ws", &[]).await;
    let published = http(
        node.internal.unwrap(),
        "POST",
        "/internal/publish",
        &[
            ("authorization", &bearer(&token("op", &["admin"]))),
            ("content-type", "application/json"),
        ],
        Some(r#"{"channel":"seats:m","data":{"seat":"A-1"}}"#),
    )
    .await;
    assert_eq!(published.status, 200);
    let ServerMessage::Pub(_) = raw.recv().await else {
        panic!("pub")
    };

    let metrics = http(node.addr, "GET", "/metrics", &[], None).await;
    assert_eq!(metrics.status, 200);
    for name in [
        "marquee_connections",
        "marquee_subscriptions",
        "marquee_messages_in_total",
        "marquee_messages_out_total",
        "marquee_bytes_in_total",
        "marquee_bytes_out_total",
        "marquee_auth_failures_total{reason=\"missing\"}",
        "marquee_publish_to_write_seconds_bucket",
        "process_resident_memory_bytes",
    ] {
        assert!(metrics.body.contains(name), "{name} missing from /metrics");
    }
    node.shutdown().await;
}

#[tokio::test]
async fn publishing_needs_an_admin_and_a_valid_body() {
    let node = TestNode::start_internal(config()).await;
    let internal = node.internal.unwrap();
    let admin = bearer(&token("op", &["admin"]));
    let buyer = bearer(&token("u1", &[]));
    let tenant_admin = {
        let mut c = claims("op-t", &["admin"], 3600);
        c.tenant = Some(uuid::Uuid::now_v7().to_string());
        bearer(&marquee_server::auth::sign_hs256(SECRET, &c))
    };
    let json = ("content-type", "application/json");
    let body = r#"{"channel":"queue:o1","data":{"waiting":3}}"#;
    let deep = format!(
        r#"{{"channel":"queue:o1","data":{}1{}}}"#,
        "[".repeat(80),
        "]".repeat(80)
    );

    let ok = http(
        internal,
        "POST",
        "/internal/publish",
        &[("authorization", &admin), json],
        Some(body),
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["channel"], "queue:o1");
    assert_eq!(ok.json()["offset"], 1);

    let cases = [
        ("no token", vec![json], body, 401),
        (
            "buyer",
            vec![("authorization", buyer.as_str()), json],
            body,
            403,
        ),
        (
            "bad json",
            vec![("authorization", admin.as_str()), json],
            "{",
            400,
        ),
        (
            "bad channel",
            vec![("authorization", admin.as_str()), json],
            r#"{"channel":"nope","data":1}"#,
            400,
        ),
        (
            "too deeply nested",
            vec![("authorization", admin.as_str()), json],
            deep.as_str(),
            400,
        ),
        (
            "missing data",
            vec![("authorization", admin.as_str()), json],
            r#"{"channel":"queue:o1"}"#,
            400,
        ),
        (
            "an inbox",
            vec![("authorization", admin.as_str()), json],
            r#"{"channel":"inbox:u1","data":{"result":"forged"}}"#,
            403,
        ),
        (
            "a tenant's admin on a node that cannot check tenants",
            vec![("authorization", tenant_admin.as_str()), json],
            body,
            403,
        ),
    ];
    let mut bodies = Vec::new();
    for (name, headers, body, status) in cases {
        let r = http(internal, "POST", "/internal/publish", &headers, Some(body)).await;
        assert_eq!(r.status, status, "{name}: {}", r.body);
        bodies.push(format!("{name}: {} {}", r.status, r.body));
    }
    insta::assert_snapshot!(bodies.join("\n"));
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn publishing_is_internal_and_within_the_admins_own_tenant(pool: sqlx::PgPool) {
    use common::shop::{ShopSpec, node_config, shop};
    let ours = shop(&pool, ShopSpec::default()).await;
    let theirs = shop(&pool, ShopSpec::default()).await;
    let node = TestNode::start_internal(node_config(&pool)).await;
    let admin_of = |tenant: uuid::Uuid| {
        let mut c = claims("op", &["admin"], 3600);
        c.tenant = Some(tenant.to_string());
        marquee_server::auth::sign_hs256(SECRET, &c)
    };
    let publish = |addr, token: String, channel: String| async move {
        let auth = bearer(&token);
        let body = format!(r#"{{"channel":"{channel}","data":{{"note":1}}}}"#);
        http(
            addr,
            "POST",
            "/internal/publish",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(&body),
        )
        .await
    };
    let internal = node.internal.unwrap();
    let onsale_of = |event: uuid::Uuid| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, uuid::Uuid>("select onsale_id from onsale where event_id = $1")
                .bind(event)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let (our_onsale, their_onsale) = (onsale_of(ours.event).await, onsale_of(theirs.event).await);
    let queue = |onsale: uuid::Uuid| format!("queue:{onsale}");
    let seats = |event: uuid::Uuid| format!("seats:{event}");

    // Not on the public listener at all.
    let public = publish(node.addr, admin_of(ours.tenant), queue(our_onsale)).await;
    assert_eq!(public.status, 404, "{}", public.body);
    // Its own tenant's channel: published.
    let own = publish(internal, admin_of(ours.tenant), queue(our_onsale)).await;
    assert_eq!(own.status, 200, "{}", own.body);
    // Another tenant's, an unknown onsale's, its own live seat map (the booking engine's
    // versioned stream), or any inbox: refused, and nothing published.
    let foreign = publish(internal, admin_of(ours.tenant), queue(their_onsale)).await;
    assert_eq!(
        (foreign.status, foreign.json()["code"].as_str()),
        (403, Some("forbidden"))
    );
    let unknown = publish(internal, admin_of(ours.tenant), queue(uuid::Uuid::now_v7())).await;
    assert_eq!(unknown.status, 403, "{}", unknown.body);
    let map = publish(internal, admin_of(ours.tenant), seats(ours.event)).await;
    assert_eq!(map.status, 403, "{}", map.body);
    let offset = node
        .hub
        .engine()
        .history(&seats(ours.event), None)
        .await
        .unwrap()
        .position
        .offset;
    assert_eq!(offset, 0, "nothing reached the seat map");
    let inbox = format!("inbox:{}/buyer-1", theirs.tenant);
    let forged = publish(internal, admin_of(theirs.tenant), inbox).await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    // A token in the query string is not taken.
    let auth_in_query = http(
        internal,
        "POST",
        &format!("/internal/publish?access_token={}", admin_of(ours.tenant)),
        &[("content-type", "application/json")],
        Some(&format!(
            r#"{{"channel":"{}","data":{{}}}}"#,
            queue(our_onsale)
        )),
    )
    .await;
    assert_eq!(auth_in_query.status, 401, "{}", auth_in_query.body);
    // The other tenant's channel saw nothing: its next publish is its first.
    let theirs_first = publish(internal, admin_of(theirs.tenant), queue(their_onsale)).await;
    assert_eq!(theirs_first.json()["offset"], 1, "{}", theirs_first.body);
    node.shutdown().await;
}
