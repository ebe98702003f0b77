//! Postgres, the system of record: the connection pool and the schema migrations in
//! `migrations/` (applied by `marquee migrate` and at start-up).

use anyhow::Context as _;
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use std::collections::HashMap;
use std::str::FromStr as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The schema migrations, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// A pooled connection idle at least this long is pinged before it is handed out.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Connects a pool named `name` (`client`, `work`: the label of its metrics) to `url`. Its
/// connections tell Postgres `application_name = marquee-<name>`, so `pg_stat_activity` shows
/// which pool holds which connection, and [`begin`] and [`acquire`] know which pool waited.
pub async fn connect(
    url: &str,
    max_connections: u32,
    name: &'static str,
) -> anyhow::Result<PgPool> {
    use sqlx::Connection as _;
    let options = PgConnectOptions::from_str(url)
        .context("reading the Postgres URL")?
        .application_name(&format!("{APPLICATION_PREFIX}{name}"));
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // No ping before each use of a busy connection: it is a round trip on every query
        // (twice per booking batch), and a connection that broke fails its next statement
        // anyway, which callers already handle (the worker retries its batch on a fresh
        // connection). A connection that sat idle is pinged first: after a restart or a
        // failover every idle one is dead, and without the ping each would fail one request
        // (a `503 unavailable`) however long after the database came back.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_AFTER_IDLE {
                    // A dead one is closed, and the pool opens another.
                    return Ok(conn.ping().await.is_ok());
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await
        .context("connecting to Postgres")
}

/// What the `application_name` of a pool's connections starts with.
const APPLICATION_PREFIX: &str = "marquee-";

/// Begins a transaction on a connection from `pool`, recording how long the pool kept it
/// waiting for one (`marquee_db_pool_wait_seconds{pool}`). Every write path goes through here
/// or [`acquire`]; single statements run on the pool itself are not timed.
pub async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let started = Instant::now();
    let tx = pool.begin().await;
    pool_waited(pool, started);
    tx
}

/// Takes a connection from `pool` for several statements, recording the wait like [`begin`].
pub async fn acquire(pool: &PgPool) -> Result<PoolConnection<Postgres>, sqlx::Error> {
    let started = Instant::now();
    let conn = pool.acquire().await;
    pool_waited(pool, started);
    conn
}

fn pool_waited(pool: &PgPool, started: Instant) {
    let options = pool.connect_options();
    // The label comes from the names `connect` gives, so its values stay a bounded set.
    let name = match options
        .get_application_name()
        .and_then(|app| app.strip_prefix(APPLICATION_PREFIX))
    {
        Some("client") => "client",
        Some("work") => "work",
        _ => "other",
    };
    crate::metrics::METRICS.db_pool_wait(name, started.elapsed());
}

/// Runs a pruning `statement` until it deletes fewer than `batch` rows; answers how many it
/// deleted in all. The statement takes the age to keep in seconds as `$1` and the batch size
/// as `$2`, and deletes at most `$2` rows a run, so no prune holds a long transaction.
pub async fn delete_in_batches(
    db: &PgPool,
    statement: &str,
    keep: Duration,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    loop {
        let done = sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
            .bind(keep.as_secs_f64())
            .bind(batch)
            .execute(db)
            .await?
            .rows_affected();
        deleted += done;
        if done < batch as u64 {
            return Ok(deleted);
        }
    }
}

/// Brings the schema up to date.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("applying database migrations")
}

/// Which tenant owns a row (an event, an onsale), remembered once seen. A row never changes
/// tenant, so checking that a buyer stays within their own tenant costs one query per row and
/// node. Unknown ids are not remembered, so a hostile client cannot grow the map.
#[derive(Debug)]
pub struct TenantCache {
    /// `select tenant_id from … where <key> = $1 …`.
    query: &'static str,
    known: Mutex<HashMap<Uuid, Uuid>>,
}

impl TenantCache {
    /// A cache filled by `query`, which takes the id as `$1` and returns the tenant.
    pub fn new(query: &'static str) -> Self {
        Self {
            query,
            known: Mutex::default(),
        }
    }

    /// The tenant owning `id`, or `None` when no row matches.
    pub async fn get(&self, db: &PgPool, id: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
        if let Some(t) = self.known.lock().expect("tenant cache lock").get(&id) {
            return Ok(Some(*t));
        }
        let tenant: Option<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(self.query))
            .bind(id)
            .fetch_optional(db)
            .await?;
        if let Some(t) = tenant {
            self.known.lock().expect("tenant cache lock").insert(id, t);
        }
        Ok(tenant)
    }
}
