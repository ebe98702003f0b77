//! The OpenAPI documents a node serves, composed from every domain's.
//!
//! - [`public`]: every route of the public listener, at `GET /openapi.json` there.
//! - [`internal`]: the internal listener's routes (payment hooks, publishing), at
//!   `GET /openapi.json` on that listener.
//!
//! Each domain documents its own routes and what only they answer. The answers every route of
//! a kind can give are added here, once, so no route forgets one: a route that takes a bearer
//! token answers 401 (no or a bad token) and 403 (a token without the role or tenant it
//! needs); a route that reads a body answers 400 (it cannot be read, or breaks a rule) and 413
//! (too big); a route that reaches the database or the channel engine answers 503 when they
//! are out of reach and 500 when something failed that should not have.

use utoipa::OpenApi as _;
use utoipa::openapi::path::Operation;
use utoipa::openapi::tag::{Tag, TagBuilder};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder};

/// Routes that touch neither the database nor the channel engine.
const SELF_CONTAINED: &[&str] = &[
    "/health",
    "/metrics",
    "/openapi.json",
    "/v1/tickets/public-key",
];

/// The public listener's document: catalog, public reads, tickets and check-in, orders,
/// analytics, the waiting room's draw record, the WebSocket upgrade and the probes.
pub fn public() -> OpenApi {
    let mut doc = crate::catalog::openapi();
    doc.merge(crate::payments::openapi());
    doc.merge(crate::waiting_room::http::openapi());
    doc.merge(crate::analytics::openapi());
    doc.merge(crate::sessions::openapi());
    doc.merge(crate::tickets::http::openapi());
    doc.merge(crate::hub::http::openapi());
    doc.merge(Probes::openapi());
    doc.info.title = "Marquee API".into();
    doc.info.description = Some(
        "Every HTTP route of a node's public listener. Errors are `{\"code\", \"message\"}` with \
         a stable `code` (docs/protocol.md §13). The realtime protocol over `/ws` is \
         docs/protocol.md."
            .into(),
    );
    doc.tags = Some(tags(&[
        (
            "catalog",
            "Operators' venues, events, seat maps, ticket types and onsales (role admin)",
        ),
        (
            "storefront",
            "Public listing, search, event detail, seat maps and availability",
        ),
        (
            "orders",
            "Operators' refunds and cancellations (role admin)",
        ),
        (
            "analytics",
            "What an event sold, for its operators (role admin)",
        ),
        (
            "sessions",
            "A buyer's connections, and ending a sign-in session (the buyer, or an operator)",
        ),
        ("tickets", "A buyer's tickets, their codes and transfers"),
        ("check-in", "Gates scanning tickets over HTTP (role gate)"),
        ("waiting room", "The pre-queue's public fairness record"),
        ("realtime", "The WebSocket upgrade"),
        ("probes", "Liveness, readiness and metrics"),
    ]));
    add_common_answers(&mut doc);
    doc
}

/// The internal listener's document: the payment hooks and publishing.
pub fn internal() -> OpenApi {
    let mut doc = crate::payments::hook::openapi();
    doc.merge(crate::hub::http::internal_openapi());
    doc.info.title = "Marquee internal API".into();
    doc.info.description = Some(
        "The internal listener (MARQUEE_INTERNAL_LISTEN): payment providers' signed hooks \
         (docs/payments.md) and operators' publishing. Keep it off the public internet."
            .into(),
    );
    doc.tags = Some(tags(&[
        (
            "hooks",
            "Payment providers report payments, signed (docs/payments.md)",
        ),
        (
            "publishing",
            "Operators publish on channels of their tenant (role admin)",
        ),
    ]));
    add_common_answers(&mut doc);
    doc
}

fn tags(list: &[(&str, &str)]) -> Vec<Tag> {
    list.iter()
        .map(|(name, about)| {
            TagBuilder::new()
                .name(*name)
                .description(Some(*about))
                .build()
        })
        .collect()
}

fn error(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build(),
    )
}

/// Adds the answers of its kind to every operation that does not list them already.
fn add_common_answers(doc: &mut OpenApi) {
    use marquee_protocol::ErrorBody;
    use utoipa::{PartialSchema as _, ToSchema as _};
    let components = doc.components.get_or_insert_with(Default::default);
    let mut schemas = vec![(ErrorBody::name().into_owned(), ErrorBody::schema())];
    ErrorBody::schemas(&mut schemas);
    for (name, schema) in schemas {
        components.schemas.entry(name).or_insert(schema);
    }
    {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        let reaches_state = !SELF_CONTAINED.contains(&path.as_str());
        let operations = [
            item.get.as_mut(),
            item.put.as_mut(),
            item.post.as_mut(),
            item.patch.as_mut(),
            item.delete.as_mut(),
        ];
        for op in operations.into_iter().flatten() {
            let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
            let reads_body = op.request_body.is_some();
            if secured {
                answer(
                    op,
                    "401",
                    "No token, or one that is expired, malformed or not ours",
                );
                answer(
                    op,
                    "403",
                    "The token lacks the role or the tenant this route needs",
                );
            }
            if reads_body {
                answer(
                    op,
                    "400",
                    "The body cannot be read or breaks a rule; the message names the field",
                );
                answer(op, "413", "The body is larger than the route takes");
            }
            if reaches_state {
                answer(
                    op,
                    "500",
                    "Something failed that should not have (the detail is logged, never sent)",
                );
                answer(
                    op,
                    "503",
                    "The database or the channel engine is out of reach; retry",
                );
            }
        }
    }
}

fn answer(op: &mut Operation, status: &str, description: &str) {
    op.responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| error(description));
}

/// The probes' documentation (the handlers are in [`super`]).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    super::health,
    super::ready,
    super::render_metrics,
    super::openapi_json
))]
struct Probes;
