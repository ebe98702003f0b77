//! `marquee demo`: one node on the memory engine with a seeded catalog (a 2,708-seat hall, an
//! event on sale, an open onsale) and ready-made tokens, so a person can watch the live seat
//! map and hold seats within a minute of cloning the repository. A small simulated crowd holds
//! seats now and then, so the map moves on its own.

use crate::Node;
use crate::auth::{Claims, Identity, now_secs, sign_hs256};
use crate::config::Config;
use marquee_protocol::booking::Command;
use std::net::SocketAddr;
use std::time::Duration;

/// Options of `marquee demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Address to listen on.
    #[arg(long, env = "MARQUEE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Postgres to use; without one the demo starts a private PostgreSQL and removes it on
    /// exit.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<crate::config::Secret>,
}

/// A token for a demo user of the demo tenant, valid for a day.
fn token(secret: &str, tenant: uuid::Uuid, user: &str, roles: &[&str]) -> String {
    let claims = Claims {
        sub: user.to_owned(),
        tenant: Some(tenant.to_string()),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        exp: now_secs() + 24 * 3600,
        nbf: None,
        iss: None,
        aud: None,
    };
    sign_hs256(secret, &claims)
}

/// Runs the demo until SIGINT/SIGTERM.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let secret = format!("demo-{:032x}", rand::random::<u128>());
    let mut config = Config::with_secret(&secret);
    // The demo node signs its own waiting-room admissions with a key of its own.
    config.booking.admission_secret = Some(crate::config::Secret::new(format!(
        "admission-{:032x}",
        rand::random::<u128>()
    )));
    config.listen = args.listen;
    config.node_id = Some("demo".to_owned());
    // The system of record: the given database, or a private one for the demo's lifetime.
    let embedded = match &args.database_url {
        Some(url) => {
            config.database_url = Some(url.clone());
            None
        }
        None => {
            let pg = crate::embedded_pg::EmbeddedPostgres::start().await?;
            config.database_url = Some(crate::config::Secret::new(pg.url()));
            Some(pg)
        }
    };
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let node = Node::build(config).await?;

    let db = node.db().expect("the demo always has a database");
    let shop = crate::catalog::seed_demo(db).await?;
    let event = shop.event_id;
    let tenant = shop.tenant_id;
    let buyer = token(&secret, tenant, "buyer-1", &[]);
    let admin = token(&secret, tenant, "operator-1", &["admin"]);
    println!("Marquee demo node on http://{addr} (memory engine)");
    match &embedded {
        Some(pg) => println!(
            "System of record: a private PostgreSQL in {} (removed on exit)\n",
            pg.dir().display()
        ),
        None => println!("System of record: DATABASE_URL\n"),
    }
    println!(
        "On sale: \"The Midnight Orchestra\" at the Grand Hall, {} seats, event {event}\n",
        shop.seats
    );
    println!("Buyer token (24 h):\n  {buyer}\n");
    println!("Admin token (24 h):\n  {admin}\n");
    println!("Watch the live seat map and hold two seats (websocat):");
    println!("  websocat 'ws://{addr}/ws?access_token={buyer}'");
    println!("  {{\"type\":\"subscribe\",\"id\":1,\"channel\":\"seats:{event}\"}}");
    println!(
        "  {{\"type\":\"command\",\"id\":2,\"request_id\":\"my-first-hold\",\"command\":{{\"kind\":\"hold_seats\",\"event\":\"{event}\",\"seats\":[140,141]}}}}\n"
    );
    println!("Browse the catalog:");
    println!("  curl -s http://{addr}/v1/tenants/{tenant}/events");
    println!("  curl -s http://{addr}/v1/tenants/{tenant}/events/{event}/availability");
    println!("  curl -s http://{addr}/openapi.json\n");

    // A small crowd, so a subscriber sees the seat map move straight away: every couple of
    // seconds someone holds a few of the best seats left in a random category (their holds
    // lapse after the onsale's 10 minutes, like anyone's).
    if let Some(booking) = node.booking().cloned() {
        let categories: Vec<String> = shop
            .categories
            .iter()
            .map(|(id, _)| id.to_string())
            .collect();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            for n in 0u64.. {
                tick.tick().await;
                let identity = Identity {
                    user: format!("crowd-{}", n % 500),
                    tenant: Some(tenant.to_string()),
                    roles: Vec::new(),
                    expires_at: now_secs() + 60,
                };
                let category = categories[rand::random_range(0..categories.len())].clone();
                let command = Command::HoldBestAvailable {
                    event: event.to_string(),
                    category,
                    quantity: rand::random_range(1..=4),
                };
                let request_id = format!("crowd-{n}-{:08x}", rand::random::<u32>());
                if let Err(e) = booking.submit(&identity, request_id, command, None).await {
                    tracing::warn!(error = %e, "demo crowd command refused");
                }
            }
        });
    }

    let served = node.serve(listener, crate::shutdown_signal()).await;
    drop(embedded);
    served
}
