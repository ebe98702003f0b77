//! Check-in's part of the WebSocket: `checkin.scan` (role `gate`), and who may follow
//! `gate:{event}` (a gate of the event's own tenant).

use super::checkin::Checkin;
use crate::auth::Role;
use crate::hub::{Hub, RequestHandler, Session};
use crate::walls::{Row, Staff, Walls};
use futures_util::future::BoxFuture;
use marquee_protocol::{ChannelKind, ClientMessage, ErrorCode, RequestKind, ServerMessage};
use std::sync::Arc;

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

/// Plugs check-in into the hub: scans, and who may follow `gate:` channels.
pub(crate) fn register(checkin: &Checkin, hub: &Hub, walls: &Arc<Walls>) {
    hub.register_handler(
        RequestKind::CheckinScan,
        Arc::new(ScanRequests(checkin.clone())),
    );
    // Gates see every scan of the event: only a gate of the event's own tenant follows it.
    hub.register_policy(
        ChannelKind::Gate,
        Staff::new(walls.clone(), Row::Event, Role::Gate),
    );
}
