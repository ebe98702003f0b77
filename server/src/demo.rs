//! `marquee demo`: one node on the memory engine, with ready-made tokens, so a person can watch
//! live messages within a minute of cloning the repository.

use crate::Node;
use crate::auth::mint_hs256;
use crate::config::Config;
use marquee_protocol::Channel;
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

/// A token for the demo users, valid for a day.
fn token(secret: &str, user: &str, roles: &[&str]) -> String {
    mint_hs256(secret, user, roles, 24 * 3600)
}

/// Runs the demo until SIGINT/SIGTERM.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let secret = format!("demo-{:032x}", rand::random::<u128>());
    let mut config = Config::with_secret(&secret);
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

    let buyer = token(&secret, "buyer-1", &[]);
    let admin = token(&secret, "operator-1", &["admin"]);
    println!("Marquee demo node on http://{addr} (memory engine)");
    match &embedded {
        Some(pg) => println!(
            "System of record: a private PostgreSQL in {} (removed on exit)\n",
            pg.dir().display()
        ),
        None => println!("System of record: DATABASE_URL\n"),
    }
    println!("Buyer token (24 h):\n  {buyer}\n");
    println!("Admin token (24 h):\n  {admin}\n");
    println!("Watch the demo seat map live (websocat):");
    println!(
        "  websocat 'ws://{addr}/ws?access_token={buyer}'\n  {{\"type\":\"subscribe\",\"id\":1,\"channel\":\"seats:demo\"}}\n"
    );
    println!("Publish as an operator:");
    println!(
        "  curl -s -X POST http://{addr}/internal/publish -H 'authorization: Bearer {admin}' \\\n    -H 'content-type: application/json' -d '{{\"channel\":\"seats:demo\",\"data\":{{\"hello\":1}}}}'\n"
    );

    // A ticking seat map, so a subscriber sees live deltas straight away.
    let hub = node.hub().clone();
    tokio::spawn(async move {
        let channel = Channel::parse("seats:demo").expect("valid channel");
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            let row = (b'A' + rand::random_range(0..10u8)) as char;
            let seat = rand::random_range(1..=30u32);
            let state = if rand::random::<bool>() {
                "held"
            } else {
                "available"
            };
            let data = serde_json::json!({"seat": format!("{row}-{seat}"), "state": state});
            if let Err(e) = hub.publish(&channel, &data).await {
                tracing::warn!(error = %e, "demo publish failed");
            }
        }
    });

    let served = node.serve(listener, crate::shutdown_signal()).await;
    drop(embedded);
    served
}
