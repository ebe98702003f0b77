//! TLS for `wss://` URLs, so tokens never travel in the clear: rustls (with ring), trusting
//! the webpki roots (Mozilla's, compiled in, so a client needs nothing from the system) plus
//! any private certificate authority a deployment terminates TLS with.

use crate::event::ClientError;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use std::sync::Arc;
use tokio_tungstenite::Connector;

/// Which servers a client trusts on `wss://`.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// Certificate authorities trusted besides the webpki roots.
    private_roots: Vec<CertificateDer<'static>>,
}

impl Tls {
    /// Also trusts every certificate in `pem` (a private CA, or a self-signed server
    /// certificate).
    pub fn with_root_pem(mut self, pem: &[u8]) -> Result<Self, ClientError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|e| ClientError::Connect(format!("reading the CA certificates: {e}")))?;
        if certs.is_empty() {
            return Err(ClientError::Connect(
                "no certificate in the CA PEM".to_owned(),
            ));
        }
        self.private_roots.extend(certs);
        Ok(self)
    }

    /// The connector for `tokio-tungstenite`: plain `ws://` URLs pass through it untouched.
    /// Public so other clients of the protocol (the load generator) trust what the SDK trusts.
    pub fn connector(&self) -> Result<Connector, ClientError> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in &self.private_roots {
            roots
                .add(cert.clone())
                .map_err(|e| ClientError::Connect(format!("a CA certificate: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Connect(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Connector::Rustls(Arc::new(config)))
    }
}
