//! The long-running tasks of a process, joined: relays, controllers, workers, listeners.
//!
//! Every task is expected to run until the process asks it to stop. One that ends before that
//! (an error, a panic, or even a clean return) means the process can no longer do its job, so
//! [`Tasks::first_exit`] reports it with its name and why, and the process drains and ends
//! (a supervisor, such as Kubernetes or systemd, starts a fresh one). That is the crash-only
//! alternative to a node that looks alive while, say, nothing publishes its outbox.

use std::future::Future;
use tokio::task::JoinSet;

/// Why a task ended.
#[derive(Debug)]
pub struct Exit {
    /// The task's name.
    pub name: &'static str,
    /// What it returned: `Ok` for a clean return, the error or panic otherwise.
    pub outcome: anyhow::Result<()>,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Ok(()) => write!(f, "{} stopped", self.name),
            Err(e) => write!(f, "{} failed: {e:#}", self.name),
        }
    }
}

/// A process's long-running tasks.
#[derive(Debug, Default)]
pub struct Tasks {
    set: JoinSet<(&'static str, anyhow::Result<()>)>,
    names: Vec<&'static str>,
}

impl Tasks {
    /// Starts `task` under `name`.
    pub fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.names.push(name);
        self.set.spawn(async move { (name, task.await) });
    }

    /// Whether no task was started.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Waits for the first task to end and says why; `None` if there are none left.
    pub async fn first_exit(&mut self) -> Option<Exit> {
        let done = self.set.join_next().await?;
        Some(match done {
            Ok((name, outcome)) => Exit { name, outcome },
            Err(e) => Exit {
                name: if e.is_panic() {
                    "a task (panicked)"
                } else {
                    "a task (cancelled)"
                },
                outcome: Err(anyhow::anyhow!("{e}")),
            },
        })
    }

    /// Waits for every task to end, logging how each did.
    pub async fn join_all(mut self) {
        while let Some(exit) = self.first_exit().await {
            match &exit.outcome {
                Ok(()) => tracing::info!(task = exit.name, "stopped"),
                Err(e) => tracing::error!(task = exit.name, error = format!("{e:#}"), "failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_task_to_end_is_reported_with_its_name_and_reason() {
        let mut tasks = Tasks::default();
        tasks.spawn("forever", async {
            std::future::pending::<()>().await;
            Ok(())
        });
        tasks.spawn("relay", async { Err(anyhow::anyhow!("listener lost")) });
        let exit = tasks.first_exit().await.unwrap();
        assert_eq!(exit.name, "relay");
        assert_eq!(exit.to_string(), "relay failed: listener lost");
    }

    #[tokio::test]
    async fn a_panicking_task_is_reported_too() {
        let mut tasks = Tasks::default();
        tasks.spawn("controller", async { panic!("boom") });
        let exit = tasks.first_exit().await.unwrap();
        assert!(exit.outcome.is_err());
        assert!(exit.to_string().contains("panicked"), "{exit}");
    }
}
