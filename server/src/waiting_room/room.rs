//! A node's side of the waiting room: `queue.join` and `queue.leave` from its connections, and
//! the live status pushed to each local buyer.
//!
//! The node remembers, per onsale, the buyers with a connection here and the status last sent
//! to each. Every tick it reads the onsale's [`LineView`] once (one engine call per onsale,
//! whatever the number of buyers), derives every local buyer's position from it, and pushes
//! what changed: positions at most once a second per buyer (less often further back, see
//! [`position_ticks`]), anything else (admitted, paused, sold out, ended) at once. Pushes go into each connection's coalescing slot
//! ([`ConnShared::push_latest`]), so a slow connection only ever gets the latest status.

use super::line::{Joined, Line, LineError, LineView, Place, Timing};
use crate::admission::AdmissionKey;
use crate::auth::Identity;
use crate::clock::now_ms;
use crate::db::TenantCache;
use crate::hub::Refusal;
use crate::hub::registry::ConnShared;
use governor::{DefaultKeyedRateLimiter, RateLimiter};
use marquee_protocol::booking::MAX_SEATS_PER_COMMAND;
use marquee_protocol::queue::{
    AdmissionGrant, PlaceState, PurchaseIntent, QueueStatus, StatusReason,
};
use marquee_protocol::{ErrorCode, ServerMessage};
use sqlx::PgPool;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often a node refreshes its buyers' statuses.
pub(crate) const TICK: Duration = Duration::from_millis(250);

/// Ticks between two position-only pushes to a buyer near the front: one second. Counted in
/// ticks rather than read off a clock, so a buyer's updates land on every fourth tick (a second
/// apart, never less) instead of slipping to the fifth whenever a tick runs a millisecond early.
pub(crate) const POSITION_TICKS: u64 = 4;

/// Buyers further back hear of their position less often once it moves: one more second
/// between pushes per `POSITION_STEP` places ahead of them, up to `MAX_POSITION_SECONDS` (its
/// first move after a join or a change of state still goes out within a second). With everyone's
/// position moving at every admission, a push a second to each of 100,000 waiting buyers is
/// 100,000 messages a second for numbers nobody far back needs that often; spaced this way,
/// the same crowd gets about 6,300 a second, and the buyers within a thousand places of the
/// front still see every second. (Large waiting rooms refresh far-back positions every
/// 10–30 s.) Up to 30 s, not 10: at the full-size onsale (84,000 waiting) a ceiling of 10 s
/// was 12,000 pushes a second, about half a core between the nodes' encoding and the
/// clients' decoding, for positions tens of thousands of places back whose wait is measured
/// in minutes.
pub(crate) const POSITION_STEP: u64 = 1000;
pub(crate) const MAX_POSITION_SECONDS: u64 = 30;

/// Ticks between two position-only pushes to a buyer whose last pushed position is `position`.
pub(crate) fn position_ticks(position: Option<u64>) -> u64 {
    let seconds = position
        .unwrap_or(0)
        .div_ceil(POSITION_STEP)
        .clamp(1, MAX_POSITION_SECONDS);
    POSITION_TICKS * seconds
}

/// How long a node's heartbeat holds: a node silent this long is dead, and its buyers' places
/// start their grace period within a second more. 10 s, not 3: in the full-size onsale with
/// faults (7 nodes and 100,000 buyers on 2 cores), live nodes whose runtime fell behind were
/// taken for dead 36 times in one run (one node had died). Each time the controller detached
/// some 12,000 places in one Redis script and the node attached them all again, which slowed
/// every node and Redis further. A dead node's buyers start their grace period (minutes) about
/// 7 s later for it.
pub(crate) const NODE_TTL: Duration = Duration::from_secs(10);

/// What a node needs to serve the waiting room. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WaitingRoom {
    inner: Arc<Inner>,
}

impl crate::admission::Pauses for WaitingRoom {
    fn switch(
        &self,
        onsale: Uuid,
        paused: bool,
    ) -> futures_util::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            WaitingRoom::switch(self, onsale, paused)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Limits on joining, against one client holding or churning many places.
#[derive(Debug)]
pub struct JoinLimits {
    per_account: DefaultKeyedRateLimiter<String>,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    /// Most queues one account waits in at once.
    queues_per_account: usize,
}

impl JoinLimits {
    /// `account` and `ip` joins per minute (each at least 1), `queues` queues per account.
    pub fn new(account: u32, ip: u32, queues: usize) -> Self {
        Self {
            per_account: RateLimiter::keyed(crate::rate::per_minute(account)),
            per_ip: RateLimiter::keyed(crate::rate::per_minute(ip)),
            queues_per_account: queues.max(1),
        }
    }
}

impl Default for JoinLimits {
    fn default() -> Self {
        Self::new(30, 600, 3)
    }
}

/// An account waiting in a queue for less than this is not pruned from its account's list
/// even if its place is not visible yet (its join may still be under way).
const ENTER_SETTLE_MS: u64 = 10_000;

#[derive(Debug)]
struct Inner {
    line: Line,
    limits: JoinLimits,
    db: PgPool,
    /// Signs admissions; without it nobody can be admitted on this node.
    key: Option<AdmissionKey>,
    timing: Timing,
    /// Onsale id to owning tenant (onsales with a waiting room only).
    tenants: TenantCache,
    /// Buyers with a connection on this node, per onsale.
    local: Mutex<HashMap<Uuid, LocalOnsale>>,
    /// Refresh ticks so far: position pushes are spaced in ticks.
    ticks: AtomicU64,
    /// Where joins wait to be batched ([`batch_joins`]); started with the first join.
    joins: OnceLock<mpsc::Sender<JoinRequest>>,
    /// Where closed connections wait to be detached in batches ([`batch_detaches`]); started
    /// with the first close. Unbounded: a close cannot wait, and there is at most one entry per
    /// connection that was open.
    detaches: OnceLock<mpsc::UnboundedSender<Detach>>,
    /// The places each local connection is attached to, `(onsale, place id)`: detached when
    /// the connection closes, which starts the grace period if it was the place's last.
    attached: Mutex<HashMap<u64, Vec<(Uuid, String)>>>,
    /// The record of new places ([`super::joins`]).
    join_log: super::joins::JoinLog,
    /// Its receiver, until the node's writer takes it ([`WaitingRoom::take_join_records`]).
    join_records: Mutex<Option<mpsc::Receiver<super::joins::JoinRecord>>>,
}

/// A join waiting for its batch.
#[derive(Debug)]
struct JoinRequest {
    onsale: Uuid,
    user: String,
    attached: Option<String>,
    /// The account to record in the onsale's queue first ([`Line::enter_many`]): a join
    /// that is not attaching to a place already.
    enter: Option<String>,
    reply: oneshot::Sender<Result<Batched, LineError>>,
}

/// What the batcher answers a join.
#[derive(Debug)]
enum Batched {
    /// The line's answer.
    Joined(Joined),
    /// The account already waits in as many queues as it may, as far as its record says: the
    /// join was not tried. [`WaitingRoom::enter`] forgets the queues it no longer waits in and
    /// decides.
    AtCap,
}

/// Most joins sent to the line in one call.
const JOIN_BATCH: usize = 256;

/// How many places a tick reads from the line in one round trip (after the draw, after
/// admissions). Each costs Redis two lookups, so a slice holds it well under a millisecond.
const PLACES_PER_READ: usize = 256;

/// Batches concurrent joins: whatever waits when a batch starts goes in it (up to
/// [`JOIN_BATCH`], grouped by onsale), so a lone join goes at once and a flood costs two line
/// calls per few hundred joins instead of two per buyer: the accounts' records
/// ([`Line::enter_many`], `cap` queues each), then the joins of those that may. Up to eight
/// batches are in flight.
///
/// The records were one round trip per join before: at 40,000 joins a second they cost the
/// node a sixth of its time and kept the join acknowledgement's p99 at 250 to 700 ms
/// (`benches/waiting_room.rs`; BENCHMARKS.md).
async fn batch_joins(line: Line, cap: usize, mut rx: mpsc::Receiver<JoinRequest>) {
    let in_flight = Arc::new(Semaphore::new(8));
    while let Some(first) = rx.recv().await {
        let mut groups: HashMap<Uuid, Vec<JoinRequest>> = HashMap::new();
        groups.entry(first.onsale).or_default().push(first);
        for _ in 1..JOIN_BATCH {
            let Ok(next) = rx.try_recv() else { break };
            groups.entry(next.onsale).or_default().push(next);
        }
        for (onsale, group) in groups {
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                return;
            };
            let line = line.clone();
            tokio::spawn(async move {
                let group = match enter_batch(&line, onsale, cap, group).await {
                    Ok(group) => group,
                    Err((group, e)) => return fail_batch(group, &e),
                };
                if group.is_empty() {
                    return;
                }
                let joins: Vec<(&str, Option<&str>)> = group
                    .iter()
                    .map(|r| (r.user.as_str(), r.attached.as_deref()))
                    .collect();
                match line.join_many(onsale, &joins).await {
                    Ok(joined) => {
                        for (request, joined) in group.into_iter().zip(joined) {
                            let _ = request.reply.send(Ok(Batched::Joined(joined)));
                        }
                    }
                    Err(e) => fail_batch(group, &e),
                }
                drop(permit);
            });
        }
    }
}

/// Records the accounts of a batch's new joins in the onsale's queue: answers
/// [`Batched::AtCap`] to those at their cap and returns the requests to join.
async fn enter_batch(
    line: &Line,
    onsale: Uuid,
    cap: usize,
    group: Vec<JoinRequest>,
) -> Result<Vec<JoinRequest>, (Vec<JoinRequest>, LineError)> {
    let accounts: Vec<&str> = group.iter().filter_map(|r| r.enter.as_deref()).collect();
    if accounts.is_empty() {
        return Ok(group);
    }
    let entered = match line.enter_many(&accounts, onsale, cap, now_ms()).await {
        Ok(entered) => entered,
        Err(e) => return Err((group, e)),
    };
    let mut entered = entered.into_iter();
    let mut to_join = Vec::with_capacity(group.len());
    for request in group {
        if request.enter.is_some() && !entered.next().unwrap_or(false) {
            let _ = request.reply.send(Ok(Batched::AtCap));
        } else {
            to_join.push(request);
        }
    }
    Ok(to_join)
}

/// Tells every join of a batch that the line failed it.
fn fail_batch(group: Vec<JoinRequest>, e: &LineError) {
    let message = e.to_string();
    for request in group {
        let _ = request
            .reply
            .send(Err(LineError::Unavailable(message.clone())));
    }
}

/// A closed connection to detach from its place.
struct Detach {
    onsale: Uuid,
    user: String,
    place: String,
}

/// Detaches closed connections in batches, like [`batch_joins`]: whatever waits when a batch
/// starts goes in it (up to [`JOIN_BATCH`], grouped by onsale). A lost node's buyers close
/// together on the node they moved to as well as elsewhere; one call each timed out in
/// Redis by the tens of thousands.
async fn batch_detaches(line: Line, grace: Duration, mut rx: mpsc::UnboundedReceiver<Detach>) {
    let in_flight = Arc::new(Semaphore::new(8));
    while let Some(first) = rx.recv().await {
        let mut groups: HashMap<Uuid, Vec<(String, String)>> = HashMap::new();
        groups
            .entry(first.onsale)
            .or_default()
            .push((first.user, first.place));
        for _ in 1..JOIN_BATCH {
            let Ok(next) = rx.try_recv() else { break };
            groups
                .entry(next.onsale)
                .or_default()
                .push((next.user, next.place));
        }
        for (onsale, closed) in groups {
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                return;
            };
            let line = line.clone();
            tokio::spawn(async move {
                if let Err(e) = line.detach_many(onsale, &closed, now_ms(), grace).await {
                    // The places then stay attached until their admission or the onsale
                    // ends; the buyers lose nothing.
                    tracing::warn!(error = %e, %onsale, connections = closed.len(), "detach failed");
                }
                drop(permit);
            });
        }
    }
}

/// One onsale's local buyers and what the node measured of its line.
#[derive(Debug, Default)]
struct LocalOnsale {
    tenant: Uuid,
    buyers: HashMap<String, LocalBuyer>,
    /// `(when, admitted so far)`, the last 30 s of views: the measured outflow.
    samples: VecDeque<(Instant, u64)>,
    last_view: Option<LineView>,
}

#[derive(Debug)]
struct LocalBuyer {
    place: Place,
    conns: Vec<Arc<ConnShared>>,
    /// The status last pushed, and when a position was last pushed.
    sent: Option<QueueStatus>,
    position_sent_tick: u64,
    /// The last push was a position moving (not a join's answer or a change of state): the
    /// next one waits the spacing of its distance from the front. A position that starts
    /// moving is pushed within a second wherever it is.
    moving: bool,
    /// The place changed in a way that needs the line's record (drawn, admitted).
    refresh: bool,
    /// What the last pushed status was made from.
    glance: Option<Glance>,
}

/// The inputs of a buyer's status, cheap to compute and compare: when they are what the last
/// pushed status was made from, nothing needs pushing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Glance {
    /// The line's status.
    status: u8,
    exhausted: bool,
    seq: u64,
    admitted: Option<bool>,
    ahead: Option<u64>,
    gone: bool,
}

impl Glance {
    fn of(place: &Place, view: &LineView, now_ms: u64) -> Self {
        let ahead = view.ahead(place.seq);
        Self {
            status: match view.status.as_str() {
                "scheduled" => 0,
                "pre_queue" => 1,
                "live" => 2,
                "paused" => 3,
                "sold_out" => 4,
                "closed" => 5,
                _ => 6,
            },
            exhausted: view.exhausted,
            seq: place.seq,
            admitted: place.admitted_until_ms.map(|until| until > now_ms),
            ahead,
            gone: ahead.is_none() && view.is_gone(place.seq),
        }
    }

    /// Equal in everything but the position.
    fn same_but_position(&self, other: &Self) -> bool {
        Self {
            ahead: other.ahead,
            ..*self
        } == *other
    }
}

fn unavailable(e: &LineError) -> Refusal {
    tracing::warn!(error = %e, "waiting room unavailable");
    Refusal {
        code: ErrorCode::Unavailable,
        message: "the waiting room is unavailable; retry".into(),
    }
}

fn db_unavailable(e: &sqlx::Error) -> Refusal {
    tracing::warn!(error = %e, "onsale lookup failed");
    refusal(
        ErrorCode::Unavailable,
        "the waiting room is unavailable; retry",
    )
}

fn refusal(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

impl WaitingRoom {
    /// A node's waiting room on `line`, checking onsales in `db`.
    pub fn new(
        line: Line,
        db: PgPool,
        key: Option<AdmissionKey>,
        timing: Timing,
        limits: JoinLimits,
    ) -> Self {
        let (join_log, join_records) = super::joins::log();
        Self {
            inner: Arc::new(Inner {
                line,
                limits,
                db,
                key,
                timing,
                tenants: TenantCache::new(
                    "select tenant_id from onsale where onsale_id = $1 and requires_admission",
                ),
                local: Mutex::default(),
                ticks: AtomicU64::new(0),
                joins: OnceLock::new(),
                detaches: OnceLock::new(),
                attached: Mutex::default(),
                join_log,
                join_records: Mutex::new(Some(join_records)),
            }),
        }
    }

    /// The writer of the join record ([`super::joins::run`]), once: the node runs it until
    /// `stop`.
    pub fn take_join_records(
        &self,
        stop: CancellationToken,
    ) -> Option<impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static> {
        let rx = self
            .inner
            .join_records
            .lock()
            .expect("join records lock")
            .take()?;
        Some(super::joins::run(self.inner.db.clone(), rx, stop))
    }

    /// The line.
    pub fn line(&self) -> &Line {
        &self.inner.line
    }

    /// The durations applied.
    pub fn timing(&self) -> &Timing {
        &self.inner.timing
    }

    async fn onsale_tenant(&self, onsale: Uuid) -> Result<Option<Uuid>, Refusal> {
        self.inner
            .tenants
            .get(&self.inner.db, onsale)
            .await
            .map_err(|e| db_unavailable(&e))
    }

    /// Checks that `raw` names an onsale with a waiting room in the buyer's tenant.
    async fn own_onsale(&self, identity: &Identity, raw: &str) -> Result<(Uuid, Uuid), Refusal> {
        let not_found = || refusal(ErrorCode::NotFound, "no such onsale");
        let tenant = identity.tenant_id().ok_or_else(|| {
            refusal(
                ErrorCode::Forbidden,
                "the queue needs a token with a tenant",
            )
        })?;
        let onsale = Uuid::parse_str(raw).map_err(|_| not_found())?;
        if self.onsale_tenant(onsale).await? != Some(tenant) {
            return Err(not_found());
        }
        Ok((onsale, tenant))
    }

    /// Takes or attaches to the buyer's place and registers `conn` for its pushes. `attached`
    /// is the place this connection attached to before, if any. Returns the status now.
    pub async fn join(
        &self,
        identity: &Identity,
        conn: &Arc<ConnShared>,
        peer: Option<IpAddr>,
        raw_onsale: &str,
        attached: Option<&str>,
        intent: Option<&PurchaseIntent>,
    ) -> Result<(Uuid, QueueStatus), Refusal> {
        let staged = intent.map(stored_intent).transpose()?;
        let limits = &self.inner.limits;
        let account = account(identity);
        if limits.per_account.check_key(&account).is_err()
            || peer.is_some_and(|ip| limits.per_ip.check_key(&ip).is_err())
        {
            return Err(refusal(
                ErrorCode::RateLimited,
                "too many queue joins; wait a minute",
            ));
        }
        let (onsale, tenant) = self.own_onsale(identity, raw_onsale).await?;
        if self.inner.key.is_none() {
            return Err(refusal(
                ErrorCode::Unavailable,
                "this node cannot admit anybody (it has no admission secret)",
            ));
        }
        let user = identity.user.as_str();
        // A new join records the account in the onsale's queue first, in its batch.
        let enter = attached.is_none().then_some(account.as_str());
        let batched = self
            .batched_join(onsale, user, attached, enter)
            .await
            .map_err(|e| unavailable(&e))?;
        let mut joined = match batched {
            Batched::Joined(joined) => joined,
            Batched::AtCap => {
                self.enter(&account, onsale).await?;
                match self.batched_join(onsale, user, attached, None).await {
                    Ok(Batched::Joined(joined)) => joined,
                    Ok(Batched::AtCap) => unreachable!("a join without an account to enter"),
                    Err(e) => return Err(unavailable(&e)),
                }
            }
        };
        if matches!(&joined, Joined::Refused { status } if status == "scheduled")
            && self.catch_up(onsale).await?
        {
            joined = self
                .inner
                .line
                .join(onsale, user, attached)
                .await
                .map_err(|e| unavailable(&e))?;
        }
        let (place, new) = match joined {
            Joined::New(p) => {
                self.inner.join_log.joined(onsale, tenant, user, &p.id);
                (p, true)
            }
            Joined::Attached(p) => (p, false),
            Joined::Refused { status } => {
                let (code, message) = match status.as_str() {
                    "scheduled" => (ErrorCode::OnsaleClosed, "the queue has not opened yet"),
                    "sold_out" => (ErrorCode::SoldOut, "the onsale is sold out"),
                    _ => (ErrorCode::OnsaleClosed, "the onsale is closed"),
                };
                return Err(refusal(code, message));
            }
        };
        if let Some(intent) = &staged {
            // Staged on a waiting place only; an admitted buyer sends commands itself.
            self.inner
                .line
                .stage(onsale, user, intent)
                .await
                .map_err(|e| unavailable(&e))?;
        }
        // For a new place the view of the last tick serves even if the place is newer than it:
        // an older cursor and fewer known gaps can only count more buyers ahead, never fewer,
        // so the first position is at worst a little high and the next push brings it down.
        // A buyer attaching again (a reconnect, another tab) was told a position before,
        // perhaps by another node: a view that knows fewer gaps ahead of it would show that
        // position rising, so it gets a view of its own, of its place alone (a lost node's
        // buyers all attach again at once, and a whole view of a place far back costs Redis
        // a count per block ahead of it).
        let view = match self.cached_view(onsale).filter(|_| new) {
            Some(v) => v,
            None => self
                .inner
                .line
                .view_at(onsale, place.seq)
                .await
                .map_err(|e| unavailable(&e))?,
        };
        let now = Instant::now();
        let mut local = self.inner.local.lock().expect("local lock");
        let entry = local.entry(onsale).or_default();
        entry.tenant = tenant;
        let eta = Outflow::of(&entry.samples, now);
        let reason = (new && place.seq > 0 && attached.is_some()).then_some(StatusReason::Rejoined);
        let buyer = entry
            .buyers
            .entry(user.to_owned())
            .or_insert_with(|| LocalBuyer {
                place: place.clone(),
                conns: Vec::new(),
                sent: None,
                position_sent_tick: 0,
                moving: false,
                refresh: false,
                glance: None,
            });
        buyer.place = place;
        if !buyer.conns.iter().any(|c| Arc::ptr_eq(c, conn)) {
            buyer.conns.push(conn.clone());
        }
        let mut status = self.status(onsale, tenant, user, &buyer.place, &view, eta);
        status.reason = status.reason.or(reason);
        // A push to this connection that a tick made before now (under this lock) is older
        // than this answer, and still unwritten while the connection waits for the answer:
        // written after it, it would show the position rising again.
        conn.discard_latest(&status.onsale);
        buyer.sent = Some(status.clone());
        buyer.glance = Some(Glance::of(&buyer.place, &view, now_ms()));
        buyer.position_sent_tick = self.inner.ticks.load(Ordering::Relaxed);
        buyer.moving = false;
        Ok((onsale, status))
    }

    /// Joins through the node's batcher, recording `enter` in the onsale's queue first.
    async fn batched_join(
        &self,
        onsale: Uuid,
        user: &str,
        attached: Option<&str>,
        enter: Option<&str>,
    ) -> Result<Batched, LineError> {
        let queue = self.inner.joins.get_or_init(|| {
            let (tx, rx) = mpsc::channel(4 * JOIN_BATCH);
            let cap = self.inner.limits.queues_per_account;
            tokio::spawn(batch_joins(self.inner.line.clone(), cap, rx));
            tx
        });
        let (reply, answer) = oneshot::channel();
        let request = JoinRequest {
            onsale,
            user: user.to_owned(),
            attached: attached.map(str::to_owned),
            enter: enter.map(str::to_owned),
            reply,
        };
        let gone = || LineError::Unavailable("the join batcher stopped".into());
        queue.send(request).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Records the account in `onsale`'s queue unless it already waits in as many queues as it
    /// may. Queues it no longer has a place in are forgotten first. A join's batch tries the
    /// record first ([`enter_batch`]); this is the way for an account it found at its cap.
    async fn enter(&self, account: &str, onsale: Uuid) -> Result<(), Refusal> {
        let line = &self.inner.line;
        let cap = self.inner.limits.queues_per_account;
        let now = now_ms();
        if line
            .enter(account, onsale, cap, now)
            .await
            .map_err(|e| unavailable(&e))?
        {
            return Ok(());
        }
        let user = account.split_once('/').map_or(account, |(_, u)| u);
        for (other, since) in line.queues(account).await.map_err(|e| unavailable(&e))? {
            let settled = now.saturating_sub(since) > ENTER_SETTLE_MS;
            if other != onsale
                && settled
                && line
                    .place(other, user)
                    .await
                    .map_err(|e| unavailable(&e))?
                    .is_none()
            {
                line.exit(account, other)
                    .await
                    .map_err(|e| unavailable(&e))?;
            }
        }
        if line
            .enter(account, onsale, cap, now)
            .await
            .map_err(|e| unavailable(&e))?
        {
            return Ok(());
        }
        Err(refusal(
            ErrorCode::LimitExceeded,
            format!("an account waits in at most {cap} queues at once; leave one first"),
        ))
    }

    /// The line does not know an onsale that Postgres says is open: the node just started
    /// (memory) or Redis lost its keys, and the controller has not mirrored it yet. Catches
    /// the line up where no seed is involved, so nobody is refused in that first second.
    /// Returns whether the line changed.
    async fn catch_up(&self, onsale: Uuid) -> Result<bool, Refusal> {
        let status: Option<String> =
            sqlx::query_scalar("select status::text from onsale where onsale_id = $1")
                .bind(onsale)
                .fetch_optional(&self.inner.db)
                .await
                .map_err(|e| db_unavailable(&e))?;
        let line = &self.inner.line;
        let done: Result<bool, LineError> = async {
            match status.as_deref() {
                Some("pre_queue") => line.set_status(onsale, "pre_queue").await.map(|()| true),
                Some(status @ ("live" | "paused")) => {
                    // An unknown line has no pre-queue places, so there is nothing to shuffle.
                    if !line.close_pre_queue(onsale).await?.is_empty() {
                        return Ok(false);
                    }
                    line.draw(onsale, &[]).await?;
                    line.set_status(onsale, status).await?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        }
        .await;
        done.map_err(|e| unavailable(&e))
    }

    /// Gives the buyer's place up at once; every local connection of theirs learns it.
    pub async fn leave(
        &self,
        identity: &Identity,
        raw_onsale: &str,
    ) -> Result<QueueStatus, Refusal> {
        let (onsale, _) = self.own_onsale(identity, raw_onsale).await?;
        let user = identity.user.as_str();
        let place = self
            .inner
            .line
            .place(onsale, user)
            .await
            .map_err(|e| unavailable(&e))?;
        let had = self
            .inner
            .line
            .leave(onsale, user)
            .await
            .map_err(|e| unavailable(&e))?;
        let account = account(identity);
        self.inner
            .line
            .exit(&account, onsale)
            .await
            .map_err(|e| unavailable(&e))?;
        if !had {
            return Err(refusal(ErrorCode::NotFound, "no place in this queue"));
        }
        let status = QueueStatus {
            onsale: onsale.to_string(),
            place: place.map(|p| p.id).unwrap_or_default(),
            state: PlaceState::Ended,
            position: None,
            ahead: None,
            eta_seconds: None,
            paused: false,
            reason: Some(StatusReason::Left),
            admission: None,
        };
        let buyer = {
            let mut local = self.inner.local.lock().expect("local lock");
            local.get_mut(&onsale).and_then(|l| l.buyers.remove(user))
        };
        for conn in buyer.iter().flat_map(|b| &b.conns) {
            conn.push_latest(&status.onsale, ServerMessage::QueueStatus(status.clone()));
        }
        Ok(status)
    }

    /// The place connection `conn` attached to in `onsale`, if any.
    fn attached_place(&self, conn: u64, onsale: Uuid) -> Option<String> {
        let attached = self.inner.attached.lock().expect("attached lock");
        attached
            .get(&conn)?
            .iter()
            .find(|(o, _)| *o == onsale)
            .map(|(_, place)| place.clone())
    }

    /// Records that connection `conn` is attached to `place` in `onsale` now (a new place
    /// replaces an ended one; an empty place id attaches it to none).
    fn attach(&self, conn: u64, onsale: Uuid, place: &str) {
        let mut attached = self.inner.attached.lock().expect("attached lock");
        let places = attached.entry(conn).or_default();
        places.retain(|(o, _)| *o != onsale);
        if !place.is_empty() {
            places.push((onsale, place.to_owned()));
        }
        if places.is_empty() {
            attached.remove(&conn);
        }
    }

    /// `queue.join` from a connection: takes or attaches to the buyer's place and registers
    /// the connection for its pushes.
    pub async fn join_from(
        &self,
        session: crate::hub::Session<'_>,
        raw_onsale: &str,
        intent: Option<&PurchaseIntent>,
    ) -> Result<QueueStatus, Refusal> {
        let attached = Uuid::parse_str(raw_onsale)
            .ok()
            .and_then(|o| self.attached_place(session.conn.id, o));
        let (onsale, status) = self
            .join(
                session.identity,
                session.conn,
                session.peer,
                raw_onsale,
                attached.as_deref(),
                intent,
            )
            .await?;
        self.attach(session.conn.id, onsale, &status.place);
        Ok(status)
    }

    /// `queue.leave` from a connection.
    pub async fn leave_from(
        &self,
        session: crate::hub::Session<'_>,
        raw_onsale: &str,
    ) -> Result<QueueStatus, Refusal> {
        let status = self.leave(session.identity, raw_onsale).await?;
        if let Ok(onsale) = Uuid::parse_str(&status.onsale) {
            self.attach(session.conn.id, onsale, "");
        }
        Ok(status)
    }

    /// Connection `conn` of `user` closed: it detaches from every place it was attached to.
    pub fn connection_closed(&self, conn: u64, user: &str) {
        let places = self
            .inner
            .attached
            .lock()
            .expect("attached lock")
            .remove(&conn)
            .unwrap_or_default();
        for (onsale, place) in places {
            self.detach(onsale, user, &place, conn);
        }
    }

    /// A connection attached to `place` closed.
    pub fn detach(&self, onsale: Uuid, user: &str, place: &str, conn_id: u64) {
        {
            let mut local = self.inner.local.lock().expect("local lock");
            if let Some(entry) = local.get_mut(&onsale) {
                if let Some(buyer) = entry.buyers.get_mut(user) {
                    buyer.conns.retain(|c| c.id != conn_id);
                    if buyer.conns.is_empty() {
                        entry.buyers.remove(user);
                    }
                }
                if entry.buyers.is_empty() {
                    local.remove(&onsale);
                }
            }
        }
        let queue = self.inner.detaches.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(batch_detaches(
                self.inner.line.clone(),
                self.inner.timing.grace,
                rx,
            ));
            tx
        });
        let _ = queue.send(Detach {
            onsale,
            user: user.to_owned(),
            place: place.to_owned(),
        });
    }

    /// Switches the line between `live` and `paused` (see [`crate::admission::Pauses`]); this
    /// node's cached view follows at once, so a buyer joining next is told so.
    async fn switch(&self, onsale: Uuid, paused: bool) -> Result<(), LineError> {
        let (from, to) = if paused {
            ("live", "paused")
        } else {
            ("paused", "live")
        };
        if self.inner.line.switch_status(onsale, from, to).await? {
            let mut local = self.inner.local.lock().expect("local lock");
            if let Some(view) = local.get_mut(&onsale).and_then(|l| l.last_view.as_mut()) {
                view.status = to.to_owned();
            }
        }
        Ok(())
    }

    fn cached_view(&self, onsale: Uuid) -> Option<LineView> {
        let local = self.inner.local.lock().expect("local lock");
        local.get(&onsale)?.last_view.clone()
    }

    /// Builds a buyer's status from the line's view.
    fn status(
        &self,
        onsale: Uuid,
        tenant: Uuid,
        user: &str,
        place: &Place,
        view: &LineView,
        outflow: Option<Outflow>,
    ) -> QueueStatus {
        let mut status = QueueStatus {
            onsale: onsale.to_string(),
            place: place.id.clone(),
            state: PlaceState::Waiting,
            position: None,
            ahead: None,
            eta_seconds: None,
            paused: view.status == "paused",
            reason: None,
            admission: None,
        };
        let now = now_ms();
        if view.status == "closed" {
            status.state = PlaceState::Closed;
            status.reason = Some(StatusReason::Closed);
            return status;
        }
        if let Some(until) = place.admitted_until_ms {
            if until <= now {
                status.state = PlaceState::Ended;
                status.reason = Some(StatusReason::AdmissionEnded);
                return status;
            }
            status.state = PlaceState::Admitted;
            status.admission = self.inner.key.as_ref().map(|key| {
                let exp = until / 1000;
                AdmissionGrant {
                    token: key.issue(tenant, user, onsale, exp),
                    expires_at: exp,
                }
            });
            return status;
        }
        if place.seq == 0 {
            status.state = PlaceState::PreQueue;
            return status;
        }
        match view.ahead(place.seq) {
            Some(ahead) => {
                status.position = Some(ahead + 1);
                status.ahead = Some(ahead);
                if view.exhausted || view.status == "sold_out" {
                    status.state = PlaceState::SoldOut;
                } else if !status.paused {
                    status.eta_seconds = outflow.map(|o| o.eta(ahead));
                }
            }
            // Below the cursor and not gone: admitted, and the place needs its record.
            None if place.seq <= view.cursor && !view.is_gone(place.seq) => {
                status.state = PlaceState::Waiting;
                status.position = Some(1);
                status.ahead = Some(0);
            }
            None => {
                status.state = PlaceState::Ended;
                status.reason = Some(StatusReason::Left);
            }
        }
        status
    }

    /// Says every [`TICK`] that this node is alive, until `stop`. A task of its own: however
    /// long a refresh of many buyers takes on a loaded machine, the heartbeat is not behind it
    /// (a node whose heartbeat lapses is taken for dead, and every place attached only there
    /// starts its grace period).
    pub async fn beat(self, stop: CancellationToken) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Whether this node said it is alive before (its first heartbeat finds it unknown).
        let mut beaten = false;
        let mut attaching: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                _ = tick.tick() => {}
            }
            match self.inner.line.heartbeat(now_ms(), NODE_TTL).await {
                Ok(alive) if alive || !beaten => beaten = true,
                Ok(_) => {
                    // Silent so long it may have been taken for dead (its attachments
                    // detached): a new presence id, and every connection attached again,
                    // beside the heartbeat (which goes on under the new id meanwhile).
                    // One attaching at a time, from the start: what an earlier one attached
                    // under the old id is detached with it.
                    self.inner.line.renew_presence();
                    // The new id says it is alive before anything is attached under it (a
                    // node that dies now leaves no attachment under an id nobody knows), and
                    // that first heartbeat of the new id is not mistaken for another lapse:
                    // answering each with yet another id and another attaching would go on
                    // for ever, every node forgetting its buyers each tick (as it did after a
                    // Redis restart, at full size).
                    if let Err(e) = self.inner.line.heartbeat(now_ms(), NODE_TTL).await {
                        tracing::warn!(error = %e, "cannot say this node is alive to the waiting room");
                        beaten = false;
                    }
                    if let Some(earlier) = attaching.take() {
                        earlier.abort();
                    }
                    let room = self.clone();
                    attaching = Some(tokio::spawn(async move { room.attach_again().await }));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot say this node is alive to the waiting room");
                }
            }
        }
    }

    /// Refreshes every local buyer's status until `stop`.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pruned = Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                _ = tick.tick() => {}
            }
            self.inner.ticks.fetch_add(1, Ordering::Relaxed);
            if pruned.elapsed() >= Duration::from_secs(60) {
                // Rate-limit state of accounts and addresses that went quiet.
                pruned = Instant::now();
                self.inner.limits.per_account.retain_recent();
                self.inner.limits.per_ip.retain_recent();
            }
            let onsales: Vec<(Uuid, u64)> = {
                let local = self.inner.local.lock().expect("local lock");
                local
                    .iter()
                    .map(|(id, l)| {
                        (
                            *id,
                            l.buyers.values().map(|b| b.place.seq).max().unwrap_or(0),
                        )
                    })
                    .collect()
            };
            for (onsale, upto) in onsales {
                match self.inner.line.view(onsale, upto).await {
                    Ok(view) => self.refresh(onsale, view, upto).await,
                    Err(e) => tracing::warn!(error = %e, %onsale, "cannot read the line"),
                }
            }
        }
    }

    /// Attaches every local connection to its place again, under the node's new presence id,
    /// after it was silent so long that controllers may have detached its connections as a
    /// dead node's. A place that ended meanwhile is not taken again.
    async fn attach_again(&self) {
        let joins: Vec<(Uuid, String, usize)> = {
            let local = self.inner.local.lock().expect("local lock");
            local
                .iter()
                .flat_map(|(onsale, l)| {
                    l.buyers
                        .iter()
                        .map(|(user, b)| (*onsale, user.clone(), b.conns.len()))
                })
                .collect()
        };
        if !joins.is_empty() {
            tracing::warn!(
                buyers = joins.len(),
                "this node was silent too long; attaching its connections to their places again"
            );
        }
        for (onsale, user, conns) in joins {
            for _ in 0..conns {
                // Only a place that still exists (a join would take a new one).
                match self.inner.line.place(onsale, &user).await {
                    Ok(Some(_)) => {
                        if let Err(e) = self.inner.line.join(onsale, &user, None).await {
                            tracing::warn!(error = %e, %onsale, "cannot attach again");
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, %onsale, "cannot attach again");
                        break;
                    }
                }
            }
        }
    }

    /// Pushes what changed for one onsale's local buyers.
    /// `view` knows the gaps up to sequence `upto`: buyers further back (who attached since it
    /// was asked for) wait for the next tick, or their position would count gaps it does not
    /// know and show higher than they were told.
    async fn refresh(&self, onsale: Uuid, view: LineView, upto: u64) {
        let now = Instant::now();
        // Places the view says changed under us (drawn, admitted): read their records first,
        // outside the lock. Admissions happen at the admission rate, draws once.
        let stale: Vec<String> = {
            let mut local = self.inner.local.lock().expect("local lock");
            let Some(entry) = local.get_mut(&onsale) else {
                return;
            };
            entry.samples.push_back((now, view.admitted_total));
            // Admissions that ended early (a checkout or release handed the slot back, on any
            // node) show as fewer running than admitted: when that count moves, the records
            // of this node's admitted buyers are read again, so each whose place ended is told.
            let ended = |v: &LineView| v.admitted_total.saturating_sub(v.active);
            let ended_moved = entry
                .last_view
                .as_ref()
                .is_some_and(|v| ended(v) != ended(&view));
            let wall = now_ms();
            while entry
                .samples
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(30))
            {
                entry.samples.pop_front();
            }
            entry
                .buyers
                .iter_mut()
                .filter(|(_, b)| {
                    b.refresh
                        || (ended_moved && b.place.admitted_until_ms.is_some_and(|u| u > wall))
                        || (b.place.admitted_until_ms.is_none()
                            && ((b.place.seq == 0 && view.drawn)
                                || (b.place.seq > 0
                                    && b.place.seq <= view.cursor
                                    && !view.is_gone(b.place.seq))))
                })
                .map(|(u, b)| {
                    b.refresh = true;
                    u.clone()
                })
                .collect()
        };
        // In slices of PLACES_PER_READ, one round trip each: at the draw every pre-queue place
        // on the node is stale together. One read per place kept a node's tick busy for
        // seconds (tens of thousands of round trips), and one read of them all would hold
        // Redis for everyone else while it ran.
        let mut records = HashMap::new();
        for users in stale.chunks(PLACES_PER_READ) {
            match self.inner.line.places(onsale, users).await {
                Ok(places) => records.extend(users.iter().cloned().zip(places)),
                Err(e) => tracing::warn!(error = %e, %onsale, "cannot read places"),
            }
        }
        let mut local = self.inner.local.lock().expect("local lock");
        let Some(entry) = local.get_mut(&onsale) else {
            return;
        };
        let outflow = Outflow::of(&entry.samples, now);
        let tenant = entry.tenant;
        let tick = self.inner.ticks.load(Ordering::Relaxed);
        let wall = now_ms();
        for (user, buyer) in &mut entry.buyers {
            if buyer.place.seq > upto || (buyer.position_sent_tick == tick && !buyer.refresh) {
                // Behind the gaps this view knows (attached since it was read); or answered by
                // a join during this very tick, whose reply may not be written yet: a push now
                // could overtake it, and the reply would then show the position rising.
                continue;
            }
            let mut reason = None;
            // Only the buyers marked above were read: hashing every buyer's name to look it up
            // was a tenth of the node's CPU at 100,000 buyers.
            if buyer.refresh
                && let Some(record) = records.remove(user)
            {
                buyer.refresh = false;
                match record {
                    Some(place) if place.id == buyer.place.id => {
                        if buyer.place.seq == 0 && place.seq > 0 {
                            reason = Some(StatusReason::Drawn);
                        }
                        buyer.place = place;
                    }
                    // The place ended (elsewhere) and perhaps a new one began: the buyer
                    // learns it ended and joins again to see the new one.
                    _ => {
                        buyer.place.admitted_until_ms = Some(0);
                    }
                }
            }
            // Most ticks change nothing for most buyers, or only a position not yet due to be
            // pushed: find that out without building a status (100,000 buyers, four ticks a
            // second).
            let glance = Glance::of(&buyer.place, &view, wall);
            let spacing = if buyer.moving {
                position_ticks(buyer.sent.as_ref().and_then(|s| s.position))
            } else {
                POSITION_TICKS
            };
            let due = tick.saturating_sub(buyer.position_sent_tick) >= spacing;
            if reason.is_none()
                && buyer
                    .glance
                    .as_ref()
                    .is_some_and(|g| *g == glance || (!due && g.same_but_position(&glance)))
            {
                continue;
            }
            let mut status = self.status(onsale, tenant, user, &buyer.place, &view, outflow);
            let previous = buyer.sent.as_ref();
            if status.reason.is_none() {
                status.reason = reason.or_else(|| transition_reason(previous, &status));
            }
            if status.reason.is_none()
                && previous.is_some_and(|p| {
                    p.place == status.place
                        && p.state == status.state
                        && matches!((p.position, status.position), (Some(a), Some(b)) if b > a)
                })
            {
                // This tick's view was read before the one the last status came from (the
                // buyer attached in between, answered from a fresher view): it would show the
                // position rising, which never happens without a reason. The next tick's view
                // is newer.
                continue;
            }
            let significant = previous.is_none_or(|p| {
                p.state != status.state
                    || p.paused != status.paused
                    || p.admission.is_some() != status.admission.is_some()
            });
            let moved = previous.is_none_or(|p| {
                p.position != status.position || p.eta_seconds != status.eta_seconds
            });
            if significant || (moved && due) {
                if status.position != previous.and_then(|p| p.position) {
                    buyer.position_sent_tick = tick;
                }
                buyer.moving = !significant;
                for conn in &buyer.conns {
                    conn.push_latest(&status.onsale, ServerMessage::QueueStatus(status.clone()));
                }
                buyer.sent = Some(status);
                buyer.glance = Some(glance);
            }
        }
        entry.last_view = Some(view);
    }
}

/// Checks a staged purchase and gives the form the line stores (`category:quantity`).
fn stored_intent(intent: &PurchaseIntent) -> Result<String, Refusal> {
    let category = Uuid::parse_str(&intent.category)
        .map_err(|_| refusal(ErrorCode::BadRequest, "intent.category must be a UUID"))?;
    if intent.quantity == 0 || intent.quantity as usize > MAX_SEATS_PER_COMMAND {
        return Err(refusal(
            ErrorCode::InvalidQuantity,
            format!("intent.quantity must be 1 to {MAX_SEATS_PER_COMMAND}"),
        ));
    }
    Ok(format!("{category}:{}", intent.quantity))
}

/// Reads a purchase the line stored with [`stored_intent`].
pub(crate) fn parse_intent(stored: &str) -> Option<(Uuid, u32)> {
    let (category, quantity) = stored.split_once(':')?;
    Some((Uuid::parse_str(category).ok()?, quantity.parse().ok()?))
}

/// The key an account's queues are recorded under: tenant and user.
fn account(identity: &Identity) -> String {
    format!(
        "{}/{}",
        identity.tenant.as_deref().unwrap_or(""),
        identity.user
    )
}

/// The reason to give when a status changes without one of its own.
fn transition_reason(previous: Option<&QueueStatus>, now: &QueueStatus) -> Option<StatusReason> {
    let previous = previous?;
    if previous.paused != now.paused {
        return Some(if now.paused {
            StatusReason::Paused
        } else {
            StatusReason::Resumed
        });
    }
    match (previous.state, now.state) {
        (PlaceState::Waiting, PlaceState::SoldOut) => Some(StatusReason::SoldOut),
        (PlaceState::SoldOut, PlaceState::Waiting) => Some(StatusReason::Restocked),
        _ => None,
    }
}

/// Admissions per second measured over the last 10 s and 30 s.
#[derive(Debug, Clone, Copy)]
struct Outflow {
    short: f64,
    long: f64,
}

impl Outflow {
    fn of(samples: &VecDeque<(Instant, u64)>, now: Instant) -> Option<Self> {
        let &(t_last, n_last) = samples.back()?;
        let rate = |window: Duration| {
            let (t0, n0) = samples
                .iter()
                .find(|(t, _)| now.duration_since(*t) <= window)?;
            let secs = t_last.duration_since(*t0).as_secs_f64();
            (secs >= 1.0).then(|| (n_last - n0) as f64 / secs)
        };
        let short = rate(Duration::from_secs(10))?;
        let long = rate(Duration::from_secs(30)).unwrap_or(short);
        (short.max(long) > 0.0).then_some(Self { short, long })
    }

    /// `[earliest, latest]` seconds for `ahead` buyers to be admitted.
    fn eta(self, ahead: u64) -> [u64; 2] {
        let fast = self.short.max(self.long);
        let slow = self.short.min(self.long).max(fast / 2.0);
        let n = ahead as f64 + 1.0;
        [
            (n / fast * 0.9).floor() as u64,
            (n / slow * 1.1).ceil() as u64,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_further_back_are_pushed_less_often() {
        let seconds = |p| position_ticks(p) / POSITION_TICKS;
        assert_eq!(seconds(None), 1);
        assert_eq!(seconds(Some(1)), 1);
        assert_eq!(seconds(Some(1000)), 1);
        assert_eq!(seconds(Some(1001)), 2);
        assert_eq!(seconds(Some(5000)), 5);
        assert_eq!(seconds(Some(10_000)), 10);
        assert_eq!(seconds(Some(30_000)), 30);
        assert_eq!(seconds(Some(30_001)), 30);
        assert_eq!(seconds(Some(2_000_000)), MAX_POSITION_SECONDS);
    }
}
