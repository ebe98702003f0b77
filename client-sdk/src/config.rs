//! How a client connects: where, with which tokens, and how it behaves.

use marquee_protocol::Codec;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

type TokenFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// Supplies access tokens: called for the first connection, before every reconnect, and before
/// the current token expires.
#[derive(Clone)]
pub struct TokenProvider(Arc<dyn Fn() -> TokenFuture + Send + Sync>);

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenProvider")
    }
}

impl TokenProvider {
    /// Always the same token (fine for short sessions and tests).
    pub fn fixed(token: impl Into<String>) -> Self {
        let token: Arc<str> = token.into().into();
        Self(Arc::new(move || {
            let token = token.clone();
            Box::pin(async move { Ok(token.to_string()) })
        }))
    }

    /// Tokens from an async function, e.g. one that calls the application's auth service.
    pub fn from_fn<F, Fut>(f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        Self(Arc::new(move || Box::pin(f())))
    }

    pub(crate) async fn token(&self) -> Result<String, String> {
        (self.0)().await
    }
}

/// How the client connects and behaves.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// WebSocket URL of a hub node (or of a load balancer in front of several), e.g.
    /// `ws://127.0.0.1:8080/ws`.
    pub urls: Vec<String>,
    /// Wire encoding.
    pub codec: Codec,
    /// How long a request waits for its reply.
    pub request_timeout: Duration,
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
    /// Backoff base.
    pub backoff_base: Duration,
    /// Backoff cap.
    pub backoff_cap: Duration,
    /// Refresh the token this long before it expires (at most half its remaining life).
    pub refresh_before: Duration,
    /// How long a purchase command waits for its result (across reconnects).
    pub command_timeout: Duration,
    /// How long a command waits for its result before it is sent again under the same request
    /// id (then twice as long, up to a minute): a queue that lost it (Redis lost its data) is
    /// given it again, and one that has it answers the first result. Commands without a
    /// result are also sent again at once after a reconnect, after the inbox is resynced, and
    /// (after a pause) when the server answers `unavailable`.
    pub command_resend: Duration,
    /// Whom `wss://` URLs trust: the webpki roots, plus private CAs added here.
    pub tls: crate::tls::Tls,
    /// The local address connections are made from; by default the system chooses. For a
    /// host with several addresses, and for load generators: every connection from one
    /// address to one node needs a port of its own, and a few tens of thousands of them
    /// (closed ones linger a minute) leave the kernel searching its whole port range on every
    /// connect.
    pub local_address: Option<std::net::IpAddr>,
}

impl ClientConfig {
    /// Defaults: JSON, 10 s requests, backoff 250 ms to 20 s, refresh 60 s before expiry.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            urls: vec![url.into()],
            codec: Codec::Json,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_millis(250),
            backoff_cap: Duration::from_secs(20),
            refresh_before: Duration::from_secs(60),
            command_timeout: Duration::from_secs(30),
            command_resend: Duration::from_secs(10),
            tls: crate::tls::Tls::default(),
            local_address: None,
        }
    }

    /// Several node URLs; reconnects move on to the next one (a client-side load balancer).
    pub fn with_urls(urls: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let mut config = Self::new(String::new());
        config.urls = urls.into_iter().map(Into::into).collect();
        config
    }

    /// Also trusts the certificate authorities in `pem` on `wss://` URLs (a deployment's
    /// private CA).
    pub fn with_root_pem(mut self, pem: &[u8]) -> Result<Self, crate::ClientError> {
        self.tls = self.tls.with_root_pem(pem)?;
        Ok(self)
    }

    /// Uses MessagePack binary frames.
    pub fn msgpack(mut self) -> Self {
        self.codec = Codec::MsgPack;
        self
    }
}
