//! Faults, with real processes, real Postgres and real Redis: a worker killed between a commit
//! and the provider call it owes, and between that call and marking it done; Redis losing every
//! key mid-onsale; Redis restarted empty; Postgres restarted. After each, every command has
//! exactly one result, every checkout's payment was started once, and nothing is sold twice.
//!
//! (A poisoned command among a thousand and a panicking owner are in `booking`; a hub node
//! killed under its buyers is in `cluster` and `waiting_room`.)

use crate::common;

use common::processes::{PrivateRedis, Process, aborted, kill, worker_process};
use common::shop::{
    Shop, ShopSpec, buyer_signed, connect, database_url, hold_seats, node_config, order_update,
    result, send, shop,
};
use common::{SECRET, TestNode};
use marquee_client::{Client, ClientConfig, TokenProvider};
use marquee_protocol::booking::{Command, CommandResult, OrderStatus, Outcome};
use marquee_server::payments::ProviderKind;
use marquee_server::payments::hook::HookSecrets;
use marquee_server::secret::Secret;
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

/// The `simulated` provider's hook secret, shared by the node and the worker processes.
const HOOK_SECRET: &str = "simulated-hook-secret-0123456789-0123456789";

/// A node on the shared Redis under `prefix`, with no booking worker of its own (worker
/// processes do the work), taking the simulated provider's hook calls on its internal
/// listener.
async fn hub_only(pool: &PgPool, prefix: &str) -> TestNode {
    let mut config = node_config(pool);
    config.redis_url = Some(Secret::new(common::redis_url()));
    config.redis_prefix = prefix.to_owned();
    config.booking.workers = 0;
    config.payments.hook_secrets =
        HookSecrets::parse(&format!("simulated:{HOOK_SECRET}")).expect("a valid secret");
    TestNode::start_internal(config).await
}

/// The environment of a worker process that starts payments with the simulated provider,
/// which pays every order 50 ms later through `node`'s hook.
fn paying_worker(node: &TestNode) -> Vec<(&'static str, String)> {
    let internal = node.internal.expect("the node has an internal listener");
    vec![
        ("MARQUEE_PAYMENT_PROVIDER", "simulated".into()),
        (
            "MARQUEE_SIMULATED_HOOK_URL",
            format!("http://{internal}/hooks/payments/simulated"),
        ),
        (
            "MARQUEE_PAYMENT_HOOK_SECRETS",
            format!("simulated:{HOOK_SECRET}"),
        ),
        ("MARQUEE_SIMULATED_PAYMENT_DELAY", "50ms".into()),
        ("MARQUEE_SIMULATED_PAYMENT_OUTCOMES", "succeeded=1".into()),
    ]
}

/// A shop, a node taking the simulated provider's hooks, and how to start paying worker
/// processes on them: the set-up of the payment fault tests.
pub(crate) struct Paying {
    pub(crate) shop: Shop,
    pub(crate) node: TestNode,
    pub(crate) workers: Workers,
}

/// Starts `marquee worker` processes that pay through `node`'s hooks.
pub(crate) struct Workers {
    db: String,
    prefix: String,
    env: Vec<(&'static str, String)>,
}

impl Paying {
    pub(crate) async fn start(pool: &PgPool) -> Self {
        let shop = shop(pool, ShopSpec::default()).await;
        let prefix = common::unique_prefix();
        let node = hub_only(pool, &prefix).await;
        let workers = Workers {
            db: database_url(pool),
            prefix,
            env: paying_worker(&node),
        };
        Self {
            shop,
            node,
            workers,
        }
    }
}

impl Workers {
    /// A worker named `name`, with the fault switch `fault` (an env var set to `true`) if any.
    fn start(&self, name: &str, fault: Option<&'static str>) -> Process {
        let fault = fault.map(|f| (f, "true".to_owned()));
        self.start_with(name, fault.as_slice())
    }

    /// A worker named `name`, with `more` added to its environment.
    pub(crate) fn start_with(&self, name: &str, more: &[(&'static str, String)]) -> Process {
        let mut env = self.env.clone();
        env.extend_from_slice(more);
        worker_process(&self.db, &common::redis_url(), &self.prefix, name, &env)
    }
}

async fn count(pool: &PgPool, sql: &'static str, order: Uuid) -> i64 {
    sqlx::query_scalar(sql)
        .bind(order)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The payment-start effect of `order`: `(attempts, done)`.
async fn payment_start(pool: &PgPool, order: Uuid) -> (i32, bool) {
    sqlx::query_as(
        "select attempts, done_at is not null from effect
         where kind = 'payment.start' and data->>'order' = $1::text",
    )
    .bind(order)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Holds `seats` and checks them out: the order.
pub(crate) async fn hold_and_checkout(raw: &mut common::Raw, shop: &Shop, seats: &[u32]) -> Uuid {
    send(raw, 1, "hold", hold_seats(shop, seats)).await;
    let Outcome::Held { hold, .. } = result(raw).await.outcome else {
        panic!("the seats are held")
    };
    checkout(raw, shop, hold).await
}

async fn checkout(raw: &mut common::Raw, shop: &Shop, hold: String) -> Uuid {
    let command = Command::Checkout {
        event: shop.event.to_string(),
        hold,
    };
    send(raw, 2, "checkout", command).await;
    let Outcome::CheckedOut { order, .. } = result(raw).await.outcome else {
        panic!("checked out")
    };
    order.parse().unwrap()
}

/// `order` is paid within `within`; its buyer hears it once.
pub(crate) async fn paid_once(pool: &PgPool, raw: &mut common::Raw, order: Uuid, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let status: String =
            sqlx::query_scalar("select status::text from ticket_order where ticket_order_id = $1")
                .bind(order)
                .fetch_one(pool)
                .await
                .unwrap();
        if status == "paid" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the order is paid in time (still {status})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let update = loop {
        let update = order_update(raw).await;
        if update.status != OrderStatus::PendingPayment {
            break update;
        }
    };
    assert_eq!(update.status, OrderStatus::Paid, "{update:?}");
    let again = tokio::time::timeout(Duration::from_millis(1500), order_update(raw)).await;
    assert!(again.is_err(), "a second update arrived: {again:?}");
}

/// Exactly one payment was started for `order` and it paid it: one provider event (the hook
/// records each id once), the reference the start recorded, and one set of tickets.
async fn paid_by_one_payment(pool: &PgPool, order: Uuid) {
    let events = count(
        pool,
        "select count(*) from payment_event where ticket_order_id = $1",
        order,
    )
    .await;
    assert_eq!(events, 1, "one payment event for the order");
    let (status, paid_ref, started_ref): (String, Option<String>, Option<String>) = sqlx::query_as(
        "select status::text, payment_ref, checkout_payment_ref from ticket_order
         where ticket_order_id = $1",
    )
    .bind(order)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(status, "paid");
    assert!(
        paid_ref.is_some() && paid_ref == started_ref,
        "{paid_ref:?} {started_ref:?}"
    );
    let tickets = count(
        pool,
        "select count(*) from ticket where ticket_order_id = $1",
        order,
    )
    .await;
    assert_eq!(tickets, 1);
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_worker_killed_between_commit_and_payment_call_starts_the_payment_once_later(
    pool: PgPool,
) {
    let Paying {
        shop,
        node,
        workers,
    } = Paying::start(&pool).await;
    // A first worker takes the hold, then dies; the doomed one commits the checkout (so the
    // payment is owed) and aborts before its relay makes the call.
    let mut first = workers.start("first", None);
    let mut raw = connect(&node, &shop, "ana").await;
    send(&mut raw, 1, "hold", hold_seats(&shop, &[3])).await;
    let Outcome::Held { hold, .. } = result(&mut raw).await.outcome else {
        panic!("held")
    };
    kill(&mut first);
    let doomed = workers.start("doomed", Some("MARQUEE_CRASH_AFTER_COMMIT"));
    let order = checkout(&mut raw, &shop, hold).await;
    aborted(doomed).await;
    assert_eq!(
        payment_start(&pool, order).await,
        (0, false),
        "owed, not tried"
    );
    // The heir's relay finds the payment owed and starts it: late, once.
    let mut heir = workers.start("heir", None);
    paid_once(&pool, &mut raw, order, Duration::from_secs(20)).await;
    assert_eq!(payment_start(&pool, order).await, (1, true));
    paid_by_one_payment(&pool, order).await;
    kill(&mut heir);
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_worker_killed_between_payment_call_and_marking_it_done_pays_once(pool: PgPool) {
    let Paying {
        shop,
        node,
        workers,
    } = Paying::start(&pool).await;
    let doomed = workers.start("doomed", Some("MARQUEE_CRASH_AFTER_CALL"));
    let mut raw = connect(&node, &shop, "ana").await;
    let order = hold_and_checkout(&mut raw, &shop, &[4]).await;
    aborted(doomed).await;
    let (attempts, done) = payment_start(&pool, order).await;
    assert_eq!((attempts, done), (1, false), "called, not marked done");
    // The heir calls again once the claim lapses, with the same idempotency key: the provider
    // answers the same payment, and its events (the same ids) are recorded once.
    let mut heir = workers.start("heir", None);
    paid_once(&pool, &mut raw, order, Duration::from_secs(30)).await;
    assert_eq!(payment_start(&pool, order).await, (2, true));
    paid_by_one_payment(&pool, order).await;
    kill(&mut heir);
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_worker_killed_between_refund_call_and_marking_it_done_refunds_once(pool: PgPool) {
    let Paying {
        shop,
        node,
        workers,
    } = Paying::start(&pool).await;
    let mut first = workers.start("first", None);
    let mut raw = connect(&node, &shop, "ana").await;
    let order = hold_and_checkout(&mut raw, &shop, &[6]).await;
    paid_once(&pool, &mut raw, order, Duration::from_secs(10)).await;
    kill(&mut first);
    // An operator refunds the paid order; the doomed worker applies it, asks the provider for
    // the refund and dies before marking the call done.
    let doomed = workers.start("doomed", Some("MARQUEE_CRASH_AFTER_CALL"));
    let (status, body) = common::call_json(
        node.addr,
        Some(&common::shop::admin_token(&shop)),
        "POST",
        &format!("/v1/admin/orders/{order}/refund"),
        Some(&serde_json::json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    aborted(doomed).await;
    let refund = |pool: PgPool| async move {
        sqlx::query_as::<_, (i32, bool)>(
            "select attempts, done_at is not null from effect
             where kind = 'payment.refund' and data->>'order' = $1::text",
        )
        .bind(order)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    assert_eq!(
        refund(pool.clone()).await,
        (1, false),
        "asked, not marked done"
    );
    // The heir asks again with the same key once the claim lapses: the provider reports one
    // refund, whichever call it came from.
    let _heir = workers.start("heir", None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while refund(pool.clone()).await != (2, true) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refund is asked again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let reported: i64 = sqlx::query_scalar(
        "select count(*) from payment_event
         where ticket_order_id = $1 and provider = 'simulated' and kind = 'refunded'",
    )
    .bind(order)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(reported, 1, "one refund reported by the provider");
    let status: String =
        sqlx::query_scalar("select status::text from ticket_order where ticket_order_id = $1")
            .bind(order)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(status, "refunded");
    node.shutdown().await;
}

/// A buyer on the SDK who sends commands again on their own (after 2 s without a result).
async fn sdk_buyer(url: String, shop: &Shop, user: &str) -> Client {
    let mut config = ClientConfig::new(url);
    config.command_resend = Duration::from_secs(2);
    config.command_timeout = Duration::from_secs(40);
    let (client, mut events) = Client::connect(
        config,
        TokenProvider::fixed(buyer_signed(SECRET, shop.tenant, user)),
    )
    .await
    .unwrap();
    tokio::spawn(async move { while events.next().await.is_some() {} });
    client
}

fn held(result: &CommandResult) -> String {
    match &result.outcome {
        Outcome::Held { hold, .. } => hold.clone(),
        other => panic!("expected held, got {other:?}"),
    }
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn redis_losing_every_key_mid_onsale_loses_no_command_and_refuses_none(pool: PgPool) {
    use fred::prelude::{ClientLike as _, KeysInterface as _, StreamsInterface as _};
    let shop = shop(&pool, ShopSpec::default()).await;
    let prefix = common::unique_prefix();
    let node = hub_only(&pool, &prefix).await;
    let (db, redis_url) = (database_url(&pool), common::redis_url());
    let mut first = worker_process(&db, &redis_url, &prefix, "first", &[]);
    let client = sdk_buyer(node.ws_url(), &shop, "ana").await;
    let event = shop.event.to_string();
    let kept = held(&client.hold_seats(&event, &[1]).await.unwrap());
    // No worker now: the next command is accepted and waits in the stream.
    kill(&mut first);
    let in_flight = tokio::spawn({
        let (client, event) = (client.clone(), event.clone());
        async move { client.hold_seats(&event, &[2]).await }
    });
    let redis = common::redis_client().await;
    let stream = format!("{prefix}:cmd:{{{event}}}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while redis.xlen::<u64, _>(&stream).await.unwrap() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the command was queued"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Redis loses everything of this deployment (as a FLUSHALL would): streams, groups, the
    // event registry, leases, channel histories.
    let keys: Vec<String> = redis
        .custom(fred::cmd!("KEYS"), vec![format!("{prefix}:*")])
        .await
        .unwrap();
    assert!(!keys.is_empty());
    let _: i64 = redis.del(keys).await.unwrap();
    let mut heir = worker_process(&db, &redis_url, &prefix, "heir", &[]);
    // The node takes commands at once (no `unavailable`), and the heir decides them.
    let mut raw = connect(&node, &shop, "bob").await;
    send(&mut raw, 1, "after-flush", hold_seats(&shop, &[9])).await;
    held(&result(&mut raw).await);
    // The command Redis lost is sent again by the SDK, under its request id: one result.
    let second = in_flight.await.unwrap().unwrap();
    let second = held(&second);
    // The hold from before the flush is still the buyer's, and released once.
    let released = client.release(&event, &kept).await.unwrap();
    assert!(
        matches!(released.outcome, Outcome::Released { .. }),
        "{released:?}"
    );
    let results: i64 =
        sqlx::query_scalar("select count(*) from processed_request where user_id = 'ana'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(results, 3, "one result per command");
    let active: Vec<Uuid> = sqlx::query_scalar("select hold_id from hold where status = 'active'")
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut expected = vec![second.parse::<Uuid>().unwrap()];
    expected.push(
        sqlx::query_scalar("select hold_id from hold where user_id = 'bob'")
            .fetch_one(&pool)
            .await
            .unwrap(),
    );
    let mut active = active;
    active.sort();
    expected.sort();
    assert_eq!(
        active, expected,
        "ana's second hold and bob's, nothing else"
    );
    client.close().await;
    kill(&mut heir);
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn an_acknowledgement_failing_after_a_commit_delivers_the_result_exactly_once(pool: PgPool) {
    let shop = shop(&pool, ShopSpec::default()).await;
    let redis = PrivateRedis::start().await;
    let prefix = "paused";
    let mut config = node_config(&pool);
    config.redis_url = Some(Secret::new(redis.url()));
    config.redis_prefix = prefix.to_owned();
    config.booking.workers = 0;
    let node = TestNode::start(config).await;
    let db = database_url(&pool);
    let _worker = worker_process(&db, &redis.url(), prefix, "w", &[]);
    let mut raw = connect(&node, &shop, "ana").await;
    send(&mut raw, 1, "warm", hold_seats(&shop, &[1])).await;
    held(&result(&mut raw).await);
    // The event's row is locked, so the next batch's commit waits; Redis stops answering
    // meanwhile, so once the commit goes through, its acknowledgement fails.
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("select 1 from event where event_id = $1 for update")
        .bind(shop.event)
        .execute(&mut *lock)
        .await
        .unwrap();
    send(&mut raw, 2, "once", hold_seats(&shop, &[2])).await;
    let waiting = async {
        loop {
            let blocked: i64 = sqlx::query_scalar(
                "select count(*) from pg_stat_activity
                 where wait_event_type = 'Lock' and query like 'update event set inventory_version%'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            if blocked > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the worker's commit waits on the lock");
    redis.pause();
    lock.commit().await.unwrap();
    // The commit lands; XACK (and the lease) time out after 5 s; then Redis answers again.
    let committed = async {
        loop {
            let n: i64 = sqlx::query_scalar(
                "select count(*) from processed_request where request_id = 'once'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            if n == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), committed)
        .await
        .expect("the batch commits while Redis is paused");
    tokio::time::sleep(Duration::from_secs(7)).await;
    redis.resume();
    // The entry is delivered again, found decided, and acknowledged: one result, one hold.
    let first = result(&mut raw).await;
    assert_eq!(first.request_id, "once");
    held(&first);
    let again = tokio::time::timeout(Duration::from_secs(3), result(&mut raw)).await;
    assert!(again.is_err(), "a second result arrived: {again:?}");
    let holds: i64 = sqlx::query_scalar("select count(*) from hold where status = 'active'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(holds, 2);
    let client =
        fred::prelude::Builder::from_config(fred::prelude::Config::from_url(&redis.url()).unwrap())
            .build()
            .unwrap();
    {
        use fred::prelude::{ClientLike as _, StreamsInterface as _};
        client.init().await.unwrap();
        let stream = format!("{prefix}:cmd:{{{}}}", shop.event);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while client.xlen::<u64, _>(&stream).await.unwrap() > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the entry is acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn redis_restarted_empty_mid_onsale_loses_no_command(pool: PgPool) {
    let shop = shop(&pool, ShopSpec::default()).await;
    let mut redis = PrivateRedis::start().await;
    let prefix = "restart";
    let mut config = node_config(&pool);
    config.redis_url = Some(Secret::new(redis.url()));
    config.redis_prefix = prefix.to_owned();
    config.booking.workers = 0;
    let node = TestNode::start(config).await;
    let db = database_url(&pool);
    let mut worker = worker_process(&db, &redis.url(), prefix, "w", &[]);
    let client = sdk_buyer(node.ws_url(), &shop, "ana").await;
    let event = shop.event.to_string();
    let first = held(&client.hold_seats(&event, &[1]).await.unwrap());
    redis.stop();
    redis.launch().await;
    // Every command still gets exactly one result, the ones sent while Redis was away
    // included (the SDK sends them again until they have one).
    let second = held(&client.hold_seats(&event, &[2]).await.unwrap());
    let released = client.release(&event, &first).await.unwrap();
    assert!(matches!(released.outcome, Outcome::Released { .. }));
    let active: Vec<Uuid> = sqlx::query_scalar("select hold_id from hold where status = 'active'")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(active, vec![second.parse::<Uuid>().unwrap()]);
    let results: i64 = sqlx::query_scalar("select count(*) from processed_request")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(results, 3);
    client.close().await;
    kill(&mut worker);
    node.shutdown().await;
}

/// A shop on a PostgreSQL of the test's own, which it may restart.
async fn private_postgres_shop() -> (marquee_server::embedded_pg::EmbeddedPostgres, PgPool, Shop) {
    let pg = marquee_server::embedded_pg::EmbeddedPostgres::start()
        .await
        .expect("a private PostgreSQL starts");
    let pool = PgPool::connect(&pg.url()).await.unwrap();
    marquee_server::db::MIGRATOR.run(&pool).await.unwrap();
    let shop = shop(&pool, ShopSpec::default()).await;
    (pg, pool, shop)
}

#[tokio::test]
async fn postgres_restarted_mid_onsale_loses_no_command_and_no_payment() {
    let (mut pg, pool, shop) = private_postgres_shop().await;
    let mut config = common::config();
    config.database_url = Some(Secret::new(pg.url()));
    config.payments.provider = ProviderKind::Simulated;
    config.payments.simulated_delay = Duration::from_millis(50);
    config.payments.simulated_outcomes = "succeeded=1".parse().unwrap();
    let node = TestNode::start_internal(config).await;
    let client = sdk_buyer(node.ws_url(), &shop, "ana").await;
    let event = shop.event.to_string();
    let first = held(&client.hold_seats(&event, &[1]).await.unwrap());
    pg.restart().await.expect("PostgreSQL restarts");
    // The pools, the outbox relay, the payment listener and the worker reconnect; the
    // checkout is decided once, its payment started once, and the buyer hears it was paid.
    let checked_out = client.checkout(&event, &first).await.unwrap();
    let Outcome::CheckedOut { order, .. } = checked_out.outcome else {
        panic!("{checked_out:?}")
    };
    let order: Uuid = order.parse().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status: String =
            sqlx::query_scalar("select status::text from ticket_order where ticket_order_id = $1")
                .bind(order)
                .fetch_one(&pool)
                .await
                .unwrap();
        if status == "paid" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the order was paid after the restart (still {status})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    paid_by_one_payment(&pool, order).await;
    let second = held(&client.hold_seats(&event, &[2]).await.unwrap());
    assert_ne!(second, first);
    client.close().await;
    node.shutdown().await;
    pool.close().await;
}

#[tokio::test]
async fn a_node_answers_its_first_requests_after_a_postgres_restart() {
    let (mut pg, pool, shop) = private_postgres_shop().await;
    // The draw record reads Postgres on every request.
    let onsale: Uuid = sqlx::query_scalar(
        "update onsale set shuffle_seed = $2 where event_id = $1 returning onsale_id",
    )
    .bind(shop.event)
    .bind(vec![7u8; 32])
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    let mut config = common::config();
    config.database_url = Some(Secret::new(pg.url()));
    let node = TestNode::start(config).await;
    let path = format!("/v1/tenants/{}/onsales/{onsale}/draw", shop.tenant);
    let draws = |n: usize| {
        let path = path.clone();
        let addr = node.addr;
        async move {
            let asks = (0..n).map(|_| common::http(addr, "GET", &path, &[], None));
            futures_util::future::join_all(asks)
                .await
                .into_iter()
                .map(|r| r.status)
                .collect::<Vec<u16>>()
        }
    };
    // Several requests at once leave several connections idle in the node's pool.
    assert!(draws(6).await.iter().all(|s| *s == 200));
    pg.restart().await.expect("PostgreSQL restarts");
    // Every idle connection died with the server; none may cost a request its answer.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(draws(6).await, vec![200; 6]);
    for _ in 0..6 {
        assert_eq!(draws(1).await, vec![200]);
    }
    node.shutdown().await;
}
