//! The HTTP accept loop: what `axum::serve` leaves out for a public endpoint.
//!
//! Every connection has a header-read timeout (slow-loris clients that send a
//! request a byte at a time are closed) and an idle timeout (a connection that
//! moves no byte either way is closed, including between keep-alive requests),
//! and the number of connections is capped, so a flood of idle HTTP clients
//! cannot use every file descriptor and starve RTMP ingest.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use edge_cache::h1::{ConnLimits, HitPath, Prefixed, Served};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// The largest request head (request line and headers) read; larger gets
/// 431 or the connection closed.
pub const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// Concurrent HTTP/2 streams per connection.
pub const MAX_H2_STREAMS: u32 = 256;

/// After a failed accept (out of descriptors), wait this long instead of spinning.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The bounds of the HTTP listener.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Connections held at once; more are closed on accept.
    pub max_connections: usize,
    /// Time to read a request's headers, from its first byte.
    pub header_read_timeout: Duration,
    /// Time a connection may move no byte in either direction.
    pub idle_timeout: Duration,
}

media_core::metrics! {
    /// Counts of what the limits did.
    pub struct HttpMetrics under "http" {
        /// Open HTTP connections
        pub connections: Gauge,
        /// HTTP connections closed on accept at the connection cap
        pub rejected as "connections_rejected": Counter,
        /// HTTP connections closed after the idle timeout
        pub idle_closed: Counter,
    }
}

/// Serves `router` on `listener` until `cancel`; connections open then get a
/// moment to finish their response. With `hits` (an edge), HTTP/1.1 HLS
/// requests are answered by the edge's own hit path, and a connection goes
/// to hyper and `router` only when it asks for something else.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: HttpLimits,
    metrics: HttpMetrics,
    cancel: CancellationToken,
    hits: Option<HitPath>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "http accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics.rejected.inc();
            debug!(%peer, limit = limits.max_connections, "http connection cap reached, closing new connection");
            continue;
        };
        // Handlers see the client's address (`ConnectInfo`), for per-client bounds.
        let router = router.clone();
        let service = TowerToHyperService::new(tower::service_fn(
            move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                let mut router = router.clone();
                async move { tower::Service::call(&mut router, req).await }
            },
        ));
        let (metrics, cancel, hits) = (metrics.clone(), cancel.clone(), hits.clone());
        tokio::spawn(async move {
            metrics.connections.inc();
            let io = match hits {
                None => Some(Prefixed::new(Bytes::new(), tcp)),
                Some(hits) => {
                    let conn = ConnLimits {
                        header_read_timeout: limits.header_read_timeout,
                        idle_timeout: limits.idle_timeout,
                        max_head: MAX_REQUEST_HEAD,
                    };
                    match hits.serve(tcp, peer, conn, &cancel).await {
                        Served::Handoff(io) => Some(io),
                        Served::IdleClosed => {
                            metrics.idle_closed.inc();
                            None
                        }
                        Served::Closed => None,
                    }
                }
            };
            if let Some(io) = io {
                // Boxed: hyper's connection state is large, and an idle
                // connection on the hit path should not carry its room.
                Box::pin(hyper_connection(
                    io, peer, service, limits, &metrics, &cancel,
                ))
                .await;
            }
            metrics.connections.dec();
            drop(permit);
        });
    }
}

/// Serves one connection with hyper: HTTP/1.1, and HTTP/2 with prior
/// knowledge (h2c) for clients and edges that multiplex.
async fn hyper_connection<S>(
    io: Prefixed,
    peer: std::net::SocketAddr,
    service: S,
    limits: HttpLimits,
    metrics: &HttpMetrics,
    cancel: &CancellationToken,
) where
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let activity = Arc::new(Activity::default());
    let io = TokioIo::new(Tracked {
        inner: io,
        activity: activity.clone(),
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_REQUEST_HEAD);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_REQUEST_HEAD as u32)
        .max_concurrent_streams(MAX_H2_STREAMS);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => if let Err(e) = r {
            debug!(%peer, error = %e, "http connection ended with an error");
        },
        () = activity.idle_for(limits.idle_timeout) => {
            metrics.idle_closed.inc();
            debug!(%peer, "http connection idle, closing");
        }
        _ = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}

/// When a connection last moved a byte, in ms since its start.
struct Activity {
    start: tokio::time::Instant,
    last_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            start: tokio::time::Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Returns once nothing has moved for `limit` (one timer per connection,
    /// re-armed from the last activity rather than on every byte).
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + limit;
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A socket that records when it last read or wrote a byte.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// File descriptors kept free of every connection cap: for the store, the
/// database, logs, outgoing restreams and accepts that must fail softly.
pub const FD_RESERVE: u64 = 256;

/// Raises the open-file limit to its hard maximum and returns it, so the
/// connection caps can be checked against it (`None` where unsupported).
pub fn raise_fd_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(e) => {
            warn!(error = %e, "cannot raise the open-file limit");
            None
        }
    }
}

/// Connection caps (RTMP, HTTP) scaled down, in proportion, so that together
/// with [`FD_RESERVE`] they fit in `fd_limit` descriptors.
pub fn fit_caps(rtmp: usize, http: usize, fd_limit: Option<u64>) -> (usize, usize) {
    let Some(limit) = fd_limit else {
        return (rtmp, http);
    };
    let budget = usize::try_from(limit.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
    let wanted = rtmp.saturating_add(http);
    if wanted <= budget {
        return (rtmp, http);
    }
    let scale = |n: usize| ((n as u128 * budget as u128) / wanted.max(1) as u128) as usize;
    (scale(rtmp).max(1), scale(http).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_fit_in_the_descriptors_left() {
        assert_eq!(fit_caps(10_000, 8_192, Some(1 << 20)), (10_000, 8_192));
        assert_eq!(fit_caps(10_000, 8_192, None), (10_000, 8_192));
        let (r, h) = fit_caps(10_000, 10_000, Some(1024 + FD_RESERVE));
        assert_eq!((r, h), (512, 512));
        assert!(r + h + FD_RESERVE as usize <= 1024 + FD_RESERVE as usize);
    }
}
