//! The control API's types that nodes send and receive: the same structs on
//! both ends of the wire, so the client and the server cannot drift apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A task as stored, with its status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskRow {
    /// Id.
    pub id: i64,
    /// The stream it belongs to.
    pub stream: String,
    /// Task type.
    pub kind: String,
    /// Typed configuration (validated by its task type; secrets masked in API output).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: serde_json::Value,
    /// Runs when the stream is live.
    pub enabled: bool,
    /// `idle`, `running`, `failed` (restarting with backoff).
    pub state: String,
    /// The last error, kept after recovery.
    pub last_error: Option<String>,
    /// Restarts after failures.
    pub restarts: i64,
    /// Worker holding the lease.
    pub worker: Option<String>,
    /// Lease expiry, Unix milliseconds.
    pub lease_until_ms: i64,
}

/// What a worker reports about a task it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskStatus {
    /// `running` or `failed` (restarting with backoff).
    pub state: String,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Restarts so far.
    pub restarts: i64,
}

/// A task's status, as a worker reports it with each renewal.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskReport {
    /// Task id.
    pub id: i64,
    /// Its status.
    pub status: TaskStatus,
}

/// A node of the cluster as last reported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeRow {
    /// Stable id.
    pub id: String,
    /// `origin`, `edge`, `worker`, `all`, `control`.
    pub role: String,
    /// Where it is reached.
    pub address: String,
    /// Ferry version.
    pub version: String,
    /// Unix milliseconds.
    pub last_heartbeat_ms: i64,
    /// Load, 0..1 per core.
    pub load: f64,
    /// Streams live on this node (origins).
    #[serde(default)]
    pub streams: Vec<String>,
    /// An edge's last load report (kept in memory, not in the database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<EdgeLoad>,
    /// An origin's relay (kept in memory, not in the database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayAdvert>,
    /// A director's viewers per edge id (kept in memory, not in the database).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub viewers: BTreeMap<String, u64>,
    /// The people this node serves, per stream (kept in memory, not in the
    /// database).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub audience: BTreeMap<String, Audience>,
    /// An origin's live streams' ingest (kept in memory, not in the
    /// database).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ingest: BTreeMap<String, IngestReport>,
}

/// A stream's audience as one node counts it: people, not Ferry's own
/// consumers (packager, ladder, relay, tasks). Directors count HLS viewers;
/// origins and RTMP edges count RTMP players. Control sums the nodes'
/// reports, so an operator sees the whole cluster's audience.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Audience {
    /// HLS viewers placed by directors (each follows a media playlist).
    #[serde(default)]
    pub hls: u64,
    /// RTMP players (the source and its rungs).
    #[serde(default)]
    pub rtmp: u64,
    /// HLS viewers per variant (`source`, a rung's name) they follow now
    /// (directors): which rungs people actually watch.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variants: BTreeMap<String, u64>,
    /// HLS requests edges answered for the stream since each started
    /// (what their `edge_stream_requests` counters say).
    #[serde(default)]
    pub requests: u64,
    /// Body bytes edges sent for the stream since each started (their
    /// `edge_stream_bytes_out` counters).
    #[serde(default)]
    pub egress_bytes: u64,
}

impl Audience {
    /// Adds `other` to this count.
    pub fn add(&mut self, other: &Audience) {
        self.hls = self.hls.saturating_add(other.hls);
        self.rtmp = self.rtmp.saturating_add(other.rtmp);
        for (variant, n) in &other.variants {
            let mine = self.variants.entry(variant.clone()).or_default();
            *mine = mine.saturating_add(*n);
        }
        self.requests = self.requests.saturating_add(other.requests);
        self.egress_bytes = self.egress_bytes.saturating_add(other.egress_bytes);
    }

    /// Whether it counts nothing (not worth a heartbeat's bytes).
    pub fn is_empty(&self) -> bool {
        self == &Audience::default()
    }
}

/// A live stream's ingest as the origin that takes it counts it: what
/// control shows of a stream packaged on another process (a separate
/// `ferry control` has no hub of its own), rates being differences of the
/// counters between two reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IngestReport {
    /// Where the publisher connects from.
    #[serde(default)]
    pub publisher: Option<String>,
    /// When the publisher started, Unix milliseconds.
    #[serde(default)]
    pub since_ms: i64,
    /// Video codec (RFC 6381).
    #[serde(default)]
    pub video_codec: Option<String>,
    /// Audio codec (RFC 6381).
    #[serde(default)]
    pub audio_codec: Option<String>,
    /// Payload bytes received from the current publisher.
    #[serde(default)]
    pub bytes_in: u64,
    /// Video frames received from the current publisher.
    #[serde(default)]
    pub video_frames: u64,
    /// Milliseconds between the source's keyframes.
    #[serde(default)]
    pub keyframe_interval_ms: Option<u64>,
    /// The frame rate the encoder announced (`onMetaData` `framerate`).
    #[serde(default)]
    pub nominal_fps: Option<f64>,
    /// Ferry's own consumers of the stream on that origin, by kind.
    #[serde(default)]
    pub consumers: BTreeMap<String, u64>,
    /// The ladder's rungs by name, while it transcodes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rungs: BTreeMap<String, RungReport>,
}

/// One rung of a ladder as its origin counts it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RungReport {
    /// Encoded payload bytes.
    #[serde(default)]
    pub bytes_out: u64,
    /// Encoded video frames.
    #[serde(default)]
    pub video_frames: u64,
    /// When the rung started, Unix milliseconds.
    #[serde(default)]
    pub since_ms: i64,
    /// How far the rung's newest frame trails the source's, in media
    /// milliseconds: the encoder's lag (`None` before its first frame).
    #[serde(default)]
    pub lag_ms: Option<i64>,
}

/// An origin's relay as it reports it: what edges need to pin it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RelayAdvert {
    /// The relay's UDP port.
    pub port: u16,
    /// SHA-256 of its certificate, 64 lowercase hex digits.
    pub fingerprint: String,
}

impl RelayAdvert {
    /// Whether the fields are what an origin can send (a port, a SHA-256).
    pub fn is_valid(&self) -> bool {
        self.port != 0
            && self.fingerprint.len() == 64
            && self
                .fingerprint
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }
}

/// `POST /relay/verify`: an origin asks whether an edge's token is one it
/// may serve.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EdgeTokenCheck {
    /// The token the edge sent over the relay.
    pub token: String,
}

/// The answer to [`EdgeTokenCheck`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EdgeTokenVerdict {
    /// Whether it is an edge's (or an admin's) token.
    pub edge: bool,
}

/// `POST /nodes/heartbeat`: a node says it is alive.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// Stable node id.
    pub id: String,
    /// `origin`, `edge`, `worker`, `all` or `control`.
    pub role: String,
    /// Where it is reached, e.g. `10.0.0.5:8080`.
    pub address: String,
    /// Its version.
    pub version: String,
    /// Load, 0..1 per core.
    #[serde(default)]
    pub load: f64,
    /// Streams live on this node (origins report them; workers then run their
    /// tasks).
    #[serde(default)]
    pub live: Vec<String>,
    /// What an edge serves (edges only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<EdgeLoad>,
    /// An origin's relay, for edges to pin (origins only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayAdvert>,
    /// A director's viewers per edge id (directors only): what the
    /// autoscaler weighs an edge's removal by, and operators' audience.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub viewers: BTreeMap<String, u64>,
    /// The people this node serves, per stream: HLS viewers (directors),
    /// RTMP players (origins and edges), HLS requests and egress (edges).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub audience: BTreeMap<String, Audience>,
    /// Its live streams' ingest (origins apart from control).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ingest: BTreeMap<String, IngestReport>,
}

/// An edge's load, sent with each heartbeat: what the director weighs edges by
/// and what operators watch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EdgeLoad {
    /// Relative capacity (viewers it is sized for), 1..=1,000,000.
    pub capacity: u32,
    /// Open HTTP connections.
    pub connections: u64,
    /// Bytes per second sent to viewers, times 8.
    pub egress_bps: u64,
    /// Share of requests answered from the cache since the last beat, 0..1.
    pub hit_ratio: f64,
    /// The edge is going away on purpose: give it no new viewers.
    #[serde(default)]
    pub draining: bool,
    /// HLS requests it answered since its previous report: a draining
    /// edge is stopped once this stays 0.
    #[serde(default)]
    pub requests: u64,
    /// The pool it belongs to: a content-steering pathway (letters, digits,
    /// `.`, `-`, `_`).
    #[serde(default = "default_pool")]
    pub pool: String,
}

impl Default for EdgeLoad {
    fn default() -> Self {
        Self {
            capacity: 1,
            connections: 0,
            egress_bps: 0,
            hit_ratio: 1.0,
            draining: false,
            requests: 0,
            pool: default_pool(),
        }
    }
}

/// The pool of an edge that names none.
pub fn default_pool() -> String {
    "default".into()
}

/// An origin alive now, as edges find it (`GET /origins`): where to fetch
/// HLS from, which streams it carries, and its relay's pin.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OriginRow {
    /// Node id.
    pub id: String,
    /// The URL it advertises (`[http] public_url`, or its bound address).
    pub url: String,
    /// Streams live on it now.
    pub streams: Vec<String>,
    /// Its relay (port and certificate fingerprint), if it runs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayAdvert>,
}

/// An edge as the registry sees it (`GET /edges`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EdgeRow {
    /// Node id.
    pub id: String,
    /// The URL viewers reach it at.
    pub url: String,
    /// `live`, `draining` (no new viewers) or `dead` (missed its heartbeats).
    pub state: String,
    /// Its last report.
    pub load: EdgeLoad,
    /// CPU load per core.
    pub cpu: f64,
    /// Unix milliseconds of the last heartbeat.
    pub last_heartbeat_ms: i64,
    /// Viewers the directors place on it (their sum).
    #[serde(default)]
    pub viewers: u64,
}

/// The answer to a heartbeat.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatReply {
    /// Streams whose publisher this node must disconnect (an operator's kick).
    pub kick: Vec<String>,
}

/// `POST /auth/publish`: an origin asks whether a key may publish.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PublishCheck {
    /// The stream key the encoder sent.
    pub key: String,
}

/// The stream a key publishes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublishGrant {
    /// Stream name.
    pub stream: String,
    /// The stream's settings, for the origin to apply to this publish.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub settings: serde_json::Value,
}

/// Why `POST /auth/publish` refused (403), for the origin to tell the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    /// No active key like it.
    UnknownKey,
    /// The stream may not go live now.
    Disabled,
}

/// The body of a refused `POST /auth/publish`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublishDenied {
    /// What to show.
    pub error: String,
    /// Why, for machines.
    pub reason: DenyReason,
}
