//! Waiting-room benchmark: how fast buyers join, how fast their join is acknowledged, and how
//! soon every waiting buyer's position follows the admissions, with 100,000 waiting.
//!
//! Real parts: a fresh Postgres database (next to `DATABASE_URL`'s, dropped afterwards), Redis
//! (a fresh key prefix), one node serving WebSockets on a loopback port with its admission
//! controller. Buyers join in two ways:
//! - `--ws N` buyers (default 8,000) on their own WebSocket connections, all sending
//!   `queue.join` at once: acknowledgement latency over real sockets. One process holds both
//!   ends of each socket, and a process may hold about 19,000 open files here, so this part
//!   stays under 9,000 connections.
//! - the rest of `--joins` (default 100,000 in all) through the same call a connection makes
//!   (`WaitingRoom::join`, with the per-connection status slot a socket would drain), 1,024 in
//!   flight: the node's join path (rate limits, onsale lookup, the Redis Lua join, the first
//!   status) without the sockets.
//!
//! Then admission starts at `--rate` per second and every buyer, socket or not, records when
//! its position changes: the delay from the first admission to each buyer's first new position,
//! and the gaps between position updates while admission runs (by design a position moves
//! once a second per buyer near the front, and less often further back: one second more per
//! 1,000 places ahead, up to 10 s).
//!
//! Run: `cargo bench -p marquee-server --bench waiting_room -- [--ws N] [--joins N] [--rate R]
//! [--arrival R] [--heading H] [--markdown FILE]`.

mod common;

use common::{SECRET, buyer_token, report_in_fresh_database, seed};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use marquee_protocol::queue::PlaceState;
use marquee_protocol::{ClientMessage, Codec, Frame, ServerMessage};
use marquee_server::auth::Identity;
use marquee_server::hub::registry::ConnShared;
use marquee_server::secret::Secret;
use marquee_server::{Config, Node};
use sqlx::PgPool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Barrier, Semaphore};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use uuid::Uuid;

/// Options (`cargo bench -p marquee-server --bench waiting_room -- --help`).
#[derive(clap::Parser)]
struct Args {
    /// Buyers who join over their own WebSocket connections.
    #[arg(long, default_value_t = 8_000)]
    ws: usize,
    /// Buyers in all.
    #[arg(long, default_value_t = 100_000)]
    joins: usize,
    /// Joins per second arriving (default: all of them within 5 s).
    #[arg(long, default_value_t = 0.0)]
    arrival: f64,
    /// Admissions per second once the joins are in.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// How long positions are watched, in seconds.
    #[arg(long, default_value_t = 6)]
    watch: u64,
    /// The report's heading, a Markdown line.
    #[arg(long, default_value = "## Waiting room")]
    heading: String,
    /// Also write the report to this file.
    #[arg(long)]
    markdown: Option<String>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn args() -> Args {
    let mut a = <Args as clap::Parser>::parse();
    a.ws = a.ws.min(a.joins);
    if a.arrival <= 0.0 {
        a.arrival = a.joins as f64 / 5.0;
    }
    a
}

/// When buyer `index` (of all joins) sends its join: arrivals are evenly paced.
fn slot(t0: Instant, index: usize, arrival: f64) -> Instant {
    t0 + Duration::from_secs_f64(index as f64 / arrival)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// When each buyer's position changed, from the moment admission starts.
#[derive(Default)]
struct Updates {
    /// Microseconds from the start of admission to each buyer's first new position.
    first: Mutex<Vec<u64>>,
    /// Gaps between consecutive position updates of one buyer, microseconds.
    gaps: Mutex<Vec<u64>>,
}

/// Follows one buyer's statuses from `start` for `watch`, recording position changes.
struct Follower {
    position: Option<u64>,
    last_update: Option<Instant>,
    first: Option<u64>,
    gaps: Vec<u64>,
}

impl Follower {
    fn new(position: Option<u64>) -> Self {
        Self {
            position,
            last_update: None,
            first: None,
            gaps: Vec::new(),
        }
    }

    fn see(&mut self, position: Option<u64>, started: Option<Instant>) {
        let Some(started) = started else {
            self.position = position;
            return;
        };
        if position == self.position {
            return;
        }
        let now = Instant::now();
        self.position = position;
        match self.last_update {
            None => self.first = Some(now.duration_since(started).as_micros() as u64),
            Some(t) => self.gaps.push(now.duration_since(t).as_micros() as u64),
        }
        self.last_update = Some(now);
    }

    fn finish(self, updates: &Updates) {
        if let Some(first) = self.first {
            updates.first.lock().unwrap().push(first);
        }
        updates.gaps.lock().unwrap().extend(self.gaps);
    }
}

fn encode(msg: &ClientMessage) -> Message {
    match Codec::Json.encode(msg).expect("encodes") {
        Frame::Text(t) => Message::Text(t.into()),
        Frame::Binary(b) => Message::Binary(b.into()),
    }
}

fn decode(msg: &Message) -> Option<ServerMessage> {
    match msg {
        Message::Text(t) => Codec::Json.decode::<ServerMessage>(t.as_bytes()).ok(),
        _ => None,
    }
}

async fn setup(pool: &PgPool, rate: f64) -> anyhow::Result<(Uuid, Uuid)> {
    let (tenant, event) = seed(pool, 1_000, "10 minutes").await?;
    let onsale: Uuid = sqlx::query_scalar(
        "update onsale set requires_admission = true, status = 'paused', admission_rate = $2,
                active_cap = 1000000 where event_id = $1 returning onsale_id",
    )
    .bind(event)
    .bind(rate)
    .fetch_one(pool)
    .await?;
    Ok((tenant, onsale))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args();
    rlimit::increase_nofile_limit(u64::MAX).ok();
    let markdown = args.markdown.clone();
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("bench{:08x}", rand::random::<u32>());
    report_in_fresh_database(markdown.as_deref(), |url| async move {
        let report = run(&args, &url, &redis_url, &prefix).await;
        forget_redis_keys(&redis_url, &prefix).await?;
        report
    })
    .await
}

/// Deletes what a run left in Redis under its prefix (about 118,000 keys for 100,000 joins):
/// left there, each run made the next one slower on the shared Redis.
async fn forget_redis_keys(url: &str, prefix: &str) -> anyhow::Result<()> {
    use fred::prelude::{Builder, ClientLike, Config};
    let client = Builder::from_config(Config::from_url(url)?).build()?;
    client.init().await?;
    let mut cursor = "0".to_owned();
    loop {
        let (next, keys): (String, Vec<String>) = client
            .custom(
                fred::cmd!("SCAN"),
                vec![
                    cursor,
                    "MATCH".into(),
                    format!("{prefix}:*"),
                    "COUNT".into(),
                    "1000".into(),
                ],
            )
            .await?;
        if !keys.is_empty() {
            let _: i64 = client.custom(fred::cmd!("UNLINK"), keys).await?;
        }
        if next == "0" {
            return Ok(());
        }
        cursor = next;
    }
}

async fn run(args: &Args, url: &str, redis_url: &str, prefix: &str) -> anyhow::Result<String> {
    let mut config = Config::with_secret(SECRET);
    config.database_url = Some(Secret::new(url));
    config.redis_url = Some(Secret::new(redis_url));
    config.redis_prefix = prefix.to_owned();
    config.admission.admission_secret = Some(Secret::new("bench-admission-secret-0123456789"));
    config.waiting_room.queue_joins_per_ip = u32::MAX;
    config.hub.connect_rate = 100_000;
    config.hub.connect_burst = 100_000;
    // The buyers connect before the joins are timed; greeting them is not what is measured.
    config.hub.max_welcoming = 100_000;
    // Every simulated buyer connects from 127.0.0.1.
    config.hub.connect_rate_per_address = 100_000;
    config.hub.connect_burst_per_address = 100_000;
    config.database_pool = 16;
    let node = Node::build(config).await?;
    let pool = node.db().expect("a database").clone();
    let (tenant, onsale) = setup(&pool, args.rate).await?;
    let room = node.waiting_room().expect("a waiting room").clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(node.serve(listener, async move {
        let _ = stop_rx.await;
    }));
    // The controller mirrors the paused onsale into the line within a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let updates = Arc::new(Updates::default());
    let (start_tx, start_rx) = tokio::sync::watch::channel::<Option<Instant>>(None);
    let watch = Duration::from_secs(args.watch);

    // 1. WebSocket buyers: connect all, then join all at once.
    eprintln!("connecting {} WebSocket buyers", args.ws);
    let connected = Arc::new(Barrier::new(args.ws + 1));
    let (t0_tx, t0_rx) = tokio::sync::watch::channel::<Option<Instant>>(None);
    let (joins, arrival, ws_count) = (args.joins, args.arrival, args.ws);
    let acks = Arc::new(Mutex::new(histogram()));
    let gate = Arc::new(Semaphore::new(256));
    let mut ws_tasks = tokio::task::JoinSet::new();
    for i in 0..args.ws {
        let (connected, acks, gate, updates) = (
            connected.clone(),
            acks.clone(),
            gate.clone(),
            updates.clone(),
        );
        let mut start = start_rx.clone();
        let mut t0 = t0_rx.clone();
        ws_tasks.spawn(async move {
            let token = buyer_token(tenant, &format!("ws-{i}"));
            let mut request = format!("ws://{addr}/ws").into_client_request()?;
            request.headers_mut().insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {token}"))?,
            );
            let mut ws = {
                let _permit = gate.acquire().await?;
                // Small buffers, as a load generator holding thousands of sockets would use:
                // the default 128 KiB read buffer per socket costs this shared machine a
                // gigabyte of page zeroing at 8,000 sockets.
                let config = WebSocketConfig::default()
                    .read_buffer_size(4096)
                    .write_buffer_size(0);
                tokio_tungstenite::connect_async_with_config(request, Some(config), true)
                    .await?
                    .0
            };
            connected.wait().await;
            // WebSocket buyers are spread evenly among all the arrivals.
            let t0 = t0.wait_for(Option::is_some).await?.expect("set");
            tokio::time::sleep_until(slot(t0, i * joins / ws_count, arrival).into()).await;
            let sent = Instant::now();
            ws.send(encode(&ClientMessage::QueueJoin {
                id: 1,
                onsale: onsale.to_string(),
                intent: None,
            }))
            .await?;
            let mut follower = loop {
                let msg = ws.next().await.ok_or_else(|| anyhow::anyhow!("closed"))??;
                match decode(&msg) {
                    Some(ServerMessage::QueueJoined { status, .. }) => {
                        let waited = sent.elapsed().as_micros() as u64;
                        acks.lock().unwrap().record(waited.max(1))?;
                        break Follower::new(status.position);
                    }
                    Some(ServerMessage::Error { code, message, .. }) => {
                        anyhow::bail!("join refused: {code} {message}")
                    }
                    _ => {}
                }
            };
            let started = *start.wait_for(Option::is_some).await?;
            let until = started.expect("set") + watch;
            while let Ok(Some(msg)) = tokio::time::timeout_at(until.into(), ws.next()).await {
                if let Some(ServerMessage::QueueStatus(s)) = decode(&msg?) {
                    follower.see(s.position, started);
                }
            }
            follower.finish(&updates);
            anyhow::Ok(())
        });
    }
    connected.wait().await;
    // The first join is sent a second from now: time enough to spawn every in-process buyer
    // beforehand, so that setting up the load does not run during it.
    let t0 = Instant::now() + Duration::from_secs(1);
    t0_tx.send(Some(t0))?;

    // 2. The rest through the node's join call, at the same pace, in the slots the
    // WebSocket buyers leave.
    let rest = args.joins - args.ws;
    eprintln!(
        "{} joins arriving at {:.0}/s ({} over WebSockets)",
        args.joins, args.arrival, args.ws
    );
    let local_acks = Arc::new(Mutex::new(histogram()));
    let mut local_tasks = tokio::task::JoinSet::new();
    let ws_slots: std::collections::HashSet<usize> =
        (0..args.ws).map(|k| k * joins / ws_count).collect();
    let local_slots: Vec<usize> = (0..joins).filter(|i| !ws_slots.contains(i)).collect();
    for (i, index) in local_slots.into_iter().enumerate() {
        let (room, acks, updates) = (room.clone(), local_acks.clone(), updates.clone());
        let mut start = start_rx.clone();
        local_tasks.spawn(async move {
            let identity = Identity {
                user: format!("local-{i}"),
                tenant: Some(tenant.to_string()),
                roles: Vec::new(),
                expires_at: u64::MAX,
                sid: None,
            };
            let (conn, _outbound) = ConnShared::new(u64::MAX - i as u64, 1);
            tokio::time::sleep_until(slot(t0, index, arrival).into()).await;
            let sent = Instant::now();
            let (_, status) = room
                .join(&identity, &conn, None, &onsale.to_string(), None, None)
                .await
                .map_err(|e| anyhow::anyhow!("join refused: {e}"))?;
            acks.lock()
                .unwrap()
                .record((sent.elapsed().as_micros() as u64).max(1))?;
            let mut follower = Follower::new(status.position);
            let started = *start.wait_for(Option::is_some).await?;
            let until = started.expect("set") + watch;
            while tokio::time::timeout_at(until.into(), conn.notify.notified())
                .await
                .is_ok()
            {
                conn.take_flags();
                for message in conn.take_latest() {
                    if let ServerMessage::QueueStatus(s) = message
                        && s.state == PlaceState::Waiting
                    {
                        follower.see(s.position, started);
                    }
                }
            }
            follower.finish(&updates);
            anyhow::Ok(())
        });
    }
    while local_acks.lock().unwrap().len() < rest as u64
        || acks.lock().unwrap().len() < args.ws as u64
    {
        if local_tasks
            .try_join_next()
            .is_some_and(|r| !matches!(r, Ok(Ok(()))))
            || ws_tasks
                .try_join_next()
                .is_some_and(|r| !matches!(r, Ok(Ok(()))))
        {
            anyhow::bail!("a buyer failed");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let all_elapsed = t0.elapsed();
    let ws_acks = acks.lock().unwrap().clone();
    let local_acks = local_acks.lock().unwrap().clone();
    eprintln!(
        "{} joins acknowledged in {:.2} s; p99 ack {:.1} ms over WebSockets, {:.1} ms in process",
        args.joins,
        all_elapsed.as_secs_f64(),
        ms(ws_acks.value_at_quantile(0.99)),
        ms(local_acks.value_at_quantile(0.99))
    );
    let waiting = room.line().view(onsale, 0).await?.waiting;

    // 3. Admission: from the first admission, watch every buyer's position.
    sqlx::query("update onsale set status = 'live' where onsale_id = $1")
        .bind(onsale)
        .execute(&pool)
        .await?;
    while room.line().view(onsale, 0).await?.admitted_total == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    start_tx.send(Some(Instant::now()))?;
    eprintln!("admission started; watching positions for {watch:?}");
    while let Some(done) = ws_tasks.join_next().await {
        done??;
    }
    while let Some(done) = local_tasks.join_next().await {
        done??;
    }
    let admitted = room.line().view(onsale, 0).await?.admitted_total;
    let _ = stop_tx.send(());
    let _ = server.await;

    let first = updates.first.lock().unwrap().clone();
    let gaps = updates.gaps.lock().unwrap().clone();
    let mut first_h = histogram();
    for v in &first {
        first_h.record((*v).max(1))?;
    }
    let mut gaps_h = histogram();
    for v in &gaps {
        gaps_h.record((*v).max(1))?;
    }
    Ok(format!(
        "{heading}\n\n\
         Command: `cargo bench -p marquee-server --bench waiting_room -- --ws {ws} --joins {joins} --arrival {arrival} --rate {rate}`\n\n\
         One node on Redis with its admission controller and a fresh Postgres database; load generator, node, Redis \
         and Postgres share this 2-core machine. {joins} buyers join, arriving evenly at {arrival:.0} per second: {ws} \
         of them (spread among the rest) over their own WebSocket connections, the other {rest} through the node's own \
         join call (the one a connection makes, with the status slot a socket would drain), because one process holds \
         both ends of each socket and may hold about 19,000 open files here. Then admission runs at {rate}/s and every \
         buyer records when its position changes.\n\n\
         | Measure | Result | Target |\n|---|---|---|\n\
         | {joins} joins, from the first sent to the last acknowledged | {total_s:.2} s | ≤ 5 s |\n\
         | Join acknowledgement over WebSockets ({ws} buyers), p50 / p99 / max | {wp50:.1} / {wp99:.1} / {wmax:.1} ms | p99 ≤ 100 ms |\n\
         | Join acknowledgement in process ({rest} buyers), p50 / p99 / max | {lp50:.1} / {lp99:.1} / {lmax:.1} ms | p99 ≤ 100 ms |\n\
         | From the first admission to each waiting buyer's first new position ({waiting} waiting, {nfirst} measured), p50 / p99 / max | {fp50:.0} / {fp99:.0} / {fmax:.0} ms | ≤ 1,000 ms |\n\
         | Gap between one buyer's position updates while admission runs ({ngaps} gaps), p50 / p99 / max | {gp50:.0} / {gp99:.0} / {gmax:.0} ms | by design 1 s within 1,000 of the front, 1 s more per 1,000 further back, at most 10 s |\n\n\
         Admitted {admitted} during the {watch_s} s watched.\n",
        heading = args.heading,
        ws = args.ws,
        joins = args.joins,
        arrival = args.arrival,
        rate = args.rate,
        rest = rest,
        total_s = all_elapsed.as_secs_f64(),
        wp50 = ms(ws_acks.value_at_quantile(0.5)),
        wp99 = ms(ws_acks.value_at_quantile(0.99)),
        wmax = ms(ws_acks.max()),
        lp50 = ms(local_acks.value_at_quantile(0.5)),
        lp99 = ms(local_acks.value_at_quantile(0.99)),
        lmax = ms(local_acks.max()),
        nfirst = first.len(),
        fp50 = ms(first_h.value_at_quantile(0.5)),
        fp99 = ms(first_h.value_at_quantile(0.99)),
        fmax = ms(first_h.max()),
        ngaps = gaps.len(),
        gp50 = ms(gaps_h.value_at_quantile(0.5)),
        gp99 = ms(gaps_h.value_at_quantile(0.99)),
        gmax = ms(gaps_h.max()),
        watch_s = watch.as_secs(),
    ))
}
