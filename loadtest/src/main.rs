//! `marquee-loadtest`: run a scenario against Marquee, Socket.IO, or both.

use clap::{Parser, Subcommand, ValueEnum};
use marquee_loadtest::report::{self, Report};
use marquee_loadtest::scenarios::{self, Common, ConnectionsArgs, FanoutArgs, ResumeArgs};
use marquee_loadtest::wire::Target;
use marquee_loadtest::worker;

/// Load tests for Marquee hubs, side by side with Socket.IO.
#[derive(Debug, Parser)]
#[command(name = "marquee-loadtest", version, about)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    Marquee,
    Socketio,
    /// The bare program that only writes pre-framed messages (`fanout` only).
    Floor,
    /// Marquee and Socket.IO.
    Both,
    /// Marquee, Socket.IO and the floor (`fanout` only).
    All,
}

impl Which {
    fn targets(self) -> Vec<Target> {
        match self {
            Self::Marquee => vec![Target::Marquee],
            Self::Socketio => vec![Target::Socketio],
            Self::Floor => vec![Target::Floor],
            Self::Both => vec![Target::Marquee, Target::Socketio],
            Self::All => vec![Target::Marquee, Target::Socketio, Target::Floor],
        }
    }
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Open N idle, subscribed connections; report connect rate and server memory.
    Connections {
        #[command(flatten)]
        args: ConnectionsArgs,
        /// Server to load.
        #[arg(long, value_enum, default_value = "marquee")]
        target: Which,
        #[command(flatten)]
        common: Common,
    },
    /// N subscribers on one channel, a publisher at M/s; report throughput, latency, loss.
    Fanout {
        #[command(flatten)]
        args: FanoutArgs,
        /// Server to load.
        #[arg(long, value_enum, default_value = "marquee")]
        target: Which,
        #[command(flatten)]
        common: Common,
    },
    /// Kill one of two Marquee nodes under load; report resume time, loss and duplicates.
    Resume {
        #[command(flatten)]
        args: ResumeArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Writes the benchmarks table (Markdown) from JSON reports of earlier runs.
    Markdown {
        /// JSON files written with `--json`.
        #[arg(required = true)]
        inputs: Vec<std::path::PathBuf>,
        /// The commands that produced them, listed in the file.
        #[arg(long)]
        command: Vec<String>,
        /// Where to write (default: stdout).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// The figures of a new `BENCHMARKS.md` more than 10 % worse than in an earlier one, as
    /// the Markdown section `scripts/bench` appends (each also on stderr).
    Compare {
        /// The earlier file (`scripts/bench`: the committed `BENCHMARKS.md`).
        baseline: std::path::PathBuf,
        /// The new file.
        current: std::path::PathBuf,
    },
    /// A whole onsale against a cluster it starts (2 hub nodes, 2 workers, a private Redis
    /// and PostgreSQL), with faults; checks every invariant and exits non-zero if one broke.
    Onsale {
        #[command(flatten)]
        args: marquee_loadtest::onsale::OnsaleArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Internal: a client process of the onsale scenario's buyers.
    #[command(hide = true)]
    OnsaleBuyers {
        /// The buyers' assignment, as JSON.
        #[arg(long)]
        spec: String,
    },
    /// Internal: the fan-out floor (a bare program writing pre-framed messages).
    #[command(hide = true)]
    Floor {
        /// Where to listen.
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
    /// Internal: a client worker process.
    #[command(hide = true)]
    Worker {
        /// The worker's assignment, as JSON.
        #[arg(long)]
        spec: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let (reports, common) = match cli.scenario {
        Scenario::Worker { spec } => return worker::run(serde_json::from_str(&spec)?).await,
        Scenario::Floor { listen } => return marquee_loadtest::floor::serve(listen).await,
        Scenario::OnsaleBuyers { spec } => {
            let output = marquee_loadtest::onsale::buyers::run(serde_json::from_str(&spec)?).await;
            println!("{}", serde_json::to_string(&output)?);
            return Ok(());
        }
        Scenario::Onsale { args, common } => {
            let (report, ok) = marquee_loadtest::onsale::run(&args, &common).await?;
            finish(std::slice::from_ref(&report), &common)?;
            if let Some(onsale) = &report.onsale {
                for part in [
                    "invariants",
                    "figures",
                    "faults",
                    "processes",
                    "findings",
                    "client_errors",
                ] {
                    println!("{part}: {}", onsale[part]);
                }
            }
            anyhow::ensure!(ok, "an invariant broke: see the report");
            return Ok(());
        }
        Scenario::Markdown {
            inputs,
            command,
            out,
        } => {
            let mut reports: Vec<Report> = Vec::new();
            for path in inputs {
                let text = std::fs::read_to_string(&path)?;
                reports.extend(serde_json::from_str::<Vec<Report>>(&text)?);
            }
            let table = report::markdown(&reports, &command);
            match out {
                Some(path) => std::fs::write(path, table)?,
                None => print!("{table}"),
            }
            return Ok(());
        }
        Scenario::Compare { baseline, current } => {
            let (baseline, current) = (
                std::fs::read_to_string(baseline)?,
                std::fs::read_to_string(current)?,
            );
            for line in marquee_loadtest::baseline::regressions(&baseline, &current) {
                eprintln!("worse: {line}");
            }
            print!(
                "{}",
                marquee_loadtest::baseline::section(&baseline, &current)
            );
            return Ok(());
        }
        Scenario::Connections {
            args,
            target,
            common,
        } => {
            anyhow::ensure!(
                !target.targets().contains(&Target::Floor),
                "the floor serves the fan-out scenario only"
            );
            let run = async |t| scenarios::connections(t, &args, &common).await;
            (each(target, run).await?, common)
        }
        Scenario::Fanout {
            args,
            target,
            common,
        } => {
            let run = async |t| scenarios::fanout(t, &args, &common).await;
            (each(target, run).await?, common)
        }
        Scenario::Resume { args, common } => {
            (vec![scenarios::resume(&args, &common).await?], common)
        }
    };
    finish(&reports, &common)
}

/// Runs a scenario against each target in turn (Marquee first), on the same machine.
async fn each(
    which: Which,
    run: impl AsyncFn(Target) -> anyhow::Result<Report>,
) -> anyhow::Result<Vec<Report>> {
    let mut reports = Vec::new();
    for target in which.targets() {
        reports.push(run(target).await?);
    }
    Ok(reports)
}

fn finish(reports: &[Report], common: &Common) -> anyhow::Result<()> {
    for r in reports {
        println!("{}", r.summary());
    }
    if let [m, s] = reports
        && m.target == "marquee"
        && s.target == "socketio"
    {
        println!("{}", report::ratios(m, s));
    }
    if let Some(path) = &common.json {
        std::fs::write(path, serde_json::to_string_pretty(reports)?)?;
    }
    if let Some(path) = &common.html {
        let title = format!("Marquee load test: {}", reports[0].scenario);
        std::fs::write(path, report::html(&title, reports))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
