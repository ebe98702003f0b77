//! The waiting room's part of the WebSocket: `queue.join` and `queue.leave`, who may follow
//! `queue:` and `admin:` channels, and detaching a closed connection from its places.

use super::WaitingRoom;
use crate::auth::{Identity, Role};
use crate::hub::handler::Open;
use crate::hub::{CloseHook, Hub, RequestHandler, Session};
use crate::walls::{Public, Row, Staff, Unchecked, Walls};
use futures_util::future::BoxFuture;
use marquee_protocol::{ChannelKind, ClientMessage, ErrorCode, RequestKind, ServerMessage};
use std::sync::Arc;

/// Answers the queue requests of a node's connections.
#[derive(Debug, Clone)]
pub struct QueueRequests(pub WaitingRoom);

impl RequestHandler for QueueRequests {
    fn handle<'a>(
        &'a self,
        session: Session<'a>,
        request: ClientMessage,
    ) -> BoxFuture<'a, ServerMessage> {
        Box::pin(async move {
            let (id, answer) = match request {
                ClientMessage::QueueJoin { id, onsale, intent } => (
                    id,
                    self.0.join_from(session, &onsale, intent.as_ref()).await,
                ),
                ClientMessage::QueueLeave { id, onsale } => {
                    (id, self.0.leave_from(session, &onsale).await)
                }
                other => {
                    return ServerMessage::error(
                        Some(other.id()),
                        ErrorCode::BadRequest,
                        "not a queue request",
                    );
                }
            };
            match answer {
                Ok(status) => ServerMessage::QueueJoined { id, status },
                Err(refusal) => refusal.reply(id),
            }
        })
    }
}

impl CloseHook for QueueRequests {
    fn closed(&self, conn: u64, identity: &Identity) {
        self.0.connection_closed(conn, &identity.user);
    }
}

/// Plugs the waiting room into the hub: its requests, its channels' policies, its close hook.
pub(crate) fn register(room: &WaitingRoom, hub: &Hub, walls: &Arc<Walls>) {
    let requests = Arc::new(QueueRequests(room.clone()));
    hub.register_handler(RequestKind::QueueJoin, requests.clone());
    hub.register_handler(RequestKind::QueueLeave, requests.clone());
    hub.register_close_hook(requests);
    register_policies(hub, Some(walls));
}

/// Who may follow the waiting room's channels: a published event's queue counts are public; the
/// operators' channel is for the onsale's own tenant's admins. A node without a database
/// (`walls` none) lets `queue:` through (it holds no queue) and refuses `admin:`, which it
/// cannot check.
pub(crate) fn register_policies(hub: &Hub, walls: Option<&Arc<Walls>>) {
    match walls {
        Some(walls) => {
            hub.register_policy(ChannelKind::Queue, Public::new(walls.clone(), Row::Onsale));
            hub.register_policy(
                ChannelKind::Admin,
                Staff::new(walls.clone(), Row::Onsale, Role::Admin),
            );
        }
        None => {
            hub.register_policy(ChannelKind::Queue, Arc::new(Open));
            hub.register_policy(ChannelKind::Admin, Arc::new(Unchecked));
        }
    }
}
