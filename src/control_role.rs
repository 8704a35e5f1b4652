//! `ferry control`: the control plane alone (API, web UI, state), and the
//! control plane `ferry serve` opens in process.

use std::net::SocketAddr;
use std::sync::Arc;

use media_core::Hub;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::http::{self, HttpState};
use crate::http_serve;
use crate::node::{self, ControlPlane, NodeInfo};
use crate::running::{Running, StartError, bind, connection_caps, prepare, spawn_http};
use crate::services::Services;
use crate::stream_settings::StreamSettings;

/// The control plane's state: PostgreSQL when `[control] database_url`
/// names one, else SQLite in the data directory.
async fn open_db(config: &Config) -> Result<control::Db, StartError> {
    let url = config.control.database_url.trim();
    if !url.is_empty() {
        let db = control::Db::connect(url)
            .await
            .map_err(StartError::Control)?;
        info!("control state in PostgreSQL");
        return Ok(db);
    }
    let db_path = config.data_dir.join("control.db");
    let db = control::Db::open(&db_path).map_err(StartError::Control)?;
    // Hashed secrets, but still nobody else's business.
    if let Err(e) = crate::state_files::make_private(&db_path) {
        warn!(error = %e, "cannot make the control database private");
    }
    Ok(db)
}

/// The control plane of this process: its state (SQLite or PostgreSQL),
/// seeded from `streams`, with an admin token (given, or made and shown
/// once).
pub(crate) async fn open_control(
    config: &Config,
    local: Arc<dyn control::ingest::LocalStreams>,
    rtmp_port: u16,
    http_addr: SocketAddr,
    streams: &[crate::config::StreamConfig],
    serves_hls: bool,
    autoscale_metrics: control::autoscale::AutoscaleMetrics,
) -> Result<Arc<control::Control>, StartError> {
    let db = Arc::new(open_db(config).await?);
    let leader = Arc::new(control::leader::Leader::new(format!(
        "{http_addr}-{}-{}",
        std::process::id(),
        control::db::now_ms()
    )));
    let nodes = Arc::new(
        control::Nodes::new(std::time::Duration::from_secs(
            config.control.node_prune_seconds,
        ))
        .with_edge_dead(std::time::Duration::from_millis(
            config.control.edge_dead_ms.max(100),
        )),
    );
    let autoscaler = if config.autoscale.enabled {
        Some(Arc::new(
            autoscaler(
                config,
                &db,
                &nodes,
                http_addr,
                serves_hls,
                autoscale_metrics,
            )?
            .with_control_leader(leader.clone()),
        ))
    } else {
        None
    };
    let control = Arc::new(control::Control {
        server: control::ServerInfo {
            rtmp_port,
            rtmp_app: config.rtmp.app.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            segment_seconds: config.segment_duration().as_secs_f64(),
        },
        settings: control::SettingsKind {
            schema: StreamSettings::schema(),
            validate: Arc::new(StreamSettings::validate),
        },
        nodes,
        autoscaler,
        leader,
        types: worker::TaskTypes::builtin().specs(),
        ..control::Control::new(db, local)
    });
    for s in streams {
        control
            .seed_stream(&s.name, &s.key)
            .await
            .map_err(StartError::Control)?;
    }
    let given = (!config.admin_token.is_empty()).then_some(config.admin_token.as_str());
    if let Some(token) = control
        .ensure_admin_token(given)
        .await
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

/// The file in a local edge's data directory holding its control token
/// (an edge token, made once per edge directory, stored hashed in the
/// database like every token).
const EDGE_TOKEN_FILE: &str = "control-token";

/// The autoscaler and its provider, from `[autoscale]`.
fn autoscaler(
    config: &Config,
    db: &Arc<control::Db>,
    nodes: &Arc<control::Nodes>,
    http_addr: SocketAddr,
    serves_hls: bool,
    metrics: control::autoscale::AutoscaleMetrics,
) -> Result<control::autoscale::Autoscaler, StartError> {
    use control::autoscale::{Provider, kubernetes::KubernetesProvider, local};
    let a = &config.autoscale;
    let provider: Arc<dyn Provider> = match a.provider.as_str() {
        "kubernetes" => Arc::new(
            KubernetesProvider::new(&a.kubernetes, &lease_identity(config))
                .map_err(|e| StartError::Config(format!("[autoscale] kubernetes: {e}")))?,
        ),
        _ => {
            let program = if a.local.program.is_empty() {
                std::env::current_exe().map_err(|e| {
                    StartError::Config(format!("[autoscale.local] program: this binary: {e}"))
                })?
            } else {
                a.local.program.clone().into()
            };
            let origins = if a.local.origins.is_empty() && serves_hls {
                vec![format!("http://{http_addr}")]
            } else {
                a.local.origins.clone()
            };
            let data_dir = if a.local.data_dir.is_empty() {
                config.data_dir.join("edges")
            } else {
                a.local.data_dir.clone().into()
            };
            let setup = local::LocalSetup {
                config: a.local.clone(),
                program,
                data_dir,
                control_url: format!("http://{http_addr}"),
                token_for: {
                    let db = db.clone();
                    Arc::new(move |dir: std::path::PathBuf| {
                        let db = db.clone();
                        Box::pin(async move { edge_token(&db, &dir).await })
                    })
                },
                origins,
            };
            Arc::new(
                local::LocalProvider::new(setup)
                    .map_err(|e| StartError::Config(format!("[autoscale] local: {e}")))?,
            )
        }
    };
    Ok(control::autoscale::Autoscaler::new(
        a.clone(),
        nodes.clone(),
        provider,
        metrics,
    ))
}

/// Who holds the autoscaler's Lease: the node id when set (the pod name in
/// the manifests), else the host name (a pod's name too), else a random one.
fn lease_identity(config: &Config) -> String {
    if !config.node_id.is_empty() {
        return config.node_id.clone();
    }
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("control-{:08x}", rand::random::<u32>()))
}

/// The token of the local edge in `dir`: the one kept there while the
/// database still knows it, else a new one (a node token acts as one node,
/// so each edge has its own; one per port directory bounds their number).
async fn edge_token(db: &control::Db, dir: &std::path::Path) -> Result<String, String> {
    let path = dir.join(EDGE_TOKEN_FILE);
    if let Ok(t) = std::fs::read_to_string(&path)
        && matches!(
            db.token_role(t.trim()).await,
            Ok(Some(control::db::TokenRole::Edge))
        )
    {
        return Ok(t.trim().to_owned());
    }
    let token = control::secret::generate();
    db.add_token_with_role(&token, control::db::TokenRole::Edge)
        .await
        .map_err(|e| format!("an edge token: {e}"))?;
    crate::state_files::write_atomic(&path, token.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(token)
}

/// Starts the autoscaler's loop, when there is one.
pub(crate) fn spawn_autoscaler(
    control: &control::Control,
    cancel: &CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let a = control.autoscaler.clone()?;
    Some(tokio::spawn(a.run(cancel.clone())))
}

/// Keeps this control process in step with the others on its database
/// (liveness, drains, kicks, the leader's lease), once a second.
pub(crate) fn spawn_sync(
    control: &Arc<control::Control>,
    cancel: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(
        control
            .clone()
            .keep_in_sync(std::time::Duration::from_secs(1), cancel.clone()),
    )
}

/// Samples the streams' and nodes' history every `[control]
/// history_seconds`.
pub(crate) fn spawn_history(
    control: &Arc<control::Control>,
    config: &Config,
    cancel: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let seconds = config.control.history_seconds;
    let seconds = if seconds.is_finite() {
        seconds.clamp(0.2, 3600.0)
    } else {
        5.0
    };
    let every = std::time::Duration::from_secs_f64(seconds);
    tokio::spawn(control.clone().keep_history(every, cancel.clone()))
}

/// `ferry control`: the control plane alone (API, web UI, state), for origins
/// and workers that run as separate processes. No RTMP, no HLS.
pub async fn start_control(config: &Config) -> Result<Running, StartError> {
    let node_id = prepare(config)?;
    let (http_listener, http_addr) = bind("http", config.http.listen).await?;
    let streams = config.streams.clone();
    let autoscale_metrics = control::autoscale::AutoscaleMetrics::default();
    let control = open_control(
        config,
        Arc::new(control::ingest::NoLocalStreams),
        config.rtmp.listen.port(),
        http_addr,
        &streams,
        false,
        autoscale_metrics.clone(),
    )
    .await?;
    let mut registry = Registry::with_prefix("ferry");
    autoscale_metrics.register(&mut registry);
    let mut services = Services::new(CancellationToken::new());
    let cancel = services.shutdown().clone();
    services.adopt_all("autoscaler", spawn_autoscaler(&control, &cancel));
    let http_metrics = http_serve::HttpMetrics::default();
    http_metrics.register(&mut registry);
    registry.register_collector(Box::new(control::AudienceCollector(control.nodes.clone())));
    let http_state = Arc::new(HttpState::new(registry, &config.http.metrics_token));
    let (_, http_cap) = connection_caps(config, false);
    let heartbeat = tokio::spawn(node::heartbeat(
        NodeInfo {
            id: node_id,
            role: "control",
            address: http_addr.to_string(),
            edge: None,
            relay: None,
            viewers: None,
            audience: None,
        },
        ControlPlane::Local(control.clone()),
        None,
        cancel.clone(),
    ));
    let api = control::api::router(control.clone());
    let http_task = spawn_http(
        http_listener,
        http::control_router(http_state, api),
        config,
        http_cap,
        http_metrics,
        &cancel,
        None,
    );
    info!(http = %http_addr, "ferry control is serving");
    services.adopt("heartbeat", heartbeat);
    services.adopt("http", http_task);
    services.adopt("history", spawn_history(&control, config, &cancel));
    services.adopt("cluster sync", spawn_sync(&control, &cancel));
    Ok(Running::http_only(http_addr, Hub::new(), services))
}
