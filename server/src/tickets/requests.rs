//! Check-in's part of the WebSocket: `checkin.scan` (role `gate`), and who may follow
//! `gate:{event}` (a gate of the event's own tenant).

use super::checkin::Checkin;
use crate::auth::{Identity, Role};
use crate::db::TenantCache;
use crate::hub::{Hub, Refusal, RequestHandler, Session, SubscribePolicy};
use futures_util::future::BoxFuture;
use marquee_protocol::{
    Channel, ChannelKind, ClientMessage, ErrorCode, RequestKind, ServerMessage,
};
use std::sync::Arc;
use uuid::Uuid;

/// Answers gates' scans.
#[derive(Debug, Clone)]
pub struct ScanRequests(pub Checkin);

impl RequestHandler for ScanRequests {
    fn handle<'a>(
        &'a self,
        session: Session<'a>,
        request: ClientMessage,
    ) -> BoxFuture<'a, ServerMessage> {
        Box::pin(async move {
            let ClientMessage::CheckinScan { id, scan } = request else {
                return ServerMessage::error(
                    Some(request.id()),
                    ErrorCode::BadRequest,
                    "not a check-in request",
                );
            };
            let identity = session.identity;
            match identity.tenant_id() {
                Some(tenant) if identity.has_role(Role::Gate) => {
                    match self.0.scan(tenant, &identity.user, &scan).await {
                        Ok(result) => ServerMessage::CheckinResult { id, result },
                        Err(e) => ServerMessage::error(Some(id), e.code(), e.message()),
                    }
                }
                _ => ServerMessage::error(
                    Some(id),
                    ErrorCode::Forbidden,
                    "check-in needs the gate role and a tenant",
                ),
            }
        })
    }
}

/// Who may follow `gate:{event}`: gates see every scan of the event, so only a gate of the
/// event's own tenant.
#[derive(Debug)]
pub struct GatePolicy {
    db: sqlx::PgPool,
    /// Event id to owning tenant.
    tenants: TenantCache,
}

impl GatePolicy {
    /// The policy, checking events in `db`.
    pub fn new(db: sqlx::PgPool) -> Self {
        Self {
            db,
            tenants: TenantCache::new("select tenant_id from event where event_id = $1"),
        }
    }
}

impl SubscribePolicy for GatePolicy {
    fn check<'a>(
        &'a self,
        identity: &'a Identity,
        channel: &'a Channel,
    ) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(async move {
            if !identity.has_role(Role::Gate) {
                return Err(Refusal::not_open(channel));
            }
            let Ok(event) = Uuid::parse_str(channel.id()) else {
                return Err(Refusal::not_open(channel));
            };
            match self.tenants.get(&self.db, event).await {
                Ok(Some(owner)) if Some(owner) == identity.tenant_id() => Ok(()),
                Ok(_) => Err(Refusal::not_open(channel)),
                Err(e) => {
                    tracing::warn!(error = %e, "event lookup failed");
                    Err(Refusal::new(
                        ErrorCode::Unavailable,
                        "the event lookup is unavailable; retry",
                    ))
                }
            }
        })
    }
}

/// Plugs check-in into the hub: scans, and who may follow `gate:` channels.
pub(crate) fn register(checkin: &Checkin, hub: &Hub) {
    hub.register_handler(
        RequestKind::CheckinScan,
        Arc::new(ScanRequests(checkin.clone())),
    );
    hub.register_policy(
        ChannelKind::Gate,
        Arc::new(GatePolicy::new(checkin.db.clone())),
    );
}
