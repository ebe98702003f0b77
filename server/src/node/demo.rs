//! `marquee demo`: one node on the memory engine with a seeded catalog (a 2,708-seat hall, an
//! event on sale, a live onsale behind the waiting room) and ready-made tokens, so a person can
//! queue, watch the live seat map, hold seats, check out and get tickets within a minute of
//! cloning the repository. A simulated crowd (`--crowd N`) queues, holds, checks out and is paid
//! by the simulated payment provider through the signed hook, so the queue, the seat map and the
//! sale all move: a whole onsale, from queue to tickets.

use super::Node;
use crate::auth::{Claims, Identity, sign_hs256};
use crate::clock::now_secs;
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
    pub database_url: Option<crate::secret::Secret>,

    /// Simulated buyers who queue for the demo onsale, hold a few seats when admitted (staged
    /// while waiting), check out and are paid by the simulated provider, then come back for
    /// more: the queue, the seat map and the sale move on their own.
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
        sid: None,
    };
    sign_hs256(secret, &claims)
}

/// Runs the demo until SIGINT/SIGTERM.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let secret = format!("demo-{:032x}", rand::random::<u128>());
    let mut config = Config::with_secret(&secret);
    // The demo node signs its own waiting-room admissions with a key of its own.
    config.admission.admission_secret = Some(crate::secret::Secret::new(format!(
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
            config.database_url = Some(crate::secret::Secret::new(pg.url()));
            Some(pg)
        }
    };
    let listener = crate::http::serve::bind(config.listen)?;
    let addr = listener.local_addr()?;
    // The payment hooks, on a port of their own: the simulated provider calls them.
    let internal = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hooks = internal.local_addr()?;
    let node = Node::build(config).await?;

    let db = node.db().expect("the demo always has a database");
    let shop = crate::catalog::seed_demo(db).await?;
    let event = shop.event_id;
    let tenant = shop.tenant_id;
    let buyer = token(&secret, tenant, "buyer-1", &[]);
    let admin = token(&secret, tenant, "operator-1", &["admin"]);
    let gate = token(&secret, tenant, "gate-1", &["gate"]);
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
    // A demo-only sign-in: the token rides in the URL's fragment, which browsers never send
    // to a server; the page keeps it for the tab (docs/web.md says how `serve` signs in).
    println!("Open in a browser, signed in as the demo's buyer, operator and gate:");
    println!("  Buyer app:     http://{addr}/#token={buyer}");
    println!("  Dashboard:     http://{addr}/admin#token={admin}");
    println!("  Gate scanner:  http://{addr}/gate#token={gate}\n");
    println!("Buyer token (24 h):\n  {buyer}\n");
    println!("Admin token (24 h):\n  {admin}\n");
    println!("Gate token (24 h):\n  {gate}\n");
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
    println!(
        "Then check out (\"kind\":\"checkout\",\"hold\":\"<hold>\", same admission): the simulated payment provider"
    );
    println!(
        "pays about two seconds later through the signed hook on http://{hooks}/hooks/payments/simulated,"
    );
    println!("and your inbox gets the order, paid, with its tickets. Your tickets and a check-in:");
    println!("  curl -s -H 'authorization: Bearer {buyer}' http://{addr}/v1/me/tickets");
    println!(
        "  curl -s -H 'authorization: Bearer {gate}' -H 'content-type: application/json' -d '{{\"qr\":\"<qr>\",\"scan_id\":\"scan-1\"}}' http://{addr}/v1/checkin\n"
    );
    println!("Browse the catalog:");
    println!("  curl -s http://{addr}/v1/tenants/{tenant}/events");
    println!("  curl -s http://{addr}/v1/tenants/{tenant}/events/{event}/availability");
    println!("  curl -s http://{addr}/openapi.json\n");

    if let Some(crowd) = Crowd::new(&node, &shop) {
        for n in 0..args.crowd {
            tokio::spawn(crowd.clone().buyer(n));
        }
    }

    let served = node
        .with_internal_listener(internal)
        .serve(listener, crate::shutdown_signal())
        .await;
    drop(embedded);
    served
}

/// What the demo crowd's buyers need: the calls a connection makes, in process.
#[derive(Debug, Clone)]
pub struct Crowd {
    /// The waiting room.
    pub room: crate::waiting_room::WaitingRoom,
    /// Purchase commands.
    pub booking: crate::booking::Booking,
    /// The demo tenant.
    pub tenant: uuid::Uuid,
    /// The event on sale.
    pub event: uuid::Uuid,
    /// Its onsale.
    pub onsale: uuid::Uuid,
    /// Its price categories.
    pub categories: Vec<String>,
}

impl Crowd {
    /// The crowd of the demo catalog `shop` on `node` (which needs a database).
    pub fn new(node: &Node, shop: &crate::catalog::DemoCatalog) -> Option<Self> {
        Some(Self {
            room: node.waiting_room()?.clone(),
            booking: node.booking()?.clone(),
            tenant: shop.tenant_id,
            event: shop.event_id,
            onsale: shop.onsale_id,
            categories: shop
                .categories
                .iter()
                .map(|(id, _)| id.to_string())
                .collect(),
        })
    }

    /// One simulated buyer, for the life of the process: joins the queue with a staged purchase
    /// (held the moment it is admitted), waits its turn, looks at its seats for a few seconds,
    /// checks out (the simulated provider then pays, or sometimes not, and tickets are issued),
    /// and comes back for more a little later. After checkout its admission slot goes to the
    /// next in line; without a hold it leaves the queue.
    pub async fn buyer(self, n: usize) {
        use crate::hub::registry::ConnShared;
        use marquee_protocol::booking::Command;
        use marquee_protocol::queue::{PlaceState, PurchaseIntent};
        // Spread the first joins over a few seconds, as people arrive.
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..5_000))).await;
        let identity = Identity {
            user: format!("crowd-{n}"),
            tenant: Some(self.tenant.to_string()),
            roles: Vec::new(),
            expires_at: u64::MAX,
            sid: None,
        };
        let onsale = self.onsale.to_string();
        // An id far from the connections' ids; statuses arrive in its slot as on a socket.
        let (conn, _outbound) = ConnShared::new(u64::MAX - n as u64, 1);
        for round in 0u64.. {
            let intent = PurchaseIntent {
                category: self.categories[rand::random_range(0..self.categories.len())].clone(),
                quantity: rand::random_range(1..=4),
            };
            let joined = self
                .room
                .join(&identity, &conn, None, &onsale, None, Some(&intent))
                .await;
            if let Err(e) = joined {
                tracing::debug!(user = %identity.user, error = %e, "demo buyer not queued");
                tokio::time::sleep(Duration::from_secs(10)).await;
                continue;
            }
            let admission = loop {
                conn.notify.notified().await;
                conn.take_flags();
                let statuses: Vec<_> = conn
                    .take_latest()
                    .into_iter()
                    .filter_map(|m| match m {
                        marquee_protocol::ServerMessage::QueueStatus(s) => Some(s),
                        _ => None,
                    })
                    .collect();
                if let Some(s) = statuses.iter().find(|s| {
                    matches!(
                        s.state,
                        PlaceState::Admitted | PlaceState::Ended | PlaceState::Closed
                    )
                }) {
                    break s.admission.as_ref().map(|a| a.token.clone());
                }
            };
            tokio::time::sleep(Duration::from_millis(rand::random_range(2_000..8_000))).await;
            match self.held(&identity.user).await {
                Some(hold) if admission.is_some() => {
                    let checkout = Command::Checkout {
                        event: self.event.to_string(),
                        hold: hold.to_string(),
                    };
                    let request = format!("crowd-{n}-{round}-checkout");
                    if let Err(e) = self
                        .booking
                        .submit(&identity, request, checkout, admission)
                        .await
                    {
                        tracing::debug!(user = %identity.user, error = %e, "demo checkout refused");
                    }
                }
                _ => {
                    let _ = self.room.leave(&identity, &onsale).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(rand::random_range(5_000..30_000))).await;
        }
    }

    /// The buyer's active hold on the event, if its staged purchase was held.
    async fn held(&self, user: &str) -> Option<uuid::Uuid> {
        sqlx::query_scalar(
            "select hold_id from hold where event_id = $1 and user_id = $2 and status = 'active'
             order by created_at desc limit 1",
        )
        .bind(self.event)
        .bind(user)
        .fetch_optional(self.booking.db())
        .await
        .ok()
        .flatten()
    }
}
