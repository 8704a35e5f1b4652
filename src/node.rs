//! What every role does as a node of the cluster: a stable id kept in its data
//! directory, and one heartbeat loop that reports it (and, for an origin, its
//! live streams) to the control plane, in process or over HTTP.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use media_core::Hub;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The file in the data directory that holds the node id.
pub const NODE_ID_FILE: &str = "node-id";
/// How often a node reports itself.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

/// This node's id: made once (`node-` and 12 random hex digits) and kept in
/// `DATA_DIR/node-id`, so restarts and other hosts never collide or pile up
/// rows in the registry.
pub fn stable_id(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(id) if valid_id(id.trim()) => Ok(id.trim().to_owned()),
        Ok(_) | Err(_) => {
            crate::state_files::create_private_dir(data_dir)?;
            let id = format!("node-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
            crate::state_files::write_atomic(&path, id.as_bytes())?;
            Ok(id)
        }
    }
}

/// Whether `id` may name a node: 1-64 letters, digits, `_`, `-`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The 1-minute load average per core (0 where `/proc/loadavg` is missing).
pub fn load_per_core() -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |l| l / cores)
}

/// Where heartbeats go.
#[derive(Clone)]
pub enum ControlPlane {
    /// The control plane of this process.
    Local(Arc<control::Control>),
    /// Another process's control plane.
    Remote(Arc<control_client::ControlClient>),
}

impl ControlPlane {
    /// The control plane of this process, if it is here.
    pub fn local(&self) -> Option<&Arc<control::Control>> {
        match self {
            ControlPlane::Local(control) => Some(control),
            ControlPlane::Remote(_) => None,
        }
    }

    /// Who may publish: the keys in this process's store, or the remote
    /// control plane's answers with their cache and lockout.
    pub fn authorizer(&self) -> Arc<dyn media_core::auth::PublishAuthorizer> {
        match self {
            ControlPlane::Local(control) => Arc::new(control.auth.clone()),
            ControlPlane::Remote(client) => {
                Arc::new(control::ControlAuth::with_lookup(client.clone()))
            }
        }
    }

    /// A stream's settings as they came with its last publish check (from
    /// the API; the config file applies under them).
    pub fn stream_settings(&self, name: &str) -> crate::stream_settings::StreamSettings {
        let stored = match self {
            ControlPlane::Local(control) => control.keys.settings(name),
            ControlPlane::Remote(client) => client.stream_settings(name),
        };
        crate::stream_settings::StreamSettings::from_stored(&stored)
    }

    /// The edges a director places viewers on.
    pub fn edge_source(&self) -> director::EdgeSource {
        match self {
            ControlPlane::Local(control) => {
                let nodes = control.nodes.clone();
                Arc::new(move || {
                    let rows = nodes.edges();
                    Box::pin(async move { Ok(rows) })
                })
            }
            ControlPlane::Remote(client) => director::from_control(client.clone()),
        }
    }
}

/// How often an edge reports (the director's dead-edge time is a few beats).
pub const EDGE_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// An edge's load report, made fresh for each beat.
pub type EdgeReport = Arc<dyn Fn() -> control_client::types::EdgeLoad + Send + Sync>;

/// A director's viewers per edge id, counted fresh for each beat.
pub type ViewersReport = Arc<dyn Fn() -> std::collections::BTreeMap<String, u64> + Send + Sync>;

/// The people a node serves per stream (HLS viewers from a director, RTMP
/// players from a hub), counted fresh for each beat.
pub type AudienceReport = Arc<
    dyn Fn() -> std::collections::BTreeMap<String, control_client::types::Audience> + Send + Sync,
>;

/// The RTMP players of `hub` per source stream, as a node's audience.
pub fn rtmp_players(hub: &Hub) -> AudienceReport {
    let hub = hub.clone();
    Arc::new(move || {
        hub.subscribers_by_source("rtmp")
            .into_iter()
            .map(|(stream, n)| {
                let audience = control_client::types::Audience {
                    rtmp: n as u64,
                    ..Default::default()
                };
                (stream, audience)
            })
            .collect()
    })
}

/// Live streams whose ingest one heartbeat carries: the busiest, so that a
/// beat stays well inside control's body limit (a report is a few hundred
/// bytes with its rungs); the others are still listed as live.
pub const MAX_INGEST_REPORTS: usize = 200;

/// `hub`'s ingest for a heartbeat: at most [`MAX_INGEST_REPORTS`] streams,
/// the busiest by bytes received.
fn ingest_report(
    hub: &Hub,
) -> std::collections::BTreeMap<String, control_client::types::IngestReport> {
    let all = control::ingest::of_hub(hub);
    if all.len() <= MAX_INGEST_REPORTS {
        return all;
    }
    let mut all: Vec<_> = all.into_iter().collect();
    all.sort_by_key(|(_, r)| std::cmp::Reverse(r.bytes_in));
    all.truncate(MAX_INGEST_REPORTS);
    all.into_iter().collect()
}

/// Who this node is.
#[derive(Clone)]
pub struct NodeInfo {
    /// Its stable id.
    pub id: String,
    /// `all`, `origin`, `control`, `worker`, `edge`.
    pub role: &'static str,
    /// Where it is reached (its HTTP address or public URL), or `-`.
    pub address: String,
    /// An edge's load, sent with every beat (edges beat every
    /// [`EDGE_HEARTBEAT_INTERVAL`]; others every [`HEARTBEAT_INTERVAL`]).
    pub edge: Option<EdgeReport>,
    /// An origin's relay, reported so that edges can pin it.
    pub relay: Option<control_client::types::RelayAdvert>,
    /// A director's viewers per edge (directors beat every
    /// [`EDGE_HEARTBEAT_INTERVAL`] too: the autoscaler drains by them).
    pub viewers: Option<ViewersReport>,
    /// The people it serves, per stream.
    pub audience: Option<AudienceReport>,
}

impl NodeInfo {
    /// The heartbeat this node sends over HTTP, with `live` streams and an
    /// edge's `edge` load.
    fn beat(
        &self,
        live: Vec<String>,
        edge: Option<control_client::types::EdgeLoad>,
        ingest: std::collections::BTreeMap<String, control_client::types::IngestReport>,
    ) -> control_client::types::Heartbeat {
        control_client::types::Heartbeat {
            id: self.id.clone(),
            role: self.role.into(),
            address: self.address.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            load: load_per_core(),
            live,
            edge,
            relay: self.relay.clone(),
            viewers: self.viewers.as_ref().map(|v| v()).unwrap_or_default(),
            audience: self.audience.as_ref().map(|a| a()).unwrap_or_default(),
            ingest,
        }
    }
}

/// Reports `node` to `registry` every [`HEARTBEAT_INTERVAL`] until `cancel`.
/// With a `hub` (an origin apart from control), its live streams go with each
/// beat and the kicks control answers with are carried out.
pub async fn heartbeat(
    node: NodeInfo,
    registry: ControlPlane,
    hub: Option<Hub>,
    cancel: CancellationToken,
) {
    let every = if node.edge.is_some() || node.viewers.is_some() {
        EDGE_HEARTBEAT_INTERVAL
    } else {
        HEARTBEAT_INTERVAL
    };
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                // An edge going away on purpose says so, so that no new
                // viewer is sent to it while it stops.
                if let (Some(report), ControlPlane::Remote(client)) = (&node.edge, &registry) {
                    let mut load = report();
                    load.draining = true;
                    let beat = node.beat(Vec::new(), Some(load), Default::default());
                    let last = client.heartbeat(&beat);
                    let _ = tokio::time::timeout(Duration::from_secs(1), last).await;
                }
                return;
            }
            _ = tick.tick() => {}
        }
        let live = hub.as_ref().map(Hub::live_sources).unwrap_or_default();
        let edge = node.edge.as_ref().map(|report| report());
        match &registry {
            ControlPlane::Local(control) => {
                let row = control::db::NodeRow {
                    id: node.id.clone(),
                    role: node.role.into(),
                    address: node.address.clone(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    last_heartbeat_ms: 0,
                    load: load_per_core(),
                    // The all-in-one node carries what its own hub has
                    // (shown to operators; control reads that hub itself).
                    streams: if node.role == "all" {
                        control.local.live_sources()
                    } else {
                        live
                    },
                    edge,
                    relay: node.relay.clone(),
                    viewers: node.viewers.as_ref().map(|v| v()).unwrap_or_default(),
                    audience: node.audience.as_ref().map(|a| a()).unwrap_or_default(),
                    // Control reads this process's hub itself.
                    ingest: Default::default(),
                };
                if let Err(e) = control.nodes.beat(&control.db, row).await {
                    warn!(error = %e, "node heartbeat failed");
                }
            }
            ControlPlane::Remote(client) => {
                let ingest = hub.as_ref().map(ingest_report).unwrap_or_default();
                match client.heartbeat(&node.beat(live, edge, ingest)).await {
                    Ok(kicks) => {
                        for name in kicks {
                            info!(stream = %name, "kicked by the control plane");
                            if let Some(hub) = &hub {
                                hub.kick(&name);
                            }
                        }
                    }
                    Err(e) => warn!(error = %e, "heartbeat to the control plane failed"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_carries_the_busiest_streams_ingest_only() {
        let hub = Hub::new();
        let publishers: Vec<_> = (0..MAX_INGEST_REPORTS + 5)
            .map(|i| {
                let p = hub.publish(&format!("s{i}")).expect("publish");
                p.send(media_core::Packet {
                    track: media_core::TrackKind::Audio,
                    dts: media_core::Timestamp::from_millis(0),
                    pts: media_core::Timestamp::from_millis(0),
                    keyframe: true,
                    payload: bytes::Bytes::from(vec![0u8; i + 1]),
                });
                p
            })
            .collect();
        let report = ingest_report(&hub);
        assert_eq!(report.len(), MAX_INGEST_REPORTS);
        assert!(report.contains_key(&format!("s{}", MAX_INGEST_REPORTS + 4)));
        assert!(!report.contains_key("s0"), "the quietest is left out");
        drop(publishers);
    }

    #[test]
    fn the_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = stable_id(dir.path()).expect("made");
        assert!(first.starts_with("node-") && valid_id(&first), "{first}");
        assert_eq!(stable_id(dir.path()).expect("read"), first);
        std::fs::write(dir.path().join(NODE_ID_FILE), "bad id\n").expect("write");
        let replaced = stable_id(dir.path()).expect("remade");
        assert_ne!(replaced, first);
        assert!(valid_id(&replaced));
    }
}
