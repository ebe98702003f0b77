//! Tokens never travel in the clear from our own clients: the Rust SDK speaks `wss://` through
//! a TLS-terminating proxy in front of a node (as a deployment runs one, docs/operations.md),
//! trusting a private CA, and refuses a server it cannot verify.

use crate::common::{TestNode, config, token};
use marquee_client::{Client, ClientConfig, ClientError, Event, TokenProvider};
use marquee_protocol::Channel;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

const CA: &[u8] = include_bytes!("fixtures/tls/ca.pem");
const CERT: &[u8] = include_bytes!("fixtures/tls/server.pem");
const KEY: &[u8] = include_bytes!("fixtures/tls/server-key.pem");

/// Terminates TLS on a loopback port and relays the plain bytes to `upstream`.
async fn tls_proxy(upstream: SocketAddr) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(CERT)
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(KEY).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let server = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return; // a client that refused our certificate
                };
                let mut plain = TcpStream::connect(upstream).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn the_sdk_speaks_wss_to_a_server_its_private_ca_signed() {
    let node = TestNode::start(config()).await;
    let (proxy, task) = tls_proxy(node.addr).await;
    let url = format!("wss://localhost:{}/ws", proxy.port());

    let config = ClientConfig::new(&url).with_root_pem(CA).unwrap();
    let (client, mut events) = Client::connect(config, TokenProvider::fixed(token("u1", &[])))
        .await
        .expect("connects over TLS");
    client.subscribe("seats:tls").await.unwrap();
    node.hub
        .publish(&Channel::parse("seats:tls").unwrap(), &json!({"n": 1}))
        .await
        .unwrap();
    let delivered = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.next().await {
                Some(Event::Publication(p)) if p.channel == "seats:tls" => return p,
                Some(_) => {}
                None => panic!("events ended"),
            }
        }
    })
    .await
    .expect("a publication over TLS");
    assert_eq!(delivered.data["n"], 1);
    drop(client);

    // Without the private CA the same server is not trusted: no connection, no token sent.
    let untrusted = Client::connect(
        ClientConfig::new(&url),
        TokenProvider::fixed(token("u1", &[])),
    )
    .await;
    match untrusted {
        Err(ClientError::Connect(message)) => {
            assert!(message.to_lowercase().contains("certificate"), "{message}");
        }
        Err(other) => panic!("expected a certificate refusal, got {other:?}"),
        Ok(_) => panic!("connected to a server it cannot verify"),
    }
    task.abort();
    node.shutdown().await;
}
