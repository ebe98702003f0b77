//! Each scenario runs end to end at a small scale, against real servers started by the
//! scenario (Marquee nodes from this build, the Socket.IO peer from `peers/socketio`), and its
//! JSON report says what happened.

use serde_json::Value;
use std::process::Command;

/// Runs `marquee-loadtest` with arguments and returns its JSON reports.
fn run(args: &[&str]) -> Vec<Value> {
    let dir = std::env::temp_dir().join(format!("lt-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("report.json");
    let html = dir.join("report.html");
    let output = Command::new(env!("CARGO_BIN_EXE_marquee-loadtest"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .output()
        .expect("the load generator runs");
    assert!(
        output.status.success(),
        "{args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!doctype html>") && page.contains("</html>"));
    let reports: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    reports
}

#[test]
fn connections_opens_every_connection_and_measures_memory() {
    let reports = run(&["connections", "--connections", "60", "--hold", "1s"]);
    let [r] = reports.as_slice() else {
        panic!("one report")
    };
    assert_eq!(r["scenario"], "connections");
    assert_eq!(r["target"], "marquee");
    assert_eq!(r["connections"], 60);
    assert_eq!(r["connect_failures"], 0);
    assert!(r["rss_bytes_per_conn"].as_f64().is_some_and(|b| b > 0.0));
}

#[test]
fn fanout_on_both_targets_delivers_everything_in_order() {
    let reports = run(&[
        "fanout",
        "--target",
        "both",
        "--subscribers",
        "20",
        "--rate",
        "20",
        "--duration",
        "1s",
    ]);
    assert_eq!(reports.len(), 2);
    for r in &reports {
        let target = r["target"].as_str().unwrap();
        assert_eq!(r["connections"], 20, "{target}");
        assert_eq!(r["published"], 20, "{target}");
        assert_eq!(r["received"], 400, "{target}");
        assert_eq!(
            (
                r["lost"].as_u64(),
                r["duplicated"].as_u64(),
                r["reordered"].as_u64()
            ),
            (Some(0), Some(0), Some(0)),
            "{target}"
        );
        assert!(r["latency_ms"]["p99"].as_f64().is_some(), "{target}");
        assert!(
            r["delivered_per_s"].as_f64().is_some_and(|d| d > 0.0),
            "{target}"
        );
    }
    assert_eq!(reports[0]["target"], "marquee");
    assert_eq!(reports[1]["target"], "socketio");
}

#[test]
fn resume_moves_clients_off_a_killed_node_without_loss_or_duplicates() {
    let reports = run(&[
        "resume",
        "--clients",
        "20",
        "--rate",
        "20",
        "--duration",
        "3s",
        "--kill-after",
        "1s",
    ]);
    let [r] = reports.as_slice() else {
        panic!("one report")
    };
    assert_eq!(r["dropped"], 10, "half the clients were on the killed node");
    assert_eq!(r["published"], 60);
    assert_eq!(r["lost"], 0);
    assert_eq!(r["duplicated"], 0);
    assert_eq!(r["reordered"], 0);
    assert!(r["resume_s"].as_f64().is_some());
}

#[path = "../../server/tests/it/common/tls_proxy.rs"]
mod tls_proxy;

/// Runs the load generator on a blocking thread (the test's runtime serves the node).
async fn run_blocking(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_marquee-loadtest"))
            .args(&args)
            .output()
            .expect("the load generator runs")
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_reach_nodes_behind_tls_and_refuse_one_they_cannot_verify() {
    const SECRET: &str = "loadtest-tls-secret-0123456789-0123456789";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node_addr = listener.local_addr().unwrap();
    let node = marquee_server::Node::build(marquee_server::Config::with_secret(SECRET))
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(node.serve(listener, async move {
        let _ = stopped.await;
    }));
    let (proxy, proxy_task) = tls_proxy::tls_proxy(node_addr).await;
    let dir = std::env::temp_dir().join(format!("lt-tls-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, tls_proxy::CA).unwrap();
    let json = dir.join("report.json");
    let args = |trust: bool| {
        let mut args: Vec<String> = [
            "connections",
            "--connections",
            "20",
            "--hold",
            "1s",
            "--tls",
            "--secret",
            SECRET,
        ]
        .map(String::from)
        .to_vec();
        args.push("--url".into());
        args.push(proxy.to_string());
        args.push("--json".into());
        args.push(json.display().to_string());
        if trust {
            args.push("--ca".into());
            args.push(ca.display().to_string());
        }
        args
    };
    let output = run_blocking(args(true)).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reports: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(
        reports[0]["connections"], 20,
        "every connection over wss://"
    );
    assert_eq!(reports[0]["connect_failures"], 0);

    // Without the private CA the proxy's certificate is not trusted: nothing connects.
    std::fs::remove_file(&json).unwrap();
    let output = run_blocking(args(false)).await;
    let reports: Vec<Value> = std::fs::read_to_string(&json)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    let connected = reports
        .first()
        .map_or(0, |r| r["connections"].as_u64().unwrap_or(0));
    assert_eq!(
        connected,
        0,
        "no connection to a server it cannot verify: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    proxy_task.abort();
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}
