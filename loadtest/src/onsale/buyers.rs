//! The buyers of the onsale scenario, in a client process of their own (`marquee-loadtest
//! onsale-buyers`): each buyer is one SDK client that joins the waiting room, waits to be
//! admitted, holds, checks out and waits for the payment's outcome, and records what it saw.
//! The process prints the records as one JSON array on stdout when every buyer is done.

use marquee_client::{Client, ClientConfig, Event, Events, TokenProvider};
use marquee_protocol::booking::{Command, InboxMessage, OrderStatus, Outcome};
use marquee_protocol::queue::{PlaceState, QueueStatus};
use marquee_server::auth::{Claims, sign_hs256};
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// What one client process does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuyerSpec {
    /// Hub nodes (`ws://…/ws`); buyer `n` starts at `urls[n % len]` and moves on when a node
    /// goes away.
    pub urls: Vec<String>,
    /// HS256 secret the nodes trust.
    pub secret: String,
    /// The tenant, event and onsale.
    pub tenant: Uuid,
    pub event: Uuid,
    pub onsale: Uuid,
    /// Price categories (best-available holds pick one).
    pub categories: Vec<Uuid>,
    /// The standing ticket type.
    pub ga: Uuid,
    /// Seat indexes run from 0 to this (explicit holds pick among them).
    pub seats: u32,
    /// Buyers `first..first + count`.
    pub first: usize,
    pub count: usize,
    /// When the scenario started and when the onsale starts (unix ms).
    pub t0_ms: u64,
    pub start_ms: u64,
    /// Joiners after the start arrive within this many ms of it.
    pub late_window_ms: u64,
    /// Shares of buyers: joining before the start, holding explicit seats, holding GA,
    /// abandoning their hold, closing the tab and coming back, retrying a command.
    pub early: f64,
    pub explicit: f64,
    pub ga_share: f64,
    pub abandon: f64,
    pub refresh: f64,
    pub retry: f64,
    /// Seats (or tickets) per hold, 1 to this.
    pub per_buyer: u32,
    /// Every buyer gives up at this instant (unix ms).
    pub deadline_ms: u64,
    /// The nodes' grace period: a buyer who closed the tab and is answered again within it
    /// must find its place.
    pub grace_ms: u64,
    /// Randomness.
    pub seed: u64,
}

/// What one buyer saw (times in unix ms).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BuyerRecord {
    pub user: String,
    /// Whether it joined before the start.
    pub early: bool,
    pub join_sent: Option<u64>,
    pub join_acked: Option<u64>,
    /// Its place id.
    pub place: Option<String>,
    /// Whether its join was answered with a pre-queue place (undrawn).
    pub joined_pre_queue: bool,
    pub admitted: Option<u64>,
    /// `best`, `explicit` or `ga`.
    pub hold_kind: Option<String>,
    /// Its last hold's request id, when it was sent and when its result arrived.
    pub hold_request: Option<String>,
    pub hold_sent: Option<u64>,
    pub hold_result: Option<u64>,
    /// `held`, or the rejection code.
    pub hold_outcome: Option<String>,
    pub checkout_sent: Option<u64>,
    pub order: Option<String>,
    /// The order's last status heard, and when.
    pub order_status: Option<String>,
    pub order_final_at: Option<u64>,
    /// Commands it sent (request ids), and how many results each got.
    pub sent: Vec<String>,
    /// Commands a server answered `accepted` (queued): each owes exactly one result.
    #[serde(default)]
    pub accepted: Vec<String>,
    pub results: HashMap<String, u32>,
    /// Commands still without a result when the buyer stopped at the deadline: the check
    /// looks for their stored results (decided late, or never decided) instead of counting
    /// them lost outright.
    pub unanswered_at_deadline: Vec<String>,
    /// Holds it sent (a refused one is followed by a best-available one, up to `HOLD_TRIES`).
    pub hold_tries: u32,
    /// Request ids it sent twice (the second with a new client).
    pub retried: Vec<String>,
    /// Positions that went up without a reason code.
    pub position_regressions: u32,
    /// Reconnects the SDK made, and why each connection was lost (close code and reason).
    pub reconnects: u32,
    pub disconnects: std::collections::BTreeMap<String, u32>,
    /// Sessions the SDK opened (welcomes), its own first included: a reconnect attempt that
    /// failed counts in `reconnects` but not here.
    pub connects: u32,
    /// What went wrong on the client side.
    pub errors: Vec<String>,
    /// It closed the tab and was answered again only after the grace period (reconnecting
    /// took that long): its place may have ended, as it should.
    pub came_back_after_grace: bool,
    /// How its wait ended when it never held: `ended`, `closed`, `sold_out` (it left after
    /// waiting 15 s for seats to come back) or `deadline`.
    pub left: Option<String>,
}

/// How long a buyer told the onsale is sold out waits for seats to come back before leaving.
const GIVE_UP_AFTER_SOLD_OUT_MS: u64 = 15_000;

/// Holds a buyer sends before giving up: one refused (seats taken, a category sold out) is
/// followed by a best-available hold in another category, as a person would try; one who gives
/// up leaves the queue, so the admission slot goes to the next buyer at once.
const HOLD_TRIES: u32 = 3;

fn now_ms() -> u64 {
    marquee_server::clock::now_ms()
}

async fn sleep_until_ms(at: u64) {
    let now = now_ms();
    if at > now {
        tokio::time::sleep(Duration::from_millis(at - now)).await;
    }
}

/// Runs every buyer of `spec` and returns their records.
/// What a buyers process prints when its buyers are done.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct BuyersOutput {
    pub records: Vec<BuyerRecord>,
    pub lag: Lag,
}

/// How far behind the process's runtime fell ([`watch_lag`]).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Lag {
    /// The longest a timer due every 100 ms fired late, in ms.
    pub worst_ms: u64,
    /// Seconds in which it fell 1 s or more behind (counted per 5 s window).
    pub behind_s: u64,
}

pub async fn run(spec: BuyerSpec) -> BuyersOutput {
    let lag = Arc::new(Mutex::new(Lag::default()));
    let watch = tokio::spawn(watch_lag(spec.first, lag.clone()));
    let mut tasks = tokio::task::JoinSet::new();
    for n in spec.first..spec.first + spec.count {
        let spec = spec.clone();
        tasks.spawn(async move { buyer(&spec, n).await });
    }
    let mut records = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(record) => records.push(record),
            Err(e) => records.push(BuyerRecord {
                errors: vec![format!("buyer task failed: {e}")],
                ..BuyerRecord::default()
            }),
        }
    }
    watch.abort();
    let lag = *lag.lock().expect("lag lock");
    BuyersOutput { records, lag }
}

/// Says on stderr when this process's runtime fell behind: a timer due every 100 ms that fires
/// a second or more late means every client here answered its pings and read its frames that
/// late too. A load generator that falls behind is measuring itself, and a server that closes
/// its connections as silent (`4004`) may be right about them.
async fn watch_lag(first: usize, lag: Arc<Mutex<Lag>>) {
    let step = Duration::from_millis(100);
    let mut worst = Duration::ZERO;
    let mut window = std::time::Instant::now();
    loop {
        let before = std::time::Instant::now();
        tokio::time::sleep(step).await;
        worst = worst.max(before.elapsed().saturating_sub(step));
        if window.elapsed() >= Duration::from_secs(5) {
            let mut total = lag.lock().expect("lag lock");
            total.worst_ms = total.worst_ms.max(worst.as_millis() as u64);
            if worst >= Duration::from_secs(1) {
                total.behind_s += window.elapsed().as_secs();
                eprintln!(
                    "buyers from {first}: the runtime fell {:.1} s behind in the last 5 s",
                    worst.as_secs_f64()
                );
            }
            worst = Duration::ZERO;
            window = std::time::Instant::now();
        }
    }
}

fn token(spec: &BuyerSpec, user: &str) -> String {
    sign_hs256(
        &spec.secret,
        &Claims {
            sub: user.to_owned(),
            tenant: Some(spec.tenant.to_string()),
            roles: Vec::new(),
            exp: marquee_server::clock::now_secs() + 3600,
            nbf: None,
            iss: None,
            aud: None,
            sid: None,
        },
    )
}

async fn connect(spec: &BuyerSpec, n: usize, user: &str) -> Result<(Client, Events), String> {
    // Buyer `n` starts on node `n % nodes`; the others follow in an order of its own, so a
    // dead node's buyers spread over the rest instead of all moving to its neighbour.
    let mut urls = spec.urls.clone();
    let turn = n % urls.len().max(1);
    urls.rotate_left(turn);
    if urls.len() > 2 {
        use rand::seq::SliceRandom as _;
        let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
        urls[1..].shuffle(&mut rng);
    }
    let mut config = ClientConfig::with_urls(urls);
    // Each buyer connects from a loopback address of its own (127.1.0.0/16 and up): from
    // 127.0.0.1 alone, 100,000 buyers and the connections their reconnects leave lingering
    // exhausted the ports towards each node, and the kernel's search for a free one took half
    // of every buyers process's CPU after a node was killed (perf: `__inet_check_established`),
    // stalling its clients for up to 19 s.
    config.local_address = Some(std::net::IpAddr::V4(std::net::Ipv4Addr::from(
        0x7f01_0000_u32 + n as u32,
    )));
    config.command_resend = Duration::from_secs(5);
    config.command_timeout = Duration::from_millis(spec.deadline_ms.saturating_sub(now_ms()));
    // Reconnects keep the SDK's own backoff (250 ms doubling to 20 s): with it capped at 2 s,
    // the 14,000 buyers of a node killed at full size retried so fast that the other nodes,
    // their Redis and Postgres could not welcome them, and every failed welcome made another
    // retry.
    // A first connection refused (every node down or unavailable for a moment, as during a
    // database restart) is tried again a few times, as a page would.
    // A node busy greeting says when to come back; that is not counted as a try.
    let mut tries = 0;
    loop {
        match Client::connect(config.clone(), TokenProvider::fixed(token(spec, user))).await {
            Ok(connected) => return Ok(connected),
            Err(marquee_client::ClientError::OverCapacity {
                retry_after: Some(after),
            }) if now_ms() < spec.deadline_ms => tokio::time::sleep(after).await,
            Err(e) => {
                tries += 1;
                if tries >= 5 || now_ms() >= spec.deadline_ms {
                    return Err(format!("connect: {e} (after {tries} tries)"));
                }
                tokio::time::sleep(Duration::from_millis(500 * tries)).await;
            }
        }
    }
}

/// Follows one buyer's client events: statuses, results, order updates.
#[derive(Default)]
struct Seen {
    status: Option<QueueStatus>,
    /// The last position told, and of which place. A position belongs to its place: a place
    /// that ended (told `ended` with its reason) and a new one taken by joining again start
    /// over at the back, which is no rise of the old one.
    last_position: Option<u64>,
    last_place: Option<String>,
    /// When the onsale starts (unix ms).
    start_ms: u64,
    /// The last few things seen, for the report of a position that rose.
    trail: VecDeque<String>,
}

impl Seen {
    fn note(&mut self, what: &str) {
        if self.trail.len() == 6 {
            self.trail.pop_front();
        }
        let at = now_ms() as i64 - self.start_ms as i64;
        self.trail.push_back(format!("{at} ms: {what}"));
    }
}

async fn buyer(spec: &BuyerSpec, n: usize) -> BuyerRecord {
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed ^ (n as u64).wrapping_mul(0x9E37));
    let user = format!("buyer-{n}");
    let mut record = BuyerRecord {
        user: user.clone(),
        early: rng.random_bool(spec.early.clamp(0.0, 1.0)),
        ..BuyerRecord::default()
    };
    let join_at = if record.early {
        spec.t0_ms + rng.random_range(0..spec.start_ms.saturating_sub(spec.t0_ms).max(1))
    } else {
        spec.start_ms + rng.random_range(0..spec.late_window_ms.max(1))
    };
    sleep_until_ms(join_at).await;
    let left = Duration::from_millis((spec.deadline_ms + OVERRUN_MS).saturating_sub(now_ms()));
    match tokio::time::timeout(left, shop(spec, n, &user, &mut rng, &mut record)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => record.errors.push(e),
        Err(_) => {
            // Still busy well after the deadline (a join or a connection being tried again):
            // stopped, and its commands without a result are looked up in Postgres like
            // those unanswered at the deadline.
            let open: Vec<String> = record
                .sent
                .iter()
                .filter(|id| {
                    !record.results.contains_key(*id) && !record.unanswered_at_deadline.contains(id)
                })
                .cloned()
                .collect();
            record.unanswered_at_deadline.extend(open);
            record.left.get_or_insert_with(|| "deadline".into());
        }
    }
    record
}

/// How long after the deadline a buyer still busy is stopped: the run waits a minute for its
/// buyers processes, and joins and connections tried again (10 s each) would outlast it.
const OVERRUN_MS: u64 = 15_000;

/// Takes what is left of a client's events (results delivered while the buyer was not
/// looking are counted), then closes it.
async fn finish(client: Client, mut events: Events, record: &mut BuyerRecord, seen: &mut Seen) {
    // Until 300 ms pass without one, for 2 s at most (a waiting place keeps hearing of its
    // position).
    let until = now_ms() + 2000;
    while now_ms() < until
        && next_event(&mut events, (now_ms() + 300).min(until), record, seen)
            .await
            .is_some()
    {}
    client.close().await;
}

/// Waits for the next status (or order update), up to the deadline.
async fn next_event(
    events: &mut Events,
    deadline_ms: u64,
    record: &mut BuyerRecord,
    seen: &mut Seen,
) -> Option<Event> {
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms()));
    let event = tokio::time::timeout(left, events.next()).await.ok()??;
    match &event {
        Event::QueueStatus(status) => {
            if seen.last_place.as_deref() != Some(status.place.as_str()) {
                seen.last_place = Some(status.place.clone());
                seen.last_position = None;
            }
            if let (Some(before), Some(now)) = (seen.last_position, status.position)
                && now > before
                && status.reason.is_none()
            {
                record.position_regressions += 1;
                record.errors.push(format!(
                    "position rose from {before} to {now} without a reason ({:?}, after {} reconnects, {} ms after the start, place {} was {:?}; before: {:?})",
                    status.state,
                    record.reconnects,
                    now_ms() as i64 - seen.start_ms as i64,
                    status.place,
                    record.place,
                    seen.trail,
                ));
            }
            seen.note(&format!("status {:?} {:?}", status.state, status.position));
            seen.last_position = status.position.or(seen.last_position);
            seen.status = Some(status.clone());
        }
        Event::Accepted { request_id } => record.accepted.push(request_id.clone()),
        Event::Result(result) => {
            *record.results.entry(result.request_id.clone()).or_default() += 1;
        }
        Event::Disconnected { code, reason, .. } => {
            record.reconnects += 1;
            let why: String = reason.chars().take(48).collect();
            let key = format!("{} {why}", code.map_or("-".to_owned(), |c| c.to_string()));
            *record.disconnects.entry(key).or_default() += 1;
            seen.note("disconnected");
        }
        Event::Connected { .. } => {
            record.connects += 1;
            seen.note("connected");
        }
        _ => {}
    }
    Some(event)
}

/// Sends `command` and waits for its result. `None` when the buyer's deadline came first: the
/// request id is noted in `unanswered_at_deadline`, for the check to look up.
async fn send(
    client: &Client,
    record: &mut BuyerRecord,
    request_id: &str,
    command: Command,
    admission: &str,
) -> Result<Option<marquee_protocol::booking::CommandResult>, String> {
    match client
        .command(request_id.to_owned(), command, Some(admission.to_owned()))
        .await
    {
        Ok(result) => Ok(Some(result)),
        Err(marquee_client::ClientError::Timeout) => {
            record.unanswered_at_deadline.push(request_id.to_owned());
            Ok(None)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The hold a buyer sends on its `attempt`-th try (from 0): most by best-available, some
/// explicit seats, some standing; a try after a refusal is best-available in any category.
fn pick_hold(
    spec: &BuyerSpec,
    rng: &mut rand::rngs::StdRng,
    attempt: u32,
    quantity: u32,
) -> (&'static str, Command) {
    let event = spec.event.to_string();
    let roll: f64 = if attempt == 0 { rng.random() } else { 1.0 };
    if roll < spec.ga_share {
        (
            "ga",
            Command::HoldGa {
                event,
                ticket_type: spec.ga.to_string(),
                quantity,
            },
        )
    } else if roll < spec.ga_share + spec.explicit {
        let first = rng.random_range(0..spec.seats.saturating_sub(quantity).max(1));
        (
            "explicit",
            Command::HoldSeats {
                event,
                seats: (first..first + quantity).collect(),
            },
        )
    } else {
        let category = spec.categories[rng.random_range(0..spec.categories.len().max(1))];
        (
            "best",
            Command::HoldBestAvailable {
                event,
                category: category.to_string(),
                quantity,
            },
        )
    }
}

/// Joins the queue, and again after a join lost with its node or left unanswered (a page
/// tries again too): the status and how many joins it took.
async fn join(
    client: &Client,
    onsale: &str,
) -> Result<(QueueStatus, u32), marquee_client::ClientError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match client.join_queue(onsale).await {
            Ok(joined) => return Ok((joined, tries)),
            Err(
                marquee_client::ClientError::Disconnected | marquee_client::ClientError::Timeout,
            ) if tries < 5 => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(e) => return Err(e),
        }
    }
}

async fn shop(
    spec: &BuyerSpec,
    n: usize,
    user: &str,
    rng: &mut rand::rngs::StdRng,
    record: &mut BuyerRecord,
) -> Result<(), String> {
    let (mut client, mut events) = connect(spec, n, user).await?;
    let onsale = spec.onsale.to_string();
    let event = spec.event.to_string();
    record.join_sent = Some(now_ms());
    let (joined, tries) = join(&client, &onsale)
        .await
        .map_err(|e| format!("join: {e}"))?;
    record.join_acked = Some(now_ms());
    record.place = Some(joined.place.clone());
    record.joined_pre_queue = joined.state == PlaceState::PreQueue;
    // The position is followed from the events alone: the join's answer is one of them, and
    // a status pushed just before it, still unread, is older.
    let mut seen = Seen {
        start_ms: spec.start_ms,
        ..Seen::default()
    };
    seen.note(&format!(
        "joined {:?} {:?} after {tries} tries",
        joined.state, joined.position
    ));
    seen.status = Some(joined);
    // Some close the tab while waiting and come back (a new client, the same account).
    if rng.random_bool(spec.refresh.clamp(0.0, 1.0)) {
        client.close().await;
        let closed_at = now_ms();
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1500))).await;
        (client, events) = connect(spec, n + 1, user).await?;
        let (again, _) = join(&client, &onsale)
            .await
            .map_err(|e| format!("join again: {e}"))?;
        let within_grace = now_ms().saturating_sub(closed_at) < spec.grace_ms;
        record.came_back_after_grace = !within_grace;
        if within_grace && Some(&again.place) != record.place.as_ref() {
            record
                .errors
                .push("came back within the grace period to another place".into());
        }
        seen.note(&format!(
            "joined again {:?} {:?}",
            again.state, again.position
        ));
        seen.status = Some(again);
    }
    // Wait to be admitted; a buyer told nothing is left gives up after a while.
    let mut sold_out_since: Option<u64> = None;
    let admission = loop {
        if let Some(status) = &seen.status {
            match status.state {
                PlaceState::Admitted => {
                    if let Some(grant) = &status.admission {
                        record.admitted = Some(now_ms());
                        break grant.token.clone();
                    }
                }
                PlaceState::Ended | PlaceState::Closed => {
                    record.left = Some(format!("{:?}", status.state).to_lowercase());
                    finish(client, events, record, &mut seen).await;
                    return Ok(());
                }
                PlaceState::SoldOut => {
                    let since = *sold_out_since.get_or_insert_with(now_ms);
                    if now_ms() > since + GIVE_UP_AFTER_SOLD_OUT_MS {
                        record.left = Some("sold_out".into());
                        let _ = client.leave_queue(&onsale).await;
                        finish(client, events, record, &mut seen).await;
                        return Ok(());
                    }
                }
                _ => sold_out_since = None,
            }
        }
        // Wake at least once a second (to give up on a sold-out onsale in time).
        let until = spec.deadline_ms.min(now_ms() + 1000);
        if next_event(&mut events, until, record, &mut seen)
            .await
            .is_none()
            && now_ms() >= spec.deadline_ms
        {
            record.left = Some("deadline".into());
            finish(client, events, record, &mut seen).await;
            return Ok(());
        }
    };
    // Hold, trying again after a refusal; a buyer who gets nothing leaves the queue.
    let quantity = rng.random_range(1..=spec.per_buyer.max(1));
    let (hold_id, command, hold) = loop {
        let (kind, command) = pick_hold(spec, rng, record.hold_tries, quantity);
        record.hold_tries += 1;
        record.hold_kind = Some(kind.into());
        let hold_id = Client::new_request_id();
        record.sent.push(hold_id.clone());
        record.hold_request = Some(hold_id.clone());
        record.hold_sent = Some(now_ms());
        let held = match send(&client, record, &hold_id, command.clone(), &admission).await {
            Ok(Some(held)) => held,
            Ok(None) => {
                finish(client, events, record, &mut seen).await;
                return Ok(());
            }
            // What was delivered before the error is still counted.
            Err(e) => {
                finish(client, events, record, &mut seen).await;
                return Err(format!("hold: {e}"));
            }
        };
        record.hold_result = Some(now_ms());
        match held.outcome {
            Outcome::Held { hold, .. } => {
                record.hold_outcome = Some("held".into());
                break (hold_id, command, hold);
            }
            Outcome::Rejected { code, .. } => {
                record.hold_outcome = Some(code.as_str().into());
                if record.hold_tries >= HOLD_TRIES || now_ms() >= spec.deadline_ms {
                    let _ = client.leave_queue(&onsale).await;
                    finish(client, events, record, &mut seen).await;
                    return Ok(());
                }
            }
            other => {
                finish(client, events, record, &mut seen).await;
                return Err(format!("hold answered {other:?}"));
            }
        }
    };
    // Some send the same command again, from a second tab (a client of its own): it must
    // take no second effect and answer the first result.
    if rng.random_bool(spec.retry.clamp(0.0, 1.0)) {
        // A tab that cannot connect (the deadline came, the nodes are busy) retries nothing;
        // the buyer goes on with its first.
        match connect(spec, n + 1, user).await {
            Ok((tab, _tab_events)) => {
                let again = tab
                    .command(hold_id.clone(), command, Some(admission.clone()))
                    .await;
                record.retried.push(hold_id.clone());
                match again.map(|r| r.outcome) {
                    Ok(Outcome::Held { hold: ref h, .. }) if *h == hold => {}
                    // The deadline came first: the tab's answer is not one of the buyer's results.
                    Err(marquee_client::ClientError::Timeout) => {}
                    other => record
                        .errors
                        .push(format!("a retried hold answered otherwise: {other:?}")),
                }
                tab.close().await;
            }
            Err(e) => record.errors.push(format!("second tab: {e}")),
        }
    }
    if rng.random_bool(spec.abandon.clamp(0.0, 1.0)) {
        // Walks away: the hold expires, the slot comes back when the admission ends.
        finish(client, events, record, &mut seen).await;
        return Ok(());
    }
    let checkout_id = Client::new_request_id();
    record.sent.push(checkout_id.clone());
    record.checkout_sent = Some(now_ms());
    let checkout = Command::Checkout {
        event: event.clone(),
        hold,
    };
    let out = match send(&client, record, &checkout_id, checkout, &admission).await {
        Ok(Some(out)) => out,
        Ok(None) => {
            finish(client, events, record, &mut seen).await;
            return Ok(());
        }
        Err(e) => {
            finish(client, events, record, &mut seen).await;
            return Err(format!("checkout: {e}"));
        }
    };
    let order = match out.outcome {
        Outcome::CheckedOut { order, .. } => order,
        other => {
            record.order_status = Some(format!("{other:?}"));
            finish(client, events, record, &mut seen).await;
            return Ok(());
        }
    };
    record.order = Some(order.clone());
    record.order_status = Some("pending_payment".into());
    // The payment's outcome arrives on the inbox as an order update.
    while let Some(event) = next_event(&mut events, spec.deadline_ms, record, &mut seen).await {
        if let Event::Publication(p) = event
            && p.channel.starts_with("inbox:")
            && let Ok(InboxMessage::Order(update)) = serde_json::from_value(p.data)
            && update.order == order
            && update.status != OrderStatus::PendingPayment
        {
            record.order_status =
                Some(marquee_server::booking::store::order_status(update.status).into());
            record.order_final_at = Some(now_ms());
            break;
        }
    }
    finish(client, events, record, &mut seen).await;
    Ok(())
}
