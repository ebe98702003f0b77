//! What a booking worker is and how it behaves.

use super::super::queue::CommandQueue;
use crate::admission::{AdmissionKey, Slots};
use crate::settlement::PaymentProvider;
use crate::ticket_code::TicketKey;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

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
    /// Fault injection for tests: abort the process right after the first call an effect
    /// makes (a payment started, a refund, a slot handed back), before marking it done.
    pub crash_after_call: bool,
    /// Fault injection for tests: panic while deciding the command with this request id.
    pub panic_on_request: Option<String>,
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
            crash_after_call: false,
            panic_on_request: None,
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
    /// Wakes this worker's effect relay: an owner committed effects.
    pub effects_due: Arc<tokio::sync::Notify>,
}

/// Unix time in milliseconds, as the inventory counts it.
pub(super) fn now_ms() -> i64 {
    crate::clock::now_ms() as i64
}
