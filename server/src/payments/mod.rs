//! Payments: providers start and refund payments and report what became of them on signed,
//! replay-protected hooks; operators refund and cancel orders.
//!
//! - [`hook`]: `POST /hooks/payments/{provider}` on the internal listener: checks the
//!   signature ([`crate::signature`]), records the provider's event once (its id is the
//!   deduplication key) and answers; a duplicate is acknowledged and ignored.
//! - [`provider`]: the built-in simulated provider (the provider contract itself is
//!   [`crate::settlement`]).
//! - [`operator`]: operators refunding and cancelling orders.
//!
//! What a payment event does to its order is booking's decision, made by the owner of the
//! order's event; the two meet only in [`crate::settlement`] and the `payment_event` table.

pub mod hook;
pub mod operator;
pub mod provider;

use crate::auth::Verifier;
use crate::secret::Secret;
use crate::settlement::PaymentProvider;
use axum::Router;
use axum::extract::FromRef;
use axum::routing::post;
use clap::ValueEnum;
use hook::{HookSecrets, HookState};
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use utoipa::OpenApi;

/// Payment settings: hook secrets and the provider in-process workers use.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
#[command(next_help_heading = "Payments")]
pub struct Args {
    /// Payment providers' hook secrets, `provider:secret` pairs separated by commas. A provider
    /// may be named more than once: all its secrets are active, which is how a secret is
    /// rotated. Without one for `simulated`, each node makes up its own at start-up, which
    /// works on one node only.
    #[arg(long, env = "MARQUEE_PAYMENT_HOOK_SECRETS", hide_env_values = true,
          value_parser = HookSecrets::parse, default_value = "")]
    pub hook_secrets: HookSecrets,

    /// How far a hook call's signed timestamp may lie from this node's clock, either way.
    #[arg(long, env = "MARQUEE_PAYMENT_HOOK_TOLERANCE", default_value = "300s", value_parser = crate::clock::parse_duration)]
    pub hook_tolerance: Duration,

    /// Which payment provider in-process workers start payments with: `none` (the default:
    /// orders wait for payment events from elsewhere) or `simulated` (built in; it calls this
    /// node's own hook and pays most checkouts with no money taken, so it runs only when
    /// asked for by name: `marquee demo` and tests do).
    #[arg(long, env = "MARQUEE_PAYMENT_PROVIDER", value_enum, default_value_t = ProviderKind::None)]
    pub provider: ProviderKind,

    /// How long the simulated provider takes to report a payment (and, for `processing`, to
    /// report its success after that).
    #[arg(long, env = "MARQUEE_SIMULATED_PAYMENT_DELAY", default_value = "2s", value_parser = crate::clock::parse_duration)]
    pub simulated_delay: Duration,

    /// How simulated payments end, as weights: `succeeded=8,failed=1,processing=1`
    /// (`processing` reports processing first, then success).
    #[arg(
        long,
        env = "MARQUEE_SIMULATED_PAYMENT_OUTCOMES",
        default_value = "succeeded=8,failed=1,processing=1"
    )]
    pub simulated_outcomes: provider::OutcomeMix,

    /// Where the simulated provider reports payments: the full URL of a hub node's
    /// `/hooks/payments/simulated` on its internal listener, or several, comma-separated,
    /// taken in turn (as a real provider's calls reach any node behind a load balancer; a call
    /// that fails is tried again at the next). Unset: the node's own internal listener. A
    /// `marquee worker` process has none, so it needs this (and the nodes' `simulated` secret
    /// in `--hook-secrets`) to start payments.
    #[arg(long, env = "MARQUEE_SIMULATED_HOOK_URL", value_delimiter = ',')]
    pub simulated_hook_url: Vec<String>,
}

impl Args {
    /// The provider a `marquee worker` process starts payments and refunds with: the
    /// simulated one when asked for, reporting to `--simulated-hook-url` and signing with the
    /// newest `simulated` hook secret, which the nodes must share (a worker cannot make one
    /// up: no node would know it).
    pub fn worker_provider(&self) -> anyhow::Result<Option<Arc<dyn PaymentProvider>>> {
        if self.provider != ProviderKind::Simulated {
            return Ok(None);
        }
        if self.simulated_hook_url.is_empty() {
            anyhow::bail!(
                "a worker with MARQUEE_PAYMENT_PROVIDER=simulated needs MARQUEE_SIMULATED_HOOK_URL (a node's internal /hooks/payments/simulated)"
            );
        }
        let urls = self.simulated_hook_url.clone();
        let secret = self
            .hook_secrets
            .of("simulated")
            .and_then(|s| s.last())
            .cloned()
            .ok_or_else(|| {
                anyhow::anyhow!("a worker with MARQUEE_PAYMENT_PROVIDER=simulated needs the nodes' `simulated:` secret in MARQUEE_PAYMENT_HOOK_SECRETS")
            })?;
        Ok(Some(Arc::new(provider::Simulated::new(
            urls,
            secret,
            self.simulated_delay,
            self.simulated_outcomes,
        ))))
    }
}

/// The payment providers Marquee can start payments with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    /// The built-in simulated provider.
    Simulated,
    /// None: payment events come from elsewhere.
    None,
}

/// What the operators' payment routes need. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PaymentsState {
    /// The system of record.
    pub db: PgPool,
    /// Verifies operators' tokens.
    pub verifier: Arc<Verifier>,
}

impl FromRef<PaymentsState> for Arc<Verifier> {
    fn from_ref(state: &PaymentsState) -> Self {
        state.verifier.clone()
    }
}

/// A node's payments: its hooks and its operators' routes.
#[derive(Debug, Clone)]
pub struct Payments {
    /// The hooks' settings (secrets included).
    pub hooks: HookState,
    state: PaymentsState,
    args: Args,
}

impl Payments {
    /// The payments of a node: operators' routes on `clients`, the hooks on `work` (the pool
    /// workers use, so a flood of client reads never delays a provider's call).
    pub fn new(clients: &PgPool, work: &PgPool, verifier: Arc<Verifier>, args: &Args) -> Self {
        let mut secrets = args.hook_secrets.clone();
        if secrets.of("simulated").is_none() {
            // The simulated provider runs in this process and signs with this secret, so
            // only this node accepts its calls: enough for one node and the demo.
            let made_up: [u8; 32] = rand::random();
            secrets.add("simulated", Secret::new(hex::encode(made_up)));
        }
        Self {
            hooks: HookState {
                db: work.clone(),
                secrets: Arc::new(secrets),
                tolerance_secs: args.hook_tolerance.as_secs(),
            },
            state: PaymentsState {
                db: clients.clone(),
                verifier,
            },
            args: args.clone(),
        }
    }

    /// The provider in-process workers start payments with: the simulated one, calling this
    /// node's hooks on `internal` (its internal listener) and signing with the newest
    /// `simulated` secret. `None` when another provider is configured or there is no internal
    /// listener (nothing would receive its calls).
    pub fn provider(&self, internal: Option<SocketAddr>) -> Option<Arc<dyn PaymentProvider>> {
        if self.args.provider != ProviderKind::Simulated {
            return None;
        }
        let urls = if self.args.simulated_hook_url.is_empty() {
            let mut addr = internal?;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            vec![format!("http://{addr}/hooks/payments/simulated")]
        } else {
            self.args.simulated_hook_url.clone()
        };
        let secret = self.hooks.secrets.of("simulated")?.last()?.clone();
        Some(Arc::new(provider::Simulated::new(
            urls,
            secret,
            self.args.simulated_delay,
            self.args.simulated_outcomes,
        )))
    }

    /// The operators' routes, on the public listener.
    pub fn routes(&self) -> Router {
        Router::new()
            .route(
                "/v1/admin/orders/{order_id}/refund",
                post(operator::refund_order),
            )
            .route(
                "/v1/admin/orders/{order_id}/cancel",
                post(operator::cancel_order),
            )
            .with_state(self.state.clone())
    }

    /// The payment hooks, on the internal listener.
    pub fn hook_routes(&self) -> Router {
        hook::router(self.hooks.clone())
    }
}

/// The OpenAPI document of the operators' payment routes.
#[derive(OpenApi)]
#[openapi(paths(operator::refund_order, operator::cancel_order))]
struct ApiDoc;

/// The OpenAPI document of the operators' payment routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
