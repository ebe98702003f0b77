//! The demo's whole onsale, in process: the seeded demo catalog, a small simulated crowd
//! queueing through the waiting room, holding, checking out and paid by the simulated provider
//! through the signed hook, until tickets exist.

use crate::common;

use common::TestNode;
use common::shop::node_config;
use marquee_server::node::demo::Crowd;
use marquee_server::secret::Secret;
use sqlx::PgPool;
use std::time::Duration;

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn the_demo_crowd_queues_buys_and_gets_tickets(pool: PgPool) {
    let mut config = node_config(&pool);
    config.admission.admission_secret = Some(Secret::new("demo-test-admission-secret-0123456789"));
    config.payments.simulated_delay = Duration::from_millis(100);
    config.payments.simulated_outcomes = "succeeded=1".parse().unwrap();
    let node = marquee_server::Node::build(config).await.unwrap();
    let shop = marquee_server::catalog::seed_demo(node.db().unwrap())
        .await
        .unwrap();
    let crowd = Crowd::new(&node, &shop).expect("a node with a database");
    let internal = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = TestNode::serve(node.with_internal_listener(internal)).await;
    for n in 0..4 {
        tokio::spawn(crowd.clone().buyer(n));
    }
    let sold = || async {
        sqlx::query_as::<_, (i64, i64, i64)>(
            "select (select count(*) from ticket where status = 'valid'),
                    (select count(*) from ticket_order where status = 'paid'),
                    (select count(*) from payment_event where provider = 'simulated')",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while sold().await.0 == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (tickets, paid, payments) = sold().await;
    assert!(
        tickets > 0 && paid > 0 && payments > 0,
        "tickets {tickets}, paid orders {paid}, payment events {payments}"
    );
    node.shutdown().await;
}
