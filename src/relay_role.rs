//! The relay in each role: an origin serves its hub's streams to edges over
//! QUIC; an edge with RTMP players pulls streams from its origins.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use media_core::Hub;
use relay::{Puller, RelayInfo, RelayMetrics, RelayServer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::Config;
use crate::running::StartError;

/// Starts `[relay] listen` (if set) and returns its task and the `GET
/// /relay` route that tells edges its port and certificate.
pub(crate) fn serve_relay(
    config: &Config,
    hub: &Hub,
    metrics: RelayMetrics,
    cancel: &CancellationToken,
) -> Result<(Option<JoinHandle<()>>, Router), StartError> {
    if config.relay.listen.is_empty() {
        return Ok((None, Router::new()));
    }
    let addr: std::net::SocketAddr = config.relay.listen.parse().map_err(|e| {
        StartError::Config(format!("[relay] listen {:?}: {e}", config.relay.listen))
    })?;
    let identity = relay::tls::Identity::load_or_create(&config.data_dir)
        .map_err(|e| StartError::Config(e.to_string()))?;
    let server = RelayServer::bind(addr, &identity, hub.clone(), metrics)
        .map_err(|e| StartError::Config(e.to_string()))?;
    let bound = server.local_addr().map_err(|source| StartError::Bind {
        what: "relay",
        addr,
        source,
    })?;
    let info = Arc::new(RelayInfo::new(bound.port(), &identity));
    info!(relay = %bound, fingerprint = %info.fingerprint, "relay is serving");
    let task = tokio::spawn(server.run(cancel.clone()));
    let route = Router::new().route(
        "/relay",
        get(move || {
            let info = info.clone();
            async move { axum::Json((*info).clone()) }
        }),
    );
    Ok((Some(task), route))
}

/// The edge's puller over `[edge] origins` (Ferry origins by HTTP URL,
/// foreign ones by `rtmp://` URL), feeding `hub` whenever a player asks.
pub(crate) fn pull_relay(
    config: &Config,
    hub: &Hub,
    metrics: RelayMetrics,
    cancel: &CancellationToken,
) -> Result<JoinHandle<()>, StartError> {
    let links =
        relay::origins(&config.edge.origins, config.relay.pins.clone()).map_err(|source| {
            StartError::Bind {
                what: "relay client",
                addr: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            }
        })?;
    if links.is_empty() {
        return Err(StartError::Config(
            "[edge] rtmp needs an origin to pull from: http://HOST:PORT of a Ferry origin with a relay, or rtmp://HOST[:PORT]/APP".into(),
        ));
    }
    let puller = Puller::new(hub.clone(), links, config.relay.pull(), metrics);
    Ok(tokio::spawn(puller.run(cancel.clone())))
}
