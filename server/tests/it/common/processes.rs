//! Real processes for fault tests: `marquee worker` processes, and a private Redis that a test
//! may kill and start again without disturbing any other test.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A free loopback port (bound and released: fine for tests that start a server on it at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process, killed (SIGKILL) when dropped, so a test that fails leaves none behind.
pub struct Process(pub Child);

impl std::ops::Deref for Process {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Process {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        kill(&mut self.0);
    }
}

/// A `marquee worker` process on `database_url`, `redis_url` and `prefix`, named `name`, with
/// a 1 s lease (so a dead worker's events move on quickly) and the extra environment `env`.
pub fn worker_process(
    database_url: &str,
    redis_url: &str,
    prefix: &str,
    name: &str,
    env: &[(&str, String)],
) -> Process {
    let mut command = Command::new(env!("CARGO_BIN_EXE_marquee"));
    command
        .arg("worker")
        .env("DATABASE_URL", database_url)
        .env("REDIS_URL", redis_url)
        .env("MARQUEE_REDIS_PREFIX", prefix)
        .env("MARQUEE_WORKER_ID", name)
        .env("MARQUEE_WORKER_LISTEN", "127.0.0.1:0")
        .env("MARQUEE_LEASE_TTL", "1s")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    Process(command.spawn().expect("the marquee binary runs"))
}

/// A `marquee serve` process with the environment `env` (database, Redis, secrets), listening
/// on a free loopback port: the process and its address, once `/ready` answers 200.
pub async fn node_process(env: &[(&str, String)]) -> (Process, std::net::SocketAddr) {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_marquee"));
    command
        .arg("serve")
        .env("MARQUEE_LISTEN", addr.to_string())
        .env("MARQUEE_INTERNAL_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let process = Process(command.spawn().expect("the marquee binary runs"));
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(addr).await.is_ok()
            && super::http(addr, "GET", "/ready", &[], None).await.status == 200
        {
            return (process, addr);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the node process did not become ready");
}

/// Waits for a process that is meant to abort (a fault switch) and checks that it did.
pub async fn aborted(mut child: Process) {
    let status = tokio::task::spawn_blocking(move || child.0.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success(), "the process aborted: {status:?}");
}

/// Kills a process (SIGKILL) and reaps it.
pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A private Redis on its own port, without persistence, so restarting it loses everything (as
/// a restart without persistence or a failover to an empty replica does) and disturbs no other
/// test.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub async fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            child: None,
        };
        redis.launch().await;
        redis
    }

    /// Starts the server (again) on its port.
    pub async fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("private redis did not start");
    }

    /// Stops the server from answering (SIGSTOP): connections stay open and every command
    /// waits, as behind a network partition or a long pause.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server answer again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Kills the server (SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
