//! Tenant walls on every channel kind: who may follow `seats:`, `queue:`, `admin:`, `gate:`
//! and `inbox:` channels, from every role of the owning tenant and of another, on a node with
//! a database and on a relay without one; and a made-up name leaves no state behind.

use crate::common::shop::{ShopSpec, node_config, shop};
use crate::common::{
    Raw, SECRET, TestNode, claims, config, redis_client, redis_config, unique_prefix,
};
use marquee_protocol::{ClientMessage, ErrorCode, ServerMessage};
use marquee_server::auth::sign_hs256;
use marquee_server::engine::{Engine, IDLE_STREAM_TTL};
use sqlx::PgPool;
use uuid::Uuid;

/// A token for `sub` of `tenant` (none: a token without a tenant claim) with `roles`.
fn token_of(sub: &str, tenant: Option<Uuid>, roles: &[&str]) -> String {
    let mut c = claims(sub, roles, 3600);
    c.tenant = tenant.map(|t| t.to_string());
    sign_hs256(SECRET, &c)
}

/// Subscribes and answers `None` when accepted, else the refusal's code (skipping anything
/// else the connection receives meanwhile, such as a snapshot).
async fn try_subscribe(raw: &mut Raw, id: u64, channel: &str) -> Option<ErrorCode> {
    raw.send(&ClientMessage::Subscribe {
        id,
        channel: channel.into(),
        since: None,
    })
    .await;
    loop {
        match raw.recv().await {
            ServerMessage::Subscribed { id: got, .. } if got == id => return None,
            ServerMessage::Error {
                id: Some(got),
                code,
                ..
            } if got == id => return Some(code),
            _ => {}
        }
    }
}

/// A draft event in `tenant` with an onsale: nobody but the tenant's admins may see either.
async fn draft_event(pool: &PgPool, tenant: Uuid) -> (Uuid, Uuid) {
    let venue: Uuid = sqlx::query_scalar(
        "insert into venue (tenant_id, name, city) values ($1, 'Annex', 'Porto') returning venue_id",
    )
    .bind(tenant)
    .fetch_one(pool)
    .await
    .unwrap();
    let event: Uuid = sqlx::query_scalar(
        "insert into event (tenant_id, venue_id, name, starts_at, status)
         values ($1, $2, 'Secret show', now() + interval '30 days', 'draft') returning event_id",
    )
    .bind(tenant)
    .bind(venue)
    .fetch_one(pool)
    .await
    .unwrap();
    let onsale: Uuid = sqlx::query_scalar(
        "insert into onsale (tenant_id, event_id, status, starts_at, hold_duration, per_user_limit)
         values ($1, $2, 'scheduled', now() + interval '20 days', '10 minutes', 4) returning onsale_id",
    )
    .bind(tenant)
    .bind(event)
    .fetch_one(pool)
    .await
    .unwrap();
    (event, onsale)
}

async fn onsale_of(pool: &PgPool, event: Uuid) -> Uuid {
    sqlx::query_scalar("select onsale_id from onsale where event_id = $1")
        .bind(event)
        .fetch_one(pool)
        .await
        .unwrap()
}

fn memory_streams(node: &TestNode) -> usize {
    match node.hub.engine() {
        Engine::Memory(memory) => memory.streams(),
        Engine::Redis(_) => panic!("expected the memory engine"),
    }
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn every_channel_kind_is_open_to_its_own_tenant_only(pool: PgPool) {
    let ours = shop(&pool, ShopSpec::default()).await;
    let theirs = shop(&pool, ShopSpec::default()).await;
    let (draft, draft_onsale) = draft_event(&pool, ours.tenant).await;
    let live_onsale = onsale_of(&pool, ours.event).await;
    let node = TestNode::start(node_config(&pool)).await;

    let buyer = token_of("buyer-1", Some(ours.tenant), &[]);
    let no_tenant = token_of("drifter", None, &[]);
    let admin = token_of("op-1", Some(ours.tenant), &["admin"]);
    let gate = token_of("gate-1", Some(ours.tenant), &["gate"]);
    let their_buyer = token_of("buyer-2", Some(theirs.tenant), &[]);
    let their_admin = token_of("op-2", Some(theirs.tenant), &["admin"]);
    let their_gate = token_of("gate-2", Some(theirs.tenant), &["gate"]);
    let tenantless_staff = token_of("root", None, &["admin", "gate"]);

    let seats = format!("seats:{}", ours.event);
    let queue = format!("queue:{live_onsale}");
    let admin_ch = format!("admin:{live_onsale}");
    let gate_ch = format!("gate:{}", ours.event);
    let draft_seats = format!("seats:{draft}");
    let draft_queue = format!("queue:{draft_onsale}");
    let made_up = Uuid::now_v7();
    let made_up_seats = format!("seats:{made_up}");
    let made_up_queue = format!("queue:{made_up}");
    let made_up_admin = format!("admin:{made_up}");
    let made_up_gate = format!("gate:{made_up}");
    let buyer_inbox = format!("inbox:{}/buyer-1", ours.tenant);

    use ErrorCode::{Forbidden, NotFound};
    let ok = None;
    let cases: Vec<(&str, &str, &str, Option<ErrorCode>)> = vec![
        // A published event's seat map and queue are public, as the catalog is.
        ("buyer", &buyer, &seats, ok),
        ("buyer", &buyer, &queue, ok),
        ("tenantless buyer", &no_tenant, &seats, ok),
        ("their buyer", &their_buyer, &seats, ok),
        ("their buyer", &their_buyer, &queue, ok),
        // A draft's only to its own tenant's admins; to anyone else as if it did not exist.
        ("buyer", &buyer, &draft_seats, Some(NotFound)),
        ("buyer", &buyer, &draft_queue, Some(NotFound)),
        ("gate", &gate, &draft_seats, Some(NotFound)),
        ("their admin", &their_admin, &draft_seats, Some(NotFound)),
        ("their admin", &their_admin, &draft_queue, Some(NotFound)),
        (
            "tenantless admin",
            &tenantless_staff,
            &draft_seats,
            Some(NotFound),
        ),
        ("admin", &admin, &draft_seats, ok),
        ("admin", &admin, &draft_queue, ok),
        // Made-up and malformed names.
        ("buyer", &buyer, &made_up_seats, Some(NotFound)),
        ("buyer", &buyer, &made_up_queue, Some(NotFound)),
        ("admin", &admin, &made_up_seats, Some(NotFound)),
        ("buyer", &buyer, "seats:not-a-uuid", Some(NotFound)),
        ("admin", &admin, &made_up_admin, Some(Forbidden)),
        ("gate", &gate, &made_up_gate, Some(Forbidden)),
        // Operators' and gates' channels: the role, of the owning tenant.
        ("admin", &admin, &admin_ch, ok),
        ("gate", &gate, &gate_ch, ok),
        ("buyer", &buyer, &admin_ch, Some(Forbidden)),
        ("buyer", &buyer, &gate_ch, Some(Forbidden)),
        ("gate", &gate, &admin_ch, Some(Forbidden)),
        ("admin", &admin, &gate_ch, Some(Forbidden)),
        ("their admin", &their_admin, &admin_ch, Some(Forbidden)),
        ("their gate", &their_gate, &gate_ch, Some(Forbidden)),
        (
            "tenantless staff",
            &tenantless_staff,
            &admin_ch,
            Some(Forbidden),
        ),
        (
            "tenantless staff",
            &tenantless_staff,
            &gate_ch,
            Some(Forbidden),
        ),
        // An inbox is its owner's alone, whatever the role.
        ("buyer", &buyer, &buyer_inbox, ok),
        ("admin", &admin, &buyer_inbox, Some(Forbidden)),
        ("their buyer", &their_buyer, &buyer_inbox, Some(Forbidden)),
    ];
    let mut failures = Vec::new();
    for (i, (who, token, channel, expected)) in cases.iter().enumerate() {
        let mut raw = Raw::connect(&node.ws_url(), token).await;
        let got = try_subscribe(&mut raw, i as u64 + 1, channel).await;
        if got != *expected {
            failures.push(format!(
                "{who} → {channel}: expected {expected:?}, got {got:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "walls broken:\n{}",
        failures.join("\n")
    );
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn made_up_channel_names_create_no_state(pool: PgPool) {
    let ours = shop(&pool, ShopSpec::default()).await;
    let node = TestNode::start(node_config(&pool)).await;
    let mut raw = Raw::connect(
        &node.ws_url(),
        &token_of("buyer-1", Some(ours.tenant), &["admin", "gate"]),
    )
    .await;
    let before = memory_streams(&node);
    for i in 0..200u64 {
        let kind = ["seats", "queue", "admin", "gate"][i as usize % 4];
        let code = try_subscribe(&mut raw, i + 1, &format!("{kind}:{}", Uuid::now_v7())).await;
        assert!(code.is_some(), "{kind}: a made-up name was accepted");
    }
    assert_eq!(memory_streams(&node), before, "refused names made streams");
    node.shutdown().await;
}

#[tokio::test]
async fn a_relay_refuses_staff_channels_it_cannot_check() {
    let node = TestNode::start(config()).await;
    let staff = token_of("staff", Some(Uuid::now_v7()), &["admin", "gate"]);
    let mut raw = Raw::connect(&node.ws_url(), &staff).await;
    let event = Uuid::now_v7();
    assert_eq!(
        try_subscribe(&mut raw, 1, &format!("admin:{event}")).await,
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        try_subscribe(&mut raw, 2, &format!("gate:{event}")).await,
        Some(ErrorCode::Forbidden)
    );
    // Public channels pass: a relay holds no seat map or queue to leak.
    assert_eq!(
        try_subscribe(&mut raw, 3, &format!("seats:{event}")).await,
        None
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_relay_subscription_to_an_unpublished_name_expires_in_redis() {
    let prefix = unique_prefix();
    let node = TestNode::start(redis_config(&prefix)).await;
    let mut raw = Raw::connect(&node.ws_url(), &token_of("u", None, &[])).await;
    let channel = format!("seats:{}", Uuid::now_v7());
    assert_eq!(try_subscribe(&mut raw, 1, &channel).await, None);
    use fred::prelude::KeysInterface as _;
    let ttl: i64 = redis_client()
        .await
        .pttl(format!("{prefix}:ch:{{{channel}}}:meta"))
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl <= IDLE_STREAM_TTL.as_millis() as i64,
        "a read-created epoch lives {ttl} ms"
    );
    node.shutdown().await;
}
