//! `[rtmp] tls_listen`: RTMPS ingest (and play) on a listener of its own,
//! served by the same RTMP server on the RTMP threads (never on the runtime
//! that serves HTTP, the API and packaging), so auth, caps and limits are the
//! same, with TLS handshakes started at a bounded rate.

use std::net::SocketAddr;
use std::sync::Arc;

use rtmp::tls::{CertFiles, HandshakeRate};
use tracing::info;

use crate::config::Config;
use crate::running::{StartError, bind};

/// What the RTMP threads need to serve RTMPS too.
pub(crate) struct RtmpsListener {
    pub listener: tokio::net::TcpListener,
    pub acceptor: rtmp::tls::TlsAcceptor,
    pub rate: Arc<HandshakeRate>,
    pub addr: SocketAddr,
}

/// Binds the RTMPS listener if one is configured.
pub(crate) async fn listen(config: &Config) -> Result<Option<RtmpsListener>, StartError> {
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
    Ok(Some(RtmpsListener {
        listener,
        acceptor: files.acceptor(),
        rate: Arc::new(HandshakeRate::new(r.tls_handshakes_per_second)),
        addr: bound,
    }))
}
