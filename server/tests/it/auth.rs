//! The token is checked before the upgrade: every refusal has its exact status and code, and a
//! valid token (header or query parameter) upgrades.

use crate::common;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use marquee_server::auth::JwtAlgorithm;
use marquee_server::auth::{Claims, sign_hs256};
use marquee_server::clock::now_secs;

/// The status, the `code` of the JSON body, and the whole body for the snapshot.
async fn refusal(node: &TestNode, extra: &[(&str, &str)]) -> (u16, String, String) {
    let response = upgrade_request(node.addr, "/ws", extra).await;
    let code = response.json()["code"].as_str().unwrap_or("").to_owned();
    (response.status, code, response.body)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A token with `alg: none` and no signature.
fn unsigned_token() -> String {
    use base64_url as b64;
    let header = b64::encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = serde_json::to_vec(&claims("u1", &[], 3600)).unwrap();
    format!("{header}.{}.", b64::encode(&claims))
}

/// Base64url without padding, as JWT segments use, to forge tokens by hand.
mod base64_url {
    use base64::Engine as _;
    pub fn encode(input: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(input)
    }
}

/// A refusal case: name, headers, expected status, expected code.
type Case<'a> = (&'a str, Vec<(&'a str, String)>, u16, &'a str);

#[tokio::test]
async fn every_bad_token_is_refused_before_the_upgrade_with_its_code() {
    let mut config = config();
    config.auth.jwt_issuer = Some("https://auth.marquee.test".into());
    config.auth.jwt_audience = Some("marquee".into());
    let node = TestNode::start(config).await;

    let good = |c: &mut Claims| {
        c.iss = Some("https://auth.marquee.test".into());
        c.aud = Some("marquee".into());
    };
    let sign = |f: &dyn Fn(&mut Claims)| {
        let mut c = claims("u1", &[], 3600);
        good(&mut c);
        f(&mut c);
        sign_hs256(SECRET, &c)
    };
    let wrong_secret = {
        let mut c = claims("u1", &[], 3600);
        good(&mut c);
        sign_hs256("another-secret", &c)
    };
    let hs384 = {
        let mut c = claims("u1", &[], 3600);
        good(&mut c);
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &c,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let expired = sign(&|c| c.exp = now_secs() - 60);
    let not_yet = sign(&|c| c.nbf = Some(now_secs() + 600));
    let wrong_issuer = sign(&|c| c.iss = Some("https://evil.test".into()));
    let no_issuer = sign(&|c| c.iss = None);
    let wrong_audience = sign(&|c| c.aud = Some("someone-else".into()));
    let tampered = {
        let token = sign(&|_| {});
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = base64_url::encode(
            serde_json::to_string(&claims("admin", &["admin"], 3600))
                .unwrap()
                .as_bytes(),
        );
        parts.join(".")
    };
    let none = unsigned_token();
    // Claims of the wrong shape, signed correctly.
    let raw_claims = |claims: serde_json::Value| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let good_iss = "https://auth.marquee.test";
    let no_exp = raw_claims(serde_json::json!({"sub": "u1", "iss": good_iss, "aud": "marquee"}));
    let no_sub =
        raw_claims(serde_json::json!({"exp": now_secs() + 600, "iss": good_iss, "aud": "marquee"}));
    let slashed_sub = sign(&|c| c.sub = "a/b".into());

    let cases: Vec<Case<'_>> = vec![
        ("missing", vec![], 401, "token_missing"),
        (
            "not a jwt",
            vec![("authorization", bearer("abc"))],
            401,
            "token_malformed",
        ),
        (
            "garbage segments",
            vec![("authorization", bearer("a.b.c"))],
            401,
            "token_malformed",
        ),
        (
            "wrong secret",
            vec![("authorization", bearer(&wrong_secret))],
            401,
            "token_invalid",
        ),
        (
            "tampered claims",
            vec![("authorization", bearer(&tampered))],
            401,
            "token_invalid",
        ),
        (
            "alg none",
            vec![("authorization", bearer(&none))],
            401,
            "token_invalid",
        ),
        (
            "other algorithm",
            vec![("authorization", bearer(&hs384))],
            401,
            "token_invalid",
        ),
        (
            "expired",
            vec![("authorization", bearer(&expired))],
            401,
            "token_expired",
        ),
        (
            "not yet valid",
            vec![("authorization", bearer(&not_yet))],
            401,
            "token_not_yet_valid",
        ),
        (
            "wrong issuer",
            vec![("authorization", bearer(&wrong_issuer))],
            401,
            "token_invalid",
        ),
        (
            "no issuer",
            vec![("authorization", bearer(&no_issuer))],
            401,
            "token_invalid",
        ),
        (
            "wrong audience",
            vec![("authorization", bearer(&wrong_audience))],
            401,
            "token_invalid",
        ),
        ("bad query token", vec![], 401, "token_malformed"),
        (
            "missing exp",
            vec![("authorization", bearer(&no_exp))],
            401,
            "token_invalid",
        ),
        (
            "missing sub",
            vec![("authorization", bearer(&no_sub))],
            401,
            "token_invalid",
        ),
        (
            "slash in sub",
            vec![("authorization", bearer(&slashed_sub))],
            401,
            "token_invalid",
        ),
    ];
    let mut bodies = Vec::new();
    for (name, headers, status, code) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let response = if name == "bad query token" {
            upgrade_request(node.addr, "/ws?access_token=nope", &headers).await
        } else {
            upgrade_request(node.addr, "/ws", &headers).await
        };
        assert_eq!(response.status, status, "{name}: {}", response.body);
        assert_eq!(response.json()["code"], code, "{name}");
        assert!(
            response
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "{name}: 401 carries a Bearer challenge"
        );
        bodies.push(format!("{name}: {}", response.body));
    }
    insta::assert_snapshot!(bodies.join("\n"));

    // The right token works, from the header and from the query string, and an audience
    // array that contains ours is as good as the single string.
    let many = sign(&|c| {
        c.aud = Some(marquee_server::auth::Audience::Many(vec![
            "other".into(),
            "marquee".into(),
        ]))
    });
    let _raw = Raw::connect(&node.ws_url(), &many).await;
    let valid = sign(&|_| {});
    let mut raw = Raw::connect(&node.ws_url(), &valid).await;
    raw.send(&marquee_protocol::ClientMessage::Ping { id: 1 })
        .await;
    assert_eq!(
        raw.recv().await,
        marquee_protocol::ServerMessage::Pong { id: 1 }
    );
    let (socket, _) =
        tokio_tungstenite::connect_async(format!("{}?access_token={valid}", node.ws_url()))
            .await
            .expect("query-string token upgrades");
    drop(socket);
    node.shutdown().await;
}

#[tokio::test]
async fn an_eddsa_node_accepts_its_key_and_refuses_a_shared_secret_token() {
    let mut config = config();
    config.auth.jwt_secret = None;
    config.auth.jwt_algorithm = Some(JwtAlgorithm::EdDsa);
    config.auth.jwt_public_key = Some(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/fixtures/ed25519-test-public.pem"
        )
        .into(),
    );
    let node = TestNode::start(config).await;
    let private = include_bytes!("fixtures/ed25519-test-private.pem");
    let eddsa = jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        &claims("u1", &[], 3600),
        &EncodingKey::from_ed_pem(private).unwrap(),
    )
    .unwrap();
    let _raw = Raw::connect(&node.ws_url(), &eddsa).await;

    // An HS256 token must not pass, whatever secret signed it (algorithm pinning).
    let hs = sign_hs256(SECRET, &claims("u1", &[], 3600));
    let (status, code, _) = refusal(&node, &[("authorization", &bearer(&hs))]).await;
    assert_eq!((status, code.as_str()), (401, "token_invalid"));
    let (status, code, _) = refusal(&node, &[("authorization", &bearer(&unsigned_token()))]).await;
    assert_eq!((status, code.as_str()), (401, "token_invalid"));
    node.shutdown().await;
}

#[tokio::test]
async fn a_full_node_refuses_with_503_and_a_retry_after() {
    let mut config = config();
    config.hub.max_connections = 1;
    let node = TestNode::start(config).await;
    let _first = Raw::connect(&node.ws_url(), &token("u1", &[])).await;
    let response = upgrade_request(
        node.addr,
        "/ws",
        &[("authorization", &bearer(&token("u2", &[])))],
    )
    .await;
    assert_eq!(response.status, 503);
    assert_eq!(response.json()["code"], "over_capacity");
    let retry: u64 = response.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry));
    node.shutdown().await;
}

#[tokio::test]
async fn the_connect_rate_bucket_is_spent_by_valid_upgrades_only_and_refuses_a_burst_with_503() {
    let mut config = config();
    config.hub.connect_rate = 1;
    config.hub.connect_burst = 2;
    let node = TestNode::start(config).await;
    let auth = bearer(&token("u1", &[]));
    // What is not a well-formed upgrade with a valid token never spends the bucket: plain
    // GETs (400) and upgrades without a token (401), however many.
    for _ in 0..4 {
        let plain = http(node.addr, "GET", "/ws", &[("authorization", &auth)], None).await;
        assert_eq!(plain.status, 400, "{}", plain.body);
        let tokenless = upgrade_request(node.addr, "/ws", &[]).await;
        assert_eq!(tokenless.status, 401, "{}", tokenless.body);
    }
    // Valid upgrades do: two are admitted, the third is refused.
    let _first = Raw::connect(&node.ws_url(), &token("u1", &[])).await;
    let _second = Raw::connect(&node.ws_url(), &token("u2", &[])).await;
    let refused = upgrade_request(node.addr, "/ws", &[("authorization", &auth)]).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.json()["code"], "over_capacity");
    assert!(refused.header("retry-after").is_some());
    node.shutdown().await;
}
