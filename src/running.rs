//! What every role shares: why a start failed, the running server's handle,
//! and the steps each role takes (prepare the data directory, bind, serve HTTP
//! within the connection caps).

use std::net::SocketAddr;

use media_core::Hub;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::Config;
use crate::http_serve;
use crate::keys;
use crate::node;
use crate::services::Services;
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
    /// Where RTMPS is listening (`[rtmp] tls_listen`), if it is.
    pub rtmps_addr: Option<SocketAddr>,
    /// Where HTTP is listening.
    pub http_addr: SocketAddr,
    /// The hub, for in-process inspection.
    pub hub: Hub,
    /// Where a director is listening (`ferry director`, or `ferry serve`
    /// with `[director] listen`).
    pub director_addr: Option<SocketAddr>,
    /// What runs: the role's named services under one shutdown token.
    pub(crate) services: Services,
    pub(crate) threads: Vec<std::thread::JoinHandle<()>>,
    /// An edge's drain on shutdown: the flag its heartbeats report, and
    /// how long it keeps serving once the flag is up.
    pub(crate) drain: Option<(std::sync::Arc<std::sync::atomic::AtomicBool>, Duration)>,
}

impl Running {
    /// A role that serves HTTP only (control, edge, director): no RTMP
    /// listener, no media threads.
    pub(crate) fn http_only(http_addr: SocketAddr, hub: Hub, services: Services) -> Self {
        Self {
            rtmp_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            rtmps_addr: None,
            http_addr,
            hub,
            director_addr: None,
            services,
            threads: Vec::new(),
            drain: None,
        }
    }

    /// The role's services, by name.
    pub fn services(&self) -> Vec<&'static str> {
        self.services.names()
    }

    /// Services that ended before shutdown (a panic or a bug), by name:
    /// empty on a healthy node.
    pub fn services_ended_early(&self) -> Vec<&'static str> {
        self.services.ended_early()
    }

    /// Stops accepting, closes every connection, and waits for the servers to end.
    pub async fn shutdown(self) {
        if let Some((flag, wait)) = &self.drain
            && !wait.is_zero()
        {
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(seconds = wait.as_secs(), "draining before stopping");
            tokio::time::sleep(*wait).await;
        }
        self.services.stop().await;
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

pub(crate) fn spawn_http(
    listener: TcpListener,
    router: axum::Router,
    config: &Config,
    max_connections: usize,
    metrics: http_serve::HttpMetrics,
    cancel: &CancellationToken,
    hits: Option<edge_cache::h1::HitPath>,
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
        hits,
    ))
}

/// The RTMP and HTTP connection caps, after raising the open-file limit, so
/// that both together leave descriptors for everything else. A role without
/// RTMP (`with_rtmp` false) gives HTTP the whole budget.
pub(crate) fn connection_caps(config: &Config, with_rtmp: bool) -> (usize, usize) {
    let limit = http_serve::raise_fd_limit();
    let wanted_rtmp = if with_rtmp {
        config.rtmp.max_connections
    } else {
        0
    };
    let (rtmp, http) = http_serve::fit_caps(wanted_rtmp, config.http.max_connections, limit);
    if (rtmp, http) != (wanted_rtmp, config.http.max_connections) {
        warn!(
            rtmp,
            http,
            open_file_limit = limit,
            "connection caps lowered to fit the open-file limit"
        );
    }
    (rtmp, http)
}

/// The RTMP server's settings from `[rtmp]`, with `max_connections` as fitted.
pub(crate) fn rtmp_server_config(config: &Config, max_connections: usize) -> rtmp::ServerConfig {
    rtmp::ServerConfig {
        app: config.rtmp.app.clone(),
        max_connections,
        max_connections_per_address: config.rtmp.max_connections_per_address,
        reserved_publisher_slots: config.rtmp.reserved_publisher_slots,
        player_wait: Duration::from_secs(config.rtmp.player_wait_seconds),
        write_interval: Duration::from_millis(config.rtmp.write_interval_ms),
    }
}

/// Checks `config`, makes the data directory (private) and returns this
/// node's stable id: what every role does first.
pub(crate) fn prepare(config: &Config) -> Result<String, StartError> {
    config.validate().map_err(StartError::Config)?;
    let data_dir_error = |source| StartError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    };
    crate::state_files::create_private_dir(&config.data_dir).map_err(data_dir_error)?;
    if !config.node_id.is_empty() {
        return if node::valid_id(&config.node_id) {
            Ok(config.node_id.clone())
        } else {
            Err(StartError::Config(
                "node_id: 1-64 letters, digits, '_' or '-'".into(),
            ))
        };
    }
    node::stable_id(&config.data_dir).map_err(data_dir_error)
}

/// Binds a listener and reads back its address (the port when asked for port 0).
pub(crate) async fn bind(
    what: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let err = |source| StartError::Bind { what, addr, source };
    let listener = TcpListener::bind(addr).await.map_err(err)?;
    let bound = listener.local_addr().map_err(err)?;
    Ok((listener, bound))
}
