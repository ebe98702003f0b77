//! How long a command's result is kept: `processed_request` rows are what make a request id
//! idempotent and what the inbox snapshot redelivers, so they are kept a while and then
//! pruned, or every buyer's every command would stay in the database forever.
//!
//! - An acknowledged result is kept [`Retention::acknowledged`] (7 days by default) after its
//!   acknowledgement: a retry with the same request id within that time still gets the first
//!   result and changes nothing.
//! - A result never acknowledged is kept [`Retention::unacknowledged`] (30 days) after it was
//!   made: a buyer who comes back within that time still finds it in their inbox.
//!
//! Past those, the request id may be used again as a new command. Rows are deleted in batches,
//! oldest first, along the partial indexes of `migrations/20261202000001_hardening.sql`, so a
//! prune never holds a long transaction.

use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long results are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// After acknowledgement.
    pub acknowledged: Duration,
    /// After creation, when never acknowledged.
    pub unacknowledged: Duration,
    /// How often to prune.
    pub every: Duration,
}

/// Rows deleted per statement.
const BATCH: i64 = 5_000;

/// Deletes every result past its retention; answers how many.
pub async fn prune(db: &PgPool, retention: Retention) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    for (column, keep, acknowledged) in [
        ("acknowledged_at", retention.acknowledged, true),
        ("created_at", retention.unacknowledged, false),
    ] {
        let filter = if acknowledged {
            "acknowledged_at is not null"
        } else {
            "acknowledged_at is null"
        };
        let statement = format!(
            "delete from processed_request where ctid = any(array(
                 select ctid from processed_request
                 where {filter} and {column} < now() - make_interval(secs => $1)
                 order by {column} limit $2))"
        );
        deleted += crate::db::delete_in_batches(db, &statement, keep, BATCH).await?;
    }
    Ok(deleted)
}

/// Prunes every [`Retention::every`] until `stop`. A failed prune is logged and tried again
/// next time: nothing depends on it but the table's size.
pub async fn run(db: PgPool, retention: Retention, stop: CancellationToken) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(retention.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        match prune(&db, retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned processed requests past retention"),
            Err(e) => tracing::warn!(error = %e, "pruning processed requests failed"),
        }
    }
}
