//! `ferry serve`: every role in one process on embedded defaults.

use std::net::SocketAddr;
use std::sync::Arc;

use media_core::Hub;
use prometheus_client::registry::Registry;
use rtmp::auth::mask_key;
use rtmp::{RtmpMetrics, Server, ServerConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, StoreKind};
use crate::http::{self, HttpState};
use crate::http_serve;
use crate::keys;
use crate::node::{self, ControlPlane, NodeInfo};
use crate::stream_settings::StreamSettings;
use hls::PackagerConfig;
use origin_store::{OriginStore, S3Config};
use std::time::Duration;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory could not be created.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The failure.
        source: std::io::Error,
    },
    /// The HLS origin store could not be opened.
    #[error("hls store: {0}")]
    Store(origin_store::StoreError),
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The control database could not be opened or seeded.
    #[error("control database: {0}")]
    Control(control::DbError),
    /// Generated keys could not be read or stored.
    #[error(transparent)]
    Keys(#[from] keys::KeysError),
}

/// A running server; dropping it does not stop it, call [`Running::shutdown`].
pub struct Running {
    /// Where RTMP is listening (useful when the config asked for port 0).
    pub rtmp_addr: SocketAddr,
    /// Where HTTP is listening.
    pub http_addr: SocketAddr,
    /// The hub, for in-process inspection.
    pub hub: Hub,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, closes every connection, and waits for the servers to end.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }

    /// A token that stops the server when cancelled.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

/// The control plane of this process: state in SQLite, seeded from `streams`,
/// with an admin token (given, or made and shown once).
fn open_control(
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
    config.validate().map_err(StartError::Config)?;
    crate::state_files::create_private_dir(&config.data_dir).map_err(|source| {
        StartError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        }
    })?;
    let (http_listener, http_addr) = bind("http", config.http.listen).await?;
    let hub = Hub::new();
    let streams = config.streams.clone();
    let control = open_control(config, &hub, config.rtmp.listen.port(), http_addr, &streams)?;
    let mut registry = Registry::with_prefix("ferry");
    hub.metrics().register(&mut registry);
    let http_metrics = http_serve::HttpMetrics::default();
    http_metrics.register(&mut registry);
    let http_state = Arc::new(HttpState::new(registry));
    let (_, http_cap) = connection_caps(config);
    let store = OriginStore::memory();
    let cancel = CancellationToken::new();
    let heartbeat = tokio::spawn(node::heartbeat(
        NodeInfo {
            id: node::stable_id(&config.data_dir).map_err(|source| StartError::DataDir {
                path: config.data_dir.display().to_string(),
                source,
            })?,
            role: "control",
            address: http_addr.to_string(),
        },
        ControlPlane::Local(control.clone()),
        None,
        cancel.clone(),
    ));
    let api = control::api::router(control);
    let http_task = spawn_http(
        http_listener,
        http::router(http_state, store, api),
        config,
        http_cap,
        http_metrics,
        &cancel,
    );
    info!(http = %http_addr, "ferry control is serving");
    Ok(Running {
        rtmp_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        http_addr,
        hub,
        cancel,
        tasks: vec![heartbeat, http_task],
        threads: Vec::new(),
    })
}

fn spawn_http(
    listener: TcpListener,
    router: axum::Router,
    config: &Config,
    max_connections: usize,
    metrics: http_serve::HttpMetrics,
    cancel: &CancellationToken,
) -> JoinHandle<()> {
    let limits = http_serve::HttpLimits {
        max_connections,
        header_read_timeout: Duration::from_secs(config.http.header_read_timeout_seconds.max(1)),
        idle_timeout: Duration::from_secs(config.http.idle_timeout_seconds.max(1)),
    };
    tokio::spawn(http_serve::serve(
        listener,
        router,
        limits,
        metrics,
        cancel.clone(),
    ))
}

/// The RTMP and HTTP connection caps, after raising the open-file limit, so
/// that both together leave descriptors for everything else.
fn connection_caps(config: &Config) -> (usize, usize) {
    let limit = http_serve::raise_fd_limit();
    let (rtmp, http) = http_serve::fit_caps(
        config.rtmp.max_connections,
        config.http.max_connections,
        limit,
    );
    if (rtmp, http) != (config.rtmp.max_connections, config.http.max_connections) {
        warn!(
            rtmp,
            http,
            open_file_limit = limit,
            "connection caps lowered to fit the open-file limit"
        );
    }
    (rtmp, http)
}

/// Starts every role of `config` on the current tokio runtime; with
/// `[control] url` set, the origin roles only, asking that control plane.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    config.validate().map_err(StartError::Config)?;
    crate::state_files::create_private_dir(&config.data_dir).map_err(|source| {
        StartError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        }
    })?;
    let node_id = node::stable_id(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let (streams, generated) = keys::streams_or_generated(&config.streams, &config.data_dir)?;
    let (rtmp_listener, rtmp_addr) = bind("rtmp", config.rtmp.listen).await?;
    let (http_listener, http_addr) = bind("http", config.http.listen).await?;

    if generated {
        for s in &streams {
            // Keys are never logged; the operator reads it from the file.
            warn!(
                "no streams configured: created stream {:?}; publish to rtmp://HOST:{}/{}/KEY with the key in {}",
                s.name,
                rtmp_addr.port(),
                config.rtmp.app,
                config.data_dir.join("streams.toml").display()
            );
        }
    } else {
        for s in &streams {
            info!(stream = %s.name, key = %mask_key(&s.key), "stream configured");
        }
    }

    let hub = Hub::new();
    let rtmp_metrics = RtmpMetrics::default();
    let mut registry = Registry::with_prefix("ferry");
    hub.metrics().register(&mut registry);
    rtmp_metrics.register(&mut registry);
    let hls_metrics = origin::HlsMetrics::default();
    hls_metrics.register(&mut registry);
    let ladder_metrics = transcode::LadderMetrics::default();
    ladder_metrics.register(&mut registry);
    let http_metrics = http_serve::HttpMetrics::default();
    http_metrics.register(&mut registry);
    let http_state = Arc::new(HttpState::new(registry));
    let (rtmp_cap, http_cap) = connection_caps(config);

    // The control plane: in this process, or another one's over HTTP.
    let remote = if config.control.url.is_empty() {
        None
    } else {
        Some(Arc::new(
            control_client::ControlClient::new(&config.control.url, &config.admin_token)
                .map_err(|e| StartError::Config(e.to_string()))?,
        ))
    };
    let local = match &remote {
        Some(_) => None,
        None => Some(open_control(
            config,
            &hub,
            rtmp_addr.port(),
            http_addr,
            &streams,
        )?),
    };
    // Per-stream settings from the API (this process's control plane only),
    // read when a stream goes live, over the config file.
    let settings_of: Arc<dyn Fn(&str) -> StreamSettings + Send + Sync> = match &local {
        Some(control) => {
            let db = control.db.clone();
            Arc::new(move |name: &str| {
                db.stream(name)
                    .map(|s| StreamSettings::from_stored(&s.settings))
                    .unwrap_or_default()
            })
        }
        // An origin apart from control: the settings came with the publish grant.
        None => match &remote {
            Some(client) => {
                let client = client.clone();
                Arc::new(move |name: &str| {
                    StreamSettings::from_stored(&client.stream_settings(name))
                })
            }
            None => Arc::new(|_: &str| StreamSettings::default()),
        },
    };
    let ladders: origin::LadderLookup = {
        let (config, settings_of) = (config.clone(), settings_of.clone());
        Arc::new(move |name: &str| config.ladder_with(name, &settings_of(name)))
    };
    let containers: origin::ContainerLookup = {
        let (config, settings_of) = (config.clone(), settings_of.clone());
        Arc::new(move |name: &str| config.container_with(name, &settings_of(name)))
    };
    let auth: Arc<dyn rtmp::auth::PublishAuthorizer> = match (&local, &remote) {
        (Some(control), _) => Arc::new(control.auth.clone()),
        (None, Some(client)) => Arc::new(control::ControlAuth::with_lookup(client.clone())),
        (None, None) => unreachable!("either the local or a remote control plane"),
    };
    let server = Server::new(
        ServerConfig {
            app: config.rtmp.app.clone(),
            max_connections: rtmp_cap,
            max_connections_per_address: config.rtmp.max_connections_per_address,
            reserved_publisher_slots: config.rtmp.reserved_publisher_slots,
            player_wait: Duration::from_secs(config.rtmp.player_wait_seconds),
        },
        hub.clone(),
        auth,
        rtmp_metrics,
    );
    let cancel = CancellationToken::new();
    let threads = match config.worker_threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let rtmp_threads = spawn_rtmp_threads(
        &server,
        rtmp_listener,
        threads,
        &cancel,
        &http_state.runtimes,
    )?;
    let store = match config.store.kind {
        StoreKind::Local => OriginStore::local(&config.data_dir.join("hls")),
        StoreKind::S3 => OriginStore::s3(&S3Config {
            endpoint: config.store.s3_endpoint.clone(),
            bucket: config.store.s3_bucket.clone(),
            region: config.store.s3_region.clone(),
            access_key_id: config.store.s3_access_key_id.clone(),
            secret_access_key: config.store.s3_secret_access_key.clone(),
        }),
    }
    .map_err(StartError::Store)?;
    let mut tasks = Vec::new();
    if config.hls.enabled {
        let packaging = PackagerConfig {
            target_duration: config.segment_duration(),
            window: config.hls.window.max(1),
            container: config.hls.container.into(),
            ..PackagerConfig::default()
        };
        tasks.push(tokio::spawn(origin::run(origin::HlsOrigin {
            hub: hub.clone(),
            store: store.clone(),
            config: packaging,
            metrics: hls_metrics,
            max_queued: config.hls.upload_queue_segments,
            containers,
            ladders: ladders.clone(),
            cancel: cancel.clone(),
        })));
        tasks.push(tokio::spawn(origin::ladders::run(origin::Transcoding {
            hub: hub.clone(),
            ladders,
            segment: config.segment_duration(),
            metrics: ladder_metrics,
            cancel: cancel.clone(),
        })));
    }
    let api = match (&local, &remote) {
        (Some(control), _) => {
            if config.control.local_worker {
                let leases = Arc::new(control::leases::LocalLeases {
                    db: control.db.clone(),
                    hub: hub.clone(),
                    nodes: control.nodes.clone(),
                });
                tasks.push(tokio::spawn(worker::run(
                    node_id.clone(),
                    leases,
                    worker::Media::Hub(hub.clone()),
                    control.types.clone(),
                    cancel.clone(),
                )));
            }
            tasks.push(tokio::spawn(node::heartbeat(
                NodeInfo {
                    id: node_id.clone(),
                    role: "all",
                    address: http_addr.to_string(),
                },
                ControlPlane::Local(control.clone()),
                None,
                cancel.clone(),
            )));
            control::api::router(control.clone())
        }
        (None, remote) => {
            if let Some(client) = remote {
                tasks.push(tokio::spawn(node::heartbeat(
                    NodeInfo {
                        id: node_id.clone(),
                        role: "origin",
                        address: http_addr.to_string(),
                    },
                    ControlPlane::Remote(client.clone()),
                    Some(hub.clone()),
                    cancel.clone(),
                )));
            }
            let url = config.control.url.clone();
            axum::Router::new().fallback(move || async move {
                (
                    axum::http::StatusCode::NOT_FOUND,
                    format!("this origin's control plane is at {url}\n"),
                )
            })
        }
    };
    let http_task = spawn_http(
        http_listener,
        http::router(http_state, store, api),
        config,
        http_cap,
        http_metrics,
        &cancel,
    );
    info!(rtmp = %rtmp_addr, http = %http_addr, "ferry is serving");
    Ok(Running {
        rtmp_addr,
        http_addr,
        hub,
        cancel,
        tasks: {
            tasks.push(http_task);
            tasks
        },
        threads: rtmp_threads,
    })
}

/// Binds a listener and reads back its address (the port when asked for port 0).
async fn bind(
    what: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let err = |source| StartError::Bind { what, addr, source };
    let listener = TcpListener::bind(addr).await.map_err(err)?;
    let bound = listener.local_addr().map_err(err)?;
    Ok((listener, bound))
}

/// Serves RTMP on `count` threads, each with its own single-threaded runtime
/// accepting on the same socket (the kernel spreads connections, as across nginx
/// workers). A connection's reads, writes and pacing timers then stay on one
/// thread: measured, this costs far less CPU per player than one work-stealing
/// runtime, whose workers keep waking each other.
fn spawn_rtmp_threads(
    server: &Arc<Server>,
    listener: TcpListener,
    count: usize,
    cancel: &CancellationToken,
    runtimes: &http::Runtimes,
) -> Result<Vec<std::thread::JoinHandle<()>>, StartError> {
    let addr = listener.local_addr().ok();
    let bind_error = |source| StartError::Bind {
        what: "rtmp",
        addr: addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
        source,
    };
    let listener = listener.into_std().map_err(bind_error)?;
    let mut threads = Vec::with_capacity(count);
    for i in 0..count.max(1) {
        let listener = listener.try_clone().map_err(bind_error)?;
        let server = server.clone();
        let cancel = cancel.clone();
        let runtimes = runtimes.clone();
        let thread = std::thread::Builder::new()
            .name(format!("rtmp-{i}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        warn!(error = %e, "cannot start an rtmp thread");
                        return;
                    }
                };
                runtimes.add(runtime.handle().clone());
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => server.run(listener, cancel).await,
                        Err(e) => warn!(error = %e, "cannot serve rtmp on this thread"),
                    }
                });
            })
            .map_err(bind_error)?;
        threads.push(thread);
    }
    Ok(threads)
}
