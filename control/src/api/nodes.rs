//! The node registry: heartbeats, edges and their drains, origins and relay
//! pins, the autoscaler's view.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};

use crate::Control;
use control_client::types::{Heartbeat, HeartbeatReply};

use super::caller::{Caller, CallerRole, bind};
use super::{
    ApiError, ApiResult, Body, ErrorBody, MAX_HEARTBEAT_EDGES, MAX_HEARTBEAT_STREAMS,
    MAX_HEARTBEAT_TEXT, MAX_HEARTBEAT_VARIANTS, body, check_name,
};
use crate::db::{NodeRow, now_ms};

/// Nodes of the cluster.
#[utoipa::path(get, path = "/nodes", responses((status = 200, body = [NodeRow])))]
pub(super) async fn nodes(State(c): State<Arc<Control>>) -> ApiResult<Json<Vec<NodeRow>>> {
    Ok(Json(c.nodes.list(&c.db).await?))
}

/// The edges and their state: `live` (gets viewers), `draining` (keeps its
/// viewers' segments, gets no new ones), `dead` (missed heartbeats).
#[utoipa::path(get, path = "/edges", responses((status = 200, body = [control_client::types::EdgeRow])))]
pub(super) async fn edges(
    State(c): State<Arc<Control>>,
) -> Json<Vec<control_client::types::EdgeRow>> {
    Json(c.nodes.edges())
}

/// Stops sending new viewers to an edge (an operator or the autoscaler).
#[utoipa::path(post, path = "/edges/{id}/drain", params(("id" = String, Path, description = "edge node id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(super) async fn drain_edge(
    State(c): State<Arc<Control>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    set_draining(&c, &id, true).await
}

/// Sends viewers to a drained edge again.
#[utoipa::path(post, path = "/edges/{id}/undrain", params(("id" = String, Path, description = "edge node id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(super) async fn undrain_edge(
    State(c): State<Arc<Control>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    set_draining(&c, &id, false).await
}

pub(super) async fn set_draining(c: &Control, id: &str, draining: bool) -> ApiResult<StatusCode> {
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
pub(super) async fn autoscale_status(
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
pub(super) async fn heartbeat(
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
pub(super) fn is_base_url(s: &str) -> bool {
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
pub(super) async fn relay_pins(State(c): State<Arc<Control>>) -> Json<Vec<String>> {
    Json(c.nodes.relay_pins())
}

/// The origins alive now, with the URL each advertises, its live streams and
/// its relay's pin: an edge given only the control URL follows this list.
#[utoipa::path(get, path = "/origins", responses((status = 200, body = [control_client::types::OriginRow])))]
pub(super) async fn origins(
    State(c): State<Arc<Control>>,
) -> Json<Vec<control_client::types::OriginRow>> {
    Json(c.nodes.origins())
}

/// An origin asks whether an edge's relay token is one it may serve: an
/// edge's token, or an admin's.
#[utoipa::path(post, path = "/relay/verify", request_body = control_client::types::EdgeTokenCheck,
    responses((status = 200, body = control_client::types::EdgeTokenVerdict), (status = 400, body = ErrorBody)))]
pub(super) async fn relay_verify(
    State(c): State<Arc<Control>>,
    b: Body<control_client::types::EdgeTokenCheck>,
) -> ApiResult<Json<control_client::types::EdgeTokenVerdict>> {
    let check = body(b)?;
    let edge = c.may_relay(&check.token).await?;
    Ok(Json(control_client::types::EdgeTokenVerdict { edge }))
}
