//! Results: the stable JSON schema (`--json`), the human summary, and the self-contained HTML
//! report with plots (`--html`). `loadtest/README.md` documents the schema.

use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest seen.
    pub max: f64,
}

impl Latency {
    /// From a histogram of microseconds.
    pub fn from_micros(h: &Histogram<u64>) -> Option<Self> {
        (!h.is_empty()).then(|| Self {
            p50: h.value_at_quantile(0.5) as f64 / 1000.0,
            p99: h.value_at_quantile(0.99) as f64 / 1000.0,
            p999: h.value_at_quantile(0.999) as f64 / 1000.0,
            max: h.max() as f64 / 1000.0,
        })
    }
}

/// Time series for the plots: `(seconds since start, value)`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Series {
    /// Server RSS in MiB over time.
    pub rss_mib: Vec<(f64, f64)>,
    /// Delivered messages per second over time.
    pub delivered_per_s: Vec<(f64, f64)>,
    /// Open connections over time.
    pub connections: Vec<(f64, f64)>,
    /// Latency distribution: `(percentile, milliseconds)`.
    pub latency_percentiles: Vec<(f64, f64)>,
}

/// One scenario run against one target. Field names are a stable schema.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// `connections`, `fanout` or `resume`.
    pub scenario: String,
    /// `marquee` or `socketio`.
    pub target: String,
    /// The scenario's parameters as given.
    pub params: Value,
    /// Connections open at the end of the connect phase.
    pub connections: u64,
    /// Connections that could not be opened.
    pub connect_failures: u64,
    /// Connections that dropped after opening.
    pub dropped: u64,
    /// Connections opened per second during the connect phase.
    pub connect_rate_per_s: Option<f64>,
    /// Server nodes used.
    pub nodes: usize,
    /// Server RSS growth per connection, bytes (per node, median over nodes).
    pub rss_bytes_per_conn: Option<f64>,
    /// Connections per node at which `rss_bytes_per_conn` was measured.
    pub conns_per_node: Option<f64>,
    /// Publications delivered per second, all subscribers together.
    pub delivered_per_s: Option<f64>,
    /// Publish-to-receive latency.
    pub latency_ms: Option<Latency>,
    /// Publications published.
    pub published: u64,
    /// Publications received.
    pub received: u64,
    /// Sequence numbers a subscriber never received.
    pub lost: u64,
    /// Publications a subscriber received twice.
    pub duplicated: u64,
    /// Publications received after a later one.
    pub reordered: u64,
    /// Resync notices handled by subscribers (Marquee only).
    pub resyncs: u64,
    /// Seconds from a node kill until every client resumed (`resume` only).
    pub resume_s: Option<f64>,
    /// CPU seconds (user + system, from `/proc`) the server processes used from the first
    /// publication to the last delivery, all nodes together (`fanout` on servers the run
    /// started).
    #[serde(default)]
    pub server_cpu_s: Option<f64>,
    /// `server_cpu_s` per delivered message, in microseconds: what one delivery costs the
    /// server, the figure to drive down (wall-clock rates depend on what else the shared
    /// machine runs; this much less).
    #[serde(default)]
    pub cpu_us_per_delivery: Option<f64>,
    /// Wall-clock duration of the run, seconds.
    pub duration_s: f64,
    /// Plain-language caveats (limits met, what was not measured and why).
    pub notes: Vec<String>,
    /// Data behind the plots.
    pub series: Series,
    /// The onsale scenario's invariants, figures, faults and processes (`onsale` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onsale: Option<Value>,
}

impl Report {
    /// The human summary printed at the end.
    pub fn summary(&self) -> String {
        let mut out = format!("== {} / {}\n", self.scenario, self.target);
        let mut line = |k: &str, v: String| out.push_str(&format!("  {k:<22} {v}\n"));
        line("nodes", self.nodes.to_string());
        line(
            "connections",
            format!(
                "{} ({} failed, {} dropped)",
                self.connections, self.connect_failures, self.dropped
            ),
        );
        if let Some(r) = self.connect_rate_per_s {
            line("connect rate", format!("{r:.0}/s"));
        }
        if let Some(b) = self.rss_bytes_per_conn {
            let at = self
                .conns_per_node
                .map_or(String::new(), |n| format!(" at {n:.0} conns/node"));
            line("server RSS per conn", format!("{:.2} KiB{at}", b / 1024.0));
        }
        if let Some(d) = self.delivered_per_s {
            line("delivered", format!("{d:.0} msg/s"));
        }
        if let Some(l) = self.latency_ms {
            line(
                "latency ms",
                format!(
                    "p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
                    l.p50, l.p99, l.p999, l.max
                ),
            );
        }
        if self.published > 0 {
            line(
                "published / received",
                format!("{} / {}", self.published, self.received),
            );
            line(
                "lost / dup / reordered",
                format!("{} / {} / {}", self.lost, self.duplicated, self.reordered),
            );
            line("resyncs", self.resyncs.to_string());
        }
        if let Some(c) = self.server_cpu_s {
            let per = self
                .cpu_us_per_delivery
                .map_or(String::new(), |u| format!(", {u:.2} µs per delivery"));
            line("server CPU", format!("{c:.2} s{per}"));
        }
        if let Some(s) = self.resume_s {
            line("resume time", format!("{s:.2} s"));
        }
        line("duration", format!("{:.1} s", self.duration_s));
        for note in &self.notes {
            out.push_str(&format!("  note: {note}\n"));
        }
        out
    }
}

/// The ratios of a Marquee run to a Socket.IO run of the same workload.
pub fn ratios(marquee: &Report, socketio: &Report) -> String {
    let mut out = format!("== {}: marquee vs socketio\n", marquee.scenario);
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "n/a".to_owned(),
    };
    out.push_str(&format!(
        "  delivered/s            {}\n",
        ratio(marquee.delivered_per_s, socketio.delivered_per_s)
    ));
    out.push_str(&format!(
        "  RSS per conn           {} (lower is better)\n",
        ratio(marquee.rss_bytes_per_conn, socketio.rss_bytes_per_conn)
    ));
    out.push_str(&format!(
        "  p99 latency            {} (lower is better)\n",
        ratio(
            marquee.latency_ms.map(|l| l.p99),
            socketio.latency_ms.map(|l| l.p99)
        )
    ));
    out.push_str(&format!(
        "  CPU per delivery       {} (lower is better)\n",
        ratio(marquee.cpu_us_per_delivery, socketio.cpu_us_per_delivery)
    ));
    out
}

fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, &[(f64, f64)])],
) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 320)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let points = series.iter().flat_map(|(_, s)| s.iter());
        let (mut x_max, mut y_max) = (1e-9f64, 1e-9f64);
        for (x, y) in points {
            x_max = x_max.max(*x);
            y_max = y_max.max(*y);
        }
        let chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..x_max * 1.02, 0f64..y_max * 1.1);
        if let Ok(mut chart) = chart {
            let _ = chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(y_label)
                .draw();
            let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK, YELLOW];
            for (i, (name, points)) in series.iter().enumerate() {
                let color = colors[i % colors.len()];
                if let Ok(drawn) = chart.draw_series(LineSeries::new(points.iter().copied(), color))
                {
                    drawn
                        .label(*name)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
                }
            }
            let _ = chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE)
                .draw();
        }
        let _ = root.present();
    }
    svg
}

/// The onsale over time: waiting, admitted, active, held and sold, with each fault drawn as a
/// vertical line at the moment it struck.
fn onsale_chart(onsale: &Value) -> String {
    let timeline = onsale["timeline"].as_array().cloned().unwrap_or_default();
    let curve = |key: &str| -> Vec<(f64, f64)> {
        timeline
            .iter()
            .filter_map(|p| Some((p["t"].as_f64()?, p["counts"][key].as_f64()?)))
            .collect()
    };
    let mut named: Vec<(String, Vec<(f64, f64)>)> =
        ["waiting", "admitted", "active", "held", "sold"]
            .iter()
            .map(|k| ((*k).to_owned(), curve(k)))
            .filter(|(_, c)| !c.is_empty())
            .collect();
    let top = named
        .iter()
        .flat_map(|(_, c)| c.iter().map(|(_, y)| *y))
        .fold(1.0f64, f64::max);
    for fault in onsale["faults"].as_array().into_iter().flatten() {
        if let (Some(what), Some(at)) = (fault["what"].as_str(), fault["at_s"].as_f64()) {
            named.push((format!("fault: {what}"), vec![(at, 0.0), (at, top)]));
        }
    }
    let series: Vec<(&str, &[(f64, f64)])> = named
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_slice()))
        .collect();
    line_chart(
        "The onsale over time (faults as vertical lines)",
        "s",
        "buyers / tickets",
        &series,
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A self-contained HTML page (inline SVG plots, no external assets) for a set of reports.
pub fn html(title: &str, reports: &[Report]) -> String {
    let mut body = format!("<h1>{}</h1>\n", escape(title));
    let scenarios: Vec<&str> = {
        let mut s: Vec<&str> = reports.iter().map(|r| r.scenario.as_str()).collect();
        s.dedup();
        s
    };
    for scenario in scenarios {
        let runs: Vec<&Report> = reports.iter().filter(|r| r.scenario == scenario).collect();
        body.push_str(&format!("<h2>{}</h2>\n", escape(scenario)));
        for r in &runs {
            body.push_str(&format!("<pre>{}</pre>\n", escape(&r.summary())));
        }
        let pick = |f: fn(&Series) -> &Vec<(f64, f64)>| -> Vec<(&str, &[(f64, f64)])> {
            runs.iter()
                .filter(|r| !f(&r.series).is_empty())
                .map(|r| (r.target.as_str(), f(&r.series).as_slice()))
                .collect()
        };
        let latency = pick(|s| &s.latency_percentiles);
        if !latency.is_empty() {
            body.push_str(&line_chart(
                "Latency distribution",
                "percentile",
                "ms",
                &latency,
            ));
        }
        let delivered = pick(|s| &s.delivered_per_s);
        if !delivered.is_empty() {
            body.push_str(&line_chart(
                "Delivered per second",
                "s",
                "msg/s",
                &delivered,
            ));
        }
        let rss = pick(|s| &s.rss_mib);
        if !rss.is_empty() {
            body.push_str(&line_chart("Server RSS", "s", "MiB", &rss));
        }
        let conns = pick(|s| &s.connections);
        if !conns.is_empty() {
            body.push_str(&line_chart("Open connections", "s", "connections", &conns));
        }
        for r in &runs {
            if let Some(onsale) = &r.onsale {
                body.push_str(&onsale_chart(onsale));
            }
        }
    }
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>body{{font-family:sans-serif;max-width:780px;margin:2em auto}}pre{{background:#f4f4f4;padding:.6em}}</style>\
         </head><body>\n{body}</body></html>\n",
        escape(title)
    )
}

/// Percentile curve points for the latency plot (50% to 99.99%).
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    [
        50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0,
    ]
    .iter()
    .map(|p| (*p, h.value_at_percentile(*p) as f64 / 1000.0))
    .collect()
}

/// Facts about the machine, for the benchmarks file.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let nofile = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map(|(soft, hard)| format!("{soft}/{hard}"))
        .unwrap_or_else(|_| "unknown".into());
    format!("{cores} cores ({cpu}), {mem_gib:.0} GiB memory, open-file limit (soft/hard) {nofile}")
}

fn cell(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
}

/// The benchmarks table: one row per report, then the ratios per scenario.
pub fn markdown(reports: &[Report], commands: &[String]) -> String {
    let mut out = String::from("# Benchmarks\n\n");
    out.push_str(
        "Measured by `scripts/bench`, which writes this file. Every figure comes from one run ",
    );
    out.push_str("on one machine, servers and load generator side by side, so ratios within a ");
    out.push_str("run mean more than absolute numbers.\n\n");
    out.push_str(&format!("Machine: {}.\n\n", machine()));
    out.push_str("| scenario | target | nodes | connections | failed | RSS/conn (KiB) | delivered/s | CPU µs/delivery | p50 ms | p99 ms | p99.9 ms | max ms | lost | dup | reordered | resume s |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in reports {
        let l = r.latency_ms;
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.scenario,
            r.target,
            r.nodes,
            r.connections,
            r.connect_failures,
            cell(r.rss_bytes_per_conn.map(|b| b / 1024.0), 2),
            cell(r.delivered_per_s, 0),
            cell(r.cpu_us_per_delivery, 2),
            cell(l.map(|l| l.p50), 2),
            cell(l.map(|l| l.p99), 2),
            cell(l.map(|l| l.p999), 2),
            cell(l.map(|l| l.max), 2),
            r.lost,
            r.duplicated,
            r.reordered,
            cell(r.resume_s, 2),
        ));
    }
    out.push_str(&targets(reports));
    out.push_str("\n## Marquee relative to Socket.IO (same workload, same run)\n\n");
    let mut any = false;
    for m in reports.iter().filter(|r| r.target == "marquee") {
        if let Some(s) = reports
            .iter()
            .find(|s| s.target == "socketio" && s.scenario == m.scenario)
        {
            any = true;
            out.push_str(&format!("```text\n{}```\n\n", ratios(m, s)));
        }
    }
    if !any {
        out.push_str("No Socket.IO run in this set.\n\n");
    }
    out.push_str(&against_the_floor(reports));
    out.push_str(&onsales(reports));
    out.push_str("## Notes\n\n");
    for r in reports {
        for note in &r.notes {
            out.push_str(&format!("- {} / {}: {note}\n", r.scenario, r.target));
        }
    }
    out.push_str("\n## Commands\n\n```sh\n");
    for c in commands {
        out.push_str(&format!("{c}\n"));
    }
    out.push_str("```\n");
    out
}

/// Server CPU per delivered message, each target against the floor of the same workload.
fn against_the_floor(reports: &[Report]) -> String {
    let mut out = String::new();
    for floor in reports.iter().filter(|r| r.target == "floor") {
        let Some(base) = floor.cpu_us_per_delivery.filter(|b| *b > 0.0) else {
            continue;
        };
        if out.is_empty() {
            out.push_str("## Server CPU per delivered message, against the floor\n\n");
            out.push_str("The floor writes each publication's pre-framed bytes to every socket and does nothing else (`loadtest/README.md`). CPU time is read from `/proc` of each server process over the publishing window; the ratio to the floor is the figure to drive down.\n\n");
            out.push_str(
                "| scenario | target | CPU µs per delivery | × floor |\n|---|---|---|---|\n",
            );
        }
        for r in reports.iter().filter(|r| r.scenario == floor.scenario) {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                r.scenario,
                r.target,
                cell(r.cpu_us_per_delivery, 2),
                cell(r.cpu_us_per_delivery.map(|c| c / base), 2),
            ));
        }
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// The onsale runs: invariants, figures, faults and what each process used.
fn onsales(reports: &[Report]) -> String {
    let runs: Vec<(&Report, &Value)> = reports
        .iter()
        .filter_map(|r| Some((r, r.onsale.as_ref()?)))
        .collect();
    if runs.is_empty() {
        return String::new();
    }
    let ms = |v: &Value| {
        if v.is_null() {
            "–".to_owned()
        } else {
            format!(
                "{} / {} / {}",
                cell(v["p50"].as_f64(), 0),
                cell(v["p99"].as_f64(), 0),
                cell(v["max"].as_f64(), 0)
            )
        }
    };
    let mut out = String::from("## The whole onsale\n\n");
    out.push_str("Latencies in ms as p50 / p99 / max. Every invariant is a count that must be 0 (`loadtest/README.md`).\n\n");
    out.push_str("| run | buyers | tickets | sold | sell-out s | holds/s peak / mean | join ack | admit to hold | hold result | checkout to paid | payment to ticket | peak waiting | peak connections | invariants |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (r, o) in &runs {
        let f = &o["figures"];
        let broken: Vec<String> = o["invariants"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| v.as_u64() != Some(0))
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.scenario,
            r.params["buyers"],
            f["capacity"],
            f["sold"],
            cell(f["sell_out_s"].as_f64(), 1),
            f["holds_per_s"]["peak"],
            cell(f["holds_per_s"]["mean"].as_f64(), 0),
            ms(&f["join_ack_ms"]),
            ms(&f["admit_to_hold_ms"]),
            ms(&f["hold_result_ms"]),
            ms(&f["checkout_to_paid_ms"]),
            ms(&f["payment_to_ticket_ms"]),
            f["peak_waiting"],
            f["peak_connections"],
            if broken.is_empty() {
                "all 0".to_owned()
            } else {
                format!("**{}**", broken.join(", "))
            },
        ));
    }
    for (r, o) in &runs {
        let faults = o["faults"].as_array().cloned().unwrap_or_default();
        if !faults.is_empty() {
            out.push_str(&format!(
                "\nFaults in `{}` (recovery: until the next hold committed):\n\n",
                r.scenario
            ));
            for fault in faults {
                out.push_str(&format!(
                    "- {} at {} s: recovered after {} s\n",
                    fault["what"].as_str().unwrap_or("?"),
                    cell(fault["at_s"].as_f64(), 1),
                    cell(fault["recovered_after_s"].as_f64(), 2),
                ));
            }
        }
        if let Some(procs) = o["processes"].as_object() {
            let list: Vec<String> = procs
                .iter()
                .map(|(name, u)| {
                    format!(
                        "{name} {} CPU s, {} MiB peak",
                        cell(u["cpu_s"].as_f64(), 1),
                        cell(u["peak_rss_mib"].as_f64(), 0)
                    )
                })
                .collect();
            out.push_str(&format!(
                "\nProcesses in `{}`: {}.\n",
                r.scenario,
                list.join("; ")
            ));
        }
    }
    out.push('\n');
    out
}

/// The hub's performance targets, checked against the reports of the standard suite.
fn targets(reports: &[Report]) -> String {
    let find = |scenario: &str, target: &str| {
        reports
            .iter()
            .find(|r| r.scenario == scenario && r.target == target)
    };
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "not measured",
    };
    let mut rows = Vec::new();
    let big = find("connections-100k", "marquee");
    rows.push((
        "100,000 idle subscribed connections (one process holds at most ~19,000 sockets here, so they spread over several nodes)".to_owned(),
        big.map_or("–".into(), |r| {
            format!(
                "{} open, {} failed, on {} nodes, {:.2} KiB per connection",
                r.connections,
                r.connect_failures,
                r.nodes,
                r.rss_bytes_per_conn.unwrap_or(0.0) / 1024.0
            )
        }),
        verdict(big.map(|r| {
            r.connections >= 100_000
                && r.connect_failures == 0
                && r.rss_bytes_per_conn.is_some_and(|b| b <= 8.0 * 1024.0)
        })),
    ));
    let rss = find("connections", "marquee").and_then(|r| r.rss_bytes_per_conn);
    rows.push((
        "server RSS per idle subscribed connection <= 8 KiB".to_owned(),
        rss.map_or("–".into(), |b| format!("{:.2} KiB", b / 1024.0)),
        verdict(rss.map(|b| b <= 8.0 * 1024.0)),
    ));
    for scenario in ["fanout-floor", "fanout-latency"] {
        let p99 = find(scenario, "marquee").and_then(|r| r.latency_ms.map(|l| l.p99));
        let rate = find(scenario, "marquee").map(|r| r.params["rate"].clone());
        rows.push((
            format!(
                "{scenario}: p99 publish-to-receive <= 50 ms at 10k subscribers (rate {})",
                rate.unwrap_or_default()
            ),
            p99.map_or("–".into(), |v| format!("{v:.1} ms")),
            verdict(p99.map(|v| v <= 50.0)),
        ));
    }
    let ratio = match (
        find("fanout-throughput", "marquee").and_then(|r| r.delivered_per_s),
        find("fanout-throughput", "socketio").and_then(|r| r.delivered_per_s),
    ) {
        (Some(m), Some(s)) if s > 0.0 => Some(m / s),
        _ => None,
    };
    rows.push((
        "delivered/s >= 5x Socket.IO on the same workload".to_owned(),
        ratio.map_or("–".into(), |r| format!("{r:.2}x")),
        verdict(ratio.map(|r| r >= 5.0)),
    ));
    let resume = find("resume", "marquee");
    rows.push((
        "resume after a node kill: 0 lost, 0 duplicated".to_owned(),
        resume.map_or("–".into(), |r| {
            format!("{} lost, {} duplicated", r.lost, r.duplicated)
        }),
        verdict(resume.map(|r| r.lost == 0 && r.duplicated == 0 && r.reordered == 0)),
    ));
    let mut out = String::from("\n## Targets\n\n| target | measured | verdict |\n|---|---|---|\n");
    for (what, measured, verdict) in rows {
        out.push_str(&format!("| {what} | {measured} | {verdict} |\n"));
    }
    out
}
