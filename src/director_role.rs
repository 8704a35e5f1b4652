//! `ferry director`: spreads HLS viewers over the live edges that control
//! knows, by rewriting their playlists.

use std::sync::Arc;

use director::{Director, DirectorMetrics};
use media_core::Hub;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::Config;
use crate::http::{self, HttpState};
use crate::http_serve;
use crate::node::{self, ControlPlane, NodeInfo};
use crate::running::{Running, StartError, bind, connection_caps, prepare, spawn_http};
use crate::services::Services;

/// Starts a director on `[http] listen`, reading edges from `[control] url`
/// with `admin_token` (a `node` token is enough).
pub async fn start_director(config: &Config) -> Result<Running, StartError> {
    let node_id = prepare(config)?;
    if config.control.url.is_empty() {
        return Err(StartError::Config(
            "the director needs the control plane: --control URL (or [control] url)".into(),
        ));
    }
    let d = &config.director;
    let control = control_client::ControlClient::new(&config.control.url, &config.admin_token)
        .map_err(|e| StartError::Config(format!("[control] url: {e}")))?;
    let (listener, http_addr) = bind("http", config.http.listen).await?;
    let mut services = Services::new(CancellationToken::new());
    let cancel = services.shutdown().clone();
    let control = Arc::new(control);
    let beat = Beat {
        id: node_id,
        address: format!("http://{http_addr}"),
        plane: ControlPlane::Remote(control.clone()),
    };
    let tasks = serve_director(
        config,
        listener,
        director::from_control(control),
        beat,
        &cancel,
    )?;
    for (name, task) in tasks {
        services.adopt(name, task);
    }
    info!(http = %http_addr, control = %config.control.url, policy = ?d.policy, "ferry director is serving");
    Ok(Running {
        director_addr: Some(http_addr),
        ..Running::http_only(http_addr, Hub::new(), services)
    })
}

/// How a director reports itself: its viewers per edge go to control with
/// every beat (the autoscaler drains the edge with the fewest).
pub(crate) struct Beat {
    /// Its node id.
    pub id: String,
    /// Where viewers reach it.
    pub address: String,
    /// Where the beats go.
    pub plane: ControlPlane,
}

/// Serves a director on `listener` (its routes, `/metrics`, `/healthz`) with
/// the edges from `source`: for `ferry director`, and for `ferry serve` with
/// `[director] listen`.
pub(crate) fn serve_director(
    config: &Config,
    listener: tokio::net::TcpListener,
    source: director::EdgeSource,
    beat: Beat,
    cancel: &CancellationToken,
) -> Result<Vec<(&'static str, tokio::task::JoinHandle<()>)>, StartError> {
    let d = &config.director;
    if !(0.0..=10.0).contains(&d.epsilon) {
        return Err(StartError::Config(
            "[director] epsilon must be within 0..10".into(),
        ));
    }
    let metrics = DirectorMetrics::default();
    let director = Director::new(d.clone(), metrics.clone()).map_err(StartError::Config)?;
    let mut registry = Registry::with_prefix("ferry");
    metrics.register(&mut registry);
    let http_metrics = http_serve::HttpMetrics::default();
    http_metrics.register(&mut registry);
    let state = Arc::new(HttpState::new(registry, &config.http.metrics_token));
    let router = director::router(director.clone()).merge(http::ops_router(state));
    let (_, http_cap) = connection_caps(config, false);
    let viewers = {
        let director = director.clone();
        Arc::new(move || {
            director
                .placement()
                .edges
                .into_iter()
                .map(|e| (e.id, e.viewers))
                .collect()
        })
    };
    let audience: node::AudienceReport = {
        let director = director.clone();
        Arc::new(move || {
            let mut report = director.placement();
            report
                .streams
                .into_iter()
                .map(|(stream, on)| {
                    let audience = control_client::types::Audience {
                        hls: on.iter().map(|e| e.viewers).sum(),
                        // As many as control takes (a stream has a few).
                        variants: report
                            .variants
                            .remove(&stream)
                            .unwrap_or_default()
                            .into_iter()
                            .take(control::api::MAX_HEARTBEAT_VARIANTS)
                            .collect(),
                        ..Default::default()
                    };
                    (stream, audience)
                })
                .filter(|(_, a)| a.hls > 0)
                .collect()
        })
    };
    let node = NodeInfo {
        id: beat.id,
        role: "director",
        address: beat.address,
        edge: None,
        relay: None,
        viewers: Some(viewers),
        audience: Some(audience),
    };
    Ok(vec![
        (
            "heartbeat",
            tokio::spawn(node::heartbeat(node, beat.plane, None, cancel.clone())),
        ),
        (
            "director edges",
            tokio::spawn(director.follow(source, cancel.clone())),
        ),
        (
            "director http",
            spawn_http(
                listener,
                router,
                config,
                http_cap,
                http_metrics,
                cancel,
                None,
            ),
        ),
    ])
}
