//! The scenarios: `connections`, `fanout` and `resume`. Each starts its servers (or uses the
//! given ones), drives the load through worker processes or SDK clients, stops by itself after
//! bounded durations, and returns a [`Report`].

use crate::report::{Latency, Report, Series, percentile_curve};
use crate::servers::{Cluster, Setup};
use crate::wire::{Publisher, Target, WireTls};
use crate::worker::{Mode, Spec, Workers};
use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Connections one process (worker or server node) is given at most: the open-file limit here
/// is 20,000 per process, and each process needs some descriptors of its own.
pub const PER_PROCESS: usize = 18_000;

/// Ephemeral ports one source address offers towards one destination.
const PORTS_PER_SOURCE: usize = 25_000;

/// Options every scenario shares.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Existing nodes to load (`host:port`, comma-separated) instead of starting servers.
    #[arg(long, value_delimiter = ',')]
    pub url: Vec<SocketAddr>,
    /// Internal listener (`host:port`) of the first given Marquee node, where the fan-out
    /// scenario publishes (`POST /internal/publish` is served there only).
    #[arg(long)]
    pub internal_url: Option<SocketAddr>,
    /// HS256 secret the given Marquee nodes trust.
    #[arg(long, env = "MARQUEE_JWT_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Redis shared by multi-node clusters.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Write the reports as JSON (an array, one report per target).
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Write a self-contained HTML report with plots.
    #[arg(long)]
    pub html: Option<std::path::PathBuf>,
    /// Name the run in reports (default: the scenario's name), e.g. `fanout-latency`.
    #[arg(long)]
    pub label: Option<String>,
    /// Connect to the `--url` nodes over `wss://`, through the TLS a deployment terminates in
    /// front of them (docs/operations.md), so tokens never travel in the clear.
    #[arg(long, requires = "url")]
    pub tls: bool,
    /// The name the nodes' certificate is checked against (with `--tls`).
    #[arg(long, default_value = "localhost", requires = "tls")]
    pub tls_name: String,
    /// A PEM file of certificate authorities to trust besides the webpki roots (a private CA),
    /// with `--tls`.
    #[arg(long, requires = "tls")]
    pub ca: Option<std::path::PathBuf>,
}

impl Common {
    /// The scenario name reports carry.
    pub fn scenario(&self, default: &str) -> String {
        self.label.clone().unwrap_or_else(|| default.to_owned())
    }

    /// How workers reach the nodes over TLS, when `--tls` is given.
    pub fn tls(&self) -> anyhow::Result<Option<WireTls>> {
        if !self.tls {
            return Ok(None);
        }
        let ca_pem = match &self.ca {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
            ),
            None => None,
        };
        Ok(Some(WireTls {
            server_name: self.tls_name.clone(),
            ca_pem,
        }))
    }
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:40}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_owned());
    bar
}

async fn cluster(target: Target, nodes: usize, common: &Common) -> anyhow::Result<Cluster> {
    if common.url.is_empty() {
        let setup = Setup::detect(common.redis_url.clone())?;
        Cluster::start(target, nodes, &setup, &[]).await
    } else {
        let secret = match (target, &common.secret) {
            (Target::Marquee, None) => {
                bail!("--secret (or MARQUEE_JWT_SECRET) is needed with --url")
            }
            (_, s) => s.clone().unwrap_or_default(),
        };
        Ok(Cluster::given(
            target,
            common.url.clone(),
            common.internal_url,
            secret,
        ))
    }
}

/// Loopback source addresses for `total` connections towards one node each.
fn sources(total: usize, nodes: usize) -> Vec<IpAddr> {
    let per_node = total.div_ceil(nodes.max(1));
    let count = per_node.div_ceil(PORTS_PER_SOURCE);
    if count <= 1 {
        return Vec::new();
    }
    (0..count)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8)))
        .collect()
}

fn worker_specs(
    target: Target,
    cluster: &Cluster,
    total: usize,
    channels: &[String],
    mode: Mode,
    tls: Option<&WireTls>,
) -> Vec<Spec> {
    let nodes: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.addr).collect();
    let sources = sources(total, nodes.len());
    let workers = total.div_ceil(PER_PROCESS).max(1);
    let mut specs = Vec::new();
    let mut first = 0;
    for w in 0..workers {
        let count = total / workers + usize::from(w < total % workers);
        specs.push(Spec {
            target,
            nodes: nodes.clone(),
            sources: sources.clone(),
            count,
            first_user: first,
            secret: cluster.secret.clone(),
            channels: channels.to_vec(),
            mode,
            concurrency: 256,
            tls: tls.cloned(),
        });
        first += count;
    }
    specs
}

/// Waits until every connection is open or failed (or `limit` passes), with a progress bar.
async fn connect_phase(workers: &Workers, total: usize, limit: Duration) -> (u64, f64) {
    let bar = bar(total as u64, "connecting");
    let started = Instant::now();
    loop {
        let c = workers.counts();
        bar.set_position(c.connected);
        bar.set_message(format!("{} failed", c.failed));
        if (c.connected + c.failed) as usize >= total || started.elapsed() > limit {
            bar.finish();
            let rate = c.connected as f64 / started.elapsed().as_secs_f64().max(1e-3);
            return (c.connected, rate);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    Some(values[values.len() / 2])
}

/// Parameters of `connections`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionsArgs {
    /// Connections to open (each subscribed to one seat channel; its inbox comes with it).
    #[arg(long, default_value_t = 20_000)]
    pub connections: usize,
    /// How long to hold them idle.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub hold: Duration,
    /// Server nodes (default: as many as the per-process socket limit requires).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Distinct seat channels the connections spread over.
    #[arg(long, default_value_t = 100)]
    pub channels: usize,
}

/// Opens N idle, subscribed connections and measures connect rate and server memory.
pub async fn connections(
    target: Target,
    args: &ConnectionsArgs,
    common: &Common,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let nodes = args
        .nodes
        .unwrap_or_else(|| args.connections.div_ceil(PER_PROCESS))
        .max(1);
    let cluster = cluster(target, nodes, common).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cluster.measure_rss().await;
    let channels: Vec<String> = (0..args.channels.max(1))
        .map(|i| format!("seats:lt-{i}"))
        .collect();
    let specs = worker_specs(
        target,
        &cluster,
        args.connections,
        &channels,
        Mode::Hold,
        common.tls()?.as_ref(),
    );
    let workers = Workers::spawn(&specs)?;
    let (connected, rate) =
        connect_phase(&workers, args.connections, Duration::from_secs(180)).await;

    let mut series = Series::default();
    let hold = bar(args.hold.as_secs(), "holding");
    let hold_start = Instant::now();
    while hold_start.elapsed() < args.hold {
        let t = started.elapsed().as_secs_f64();
        if let Some(rss) = cluster.rss() {
            series.rss_mib.push((t, rss as f64 / (1024.0 * 1024.0)));
        }
        series
            .connections
            .push((t, workers.counts().connected as f64));
        hold.set_position(hold_start.elapsed().as_secs());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    hold.finish();
    let after = cluster.measure_rss().await;
    let counts = workers.counts();
    let per_node = counts.connected as f64 / cluster.nodes.len() as f64;
    let per_conn: Vec<f64> = before
        .iter()
        .zip(&after)
        .filter_map(|(b, a)| Some((a.as_ref()?.saturating_sub(*b.as_ref()?)) as f64 / per_node))
        .collect();
    let (final_counts, _) = workers.stop(0).await?;
    drop(cluster);

    let mut notes = vec![format!(
        "one process holds at most ~19,000 sockets here (open-file limit 20,000), so {} \
         connections ran on {nodes} node(s) and {} worker process(es); memory per connection is \
         measured per node at {per_node:.0} connections",
        args.connections,
        specs.len()
    )];
    if !common.url.is_empty() {
        notes.push(match target {
            Target::Marquee => {
                "servers given by --url: memory read from process_resident_memory_bytes on /metrics"
                    .into()
            }
            Target::Socketio | Target::Floor => {
                "servers given by --url: their memory was not measured".into()
            }
        });
    }
    Ok(Report {
        scenario: common.scenario("connections"),
        target: target.name().into(),
        params: json!({"connections": args.connections, "hold_s": args.hold.as_secs_f64(),
                       "nodes": nodes, "channels": args.channels}),
        connections: connected,
        connect_failures: final_counts.failed,
        dropped: final_counts.dropped,
        connect_rate_per_s: Some(rate),
        nodes,
        rss_bytes_per_conn: median(per_conn),
        conns_per_node: Some(per_node),
        delivered_per_s: None,
        latency_ms: None,
        published: 0,
        received: 0,
        lost: 0,
        duplicated: 0,
        reordered: 0,
        resyncs: 0,
        resume_s: None,
        server_cpu_s: None,
        cpu_us_per_delivery: None,
        duration_s: started.elapsed().as_secs_f64(),
        notes,
        series,
        onsale: None,
    })
}

/// Parameters of `fanout`.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// Subscribers on the one channel.
    #[arg(long, default_value_t = 10_000)]
    pub subscribers: usize,
    /// Publications per second.
    #[arg(long, default_value_t = 50)]
    pub rate: u32,
    /// How long to publish.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Padding bytes per publication.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Server nodes (sharing Redis when more than one).
    #[arg(long, default_value_t = 2)]
    pub nodes: usize,
}

/// N subscribers on one channel, one publisher at M/s: throughput, latency, loss.
pub async fn fanout(target: Target, args: &FanoutArgs, common: &Common) -> anyhow::Result<Report> {
    let started = Instant::now();
    let cluster = cluster(target, args.nodes.max(1), common).await?;
    let channel = "seats:fanout".to_owned();
    let specs = worker_specs(
        target,
        &cluster,
        args.subscribers,
        std::slice::from_ref(&channel),
        Mode::Receive,
        common.tls()?.as_ref(),
    );
    let workers = Workers::spawn(&specs)?;
    let (connected, rate) =
        connect_phase(&workers, args.subscribers, Duration::from_secs(180)).await;
    // Let the last subscriptions settle before the first publication.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let admin = cluster.token("lt-publisher", &["admin"]);
    let mut publisher = Publisher::connect(target, cluster.nodes[0].publish_addr, &admin).await?;
    let mut series = Series::default();
    let total = (args.rate as f64 * args.duration.as_secs_f64()).round() as u64;
    let progress = bar(total, "publishing");
    let mut tick =
        tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1))));
    let publish_start = Instant::now();
    let publish_start_us = crate::wire::now_us();
    let cpu_start = cluster.cpu_seconds();
    let received_start = workers.counts().received;
    let mut last_sample = (publish_start, received_start);
    let mut published = 0u64;
    while published < total {
        tick.tick().await;
        published += 1;
        publisher
            .publish(&channel, published, args.payload)
            .await
            .with_context(|| format!("publishing #{published}"))?;
        progress.set_position(published);
        if last_sample.0.elapsed() >= Duration::from_secs(1) {
            let received = workers.counts().received;
            let dt = last_sample.0.elapsed().as_secs_f64();
            series.delivered_per_s.push((
                started.elapsed().as_secs_f64(),
                (received - last_sample.1) as f64 / dt,
            ));
            if let Some(rss) = cluster.rss() {
                series
                    .rss_mib
                    .push((started.elapsed().as_secs_f64(), rss as f64 / 1048576.0));
            }
            last_sample = (Instant::now(), received);
        }
    }
    progress.finish();
    let (counts, histogram) = workers.stop(published).await?;
    // Read once every delivery was counted: the servers then sit idle, so the little they
    // spend between the last delivery and this reading adds almost nothing.
    let server_cpu_s = cluster
        .cpu_seconds()
        .zip(cpu_start)
        .map(|(end, start)| end - start);
    let nodes = cluster.nodes.len();
    drop(cluster);
    series.latency_percentiles = percentile_curve(&histogram);
    // Sustained throughput: everything delivered, over the time from the first publication
    // to the last delivery (a server that falls behind takes longer, and scores lower).
    let window = counts.last_receive_us.saturating_sub(publish_start_us) as f64 / 1e6;
    let deliveries = counts.received.saturating_sub(received_start);
    let delivered = deliveries as f64 / window.max(1e-3);
    let mut notes = vec![format!(
        "offered load {} deliveries/s; publisher and subscribers share the machine with the servers",
        u64::from(args.rate) * args.subscribers as u64
    )];
    if target == Target::Floor {
        notes.push(
            "the floor: one bare process writing each publication's pre-framed bytes to every socket (no protocol, no channels, no Redis)".into(),
        );
    }
    Ok(Report {
        scenario: common.scenario("fanout"),
        target: target.name().into(),
        params: json!({"subscribers": args.subscribers, "rate": args.rate,
                       "duration_s": args.duration.as_secs_f64(), "payload": args.payload,
                       "nodes": nodes}),
        connections: connected,
        connect_failures: counts.failed,
        dropped: counts.dropped,
        connect_rate_per_s: Some(rate),
        nodes,
        rss_bytes_per_conn: None,
        conns_per_node: None,
        delivered_per_s: Some(delivered),
        latency_ms: Latency::from_micros(&histogram),
        published,
        received: counts.received,
        lost: counts.lost,
        duplicated: counts.duplicated,
        reordered: counts.reordered,
        resyncs: counts.resyncs,
        resume_s: None,
        server_cpu_s,
        cpu_us_per_delivery: server_cpu_s
            .filter(|_| deliveries > 0)
            .map(|cpu| cpu * 1e6 / deliveries as f64),
        duration_s: started.elapsed().as_secs_f64(),
        notes,
        series,
        onsale: None,
    })
}

/// Parameters of `resume`.
#[derive(Debug, Clone, clap::Args)]
pub struct ResumeArgs {
    /// SDK clients (half start on the node that is killed).
    #[arg(long, default_value_t = 2_000)]
    pub clients: usize,
    /// Publications per second during the run.
    #[arg(long, default_value_t = 20)]
    pub rate: u32,
    /// How long to publish in all.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// When to kill the node, after publishing starts.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub kill_after: Duration,
}

/// What one SDK client saw.
#[derive(Debug, Default, Clone, Copy)]
struct ClientTally {
    progressed: u64,
    duplicated: u64,
    reordered: u64,
    received: u64,
    disconnected_at: Option<Instant>,
    resumed_at: Option<Instant>,
}

/// Two nodes on Redis, SDK clients on both; one node is killed under load. Reports the time
/// until every client resumed and whether anything was lost or duplicated.
pub async fn resume(args: &ResumeArgs, common: &Common) -> anyhow::Result<Report> {
    use marquee_client::{Client, ClientConfig, Event, TokenProvider};
    use std::sync::{Arc, Mutex};

    if !common.url.is_empty() {
        bail!("resume starts its own two-node cluster (it kills one); --url is not supported");
    }
    let started = Instant::now();
    let mut cluster = cluster(Target::Marquee, 2, common).await?;
    let (a, b) = (cluster.nodes[0].addr, cluster.nodes[1].addr);
    let channel = "seats:resume";
    let tallies = Arc::new(Mutex::new(vec![ClientTally::default(); args.clients]));
    let connecting = bar(args.clients as u64, "connecting");
    let mut clients = Vec::new();
    let mut readers = tokio::task::JoinSet::new();
    for i in 0..args.clients {
        let urls = if i % 2 == 0 { [a, b] } else { [b, a] };
        let mut config = ClientConfig::with_urls(urls.iter().map(|u| format!("ws://{u}/ws")));
        config.backoff_base = Duration::from_millis(100);
        config.backoff_cap = Duration::from_secs(2);
        let token = cluster.token(&format!("lt-{i}"), &[]);
        let (client, mut events) = Client::connect(config, TokenProvider::fixed(token)).await?;
        client.subscribe(channel).await?;
        connecting.inc(1);
        clients.push(client);
        let tallies = tallies.clone();
        readers.spawn(async move {
            let mut last = 0u64;
            while let Some(event) = events.next().await {
                let mut all = tallies.lock().expect("tally lock");
                let t = &mut all[i];
                match event {
                    Event::Publication(p) if p.channel == channel => {
                        t.received += 1;
                        let seq = p.data["seq"].as_u64().unwrap_or(0);
                        match seq.cmp(&last) {
                            std::cmp::Ordering::Greater => {
                                t.progressed += seq - last;
                                last = seq;
                            }
                            std::cmp::Ordering::Equal => t.duplicated += 1,
                            std::cmp::Ordering::Less => t.reordered += 1,
                        }
                    }
                    Event::Disconnected { .. } if t.disconnected_at.is_none() => {
                        t.disconnected_at = Some(Instant::now());
                    }
                    Event::Subscribed(s)
                        if s.automatic
                            && s.channel == channel
                            && t.disconnected_at.is_some()
                            && t.resumed_at.is_none() =>
                    {
                        t.resumed_at = Some(Instant::now());
                    }
                    _ => {}
                }
            }
        });
    }
    connecting.finish();

    let admin = cluster.token("lt-publisher", &["admin"]);
    let mut publisher =
        Publisher::connect(Target::Marquee, cluster.nodes[1].publish_addr, &admin).await?;
    let total = (args.rate as f64 * args.duration.as_secs_f64()).round() as u64;
    let progress = bar(total, "publishing");
    let mut tick =
        tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1))));
    let publish_start = Instant::now();
    let mut killed_at = None;
    let mut published = 0u64;
    while published < total {
        tick.tick().await;
        if killed_at.is_none() && publish_start.elapsed() >= args.kill_after {
            cluster.nodes[0].kill();
            killed_at = Some(Instant::now());
            progress.println("killed node 0 (SIGKILL)");
        }
        published += 1;
        publisher.publish(channel, published, 16).await?;
        progress.set_position(published);
    }
    progress.finish();
    // Let the last publications arrive.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let done = {
            let all = tallies.lock().expect("tally lock");
            all.iter().all(|t| t.progressed >= published)
        };
        if done || Instant::now() > until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for client in &clients {
        client.close().await;
    }
    readers.abort_all();
    drop(cluster);

    let all = tallies.lock().expect("tally lock").clone();
    let killed_at = killed_at.context("the run ended before the kill")?;
    let affected: Vec<&ClientTally> = all.iter().filter(|t| t.disconnected_at.is_some()).collect();
    let unresumed = affected.iter().filter(|t| t.resumed_at.is_none()).count();
    let resume_s = affected
        .iter()
        .filter_map(|t| t.resumed_at)
        .map(|r| r.saturating_duration_since(killed_at).as_secs_f64())
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let mut notes = vec![format!(
        "{} of {} clients were on the killed node; {} of those never resumed",
        affected.len(),
        args.clients,
        unresumed
    )];
    notes.push("node killed with SIGKILL: no reconnect advice, clients detect the drop".into());
    Ok(Report {
        scenario: common.scenario("resume"),
        target: "marquee".into(),
        params: json!({"clients": args.clients, "rate": args.rate,
                       "duration_s": args.duration.as_secs_f64(),
                       "kill_after_s": args.kill_after.as_secs_f64()}),
        connections: args.clients as u64,
        connect_failures: 0,
        dropped: affected.len() as u64,
        connect_rate_per_s: None,
        nodes: 2,
        rss_bytes_per_conn: None,
        conns_per_node: None,
        delivered_per_s: None,
        latency_ms: None,
        published,
        received: all.iter().map(|t| t.received).sum(),
        lost: all
            .iter()
            .map(|t| published.saturating_sub(t.progressed))
            .sum(),
        duplicated: all.iter().map(|t| t.duplicated).sum(),
        reordered: all.iter().map(|t| t.reordered).sum(),
        resyncs: 0,
        resume_s,
        server_cpu_s: None,
        cpu_us_per_delivery: None,
        duration_s: started.elapsed().as_secs_f64(),
        notes,
        series: Series::default(),
        onsale: None,
    })
}
