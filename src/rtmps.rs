//! `[rtmp] tls_listen`: RTMPS ingest (and play) on a listener of its own,
//! served by the same RTMP server, so auth, caps and limits are the same.

use std::net::SocketAddr;
use std::sync::Arc;

use rtmp::Server;
use rtmp::tls::CertFiles;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::Config;
use crate::running::{StartError, bind};

/// Starts the RTMPS listener if one is configured; its task and address.
pub(crate) async fn listen(
    config: &Config,
    server: &Arc<Server>,
    cancel: &CancellationToken,
) -> Result<Option<(JoinHandle<()>, SocketAddr)>, StartError> {
    let r = &config.rtmp;
    if r.tls_listen.is_empty() {
        return Ok(None);
    }
    let addr: SocketAddr = r
        .tls_listen
        .parse()
        .map_err(|e| StartError::Config(format!("[rtmp] tls_listen {:?}: {e}", r.tls_listen)))?;
    if r.tls_cert.as_os_str().is_empty() || r.tls_key.as_os_str().is_empty() {
        return Err(StartError::Config(
            "[rtmp] tls_listen needs tls_cert and tls_key (PEM files)".into(),
        ));
    }
    let files = CertFiles::open(&r.tls_cert, &r.tls_key)
        .map_err(|e| StartError::Config(format!("[rtmp] tls: {e}")))?;
    let (listener, bound) = bind("rtmps", addr).await?;
    info!(rtmps = %bound, "rtmps is serving");
    let task = tokio::spawn(
        server
            .clone()
            .run_tls(listener, files.acceptor(), cancel.clone()),
    );
    Ok(Some((task, bound)))
}
