//! What a committed batch owes the world beyond Postgres: the queue entries acknowledged, the
//! admission slots handed back, the payment providers called, and the metrics; and the payment
//! news that wakes owners.

use super::settings::Worker;
use crate::booking::queue::{CommandQueue, Entry, Reader};
use crate::metrics::METRICS;
use crate::settlement::{PAYMENTS_NOTIFY, PaymentRequest};
use sqlx::PgPool;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A call to a payment provider, made once the batch that needs it has committed.
#[derive(Debug, Clone)]
pub(super) enum ProviderCall {
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
pub(super) fn call_providers(worker: &Worker, calls: Vec<ProviderCall>) {
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
    let db = worker.db.clone();
    tokio::spawn(async move {
        for call in calls {
            match call {
                ProviderCall::Create(request) => match provider.create(&request).await {
                    Ok(reference) => {
                        // The payment the checkout started: its events must name it.
                        let recorded = sqlx::query(
                            "update ticket_order set checkout_payment_ref = $2, updated_at = now()
                             where ticket_order_id = $1 and checkout_payment_ref is null",
                        )
                        .bind(request.order)
                        .bind(&reference)
                        .execute(&db)
                        .await;
                        if let Err(e) = recorded {
                            tracing::warn!(order = %request.order, error = %e, "cannot record the payment reference");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(order = %request.order, error = %e, "cannot start a payment");
                    }
                },
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

/// Hands back the admission slots of the buyers in a committed batch who checked out or
/// released (`(user, onsale)` pairs). Best effort: if the line cannot be reached, the slot comes back when the
/// admission expires instead.
pub(super) async fn hand_back_slots<'a>(
    worker: &Worker,
    finished: impl Iterator<Item = (&'a str, Uuid)>,
) {
    let Some(slots) = &worker.settings.slots else {
        return;
    };
    for (user, onsale) in finished {
        if let Err(e) = slots.finish(onsale, user).await {
            tracing::warn!(%onsale, error = %e, "cannot hand an admission slot back");
        }
    }
}

/// Records a committed batch in the metrics.
pub(super) fn committed_metrics(entries: &[Entry], decided: usize) {
    let now = crate::clock::now_ms();
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
