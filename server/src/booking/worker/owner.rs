//! The owner of one event: decides its commands, payment events and expiries in memory and
//! commits them in pipelined batches.

use super::effects::{
    ProviderCall, ack, call_providers, committed_metrics, crash_if_injected, hand_back_slots,
};
use super::settings::{Worker, now_ms};
use crate::booking::inventory::{
    Change, DeltaBuilder, Inventory, OrderNews, PaymentEvent, Request,
};
use crate::booking::queue::{Entry, Reader};
use crate::booking::store::{self, Batch, CommitError, Processed, UnappliedPayment};
use crate::metrics::METRICS;
use crate::settlement::PaymentRequest;
use crate::ticket_code::TicketClaim;
use anyhow::Context as _;
use marquee_protocol::booking::{
    CommandResult, InboxMessage, OrderStatus, OrderUpdate, Outcome, Ticket,
};
use marquee_protocol::{Channel, ChannelKind, ErrorCode};
use serde_json::value::{RawValue, to_raw_value};
use std::collections::{HashMap, HashSet};
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

/// What [`Owner::decide`] makes of a batch of entries.
struct Decision {
    /// Everything the transaction writes.
    batch: Batch,
    /// Commands that took effect or were rejected (not counting duplicates).
    decided: usize,
    /// The requests it decided.
    requests: HashMap<RequestKey, Decided>,
    /// Payment provider calls to make once it commits.
    calls: Vec<ProviderCall>,
}

/// A request's idempotency key: `(user, request id)`.
pub(super) type RequestKey = (String, String);

/// The stored or decided result of a request.
#[derive(Clone)]
pub(super) struct Decided {
    /// The onsale whose admission slot this request handed back (checkout or release).
    pub(super) finished: Option<Uuid>,
    inbox: String,
    result: Box<RawValue>,
}

/// The buyers of `requests` who finished shopping, with the onsale whose slot they hand back.
fn finished(requests: &HashMap<RequestKey, Decided>) -> impl Iterator<Item = (&str, Uuid)> {
    requests
        .iter()
        .filter_map(|((user, _), decided)| Some((user.as_str(), decided.finished?)))
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

    /// Payment events of this event not applied yet, but not those the batch in flight applies.
    pub(super) async fn unapplied_payments(
        &self,
        worker: &Worker,
    ) -> anyhow::Result<Vec<UnappliedPayment>> {
        let mut payments = store::unapplied_payments(&worker.db, self.inventory.event, 256).await?;
        if let Some(in_flight) = &self.in_flight {
            payments.retain(|p| !in_flight.payments.contains(&p.key()));
        }
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
                Some(failed) => self.commit_now(worker, reader, failed).await,
            };
        }
        let in_flight = self.in_flight.take();
        let previous = in_flight.as_ref().map(|f| &f.requests);
        let decision = self.decide(worker, &entries, previous, &payments).await;
        self.in_flight = in_flight;
        let Decision {
            batch,
            decided,
            requests,
            calls,
        } = decision?;
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
    pub(super) async fn settle(
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
                hand_back_slots(worker, finished(&in_flight.requests)).await;
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
            let Decision {
                batch,
                decided,
                requests,
                calls,
            } = self.decide(worker, &entries, None, &[]).await?;
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
                    hand_back_slots(worker, finished(&requests)).await;
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
        Ok(Decision {
            batch,
            decided,
            requests: seen,
            calls,
        })
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
