//! The contract: the OpenAPI documents a node serves say what it does. Schemathesis (from PyPI;
//! `scripts/test` installs it) generates requests from each document, valid and invalid, sends
//! them to a live node with seeded data (a shop with a paid order and its tickets), and fails
//! on any 5xx, any status the document does not list, any body that does not match its schema,
//! any request the document allows that the server refuses, and any it forbids that the server
//! takes. The settings, and why each differs from schemathesis' defaults, are in
//! `contract/schemathesis.toml`.
//!
//! The run is seeded (`MARQUEE_SCHEMATHESIS_SEED`, default 1) so CI is repeatable; set another
//! seed to explore further.

use crate::common;

use common::TestNode;
use common::shop::{
    ShopSpec, admin_token, buy, buyer_signed, node_config, paying, shop, staff_token,
};
use marquee_server::payments::hook::HookSecrets;
use sqlx::PgPool;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The schemathesis command: `MARQUEE_SCHEMATHESIS`, or `schemathesis` on the `PATH`, or where
/// `pip install --user` puts it.
fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os("MARQUEE_SCHEMATHESIS") {
        return path.into();
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("schemathesis"))
            .find(|p| p.is_file())
    });
    let user = std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/bin/schemathesis"));
    on_path
        .or(user.filter(|p| p.is_file()))
        .expect("schemathesis is not installed: `scripts/test` installs it (pip install --user schemathesis)")
}

fn contract_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/contract")
}

/// Runs schemathesis against `url` with `env` for the settings file; panics with its report
/// unless it found nothing.
async fn run(url: &str, env: &[(&str, String)]) {
    let seed = std::env::var("MARQUEE_SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".into());
    let mut command = tokio::process::Command::new(schemathesis());
    command
        .arg("--config-file")
        .arg(contract_dir().join("schemathesis.toml"))
        .args(["run", url, "--seed", &seed, "--no-color"])
        .current_dir(contract_dir())
        .env("SCHEMATHESIS_HOOKS", "sign_hooks")
        .env("PYTHONPATH", contract_dir())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    let output = tokio::time::timeout(Duration::from_secs(600), command.output())
        .await
        .expect("schemathesis finishes within 10 minutes")
        .expect("schemathesis starts");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found the server and {url} disagreeing (seed {seed}):\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The secret the test's provider `acme` signs hook calls with.
const HOOK_SECRET: &str = "acme-contract-secret-0123456789-0123456789";

#[sqlx::test(migrator = "marquee_server::db::MIGRATOR")]
async fn schemathesis_finds_the_server_doing_what_its_openapi_documents_say(pool: PgPool) {
    let mut config = paying(node_config(&pool));
    config.payments.hook_secrets =
        HookSecrets::parse(&format!("acme:{HOOK_SECRET}")).expect("a valid secret");
    let node = TestNode::start_internal(config).await;
    let shop = shop(&pool, ShopSpec::default()).await;
    sqlx::query("update tenant set name = 'Shop' where tenant_id = $1")
        .bind(shop.tenant)
        .execute(&pool)
        .await
        .unwrap();
    let (order, tickets) = buy(&node, &shop, "alice", &[1, 2]).await;
    let onsale: uuid::Uuid = sqlx::query_scalar("select onsale_id from onsale where event_id = $1")
        .bind(shop.event)
        .fetch_one(&pool)
        .await
        .unwrap();
    let env = [
        ("MARQUEE_ADMIN_TOKEN", admin_token(&shop)),
        ("MARQUEE_GATE_TOKEN", staff_token(&shop, "gate-1", "gate")),
        (
            "MARQUEE_BUYER_TOKEN",
            buyer_signed(common::SECRET, shop.tenant, "alice"),
        ),
        ("MARQUEE_TENANT", shop.tenant.to_string()),
        ("MARQUEE_EVENT", shop.event.to_string()),
        ("MARQUEE_ONSALE", onsale.to_string()),
        ("MARQUEE_ORDER", order.to_string()),
        ("MARQUEE_TICKET", tickets[0].ticket.clone()),
        ("MARQUEE_HOOK_SECRET", HOOK_SECRET.to_owned()),
    ];
    run(&node.http_url("/openapi.json"), &env).await;
    let internal = node.internal.expect("an internal listener");
    run(&format!("http://{internal}/openapi.json"), &env).await;
    node.shutdown().await;
}
