//! What the onsale scenario runs against, and the faults it injects:
//!
//! - a cluster it starts: a private PostgreSQL and a private Redis (so both can be restarted as
//!   faults without touching anything else on the machine), two hub nodes and two booking
//!   workers, all child processes on loopback ports;
//! - one node on the memory engine (no Redis; its booking workers and waiting room run in the
//!   node) on a private PostgreSQL, as `marquee demo` runs;
//! - nodes given by `--url`, with their database (`--database-url`) and token secret: nothing
//!   is started, so no fault can be injected.

use super::OnsaleArgs;
use crate::servers::{Setup, cpu_seconds, free_port, rss_bytes, runtime_threads};
use anyhow::{Context as _, bail};
use marquee_server::catalog::{DemoCatalog, OnsaleSpec, seed_venue};
use marquee_server::embedded_pg::EmbeddedPostgres;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process of the cluster, killed when dropped.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub addr: SocketAddr,
    /// A hub node's internal listener (payment hooks).
    pub internal: Option<SocketAddr>,
    child: Option<Child>,
}

impl Proc {
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a process used: CPU seconds and peak resident memory.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    pub cpu_s: f64,
    pub peak_rss_mib: f64,
    /// The process last read, and what the ones before it under this name used (a killed
    /// process started again counts from zero).
    #[serde(skip)]
    pid: u32,
    #[serde(skip)]
    before_s: f64,
}

/// The grace period of the nodes the run starts: how long a place whose buyer closed the tab
/// is kept.
pub const QUEUE_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// The grace period of nodes given by URL: the documented default (`docs/waiting-room.md`).
pub const GIVEN_QUEUE_GRACE: std::time::Duration = std::time::Duration::from_secs(120);

/// What the scenario runs against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// Hub nodes (`nodes`, 2 or more) and two workers on a private Redis and PostgreSQL.
    Cluster { nodes: usize },
    /// One node on the memory engine, on a private PostgreSQL.
    Memory,
    /// Nodes already running, their database and the secret they trust.
    Given {
        urls: Vec<SocketAddr>,
        database_url: String,
        secret: String,
    },
}

impl Shape {
    /// The faults this shape can suffer (a process the run did not start cannot be killed).
    pub fn allows(&self, fault: &str) -> bool {
        match self {
            Self::Cluster { .. } => true,
            Self::Memory => fault == "postgres restarted",
            Self::Given { .. } => false,
        }
    }

    /// In words, for the report's notes.
    pub fn describe(&self) -> String {
        match self {
            Self::Cluster { nodes } => format!("cluster: {nodes} hub nodes, 2 booking workers, a private Redis and a private PostgreSQL, on loopback"),
            Self::Memory => "one node on the memory engine (booking workers and waiting room in the node, no Redis) on a private PostgreSQL, on loopback".into(),
            Self::Given { urls, .. } => format!("{} node(s) given by --url, and their database", urls.len()),
        }
    }
}

/// The running cluster.
#[derive(Debug)]
pub struct OnsaleCluster {
    /// The private PostgreSQL, when the run started one.
    pg: Option<EmbeddedPostgres>,
    /// The run's own pool: counts, checks, settling.
    db: PgPool,
    redis_port: u16,
    redis: Option<Child>,
    pub nodes: Vec<Proc>,
    pub workers: Vec<Proc>,
    /// HS256 secret the nodes trust.
    pub secret: String,
    usage: BTreeMap<String, Usage>,
    /// Processes not the cluster's own whose usage is reported too ([`OnsaleCluster::watch`]).
    watched: Vec<(String, u32)>,
    /// The waiting room's line, read for the counts over time.
    line: Option<marquee_server::waiting_room::line::Line>,
    setup: Setup,
    env: Vec<(&'static str, String)>,
}

impl Drop for OnsaleCluster {
    fn drop(&mut self) {
        if let Some(mut redis) = self.redis.take() {
            let _ = redis.kill();
            let _ = redis.wait();
        }
    }
}

impl OnsaleCluster {
    /// Starts what `shape` needs: for a cluster PostgreSQL, Redis, two hub nodes and two
    /// workers; for the memory engine PostgreSQL and one node; for given nodes, nothing.
    pub async fn start(args: &OnsaleArgs, shape: &Shape) -> anyhow::Result<Self> {
        if let Shape::Given {
            urls,
            database_url,
            secret,
        } = shape
        {
            // The invariants are read over whole tables: anything sold before would count.
            let db = PgPool::connect(database_url).await?;
            let earlier: i64 = sqlx::query_scalar(
                "select (select count(*) from hold) + (select count(*) from ticket)
                      + (select count(*) from admission) + (select count(*) from ticket_order)",
            )
            .fetch_one(&db)
            .await
            .context("reading the given database (is it migrated?)")?;
            db.close().await;
            if earlier > 0 {
                bail!(
                    "the given database holds earlier sales; the onsale scenario checks whole tables, so it needs one of its own"
                );
            }
            return Ok(Self {
                pg: None,
                db: small_pool(database_url)?,
                redis_port: 0,
                redis: None,
                nodes: urls
                    .iter()
                    .enumerate()
                    .map(|(i, addr)| Proc {
                        name: format!("node-{i}"),
                        addr: *addr,
                        internal: None,
                        child: None,
                    })
                    .collect(),
                workers: Vec::new(),
                secret: secret.clone(),
                usage: BTreeMap::new(),
                watched: Vec::new(),
                line: None,
                // Nothing is started.
                setup: Setup {
                    marquee_bin: Default::default(),
                    socketio_dir: Default::default(),
                    redis_url: String::new(),
                },
                env: Vec::new(),
            });
        }
        let setup = Setup::detect(String::new())?;
        let pg = EmbeddedPostgres::start().await?;
        favour_postgres(&pg);
        let pool = PgPool::connect(&pg.url()).await?;
        marquee_server::db::MIGRATOR.run(&pool).await?;
        pool.close().await;
        let redis_port = free_port()?;
        let secret = format!("loadtest-{:032x}", rand::random::<u128>());
        let hook = format!("simulated:hook-{:032x}", rand::random::<u128>());
        let admission = format!("admission-{:032x}", rand::random::<u128>());
        let mut env = vec![
            ("DATABASE_URL", pg.url()),
            ("MARQUEE_JWT_SECRET", secret.clone()),
            ("MARQUEE_ADMISSION_SECRET", admission),
            ("MARQUEE_PAYMENT_HOOK_SECRETS", hook),
            ("MARQUEE_PAYMENT_PROVIDER", "simulated".to_owned()),
            ("MARQUEE_SIMULATED_PAYMENT_DELAY", "500ms".to_owned()),
            ("MARQUEE_SIMULATED_PAYMENT_OUTCOMES", args.outcomes.clone()),
            ("MARQUEE_LEASE_TTL", "2s".to_owned()),
            ("MARQUEE_QUEUE_GRACE", format!("{}s", QUEUE_GRACE.as_secs())),
            // Every buyer connects from 127.0.0.1.
            ("MARQUEE_CONNECT_RATE_PER_ADDRESS", "1000000".to_owned()),
            ("MARQUEE_CONNECT_BURST_PER_ADDRESS", "1000000".to_owned()),
            ("MARQUEE_QUEUE_JOINS_PER_IP", "1000000".to_owned()),
            ("MARQUEE_CONNECT_RATE", "1000000".to_owned()),
            ("MARQUEE_CONNECT_BURST", "1000000".to_owned()),
            (
                "RUST_LOG",
                std::env::var("ONSALE_SERVER_LOG").unwrap_or_else(|_| "error".to_owned()),
            ),
        ];
        if let Shape::Cluster { nodes } = shape {
            // Every node and both workers share the machine's cores (runs 36 and 37 in
            // BENCHMARKS.md).
            env.push(("TOKIO_WORKER_THREADS", runtime_threads(*nodes + 2)));
            env.push(("REDIS_URL", format!("redis://127.0.0.1:{redis_port}")));
            env.push(("MARQUEE_REDIS_PREFIX", "onsale".to_owned()));
        }
        let mut cluster = Self {
            db: small_pool(&pg.url())?,
            pg: Some(pg),
            redis_port,
            redis: None,
            nodes: Vec::new(),
            workers: Vec::new(),
            secret,
            usage: BTreeMap::new(),
            watched: Vec::new(),
            line: None,
            setup,
            env,
        };
        if *shape == Shape::Memory {
            let node = cluster.start_node(0).await?;
            cluster.nodes.push(node);
            return Ok(cluster);
        }
        cluster.start_redis().await?;
        cluster.line = Some(marquee_server::waiting_room::line::Line::redis(
            std::sync::Arc::new(
                marquee_server::waiting_room::line::redis::RedisLine::connect(
                    &format!("redis://127.0.0.1:{redis_port}"),
                    "onsale",
                )
                .await?,
            ),
        ));
        let Shape::Cluster { nodes } = shape else {
            unreachable!("the other shapes returned above")
        };
        for i in 0..*nodes {
            let node = cluster.start_node(i).await?;
            cluster.nodes.push(node);
        }
        for i in 0..2 {
            let worker = cluster.start_worker(i).await?;
            cluster.workers.push(worker);
        }
        Ok(cluster)
    }

    /// Starts Redis as a deployment runs it for the waiting room: with an append-only file
    /// (fsync every second), so a restart comes back with the line (docs/operations.md). What
    /// the last second held may be lost; the command streams' losses are made good by clients
    /// resending and workers looking in Postgres.
    async fn start_redis(&mut self) -> anyhow::Result<()> {
        let dir = self
            .pg
            .as_ref()
            .context("a cluster runs on a private PostgreSQL")?
            .dir()
            .join("redis");
        std::fs::create_dir_all(&dir)?;
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.redis_port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--dir",
            ])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (Debian: apt-get install redis-server)")?;
        favour(&[child.id()]);
        self.redis = Some(child);
        wait_listening(format!("127.0.0.1:{}", self.redis_port).parse()?).await
    }

    async fn start_node(&mut self, i: usize) -> anyhow::Result<Proc> {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let internal: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let child = Command::new(&self.setup.marquee_bin)
            .arg("serve")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("MARQUEE_LISTEN", addr.to_string())
            .env("MARQUEE_INTERNAL_LISTEN", internal.to_string())
            .env("MARQUEE_NODE_ID", format!("node-{i}"))
            // With Redis the booking workers are processes of their own; on the memory
            // engine they run in the node (the default).
            .env(
                "MARQUEE_WORKERS",
                if self.redis_port_used() { "0" } else { "1" },
            )
            // ...and they relay the outbox, the nodes only what the workers leave waiting.
            .env(
                "MARQUEE_OUTBOX_RELAY",
                if self.redis_port_used() {
                    "standby"
                } else {
                    "on"
                },
            )
            .stdin(Stdio::null())
            .stdout(server_log()?)
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting a hub node")?;
        let proc = Proc {
            name: format!("node-{i}"),
            addr,
            internal: Some(internal),
            child: Some(child),
        };
        wait_ready(addr).await?;
        Ok(proc)
    }

    async fn start_worker(&mut self, i: usize) -> anyhow::Result<Proc> {
        // Payments report to every node's hooks in turn, as a provider's calls reach any node
        // behind a load balancer (one node alone took every call, and at full size payments
        // waited for its share of the CPU); a delivery to the node a fault kills moves on to
        // the next.
        let hooks: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|n| n.internal)
            .map(|addr| format!("http://{addr}/hooks/payments/simulated"))
            .collect();
        anyhow::ensure!(!hooks.is_empty(), "a node for the payment hooks");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let child = Command::new(&self.setup.marquee_bin)
            .arg("worker")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("MARQUEE_WORKER_ID", format!("worker-{i}"))
            .env("MARQUEE_WORKER_LISTEN", addr.to_string())
            .env("MARQUEE_SIMULATED_HOOK_URL", hooks.join(","))
            .stdin(Stdio::null())
            .stdout(server_log()?)
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting a booking worker")?;
        let proc = Proc {
            name: format!("worker-{i}"),
            addr,
            internal: None,
            child: Some(child),
        };
        wait_ready(addr).await?;
        Ok(proc)
    }

    /// Whether the nodes share a Redis (a cluster) rather than run on the memory engine.
    fn redis_port_used(&self) -> bool {
        self.env.iter().any(|(k, _)| *k == "REDIS_URL")
    }

    /// The run's own small pool on the cluster's database (connections are opened when
    /// needed, and again after a restart).
    pub async fn db(&self) -> anyhow::Result<PgPool> {
        Ok(self.db.clone())
    }

    /// Seeds the venue and the onsale (its pre-queue opens now).
    pub async fn seed(&self, args: &OnsaleArgs, rows: u32) -> anyhow::Result<DemoCatalog> {
        let db = self.db().await?;
        let catalog = seed_venue(
            &db,
            rows,
            30,
            args.categories,
            args.ga,
            &OnsaleSpec {
                prequeue_for: Some(args.prequeue),
                rate: args.rate,
                cap: args.cap,
                per_user_limit: args.per_buyer as i32,
                hold: args.hold,
            },
        )
        .await?;
        Ok(catalog)
    }

    /// Waits (up to 10 s) until the onsale's status is `status`.
    pub async fn wait_for_status(&self, onsale: uuid::Uuid, status: &str) -> anyhow::Result<()> {
        let db = self.db().await?;
        for _ in 0..100 {
            let now: String =
                sqlx::query_scalar("select status::text from onsale where onsale_id = $1")
                    .bind(onsale)
                    .fetch_one(&db)
                    .await?;
            if now == status {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the onsale did not become {status} within 10 s")
    }

    /// When the onsale starts (unix ms).
    pub async fn starts_at_ms(&self, onsale: uuid::Uuid) -> anyhow::Result<u64> {
        let db = self.db().await?;
        let at: f64 = sqlx::query_scalar(
            "select extract(epoch from starts_at)::float8 * 1000 from onsale where onsale_id = $1",
        )
        .bind(onsale)
        .fetch_one(&db)
        .await?;
        Ok(at as u64)
    }

    /// Counts over time (the line's, and Postgres's) and each process's memory and CPU.
    pub async fn sample(&mut self, onsale: uuid::Uuid) -> Value {
        let pids: Vec<(String, u32)> = self
            .nodes
            .iter()
            .chain(&self.workers)
            .filter_map(|p| Some((p.name.clone(), p.pid()?)))
            .chain(self.redis.as_ref().map(|c| ("redis".to_owned(), c.id())))
            .chain(self.watched.iter().cloned())
            .collect();
        for (name, pid) in pids {
            let usage = self.usage.entry(name).or_default();
            if usage.pid != pid {
                usage.before_s = usage.cpu_s;
                usage.pid = pid;
            }
            if let Some(cpu) = cpu_seconds(pid) {
                usage.cpu_s = usage.before_s + cpu;
            }
            if let Some(rss) = rss_bytes(pid) {
                usage.peak_rss_mib = usage.peak_rss_mib.max(rss as f64 / 1048576.0);
            }
        }
        let line = match &self.line {
            Some(line) => line.view(onsale, 0).await.ok(),
            None => None,
        };
        let Ok(db) = self.db().await else {
            return Value::Null;
        };
        let counts = sqlx::query_as::<_, (i64, i64, i64)>(
            "select (select count(*) from hold where status = 'active'),
                    (select count(*) from ticket),
                    (select count(*) from ticket_order where status = 'paid')",
        )
        .fetch_one(&db)
        .await;
        match counts {
            Ok((held, sold, paid)) => json!({
                "held": held, "sold": sold, "paid_orders": paid,
                "waiting": line.as_ref().map(|v| v.waiting),
                "admitted": line.as_ref().map(|v| v.admitted_total),
                "active": line.as_ref().map(|v| v.active),
            }),
            Err(_) => Value::Null,
        }
    }

    /// Injects one fault.
    pub async fn inject(&mut self, what: &str) -> anyhow::Result<()> {
        match what {
            "hub node killed" => self.nodes[0].kill(),
            "worker killed" => self.workers[0].kill(),
            "redis restarted" => {
                if let Some(mut redis) = self.redis.take() {
                    let _ = redis.kill();
                    let _ = redis.wait();
                }
                self.start_redis().await?;
            }
            "postgres restarted" => {
                self.pg
                    .as_mut()
                    .context("only a PostgreSQL the run started can be restarted")?
                    .restart()
                    .await?;
                if let Some(pg) = &self.pg {
                    favour_postgres(pg);
                }
            }
            other => bail!("unknown fault {other}"),
        }
        Ok(())
    }

    /// Waits (up to `limit`) until no effect is owed and no order awaits payment.
    pub async fn settle(&self, limit: Duration) -> anyhow::Result<()> {
        let db = self.db().await?;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let (owed, pending): (i64, i64) = sqlx::query_as(
                "select (select count(*) from effect where done_at is null and failed_at is null),
                        (select count(*) from ticket_order where status = 'pending_payment')",
            )
            .fetch_one(&db)
            .await?;
            if (owed == 0 && pending == 0) || tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(())
    }

    /// Seconds from `at_ms` (unix ms) until the first hold committed after it.
    pub async fn first_hold_after(&self, at_ms: u64) -> anyhow::Result<Option<f64>> {
        let db = self.db().await?;
        let first: Option<f64> = sqlx::query_scalar(
            "select extract(epoch from min(created_at))::float8 * 1000 from hold
             where created_at > to_timestamp($1 / 1000.0)",
        )
        .bind(at_ms as f64)
        .fetch_one(&db)
        .await?;
        Ok(first.map(|ms| (ms - at_ms as f64) / 1000.0))
    }

    /// Also reports the CPU and memory of `pid` under `name` (the buyers' processes: on one
    /// machine, what the load generator takes is what the servers do not get).
    pub fn watch(&mut self, name: String, pid: u32) {
        self.watched.push((name, pid));
    }

    /// What each process used.
    pub fn usage(&self) -> &BTreeMap<String, Usage> {
        &self.usage
    }
}

/// How much the run favours the Redis and PostgreSQL it starts over every other process
/// (a nice value). On one machine the scheduler shares the cores evenly among the processes
/// that want them: with 8 buyers processes and 9 Marquee processes busy, Redis, which every
/// node waits on, got one seventeenth of the machine, and its latency grew into time-outs
/// that the nodes retried. A deployment runs Redis and PostgreSQL on hosts of their own;
/// this is the nearest one machine comes to that. Without the privilege to raise priority
/// (`CAP_SYS_NICE`) the run goes on at equal priority and says so.
const FAVOUR_NICE: &str = "-10";

/// Raises the scheduling priority of `pids` ([`FAVOUR_NICE`]) with `renice`, one at a time:
/// the first is the server itself, whose refusal the report notes; the rest are its helper
/// processes, one of which may have exited since it was listed.
fn favour(pids: &[u32]) {
    let renice = |pid: &u32| {
        std::process::Command::new("renice")
            .args(["-n", FAVOUR_NICE, "-p", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let Some((first, rest)) = pids.split_first() else {
        return;
    };
    let ok = renice(first);
    for pid in rest {
        renice(pid);
    }
    if !ok {
        FAVOUR_REFUSED.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(
            ?pids,
            "cannot raise the priority of Redis or PostgreSQL; they share the machine equally"
        );
    }
}

/// Set when [`favour`] could not raise a priority.
static FAVOUR_REFUSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What the report says of the priorities of the Redis and PostgreSQL the run started.
pub fn priority_note() -> String {
    if FAVOUR_REFUSED.load(std::sync::atomic::Ordering::Relaxed) {
        "Redis and PostgreSQL could not be favoured (no CAP_SYS_NICE): every process shared the cores equally".to_owned()
    } else {
        format!(
            "Redis and PostgreSQL ran at nice {FAVOUR_NICE}, as on hosts of their own; Marquee and the buyers at 0"
        )
    }
}

/// [`favour`] for the postmaster and the processes it started (those it starts later inherit
/// its priority).
fn favour_postgres(pg: &EmbeddedPostgres) {
    let Some(postmaster) = pg.postmaster_pid() else {
        return;
    };
    let mut pids = vec![postmaster];
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            // The parent is the fourth field of `stat`, after the name in parentheses.
            let parent = std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|stat| {
                    let after = stat.rsplit_once(')')?.1;
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                });
            if parent == Some(postmaster) {
                pids.push(pid);
            }
        }
    }
    favour(&pids);
}

/// Two connections, opened on first use: the run's own reads never crowd the servers'.
fn small_pool(url: &str) -> anyhow::Result<PgPool> {
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy(url)?)
}

/// Where a node's or worker's log goes (they log to standard output): this run's standard
/// error when `ONSALE_SERVER_LOG` asks for their log, nowhere otherwise.
fn server_log() -> anyhow::Result<Stdio> {
    use std::os::fd::AsFd as _;
    if std::env::var_os("ONSALE_SERVER_LOG").is_none() {
        return Ok(Stdio::null());
    }
    Ok(Stdio::from(std::io::stderr().as_fd().try_clone_to_owned()?))
}

async fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("nothing listens on {addr} after 10 s")
}

/// Waits until a node or worker answers on its probe listener.
async fn wait_ready(addr: SocketAddr) -> anyhow::Result<()> {
    wait_listening(addr).await
}
