//! Outgoing HTTP calls: the simulated payment provider calling the payment hook, and (later)
//! notification sinks. hyper's pooled client from hyper-util, which the server already builds
//! on through axum; plain `http://` only (providers' real APIs and TLS belong to their own
//! provider implementations).

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// An outgoing call failed before an answer came.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutgoingError {
    /// The URL or a header is not valid.
    #[error("bad request: {0}")]
    Request(String),
    /// Connecting, sending or reading failed.
    #[error("call failed: {0}")]
    Call(String),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// The pause before attempt `attempts + 1` of a call owed and retried until it succeeds
/// (notifications, payment calls): 2 s, 4 s, 8 s, … at most 10 minutes apart.
pub fn retry_pause(attempts: i32) -> Duration {
    Duration::from_secs(1u64 << attempts.clamp(0, 10) as u64).min(Duration::from_secs(600))
}

/// A pooled HTTP/1 client with a per-call timeout. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Outgoing {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl Outgoing {
    /// A client whose calls give up after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            timeout,
        }
    }

    /// POSTs a JSON `body` with extra `headers`; the answer's status.
    pub async fn post_json(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<u16, OutgoingError> {
        let mut request = hyper::Request::post(url).header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| OutgoingError::Request(e.to_string()))?;
        let response = tokio::time::timeout(self.timeout, self.client.request(request))
            .await
            .map_err(|_| OutgoingError::Timeout(self.timeout))?
            .map_err(|e| OutgoingError::Call(causes(&e)))?;
        Ok(response.status().as_u16())
    }
}

/// An error and its causes, outermost first: hyper's client says only `client error
/// (SendRequest)` and keeps what happened (`connection closed before message completed`,
/// `Connection refused`) in its sources.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_ten_minutes() {
        let pauses: Vec<u64> = (1..=12).map(|a| retry_pause(a).as_secs()).collect();
        assert_eq!(
            pauses,
            vec![2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600, 600]
        );
    }
}
