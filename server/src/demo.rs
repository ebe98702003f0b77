//! `marquee demo`: one node on the memory engine with a seeded catalog (a 2,708-seat hall, an
//! event on sale, a live onsale behind the waiting room) and ready-made tokens, so a person can
//! queue, watch the live seat map and hold seats within a minute of cloning the repository. A
//! simulated crowd (`--crowd N`) queues, shops and leaves, so the queue and the map move.

use crate::Node;
use crate::auth::{Claims, Identity, now_secs, sign_hs256};
use crate::config::Config;
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

    /// Simulated buyers who queue for the demo onsale, hold a few seats when admitted (staged
    /// while waiting), shop a little and leave, then come back: the queue and the seat map
    /// move on their own.
    #[arg(long, default_value_t = 100)]
    pub crowd: usize,
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
    let onsale = shop.onsale_id;
    println!(
        "Queue, watch the live seat map and hold two seats (websocat); {} simulated buyers queue too:",
        args.crowd
    );
    println!("  websocat 'ws://{addr}/ws?access_token={buyer}'");
    println!("  {{\"type\":\"subscribe\",\"id\":1,\"channel\":\"seats:{event}\"}}");
    println!("  {{\"type\":\"subscribe\",\"id\":2,\"channel\":\"queue:{onsale}\"}}");
    println!("  {{\"type\":\"queue.join\",\"id\":3,\"onsale\":\"{onsale}\"}}");
    println!("Once a queue.status says \"admitted\", pass its admission.token with the hold:");
    println!(
        "  {{\"type\":\"command\",\"id\":4,\"request_id\":\"my-first-hold\",\"command\":{{\"kind\":\"hold_seats\",\"event\":\"{event}\",\"seats\":[140,141]}},\"admission\":\"<token>\"}}\n"
    );
    println!("Browse the catalog:");
    println!("  curl -s http://{addr}/v1/tenants/{tenant}/events");
    println!("  curl -s http://{addr}/v1/tenants/{tenant}/events/{event}/availability");
    println!("  curl -s http://{addr}/openapi.json\n");

    if let Some(room) = node.waiting_room().cloned() {
        let categories: Vec<String> = shop
            .categories
            .iter()
            .map(|(id, _)| id.to_string())
            .collect();
        for n in 0..args.crowd {
            let (room, categories) = (room.clone(), categories.clone());
            let onsale = shop.onsale_id.to_string();
            tokio::spawn(async move {
                simulated_buyer(room, tenant, n, onsale, categories).await;
            });
        }
    }

    let served = node.serve(listener, crate::shutdown_signal()).await;
    drop(embedded);
    served
}

/// One simulated buyer of the demo crowd, for the life of the process: joins the queue with a
/// staged purchase (so the hold happens the moment it is admitted), waits its turn, shops for
/// a few seconds, leaves (its slot goes to the next in line), and comes back a little later.
/// It talks to the waiting room in process, through the same calls a connection makes.
async fn simulated_buyer(
    room: crate::waiting_room::WaitingRoom,
    tenant: uuid::Uuid,
    n: usize,
    onsale: String,
    categories: Vec<String>,
) {
    use crate::hub::registry::ConnShared;
    use marquee_protocol::queue::{PlaceState, PurchaseIntent};
    // Spread the first joins over a few seconds, as people arrive.
    tokio::time::sleep(Duration::from_millis(rand::random_range(0..5_000))).await;
    let identity = Identity {
        user: format!("crowd-{n}"),
        tenant: Some(tenant.to_string()),
        roles: Vec::new(),
        expires_at: u64::MAX,
    };
    // An id far from the connections' ids; statuses arrive in its slot as on a socket.
    let (conn, _outbound) = ConnShared::new(u64::MAX - n as u64, 1);
    loop {
        let intent = PurchaseIntent {
            category: categories[rand::random_range(0..categories.len())].clone(),
            quantity: rand::random_range(1..=4),
        };
        let joined = room
            .join(&identity, &conn, None, &onsale, None, Some(&intent))
            .await;
        if let Err(e) = joined {
            tracing::debug!(user = %identity.user, error = %e, "demo buyer not queued");
            tokio::time::sleep(Duration::from_secs(10)).await;
            continue;
        }
        let mut admitted = false;
        while !admitted {
            conn.notify.notified().await;
            conn.take_flags();
            admitted = conn
                .take_queue()
                .iter()
                .any(|s| matches!(s.state, PlaceState::Admitted | PlaceState::Ended));
        }
        tokio::time::sleep(Duration::from_millis(rand::random_range(3_000..15_000))).await;
        let _ = room.leave(&identity, &onsale).await;
        tokio::time::sleep(Duration::from_millis(rand::random_range(5_000..30_000))).await;
    }
}
