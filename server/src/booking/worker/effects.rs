//! What a committed batch owes the world beyond Postgres: the queue entries acknowledged, the
//! metrics, and its side effects (payments started, refunds, admission slots handed back),
//! which the batch wrote to the `effect` table and [`relay`] carries out; and the payment news
//! that wakes owners.
//!
//! # Effects happen late, never twice, never not at all
//!
//! An effect is owed exactly when the batch that makes it owed commits: it is a row that
//! batch wrote ([`crate::booking::store::Effect`]). The relay claims it, makes the call, and
//! marks it done. A crash before the call leaves it due, so another relay (or this one,
//! restarted) makes the call later. A crash after the call but before marking it done makes the
//! call again with the same idempotency key, which a provider answers with the first call's
//! result instead of acting twice (one payment per order, one refund per payment). Handing a
//! slot back twice is harmless (the second finds no admission).

use super::settings::Worker;
use crate::booking::queue::{CommandQueue, Entry, Reader};
use crate::metrics::METRICS;
use crate::settlement::{PAYMENTS_NOTIFY, PaymentProvider, PaymentRequest};
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use sqlx::{PgPool, Row as _};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Attempts before an effect is given up (left with its error for an operator).
pub const MAX_ATTEMPTS: i32 = 15;

/// How long a claimed effect is left to its relay before another may try it: longer than a
/// claimed batch can take (each call gives up after [`CALL_TIMEOUT`]), short enough that an
/// effect whose relay died is tried again within seconds.
const CLAIM: Duration = Duration::from_secs(15);

/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Most effects claimed at once, and carried out at the same time.
const BATCH: i64 = 16;

/// An effect a relay claimed.
struct Claimed {
    id: i64,
    kind: String,
    provider: Option<String>,
    key: String,
    data: serde_json::Value,
    attempts: i32,
}

/// How an effect went.
enum Done {
    /// Carried out; what it answered (a payment reference), if anything.
    Called(Option<String>),
    /// Nothing needed doing any more (the order is no longer awaiting payment).
    Moot(&'static str),
}

/// Claimed batches carried out at once: the next batch is claimed while the ones before it are
/// still being carried out, so a batch's slowest call holds up no other batch. One batch at a
/// time, each waiting for its slowest call before the next was claimed, left up to 1,400
/// payment starts waiting 4 to 9 s at a full-size onsale's peak (BENCHMARKS.md run 32).
const BATCHES_AT_ONCE: usize = 2;

/// The effect relay: carries out the effects committed batches wrote ([`Effect`]), until
/// `cancel`, then lets the calls under way finish and records them. Each worker runs one;
/// effects are claimed with `for update skip locked` and their next attempt moved forward
/// before the call, so two relays never run one at once, and one whose relay died is tried
/// again after [`CLAIM`]. Woken at once by this worker's owners after a commit that owes
/// effects, and every 250 ms for everyone else's.
pub(super) async fn relay(worker: Worker, cancel: CancellationToken) {
    let mut batches = tokio::task::JoinSet::new();
    while !cancel.is_cancelled() {
        while batches.try_join_next().is_some() {}
        let mut full = false;
        if batches.len() < BATCHES_AT_ONCE {
            match claim_due(&worker).await {
                Ok(claimed) => {
                    full = claimed.len() as i64 == BATCH;
                    if !claimed.is_empty() {
                        let worker = worker.clone();
                        batches.spawn(async move {
                            if let Err(e) = carry_out_all(&worker, claimed).await {
                                tracing::warn!(error = %e, "effects: database unavailable");
                            }
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "effects: database unavailable"),
            }
        }
        if full && batches.len() < BATCHES_AT_ONCE {
            continue;
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = worker.effects_due.notified() => {}
            Some(_) = batches.join_next(), if !batches.is_empty() => {}
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
    // Each call gives up within CALL_TIMEOUT; what it came to is recorded before the end.
    while batches.join_next().await.is_some() {}
}

/// Claims up to [`BATCH`] effects due now that this worker can carry out.
async fn claim_due(worker: &Worker) -> Result<Vec<Claimed>, sqlx::Error> {
    let provider = worker
        .settings
        .provider
        .as_ref()
        .map(|p| p.name().to_owned());
    let rows = sqlx::query(
        "update effect set attempts = attempts + 1,
                next_attempt_at = now() + make_interval(secs => $1)
         where effect_id in (
             select effect_id from effect
             where done_at is null and failed_at is null and next_attempt_at <= now()
               and (provider = $3 or (kind = 'slot.finish' and $4))
             order by effect_id limit $2
             for update skip locked
         )
         returning effect_id, kind, provider, idempotency_key, data::text as data, attempts",
    )
    .bind(CLAIM.as_secs_f64())
    .bind(BATCH)
    .bind(provider)
    .bind(worker.settings.slots.is_some())
    .fetch_all(&worker.db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Claimed {
            id: row.get("effect_id"),
            kind: row.get("kind"),
            provider: row.get("provider"),
            key: row.get("idempotency_key"),
            data: serde_json::from_str(row.get("data")).unwrap_or_default(),
            attempts: row.get("attempts"),
        })
        .collect())
}

/// Carries out claimed effects and records how each went.
async fn carry_out_all(worker: &Worker, claimed: Vec<Claimed>) -> Result<(), sqlx::Error> {
    // The claimed effects are independent (each its own call, its own idempotency key): made
    // at the same time, so one slow call holds up no other. One after another, 100 checkouts
    // a second left payments starting 20 s after their checkouts (BENCHMARKS.md).
    stream::iter(claimed)
        .map(|effect| settle(worker, effect))
        .buffer_unordered(BATCH as usize)
        .try_collect::<()>()
        .await
}

/// Carries out one claimed effect and records how it went.
async fn settle(worker: &Worker, effect: Claimed) -> Result<(), sqlx::Error> {
    let outcome = match tokio::time::timeout(CALL_TIMEOUT, carry_out(worker, &effect)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
    };
    match outcome {
        Ok(done) => {
            crash_after_call_if_injected(worker);
            mark_done(&worker.db, &effect, done).await?;
        }
        Err(error) => {
            crate::metrics::effect(&effect.kind, "retried");
            let give_up = effect.attempts >= MAX_ATTEMPTS;
            if give_up {
                crate::metrics::effect(&effect.kind, "given_up");
                tracing::error!(effect = effect.id, kind = %effect.kind, %error,
                    "an owed effect was given up after {MAX_ATTEMPTS} attempts: finish it by hand");
            } else {
                tracing::warn!(effect = effect.id, kind = %effect.kind, attempts = effect.attempts,
                    %error, "an owed effect failed; trying again later");
            }
            sqlx::query(
                "update effect set last_error = $2,
                        next_attempt_at = now() + make_interval(secs => $3),
                        failed_at = case when $4 then now() end
                 where effect_id = $1",
            )
            .bind(effect.id)
            .bind(&error)
            .bind(crate::outgoing::retry_pause(effect.attempts).as_secs_f64())
            .bind(give_up)
            .execute(&worker.db)
            .await?;
        }
    }
    Ok(())
}

/// Makes one effect's call.
async fn carry_out(worker: &Worker, effect: &Claimed) -> Result<Done, String> {
    let text = |field: &str| effect.data[field].as_str().unwrap_or_default().to_owned();
    let uuid = |field: &str| {
        Uuid::parse_str(effect.data[field].as_str().unwrap_or_default())
            .map_err(|_| format!("effect {} names no {field}", effect.id))
    };
    match effect.kind.as_str() {
        "payment.start" => {
            let provider = provider_for(worker, effect)?;
            let order = uuid("order")?;
            let pending: Option<bool> = sqlx::query_scalar(
                "select status = 'pending_payment' from ticket_order where ticket_order_id = $1",
            )
            .bind(order)
            .fetch_optional(&worker.db)
            .await
            .map_err(|e| e.to_string())?;
            if pending != Some(true) {
                // Expired or cancelled before its payment could start: no payment is owed.
                return Ok(Done::Moot("the order no longer awaits payment"));
            }
            let request = PaymentRequest {
                order,
                user: text("user"),
                amount_minor: effect.data["amount_minor"].as_i64().unwrap_or_default(),
                currency: text("currency"),
                idempotency_key: effect.key.clone(),
            };
            let reference = provider.create(&request).await.map_err(|e| e.to_string())?;
            Ok(Done::Called(Some(reference)))
        }
        "payment.refund" => {
            let provider = provider_for(worker, effect)?;
            provider
                .refund(uuid("order")?, &text("payment_ref"), &effect.key)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Done::Called(None))
        }
        "slot.finish" => {
            let slots = worker
                .settings
                .slots
                .as_ref()
                .ok_or("this worker has no waiting room")?;
            slots.finish(uuid("onsale")?, &text("user")).await?;
            Ok(Done::Called(None))
        }
        other => Err(format!("unknown effect kind `{other}`")),
    }
}

/// This worker's provider, if it is the one the effect calls.
fn provider_for<'w>(
    worker: &'w Worker,
    effect: &Claimed,
) -> Result<&'w dyn PaymentProvider, String> {
    worker
        .settings
        .provider
        .as_deref()
        .filter(|p| Some(p.name()) == effect.provider.as_deref())
        .ok_or_else(|| {
            format!(
                "this worker has no client for provider {:?}",
                effect.provider
            )
        })
}

/// Marks an effect done; a payment started records its reference on the order in the same
/// transaction (its events must name it).
async fn mark_done(db: &PgPool, effect: &Claimed, done: Done) -> Result<(), sqlx::Error> {
    let (result, outcome) = match &done {
        Done::Called(reference) => (reference.as_deref(), "done"),
        Done::Moot(why) => (Some(*why), "moot"),
    };
    let mut tx = crate::db::begin(db).await?;
    if let (Done::Called(Some(reference)), "payment.start") = (&done, effect.kind.as_str()) {
        sqlx::query(
            "update ticket_order set checkout_payment_ref = $2, updated_at = now()
             where ticket_order_id = $1::text::uuid and checkout_payment_ref is null",
        )
        .bind(effect.data["order"].as_str().unwrap_or_default())
        .bind(reference)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "update effect set done_at = now(), result = $2, last_error = null where effect_id = $1",
    )
    .bind(effect.id)
    .bind(result)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    crate::metrics::effect(&effect.kind, outcome);
    Ok(())
}

/// Fault injection for tests: dies after a call, before marking its effect done.
fn crash_after_call_if_injected(worker: &Worker) {
    if worker.settings.crash_after_call {
        tracing::error!("fault injection: aborting after an effect's call, before marking it done");
        std::process::abort();
    }
}

/// Events whose payment events were recorded since their owner last looked, as the payment
/// hooks' notifications report them.
#[derive(Debug, Clone, Default)]
pub(super) struct PaymentNews(Arc<Mutex<HashSet<Uuid>>>);

impl PaymentNews {
    pub(super) fn add(&self, event: Uuid) {
        self.0.lock().expect("payment news lock").insert(event);
    }

    /// Whether `event` has news, forgetting it.
    pub(super) fn take(&self, event: Uuid) -> bool {
        self.0.lock().expect("payment news lock").remove(&event)
    }
}

/// Listens for the payment hooks' notifications until `cancel`: the event gets news, and an
/// owner if it has none (registering it puts it among the events workers lease). Lost
/// notifications cost at most a second: owners also look every second.
pub(super) async fn listen_for_payments(
    db: PgPool,
    queue: CommandQueue,
    news: PaymentNews,
    cancel: CancellationToken,
) {
    while !cancel.is_cancelled() {
        let listener = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&db).await?;
            listener.listen(PAYMENTS_NOTIFY).await?;
            loop {
                let notification = listener.recv().await?;
                if let Ok(event) = Uuid::parse_str(notification.payload()) {
                    news.add(event);
                    if let Err(e) = queue.register(event).await {
                        tracing::warn!(%event, error = %e, "cannot register an event with payment news");
                    }
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            result = listener => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "payment listener lost; reconnecting");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// A decided command, for the metrics: its kind, its outcome, when a hub accepted it.
#[derive(Debug, Clone, Copy)]
pub(super) struct CommandOutcome {
    pub(super) kind: &'static str,
    pub(super) outcome: &'static str,
    pub(super) accepted_at_ms: u64,
}

/// Records a committed batch in the metrics: every command's wait from the hub to the commit,
/// and each decided command by kind and outcome
/// (`marquee_command_seconds{kind, outcome}`, a histogram whose `_count` counts them).
pub(super) fn committed_metrics(entries: &[Entry], decided: usize, outcomes: &[CommandOutcome]) {
    let now = crate::clock::now_ms();
    for o in outcomes {
        metrics::histogram!("marquee_command_seconds", "kind" => o.kind, "outcome" => o.outcome)
            .record(now.saturating_sub(o.accepted_at_ms) as f64 / 1000.0);
    }
    for entry in entries {
        METRICS
            .command_to_commit
            .record(now.saturating_sub(entry.envelope.accepted_at_ms) as f64 / 1000.0);
    }
    METRICS.commands.increment(decided as u64);
    if !entries.is_empty() {
        METRICS.batch_size.record(entries.len() as f64);
    }
}

/// Fault injection for tests: dies between a commit and its acknowledgement.
pub(super) fn crash_if_injected(worker: &Worker) {
    if worker.settings.crash_after_commit {
        tracing::error!("fault injection: aborting after commit, before acknowledging");
        std::process::abort();
    }
}

/// Acknowledges entries whose batch committed.
pub(super) async fn ack(reader: &Reader, entries: &[Entry]) -> anyhow::Result<()> {
    let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
    reader.ack(&ids).await?;
    Ok(())
}
