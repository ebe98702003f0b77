//! Notifications for an outside service: order paid, refunded or cancelled, ticket transferred.
//!
//! The change that a notification describes writes it ([`crate::outbox::notification`]) in its
//! own transaction, when
//! notifications are configured (`MARQUEE_NOTIFY_URL`). The [`Sender`] then delivers each one as
//! a `POST` to that URL:
//!
//! ```text
//! POST /hooks/marquee HTTP/1.1
//! Content-Type: application/json
//! Marquee-Signature: t=1795000000,v1=<hex HMAC-SHA256(MARQUEE_NOTIFY_SECRET, "t.body")>
//!
//! {"id":42,"type":"order.paid","tenant":"…","created":1795000000,"data":{…}}
//! ```
//!
//! signed exactly like the payment hooks Marquee receives ([`crate::signature`]), so a
//! receiver checks it the same way. Anything but a 2xx answer is retried with exponential
//! backoff (2 s, 4 s, 8 s, … at most 10 minutes apart) up to [`MAX_ATTEMPTS`] times, then given
//! up and left in the table with its last error. Delivery is at least once: receivers
//! deduplicate by `id`. Several senders (nodes, workers) may run: each claims due rows with
//! `for update skip locked` and moves their next attempt forward before calling out, so a row
//! is never sent by two at once.

use crate::outgoing::Outgoing;
use crate::secret::Secret;
use crate::signature;
use bytes::Bytes;
use serde_json::{Value, json};
use sqlx::{PgPool, Row as _};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Where notifications go.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
#[command(next_help_heading = "Notifications")]
pub struct Args {
    /// Where notifications (order paid, refunded or cancelled, ticket transferred) are POSTed,
    /// signed with `--notify-secret`. Unset: no notifications are written or sent.
    #[arg(long, env = "MARQUEE_NOTIFY_URL", requires = "notify_secret")]
    pub notify_url: Option<String>,

    /// Signs notifications (`Marquee-Signature`, as on payment hooks).
    #[arg(long, env = "MARQUEE_NOTIFY_SECRET", hide_env_values = true, value_parser = crate::secret::parse_strong)]
    pub notify_secret: Option<Secret>,
}

impl Args {
    /// Whether notifications are configured (changes then write them).
    pub fn enabled(&self) -> bool {
        self.notify_url.is_some()
    }

    /// The sender of the notifications, when they are configured.
    pub fn sender(&self, db: &PgPool) -> Option<Sender> {
        Some(Sender::new(
            db.clone(),
            self.notify_url.clone()?,
            self.notify_secret.clone()?,
        ))
    }
}

/// Attempts before a notification is given up.
pub const MAX_ATTEMPTS: i32 = 15;

/// How long a claimed notification is left to its sender before another may try it: longer
/// than a whole claimed batch can take (each call gives up after 10 s).
const CLAIM: Duration = Duration::from_secs(120);

/// Most notifications claimed at once.
const BATCH: i64 = 8;

/// Delivers notifications to the configured URL.
#[derive(Debug, Clone)]
pub struct Sender {
    /// The system of record.
    pub db: PgPool,
    /// Where notifications go.
    pub url: String,
    /// Signs them.
    pub secret: Secret,
    /// The HTTP client.
    pub http: Outgoing,
}

impl Sender {
    /// A sender with a 10 s timeout per call.
    pub fn new(db: PgPool, url: String, secret: Secret) -> Self {
        Self {
            db,
            url,
            secret,
            http: Outgoing::new(Duration::from_secs(10)),
        }
    }

    /// Delivers due notifications until `stop`.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        loop {
            let sent = match self.deliver_due().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "notifications: database unavailable");
                    0
                }
            };
            if sent as i64 == BATCH {
                continue;
            }
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    }

    /// Claims and delivers the notifications due now; how many it tried.
    pub async fn deliver_due(&self) -> Result<usize, sqlx::Error> {
        let rows = sqlx::query(
            "update notification set attempts = attempts + 1,
                    next_attempt_at = now() + make_interval(secs => $1), updated_at = now()
             where notification_id in (
                 select notification_id from notification
                 where delivered_at is null and failed_at is null and next_attempt_at <= now()
                 order by notification_id limit $2
                 for update skip locked
             )
             returning notification_id, tenant_id, kind, data::text as data, attempts,
                       extract(epoch from created_at)::int8 as created",
        )
        .bind(CLAIM.as_secs_f64())
        .bind(BATCH)
        .fetch_all(&self.db)
        .await?;
        let tried = rows.len();
        for row in rows {
            let id: i64 = row.get("notification_id");
            let attempts: i32 = row.get("attempts");
            let data: Value = serde_json::from_str(row.get("data")).unwrap_or(Value::Null);
            let body = json!({
                "id": id,
                "type": row.get::<String, _>("kind"),
                "tenant": row.get::<Uuid, _>("tenant_id"),
                "created": row.get::<i64, _>("created"),
                "data": data,
            })
            .to_string();
            let header = signature::sign(
                self.secret.expose().as_bytes(),
                crate::clock::now_secs(),
                body.as_bytes(),
            );
            let outcome = self
                .http
                .post_json(
                    &self.url,
                    &[(signature::HEADER, &header)],
                    Bytes::from(body),
                )
                .await;
            let error = match outcome {
                Ok(status) if (200..300).contains(&status) => None,
                Ok(status) => Some(format!("answered {status}")),
                Err(e) => Some(e.to_string()),
            };
            match error {
                None => {
                    sqlx::query(
                        "update notification set delivered_at = now(), last_error = null, updated_at = now()
                         where notification_id = $1",
                    )
                    .bind(id)
                    .execute(&self.db)
                    .await?;
                }
                Some(error) => {
                    tracing::warn!(notification = id, attempts, %error, "notification not delivered");
                    let give_up = attempts >= MAX_ATTEMPTS;
                    sqlx::query(
                        "update notification set last_error = $2, updated_at = now(),
                                next_attempt_at = now() + make_interval(secs => $3),
                                failed_at = case when $4 then now() end
                         where notification_id = $1",
                    )
                    .bind(id)
                    .bind(&error)
                    .bind(crate::outgoing::retry_pause(attempts).as_secs_f64())
                    .bind(give_up)
                    .execute(&self.db)
                    .await?;
                }
            }
        }
        Ok(tried)
    }
}
