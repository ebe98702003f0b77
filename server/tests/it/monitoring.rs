//! What the dashboards and alerts name is what the processes export. `deploy/prometheus/
//! metrics.txt` lists every metric a panel or an alert may use, with the processes that export
//! it (`scripts/check-alerts` holds every alert and dashboard query to that list); here a node
//! and a `marquee worker` process run a small load (a checkout paid through the simulated
//! provider's signed hook, a refused token, a ticket scanned, a channel resumed, an onsale
//! behind the waiting room going live), and each one's `GET /metrics` must carry every name
//! listed for it.

use crate::common;
use crate::faults::{Paying, hold_and_checkout, paid_once};

use common::processes::{free_port, kill};
use common::shop::connect;
use sqlx::PgPool;
use std::time::Duration;

/// `(name, processes)` from `deploy/prometheus/metrics.txt`.
fn listed() -> Vec<(String, Vec<String>)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/prometheus/metrics.txt"
    );
    let text = std::fs::read_to_string(path).expect("deploy/prometheus/metrics.txt");
    let listed: Vec<(String, Vec<String>)> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, processes) = l.split_once('\t').expect("a name, a tab, the processes");
            let processes = processes.split(',').map(|p| p.trim().to_owned()).collect();
            (name.trim().to_owned(), processes)
        })
        .collect();
    assert!(
        listed.len() > 20,
        "metrics.txt lists {} metrics",
        listed.len()
    );
    listed
}

/// The sample names in a Prometheus text exposition (labels and values left out).
fn exported(body: &str) -> std::collections::HashSet<String> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The metric names of `process` missing from `body`.
fn missing(listed: &[(String, Vec<String>)], process: &str, body: &str) -> Vec<String> {
    let exported = exported(body);
    listed
        .iter()
        .filter(|(_, processes)| processes.iter().any(|p| p == process))
        .filter(|(name, _)| !exported.contains(name))
        .map(|(name, _)| name.clone())
        .collect()
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn every_metric_the_dashboards_and_alerts_name_is_exported(pool: PgPool) {
    let listed = listed();
    let Paying {
        shop,
        node,
        workers,
    } = Paying::start(&pool).await;
    let port = free_port();
    let mut worker = workers.start_with(
        "scraped",
        &[("MARQUEE_WORKER_LISTEN", format!("127.0.0.1:{port}"))],
    );
    // The load: a checkout paid through the hook (commands, a batch, an owed payment carried
    // out, a hook call, results through the outbox), and a token refused.
    let mut raw = connect(&node, &shop, "ana").await;
    let order = hold_and_checkout(&mut raw, &shop, &[4]).await;
    paid_once(&pool, &mut raw, order, Duration::from_secs(20)).await;
    let refused = common::http(
        node.addr,
        "GET",
        "/v1/me/tickets",
        &[("authorization", "Bearer not-a-token")],
        None,
    )
    .await;
    assert_eq!(refused.status, 401);
    // A ticket scanned at a gate, and a channel resumed from a position history no longer has.
    let buyer = common::shop::buyer_signed(common::SECRET, shop.tenant, "ana");
    let (_, mine) = common::call_json(node.addr, Some(&buyer), "GET", "/v1/me/tickets", None).await;
    let qr = mine["tickets"][0]["qr"]
        .as_str()
        .expect("a ticket")
        .to_owned();
    let gate = common::shop::staff_token(&shop, "gate-1", "gate");
    let (status, _) = common::call_json(
        node.addr,
        Some(&gate),
        "POST",
        "/v1/checkin",
        Some(&serde_json::json!({"qr": qr, "scan_id": "monitoring-1"})),
    )
    .await;
    assert_eq!(status, 200);
    raw.send(&marquee_protocol::ClientMessage::Subscribe {
        id: 90,
        channel: format!("seats:{}", shop.event),
        since: Some(marquee_protocol::StreamPosition::new("gone", 7)),
    })
    .await;
    // An onsale behind the waiting room, live: the node's admission controller takes it and
    // reports its line and the oversell guard within a few seconds.
    sqlx::query(
        "insert into onsale (tenant_id, event_id, status, starts_at, requires_admission)
         values ($1, $2, 'live', now() - interval '1 minute', true)",
    )
    .bind(shop.tenant)
    .bind(shop.event)
    .execute(&pool)
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let scraped = common::http(node.addr, "GET", "/metrics", &[], None).await;
        assert_eq!(scraped.status, 200);
        let absent = missing(&listed, "node", &scraped.body);
        if absent.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node never exported {absent:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let worker_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let scraped = common::http(worker_addr, "GET", "/metrics", &[], None).await;
    assert_eq!(scraped.status, 200);
    assert_eq!(
        missing(&listed, "worker", &scraped.body),
        Vec::<String>::new()
    );
    kill(&mut worker);
    node.shutdown().await;
}

/// Waits of pool `pool` that took longer than `le` seconds (a bucket bound), per the process's
/// own Prometheus exposition.
fn waits_longer_than(pool: &str, le: &str) -> f64 {
    let body = marquee_server::metrics::prometheus().render();
    let bucket = |bound: &str| -> f64 {
        let wanted =
            format!("marquee_db_pool_wait_seconds_bucket{{pool=\"{pool}\",le=\"{bound}\"}}");
        body.lines()
            .find_map(|l| l.strip_prefix(&wanted))
            .map_or(0.0, |v| v.trim().parse().expect("a count"))
    };
    bucket("+Inf") - bucket(le)
}

/// A transaction that must wait for the only connection of its pool is recorded as waiting
/// about as long as the holder kept it.
#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_wait_for_a_pooled_connection_is_measured(pool: PgPool) {
    let url = common::shop::database_url(&pool);
    let one = marquee_server::db::connect(&url, 1, "work").await.unwrap();
    let before = waits_longer_than("work", "0.25");
    let held = marquee_server::db::begin(&one).await.unwrap();
    let waiter = tokio::spawn({
        let one = one.clone();
        async move {
            let mut tx = marquee_server::db::begin(&one).await.unwrap();
            sqlx::query("select 1").execute(&mut *tx).await.unwrap();
        }
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !waiter.is_finished(),
        "the second transaction had no connection to take"
    );
    held.rollback().await.unwrap();
    waiter.await.unwrap();
    let after = waits_longer_than("work", "0.25");
    assert!(
        after - before >= 1.0,
        "no wait above 0.25 s was recorded ({before} before, {after} after)"
    );
    one.close().await;
}

#[test]
fn a_name_missing_from_a_scrape_is_found() {
    let listed = vec![
        ("a_total".to_owned(), vec!["node".to_owned()]),
        (
            "b_seconds_bucket".to_owned(),
            vec!["node".to_owned(), "worker".to_owned()],
        ),
    ];
    let body = "# TYPE a_total counter\na_total 3\nb_seconds_bucket{le=\"0.5\"} 1\n";
    assert!(missing(&listed, "node", body).is_empty());
    assert_eq!(
        missing(&listed, "node", "a_total 1\n"),
        ["b_seconds_bucket"]
    );
    assert_eq!(
        missing(&listed, "worker", "a_total 1\n"),
        ["b_seconds_bucket"]
    );
}
