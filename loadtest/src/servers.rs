//! The servers under test: Marquee hub nodes or Socket.IO peer nodes, started as child
//! processes on loopback ports (or given by address), and their memory readings.

use crate::wire::Target;
use anyhow::{Context as _, bail};
use marquee_server::auth::mint_hs256;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A free loopback port (bound, then released for the child to take).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Resident set size of a process, from `/proc/<pid>/status`.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Clock ticks; Linux reports them at 100 a second to user space.
    Some((utime + stime) / 100.0)
}

/// One server node.
#[derive(Debug)]
pub struct Node {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where it takes publishes: a Marquee node's internal listener, the peer's own address.
    pub publish_addr: SocketAddr,
    child: Option<Child>,
}

impl Node {
    /// The node's resident memory, when the scenario started it.
    pub fn rss(&self) -> Option<u64> {
        self.child.as_ref().and_then(|c| rss_bytes(c.id()))
    }

    /// The node's resident memory: from `/proc` when the scenario started it, otherwise from
    /// the `process_resident_memory_bytes` gauge on a Marquee node's `/metrics`.
    pub async fn measure_rss(&self, target: Target) -> Option<u64> {
        match (&self.child, target) {
            (Some(_), _) => self.rss(),
            (None, Target::Marquee) => metrics_rss(self.addr).await,
            (None, Target::Socketio | Target::Floor) => None,
        }
    }

    /// CPU seconds the node has used, when the scenario started it.
    pub fn cpu_seconds(&self) -> Option<f64> {
        self.child.as_ref().and_then(|c| cpu_seconds(c.id()))
    }

    /// Kills the node abruptly (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Nodes of one target.
#[derive(Debug)]
pub struct Cluster {
    /// Which server this is.
    pub target: Target,
    /// Its nodes.
    pub nodes: Vec<Node>,
    /// HS256 secret the Marquee nodes trust (tokens are minted from it).
    pub secret: String,
}

/// Where to find things and which Redis to use.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The `marquee` binary.
    pub marquee_bin: PathBuf,
    /// The Socket.IO peer's directory.
    pub socketio_dir: PathBuf,
    /// Redis for clusters of more than one node.
    pub redis_url: String,
}

impl Setup {
    /// Defaults: `marquee` next to this binary (or `MARQUEE_BIN`), the peer in the source tree.
    pub fn detect(redis_url: String) -> anyhow::Result<Self> {
        let marquee_bin = match std::env::var_os("MARQUEE_BIN") {
            Some(path) => PathBuf::from(path),
            None => {
                let exe = std::env::current_exe()?;
                let dir = exe.parent().context("binary directory")?;
                dir.join("marquee")
            }
        };
        if !marquee_bin.exists() {
            bail!(
                "no marquee binary at {} (build it, e.g. `cargo build --release -p marquee-server`, or set MARQUEE_BIN)",
                marquee_bin.display()
            );
        }
        Ok(Self {
            marquee_bin,
            socketio_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/socketio"),
            redis_url,
        })
    }
}

/// Runtime threads for each of `processes` server processes sharing this machine: its cores
/// divided among them, at least one, as an operator sizes processes that share a host (the
/// `TOKIO_WORKER_THREADS` setting, `docs/operations.md`). Left at their default, every process
/// runs a thread per core and they preempt one another: two fan-out nodes on two cores spent
/// 2.47 µs of CPU per delivered message with two threads each and 1.29 µs with one each
/// (BENCHMARKS.md).
pub fn runtime_threads(processes: usize) -> String {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    (cores / processes.max(1)).max(1).to_string()
}

async fn wait_listening(addr: SocketAddr, child: &mut Child, what: &str) -> anyhow::Result<()> {
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("{what} did not listen on {addr} within 10 s")
}

impl Cluster {
    /// Starts `count` nodes of a target. More than one node shares Redis (`redis` engine for
    /// Marquee, the Redis adapter for Socket.IO). The floor is always one process: it has no
    /// way to share a publication between processes, and needs none.
    pub async fn start(
        target: Target,
        count: usize,
        setup: &Setup,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let secret = format!("loadtest-{:032x}", rand::random::<u128>());
        let prefix = format!("lt{:08x}", rand::random::<u32>());
        if target == Target::Socketio {
            ensure_npm_install(&setup.socketio_dir)?;
        }
        let count = if target == Target::Floor { 1 } else { count };
        let mut nodes = Vec::new();
        for i in 0..count {
            let port = free_port()?;
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
            let publish_addr: SocketAddr = match target {
                Target::Marquee => format!("127.0.0.1:{}", free_port()?).parse()?,
                Target::Socketio | Target::Floor => addr,
            };
            let mut command = match target {
                Target::Marquee => {
                    let mut c = Command::new(&setup.marquee_bin);
                    c.arg("serve")
                        .env("TOKIO_WORKER_THREADS", runtime_threads(count))
                        .env("MARQUEE_LISTEN", addr.to_string())
                        .env("MARQUEE_NODE_ID", format!("lt-{i}"))
                        .env("MARQUEE_JWT_SECRET", &secret)
                        .env("MARQUEE_CONNECT_RATE", "1000000")
                        .env("MARQUEE_CONNECT_BURST", "1000000")
                        // The hub scenarios open every connection before they measure.
                        .env("MARQUEE_MAX_WELCOMING", "1000000")
                        .env("MARQUEE_MAX_CONNECTIONS", "1000000")
                        .env("MARQUEE_REDIS_PREFIX", &prefix)
                        // The hub scenarios run relays (channels only): a node with a
                        // database would refuse their made-up channel names, and each would
                        // migrate the machine's shared database.
                        .env_remove("DATABASE_URL")
                        .env("MARQUEE_INTERNAL_LISTEN", publish_addr.to_string())
                        // Every client connects from 127.0.0.1.
                        .env("MARQUEE_CONNECT_RATE_PER_ADDRESS", "1000000")
                        .env("MARQUEE_CONNECT_BURST_PER_ADDRESS", "1000000")
                        .env("MARQUEE_MAX_CONNECTIONS_PER_ACCOUNT", "1000000")
                        .env("RUST_LOG", "warn");
                    if count > 1 {
                        c.env("REDIS_URL", &setup.redis_url);
                    } else {
                        c.env_remove("REDIS_URL");
                    }
                    c
                }
                Target::Floor => {
                    let mut c = Command::new(std::env::current_exe()?);
                    c.arg("floor").arg("--listen").arg(addr.to_string());
                    c
                }
                Target::Socketio => {
                    let mut c = Command::new("node");
                    c.arg("server.js")
                        .current_dir(&setup.socketio_dir)
                        .env("PORT", port.to_string())
                        .env("REDIS_URL", &setup.redis_url)
                        .env("PREFIX", &prefix);
                    c
                }
            };
            for (k, v) in env {
                command.env(k, v);
            }
            let mut child = command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .with_context(|| format!("starting a {} node", target.name()))?;
            let what = format!("{} node {i}", target.name());
            if let Err(e) = wait_listening(addr, &mut child, &what).await {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
            nodes.push(Node {
                addr,
                publish_addr,
                child: Some(child),
            });
        }
        Ok(Self {
            target,
            nodes,
            secret,
        })
    }

    /// Nodes already running elsewhere (RSS is then not measured).
    pub fn given(
        target: Target,
        addrs: Vec<SocketAddr>,
        internal: Option<SocketAddr>,
        secret: String,
    ) -> Self {
        Self {
            target,
            nodes: addrs
                .into_iter()
                .enumerate()
                .map(|(i, addr)| Node {
                    addr,
                    publish_addr: match (target, internal) {
                        (Target::Marquee, Some(internal)) if i == 0 => internal,
                        _ => addr,
                    },
                    child: None,
                })
                .collect(),
            secret,
        }
    }

    /// An access token for a user (ignored by Socket.IO).
    pub fn token(&self, user: &str, roles: &[&str]) -> String {
        token(&self.secret, user, roles)
    }

    /// Total resident memory of the nodes the scenario started.
    pub fn rss(&self) -> Option<u64> {
        self.nodes.iter().map(Node::rss).sum()
    }

    /// CPU seconds the nodes the scenario started have used, together.
    pub fn cpu_seconds(&self) -> Option<f64> {
        self.nodes.iter().map(Node::cpu_seconds).sum()
    }

    /// Resident memory of each node, however it is measured (see [`Node::measure_rss`]).
    pub async fn measure_rss(&self) -> Vec<Option<u64>> {
        let mut out = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            out.push(node.measure_rss(self.target).await);
        }
        out
    }
}

/// Reads `process_resident_memory_bytes` from a Marquee node's `/metrics`.
async fn metrics_rss(addr: SocketAddr) -> Option<u64> {
    let text = http_get(addr, "/metrics").await?;
    let line = text
        .lines()
        .find(|l| l.starts_with("process_resident_memory_bytes "))?;
    line.split_whitespace()
        .nth(1)?
        .parse::<f64>()
        .ok()
        .map(|v| v as u64)
}

/// The body of `GET path` on `addr` (plain HTTP/1.1), whatever the status.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    use http_body_util::{BodyExt, Empty};
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .ok()?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = hyper::Request::get(path)
        .header("host", addr.to_string())
        .body(Empty::<bytes::Bytes>::new())
        .ok()?;
    let response = sender.send_request(request).await.ok()?;
    let body = response.into_body().collect().await.ok()?.to_bytes();
    String::from_utf8(body.to_vec()).ok()
}

/// An HS256 token valid for a day.
pub fn token(secret: &str, user: &str, roles: &[&str]) -> String {
    mint_hs256(secret, user, roles, 24 * 3600)
}

/// Installs the peer's npm dependencies the first time (from its lock file).
fn ensure_npm_install(dir: &Path) -> anyhow::Result<()> {
    if dir.join("node_modules/socket.io").exists() {
        return Ok(());
    }
    eprintln!("installing the Socket.IO peer's dependencies (npm ci)");
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .context("running npm (install Node.js and npm)")?;
    if !status.success() {
        bail!("npm ci failed in {}", dir.display());
    }
    Ok(())
}
