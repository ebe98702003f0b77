//! The owner of one event: decides its commands, payment events and expiries in memory and
//! commits them in pipelined batches.
//!
//! # One bad input never stops anyone else
//!
//! A batch that Postgres refuses for what it holds (not for a lost lease or a database out of
//! reach), or whose deciding panics, is split: its halves are decided and committed on their
//! own, from a fresh load of the event, until the one entry (or payment event) that cannot be
//! committed is found. That entry alone is answered with a rejection (`internal`, durable like
//! any result); a payment event alone is marked applied with the outcome `unapplicable`; an
//! entry that not even its rejection can be written for (Postgres refuses its very request id)
//! is set apart in `dead_letter`. Everything else in the batch commits.

use super::effects::{CommandOutcome, ack, committed_metrics, crash_if_injected};
use super::settings::{Worker, now_ms};
use crate::booking::inventory::{
    Change, DeltaBuilder, Inventory, OrderNews, PaymentEvent, Request,
};
use crate::booking::queue::{Entry, Reader};
use crate::booking::store::{self, Batch, CommitError, Effect, Processed, UnappliedPayment};
use crate::metrics::METRICS;
use crate::ticket_code::TicketClaim;
use anyhow::Context as _;
use futures_util::FutureExt as _;
use marquee_protocol::booking::{
    CommandResult, InboxMessage, OrderStatus, OrderUpdate, Outcome, Ticket,
};
use marquee_protocol::{Channel, ChannelKind, ErrorCode};
use serde_json::value::{RawValue, to_raw_value};
use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use uuid::Uuid;

/// The owner of one event: its inventory and how to commit it.
///
/// Batches are pipelined: while one batch commits, the next is decided against the memory
/// that already includes the first one's effects. The second batch's commit starts only after
/// the first one's succeeded (its fence is the version the first produces); if the first
/// fails, the owner reloads the event and decides both batches' entries again. Nothing of an
/// uncommitted batch leaves the owner: results go out through the outbox, after the commit.
pub(super) struct Owner {
    pub(super) inventory: Inventory,
    in_flight: Option<InFlight>,
}

/// A batch being committed.
struct InFlight {
    entries: Vec<Entry>,
    /// What it decided, for once it commits.
    decided: Committed,
    /// The requests it decided: a retry of one in the next batch gets this result (it is not
    /// in `processed_request` until the commit).
    requests: HashMap<RequestKey, Decided>,
    /// The payment events it applies: not to be read again while it commits, and decided
    /// again (or set apart) if it does not commit.
    payments: Vec<UnappliedPayment>,
    commit: tokio::task::JoinHandle<Result<i64, CommitError>>,
}

/// What [`Owner::decide`] makes of a batch of entries.
struct Decision {
    /// Everything the transaction writes.
    batch: Batch,
    /// Commands that took effect or were rejected (not counting duplicates).
    decided: usize,
    /// The requests it decided.
    requests: HashMap<RequestKey, Decided>,
    /// What each decided command was and came to, for the metrics.
    outcomes: Vec<CommandOutcome>,
}

/// An outcome's name, as its `status` on the wire.
fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Held { .. } => "held",
        Outcome::Released { .. } => "released",
        Outcome::CheckedOut { .. } => "checked_out",
        Outcome::Rejected { .. } => "rejected",
        _ => "other",
    }
}

/// Why an attempt to decide and commit a batch failed, and so what to do next.
enum Failure {
    /// Another owner committed since this one loaded the event: reload and decide again.
    Fenced,
    /// The database was out of reach or busy: the same batch may commit later.
    Passing(anyhow::Error),
    /// The batch itself cannot be committed, or deciding it panicked: find its culprit.
    Fault(String),
}

/// A batch that committed.
struct Committed {
    /// Commands that took effect or were rejected (for the metrics).
    decided: usize,
    /// What each came to (for the metrics).
    outcomes: Vec<CommandOutcome>,
    /// Whether it wrote effects for the relay.
    effects: bool,
}

/// What a panic carried, as text.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

/// Whether deciding failed because Postgres refused a lookup for what an entry holds.
fn data_fault(e: &anyhow::Error) -> bool {
    e.downcast_ref::<sqlx::Error>()
        .is_some_and(store::refused_for_its_data)
}

/// Tries that pass before the owner gives the event up (another worker, or this one later,
/// takes it again): a lost lease, or a database out of reach.
const PASSING_TRIES: u32 = 5;

/// Payment events one step applies, at most. A step lasts as long as the commit before it,
/// which under a full onsale's load is up to a second: at 256 a step, the 100,000-buyer run
/// (BENCHMARKS.md run 29) recorded payments faster than their owner applied them, 8,000 waited,
/// and tickets came 25 s after their payment. A step applies this many, and the owner looks
/// again at once while a look comes back full.
pub(super) const PAYMENTS_PER_STEP: i64 = 2048;

/// A payment event's key: `(provider, provider's event id)`.
type PaymentKey = (String, String);

/// A request's idempotency key: `(user, request id)`.
pub(super) type RequestKey = (String, String);

/// The stored or decided result of a request.
#[derive(Clone)]
pub(super) struct Decided {
    inbox: String,
    result: Box<RawValue>,
}

impl Owner {
    pub(super) async fn load(worker: &Worker, event: Uuid) -> anyhow::Result<Self> {
        let inventory = store::load(&worker.db, event)
            .await?
            .with_context(|| format!("event {event} does not exist"))?;
        Ok(Self {
            inventory,
            in_flight: None,
        })
    }

    /// Payment events of this event not applied yet, but not those the batch in flight applies
    /// (it has not committed, so they are read again and passed over): up to
    /// [`PAYMENTS_PER_STEP`].
    pub(super) async fn unapplied_payments(
        &self,
        worker: &Worker,
    ) -> anyhow::Result<Vec<UnappliedPayment>> {
        let applying: HashSet<_> = self
            .in_flight
            .iter()
            .flat_map(|f| f.payments.iter().map(UnappliedPayment::key))
            .collect();
        let mut payments = store::unapplied_payments(
            &worker.db,
            self.inventory.event,
            PAYMENTS_PER_STEP + applying.len() as i64,
        )
        .await?;
        payments.retain(|p| !applying.contains(&p.key()));
        payments.truncate(PAYMENTS_PER_STEP as usize);
        Ok(payments)
    }

    /// Decides one batch of entries (plus due expiries) and starts its commit once the batch
    /// in flight, if any, has committed and been acknowledged.
    pub(super) async fn step(
        &mut self,
        worker: &Worker,
        reader: &Reader,
        entries: Vec<Entry>,
        payments: Vec<UnappliedPayment>,
    ) -> anyhow::Result<()> {
        let now = now_ms();
        if entries.is_empty()
            && payments.is_empty()
            && self.inventory.next_expiry().is_none_or(|at| at > now)
            && self.inventory.next_order_due().is_none_or(|at| at > now)
        {
            // Idle: finish the batch in flight so its entries are acknowledged promptly.
            return match self.settle(worker, reader).await? {
                None => Ok(()),
                Some((failed, applying)) => self.commit_now(worker, reader, failed, applying).await,
            };
        }
        let in_flight = self.in_flight.take();
        let previous = in_flight.as_ref().map(|f| &f.requests);
        let decision = AssertUnwindSafe(self.decide(worker, &entries, previous, &payments))
            .catch_unwind()
            .await;
        self.in_flight = in_flight;
        let decision = match decision.map_err(|panic| Failure::Fault(panic_text(&*panic))) {
            Ok(Ok(decision)) => decision,
            Ok(Err(e)) if !data_fault(&e) => return Err(e),
            failed => {
                // Deciding panicked part way (the memory may be half changed), or a lookup
                // was refused for what an entry holds. The batch in flight was decided
                // before, so it stands; then everything is decided again from Postgres, one
                // part at a time, until the culprit is found.
                let why = match failed {
                    Err(Failure::Fault(why)) => why,
                    Ok(Err(e)) => format!("{e:#}"),
                    _ => unreachable!("the other cases returned above"),
                };
                tracing::error!(event = %self.inventory.event, error = why,
                    "deciding a batch failed for what it holds; finding the command that did it");
                let (mut again, mut applying) =
                    self.settle(worker, reader).await?.unwrap_or_default();
                *self = Self::load(worker, self.inventory.event).await?;
                again.extend(entries);
                applying.extend(payments);
                return self.commit_now(worker, reader, again, applying).await;
            }
        };
        let Decision {
            batch,
            decided,
            requests,
            outcomes,
        } = decision;
        if let Some((mut failed, mut applying)) = self.settle(worker, reader).await? {
            // This batch was decided on top of one that did not commit: decide both again.
            failed.extend(entries);
            applying.extend(payments);
            return self.commit_now(worker, reader, failed, applying).await;
        }
        if batch.is_empty() {
            // Nothing but redeliveries of committed entries.
            return ack(reader, &entries).await;
        }
        let (db, tenant, event, version) = (
            worker.db.clone(),
            self.inventory.tenant,
            self.inventory.event,
            self.inventory.version,
        );
        let actor = worker.id.clone();
        // The version this batch produces if it commits; the next batch is decided on it.
        self.inventory.version = version + i64::from(batch.bump);
        self.in_flight = Some(InFlight {
            entries,
            decided: Committed {
                decided,
                outcomes,
                effects: !batch.effects.is_empty(),
            },
            requests,
            payments,
            commit: tokio::spawn(async move {
                store::commit(&db, tenant, event, version, &actor, &batch).await
            }),
        });
        Ok(())
    }

    /// Waits for the batch in flight, if any: acknowledges its entries if it committed;
    /// otherwise reloads the event from Postgres and returns the entries and payment events
    /// to decide again.
    pub(super) async fn settle(
        &mut self,
        worker: &Worker,
        reader: &Reader,
    ) -> anyhow::Result<Option<(Vec<Entry>, Vec<UnappliedPayment>)>> {
        let Some(in_flight) = self.in_flight.take() else {
            return Ok(None);
        };
        let committed = match in_flight.commit.await {
            Ok(result) => result,
            Err(join) => return Err(join).context("a booking commit task failed"),
        };
        match committed {
            Ok(version) => {
                debug_assert_eq!(version, self.inventory.version, "decided on this version");
                self.finish(worker, reader, &in_flight.entries, in_flight.decided)
                    .await?;
                Ok(None)
            }
            Err(e) => {
                let fenced = matches!(e, CommitError::Fenced);
                tracing::warn!(event = %self.inventory.event, error = %e, fenced, "batch failed; reloading the event");
                *self = Self::load(worker, self.inventory.event).await?;
                Ok(Some((in_flight.entries, in_flight.payments)))
            }
        }
    }

    /// What a committed batch owes: its metrics, the effect relay woken for its effects (they
    /// are durable already), and its entries acknowledged.
    async fn finish(
        &self,
        worker: &Worker,
        reader: &Reader,
        entries: &[Entry],
        done: Committed,
    ) -> anyhow::Result<()> {
        committed_metrics(entries, done.decided, &done.outcomes);
        crash_if_injected(worker);
        if done.effects {
            worker.effects_due.notify_one();
        }
        ack(reader, entries).await
    }

    /// Decides and commits `entries` and `payments` without pipelining (module docs): a part
    /// that fails for what it holds is split until its culprit is found and set apart; a lost
    /// lease or a database out of reach is tried again from a fresh load, a few times, before
    /// the event is given up.
    async fn commit_now(
        &mut self,
        worker: &Worker,
        reader: &Reader,
        entries: Vec<Entry>,
        payments: Vec<UnappliedPayment>,
    ) -> anyhow::Result<()> {
        // Payment events are carried by key and read again before each part: a reload forgets
        // what this owner changed of their orders, so the records read before would be stale.
        let keys = payments.iter().map(UnappliedPayment::key).collect();
        let mut parts: Vec<(Vec<Entry>, Vec<PaymentKey>)> = vec![(entries, keys)];
        let mut passing = 0;
        // Whether the due expiries were tried on their own: they are decided in every part, so
        // a fault of theirs must be told from a command's before any command is blamed.
        let mut expiries_tried = false;
        while let Some((entries, keys)) = parts.pop() {
            let payments = self.payments_by_key(worker, &keys).await?;
            let failure = match self.attempt(worker, &entries, &payments).await {
                Ok(Some(done)) => {
                    self.finish(worker, reader, &entries, done).await?;
                    continue;
                }
                Ok(None) => {
                    // Nothing but redeliveries of committed entries.
                    ack(reader, &entries).await?;
                    continue;
                }
                Err(failure) => failure,
            };
            *self = Self::load(worker, self.inventory.event).await?;
            match failure {
                Failure::Fenced | Failure::Passing(_) if passing + 1 < PASSING_TRIES => {
                    passing += 1;
                    tokio::time::sleep(Duration::from_millis(100 << passing)).await;
                    parts.push((entries, keys));
                }
                Failure::Fault(_) if !(expiries_tried || entries.is_empty() && keys.is_empty()) => {
                    // First the expiries alone (then this part again, and split if need be).
                    expiries_tried = true;
                    parts.push((entries, keys));
                    parts.push((Vec::new(), Vec::new()));
                }
                Failure::Fenced => anyhow::bail!("the event's inventory kept moving on"),
                Failure::Passing(e) => return Err(e.context("committing a booking batch")),
                Failure::Fault(why) => {
                    tracing::warn!(event = %self.inventory.event, entries = entries.len(),
                        payments = payments.len(), error = %why, "a batch cannot be committed; splitting it");
                    match (entries.len(), payments.len()) {
                        (0, 0) => {
                            anyhow::bail!("the event's own expiries cannot be committed: {why}")
                        }
                        (1, 0) => self.set_apart(worker, reader, &entries[0], &why).await?,
                        (0, 1) => self.set_payment_apart(worker, &payments[0], &why).await?,
                        (_, 0) => {
                            let mut first = entries;
                            let second = first.split_off(first.len() / 2);
                            parts.push((second, Vec::new()));
                            parts.push((first, Vec::new()));
                        }
                        (n, _) => {
                            // Each payment event on its own, after the commands (if any).
                            parts
                                .extend(payments.iter().rev().map(|p| (Vec::new(), vec![p.key()])));
                            if n > 0 {
                                parts.push((entries, Vec::new()));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The payment events of `keys` not applied yet, as Postgres has them and their orders now
    /// (those applied meanwhile are gone).
    async fn payments_by_key(
        &self,
        worker: &Worker,
        keys: &[PaymentKey],
    ) -> anyhow::Result<Vec<UnappliedPayment>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut payments = self.unapplied_payments(worker).await?;
        payments.retain(|p| keys.contains(&p.key()));
        Ok(payments)
    }

    /// Commits `batch` on the version this owner's memory is at.
    async fn commit(&self, worker: &Worker, batch: &Batch) -> Result<i64, CommitError> {
        let inv = &self.inventory;
        store::commit(
            &worker.db,
            inv.tenant,
            inv.event,
            inv.version,
            &worker.id,
            batch,
        )
        .await
    }

    /// Decides and commits one part, without pipelining.
    async fn attempt(
        &mut self,
        worker: &Worker,
        entries: &[Entry],
        payments: &[UnappliedPayment],
    ) -> Result<Option<Committed>, Failure> {
        let decision = AssertUnwindSafe(self.decide(worker, entries, None, payments))
            .catch_unwind()
            .await;
        let Decision {
            batch,
            decided,
            outcomes,
            ..
        } = match decision {
            Ok(Ok(decision)) => decision,
            Ok(Err(e)) if data_fault(&e) => return Err(Failure::Fault(format!("{e:#}"))),
            Ok(Err(e)) => return Err(Failure::Passing(e)),
            Err(panic) => {
                return Err(Failure::Fault(format!(
                    "deciding panicked: {}",
                    panic_text(&*panic)
                )));
            }
        };
        if batch.is_empty() {
            return Ok(None);
        }
        match self.commit(worker, &batch).await {
            Ok(version) => {
                self.inventory.version = version;
                Ok(Some(Committed {
                    decided,
                    outcomes,
                    effects: !batch.effects.is_empty(),
                }))
            }
            Err(e) if e.is_the_batchs_fault() => Err(Failure::Fault(e.to_string())),
            Err(CommitError::Fenced) => Err(Failure::Fenced),
            Err(e) => Err(Failure::Passing(e.into())),
        }
    }

    /// Answers one entry that cannot be committed with a rejection of its own, durable like
    /// any result, and acknowledges it. If Postgres refuses even that (the entry's request id
    /// or user holds what no text column takes), the entry goes to `dead_letter`, byte for
    /// byte, and is acknowledged: it can stop nothing else.
    async fn set_apart(
        &mut self,
        worker: &Worker,
        reader: &Reader,
        entry: &Entry,
        why: &str,
    ) -> anyhow::Result<()> {
        METRICS.commands_set_apart.increment(1);
        let envelope = &entry.envelope;
        let result = to_raw_value(&InboxMessage::Result(CommandResult {
            request_id: envelope.request_id.clone(),
            event: self.inventory.event.to_string(),
            command: envelope.command.kind().to_owned(),
            outcome: Outcome::rejected(
                ErrorCode::Internal,
                "this command could not be carried out; it changed nothing",
            ),
        }))
        .expect("a result always serializes");
        let batch = Batch {
            processed: vec![Processed {
                user: envelope.user.clone(),
                request_id: envelope.request_id.clone(),
                command_id: entry.id.clone(),
                result: result.clone(),
            }],
            messages: vec![crate::outbox::message(&envelope.inbox, &result)],
            ..Batch::default()
        };
        match self.commit(worker, &batch).await {
            Ok(_) => {
                tracing::warn!(event = %self.inventory.event, command = %entry.id, error = %why,
                    "a command that could not be committed was answered with a rejection");
            }
            Err(e) if e.is_the_batchs_fault() => {
                store::dead_letter(&worker.db, self.inventory.event, entry, why).await?;
                METRICS.dead_letters.increment(1);
                tracing::error!(event = %self.inventory.event, command = %entry.id, error = %why,
                    "a command no transaction can take was set apart in dead_letter");
            }
            Err(e) => return Err(e).context("answering a command that cannot be committed"),
        }
        ack(reader, std::slice::from_ref(entry)).await
    }

    /// Marks one payment event that cannot be applied as applied, with the outcome
    /// `unapplicable`, so it is not read again; operators find it by that outcome.
    async fn set_payment_apart(
        &mut self,
        worker: &Worker,
        payment: &UnappliedPayment,
        why: &str,
    ) -> anyhow::Result<()> {
        METRICS.commands_set_apart.increment(1);
        store::payment_unapplicable(&worker.db, self.inventory.event, payment).await?;
        tracing::error!(event = %self.inventory.event, provider = %payment.provider,
            payment_event = %payment.event_id, error = %why,
            "a payment event that cannot be applied was set apart");
        Ok(())
    }

    /// Decides every entry and due expiry; returns the batch, how many commands took effect or
    /// were rejected (not counting duplicates), and the requests it decided. `previous` holds
    /// the requests of the batch still committing.
    async fn decide(
        &mut self,
        worker: &Worker,
        entries: &[Entry],
        previous: Option<&HashMap<RequestKey, Decided>>,
        payments: &[UnappliedPayment],
    ) -> anyhow::Result<Decision> {
        let inv = &mut self.inventory;
        let keys: Vec<(String, String)> = entries
            .iter()
            .map(|e| (e.envelope.user.clone(), e.envelope.request_id.clone()))
            .collect();
        let stored = store::processed(&worker.db, inv.tenant, &keys).await?;
        let ended = ended_admissions(worker, entries).await;
        let mut batch = Batch {
            notify: worker.settings.notify,
            checkout_provider: worker
                .settings
                .provider
                .as_ref()
                .map(|p| p.name().to_owned()),
            ..Batch::default()
        };
        let mut delta = DeltaBuilder::default();
        let mut seen: HashMap<RequestKey, Decided> = HashMap::new();
        let mut results = Vec::new();
        let now = now_ms();
        let mut decided = 0;
        let mut outcomes = Vec::new();
        for (entry, key) in entries.iter().zip(keys) {
            let envelope = &entry.envelope;
            if let Some((command_id, result)) = stored.get(&key) {
                if *command_id != entry.id {
                    // A client's retry: the first result again, no second effect.
                    results.push(crate::outbox::message(&envelope.inbox, result));
                }
                // Otherwise a redelivery of the very entry that produced the result: it was
                // committed and published already.
                continue;
            }
            if let Some(first) = seen.get(&key).or_else(|| previous?.get(&key)) {
                // A retry of a request decided in this batch or the one committing: the same
                // result again, published after this batch commits (so after the first).
                results.push(crate::outbox::message(&first.inbox, &first.result));
                continue;
            }
            let admission = envelope
                .admission
                .as_deref()
                .zip(worker.settings.admission.as_ref())
                .and_then(|(token, key)| key.verify(token))
                // A genuine token whose place ended (checked out, released, left, expired)
                // admits nobody any more.
                .filter(|pass| !ended.contains(&(pass.onsale, pass.user.clone())));
            if worker.settings.panic_on_request.as_deref() == Some(envelope.request_id.as_str()) {
                panic!("fault injection: deciding {} panics", envelope.request_id);
            }
            let outcome = if envelope.tenant != inv.tenant
                || !inbox_matches(&envelope.inbox, inv.tenant, &envelope.user)
            {
                Outcome::rejected(ErrorCode::NotFound, "no such event")
            } else {
                let (outcome, change) = inv.apply(
                    &Request {
                        user: &envelope.user,
                        command: &envelope.command,
                        admission: admission.as_ref(),
                    },
                    now,
                    &mut delta,
                );
                batch.changes.extend(change);
                outcome
            };
            // Done shopping: the admission's slot is owed back once this commits.
            if let (Outcome::CheckedOut { .. } | Outcome::Released { .. }, Some(pass), Some(_)) =
                (&outcome, &admission, &worker.settings.slots)
            {
                batch.effects.push(Effect {
                    kind: "slot.finish",
                    provider: None,
                    idempotency_key: format!(
                        "slot.finish:{}:{}:{}",
                        inv.tenant, envelope.user, envelope.request_id
                    ),
                    data: serde_json::json!({"onsale": pass.onsale, "user": envelope.user}),
                });
            }
            outcomes.push(CommandOutcome {
                kind: envelope.command.kind(),
                outcome: outcome_name(&outcome),
                accepted_at_ms: envelope.accepted_at_ms,
            });
            let result = to_raw_value(&InboxMessage::Result(CommandResult {
                request_id: envelope.request_id.clone(),
                event: inv.event.to_string(),
                command: envelope.command.kind().to_owned(),
                outcome,
            }))
            .expect("a result always serializes");
            results.push(crate::outbox::message(&envelope.inbox, &result));
            batch.processed.push(Processed {
                user: envelope.user.clone(),
                request_id: envelope.request_id.clone(),
                command_id: entry.id.clone(),
                result: result.clone(),
            });
            seen.insert(
                key,
                Decided {
                    inbox: envelope.inbox.clone(),
                    result,
                },
            );
            decided += 1;
        }
        let mut news = Vec::new();
        let cap_ms = worker.settings.payment_cap.as_millis() as i64;
        for payment in payments {
            let decision = inv.apply_payment(
                &payment.order,
                PaymentEvent {
                    kind: payment.kind,
                    provider: &payment.provider,
                    payment_ref: &payment.payment_ref,
                    amount: payment.amount.as_ref().map(|(a, c)| (*a, c.as_str())),
                },
                now,
                cap_ms,
                &mut delta,
            );
            if decision.outcome == "ignored_unknown_order" {
                // Postgres has the order pending and this owner does not: never expected, and
                // the order then waits for its expiry however it was paid.
                tracing::warn!(event = %inv.event, order = %payment.order.id, provider = %payment.provider,
                    payment_event = %payment.event_id, "a payment event for an order its owner does not hold pending was ignored");
            } else {
                tracing::info!(event = %inv.event, order = %payment.order.id, provider = %payment.provider,
                    payment_event = %payment.event_id, outcome = decision.outcome, "payment event applied");
            }
            if let Some((provider, payment_ref)) = decision.refund {
                // One refund per payment, however often it is reported. A provider no worker
                // has a client for leaves its refund owed in `effect`, for an operator.
                batch.effects.push(Effect {
                    kind: "payment.refund",
                    idempotency_key: format!("payment.refund:{provider}:{payment_ref}"),
                    data: serde_json::json!({"order": payment.order.id, "payment_ref": payment_ref}),
                    provider: Some(provider),
                });
            }
            batch.changes.extend(decision.change);
            batch.payments.push((
                payment.provider.clone(),
                payment.event_id.clone(),
                decision.outcome,
            ));
            news.extend(decision.news.map(|n| {
                (
                    format!("payment:{}:{}", payment.provider, payment.event_id),
                    n,
                )
            }));
        }
        let expired = inv.expire_due(now, worker.settings.sweep_max, &mut delta);
        METRICS.holds_expired.increment(expired.len() as u64);
        batch.changes.extend(expired);
        for (change, order_news) in inv.expire_orders(now, worker.settings.sweep_max, &mut delta) {
            batch.changes.push(change);
            news.push(("order-expiry".to_owned(), order_news));
        }
        for (command_id, order_news) in news {
            let (processed, message) = order_update(inv, worker, command_id, order_news);
            batch.processed.push(processed);
            results.extend(message);
        }
        if !delta.is_empty() {
            batch.bump = true;
            batch.messages.push(delta_message(inv, &delta));
        }
        batch.messages.extend(results);
        // Each checkout owes its payment's start, once this commits.
        if let Some(provider) = &batch.checkout_provider {
            for change in &batch.changes {
                if let Change::Checkout {
                    order,
                    user,
                    total_minor,
                    currency,
                    ..
                } = change
                {
                    batch.effects.push(Effect {
                        kind: "payment.start",
                        provider: Some(provider.clone()),
                        idempotency_key: format!("payment.start:{order}"),
                        data: serde_json::json!({
                            "order": order,
                            "user": user,
                            "amount_minor": total_minor,
                            "currency": currency,
                        }),
                    });
                }
            }
        }
        Ok(Decision {
            batch,
            decided,
            requests: seen,
            outcomes,
        })
    }
}

/// The admissions of `entries`' holds whose places have ended, as `(onsale, user)`: asked of
/// the waiting room, all at once. If it cannot answer, every admission stands (its token is
/// signed and short-lived; refusing every buyer for a moment's outage would be worse).
async fn ended_admissions(worker: &Worker, entries: &[Entry]) -> HashSet<(Uuid, String)> {
    let (Some(slots), Some(key)) = (&worker.settings.slots, &worker.settings.admission) else {
        return HashSet::new();
    };
    let passes: HashSet<(Uuid, String)> = entries
        .iter()
        .filter(|e| e.envelope.command.kind().starts_with("hold"))
        .filter_map(|e| key.verify(e.envelope.admission.as_deref()?))
        .map(|pass| (pass.onsale, pass.user))
        .collect();
    let asks = passes.into_iter().map(|(onsale, user)| async move {
        let admitted = slots.is_admitted(onsale, &user).await;
        (onsale, user, admitted)
    });
    let mut ended = HashSet::new();
    for (onsale, user, admitted) in futures_util::future::join_all(asks).await {
        match admitted {
            Ok(false) => {
                ended.insert((onsale, user));
            }
            Ok(true) => {}
            Err(e) => {
                tracing::warn!(%onsale, error = %e, "cannot ask the waiting room whether an admission stands");
            }
        }
    }
    ended
}

/// The durable record and the inbox message of an order update: stored like a command's result
/// (so it is delivered again until the buyer acknowledges it) under a request id made from the
/// order and its new status.
fn order_update(
    inv: &Inventory,
    worker: &Worker,
    command_id: String,
    news: OrderNews,
) -> (Processed, Option<String>) {
    let request_id = match news.status {
        OrderStatus::PendingPayment => {
            format!("order:{}:due-{}", news.order, news.due.unwrap_or(0))
        }
        status => format!("order:{}:{}", news.order, store::order_status(status)),
    };
    let event = inv.event.to_string();
    let tickets = news
        .tickets
        .iter()
        .map(|t| Ticket {
            ticket: t.id.to_string(),
            event: event.clone(),
            ticket_type: t.ticket_type.to_string(),
            seat: t.seat.map(|s| s.1),
            version: 1,
            qr: worker
                .settings
                .ticket_key
                .as_ref()
                .map_or_else(String::new, |key| {
                    key.sign(&TicketClaim {
                        ticket: t.id,
                        event: inv.event,
                        version: 1,
                    })
                }),
        })
        .collect();
    let message = to_raw_value(&InboxMessage::Order(OrderUpdate {
        request_id: request_id.clone(),
        order: news.order.to_string(),
        event,
        status: news.status,
        payment_due_at: news.due.map(|d| d.max(0) as u64),
        reason: news.reason,
        tickets,
    }))
    .expect("an order update always serializes");
    // Buyers whose ids cannot name an inbox cannot send commands, so never have orders; were
    // one to, its update stays stored and reaches it in no inbox.
    let outbox = Channel::inbox(Some(&inv.tenant.to_string()), &news.user)
        .ok()
        .map(|inbox| crate::outbox::message(inbox.as_str(), &message));
    (
        Processed {
            user: news.user,
            request_id,
            command_id,
            result: message,
        },
        outbox,
    )
}

/// The outbox message that publishes `delta` on the event's `seats` channel, as the version
/// after the batch that holds it (the inventory's current version plus one).
pub fn delta_message(inv: &Inventory, delta: &DeltaBuilder) -> String {
    let v = (inv.version + 1) as u64;
    let channel = Channel::new(ChannelKind::Seats, &inv.event.to_string())
        .expect("a uuid is a valid channel id");
    let data = to_raw_value(&delta.build(v, inv)).expect("a delta always serializes");
    crate::outbox::message(channel.as_str(), &data)
}

/// Whether `inbox` is the inbox of `user` in `tenant` (a hub never enqueues anything else, but
/// the worker does not take a queue entry's word for where results go).
fn inbox_matches(inbox: &str, tenant: Uuid, user: &str) -> bool {
    Channel::parse(inbox).is_ok_and(|c| {
        c.kind() == ChannelKind::Inbox
            && c.id()
                .split_once('/')
                .is_some_and(|(t, u)| Uuid::parse_str(t).ok() == Some(tenant) && u == user)
    })
}
