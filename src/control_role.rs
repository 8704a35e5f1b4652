//! `ferry control`: the control plane alone (API, web UI, state), and the
//! control plane `ferry serve` opens in process.

use std::net::SocketAddr;
use std::sync::Arc;

use media_core::Hub;
use origin_store::OriginStore;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::http::{self, HttpState};
use crate::http_serve;
use crate::node::{self, ControlPlane, NodeInfo};
use crate::running::{Running, StartError, bind, connection_caps, prepare, spawn_http};
use crate::stream_settings::StreamSettings;

/// The control plane of this process: state in SQLite, seeded from `streams`,
/// with an admin token (given, or made and shown once).
pub(crate) fn open_control(
    config: &Config,
    hub: &Hub,
    rtmp_port: u16,
    http_addr: SocketAddr,
    streams: &[crate::config::StreamConfig],
) -> Result<Arc<control::Control>, StartError> {
    let db_path = config.data_dir.join("control.db");
    let db = Arc::new(control::Db::open(&db_path).map_err(StartError::Control)?);
    // Hashed secrets, but still nobody else's business.
    if let Err(e) = crate::state_files::make_private(&db_path) {
        warn!(error = %e, "cannot make the control database private");
    }
    let control = Arc::new(control::Control {
        server: control::ServerInfo {
            rtmp_port,
            rtmp_app: config.rtmp.app.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        settings: control::SettingsKind {
            schema: StreamSettings::schema(),
            validate: Arc::new(StreamSettings::validate),
        },
        nodes: Arc::new(
            control::Nodes::new(std::time::Duration::from_secs(
                config.control.node_prune_seconds,
            ))
            .with_edge_dead(std::time::Duration::from_millis(
                config.control.edge_dead_ms.max(100),
            )),
        ),
        ..control::Control::new(db, hub.clone())
    });
    for s in streams {
        control
            .seed_stream(&s.name, &s.key)
            .map_err(StartError::Control)?;
    }
    let given = (!config.admin_token.is_empty()).then_some(config.admin_token.as_str());
    if let Some(token) = control
        .ensure_admin_token(given)
        .map_err(StartError::Control)?
    {
        // Shown once, on the console only; the database keeps its hash.
        eprintln!(
            "\n  Ferry admin token (shown once; stored hashed in {}):\n    {token}\n  Sign in at http://HOST:{}/ or send it as `Authorization: Bearer TOKEN`.\n",
            config.data_dir.join("control.db").display(),
            http_addr.port()
        );
    }
    Ok(control)
}

/// `ferry control`: the control plane alone (API, web UI, state), for origins
/// and workers that run as separate processes. No RTMP, no HLS.
pub async fn start_control(config: &Config) -> Result<Running, StartError> {
    let node_id = prepare(config)?;
    let (http_listener, http_addr) = bind("http", config.http.listen).await?;
    let hub = Hub::new();
    let streams = config.streams.clone();
    let control = open_control(config, &hub, config.rtmp.listen.port(), http_addr, &streams)?;
    let mut registry = Registry::with_prefix("ferry");
    hub.metrics().register(&mut registry);
    let http_metrics = http_serve::HttpMetrics::default();
    http_metrics.register(&mut registry);
    let http_state = Arc::new(HttpState::new(registry, &config.http.metrics_token));
    let (_, http_cap) = connection_caps(config, false);
    let store = OriginStore::memory();
    let cancel = CancellationToken::new();
    let heartbeat = tokio::spawn(node::heartbeat(
        NodeInfo {
            id: node_id,
            role: "control",
            address: http_addr.to_string(),
            edge: None,
            relay: None,
        },
        ControlPlane::Local(control.clone()),
        None,
        cancel.clone(),
    ));
    let api = control::api::router(control);
    let http_task = spawn_http(
        http_listener,
        http::router(http_state, store, origin::LiveHls::default(), api),
        config,
        http_cap,
        http_metrics,
        &cancel,
    );
    info!(http = %http_addr, "ferry control is serving");
    Ok(Running::http_only(
        http_addr,
        hub,
        cancel,
        vec![heartbeat, http_task],
    ))
}
