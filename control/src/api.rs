//! The REST API under `/api/v1`, with its OpenAPI document at
//! `/api/v1/openapi.json`. Every route but the document needs
//! `Authorization: Bearer TOKEN`; errors are JSON `{"error": "..."}` that say
//! what is wrong.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::Control;
use control_client::types::{
    Audience, DenyReason, EdgeRow, Heartbeat, HeartbeatReply, IngestReport, PublishCheck,
    PublishDenied, PublishGrant, TaskReport,
};

use crate::db::{DbError, KeyRow, NodeRow, StreamRow, TaskRow, now_ms};

/// An API error: a status and a sentence.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

/// The error body.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What is wrong.
    pub error: String,
}

impl ApiError {
    fn bad(msg: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::NotFound(_) => Self(StatusCode::NOT_FOUND, e.to_string()),
            DbError::Exists(_) => Self(StatusCode::CONFLICT, e.to_string()),
            DbError::Sqlite(_) | DbError::Postgres(_) | DbError::Column(_) => {
                tracing::warn!(error = %e, "api database error");
                Self(StatusCode::INTERNAL_SERVER_ERROR, "database error".into())
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over {MAX_BODY_BYTES} bytes"),
            );
        }
        Self::bad(format!("invalid JSON body: {}", e.body_text()))
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The longest address or version a heartbeat may carry.
pub const MAX_HEARTBEAT_TEXT: usize = 256;
/// The most live streams one heartbeat may report.
pub const MAX_HEARTBEAT_STREAMS: usize = 1000;
/// Variants, rungs or consumer kinds one stream's report may name.
pub const MAX_HEARTBEAT_VARIANTS: usize = 32;
/// Edges a director may report viewers for in one heartbeat.
pub const MAX_HEARTBEAT_EDGES: usize = 10_000;
/// The largest request body the API reads.
pub const MAX_BODY_BYTES: usize = 256 << 10;
type Body<T> = Result<Json<T>, JsonRejection>;

fn body<T>(b: Body<T>) -> ApiResult<T> {
    b.map(|Json(v)| v).map_err(ApiError::from)
}

/// Stream and task names become paths and hub names: the rule the config
/// file uses too ([`media_core::path::valid_name`]).
fn check_name(name: &str) -> ApiResult<()> {
    if media_core::path::valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad(format!(
            "name must be {}",
            media_core::path::NAME_RULE
        )))
    }
}

fn parse_id(raw: &str) -> ApiResult<i64> {
    raw.parse()
        .map_err(|_| ApiError::bad(format!("{raw:?} is not a numeric id")))
}

// --- types ------------------------------------------------------------------

/// A stream with its keys (masked) and live state.
#[derive(Serialize, ToSchema)]
pub struct StreamView {
    #[serde(flatten)]
    stream: StreamRow,
    /// Publish keys, newest first, masked.
    keys: Vec<KeyRow>,
    /// Live state now.
    live: LiveStatus,
}

/// A stream's live state.
#[derive(Serialize, ToSchema, Default)]
pub struct LiveStatus {
    /// Has a publisher now.
    pub live: bool,
    /// Where the publisher connects from.
    pub publisher: Option<String>,
    /// Video codec (RFC 6381).
    pub video_codec: Option<String>,
    /// Audio codec (RFC 6381).
    pub audio_codec: Option<String>,
    /// Average ingest bitrate since the publisher started, bits/s.
    pub bitrate: u64,
    /// Average video frame rate since the publisher started.
    pub fps: f64,
    /// Ingest bit rate over the last history period (`[control]
    /// history_seconds`), once there is one.
    pub recent_bitrate: Option<u64>,
    /// Video frame rate over the last history period.
    pub recent_fps: Option<f64>,
    /// The frame rate the encoder announced.
    pub nominal_fps: Option<f64>,
    /// Seconds since the publisher started.
    pub uptime_s: u64,
    /// The people watching, summed over the cluster's reports: HLS viewers
    /// (directors) and RTMP players (origins and edges), within a heartbeat
    /// (1-2 s).
    pub audience: control_client::types::Audience,
    /// Ferry's own consumers of the stream on this process (`hls`
    /// packager, `transcode` ladder, `relay` pulls, `restream` tasks), and
    /// its `rtmp` players here: what the stream feeds, not who watches.
    pub consumers: std::collections::BTreeMap<String, usize>,
    /// Other origins (node ids) that have the stream live too: redundant
    /// origins fed by the same encoder each report it.
    pub origins: Vec<String>,
    /// Seconds between the source's keyframes (what the encoder's keyframe
    /// interval is), when this process sees the stream.
    pub keyframe_interval_s: Option<f64>,
    /// The ladder's rungs while it transcodes: what each achieves.
    pub rungs: Vec<RungStatus>,
    /// What an operator should act on, each with what to change.
    pub warnings: Vec<StreamWarning>,
}

/// One rung of a live stream's ladder: whether the encoder keeps up.
#[derive(Serialize, ToSchema, Clone, Debug, Default, PartialEq)]
pub struct RungStatus {
    /// Its name (`720p`), also its HLS variant's.
    pub name: String,
    /// Bits/s it encodes (over the last history period once there is one).
    pub bitrate: u64,
    /// Frames/s it encodes (likewise).
    pub fps: f64,
    /// How far its newest frame trails the source's, media milliseconds.
    pub lag_ms: Option<i64>,
}

/// Something wrong with a live stream that an operator can fix.
#[derive(Serialize, ToSchema, Clone, Debug, PartialEq)]
pub struct StreamWarning {
    /// A stable code: `keyframe_interval`, `no_live_edge`.
    pub code: &'static str,
    /// What is wrong and what to change, in words.
    pub message: String,
}

/// Directors run but no edge is live: every viewer through them gets 503.
fn no_live_edge(c: &Control, edges: &[EdgeRow]) -> Option<StreamWarning> {
    let live = edges.iter().any(|e| e.state == "live");
    (!live && c.nodes.directors_alive() > 0).then(|| StreamWarning {
        code: "no_live_edge",
        message: "directors are running but no edge is live: viewers through a director get 503. \
                  Start `ferry edge` processes (or check the autoscaler's provider), or point \
                  players at the origin's HLS"
            .into(),
    })
}

/// Warnings that need a trend wait this long into a publish (encoders
/// start slowly, rates need two samples).
const WARN_AFTER_MS: i64 = 15_000;
/// Frames below this share of the announced rate are warned of.
const LOW_FPS_SHARE: f64 = 0.8;
/// A recent bit rate below this share of the minute before is a drop.
const BITRATE_DROP_SHARE: f64 = 0.5;
/// How far back the bit-rate drop looks.
const BITRATE_WINDOW_MS: i64 = 60_000;
/// A rung this many segment targets (and at least 3 s) behind the source
/// is falling behind.
const RUNG_LAG_SEGMENTS: f64 = 2.0;

/// Every edge that directors give more viewers than its capacity.
fn edges_over_capacity(edges: &[EdgeRow]) -> Option<StreamWarning> {
    let over: Vec<String> = edges
        .iter()
        .filter(|e| e.state == "live" && e.viewers > u64::from(e.load.capacity))
        .map(|e| {
            format!(
                "{} ({} viewers, capacity {})",
                e.id, e.viewers, e.load.capacity
            )
        })
        .collect();
    (!over.is_empty()).then(|| StreamWarning {
        code: "edge_over_capacity",
        message: format!(
            "edges over capacity: {}. Their viewers may stall: add edges (or raise [autoscale] \
             max_edges), or raise [edge] capacity if they have the headroom",
            over.join(", ")
        ),
    })
}

/// Frames arrive at `fps`, below what the encoder announced.
fn low_fps_warning(fps: f64, nominal: f64) -> Option<StreamWarning> {
    (nominal > 0.0 && fps < nominal * LOW_FPS_SHARE).then(|| StreamWarning {
        code: "low_fps",
        message: format!(
            "frames arrive at {fps:.1} fps, the encoder announced {nominal:.0}: it is overloaded \
             or its uplink drops frames. In OBS see View > Stats (skipped frames: pick a faster \
             encoder preset or a smaller output resolution; dropped frames: lower the bit rate)"
        ),
    })
}

/// Points the bit-rate drop is judged on: a drop must last this many
/// history periods (a long GOP makes single periods uneven).
const BITRATE_DROP_POINTS: usize = 3;

/// The source's bit rate over the last few history periods fell below half
/// of its mean over the rest of the minute before.
fn bitrate_drop_warning(c: &Control, name: &str, now: i64) -> Option<StreamWarning> {
    let points = c.history.streams.since(name, now - BITRATE_WINDOW_MS)?;
    let rates: Vec<f64> = points.iter().map(|p| p.bitrate).collect();
    bitrate_drop(&rates).map(|(recent, mean)| StreamWarning {
        code: "bitrate_drop",
        message: format!(
            "the source's bit rate fell to {:.0} kb/s from {:.0} kb/s over the last minute: \
             the encoder's uplink is congested or its rate control starves the picture. Check \
             the encoder's network (OBS: View > Stats, dropped frames) and use constant bit rate",
            recent / 1000.0,
            mean / 1000.0
        ),
    })
}

/// (recent, before) when the mean of the last [`BITRATE_DROP_POINTS`]
/// `rates` is below [`BITRATE_DROP_SHARE`] of the mean of the (non-zero)
/// ones before.
fn bitrate_drop(rates: &[f64]) -> Option<(f64, f64)> {
    let split = rates.len().checked_sub(BITRATE_DROP_POINTS)?;
    let (before, recent) = rates.split_at(split);
    let before: Vec<f64> = before.iter().copied().filter(|b| *b > 0.0).collect();
    if before.len() < BITRATE_DROP_POINTS {
        return None;
    }
    let mean = before.iter().sum::<f64>() / before.len() as f64;
    let now = recent.iter().sum::<f64>() / recent.len() as f64;
    (now < mean * BITRATE_DROP_SHARE).then_some((now, mean))
}

/// A rung that trails the source or encodes fewer frames than it gets.
fn rung_behind_warning(r: &RungStatus, source_fps: f64, segment: f64) -> Option<StreamWarning> {
    let lag_limit = (segment * RUNG_LAG_SEGMENTS * 1000.0).max(3000.0) as i64;
    let lagging = r.lag_ms.is_some_and(|l| l > lag_limit);
    let slow = source_fps > 0.0 && r.fps < source_fps * LOW_FPS_SHARE;
    (lagging || slow).then(|| StreamWarning {
        code: "rung_behind",
        message: format!(
            "rung {} falls behind: {:.1} fps of the source's {source_fps:.1}, {:.1} s behind. \
             This machine cannot encode the ladder in real time: drop a rung or lower its size, \
             or pick a faster [transcode.ladder] preset",
            r.name,
            r.fps,
            r.lag_ms.unwrap_or(0) as f64 / 1000.0
        ),
    })
}

/// Keyframes further apart than this many segment targets (plus a frame's
/// slack) are warned of.
const KEYFRAME_SLACK: f64 = 1.05;

/// The warnings for a source with keyframes `interval` seconds apart when
/// segments should last `target` seconds.
fn keyframe_warning(interval: f64, target: f64) -> Option<StreamWarning> {
    (target > 0.0 && interval > target * KEYFRAME_SLACK).then(|| StreamWarning {
        code: "keyframe_interval",
        message: format!(
            "keyframes arrive every {interval:.1} s, longer than the {target:.0} s segment target: \
             segments last {interval:.1} s, so players start and switch late and latency grows. \
             Set the encoder's keyframe interval to {target:.0} s (OBS: Settings > Output > \
             Keyframe Interval = {target:.0}; ffmpeg: -g at {target:.0} × the frame rate)"
        ),
    })
}

/// `POST /streams`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStream {
    /// Public name: 1-64 of letters, digits, `_`, `-`.
    name: String,
    /// May go live (default true).
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

/// `PATCH /streams/{name}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamPatch {
    /// May go live; disabling also kicks a live publisher.
    enabled: Option<bool>,
    /// Replaces the stream's settings (see `GET /stream-settings`); applied
    /// when the stream next goes live.
    #[schema(value_type = Option<Object>)]
    settings: Option<serde_json::Value>,
}

/// A new publish key, shown in full only in this response.
#[derive(Serialize, ToSchema)]
pub struct NewKey {
    /// Key id (for revoke and rotate).
    id: i64,
    /// The key: publish to `rtmp://HOST:1935/live/KEY`. Not retrievable later.
    key: String,
}

/// A created stream and its first key.
#[derive(Serialize, ToSchema)]
pub struct CreatedStream {
    /// The stream.
    stream: StreamRow,
    /// Its first key, in full (only here).
    key: NewKey,
}

/// `POST /streams/{name}/tasks`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// A task type from `GET /task-types`.
    kind: String,
    /// Its config, as the type's schema says.
    #[schema(value_type = Object)]
    config: serde_json::Value,
    /// Run when the stream is live (default true).
    #[serde(default = "yes")]
    enabled: bool,
}

/// `PATCH /tasks/{id}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskPatch {
    /// A new config (validated by the task type).
    #[schema(value_type = Option<Object>)]
    config: Option<serde_json::Value>,
    /// Enable or disable.
    enabled: Option<bool>,
}

/// A task type and the JSON Schema of its config.
#[derive(Serialize, ToSchema)]
pub struct TaskTypeView {
    /// Name.
    kind: String,
    /// What it does.
    description: String,
    /// JSON Schema of its config.
    #[schema(value_type = Object)]
    schema: serde_json::Value,
}

// --- handlers ---------------------------------------------------------------

/// What the cluster's heartbeats say, read once per request (not per
/// stream): streams live on other origins, every stream's ingest and
/// audience, and the farm's warnings.
struct Cluster {
    elsewhere: Vec<(String, String)>,
    ingest: BTreeMap<String, (Option<String>, IngestReport)>,
    audience: BTreeMap<String, Audience>,
    farm_warnings: Vec<StreamWarning>,
}

impl Cluster {
    fn read(c: &Control) -> Self {
        let edges = c.nodes.edges();
        Self {
            elsewhere: c.live_elsewhere(),
            ingest: c.ingest(),
            audience: c.nodes.audience(),
            farm_warnings: no_live_edge(c, &edges)
                .into_iter()
                .chain(edges_over_capacity(&edges))
                .collect(),
        }
    }
}

/// A stream's live state from its ingest report (this process's hub or an
/// origin's heartbeat) and the `cluster`'s reports.
fn live_status(c: &Control, name: &str, cluster: &Cluster) -> LiveStatus {
    let audience = cluster.audience.get(name).cloned().unwrap_or_default();
    let mut origins: Vec<String> = cluster
        .elsewhere
        .iter()
        .filter(|(s, _)| s == name)
        .map(|(_, node)| node.clone())
        .collect();
    origins.sort();
    let Some((reporter, report)) = cluster.ingest.get(name) else {
        // Live on an origin that sends no ingest: its streams only.
        return match origins.first() {
            Some(node) => LiveStatus {
                live: true,
                publisher: Some(format!("on origin {node}")),
                origins,
                audience,
                ..LiveStatus::default()
            },
            None => LiveStatus {
                audience,
                ..LiveStatus::default()
            },
        };
    };
    let now = now_ms();
    let uptime_ms = (now - report.since_ms).max(0);
    let secs = (uptime_ms as f64 / 1000.0).max(0.001);
    let keyframe_interval_s = report
        .keyframe_interval_ms
        .map(|ms| (ms as f64 / 100.0).round() / 10.0);
    let recent = c.history.recent(name);
    let fps_avg = report.video_frames as f64 / secs;
    let source_fps = recent.map_or(fps_avg, |(_, f)| f);
    let rungs: Vec<RungStatus> = report
        .rungs
        .iter()
        .map(|(rung, r)| {
            let rung_secs = ((now - r.since_ms).max(1) as f64 / 1000.0).max(0.001);
            let recent = c.history.recent(&format!("{name}/{rung}"));
            RungStatus {
                name: rung.clone(),
                bitrate: recent.map_or(r.bytes_out as f64 * 8.0 / rung_secs, |(b, _)| b) as u64,
                fps: round2(recent.map_or(r.video_frames as f64 / rung_secs, |(_, f)| f)),
                lag_ms: r.lag_ms,
            }
        })
        .collect();
    let mut warnings: Vec<StreamWarning> = keyframe_interval_s
        .and_then(|i| keyframe_warning(i, c.server.segment_seconds))
        .into_iter()
        .collect();
    if uptime_ms >= WARN_AFTER_MS {
        warnings.extend(
            report
                .nominal_fps
                .and_then(|n| low_fps_warning(source_fps, n)),
        );
        warnings.extend(bitrate_drop_warning(c, name, now));
        warnings.extend(
            rungs
                .iter()
                .filter_map(|r| rung_behind_warning(r, source_fps, c.server.segment_seconds)),
        );
    }
    warnings.extend(cluster.farm_warnings.iter().cloned());
    if let Some(node) = reporter
        && !origins.contains(node)
    {
        origins.push(node.clone());
        origins.sort();
    }
    LiveStatus {
        live: true,
        publisher: report.publisher.clone(),
        video_codec: report.video_codec.clone(),
        audio_codec: report.audio_codec.clone(),
        bitrate: (report.bytes_in as f64 * 8.0 / secs) as u64,
        fps: round2(fps_avg),
        recent_bitrate: recent.map(|(b, _)| b as u64),
        recent_fps: recent.map(|(_, f)| round2(f)),
        nominal_fps: report.nominal_fps,
        uptime_s: (uptime_ms / 1000) as u64,
        audience,
        consumers: report
            .consumers
            .iter()
            .map(|(k, n)| (k.clone(), *n as usize))
            .collect(),
        origins,
        keyframe_interval_s,
        rungs,
        warnings,
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

async fn stream_view(c: &Control, stream: StreamRow, cluster: &Cluster) -> ApiResult<StreamView> {
    Ok(StreamView {
        keys: c.db.keys(&stream.name).await?,
        live: live_status(c, &stream.name, cluster),
        stream,
    })
}

/// Lists streams.
#[utoipa::path(get, path = "/streams", responses((status = 200, body = [StreamView]), (status = 401, body = ErrorBody)))]
async fn list_streams(State(c): State<Arc<Control>>) -> ApiResult<Json<Vec<StreamView>>> {
    let rows = c.db.streams().await?;
    let cluster = Cluster::read(&c);
    let mut views = Vec::with_capacity(rows.len());
    for s in rows {
        views.push(stream_view(&c, s, &cluster).await?);
    }
    Ok(Json(views))
}

/// Creates a stream with a first publish key (shown once).
#[utoipa::path(post, path = "/streams", request_body = NewStream,
    responses((status = 201, body = CreatedStream), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_stream(
    State(c): State<Arc<Control>>,
    b: Body<NewStream>,
) -> ApiResult<(StatusCode, Json<CreatedStream>)> {
    let new = body(b)?;
    check_name(&new.name)?;
    let stream = c.db.create_stream(&new.name, new.enabled).await?;
    let key = crate::secret::generate();
    let id = c.db.add_key(&stream.name, &key).await?;
    c.auth.invalidate();
    Ok((
        StatusCode::CREATED,
        Json(CreatedStream {
            stream,
            key: NewKey { id, key },
        }),
    ))
}

/// One stream.
#[utoipa::path(get, path = "/streams/{name}", params(("name" = String, Path)),
    responses((status = 200, body = StreamView), (status = 404, body = ErrorBody)))]
async fn get_stream(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
) -> ApiResult<Json<StreamView>> {
    let row = c.db.stream(&name).await?;
    Ok(Json(stream_view(&c, row, &Cluster::read(&c)).await?))
}

/// Enables or disables a stream (disabling kicks its publisher).
#[utoipa::path(patch, path = "/streams/{name}", params(("name" = String, Path)), request_body = StreamPatch,
    responses((status = 200, body = StreamView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn patch_stream(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
    b: Body<StreamPatch>,
) -> ApiResult<Json<StreamView>> {
    let patch = body(b)?;
    if patch.enabled.is_none() && patch.settings.is_none() {
        return Err(ApiError::bad(
            "nothing to change: give enabled and/or settings",
        ));
    }
    // Validate everything before changing anything.
    let settings = match &patch.settings {
        Some(s) => Some(
            (c.settings.validate)(s)
                .map_err(|e| ApiError::bad(format!("invalid settings: {e}")))?,
        ),
        None => None,
    };
    let mut row = c.db.stream(&name).await?;
    if let Some(s) = settings {
        row = c.db.set_stream_settings(&name, &s).await?;
    }
    if let Some(enabled) = patch.enabled {
        row = c.db.set_stream_enabled(&name, enabled).await?;
        c.auth.invalidate();
        if !enabled {
            c.hub.kick(&name);
        }
    }
    Ok(Json(stream_view(&c, row, &Cluster::read(&c)).await?))
}

/// Deletes a stream, its keys and tasks; a live publisher is kicked.
#[utoipa::path(delete, path = "/streams/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_stream(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    c.db.delete_stream(&name).await?;
    c.auth.invalidate();
    c.hub.kick(&name);
    Ok(StatusCode::NO_CONTENT)
}

/// Adds a publish key (shown once).
#[utoipa::path(post, path = "/streams/{name}/keys", params(("name" = String, Path)),
    responses((status = 201, body = NewKey), (status = 404, body = ErrorBody)))]
async fn add_key(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Json<NewKey>)> {
    let key = crate::secret::generate();
    let id = c.db.add_key(&name, &key).await?;
    c.auth.invalidate();
    Ok((StatusCode::CREATED, Json(NewKey { id, key })))
}

/// Revokes a key: it is refused from the next publish on.
#[utoipa::path(delete, path = "/streams/{name}/keys/{id}", params(("name" = String, Path), ("id" = i64, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_key(
    State(c): State<Arc<Control>>,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    c.db.revoke_key(&name, parse_id(&id)?).await?;
    c.auth.invalidate();
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces a key with a new one (the old one is revoked; a live publisher
/// using it keeps going until it reconnects).
#[utoipa::path(post, path = "/streams/{name}/keys/{id}/rotate", params(("name" = String, Path), ("id" = i64, Path)),
    responses((status = 201, body = NewKey), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn rotate_key(
    State(c): State<Arc<Control>>,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<NewKey>)> {
    c.db.revoke_key(&name, parse_id(&id)?).await?;
    let key = crate::secret::generate();
    let id = c.db.add_key(&name, &key).await?;
    c.auth.invalidate();
    Ok((StatusCode::CREATED, Json(NewKey { id, key })))
}

/// `?since_ms=T` on a history: points at or after Unix milliseconds `T`.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct HistorySince {
    /// Unix milliseconds; without it, everything kept (an hour as sampled,
    /// then a point a minute for a day).
    since_ms: Option<i64>,
}

/// A stream's recent history: ingest bit rate and frame rate over each
/// period, keyframe interval, HLS viewers and RTMP players.
#[utoipa::path(get, path = "/history/streams/{name}", params(("name" = String, Path), HistorySince),
    responses((status = 200, body = [crate::history::StreamPoint]), (status = 404, body = ErrorBody)))]
async fn stream_history(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
    Query(q): Query<HistorySince>,
) -> ApiResult<Json<Vec<crate::history::StreamPoint>>> {
    c.db.stream(&name).await?;
    Ok(Json(
        c.history
            .streams
            .since(&name, q.since_ms.unwrap_or(0))
            .unwrap_or_default(),
    ))
}

/// A node's recent history: CPU, and for edges connections, egress,
/// viewers and hit ratio.
#[utoipa::path(get, path = "/history/nodes/{id}", params(("id" = String, Path), HistorySince),
    responses((status = 200, body = [crate::history::NodePoint]), (status = 404, body = ErrorBody)))]
async fn node_history(
    State(c): State<Arc<Control>>,
    Path(id): Path<String>,
    Query(q): Query<HistorySince>,
) -> ApiResult<Json<Vec<crate::history::NodePoint>>> {
    c.history
        .nodes
        .since(&id, q.since_ms.unwrap_or(0))
        .map(Json)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no history of node {id:?}")))
}

/// `?node=ID` on a kick: only that origin's publisher.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct KickScope {
    /// The origin (node id) whose publisher leaves; without it, every origin's.
    node: Option<String>,
}

/// Disconnects the live publisher: on every origin that has one (redundant
/// origins each have their own), or on `?node=ID` only.
#[utoipa::path(post, path = "/streams/{name}/kick", params(("name" = String, Path), KickScope),
    responses((status = 204), (status = 202, description = "live on another origin: kicked within its heartbeat interval"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn kick(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
    Query(scope): Query<KickScope>,
) -> ApiResult<StatusCode> {
    c.db.stream(&name).await?;
    let here = scope.node.is_none() && c.hub.kick(&name);
    let mut elsewhere = false;
    for (stream, node) in c.live_elsewhere() {
        if stream == name && scope.node.as_ref().is_none_or(|n| *n == node) {
            // Live on another origin: it is told with its next heartbeat,
            // whichever control process that reaches.
            c.db.add_kick(&stream, &node).await?;
            c.pending_kicks.insert((stream, node));
            elsewhere = true;
        }
    }
    match (here, elsewhere) {
        (_, true) => Ok(StatusCode::ACCEPTED),
        (true, false) => Ok(StatusCode::NO_CONTENT),
        (false, false) => Err(ApiError(
            StatusCode::CONFLICT,
            match scope.node {
                Some(node) => format!("stream {name:?} is not live on {node:?}"),
                None => format!("stream {name:?} is not live"),
            },
        )),
    }
}

/// Live state of every stream.
#[utoipa::path(get, path = "/live", responses((status = 200, body = [LiveStatus])))]
async fn live(
    State(c): State<Arc<Control>>,
) -> ApiResult<Json<std::collections::BTreeMap<String, LiveStatus>>> {
    let rows = c.db.streams().await?;
    let cluster = Cluster::read(&c);
    Ok(Json(
        rows.into_iter()
            .map(|s| {
                let l = live_status(&c, &s.name, &cluster);
                (s.name, l)
            })
            .collect(),
    ))
}

fn task_view(c: &Control, mut t: TaskRow) -> TaskRow {
    if let Some(kind) = c.types.get(&t.kind) {
        t.config = kind.redact(&t.config);
    }
    t
}

/// Every task, with status.
#[utoipa::path(get, path = "/tasks", responses((status = 200, body = [TaskRow])))]
async fn list_tasks(State(c): State<Arc<Control>>) -> ApiResult<Json<Vec<TaskRow>>> {
    Ok(Json(
        c.db.tasks(None)
            .await?
            .into_iter()
            .map(|t| task_view(&c, t))
            .collect(),
    ))
}

/// A stream's tasks.
#[utoipa::path(get, path = "/streams/{name}/tasks", params(("name" = String, Path)),
    responses((status = 200, body = [TaskRow]), (status = 404, body = ErrorBody)))]
async fn stream_tasks(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<TaskRow>>> {
    Ok(Json(
        c.db.tasks(Some(&name))
            .await?
            .into_iter()
            .map(|t| task_view(&c, t))
            .collect(),
    ))
}

/// Attaches a task to a stream.
#[utoipa::path(post, path = "/streams/{name}/tasks", params(("name" = String, Path)), request_body = NewTask,
    responses((status = 201, body = TaskRow), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn create_task(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
    b: Body<NewTask>,
) -> ApiResult<(StatusCode, Json<TaskRow>)> {
    let new = body(b)?;
    let kind = c
        .types
        .get(&new.kind)
        .ok_or_else(|| ApiError::bad(format!("unknown task type {:?}", new.kind)))?;
    let config = kind
        .validate(&new.config)
        .map_err(|e| ApiError::bad(format!("invalid {} config: {e}", new.kind)))?;
    let row =
        c.db.create_task(&name, &new.kind, &config, new.enabled)
            .await?;
    Ok((StatusCode::CREATED, Json(task_view(&c, row))))
}

/// One task.
#[utoipa::path(get, path = "/tasks/{id}", params(("id" = i64, Path)),
    responses((status = 200, body = TaskRow), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_task(
    State(c): State<Arc<Control>>,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskRow>> {
    Ok(Json(task_view(&c, c.db.task(parse_id(&id)?).await?)))
}

/// Changes a task.
#[utoipa::path(patch, path = "/tasks/{id}", params(("id" = i64, Path)), request_body = TaskPatch,
    responses((status = 200, body = TaskRow), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn patch_task(
    State(c): State<Arc<Control>>,
    Path(id): Path<String>,
    b: Body<TaskPatch>,
) -> ApiResult<Json<TaskRow>> {
    let id = parse_id(&id)?;
    let patch = body(b)?;
    let task = c.db.task(id).await?;
    let config = match &patch.config {
        Some(cfg) => {
            let kind = c
                .types
                .get(&task.kind)
                .ok_or_else(|| ApiError::bad(format!("unknown task type {:?}", task.kind)))?;
            Some(
                kind.validate(cfg)
                    .map_err(|e| ApiError::bad(format!("invalid {} config: {e}", task.kind)))?,
            )
        }
        None => None,
    };
    Ok(Json(task_view(
        &c,
        c.db.update_task(id, config.as_ref(), patch.enabled).await?,
    )))
}

/// Deletes a task (its worker stops it within a second).
#[utoipa::path(delete, path = "/tasks/{id}", params(("id" = i64, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_task(
    State(c): State<Arc<Control>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    c.db.delete_task(parse_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Task types and their config schemas.
#[utoipa::path(get, path = "/task-types", responses((status = 200, body = [TaskTypeView])))]
async fn task_types(State(c): State<Arc<Control>>) -> Json<Vec<TaskTypeView>> {
    Json(
        c.types
            .all()
            .map(|t| TaskTypeView {
                kind: t.kind().into(),
                description: t.description().into(),
                schema: t.schema(),
            })
            .collect(),
    )
}

fn leases(c: &Control) -> crate::leases::LocalLeases {
    crate::leases::LocalLeases {
        db: c.db.clone(),
        hub: c.hub.clone(),
        nodes: c.nodes.clone(),
    }
}

fn worker_id(id: &str) -> ApiResult<()> {
    check_name(id)
}

/// A worker leases the tasks of live streams nobody holds. The configs come
/// unmasked: the worker needs the secrets to run them.
#[utoipa::path(post, path = "/workers/{id}/claim", params(("id" = String, Path)),
    responses((status = 200, body = [TaskRow]), (status = 400, body = ErrorBody)))]
async fn worker_claim(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<TaskRow>>> {
    worker_id(&id)?;
    bind(&c, &caller, &id).await?;
    let tasks = leases(&c).claim_now(&id).await.map_err(|e| {
        tracing::warn!(error = %e, "lease store failed");
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "lease store error".into(),
        )
    })?;
    Ok(Json(tasks))
}

/// A worker renews its leases and reports status; the answer lists the tasks
/// it still holds and should keep running.
#[utoipa::path(post, path = "/workers/{id}/renew", params(("id" = String, Path)), request_body = [TaskReport],
    responses((status = 200, body = [i64]), (status = 400, body = ErrorBody)))]
async fn worker_renew(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    b: Body<Vec<TaskReport>>,
) -> ApiResult<Json<Vec<i64>>> {
    worker_id(&id)?;
    bind(&c, &caller, &id).await?;
    let reports = body(b)?;
    let held = leases(&c).renew_now(&id, &reports).await.map_err(|e| {
        tracing::warn!(error = %e, "lease store failed");
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "lease store error".into(),
        )
    })?;
    Ok(Json(held))
}

/// A worker gives leases back (it is stopping).
#[utoipa::path(post, path = "/workers/{id}/release", params(("id" = String, Path)), request_body = [i64],
    responses((status = 204), (status = 400, body = ErrorBody)))]
async fn worker_release(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    b: Body<Vec<i64>>,
) -> ApiResult<StatusCode> {
    worker_id(&id)?;
    bind(&c, &caller, &id).await?;
    leases(&c).release_now(&id, &body(b)?).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The JSON Schema of per-stream settings (for forms).
#[utoipa::path(get, path = "/stream-settings", responses((status = 200, body = Object)))]
async fn stream_settings(State(c): State<Arc<Control>>) -> Json<serde_json::Value> {
    Json(c.settings.schema.clone())
}

/// Where encoders publish.
#[utoipa::path(get, path = "/server", responses((status = 200, body = crate::ServerInfo)))]
async fn server_info(State(c): State<Arc<Control>>) -> Json<crate::ServerInfo> {
    Json(c.server.clone())
}

/// Nodes of the cluster.
#[utoipa::path(get, path = "/nodes", responses((status = 200, body = [NodeRow])))]
async fn nodes(State(c): State<Arc<Control>>) -> ApiResult<Json<Vec<NodeRow>>> {
    Ok(Json(c.nodes.list(&c.db).await?))
}

/// The edges and their state: `live` (gets viewers), `draining` (keeps its
/// viewers' segments, gets no new ones), `dead` (missed heartbeats).
#[utoipa::path(get, path = "/edges", responses((status = 200, body = [control_client::types::EdgeRow])))]
async fn edges(State(c): State<Arc<Control>>) -> Json<Vec<control_client::types::EdgeRow>> {
    Json(c.nodes.edges())
}

/// Stops sending new viewers to an edge (an operator or the autoscaler).
#[utoipa::path(post, path = "/edges/{id}/drain", params(("id" = String, Path, description = "edge node id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn drain_edge(
    State(c): State<Arc<Control>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    set_draining(&c, &id, true).await
}

/// Sends viewers to a drained edge again.
#[utoipa::path(post, path = "/edges/{id}/undrain", params(("id" = String, Path, description = "edge node id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn undrain_edge(
    State(c): State<Arc<Control>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    set_draining(&c, &id, false).await
}

async fn set_draining(c: &Control, id: &str, draining: bool) -> ApiResult<StatusCode> {
    if c.nodes.set_draining(&c.db, id, draining).await? {
        tracing::info!(edge = %id, draining, "edge drain state set");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError(StatusCode::NOT_FOUND, format!("no edge {id:?}")))
    }
}

/// The edge farm's autoscaler: the farm's size now and wanted, edges
/// starting and draining, the last decisions with the figures and the rule
/// behind each, and what was done. 404 when autoscaling is off.
#[utoipa::path(get, path = "/autoscale",
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
async fn autoscale_status(
    State(c): State<Arc<Control>>,
) -> ApiResult<Json<crate::autoscale::AutoscaleStatus>> {
    match &c.autoscaler {
        Some(a) => Ok(Json(a.status())),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            "autoscaling is off ([autoscale] enabled = false)".into(),
        )),
    }
}

/// A node reports that it is alive (and, for origins, what is live on it).
#[utoipa::path(post, path = "/nodes/heartbeat", request_body = Heartbeat,
    responses((status = 200, body = HeartbeatReply), (status = 400, body = ErrorBody)))]
async fn heartbeat(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    Extension(CallerRole(role)): Extension<CallerRole>,
    b: Body<Heartbeat>,
) -> ApiResult<Json<HeartbeatReply>> {
    let h = body(b)?;
    if !role.may_be(&h.role) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("this token cannot act as a node of role {:?}", h.role),
        ));
    }
    check_name(&h.id)?;
    if h.address.len() > MAX_HEARTBEAT_TEXT || h.version.len() > MAX_HEARTBEAT_TEXT {
        return Err(ApiError::bad(format!(
            "address and version are at most {MAX_HEARTBEAT_TEXT} bytes"
        )));
    }
    if h.live.len() > MAX_HEARTBEAT_STREAMS {
        return Err(ApiError::bad(format!(
            "at most {MAX_HEARTBEAT_STREAMS} live streams per heartbeat"
        )));
    }
    for name in &h.live {
        check_name(name)?;
    }
    bind(&c, &caller, &h.id).await?;
    if !["origin", "edge", "worker", "all", "director"].contains(&h.role.as_str()) {
        return Err(ApiError::bad(
            "role must be origin, edge, worker, all or director",
        ));
    }
    if !h.viewers.is_empty() && h.role != "director" {
        return Err(ApiError::bad("only a director reports viewers"));
    }
    if h.viewers.len() > MAX_HEARTBEAT_EDGES {
        return Err(ApiError::bad(format!(
            "viewers of at most {MAX_HEARTBEAT_EDGES} edges per heartbeat"
        )));
    }
    for edge in h.viewers.keys() {
        check_name(edge)?;
    }
    if h.audience.len() > MAX_HEARTBEAT_STREAMS {
        return Err(ApiError::bad(format!(
            "the audience of at most {MAX_HEARTBEAT_STREAMS} streams per heartbeat"
        )));
    }
    for (stream, a) in &h.audience {
        check_name(stream)?;
        let counts_hls = h.role == "director";
        let counts_rtmp = ["origin", "edge", "all"].contains(&h.role.as_str());
        let counts_egress = h.role == "edge";
        if ((a.hls > 0 || !a.variants.is_empty()) && !counts_hls)
            || (a.rtmp > 0 && !counts_rtmp)
            || ((a.requests > 0 || a.egress_bytes > 0) && !counts_egress)
        {
            return Err(ApiError::bad(
                "directors report HLS viewers; origins and edges report RTMP players; edges report HLS requests and egress",
            ));
        }
        if a.variants.len() > MAX_HEARTBEAT_VARIANTS {
            return Err(ApiError::bad(format!(
                "at most {MAX_HEARTBEAT_VARIANTS} variants per stream"
            )));
        }
        for variant in a.variants.keys() {
            check_name(variant)?;
        }
    }
    if !h.ingest.is_empty() && h.role != "origin" && h.role != "all" {
        return Err(ApiError::bad("only an origin reports ingest"));
    }
    if h.ingest.len() > MAX_HEARTBEAT_STREAMS {
        return Err(ApiError::bad(format!(
            "the ingest of at most {MAX_HEARTBEAT_STREAMS} streams per heartbeat"
        )));
    }
    for (stream, i) in &h.ingest {
        check_name(stream)?;
        if i.rungs.len() > MAX_HEARTBEAT_VARIANTS || i.consumers.len() > MAX_HEARTBEAT_VARIANTS {
            return Err(ApiError::bad(format!(
                "at most {MAX_HEARTBEAT_VARIANTS} rungs and consumer kinds per stream"
            )));
        }
        for name in i.rungs.keys().chain(i.consumers.keys()) {
            check_name(name)?;
        }
        let text_ok = |t: &Option<String>| {
            t.as_ref()
                .is_none_or(|t| t.len() <= MAX_HEARTBEAT_TEXT && !t.chars().any(char::is_control))
        };
        if !text_ok(&i.publisher) || !text_ok(&i.video_codec) || !text_ok(&i.audio_codec) {
            return Err(ApiError::bad(format!(
                "ingest texts are at most {MAX_HEARTBEAT_TEXT} bytes, without control characters"
            )));
        }
        if i.nominal_fps.is_some_and(|f| !f.is_finite() || f < 0.0) {
            return Err(ApiError::bad("nominal_fps must be a non-negative number"));
        }
    }
    if !h.load.is_finite() || h.load < 0.0 {
        return Err(ApiError::bad("load must be a non-negative number"));
    }
    if let Some(r) = &h.relay {
        if h.role != "origin" && h.role != "all" {
            return Err(ApiError::bad("only an origin reports a relay"));
        }
        if !r.is_valid() {
            return Err(ApiError::bad(
                "relay: a port and a SHA-256 fingerprint (64 lowercase hex digits)",
            ));
        }
    }
    if let Some(e) = &h.edge {
        if h.role != "edge" {
            return Err(ApiError::bad("only an edge reports edge load"));
        }
        if !(1..=1_000_000).contains(&e.capacity) {
            return Err(ApiError::bad("edge capacity must be within 1..=1000000"));
        }
        if !e.hit_ratio.is_finite() || !(0.0..=1.0).contains(&e.hit_ratio) {
            return Err(ApiError::bad("hit_ratio must be within 0..1"));
        }
        let pool_ok = (1..=32).contains(&e.pool.len())
            && e.pool
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !pool_ok {
            return Err(ApiError::bad(
                "edge pool: 1-32 letters, digits, '.', '-' or '_'",
            ));
        }
        if !is_base_url(&h.address) {
            return Err(ApiError::bad(
                "an edge's address is its public URL (http://HOST[:PORT][/PATH], no spaces, quotes or control characters)",
            ));
        }
    }
    let node = h.id.clone();
    c.nodes
        .beat(
            &c.db,
            NodeRow {
                id: h.id,
                role: h.role,
                address: h.address,
                version: h.version,
                last_heartbeat_ms: now_ms(),
                load: h.load,
                streams: h.live.clone(),
                edge: h.edge,
                relay: h.relay,
                viewers: h.viewers,
                audience: h.audience,
                ingest: h.ingest,
            },
        )
        .await?;
    let mut kick = Vec::new();
    for s in h.live {
        // Told once: the process that takes it from the database tells.
        let pair = (s, node.clone());
        if c.pending_kicks.remove(&pair).is_some() && c.db.take_kick(&pair.0, &node).await? {
            kick.push(pair.0);
        }
    }
    Ok(Json(HeartbeatReply { kick }))
}

/// Whether `s` is an absolute http(s) base URL that can go into a playlist
/// as it is: a host, then only URL characters (no space, quote, control
/// character, query or fragment).
fn is_base_url(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
    else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or("");
    !host.is_empty()
        && !host.starts_with(':')
        && !host.contains('@')
        && rest.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'.' | b'-' | b'_' | b'~' | b':' | b'/' | b'[' | b']' | b'%'
                )
        })
}

/// The certificate fingerprints of the live origins' relays: what edges pin
/// (they learn them here, over this authenticated API, never from an
/// origin's plain-HTTP `GET /relay`).
#[utoipa::path(get, path = "/relay/pins", responses((status = 200, body = [String])))]
async fn relay_pins(State(c): State<Arc<Control>>) -> Json<Vec<String>> {
    Json(c.nodes.relay_pins())
}

/// The origins alive now, with the URL each advertises, its live streams and
/// its relay's pin: an edge given only the control URL follows this list.
#[utoipa::path(get, path = "/origins", responses((status = 200, body = [control_client::types::OriginRow])))]
async fn origins(State(c): State<Arc<Control>>) -> Json<Vec<control_client::types::OriginRow>> {
    Json(c.nodes.origins())
}

/// An origin asks whether an edge's relay token is one it may serve: an
/// edge's token, or an admin's.
#[utoipa::path(post, path = "/relay/verify", request_body = control_client::types::EdgeTokenCheck,
    responses((status = 200, body = control_client::types::EdgeTokenVerdict), (status = 400, body = ErrorBody)))]
async fn relay_verify(
    State(c): State<Arc<Control>>,
    b: Body<control_client::types::EdgeTokenCheck>,
) -> ApiResult<Json<control_client::types::EdgeTokenVerdict>> {
    let check = body(b)?;
    let edge = c.may_relay(&check.token).await?;
    Ok(Json(control_client::types::EdgeTokenVerdict { edge }))
}

/// An origin asks whether a key may publish (origins that run apart from the
/// control plane; they cache the answer for a few seconds).
#[utoipa::path(post, path = "/auth/publish", request_body = PublishCheck,
    responses((status = 200, body = PublishGrant), (status = 403, body = PublishDenied), (status = 400, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn auth_publish(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    b: Body<PublishCheck>,
) -> ApiResult<Response> {
    use control_client::KeyLookup;
    if !c.auth_checks.allow(&caller.0) {
        return Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "more than {} publish checks in {} s from this token",
                crate::AUTH_CHECKS_PER_WINDOW,
                crate::AUTH_CHECK_WINDOW.as_secs()
            ),
        ));
    }
    let check = body(b)?;
    match c.keys.lookup(&check.key).await {
        Ok(Ok(stream)) => {
            let settings = c.keys.settings(&stream);
            Ok(Json(PublishGrant { stream, settings }).into_response())
        }
        Ok(Err(why)) => {
            let reason = match why {
                rtmp::auth::AuthError::Disabled => DenyReason::Disabled,
                _ => DenyReason::UnknownKey,
            };
            let denied = PublishDenied {
                error: why.to_string(),
                reason,
            };
            Ok((StatusCode::FORBIDDEN, Json(denied)).into_response())
        }
        Err(e) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e)),
    }
}

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Ferry control API", description = "Streams, publish keys, tasks and nodes of a Ferry cluster."),
    servers((url = "/api/v1")),
    paths(list_streams, create_stream, get_stream, patch_stream, delete_stream, add_key, revoke_key, rotate_key,
          kick, live, stream_history, node_history, list_tasks, stream_tasks, create_task, get_task, patch_task, delete_task, task_types,
          nodes, heartbeat, edges, origins, relay_pins, relay_verify, drain_edge, undrain_edge, autoscale_status, server_info, worker_claim, worker_renew, worker_release, auth_publish, stream_settings, list_tokens, create_token, delete_token),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The bearer token of the request, for handlers that bind it to a node.
#[derive(Clone)]
struct Caller(String);

/// What the bearer token of the request may do.
#[derive(Clone, Copy)]
struct CallerRole(crate::db::TokenRole);

/// A node token acts as one node: refuses `id` if the token belongs to
/// another node that is alive.
async fn bind(c: &Control, caller: &Caller, id: &str) -> ApiResult<()> {
    match c
        .db
        .bind_node(&caller.0, id, |other| c.nodes.alive(other))
        .await?
    {
        Ok(()) => Ok(()),
        Err(crate::db::BoundElsewhere(why)) => Err(ApiError(StatusCode::FORBIDDEN, why)),
    }
}

async fn require_token(State(c): State<Arc<Control>>, req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let caller = token.map(|t| Caller(t.to_owned()));
    let role = match token {
        Some(t) => Some(c.db.token_role(t).await),
        None => None,
    };
    match role {
        Some(Ok(Some(role))) if role.may_call(req.uri().path()) => {
            let mut req = req;
            if let Some(caller) = caller {
                req.extensions_mut().insert(CallerRole(role));
                req.extensions_mut().insert(caller);
            }
            next.run(req).await
        }
        Some(Ok(Some(role))) => ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "this is a {} token; it cannot call this route (use an admin token)",
                serde_json::to_value(role)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
        )
        .into_response(),
        Some(Err(e)) => ApiError::from(e).into_response(),
        _ => {
            let mut r = ApiError(
                StatusCode::UNAUTHORIZED,
                "missing or invalid bearer token".into(),
            )
            .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            r
        }
    }
}

/// `POST /tokens`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// `admin`, or the one kind of node the token acts as: `origin`,
    /// `edge`, `worker`, `director` (`node`: an origin or a worker, as
    /// before kinds existed).
    role: crate::db::TokenRole,
}

/// A new token, shown in full only in this response.
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    /// Id (to delete it).
    id: i64,
    /// The token.
    token: String,
}

/// Tokens (hints only).
#[utoipa::path(get, path = "/tokens", responses((status = 200, body = [crate::db::TokenRow])))]
async fn list_tokens(State(c): State<Arc<Control>>) -> ApiResult<Json<Vec<crate::db::TokenRow>>> {
    Ok(Json(c.db.tokens().await?))
}

/// Makes a token (shown once): a node token acts as one node of its kind.
#[utoipa::path(post, path = "/tokens", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody)))]
async fn create_token(
    State(c): State<Arc<Control>>,
    b: Body<NewToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let new = body(b)?;
    let token = crate::secret::generate();
    let id = c.db.add_token_with_role(&token, new.role).await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { id, token })))
}

/// Deletes a token (not the last admin token).
#[utoipa::path(delete, path = "/tokens/{id}", params(("id" = i64, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_token(
    State(c): State<Arc<Control>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    c.db.delete_token(parse_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        ApiDoc::openapi().to_pretty_json().unwrap_or_default(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "no such API route".into())
}

/// The API router, to nest under `/api/v1`.
pub fn router(control: Arc<Control>) -> Router {
    let protected = Router::new()
        .route("/streams", get(list_streams).post(create_stream))
        .route(
            "/streams/{name}",
            get(get_stream).patch(patch_stream).delete(delete_stream),
        )
        .route("/streams/{name}/keys", post(add_key))
        .route(
            "/streams/{name}/keys/{id}",
            axum::routing::delete(revoke_key),
        )
        .route("/streams/{name}/keys/{id}/rotate", post(rotate_key))
        .route("/streams/{name}/kick", post(kick))
        .route("/streams/{name}/tasks", get(stream_tasks).post(create_task))
        .route("/live", get(live))
        .route("/history/streams/{name}", get(stream_history))
        .route("/history/nodes/{id}", get(node_history))
        .route("/tasks", get(list_tasks))
        .route(
            "/tasks/{id}",
            get(get_task).patch(patch_task).delete(delete_task),
        )
        .route("/task-types", get(task_types))
        .route("/nodes", get(nodes))
        .route("/edges", get(edges))
        .route("/relay/pins", get(relay_pins))
        .route("/origins", get(origins))
        .route("/relay/verify", post(relay_verify))
        .route("/edges/{id}/drain", post(drain_edge))
        .route("/edges/{id}/undrain", post(undrain_edge))
        .route("/autoscale", get(autoscale_status))
        .route("/server", get(server_info))
        .route("/auth/publish", post(auth_publish))
        .route("/stream-settings", get(stream_settings))
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", axum::routing::delete(delete_token))
        .route("/workers/{id}/claim", post(worker_claim))
        .route("/workers/{id}/renew", post(worker_renew))
        .route("/workers/{id}/release", post(worker_release))
        .route("/nodes/heartbeat", post(heartbeat))
        .fallback(not_found)
        .route_layer(middleware::from_fn_with_state(
            control.clone(),
            require_token,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(control);
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .merge(protected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bit_rate_drop_must_last_three_periods() {
        let steady = [4e6, 4e6, 4e6, 4e6];
        assert_eq!(
            bitrate_drop(&[&steady[..], &[4e6, 1e6, 4e6]].concat()),
            None
        );
        assert_eq!(
            bitrate_drop(&[&steady[..], &[1e6, 1e6, 1e6]].concat()),
            Some((1e6, 4e6))
        );
        // A long GOP: every other period carries the keyframe.
        let gop = [6e6, 2e6, 6e6, 2e6, 6e6, 2e6, 6e6];
        assert_eq!(bitrate_drop(&gop), None);
        assert_eq!(bitrate_drop(&[1e6, 1e6, 1e6]), None, "nothing before");
    }

    #[test]
    fn frames_below_four_fifths_of_the_announced_rate_are_warned_of() {
        assert_eq!(low_fps_warning(29.5, 30.0), None);
        assert_eq!(low_fps_warning(24.5, 30.0), None);
        let w = low_fps_warning(20.0, 30.0).expect("warned");
        assert_eq!(w.code, "low_fps");
        assert!(
            w.message.contains("20.0 fps") && w.message.contains("30"),
            "{}",
            w.message
        );
        assert_eq!(low_fps_warning(0.0, 0.0), None, "no announced rate");
    }

    #[test]
    fn a_rung_is_behind_when_it_lags_two_segments_or_drops_frames() {
        let rung = |fps: f64, lag_ms: Option<i64>| RungStatus {
            name: "720p".into(),
            bitrate: 1_000_000,
            fps,
            lag_ms,
        };
        assert_eq!(rung_behind_warning(&rung(30.0, Some(400)), 30.0, 2.0), None);
        assert_eq!(rung_behind_warning(&rung(30.0, None), 30.0, 2.0), None);
        let lagging = rung_behind_warning(&rung(30.0, Some(4500)), 30.0, 2.0).expect("lag");
        assert_eq!(lagging.code, "rung_behind");
        assert!(lagging.message.contains("720p") && lagging.message.contains("4.5 s"));
        // 3 s is the least lag that counts, whatever the segment.
        assert_eq!(
            rung_behind_warning(&rung(30.0, Some(2500)), 30.0, 1.0),
            None
        );
        assert!(rung_behind_warning(&rung(18.0, Some(100)), 30.0, 2.0).is_some());
    }

    #[test]
    fn only_live_edges_with_more_viewers_than_capacity_are_named() {
        let edge = |id: &str, state: &str, viewers: u64| EdgeRow {
            id: id.into(),
            state: state.into(),
            viewers,
            load: control_client::types::EdgeLoad {
                capacity: 100,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            edges_over_capacity(&[edge("a", "live", 100), edge("b", "dead", 500)]),
            None
        );
        let w =
            edges_over_capacity(&[edge("a", "live", 101), edge("b", "live", 50)]).expect("over");
        assert!(
            w.message.contains("a (101 viewers, capacity 100)"),
            "{}",
            w.message
        );
        assert!(!w.message.contains("b ("), "{}", w.message);
    }
}
