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
fn fanout_on_every_target_delivers_everything_in_order_and_measures_cpu_per_delivery() {
    let reports = run(&[
        "fanout",
        "--target",
        "all",
        "--subscribers",
        "20",
        "--rate",
        "20",
        "--duration",
        "1s",
    ]);
    assert_eq!(reports.len(), 3);
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
        let cpu = r["server_cpu_s"].as_f64().expect("server CPU measured");
        let per = r["cpu_us_per_delivery"].as_f64().expect("CPU per delivery");
        assert!(
            (per - cpu * 1e6 / 400.0).abs() < 1e-6 * per.max(1.0),
            "{target}: {per} µs is {cpu} s over 400 deliveries"
        );
    }
    let targets: Vec<&str> = reports
        .iter()
        .map(|r| r["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["marquee", "socketio", "floor"]);
    assert_eq!(reports[2]["nodes"], 1, "the floor is one process");
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

/// The options of a small, quick onsale: `buyers` for `seats` seats and `ga` standing tickets,
/// in one client process, stopping after `max`.
fn small_onsale(buyers: u32, seats: u32, ga: u32, max: &str) -> Vec<String> {
    let (buyers, seats, ga) = (buyers.to_string(), seats.to_string(), ga.to_string());
    [
        "--buyers",
        &buyers,
        "--seats",
        &seats,
        "--ga",
        &ga,
        "--processes",
        "1",
        "--prequeue",
        "2s",
        "--late-window",
        "2s",
        "--rate",
        "40",
        "--cap",
        "40",
        "--max-duration",
        max,
    ]
    .map(String::from)
    .to_vec()
}

/// A small onsale on one node on the memory engine, PostgreSQL restarted while it runs.
#[test]
fn onsale_on_the_memory_engine_keeps_every_invariant_through_a_postgres_restart() {
    let mut args = vec!["onsale".to_owned(), "--engine".into(), "memory".into()];
    args.extend(small_onsale(120, 60, 20, "40s"));
    args.extend(["--faults".into(), "postgres@2".into()]);
    let reports = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let [r] = reports.as_slice() else {
        panic!("one report")
    };
    assert_eq!(r["nodes"], 1);
    assert_eq!(r["params"]["engine"], "memory");
    let onsale = &r["onsale"];
    for (name, count) in onsale["invariants"].as_object().unwrap() {
        assert_eq!(count, 0, "{name}: {}", onsale["client_errors"]);
    }
    assert!(onsale["figures"]["sold"].as_u64().unwrap() > 0);
    assert_eq!(onsale["faults"][0]["what"], "postgres restarted");
}

/// A fault a shape cannot suffer is refused before anything starts.
#[test]
fn onsale_refuses_a_fault_nothing_it_started_can_suffer() {
    let output = Command::new(env!("CARGO_BIN_EXE_marquee-loadtest"))
        .args(["onsale", "--engine", "memory", "--faults", "redis@2"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`redis restarted` cannot strike one node on the memory engine"),
        "{stderr}"
    );
}

/// A small onsale against a node it did not start (`--url`), on a database of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onsale_runs_against_a_node_given_by_url() {
    const SECRET: &str = "loadtest-given-secret-0123456789-0123456789";
    let admin = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("lt_onsale_{:016x}", rand::random::<u64>());
    let server = sqlx::PgPool::connect(&admin).await.unwrap();
    // The name is made here, from hex digits.
    sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
        .execute(&server)
        .await
        .unwrap();
    let database_url = match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("DATABASE_URL names a database"),
    };
    let port = |_| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (addr, internal) = (port(0), port(1));
    let marquee = std::env::var_os("MARQUEE_BIN").map_or_else(
        || std::path::Path::new(env!("CARGO_BIN_EXE_marquee-loadtest")).with_file_name("marquee"),
        std::path::PathBuf::from,
    );
    let mut node = Command::new(marquee)
        .arg("serve")
        .env_remove("REDIS_URL")
        .env("DATABASE_URL", &database_url)
        .env("MARQUEE_LISTEN", addr.to_string())
        .env("MARQUEE_INTERNAL_LISTEN", internal.to_string())
        .env("MARQUEE_JWT_SECRET", SECRET)
        .env(
            "MARQUEE_ADMISSION_SECRET",
            "loadtest-given-admission-0123456789",
        )
        .env("MARQUEE_PAYMENT_PROVIDER", "simulated")
        .env(
            "MARQUEE_PAYMENT_HOOK_SECRETS",
            "simulated:loadtest-given-hook-0123456789-0123456789",
        )
        .env("MARQUEE_SIMULATED_PAYMENT_DELAY", "200ms")
        .env("MARQUEE_CONNECT_RATE_PER_ADDRESS", "1000000")
        .env("MARQUEE_CONNECT_BURST_PER_ADDRESS", "1000000")
        .env("MARQUEE_QUEUE_JOINS_PER_IP", "1000000")
        .env("RUST_LOG", "error")
        .spawn()
        .expect("the node starts");
    // It listens before it has migrated its database; it answers once it has.
    let mut ready = false;
    for _ in 0..300 {
        let probe = marquee_loadtest::servers::http_get(addr, "/ready");
        if let Ok(Some(body)) = tokio::time::timeout(std::time::Duration::from_secs(5), probe).await
            && body.contains("\"ready\"")
        {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "the node is ready");
    let dir = std::env::temp_dir().join(format!("lt-given-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("report.json");
    let mut args = vec!["onsale".to_owned()];
    args.extend(small_onsale(80, 30, 10, "30s"));
    args.extend(
        [
            "--faults",
            "none",
            "--secret",
            SECRET,
            "--database-url",
            &database_url,
            "--url",
            &addr.to_string(),
            "--json",
            &json.display().to_string(),
        ]
        .map(String::from),
    );
    let output = run_blocking(args).await;
    let _ = node.kill();
    let _ = node.wait();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let reports: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let r = &reports[0];
    assert_eq!(r["params"]["engine"], "given");
    for (name, count) in r["onsale"]["invariants"].as_object().unwrap() {
        assert_eq!(count, 0, "{name}");
    }
    assert!(r["onsale"]["figures"]["sold"].as_u64().unwrap() > 0);
    // A second run on the same database is refused: its checks read whole tables.
    let again = run_blocking(
        [
            "onsale",
            "--faults",
            "none",
            "--secret",
            SECRET,
            "--database-url",
            &database_url,
            "--url",
            &addr.to_string(),
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("holds earlier sales"));
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "drop database {name} with (force)"
    )))
    .execute(&server)
    .await
    .unwrap();
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
