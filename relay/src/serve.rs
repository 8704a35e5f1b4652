//! The origin side: a QUIC endpoint that answers each request stream with a
//! hub subscription, frame by frame. A slow edge is a slow hub subscriber:
//! QUIC's flow control holds the writer, the hub resynchronises it at the
//! next keyframe, and the publisher never waits.
//!
//! The port is public, so it trusts nobody: each request carries the edge's
//! token, checked by [`RelayAuth`] before anything is sent; connections are
//! capped in total and per address, streams per connection and requests for
//! one stream per connection too; an edge may open no unidirectional stream
//! and may buffer at most a request's worth of bytes per stream.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use media_core::{Event, Hub};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::RelayMetrics;
use crate::frame::{self, Frame, FrameError};
use crate::tls::Identity;

/// How long an edge has to send its request once it opened a stream.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests for the same stream one connection may have open at once (the
/// current pull and a restart overlapping it).
pub const MAX_SAME_STREAM_PER_CONNECTION: usize = 2;
/// What an edge may have in flight per stream towards the origin: one
/// request frame (the receive window of each stream).
pub const REQUEST_WINDOW: u32 = 4096;
/// What an edge may have in flight towards the origin over all its streams.
pub const CONNECTION_WINDOW: u32 = 64 * 1024;

/// Decides whether an edge's token is one the origin serves (its own list,
/// or the control plane's word); cheap to clone.
pub type RelayAuth = Arc<
    dyn Fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
        + Send
        + Sync,
>;

/// The bounds of a relay endpoint.
#[derive(Clone, Copy, Debug)]
pub struct RelayLimits {
    /// Edge connections at once.
    pub max_connections: usize,
    /// Connections from one address at once.
    pub max_connections_per_address: usize,
    /// Streams one connection may have open at once.
    pub max_streams_per_connection: u32,
}

/// The origin's side of the transport: media out, only requests in.
fn server_transport(limits: &RelayLimits) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(crate::KEEP_ALIVE));
    t.max_idle_timeout(crate::IDLE_TIMEOUT.try_into().ok());
    t.max_concurrent_bidi_streams(limits.max_streams_per_connection.into());
    t.max_concurrent_uni_streams(0u32.into());
    t.stream_receive_window(REQUEST_WINDOW.into());
    t.receive_window(CONNECTION_WINDOW.into());
    t.send_window(64 << 20);
    Arc::new(t)
}

/// Why a relay endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The UDP socket could not be bound.
    #[error("relay cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The failure.
        source: std::io::Error,
    },
}

/// A bound relay endpoint, to be served with [`RelayServer::run`].
pub struct RelayServer {
    endpoint: quinn::Endpoint,
    hub: Hub,
    metrics: RelayMetrics,
    limits: RelayLimits,
    auth: RelayAuth,
}

/// Connections open, in total and per address.
#[derive(Default)]
struct Connections {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// A connection's place in [`Connections`], given back when it ends.
struct ConnectionSlot {
    table: Arc<Mutex<Connections>>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.total = t.total.saturating_sub(1);
        if let Some(n) = t.by_address.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.by_address.remove(&self.ip);
            }
        }
    }
}

impl RelayServer {
    /// Binds `addr` (UDP) with `identity`'s certificate, serving edges whose
    /// token `auth` accepts within `limits`.
    pub fn bind(
        addr: SocketAddr,
        identity: &Identity,
        hub: Hub,
        metrics: RelayMetrics,
        limits: RelayLimits,
        auth: RelayAuth,
    ) -> Result<Self, ServeError> {
        let config = identity.server_config(server_transport(&limits))?;
        let endpoint = quinn::Endpoint::server(config, addr)
            .map_err(|source| ServeError::Bind { addr, source })?;
        Ok(Self {
            endpoint,
            hub,
            metrics,
            limits,
            auth,
        })
    }

    /// The bound address (the port when asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Takes a connection slot for `ip`, or `None` at a cap.
    fn admit(&self, table: &Arc<Mutex<Connections>>, ip: IpAddr) -> Option<ConnectionSlot> {
        let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
        let here = t.by_address.get(&ip).copied().unwrap_or(0);
        if t.total >= self.limits.max_connections || here >= self.limits.max_connections_per_address
        {
            return None;
        }
        t.total += 1;
        *t.by_address.entry(ip).or_insert(0) += 1;
        Some(ConnectionSlot {
            table: table.clone(),
            ip,
        })
    }

    /// Accepts edges until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        let table = Arc::new(Mutex::new(Connections::default()));
        loop {
            let incoming = tokio::select! {
                () = cancel.cancelled() => break,
                i = self.endpoint.accept() => match i {
                    Some(i) => i,
                    None => break,
                },
            };
            let Some(slot) = self.admit(&table, incoming.remote_address().ip()) else {
                self.metrics.refused_connections.inc();
                debug!(peer = %incoming.remote_address(), "relay connection cap reached, refusing");
                incoming.refuse();
                continue;
            };
            let (hub, metrics, cancel) = (self.hub.clone(), self.metrics.clone(), cancel.clone());
            let auth = self.auth.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let conn = match incoming.await {
                    Ok(c) => c,
                    Err(e) => {
                        debug!(error = %e, "relay handshake failed");
                        return;
                    }
                };
                let peer = conn.remote_address();
                info!(%peer, "relay peer connected");
                tokio::select! {
                    () = cancel.cancelled() => conn.close(0u32.into(), b"origin stopping"),
                    () = serve_connection(&conn, hub, metrics, auth) => {}
                }
                info!(%peer, "relay peer gone");
            });
        }
        self.endpoint.close(0u32.into(), b"origin stopping");
    }
}

/// What the streams of one connection share: the token it proved, and the
/// streams it has open by name.
#[derive(Default)]
struct ConnectionState {
    proved: Option<String>,
    open: HashMap<String, usize>,
}

async fn serve_connection(
    conn: &quinn::Connection,
    hub: Hub,
    metrics: RelayMetrics,
    auth: RelayAuth,
) {
    let state = Arc::new(tokio::sync::Mutex::new(ConnectionState::default()));
    while let Ok((send, recv)) = conn.accept_bi().await {
        let (hub, metrics, auth, state, conn) = (
            hub.clone(),
            metrics.clone(),
            auth.clone(),
            state.clone(),
            conn.clone(),
        );
        tokio::spawn(async move {
            metrics.served_streams.inc();
            match serve_stream(send, recv, &hub, &metrics, &auth, &state).await {
                Err(StreamError::Forbidden) => {
                    metrics.refused_edges.inc();
                    info!(peer = %conn.remote_address(), "relay request with a token this origin does not know; closing");
                    // Give the answer a moment to leave, then close.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    conn.close(1u32.into(), b"forbidden");
                }
                Err(e) => debug!(error = %e, "relay stream ended"),
                Ok(()) => {}
            }
            metrics.served_streams.dec();
        });
    }
}

/// Why one relayed stream ended early.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("request: {0}")]
    Frame(#[from] FrameError),
    #[error("no request within {REQUEST_TIMEOUT:?}")]
    Timeout,
    #[error("the edge closed the stream before asking")]
    Closed,
    #[error("unexpected first frame")]
    NotARequest,
    #[error("version {0} not spoken here")]
    Version(u8),
    #[error("the edge's token is not one this origin serves")]
    Forbidden,
    #[error("already relaying this stream on this connection")]
    Duplicate,
    #[error("read: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("write: {0}")]
    Write(#[from] quinn::WriteError),
}

async fn serve_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    hub: &Hub,
    metrics: &RelayMetrics,
    auth: &RelayAuth,
    state: &tokio::sync::Mutex<ConnectionState>,
) -> Result<(), StreamError> {
    let request = tokio::time::timeout(REQUEST_TIMEOUT, read_frame(&mut recv))
        .await
        .map_err(|_| StreamError::Timeout)??;
    let (token, name) = match request {
        Frame::Request {
            version,
            token,
            name,
        } if version == frame::VERSION => (token, name),
        Frame::Request { version, .. } => return Err(StreamError::Version(version)),
        _ => return Err(StreamError::NotARequest),
    };
    // Nothing past the request is read: whatever an edge sends after it
    // stays in QUIC's window of one request, never in the origin's memory.
    let _ = recv.stop(0u32.into());
    let mut out = BytesMut::new();
    {
        let mut s = state.lock().await;
        if s.proved.as_deref() != Some(token.as_str()) {
            if !auth(token.clone()).await {
                frame::encode(&Frame::Forbidden, &mut out);
                send.write_all(&out).await?;
                let _ = send.finish();
                return Err(StreamError::Forbidden);
            }
            s.proved = Some(token);
        }
        let n = s.open.entry(name.clone()).or_insert(0);
        if *n >= MAX_SAME_STREAM_PER_CONNECTION {
            return Err(StreamError::Duplicate);
        }
        *n += 1;
    }
    let result = relay_stream(&mut send, hub, metrics, &name, &mut out).await;
    let mut s = state.lock().await;
    if let Some(n) = s.open.get_mut(&name) {
        *n -= 1;
        if *n == 0 {
            s.open.remove(&name);
        }
    }
    result
}

async fn relay_stream(
    send: &mut quinn::SendStream,
    hub: &Hub,
    metrics: &RelayMetrics,
    name: &str,
    out: &mut BytesMut,
) -> Result<(), StreamError> {
    if !hub.is_live(name) {
        frame::encode(&Frame::NotLive, out);
        send.write_all(out).await?;
        let _ = send.finish();
        return Ok(());
    }
    let mut sub = hub.subscribe_as(name, "relay");
    frame::encode(&Frame::Live, out);
    send.write_all(out).await?;
    debug!(stream = %name, "relaying");
    let mut seen_start = false;
    loop {
        let Some(event) = sub.recv().await else {
            break;
        };
        let f = match event {
            Event::Started if seen_start => {
                // A new publisher behind the same name: the edge starts over.
                break;
            }
            Event::Started => {
                seen_start = true;
                Frame::Started
            }
            Event::Metadata(m) => Frame::Metadata((*m).clone()),
            Event::Track(t) => Frame::Track((*t).clone()),
            Event::Packet(p) => {
                let header = Bytes::copy_from_slice(&frame::packet_header(&p));
                let n = header.len() + p.payload.len();
                send.write_all_chunks(&mut [header, p.payload]).await?;
                metrics.bytes_out.inc_by(n as u64);
                continue;
            }
            Event::Stopped => Frame::Stopped,
        };
        let stop = matches!(f, Frame::Stopped);
        out.clear();
        frame::encode(&f, out);
        metrics.bytes_out.inc_by(out.len() as u64);
        send.write_all(out).await?;
        if stop {
            break;
        }
    }
    let _ = send.finish();
    // Give the last frames a moment to reach the edge before the stream drops.
    let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
    Ok(())
}

/// Reads one frame from `recv` (the request: small, so read whole).
async fn read_frame(recv: &mut quinn::RecvStream) -> Result<Frame, StreamError> {
    let mut buf = BytesMut::new();
    loop {
        if let Some(f) = frame::decode(&mut buf)? {
            return Ok(f);
        }
        if buf.len() > frame::HEADER_LEN + frame::MAX_REQUEST {
            return Err(StreamError::Frame(FrameError::Malformed(
                "request too long",
            )));
        }
        match recv.read_chunk(1024, true).await? {
            Some(c) => buf.extend_from_slice(&c.bytes),
            None => return Err(StreamError::Closed),
        }
    }
}
