//! The schema's constraints hold by themselves, whatever the application code does: no seat is
//! claimed twice, a general-admission quota is never exceeded, and no row points at another
//! tenant's data. Each test gets a fresh database with the migrations applied.

use crate::common::shop::{ShopSpec, shop};
use sqlx::PgPool;
use uuid::Uuid;

/// A tenant with a venue, an event, a seat map with `seats` seats in one row, a GA ticket type
/// with `quota`, and an onsale: the tests' one shop ([`shop`]), in one row.
struct Fixture {
    tenant: Uuid,
    event: Uuid,
    onsale: Uuid,
    seats: Vec<Uuid>,
    ga_type: Uuid,
}

async fn fixture(pool: &PgPool, seats: i32, quota: i32) -> Fixture {
    let spec = ShopSpec {
        rows: 1,
        width: seats,
        ga_quota: quota,
        ..ShopSpec::default()
    };
    let shop = shop(pool, spec).await;
    let onsale: Uuid = sqlx::query_scalar("select onsale_id from onsale where event_id = $1")
        .bind(shop.event)
        .fetch_one(pool)
        .await
        .unwrap();
    let seats: Vec<Uuid> =
        sqlx::query_scalar("select seat_id from seat where event_id = $1 order by seat_index")
            .bind(shop.event)
            .fetch_all(pool)
            .await
            .unwrap();
    Fixture {
        tenant: shop.tenant,
        event: shop.event,
        onsale,
        seats,
        ga_type: shop.ga,
    }
}

/// Tries to hold one seat for a user in its own transaction, as a careless worker would:
/// no check first, just the writes. Returns whether it committed.
async fn try_hold_seat(pool: &PgPool, f: &Fixture, seat: Uuid, user: &str) -> bool {
    let mut tx = pool.begin().await.unwrap();
    let hold: Uuid = sqlx::query_scalar(
        "insert into hold (hold_id, tenant_id, event_id, onsale_id, user_id, expires_at)
         values (gen_random_uuid(), $1, $2, $3, $4, now() + interval '10 minutes') returning hold_id",
    )
    .bind(f.tenant)
    .bind(f.event)
    .bind(f.onsale)
    .bind(user)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    let claimed = sqlx::query(
        "insert into seat_claim (event_id, seat_id, tenant_id, state, hold_id) values ($1, $2, $3, 'held', $4)",
    )
    .bind(f.event)
    .bind(seat)
    .bind(f.tenant)
    .bind(hold)
    .execute(&mut *tx)
    .await;
    match claimed {
        Ok(_) => tx.commit().await.is_ok(),
        Err(sqlx::Error::Database(e)) => {
            assert_eq!(e.constraint(), Some("seat_claim_pkey"), "{e}");
            false
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn two_hundred_buyers_racing_for_a_hundred_seats_hold_each_seat_once(pool: PgPool) {
    let f = std::sync::Arc::new(fixture(&pool, 100, 10).await);
    let mut tasks = tokio::task::JoinSet::new();
    for buyer in 0..200usize {
        let (pool, f) = (pool.clone(), f.clone());
        // Two buyers per seat, in no particular order.
        let seat = f.seats[(buyer * 37) % 100];
        tasks.spawn(async move { try_hold_seat(&pool, &f, seat, &format!("u{buyer}")).await });
    }
    let mut won = 0;
    while let Some(result) = tasks.join_next().await {
        won += usize::from(result.unwrap());
    }
    assert_eq!(won, 100);
    let (claims, distinct): (i64, i64) = sqlx::query_as(
        "select count(*), count(distinct seat_id) from seat_claim where event_id = $1",
    )
    .bind(f.event)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((claims, distinct), (100, 100));
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_sold_seat_cannot_be_held_again(pool: PgPool) {
    let f = fixture(&pool, 1, 10).await;
    assert!(try_hold_seat(&pool, &f, f.seats[0], "u1").await);
    let order: Uuid = sqlx::query_scalar(
        "insert into ticket_order (tenant_id, event_id, user_id, total_minor, currency)
         values ($1, $2, 'u1', 5000, 'EUR') returning ticket_order_id",
    )
    .bind(f.tenant)
    .bind(f.event)
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query("update seat_claim set state = 'sold', hold_id = null, ticket_order_id = $1 where seat_id = $2")
        .bind(order)
        .bind(f.seats[0])
        .execute(&pool)
        .await
        .unwrap();
    assert!(!try_hold_seat(&pool, &f, f.seats[0], "u2").await);
    // A claim must have exactly one owner of the right kind.
    let orphan = sqlx::query("update seat_claim set ticket_order_id = null where seat_id = $1")
        .bind(f.seats[0])
        .execute(&pool)
        .await
        .unwrap_err();
    let sqlx::Error::Database(e) = orphan else {
        panic!("{orphan}")
    };
    assert_eq!(e.constraint(), Some("seat_claim_one_owner"));
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn five_hundred_buyers_never_push_general_admission_past_its_quota(pool: PgPool) {
    let f = std::sync::Arc::new(fixture(&pool, 1, 100).await);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..500 {
        let (pool, f) = (pool.clone(), f.clone());
        tasks.spawn(async move {
            sqlx::query("update ticket_type set ga_held = ga_held + 1 where ticket_type_id = $1")
                .bind(f.ga_type)
                .execute(&pool)
                .await
        });
    }
    let mut ok = 0;
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(_) => ok += 1,
            Err(sqlx::Error::Database(e)) => {
                assert_eq!(e.constraint(), Some("ticket_type_ga_quota_not_exceeded"));
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(ok, 100);
    let (held, sold): (i32, i32) =
        sqlx::query_as("select ga_held, ga_sold from ticket_type where ticket_type_id = $1")
            .bind(f.ga_type)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((held, sold), (100, 0));
    // Moving held to sold keeps the total; selling on top of a full quota is refused.
    sqlx::query("update ticket_type set ga_held = ga_held - 10, ga_sold = ga_sold + 10 where ticket_type_id = $1")
        .bind(f.ga_type)
        .execute(&pool)
        .await
        .unwrap();
    assert!(
        sqlx::query("update ticket_type set ga_sold = ga_sold + 1 where ticket_type_id = $1")
            .bind(f.ga_type)
            .execute(&pool)
            .await
            .is_err()
    );
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn no_row_can_point_at_another_tenants_data(pool: PgPool) {
    let theirs = fixture(&pool, 1, 10).await;
    let ours: Uuid =
        sqlx::query_scalar("insert into tenant (name) values ('ours') returning tenant_id")
            .fetch_one(&pool)
            .await
            .unwrap();
    let venue: Uuid = sqlx::query_scalar("select venue_id from event where event_id = $1")
        .bind(theirs.event)
        .fetch_one(&pool)
        .await
        .unwrap();
    let err = sqlx::query(
        "insert into event (tenant_id, venue_id, name, starts_at) values ($1, $2, 'Stolen', now())",
    )
    .bind(ours)
    .bind(venue)
    .execute(&pool)
    .await
    .unwrap_err();
    let sqlx::Error::Database(e) = err else {
        panic!("{err}")
    };
    assert_eq!(e.constraint(), Some("event_venue_same_tenant"));

    let err =
        sqlx::query("insert into onsale (tenant_id, event_id, starts_at) values ($1, $2, now())")
            .bind(ours)
            .bind(theirs.event)
            .execute(&pool)
            .await
            .unwrap_err();
    let sqlx::Error::Database(e) = err else {
        panic!("{err}")
    };
    assert_eq!(e.constraint(), Some("onsale_event_same_tenant"));
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn a_request_id_takes_effect_once_and_updates_are_timestamped(pool: PgPool) {
    let f = fixture(&pool, 1, 10).await;
    let insert = "insert into processed_request (tenant_id, user_id, request_id, command_id, result) values ($1, 'u1', 'r-1', 'c-1', '{}')";
    sqlx::query(insert)
        .bind(f.tenant)
        .execute(&pool)
        .await
        .unwrap();
    let err = sqlx::query(insert)
        .bind(f.tenant)
        .execute(&pool)
        .await
        .unwrap_err();
    let sqlx::Error::Database(e) = err else {
        panic!("{err}")
    };
    assert_eq!(e.constraint(), Some("processed_request_pkey"));

    // Timestamps are read as seconds, so the test needs no date-time crate.
    let before: f64 = sqlx::query_scalar(
        "select extract(epoch from updated_at)::float8 from event where event_id = $1",
    )
    .bind(f.event)
    .fetch_one(&pool)
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    sqlx::query("update event set status = 'published' where event_id = $1")
        .bind(f.event)
        .execute(&pool)
        .await
        .unwrap();
    let after: f64 = sqlx::query_scalar(
        "select extract(epoch from updated_at)::float8 from event where event_id = $1",
    )
    .bind(f.event)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(after > before, "the trigger moves updated_at forward");
}

#[tokio::test]
async fn the_demo_database_starts_migrates_and_is_removed_afterwards() {
    let pg = marquee_server::embedded_pg::EmbeddedPostgres::start()
        .await
        .expect("a private PostgreSQL starts from the machine's binaries");
    let dir = pg.dir().to_path_buf();
    let pid_file = dir.join("data/postmaster.pid");
    let pid = std::fs::read_to_string(&pid_file)
        .expect("the server wrote its pid file")
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let pool = marquee_server::db::connect(&pg.url(), 2, "test")
        .await
        .unwrap();
    marquee_server::db::migrate(&pool).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "select count(*) from information_schema.tables where table_schema = 'public' and table_name = 'seat_claim'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tables, 1);
    pool.close().await;
    drop(pg);
    assert!(!dir.exists(), "the data directory is removed");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the server process {pid} is gone"
    );
}

/// The database error's constraint name and SQLSTATE.
fn refused(err: sqlx::Error) -> (Option<String>, Option<String>) {
    let sqlx::Error::Database(e) = err else {
        panic!("{err}")
    };
    (
        e.constraint().map(str::to_owned),
        e.code().map(|c| c.into_owned()),
    )
}

const FOREIGN_KEY_VIOLATION: &str = "23503";

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn hot_path_references_are_checked_per_statement_as_strictly_as_foreign_keys(pool: PgPool) {
    let f = fixture(&pool, 2, 10).await;
    let other = fixture(&pool, 1, 10).await;
    assert!(try_hold_seat(&pool, &f, f.seats[0], "u1").await);
    let hold: Uuid = sqlx::query_scalar("select hold_id from hold where event_id = $1")
        .bind(f.event)
        .fetch_one(&pool)
        .await
        .unwrap();
    let claim = "insert into seat_claim (event_id, seat_id, tenant_id, state, hold_id)
                 select $1, s, $2, 'held', $3 from unnest($4::uuid[]) s";
    let claims = || async {
        sqlx::query_scalar::<_, i64>("select count(*) from seat_claim")
            .fetch_one(&pool)
            .await
            .unwrap()
    };

    // A batch with one seat of another event among good ones fails whole.
    let err = sqlx::query(claim)
        .bind(f.event)
        .bind(f.tenant)
        .bind(hold)
        .bind(vec![f.seats[1], other.seats[0]])
        .execute(&pool)
        .await
        .unwrap_err();
    assert_eq!(
        refused(err),
        (
            Some("seat_claim_seat_same_event".into()),
            Some(FOREIGN_KEY_VIOLATION.into())
        )
    );
    // A claim by a hold that does not exist.
    let err = sqlx::query(claim)
        .bind(f.event)
        .bind(f.tenant)
        .bind(Uuid::new_v4())
        .bind(vec![f.seats[1]])
        .execute(&pool)
        .await
        .unwrap_err();
    assert_eq!(
        refused(err).0.as_deref(),
        Some("seat_claim_hold_same_event")
    );
    assert_eq!(claims().await, 1, "nothing was written");

    // A hold on another event's onsale.
    let err = sqlx::query(
        "insert into hold (hold_id, tenant_id, event_id, onsale_id, user_id, expires_at)
         values (gen_random_uuid(), $1, $2, $3, 'u1', now())",
    )
    .bind(f.tenant)
    .bind(f.event)
    .bind(other.onsale)
    .execute(&pool)
    .await
    .unwrap_err();
    assert_eq!(
        refused(err).0.as_deref(),
        Some("hold_onsale_same_event_and_tenant")
    );
    // A result for a tenant that does not exist.
    let err = sqlx::query(
        "insert into processed_request (tenant_id, user_id, request_id, command_id, result)
         values ($1, 'u1', 'r-1', 'c-1', '{}')",
    )
    .bind(Uuid::new_v4())
    .execute(&pool)
    .await
    .unwrap_err();
    assert_eq!(
        refused(err).0.as_deref(),
        Some("processed_request_tenant_id_fkey")
    );

    // Parents still claimed cannot go, and a claim cannot move to another seat or hold.
    for delete in [
        "delete from seat where seat_id = $1",
        "delete from hold where hold_id = (select hold_id from seat_claim where seat_id = $1)",
    ] {
        let err = sqlx::query(delete)
            .bind(f.seats[0])
            .execute(&pool)
            .await
            .unwrap_err();
        assert_eq!(
            refused(err).1.as_deref(),
            Some(FOREIGN_KEY_VIOLATION),
            "{delete}"
        );
    }
    for update in [
        "update seat_claim set seat_id = (select seat_id from seat where seat_id <> $1 and event_id = seat_claim.event_id limit 1) where seat_id = $1",
        "update seat_claim set hold_id = gen_random_uuid() where seat_id = $1",
    ] {
        let err = sqlx::query(update)
            .bind(f.seats[0])
            .execute(&pool)
            .await
            .unwrap_err();
        assert_eq!(
            refused(err).1.as_deref(),
            Some(FOREIGN_KEY_VIOLATION),
            "{update}"
        );
    }
    assert_eq!(claims().await, 1);
    // The seat without a claim can go (with nothing pointing at it).
    sqlx::query("delete from seat where seat_id = $1")
        .bind(f.seats[1])
        .execute(&pool)
        .await
        .unwrap();
}
