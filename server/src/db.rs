//! Postgres, the system of record: the connection pool and the schema migrations in
//! `migrations/` (applied by `marquee migrate` and at start-up).

use anyhow::Context as _;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use std::time::Duration;

/// The schema migrations, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Connects a pool to `url`.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // No ping before each use: it is a round trip on every query (twice per booking
        // batch), and a connection that broke fails its next statement anyway, which callers
        // already handle (the worker retries its batch on a fresh connection).
        .test_before_acquire(false)
        .connect(url)
        .await
        .context("connecting to Postgres")
}

/// Brings the schema up to date.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("applying database migrations")
}
