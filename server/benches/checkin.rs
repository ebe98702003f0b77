//! Check-in benchmark: how long the server takes to decide a scan.
//!
//! Real parts: a fresh Postgres database (next to `DATABASE_URL`'s, dropped afterwards) with one
//! event of `--tickets` sold seats, and the check-in code a node runs for `checkin.scan` and
//! `POST /v1/checkin` ([`Checkin::scan`]): the Ed25519 check of the code, then one transaction
//! that locks the ticket row, checks it in, records the scan and writes its `gate:{event}`
//! notice to the outbox. Measured in process, so the figure is the server's own time per scan,
//! without a network hop or a WebSocket frame.
//!
//! Three runs, each over every ticket once: scans that admit (the common case at a door), the
//! same codes again (`already_checked_in`), and `--gates` gates scanning at once (admitting).
//! Also the signature check alone.
//!
//! Run: `cargo bench -p marquee-server --bench checkin -- [--tickets N] [--gates G]
//! [--markdown FILE]`.

mod common;

use common::{report_in_fresh_database, seed};
use hdrhistogram::Histogram;
use marquee_protocol::checkin::{Scan, ScanOutcome};
use marquee_server::ticket_code::{TicketClaim, TicketKey};
use marquee_server::tickets::checkin::Checkin;
use sqlx::PgPool;
use std::time::Instant;
use uuid::Uuid;

/// Options (`cargo bench -p marquee-server --bench checkin -- --help`).
#[derive(clap::Parser)]
struct Args {
    /// Tickets sold (one scan each per run).
    #[arg(long, default_value_t = 5_000)]
    tickets: i32,
    /// Gates scanning at once in the concurrent run.
    #[arg(long, default_value_t = 8)]
    gates: usize,
    /// Also write the report to this file.
    #[arg(long)]
    markdown: Option<String>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// p50 / p99 / max in milliseconds.
fn summary(h: &Histogram<u64>) -> String {
    format!(
        "{:.3} / {:.3} / {:.3}",
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0
    )
}

/// Sells every seat of the event to one order and issues a ticket per seat; their codes.
async fn sell_all(
    pool: &PgPool,
    tenant: Uuid,
    event: Uuid,
    key: &TicketKey,
) -> anyhow::Result<Vec<String>> {
    let order: Uuid = sqlx::query_scalar(
        "insert into ticket_order (tenant_id, event_id, user_id, status, total_minor, currency)
         values ($1, $2, 'fan', 'paid', 0, 'EUR') returning ticket_order_id",
    )
    .bind(tenant)
    .bind(event)
    .fetch_one(pool)
    .await?;
    let tickets: Vec<Uuid> = sqlx::query_scalar(
        "insert into ticket (ticket_id, tenant_id, event_id, ticket_order_id, ticket_type_id, seat_id, holder)
         select gen_random_uuid(), $1, $2, $3, t.ticket_type_id, s.seat_id, 'fan'
         from seat s, ticket_type t where s.event_id = $2 and t.event_id = $2
         returning ticket_id",
    )
    .bind(tenant)
    .bind(event)
    .bind(order)
    .fetch_all(pool)
    .await?;
    Ok(tickets
        .into_iter()
        .map(|ticket| {
            key.sign(&TicketClaim {
                ticket,
                event,
                version: 1,
            })
        })
        .collect())
}

fn scan(qr: &str, id: String, event: Uuid) -> Scan {
    Scan {
        qr: qr.to_owned(),
        scan_id: id,
        event: Some(event.to_string()),
        scanned_at: None,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = <Args as clap::Parser>::parse();
    let markdown = args.markdown.clone();
    report_in_fresh_database(
        markdown.as_deref(),
        |url| async move { run(&args, &url).await },
    )
    .await
}

async fn run(args: &Args, url: &str) -> anyhow::Result<String> {
    let pool = marquee_server::db::connect(url, 16, "bench").await?;
    marquee_server::db::migrate(&pool).await?;
    let (tenant, event) = seed(&pool, args.tickets, "10 minutes").await?;
    let key = TicketKey::from_seed(&rand::random());
    let codes = sell_all(&pool, tenant, event, &key).await?;
    let checkin = Checkin {
        db: pool.clone(),
        key: key.clone(),
    };

    // The signature check alone.
    let mut verify = histogram();
    for code in &codes {
        let t = Instant::now();
        key.verify(code).map_err(|e| anyhow::anyhow!("{e}"))?;
        verify.record((t.elapsed().as_nanos() as u64 / 1000).max(1))?;
    }

    // Warm the pool's connections and statements (not measured).
    for (i, code) in codes.iter().take(50).enumerate() {
        checkin
            .scan(
                tenant,
                "warm",
                &scan(code, format!("warm-{i}"), Uuid::nil()),
            )
            .await?;
    }

    // Every ticket once, one gate: each scan admits.
    let half = codes.len() / 2;
    let mut admit = histogram();
    for (i, code) in codes[..half].iter().enumerate() {
        let t = Instant::now();
        let result = checkin
            .scan(tenant, "gate-1", &scan(code, format!("a-{i}"), event))
            .await?;
        admit.record((t.elapsed().as_micros() as u64).max(1))?;
        anyhow::ensure!(
            matches!(result.outcome, ScanOutcome::Admitted { .. }),
            "admitted"
        );
    }
    // The same codes again: each answers already_checked_in.
    let mut again = histogram();
    for (i, code) in codes[..half].iter().enumerate() {
        let t = Instant::now();
        let result = checkin
            .scan(tenant, "gate-2", &scan(code, format!("b-{i}"), event))
            .await?;
        again.record((t.elapsed().as_micros() as u64).max(1))?;
        anyhow::ensure!(
            matches!(result.outcome, ScanOutcome::AlreadyCheckedIn { .. }),
            "already checked in"
        );
    }
    // The other half, `gates` gates at once.
    let mut concurrent = histogram();
    let chunks: Vec<Vec<(usize, String)>> = {
        let rest: Vec<(usize, String)> = codes[half..].iter().cloned().enumerate().collect();
        let per = rest.len().div_ceil(args.gates.max(1));
        rest.chunks(per.max(1)).map(<[_]>::to_vec).collect()
    };
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (g, chunk) in chunks.into_iter().enumerate() {
        let checkin = checkin.clone();
        tasks.spawn(async move {
            let mut h = histogram();
            for (i, code) in chunk {
                let t = Instant::now();
                let result = checkin
                    .scan(
                        tenant,
                        &format!("gate-c{g}"),
                        &scan(&code, format!("c-{i}"), event),
                    )
                    .await?;
                h.record((t.elapsed().as_micros() as u64).max(1))?;
                anyhow::ensure!(
                    matches!(result.outcome, ScanOutcome::Admitted { .. }),
                    "admitted"
                );
            }
            anyhow::Ok(h)
        });
    }
    while let Some(done) = tasks.join_next().await {
        concurrent.add(done??)?;
    }
    let concurrent_rate = concurrent.len() as f64 / started.elapsed().as_secs_f64();
    let checked_in: i64 =
        sqlx::query_scalar("select count(*) from ticket where checked_in_at is not null")
            .fetch_one(&pool)
            .await?;

    Ok(format!(
        "## Check-in\n\n\
         Command: `cargo bench -p marquee-server --bench checkin -- --tickets {tickets} --gates {gates}`\n\n\
         The server's own time per scan, measured in process around the call a node makes for \
         `checkin.scan` and `POST /v1/checkin`: the Ed25519 check of the code, then one Postgres \
         transaction (lock the ticket, check it in, record the scan, write its `gate:` notice to \
         the outbox). Postgres and the benchmark share this 2-core machine.\n\n\
         | Measure | p50 / p99 / max (ms) | Target |\n|---|---|---|\n\
         | Signature check alone ({n_verify} codes) | {verify} | – |\n\
         | Scan that admits, one gate ({n_admit} scans) | {admit} | p99 ≤ 1 ms |\n\
         | Scan of a ticket already in, one gate ({n_again} scans) | {again} | p99 ≤ 1 ms |\n\
         | Scan that admits, {gates} gates at once ({n_conc} scans, {rate:.0} scans/s) | {conc} | – |\n\n\
         Tickets checked in at the end: {checked_in} of {tickets} (each exactly once).\n",
        tickets = args.tickets,
        gates = args.gates,
        n_verify = verify.len(),
        verify = summary(&verify),
        n_admit = admit.len(),
        admit = summary(&admit),
        n_again = again.len(),
        again = summary(&again),
        n_conc = concurrent.len(),
        conc = summary(&concurrent),
        rate = concurrent_rate,
    ))
}
