//! The booking engine: purchase commands from the WebSocket to Postgres and back.
//!
//! A command's path: the buyer's connection hands it to [`requests`], which checks it and puts
//! it on the [`queue`] ([`Booking::submit`]), answering `accepted`. The [`worker`] that holds
//! the event's lease decides it against the event's [`inventory`] in memory and commits it
//! with the rest of its batch through the [`store`], writing the result and the seat delta to
//! the outbox ([`crate::outbox`]) in the same transaction. The outbox relay publishes them on
//! `seats:{event}` and the buyer's inbox; [`live`] serves both channels' snapshots from
//! Postgres, so results and the seat map survive any loss of channel history. The buyer
//! acknowledges results ([`Booking::ack`]); until then they are delivered again with every
//! inbox snapshot.
//!
//! - [`best_available`]: the seat chooser (best block, nearest equivalent block).
//! - [`inventory`]: one event's state and the rules for each command (pure).

//! - [`store`]: loading an event and committing a batch (Postgres).
//! - [`queue`]: the command queue and event leases (`memory` or Redis Streams).
//! - [`worker`]: workers, event owners, batching and the hold sweeper.
//! - [`live`]: snapshot providers for `seats:` and `inbox:` channels.
//! - [`requests`]: how booking plugs into the hub (`command`, `ack`, who may follow `seats:`).
//!
//! Booking meets the waiting room only through [`crate::admission`] and payments only through
//! [`crate::settlement`].

mod acks;
pub mod best_available;
pub mod inventory;
pub mod live;
pub mod queue;
pub mod requests;
pub mod retention;
pub mod store;
pub mod worker;

use crate::admission::{Purchases, StagedPurchase};
use crate::auth::Identity;
use crate::hub::Refusal;
use futures_util::future::BoxFuture;
use marquee_protocol::booking::{Command, MAX_REQUEST_ID_LEN};
use marquee_protocol::{Channel, ErrorCode, text};
use queue::{CommandQueue, Envelope};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The prefix of the request ids the server gives order updates (`order:<order>:<status>`):
/// a buyer's command may not take one, or it could occupy the id an update needs.
pub const RESERVED_REQUEST_PREFIX: &str = "order:";

/// How booking workers run, in `serve` (in-process) and in `worker` (a process of its own).
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
#[command(next_help_heading = "Booking")]
pub struct Args {
    /// In-process booking workers (`serve` only; 0 leaves commands to `marquee worker`
    /// processes). Needs a database.
    #[arg(long, env = "MARQUEE_WORKERS", default_value_t = 1)]
    pub workers: usize,

    /// Most purchase commands decided and committed in one Postgres transaction.
    #[arg(long, env = "MARQUEE_BATCH_MAX", default_value_t = 1024)]
    pub batch_max: usize,

    /// How long a worker owns an event without renewing; after a worker dies, its events move
    /// to another worker within this time.
    #[arg(long, env = "MARQUEE_LEASE_TTL", default_value = "10s", value_parser = crate::clock::parse_duration)]
    pub lease_ttl: Duration,

    /// Most holds expired in one sweep.
    #[arg(long, env = "MARQUEE_SWEEP_MAX", default_value_t = 10_000)]
    pub sweep_max: usize,

    /// Fault injection for tests: abort right after the first committed batch, before
    /// acknowledging it.
    #[arg(long, env = "MARQUEE_CRASH_AFTER_COMMIT", hide = true)]
    pub crash_after_commit: bool,

    /// Fault injection for tests: abort right after the first call an owed effect makes (a
    /// payment started, a refund, a slot handed back), before marking it done.
    #[arg(long, env = "MARQUEE_CRASH_AFTER_CALL", hide = true)]
    pub crash_after_call: bool,

    /// Fault injection for tests: panic while deciding the command with this request id, as
    /// a bug in the engine would.
    #[arg(long, env = "MARQUEE_PANIC_ON_REQUEST", hide = true)]
    pub panic_on_request: Option<String>,

    /// How long after checkout a payment may still be processing: `processing` events extend
    /// an order's deadline up to this, and no further.
    #[arg(long, env = "MARQUEE_PAYMENT_CAP", default_value = "30m", value_parser = crate::clock::parse_duration)]
    pub payment_cap: Duration,

    /// How long an acknowledged result is kept (and its request id stays idempotent) after
    /// its acknowledgement.
    #[arg(long, env = "MARQUEE_RESULT_RETENTION", default_value = "7d", value_parser = crate::clock::parse_duration)]
    pub result_retention: Duration,

    /// How long a result never acknowledged is kept for its buyer's inbox.
    #[arg(long, env = "MARQUEE_UNACKNOWLEDGED_RESULT_RETENTION", default_value = "30d", value_parser = crate::clock::parse_duration)]
    pub unacknowledged_result_retention: Duration,
}

impl Args {
    /// How long results are kept ([`retention`]): pruned every ten minutes.
    pub fn retention(&self) -> retention::Retention {
        retention::Retention {
            acknowledged: self.result_retention,
            unacknowledged: self.unacknowledged_result_retention,
            every: Duration::from_secs(10 * 60),
        }
    }

    /// The worker settings these arguments describe (the composition root adds what comes
    /// from elsewhere: the admission key, the provider, the slots, the ticket key).
    pub fn settings(&self) -> worker::WorkerSettings {
        worker::WorkerSettings {
            batch_max: self.batch_max.max(1),
            lease_ttl: self.lease_ttl.max(Duration::from_millis(300)),
            sweep_max: self.sweep_max.max(1),
            crash_after_commit: self.crash_after_commit,
            crash_after_call: self.crash_after_call,
            panic_on_request: self.panic_on_request.clone(),
            payment_cap: self.payment_cap,
            ..Default::default()
        }
    }
}

/// What a hub node needs to take purchase commands and acknowledgements. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Booking {
    db: PgPool,
    queue: CommandQueue,
    /// Acknowledgements, written together.
    acks: Arc<acks::Acks>,
    /// Event id to owning tenant, to keep a buyer to their own tenant's events.
    tenants: Arc<crate::db::TenantCache>,
}

impl Booking {
    /// Takes commands onto `queue`, checking them against `db`.
    pub fn new(db: PgPool, queue: CommandQueue) -> Self {
        Self {
            acks: Arc::new(acks::Acks::new(db.clone())),
            db,
            queue,
            tenants: Arc::new(crate::db::TenantCache::new(
                "select tenant_id from event where event_id = $1",
            )),
        }
    }

    /// The system of record.
    pub fn db(&self) -> &PgPool {
        &self.db
    }

    /// The command queue.
    pub fn queue(&self) -> &CommandQueue {
        &self.queue
    }

    fn tenant_of(identity: &Identity) -> Result<Uuid, Refusal> {
        identity.tenant_id().ok_or_else(|| {
            Refusal::new(
                ErrorCode::Forbidden,
                "purchase commands need a token with a tenant",
            )
        })
    }

    /// The tenant that owns `event`, if it exists.
    pub async fn event_tenant(&self, event: Uuid) -> Result<Option<Uuid>, Refusal> {
        self.tenants.get(&self.db, event).await.map_err(|e| {
            tracing::warn!(error = %e, "event lookup failed");
            Refusal::new(
                ErrorCode::Unavailable,
                "the booking service is unavailable; retry",
            )
        })
    }

    /// Checks a command and queues it. Nothing here changes inventory: a refusal means the
    /// command never reached a worker.
    pub async fn submit(
        &self,
        identity: &Identity,
        request_id: String,
        command: Command,
        admission: Option<String>,
    ) -> Result<(), Refusal> {
        let tenant = Self::tenant_of(identity)?;
        if request_id.starts_with(RESERVED_REQUEST_PREFIX) {
            return Err(Refusal::new(
                ErrorCode::BadRequest,
                format!("request ids starting with {RESERVED_REQUEST_PREFIX:?} are the server's"),
            ));
        }
        text::required("request_id", &request_id, MAX_REQUEST_ID_LEN).map_err(|e| bad_text(&e))?;
        check_ids(&command)?;
        if let Some(token) = &admission {
            text::required("admission", token, MAX_ADMISSION_LEN).map_err(|e| bad_text(&e))?;
        }
        let not_found = || Refusal::new(ErrorCode::NotFound, "no such event");
        let event = Uuid::parse_str(command.event()).map_err(|_| not_found())?;
        if self.event_tenant(event).await? != Some(tenant) {
            return Err(not_found());
        }
        let inbox = identity
            .inbox()
            .ok_or_else(|| Refusal::new(ErrorCode::Forbidden, "this user has no inbox"))?;
        let envelope = Envelope {
            tenant,
            user: identity.user.clone(),
            inbox: inbox.to_string(),
            request_id,
            command,
            admission,
            accepted_at_ms: crate::clock::now_ms(),
        };
        self.queue
            .enqueue(event, &envelope)
            .await
            .map_err(|e| match e {
                queue::QueueError::Full => Refusal::new(
                    ErrorCode::OverCapacity,
                    "this event has too many commands waiting; retry in a moment",
                ),
                e => {
                    tracing::warn!(error = %e, "enqueue failed");
                    Refusal::new(
                        ErrorCode::Unavailable,
                        "the command queue is unavailable; retry",
                    )
                }
            })?;
        Ok(())
    }

    /// Marks results as received, so they are not delivered again, once the next write of
    /// acknowledgements has carried them ([`acks`]). Unknown ids are ignored
    /// (acknowledging twice is harmless).
    pub async fn ack(&self, identity: &Identity, request_ids: &[String]) -> Result<(), Refusal> {
        let tenant = Self::tenant_of(identity)?;
        if request_ids.len() > 1000 {
            return Err(Refusal::new(
                ErrorCode::BadRequest,
                "at most 1000 request ids per ack",
            ));
        }
        for (i, id) in request_ids.iter().enumerate() {
            text::required(&format!("request_ids[{i}]"), id, MAX_REQUEST_ID_LEN)
                .map_err(|e| bad_text(&e))?;
        }
        self.acks
            .ack(tenant, &identity.user, request_ids)
            .await
            .map_err(|_| {
                // Logged once per write by the writer.
                Refusal::new(
                    ErrorCode::Unavailable,
                    "the booking service is unavailable; retry",
                )
            })
    }
}

/// Longest admission token a command may carry, in bytes (a real one is about 300).
pub const MAX_ADMISSION_LEN: usize = 1024;

/// The ids a command names besides its event must be UUIDs. A malformed one is refused
/// before the command is queued (so nothing a client typed reaches the queue unchecked), with
/// the code a well-formed id that names nothing gets from the worker: to a caller, a malformed
/// id is just an id that does not exist (the catalog's rule, and the event's just above).
fn check_ids(command: &Command) -> Result<(), Refusal> {
    let (field, id, code) = match command {
        Command::HoldBestAvailable { category, .. } => {
            ("category", category, ErrorCode::UnknownCategory)
        }
        Command::HoldGa { ticket_type, .. } => {
            ("ticket_type", ticket_type, ErrorCode::UnknownTicketType)
        }
        Command::Release { hold, .. } | Command::Checkout { hold, .. } => {
            ("hold", hold, ErrorCode::HoldNotFound)
        }
        // Seats are numbers; a command of a newer kind is the worker's to refuse.
        _ => return Ok(()),
    };
    match Uuid::parse_str(id) {
        Ok(_) => Ok(()),
        Err(_) => Err(Refusal::new(code, format!("no such {field}: not a UUID"))),
    }
}

/// A client text refused by [`marquee_protocol::text`]: `bad_request` naming the field.
fn bad_text(e: &text::TextError) -> Refusal {
    Refusal::new(ErrorCode::BadRequest, e.to_string())
}

impl Purchases for Booking {
    fn submit(&self, purchase: StagedPurchase) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let inbox = Channel::inbox(Some(&purchase.tenant.to_string()), &purchase.user)
                .map_err(|e| e.to_string())?;
            let envelope = Envelope {
                tenant: purchase.tenant,
                user: purchase.user,
                inbox: inbox.to_string(),
                request_id: purchase.request_id,
                command: purchase.command,
                admission: Some(purchase.admission),
                accepted_at_ms: crate::clock::now_ms(),
            };
            self.queue
                .enqueue(purchase.event, &envelope)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}
