//! The origin side: a QUIC endpoint that answers each request stream with a
//! hub subscription, frame by frame. A slow edge is a slow hub subscriber:
//! QUIC's flow control holds the writer, the hub resynchronises it at the
//! next keyframe, and the publisher never waits.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use media_core::{Event, Hub};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::frame::{self, Frame, FrameError};
use crate::tls::Identity;
use crate::{RelayMetrics, transport};

/// How long an edge has to send its request once it opened a stream.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

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
}

impl RelayServer {
    /// Binds `addr` (UDP) with `identity`'s certificate.
    pub fn bind(
        addr: SocketAddr,
        identity: &Identity,
        hub: Hub,
        metrics: RelayMetrics,
    ) -> Result<Self, ServeError> {
        let config = identity.server_config(transport())?;
        let endpoint = quinn::Endpoint::server(config, addr)
            .map_err(|source| ServeError::Bind { addr, source })?;
        Ok(Self {
            endpoint,
            hub,
            metrics,
        })
    }

    /// The bound address (the port when asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Accepts edges until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            let incoming = tokio::select! {
                () = cancel.cancelled() => break,
                i = self.endpoint.accept() => match i {
                    Some(i) => i,
                    None => break,
                },
            };
            let (hub, metrics, cancel) = (self.hub.clone(), self.metrics.clone(), cancel.clone());
            tokio::spawn(async move {
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
                    () = serve_connection(&conn, hub, metrics) => {}
                }
                info!(%peer, "relay peer gone");
            });
        }
        self.endpoint.close(0u32.into(), b"origin stopping");
    }
}

async fn serve_connection(conn: &quinn::Connection, hub: Hub, metrics: RelayMetrics) {
    while let Ok((send, recv)) = conn.accept_bi().await {
        let (hub, metrics) = (hub.clone(), metrics.clone());
        tokio::spawn(async move {
            metrics.served_streams.inc();
            if let Err(e) = serve_stream(send, recv, &hub, &metrics).await {
                debug!(error = %e, "relay stream ended");
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
) -> Result<(), StreamError> {
    let request = tokio::time::timeout(REQUEST_TIMEOUT, read_frame(&mut recv))
        .await
        .map_err(|_| StreamError::Timeout)??;
    let name = match request {
        Frame::Request { version, name } if version == frame::VERSION => name,
        Frame::Request { version, .. } => return Err(StreamError::Version(version)),
        _ => return Err(StreamError::NotARequest),
    };
    let mut out = BytesMut::new();
    if !hub.is_live(&name) {
        frame::encode(&Frame::NotLive, &mut out);
        send.write_all(&out).await?;
        let _ = send.finish();
        return Ok(());
    }
    let mut sub = hub.subscribe_as(&name, "relay");
    frame::encode(&Frame::Live, &mut out);
    send.write_all(&out).await?;
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
        frame::encode(&f, &mut out);
        metrics.bytes_out.inc_by(out.len() as u64);
        send.write_all(&out).await?;
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
        if buf.len() > frame::HEADER_LEN + frame::MAX_NAME + 1 {
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
