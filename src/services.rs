//! A role is a list of named services under one shutdown token: the HTTP
//! face, heartbeats, packaging, the ladder, the relay, the director's poll,
//! control's sync and history... Each runs as a task; one that ends before
//! shutdown (a panic, a loop that returned) is reported with its name and
//! counted, instead of vanishing while the process looks healthy.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::error;

/// The services of one role.
pub struct Services {
    shutdown: CancellationToken,
    running: Vec<(&'static str, JoinHandle<()>)>,
    ended_early: Arc<Mutex<Vec<&'static str>>>,
}

impl Services {
    /// No services yet; all that are added stop when `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            shutdown,
            running: Vec::new(),
            ended_early: Arc::default(),
        }
    }

    /// The token every service stops on.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Runs `service` as `name`.
    pub fn spawn(
        &mut self,
        name: &'static str,
        service: impl Future<Output = ()> + Send + 'static,
    ) {
        self.adopt(name, tokio::spawn(service));
    }

    /// Takes a service a helper started already.
    pub fn adopt(&mut self, name: &'static str, task: JoinHandle<()>) {
        let (shutdown, ended_early) = (self.shutdown.clone(), self.ended_early.clone());
        let watcher = tokio::spawn(async move {
            let outcome = task.await;
            if shutdown.is_cancelled() {
                return;
            }
            match outcome {
                Err(e) if e.is_panic() => error!(service = name, "service panicked"),
                _ => error!(service = name, "service stopped before shutdown"),
            }
            ended_early
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(name);
        });
        self.running.push((name, watcher));
    }

    /// Takes several services a helper started, all called `name`.
    pub fn adopt_all(
        &mut self,
        name: &'static str,
        tasks: impl IntoIterator<Item = JoinHandle<()>>,
    ) {
        for t in tasks {
            self.adopt(name, t);
        }
    }

    /// The names of the services running, in the order they were added.
    pub fn names(&self) -> Vec<&'static str> {
        self.running.iter().map(|(n, _)| *n).collect()
    }

    /// Services that ended before shutdown, by name.
    pub fn ended_early(&self) -> Vec<&'static str> {
        self.ended_early
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Cancels the shutdown token and waits for every service to end.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for (_, t) in self.running {
            let _ = t.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_service_that_ends_early_is_named_and_one_stopped_by_shutdown_is_not() {
        let mut s = Services::new(CancellationToken::new());
        let token = s.shutdown().clone();
        s.spawn("steady", async move { token.cancelled().await });
        s.spawn("returns", async {});
        s.spawn("panics", async { panic!("a bug") });
        assert_eq!(s.names(), ["steady", "returns", "panics"]);
        for _ in 0..100 {
            if s.ended_early().len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut early = s.ended_early();
        early.sort_unstable();
        assert_eq!(early, ["panics", "returns"]);
        let ended = s.ended_early.clone();
        tokio::time::timeout(Duration::from_secs(5), s.stop())
            .await
            .expect("stops");
        assert_eq!(
            ended.lock().expect("lock").len(),
            2,
            "shutdown is no early end"
        );
    }
}
