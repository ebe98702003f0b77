//! The admission controller: one per onsale at a time (a lease in the line), on any node.
//!
//! Every tick (100 ms) the holder of an onsale's lease:
//! - moves it along its schedule: `scheduled` → `pre_queue` when the pre-queue opens (drawing
//!   the shuffle seed and publishing its commitment) → `live` at the start (closing the
//!   pre-queue, drawing its order with the seed, publishing the seed and the order);
//! - mirrors the status operators set (paused, live, closed, sold out) into the line;
//! - ends places whose grace period, show-up window or admission ran out;
//! - once a second, detaches the connections of nodes whose heartbeat ran out (they died), so
//!   places attached only there start their grace period;
//! - checks the event's inventory and stops admission the moment nothing is left to sell (and
//!   resumes it when seats come back);
//! - admits from the front of the line at the configured rate, smoothly: a token bucket that
//!   fills continuously and holds at most four ticks' worth, so 10 per second is one every
//!   100 ms, never a burst of 600 once a minute;
//! - publishes the counts on `queue:{onsale}` once a second.
//!
//! Settings are read from Postgres once a second, so an operator's change takes effect within
//! a second on whichever node holds the lease. Whoever holds it, the line's scripts make every
//! step atomic; a second controller for a moment (lease lost while a tick runs) can at worst
//! admit one tick early, never admit anybody twice or out of order.

use super::line::{Line, LineView, Timing};
use super::shuffle::{self, Seed};
use crate::admission::{AdmissionKey, Purchases, StagedPurchase};
use crate::clock::now_ms;
use crate::hub::Hub;
use crate::metrics::{METRICS, OnsaleFigures};
use marquee_protocol::queue::{OnsaleChange, QueueCounts, QueueEvent};
use marquee_protocol::{Channel, ChannelKind};
use sqlx::{PgPool, Row};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often the controller admits and expires.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// How often settings are re-read from Postgres and counts published.
const SETTINGS_EVERY: Duration = Duration::from_secs(1);

/// How often the event's remaining inventory is counted.
const INVENTORY_EVERY: Duration = Duration::from_millis(500);

/// How often the holder recounts its event's tickets for the oversell guard.
const GUARD_EVERY: Duration = Duration::from_secs(10);

/// How long a controller holds an onsale without renewing.
const LEASE_TTL: Duration = Duration::from_secs(3);

/// Most places of each kind ended per tick.
const EXPIRE_MAX: usize = 1000;

/// A tick longer than this is logged with where its time went: the controller admits when a
/// tick ends, at most a second's worth at once, so slow ticks are admission falling behind its
/// rate.
const SLOW_TICK: Duration = Duration::from_secs(1);

/// Where a tick's time went, stage by stage.
struct Stages {
    started: Instant,
    last: Instant,
    spent: Vec<(&'static str, Duration)>,
}

impl Stages {
    fn start() -> Self {
        let now = Instant::now();
        Self {
            started: now,
            last: now,
            spent: Vec::new(),
        }
    }

    /// The stage `name` ended now.
    fn done(&mut self, name: &'static str) {
        let now = Instant::now();
        self.spent.push((name, now - self.last));
        self.last = now;
    }

    /// Logs the tick if it was slow.
    fn report(&self, onsale: Uuid) {
        let took = self.started.elapsed();
        if took < SLOW_TICK {
            return;
        }
        let stages = self
            .spent
            .iter()
            .filter(|(_, d)| *d >= Duration::from_millis(50))
            .map(|(name, d)| format!("{name} {:.2} s", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ");
        tracing::warn!(%onsale, took_s = took.as_secs_f64(), %stages,
            "a slow admission tick: admission falls behind its rate");
    }
}

/// An onsale's settings, as Postgres has them.
#[derive(Debug, Clone)]
struct Settings {
    tenant: Uuid,
    event: Uuid,
    status: String,
    starts_at: OffsetDateTime,
    prequeue_opens_at: Option<OffsetDateTime>,
    rate: f64,
    cap: u64,
    seed: Option<Vec<u8>>,
}

/// What the controller keeps per onsale between ticks.
#[derive(Debug)]
struct Managed {
    settings: Settings,
    /// Admissions owed: fills at `rate` per second, holds at most four ticks' worth (and at
    /// least one admission).
    tokens: f64,
    last_tick: Instant,
    leased: bool,
    last_lease: Option<Instant>,
    last_inventory: Option<Instant>,
    /// Seats in the event's map (they do not change while it sells).
    seats: Option<i64>,
    /// Admissions counted at each published sample, for the measured outflow.
    outflow: std::collections::VecDeque<(Instant, u64)>,
    /// When the oversell guard last recounted.
    last_guard: Option<Instant>,
}

/// Sets an onsale's figures, and its event's, to 0 on a node that no longer reports them (the
/// lease went to another node, or the onsale is no longer followed): dashboards take the
/// largest value over nodes, which is then the holder's.
fn forget_figures(onsale: Uuid, event: Uuid) {
    METRICS.onsale(&onsale.to_string(), None);
    METRICS.oversold(&event.to_string(), 0);
    let statuses = [
        "pending_payment",
        "paid",
        "expired",
        "cancelled",
        "refunded",
        "failed",
    ];
    let orders: Vec<(String, i64)> = statuses.iter().map(|s| ((*s).to_owned(), 0)).collect();
    METRICS.event_counts(&event.to_string(), (0, 0), &orders);
}

/// One node's admission controller.
#[derive(Debug, Clone)]
pub struct Controller {
    /// Lease holder name (the node).
    pub id: String,
    /// The system of record.
    pub db: PgPool,
    /// The line.
    pub line: Line,
    /// Where counts, commitments and draws are published.
    pub hub: Hub,
    /// Durations applied to places.
    pub timing: Timing,
    /// Where purchases staged while waiting go when their buyer is admitted.
    pub purchases: Option<Arc<dyn Purchases>>,
    /// Signs the admissions those purchases carry.
    pub key: Option<AdmissionKey>,
}

impl Controller {
    /// Runs until `stop`.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let mut onsales: HashMap<Uuid, Managed> = HashMap::new();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_settings: Option<Instant> = None;
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                _ = tick.tick() => {}
            }
            let now = Instant::now();
            let publish_counts = last_settings.is_none_or(|t| now - t >= SETTINGS_EVERY);
            // Nodes that died with buyers attached, looked up once a second.
            let mut dead = Vec::new();
            if publish_counts {
                match self.line.dead_nodes(now_ms()).await {
                    Ok(nodes) => dead = nodes,
                    Err(e) => tracing::warn!(error = %e, "cannot list dead nodes"),
                }
            }
            if publish_counts {
                last_settings = Some(now);
                match self.load().await {
                    Ok(fresh) => {
                        onsales.retain(|id, m| {
                            let kept = fresh.contains_key(id);
                            if !kept && m.leased {
                                // No longer followed: its figures stop, at 0.
                                forget_figures(*id, m.settings.event);
                            }
                            kept
                        });
                        for (id, settings) in fresh {
                            onsales
                                .entry(id)
                                .and_modify(|m| m.settings = settings.clone())
                                .or_insert_with(|| Managed {
                                    settings,
                                    tokens: 0.0,
                                    last_tick: now,
                                    leased: false,
                                    last_lease: None,
                                    last_inventory: None,
                                    seats: None,
                                    outflow: Default::default(),
                                    last_guard: None,
                                });
                        }
                    }
                    Err(e) => tracing::warn!(error = format!("{e:#}"), "cannot load onsales"),
                }
            }
            if now.elapsed() >= SLOW_TICK && onsales.values().any(|m| m.leased) {
                tracing::warn!(
                    took_s = now.elapsed().as_secs_f64(),
                    "slow to list dead nodes and load onsales: admission falls behind its rate"
                );
            }
            for (id, managed) in &mut onsales {
                let mut stages = Stages::start();
                let stepped = self
                    .step(*id, managed, now, publish_counts, &dead, &mut stages)
                    .await;
                // Only the holder admits: another node's slow try for the lease holds nobody
                // back.
                if managed.leased {
                    stages.report(*id);
                }
                if let Err(e) = stepped {
                    tracing::warn!(onsale = %id, error = format!("{e:#}"), "admission tick failed");
                }
            }
        }
    }

    /// Onsales with a waiting room that is open, about to open, or recently ended (so the
    /// line learns they ended).
    async fn load(&self) -> anyhow::Result<HashMap<Uuid, Settings>> {
        let rows = sqlx::query(
            "select onsale_id, tenant_id, event_id, status::text as status, starts_at,
                    prequeue_opens_at, admission_rate, active_cap, shuffle_seed
             from onsale
             where requires_admission and (
                 status in ('pre_queue', 'live', 'paused')
                 -- A schedule moves only an onsale whose event the public can see.
                 or (status = 'scheduled' and coalesce(prequeue_opens_at, starts_at) <= now() + interval '2 seconds'
                     and exists (select 1 from event e where e.event_id = onsale.event_id
                                 and e.status in ('published', 'on_sale', 'sold_out')))
                 or (status in ('sold_out', 'closed') and updated_at > now() - interval '10 minutes'))",
        )
        .fetch_all(&self.db)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get("onsale_id"),
                    Settings {
                        tenant: r.get("tenant_id"),
                        event: r.get("event_id"),
                        status: r.get("status"),
                        starts_at: r.get("starts_at"),
                        prequeue_opens_at: r.get("prequeue_opens_at"),
                        rate: r.get("admission_rate"),
                        cap: r.get::<i32, _>("active_cap").max(0) as u64,
                        seed: r.get("shuffle_seed"),
                    },
                )
            })
            .collect())
    }

    /// One tick of one onsale, marking in `stages` where its time goes.
    async fn step(
        &self,
        onsale: Uuid,
        m: &mut Managed,
        now: Instant,
        publish_counts: bool,
        dead: &[String],
        stages: &mut Stages,
    ) -> anyhow::Result<()> {
        if m.last_lease.is_none_or(|t| now - t >= SETTINGS_EVERY) || !m.leased {
            let was = m.leased;
            m.leased = self.line.lease(onsale, &self.id, LEASE_TTL).await?;
            m.last_lease = Some(now);
            if was && !m.leased {
                // Another node holds it now and reports it; this one's figures would be stale.
                forget_figures(onsale, m.settings.event);
            }
        }
        stages.done("lease");
        if !m.leased {
            return Ok(());
        }
        self.follow_schedule(onsale, m).await?;
        stages.done("schedule");
        let wall = now_ms();
        self.line.expire(onsale, wall, EXPIRE_MAX).await?;
        stages.done("expiry");
        for node in dead {
            // Its connections never closed: their places start their grace period now.
            let lost = self
                .line
                .detach_node(onsale, node, wall, self.timing.grace)
                .await?;
            if lost > 0 {
                tracing::warn!(%onsale, node, places = lost,
                    "a node stopped; places attached only there start their grace period");
            }
        }
        stages.done("dead nodes");
        let mut view = self.line.view(onsale, 0).await?;
        stages.done("view");
        if m.last_inventory.is_none_or(|t| now - t >= INVENTORY_EVERY)
            && matches!(view.status.as_str(), "live" | "paused")
        {
            m.last_inventory = Some(now);
            let exhausted = self.remaining(m).await? <= 0;
            if exhausted != view.exhausted {
                self.line.set_exhausted(onsale, exhausted).await?;
                view.exhausted = exhausted;
                tracing::info!(%onsale, exhausted, "inventory changed");
            }
            stages.done("inventory");
        }
        let dt = now.duration_since(m.last_tick).as_secs_f64();
        m.last_tick = now;
        let rate = m.settings.rate.max(0.0);
        // A burst of at most four ticks' worth after a pause; but a tick that itself took long
        // (a loaded machine, a slow Postgres) earns what its time was worth, up to a second's,
        // or the controller would admit at a fraction of the rate exactly when it falls behind.
        let ceiling = (rate * (4.0 * TICK.as_secs_f64()).max(dt.min(1.0))).max(1.0);
        m.tokens = (m.tokens + rate * dt).min(ceiling);
        if view.status == "live" && view.drawn && !view.exhausted && m.tokens >= 1.0 {
            let want = m.tokens.floor() as u64;
            let admitted = self
                .line
                .admit(onsale, want, m.settings.cap, wall, &self.timing)
                .await?;
            m.tokens -= admitted.len() as f64;
            stages.done("admit");
            self.record_admissions(onsale, &m.settings, &admitted).await;
            stages.done("record");
            for a in admitted.iter().filter(|a| a.intent.is_some()) {
                self.submit_intent(onsale, &m.settings, a).await;
            }
            stages.done("staged purchases");
            view.admitted_total += admitted.len() as u64;
            view.active += admitted.len() as u64;
            view.waiting = view.waiting.saturating_sub(admitted.len() as u64);
            METRICS.admitted(&onsale.to_string(), admitted.len() as u64);
        }
        METRICS.onsale(
            &onsale.to_string(),
            Some(OnsaleFigures {
                waiting: view.waiting,
                active: view.active,
                cap: m.settings.cap,
                admitting: view.status == "live" && view.drawn && !view.exhausted,
            }),
        );
        if m.last_guard.is_none_or(|t| now - t >= GUARD_EVERY)
            && matches!(view.status.as_str(), "live" | "paused" | "sold_out")
        {
            m.last_guard = Some(now);
            let over = self.oversold(m.settings.event).await?;
            METRICS.oversold(&m.settings.event.to_string(), over);
            let (holds, orders) = self.event_counts(m.settings.event).await?;
            METRICS.event_counts(&m.settings.event.to_string(), holds, &orders);
            if over > 0 {
                tracing::error!(event = %m.settings.event, over, "OVERSOLD: more sold and held than exists");
            }
            stages.done("guard");
        }
        if publish_counts {
            self.publish_counts(onsale, m, &view, now).await;
            stages.done("counts");
        }
        Ok(())
    }

    /// Records a batch of admissions in Postgres (`admission`), each with its ordinal (the
    /// order the line made them in; rows of an overlapping controller may be written first).
    /// The line has admitted them already: if Postgres cannot be reached, the record misses
    /// them (logged) and nobody loses an admission.
    async fn record_admissions(
        &self,
        onsale: Uuid,
        s: &Settings,
        admitted: &[super::line::Admitted],
    ) {
        if admitted.is_empty() {
            return;
        }
        let users: Vec<&str> = admitted.iter().map(|a| a.user.as_str()).collect();
        let places: Vec<&str> = admitted.iter().map(|a| a.place.id.as_str()).collect();
        let seqs: Vec<i64> = admitted.iter().map(|a| a.place.seq as i64).collect();
        let ordinals: Vec<i64> = admitted.iter().map(|a| a.ordinal as i64).collect();
        let written = sqlx::query(
            "insert into admission (tenant_id, onsale_id, user_id, place_id, seq, ordinal)
             select $1, $2, u, p, s, o from unnest($3::text[], $4::text[], $5::int8[], $6::int8[])
                 with ordinality as x(u, p, s, o, n)
             order by n",
        )
        .bind(s.tenant)
        .bind(onsale)
        .bind(&users)
        .bind(&places)
        .bind(&seqs)
        .bind(&ordinals)
        .execute(&self.db)
        .await;
        if let Err(e) = written {
            tracing::warn!(%onsale, admitted = admitted.len(), error = %e, "cannot record admissions");
        }
    }

    /// Puts the purchase a buyer staged while waiting on the command queue, as the buyer's own
    /// `hold_best_available` with request id `intent-{place}` (a retry of the same admission
    /// can therefore never hold twice). The result reaches the buyer's inbox like any other.
    async fn submit_intent(&self, onsale: Uuid, s: &Settings, a: &super::line::Admitted) {
        let (Some(purchases), Some(key)) = (&self.purchases, &self.key) else {
            return;
        };
        let Some((category, quantity)) = a.intent.as_deref().and_then(super::room::parse_intent)
        else {
            tracing::warn!(%onsale, "unreadable staged purchase dropped");
            return;
        };
        let until = a.place.admitted_until_ms.unwrap_or(0) / 1000;
        let purchase = StagedPurchase {
            tenant: s.tenant,
            event: s.event,
            user: a.user.clone(),
            request_id: format!("intent-{}", a.place.id),
            command: marquee_protocol::booking::Command::HoldBestAvailable {
                event: s.event.to_string(),
                category: category.to_string(),
                quantity,
            },
            admission: key.issue(s.tenant, &a.user, onsale, until),
        };
        if let Err(e) = purchases.submit(purchase).await {
            // The buyer is admitted anyway and can hold by hand.
            tracing::warn!(%onsale, error = %e, "cannot submit a staged purchase");
        }
    }

    /// Moves the onsale along its schedule and mirrors its status into the line.
    async fn follow_schedule(&self, onsale: Uuid, m: &mut Managed) -> anyhow::Result<()> {
        let now = OffsetDateTime::now_utc();
        let s = &m.settings;
        if s.status == "scheduled"
            && s.prequeue_opens_at.is_some_and(|t| t <= now)
            && s.starts_at > now
        {
            self.open_pre_queue(onsale, m).await?;
        }
        let s = &m.settings;
        if matches!(s.status.as_str(), "scheduled" | "pre_queue") && s.starts_at <= now {
            self.transition(onsale, m, &["scheduled", "pre_queue"], "live")
                .await?;
        }
        let view = self.line.view(onsale, 0).await?;
        let status = m.settings.status.clone();
        let mut line_status = view.status;
        let drawn_now = matches!(status.as_str(), "live" | "paused")
            && (matches!(line_status.as_str(), "scheduled" | "pre_queue") || !view.drawn);
        if drawn_now {
            self.go_live(onsale, m).await?;
            line_status = "live".to_owned();
        }
        if !drawn_now && status != line_status && matches!(line_status.as_str(), "live" | "paused")
        {
            // An operator's pause or resume switches the line at once (`admission::Pauses`),
            // ahead of this controller's settings, read up to a second ago: ask Postgres
            // before switching the line back. (Not right after the draw, which shows the line
            // `live` until the status below is set: a join in between would be told `live`.)
            let fresh: Option<String> =
                sqlx::query_scalar("select status::text from onsale where onsale_id = $1")
                    .bind(onsale)
                    .fetch_optional(&self.db)
                    .await?;
            if let Some(fresh) = fresh {
                m.settings.status = fresh;
            }
        }
        let status = m.settings.status.clone();
        if status != line_status {
            if status == "pre_queue" {
                // Set by an operator by hand: the seed (drawn with the change, or now, if it
                // was set some other way) is committed to and its commitment published.
                self.open_pre_queue(onsale, m).await?;
            }
            self.line.set_status(onsale, &status).await?;
        }
        Ok(())
    }

    /// Draws the seed (once), moves the onsale to `pre_queue` and publishes the commitment.
    async fn open_pre_queue(&self, onsale: Uuid, m: &mut Managed) -> anyhow::Result<()> {
        let fresh: Seed = rand::random();
        let mut tx = crate::db::begin(&self.db).await?;
        let row = sqlx::query(
            "update onsale set shuffle_seed = coalesce(shuffle_seed, $2),
                    status = case when status = 'scheduled' then 'pre_queue'::onsale_status else status end
             where onsale_id = $1 and status in ('scheduled', 'pre_queue')
             returning shuffle_seed, status::text as status",
        )
        .bind(onsale)
        .bind(&fresh[..])
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(());
        };
        let seed: Vec<u8> = row.get("shuffle_seed");
        let status: String = row.get("status");
        let commitment = shuffle::commitment(&to_seed(&seed)?);
        system_audit(
            &mut tx,
            m.settings.tenant,
            onsale,
            "pre_queue_opened",
            serde_json::json!({"seed_sha256": commitment}),
        )
        .await?;
        tx.commit().await?;
        m.settings.seed = Some(seed);
        let opened = m.settings.status != status;
        m.settings.status = status;
        if opened {
            let s = &m.settings;
            announce(&self.hub, onsale, &s.status, s.rate, s.cap, "system").await;
        }
        self.line.set_status(onsale, "pre_queue").await?;
        self.publish(
            onsale,
            &QueueEvent::Commitment {
                seed_sha256: commitment,
            },
        )
        .await;
        tracing::info!(%onsale, "pre-queue opened");
        Ok(())
    }

    /// Moves the onsale's status in Postgres (audited, by `system`) if it is in `from`.
    async fn transition(
        &self,
        onsale: Uuid,
        m: &mut Managed,
        from: &[&str],
        to: &str,
    ) -> anyhow::Result<()> {
        let mut tx = crate::db::begin(&self.db).await?;
        let current: Option<String> =
            sqlx::query_scalar("select status::text from onsale where onsale_id = $1 for update")
                .bind(onsale)
                .fetch_optional(&mut *tx)
                .await?;
        let from_status = current.filter(|c| from.contains(&c.as_str()));
        if from_status.is_some() {
            sqlx::query("update onsale set status = $2::onsale_status where onsale_id = $1")
                .bind(onsale)
                .bind(to)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(previous) = from_status {
            system_audit(
                &mut tx,
                m.settings.tenant,
                onsale,
                "status_changed",
                serde_json::json!({"from": previous, "to": to}),
            )
            .await?;
            tx.commit().await?;
            m.settings.status = to.to_owned();
            tracing::info!(%onsale, from = previous, to, "onsale moved on schedule");
            let s = &m.settings;
            announce(&self.hub, onsale, to, s.rate, s.cap, "system").await;
        }
        Ok(())
    }

    /// Closes the pre-queue and draws its order: the seed's order over its places. Safe to
    /// repeat (a controller that took over finishes what a dead one began). The order is
    /// recorded in Postgres before the line is drawn with it, and a repeat draws the recorded
    /// order: however the two fail in between, the published record and the line agree (a
    /// place that left meanwhile is a gap in the line, and still listed in the record).
    async fn go_live(&self, onsale: Uuid, m: &mut Managed) -> anyhow::Result<()> {
        // Read first: closing the pre-queue shows the line `live` until this tick sets the
        // onsale's own status (`paused`, say), and a join in between would be told `live`.
        let recorded: Option<Vec<String>> =
            sqlx::query_scalar("select shuffle_order from onsale where onsale_id = $1")
                .bind(onsale)
                .fetch_one(&self.db)
                .await?;
        let places = self.line.close_pre_queue(onsale).await?;
        if places.is_empty() && recorded.is_none() {
            self.line.draw(onsale, &[]).await?;
            return Ok(());
        }
        let Some(raw) = m.settings.seed.clone() else {
            anyhow::bail!("the pre-queue has places but the onsale has no seed");
        };
        let seed = to_seed(&raw)?;
        let order = match recorded {
            Some(order) => order,
            None => {
                let drawn = shuffle::shuffle(&seed, &places);
                sqlx::query_scalar(
                    "update onsale set shuffle_order = coalesce(shuffle_order, $2)
                     where onsale_id = $1 returning shuffle_order",
                )
                .bind(onsale)
                .bind(&drawn)
                .fetch_one(&self.db)
                .await?
            }
        };
        self.line.draw(onsale, &order).await?;
        self.publish(
            onsale,
            &QueueEvent::Draw {
                seed_sha256: shuffle::commitment(&seed),
                seed: hex::encode(seed),
                order,
            },
        )
        .await;
        tracing::info!(%onsale, places = places.len(), "pre-queue drawn");
        Ok(())
    }

    /// Seats and general-admission tickets of the event neither held nor sold.
    /// The oversell guard: tickets and holds beyond what exists, recounted from the tickets
    /// themselves rather than from the counters the owner keeps (which constraints already
    /// bound): seats with more than one valid ticket, general-admission types with more valid
    /// tickets than their quota, and counters above their quota. Must always be 0.
    async fn oversold(&self, event: Uuid) -> anyhow::Result<i64> {
        let over: i64 = sqlx::query_scalar(
            "select
               (select count(*) from (select seat_id from ticket
                  where event_id = $1 and seat_id is not null and status = 'valid'
                  group by seat_id having count(*) > 1) doubled)
             + coalesce((select sum(greatest(c.n - t.ga_quota, 0)) from ticket_type t
                  join (select ticket_type_id, count(*) as n from ticket
                        where event_id = $1 and seat_id is null and status = 'valid'
                        group by ticket_type_id) c using (ticket_type_id)
                  where t.event_id = $1 and t.ga_quota is not null), 0)::int8
             + coalesce((select sum(greatest(ga_held + ga_sold - ga_quota, 0)) from ticket_type
                  where event_id = $1 and ga_quota is not null), 0)::int8",
        )
        .bind(event)
        .fetch_one(&self.db)
        .await?;
        Ok(over)
    }

    /// An event's active holds (and those expiring within a minute) and its orders by status.
    async fn event_counts(&self, event: Uuid) -> anyhow::Result<((i64, i64), Vec<(String, i64)>)> {
        let holds: (i64, i64) = sqlx::query_as(
            "select count(*), count(*) filter (where expires_at <= now() + interval '1 minute')
             from hold where event_id = $1 and status = 'active'",
        )
        .bind(event)
        .fetch_one(&self.db)
        .await?;
        let orders: Vec<(String, i64)> = sqlx::query_as(
            "select s::text, count(o.ticket_order_id)
             from unnest(enum_range(null::order_status)) s
             left join ticket_order o on o.event_id = $1 and o.status = s
             group by s",
        )
        .bind(event)
        .fetch_all(&self.db)
        .await?;
        Ok((holds, orders))
    }

    async fn remaining(&self, m: &mut Managed) -> anyhow::Result<i64> {
        let event = m.settings.event;
        if m.seats.is_none() {
            let seats: i64 = sqlx::query_scalar("select count(*) from seat where event_id = $1")
                .bind(event)
                .fetch_one(&self.db)
                .await?;
            m.seats = Some(seats);
        }
        let taken_and_ga: (i64, i64) = sqlx::query_as(
            "select (select count(*) from seat_claim where event_id = $1),
                    coalesce((select sum(ga_quota - ga_held - ga_sold) from ticket_type
                              where event_id = $1 and ga_quota is not null), 0)::int8",
        )
        .bind(event)
        .fetch_one(&self.db)
        .await?;
        Ok(m.seats.unwrap_or(0) - taken_and_ga.0 + taken_and_ga.1)
    }

    async fn publish_counts(&self, onsale: Uuid, m: &mut Managed, view: &LineView, now: Instant) {
        m.outflow.push_back((now, view.admitted_total));
        while m
            .outflow
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(10))
        {
            m.outflow.pop_front();
        }
        let outflow = match (m.outflow.front(), m.outflow.back()) {
            (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                n1.saturating_sub(*n0) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        };
        let counts = QueueEvent::Counts(QueueCounts {
            status: view.status.clone(),
            waiting: view.waiting,
            admitted: view.admitted_total,
            active: view.active,
            admission_rate: m.settings.rate,
            active_cap: m.settings.cap,
            outflow,
            sold_out: view.exhausted,
        });
        self.publish(onsale, &counts).await;
    }

    async fn publish(&self, onsale: Uuid, event: &QueueEvent) {
        publish_queue_event(&self.hub, onsale, event).await;
    }
}

/// Publishes on `queue:{onsale}`; a failure is logged (the next tick publishes again).
pub(crate) async fn publish_queue_event(hub: &Hub, onsale: Uuid, event: &QueueEvent) {
    publish_on(hub, ChannelKind::Queue, onsale, event).await;
}

async fn publish_on(hub: &Hub, kind: ChannelKind, onsale: Uuid, event: &QueueEvent) {
    let channel = Channel::new(kind, &onsale.to_string()).expect("a UUID is a valid channel id");
    let data = serde_json::to_value(event).expect("queue events serialize");
    if let Err(e) = hub.publish(&channel, &data).await {
        tracing::warn!(%onsale, %channel, error = %e, "cannot publish an onsale event");
    }
}

/// Announces a committed change to an onsale's status or admission settings: on
/// `admin:{onsale}` with who made it (an operator's id, or `system` for the schedule), and on
/// `queue:{onsale}` without. A failed publication is logged; the queue's counts carry the
/// new settings within a second anyway.
pub(crate) async fn announce(hub: &Hub, onsale: Uuid, status: &str, rate: f64, cap: u64, by: &str) {
    let change = |by: Option<String>| {
        QueueEvent::Changed(OnsaleChange {
            status: status.to_owned(),
            admission_rate: rate,
            active_cap: cap,
            by,
        })
    };
    publish_on(
        hub,
        ChannelKind::Admin,
        onsale,
        &change(Some(by.to_owned())),
    )
    .await;
    publish_on(hub, ChannelKind::Queue, onsale, &change(None)).await;
}

fn to_seed(raw: &[u8]) -> anyhow::Result<Seed> {
    raw.try_into()
        .map_err(|_| anyhow::anyhow!("a shuffle seed must be 32 bytes, found {}", raw.len()))
}

async fn system_audit(
    conn: &mut sqlx::PgConnection,
    tenant: Uuid,
    onsale: Uuid,
    action: &str,
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    let onsale = onsale.to_string();
    crate::audit::record(
        conn,
        tenant,
        crate::audit::SYSTEM,
        "onsale",
        &onsale,
        action,
        &detail,
    )
    .await?;
    Ok(())
}
