//! An edge's way to one origin: learn its relay port and certificate from its
//! HTTP base URL (all an operator types), keep one QUIC connection to it, and
//! open a stream per pulled media stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use crate::frame::{self, Frame, FrameError};
use crate::{RelayMetrics, tls, transport};

/// What an origin tells edges at `GET /relay` on its HTTP listener.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RelayInfo {
    /// The relay's UDP port (the host is the one the edge reached over HTTP).
    pub port: u16,
    /// The relay certificate, DER in hex.
    pub cert: String,
    /// SHA-256 of the certificate, hex: what `[relay] pins` lists.
    pub fingerprint: String,
}

/// Asking for the relay info, connecting, or a stream's first answer takes
/// at most this long; a dead origin costs no more than this.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(1);
/// After a failed connection, the origin is left alone this long at first…
pub const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// …doubling up to this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Why a stream could not be opened on an origin.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The origin does not have the stream live.
    #[error("not live on this origin")]
    NotLive,
    /// The origin failed recently and is left alone for a while.
    #[error("origin in backoff after a failure")]
    Backoff,
    /// `GET /relay` failed.
    #[error("relay info: {0}")]
    Info(String),
    /// The origin's certificate is not one the cluster pins.
    #[error("origin certificate {0} is not pinned (in [relay] pins or by the control plane)")]
    NotPinned(String),
    /// The origin does not know this edge's token.
    #[error("the origin refused this edge's token")]
    Forbidden,
    /// The QUIC connection failed.
    #[error("connect: {0}")]
    Connect(String),
    /// The stream failed.
    #[error("stream: {0}")]
    Stream(String),
    /// The origin answered with bytes that are not a frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// No answer in time.
    #[error("no answer within {OPEN_TIMEOUT:?}")]
    Timeout,
}

/// What an edge trusts and proves: the origin certificates it accepts and
/// the token it shows origins.
pub struct Trust {
    /// Fingerprints from `[relay] pins`.
    pub fixed: Vec<String>,
    /// Fingerprints the control plane lists (its live origins'), replaced
    /// as they change.
    pub learned: std::sync::RwLock<Vec<String>>,
    /// With no pin at all, trust the certificate an origin's HTTP URL hands
    /// out (`[relay] trust_http`; off by default: plain HTTP is no proof).
    pub trust_http: bool,
    /// The token sent with every request.
    pub token: String,
}

impl Trust {
    /// Whether an origin certificate with `fingerprint` is trusted.
    pub fn accepts(&self, fingerprint: &str) -> Result<(), LinkError> {
        let learned = self.learned.read().unwrap_or_else(|e| e.into_inner());
        let mut pins = self.fixed.iter().chain(learned.iter()).peekable();
        if pins.peek().is_none() {
            return if self.trust_http {
                Ok(())
            } else {
                Err(LinkError::NotPinned(format!(
                    "{fingerprint} (no pins: set [control] url, [relay] pins or [relay] trust_http)"
                )))
            };
        }
        if pins.any(|p| p.eq_ignore_ascii_case(fingerprint)) {
            Ok(())
        } else {
            Err(LinkError::NotPinned(fingerprint.to_owned()))
        }
    }

    /// Replaces the fingerprints learnt from the control plane.
    pub fn learn(&self, pins: Vec<String>) {
        *self.learned.write().unwrap_or_else(|e| e.into_inner()) = pins;
    }
}

/// One origin as an edge sees it.
pub struct OriginLink {
    /// As configured (`http://HOST:8080`); names the origin in logs and metrics.
    pub name: String,
    base: String,
    http: reqwest::Client,
    endpoint: quinn::Endpoint,
    trust: Arc<Trust>,
    conn: tokio::sync::Mutex<Option<quinn::Connection>>,
    backoff: std::sync::Mutex<(Option<Instant>, Duration)>,
}

impl OriginLink {
    /// A link to the origin at HTTP base URL `base`; nothing is contacted yet.
    pub fn new(
        base: &str,
        http: reqwest::Client,
        endpoint: quinn::Endpoint,
        trust: Arc<Trust>,
    ) -> Self {
        Self {
            name: crate::redacted(base),
            base: base.trim_end_matches('/').to_owned(),
            http,
            endpoint,
            trust,
            conn: tokio::sync::Mutex::new(None),
            backoff: std::sync::Mutex::new((None, BACKOFF_MIN)),
        }
    }

    /// The live connection, made (or remade) when needed.
    async fn connection(&self) -> Result<quinn::Connection, LinkError> {
        let mut held = self.conn.lock().await;
        if let Some(c) = held.as_ref()
            && c.close_reason().is_none()
        {
            return Ok(c.clone());
        }
        {
            let b = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
            if b.0.is_some_and(|until| Instant::now() < until) {
                return Err(LinkError::Backoff);
            }
        }
        match self.connect().await {
            Ok(c) => {
                *self.backoff.lock().unwrap_or_else(|e| e.into_inner()) = (None, BACKOFF_MIN);
                info!(origin = %self.name, "relay connected");
                *held = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                let mut b = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
                let wait = b.1;
                *b = (Some(Instant::now() + wait), (wait * 2).min(BACKOFF_MAX));
                debug!(origin = %self.name, error = %e, ?wait, "relay connection failed");
                Err(e)
            }
        }
    }

    async fn connect(&self) -> Result<quinn::Connection, LinkError> {
        let url = format!("{}/relay", self.base);
        let info: RelayInfo = async {
            let r = self.http.get(&url).timeout(OPEN_TIMEOUT).send().await?;
            r.error_for_status()?.json().await
        }
        .await
        .map_err(|e| LinkError::Info(e.to_string()))?;
        let cert =
            decode_hex(&info.cert).ok_or_else(|| LinkError::Info("bad certificate".into()))?;
        self.trust.accepts(&tls::fingerprint(&cert))?;
        let addr = self.relay_addr(info.port).await?;
        let config = tls::client_config(CertificateDer::from(cert), transport())
            .map_err(|e| LinkError::Connect(e.to_string()))?;
        let connecting = self
            .endpoint
            .connect_with(config, addr, tls::SERVER_NAME)
            .map_err(|e| LinkError::Connect(e.to_string()))?;
        tokio::time::timeout(OPEN_TIMEOUT, connecting)
            .await
            .map_err(|_| LinkError::Timeout)?
            .map_err(|e| LinkError::Connect(e.to_string()))
    }

    /// The origin's host (as in its URL) at the relay port.
    async fn relay_addr(&self, port: u16) -> Result<SocketAddr, LinkError> {
        let url = reqwest::Url::parse(&self.base).map_err(|e| LinkError::Info(e.to_string()))?;
        let host = url
            .host_str()
            .ok_or_else(|| LinkError::Info("origin URL has no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| LinkError::Info(format!("resolve {host}: {e}")))?
            .next()
            .ok_or_else(|| LinkError::Info(format!("{host} resolves to nothing")))
    }

    /// Asks the origin for `name`; on `Live`, the stream to read its frames from.
    pub(crate) async fn open(
        &self,
        name: &str,
        metrics: &RelayMetrics,
    ) -> Result<FrameReader, LinkError> {
        let conn = self.connection().await?;
        let opened = async {
            let (mut send, recv) = conn
                .open_bi()
                .await
                .map_err(|e| LinkError::Stream(e.to_string()))?;
            let mut req = BytesMut::new();
            frame::encode(
                &Frame::Request {
                    version: frame::VERSION,
                    token: self.trust.token.clone(),
                    name: name.to_owned(),
                },
                &mut req,
            );
            send.write_all(&req)
                .await
                .map_err(|e| LinkError::Stream(e.to_string()))?;
            let mut reader = FrameReader {
                recv,
                _send: send,
                buf: BytesMut::new(),
                metrics: metrics.clone(),
            };
            match reader.next().await? {
                Some(Frame::Live) => Ok(reader),
                Some(Frame::Forbidden) => Err(LinkError::Forbidden),
                Some(Frame::NotLive) | None => Err(LinkError::NotLive),
                Some(_) => Err(LinkError::Stream("unexpected answer".into())),
            }
        };
        tokio::time::timeout(OPEN_TIMEOUT, opened)
            .await
            .map_err(|_| LinkError::Timeout)?
    }
}

/// Frames of one relayed stream, as they arrive.
pub(crate) struct FrameReader {
    recv: quinn::RecvStream,
    /// Kept so the stream stays open; dropping the reader resets both halves.
    _send: quinn::SendStream,
    buf: BytesMut,
    metrics: RelayMetrics,
}

impl FrameReader {
    /// The next frame; `None` when the origin ended the stream. Cancel-safe:
    /// bytes are only taken from QUIC once they are in `buf`.
    pub(crate) async fn next(&mut self) -> Result<Option<Frame>, LinkError> {
        loop {
            if let Some(f) = frame::decode(&mut self.buf)? {
                return Ok(Some(f));
            }
            match self.recv.read_chunk(1 << 16, true).await {
                Ok(Some(c)) => {
                    self.metrics.bytes_in.inc_by(c.bytes.len() as u64);
                    self.buf.extend_from_slice(&c.bytes);
                }
                Ok(None) => return Ok(None),
                Err(e) => return Err(LinkError::Stream(e.to_string())),
            }
        }
    }
}

/// Links to `origins` (HTTP base URLs, in order of preference) sharing one
/// QUIC endpoint and one HTTP client (no proxy from the environment, no
/// redirects: the URL an operator wrote is the origin asked).
pub(crate) fn links(origins: &[String], trust: Arc<Trust>) -> std::io::Result<Vec<OriginLink>> {
    let endpoint = quinn::Endpoint::client(SocketAddr::from(([0, 0, 0, 0], 0)))?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(std::io::Error::other)?;
    Ok(origins
        .iter()
        .map(|o| OriginLink::new(o, http.clone(), endpoint.clone(), trust.clone()))
        .collect())
}

impl RelayInfo {
    /// What an origin whose relay listens on `port` with `identity` tells edges.
    pub fn new(port: u16, identity: &tls::Identity) -> Self {
        Self {
            port,
            cert: encode_hex(&identity.cert),
            fingerprint: identity.fingerprint(),
        }
    }
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_junk() {
        let b = [0u8, 1, 0xab, 0xff];
        assert_eq!(decode_hex(&encode_hex(&b)), Some(b.to_vec()));
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
        assert_eq!(decode_hex("é1"), None);
    }
}
