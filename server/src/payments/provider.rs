//! Payment providers: how an order's payment is started, and refunded.
//!
//! A provider is asked to create a payment when an order is checked out, and to refund one when
//! a late payment found its seats sold. What became of a payment always comes back the same
//! way, whatever the provider: a signed call to `POST /hooks/payments/{provider}` ([`super::hook`]).
//!
//! [`Simulated`] is the built-in provider for development, the demo and tests: it calls the
//! hook itself after a delay, with a configurable mix of outcomes, signed exactly as a real
//! provider signs.
//!
//! Like a real provider it is idempotent per key: everything it makes of a call (the payment
//! reference, the outcome, the ids of the events it reports) is derived from the call's
//! idempotency key, so a call made again after a crash reports the very same events, which the
//! hook records once.

use crate::outgoing::Outgoing;
use crate::secret::Secret;
use crate::settlement::{PaymentProvider, PaymentRequest, ProviderError};
use crate::signature;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How a simulated payment ends, as weights: e.g. 8 succeeded, 1 failed, 1 processing (which
/// then succeeds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutcomeMix {
    /// Weight of payments that succeed.
    pub succeeded: u32,
    /// Weight of payments that fail.
    pub failed: u32,
    /// Weight of payments that report `processing` first and succeed after another delay.
    pub processing: u32,
}

impl Default for OutcomeMix {
    fn default() -> Self {
        Self {
            succeeded: 8,
            failed: 1,
            processing: 1,
        }
    }
}

impl std::str::FromStr for OutcomeMix {
    type Err = String;

    /// Parses `succeeded=8,failed=1,processing=1` (outcomes left out weigh 0).
    fn from_str(text: &str) -> Result<Self, String> {
        let mut mix = Self {
            succeeded: 0,
            failed: 0,
            processing: 0,
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not outcome=weight"))?;
            let weight: u32 = weight
                .parse()
                .map_err(|_| format!("`{weight}` is not a whole number"))?;
            match name {
                "succeeded" => mix.succeeded = weight,
                "failed" => mix.failed = weight,
                "processing" => mix.processing = weight,
                other => {
                    return Err(format!(
                        "unknown outcome `{other}` (succeeded, failed, processing)"
                    ));
                }
            }
        }
        if mix.succeeded + mix.failed + mix.processing == 0 {
            return Err("at least one outcome needs a weight".into());
        }
        Ok(mix)
    }
}

/// The outcome of one simulated payment: the event types it reports, in order.
fn draw(mix: OutcomeMix, roll: u32) -> &'static [&'static str] {
    let total = mix.succeeded + mix.failed + mix.processing;
    let roll = roll % total;
    if roll < mix.succeeded {
        &["payment.succeeded"]
    } else if roll < mix.succeeded + mix.failed {
        &["payment.failed"]
    } else {
        &["payment.processing", "payment.succeeded"]
    }
}

/// The SHA-256 of an idempotency key: what the simulated provider makes of a call.
fn digest(key: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(key.as_bytes()).into()
}

/// The built-in simulated provider: every payment is reported to the hook after `delay`, with
/// an outcome drawn from `mix`, in calls signed with `secret`.
#[derive(Debug, Clone)]
pub struct Simulated {
    inner: Arc<SimulatedInner>,
}

#[derive(Debug)]
struct SimulatedInner {
    /// The hook's URLs, taken in turn ([`SimulatedInner::deliver`]).
    hook_urls: Vec<String>,
    /// Which URL the next delivery starts at.
    next_url: std::sync::atomic::AtomicUsize,
    secret: Secret,
    delay: Duration,
    mix: OutcomeMix,
    http: Outgoing,
    /// Calls in flight to each URL ([`MAX_IN_FLIGHT`]).
    in_flight: Vec<tokio::sync::Semaphore>,
}

/// How long the simulated provider goes on calling the hook with an event before giving up,
/// as real providers retry a failed delivery for hours or days: a node that cannot answer for
/// a while (its database restarting, its pool full) must not cost the buyer a paid order. Well
/// past any order's time to pay.
const DELIVERY_WINDOW: Duration = Duration::from_secs(30 * 60);

/// Most calls in flight at once from one provider (each process that starts payments has one)
/// to one hook URL, as a real provider's dispatcher keeps a bounded number of deliveries open
/// per endpoint. Unbounded, a hook node slowed by a full onsale had thousands of calls
/// open at once: past its internal listener's cap (1,024 connections) it closed every new one
/// as soon as it accepted it, each of those came back after a pause, and at full size 60,000
/// calls failed in four minutes while payments waited up to 30 s between attempts. Events
/// beyond the bound wait their turn here, in the order they came.
pub const MAX_IN_FLIGHT: usize = 32;

/// The longest pause between two calls of the hook with one event.
const MAX_PAUSE: Duration = Duration::from_secs(30);

impl Simulated {
    /// A provider calling `hook_urls` (full URLs of `/hooks/payments/simulated`, at least one)
    /// in turn.
    pub fn new(hook_urls: Vec<String>, secret: Secret, delay: Duration, mix: OutcomeMix) -> Self {
        assert!(
            !hook_urls.is_empty(),
            "the simulated provider needs a hook URL"
        );
        Self {
            inner: Arc::new(SimulatedInner {
                in_flight: hook_urls
                    .iter()
                    .map(|_| tokio::sync::Semaphore::new(MAX_IN_FLIGHT))
                    .collect(),
                next_url: Default::default(),
                hook_urls,
                secret,
                delay,
                mix,
                http: Outgoing::new(Duration::from_secs(5)),
            }),
        }
    }

    /// Reports `events` for one payment, one after another, `delay` apart, each with the
    /// amount taken (as a real provider's events carry it). Event ids are `key` and the
    /// event's place, so reporting the same call again reports the same events.
    fn report(
        &self,
        order: Uuid,
        payment_ref: String,
        amount: Option<(i64, String)>,
        events: &'static [&'static str],
        key: [u8; 32],
    ) {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            for (i, kind) in events.iter().enumerate() {
                tokio::time::sleep(inner.delay).await;
                let mut body = json!({
                    "id": format!("evt_{}_{i}", hex::encode(&key[..12])),
                    "type": kind,
                    "order": order,
                    "payment": payment_ref,
                });
                if let Some((amount, currency)) = &amount {
                    body["amount_minor"] = json!(amount);
                    body["currency"] = json!(currency);
                }
                let body = body.to_string();
                inner.deliver(Bytes::from(body)).await;
            }
        });
    }
}

impl SimulatedInner {
    /// Calls the hook until it answers 2xx, with pauses doubling from 200 ms up to
    /// [`MAX_PAUSE`], for up to [`DELIVERY_WINDOW`]. Each attempt is signed afresh, as a
    /// provider does.
    async fn deliver(&self, body: Bytes) {
        let mut pause = Duration::from_millis(200);
        let until = tokio::time::Instant::now() + DELIVERY_WINDOW;
        let mut attempt = 0u32;
        let first = self
            .next_url
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        while tokio::time::Instant::now() < until {
            attempt += 1;
            let header = signature::sign(
                self.secret.expose().as_bytes(),
                crate::clock::now_secs(),
                &body,
            );
            // Deliveries start at the URLs in turn, and each attempt after a failure moves on
            // to the next, as a load balancer spreads a provider's calls and routes around a
            // node that is gone.
            let at = (first + attempt as usize - 1) % self.hook_urls.len();
            let called = {
                let _turn = self.in_flight[at].acquire().await.expect("never closed");
                self.http
                    .post_json(
                        &self.hook_urls[at],
                        &[(signature::HEADER, &header)],
                        body.clone(),
                    )
                    .await
            };
            match called {
                Ok(status) if (200..300).contains(&status) => return,
                Ok(status) => tracing::warn!(status, attempt, "simulated payment: hook refused"),
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "simulated payment: hook unreachable")
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
        tracing::error!(
            attempt,
            "simulated payment: event not delivered; the order will expire"
        );
    }
}

impl PaymentProvider for Simulated {
    fn name(&self) -> &str {
        "simulated"
    }

    fn create<'a>(
        &'a self,
        request: &'a PaymentRequest,
    ) -> BoxFuture<'a, Result<String, ProviderError>> {
        Box::pin(async move {
            let key = digest(&request.idempotency_key);
            let payment_ref = format!("sim_{}", hex::encode(&key[..16]));
            let roll = u32::from_be_bytes([key[28], key[29], key[30], key[31]]);
            self.report(
                request.order,
                payment_ref.clone(),
                Some((request.amount_minor, request.currency.clone())),
                draw(self.inner.mix, roll),
                key,
            );
            Ok(payment_ref)
        })
    }

    fn refund<'a>(
        &'a self,
        order: Uuid,
        payment_ref: &'a str,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            self.report(
                order,
                payment_ref.to_owned(),
                None,
                &["payment.refunded"],
                digest(idempotency_key),
            );
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_mixes_parse_and_draw_by_weight() {
        let mix: OutcomeMix = "succeeded=2, failed=1,processing=1".parse().unwrap();
        assert_eq!(
            mix,
            OutcomeMix {
                succeeded: 2,
                failed: 1,
                processing: 1
            }
        );
        let drawn: Vec<_> = (0..4).map(|roll| draw(mix, roll)).collect();
        assert_eq!(
            drawn,
            vec![
                &["payment.succeeded"][..],
                &["payment.succeeded"],
                &["payment.failed"],
                &["payment.processing", "payment.succeeded"],
            ]
        );
        assert_eq!(
            draw("failed=1".parse().unwrap(), 12345),
            &["payment.failed"]
        );
        for bad in ["", "succeeded=0", "won=1", "succeeded", "failed=-1"] {
            assert!(bad.parse::<OutcomeMix>().is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn the_same_idempotency_key_starts_the_same_payment() {
        let provider = Simulated::new(
            vec!["http://127.0.0.1:9/hooks/payments/simulated".into()],
            Secret::new("s".repeat(32)),
            Duration::from_secs(3600),
            OutcomeMix::default(),
        );
        let request = |key: &str| PaymentRequest {
            order: Uuid::nil(),
            user: "ana".into(),
            amount_minor: 100,
            currency: "EUR".into(),
            idempotency_key: key.into(),
        };
        let first = provider.create(&request("payment.start:a")).await.unwrap();
        let again = provider.create(&request("payment.start:a")).await.unwrap();
        let other = provider.create(&request("payment.start:b")).await.unwrap();
        assert_eq!(first, again);
        assert_ne!(first, other);
        assert!(first.starts_with("sim_") && first.len() == 36, "{first}");
    }

    /// What a test hook saw.
    #[derive(Default)]
    struct Seen {
        now: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
        done: std::sync::atomic::AtomicUsize,
    }

    impl Seen {
        fn done(&self) -> usize {
            self.done.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    /// A hook on a loopback port that answers every call after `pause`, counting into `seen`:
    /// its URL.
    async fn counting_hook(seen: Arc<Seen>, pause: Duration) -> String {
        use std::sync::atomic::Ordering;
        let hook = axum::Router::new().route(
            "/hooks/payments/{provider}",
            axum::routing::post(move || {
                let seen = seen.clone();
                async move {
                    let now = seen.now.fetch_add(1, Ordering::SeqCst) + 1;
                    seen.most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(pause).await;
                    seen.now.fetch_sub(1, Ordering::SeqCst);
                    seen.done.fetch_add(1, Ordering::SeqCst);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/hooks/payments/simulated",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, hook).await });
        url
    }

    /// A provider on `urls` whose every payment succeeds at once; `payments` of them started.
    async fn paying(urls: Vec<String>, payments: usize) -> Simulated {
        let provider = Simulated::new(
            urls,
            Secret::new("s".repeat(32)),
            Duration::ZERO,
            "succeeded=1".parse().unwrap(),
        );
        for i in 0..payments {
            let request = PaymentRequest {
                order: Uuid::new_v4(),
                user: "ana".into(),
                amount_minor: 100,
                currency: "EUR".into(),
                idempotency_key: format!("payment.start:{i}"),
            };
            provider.create(&request).await.unwrap();
        }
        provider
    }

    /// Waits (up to 30 s) until the hooks `seen` were called `calls` times in all.
    async fn called(seen: &[&Seen], calls: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while seen.iter().map(|s| s.done()).sum::<usize>() < calls {
            assert!(
                tokio::time::Instant::now() < deadline,
                "events not delivered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A hook that answers slowly sees at most [`MAX_IN_FLIGHT`] calls at once, and every
    /// event still arrives.
    #[tokio::test]
    async fn calls_in_flight_to_the_hook_are_bounded() {
        let seen = Arc::new(Seen::default());
        let url = counting_hook(seen.clone(), Duration::from_millis(50)).await;
        let payments = 4 * MAX_IN_FLIGHT;
        let _provider = paying(vec![url], payments).await;
        called(&[&seen], payments).await;
        let most = seen.most.load(std::sync::atomic::Ordering::SeqCst);
        assert!(most <= MAX_IN_FLIGHT, "{most} calls in flight at once");
    }

    /// Deliveries start at the URLs in turn, and one whose URL is gone (a node killed) moves
    /// on to the next: of 30 payments over a dead URL and two live ones, the first live one
    /// takes its own ten and the dead one's, the second its own ten.
    #[tokio::test]
    async fn deliveries_take_the_urls_in_turn_and_move_past_one_that_is_gone() {
        let gone = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!(
                "http://{}/hooks/payments/simulated",
                listener.local_addr().unwrap()
            )
        };
        let (a, b) = (Arc::new(Seen::default()), Arc::new(Seen::default()));
        let urls = vec![
            gone,
            counting_hook(a.clone(), Duration::ZERO).await,
            counting_hook(b.clone(), Duration::ZERO).await,
        ];
        let _provider = paying(urls, 30).await;
        called(&[&a, &b], 30).await;
        // Nothing more arrives: each event was delivered once.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!((a.done(), b.done()), (20, 10));
    }
}
