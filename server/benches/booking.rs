//! Booking engine benchmark: committed seat holds per second for one hot event (one owner,
//! batching), command-to-result latency under that load, and the expiry of 10,000 holds in one
//! sweep.
//!
//! Everything is real: a fresh Postgres database (created next to `DATABASE_URL`'s and dropped
//! afterwards), a node serving WebSockets on a loopback port with one in-process worker and
//! the outbox relay, and buyers on their own WebSocket connections. A hold counts once its
//! result (committed, then published by the relay) reaches the buyer, so the rate and the
//! latencies are end to end. Load generator and node share this machine's cores.
//!
//! Run: `cargo bench -p marquee-server --bench booking -- [--clients N] [--window W]
//! [--seats S] [--markdown FILE]`; `-- --only-sweep` runs the sweep alone.

use anyhow::Context as _;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use marquee_protocol::booking::{Command, InboxMessage, Outcome};
use marquee_protocol::{ClientMessage, Codec, Frame, ServerMessage};
use marquee_server::booking::inventory::{DeltaBuilder, Request};
use marquee_server::booking::store::{self, Batch};
use marquee_server::booking::worker::delta_message;
use marquee_server::clock::now_ms;
use marquee_server::secret::Secret;
use marquee_server::{Config, Node};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use uuid::Uuid;

mod common;

use common::{SECRET, buyer_token, create_database, drop_database, seed};

/// Options (`cargo bench -p marquee-server --bench booking -- --help`).
#[derive(clap::Parser)]
struct Args {
    /// Buyers, each on its own WebSocket connection.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Commands each buyer keeps in flight.
    #[arg(long, default_value_t = 4)]
    window: usize,
    /// Seats of the hot event.
    #[arg(long, default_value_t = 100_000)]
    seats: i32,
    /// Holds expired in one sweep.
    #[arg(long, default_value_t = 10_000)]
    sweep: usize,
    /// Also write the report to this file.
    #[arg(long)]
    markdown: Option<String>,
    /// Only the sweep, to look at it alone.
    #[arg(long)]
    only_sweep: bool,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn args() -> Args {
    <Args as clap::Parser>::parse()
}

struct LoadResult {
    held: u64,
    rejected: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

/// One buyer: keeps `window` commands in flight over its own seats until they run out.
async fn buyer(
    url: String,
    token: String,
    event: Uuid,
    seats: Vec<u32>,
    window: usize,
) -> anyhow::Result<(u64, u64, Histogram<u64>)> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}"))?,
    );
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(Codec::MsgPack.subprotocol()),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let mut next = 0usize;
    let (mut held, mut rejected) = (0u64, 0u64);
    let mut id = 0u64;
    loop {
        while sent.len() < window && next < seats.len() {
            id += 1;
            let request_id = format!("s{}", seats[next]);
            let msg = ClientMessage::Command {
                id,
                request_id: request_id.clone(),
                command: Command::HoldSeats {
                    event: event.to_string(),
                    seats: vec![seats[next]],
                },
                admission: None,
            };
            let Frame::Binary(bytes) = Codec::MsgPack.encode(&msg)? else {
                unreachable!("msgpack frames are binary")
            };
            sent.insert(request_id, Instant::now());
            socket.feed(Message::binary(bytes)).await?;
            next += 1;
        }
        socket.flush().await?;
        if sent.is_empty() {
            break;
        }
        let frame = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .context("a reply within 30 s")?
            .context("socket open")??;
        let Message::Binary(bytes) = frame else {
            continue;
        };
        match Codec::MsgPack.decode::<ServerMessage>(&bytes)? {
            ServerMessage::Pub(p) if p.channel.starts_with("inbox:") => {
                let InboxMessage::Result(r) = serde_json::from_value(p.data)? else {
                    continue;
                };
                if let Some(at) = sent.remove(&r.request_id) {
                    latency.record(at.elapsed().as_micros().max(1) as u64)?;
                }
                match r.outcome {
                    Outcome::Held { .. } => held += 1,
                    _ => rejected += 1,
                }
            }
            ServerMessage::Error { code, message, .. } => {
                anyhow::bail!("refused: {code} {message}")
            }
            _ => {}
        }
    }
    let _ = socket.close(None).await;
    Ok((held, rejected, latency))
}

async fn hot_event_load(args: &Args) -> anyhow::Result<LoadResult> {
    let (admin, name, db_url) = create_database().await?;
    let result = async {
        let pool = marquee_server::db::connect(&db_url, 4, "bench").await?;
        marquee_server::db::migrate(&pool).await?;
        let (tenant, event) = seed(&pool, args.seats, "10 minutes").await?;
        let mut config = Config::with_secret(SECRET);
        config.database_url = Some(Secret::new(db_url.clone()));
        config.database_pool = 8;
        config.hub.inbound_rate = 1_000_000;
        config.hub.inbound_burst = 1_000_000;
        config.hub.outbound_queue = 4096;
        let node = Node::build(config).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(node.serve(listener, async move {
            let _ = stopped.await;
        }));
        let ws = format!("ws://{addr}/ws");
        let mut tasks = Vec::new();
        let start = Instant::now();
        for c in 0..args.clients {
            let seats: Vec<u32> = (c..args.seats as usize)
                .step_by(args.clients)
                .map(|s| s as u32)
                .collect();
            let token = buyer_token(tenant, &format!("buyer-{c}"));
            tasks.push(tokio::spawn(buyer(
                ws.clone(),
                token,
                event,
                seats,
                args.window,
            )));
        }
        let mut total = LoadResult {
            held: 0,
            rejected: 0,
            elapsed: Duration::ZERO,
            latency: Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?,
        };
        for task in tasks {
            let (held, rejected, latency) = task.await??;
            total.held += held;
            total.rejected += rejected;
            total.latency.add(&latency)?;
        }
        total.elapsed = start.elapsed();
        let _ = stop.send(());
        let _ = server.await;
        let claims: i64 = sqlx::query_scalar("select count(*) from seat_claim")
            .fetch_one(&pool)
            .await?;
        anyhow::ensure!(
            claims as u64 == total.held,
            "database holds {claims} claims, buyers were told {}",
            total.held
        );
        pool.close().await;
        Ok::<_, anyhow::Error>(total)
    }
    .await;
    drop_database(&admin, &name).await?;
    result
}

/// The owner alone: `n` single-seat holds put on the in-process queue at once, then one
/// worker drains them, deciding and committing in batches. Returns the holds committed per
/// second, measured from the worker's start to the last commit.
async fn owner_throughput(n: i32, batch_max: usize) -> anyhow::Result<f64> {
    use marquee_server::booking::queue::{CommandQueue, Envelope};
    use marquee_server::booking::worker::{Worker, WorkerSettings};
    let (admin, name, db_url) = create_database().await?;
    let result = async {
        let pool = marquee_server::db::connect(&db_url, 4, "bench").await?;
        marquee_server::db::migrate(&pool).await?;
        let (tenant, event) = seed(&pool, n, "10 minutes").await?;
        let memory = std::sync::Arc::new(marquee_server::booking::queue::MemoryQueue::default());
        let queue = CommandQueue::Memory(memory.clone());
        for seat in 0..n as u32 {
            let user = format!("buyer-{}", seat % 1000);
            let envelope = Envelope {
                tenant,
                inbox: format!("inbox:{tenant}/{user}"),
                user,
                request_id: format!("s{seat}"),
                command: Command::HoldSeats {
                    event: event.to_string(),
                    seats: vec![seat],
                },
                admission: None,
                accepted_at_ms: now_ms(),
            };
            queue.enqueue(event, &envelope).await?;
        }
        let worker = Worker {
            id: "bench".into(),
            db: pool.clone(),
            queue,
            settings: WorkerSettings {
                batch_max,
                discover_every: Duration::from_millis(10),
                ..WorkerSettings::default()
            },
            effects_due: Default::default(),
        };
        let cancel = tokio_util::sync::CancellationToken::new();
        let started = Instant::now();
        let running = tokio::spawn(worker.run(cancel.clone()));
        // Entries are acknowledged only after the batch holding them committed; watching the
        // queue (not the database) keeps the measurement from loading Postgres.
        while memory.backlog(event) > 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let elapsed = started.elapsed();
        let done: i64 = sqlx::query_scalar("select count(*) from seat_claim")
            .fetch_one(&pool)
            .await?;
        anyhow::ensure!(done == i64::from(n), "{done} of {n} seats held");
        cancel.cancel();
        running.await??;
        pool.close().await;
        Ok::<_, anyhow::Error>(f64::from(n) / elapsed.as_secs_f64())
    }
    .await;
    drop_database(&admin, &name).await?;
    result
}

/// Holds `n` seats in memory and commits them, then times the sweep that expires all of them:
/// deciding the expiries and committing them in one transaction, exactly as an owner does.
async fn sweep(n: usize) -> anyhow::Result<(Duration, Duration)> {
    let (admin, name, db_url) = create_database().await?;
    let result = async {
        // One connection, as an owner has: its statements are prepared once and reused.
        let pool = marquee_server::db::connect(&db_url, 1, "bench").await?;
        marquee_server::db::migrate(&pool).await?;
        let (_, event) = seed(&pool, n as i32 + 1, "1 second").await?;
        let mut inventory = store::load(&pool, event).await?.context("seeded event")?;
        let now = now_ms() as i64;
        let mut batch = Batch {
            bump: true,
            ..Batch::default()
        };
        let mut delta = DeltaBuilder::default();
        // Seat 0 is held half a second earlier: its sweep, alone and untimed, warms the
        // connection up the way an owner's first sweep does.
        for seat in 0..=n as u32 {
            let command = Command::HoldSeats {
                event: event.to_string(),
                seats: vec![seat],
            };
            let (_, change) = inventory.apply(
                &Request {
                    user: &format!("u{}", seat % 1000),
                    command: &command,
                    admission: None,
                },
                if seat == 0 { now - 500 } else { now },
                &mut delta,
            );
            batch.changes.extend(change);
        }
        anyhow::ensure!(batch.changes.len() == n + 1, "every seat was held");
        inventory.version = store::commit(
            &pool,
            inventory.tenant,
            event,
            inventory.version,
            "bench",
            &batch,
        )
        .await?;
        let expire = |inventory: &mut marquee_server::booking::inventory::Inventory, at: i64| {
            let mut delta = DeltaBuilder::default();
            let expired = inventory.expire_due(at, n, &mut delta);
            let messages = vec![delta_message(inventory, &delta)];
            Batch {
                changes: expired,
                messages,
                bump: true,
                ..Batch::default()
            }
        };
        let warm_up = expire(&mut inventory, now + 500);
        anyhow::ensure!(warm_up.changes.len() == 1, "one hold is due first");
        inventory.version = store::commit(
            &pool,
            inventory.tenant,
            event,
            inventory.version,
            "bench",
            &warm_up,
        )
        .await?;
        let started = Instant::now();
        let batch = expire(&mut inventory, now + 1000);
        let decided = started.elapsed();
        anyhow::ensure!(batch.changes.len() == n, "every other hold is due");
        store::commit(
            &pool,
            inventory.tenant,
            event,
            inventory.version,
            "bench",
            &batch,
        )
        .await?;
        let total = started.elapsed();
        let left: i64 = sqlx::query_scalar("select count(*) from seat_claim")
            .fetch_one(&pool)
            .await?;
        anyhow::ensure!(left == 0, "{left} claims left after the sweep");
        pool.close().await;
        Ok::<_, anyhow::Error>((decided, total))
    }
    .await;
    drop_database(&admin, &name).await?;
    result
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args();
    eprintln!(
        "hot event: {} seats, {} buyers, {} commands in flight each",
        args.seats, args.clients, args.window
    );
    if args.only_sweep {
        let (decided, total) = sweep(args.sweep).await?;
        println!(
            "sweep of {}: {:.1} ms (decide {:.1} ms)",
            args.sweep,
            ms(total),
            ms(decided)
        );
        return Ok(());
    }
    let mut owner_rates = Vec::new();
    for _ in 0..3 {
        owner_rates.push(owner_throughput(args.seats, 1024).await?);
    }
    owner_rates.sort_by(f64::total_cmp);
    let owner_rate = owner_rates[owner_rates.len() / 2];
    eprintln!("owner alone: {owner_rates:?} holds/s");
    let load = hot_event_load(&args).await?;
    let rate = load.held as f64 / load.elapsed.as_secs_f64();
    let p = |q: f64| load.latency.value_at_quantile(q) as f64 / 1000.0;
    let mut sweeps = Vec::new();
    for _ in 0..5 {
        sweeps.push(sweep(args.sweep).await?);
    }
    sweeps.sort_by_key(|(_, total)| *total);
    let (decided, total) = sweeps[sweeps.len() / 2];
    let report = format!(
        "## Booking engine\n\n\
         Command: `cargo bench -p marquee-server --bench booking -- --clients {clients} --window {window} --seats {seats}`\n\n\
         One hot event of {seats} seats, one owner (one in-process worker), {clients} buyers on their own WebSocket \
         connections, each keeping {window} single-seat `hold_seats` commands in flight. A hold counts when its \
         result (committed in Postgres, published by the outbox relay) reaches the buyer. Load generator, node and \
         Postgres share this 2-core machine.\n\n\
         | Measure | Result | Target |\n|---|---|---|\n\
         | Committed seat holds per second, one owner draining its queue (median of 3) | {owner_rate:.0} | ≥ 20,000 |\n\
         | Committed seat holds per second, end to end over WebSockets (buyers, node, relay and Postgres on the same 2 cores) | {rate:.0} | – |\n\
         | Command-to-result latency under that load, p50 / p99 / max | {p50:.1} / {p99:.1} / {max:.1} ms | p99 ≤ 50 ms |\n\
         | Expiry of {sweep} holds in one sweep (decide + commit on the owner's warm connection, median of 5) | {total:.1} ms (decide {decided:.1} ms) | ≤ 50 ms |\n\n\
         Held {held} seats, {rejected} rejections, in {elapsed:.2} s; the database holds exactly one claim per seat \
         buyers were told they hold (checked after the run). The owner-alone rate is the engine's: commands queued \
         in advance, one owner deciding and committing them in batches of up to 1,024. End to end, the buyers' \
         WebSocket clients take a core's share of their own, so the same owner sees fewer commands per second. \
         The maximum latency is the first commands' wait for a worker to take the event (lease discovery every \
         250 ms, then loading {seats} seats).\n",
        clients = args.clients,
        window = args.window,
        seats = args.seats,
        sweep = args.sweep,
        p50 = p(0.5),
        p99 = p(0.99),
        max = load.latency.max() as f64 / 1000.0,
        total = ms(total),
        decided = ms(decided),
        held = load.held,
        rejected = load.rejected,
        elapsed = load.elapsed.as_secs_f64(),
    );
    println!("{report}");
    if let Some(path) = &args.markdown {
        std::fs::write(path, &report)?;
    }
    Ok(())
}
