//! Tenant walls: who may follow a channel named after an event or an onsale.
//!
//! Every channel but a buyer's inbox is named after a catalog row: `seats:{event}`,
//! `gate:{event}`, `queue:{onsale}`, `admin:{onsale}`. Before the hub creates anything for such
//! a channel (a stream in the engine, a subscription), the domain that owns the channel asks
//! [`Walls`] whose row it names and whether the public may see it:
//!
//! - [`Public`] (`seats:`, `queue:`): the row must exist; a published event (or an onsale of
//!   one) is open to everyone signed in, as the public catalog is; a draft or cancelled one only
//!   to its own tenant's admins. Anything else is `not_found`, the same answer as for a made-up
//!   id, so a name reveals nothing.
//! - [`Staff`] (`admin:`, `gate:`): the role, and the caller's tenant must own the row;
//!   otherwise `forbidden`.
//!
//! A node without a database cannot look rows up: it follows [`Unchecked`] for staff channels
//! (refused) and lets public channels through, whose engine state for a name nobody publishes on
//! is short-lived (`engine`).
//!
//! Answers are cached per node for [`TTL`], so a crowd subscribing to one event costs one query
//! per node and TTL; the cache is bounded ([`MAX_CACHED`]) and starts over when full.

use crate::auth::{Identity, Role};
use crate::hub::{PublishPolicy, Refusal, SubscribePolicy};
use futures_util::future::BoxFuture;
use marquee_protocol::{Channel, ChannelKind, ErrorCode};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long a looked-up owner is trusted: a publish or a cancel shows within this.
pub const TTL: Duration = Duration::from_secs(5);
/// Most rows remembered per kind.
pub const MAX_CACHED: usize = 10_000;

/// The statuses of an event the public sees (the public catalog's).
const VISIBLE: &str = "('published', 'on_sale', 'sold_out')";

/// What a channel's row is named for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    /// An event (`seats:`, `gate:`).
    Event,
    /// An onsale (`queue:`, `admin:`).
    Onsale,
}

/// Who owns a row and whether the public may see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// The owning tenant.
    pub tenant: Uuid,
    /// Whether the row's event is published (or on sale, or sold out).
    pub visible: bool,
}

/// Looks up who owns events and onsales, cached.
#[derive(Debug)]
pub struct Walls {
    db: PgPool,
    events: Cache,
    onsales: Cache,
}

type Cache = Mutex<HashMap<Uuid, (Instant, Option<Owner>)>>;

impl Walls {
    /// Walls looking rows up in `db`.
    pub fn new(db: PgPool) -> Arc<Self> {
        Arc::new(Self {
            db,
            events: Cache::default(),
            onsales: Cache::default(),
        })
    }

    /// The owner of row `id` of `row`, or `None` when there is no such row.
    pub async fn owner(&self, row: Row, id: Uuid) -> Result<Option<Owner>, sqlx::Error> {
        let cache = match row {
            Row::Event => &self.events,
            Row::Onsale => &self.onsales,
        };
        if let Some((at, owner)) = cache.lock().expect("walls lock").get(&id)
            && at.elapsed() < TTL
        {
            return Ok(*owner);
        }
        let query = match row {
            Row::Event => {
                format!("select tenant_id, status in {VISIBLE} from event where event_id = $1")
            }
            Row::Onsale => format!(
                "select e.tenant_id, e.status in {VISIBLE} from onsale o \
                 join event e using (event_id) where o.onsale_id = $1"
            ),
        };
        let found: Option<(Uuid, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(query))
            .bind(id)
            .fetch_optional(&self.db)
            .await?;
        let owner = found.map(|(tenant, visible)| Owner { tenant, visible });
        let mut cache = cache.lock().expect("walls lock");
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(id, (Instant::now(), owner));
        Ok(owner)
    }

    /// The owner of the row `channel` names, answered as a refusal when it cannot be had.
    async fn owner_of(&self, row: Row, channel: &Channel) -> Result<Option<Owner>, Refusal> {
        let Ok(id) = Uuid::parse_str(channel.id()) else {
            return Ok(None);
        };
        self.owner(row, id).await.map_err(|e| {
            tracing::warn!(error = %e, %channel, "channel owner lookup failed");
            Refusal::new(ErrorCode::Unavailable, "the catalog is unavailable; retry")
        })
    }
}

/// `true` if `identity` is an admin of `tenant`.
fn admin_of(identity: &Identity, tenant: Uuid) -> bool {
    identity.has_role(Role::Admin) && identity.tenant_id() == Some(tenant)
}

/// A channel anyone signed in may follow once its event is published; before that (and after a
/// cancellation) only its own tenant's admins.
#[derive(Debug)]
pub struct Public {
    walls: Arc<Walls>,
    row: Row,
}

impl Public {
    /// The policy for channels named after `row`s.
    pub fn new(walls: Arc<Walls>, row: Row) -> Arc<Self> {
        Arc::new(Self { walls, row })
    }
}

impl SubscribePolicy for Public {
    fn check<'a>(
        &'a self,
        identity: &'a Identity,
        channel: &'a Channel,
    ) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(async move {
            match self.walls.owner_of(self.row, channel).await? {
                Some(owner) if owner.visible || admin_of(identity, owner.tenant) => Ok(()),
                _ => Err(not_found(channel)),
            }
        })
    }
}

/// A channel for one role of the row's own tenant.
#[derive(Debug)]
pub struct Staff {
    walls: Arc<Walls>,
    row: Row,
    role: Role,
}

impl Staff {
    /// The policy for channels named after `row`s, open to `role` of the owning tenant.
    pub fn new(walls: Arc<Walls>, row: Row, role: Role) -> Arc<Self> {
        Arc::new(Self { walls, row, role })
    }
}

impl SubscribePolicy for Staff {
    fn check<'a>(
        &'a self,
        identity: &'a Identity,
        channel: &'a Channel,
    ) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(async move {
            if !identity.has_role(self.role) {
                return Err(Refusal::not_open(channel));
            }
            match self.walls.owner_of(self.row, channel).await? {
                Some(owner) if identity.tenant_id() == Some(owner.tenant) => Ok(()),
                _ => Err(Refusal::not_open(channel)),
            }
        })
    }
}

/// Who may publish through `POST /internal/publish`: an admin of the tenant that owns the
/// channel's event or onsale.
#[derive(Debug)]
pub struct Publishers {
    walls: Arc<Walls>,
}

impl Publishers {
    /// The policy, looking rows up through `walls`.
    pub fn new(walls: Arc<Walls>) -> Arc<Self> {
        Arc::new(Self { walls })
    }
}

impl PublishPolicy for Publishers {
    fn check<'a>(
        &'a self,
        identity: &'a Identity,
        channel: &'a Channel,
    ) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(async move {
            let row = match channel.kind() {
                ChannelKind::Seats | ChannelKind::Gate => Row::Event,
                ChannelKind::Queue | ChannelKind::Admin => Row::Onsale,
                _ => return Err(Refusal::not_open(channel)),
            };
            match self.walls.owner_of(row, channel).await? {
                Some(owner) if admin_of(identity, owner.tenant) => Ok(()),
                _ => Err(Refusal::new(
                    ErrorCode::Forbidden,
                    format!("{channel} is not a channel of this tenant"),
                )),
            }
        })
    }
}

/// What a node without a database follows for staff channels: it cannot tell whose they are,
/// so it refuses them all.
#[derive(Debug, Clone, Copy)]
pub struct Unchecked;

impl SubscribePolicy for Unchecked {
    fn check<'a>(
        &'a self,
        _: &'a Identity,
        channel: &'a Channel,
    ) -> BoxFuture<'a, Result<(), Refusal>> {
        let refusal = Refusal::new(
            ErrorCode::Forbidden,
            format!(
                "{channel} cannot be checked on this node (it has no database); connect to a node that has one"
            ),
        );
        Box::pin(async move { Err(refusal) })
    }
}

fn not_found(channel: &Channel) -> Refusal {
    Refusal::new(ErrorCode::NotFound, format!("no such channel: {channel}"))
}
