//! Tokens never travel in the clear from our own clients: the Rust SDK speaks `wss://` through
//! a TLS-terminating proxy in front of a node (as a deployment runs one, docs/operations.md),
//! trusting a private CA, and refuses a server it cannot verify.

use crate::common::tls_proxy::{CA, tls_proxy};
use crate::common::{TestNode, config, token};
use marquee_client::{Client, ClientConfig, ClientError, Event, TokenProvider};
use marquee_protocol::Channel;
use serde_json::json;
use std::time::Duration;

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
