//! Streams: their views with live state and warnings, keys, history, kicks.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Control;
use control_client::types::{Audience, IngestReport};

use super::warnings::*;
use super::{ApiError, ApiResult, Body, ErrorBody, body, check_name, parse_id};
use crate::db::{KeyRow, StreamRow, now_ms};

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

pub(super) fn yes() -> bool {
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

/// What the cluster's heartbeats say, read once per request (not per
/// stream): streams live on other origins, every stream's ingest and
/// audience, and the farm's warnings.
pub(super) struct Cluster {
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
pub(super) fn live_status(c: &Control, name: &str, cluster: &Cluster) -> LiveStatus {
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

pub(super) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub(super) async fn stream_view(
    c: &Control,
    stream: StreamRow,
    cluster: &Cluster,
) -> ApiResult<StreamView> {
    Ok(StreamView {
        keys: c.db.keys(&stream.name).await?,
        live: live_status(c, &stream.name, cluster),
        stream,
    })
}

/// Lists streams.
#[utoipa::path(get, path = "/streams", responses((status = 200, body = [StreamView]), (status = 401, body = ErrorBody)))]
pub(super) async fn list_streams(
    State(c): State<Arc<Control>>,
) -> ApiResult<Json<Vec<StreamView>>> {
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
pub(super) async fn create_stream(
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
pub(super) async fn get_stream(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
) -> ApiResult<Json<StreamView>> {
    let row = c.db.stream(&name).await?;
    Ok(Json(stream_view(&c, row, &Cluster::read(&c)).await?))
}

/// Enables or disables a stream (disabling kicks its publisher).
#[utoipa::path(patch, path = "/streams/{name}", params(("name" = String, Path)), request_body = StreamPatch,
    responses((status = 200, body = StreamView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn patch_stream(
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
            c.local.kick(&name);
        }
    }
    Ok(Json(stream_view(&c, row, &Cluster::read(&c)).await?))
}

/// Deletes a stream, its keys and tasks; a live publisher is kicked.
#[utoipa::path(delete, path = "/streams/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(super) async fn delete_stream(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    c.db.delete_stream(&name).await?;
    c.auth.invalidate();
    c.local.kick(&name);
    Ok(StatusCode::NO_CONTENT)
}

/// Adds a publish key (shown once).
#[utoipa::path(post, path = "/streams/{name}/keys", params(("name" = String, Path)),
    responses((status = 201, body = NewKey), (status = 404, body = ErrorBody)))]
pub(super) async fn add_key(
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
pub(super) async fn revoke_key(
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
pub(super) async fn rotate_key(
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
pub(super) async fn stream_history(
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
pub(super) async fn node_history(
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
pub(super) async fn kick(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
    Query(scope): Query<KickScope>,
) -> ApiResult<StatusCode> {
    c.db.stream(&name).await?;
    let here = scope.node.is_none() && c.local.kick(&name);
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
pub(super) async fn live(
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
