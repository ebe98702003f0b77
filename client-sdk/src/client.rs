//! The client handle and the stream of events it delivers.

use crate::config::{ClientConfig, TokenProvider};
use crate::driver::{Command, Driver};
use crate::event::{ClientError, Event, Subscribed};
use futures_util::Stream;
use marquee_protocol::booking::{Command as Purchase, CommandResult, SeatIndex};
use marquee_protocol::{ClientMessage, RequestId, ServerMessage, StreamPosition};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The stream of [`Event`]s. Bounded: an application that stops reading eventually stops the
/// client reading its socket, and the server then treats it as a slow consumer.
#[derive(Debug)]
pub struct Events(pub(crate) mpsc::Receiver<Event>);

impl Events {
    /// The next event; `None` once the client is closed for good.
    pub async fn next(&mut self) -> Option<Event> {
        self.0.recv().await
    }
}

impl Stream for Events {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.0.poll_recv(cx)
    }
}

/// Handle to a connected client. Cheap to clone; the connection closes when the last handle is
/// dropped or [`Client::close`] is called.
#[derive(Debug, Clone)]
pub struct Client {
    tx: mpsc::Sender<Command>,
    ids: Arc<AtomicU64>,
    timeout: Duration,
    command_timeout: Duration,
}

impl Client {
    /// Connects, waiting for the first connection so that a refused token or an unreachable
    /// node is reported here. Later drops are reconnected in the background.
    pub async fn connect(
        config: ClientConfig,
        tokens: TokenProvider,
    ) -> Result<(Self, Events), ClientError> {
        let (tx, rx) = mpsc::channel(256);
        let (events_tx, events_rx) = mpsc::channel(4096);
        let ids = Arc::new(AtomicU64::new(1));
        let (ready_tx, ready_rx) = oneshot::channel();
        let timeout = config.request_timeout;
        let command_timeout = config.command_timeout;
        let driver = Driver::new(config, tokens, rx, events_tx, ids.clone());
        tokio::spawn(driver.run(ready_tx));
        ready_rx.await.map_err(|_| ClientError::Closed)??;
        Ok((
            Self {
                tx,
                ids,
                timeout,
                command_timeout,
            },
            Events(events_rx),
        ))
    }

    fn next_id(&self) -> RequestId {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    async fn request(
        &self,
        build: impl FnOnce(RequestId) -> ClientMessage,
    ) -> Result<ServerMessage, ClientError> {
        let (reply, rx) = oneshot::channel();
        let message = build(self.next_id());
        self.call(Command::Request { message, reply }, rx).await
    }

    /// Hands a command to the driver and waits for its reply, up to the request timeout.
    async fn call<T>(
        &self,
        command: Command,
        rx: oneshot::Receiver<Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        self.tx
            .send(command)
            .await
            .map_err(|_| ClientError::Closed)?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::Timeout),
        }
    }

    /// Joins an onsale's waiting room (`queue.join`): the place's status. The client joins
    /// again by itself after every reconnect (attaching to the same place, on any node), until
    /// [`Client::leave_queue`]. Every status arrives as an [`Event::QueueStatus`], this first
    /// one included, in the order the client learned them: show the events, not this return
    /// value, and a position never appears to rise (a status pushed just before this answer
    /// is older than it, but would be read after it). The admission to send with commands is
    /// the `admission` of an `admitted` one.
    pub async fn join_queue(
        &self,
        onsale: &str,
    ) -> Result<marquee_protocol::queue::QueueStatus, ClientError> {
        let reply = self
            .request(|id| ClientMessage::QueueJoin {
                id,
                onsale: onsale.to_owned(),
                intent: None,
            })
            .await?;
        match reply {
            ServerMessage::QueueJoined { status, .. } => Ok(status),
            other => Err(unexpected(&other)),
        }
    }

    /// Gives the place in an onsale's waiting room up at once (`queue.leave`).
    pub async fn leave_queue(
        &self,
        onsale: &str,
    ) -> Result<marquee_protocol::queue::QueueStatus, ClientError> {
        let reply = self
            .request(|id| ClientMessage::QueueLeave {
                id,
                onsale: onsale.to_owned(),
            })
            .await?;
        match reply {
            ServerMessage::QueueJoined { status, .. } => Ok(status),
            other => Err(unexpected(&other)),
        }
    }

    /// Subscribes to a channel. The client keeps it subscribed across reconnects, resuming from
    /// the last message it delivered.
    pub async fn subscribe(&self, channel: &str) -> Result<Subscribed, ClientError> {
        self.subscribe_since(channel, None).await
    }

    /// Subscribes to a channel, resuming after a position the application saved itself.
    pub async fn subscribe_from(
        &self,
        channel: &str,
        since: StreamPosition,
    ) -> Result<Subscribed, ClientError> {
        self.subscribe_since(channel, Some(since)).await
    }

    async fn subscribe_since(
        &self,
        channel: &str,
        since: Option<StreamPosition>,
    ) -> Result<Subscribed, ClientError> {
        let (reply, rx) = oneshot::channel();
        let command = Command::Subscribe {
            channel: channel.to_owned(),
            since,
            reply,
        };
        self.call(command, rx).await
    }

    /// Stops receiving a channel.
    pub async fn unsubscribe(&self, channel: &str) -> Result<(), ClientError> {
        let channel = channel.to_owned();
        self.request(|id| ClientMessage::Unsubscribe { id, channel })
            .await
            .map(|_| ())
    }

    /// Round-trips a `ping`, returning the time it took.
    pub async fn ping(&self) -> Result<Duration, ClientError> {
        let started = tokio::time::Instant::now();
        self.request(|id| ClientMessage::Ping { id }).await?;
        Ok(started.elapsed())
    }

    /// A fresh request id for [`Client::command`]: 128 random bits in hex. Keep it to retry a
    /// command after the application itself restarts.
    pub fn new_request_id() -> String {
        format!("{:032x}", rand::random::<u128>())
    }

    /// Sends a purchase command and waits for its result. The command is sent again after a
    /// reconnect until its result arrives; `request_id` makes every repeat (and any retry by
    /// the application with the same id) take effect at most once. A refusal before the queue
    /// (for example `not_found` for an unknown event) is an `Err`; a decided command, even a
    /// rejected one, is an `Ok` result.
    pub async fn command(
        &self,
        request_id: impl Into<String>,
        command: Purchase,
        admission: Option<String>,
    ) -> Result<CommandResult, ClientError> {
        let (reply, rx) = oneshot::channel();
        let submit = Command::Submit {
            request_id: request_id.into(),
            command,
            admission,
            reply,
        };
        self.tx
            .send(submit)
            .await
            .map_err(|_| ClientError::Closed)?;
        match tokio::time::timeout(self.command_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::Timeout),
        }
    }

    /// Holds these seats (indexes in the event's map), all or none.
    pub async fn hold_seats(
        &self,
        event: &str,
        seats: &[SeatIndex],
    ) -> Result<CommandResult, ClientError> {
        let command = Purchase::HoldSeats {
            event: event.to_owned(),
            seats: seats.to_vec(),
        };
        self.command(Self::new_request_id(), command, None).await
    }

    /// Holds the best `quantity` adjacent seats of a price category.
    pub async fn hold_best_available(
        &self,
        event: &str,
        category: &str,
        quantity: u32,
    ) -> Result<CommandResult, ClientError> {
        let command = Purchase::HoldBestAvailable {
            event: event.to_owned(),
            category: category.to_owned(),
            quantity,
        };
        self.command(Self::new_request_id(), command, None).await
    }

    /// Holds `quantity` general-admission tickets.
    pub async fn hold_ga(
        &self,
        event: &str,
        ticket_type: &str,
        quantity: u32,
    ) -> Result<CommandResult, ClientError> {
        let command = Purchase::HoldGa {
            event: event.to_owned(),
            ticket_type: ticket_type.to_owned(),
            quantity,
        };
        self.command(Self::new_request_id(), command, None).await
    }

    /// Gives a hold back.
    pub async fn release(&self, event: &str, hold: &str) -> Result<CommandResult, ClientError> {
        let command = Purchase::Release {
            event: event.to_owned(),
            hold: hold.to_owned(),
        };
        self.command(Self::new_request_id(), command, None).await
    }

    /// Turns a hold into an order awaiting payment.
    pub async fn checkout(&self, event: &str, hold: &str) -> Result<CommandResult, ClientError> {
        let command = Purchase::Checkout {
            event: event.to_owned(),
            hold: hold.to_owned(),
        };
        self.command(Self::new_request_id(), command, None).await
    }

    /// Closes the connection (code 1000) and stops reconnecting.
    pub async fn close(&self) {
        let _ = self.tx.send(Command::Close).await;
    }
}

/// A reply of the wrong kind (a server that does not speak the protocol).
fn unexpected(reply: &ServerMessage) -> ClientError {
    ClientError::Server {
        code: marquee_protocol::ErrorCode::Internal,
        message: format!("unexpected reply: {reply:?}"),
    }
}
