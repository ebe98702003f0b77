//! The catalog: what is on sale, over HTTP (JSON). Operators manage venues, events, seat maps,
//! price categories, ticket types and onsales of their own tenant ([`admin`]); anyone can list,
//! search and read a tenant's published events ([`public`]). The OpenAPI document for all of
//! it is generated from the handlers and served at `/openapi.json`.
//!
//! - [`layout`]: the compact layout spec that creates a whole seat map in one request.
//! - [`demo`]: the catalog `marquee demo` seeds.
//!
//! Admin routes need a bearer token with the `admin` role and a `tenant` claim; every query is
//! scoped by that tenant, and another tenant's ids answer `404 not_found` exactly like missing
//! ones. Path ids that are not UUIDs answer `404 not_found` too: to a caller, a malformed id is
//! just an id that does not exist. Every admin write adds an `audit_log` row in its transaction.

pub mod admin;
pub mod demo;
pub mod layout;
pub mod public;

use crate::auth::Verifier;
use crate::http::error::ApiError;
use axum::Router;
use axum::extract::FromRef;
use axum::http::StatusCode;
use axum::routing::{get, patch, post, put};
use marquee_protocol::ErrorCode;
use sqlx::PgPool;
use std::sync::Arc;
use utoipa::OpenApi;
use uuid::Uuid;

pub use demo::{DemoCatalog, OnsaleSpec, seed_demo, seed_venue};

/// What the catalog routes share.
#[derive(Debug, Clone)]
pub struct CatalogState {
    /// The system of record.
    pub db: PgPool,
    /// Verifies operators' tokens.
    pub verifier: Arc<Verifier>,
    /// Switches a waiting room's line the moment an operator pauses or resumes its onsale
    /// (none on a node without a waiting room: its controller follows within a second).
    pub pauses: Option<Arc<dyn crate::admission::Pauses>>,
}

impl FromRef<CatalogState> for Arc<Verifier> {
    fn from_ref(state: &CatalogState) -> Self {
        state.verifier.clone()
    }
}

/// A catalog request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// No such thing for this caller.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The input is invalid.
    #[error("{0}")]
    BadRequest(String),
    /// The change conflicts with what exists.
    #[error("{0}")]
    Conflict(String),
    /// Postgres failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, e.to_string())
            }
            CatalogError::BadRequest(m) => {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, m)
            }
            CatalogError::Conflict(m) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, m)
            }
            CatalogError::Db(e) => ApiError::from(e),
        }
    }
}

impl axum::response::IntoResponse for CatalogError {
    fn into_response(self) -> axum::response::Response {
        ApiError::from(self).into_response()
    }
}

/// Maps a unique or check violation on a named constraint to a client error; anything else
/// stays a database error.
pub(crate) fn on_constraint(
    e: sqlx::Error,
    map: &[crate::http::error::ConstraintError<CatalogError>],
) -> CatalogError {
    crate::http::error::on_constraint(e, map)
}

/// A path id: a malformed one is as missing as an unknown one.
pub(crate) fn id(raw: &str, what: &'static str) -> Result<Uuid, CatalogError> {
    Uuid::parse_str(raw).map_err(|_| CatalogError::NotFound(what))
}

/// The OpenAPI document of the catalog.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Marquee catalog API",
        description = "Venues, events, seat maps, ticket types and onsales; public listing and search. Errors are `{\"code\", \"message\"}` with a stable code."
    ),
    paths(
        admin::put_tenant,
        admin::create_venue,
        admin::list_venues,
        admin::get_venue,
        admin::create_event,
        admin::list_events,
        admin::get_event,
        admin::set_event_status,
        admin::create_category,
        admin::list_categories,
        admin::create_seat_map_route,
        admin::create_ticket_type,
        admin::list_ticket_types,
        admin::create_onsale,
        admin::list_onsales,
        admin::get_onsale,
        admin::set_onsale_status,
        admin::set_onsale_admission,
        public::search_events,
        public::event_detail,
        public::event_seats,
        public::availability,
    ),
    components(schemas(marquee_protocol::ErrorBody))
)]
struct ApiDoc;

/// The OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::openapi::{RefOr, Schema};
    let mut doc = ApiDoc::openapi();
    // An admission change names at least one setting. Set here because utoipa-gen 5.5 writes
    // a `min_properties` attribute as `maxProperties`.
    let admission = doc
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut("AdmissionChange"));
    if let Some(RefOr::T(Schema::Object(object))) = admission {
        object.min_properties = Some(1);
    }
    doc
}

/// Every catalog route, with state applied.
pub(crate) fn router(state: CatalogState) -> Router {
    Router::new()
        .route("/v1/admin/tenant", put(admin::put_tenant))
        .route(
            "/v1/admin/venues",
            post(admin::create_venue).get(admin::list_venues),
        )
        .route("/v1/admin/venues/{venue_id}", get(admin::get_venue))
        .route(
            "/v1/admin/events",
            post(admin::create_event).get(admin::list_events),
        )
        .route("/v1/admin/events/{event_id}", get(admin::get_event))
        .route(
            "/v1/admin/events/{event_id}/status",
            patch(admin::set_event_status),
        )
        .route(
            "/v1/admin/events/{event_id}/price-categories",
            post(admin::create_category).get(admin::list_categories),
        )
        .route(
            "/v1/admin/events/{event_id}/seat-map",
            post(admin::create_seat_map_route),
        )
        .route(
            "/v1/admin/events/{event_id}/ticket-types",
            post(admin::create_ticket_type).get(admin::list_ticket_types),
        )
        .route(
            "/v1/admin/events/{event_id}/onsales",
            post(admin::create_onsale).get(admin::list_onsales),
        )
        .route("/v1/admin/onsales/{onsale_id}", get(admin::get_onsale))
        .route(
            "/v1/admin/onsales/{onsale_id}/status",
            patch(admin::set_onsale_status),
        )
        .route(
            "/v1/admin/onsales/{onsale_id}/admission",
            patch(admin::set_onsale_admission),
        )
        .route("/v1/tenants/{tenant_id}/events", get(public::search_events))
        .route(
            "/v1/tenants/{tenant_id}/events/{event_id}",
            get(public::event_detail),
        )
        .route(
            "/v1/tenants/{tenant_id}/events/{event_id}/seats",
            get(public::event_seats),
        )
        .route(
            "/v1/tenants/{tenant_id}/events/{event_id}/availability",
            get(public::availability),
        )
        .with_state(state)
}
