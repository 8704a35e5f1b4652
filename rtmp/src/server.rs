//! The RTMP server: publish to `rtmp://HOST/APP/KEY`, play `rtmp://HOST/APP/STREAM`.
//!
//! One tokio task per connection. A connection first negotiates (`connect`,
//! `createStream`, then `publish` or `play`), then becomes a publisher feeding the
//! hub or a player draining a hub subscription. Every failure ends only its own
//! connection.

mod negotiate;
mod play;
mod publish;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use media_core::Hub;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use crate::limits::*;
use crate::transport::Transport;
use crate::{RtmpError, RtmpMetrics};
use media_core::auth::PublishAuthorizer;

/// What an operator can tune about the server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The RTMP application name clients must connect to (`live`).
    pub app: String,
    /// Connections held at once; more are closed on accept.
    pub max_connections: usize,
    /// Connections one address may hold at once; more are closed on accept.
    pub max_connections_per_address: usize,
    /// Of `max_connections`, slots only a publisher may use: once the others
    /// are taken, a new connection may still publish but not play.
    pub reserved_publisher_slots: usize,
    /// How long a player may wait for a stream that has not gone live
    /// (zero: for ever). A stream that was live and stops is waited for anyway.
    pub player_wait: std::time::Duration,
    /// Players write at most this often (a slot of a process-wide grid):
    /// longer means fewer wake-ups and syscalls per player and that much more
    /// latency. The first write after joining, and a full batch, go at once.
    pub write_interval: std::time::Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            app: "live".into(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            reserved_publisher_slots: DEFAULT_RESERVED_PUBLISHER_SLOTS,
            player_wait: DEFAULT_PLAYER_WAIT,
            write_interval: PLAYER_FLUSH_INTERVAL,
        }
    }
}

/// An RTMP server bound to a hub and an authorizer.
pub struct Server {
    config: ServerConfig,
    hub: Hub,
    auth: Arc<dyn PublishAuthorizer>,
    metrics: RtmpMetrics,
    /// Slots any connection may take.
    slots: Arc<Semaphore>,
    /// Slots kept for publishers once `slots` are gone.
    publisher_slots: Arc<Semaphore>,
    per_address: Arc<AddressCounts>,
}

/// Open connections per client address.
#[derive(Default)]
struct AddressCounts(std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>);

impl AddressCounts {
    /// Counts a connection from `ip` unless it already holds `limit`.
    fn try_add(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<AddressGuard> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(AddressGuard(self.clone(), ip))
    }
}

/// Uncounts its connection when dropped.
struct AddressGuard(Arc<AddressCounts>, IpAddr);

impl Drop for AddressGuard {
    fn drop(&mut self) {
        let mut map = self.0.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

enum Role {
    Publish(media_core::Publisher, u32),
    /// A player, its stream id, and the Enhanced RTMP codecs it reads.
    Play(media_core::Subscriber, u32, negotiate::Reads),
    Done,
}

impl Server {
    /// A server; call [`Server::run`] to serve a listener.
    pub fn new(
        mut config: ServerConfig,
        hub: Hub,
        auth: Arc<dyn PublishAuthorizer>,
        metrics: RtmpMetrics,
    ) -> Arc<Self> {
        config.write_interval = config
            .write_interval
            .clamp(*WRITE_INTERVAL_RANGE.start(), *WRITE_INTERVAL_RANGE.end());
        let reserved = config.reserved_publisher_slots.min(config.max_connections);
        let slots = Arc::new(Semaphore::new(config.max_connections - reserved));
        let publisher_slots = Arc::new(Semaphore::new(reserved));
        Arc::new(Self {
            config,
            hub,
            auth,
            metrics,
            slots,
            publisher_slots,
            per_address: Arc::default(),
        })
    }

    /// Accepts connections until `cancel` fires; open connections are closed then too.
    pub async fn run(self: Arc<Self>, listener: TcpListener, cancel: CancellationToken) {
        self.accept_loop(listener, cancel, |tcp| async move { Ok(tcp) })
            .await;
    }

    /// Like [`Server::run`] for RTMPS: each connection's TLS handshake (bounded
    /// like RTMP's, and started at most at `rate`) comes first; the same
    /// caps, auth and limits apply.
    pub async fn run_tls(
        self: Arc<Self>,
        listener: TcpListener,
        acceptor: tokio_rustls::TlsAcceptor,
        rate: Arc<crate::tls::HandshakeRate>,
        cancel: CancellationToken,
    ) {
        let refused = self.metrics.tls_handshakes_refused.clone();
        self.accept_loop(listener, cancel, move |tcp| {
            let acceptor = acceptor.clone();
            let allowed = rate.allow();
            if !allowed {
                refused.inc();
            }
            async move {
                if !allowed {
                    return Err(RtmpError::Tls("over the TLS handshake rate".into()));
                }
                match timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Err(_) => Err(RtmpError::Timeout("tls handshake")),
                    Ok(Err(e)) => Err(RtmpError::Tls(e.to_string())),
                    Ok(Ok(tls)) => Ok(tls),
                }
            }
        })
        .await;
    }

    /// Accepts within the connection caps and serves each connection on the
    /// byte stream `open` makes of it.
    async fn accept_loop<F, Fut, S>(
        self: Arc<Self>,
        listener: TcpListener,
        cancel: CancellationToken,
        open: F,
    ) where
        F: Fn(TcpStream) -> Fut,
        Fut: std::future::Future<Output = Result<S, RtmpError>> + Send + 'static,
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let tick = play::spawn_ticker(cancel.clone(), self.config.write_interval);
        loop {
            let accepted = tokio::select! {
                _ = cancel.cancelled() => return,
                a = listener.accept() => a,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "rtmp accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let Some(address) = self
                .per_address
                .try_add(peer.ip(), self.config.max_connections_per_address)
            else {
                self.metrics.connections_rejected_address.inc();
                debug!(%peer, limit = self.config.max_connections_per_address, "rtmp connections per address reached, closing new connection");
                continue;
            };
            let (permit, publish_only) = match self.slots.clone().try_acquire_owned() {
                Ok(p) => (p, false),
                Err(_) => match self.publisher_slots.clone().try_acquire_owned() {
                    Ok(p) => (p, true),
                    Err(_) => {
                        self.metrics.connections_rejected.inc();
                        warn!(%peer, limit = self.config.max_connections, "rtmp connection limit reached, closing new connection");
                        continue;
                    }
                },
            };
            self.metrics.connections_accepted.inc();
            let server = self.clone();
            let cancel = cancel.clone();
            let tick = tick.clone();
            // Small writes (commands, the first frames) go out at once.
            if let Err(e) = tcp.set_nodelay(true) {
                debug!(%peer, error = %e, "cannot set TCP_NODELAY");
            }
            let opening = open(tcp);
            let span = tracing::info_span!("rtmp", %peer);
            tokio::spawn(
                async move {
                    server.metrics.connections.inc();
                    let session = async {
                        let io = opening.await?;
                        server
                            .clone()
                            .serve_paced(io, peer, Some(tick), publish_only)
                            .await
                    };
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        r = session => match r {
                            Ok(()) => debug!("connection closed"),
                            Err(e) if e.is_client_closed() => debug!("peer closed the connection"),
                            Err(e) => {
                                server.metrics.protocol_errors.inc();
                                warn!(error = %e, "rtmp connection closed on error");
                            }
                        }
                    }
                    server.metrics.connections.dec();
                    drop(permit);
                    drop(address);
                }
                .instrument(span),
            );
        }
    }

    /// Serves one already-accepted connection (any byte stream, for tests).
    pub async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
        self: Arc<Self>,
        io: S,
        peer: SocketAddr,
    ) -> Result<(), RtmpError> {
        self.serve_paced(io, peer, None, false).await
    }

    /// `tick`: the runtime's shared flush tick; without one, each player keeps its
    /// own timer.
    async fn serve_paced<S: AsyncRead + AsyncWrite + Unpin>(
        self: Arc<Self>,
        io: S,
        peer: SocketAddr,
        tick: Option<Arc<Notify>>,
        publish_only: bool,
    ) -> Result<(), RtmpError> {
        let mut t = Transport::new(io, self.metrics.clone());
        timeout(HANDSHAKE_TIMEOUT, t.accept_handshake())
            .await
            .map_err(|_| RtmpError::Timeout("handshake"))??;
        let role = timeout(COMMAND_TIMEOUT, self.negotiate(&mut t, peer, publish_only))
            .await
            .map_err(|_| RtmpError::Timeout("waiting for publish or play"))??;
        match role {
            Role::Publish(publisher, stream_id) => {
                self.metrics.publishers.inc();
                let r = self.publishing(&mut t, &publisher, stream_id).await;
                self.metrics.publishers.dec();
                info!(stream = publisher.name(), "publisher left");
                r
            }
            Role::Play(subscriber, stream_id, reads) => {
                self.metrics.players.inc();
                let r = self
                    .playing(&mut t, subscriber, stream_id, reads, tick.as_deref())
                    .await;
                self.metrics.players.dec();
                r
            }
            Role::Done => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amf0::Amf0Value;
    use crate::message::{self, type_id};
    use media_core::auth::StaticKeys;

    fn server() -> Arc<Server> {
        Server::new(
            ServerConfig::default(),
            Hub::new(),
            Arc::new(StaticKeys::default()),
            RtmpMetrics::default(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn silent_client_times_out_in_handshake() {
        let (_client, server_side) = tokio::io::duplex(4096);
        let peer: SocketAddr = ([127, 0, 0, 1], 9).into();
        let r = server().serve_stream(server_side, peer).await;
        assert!(matches!(r, Err(RtmpError::Timeout("handshake"))), "{r:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn client_that_never_publishes_or_plays_times_out() {
        use tokio::io::AsyncWriteExt;
        let (mut client, server_side) = tokio::io::duplex(1 << 16);
        let peer: SocketAddr = ([127, 0, 0, 1], 9).into();
        let task = tokio::spawn(server().serve_stream(server_side, peer));
        let c2 = client_handshake(&mut client).await;
        client.write_all(&c2).await.expect("write");
        let r = task.await.expect("joined");
        assert!(
            matches!(r, Err(RtmpError::Timeout("waiting for publish or play"))),
            "{r:?}"
        );
    }

    /// Sends C0+C1, reads S0-S2, and returns C2 for the caller to send (with
    /// whatever should follow it in the same write).
    async fn client_handshake<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
        client: &mut S,
    ) -> bytes::BytesMut {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut out = bytes::BytesMut::new();
        let mut hs = crate::handshake::ClientHandshake::start(&mut out);
        client.write_all(&out).await.expect("write");
        let mut input = bytes::BytesMut::new();
        let mut c2 = bytes::BytesMut::new();
        while !hs.feed(&mut input, &mut c2).expect("valid") {
            let mut buf = [0u8; 4096];
            let n = client.read(&mut buf).await.expect("read");
            input.extend_from_slice(&buf[..n]);
        }
        c2
    }

    /// Handshake, `connect`, `createStream` and `publish` with `key`, as raw bytes.
    async fn start_publishing<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
        client: &mut S,
        key: &str,
    ) {
        use tokio::io::AsyncWriteExt;
        let mut c2 = client_handshake(client).await;
        let enc = crate::chunk::ChunkEncoder::new();
        let app = Amf0Value::Object(vec![("app".into(), Amf0Value::String("live".into()))]);
        for (body, sid) in [
            (message::command_body("connect", 1.0, &[app]), 0),
            (
                message::command_body("createStream", 2.0, &[Amf0Value::Null]),
                0,
            ),
            (
                message::command_body(
                    "publish",
                    0.0,
                    &[Amf0Value::Null, Amf0Value::String(key.into())],
                ),
                1,
            ),
        ] {
            enc.write(&mut c2, 3, 0, type_id::COMMAND_AMF0, sid, &body);
        }
        client.write_all(&c2).await.expect("write");
    }

    #[tokio::test(start_paused = true)]
    async fn silent_publisher_is_disconnected() {
        let keys = StaticKeys::new([("demo".to_owned(), "key".to_owned())]);
        let hub = Hub::new();
        let server = Server::new(
            ServerConfig::default(),
            hub.clone(),
            Arc::new(keys),
            RtmpMetrics::default(),
        );
        let (mut client, server_side) = tokio::io::duplex(1 << 16);
        let peer: SocketAddr = ([127, 0, 0, 1], 9).into();
        let task = tokio::spawn(server.serve_stream(server_side, peer));
        start_publishing(&mut client, "key").await;
        // Keep reading replies so the server never blocks on a full pipe.
        let drain = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut sink = Vec::new();
            let _ = client.read_to_end(&mut sink).await;
        });
        let r = task.await.expect("joined");
        assert!(
            matches!(r, Err(RtmpError::Timeout("publisher sent nothing"))),
            "{r:?}"
        );
        assert!(!hub.is_live("demo"), "the stream is released");
        drain.abort();
    }
}
