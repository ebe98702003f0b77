//! Booking's part of the WebSocket: `command` (answered `accepted` once queued) and `ack`,
//! the snapshots of `seats:` and `inbox:` channels, and who may follow `seats:`.

use super::Booking;
use super::live::{InboxSnapshots, SeatSnapshots};
use crate::hub::handler::Open;
use crate::hub::{Hub, RequestHandler, Session};
use crate::walls::{Public, Row, Walls};
use futures_util::future::BoxFuture;
use marquee_protocol::{ChannelKind, ClientMessage, ErrorCode, RequestKind, ServerMessage};
use std::sync::Arc;

/// Answers purchase commands and result acknowledgements.
#[derive(Debug, Clone)]
pub struct CommandRequests(pub Booking);

impl RequestHandler for CommandRequests {
    fn handle<'a>(
        &'a self,
        session: Session<'a>,
        request: ClientMessage,
    ) -> BoxFuture<'a, ServerMessage> {
        Box::pin(async move {
            match request {
                ClientMessage::Command {
                    id,
                    request_id,
                    command,
                    admission,
                } => {
                    let submitted = self
                        .0
                        .submit(session.identity, request_id.clone(), command, admission)
                        .await;
                    match submitted {
                        Ok(()) => ServerMessage::Accepted { id, request_id },
                        Err(refusal) => refusal.reply(id),
                    }
                }
                ClientMessage::Ack { id, request_ids } => {
                    match self.0.ack(session.identity, &request_ids).await {
                        Ok(_) => ServerMessage::Acked { id },
                        Err(refusal) => refusal.reply(id),
                    }
                }
                other => ServerMessage::error(
                    Some(other.id()),
                    ErrorCode::BadRequest,
                    "not a booking request",
                ),
            }
        })
    }
}

/// Plugs booking into the hub: its requests, the snapshots of its channels, and who may
/// follow the live seat map (anyone).
pub(crate) fn register(booking: &Booking, hub: &Hub, walls: &Arc<Walls>) {
    let requests = Arc::new(CommandRequests(booking.clone()));
    hub.register_handler(RequestKind::Command, requests.clone());
    hub.register_handler(RequestKind::Ack, requests);
    hub.register_snapshot(
        ChannelKind::Seats,
        Arc::new(SeatSnapshots::new(
            booking.db().clone(),
            hub.engine().clone(),
        )),
    );
    hub.register_snapshot(
        ChannelKind::Inbox,
        Arc::new(InboxSnapshots {
            db: booking.db().clone(),
            engine: hub.engine().clone(),
        }),
    );
    register_policies(hub, Some(walls));
}

/// Who may follow booking's channels: a published event's live seat map is public, a draft's
/// only its own admins'. A node without a database (`walls` none) cannot look events up and
/// lets every `seats:` subscription through: it holds no seat map to leak, and a stream for a
/// name nobody publishes on is short-lived in the engine.
pub(crate) fn register_policies(hub: &Hub, walls: Option<&Arc<Walls>>) {
    match walls {
        Some(walls) => {
            hub.register_policy(ChannelKind::Seats, Public::new(walls.clone(), Row::Event))
        }
        None => hub.register_policy(ChannelKind::Seats, Arc::new(Open)),
    }
}
