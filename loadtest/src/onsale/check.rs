//! What the onsale scenario checks after a run: the invariants (each a count that must be 0),
//! from Postgres and from what the buyers saw, and the figures of the report.

use super::buyers::BuyerRecord;
use serde_json::{Value, json};
use sqlx::PgPool;

/// The invariants, each a count of violations.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Invariants {
    /// Seats claimed beyond a category's seats, or standing tickets held and sold beyond
    /// their quota.
    pub oversold: u64,
    /// Seats in two live claims or two valid tickets.
    pub double_sold: u64,
    /// Commands a buyer sent that got no result, or more than one. A command still without one
    /// when its buyer stopped at the deadline counts only if no result was ever stored for it
    /// (see `decided_late`): one decided after the buyer stopped listening was not lost, nor
    /// one no server ever accepted (see `never_accepted`).
    pub lost_results: u64,
    /// A request id that took effect twice (a buyer with two holds: each sends one).
    pub duplicated_effects: u64,
    /// Positions that went up without a reason code.
    pub position_regressions: u64,
    /// Valid tickets of orders that are not paid.
    pub unpaid_tickets: u64,
    /// Paid orders without tickets.
    pub paid_without_tickets: u64,
    /// Checkouts whose payment was never started, and owed effects never carried out.
    pub missed_side_effects: u64,
    /// Places that came back within the grace period and found another place.
    pub lost_places: u64,
    /// The pre-queue's published order against its revealed seed (the order must be the
    /// seed's, the seed the one committed to), pre-queue places missing from it, and the
    /// admission record against queue order (sequences must rise in the order admissions were
    /// made, and the pre-queue's sequence `i` must be the draw's place `i`).
    pub order_violations: u64,
}

/// Admissions out of queue order, from the `admission` record in the order the line made them
/// (`ordinal`): a sequence not above the one admitted before it, or a pre-queue sequence held by another place than the draw put there.
pub async fn admission_order(
    db: &PgPool,
    draw: Option<&str>,
    findings: &mut Vec<String>,
) -> anyhow::Result<u64> {
    use marquee_server::waiting_room::shuffle::PublishedOrder;
    let order: Vec<String> = draw
        .and_then(|d| serde_json::from_str::<PublishedOrder>(d).ok())
        .map(|p| p.order)
        .unwrap_or_default();
    let admitted: Vec<(i64, String)> =
        sqlx::query_as("select seq, place_id from admission order by ordinal, admission_id")
            .fetch_all(db)
            .await?;
    let mut violations = 0;
    let mut last = 0;
    for (seq, place) in admitted {
        if seq <= last {
            violations += 1;
            findings.push(format!(
                "place {place} admitted at sequence {seq} after sequence {last}"
            ));
        }
        last = last.max(seq);
        if let Some(drawn) = usize::try_from(seq - 1).ok().and_then(|i| order.get(i))
            && *drawn != place
        {
            violations += 1;
            findings.push(format!(
                "sequence {seq} admitted as place {place}; the draw put {drawn} there"
            ));
        }
    }
    Ok(violations)
}

/// The pre-queue checked against the revealed seed: 1 if the published order is not the
/// seed's (or the record cannot be read), plus every pre-queue place it leaves out.
pub fn order_violations(
    draw: Option<&str>,
    records: &[BuyerRecord],
    findings: &mut Vec<String>,
) -> u64 {
    use marquee_server::waiting_room::shuffle::{PublishedOrder, verify};
    let Some(published) = draw.and_then(|d| serde_json::from_str::<PublishedOrder>(d).ok()) else {
        findings.push(format!("the draw record could not be read: {draw:?}"));
        return 1;
    };
    let mut violations = 0;
    if let Err(e) = verify(&published) {
        violations += 1;
        findings.push(format!("the published order is not its seed's: {e}"));
    }
    let listed: std::collections::HashSet<&str> =
        published.order.iter().map(String::as_str).collect();
    for place in records
        .iter()
        .filter(|r| r.early && r.joined_pre_queue)
        .filter_map(|r| r.place.as_deref())
        .filter(|place| !listed.contains(place))
    {
        violations += 1;
        findings.push(format!("pre-queue place {place} is missing from the draw"));
    }
    violations
}

impl Invariants {
    /// Whether every invariant held: every count in the report is 0 (read from the report
    /// itself, so a new invariant can never be left out of the verdict).
    pub fn all_zero(&self) -> bool {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .is_some_and(|counts| counts.values().all(|n| n.as_u64() == Some(0)))
    }
}

async fn count(db: &PgPool, sql: &'static str) -> anyhow::Result<u64> {
    let n: i64 = sqlx::query_scalar(sql).fetch_one(db).await?;
    Ok(n.max(0) as u64)
}

/// Of the commands still without a result when their buyers stopped at the deadline, those
/// whose result was stored (decided after the buyer stopped listening), as `(user, request
/// id)`. Waits up to `within` for the workers to decide what was still queued.
pub async fn decided_late(
    db: &PgPool,
    records: &[BuyerRecord],
    within: std::time::Duration,
) -> anyhow::Result<std::collections::HashSet<(String, String)>> {
    let (users, ids): (Vec<String>, Vec<String>) = records
        .iter()
        .flat_map(|r| {
            r.unanswered_at_deadline
                .iter()
                .filter(|id| !r.results.contains_key(*id))
                .map(|id| (r.user.clone(), id.clone()))
        })
        .unzip();
    let until = std::time::Instant::now() + within;
    loop {
        let stored: Vec<(String, String)> = sqlx::query_as(
            "select user_id, request_id from processed_request
             where (user_id, request_id) in (select * from unnest($1::text[], $2::text[]))",
        )
        .bind(&users)
        .bind(&ids)
        .fetch_all(db)
        .await?;
        if stored.len() == ids.len() || std::time::Instant::now() >= until {
            return Ok(stored.into_iter().collect());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// Commands that got no result and were never decided because no server ever queued them:
/// every node asked answered `unavailable` (its queue out of reach) until the buyer stopped.
/// Not lost (the buyer was told, and nothing took effect), but a measure of the outage.
pub fn never_accepted(
    records: &[BuyerRecord],
    decided_late: &std::collections::HashSet<(String, String)>,
) -> usize {
    records
        .iter()
        .flat_map(|r| r.sent.iter().map(move |id| (r, id)))
        .filter(|(r, id)| {
            !r.results.contains_key(*id)
                && !r.accepted.contains(id)
                && !decided_late.contains(&(r.user.clone(), (*id).clone()))
        })
        .count()
}

/// Checks every invariant; what broke the order is described in `findings`. `decided_late`
/// is what [`decided_late`] found.
pub async fn invariants(
    db: &PgPool,
    draw: Option<&str>,
    records: &[BuyerRecord],
    decided_late: &std::collections::HashSet<(String, String)>,
    findings: &mut Vec<String>,
) -> anyhow::Result<Invariants> {
    let lost: Vec<(&BuyerRecord, &String, u32)> = records
        .iter()
        .flat_map(|r| r.sent.iter().map(move |id| (r, id)))
        .filter_map(|(r, id)| match r.results.get(id) {
            Some(n) if *n != 1 => Some((r, id, *n)),
            None if r.accepted.contains(id)
                && !decided_late.contains(&(r.user.clone(), id.clone())) =>
            {
                Some((r, id, 0))
            }
            _ => None,
        })
        .collect();
    for (r, id, n) in lost.iter().take(10) {
        // Whether a worker decided it, and when, against when the buyer sent it: a result
        // stored and never delivered, or a command that never reached a worker.
        let decided: Option<(f64, String)> = sqlx::query_as(
            "select extract(epoch from created_at)::float8 * 1000, result->>'outcome'
             from processed_request where user_id = $1 and request_id = $2",
        )
        .bind(&r.user)
        .bind(id.as_str())
        .fetch_optional(db)
        .await?;
        // The last hold's or the checkout's time (earlier refused holds share the last one's).
        let sent_ms = if r.hold_request.as_deref() == Some(id.as_str()) || r.checkout_sent.is_none()
        {
            r.hold_sent
        } else {
            r.checkout_sent
        };
        findings.push(format!(
            "{} request {id}: {n} results delivered (exactly one is owed); sent at {sent_ms:?} ms, decided {}; {} reconnects, {} sessions welcomed, lost connections {:?}; errors {:?}",
            r.user,
            decided.map_or("never".to_owned(), |(at, outcome)| format!("at {at:.0} ms ({outcome})")),
            r.reconnects,
            r.connects,
            r.disconnects,
            r.errors.iter().take(3).collect::<Vec<_>>(),
        ));
    }
    Ok(Invariants {
        order_violations: order_violations(draw, records, findings)
            + admission_order(db, draw, findings).await?,
        oversold: count(
            db,
            "select (select count(*) from (
                         select s.price_category_id from seat_claim c join seat s using (seat_id)
                         group by s.price_category_id
                         having count(*) > (select count(*) from seat s2
                                            where s2.price_category_id = s.price_category_id)) x)
                  + (select count(*) from ticket_type tt where tt.kind = 'general_admission' and (
                         tt.ga_sold + tt.ga_held > tt.ga_quota
                         or (select count(*) from ticket t where t.ticket_type_id = tt.ticket_type_id
                             and t.status = 'valid') > tt.ga_quota))",
        )
        .await?,
        double_sold: count(
            db,
            "select (select count(*) from (select seat_id from ticket
                                           where seat_id is not null and status = 'valid'
                                           group by seat_id having count(*) > 1) x)
                  + (select count(*) from (select seat_id from seat_claim
                                           group by seat_id having count(*) > 1) y)",
        )
        .await?,
        lost_results: lost.len() as u64,
        duplicated_effects: count(
            db,
            "select count(*) from (select user_id from hold group by user_id having count(*) > 1) x",
        )
        .await?,
        position_regressions: records
            .iter()
            .map(|r| u64::from(r.position_regressions))
            .sum(),
        unpaid_tickets: count(
            db,
            "select count(*) from ticket t join ticket_order o using (ticket_order_id)
             where t.status = 'valid' and o.status <> 'paid'",
        )
        .await?,
        paid_without_tickets: count(
            db,
            "select count(*) from ticket_order o where o.status = 'paid'
             and not exists (select 1 from ticket t where t.ticket_order_id = o.ticket_order_id)",
        )
        .await?,
        missed_side_effects: count(
            db,
            "select (select count(*) from ticket_order o where o.checkout_provider is not null
                     and not exists (select 1 from effect e where e.kind = 'payment.start'
                                     and e.data->>'order' = o.ticket_order_id::text
                                     and e.done_at is not null))
                  + (select count(*) from effect where done_at is null)",
        )
        .await?,
        lost_places: records
            .iter()
            .filter(|r| r.errors.iter().any(|e| e.contains("another place")))
            .count() as u64,
    })
}

/// Connections the buyers lost, by close code and reason: the 8 most frequent.
fn disconnects(records: &[BuyerRecord]) -> Value {
    let mut all = std::collections::HashMap::<&str, u64>::new();
    for (why, n) in records.iter().flat_map(|r| r.disconnects.iter()) {
        *all.entry(why.as_str()).or_default() += u64::from(*n);
    }
    let mut top: Vec<_> = all.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    top.truncate(8);
    Value::Object(
        top.into_iter()
            .map(|(k, v)| (k.to_owned(), json!(v)))
            .collect(),
    )
}

/// How many buyers left without holding, by why (`BuyerRecord::left`).
fn left_without_holding(records: &[BuyerRecord]) -> std::collections::BTreeMap<&str, u64> {
    let mut left = std::collections::BTreeMap::new();
    for reason in records.iter().filter_map(|r| r.left.as_deref()) {
        *left.entry(reason).or_default() += 1;
    }
    left
}

/// p50, p99, p99.9 and max of `values` (milliseconds), if any.
fn latency(mut values: Vec<f64>) -> Value {
    if values.is_empty() {
        return Value::Null;
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    json!({"p50": at(0.5), "p99": at(0.99), "p999": at(0.999), "max": values[values.len() - 1]})
}

fn between(
    records: &[BuyerRecord],
    from: impl Fn(&BuyerRecord) -> Option<u64>,
    to: impl Fn(&BuyerRecord) -> Option<u64>,
) -> Value {
    latency(
        records
            .iter()
            .filter_map(|r| Some(to(r)?.saturating_sub(from(r)?) as f64))
            .collect(),
    )
}

/// The run's figures.
pub async fn figures(db: &PgPool, records: &[BuyerRecord], start_ms: u64) -> anyhow::Result<Value> {
    let sold = count(db, "select count(*) from ticket where status = 'valid'").await?;
    let capacity = count(
        db,
        "select (select count(*) from seat)
              + (select coalesce(sum(ga_quota), 0) from ticket_type where kind = 'general_admission')",
    )
    .await?;
    let per_second: Vec<i64> = sqlx::query_scalar(
        "select count(*) from hold group by date_trunc('second', created_at) order by 1 desc",
    )
    .fetch_all(db)
    .await?;
    let span: Option<(f64, f64)> = sqlx::query_as(
        "select extract(epoch from min(created_at))::float8, extract(epoch from max(created_at))::float8
         from hold having count(*) > 0",
    )
    .fetch_optional(db)
    .await?;
    let holds: i64 = sqlx::query_scalar("select count(*) from hold")
        .fetch_one(db)
        .await?;
    let mean = span.map(|(a, b)| holds as f64 / (b - a).max(1.0));
    let last_sale: Option<f64> =
        sqlx::query_scalar("select extract(epoch from max(created_at))::float8 * 1000 from ticket")
            .fetch_one(db)
            .await?;
    let payment_to_ticket: Vec<f64> = sqlx::query_scalar(
        "select (extract(epoch from min(t.created_at) - p.created_at) * 1000)::float8
         from payment_event p join ticket t using (ticket_order_id)
         where p.kind = 'succeeded' and p.outcome = 'paid'
         group by p.provider, p.provider_event_id, p.created_at",
    )
    .fetch_all(db)
    .await?;
    // Each hold from its sending to its result stored by the worker (the rest of
    // `hold_result_ms` is the way back to the buyer: outbox, Redis, node, socket).
    let (users, ids): (Vec<String>, Vec<String>) = records
        .iter()
        .filter_map(|r| Some((r.user.clone(), r.hold_request.clone()?)))
        .unzip();
    let decided: std::collections::HashMap<(String, String), f64> = sqlx::query_as(
        "select user_id, request_id, (extract(epoch from created_at) * 1000)::float8
         from processed_request
         where (user_id, request_id) in (select * from unnest($1::text[], $2::text[]))",
    )
    .bind(&users)
    .bind(&ids)
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|(user, id, at): (String, String, f64)| ((user, id), at))
    .collect();
    let hold_decided = latency(
        records
            .iter()
            .filter_map(|r| {
                let at = decided.get(&(r.user.clone(), r.hold_request.clone()?))?;
                Some((at - r.hold_sent? as f64).max(0.0))
            })
            .collect(),
    );
    Ok(json!({
        "sold": sold,
        "capacity": capacity,
        "last_sale_s": last_sale.map(|ms| (ms - start_ms as f64) / 1000.0),
        "sell_out_s": last_sale
            .filter(|_| sold >= capacity)
            .map(|ms| (ms - start_ms as f64) / 1000.0),
        "holds_per_s": {"peak": per_second.first().copied().unwrap_or(0), "mean": mean},
        "join_ack_ms": between(records, |r| r.join_sent, |r| r.join_acked),
        "admit_to_hold_ms": between(records, |r| r.admitted, |r| r.hold_result),
        "hold_result_ms": between(records, |r| r.hold_sent, |r| r.hold_result),
        "hold_decided_ms": hold_decided,
        "checkout_to_paid_ms": between(
            records,
            |r| r.checkout_sent,
            |r| r.order_final_at.filter(|_| r.order_status.as_deref() == Some("paid")),
        ),
        "payment_to_ticket_ms": latency(payment_to_ticket),
        "admitted": records.iter().filter(|r| r.admitted.is_some()).count(),
        "held": records.iter().filter(|r| r.hold_outcome.as_deref() == Some("held")).count(),
        "paid_orders": records.iter().filter(|r| r.order_status.as_deref() == Some("paid")).count(),
        "peak_connections": records.iter().filter(|r| r.join_acked.is_some()).count(),
        "left_without_holding": left_without_holding(records),
        "disconnects": disconnects(records),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_count_above_zero_breaks_the_verdict() {
        assert!(Invariants::default().all_zero());
        let broken = Invariants {
            order_violations: 1,
            ..Invariants::default()
        };
        assert!(!broken.all_zero());
    }
}
