//! The catalog over real HTTP: a node with a fresh Postgres database per test.

use crate::common;

use common::{SECRET, TestNode, claims, http};
use marquee_server::auth::sign_hs256;
use marquee_server::secret::Secret;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

fn database_url(pool: &PgPool) -> String {
    let db = pool.connect_options().get_database().unwrap().to_owned();
    let base = std::env::var("DATABASE_URL").unwrap();
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{db}")
}

async fn node(pool: &PgPool) -> TestNode {
    let mut config = common::config();
    config.database_url = Some(Secret::new(database_url(pool)));
    config.database_pool = 4;
    TestNode::start(config).await
}

fn admin(tenant: Uuid) -> String {
    let mut c = claims("operator", &["admin"], 3600);
    c.tenant = Some(tenant.to_string());
    sign_hs256(SECRET, &c)
}

struct Api<'a> {
    node: &'a TestNode,
    token: String,
}

impl Api<'_> {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let auth = format!("Bearer {}", self.token);
        let body = body.map(|b| b.to_string());
        let response = http(
            self.node.addr,
            method,
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.as_deref(),
        )
        .await;
        let json = if response.body.is_empty() {
            Value::Null
        } else {
            response.json()
        };
        (response.status, json)
    }

    async fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, json) = self.call(method, path, Some(body)).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {json}"
        );
        json
    }
}

async fn public(node: &TestNode, path: &str) -> (u16, Value) {
    let response = http(node.addr, "GET", path, &[], None).await;
    (response.status, response.json())
}

const SPEC: &str = r#"{"focal": {"x": 0, "y": 0}, "sections": [
  {"name": "Stalls", "rows": "A-D", "seats": "1-10", "origin": {"x": -4.5, "y": 2},
   "categories": [{"rows": "A-B", "category": "Premium"}, {"rows": "C-D", "category": "Standard"}],
   "accessible": [{"rows": "A", "seats": "1-2"}]},
  {"name": "Balcony", "rows": "1-2", "seats": "1-5", "categories": [{"rows": "1-2", "category": "Standard"}]}
]}"#;

/// A published event with two categories, a seat map, ticket types and an onsale.
async fn set_up(
    api: &Api<'_>,
    name: &str,
    city: &str,
    category: &str,
    days: i64,
) -> (String, String) {
    api.ok("PUT", "/v1/admin/tenant", json!({"name": "Box office"}))
        .await;
    let venue = api
        .ok(
            "POST",
            "/v1/admin/venues",
            json!({"name": "Hall", "city": city}),
        )
        .await;
    let starts = (time::OffsetDateTime::now_utc() + time::Duration::days(days))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let event = api
        .ok(
            "POST",
            "/v1/admin/events",
            json!({"venue_id": venue["venue_id"], "name": name, "category": category, "starts_at": starts}),
        )
        .await;
    let e = event["event_id"].as_str().unwrap().to_owned();
    let mut categories = Vec::new();
    for (name, price) in [("Premium", 9000), ("Standard", 5000)] {
        let c = api
            .ok(
                "POST",
                &format!("/v1/admin/events/{e}/price-categories"),
                json!({"name": name, "price_minor": price, "currency": "EUR"}),
            )
            .await;
        categories.push(c["price_category_id"].as_str().unwrap().to_owned());
    }
    let map = api
        .ok(
            "POST",
            &format!("/v1/admin/events/{e}/seat-map"),
            serde_json::from_str(SPEC).unwrap(),
        )
        .await;
    assert_eq!(
        (map["sections"].as_u64(), map["seats"].as_u64()),
        (Some(2), Some(50))
    );
    for (i, c) in categories.iter().enumerate() {
        api.ok(
            "POST",
            &format!("/v1/admin/events/{e}/ticket-types"),
            json!({"name": format!("Seat {i}"), "kind": "seated", "price_category_id": c, "price_minor": 5000, "currency": "EUR"}),
        )
        .await;
    }
    api.ok(
        "POST",
        &format!("/v1/admin/events/{e}/ticket-types"),
        json!({"name": "Standing", "kind": "general_admission", "price_minor": 2000, "currency": "EUR", "ga_quota": 300}),
    )
    .await;
    let onsale = api
        .ok(
            "POST",
            &format!("/v1/admin/events/{e}/onsales"),
            json!({"starts_at": starts, "requires_admission": false}),
        )
        .await;
    api.ok(
        "PATCH",
        &format!("/v1/admin/events/{e}/status"),
        json!({"status": "published"}),
    )
    .await;
    (e, onsale["onsale_id"].as_str().unwrap().to_owned())
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn an_operator_builds_an_event_and_the_public_finds_it(pool: PgPool) {
    let node = node(&pool).await;
    let tenant = Uuid::new_v4();
    let api = Api {
        node: &node,
        token: admin(tenant),
    };
    let (event, onsale) = set_up(&api, "Jazz at midnight", "Lisbon", "concert", 10).await;
    let (other, _) = set_up(&api, "Chamber strings", "Porto", "classical", 40).await;
    let base = format!("/v1/tenants/{tenant}/events");
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(&public(&node, &base).await.1),
        ["Jazz at midnight", "Chamber strings"]
    );
    assert_eq!(
        names(&public(&node, &format!("{base}?q=jazz")).await.1),
        ["Jazz at midnight"]
    );
    assert_eq!(
        names(&public(&node, &format!("{base}?category=classical")).await.1),
        ["Chamber strings"]
    );
    assert_eq!(
        names(&public(&node, &format!("{base}?city=PORTO")).await.1),
        ["Chamber strings"]
    );
    let cutoff = (time::OffsetDateTime::now_utc() + time::Duration::days(20))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
        .replace('+', "%2B");
    assert_eq!(
        names(&public(&node, &format!("{base}?to={cutoff}")).await.1),
        ["Jazz at midnight"]
    );
    assert_eq!(
        names(&public(&node, &format!("{base}?from={cutoff}")).await.1),
        ["Chamber strings"]
    );

    let (status, detail) = public(&node, &format!("{base}/{event}")).await;
    assert_eq!(status, 200);
    assert_eq!(detail["venue"]["city"], "Lisbon");
    assert_eq!(detail["ticket_types"].as_array().unwrap().len(), 3);
    assert_eq!(detail["onsales"][0]["onsale_id"], onsale.as_str());
    let (_, seats) = public(&node, &format!("{base}/{event}/seats")).await;
    let seats = seats["seats"].as_array().unwrap();
    assert_eq!(seats.len(), 50);
    assert!(seats.iter().enumerate().all(|(i, s)| s["index"] == i));
    assert_eq!(
        (seats[0]["row"].as_str(), seats[0]["accessible"].as_bool()),
        (Some("A"), Some(true))
    );
    assert_eq!(seats[40]["section"], "Balcony");
    let (_, availability) = public(&node, &format!("{base}/{event}/availability")).await;
    assert_eq!(
        availability["categories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].clone(), c["total"].clone(), c["free"].clone()))
            .collect::<Vec<_>>(),
        [
            (json!("Premium"), json!(20), json!(20)),
            (json!("Standard"), json!(30), json!(30))
        ]
    );
    assert_eq!(availability["general_admission"][0]["available"], 300);
    // Every write left an audit row.
    let audited: i64 = sqlx::query_scalar("select count(*) from audit_log where tenant_id = $1")
        .bind(tenant)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(audited >= 20, "{audited}");
    let _ = other;
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn another_tenant_sees_nothing_and_gets_404_for_foreign_ids(pool: PgPool) {
    let node = node(&pool).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let api_a = Api {
        node: &node,
        token: admin(a),
    };
    let api_b = Api {
        node: &node,
        token: admin(b),
    };
    let (event, onsale) = set_up(&api_a, "Private show", "Lisbon", "concert", 5).await;
    api_b
        .ok("PUT", "/v1/admin/tenant", json!({"name": "Other"}))
        .await;
    let venue = api_a.call("GET", "/v1/admin/venues", None).await.1[0]["venue_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let not_found =
        |what: &str| json!({"code": "not_found", "message": format!("{what} not found")});
    for (path, what) in [
        (format!("/v1/admin/venues/{venue}"), "venue"),
        (format!("/v1/admin/events/{event}"), "event"),
        (format!("/v1/admin/onsales/{onsale}"), "onsale"),
        (format!("/v1/admin/events/{event}/ticket-types"), "event"),
        ("/v1/admin/events/not-a-uuid".to_owned(), "event"),
    ] {
        assert_eq!(
            api_b.call("GET", &path, None).await,
            (404, not_found(what)),
            "{path}"
        );
    }
    let (status, _) = api_b
        .call(
            "PATCH",
            &format!("/v1/admin/events/{event}/status"),
            Some(json!({"status": "cancelled"})),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        api_b.call("GET", "/v1/admin/events", None).await.1,
        json!([])
    );
    assert_eq!(
        public(&node, &format!("/v1/tenants/{b}/events")).await.1,
        json!([])
    );
    assert_eq!(
        public(&node, &format!("/v1/tenants/{b}/events/{event}"))
            .await
            .0,
        404
    );
    // A draft is invisible to the public, even to its own tenant's path.
    let draft = api_a
        .ok(
            "POST",
            "/v1/admin/events",
            json!({"venue_id": venue, "name": "Secret", "starts_at": "2030-01-01T20:00:00Z"}),
        )
        .await;
    assert_eq!(
        public(
            &node,
            &format!(
                "/v1/tenants/{a}/events/{}",
                draft["event_id"].as_str().unwrap()
            )
        )
        .await
        .0,
        404
    );
    let status: String =
        sqlx::query_scalar("select status::text from event where event_id = $1::uuid")
            .bind(&event)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(status, "published", "the foreign PATCH changed nothing");
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn bad_requests_get_exact_errors_and_change_nothing(pool: PgPool) {
    let node = node(&pool).await;
    let tenant = Uuid::new_v4();
    let api = Api {
        node: &node,
        token: admin(tenant),
    };
    // Before the tenant exists.
    assert_eq!(
        api.call(
            "POST",
            "/v1/admin/venues",
            Some(json!({"name": "Hall", "city": "Lisbon"}))
        )
        .await,
        (
            404,
            json!({"code": "not_found", "message": "tenant (create it first with PUT /v1/admin/tenant) not found"})
        )
    );
    let (event, _) = set_up(&api, "Show", "Lisbon", "concert", 3).await;
    let seats_before: i64 = sqlx::query_scalar("select count(*) from seat")
        .fetch_one(&pool)
        .await
        .unwrap();
    // Bad JSON.
    let response = http(
        node.addr,
        "POST",
        "/v1/admin/venues",
        &[
            ("authorization", &format!("Bearer {}", api.token)),
            ("content-type", "application/json"),
        ],
        Some("{\"name\": "),
    )
    .await;
    assert_eq!(
        (response.status, response.json()["code"].clone()),
        (400, json!("bad_request"))
    );
    // A second seat map.
    assert_eq!(
        api.call(
            "POST",
            &format!("/v1/admin/events/{event}/seat-map"),
            Some(serde_json::from_str(SPEC).unwrap())
        )
        .await,
        (
            409,
            json!({"code": "conflict", "message": "the event already has a seat map"})
        )
    );
    // A fresh event for the map errors.
    let venue = api.call("GET", "/v1/admin/venues", None).await.1[0]["venue_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let fresh = api
        .ok(
            "POST",
            "/v1/admin/events",
            json!({"venue_id": venue, "name": "Fresh", "starts_at": "2030-01-01T20:00:00Z"}),
        )
        .await;
    let fresh = fresh["event_id"].as_str().unwrap();
    api.ok(
        "POST",
        &format!("/v1/admin/events/{fresh}/price-categories"),
        json!({"name": "Standard", "price_minor": 100, "currency": "EUR"}),
    )
    .await;
    let unknown_category = json!({"sections": [{"name": "S", "rows": "A", "seats": "1-3", "categories": [{"rows": "A", "category": "Gold"}]}]});
    assert_eq!(
        api.call(
            "POST",
            &format!("/v1/admin/events/{fresh}/seat-map"),
            Some(unknown_category)
        )
        .await,
        (
            400,
            json!({"code": "bad_request", "message": "no price category named \"Gold\" on this event"})
        )
    );
    let uncategorised = json!({"sections": [{"name": "S", "rows": "A-B", "seats": "1-3", "categories": [{"rows": "A", "category": "Standard"}]}]});
    assert_eq!(
        api.call(
            "POST",
            &format!("/v1/admin/events/{fresh}/seat-map"),
            Some(uncategorised)
        )
        .await,
        (
            400,
            json!({"code": "bad_request", "message": "row B of section S has no price category"})
        )
    );
    let huge = json!({"sections": [{"name": "S", "rows": "1-500", "seats": "1-300", "categories": [{"rows": "1-500", "category": "Standard"}]}]});
    assert_eq!(
        api.call(
            "POST",
            &format!("/v1/admin/events/{fresh}/seat-map"),
            Some(huge)
        )
        .await
        .0,
        400
    );
    assert_eq!(
        api.call(
            "POST",
            &format!("/v1/admin/events/{fresh}/ticket-types"),
            Some(json!({"name": "Odd", "kind": "seated", "price_minor": 1, "currency": "EUR", "ga_quota": 5})),
        )
        .await,
        (400, json!({"code": "bad_request", "message": "a seated ticket type needs a price_category_id and no ga_quota"}))
    );
    assert_eq!(
        api.call(
            "PATCH",
            &format!("/v1/admin/events/{fresh}/status"),
            Some(json!({"status": "sold_out"}))
        )
        .await,
        (
            409,
            json!({"code": "conflict", "message": "an event cannot go from draft to sold_out"})
        )
    );
    let seats_after: i64 = sqlx::query_scalar("select count(*) from seat")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        seats_before, seats_after,
        "no refused request created seats"
    );
    let maps: i64 = sqlx::query_scalar("select count(*) from seat_map")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(maps, 1);
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn the_admin_api_needs_a_token_with_the_admin_role_and_a_tenant(pool: PgPool) {
    let node = node(&pool).await;
    let response = http(node.addr, "GET", "/v1/admin/venues", &[], None).await;
    assert_eq!(
        (response.status, response.json()["code"].clone()),
        (401, json!("token_missing"))
    );
    let mut buyer = claims("buyer", &[], 3600);
    buyer.tenant = Some(Uuid::new_v4().to_string());
    let api = Api {
        node: &node,
        token: sign_hs256(SECRET, &buyer),
    };
    assert_eq!(
        api.call("GET", "/v1/admin/venues", None).await,
        (
            403,
            json!({"code": "forbidden", "message": "the catalog admin API needs the admin role and a tenant"})
        )
    );
    let no_tenant = Api {
        node: &node,
        token: sign_hs256(SECRET, &claims("op", &["admin"], 3600)),
    };
    assert_eq!(no_tenant.call("GET", "/v1/admin/venues", None).await.0, 403);
    node.shutdown().await;
}

/// Every route string in the server's source (`.route("/path", …)`), read from the files.
fn routes_in_source() -> Vec<String> {
    let mut files = Vec::new();
    crate::layers::rust_files(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, _) in text.match_indices(".route(") {
            let rest = text[i + ".route(".len()..].trim_start();
            if let Some(rest) = rest.strip_prefix('"') {
                out.push(rest[..rest.find('"').unwrap()].to_owned());
            }
        }
    }
    out
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn the_openapi_documents_list_every_route_the_server_has(pool: PgPool) {
    let node = node(&pool).await;
    let (status, served) = public(&node, "/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(
        served,
        serde_json::to_value(marquee_server::http::openapi::public()).unwrap(),
        "the node serves the composed document"
    );
    let documented: Vec<String> = [
        marquee_server::http::openapi::public(),
        marquee_server::http::openapi::internal(),
    ]
    .iter()
    .flat_map(|doc| doc.paths.paths.keys().cloned())
    .collect();
    let routes = routes_in_source();
    assert!(routes.len() > 30, "the source was read: {routes:?}");
    for route in &routes {
        assert!(
            documented.contains(route),
            "{route} is served but in no OpenAPI document"
        );
    }
    node.shutdown().await;
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn the_demo_catalog_is_a_live_onsale_over_a_dense_seat_map(pool: PgPool) {
    let shop = marquee_server::catalog::seed_demo(&pool).await.unwrap();
    assert!(shop.seats > 2000, "{}", shop.seats);
    let (count, max): (i64, i32) =
        sqlx::query_as("select count(*), max(seat_index) from seat where event_id = $1")
            .bind(shop.event_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((count as usize, max as usize + 1), (shop.seats, shop.seats));
    let (status, admission): (String, bool) =
        sqlx::query_as("select status::text, requires_admission from onsale where onsale_id = $1")
            .bind(shop.onsale_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), admission), ("live", true));
    assert_eq!(shop.categories.len(), 4);
}

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn references_in_bodies_bounds_and_unknown_fields_are_refused_exactly(pool: PgPool) {
    let node = node(&pool).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let api = Api {
        node: &node,
        token: admin(a),
    };
    let other = Api {
        node: &node,
        token: admin(b),
    };
    let (event, _) = set_up(&api, "Show", "Lisbon", "concert", 3).await;
    let (other_event, _) = set_up(&other, "Elsewhere", "Porto", "concert", 3).await;
    let (second, _) = set_up(&api, "Second", "Lisbon", "concert", 4).await;
    let foreign_venue = other.call("GET", "/v1/admin/venues", None).await.1[0]["venue_id"].clone();
    let categories = |event: String| format!("/v1/admin/events/{event}/price-categories");
    let second_category =
        api.call("GET", &categories(second), None).await.1[0]["price_category_id"].clone();
    let foreign_category =
        other.call("GET", &categories(other_event), None).await.1[0]["price_category_id"].clone();
    let bad = |message: &str| (400, json!({"code": "bad_request", "message": message}));
    let events_before = api.call("GET", "/v1/admin/events", None).await.1;
    assert_eq!(
        api.call(
            "POST",
            "/v1/admin/events",
            Some(json!({"venue_id": foreign_venue, "name": "Taken", "starts_at": "2030-01-01T20:00:00Z"}))
        )
        .await,
        bad("venue_id names no venue of this tenant"),
        "another tenant's venue is named like a missing one, and 400: the route exists"
    );
    for category in [second_category, foreign_category] {
        assert_eq!(
            api.call(
                "POST",
                &format!("/v1/admin/events/{event}/ticket-types"),
                Some(json!({"name": "Borrowed", "kind": "seated", "price_category_id": category, "price_minor": 1, "currency": "EUR"}))
            )
            .await,
            bad("price_category_id names no price category of this event"),
            "another event's category (of this tenant or another) sells nothing here"
        );
    }
    assert_eq!(
        api.call(
            "PUT",
            "/v1/admin/tenant",
            Some(json!({"tenant_id": b, "name": "Mine now"}))
        )
        .await,
        bad("tenant_id must be the token's tenant (or left out)")
    );
    let (status, body) = api
        .call(
            "POST",
            "/v1/admin/venues",
            Some(json!({"name": "Hall", "city": "Lisbon", "capacity": 10})),
        )
        .await;
    assert_eq!(status, 400, "an unknown field is refused, not dropped");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `capacity`"),
        "{body}"
    );
    // A whole number written as a float is the integer (JSON Schema's reading).
    let (status, created) = api
        .call(
            "POST",
            &format!("/v1/admin/events/{event}/price-categories"),
            Some(json!({"name": "Floaty", "price_minor": 2500.0, "currency": "EUR"})),
        )
        .await;
    assert_eq!((status, created["price_minor"].clone()), (201, json!(2500)));
    let (status, _) = api
        .call(
            "POST",
            &format!("/v1/admin/events/{event}/price-categories"),
            Some(json!({"name": "Half", "price_minor": 2500.5, "currency": "EUR"})),
        )
        .await;
    assert_eq!(status, 400, "a fraction is not an amount in minor units");
    for query in ["limit=0", "limit=101", "offset=-1", "offset=10001"] {
        assert_eq!(
            public(&node, &format!("/v1/tenants/{a}/events?{query}")).await,
            bad("limit must be 1 to 100 and offset 0 to 10000"),
            "{query}"
        );
    }
    for tenant in [Uuid::new_v4().to_string(), "not-a-uuid".to_owned()] {
        assert_eq!(
            public(&node, &format!("/v1/tenants/{tenant}/events")).await,
            (
                404,
                json!({"code": "not_found", "message": "tenant not found"})
            )
        );
    }
    assert_eq!(
        api.call("GET", "/v1/admin/events", None).await.1,
        events_before,
        "no refused request created an event"
    );
    let types: i64 = sqlx::query_scalar("select count(*) from ticket_type where name = 'Borrowed'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(types, 0);
    node.shutdown().await;
}
