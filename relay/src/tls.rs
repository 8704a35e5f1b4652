//! The relay's TLS: each origin has its own self-signed certificate (made on
//! first start, kept in its data directory), and an edge accepts exactly the
//! certificates the cluster pins, never a certificate authority's word.

use std::path::Path;
use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

/// The protocol name both ends announce in the TLS handshake.
pub const ALPN: &[u8] = b"ferry-relay/1";
/// The name in an origin's certificate (certificates are pinned, so it is not
/// what makes a peer trusted).
pub const SERVER_NAME: &str = "ferry-relay";

/// Why the relay's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate or key file could not be read or written.
    #[error("relay certificate {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// A certificate could not be made or used.
    #[error("relay certificate: {0}")]
    Certificate(String),
}

/// An origin's certificate and key.
#[derive(Clone)]
pub struct Identity {
    /// The certificate, DER.
    pub cert: CertificateDer<'static>,
    key: Arc<PrivatePkcs8KeyDer<'static>>,
}

impl Identity {
    /// The certificate kept in `dir` (`relay-cert.der`, `relay-key.der`),
    /// made and stored there on first use, so it survives restarts and edges'
    /// pins stay valid.
    pub fn load_or_create(dir: &Path) -> Result<Self, TlsError> {
        let cert_path = dir.join("relay-cert.der");
        let key_path = dir.join("relay-key.der");
        let file_err = |p: &Path| {
            let path = p.display().to_string();
            move |source| TlsError::File { path, source }
        };
        if cert_path.exists() && key_path.exists() {
            let cert = std::fs::read(&cert_path).map_err(file_err(&cert_path))?;
            let key = std::fs::read(&key_path).map_err(file_err(&key_path))?;
            return Ok(Self {
                cert: CertificateDer::from(cert),
                key: Arc::new(PrivatePkcs8KeyDer::from(key)),
            });
        }
        let made = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()])
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
        let cert = made.cert.der().to_vec();
        let key = made.key_pair.serialize_der();
        write_private(&key_path, &key).map_err(file_err(&key_path))?;
        std::fs::write(&cert_path, &cert).map_err(file_err(&cert_path))?;
        Ok(Self {
            cert: CertificateDer::from(cert),
            key: Arc::new(PrivatePkcs8KeyDer::from(key)),
        })
    }

    /// The SHA-256 of the certificate, hex: what an operator pins.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert)
    }

    /// The QUIC server configuration for this identity.
    pub fn server_config(
        &self,
        transport: Arc<quinn::TransportConfig>,
    ) -> Result<quinn::ServerConfig, TlsError> {
        let err = |e: &dyn std::fmt::Display| TlsError::Certificate(e.to_string());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| err(&e))?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )
            .map_err(|e| err(&e))?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| err(&e))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(transport);
        Ok(config)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

/// SHA-256 of a certificate, lowercase hex.
pub fn fingerprint(cert: &[u8]) -> String {
    Sha256::digest(cert)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A QUIC client configuration that trusts only `cert` (exactly those bytes).
pub fn client_config(
    cert: CertificateDer<'static>,
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ClientConfig, TlsError> {
    let err = |e: &dyn std::fmt::Display| TlsError::Certificate(e.to_string());
    let provider = provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| err(&e))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { cert, provider }))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| err(&e))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport);
    Ok(config)
}

/// Accepts one certificate, byte for byte; the handshake's signatures are
/// still checked against it, so only the holder of its key gets through.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_is_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("ferry-relay-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let a = Identity::load_or_create(&dir).expect("made");
        let b = Identity::load_or_create(&dir).expect("read back");
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 64);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
