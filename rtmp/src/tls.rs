//! RTMPS: RTMP inside TLS, both ways. Pushing to a platform (several take
//! only RTMPS) verifies its certificate against the system's roots; an RTMPS
//! listener serves a certificate and key from files, re-read when they
//! change, so a renewed certificate needs no restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tracing::{info, warn};

use crate::RtmpError;

/// The acceptor an RTMPS listener hands each connection to.
pub use tokio_rustls::TlsAcceptor;

/// A byte stream a session runs on: TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// TLS handshakes an RTMPS listener starts per second (a handshake costs
/// the server a signature: a flood of them must not take the cores that
/// serve live streams); connections past the rate are closed before it.
pub struct HandshakeRate {
    per_second: f64,
    bucket: Mutex<(f64, Instant)>,
}

impl HandshakeRate {
    /// `per_second` handshakes, bursts of twice that; 0: no limit.
    pub fn new(per_second: f64) -> Self {
        Self {
            per_second,
            bucket: Mutex::new((per_second * 2.0, Instant::now())),
        }
    }

    /// Whether one more handshake may start now.
    pub fn allow(&self) -> bool {
        if self.per_second <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, at) = &mut *b;
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second)
            .min(self.per_second * 2.0);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How often a listener looks at its certificate files for a renewal.
pub const RELOAD_CHECK: Duration = Duration::from_secs(5);

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The system's trust roots could not be loaded.
    #[error("no trust roots: {0}")]
    Roots(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client configuration: the system's roots (`SSL_CERT_FILE` and
/// `SSL_CERT_DIR` are honoured), made once per process.
pub fn client_config() -> Result<Arc<rustls::ClientConfig>, TlsError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(format!("none usable ({} errors)", found.errors.len()));
            }
            let config = rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
        .map_err(TlsError::Roots)
}

/// TLS over `tcp` to `host`, its certificate verified for that name.
pub async fn connect(tcp: TcpStream, host: &str) -> Result<Box<dyn Io>, RtmpError> {
    let config = client_config().map_err(|e| RtmpError::Tls(e.to_string()))?;
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| RtmpError::Tls(format!("{host:?} is not a server name")))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| RtmpError::Tls(e.to_string()))?;
    Ok(Box::new(tls))
}

/// A certificate and key read from PEM files, re-read when either changes.
#[derive(Debug)]
pub struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    modified: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let err = |p: &Path, reason: String| TlsError::File {
        path: p.display().to_string(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| err(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(err(cert, "no certificate in the file".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| err(key, e.to_string()))?;
    let signing = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| err(key, e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(certs, signing)))
}

impl CertFiles {
    /// Reads `cert` (PEM chain) and `key` (PEM private key) now: a listener
    /// with unreadable files does not start.
    pub fn open(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        let loaded = load(cert, key)?;
        Ok(Arc::new(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            state: Mutex::new(Loaded {
                key: loaded,
                modified: (modified(cert), modified(key)),
                checked: Instant::now(),
            }),
        }))
    }

    fn current(&self) -> Arc<CertifiedKey> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.checked.elapsed() >= RELOAD_CHECK {
            s.checked = Instant::now();
            let now = (modified(&self.cert), modified(&self.key));
            if now != s.modified {
                match load(&self.cert, &self.key) {
                    Ok(k) => {
                        info!(cert = %self.cert.display(), "rtmps certificate reloaded");
                        s.key = k;
                        s.modified = now;
                    }
                    // Half-written files during a renewal: keep serving the old
                    // pair and look again at the next check.
                    Err(e) => warn!(error = %e, "rtmps certificate not reloaded"),
                }
            }
        }
        s.key.clone()
    }

    /// A TLS acceptor serving these files.
    pub fn acceptor(self: &Arc<Self>) -> tokio_rustls::TlsAcceptor {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

impl ResolvesServerCert for CertFiles {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
