//! The `onsale` scenario: a whole onsale against a cluster it starts on loopback (two hub
//! nodes, two booking workers, a private Redis and a private PostgreSQL), a crowd of buyers
//! (most joining the pre-queue, the rest late) who are admitted at a rate under a cap, hold by
//! best-available, explicit seats and standing tickets, check out and pay through the simulated
//! provider; some abandon, close the tab and come back, or retry a command from a second tab.
//! With faults (the default), a hub node is killed, a worker is killed, Redis is restarted empty
//! and PostgreSQL is restarted, one after another, while it runs.
//!
//! After the run every invariant is checked, from Postgres and from what the buyers saw
//! ([`check`]); each is a count that must be 0, and the run exits non-zero if one is not.
//!
//! Buyers run in client processes of their own ([`buyers`]), so no process holds more
//! sockets than the open-file limit allows.

pub mod buyers;
pub mod check;
pub mod cluster;

use crate::report::{Latency, Report, Series};
use crate::scenarios::Common;
use anyhow::Context as _;
use buyers::{BuyerRecord, BuyerSpec};
use cluster::{OnsaleCluster, Shape};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt as _;

// The JSON report's `onsale` object: `invariants` (each a count that must be 0), `figures`,
// `faults` (what struck when, and how long until a hold was committed again), `processes` (CPU
// seconds and peak RSS of each server process, Redis and each buyers process) and `timeline` (held, sold and paid over time).

/// The onsale scenario's options. With none, it is the CI-sized run: 2,000 buyers for 1,000
/// tickets, with faults, in well under two minutes.
#[derive(Debug, Clone, clap::Args)]
pub struct OnsaleArgs {
    /// Buyers.
    #[arg(long, default_value_t = 2000)]
    pub buyers: usize,
    /// Seated tickets: rows of 30 seats (rounded up to whole rows).
    #[arg(long, default_value_t = 900)]
    pub seats: u32,
    /// Standing (general admission) tickets.
    #[arg(long, default_value_t = 100)]
    pub ga: i32,
    /// Price categories the rows are shared among.
    #[arg(long, default_value_t = 3)]
    pub categories: u32,
    /// Share of buyers who join the pre-queue (the rest join after the start).
    #[arg(long, default_value_t = 0.8)]
    pub early: f64,
    /// How long the pre-queue is open before the start.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub prequeue: Duration,
    /// Late joiners arrive within this long after the start.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub late_window: Duration,
    /// Admissions a second.
    #[arg(long, default_value_t = 60.0)]
    pub rate: f64,
    /// Admissions running at once, at most.
    #[arg(long, default_value_t = 150)]
    pub cap: i32,
    /// Tickets per hold, 1 to this (also the per-buyer limit).
    #[arg(long, default_value_t = 2)]
    pub per_buyer: u32,
    /// Share of holds on explicit seats.
    #[arg(long, default_value_t = 0.2)]
    pub explicit: f64,
    /// Share of holds of standing tickets.
    #[arg(long, default_value_t = 0.1)]
    pub ga_share: f64,
    /// Share of buyers who abandon their hold.
    #[arg(long, default_value_t = 0.05)]
    pub abandon: f64,
    /// Share of buyers who close the tab while waiting and come back within the grace period.
    #[arg(long, default_value_t = 0.05)]
    pub refresh: f64,
    /// Share of buyers who send their hold again from a second tab, same request id.
    #[arg(long, default_value_t = 0.05)]
    pub retry: f64,
    /// How simulated payments end, as weights.
    #[arg(long, default_value = "succeeded=8,failed=1,processing=1")]
    pub outcomes: String,
    /// How long holds last (abandoned ones come back after it).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub hold: Duration,
    /// Client processes the buyers are spread over.
    #[arg(long, default_value_t = 2)]
    pub processes: usize,
    /// The run stops by itself after this long, whatever is left.
    #[arg(long, default_value = "80s", value_parser = humantime::parse_duration)]
    pub max_duration: Duration,
    /// Faults and when they strike, in seconds after the start: `node@2,worker@5,redis@8,
    /// postgres@11` (a hub node killed, a worker killed, Redis restarted, PostgreSQL
    /// restarted), or `none`.
    #[arg(long, default_value = "node@2,worker@5,redis@8,postgres@11", value_parser = parse_faults)]
    pub faults: FaultPlan,
    /// What to start: `cluster` (2 hub nodes and 2 workers on a private Redis and
    /// PostgreSQL) or `memory` (one node on the memory engine on a private PostgreSQL; of the
    /// faults only `postgres` applies). Ignored with `--url`.
    #[arg(long, value_enum, default_value = "cluster")]
    pub engine: Engine,
    /// Hub nodes of the cluster (one process holds at most ~19,000 sockets here: give each
    /// node no more, counting the buyers a killed node's share moves over).
    #[arg(long, default_value_t = 2)]
    pub nodes: usize,
    /// With `--url`: the database the given nodes use, where the venue is seeded and the
    /// invariants are read. The nodes must pay through the simulated provider.
    #[arg(long, requires = "url")]
    pub database_url: Option<String>,
}

/// What `onsale` starts when no `--url` is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    Cluster,
    Memory,
}

/// When each fault strikes: `(seconds after the start, what)`.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan(pub Vec<(f64, &'static str)>);

fn parse_faults(text: &str) -> Result<FaultPlan, String> {
    if text == "none" {
        return Ok(FaultPlan::default());
    }
    let mut plan = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (what, at) = part
            .split_once('@')
            .ok_or_else(|| format!("`{part}` is not fault@seconds"))?;
        let what = match what {
            "node" => "hub node killed",
            "worker" => "worker killed",
            "redis" => "redis restarted",
            "postgres" => "postgres restarted",
            other => {
                return Err(format!(
                    "unknown fault `{other}` (node, worker, redis, postgres)"
                ));
            }
        };
        let at: f64 = at.parse().map_err(|_| format!("`{at}` is not seconds"))?;
        plan.push((at, what));
    }
    plan.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(FaultPlan(plan))
}

/// A fault and when it struck, seconds after the start.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Fault {
    pub what: &'static str,
    pub at_s: f64,
    #[serde(skip)]
    pub at_ms: u64,
    /// Seconds from the fault until a hold was committed again.
    pub recovered_after_s: Option<f64>,
}

/// Runs the scenario: the report, and whether every invariant held.
pub async fn run(args: &OnsaleArgs, common: &Common) -> anyhow::Result<(Report, bool)> {
    let shape = if common.url.is_empty() {
        match args.engine {
            Engine::Cluster => {
                anyhow::ensure!(args.nodes >= 2, "a cluster has 2 hub nodes or more");
                Shape::Cluster { nodes: args.nodes }
            }
            Engine::Memory => Shape::Memory,
        }
    } else {
        anyhow::ensure!(
            !common.tls,
            "onsale connects to given nodes over plain ws:// only"
        );
        Shape::Given {
            urls: common.url.clone(),
            database_url: args
                .database_url
                .clone()
                .context("--database-url is needed with --url")?,
            secret: common
                .secret
                .clone()
                .context("--secret (or MARQUEE_JWT_SECRET) is needed with --url")?,
        }
    };
    if let Some((_, what)) = args.faults.0.iter().find(|(_, what)| !shape.allows(what)) {
        anyhow::bail!(
            "`{what}` cannot strike {} (pass --faults with what applies, or none)",
            shape.describe()
        );
    }
    let started = Instant::now();
    let rows = args.seats.div_ceil(30).max(1);
    let mut cluster = OnsaleCluster::start(args, &shape).await?;
    let catalog = cluster.seed(args, rows).await?;
    // The crowd arrives once the pre-queue is open (the controller opens it within a second).
    cluster
        .wait_for_status(catalog.onsale_id, "pre_queue")
        .await?;
    let t0_ms = marquee_server::clock::now_ms();
    let start_ms = cluster.starts_at_ms(catalog.onsale_id).await?;
    let deadline_ms = t0_ms + args.max_duration.as_millis() as u64;
    let urls: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| format!("ws://{}/ws", n.addr))
        .collect();
    let per = args.buyers.div_ceil(args.processes.max(1));
    let mut clients = Vec::new();
    for p in 0..args.processes.max(1) {
        let first = p * per;
        let count = per.min(args.buyers.saturating_sub(first));
        if count == 0 {
            break;
        }
        let spec = BuyerSpec {
            urls: urls.clone(),
            secret: cluster.secret.clone(),
            tenant: catalog.tenant_id,
            event: catalog.event_id,
            onsale: catalog.onsale_id,
            categories: catalog.categories.iter().map(|(id, _)| *id).collect(),
            ga: catalog.ga_ticket_type,
            seats: catalog.seats as u32,
            first,
            count,
            t0_ms,
            start_ms,
            late_window_ms: args.late_window.as_millis() as u64,
            early: args.early,
            explicit: args.explicit,
            ga_share: args.ga_share,
            abandon: args.abandon,
            refresh: args.refresh,
            retry: args.retry,
            per_buyer: args.per_buyer,
            deadline_ms,
            grace_ms: match shape {
                Shape::Given { .. } => cluster::GIVEN_QUEUE_GRACE,
                Shape::Cluster { .. } | Shape::Memory => cluster::QUEUE_GRACE,
            }
            .as_millis() as u64,
            seed: rand::random(),
        };
        let exe = std::env::current_exe()?;
        let mut child = tokio::process::Command::new(exe)
            .arg("onsale-buyers")
            .arg("--spec")
            .arg(serde_json::to_string(&spec)?)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting a buyers process")?;
        if let Some(pid) = child.id() {
            cluster.watch(format!("buyers-{p}"), pid);
        }
        // Read its output as it comes (a pipe left unread would stop it once full).
        let mut stdout = child.stdout.take().context("the buyers' output")?;
        clients.push(tokio::spawn(async move {
            let mut out = String::new();
            stdout.read_to_string(&mut out).await?;
            let status = child.wait().await?;
            anyhow::ensure!(status.success(), "a buyers process failed: {status}");
            Ok::<String, anyhow::Error>(out)
        }));
    }
    // Faults, one after another once admission has started.
    let mut faults = Vec::new();
    let mut samples = Vec::new();
    // Fault times count from the start; the run's clock from before the pre-queue.
    let before_start = start_ms.saturating_sub(marquee_server::clock::now_ms()) as f64 / 1000.0
        + started.elapsed().as_secs_f64();
    let fault_plan: Vec<(f64, &'static str)> = args
        .faults
        .0
        .iter()
        .map(|(at, what)| (before_start + at, *what))
        .collect();
    let mut next_fault = 0;
    let mut outputs = Vec::new();
    let mut waiting = clients;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    while !waiting.is_empty() {
        tick.tick().await;
        let elapsed = started.elapsed().as_secs_f64();
        let sample = cluster.sample(catalog.onsale_id).await;
        if samples.len() % 10 == 0 {
            // Every 5 s, where the onsale stands (a long run should not be silent).
            let n = |k: &str| sample[k].as_u64().map_or("?".to_owned(), |v| v.to_string());
            eprintln!(
                "{elapsed:>6.1} s  waiting {}  admitted {}  active {}  held {}  sold {}  paid orders {}",
                n("waiting"),
                n("admitted"),
                n("active"),
                n("held"),
                n("sold"),
                n("paid_orders")
            );
        }
        samples.push((elapsed, sample));
        if let Some((at, what)) = fault_plan.get(next_fault)
            && elapsed >= *at
        {
            tracing::warn!(fault = what, "injecting a fault");
            cluster.inject(what).await?;
            faults.push(Fault {
                what,
                at_s: elapsed,
                at_ms: marquee_server::clock::now_ms(),
                recovered_after_s: None,
            });
            next_fault += 1;
        }
        let mut still = Vec::new();
        for client in waiting {
            if client.is_finished() {
                outputs.push(client.await??);
            } else {
                still.push(client);
            }
        }
        waiting = still;
        // Buyers stop at the deadline; a minute more lets tens of thousands close on a loaded
        // machine and report.
        if marquee_server::clock::now_ms() > deadline_ms + 60_000 {
            anyhow::bail!(
                "{} buyers process(es) did not finish within --max-duration and a minute more",
                waiting.len()
            );
        }
    }
    let mut records: Vec<BuyerRecord> = Vec::new();
    let mut lag = buyers::Lag::default();
    for out in outputs {
        let output: buyers::BuyersOutput = serde_json::from_str(out.trim())?;
        records.extend(output.records);
        lag.worst_ms = lag.worst_ms.max(output.lag.worst_ms);
        lag.behind_s = lag.behind_s.max(output.lag.behind_s);
    }
    // Let owed effects and late payments settle before checking.
    cluster.settle(Duration::from_secs(20)).await?;
    // The draw record, as anyone may read it (the last node lived through the faults).
    let survivor = cluster.nodes.last().context("a node")?.addr;
    let draw = crate::servers::http_get(
        survivor,
        &format!(
            "/v1/tenants/{}/onsales/{}/draw",
            catalog.tenant_id, catalog.onsale_id
        ),
    )
    .await;
    let mut findings = Vec::new();
    // Commands still queued when their buyers stopped get a minute to be decided.
    let decided_late =
        check::decided_late(&cluster.db().await?, &records, Duration::from_secs(60)).await?;
    let verdict = check::invariants(
        &cluster.db().await?,
        draw.as_deref(),
        &records,
        &decided_late,
        &mut findings,
    )
    .await?;
    // What the buyers saw of the positions that rose: the invariant is a count, these say why.
    findings.extend(
        records
            .iter()
            .flat_map(|r| r.errors.iter().map(move |e| (r, e)))
            .filter(|(_, e)| e.starts_with("position rose"))
            .take(5)
            .map(|(r, e)| format!("{}: {e}", r.user)),
    );
    for fault in &mut faults {
        fault.recovered_after_s = cluster.first_hold_after(fault.at_ms).await?;
    }
    let mut figures = check::figures(&cluster.db().await?, &records, start_ms).await?;
    figures["unanswered_at_deadline"] = json!(
        records
            .iter()
            .map(|r| r.unanswered_at_deadline.len())
            .sum::<usize>()
    );
    figures["decided_after_deadline"] = json!(decided_late.len());
    figures["never_accepted"] = json!(check::never_accepted(&records, &decided_late));
    // The load generator's own delay: its clients read frames and answer pings this late.
    figures["client_lag"] = json!({ "worst_ms": lag.worst_ms, "behind_s": lag.behind_s });
    figures["came_back_after_grace"] =
        json!(records.iter().filter(|r| r.came_back_after_grace).count());
    figures["peak_waiting"] = json!(
        samples
            .iter()
            .filter_map(|(_, s)| s["waiting"].as_u64())
            .max()
    );
    let processes = cluster.usage();
    let ok = verdict.all_zero();
    let mut notes = vec![format!(
        "{}; buyers in {} client processes",
        shape.describe(),
        args.processes
    )];
    if matches!(shape, Shape::Cluster { .. } | Shape::Memory) {
        notes.push(cluster::priority_note());
    }
    if lag.worst_ms >= 1000 {
        notes.push(format!(
            "the buyers processes fell up to {:.1} s behind ({} s at least 1 s behind in the worst one): their clients read frames and answered pings that late, so closes for a silent client (4004, after 10 s) are partly the load generator's",
            lag.worst_ms as f64 / 1000.0,
            lag.behind_s
        ));
    }
    if !ok {
        notes.push(format!("INVARIANTS BROKEN: {verdict:?}"));
    }
    let report = Report {
        scenario: common.scenario("onsale"),
        target: "marquee".into(),
        params: json!({
            "buyers": args.buyers, "seats": rows * 30, "ga": args.ga, "rate": args.rate,
            "cap": args.cap, "early": args.early, "per_buyer": args.per_buyer,
            "faults": args.faults.0.iter().map(|(at, what)| format!("{what} at {at} s")).collect::<Vec<_>>(),
            "outcomes": args.outcomes,
            "engine": match shape {
                Shape::Cluster { .. } => "cluster",
                Shape::Memory => "memory",
                Shape::Given { .. } => "given",
            },
        }),
        connections: records.iter().filter(|r| r.join_acked.is_some()).count() as u64,
        connect_failures: records
            .iter()
            .filter(|r| r.join_acked.is_none() && !r.errors.is_empty())
            .count() as u64,
        dropped: records.iter().map(|r| u64::from(r.reconnects)).sum(),
        connect_rate_per_s: None,
        nodes: cluster.nodes.len(),
        rss_bytes_per_conn: None,
        conns_per_node: None,
        delivered_per_s: None,
        latency_ms: figures["hold_result_ms"]
            .as_object()
            .map(|_| serde_json::from_value::<Latency>(figures["hold_result_ms"].clone()))
            .transpose()?,
        published: 0,
        received: 0,
        lost: verdict.lost_results,
        duplicated: verdict.duplicated_effects,
        reordered: 0,
        resyncs: 0,
        resume_s: None,
        server_cpu_s: None,
        cpu_us_per_delivery: None,
        duration_s: started.elapsed().as_secs_f64(),
        notes,
        series: Series::default(),
        onsale: Some(json!({
            "invariants": verdict,
            "figures": figures,
            "faults": faults,
            "processes": processes,
            "timeline": samples.iter().map(|(t, s)| json!({"t": t, "counts": s})).collect::<Vec<_>>(),
            "findings": findings.iter().take(20).collect::<Vec<_>>(),
            "client_errors": records.iter().flat_map(|r| r.errors.iter().map(move |e| format!("{}: {e}", r.user))).take(20).collect::<Vec<_>>(),
        })),
    };
    Ok((report, ok))
}
