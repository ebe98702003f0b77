//! The node's HTTP surface, composed: the hub's routes (`/ws`, `/internal/publish`), the
//! probes (`/health`, `/ready`, `/metrics`), and every domain's routes, with one fallback for
//! unknown routes and methods and one body limit.
//!
//! - [`error`]: [`error::ApiError`], the JSON body extractor and the constraint
//!   mapping every route uses (a leaf: it imports nothing of the server but metrics).
//! - [`extract`]: who is calling: bearer tokens, [`Caller`](extract::Caller) and
//!   [`Admin`](extract::Admin).
//! - [`openapi`]: the OpenAPI documents of both listeners, composed from every domain's.
//! - [`serve`]: a listener served with connection caps and header, body and idle deadlines.
//! - [`web`]: the buyer app, the dashboard and the gate scanner, embedded in the binary.
//!
//! Every error is rendered as `{"code", "message"}` with a stable `ErrorCode`.

pub mod error;
pub mod extract;
pub mod openapi;
pub mod serve;
pub mod web;

use crate::engine::ChannelEngine;
use crate::hub::Hub;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use error::ApiError;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// Largest request body any route reads (routes with smaller limits set their own).
pub const MAX_BODY: usize = 1024 * 1024;

/// What the probes report on.
#[derive(Debug, Clone)]
pub struct Probes {
    /// The hub, whose engine must be reachable for the node to be ready.
    pub hub: Hub,
    /// Renders `/metrics`.
    pub prometheus: PrometheusHandle,
    /// Cancelled when the node starts draining (shutdown, or a task it needs has died): it is
    /// then no longer ready, so load balancers stop sending it new connections.
    pub draining: CancellationToken,
    /// The node's Postgres pools, by name, whose use each scrape reports.
    pub pools: Vec<(&'static str, sqlx::PgPool)>,
}

/// The node's routes: the hub's, the probes, and `domains` (each with its state applied).
pub(crate) fn router(
    hub: Router,
    probes: Probes,
    domains: impl IntoIterator<Item = Router>,
) -> Router {
    let mut app = hub.merge(
        Router::new()
            .route("/health", get(health))
            .route("/ready", get(ready))
            .route("/metrics", get(render_metrics))
            .with_state(probes),
    );
    for routes in domains {
        app = app.merge(routes);
    }
    app.fallback(pages_or_not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(crate::security::layer))
        .layer(tower_http::compression::CompressionLayer::new())
}

/// The OpenAPI document of every public route ([`openapi::public`]).
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi::public()
}

/// `GET /openapi.json` on the public listener.
pub(crate) fn openapi_routes() -> Router {
    Router::new().route("/openapi.json", get(openapi_json))
}

/// `GET /openapi.json` on the internal listener: its own document.
pub(crate) fn internal_openapi_routes() -> Router {
    Router::new().route("/openapi.json", get(|| async { Json(openapi::internal()) }))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "probes",
    responses((status = 200, description = "The OpenAPI document of this listener", body = Object)))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}

/// The web pages and their files ([`web`]) for what no route took; the JSON 404 otherwise.
async fn pages_or_not_found(
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    match web::serve(&method, &uri, &headers) {
        Some(page) => page,
        None => error::not_found().await.into_response(),
    }
}

/// A probe's answer.
#[derive(Serialize, utoipa::ToSchema)]
struct Status {
    /// `ok` (alive) or `ready`.
    status: &'static str,
    /// The channel engine: `memory` or `redis`.
    engine: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "probes",
    responses((status = 200, description = "Alive", body = Status)))]
async fn health(State(probes): State<Probes>) -> Json<Status> {
    Json(Status {
        status: "ok",
        engine: probes.hub.engine().name(),
    })
}

/// Readiness: the channel engine is reachable and the node is not draining (503 otherwise).
#[utoipa::path(get, path = "/ready", tag = "probes",
    responses((status = 200, description = "Ready for traffic", body = Status)))]
async fn ready(State(probes): State<Probes>) -> Result<Json<Status>, ApiError> {
    use axum::http::StatusCode;
    use marquee_protocol::ErrorCode;
    if probes.draining.is_cancelled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "this node is draining",
        ));
    }
    probes.hub.engine().ready().await.map_err(|e| {
        tracing::warn!(error = %e, "not ready");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "the channel engine is unreachable",
        )
    })?;
    Ok(Json(Status {
        status: "ready",
        engine: probes.hub.engine().name(),
    }))
}

/// Prometheus metrics, in the text exposition format. Readiness, the channel engine and the
/// database pools are sampled at each scrape (the engine with a bounded ping).
#[utoipa::path(get, path = "/metrics", tag = "probes",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
async fn render_metrics(State(probes): State<Probes>) -> impl IntoResponse {
    let engine = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        probes.hub.engine().ready(),
    )
    .await;
    let reachable = matches!(engine, Ok(Ok(())));
    let m = &crate::metrics::METRICS;
    if probes.hub.engine().name() == "redis" {
        m.redis_up(reachable);
    }
    let ready = reachable && !probes.draining.is_cancelled();
    m.ready.set(if ready { 1.0 } else { 0.0 });
    for (name, pool) in &probes.pools {
        m.db_pool(
            name,
            pool.size(),
            pool.num_idle(),
            pool.options().get_max_connections(),
        );
    }
    metrics_text(&probes.prometheus)
}

/// The process's metrics in Prometheus's text format, its memory and CPU read just now.
pub(crate) fn metrics_text(prometheus: &PrometheusHandle) -> axum::response::Response {
    crate::metrics::sample_process();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus.render(),
    )
        .into_response()
}

/// The probes of a process without a hub (`marquee worker`): `/health` (alive) and
/// `/metrics` (with its pool `work` sampled at each scrape); anything else is the JSON 404.
pub(crate) fn worker_routes(engine: &'static str, pool: sqlx::PgPool) -> Router {
    let prometheus = crate::metrics::prometheus();
    Router::new()
        .route(
            "/health",
            get(move || async move {
                Json(Status {
                    status: "ok",
                    engine,
                })
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let prometheus = prometheus.clone();
                let pool = pool.clone();
                async move {
                    crate::metrics::METRICS.db_pool(
                        "work",
                        pool.size(),
                        pool.num_idle(),
                        pool.options().get_max_connections(),
                    );
                    metrics_text(&prometheus)
                }
            }),
        )
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
}
