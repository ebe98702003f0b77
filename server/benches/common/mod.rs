//! What the benchmarks share: a fresh database next to `DATABASE_URL`'s and a seeded event.
#![allow(dead_code)]

use anyhow::Context as _;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

/// The HS256 secret the benchmarks' nodes verify tokens with.
pub const SECRET: &str = "bench-secret-0123456789abcdef-0123456789";

/// A buyer's access token for an hour, in `tenant`.
pub fn buyer_token(tenant: Uuid, user: &str) -> String {
    let claims = marquee_server::auth::Claims {
        sub: user.to_owned(),
        tenant: Some(tenant.to_string()),
        roles: Vec::new(),
        exp: marquee_server::clock::now_secs() + 3600,
        nbf: None,
        iss: None,
        aud: None,
        sid: None,
    };
    marquee_server::auth::sign_hs256(SECRET, &claims)
}

/// A fresh database next to `DATABASE_URL`'s, dropped by [`drop_database`].
pub async fn create_database() -> anyhow::Result<(String, String, String)> {
    let admin = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let server = admin
        .rsplit_once('/')
        .context("DATABASE_URL has a database")?
        .0
        .to_owned();
    let name = format!("marquee_bench_{:08x}", rand::random::<u32>());
    let mut conn = PgConnection::connect(&admin).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("create database {name}")))
        .execute(&mut conn)
        .await?;
    Ok((admin, name.clone(), format!("{server}/{name}")))
}

/// Runs a benchmark in a fresh database (dropped afterwards, whatever happened), prints its
/// Markdown report and, with `markdown`, writes it to that file too.
pub async fn report_in_fresh_database<F, Fut>(markdown: Option<&str>, run: F) -> anyhow::Result<()>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<String>>,
{
    let (admin, name, url) = create_database().await?;
    let result = run(url).await;
    drop_database(&admin, &name).await?;
    let report = result?;
    println!("{report}");
    if let Some(path) = markdown {
        std::fs::write(path, &report)?;
    }
    Ok(())
}

pub async fn drop_database(admin: &str, name: &str) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(admin).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "drop database if exists {name} with (force)"
    )))
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// One event on sale with `seats` seats in rows of 200, no per-buyer limit to speak of.
pub async fn seed(pool: &PgPool, seats: i32, hold: &str) -> anyhow::Result<(Uuid, Uuid)> {
    let tenant: Uuid =
        sqlx::query_scalar("insert into tenant (name) values ('Bench') returning tenant_id")
            .fetch_one(pool)
            .await?;
    let venue: Uuid = sqlx::query_scalar(
        "insert into venue (tenant_id, name, city) values ($1, 'Arena', 'Lisbon') returning venue_id",
    )
    .bind(tenant)
    .fetch_one(pool)
    .await?;
    let event: Uuid = sqlx::query_scalar(
        "insert into event (tenant_id, venue_id, name, starts_at, status)
         values ($1, $2, 'Hot show', now() + interval '7 days', 'on_sale') returning event_id",
    )
    .bind(tenant)
    .bind(venue)
    .fetch_one(pool)
    .await?;
    let map: Uuid = sqlx::query_scalar(
        "insert into seat_map (tenant_id, event_id, focal_x) values ($1, $2, 100) returning seat_map_id",
    )
    .bind(tenant)
    .bind(event)
    .fetch_one(pool)
    .await?;
    let section: Uuid = sqlx::query_scalar(
        "insert into section (tenant_id, seat_map_id, name) values ($1, $2, 'Floor') returning section_id",
    )
    .bind(tenant)
    .bind(map)
    .fetch_one(pool)
    .await?;
    let category: Uuid = sqlx::query_scalar(
        "insert into price_category (tenant_id, event_id, name, price_minor, currency)
         values ($1, $2, 'Standard', 5000, 'EUR') returning price_category_id",
    )
    .bind(tenant)
    .bind(event)
    .fetch_one(pool)
    .await?;
    sqlx::query(
        "insert into seat (tenant_id, event_id, section_id, row_label, seat_number, seat_index, x, y, price_category_id)
         select $1, $2, $3, 'R' || lpad((i / 200)::text, 4, '0'), i % 200 + 1, i, i % 200, i / 200 + 1, $4
         from generate_series(0, $5 - 1) i",
    )
    .bind(tenant)
    .bind(event)
    .bind(section)
    .bind(category)
    .bind(seats)
    .execute(pool)
    .await?;
    sqlx::query(
        "insert into ticket_type (tenant_id, event_id, name, kind, price_category_id, price_minor, currency)
         values ($1, $2, 'Seated', 'seated', $3, 5000, 'EUR')",
    )
    .bind(tenant)
    .bind(event)
    .bind(category)
    .execute(pool)
    .await?;
    sqlx::query(
        "insert into onsale (tenant_id, event_id, status, starts_at, hold_duration, per_user_limit, requires_admission)
         values ($1, $2, 'live', now() - interval '1 minute', $3::interval, 1000000, false)",
    )
    .bind(tenant)
    .bind(event)
    .bind(hold)
    .execute(pool)
    .await?;
    Ok((tenant, event))
}
