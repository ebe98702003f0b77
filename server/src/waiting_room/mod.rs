//! The virtual waiting room: fair, verifiable admission to high-demand onsales.
//!
//! A buyer joins an onsale's queue over the WebSocket and gets a place; the node it is
//! connected to pushes the place's live status; an admission controller somewhere in the
//! cluster admits places in order at the onsale's rate and the admitted buyer receives a
//! signed admission that the booking workers check on every purchase command.
//!
//! - [`line`](mod@line): every onsale's places (join, attach, grace, draw, admit, expire), in memory or
//!   in Redis ([`line::redis`]), with positions computed from one view per tick.
//! - [`room`]: a node's side: `queue.join` / `queue.leave` and the statuses pushed to its
//!   buyers.
//! - [`requests`]: how the room plugs into the hub (requests, channel policies, close hook).
//! - [`controller`]: the onsale's schedule, admission at a smooth rate under the active cap,
//!   expiry, sold-out detection and the counts on `queue:{onsale}`.
//! - [`shuffle`]: the verifiable pre-queue order.
//! - [`http`]: the public draw record.
//! - [`joins`]: the durable record of joins, for the sales funnel.
//!
//! It meets booking only through [`crate::admission`]: admission tokens, the purchases staged
//! while waiting, and slots handed back. `docs/waiting-room.md` is the contract.

pub mod controller;
pub mod http;
pub mod joins;
pub mod line;
pub mod requests;
pub mod room;
pub mod shuffle;

pub use room::WaitingRoom;

use futures_util::future::BoxFuture;
use std::time::Duration;
use uuid::Uuid;

/// The waiting room's durations and limits.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
#[command(next_help_heading = "Waiting room")]
pub struct Args {
    /// How long a buyer's place is kept after their last connection closes.
    #[arg(long, env = "MARQUEE_QUEUE_GRACE", default_value = "2m", value_parser = crate::clock::parse_duration)]
    pub queue_grace: Duration,

    /// How long an admission lasts (the shopping window, and the admission token's lifetime).
    #[arg(long, env = "MARQUEE_ADMISSION_TTL", default_value = "10m", value_parser = crate::clock::parse_duration)]
    pub admission_ttl: Duration,

    /// How long a buyer admitted while away has to come back before the slot goes to the next.
    #[arg(long, env = "MARQUEE_SHOW_WINDOW", default_value = "30s", value_parser = crate::clock::parse_duration)]
    pub show_window: Duration,

    /// `queue.join` requests per minute allowed per account (on each node).
    #[arg(long, env = "MARQUEE_QUEUE_JOINS_PER_ACCOUNT", default_value_t = 30)]
    pub queue_joins_per_account: u32,

    /// `queue.join` requests per minute allowed per client IP address (on each node; many
    /// buyers may share one address behind a NAT, so this is far above the per-account rate).
    #[arg(long, env = "MARQUEE_QUEUE_JOINS_PER_IP", default_value_t = 600)]
    pub queue_joins_per_ip: u32,

    /// Most onsale queues one account may wait in at once.
    #[arg(long, env = "MARQUEE_QUEUES_PER_ACCOUNT", default_value_t = 3)]
    pub queues_per_account: usize,
}

impl Args {
    /// The abuse limits these arguments describe.
    pub fn limits(&self) -> room::JoinLimits {
        room::JoinLimits::new(
            self.queue_joins_per_account,
            self.queue_joins_per_ip,
            self.queues_per_account,
        )
    }

    /// The timing these arguments describe.
    pub fn timing(&self) -> line::Timing {
        line::Timing {
            grace: self.queue_grace,
            admission_ttl: self.admission_ttl,
            show_window: self.show_window,
        }
    }
}

impl crate::admission::Slots for line::Line {
    fn finish<'a>(&'a self, onsale: Uuid, user: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            line::Line::finish(self, onsale, user)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    fn is_admitted<'a>(
        &'a self,
        onsale: Uuid,
        user: &'a str,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let place = self.place(onsale, user).await.map_err(|e| e.to_string())?;
            Ok(place.is_some_and(|p| p.admitted_until_ms.is_some()))
        })
    }
}
