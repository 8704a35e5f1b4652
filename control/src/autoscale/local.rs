//! The `local` provider: `ferry edge` processes on this host, one per port
//! of a range, for one-machine setups and the tests. Edges it started stop
//! with it (a farm on one host has no life of its own without control).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use autoscale::LocalConfig;
use tokio::process::{Child, Command};
use tracing::{info, warn};

use super::provider::{Provider, ProviderError, ProviderFuture};

/// How long a stopped edge gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The control token of the edge whose data directory is given: one per
/// edge, since a node token acts as one node.
pub type TokenFor = Arc<
    dyn Fn(
            std::path::PathBuf,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send>>
        + Send
        + Sync,
>;

/// Where and how the local edges run.
#[derive(Clone)]
pub struct LocalSetup {
    /// The knobs of `[autoscale.local]`.
    pub config: LocalConfig,
    /// The program (this `ferry` binary unless configured).
    pub program: PathBuf,
    /// Base of the edges' data directories.
    pub data_dir: PathBuf,
    /// The control plane's URL, for the edges' heartbeats.
    pub control_url: String,
    /// Each edge's token.
    pub token_for: TokenFor,
    /// Their origins.
    pub origins: Vec<String>,
}

/// `ferry edge` processes on this host.
pub struct LocalProvider {
    setup: LocalSetup,
    children: Mutex<BTreeMap<String, (u16, Child)>>,
}

impl LocalProvider {
    /// A provider that starts nothing yet.
    pub fn new(setup: LocalSetup) -> Result<Self, ProviderError> {
        if setup.origins.is_empty() {
            return Err(ProviderError::Config(
                "[autoscale.local] origins: the edges need at least one origin".into(),
            ));
        }
        Ok(Self {
            setup,
            children: Mutex::new(BTreeMap::new()),
        })
    }

    /// The node id of the edge on `port`.
    fn id_of(port: u16) -> String {
        format!("edge-local-{port}")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (u16, Child)>> {
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A port of the range that no child holds and nothing else listens on.
    fn free_port(&self, taken: &[u16]) -> Option<u16> {
        let c = &self.setup.config;
        let held: Vec<u16> = self.lock().values().map(|(p, _)| *p).collect();
        (c.first_port..=c.last_port)
            .filter(|p| !held.contains(p) && !taken.contains(p))
            .find(|p| std::net::TcpListener::bind((c.host.as_str(), *p)).is_ok())
    }

    async fn spawn(&self, port: u16) -> Result<String, ProviderError> {
        let c = &self.setup.config;
        let id = Self::id_of(port);
        let dir = self.setup.data_dir.join(&id);
        std::fs::create_dir_all(&dir)?;
        // The edge keeps the id it finds in its data directory: the one
        // the autoscaler expects it to report under.
        std::fs::write(dir.join("node-id"), &id)?;
        let token = (self.setup.token_for)(dir.clone())
            .await
            .map_err(ProviderError::Config)?;
        let log = std::fs::File::create(dir.join("edge.log"))?;
        let mut cmd = Command::new(&self.setup.program);
        cmd.arg("edge")
            .arg("--http-listen")
            .arg(format!("{}:{port}", c.host))
            .arg("--data-dir")
            .arg(&dir)
            .arg("--origins")
            .arg(self.setup.origins.join(","))
            .args(&c.args)
            .env("FERRY_CONTROL__URL", &self.setup.control_url)
            .env("FERRY_ADMIN_TOKEN", token)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        for kv in &c.env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
        let child = cmd.spawn()?;
        info!(edge = %id, port, pid = child.id(), "autoscaler started an edge");
        self.lock().insert(id.clone(), (port, child));
        Ok(id)
    }
}

impl Provider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    fn add(&self, n: u32) -> ProviderFuture<'_, Vec<String>> {
        Box::pin(async move {
            let mut ids = Vec::new();
            let mut taken = Vec::new();
            for _ in 0..n {
                let Some(port) = self.free_port(&taken) else {
                    if ids.is_empty() {
                        return Err(ProviderError::Exhausted(format!(
                            "every port of {}..={} is in use",
                            self.setup.config.first_port, self.setup.config.last_port
                        )));
                    }
                    warn!(started = ids.len(), asked = n, "port range exhausted");
                    break;
                };
                taken.push(port);
                ids.push(self.spawn(port).await?);
            }
            Ok(ids)
        })
    }

    fn remove<'a>(&'a self, id: &'a str) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            let Some((port, mut child)) = self.lock().remove(id) else {
                return Ok(());
            };
            if let Some(pid) = child.id() {
                // SIGTERM first: the edge finishes what it serves and says
                // it is leaving; SIGKILL only if it does not exit.
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status()
                    .await;
            }
            match tokio::time::timeout(STOP_GRACE, child.wait()).await {
                Ok(status) => {
                    info!(edge = %id, port, status = ?status.ok(), "autoscaler stopped an edge");
                }
                Err(_) => {
                    warn!(edge = %id, "edge ignored SIGTERM; killing it");
                    child.start_kill()?;
                    let _ = child.wait().await;
                }
            }
            Ok(())
        })
    }

    fn owns(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }
}
