//! Booking workers: each competes for per-event leases and, for every event it owns, runs an
//! owner that decides that event's commands in memory and commits them in batches.
//!
//! An owner's loop: read up to `batch_max` commands (waiting briefly), look their request ids
//! up in `processed_request`, decide the new ones one after another against the in-memory
//! [`Inventory`], expire the holds that are due, commit everything in one transaction
//! ([`store::commit`]), and only then acknowledge the queue entries. The next batch is decided
//! while one commits (see [`Owner`]). If a commit fails, the owner reloads the event from
//! Postgres and decides the same entries again; a redelivered entry whose result is already
//! stored (its worker died between commit and acknowledge) is acknowledged without a second
//! effect or a second result.

use super::inventory::Change;
use super::inventory::{DeltaBuilder, Inventory, Request};
use super::orders::{OrderNews, PaymentEvent};
use super::queue::{CommandQueue, Entry, Reader};
use super::store::{self, Batch, CommitError, Processed, UnappliedPayment};
use crate::admission::{AdmissionKey, Slots};
use crate::metrics::METRICS;
use crate::settlement::{PAYMENTS_NOTIFY, PaymentProvider, PaymentRequest};
use crate::ticket_code::{TicketClaim, TicketKey};
use anyhow::Context as _;
use marquee_protocol::booking::{
    CommandResult, InboxMessage, OrderStatus, OrderUpdate, Outcome, Ticket,
};
use marquee_protocol::{Channel, ChannelKind, ErrorCode};
use serde_json::value::{RawValue, to_raw_value};
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Most commands decided and committed in one transaction.
    pub batch_max: usize,
    /// How long an event lease lasts without renewal; a dead owner's events move on after it.
    pub lease_ttl: Duration,
    /// Most holds expired in one sweep.
    pub sweep_max: usize,
    /// How often a worker looks for events nobody owns.
    pub discover_every: Duration,
    /// Fault injection for tests: abort the process right after the first commit, before
    /// acknowledging its entries.
    pub crash_after_commit: bool,
    /// Checks waiting-room admissions. Without it, no admission is genuine: onsales that
    /// require one refuse every command.
    pub admission: Option<AdmissionKey>,
    /// The waiting room's slots: an admitted buyer who checks out or releases hands the
    /// admission slot back once the batch has committed.
    pub slots: Option<Arc<dyn Slots>>,
    /// Signs the QR codes of the tickets pushed to buyers. Without it, pushed tickets carry no
    /// code (buyers then read them with `GET /v1/me/tickets`).
    pub ticket_key: Option<TicketKey>,
    /// How long after checkout a payment may still be processing: `processing` events extend
    /// an order's deadline up to this, never past it.
    pub payment_cap: Duration,
    /// Starts the payments of orders checked out, and refunds. Without one, orders wait for
    /// payment events from elsewhere.
    pub provider: Option<Arc<dyn PaymentProvider>>,
    /// Write notifications for paid, refunded and cancelled orders ([`crate::notify`]).
    pub notify: bool,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            batch_max: 1024,
            lease_ttl: Duration::from_secs(10),
            sweep_max: 10_000,
            discover_every: Duration::from_millis(250),
            crash_after_commit: false,
            admission: None,
            slots: None,
            ticket_key: None,
            payment_cap: Duration::from_secs(30 * 60),
            provider: None,
            notify: false,
        }
    }
}

/// A booking worker.
#[derive(Debug, Clone)]
pub struct Worker {
    /// Unique name: lease holder and stream consumer.
    pub id: String,
    /// The system of record.
    pub db: PgPool,
    /// Where commands come from.
    pub queue: CommandQueue,
    /// Settings.
    pub settings: WorkerSettings,
}

/// Unix time in milliseconds, as the inventory counts it.
fn now_ms() -> i64 {
    crate::clock::now_ms() as i64
}

impl Worker {
    /// Runs until `cancel`: owns every event it can lease, one task per event.
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        // Events with active holds or orders awaiting payment need an owner even if no
        // command arrives: their holds and orders expire. So do events with payment events not
        // applied yet.
        let with_holds: Vec<Uuid> = sqlx::query_scalar(
            "select event_id from hold where status = 'active'
             union select event_id from ticket_order where status = 'pending_payment'
             union select event_id from payment_event where applied_at is null",
        )
        .fetch_all(&self.db)
        .await
        .context("listing events with active holds")?;
        for event in with_holds {
            if let Err(e) = self.queue.register(event).await {
                tracing::warn!(%event, error = %e, "cannot register event for its holds");
            }
        }
        let news = PaymentNews::default();
        let listening = tokio::spawn(listen_for_payments(
            self.db.clone(),
            self.queue.clone(),
            news.clone(),
            cancel.clone(),
        ));
        let mut owners: JoinSet<Uuid> = JoinSet::new();
        let mut owned: HashMap<Uuid, CancellationToken> = HashMap::new();
        let mut tick = tokio::time::interval(self.settings.discover_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                Some(done) = owners.join_next() => {
                    if let Ok(event) = done {
                        owned.remove(&event);
                    }
                }
                _ = tick.tick() => {
                    let events = match self.queue.events().await {
                        Ok(events) => events,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot list events");
                            continue;
                        }
                    };
                    for event in events {
                        if owned.contains_key(&event) {
                            continue;
                        }
                        match self.queue.lease(event, &self.id, self.settings.lease_ttl).await {
                            Ok(true) => {
                                let stop = cancel.child_token();
                                owned.insert(event, stop.clone());
                                let worker = self.clone();
                                let news = news.clone();
                                owners.spawn(async move {
                                    if let Err(e) = worker.own(event, &news, stop).await {
                                        tracing::warn!(%event, error = format!("{e:#}"), "event owner stopped");
                                    }
                                    event
                                });
                            }
                            Ok(false) => {}
                            Err(e) => tracing::warn!(%event, error = %e, "lease failed"),
                        }
                    }
                }
            }
        }
        while owners.join_next().await.is_some() {}
        listening.abort();
        Ok(())
    }

    /// Owns one event until the lease is lost or `cancel` fires.
    async fn own(
        &self,
        event: Uuid,
        news: &PaymentNews,
        cancel: CancellationToken,
    ) -> anyhow::Result<()> {
        let result = self.own_inner(event, news, &cancel).await;
        if let Err(e) = self.queue.unlease(event, &self.id).await {
            tracing::debug!(%event, error = %e, "unlease failed");
        }
        result
    }

    async fn own_inner(
        &self,
        event: Uuid,
        news: &PaymentNews,
        cancel: &CancellationToken,
    ) -> anyhow::Result<()> {
        let reader = self.queue.reader(event, &self.id).await?;
        let mut owner = Owner::load(self, event).await?;
        tracing::info!(%event, worker = %self.id, version = owner.inventory.version, "owning event");
        let mut pending = reader.claim_pending().await?;
        let renew_every = self.settings.lease_ttl / 3;
        let mut renew_at = tokio::time::Instant::now() + renew_every;
        let mut refresh_at = tokio::time::Instant::now() + Duration::from_secs(1);
        // Payment events recorded before this owner started are applied first.
        let mut look_for_payments = true;
        while !cancel.is_cancelled() {
            let now = tokio::time::Instant::now();
            if now >= renew_at {
                if !self
                    .queue
                    .lease(event, &self.id, self.settings.lease_ttl)
                    .await?
                {
                    tracing::warn!(%event, "lease lost; leaving the event to its new owner");
                    // The batch in flight commits only if no new owner committed since (its
                    // fence); either way its entries are acknowledged only if it did.
                    owner.settle(self, &reader).await?;
                    return Ok(());
                }
                renew_at = now + renew_every;
            }
            if now >= refresh_at {
                let mut conn = self.db.acquire().await?;
                owner.inventory.onsales = store::load_onsales(&mut conn, event).await?;
                refresh_at = now + Duration::from_secs(1);
                // A notification may have been lost while the listener reconnected.
                look_for_payments = true;
            }
            let payments = if look_for_payments || news.take(event) {
                look_for_payments = false;
                owner.unapplied_payments(self).await?
            } else {
                Vec::new()
            };
            let entries = if pending.is_empty() {
                let next = [
                    owner.inventory.next_expiry(),
                    owner.inventory.next_order_due(),
                ]
                .into_iter()
                .flatten()
                .min();
                let until_expiry = if payments.is_empty() {
                    next.map_or(Duration::from_millis(100), |at| {
                        Duration::from_millis((at - now_ms()).clamp(1, 100) as u64)
                    })
                } else {
                    // Payments are waiting: take whatever commands are there, do not wait.
                    Duration::from_millis(1)
                };
                reader.read(self.settings.batch_max, until_expiry).await?
            } else {
                std::mem::take(&mut pending)
            };
            owner.step(self, &reader, entries, payments).await?;
        }
        // Entries of a batch that failed stay unacknowledged, for whoever owns the event next.
        owner.settle(self, &reader).await?;
        Ok(())
    }
}

/// The owner of one event: its inventory and how to commit it.
///
/// Batches are pipelined: while one batch commits, the next is decided against the memory
/// that already includes the first one's effects. The second batch's commit starts only after
/// the first one's succeeded (its fence is the version the first produces); if the first
/// fails, the owner reloads the event and decides both batches' entries again. Nothing of an
/// uncommitted batch leaves the owner: results go out through the outbox, after the commit.
struct Owner {
    inventory: Inventory,
    in_flight: Option<InFlight>,
}

/// A batch being committed.
struct InFlight {
    entries: Vec<Entry>,
    /// Commands that took effect or were rejected (for the metrics).
    decided: usize,
    /// The requests it decided: a retry of one in the next batch gets this result (it is not
    /// in `processed_request` until the commit).
    requests: HashMap<RequestKey, Decided>,
    /// The payment events it applies: not to be read again while it commits.
    payments: HashSet<(String, String)>,
    /// Payment provider calls to make once it commits.
    calls: Vec<ProviderCall>,
    commit: tokio::task::JoinHandle<Result<i64, CommitError>>,
}

/// What [`Owner::decide`] returns: the batch, how many commands took effect or were rejected,
/// the requests it decided, and the payment provider calls to make once it commits.
type Decision = (
    Batch,
    usize,
    HashMap<RequestKey, Decided>,
    Vec<ProviderCall>,
);

/// A call to a payment provider, made once the batch that needs it has committed.
#[derive(Debug, Clone)]
enum ProviderCall {
    /// Start the payment of an order just checked out.
    Create(PaymentRequest),
    /// Give back a late payment whose seats were sold.
    Refund {
        provider: String,
        order: Uuid,
        payment_ref: String,
    },
}

/// Makes the provider calls of a committed batch, in the background. Best effort: an order
/// whose payment could not be started expires unpaid; a refund that fails is logged (its
/// payment event's outcome says `late_payment_refunded` for operators).
fn call_providers(worker: &Worker, calls: Vec<ProviderCall>) {
    let Some(provider) = worker.settings.provider.clone() else {
        for call in calls {
            if let ProviderCall::Refund {
                provider,
                order,
                payment_ref,
            } = call
            {
                tracing::error!(%order, %provider, payment = %payment_ref,
                    "a refund is owed but this process has no payment provider: refund it by hand");
            }
        }
        return;
    };
    if calls.is_empty() {
        return;
    }
    tokio::spawn(async move {
        for call in calls {
            match call {
                ProviderCall::Create(request) => {
                    if let Err(e) = provider.create(&request).await {
                        tracing::warn!(order = %request.order, error = %e, "cannot start a payment");
                    }
                }
                ProviderCall::Refund {
                    provider: name,
                    order,
                    payment_ref,
                } => {
                    if name != provider.name() {
                        tracing::error!(%order, provider = %name, "no client for this provider: refund it by hand");
                    } else if let Err(e) = provider.refund(order, &payment_ref).await {
                        tracing::error!(%order, error = %e, "refund failed: refund it by hand");
                    }
                }
            }
        }
    });
}

/// A request's idempotency key: `(user, request id)`.
type RequestKey = (String, String);

/// The stored or decided result of a request.
#[derive(Clone)]
struct Decided {
    /// The onsale whose admission slot this request handed back (checkout or release).
    finished: Option<Uuid>,
    inbox: String,
    result: Box<RawValue>,
}

impl Owner {
    async fn load(worker: &Worker, event: Uuid) -> anyhow::Result<Self> {
        let inventory = store::load(&worker.db, event)
            .await?
            .with_context(|| format!("event {event} does not exist"))?;
        Ok(Self {
            inventory,
            in_flight: None,
        })
    }

    /// Payment events of this event not applied yet, but not those the batch in flight applies.
    async fn unapplied_payments(&self, worker: &Worker) -> anyhow::Result<Vec<UnappliedPayment>> {
        let mut payments = store::unapplied_payments(&worker.db, self.inventory.event, 256).await?;
        if let Some(in_flight) = &self.in_flight {
            payments.retain(|p| !in_flight.payments.contains(&p.key()));
        }
        Ok(payments)
    }

    /// Decides one batch of entries (plus due expiries) and starts its commit once the batch
    /// in flight, if any, has committed and been acknowledged.
    async fn step(
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
                Some(failed) => self.commit_now(worker, reader, failed).await,
            };
        }
        let in_flight = self.in_flight.take();
        let previous = in_flight.as_ref().map(|f| &f.requests);
        let decision = self.decide(worker, &entries, previous, &payments).await;
        self.in_flight = in_flight;
        let (batch, decided, requests, calls) = decision?;
        if let Some(mut failed) = self.settle(worker, reader).await? {
            // This batch was decided on top of one that did not commit: decide both again.
            failed.extend(entries);
            return self.commit_now(worker, reader, failed).await;
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
            decided,
            requests,
            calls,
            payments: payments.iter().map(UnappliedPayment::key).collect(),
            commit: tokio::spawn(async move {
                store::commit(&db, tenant, event, version, &actor, &batch).await
            }),
        });
        Ok(())
    }

    /// Waits for the batch in flight, if any: acknowledges its entries if it committed;
    /// otherwise reloads the event from Postgres and returns the entries to decide again.
    async fn settle(
        &mut self,
        worker: &Worker,
        reader: &Reader,
    ) -> anyhow::Result<Option<Vec<Entry>>> {
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
                committed_metrics(&in_flight.entries, in_flight.decided);
                crash_if_injected(worker);
                ack(reader, &in_flight.entries).await?;
                hand_back_slots(worker, &in_flight.requests).await;
                call_providers(worker, in_flight.calls);
                Ok(None)
            }
            Err(e) => {
                let fenced = matches!(e, CommitError::Fenced);
                tracing::warn!(event = %self.inventory.event, error = %e, fenced, "batch failed; reloading the event");
                *self = Self::load(worker, self.inventory.event).await?;
                Ok(Some(in_flight.entries))
            }
        }
    }

    /// Decides and commits `entries` without pipelining, retrying from a fresh load of the
    /// event if a commit fails, then acknowledges them.
    async fn commit_now(
        &mut self,
        worker: &Worker,
        reader: &Reader,
        entries: Vec<Entry>,
    ) -> anyhow::Result<()> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            // Payment events of a failed batch are read again with the next step.
            let (batch, decided, requests, calls) =
                self.decide(worker, &entries, None, &[]).await?;
            if batch.is_empty() {
                break;
            }
            match store::commit(
                &worker.db,
                self.inventory.tenant,
                self.inventory.event,
                self.inventory.version,
                &worker.id,
                &batch,
            )
            .await
            {
                Ok(version) => {
                    self.inventory.version = version;
                    committed_metrics(&entries, decided);
                    crash_if_injected(worker);
                    ack(reader, &entries).await?;
                    hand_back_slots(worker, &requests).await;
                    call_providers(worker, calls);
                    return Ok(());
                }
                Err(e) if attempts < 3 => {
                    let fenced = matches!(e, CommitError::Fenced);
                    tracing::warn!(event = %self.inventory.event, error = %e, fenced, "batch failed; reloading the event");
                    *self = Self::load(worker, self.inventory.event).await?;
                }
                Err(e) => return Err(e).context("committing a booking batch"),
            }
        }
        ack(reader, &entries).await
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
        let mut batch = Batch {
            notify: worker.settings.notify,
            ..Batch::default()
        };
        let mut delta = DeltaBuilder::default();
        let mut seen: HashMap<RequestKey, Decided> = HashMap::new();
        let mut results = Vec::new();
        let now = now_ms();
        let mut decided = 0;
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
                .and_then(|(token, key)| key.verify(token));
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
            // Done shopping: the admission's slot goes back once this commits.
            let finished = match (&outcome, &admission) {
                (Outcome::CheckedOut { .. } | Outcome::Released { .. }, Some(pass)) => {
                    Some(pass.onsale)
                }
                _ => None,
            };
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
                    finished,
                },
            );
            decided += 1;
        }
        let mut news = Vec::new();
        let mut calls = Vec::new();
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
            tracing::info!(event = %inv.event, order = %payment.order.id, provider = %payment.provider,
                payment_event = %payment.event_id, outcome = decision.outcome, "payment event applied");
            if let Some((provider, payment_ref)) = decision.refund {
                calls.push(ProviderCall::Refund {
                    provider,
                    order: payment.order.id,
                    payment_ref,
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
        for change in &batch.changes {
            if let Change::Checkout {
                order,
                user,
                total_minor,
                currency,
                ..
            } = change
            {
                calls.push(ProviderCall::Create(PaymentRequest {
                    order: *order,
                    user: user.clone(),
                    amount_minor: *total_minor,
                    currency: currency.clone(),
                }));
            }
        }
        Ok((batch, decided, seen, calls))
    }
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

/// Events whose payment events were recorded since their owner last looked, as the payment
/// hooks' notifications report them.
#[derive(Debug, Clone, Default)]
struct PaymentNews(Arc<Mutex<HashSet<Uuid>>>);

impl PaymentNews {
    fn add(&self, event: Uuid) {
        self.0.lock().expect("payment news lock").insert(event);
    }

    /// Whether `event` has news, forgetting it.
    fn take(&self, event: Uuid) -> bool {
        self.0.lock().expect("payment news lock").remove(&event)
    }
}

/// Listens for the payment hooks' notifications until `cancel`: the event gets news, and an
/// owner if it has none (registering it puts it among the events workers lease). Lost
/// notifications cost at most a second: owners also look every second.
async fn listen_for_payments(
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

/// Hands back the admission slots of the buyers in a committed batch who checked out or
/// released. Best effort: if the line cannot be reached, the slot comes back when the
/// admission expires instead.
async fn hand_back_slots(worker: &Worker, requests: &HashMap<RequestKey, Decided>) {
    let Some(slots) = &worker.settings.slots else {
        return;
    };
    for ((user, _), decided) in requests {
        if let Some(onsale) = decided.finished
            && let Err(e) = slots.finish(onsale, user).await
        {
            tracing::warn!(%onsale, error = %e, "cannot hand an admission slot back");
        }
    }
}

/// Records a committed batch in the metrics.
fn committed_metrics(entries: &[Entry], decided: usize) {
    let now = now_ms() as u64;
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
fn crash_if_injected(worker: &Worker) {
    if worker.settings.crash_after_commit {
        tracing::error!("fault injection: aborting after commit, before acknowledging");
        std::process::abort();
    }
}

/// Acknowledges entries whose batch committed.
async fn ack(reader: &Reader, entries: &[Entry]) -> anyhow::Result<()> {
    let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
    reader.ack(&ids).await?;
    Ok(())
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
