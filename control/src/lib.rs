//! Ferry's control plane: streams and their publish keys, tasks attached to
//! streams and run by workers under leases, the node registry, and operator
//! tokens — in SQLite in the data directory or in PostgreSQL (several
//! control processes sharing it, one leader), behind a REST API
//! ([`api::router`]) that the web UI uses too. Publish authorisation for the
//! RTMP origin comes from here ([`auth::ControlAuth`]).

pub mod api;
pub mod audience;
pub mod autoscale;
pub mod db;
pub mod history;
pub mod ingest;
pub mod keys;
pub mod leader;
pub mod leases;
pub mod nodes;
pub mod secret;

use std::collections::BTreeMap;
use std::sync::Arc;

use control_client::types::IngestReport;

pub use control_client::ControlAuth;
pub use db::{Db, DbError};

/// Everything the API handlers share.
pub struct Control {
    /// The state.
    pub db: Arc<Db>,
    /// Publish authorisation (its cache is invalidated on changes).
    pub auth: ControlAuth,
    /// What `auth` looks keys up in, with the settings each stream had then.
    pub keys: Arc<keys::StreamKeys>,
    /// The streams live in this process (`ferry serve`), if any: their
    /// ingest and kicks.
    pub local: Arc<dyn ingest::LocalStreams>,
    /// Task types this control plane accepts (the binary hands it the
    /// worker's built-in ones).
    pub types: control_client::TaskSpecs,
    /// What clients need to know about this server.
    pub server: ServerInfo,
    /// Kicks asked for streams live on another origin, handed to it with the
    /// answer to its next heartbeat: stored, and mirrored here so a beat
    /// looks at the database only when a kick waits for its node.
    pub pending_kicks: Arc<dashmap::DashSet<(String, String)>>,
    /// What per-stream settings may say (the server that applies them decides).
    pub settings: SettingsKind,
    /// `POST /auth/publish` calls per token, rate-limited.
    pub auth_checks: AuthChecks,
    /// Registered nodes and which are alive.
    pub nodes: Arc<Nodes>,
    /// The edge farm's autoscaler, when `[autoscale] enabled`.
    pub autoscaler: Option<Arc<autoscale::Autoscaler>>,
    /// What streams and nodes did recently ([`Control::record_history`]).
    pub history: Arc<history::History>,
    /// Whether this process leads the control processes on its database.
    pub leader: Arc<leader::Leader>,
}

/// A kick no origin collected within this is dropped.
const KICK_TTL_MS: i64 = 60_000;

/// `POST /auth/publish` calls a token may make per [`AUTH_CHECK_WINDOW`]
/// (origins cache answers, so real ones make a few per publish).
pub const AUTH_CHECKS_PER_WINDOW: u32 = 300;
/// The window [`AUTH_CHECKS_PER_WINDOW`] counts in.
pub const AUTH_CHECK_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// Counts publish checks per token, so a leaked node token cannot be used to
/// try keys at the database's speed.
#[derive(Clone, Default)]
pub struct AuthChecks(Arc<dashmap::DashMap<Vec<u8>, (u32, std::time::Instant)>>);

impl AuthChecks {
    /// Counts one check by `token`; `false` past the limit.
    pub fn allow(&self, token: &str) -> bool {
        if self.0.len() > 1024 {
            self.0.retain(|_, v| v.1.elapsed() < AUTH_CHECK_WINDOW);
        }
        let mut e = self
            .0
            .entry(secret::hash(token))
            .or_insert((0, std::time::Instant::now()));
        if e.1.elapsed() >= AUTH_CHECK_WINDOW {
            *e = (0, std::time::Instant::now());
        }
        e.0 += 1;
        e.0 <= AUTH_CHECKS_PER_WINDOW
    }
}

/// Checks settings; returns them normalised, or what is wrong.
pub type SettingsValidator =
    Arc<dyn Fn(&serde_json::Value) -> Result<serde_json::Value, String> + Send + Sync>;

/// Validates per-stream settings, and describes them for the UI.
#[derive(Clone)]
pub struct SettingsKind {
    /// JSON Schema of the settings object.
    pub schema: serde_json::Value,
    /// Checks settings; returns them normalised, or what is wrong.
    pub validate: SettingsValidator,
}

impl Default for SettingsKind {
    /// Only an empty object: a control plane that applies no settings.
    fn default() -> Self {
        Self {
            schema: serde_json::json!({"type": "object", "properties": {}, "additionalProperties": false}),
            validate: Arc::new(|v| match v.as_object() {
                Some(o) if o.is_empty() => Ok(v.clone()),
                _ => Err("this server takes no stream settings".into()),
            }),
        }
    }
}

pub use audience::AudienceCollector;
pub use nodes::{NODE_FRESH_MS, Nodes};

/// Where encoders publish, for the UI's "copy publish URL".
#[derive(Clone, Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub struct ServerInfo {
    /// RTMP port.
    pub rtmp_port: u16,
    /// RTMP application (`live`).
    pub rtmp_app: String,
    /// Ferry version.
    pub version: String,
    /// The HLS segment target (seconds; 0: unknown): a source whose
    /// keyframes are further apart makes longer segments, and is warned of.
    pub segment_seconds: f64,
}

impl Control {
    /// Whether `token` may pull over an origin's relay: an edge's token or
    /// an admin's.
    pub async fn may_relay(&self, token: &str) -> Result<bool, db::DbError> {
        Ok(matches!(
            self.db.token_role(token).await?,
            Some(db::TokenRole::Admin | db::TokenRole::Edge | db::TokenRole::EdgeFleet)
        ))
    }

    /// Wires the control plane to `db` and the streams of its own process.
    pub fn new(db: Arc<Db>, local: Arc<dyn ingest::LocalStreams>) -> Self {
        let keys = Arc::new(keys::StreamKeys::new(db.clone()));
        Self {
            auth: ControlAuth::with_lookup(keys.clone()),
            keys,
            db,
            local,
            types: control_client::TaskSpecs::default(),
            server: ServerInfo::default(),
            pending_kicks: Arc::default(),
            settings: SettingsKind::default(),
            auth_checks: AuthChecks::default(),
            nodes: Arc::new(Nodes::new(nodes::DEFAULT_NODE_PRUNE)),
            autoscaler: None,
            history: Arc::default(),
            leader: Arc::new(leader::Leader::new(format!(
                "control-{}-{}",
                std::process::id(),
                db::now_ms()
            ))),
        }
    }

    /// Every live stream's ingest: this process's own (`None`), or as an
    /// origin alive now reports it (with its id).
    pub fn ingest(&self) -> BTreeMap<String, (Option<String>, IngestReport)> {
        let mut all: BTreeMap<String, (Option<String>, IngestReport)> = self
            .nodes
            .ingest()
            .into_iter()
            .map(|(stream, (node, report))| (stream, (Some(node), report)))
            .collect();
        for (stream, report) in self.local.reports() {
            all.insert(stream, (None, report));
        }
        all
    }

    /// Adds a point at `now_ms` to the history of every stream (its ingest
    /// here or on an origin, its audience in the cluster) and every node.
    pub async fn record_history(&self, now_ms: i64) {
        let audience = self.nodes.audience();
        let ingest = self.ingest();
        if let Ok(streams) = self.db.streams().await {
            for s in streams {
                let a = audience.get(&s.name).cloned().unwrap_or_default();
                let report = ingest.get(&s.name).map(|(_, r)| r);
                let (bitrate, fps) = report.map_or((0.0, 0.0), |r| {
                    self.history
                        .rates(&s.name, now_ms, r.bytes_in, r.video_frames)
                });
                for (rung, r) in report.iter().flat_map(|r| &r.rungs) {
                    let key = format!("{}/{rung}", s.name);
                    self.history
                        .rates(&key, now_ms, r.bytes_out, r.video_frames);
                }
                let (egress_bps, requests_per_s) = self.history.rates(
                    &format!("{}#edges", s.name),
                    now_ms,
                    a.egress_bytes,
                    a.requests,
                );
                let keyframe_interval_s = report
                    .and_then(|r| r.keyframe_interval_ms)
                    .map_or(0.0, |ms| ms as f64 / 1000.0);
                self.history.streams.push(
                    &s.name,
                    history::StreamPoint {
                        t_ms: now_ms,
                        bitrate,
                        fps,
                        keyframe_interval_s,
                        hls_viewers: a.hls as f64,
                        rtmp_players: a.rtmp as f64,
                        egress_bps,
                        requests_per_s,
                    },
                );
            }
        }
        for e in self.nodes.edges() {
            if e.state == "dead" {
                continue;
            }
            self.history.nodes.push(
                &e.id,
                history::NodePoint {
                    t_ms: now_ms,
                    cpu: e.cpu,
                    connections: e.load.connections as f64,
                    egress_bps: e.load.egress_bps as f64,
                    viewers: e.viewers as f64,
                    hit_ratio: e.load.hit_ratio,
                },
            );
        }
        // Origins, workers, directors: their CPU.
        let fresh = now_ms - NODE_FRESH_MS;
        for n in self.nodes.list(&self.db).await.unwrap_or_default() {
            if n.role != "edge" && n.last_heartbeat_ms >= fresh {
                self.history.nodes.push(
                    &n.id,
                    history::NodePoint {
                        t_ms: now_ms,
                        cpu: n.load,
                        ..history::NodePoint::default()
                    },
                );
            }
        }
    }

    /// Records the history every `every` until `cancel`.
    pub async fn keep_history(
        self: Arc<Self>,
        every: std::time::Duration,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => self.record_history(db::now_ms()).await,
            }
        }
    }

    /// Shares state with the other control processes on the same database
    /// (liveness, drains, kicks waiting), and does what the leader does
    /// (pruning) when `leader`. Called about once a second.
    pub async fn sync_cluster(&self, leader: bool) -> Result<(), DbError> {
        self.nodes.sync(&self.db).await?;
        if leader {
            // An origin that never beat again with the stream: let it go.
            self.db
                .drop_kicks_before(db::now_ms() - KICK_TTL_MS)
                .await?;
        }
        let kicks = self.db.kicks().await?;
        self.pending_kicks.retain(|k| kicks.contains(k));
        for k in kicks {
            self.pending_kicks.insert(k);
        }
        self.nodes.prune(&self.db, leader).await;
        Ok(())
    }

    /// Keeps this process in the cluster until `cancel`: every `every`, takes
    /// or keeps the leader's lease and runs [`Control::sync_cluster`]; on
    /// the way out, gives the lease up.
    pub async fn keep_in_sync(
        self: Arc<Self>,
        every: std::time::Duration,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            let result = match self.leader.renew(&self.db).await {
                Ok(leader) => self.sync_cluster(leader).await,
                Err(e) => Err(e),
            };
            match result {
                Err(e) if !failing => {
                    tracing::warn!(error = %e, "control cannot sync with its database");
                    failing = true;
                }
                Ok(()) if failing => {
                    tracing::info!("control syncs with its database again");
                    failing = false;
                }
                _ => {}
            }
        }
        self.leader.resign(&self.db).await;
    }

    /// Streams live on other origins (reported with their heartbeats), with
    /// the node each is on.
    pub fn live_elsewhere(&self) -> Vec<(String, String)> {
        self.nodes.live_streams()
    }

    /// Applies a stream seeded from the config file, once: the first start
    /// creates it with `key`; later starts add a key that is new in the file,
    /// but never bring back a stream or key an operator deleted or revoked.
    pub async fn seed_stream(&self, name: &str, key: &str) -> Result<(), DbError> {
        let first = self.db.seed_once("stream", name).await?;
        let exists = match self.db.stream(name).await {
            Ok(_) => true,
            Err(DbError::NotFound(_)) => false,
            Err(e) => return Err(e),
        };
        if first && !exists {
            match self.db.create_stream(name, true).await {
                Ok(_) | Err(DbError::Exists(_)) => {}
                Err(e) => return Err(e),
            }
        } else if !exists {
            tracing::info!(
                stream = name,
                "not re-creating a seeded stream an operator deleted"
            );
            return Ok(());
        }
        let key_seed = secret::hex(&secret::hash(key));
        if self.db.seed_once("key", &key_seed).await?
            && self.db.stream_for_key(key).await?.is_none()
        {
            match self.db.add_key(name, key).await {
                Ok(_) | Err(DbError::Exists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.auth.invalidate();
        Ok(())
    }

    /// Makes sure an operator token exists: `given` (e.g. `FERRY_ADMIN_TOKEN`)
    /// replaces the previous given one; with none stored and none given, a new
    /// one is made and returned so the caller can show it once.
    pub async fn ensure_admin_token(&self, given: Option<&str>) -> Result<Option<String>, DbError> {
        if let Some(t) = given.filter(|t| !t.is_empty()) {
            self.db.set_env_admin_token(t).await?;
            return Ok(None);
        }
        if self.db.has_tokens().await? {
            return Ok(None);
        }
        let token = secret::generate();
        self.db.add_token(&token).await?;
        Ok(Some(token))
    }
}
