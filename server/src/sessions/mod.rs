//! Sessions: every WebSocket connection recorded, a buyer's own list of them, and ending a
//! sign-in session everywhere.
//!
//! - **Recording.** A connection's start and end go to the node's [`Recorder`], which never
//!   waits: it hands them to a bounded queue that [`run`] writes to `connection_session` in
//!   batches (one statement for the starts, one for the ends, every [`FLUSH_EVERY`]). A full
//!   queue drops the record and counts it (`marquee_session_records_dropped_total`) rather
//!   than slow a connection down. A node that dies leaves rows without an end: each node
//!   refreshes its `hub_node` row as it writes, and closes the open rows of nodes silent for
//!   [`NODE_LOST_AFTER`] as `node_lost`.
//! - **Listing.** `GET /v1/me/sessions`: the caller's connections, live and recent, newest
//!   first; an operator's `GET /v1/admin/users/{user}/sessions` lists any user of their tenant.
//! - **Ending.** A token may name its sign-in session (`sid`). `DELETE /v1/me/sessions/{sid}`
//!   (the buyer) or `DELETE /v1/admin/users/{user}/sessions/{sid}` (an operator of the tenant)
//!   records it in `ended_session` and notifies every node (`marquee_session_ended`): from then
//!   on every node refuses its tokens (`401 token_invalid`, a `refresh` too) and closes its
//!   sockets with 4005 `session_ended`. A node loads the whole table when it starts and again
//!   whenever its listener reconnects, so a notification missed while it was away is not lost.
//! - **Retention.** Connection rows and ended sessions older than the retention period
//!   (`MARQUEE_SESSION_RETENTION`, 30 days) are deleted in batches. An ended session must
//!   outlive every token issued for it: keep access tokens shorter than the retention.

use crate::auth::{Identity, Revocations, Verifier, valid_sid};
use crate::clock::now_ms;
use crate::http::error::ApiError;
use crate::http::extract::{Admin, Caller};
use crate::hub::{ConnectionLog, Hub};
use crate::metrics::METRICS;
use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Row as _};
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

/// How long the session records are kept.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
#[command(next_help_heading = "Sessions")]
pub struct Args {
    /// How long connection records and ended sessions are kept. Access tokens must not live
    /// longer: an ended session is refused only while its record is kept.
    #[arg(long, env = "MARQUEE_SESSION_RETENTION", default_value = "30days", value_parser = crate::clock::parse_duration)]
    pub session_retention: Duration,
}

/// How often a node writes what it recorded (and says it is alive).
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// A node whose `hub_node` row is older than this is dead; its open connections are closed.
pub const NODE_LOST_AFTER: Duration = Duration::from_secs(60);

/// Records a node keeps waiting before it drops new ones.
const QUEUE: usize = 100_000;

/// Rows written or deleted per statement.
const BATCH: usize = 5_000;

/// Longest user agent kept, in bytes.
const MAX_USER_AGENT: usize = 256;

/// Connections listed at most.
const LIST_LIMIT: i64 = 100;

/// The Postgres notification channel that carries ended sessions.
const ENDED_CHANNEL: &str = "marquee_session_ended";

/// A start or an end.
#[derive(Debug)]
enum Record {
    Opened {
        id: Uuid,
        tenant: String,
        user: String,
        sid: Option<String>,
        address: Option<IpAddr>,
        user_agent: Option<String>,
        at_ms: u64,
    },
    Closed {
        id: Uuid,
        reason: &'static str,
        at_ms: u64,
    },
}

/// A node's recorder of connections. Cheap to clone; never waits.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Record>,
}

/// What [`run`] writes: the other end of a [`Recorder`].
#[derive(Debug)]
pub struct Writer {
    rx: mpsc::Receiver<Record>,
    node: Arc<str>,
    boot: Uuid,
}

/// A recorder, and the writer that [`run`] drives, for node `node`.
pub fn recorder(node: Arc<str>) -> (Recorder, Writer) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let writer = Writer {
        rx,
        node,
        boot: Uuid::new_v4(),
    };
    (Recorder { tx }, writer)
}

impl ConnectionLog for Recorder {
    /// Records that a connection of `identity` opened; answers its id, for [`Self::closed`].
    fn opened(
        &self,
        identity: &Identity,
        address: Option<IpAddr>,
        user_agent: Option<&str>,
    ) -> Uuid {
        let id = Uuid::new_v4();
        self.send(Record::Opened {
            id,
            tenant: identity.tenant.clone().unwrap_or_default(),
            user: identity.user.clone(),
            sid: identity.sid.clone(),
            address,
            user_agent: user_agent.map(|ua| truncate(ua, MAX_USER_AGENT).to_owned()),
            at_ms: now_ms(),
        });
        id
    }

    /// Records that connection `id` ended, and why (a close code's reason, or `gone`).
    fn closed(&self, id: Uuid, reason: &'static str) {
        self.send(Record::Closed {
            id,
            reason,
            at_ms: now_ms(),
        });
    }
}

impl Recorder {
    fn send(&self, record: Record) {
        if self.tx.try_send(record).is_err() {
            METRICS.session_records_dropped.increment(1);
        }
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Writes what the node recorded every [`FLUSH_EVERY`], keeps the node's `hub_node` row
/// fresh, closes the connections of nodes found dead, and prunes past `retention`, until
/// `stop`; then writes what is left. A failed write is logged and tried again with the next.
pub async fn run(
    db: PgPool,
    mut writer: Writer,
    retention: Duration,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: Vec<Record> = Vec::new();
    let mut last_sweep = std::time::Instant::now() - NODE_LOST_AFTER;
    let mut last_prune = std::time::Instant::now() - Duration::from_secs(3600);
    loop {
        let stopping = tokio::select! {
            () = stop.cancelled() => true,
            _ = tick.tick() => false,
        };
        while pending.len() < QUEUE {
            match writer.rx.try_recv() {
                Ok(record) => pending.push(record),
                Err(_) => break,
            }
        }
        match write(&db, &writer, &pending).await {
            Ok(()) => pending.clear(),
            Err(e) => tracing::warn!(error = %e, records = pending.len(), "cannot record sessions"),
        }
        if stopping {
            let _ = sqlx::query("delete from hub_node where boot = $1")
                .bind(writer.boot)
                .execute(&db)
                .await;
            return Ok(());
        }
        if last_sweep.elapsed() >= NODE_LOST_AFTER / 4 {
            last_sweep = std::time::Instant::now();
            if let Err(e) = close_lost_nodes(&db).await {
                tracing::warn!(error = %e, "cannot close the connections of lost nodes");
            }
        }
        if last_prune.elapsed() >= Duration::from_secs(3600) {
            last_prune = std::time::Instant::now();
            match prune(&db, retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "pruned session records past retention"),
                Err(e) => tracing::warn!(error = %e, "pruning session records failed"),
            }
        }
    }
}

/// Writes `records` (starts before ends) and refreshes the node's row, in one transaction.
async fn write(db: &PgPool, writer: &Writer, records: &[Record]) -> Result<(), sqlx::Error> {
    let mut tx = crate::db::begin(db).await?;
    sqlx::query(
        "insert into hub_node (boot, node) values ($1, $2)
         on conflict (boot) do update set seen_at = now()",
    )
    .bind(writer.boot)
    .bind(&*writer.node)
    .execute(&mut *tx)
    .await?;
    let opened: Vec<&Record> = records
        .iter()
        .filter(|r| matches!(r, Record::Opened { .. }))
        .collect();
    for chunk in opened.chunks(BATCH) {
        let mut ids = Vec::with_capacity(chunk.len());
        let mut tenants = Vec::with_capacity(chunk.len());
        let mut users = Vec::with_capacity(chunk.len());
        let mut sids = Vec::with_capacity(chunk.len());
        let mut addresses = Vec::with_capacity(chunk.len());
        let mut agents = Vec::with_capacity(chunk.len());
        let mut ats = Vec::with_capacity(chunk.len());
        for record in chunk {
            if let Record::Opened {
                id,
                tenant,
                user,
                sid,
                address,
                user_agent,
                at_ms,
            } = record
            {
                ids.push(*id);
                tenants.push(tenant.as_str());
                users.push(user.as_str());
                sids.push(sid.as_deref());
                addresses.push(address.map(|a| a.to_string()));
                agents.push(user_agent.as_deref());
                ats.push(*at_ms as f64 / 1000.0);
            }
        }
        sqlx::query(
            "insert into connection_session
                 (connection_id, tenant, user_id, sid, node, boot, address, user_agent, started_at)
             select u.id, u.tenant, u.user_id, u.sid, $8, $9, u.address::inet, u.agent,
                    to_timestamp(u.at)
             from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::float8[])
                  as u(id, tenant, user_id, sid, address, agent, at)
             on conflict (connection_id) do nothing",
        )
        .bind(&ids)
        .bind(&tenants)
        .bind(&users)
        .bind(&sids)
        .bind(&addresses)
        .bind(&agents)
        .bind(&ats)
        .bind(&*writer.node)
        .bind(writer.boot)
        .execute(&mut *tx)
        .await?;
    }
    let closed: Vec<&Record> = records
        .iter()
        .filter(|r| matches!(r, Record::Closed { .. }))
        .collect();
    for chunk in closed.chunks(BATCH) {
        let mut ids = Vec::with_capacity(chunk.len());
        let mut reasons = Vec::with_capacity(chunk.len());
        let mut ats = Vec::with_capacity(chunk.len());
        for record in chunk {
            if let Record::Closed { id, reason, at_ms } = record {
                ids.push(*id);
                reasons.push(*reason);
                ats.push(*at_ms as f64 / 1000.0);
            }
        }
        sqlx::query(
            "update connection_session s set ended_at = to_timestamp(u.at), close_reason = u.reason
             from unnest($1::uuid[], $2::text[], $3::float8[]) as u(id, reason, at)
             where s.connection_id = u.id and s.ended_at is null",
        )
        .bind(&ids)
        .bind(&reasons)
        .bind(&ats)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    METRICS.session_records.increment(records.len() as u64);
    Ok(())
}

/// Closes the open connections of nodes silent for [`NODE_LOST_AFTER`] (as `node_lost`, at
/// the moment they were last seen) and forgets those nodes.
pub async fn close_lost_nodes(db: &PgPool) -> Result<(), sqlx::Error> {
    let lost = NODE_LOST_AFTER.as_secs_f64();
    sqlx::query(
        "update connection_session s set ended_at = h.seen_at, close_reason = 'node_lost'
         from hub_node h
         where s.boot = h.boot and s.ended_at is null
           and h.seen_at < now() - make_interval(secs => $1)",
    )
    .bind(lost)
    .execute(db)
    .await?;
    sqlx::query("delete from hub_node where seen_at < now() - make_interval(secs => $1)")
        .bind(lost)
        .execute(db)
        .await?;
    Ok(())
}

/// Deletes connection rows that started, and ended sessions that ended, before `retention`
/// ago; answers how many.
pub async fn prune(db: &PgPool, retention: Duration) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    for statement in [
        "delete from connection_session where connection_id = any(array(
             select connection_id from connection_session
             where started_at < now() - make_interval(secs => $1)
             order by started_at limit $2))",
        "delete from ended_session where (tenant, sid) in (
             select tenant, sid from ended_session
             where ended_at < now() - make_interval(secs => $1)
             order by ended_at limit $2)",
    ] {
        deleted += crate::db::delete_in_batches(db, statement, retention, BATCH as i64).await?;
    }
    Ok(deleted)
}

/// An ended session, as notified to every node.
#[derive(Debug, Serialize, Deserialize)]
struct Ended {
    tenant: String,
    sid: String,
    user: String,
}

/// Keeps `revoked` in step with `ended_session` and closes the sockets of sessions ended
/// anywhere, until `stop`: loads the table, then follows `marquee_session_ended`; loads it
/// again after every reconnect of the listener.
pub async fn follow(
    db: PgPool,
    revoked: Revocations,
    hub: Hub,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let outcome = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            outcome = listen(&db, &revoked, &hub) => outcome,
        };
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "lost the ended-session notifications; listening again");
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Loads every ended session into `revoked`: a node does so before it serves, so it never
/// takes a token of a session ended while it was down.
pub async fn load(db: &PgPool, revoked: &Revocations) -> Result<(), sqlx::Error> {
    let rows = sqlx::query("select tenant, sid from ended_session")
        .fetch_all(db)
        .await?;
    let ended: HashSet<(String, String)> = rows
        .iter()
        .map(|r| (r.get("tenant"), r.get("sid")))
        .collect();
    revoked.replace(ended);
    Ok(())
}

async fn listen(db: &PgPool, revoked: &Revocations, hub: &Hub) -> anyhow::Result<()> {
    let mut listener = PgListener::connect_with(db).await?;
    // Without this a lost connection would be reconnected silently, and what was notified
    // meanwhile never heard of; failing makes the caller load the table again.
    listener.ignore_pool_close_event(false);
    listener.listen(ENDED_CHANNEL).await?;
    // Listening before loading: an ending between the two is in one or the other.
    load(db, revoked).await?;
    loop {
        let Some(notification) = listener.try_recv().await? else {
            anyhow::bail!("the notification connection closed");
        };
        let Ok(ended) = serde_json::from_str::<Ended>(notification.payload()) else {
            tracing::warn!(
                payload = notification.payload(),
                "malformed ended-session notice"
            );
            continue;
        };
        revoked.insert(&ended.tenant, &ended.sid);
        let tenant = (!ended.tenant.is_empty()).then_some(ended.tenant.as_str());
        hub.review_sessions(tenant, &ended.user);
    }
}

/// What the session routes need.
#[derive(Debug, Clone)]
pub struct SessionsState {
    /// The system of record.
    pub db: PgPool,
    /// Verifies callers' tokens.
    pub verifier: Arc<Verifier>,
}

impl FromRef<SessionsState> for Arc<Verifier> {
    fn from_ref(state: &SessionsState) -> Self {
        state.verifier.clone()
    }
}

/// The session routes.
pub fn routes(state: SessionsState) -> Router {
    Router::new()
        .route("/v1/me/sessions", get(my_sessions))
        .route(
            "/v1/me/sessions/{sid}",
            axum::routing::delete(end_my_session),
        )
        .route("/v1/admin/users/{user}/sessions", get(user_sessions))
        .route(
            "/v1/admin/users/{user}/sessions/{sid}",
            axum::routing::delete(end_user_session),
        )
        .with_state(state)
}

/// One WebSocket connection.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectionRecord {
    /// The connection.
    pub connection_id: Uuid,
    /// The sign-in session its token named, if any.
    pub sid: Option<String>,
    /// The node it was (or is) open on.
    pub node: String,
    /// The client's address as the node saw it.
    pub address: Option<String>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// When it opened (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: time::OffsetDateTime,
    /// When it closed (RFC 3339); absent while open.
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<time::OffsetDateTime>,
    /// Why it closed: a close code's reason (`normal`, `session_ended`, `heartbeat_timeout`,
    /// …), `gone` when the client vanished, `node_lost` when its node died.
    pub close_reason: Option<String>,
    /// Whether it is open now.
    pub live: bool,
}

/// A user's connections, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionList {
    /// The user.
    pub user: String,
    /// Their connections, newest first, at most 100.
    pub connections: Vec<ConnectionRecord>,
}

async fn list(db: &PgPool, tenant: &str, user: &str) -> Result<SessionList, ApiError> {
    let rows = sqlx::query(
        "select s.connection_id, s.sid, s.node, host(s.address) as address, s.user_agent,
                s.started_at, s.ended_at, s.close_reason,
                s.ended_at is null and coalesce(h.seen_at > now() - make_interval(secs => $3),
                                                false) as live
         from connection_session s left join hub_node h on h.boot = s.boot
         where s.tenant = $1 and s.user_id = $2
         order by s.started_at desc limit $4",
    )
    .bind(tenant)
    .bind(user)
    .bind(NODE_LOST_AFTER.as_secs_f64())
    .bind(LIST_LIMIT)
    .fetch_all(db)
    .await?;
    let connections = rows
        .iter()
        .map(|r| ConnectionRecord {
            connection_id: r.get("connection_id"),
            sid: r.get("sid"),
            node: r.get("node"),
            address: r.get("address"),
            user_agent: r.get("user_agent"),
            started_at: r.get("started_at"),
            ended_at: r.get("ended_at"),
            close_reason: r.get("close_reason"),
            live: r.get("live"),
        })
        .collect();
    Ok(SessionList {
        user: user.to_owned(),
        connections,
    })
}

/// Ends `sid` of `user` in `tenant`, if the user ever connected with it: records it, then
/// tells every node. Ending it again changes nothing.
async fn end(
    db: &PgPool,
    tenant: &str,
    user: &str,
    sid: &str,
    by: &str,
) -> Result<StatusCode, ApiError> {
    let not_found = || ApiError::not_found("no such session");
    if !valid_sid(sid) {
        return Err(not_found());
    }
    let mut tx = crate::db::begin(db).await?;
    let known: Option<bool> = sqlx::query_scalar(
        "select true from connection_session
         where tenant = $1 and sid = $2 and user_id = $3 limit 1",
    )
    .bind(tenant)
    .bind(sid)
    .bind(user)
    .fetch_optional(&mut *tx)
    .await?;
    if known.is_none() {
        return Err(not_found());
    }
    let inserted = sqlx::query(
        "insert into ended_session (tenant, sid, user_id, ended_by) values ($1, $2, $3, $4)
         on conflict (tenant, sid) do nothing",
    )
    .bind(tenant)
    .bind(sid)
    .bind(user)
    .bind(by)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 1 {
        let notice = serde_json::to_string(&Ended {
            tenant: tenant.to_owned(),
            sid: sid.to_owned(),
            user: user.to_owned(),
        })
        .expect("serializes");
        // Delivered at commit, to every node listening.
        sqlx::query("select pg_notify($1, $2)")
            .bind(ENDED_CHANNEL)
            .bind(notice)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's WebSocket connections, live and recent (at most 100, newest first).
#[utoipa::path(get, path = "/v1/me/sessions", tag = "sessions", security(("bearer" = [])),
    responses((status = 200, body = SessionList), (status = 401, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn my_sessions(
    State(s): State<SessionsState>,
    Caller(me): Caller,
) -> Result<Json<SessionList>, ApiError> {
    let tenant = me.tenant.unwrap_or_default();
    list(&s.db, &tenant, &me.user).await.map(Json)
}

/// Ends one of the caller's sign-in sessions: its tokens are refused from now on and its
/// sockets close (4005) on every node. 404 for a session the caller never connected with.
#[utoipa::path(delete, path = "/v1/me/sessions/{sid}", tag = "sessions",
    params(("sid" = String, Path, description = "The `sid` of the caller's tokens to end")), security(("bearer" = [])),
    responses((status = 204, description = "Ended (or already ended)"), (status = 401, body = marquee_protocol::ErrorBody),
        (status = 404, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn end_my_session(
    State(s): State<SessionsState>,
    Caller(me): Caller,
    Path(sid): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = me.tenant.unwrap_or_default();
    end(&s.db, &tenant, &me.user, &sid, &me.user).await
}

/// A user's WebSocket connections (role `admin`, the operator's tenant).
#[utoipa::path(get, path = "/v1/admin/users/{user}/sessions", tag = "sessions",
    params(("user" = String, Path, description = "A user id (`sub`) of the operator's tenant")), security(("bearer" = [])),
    responses((status = 200, body = SessionList), (status = 401, body = marquee_protocol::ErrorBody),
        (status = 403, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn user_sessions(
    State(s): State<SessionsState>,
    admin: Admin,
    Path(user): Path<String>,
) -> Result<Json<SessionList>, ApiError> {
    list(&s.db, &admin.tenant.to_string(), &user)
        .await
        .map(Json)
}

/// Ends a sign-in session of a user of the operator's tenant.
#[utoipa::path(delete, path = "/v1/admin/users/{user}/sessions/{sid}", tag = "sessions",
    params(("user" = String, Path, description = "A user id (`sub`) of the operator's tenant"),
        ("sid" = String, Path, description = "The `sid` to end")), security(("bearer" = [])),
    responses((status = 204, description = "Ended (or already ended)"), (status = 401, body = marquee_protocol::ErrorBody),
        (status = 403, body = marquee_protocol::ErrorBody), (status = 404, body = marquee_protocol::ErrorBody)))]
pub(crate) async fn end_user_session(
    State(s): State<SessionsState>,
    admin: Admin,
    Path((user, sid)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    end(&s.db, &admin.tenant.to_string(), &user, &sid, &admin.user).await
}

/// The OpenAPI document of the session routes.
#[derive(OpenApi)]
#[openapi(paths(my_sessions, end_my_session, user_sessions, end_user_session))]
struct ApiDoc;

/// The OpenAPI document of the session routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
