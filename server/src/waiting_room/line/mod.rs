//! The line: every onsale's places, shared by all nodes, with two implementations that pass
//! one conformance suite (`server/tests/it/waiting_room_line.rs`).
//!
//! - `memory`: in-process, for a single node.
//! - `redis`: one small set of keys per onsale (all in one Cluster slot), every multi-step
//!   change one Lua script ([`redis`]).
//!
//! # The model
//!
//! A buyer has at most one *place* per onsale: an opaque id and a sequence number. Joining
//! during the pre-queue gives sequence 0 (undrawn); at the start [`Line::close_pre_queue`]
//! reserves sequences `1..=k` for the `k` pre-queue places and [`Line::draw`] hands them out in
//! the shuffled order. Joiners after that get the next sequence (first come, first served).
//! Admission takes the lowest sequences first, so admission order is sequence order.
//!
//! Positions need no per-buyer state in the line: everything below the *cursor* (the last
//! admitted sequence) has left, and a place that leaves while waiting adds its sequence to
//! the *gone* set. The number ahead of sequence `s` is `s - 1 - cursor - |gone ∩ (cursor, s)|`,
//! so a node computes every local buyer's position from one [`Line::view`] per tick.
//!
//! A view's cost must not grow with the gone set: with 100,000 buyers and a third of them
//! gone ahead of the cursor, listing every gap up to the last buyer took Redis 50 ms a call,
//! and every node calls once a tick (and once per buyer coming back). So a view lists the
//! gone sequences exactly only within [`EXACT_WINDOW`] above the cursor, where buyers are
//! about to be admitted, and beyond it counts them up to fixed boundaries (one `ZCOUNT` each):
//! every 1,000 sequences up to 100,000, every 10,000 up to 1,000,000, every 100,000 beyond
//! ([`gone_block`]), so a line of 14 million costs a view about 330 counts. Further back a
//! position counts only the gaps below the start of its block: it may be up to a block's gaps
//! too high (as many places as the block holds at most), never too low, and it still never
//! rises (see [`LineView::ahead`]).
//!
//! Presence is counted per place: each connection attached to it adds one; when the count
//! drops to zero the place is kept for a grace period. A detach names the place it attached
//! to, so a stale connection of an ended place never touches a newer one.
//!
//! # Node presence
//!
//! Each node also records which places its connections are attached to, per node (a count per
//! place id), and says it is alive with a heartbeat ([`Line::heartbeat`]) every tick. A node
//! that dies never detaches its connections, so the admission controller of each onsale asks
//! for the nodes whose heartbeat ran out ([`Line::dead_nodes`]) and detaches everything they
//! had attached ([`Line::detach_node`]): a place whose last connection was on the dead node
//! starts its grace period within seconds, as if its buyer had closed the tab, and one with a
//! connection on another node keeps it. A node's presence id is unique per process, so a node
//! restarted under the same name is a new node.
//!
//! Time is passed in (unix milliseconds), never read inside, so both implementations behave
//! identically and tests control the clock.

pub mod redis;

use redis::RedisLine;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// A line operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// Redis could not be reached or refused the command.
    #[error("waiting room unavailable: {0}")]
    Unavailable(String),
    /// Redis answered something the scripts never return.
    #[error("unexpected waiting-room reply: {0}")]
    Corrupt(String),
}

/// A buyer's place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// Opaque id (the id the published pre-queue order names).
    pub id: String,
    /// Sequence in the line; 0 while undrawn in the pre-queue.
    pub seq: u64,
    /// While admitted: until when (unix ms).
    pub admitted_until_ms: Option<u64>,
}

impl Place {
    /// Parses the stored form `id:seq`.
    pub(crate) fn decode(raw: &str, admitted_until_ms: Option<u64>) -> Option<Self> {
        let (id, seq) = raw.rsplit_once(':')?;
        Some(Self {
            id: id.to_owned(),
            seq: seq.parse().ok()?,
            admitted_until_ms,
        })
    }
}

/// What a join did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// A new place.
    New(Place),
    /// The buyer already had this place; the connection is attached to it.
    Attached(Place),
    /// No place: the onsale takes no joins in this status.
    Refused {
        /// The line's status.
        status: String,
    },
}

/// A place admitted by [`Line::admit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The buyer.
    pub user: String,
    /// The place.
    pub place: Place,
    /// Whether a connection was attached at the moment of admission (if not, the admission
    /// lapses unless one attaches within the show-up window).
    pub present: bool,
    /// The purchase the buyer staged while waiting, as given to [`Line::stage`] (taken: it is
    /// handed out once).
    pub intent: Option<String>,
    /// Its place among every admission of the onsale (1, 2, …), counted by the line itself:
    /// the order admissions were made in, whoever records them and however late.
    pub ordinal: u64,
}

/// Why [`Line::expire`] ended a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Away longer than the grace period while waiting.
    GraceExpired,
    /// Admitted while away and not back within the show-up window.
    NoShow,
    /// The admission's time ran out.
    AdmissionEnded,
}

impl Ending {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "grace_expired" => Self::GraceExpired,
            "no_show" => Self::NoShow,
            "admission_ended" => Self::AdmissionEnded,
            _ => return None,
        })
    }
}

/// An onsale's line, as a node sees it on each tick.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LineView {
    /// `scheduled`, `pre_queue`, `live`, `paused`, `sold_out` or `closed`.
    pub status: String,
    /// The last admitted sequence: everything at or below it has left the line.
    pub cursor: u64,
    /// Admitted since the start.
    pub admitted_total: u64,
    /// Whether the event's inventory is exhausted (admission waits for it to come back).
    pub exhausted: bool,
    /// Whether the start's draw is done (admission waits for it; an onsale without a
    /// pre-queue draws an empty one).
    pub drawn: bool,
    /// Places waiting, pre-queue included.
    pub waiting: u64,
    /// Admissions running.
    pub active: u64,
    /// The last sequence handed out.
    pub last_seq: u64,
    /// Sequences that left while waiting, above the cursor and within [`EXACT_WINDOW`] of it
    /// (and up to the bound asked for), ascending.
    pub gone: Vec<u64>,
    /// Beyond the window: for each block boundary `b` ([`gone_block`]) above `cursor +
    /// EXACT_WINDOW + 1` (up to the bound asked for and the last sequence), how many gone
    /// sequences lie in `(cursor, b)`. Ascending by `b`.
    pub gone_before: Vec<(u64, u64)>,
}

/// Sequences above the cursor whose gaps a view lists one by one.
pub const EXACT_WINDOW: u64 = 2_000;

/// The size of the block of sequences that `seq` falls in: 1,000 below 100,000, 10,000 below
/// 1,000,000, 100,000 beyond. Block boundaries are the multiples of their block's size, fixed
/// for every sequence whatever the cursor, which is what keeps positions from rising. The
/// view script computes the same.
pub fn gone_block(seq: u64) -> u64 {
    match seq {
        0..100_000 => 1_000,
        100_000..1_000_000 => 10_000,
        _ => 100_000,
    }
}

/// The start of the block `seq` falls in.
fn block_start(seq: u64) -> u64 {
    seq / gone_block(seq) * gone_block(seq)
}

impl LineView {
    /// Buyers ahead of sequence `seq`, or `None` if it has left the line (admitted, or gone
    /// within the exact window).
    ///
    /// Within [`EXACT_WINDOW`] of the cursor it is exact. Beyond it, the gaps counted are those
    /// below `X = max(b, cursor + EXACT_WINDOW + 1)`, `b` the start of `seq`'s block: a
    /// number of gaps at most the true one, so the position is never too low. Nor does it
    /// ever rise from one view to a later one, on any node: when the cursor moves up by `d`,
    /// at most `d` counted gaps fall below it, while every new gap and every rise of `X` can
    /// only count more; and entering the window switches to the exact count, which counts at
    /// least as many (`X <= seq`). A view read with a bound below `seq` (the last tick's, for
    /// a new place) counts fewer gaps still: a little high, never low.
    pub fn ahead(&self, seq: u64) -> Option<u64> {
        if seq == 0 || seq <= self.cursor {
            return None;
        }
        let window_end = self.cursor + EXACT_WINDOW;
        let gone_ahead = if seq <= window_end {
            if self.is_gone(seq) {
                return None;
            }
            self.gone.partition_point(|g| *g < seq) as u64
        } else {
            let start = block_start(seq);
            // The count at the highest boundary at or below the block's start; below the
            // first boundary, the window's gaps (every one of them lies below `seq`).
            self.gone_before
                .iter()
                .take_while(|(b, _)| *b <= start)
                .last()
                .map_or(self.gone.len() as u64, |(_, n)| *n)
        };
        Some(seq - 1 - self.cursor - gone_ahead)
    }

    /// Whether `seq` is known to have left the line while waiting (known only within the
    /// exact window).
    pub fn is_gone(&self, seq: u64) -> bool {
        self.gone.binary_search(&seq).is_ok()
    }
}

/// Durations the line applies.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a place is kept after its last connection goes.
    pub grace: Duration,
    /// How long an admission lasts (the shopping window).
    pub admission_ttl: Duration,
    /// How long an admitted buyer who was away has to come back.
    pub show_window: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(120),
            admission_ttl: Duration::from_secs(600),
            show_window: Duration::from_secs(30),
        }
    }
}

/// Every onsale's line, as one node sees it: the node whose connections this handle attaches
/// to places (see "Node presence" in the module docs).
#[derive(Debug, Clone)]
pub struct Line {
    backend: Backend,
    /// The node's presence id, shared by the clones of this handle (see
    /// [`Line::renew_presence`]).
    node: Arc<Mutex<Arc<str>>>,
}

/// Where the line lives.
#[derive(Debug, Clone)]
pub enum Backend {
    /// In-process.
    Memory(Arc<MemoryLine>),
    /// Redis, with Lua scripts.
    Redis(Arc<RedisLine>),
}

/// A new random node presence id.
fn random_node_id() -> Arc<str> {
    format!("node-{:016x}", rand::random::<u64>()).into()
}

/// A new random place id.
pub(crate) fn new_place_id() -> String {
    format!("p{:020x}", rand::random::<u128>() >> 48)
}

impl Line {
    /// The line in process memory, seen from a node with a random presence id.
    pub fn memory(line: Arc<MemoryLine>) -> Self {
        Self::new(Backend::Memory(line))
    }

    /// The line in Redis, seen from a node with a random presence id.
    pub fn redis(line: Arc<RedisLine>) -> Self {
        Self::new(Backend::Redis(line))
    }

    fn new(backend: Backend) -> Self {
        Self {
            backend,
            node: Arc::new(Mutex::new(random_node_id())),
        }
    }

    /// The same line seen from node `node` (a presence id: unique per process, so a node
    /// that restarts never takes over its dead self's attachments).
    #[must_use]
    pub fn on_node(&self, node: &str) -> Self {
        Self {
            backend: self.backend.clone(),
            node: Arc::new(Mutex::new(node.into())),
        }
    }

    /// The presence id of the node this handle attaches connections for.
    pub fn node(&self) -> Arc<str> {
        self.node.lock().expect("node lock").clone()
    }

    /// Gives this node (every clone of the handle) a new presence id: after it was silent so
    /// long that it may have been taken for dead, it is a new node, and attaches its
    /// connections again under the new id. Whatever the old id had attached is detached
    /// once, by the controllers, as a dead node's.
    pub fn renew_presence(&self) {
        *self.node.lock().expect("node lock") = random_node_id();
    }

    /// Says this node is alive until `now_ms + ttl`. Nodes call it every tick; one that stops
    /// (it died) is found by [`Line::dead_nodes`] once its time is up. Returns whether the
    /// node was known to be alive until now: `false` on its first heartbeat, and when it had
    /// been silent too long (its attachments may have been detached as a dead node's: it
    /// attaches its connections again).
    pub async fn heartbeat(&self, now_ms: u64, ttl: Duration) -> Result<bool, LineError> {
        let until = now_ms + ttl.as_millis() as u64;
        let before = match &self.backend {
            Backend::Memory(m) => m
                .nodes
                .lock()
                .expect("nodes lock")
                .insert(self.node().to_string(), until),
            Backend::Redis(r) => r.heartbeat(&self.node(), until, now_ms).await?,
        };
        Ok(before.is_some_and(|b| b > now_ms))
    }

    /// Nodes whose heartbeat ran out by `now_ms` (for an hour after; by then every
    /// controller has detached them).
    pub async fn dead_nodes(&self, now_ms: u64) -> Result<Vec<String>, LineError> {
        match &self.backend {
            Backend::Memory(m) => {
                let mut nodes = m.nodes.lock().expect("nodes lock");
                nodes.retain(|_, until| *until + DEAD_NODE_MEMORY_MS > now_ms);
                let mut dead: Vec<String> = nodes
                    .iter()
                    .filter(|(_, until)| **until <= now_ms)
                    .map(|(n, _)| n.clone())
                    .collect();
                dead.sort();
                Ok(dead)
            }
            Backend::Redis(r) => r.dead_nodes(now_ms).await,
        }
    }

    /// Detaches every connection dead node `node` had attached to places of `onsale`, as if
    /// each had closed at `now_ms`: places left with none start their grace period. Returns
    /// how many places lost their last connection. Idempotent.
    pub async fn detach_node(
        &self,
        onsale: Uuid,
        node: &str,
        now_ms: u64,
        grace: Duration,
    ) -> Result<u64, LineError> {
        let deadline = now_ms + grace.as_millis() as u64;
        match &self.backend {
            Backend::Memory(m) => Ok(m.with(onsale, |l| l.detach_node(node, deadline))),
            Backend::Redis(r) => r.detach_node(onsale, node, deadline).await,
        }
    }

    /// Takes a place for `user`, or attaches to the one they have. `attached` is the place
    /// this connection is already attached to (so attaching twice counts once).
    pub async fn join(
        &self,
        onsale: Uuid,
        user: &str,
        attached: Option<&str>,
    ) -> Result<Joined, LineError> {
        let mut joined = self.join_many(onsale, &[(user, attached)]).await?;
        joined
            .pop()
            .ok_or_else(|| LineError::Corrupt("a join answered nothing".into()))
    }

    /// Joins a batch of buyers in one step, in order: the answer for each `(user, attached)`,
    /// as [`Line::join`] would give it. Nodes batch concurrent joins this way, so a flood of
    /// joins costs one engine call per batch, not per buyer.
    pub async fn join_many(
        &self,
        onsale: Uuid,
        joins: &[(&str, Option<&str>)],
    ) -> Result<Vec<Joined>, LineError> {
        let joins: Vec<(&str, String, Option<&str>)> = joins
            .iter()
            .map(|(user, attached)| (*user, new_place_id(), *attached))
            .collect();
        let node = self.node();
        match &self.backend {
            Backend::Memory(m) => Ok(m.with(onsale, |l| {
                joins
                    .iter()
                    .map(|(user, id, attached)| l.join(user, id, *attached, &node))
                    .collect()
            })),
            Backend::Redis(r) => r.join_many(onsale, &joins, &node).await,
        }
    }

    /// A connection attached to `place` went away. When none is left, the place is kept for
    /// the grace period (waiting places only; an admission runs its course).
    pub async fn detach(
        &self,
        onsale: Uuid,
        user: &str,
        place: &str,
        now_ms: u64,
        grace: Duration,
    ) -> Result<(), LineError> {
        let closed = [(user.to_owned(), place.to_owned())];
        self.detach_many(onsale, &closed, now_ms, grace).await
    }

    /// [`Line::detach`] for several closed connections, `(user, place)`, in one call.
    pub async fn detach_many(
        &self,
        onsale: Uuid,
        closed: &[(String, String)],
        now_ms: u64,
        grace: Duration,
    ) -> Result<(), LineError> {
        let deadline = now_ms + grace.as_millis() as u64;
        let node = self.node();
        match &self.backend {
            Backend::Memory(m) => {
                m.with(onsale, |l| {
                    for (user, place) in closed {
                        l.detach(user, place, deadline, &node);
                    }
                });
                Ok(())
            }
            Backend::Redis(r) => r.detach_many(onsale, closed, deadline, &node).await,
        }
    }

    /// Gives a place up at once. Returns whether there was one.
    pub async fn leave(&self, onsale: Uuid, user: &str) -> Result<bool, LineError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.with(onsale, |l| l.drop_place(user))),
            Backend::Redis(r) => r.leave(onsale, user).await,
        }
    }

    /// Stages a purchase for a waiting place, replacing one staged before. Returns whether
    /// the buyer has a waiting place to stage it on.
    pub async fn stage(&self, onsale: Uuid, user: &str, intent: &str) -> Result<bool, LineError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.with(onsale, |l| l.stage(user, intent))),
            Backend::Redis(r) => r.stage(onsale, user, intent).await,
        }
    }

    /// The admission of `user` is over (checkout done, hold released): the slot comes back.
    pub async fn finish(&self, onsale: Uuid, user: &str) -> Result<bool, LineError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.with(onsale, |l| l.finish(user))),
            Backend::Redis(r) => r.finish(onsale, user).await,
        }
    }

    /// Mirrors the onsale's status (from Postgres) into the line. Use
    /// [`Line::close_pre_queue`] to go live from `scheduled` or `pre_queue`.
    pub async fn set_status(&self, onsale: Uuid, status: &str) -> Result<(), LineError> {
        match &self.backend {
            Backend::Memory(m) => {
                m.with(onsale, |l| l.status = status.to_owned());
                Ok(())
            }
            Backend::Redis(r) => r.set_status(onsale, status).await,
        }
    }

    /// Sets the status to `to` if it is `from` (one step: an admission tick in between
    /// either runs before it or sees `to`); whether it did.
    pub async fn switch_status(
        &self,
        onsale: Uuid,
        from: &str,
        to: &str,
    ) -> Result<bool, LineError> {
        match &self.backend {
            // Looked up, not made: an onsale without a waiting room has no line to switch.
            Backend::Memory(m) => {
                let mut onsales = m.onsales.lock().expect("line lock");
                Ok(match onsales.get_mut(&onsale) {
                    Some(l) if l.status == from => {
                        l.status = to.to_owned();
                        true
                    }
                    _ => false,
                })
            }
            Backend::Redis(r) => r.switch_status(onsale, from, to).await,
        }
    }

    /// Marks the event's inventory exhausted (admission waits) or back.
    pub async fn set_exhausted(&self, onsale: Uuid, exhausted: bool) -> Result<(), LineError> {
        match &self.backend {
            Backend::Memory(m) => {
                m.with(onsale, |l| l.exhausted = exhausted);
                Ok(())
            }
            Backend::Redis(r) => r.set_exhausted(onsale, exhausted).await,
        }
    }

    /// Goes live: closes the pre-queue, reserving sequences `1..=k` for its `k` places, and
    /// returns the undrawn pre-queue place ids to shuffle. Empty once drawn. Idempotent, so
    /// a controller that takes over from a dead one simply calls it again. A line already
    /// live or paused (set directly) reserves nothing; admission still waits for the draw.
    pub async fn close_pre_queue(&self, onsale: Uuid) -> Result<Vec<String>, LineError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.with(onsale, LineState::close_pre_queue)),
            Backend::Redis(r) => r.close_pre_queue(onsale).await,
        }
    }

    /// Hands the reserved sequences to the pre-queue places in `order` (sequence `i + 1` to
    /// `order[i]`). A place that left meanwhile leaves its sequence as a gap. Once only.
    pub async fn draw(&self, onsale: Uuid, order: &[String]) -> Result<(), LineError> {
        match &self.backend {
            Backend::Memory(m) => {
                m.with(onsale, |l| l.draw(order));
                Ok(())
            }
            Backend::Redis(r) => r.draw(onsale, order).await,
        }
    }

    /// Admits up to `max` places from the front while fewer than `cap` admissions run (only
    /// while live, drawn and not exhausted).
    pub async fn admit(
        &self,
        onsale: Uuid,
        max: u64,
        cap: u64,
        now_ms: u64,
        timing: &Timing,
    ) -> Result<Vec<Admitted>, LineError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let until = now_ms + timing.admission_ttl.as_millis() as u64;
        let show = now_ms + timing.show_window.as_millis() as u64;
        match &self.backend {
            Backend::Memory(m) => Ok(m.with(onsale, |l| l.admit(max, cap, until, show))),
            Backend::Redis(r) => r.admit(onsale, max, cap, until, show).await,
        }
    }

    /// Ends places whose grace period, show-up window or admission ran out by `now_ms` (at
    /// most `limit` of each kind per call). Returns the buyers and why.
    pub async fn expire(
        &self,
        onsale: Uuid,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<(String, Ending)>, LineError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.with(onsale, |l| l.expire(now_ms, limit))),
            Backend::Redis(r) => r.expire(onsale, now_ms, limit).await,
        }
    }

    /// The line's counters and the gone sequences up to `upto`.
    pub async fn view(&self, onsale: Uuid, upto: u64) -> Result<LineView, LineError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.with(onsale, |l| l.view(upto))),
            Backend::Redis(r) => r.view(onsale, upto).await,
        }
    }

    /// What [`Line::view`] says of sequence `seq` (`ahead` and `is_gone` of it, and the
    /// line's counts), without the rest: one count in Redis where the whole view of a place
    /// far back takes one per block ahead of it. For a buyer attaching again, told from here.
    pub async fn view_at(&self, onsale: Uuid, seq: u64) -> Result<LineView, LineError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.with(onsale, |l| l.view(seq))),
            Backend::Redis(r) => r.view_at(onsale, seq).await,
        }
    }

    /// A buyer's place, if they have one.
    pub async fn place(&self, onsale: Uuid, user: &str) -> Result<Option<Place>, LineError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.with(onsale, |l| l.place(user))),
            Backend::Redis(r) => r.place(onsale, user).await,
        }
    }

    /// The places of several users at once, in `users`' order (one round trip on Redis).
    pub async fn places(
        &self,
        onsale: Uuid,
        users: &[String],
    ) -> Result<Vec<Option<Place>>, LineError> {
        match &self.backend {
            Backend::Memory(m) => {
                Ok(m.with(onsale, |l| users.iter().map(|u| l.place(u)).collect()))
            }
            Backend::Redis(r) => r.places(onsale, users).await,
        }
    }

    /// Records that `account` waits in `onsale`, if it waits in fewer than `cap` queues (or
    /// in this one already). Returns whether it may.
    pub async fn enter(
        &self,
        account: &str,
        onsale: Uuid,
        cap: usize,
        now_ms: u64,
    ) -> Result<bool, LineError> {
        let entered = self.enter_many(&[account], onsale, cap, now_ms).await?;
        Ok(entered.first().copied().unwrap_or(false))
    }

    /// [`Line::enter`] for several accounts joining `onsale`, in one round trip: whether each
    /// may, in order. Each account is its own record (its own Redis key), so a batch of joins
    /// costs one round trip here, not one per buyer.
    pub async fn enter_many(
        &self,
        accounts: &[&str],
        onsale: Uuid,
        cap: usize,
        now_ms: u64,
    ) -> Result<Vec<bool>, LineError> {
        match &self.backend {
            Backend::Memory(m) => {
                let mut records = m.accounts.lock().expect("accounts lock");
                Ok(accounts
                    .iter()
                    .map(|account| {
                        let queues = records.entry((*account).to_owned()).or_default();
                        if queues.contains_key(&onsale) || queues.len() < cap {
                            queues.entry(onsale).or_insert(now_ms);
                            true
                        } else {
                            false
                        }
                    })
                    .collect())
            }
            Backend::Redis(r) => r.enter_many(accounts, onsale, cap, now_ms).await,
        }
    }

    /// The queues `account` was recorded in, with when.
    pub async fn queues(&self, account: &str) -> Result<Vec<(Uuid, u64)>, LineError> {
        match &self.backend {
            Backend::Memory(m) => {
                let accounts = m.accounts.lock().expect("accounts lock");
                let mut queues: Vec<(Uuid, u64)> = accounts
                    .get(account)
                    .map(|q| q.iter().map(|(o, t)| (*o, *t)).collect())
                    .unwrap_or_default();
                queues.sort_by_key(|(o, t)| (*t, *o));
                Ok(queues)
            }
            Backend::Redis(r) => r.queues(account).await,
        }
    }

    /// Forgets that `account` waits in `onsale`.
    pub async fn exit(&self, account: &str, onsale: Uuid) -> Result<(), LineError> {
        match &self.backend {
            Backend::Memory(m) => {
                let mut accounts = m.accounts.lock().expect("accounts lock");
                if let Some(queues) = accounts.get_mut(account) {
                    queues.remove(&onsale);
                    if queues.is_empty() {
                        accounts.remove(account);
                    }
                }
                Ok(())
            }
            Backend::Redis(r) => r.exit(account, onsale).await,
        }
    }

    /// Tries to become (or stay) the onsale's admission controller for `ttl`.
    pub async fn lease(
        &self,
        onsale: Uuid,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, LineError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.lease(onsale, holder, ttl)),
            Backend::Redis(r) => r.lease(onsale, holder, ttl).await,
        }
    }
}

/// How long a dead node stays listed by [`Line::dead_nodes`].
const DEAD_NODE_MEMORY_MS: u64 = 3_600_000;

/// The in-process line.
#[derive(Debug, Default)]
pub struct MemoryLine {
    onsales: Mutex<HashMap<Uuid, LineState>>,
    /// Node presence id → alive until (unix ms).
    nodes: Mutex<HashMap<String, u64>>,
    /// Account → the queues it waits in, with when it entered each.
    accounts: Mutex<HashMap<String, HashMap<Uuid, u64>>>,
    leases: Mutex<HashMap<Uuid, (String, std::time::Instant)>>,
}

impl MemoryLine {
    fn with<T>(&self, onsale: Uuid, f: impl FnOnce(&mut LineState) -> T) -> T {
        let mut onsales = self.onsales.lock().expect("line lock");
        f(onsales.entry(onsale).or_default())
    }

    fn lease(&self, onsale: Uuid, holder: &str, ttl: Duration) -> bool {
        let now = std::time::Instant::now();
        let mut leases = self.leases.lock().expect("lease lock");
        match leases.get(&onsale) {
            Some((owner, until)) if owner != holder && *until > now => false,
            _ => {
                leases.insert(onsale, (holder.to_owned(), now + ttl));
                true
            }
        }
    }
}

/// One onsale's line in memory: the same structures the Redis keys hold.
#[derive(Debug)]
struct LineState {
    status: String,
    last_seq: u64,
    /// user → place (id and sequence).
    places: HashMap<String, (String, u64)>,
    /// place id → user.
    owners: HashMap<String, String>,
    /// Undrawn pre-queue place ids.
    pre: HashSet<String>,
    /// Waiting: sequence → user (and the reverse in `places`).
    line: BTreeMap<u64, String>,
    /// user → attached connections.
    presence: HashMap<String, i64>,
    /// node → place id → connections of that node attached to it.
    by_node: HashMap<String, HashMap<String, i64>>,
    /// user → grace deadline.
    absent: HashMap<String, u64>,
    gone: BTreeSet<u64>,
    /// user → admission end.
    admitted: HashMap<String, u64>,
    /// user → show-up deadline.
    no_show: HashMap<String, u64>,
    /// user → staged purchase.
    intents: HashMap<String, String>,
    cursor: u64,
    admitted_total: u64,
    exhausted: bool,
    reserved: Option<u64>,
    drawn: bool,
}

impl Default for LineState {
    fn default() -> Self {
        Self {
            status: "scheduled".to_owned(),
            last_seq: 0,
            places: HashMap::new(),
            owners: HashMap::new(),
            pre: HashSet::new(),
            line: BTreeMap::new(),
            presence: HashMap::new(),
            by_node: HashMap::new(),
            absent: HashMap::new(),
            gone: BTreeSet::new(),
            admitted: HashMap::new(),
            no_show: HashMap::new(),
            intents: HashMap::new(),
            cursor: 0,
            admitted_total: 0,
            exhausted: false,
            reserved: None,
            drawn: false,
        }
    }
}

impl LineState {
    fn place(&self, user: &str) -> Option<Place> {
        let (id, seq) = self.places.get(user)?;
        Some(Place {
            id: id.clone(),
            seq: *seq,
            admitted_until_ms: self.admitted.get(user).copied(),
        })
    }

    /// Counts one more connection of `node` on place `id`.
    fn attach_on(&mut self, node: &str, id: &str) {
        *self
            .by_node
            .entry(node.to_owned())
            .or_default()
            .entry(id.to_owned())
            .or_default() += 1;
    }

    fn join(&mut self, user: &str, new_id: &str, attached: Option<&str>, node: &str) -> Joined {
        if let Some(place) = self.place(user) {
            if attached != Some(place.id.as_str()) {
                *self.presence.entry(user.to_owned()).or_default() += 1;
                self.attach_on(node, &place.id);
            }
            self.absent.remove(user);
            self.no_show.remove(user);
            return Joined::Attached(place);
        }
        if !matches!(self.status.as_str(), "pre_queue" | "live" | "paused") {
            return Joined::Refused {
                status: self.status.clone(),
            };
        }
        let seq = if self.status == "pre_queue" {
            self.pre.insert(new_id.to_owned());
            0
        } else {
            self.last_seq += 1;
            self.line.insert(self.last_seq, user.to_owned());
            self.last_seq
        };
        self.owners.insert(new_id.to_owned(), user.to_owned());
        self.attach_on(node, new_id);
        self.places
            .insert(user.to_owned(), (new_id.to_owned(), seq));
        self.presence.insert(user.to_owned(), 1);
        Joined::New(Place {
            id: new_id.to_owned(),
            seq,
            admitted_until_ms: None,
        })
    }

    fn detach(&mut self, user: &str, place: &str, deadline: u64, node: &str) {
        if let Some(counts) = self.by_node.get_mut(node) {
            if let Some(n) = counts.get_mut(place) {
                *n -= 1;
                if *n <= 0 {
                    counts.remove(place);
                }
            }
            if counts.is_empty() {
                self.by_node.remove(node);
            }
        }
        self.lose_connections(user, place, 1, deadline);
    }

    /// `n` connections attached to `place` of `user` went away: when none is left, a waiting
    /// place starts its grace period.
    fn lose_connections(&mut self, user: &str, place: &str, n: i64, deadline: u64) -> bool {
        if self.places.get(user).is_none_or(|(id, _)| id != place) {
            return false;
        }
        let count = self.presence.entry(user.to_owned()).or_default();
        *count -= n;
        if *count > 0 {
            return false;
        }
        self.presence.remove(user);
        if !self.admitted.contains_key(user) {
            self.absent.insert(user.to_owned(), deadline);
        }
        true
    }

    fn detach_node(&mut self, node: &str, deadline: u64) -> u64 {
        let Some(counts) = self.by_node.remove(node) else {
            return 0;
        };
        let mut lost = 0;
        for (place, n) in counts {
            if let Some(user) = self.owners.get(&place).cloned()
                && self.lose_connections(&user, &place, n, deadline)
            {
                lost += 1;
            }
        }
        lost
    }

    /// Ends a place, whatever its state. Returns whether there was one.
    fn drop_place(&mut self, user: &str) -> bool {
        self.presence.remove(user);
        self.absent.remove(user);
        self.admitted.remove(user);
        self.no_show.remove(user);
        self.intents.remove(user);
        let Some((id, seq)) = self.places.remove(user) else {
            return false;
        };
        if seq == 0 {
            self.pre.remove(&id);
        } else if self.line.remove(&seq).is_some() {
            self.gone.insert(seq);
        }
        self.owners.remove(&id);
        true
    }

    fn stage(&mut self, user: &str, intent: &str) -> bool {
        if !self.places.contains_key(user) || self.admitted.contains_key(user) {
            return false;
        }
        self.intents.insert(user.to_owned(), intent.to_owned());
        true
    }

    fn finish(&mut self, user: &str) -> bool {
        if !self.admitted.contains_key(user) {
            return false;
        }
        self.drop_place(user)
    }

    fn close_pre_queue(&mut self) -> Vec<String> {
        let early = matches!(self.status.as_str(), "scheduled" | "pre_queue");
        if self.reserved.is_none() {
            // Sequences 1..=k go to the pre-queue; later joiners follow them. A line that
            // went live without a pre-queue (its status set directly) reserves nothing and
            // keeps the sequences it handed out.
            let k = if early { self.pre.len() as u64 } else { 0 };
            if early {
                self.last_seq = k;
            }
            self.reserved = Some(k);
        }
        if early {
            self.status = "live".to_owned();
        }
        if self.drawn {
            return Vec::new();
        }
        let mut ids: Vec<String> = self.pre.iter().cloned().collect();
        ids.sort();
        ids
    }

    fn draw(&mut self, order: &[String]) {
        if self.drawn || self.reserved.is_none() {
            return;
        }
        for (i, id) in order.iter().enumerate() {
            let seq = i as u64 + 1;
            let user = self.owners.get(id).cloned();
            match user {
                Some(user) if self.pre.remove(id) => {
                    self.line.insert(seq, user.clone());
                    self.places.insert(user, (id.clone(), seq));
                }
                _ => {
                    self.gone.insert(seq);
                }
            }
        }
        for seq in order.len() as u64 + 1..=self.reserved.unwrap_or(0) {
            self.gone.insert(seq);
        }
        self.drawn = true;
    }

    fn admit(&mut self, max: u64, cap: u64, until: u64, show: u64) -> Vec<Admitted> {
        if self.status != "live" || self.exhausted || !self.drawn {
            return Vec::new();
        }
        let room = cap.saturating_sub(self.admitted.len() as u64);
        let mut out = Vec::new();
        for _ in 0..max.min(room) {
            let Some((seq, user)) = self.line.pop_first() else {
                break;
            };
            self.admitted.insert(user.clone(), until);
            let present = self.presence.get(&user).is_some_and(|n| *n > 0);
            if !present {
                self.no_show.insert(user.clone(), show);
            }
            self.absent.remove(&user);
            self.cursor = seq;
            self.admitted_total += 1;
            let (id, _) = self.places[&user].clone();
            let intent = self.intents.remove(&user);
            out.push(Admitted {
                user,
                place: Place {
                    id,
                    seq,
                    admitted_until_ms: Some(until),
                },
                present,
                intent,
                ordinal: self.admitted_total,
            });
        }
        self.gone = self.gone.split_off(&(self.cursor + 1));
        out
    }

    fn expire(&mut self, now: u64, limit: usize) -> Vec<(String, Ending)> {
        // Oldest deadlines first, ties by user, like the sorted sets in Redis.
        fn due(map: &HashMap<String, u64>, now: u64, limit: usize) -> Vec<String> {
            let mut due: Vec<(u64, &String)> = map
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(u, at)| (*at, u))
                .collect();
            due.sort();
            due.into_iter()
                .take(limit)
                .map(|(_, u)| u.clone())
                .collect()
        }
        let mut out = Vec::new();
        for (map, ending) in [
            (&self.absent, Ending::GraceExpired),
            (&self.no_show, Ending::NoShow),
            (&self.admitted, Ending::AdmissionEnded),
        ]
        .map(|(m, e)| (due(m, now, limit), e))
        {
            for user in map {
                // An earlier kind in this call may have ended the place already.
                if self.drop_place(&user) {
                    out.push((user, ending));
                }
            }
        }
        out
    }

    fn view(&self, upto: u64) -> LineView {
        LineView {
            status: self.status.clone(),
            cursor: self.cursor,
            admitted_total: self.admitted_total,
            exhausted: self.exhausted,
            drawn: self.drawn,
            waiting: (self.line.len() + self.pre.len()) as u64,
            active: self.admitted.len() as u64,
            last_seq: self.last_seq,
            // (A range whose start is past its end panics: nothing above the cursor is asked
            // for when `upto` is at or below it.)
            gone: if upto > self.cursor {
                let end = upto.min(self.cursor + EXACT_WINDOW);
                self.gone.range(self.cursor + 1..=end).copied().collect()
            } else {
                Vec::new()
            },
            gone_before: self.gone_before(upto),
        }
    }

    /// [`LineView::gone_before`], as the Redis script computes it (in one pass here).
    fn gone_before(&self, upto: u64) -> Vec<(u64, u64)> {
        let top = upto.min(self.last_seq);
        let after = self.cursor + EXACT_WINDOW + 1;
        let mut out = Vec::new();
        let mut gone = self.gone.range(self.cursor + 1..).peekable();
        let mut count = 0;
        let mut boundary = block_start(after) + gone_block(after);
        while boundary <= top {
            while gone.next_if(|g| **g < boundary).is_some() {
                count += 1;
            }
            out.push((boundary, count));
            boundary += gone_block(boundary);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A live, drawn line of `n` buyers `u1..=un` with sequences `1..=n`.
    fn line_of(n: u64) -> LineState {
        let mut line = LineState {
            status: "live".to_owned(),
            drawn: true,
            ..LineState::default()
        };
        for i in 1..=n {
            line.join(&format!("u{i}"), &format!("p{i}"), None, "node");
        }
        line
    }

    /// Every waiting buyer's exact number ahead: those waiting with a lower sequence.
    fn exact(line: &LineState) -> Vec<(u64, u64)> {
        line.line
            .keys()
            .enumerate()
            .map(|(i, s)| (*s, i as u64))
            .collect()
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// The buyer at this fraction of the line leaves.
        Leave(f64),
        /// This many are admitted.
        Admit(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0.0..1.0f64).prop_map(Step::Leave),
            1 => (1..600u64).prop_map(Step::Admit),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Positions from a view are never below the truth, at most a bucket's gaps above it,
        /// exact within the window, and never rise from one view to the next, whatever leaves
        /// and whatever is admitted.
        #[test]
        fn positions_never_rise_and_stay_within_a_bucket_of_the_truth(
            n in 2_500..7_000u64,
            steps in proptest::collection::vec(step(), 1..60),
        ) {
            let mut line = line_of(n);
            let mut told: HashMap<u64, u64> = HashMap::new();
            for step in steps {
                match step {
                    Step::Leave(at) => {
                        let seqs: Vec<u64> = line.line.keys().copied().collect();
                        if let Some(seq) = seqs.get((at * seqs.len() as f64) as usize) {
                            let user = line.line[seq].clone();
                            line.drop_place(&user);
                        }
                    }
                    Step::Admit(k) => {
                        line.admit(k, u64::MAX, 1, 1);
                    }
                }
                let view = line.view(n);
                for (seq, truth) in exact(&line) {
                    let ahead = view.ahead(seq).expect("a waiting place is in the line");
                    prop_assert!(ahead >= truth, "seq {seq}: {ahead} below the truth {truth}");
                    prop_assert!(ahead - truth < gone_block(seq), "seq {seq}: {ahead} vs {truth}");
                    if seq <= view.cursor + EXACT_WINDOW {
                        prop_assert_eq!(ahead, truth, "exact within the window (seq {})", seq);
                    }
                    if let Some(before) = told.insert(seq, ahead) {
                        prop_assert!(ahead <= before, "seq {seq} rose from {before} to {ahead}");
                    }
                }
                for gone in &view.gone {
                    prop_assert!(view.ahead(*gone).is_none());
                }
            }
        }
    }

    #[test]
    fn a_view_counts_the_gaps_beyond_the_window_by_bucket() {
        let mut line = line_of(6_000);
        // Gaps at 10 (in the window), 3_500 and 4_200 and 4_900 (beyond it).
        for user in ["u10", "u3500", "u4200", "u4900"] {
            line.drop_place(user);
        }
        let view = line.view(6_000);
        assert_eq!(view.gone, [10]);
        assert_eq!(
            view.gone_before,
            [(3_000, 1), (4_000, 2), (5_000, 4), (6_000, 4)]
        );
        assert_eq!(view.ahead(2_000), Some(1_998), "exact: one gap ahead");
        // Beyond the window: the gaps below the start of its bucket only.
        assert_eq!(
            view.ahead(4_500),
            Some(4_499 - 2),
            "the gap at 4,200 is not counted"
        );
        assert_eq!(view.ahead(5_100), Some(5_099 - 4));
        // A view asked for less than the whole line counts no further than it was asked.
        assert_eq!(line.view(3_000).gone_before, [(3_000, 1)]);
        assert!(line.view(2_999).gone_before.is_empty());
    }

    #[test]
    fn blocks_grow_tenfold_at_a_hundred_thousand_and_a_million() {
        assert_eq!((gone_block(99_999), block_start(99_999)), (1_000, 99_000));
        assert_eq!(
            (gone_block(100_000), block_start(100_000)),
            (10_000, 100_000)
        );
        assert_eq!(block_start(999_999), 990_000);
        assert_eq!(
            (gone_block(1_000_000), block_start(1_234_567)),
            (100_000, 1_200_000)
        );
        let mut line = line_of(130_000);
        line.drop_place("u105000");
        line.drop_place("u99500");
        let view = line.view(130_000);
        let boundaries: Vec<u64> = view.gone_before.iter().map(|(b, _)| *b).collect();
        assert_eq!(boundaries.first(), Some(&3_000));
        assert!(boundaries.contains(&99_000) && boundaries.contains(&100_000));
        assert!(boundaries.contains(&110_000) && !boundaries.contains(&101_000));
        assert_eq!(boundaries.last(), Some(&130_000));
        assert_eq!(boundaries.len(), 98 + 3);
        // The gap at 105,000 is in 107,000's block (100,000..110,000): not counted there,
        // counted for every sequence of a later block.
        assert_eq!(view.ahead(107_000), Some(106_999 - 1));
        assert_eq!(view.ahead(112_345), Some(112_344 - 2));
    }
}
