//! A private PostgreSQL for `marquee demo`, started from the machine's own server binaries
//! when no `DATABASE_URL` is given, and removed again when the demo stops.
//!
//! PostgreSQL refuses to run as root, so when the demo runs as root the data directory is
//! handed to the `postgres` user and the server runs as that user.

use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running private PostgreSQL. Stopped and deleted on drop.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    dir: PathBuf,
    bin: PathBuf,
    child: Option<Child>,
    port: u16,
    run_as: Option<String>,
}

/// The directory holding `initdb` and `postgres`: Debian's newest
/// `/usr/lib/postgresql/<version>/bin`, or what `pg_config --bindir` says.
fn server_binaries() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let bin = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    bin.join("initdb").exists().then_some(bin)
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl EmbeddedPostgres {
    /// Initialises a fresh cluster in a temporary directory and starts it on a free loopback
    /// port. Says plainly what to install when the machine has no PostgreSQL server.
    pub async fn start() -> anyhow::Result<Self> {
        let Some(bin) = server_binaries() else {
            bail!(
                "no PostgreSQL server binaries found: install them (Debian: apt-get install \
                 postgresql) or point DATABASE_URL at a running PostgreSQL"
            );
        };
        let dir = std::env::temp_dir().join(format!(
            "marquee-pg-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir)?;
        let run_as = running_as_root().then(|| "postgres".to_owned());
        let mut pg = Self {
            dir,
            bin: bin.clone(),
            child: None,
            port: std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port(),
            run_as,
        };
        if let Some(user) = &pg.run_as {
            let status = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(&pg.dir)
                .status()?;
            if !status.success() {
                bail!("cannot hand {} to the {user} user", pg.dir.display());
            }
        }
        let data = pg.dir.join("data");
        let status = pg
            .command(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running initdb")?;
        if !status.success() {
            bail!("initdb failed in {}", data.display());
        }
        pg.launch().await?;
        Ok(pg)
    }

    /// Starts the server on the cluster and waits until it takes connections.
    async fn launch(&mut self) -> anyhow::Result<()> {
        let child = self
            .command(&self.bin.join("postgres"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            // Room for a cluster on one machine (the load test's runs up to 7 hub nodes and
            // 2 workers, 10 + 10 connections each); the default 100 is too few.
            .args(["-c", "max_connections=300"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting postgres")?;
        self.child = Some(child);
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("the private PostgreSQL did not start on port {}", self.port)
    }

    /// Stops the server the way a crash or a failover does (`pg_ctl stop -m immediate`: every
    /// connection is cut, nothing is shut down cleanly) and starts it again on the same port
    /// and data, recovering from its write-ahead log. For fault tests and the load test's
    /// fault mode.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop("immediate");
        self.launch().await
    }

    /// Stops the server (`mode`: `fast` or `immediate`) and waits for it to exit.
    fn stop(&mut self, mode: &str) {
        if let Some(mut child) = self.child.take() {
            // The child may be `runuser`, which does not pass signals on; pg_ctl stops the
            // server itself, and `runuser` exits with it.
            let _ = self
                .command(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-m", mode, "-w", "-t", "10", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            for _ in 0..100 {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn command(&self, program: &Path) -> Command {
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// The connection URL (user `postgres`, database `postgres`, trust auth on loopback).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The postmaster's process id, from its `postmaster.pid` (the child this handle started
    /// may be `runuser`).
    pub fn postmaster_pid(&self) -> Option<u32> {
        let pidfile = std::fs::read_to_string(self.dir.join("data").join("postmaster.pid")).ok()?;
        pidfile.lines().next()?.trim().parse().ok()
    }

    /// Where the data lives (deleted on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.stop("fast");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
