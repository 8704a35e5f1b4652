//! `ferry serve`: every role in one process on embedded defaults.

use std::net::SocketAddr;
use std::sync::Arc;

use media_core::Hub;
use prometheus_client::registry::Registry;
use rtmp::auth::{StaticKeys, mask_key};
use rtmp::{RtmpMetrics, Server, ServerConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::http::{self, HttpState};
use crate::keys;

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
}

impl Running {
    /// Stops accepting, closes every connection, and waits for the servers to end.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// A token that stops the server when cancelled.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

/// Starts every role of `config` on the current tokio runtime.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let (streams, generated) = keys::streams_or_generated(&config.streams, &config.data_dir)?;
    let rtmp_listener = TcpListener::bind(config.rtmp.listen)
        .await
        .map_err(|source| StartError::Bind {
            what: "rtmp",
            addr: config.rtmp.listen,
            source,
        })?;
    let http_listener = TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| StartError::Bind {
            what: "http",
            addr: config.http.listen,
            source,
        })?;
    let rtmp_addr = rtmp_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            what: "rtmp",
            addr: config.rtmp.listen,
            source,
        })?;
    let http_addr = http_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            what: "http",
            addr: config.http.listen,
            source,
        })?;

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
    let http_state = Arc::new(HttpState::new(registry));

    let auth = Arc::new(StaticKeys::new(
        streams.into_iter().map(|s| (s.name, s.key)),
    ));
    let server = Server::new(
        ServerConfig {
            app: config.rtmp.app.clone(),
            max_connections: config.rtmp.max_connections,
        },
        hub.clone(),
        auth,
        rtmp_metrics,
    );
    let cancel = CancellationToken::new();
    let rtmp_task = tokio::spawn(server.run(rtmp_listener, cancel.clone()));
    let http_cancel = cancel.clone();
    let http_task = tokio::spawn(async move {
        let shutdown = async move { http_cancel.cancelled().await };
        if let Err(e) = axum::serve(http_listener, http::router(http_state))
            .with_graceful_shutdown(shutdown)
            .await
        {
            warn!(error = %e, "http server stopped");
        }
    });
    info!(rtmp = %rtmp_addr, http = %http_addr, "ferry is serving");
    Ok(Running {
        rtmp_addr,
        http_addr,
        hub,
        cancel,
        tasks: vec![rtmp_task, http_task],
    })
}
