//! Lease discovery: a worker finds the events that need an owner (queued commands, open holds,
//! orders awaiting payment, payment news), leases each it can, and runs an owner for it.

use super::effects::{PaymentNews, listen_for_payments, relay};
use super::owner::{Owner, PAYMENTS_PER_STEP};
use super::settings::{Worker, now_ms};
use crate::booking::queue::CommandQueue;
use crate::booking::store;
use anyhow::Context as _;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often a worker looks in Postgres for events that need an owner (see
/// `register_from_postgres`).
const REDISCOVER_EVERY: Duration = Duration::from_secs(2);

/// How long an owner may go without starting a step before its lease is left to lapse, so
/// that another worker takes the event from an owner that is stuck rather than slow. Far past
/// any step seen (a full onsale's longest commits take a few seconds).
const STUCK_AFTER: Duration = Duration::from_secs(30);

/// Keeps an owner's lease from a task of its own, renewed every third of its TTL whatever the
/// owner is doing. Renewed between steps only, a lease lapsed whenever one step outlasted it:
/// at a full-size onsale's peak a commit waiting on Postgres took longer than the 2 s lease of
/// the load test, and the two workers took the event from each other 12 to 14 times a run,
/// each time with a fenced batch and a reload (BENCHMARKS.md, runs 36 and 37). The fence, not
/// the lease, keeps two owners from both committing; the lease only keeps a second owner from
/// starting. An owner that starts no step for [`STUCK_AFTER`] is not kept.
struct LeaseKeeper {
    /// When the owner last started a step (`now_ms`).
    stepped_at: Arc<AtomicI64>,
    /// Stops the renewals.
    stop: CancellationToken,
    /// Ends `Ok(false)` when the lease went to another worker, `Ok(true)` when stopped,
    /// `Err` when it could not be renewed or the owner stopped stepping. Taken once it has
    /// ended; aborted if the keeper is dropped (its owner panicked), so no renewal outlives
    /// the owner.
    renewing: Option<JoinHandle<anyhow::Result<bool>>>,
}

impl LeaseKeeper {
    /// Keeps `worker`'s lease of `event`, of `ttl`, while its owner starts a step at least
    /// every `stuck_after` ([`STUCK_AFTER`]).
    fn start(
        queue: CommandQueue,
        worker: String,
        event: Uuid,
        ttl: Duration,
        stuck_after: Duration,
    ) -> Self {
        let stepped_at = Arc::new(AtomicI64::new(now_ms()));
        let stop = CancellationToken::new();
        let (last_step, stopped, id) = (stepped_at.clone(), stop.clone(), worker);
        let renewing = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stopped.cancelled() => return Ok(true),
                    () = tokio::time::sleep(ttl / 3) => {}
                }
                let idle = now_ms() - last_step.load(Ordering::Relaxed);
                if idle > stuck_after.as_millis() as i64 {
                    anyhow::bail!(
                        "the owner started no step for {idle} ms; its lease is left to lapse"
                    );
                }
                if !queue.lease(event, &id, ttl).await? {
                    return Ok(false);
                }
            }
        });
        Self {
            stepped_at,
            stop,
            renewing: Some(renewing),
        }
    }

    /// Marks the start of a step.
    fn step(&self) {
        self.stepped_at.store(now_ms(), Ordering::Relaxed);
    }

    /// Whether the lease is still this owner's; `Err` if it could not be kept.
    async fn held(&mut self) -> anyhow::Result<bool> {
        match self.renewing.take_if(|renewing| renewing.is_finished()) {
            None => Ok(self.renewing.is_some()),
            Some(ended) => ended.await.context("the lease keeper")?,
        }
    }

    /// Stops renewing, and waits for a renewal under way, so none follows the owner's end.
    async fn stop(mut self) {
        self.stop.cancel();
        if let Some(renewing) = self.renewing.take() {
            let _ = renewing.await;
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        if let Some(renewing) = &self.renewing {
            renewing.abort();
        }
    }
}

impl Worker {
    /// Runs until `cancel`: owns every event it can lease, one task per event.
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        self.register_from_postgres()
            .await
            .context("listing events with active holds")?;
        let mut rediscover_at = tokio::time::Instant::now() + REDISCOVER_EVERY;
        let relaying = tokio::spawn(relay(self.clone(), cancel.clone()));
        let news = PaymentNews::default();
        let listening = tokio::spawn(listen_for_payments(
            self.db.clone(),
            self.queue.clone(),
            news.clone(),
            cancel.clone(),
        ));
        let mut owners: JoinSet<Uuid> = JoinSet::new();
        let mut owned: HashMap<Uuid, CancellationToken> = HashMap::new();
        // Which event each owner task holds, so a task that panics still gives its event up.
        let mut tasks: HashMap<tokio::task::Id, Uuid> = HashMap::new();
        // Events whose owner panicked: not taken again by this worker before the instant, the
        // pause doubling with each panic (up to 30 s), so a fault that repeats is not a loop.
        let mut panicked: HashMap<Uuid, (tokio::time::Instant, u32)> = HashMap::new();
        let mut tick = tokio::time::interval(self.settings.discover_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                Some(done) = owners.join_next_with_id() => {
                    let id = match &done {
                        Ok((id, _)) => *id,
                        Err(e) => e.id(),
                    };
                    if let Some(event) = tasks.remove(&id) {
                        owned.remove(&event);
                        if let Err(e) = done {
                            // Its lease is given up at once, so this or another worker owns the
                            // event again within a discovery tick, not a lease TTL.
                            tracing::error!(%event, error = %e, "an event owner panicked; giving the event up");
                            let times = panicked.get(&event).map_or(0, |(_, n)| *n) + 1;
                            let pause = Duration::from_millis(250 << times.min(7)).min(Duration::from_secs(30));
                            panicked.insert(event, (tokio::time::Instant::now() + pause, times));
                            if let Err(e) = self.queue.unlease(event, &self.id).await {
                                tracing::warn!(%event, error = %e, "unlease failed");
                            }
                        }
                    }
                }
                _ = tick.tick() => {
                    if tokio::time::Instant::now() >= rediscover_at {
                        if let Err(e) = self.register_from_postgres().await {
                            tracing::warn!(error = %e, "cannot list events with active holds");
                        }
                        rediscover_at = tokio::time::Instant::now() + REDISCOVER_EVERY;
                    }
                    let events = match self.queue.events().await {
                        Ok(events) => events,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot list events");
                            continue;
                        }
                    };
                    let now = tokio::time::Instant::now();
                    panicked.retain(|_, (until, _)| now.duration_since(*until) < Duration::from_secs(300));
                    for event in events {
                        if owned.contains_key(&event)
                            || panicked.get(&event).is_some_and(|(until, _)| *until > now)
                        {
                            continue;
                        }
                        match self.queue.lease(event, &self.id, self.settings.lease_ttl).await {
                            Ok(true) => {
                                let stop = cancel.child_token();
                                owned.insert(event, stop.clone());
                                let worker = self.clone();
                                let news = news.clone();
                                let task = owners.spawn(async move {
                                    if let Err(e) = worker.own(event, &news, stop).await {
                                        tracing::warn!(%event, error = format!("{e:#}"), "event owner stopped");
                                    }
                                    event
                                });
                                tasks.insert(task.id(), event);
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
        let _ = relaying.await;
        Ok(())
    }

    /// Registers every event that needs an owner by what Postgres holds, even if no command
    /// arrives: events with active holds or orders awaiting payment (they expire), and events
    /// with payment events not applied yet. At start, and every [`REDISCOVER_EVERY`] after,
    /// so events the command queue forgot (Redis flushed, restarted, failed over) are found
    /// again.
    async fn register_from_postgres(&self) -> Result<(), sqlx::Error> {
        let events: Vec<Uuid> = sqlx::query_scalar(
            "select event_id from hold where status = 'active'
             union select event_id from ticket_order where status = 'pending_payment'
             union select event_id from payment_event where applied_at is null",
        )
        .fetch_all(&self.db)
        .await?;
        for event in events {
            if let Err(e) = self.queue.register(event).await {
                tracing::warn!(%event, error = %e, "cannot register event for its holds");
            }
        }
        Ok(())
    }

    /// Owns one event until the lease is lost or `cancel` fires.
    async fn own(
        &self,
        event: Uuid,
        news: &PaymentNews,
        cancel: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut keeper = LeaseKeeper::start(
            self.queue.clone(),
            self.id.clone(),
            event,
            self.settings.lease_ttl,
            STUCK_AFTER,
        );
        let result = self.own_inner(event, news, &cancel, &mut keeper).await;
        keeper.stop().await;
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
        keeper: &mut LeaseKeeper,
    ) -> anyhow::Result<()> {
        let reader = self.queue.reader(event, &self.id).await?;
        let mut catalog =
            store::catalog_version(&mut *crate::db::acquire(&self.db).await?, event).await?;
        let mut owner = Owner::load(self, event).await?;
        tracing::info!(%event, worker = %self.id, version = owner.inventory.version, "owning event");
        let mut pending = reader.claim_pending().await?;
        let mut refresh_at = tokio::time::Instant::now() + Duration::from_secs(1);
        // Payment events recorded before this owner started are applied first.
        let mut look_for_payments = true;
        while !cancel.is_cancelled() {
            keeper.step();
            let now = tokio::time::Instant::now();
            if !keeper.held().await? {
                tracing::warn!(%event, "lease lost; leaving the event to its new owner");
                // The batch in flight commits only if no new owner committed since (its
                // fence); either way its entries are acknowledged only if it did.
                owner.settle(self, &reader).await?;
                return Ok(());
            }
            if now >= refresh_at {
                let mut conn = crate::db::acquire(&self.db).await?;
                owner.inventory.onsales = store::load_onsales(&mut conn, event).await?;
                let latest = store::catalog_version(&mut conn, event).await?;
                drop(conn);
                if latest != catalog {
                    // What the event sells changed: finish the batch in flight, then load the
                    // event again (the version read first, so a change during the load is
                    // seen at the next look).
                    tracing::info!(%event, "the event's catalog changed; loading it again");
                    if let Some((failed, _)) = owner.settle(self, &reader).await? {
                        pending.extend(failed);
                    }
                    catalog = latest;
                    owner = Owner::load(self, event).await?;
                }
                refresh_at = now + Duration::from_secs(1);
                // A notification may have been lost while the listener reconnected.
                look_for_payments = true;
            }
            let payments = if look_for_payments || news.take(event) {
                let payments = owner.unapplied_payments(self).await?;
                // A full look leaves more behind: look again at the next step.
                look_for_payments = payments.len() as i64 >= PAYMENTS_PER_STEP;
                payments
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::booking::queue::MemoryQueue;

    /// A lease of 600 ms, renewed every 200 ms: the waits below are several renewals long.
    const TTL: Duration = Duration::from_millis(600);

    fn keeper(queue: &CommandQueue, event: Uuid, stuck_after: Duration) -> LeaseKeeper {
        LeaseKeeper::start(queue.clone(), "w1".into(), event, TTL, stuck_after)
    }

    /// A queue in which worker `w1` holds the lease of each of `events`.
    async fn leased(events: &[Uuid]) -> CommandQueue {
        let queue = CommandQueue::Memory(Arc::new(MemoryQueue::default()));
        for &event in events {
            assert!(queue.lease(event, "w1", TTL).await.unwrap());
        }
        queue
    }

    async fn other_takes(queue: &CommandQueue, event: Uuid) -> bool {
        queue.lease(event, "w2", TTL).await.unwrap()
    }

    #[tokio::test]
    async fn a_step_longer_than_the_lease_keeps_it_and_a_stopped_keeper_renews_nothing() {
        let event = Uuid::new_v4();
        let queue = leased(&[event]).await;
        let mut kept = keeper(&queue, event, STUCK_AFTER);
        kept.step();
        // One step, two and a half leases long.
        tokio::time::sleep(TTL * 5 / 2).await;
        assert!(
            !other_takes(&queue, event).await,
            "the lease lapsed during a slow step"
        );
        assert!(kept.held().await.unwrap());
        kept.stop().await;
        tokio::time::sleep(TTL + TTL / 2).await;
        assert!(
            other_takes(&queue, event).await,
            "a stopped keeper still renewed"
        );
    }

    #[tokio::test]
    async fn a_lease_another_worker_took_is_reported_lost() {
        let event = Uuid::new_v4();
        let queue = leased(&[event]).await;
        let mut kept = keeper(&queue, event, STUCK_AFTER);
        queue.unlease(event, "w1").await.unwrap();
        assert!(other_takes(&queue, event).await);
        tokio::time::sleep(TTL).await;
        assert!(!kept.held().await.unwrap());
        // Asked again, it stays lost.
        assert!(!kept.held().await.unwrap());
        kept.stop().await;
    }

    #[tokio::test]
    async fn an_owner_that_stops_stepping_or_panics_is_not_kept() {
        let (stuck, panicked) = (Uuid::new_v4(), Uuid::new_v4());
        let queue = leased(&[stuck, panicked]).await;
        let mut kept = keeper(&queue, stuck, TTL / 2);
        // Dropped without being stopped, as when its owner's task panics.
        drop(keeper(&queue, panicked, STUCK_AFTER));
        tokio::time::sleep(TTL * 5 / 2).await;
        assert!(
            other_takes(&queue, stuck).await,
            "a stuck owner's lease was kept"
        );
        assert!(
            other_takes(&queue, panicked).await,
            "a dropped keeper still renewed"
        );
        let error = kept.held().await.unwrap_err();
        assert!(
            format!("{error:#}").contains("started no step"),
            "{error:#}"
        );
    }
}
