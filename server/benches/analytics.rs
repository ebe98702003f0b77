//! Analytics benchmark: how long the operators' reports take on an event of `--orders` paid
//! orders.
//!
//! Real parts: a fresh Postgres database (next to `DATABASE_URL`'s, dropped afterwards) with
//! one event of as many seats as orders, an onsale behind a waiting room with 1.5 joins per
//! order and 1.2 admissions per order, a hold per order, and the orders themselves (one seat
//! each, paid over two hours, one in twenty refunded), written with `generate_series` and
//! then `ANALYZE`d; and the queries the routes run ([`sales_of`], [`timeline_of`],
//! [`funnel_of`]), called in process: the figure is the server's own time per report,
//! without HTTP. Each report runs `--runs` times; the median and the slowest are reported,
//! with how the plan reads its tables.
//!
//! Run: `cargo bench -p marquee-server --bench analytics -- [--orders N] [--runs R]
//! [--markdown FILE]`.

mod common;

use common::{report_in_fresh_database, seed};
use marquee_server::analytics::report::{Interval, funnel_of, timeline_of};
use marquee_server::analytics::sales_of;
use sqlx::PgPool;
use std::time::Instant;
use uuid::Uuid;

/// Options (`cargo bench -p marquee-server --bench analytics -- --help`).
#[derive(clap::Parser)]
struct Args {
    /// Paid orders (one seat each).
    #[arg(long, default_value_t = 100_000)]
    orders: i32,
    /// Runs of each report.
    #[arg(long, default_value_t = 11)]
    runs: usize,
    /// Also write the report to this file.
    #[arg(long)]
    markdown: Option<String>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Fills the event: joins, admissions, holds, orders and their items.
async fn fill(pool: &PgPool, tenant: Uuid, event: Uuid, orders: i32) -> anyhow::Result<Uuid> {
    let onsale: Uuid = sqlx::query_scalar(
        "update onsale set requires_admission = true where event_id = $1 returning onsale_id",
    )
    .bind(event)
    .fetch_one(pool)
    .await?;
    let start = "now() - interval '3 hours'";
    let statements = [
        format!(
            "insert into queue_join (onsale_id, tenant_id, user_id, place_id, joined_at)
             select $1, $2, 'u' || i, 'p' || i, {start} + i * interval '50 milliseconds'
             from generate_series(1, $3 * 3 / 2) i"
        ),
        format!(
            "insert into admission (tenant_id, onsale_id, user_id, place_id, seq, ordinal, admitted_at)
             select $2, $1, 'u' || i, 'p' || i, i, i, {start} + interval '5 minutes' + i * interval '60 milliseconds'
             from generate_series(1, $3 * 6 / 5) i"
        ),
        format!(
            "insert into hold (hold_id, tenant_id, event_id, onsale_id, user_id, status, expires_at, created_at)
             select gen_random_uuid(), $2, $4, $1, 'u' || i, 'converted',
                    {start} + interval '20 minutes', {start} + interval '6 minutes' + i * interval '60 milliseconds'
             from generate_series(1, $3) i"
        ),
        "insert into ticket_order (tenant_id, event_id, user_id, hold_id, status, total_minor, currency,
                                   paid_at, created_at, updated_at)
         select h.tenant_id, h.event_id, h.user_id, h.hold_id,
                (case when row_number() over (order by h.created_at) % 20 = 0
                      then 'refunded' else 'paid' end)::order_status,
                5000, 'EUR', h.created_at + interval '30 seconds', h.created_at,
                h.created_at + interval '40 minutes'
         from hold h where h.event_id = $4"
            .to_owned(),
        "insert into ticket_order_item (tenant_id, event_id, ticket_order_id, ticket_type_id, seat_id,
                                        quantity, unit_minor)
         select o.tenant_id, o.event_id, o.ticket_order_id, t.ticket_type_id, s.seat_id, 1, 5000
         from (select o.*, row_number() over (order by o.created_at) - 1 as n
               from ticket_order o where o.event_id = $4) o
         join seat s on s.event_id = o.event_id and s.seat_index = o.n
         join ticket_type t on t.event_id = o.event_id and t.kind = 'seated'"
            .to_owned(),
    ];
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(onsale)
            .bind(tenant)
            .bind(orders)
            .bind(event)
            .execute(pool)
            .await?;
    }
    sqlx::query("analyze").execute(pool).await?;
    Ok(onsale)
}

/// Median and slowest of `runs` runs of `report`, in milliseconds.
async fn time<F, Fut, T>(runs: usize, mut report: F) -> anyhow::Result<(f64, f64, T)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let mut took = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        last = Some(report().await?);
        took.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    took.sort_by(f64::total_cmp);
    Ok((
        took[took.len() / 2],
        *took.last().expect("one run at least"),
        last.expect("one run at least"),
    ))
}

/// How a statement's plan reads its tables (each scan, with its index if any).
async fn indexes(pool: &PgPool, sql: &str, binds: (Uuid, Uuid)) -> anyhow::Result<String> {
    let plan: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!("explain {sql}")))
        .bind(binds.0)
        .bind(binds.1)
        .fetch_all(pool)
        .await?;
    let mut names: Vec<String> = plan
        .iter()
        .filter(|(line,)| line.contains(" Scan "))
        .filter_map(|(line,)| line.split("  (cost").next())
        .map(|scan| scan.trim().trim_start_matches("->").trim().to_owned())
        .collect();
    names.sort();
    names.dedup();
    Ok(names.join(", "))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    use clap::Parser as _;
    let args = Args::parse();
    report_in_fresh_database(args.markdown.as_deref(), |url| async move {
        let pool = PgPool::connect(&url).await?;
        marquee_server::db::MIGRATOR.run(&pool).await?;
        let (tenant, event) = seed(&pool, args.orders, "10 minutes").await?;
        let filled = Instant::now();
        let onsale = fill(&pool, tenant, event, args.orders).await?;
        let fill_s = filled.elapsed().as_secs_f64();
        let runs = args.runs;
        let (sales_p50, sales_max, sales) = time(runs, || sales_of(&pool, event)).await?;
        let (hour_p50, hour_max, hours) =
            time(runs, || timeline_of(&pool, event, Interval::Hour)).await?;
        let (minute_p50, minute_max, minutes) =
            time(runs, || timeline_of(&pool, event, Interval::Minute)).await?;
        let (funnel_p50, funnel_max, (steps, queue)) =
            time(runs, || funnel_of(&pool, onsale, event, true)).await?;
        let sold: i64 = hours.iter().map(|r| r.sold).sum();
        anyhow::ensure!(sold == i64::from(args.orders), "the timeline counts {sold} sold");
        anyhow::ensure!(
            sales.orders.values().sum::<i64>() == i64::from(args.orders),
            "the sales count {:?}",
            sales.orders
        );
        let paid = steps.last().map_or(0, |s| s.buyers);
        anyhow::ensure!(paid == i64::from(args.orders), "the funnel counts {paid} paid");
        let timeline_sql = "select count(*) from ticket_order o
             join ticket_order_item i on i.event_id = o.event_id and i.ticket_order_id = o.ticket_order_id
             where o.event_id = $1 and o.paid_at is not null and $2::uuid is not null";
        let funnel_sql = "select (select count(distinct a.user_id) from admission a
                 join queue_join j on j.onsale_id = a.onsale_id and j.place_id = a.place_id
                 where a.onsale_id = $1),
               (select count(distinct user_id) from hold where onsale_id = $1),
               (select count(*) from ticket_order where event_id = $2 and paid_at is not null)";
        let timeline_indexes = indexes(&pool, timeline_sql, (event, event)).await?;
        let funnel_indexes = indexes(&pool, funnel_sql, (onsale, event)).await?;
        let queue = queue.map_or("none".to_owned(), |q| {
            format!("p50 {:.0} s, p90 {:.0} s", q.p50_s, q.p90_s)
        });
        Ok(format!(
            "## Analytics\n\n\
             `cargo bench -p marquee-server --bench analytics -- --orders {orders} --runs {runs}`: one \
             event of {orders} paid orders (one seat each, a twentieth refunded) and its onsale's \
             {joins} joins and {admissions} admissions, written with `generate_series` and analysed \
             in {fill_s:.1} s; each report {runs} times, in process (no HTTP).\n\n\
             | report | median ms | slowest ms | rows | scans (the main join's plan) |\n\
             |---|---|---|---|---|\n\
             | sales now (`/sales`) | {sales_p50:.1} | {sales_max:.1} | {categories} categories | (seat claims, holds, orders by event) |\n\
             | timeline by hour | {hour_p50:.1} | {hour_max:.1} | {hour_rows} | {timeline_indexes} |\n\
             | timeline by minute | {minute_p50:.1} | {minute_max:.1} | {minute_rows} | {timeline_indexes} |\n\
             | funnel | {funnel_p50:.1} | {funnel_max:.1} | {steps_n} steps; queue time {queue} | {funnel_indexes} |\n",
            orders = args.orders,
            joins = args.orders * 3 / 2,
            admissions = args.orders * 6 / 5,
            categories = sales.categories.len(),
            hour_rows = hours.len(),
            minute_rows = minutes.len(),
            steps_n = steps.len(),
        ))
    })
    .await
}
