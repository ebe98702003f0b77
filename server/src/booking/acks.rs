//! Buyers' acknowledgements of their results, written together.
//!
//! Every result a buyer hears is acknowledged (`ack`), so it is not delivered again with the
//! next inbox snapshot. One `update` per acknowledgement was one commit, and one wait for the
//! write-ahead log, each holding a connection of the node's client pool: at full size (100,000
//! buyers, BENCHMARKS.md run 27) the acknowledgements of thousands of results a second
//! exhausted the pools, 7,762 of them failed with `pool timed out`, and the inbox snapshots of
//! reconnecting buyers waited behind them. Now whatever acknowledgements wait when a write
//! starts go into it, in one statement, one after another on each node: the pool holds one
//! connection for them however many buyers acknowledge, and each waits at most for the write
//! before its own.

use sqlx::PgPool;
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Request ids written in one statement, at most.
const IDS_PER_WRITE: usize = 5_000;

/// Acknowledgements waiting for a write before more wait for room.
const QUEUE: usize = 4_096;

/// One buyer's acknowledgement, and where to answer it.
struct Pending {
    tenant: Uuid,
    user: String,
    request_ids: Vec<String>,
    done: oneshot::Sender<Result<(), Arc<sqlx::Error>>>,
}

/// Writes acknowledgements together (module docs). Started on first use.
#[derive(Debug)]
pub(crate) struct Acks {
    db: PgPool,
    queue: OnceLock<mpsc::Sender<Pending>>,
}

/// Why an acknowledgement was not written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AckError {
    #[error("{0}")]
    Database(Arc<sqlx::Error>),
    #[error("the acknowledgement writer stopped")]
    Stopped,
}

impl Acks {
    pub(crate) fn new(db: PgPool) -> Self {
        Self {
            db,
            queue: OnceLock::new(),
        }
    }

    /// Marks `request_ids` of `user` in `tenant` acknowledged, once a write has carried them.
    pub(crate) async fn ack(
        &self,
        tenant: Uuid,
        user: &str,
        request_ids: &[String],
    ) -> Result<(), AckError> {
        if request_ids.is_empty() {
            return Ok(());
        }
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(write_gathered(self.db.clone(), rx));
            tx
        });
        let (done, answer) = oneshot::channel();
        let pending = Pending {
            tenant,
            user: user.to_owned(),
            request_ids: request_ids.to_vec(),
            done,
        };
        queue.send(pending).await.map_err(|_| AckError::Stopped)?;
        answer
            .await
            .map_err(|_| AckError::Stopped)?
            .map_err(AckError::Database)
    }
}

/// Writes whatever waits, one statement at a time, until every sender is gone.
async fn write_gathered(db: PgPool, mut rx: mpsc::Receiver<Pending>) {
    while let Some(first) = rx.recv().await {
        let mut ids = first.request_ids.len();
        let mut batch = vec![first];
        while ids < IDS_PER_WRITE {
            let Ok(next) = rx.try_recv() else { break };
            ids += next.request_ids.len();
            batch.push(next);
        }
        let outcome = write(&db, &batch).await.map_err(Arc::new);
        if let Err(e) = &outcome {
            tracing::warn!(error = %e, buyers = batch.len(), "ack failed");
        }
        for pending in batch {
            let _ = pending.done.send(outcome.clone());
        }
    }
}

/// One statement for a batch. Rows are named once each, in key order: two nodes writing
/// overlapping batches (one buyer's tabs on two nodes) look them up, and lock them, in the same
/// order under the usual plan (a primary-key lookup per id). Should Postgres still find a
/// deadlock, it fails one of the two writes; its buyers are answered `unavailable` and ack again.
async fn write(db: &PgPool, batch: &[Pending]) -> Result<(), sqlx::Error> {
    let mut keys: Vec<(Uuid, &str, &str)> = batch
        .iter()
        .flat_map(|p| {
            p.request_ids
                .iter()
                .map(|id| (p.tenant, p.user.as_str(), id.as_str()))
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let tenants: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
    let users: Vec<&str> = keys.iter().map(|k| k.1).collect();
    let ids: Vec<&str> = keys.iter().map(|k| k.2).collect();
    sqlx::query(
        "update processed_request p set acknowledged_at = now()
         from unnest($1::uuid[], $2::text[], $3::text[]) as a(tenant_id, user_id, request_id)
         where p.tenant_id = a.tenant_id and p.user_id = a.user_id
           and p.request_id = a.request_id and p.acknowledged_at is null",
    )
    .bind(&tenants)
    .bind(&users)
    .bind(&ids)
    .execute(db)
    .await?;
    Ok(())
}
