//! Client worker processes.
//!
//! One process may hold at most about 19,000 sockets here (the open-file limit), so the parent
//! spreads connections over several worker processes: each runs `marquee-loadtest worker` with
//! a [`Spec`], writes [`Report`] lines (JSON) to stdout, and stops when the parent writes
//! `stop <published>` to its stdin or closes it.

use crate::wire::{Conn, Target, now_us};
use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::Semaphore;

/// What a worker does with its connections.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Connect, subscribe, then stay idle (answering pings).
    Hold,
    /// Connect, subscribe, and measure every publication.
    Receive,
}

/// A worker's assignment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    /// Server kind.
    pub target: Target,
    /// Nodes; connection `i` goes to `nodes[i % len]`.
    pub nodes: Vec<SocketAddr>,
    /// Loopback source addresses; connection `i` binds `sources[i % len]`.
    pub sources: Vec<IpAddr>,
    /// Connections to open.
    pub count: usize,
    /// User number of the first connection (users are `lt-{n}`).
    pub first_user: usize,
    /// Secret to mint tokens with.
    pub secret: String,
    /// Channels; connection `i` subscribes `channels[i % len]`.
    pub channels: Vec<String>,
    /// Hold or receive.
    pub mode: Mode,
    /// Connection attempts in flight at once.
    pub concurrency: usize,
    /// `wss://` to the nodes, when they are behind TLS.
    #[serde(default)]
    pub tls: Option<crate::wire::WireTls>,
}

/// A line a worker writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Report {
    /// Every half second.
    Progress(Counts),
    /// Once, at the end.
    Done {
        /// Final counts.
        counts: Counts,
        /// Publish-to-receive latency in microseconds, HdrHistogram V2, base64.
        histogram: String,
    },
}

/// Counters of one worker.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Counts {
    /// Connections open and subscribed.
    pub connected: u64,
    /// Connections that could not be opened.
    pub failed: u64,
    /// Connections that dropped after opening.
    pub dropped: u64,
    /// Publications received.
    pub received: u64,
    /// Sequence numbers that never arrived (computed at the end).
    pub lost: u64,
    /// Publications received twice.
    pub duplicated: u64,
    /// Publications received after a later one.
    pub reordered: u64,
    /// Marquee resync notices handled.
    pub resyncs: u64,
    /// When the last publication arrived (unix microseconds), for the throughput window.
    pub last_receive_us: u64,
}

#[derive(Default)]
struct Shared {
    connected: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    received: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    resyncs: AtomicU64,
    /// Sum over connections of the highest sequence number each has seen, in order.
    progressed: AtomicU64,
    last_receive_us: AtomicU64,
}

impl Shared {
    fn counts(&self) -> Counts {
        Counts {
            connected: self.connected.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            lost: 0,
            duplicated: self.duplicated.load(Ordering::Relaxed),
            reordered: self.reordered.load(Ordering::Relaxed),
            resyncs: self.resyncs.load(Ordering::Relaxed),
            last_receive_us: self.last_receive_us.load(Ordering::Relaxed),
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Encodes a histogram for a report line.
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .expect("serializing into memory cannot fail");
    BASE64.encode(&bytes)
}

/// Decodes a histogram from a report line.
pub fn decode_histogram(text: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = BASE64.decode(text).context("histogram is not base64")?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| anyhow::anyhow!("bad histogram: {e:?}"))
}

/// Runs a worker process until told to stop.
pub async fn run(spec: Spec) -> anyhow::Result<()> {
    // Room for this worker's sockets, up to the hard limit; say plainly when that is too low.
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    let needed = spec.count as u64 + 64;
    if limit < needed {
        eprintln!(
            "worker: {} connections need about {needed} open files but the limit is {limit}; \
             raise the hard limit (ulimit -Hn, or LimitNOFILE for a service) or use more workers",
            spec.count
        );
    }
    // One TLS connector for every connection of this worker.
    let tls = match &spec.tls {
        Some(t) => Some((t.connector()?, t.server_name.clone())),
        None => None,
    };
    let tls = Arc::new(tls);
    let shared = Arc::new(Shared::default());
    let histogram = Arc::new(Mutex::new(new_histogram()));
    let gate = Arc::new(Semaphore::new(spec.concurrency.max(1)));
    // Tells receiving connections to record what they hold and stop.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..spec.count {
        let spec = spec.clone();
        let shared = shared.clone();
        let histogram = histogram.clone();
        let gate = gate.clone();
        let stop = stop_rx.clone();
        let tls = tls.clone();
        tasks.spawn(async move {
            connection(
                i,
                &spec,
                &shared,
                &histogram,
                &gate,
                stop,
                tls.as_ref().as_ref(),
            )
            .await
        });
    }

    let mut stdout = tokio::io::stdout();
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let published = loop {
        tokio::select! {
            _ = tick.tick() => {
                let line = serde_json::to_string(&Report::Progress(shared.counts()))?;
                stdout.write_all(format!("{line}\n").as_bytes()).await?;
                stdout.flush().await?;
            }
            line = stdin.next_line() => {
                match line? {
                    Some(l) if l.starts_with("stop") => {
                        break l.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
                    }
                    Some(_) => {}
                    None => break 0,
                }
            }
        }
    };
    // Let in-flight publications land: wait until every connection saw the last one, or 5 s.
    if spec.mode == Mode::Receive && published > 0 {
        let want = published * shared.connected.load(Ordering::Relaxed);
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while shared.progressed.load(Ordering::Relaxed) < want
            && tokio::time::Instant::now() < until
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let _ = stop_tx.send(true);
    let flushed = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if flushed.is_err() {
        tasks.abort_all();
    }
    let mut counts = shared.counts();
    if spec.mode == Mode::Receive && published > 0 {
        let want = published * counts.connected;
        counts.lost = want.saturating_sub(shared.progressed.load(Ordering::Relaxed));
    }
    let histogram = encode_histogram(&histogram.lock().expect("histogram lock"));
    let line = serde_json::to_string(&Report::Done { counts, histogram })?;
    stdout.write_all(format!("{line}\n").as_bytes()).await?;
    stdout.flush().await?;
    Ok(())
}

async fn connection(
    i: usize,
    spec: &Spec,
    shared: &Shared,
    histogram: &Mutex<Histogram<u64>>,
    gate: &Semaphore,
    mut stop: tokio::sync::watch::Receiver<bool>,
    tls: Option<&(tokio_tungstenite::Connector, String)>,
) {
    let node = spec.nodes[i % spec.nodes.len()];
    let source = (!spec.sources.is_empty()).then(|| spec.sources[i % spec.sources.len()]);
    let channel = &spec.channels[i % spec.channels.len()];
    let user = format!("lt-{}", spec.first_user + i);
    let token = crate::servers::token(&spec.secret, &user, &[]);
    let mut conn = {
        let _permit = gate.acquire().await.expect("semaphore open");
        let mut attempt = 0;
        loop {
            match Conn::open(spec.target, node, source, &token, channel, tls).await {
                Ok(conn) => break conn,
                Err(e) if attempt >= 4 => {
                    tracing::debug!(error = %e, "connection failed");
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(_) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
            }
        }
    };
    shared.connected.fetch_add(1, Ordering::Relaxed);
    let outcome = match spec.mode {
        Mode::Hold => tokio::select! {
            r = conn.idle() => r,
            _ = stop.wait_for(|s| *s) => Ok(()),
        },
        Mode::Receive => receive(&mut conn, shared, histogram, stop).await,
    };
    if let Err(e) = outcome {
        tracing::debug!(error = %e, "connection dropped");
        shared.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

async fn receive(
    conn: &mut Conn,
    shared: &Shared,
    histogram: &Mutex<Histogram<u64>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut last = 0u64;
    let mut batch = Vec::with_capacity(64);
    let mut resyncs = 0;
    let record = |batch: &mut Vec<u64>| {
        let mut h = histogram.lock().expect("histogram lock");
        for v in batch.drain(..) {
            let _ = h.record(v);
        }
    };
    loop {
        let received = tokio::select! {
            r = conn.next() => r?,
            _ = stop.wait_for(|s| *s) => {
                record(&mut batch);
                return Ok(());
            }
        };
        let now = now_us();
        let latency = now.saturating_sub(received.ts_us).max(1);
        shared.last_receive_us.fetch_max(now, Ordering::Relaxed);
        batch.push(latency);
        shared.received.fetch_add(1, Ordering::Relaxed);
        match received.seq.cmp(&last) {
            std::cmp::Ordering::Greater => {
                shared
                    .progressed
                    .fetch_add(received.seq - last, Ordering::Relaxed);
                // A jump counts as progress; the skipped numbers show up as `lost` at the end
                // unless they arrive later (then they count as reordered).
                last = received.seq;
            }
            std::cmp::Ordering::Equal => {
                shared.duplicated.fetch_add(1, Ordering::Relaxed);
            }
            std::cmp::Ordering::Less => {
                shared.reordered.fetch_add(1, Ordering::Relaxed);
            }
        }
        if conn.resyncs != resyncs {
            shared
                .resyncs
                .fetch_add(conn.resyncs - resyncs, Ordering::Relaxed);
            resyncs = conn.resyncs;
        }
        if batch.len() == batch.capacity() {
            record(&mut batch);
        }
    }
}

/// A worker's final counts and encoded histogram.
type Final = (Counts, String);

/// The parent's handle on its worker processes.
#[derive(Debug)]
pub struct Workers {
    children: Vec<Child>,
    stdins: Vec<ChildStdin>,
    latest: Arc<Mutex<Vec<Counts>>>,
    done: Arc<Mutex<Vec<Option<Final>>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl Workers {
    /// Starts one worker process per spec.
    pub fn spawn(specs: &[Spec]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let latest = Arc::new(Mutex::new(vec![Counts::default(); specs.len()]));
        let done = Arc::new(Mutex::new(vec![None; specs.len()]));
        let mut children = Vec::new();
        let mut stdins = Vec::new();
        let mut readers = Vec::new();
        for (index, spec) in specs.iter().enumerate() {
            let mut child = Command::new(&exe)
                .arg("worker")
                .arg("--spec")
                .arg(serde_json::to_string(spec)?)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("starting a worker process")?;
            stdins.push(child.stdin.take().context("worker stdin")?);
            let stdout = child.stdout.take().context("worker stdout")?;
            let latest = latest.clone();
            let done = done.clone();
            readers.push(tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    match serde_json::from_str::<Report>(&line) {
                        Ok(Report::Progress(c)) => latest.lock().expect("lock")[index] = c,
                        Ok(Report::Done { counts, histogram }) => {
                            latest.lock().expect("lock")[index] = counts;
                            done.lock().expect("lock")[index] = Some((counts, histogram));
                        }
                        Err(e) => eprintln!("worker {index}: unreadable line ({e}): {line}"),
                    }
                }
            }));
            children.push(child);
        }
        Ok(Self {
            children,
            stdins,
            latest,
            done,
            readers,
        })
    }

    /// The latest counts, summed over workers.
    pub fn counts(&self) -> Counts {
        sum(self.latest.lock().expect("lock").iter().copied())
    }

    /// Tells every worker to stop and waits for their final reports.
    pub async fn stop(mut self, published: u64) -> anyhow::Result<(Counts, Histogram<u64>)> {
        for stdin in &mut self.stdins {
            let _ = stdin
                .write_all(format!("stop {published}\n").as_bytes())
                .await;
            let _ = stdin.flush().await;
        }
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(30), reader).await;
        }
        for child in &mut self.children {
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
        let done = self.done.lock().expect("lock").clone();
        let mut histogram = new_histogram();
        let mut counts = Vec::new();
        for (i, report) in done.into_iter().enumerate() {
            let (c, h) = report.with_context(|| format!("worker {i} sent no final report"))?;
            histogram.add(decode_histogram(&h)?)?;
            counts.push(c);
        }
        Ok((sum(counts.into_iter()), histogram))
    }
}

fn sum(counts: impl Iterator<Item = Counts>) -> Counts {
    counts.fold(Counts::default(), |a, b| Counts {
        connected: a.connected + b.connected,
        failed: a.failed + b.failed,
        dropped: a.dropped + b.dropped,
        received: a.received + b.received,
        lost: a.lost + b.lost,
        duplicated: a.duplicated + b.duplicated,
        reordered: a.reordered + b.reordered,
        resyncs: a.resyncs + b.resyncs,
        last_receive_us: a.last_receive_us.max(b.last_receive_us),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_survives_the_trip_through_a_report_line() {
        let mut h = new_histogram();
        for v in [1, 10, 100, 1000, 250_000] {
            h.record(v).unwrap();
        }
        let back = decode_histogram(&encode_histogram(&h)).unwrap();
        assert_eq!(back.len(), 5);
        assert_eq!(back.max(), h.max());
        assert_eq!(back.value_at_quantile(0.5), h.value_at_quantile(0.5));
    }
}
