//! The RTMP server: publish to `rtmp://HOST/APP/KEY`, play `rtmp://HOST/APP/STREAM`.
//!
//! One tokio task per connection. A connection first negotiates (`connect`,
//! `createStream`, then `publish` or `play`), then becomes a publisher feeding the
//! hub or a player draining a hub subscription. Every failure ends only its own
//! connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use media_core::{Event, Hub, HubError, MetaValue, Metadata, Packet, TrackInfo, TrackKind};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use crate::amf0::Amf0Value;
use crate::auth::{PublishAuthorizer, PublishRequest, mask_key};
use crate::flv::{self, AudioTag, VideoTag};
use crate::limits::*;
use crate::message::{self, Command, Message, type_id, user_control};
use crate::time::Unwrapper;
use crate::transport::{Transport, csid};
use crate::{RtmpError, RtmpMetrics, amf0};

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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            app: "live".into(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            reserved_publisher_slots: DEFAULT_RESERVED_PUBLISHER_SLOTS,
            player_wait: DEFAULT_PLAYER_WAIT,
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
    Play(media_core::Subscriber, u32),
    Done,
}

impl Server {
    /// A server; call [`Server::run`] to serve a listener.
    pub fn new(
        config: ServerConfig,
        hub: Hub,
        auth: Arc<dyn PublishAuthorizer>,
        metrics: RtmpMetrics,
    ) -> Arc<Self> {
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
        let tick = spawn_ticker(cancel.clone());
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
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
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
            let span = tracing::info_span!("rtmp", %peer);
            tokio::spawn(
                async move {
                    server.metrics.connections.inc();
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        r = server.clone().serve(tcp, peer, tick, publish_only) => match r {
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

    async fn serve(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        tick: Arc<Notify>,
        publish_only: bool,
    ) -> Result<(), RtmpError> {
        tcp.set_nodelay(true)?;
        self.serve_paced(tcp, peer, Some(tick), publish_only).await
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
            Role::Play(subscriber, stream_id) => {
                self.metrics.players.inc();
                let r = self
                    .playing(&mut t, subscriber, stream_id, tick.as_deref())
                    .await;
                self.metrics.players.dec();
                r
            }
            Role::Done => Ok(()),
        }
    }

    async fn negotiate<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        t: &mut Transport<S>,
        peer: SocketAddr,
        publish_only: bool,
    ) -> Result<Role, RtmpError> {
        let mut app: Option<String> = None;
        // `live/STREAM` as the app (what ffmpeg sends for
        // rtmp://HOST/live/STREAM/RUNG): the play path names a stream below it.
        let mut below: Option<String> = None;
        let mut next_stream_id = 1u32;
        loop {
            let Message::Command(cmd) = t.read_message().await? else {
                continue;
            };
            match cmd.name.as_str() {
                "connect" => {
                    let raw = cmd
                        .args
                        .first()
                        .and_then(|o| o.get("app"))
                        .and_then(Amf0Value::as_str)
                        .unwrap_or_default();
                    let requested = match check_name(raw) {
                        Ok(()) => app_name(raw),
                        Err(why) => {
                            self.metrics.bad_names.inc();
                            let why = format!("application name refused: {why}");
                            info!(app = ?truncated(raw), "connect refused: bad application name");
                            t.queue_command(0, &connect_error(cmd.transaction, &why));
                            t.flush().await?;
                            return Ok(Role::Done);
                        }
                    };
                    let (requested, sub) = match requested.split_once('/') {
                        Some((a, rest)) if a == self.config.app && !rest.is_empty() => {
                            (a.to_owned(), Some(rest.to_owned()))
                        }
                        _ => (requested, None),
                    };
                    if requested != self.config.app {
                        let why = format!("unknown application {requested:?}");
                        t.queue_command(0, &connect_error(cmd.transaction, &why));
                        t.flush().await?;
                        info!(app = ?requested, "connect refused: unknown application");
                        return Ok(Role::Done);
                    }
                    t.queue_control(
                        type_id::WINDOW_ACK_SIZE,
                        &message::u32_body(WINDOW_ACK_SIZE),
                    );
                    t.queue_control(
                        type_id::SET_PEER_BANDWIDTH,
                        &message::peer_bandwidth_body(WINDOW_ACK_SIZE),
                    );
                    t.set_chunk_size(OUTGOING_CHUNK_SIZE);
                    t.queue_command(0, &connect_result(cmd.transaction));
                    t.flush().await?;
                    app = Some(requested);
                    below = sub;
                }
                "createStream" => {
                    let id = next_stream_id;
                    next_stream_id = next_stream_id.saturating_add(1);
                    t.queue_command(
                        0,
                        &message::command_body(
                            "_result",
                            cmd.transaction,
                            &[Amf0Value::Null, Amf0Value::Number(f64::from(id))],
                        ),
                    );
                    t.flush().await?;
                }
                "releaseStream" | "FCPublish" | "FCUnpublish" | "FCSubscribe"
                | "getStreamLength" => {
                    if cmd.name == "FCPublish" {
                        let name = arg_str(&cmd, 1).unwrap_or_default();
                        let body = message::command_body(
                            "onFCPublish",
                            0.0,
                            &[
                                Amf0Value::Null,
                                message::status_object("status", "NetStream.Publish.Start", name),
                            ],
                        );
                        t.queue_command(0, &body);
                    }
                    if cmd.transaction > 0.0 {
                        // A live stream has no length; ffmpeg wants a number here.
                        let value = if cmd.name == "getStreamLength" {
                            Amf0Value::Number(0.0)
                        } else {
                            Amf0Value::Undefined
                        };
                        t.queue_command(
                            0,
                            &message::command_body(
                                "_result",
                                cmd.transaction,
                                &[Amf0Value::Null, value],
                            ),
                        );
                    }
                    t.flush().await?;
                }
                "publish" | "play" => {
                    let Some(app) = app.as_deref() else {
                        return Err(RtmpError::Protocol(format!("{} before connect", cmd.name)));
                    };
                    // Clients publish or play on the stream they created last.
                    let stream_id = next_stream_id.saturating_sub(1).max(1);
                    let publish = cmd.name == "publish";
                    let raw = arg_str(&cmd, 1).unwrap_or_default();
                    let refusal = match check_name(raw) {
                        Err(why) => {
                            self.metrics.bad_names.inc();
                            Some(format!("stream name refused: {why}"))
                        }
                        Ok(()) if publish_only && !publish => {
                            self.metrics.connections_rejected.inc();
                            Some("server is full: the slots left are kept for publishers".into())
                        }
                        Ok(()) => None,
                    };
                    if let Some(why) = refusal {
                        let code = if publish {
                            "NetStream.Publish.BadName"
                        } else {
                            "NetStream.Play.Failed"
                        };
                        info!(name = ?truncated(raw), reason = %why, command = %cmd.name, "refused");
                        t.queue_command(stream_id, &on_status("error", code, &why));
                        t.flush().await?;
                        linger(t).await;
                        return Ok(Role::Done);
                    }
                    let mut name = stream_name(raw);
                    if let Some(prefix) = &below {
                        name = format!("{prefix}/{name}");
                    }
                    return if publish {
                        self.start_publish(t, peer, app, &name, stream_id).await
                    } else {
                        self.start_play(t, &name, stream_id).await
                    };
                }
                other => debug!(command = other, "ignoring command before publish/play"),
            }
        }
    }

    async fn start_publish<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        t: &mut Transport<S>,
        peer: SocketAddr,
        app: &str,
        key: &str,
        stream_id: u32,
    ) -> Result<Role, RtmpError> {
        let decision = self.auth.authorize(PublishRequest { app, key, peer }).await;
        let refusal = match decision {
            Ok(name) => match self.hub.publish(&name) {
                Ok(publisher) => {
                    publisher.set_source(format!("rtmp://{peer}"));
                    t.queue_control(
                        type_id::USER_CONTROL,
                        &message::user_control_body(user_control::STREAM_BEGIN, stream_id),
                    );
                    t.queue_command(
                        stream_id,
                        &on_status(
                            "status",
                            "NetStream.Publish.Start",
                            &format!("{name} is now published"),
                        ),
                    );
                    t.flush().await?;
                    info!(stream = %name, key = %mask_key(key), "publishing");
                    return Ok(Role::Publish(publisher, stream_id));
                }
                Err(HubError::AlreadyPublishing(_)) => {
                    format!("stream {name} already has a publisher")
                }
            },
            Err(e) => e.to_string(),
        };
        self.metrics.publish_refused.inc();
        info!(key = %mask_key(key), reason = %refusal, "publish refused");
        t.queue_command(
            stream_id,
            &on_status("error", "NetStream.Publish.BadName", &refusal),
        );
        t.flush().await?;
        linger(t).await;
        Ok(Role::Done)
    }

    async fn start_play<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        t: &mut Transport<S>,
        name: &str,
        stream_id: u32,
    ) -> Result<Role, RtmpError> {
        let subscriber = self.hub.subscribe_as(name, "rtmp");
        t.queue_control(
            type_id::USER_CONTROL,
            &message::user_control_body(user_control::STREAM_BEGIN, stream_id),
        );
        t.queue_command(
            stream_id,
            &on_status("status", "NetStream.Play.Reset", &format!("playing {name}")),
        );
        t.queue_command(
            stream_id,
            &on_status(
                "status",
                "NetStream.Play.Start",
                &format!("started playing {name}"),
            ),
        );
        let access = amf0::encode_all(&[
            Amf0Value::String("|RtmpSampleAccess".into()),
            Amf0Value::Boolean(true),
            Amf0Value::Boolean(true),
        ]);
        t.queue(csid::DATA, 0, type_id::DATA_AMF0, stream_id, &access);
        t.flush().await?;
        info!(stream = %name, live = subscriber.is_live(), "playing");
        Ok(Role::Play(subscriber, stream_id))
    }

    async fn publishing<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        t: &mut Transport<S>,
        publisher: &media_core::Publisher,
        stream_id: u32,
    ) -> Result<(), RtmpError> {
        let mut ingest = Ingest::default();
        // One kick watcher for the whole session, not one per message.
        let kicked = publisher.kicked();
        tokio::pin!(kicked);
        loop {
            // A kick drops the message being read; the connection closes anyway.
            let msg = tokio::select! {
                read = timeout(PUBLISHER_IDLE_TIMEOUT, t.read_message()) => {
                    read.map_err(|_| RtmpError::Timeout("publisher sent nothing"))??
                }
                () = &mut kicked => {
                    info!(stream = %publisher.name(), "publisher kicked");
                    t.queue_command(
                        stream_id,
                        &on_status("error", "NetStream.Publish.Denied", "kicked by an operator"),
                    );
                    let _ = t.flush().await;
                    return Ok(());
                }
            };
            match msg {
                Message::Video { timestamp, data } => ingest.video(publisher, timestamp, &data)?,
                Message::Audio { timestamp, data } => ingest.audio(publisher, timestamp, &data)?,
                Message::Data(values) => {
                    if let Some(meta) = metadata(&values) {
                        publisher.set_metadata(meta);
                    }
                }
                Message::Command(cmd) => match cmd.name.as_str() {
                    "deleteStream" | "closeStream" | "FCUnpublish" => {
                        t.queue_command(
                            stream_id,
                            &on_status("status", "NetStream.Unpublish.Success", "unpublished"),
                        );
                        t.flush().await?;
                        return Ok(());
                    }
                    other => debug!(command = other, "ignoring command while publishing"),
                },
                _ => {}
            }
            t.flush().await?;
        }
    }

    async fn playing<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        t: &mut Transport<S>,
        mut sub: media_core::Subscriber,
        stream_id: u32,
        tick: Option<&Notify>,
    ) -> Result<(), RtmpError> {
        let mut out = PlayWriter {
            stream_id,
            last_ts: 0,
            initial_start: sub.is_live(),
        };
        // Writes are paced on a shared grid of PLAYER_FLUSH_INTERVAL slots: while
        // packets keep coming, a player wakes once per slot, drains what arrived and
        // writes it in one syscall, instead of waking and writing once per packet.
        // An idle player waits on the stream instead, so the first write after a
        // quiet spell (the GOP cache on join) goes out at once.
        let mut next_slot: Option<tokio::time::Instant> = None;
        // A stream that is not live must go live within `player_wait`, or the
        // player is told it does not exist (players on made-up names do not
        // hold connections for ever); once it has been live, it is waited for.
        let wait = self.config.player_wait;
        let mut give_up =
            (!sub.is_live() && !wait.is_zero()).then(|| tokio::time::Instant::now() + wait);
        loop {
            let paced = next_slot.is_some();
            let slot = next_slot.unwrap_or_else(tokio::time::Instant::now);
            tokio::select! {
                msg = t.read_message() => {
                    if let Message::Command(Command { name, .. }) = msg?
                        && matches!(name.as_str(), "deleteStream" | "closeStream")
                    {
                        return Ok(());
                    }
                }
                () = tokio::time::sleep_until(give_up.unwrap_or_else(tokio::time::Instant::now)), if give_up.is_some() => {
                    self.metrics.player_wait_expired.inc();
                    info!(stream = sub.name(), waited = ?wait, "player closed: the stream did not go live");
                    t.queue_command(
                        stream_id,
                        &on_status("error", "NetStream.Play.StreamNotFound", "the stream is not live"),
                    );
                    let _ = timeout(PLAYER_WRITE_TIMEOUT, t.flush()).await;
                    return Ok(());
                }
                ev = sub.recv(), if !paced => {
                    let Some(ev) = ev else { return Ok(()) };
                    if matches!(ev, Event::Started) {
                        give_up = None;
                    }
                    out.write(t, ev);
                    drain(&mut sub, &mut out, t);
                    next_slot = Some(next_after(t.pending(), tokio::time::Instant::now()));
                }
                () = pace(tick, slot), if paced => {
                    give_up = None;
                    drain(&mut sub, &mut out, t);
                    next_slot = (t.pending() > 0).then(|| next_after(t.pending(), slot));
                }
            }
            if t.pending() > 0 {
                timeout(PLAYER_WRITE_TIMEOUT, t.flush())
                    .await
                    .map_err(|_| RtmpError::Timeout("player stopped reading"))??;
            }
        }
    }
}

/// Waits for `slot`: on the runtime's shared tick when there is one (one timer
/// for every player of the thread), else on a timer of this player's own.
async fn pace(tick: Option<&Notify>, slot: tokio::time::Instant) {
    match tick {
        Some(tick) if slot > tokio::time::Instant::now() => tick.notified().await,
        _ => tokio::time::sleep_until(slot).await,
    }
}

/// Wakes every paced player of this runtime at each slot of the grid.
fn spawn_ticker(cancel: CancellationToken) -> Arc<Notify> {
    let tick = Arc::new(Notify::new());
    let notify = tick.clone();
    tokio::spawn(async move {
        let first = flush_slot(tokio::time::Instant::now() + PLAYER_FLUSH_INTERVAL);
        let mut every = tokio::time::interval_at(first, PLAYER_FLUSH_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = every.tick() => notify.notify_waiters(),
            }
        }
    });
    tick
}

/// When a player writes next: at once if its batch was full (more is queued, so
/// pacing must not cap its bitrate), else in the next slot.
fn next_after(pending: usize, now: tokio::time::Instant) -> tokio::time::Instant {
    if pending >= PLAYER_BATCH_BYTES {
        now
    } else {
        flush_slot(now + PLAYER_FLUSH_INTERVAL)
    }
}

/// Rounds `at` to the nearest slot of the process-wide grid of flush slots, so every player of every
/// stream wakes at the same instants: the runtime then serves them all in one
/// wake-up instead of sleeping and waking once per player.
fn flush_slot(at: tokio::time::Instant) -> tokio::time::Instant {
    static EPOCH: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(tokio::time::Instant::now);
    let step = PLAYER_FLUSH_INTERVAL.as_micros().max(1);
    let since = at.saturating_duration_since(epoch).as_micros();
    let slots = (since + step / 2) / step;
    let micros = u64::try_from(slots * step).unwrap_or(u64::MAX);
    epoch + std::time::Duration::from_micros(micros)
}

/// Moves every ready event into the write buffer, up to one batch.
fn drain<S: AsyncRead + AsyncWrite + Unpin>(
    sub: &mut media_core::Subscriber,
    out: &mut PlayWriter,
    t: &mut Transport<S>,
) {
    while t.pending() < PLAYER_BATCH_BYTES {
        let Some(ev) = sub.try_recv() else { break };
        out.write(t, ev);
    }
}

/// Turns a publisher's FLV tags into hub packets.
#[derive(Default)]
struct Ingest {
    clock: Unwrapper,
    warned: bool,
    has_video_config: bool,
    has_audio_config: bool,
}

impl Ingest {
    fn video(
        &mut self,
        publisher: &media_core::Publisher,
        ts: u32,
        data: &Bytes,
    ) -> Result<(), RtmpError> {
        match flv::parse_video(data)? {
            VideoTag::SequenceHeader(avcc) => {
                let track =
                    TrackInfo::h264(avcc).map_err(|e| RtmpError::Protocol(e.to_string()))?;
                publisher.set_track(track);
                self.has_video_config = true;
            }
            VideoTag::Frame {
                keyframe,
                cts,
                data,
            } if self.has_video_config => {
                let dts = self.clock.unwrap(ts);
                let pts = dts.checked_add_ticks(i64::from(cts)).unwrap_or(dts);
                publisher.send(Packet {
                    track: TrackKind::Video,
                    dts,
                    pts,
                    keyframe,
                    payload: data,
                });
            }
            VideoTag::Unsupported(codec) => self.warn_once(publisher, "video", codec),
            _ => {}
        }
        Ok(())
    }

    fn audio(
        &mut self,
        publisher: &media_core::Publisher,
        ts: u32,
        data: &Bytes,
    ) -> Result<(), RtmpError> {
        match flv::parse_audio(data)? {
            AudioTag::SequenceHeader(asc) => {
                let track = TrackInfo::aac(asc).map_err(|e| RtmpError::Protocol(e.to_string()))?;
                publisher.set_track(track);
                self.has_audio_config = true;
            }
            AudioTag::Frame(payload) if self.has_audio_config => {
                let dts = self.clock.unwrap(ts);
                publisher.send(Packet {
                    track: TrackKind::Audio,
                    dts,
                    pts: dts,
                    keyframe: true,
                    payload,
                });
            }
            AudioTag::Unsupported(format) => self.warn_once(publisher, "audio", format),
            _ => {}
        }
        Ok(())
    }

    fn warn_once(&mut self, publisher: &media_core::Publisher, kind: &str, id: u8) {
        if !std::mem::replace(&mut self.warned, true) {
            warn!(
                stream = publisher.name(),
                kind,
                codec_id = id,
                "dropping a track in a codec Ferry does not carry yet (only H.264 and AAC)"
            );
        }
    }
}

/// Turns hub events into RTMP messages for one player.
struct PlayWriter {
    stream_id: u32,
    last_ts: u32,
    initial_start: bool,
}

impl PlayWriter {
    fn write<S: AsyncRead + AsyncWrite + Unpin>(&mut self, t: &mut Transport<S>, ev: Event) {
        let sid = self.stream_id;
        match ev {
            Event::Started => {
                if !std::mem::replace(&mut self.initial_start, false) {
                    t.queue_control(
                        type_id::USER_CONTROL,
                        &message::user_control_body(user_control::STREAM_BEGIN, sid),
                    );
                    t.queue_command(
                        sid,
                        &on_status(
                            "status",
                            "NetStream.Play.PublishNotify",
                            "publisher started",
                        ),
                    );
                }
            }
            Event::Stopped => {
                self.initial_start = false;
                t.queue_command(
                    sid,
                    &on_status(
                        "status",
                        "NetStream.Play.UnpublishNotify",
                        "publisher stopped",
                    ),
                );
                t.queue_control(
                    type_id::USER_CONTROL,
                    &message::user_control_body(user_control::STREAM_EOF, sid),
                );
            }
            Event::Metadata(meta) => {
                let props = meta
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            MetaValue::Number(n) => Amf0Value::Number(*n),
                            MetaValue::Bool(b) => Amf0Value::Boolean(*b),
                            MetaValue::Text(s) => Amf0Value::String(s.clone()),
                        };
                        (k.clone(), v)
                    })
                    .collect();
                let body = amf0::encode_all(&[
                    Amf0Value::String("onMetaData".into()),
                    Amf0Value::EcmaArray(props),
                ]);
                t.queue(csid::DATA, self.last_ts, type_id::DATA_AMF0, sid, &body);
            }
            Event::Track(track) => match track.kind() {
                TrackKind::Video => {
                    t.queue_parts(
                        csid::VIDEO,
                        self.last_ts,
                        type_id::VIDEO,
                        sid,
                        &flv::video_header(true, true, 0),
                        &track.config,
                    );
                }
                TrackKind::Audio => {
                    t.queue_parts(
                        csid::AUDIO,
                        self.last_ts,
                        type_id::AUDIO,
                        sid,
                        &flv::audio_header(true),
                        &track.config,
                    );
                }
            },
            Event::Packet(p) => {
                // RTMP timestamps are 32-bit and wrap; the truncation is the protocol.
                let ts = p.dts.as_millis() as u32;
                self.last_ts = ts;
                match p.track {
                    TrackKind::Video => {
                        let cts = p.pts.checked_sub(p.dts).unwrap_or(0);
                        let cts = i32::try_from(cts).unwrap_or(0);
                        t.queue_parts(
                            csid::VIDEO,
                            ts,
                            type_id::VIDEO,
                            sid,
                            &flv::video_header(p.keyframe, false, cts),
                            &p.payload,
                        );
                    }
                    TrackKind::Audio => {
                        t.queue_parts(
                            csid::AUDIO,
                            ts,
                            type_id::AUDIO,
                            sid,
                            &flv::audio_header(false),
                            &p.payload,
                        );
                    }
                }
            }
        }
    }
}

/// After a refusal, reads and drops what the client still sends (OBS sends
/// `FCUnpublish` and `deleteStream`) for [`REFUSAL_LINGER`] or until it closes,
/// so it reads the refusal instead of failing to send.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(t: &mut Transport<S>) {
    let _ = timeout(REFUSAL_LINGER, async {
        while t.read_message().await.is_ok() {}
    })
    .await;
}

/// Why `raw` (an app or stream name as the client sent it) is refused: too
/// long, or with bytes that would forge log lines or paths.
fn check_name(raw: &str) -> Result<(), String> {
    if raw.len() > MAX_NAME_LEN {
        return Err(format!(
            "{} bytes long, the limit is {MAX_NAME_LEN}",
            raw.len()
        ));
    }
    if let Some(c) = raw.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "it contains {c:?}; names are printable ASCII without spaces"
        ));
    }
    Ok(())
}

/// At most the first [`MAX_NAME_LEN`] bytes of a refused name, for the log.
fn truncated(raw: &str) -> &str {
    let mut end = raw.len().min(MAX_NAME_LEN);
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    &raw[..end]
}

fn connect_error(transaction: f64, why: &str) -> Bytes {
    message::command_body(
        "_error",
        transaction,
        &[
            Amf0Value::Null,
            message::status_object("error", "NetConnection.Connect.Rejected", why),
        ],
    )
}

fn connect_result(transaction: f64) -> Bytes {
    message::command_body(
        "_result",
        transaction,
        &[
            Amf0Value::Object(vec![
                ("fmsVer".into(), Amf0Value::String("FMS/3,0,1,123".into())),
                ("capabilities".into(), Amf0Value::Number(31.0)),
            ]),
            Amf0Value::Object(vec![
                ("level".into(), Amf0Value::String("status".into())),
                (
                    "code".into(),
                    Amf0Value::String("NetConnection.Connect.Success".into()),
                ),
                (
                    "description".into(),
                    Amf0Value::String("Connection succeeded.".into()),
                ),
                ("objectEncoding".into(), Amf0Value::Number(0.0)),
            ]),
        ],
    )
}

fn on_status(level: &str, code: &str, description: &str) -> Bytes {
    message::command_body(
        "onStatus",
        0.0,
        &[
            Amf0Value::Null,
            message::status_object(level, code, description),
        ],
    )
}

fn arg_str(cmd: &Command, index: usize) -> Option<&str> {
    cmd.args.get(index).and_then(Amf0Value::as_str)
}

/// `live?token=x/` → `live`: clients append query strings and slashes.
fn app_name(raw: &str) -> String {
    raw.split('?')
        .next()
        .unwrap_or_default()
        .trim_matches('/')
        .to_owned()
}

/// `key?foo=bar` → `key`.
fn stream_name(raw: &str) -> String {
    raw.split('?').next().unwrap_or_default().to_owned()
}

/// `onMetaData` from `["@setDataFrame", "onMetaData", {..}]` or `["onMetaData", {..}]`.
fn metadata(values: &[Amf0Value]) -> Option<Metadata> {
    let at = values
        .iter()
        .position(|v| v.as_str() == Some("onMetaData"))?;
    let props = values.get(at + 1)?.properties()?;
    Some(
        props
            .iter()
            .filter_map(|(k, v)| {
                let v = match v {
                    Amf0Value::Number(n) => MetaValue::Number(*n),
                    Amf0Value::Boolean(b) => MetaValue::Bool(*b),
                    Amf0Value::String(s) => MetaValue::Text(s.clone()),
                    _ => return None,
                };
                Some((k.clone(), v))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::StaticKeys;

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

    #[test]
    fn names_lose_query_strings() {
        assert_eq!(app_name("live?secret=1"), "live");
        assert_eq!(app_name("live/"), "live");
        assert_eq!(stream_name("key?x=y"), "key");
    }

    #[test]
    fn metadata_from_both_forms_and_none_from_lone_set_data_frame() {
        let obj = Amf0Value::EcmaArray(vec![
            ("width".into(), Amf0Value::Number(1280.0)),
            ("nested".into(), Amf0Value::Null),
        ]);
        let want = Some(vec![("width".to_owned(), MetaValue::Number(1280.0))]);
        let set = [
            Amf0Value::String("@setDataFrame".into()),
            Amf0Value::String("onMetaData".into()),
            obj.clone(),
        ];
        assert_eq!(metadata(&set), want);
        assert_eq!(metadata(&set[1..]), want);
        assert_eq!(metadata(&set[..1]), None);
    }
}
