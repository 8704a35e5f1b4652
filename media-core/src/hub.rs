//! The hub: a registry of live streams that fans each publisher out to many subscribers.
//!
//! Every stream has one shared bounded ring (a `tokio::sync::broadcast` channel) in
//! which each subscriber has its own read position, so a packet is stored once and
//! its payload is never copied per subscriber. The publisher never waits: a
//! subscriber that falls more than [`SUBSCRIBER_QUEUE_PACKETS`] behind loses its
//! place, is counted, and restarts at the next keyframe. A GOP cache lets a new
//! subscriber start on a keyframe at once instead of waiting for the next one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use dashmap::DashMap;
use tokio::sync::broadcast;

use crate::{Event, HubMetrics, Metadata, Packet, TrackInfo, TrackKind};

/// How many packets a subscriber may fall behind before it is skipped to the next
/// keyframe (about 6 s of a 30 fps stream with audio).
pub const SUBSCRIBER_QUEUE_PACKETS: usize = 512;
/// The GOP cache stops growing past this many packets (a stream with no keyframes
/// must not grow memory without bound); new subscribers then wait for a keyframe.
pub const GOP_CACHE_MAX_PACKETS: usize = 4096;
/// The GOP cache stops growing past this many payload bytes.
pub const GOP_CACHE_MAX_BYTES: usize = 32 << 20;

/// Why the hub refused a request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HubError {
    /// Only one publisher per stream: a second one would interleave two timelines.
    #[error("stream {0:?} already has a publisher")]
    AlreadyPublishing(String),
}

/// The registry of streams; cheap to clone and share.
#[derive(Clone, Default)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    streams: DashMap<String, Arc<Stream>>,
    metrics: HubMetrics,
    published: broadcast::Sender<String>,
    demand: broadcast::Sender<String>,
}

impl Default for HubInner {
    fn default() -> Self {
        Self {
            streams: DashMap::new(),
            metrics: HubMetrics::default(),
            published: broadcast::channel(ANNOUNCE_QUEUE).0,
            demand: broadcast::channel(ANNOUNCE_QUEUE).0,
        }
    }
}

/// Publish announcements a watcher may fall behind by before it misses some.
const ANNOUNCE_QUEUE: usize = 1024;

struct Stream {
    tx: broadcast::Sender<Event>,
    state: Mutex<State>,
    /// Subscribers by kind (`rtmp`, `hls`, `transcode`…), for live status.
    kinds: Mutex<std::collections::BTreeMap<&'static str, usize>>,
}

#[derive(Default)]
struct State {
    live: bool,
    /// Set to `true` to make the current publisher leave ([`Hub::kick`]).
    kick: Option<tokio::sync::watch::Sender<bool>>,
    metadata: Option<Arc<Metadata>>,
    video: Option<Arc<TrackInfo>>,
    audio: Option<Arc<TrackInfo>>,
    gop: Vec<Packet>,
    gop_bytes: usize,
    /// The cache holds packets from a sync point on; false until one arrives or after overflow.
    gop_valid: bool,
    /// When the current publisher started.
    since: Option<std::time::SystemTime>,
    /// Where the current publisher connects from (protocol and address).
    source: Option<String>,
    /// Payload bytes and video frames received from the current publisher.
    bytes_in: u64,
    video_frames: u64,
    /// Decode time (ms) of the last keyframe and of the last video frame,
    /// and the last full keyframe interval: what the encoder's GOP is.
    last_keyframe_ms: Option<i64>,
    last_video_ms: i64,
    keyframe_interval_ms: u64,
}

impl State {
    fn has_video(&self) -> bool {
        self.video.is_some()
    }

    /// Metadata and track configs, what a subscriber needs before any packet.
    fn headers(&self) -> VecDeque<Event> {
        let mut out = VecDeque::new();
        if let Some(m) = &self.metadata {
            out.push_back(Event::Metadata(m.clone()));
        }
        out.extend(
            self.video
                .iter()
                .chain(&self.audio)
                .cloned()
                .map(Event::Track),
        );
        out
    }

    fn snapshot(&self) -> VecDeque<Event> {
        if !self.live {
            return VecDeque::new();
        }
        let mut out = self.headers();
        out.push_front(Event::Started);
        if self.gop_valid {
            out.extend(self.gop.iter().cloned().map(Event::Packet));
        }
        out
    }

    fn cache(&mut self, packet: &Packet) {
        self.bytes_in += packet.payload.len() as u64;
        if packet.track == TrackKind::Video {
            self.video_frames += 1;
            let t = packet.dts.as_millis();
            if packet.keyframe {
                if let Some(k) = self.last_keyframe_ms {
                    self.keyframe_interval_ms = u64::try_from(t - k).unwrap_or(0);
                }
                self.last_keyframe_ms = Some(t);
            }
            self.last_video_ms = t;
        }
        if packet.is_sync_point(self.has_video()) {
            self.gop.clear();
            self.gop_bytes = 0;
            self.gop_valid = true;
        }
        if !self.gop_valid {
            return;
        }
        if self.gop.len() >= GOP_CACHE_MAX_PACKETS
            || self.gop_bytes + packet.payload.len() > GOP_CACHE_MAX_BYTES
        {
            self.gop.clear();
            self.gop_bytes = 0;
            self.gop_valid = false;
            return;
        }
        self.gop_bytes += packet.payload.len();
        self.gop.push(packet.clone());
    }
}

impl Stream {
    fn new() -> Self {
        let (tx, _) = broadcast::channel(SUBSCRIBER_QUEUE_PACKETS);
        Self {
            tx,
            state: Mutex::new(State::default()),
            kinds: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_idle(&self) -> bool {
        !self.lock().live && self.tx.receiver_count() == 0
    }
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// The hub's metrics, to register with the process registry.
    pub fn metrics(&self) -> &HubMetrics {
        &self.inner.metrics
    }

    /// Starts publishing `name`; refused while another publisher holds it.
    pub fn publish(&self, name: &str) -> Result<Publisher, HubError> {
        let stream = self.stream_entry(name);
        let kicked = {
            let mut st = stream.lock();
            if st.live {
                drop(st);
                drop(stream);
                self.release(name);
                return Err(HubError::AlreadyPublishing(name.to_owned()));
            }
            let (kick, kicked) = tokio::sync::watch::channel(false);
            *st = State {
                live: true,
                kick: Some(kick),
                since: Some(std::time::SystemTime::now()),
                ..State::default()
            };
            let _ = stream.tx.send(Event::Started);
            kicked
        };
        self.inner.metrics.live_streams.inc();
        // Nobody watching is fine.
        let _ = self.inner.published.send(name.to_owned());
        Ok(Publisher {
            hub: self.clone(),
            name: name.to_owned(),
            stream,
            kicked,
        })
    }

    /// Subscribes to `name`, live or not yet: a live stream's headers and GOP cache
    /// come first; a stream that is not live yet starts with [`Event::Started`].
    pub fn subscribe(&self, name: &str) -> Subscriber {
        let entry = self
            .inner
            .streams
            .entry(name.to_owned())
            .or_insert_with(|| {
                self.inner.metrics.streams.inc();
                Arc::new(Stream::new())
            });
        let stream = entry.value().clone();
        // Take the snapshot and the ring position under one lock so no packet is lost or doubled.
        let (backlog, rx, has_video, live) = {
            let st = stream.lock();
            (
                st.snapshot(),
                stream.tx.subscribe(),
                st.has_video(),
                st.live,
            )
        };
        drop(entry);
        if !live {
            // Nobody following demand (an origin) is fine.
            let _ = self.inner.demand.send(name.to_owned());
        }
        Subscriber {
            hub: self.clone(),
            name: name.to_owned(),
            stream,
            backlog,
            rx: Some(rx),
            resync: false,
            has_video,
            dropped: 0,
            kind: None,
        }
    }

    /// Names of streams as they go live, for consumers that follow every stream
    /// (the HLS packager); a stream already live when this is called is not announced.
    pub fn published(&self) -> broadcast::Receiver<String> {
        self.inner.published.subscribe()
    }

    /// Names of streams a subscriber asked for while they had no publisher,
    /// for roles that fetch streams on demand (an edge pulling from origins).
    pub fn demand(&self) -> broadcast::Receiver<String> {
        self.inner.demand.subscribe()
    }

    /// Subscribers of `name` now (players, packagers, relays).
    pub fn subscriber_count(&self, name: &str) -> usize {
        self.inner
            .streams
            .get(name)
            .map_or(0, |s| s.value().tx.receiver_count())
    }

    /// Calls `on_live` with every source stream (not a rendition) live now and
    /// each one that goes live later, until `stop` completes. Consumers that
    /// act per stream (packagers, ladders) are started from here.
    pub async fn follow_sources(
        &self,
        stop: impl std::future::Future<Output = ()>,
        mut on_live: impl FnMut(String),
    ) {
        let mut published = self.published();
        let mut start = self.live_streams();
        tokio::pin!(stop);
        loop {
            for name in start.drain(..) {
                if crate::StreamPath::is_source_name(&name) {
                    on_live(name);
                }
            }
            tokio::select! {
                () = &mut stop => return,
                got = published.recv() => match got {
                    Ok(name) => start.push(name),
                    Err(broadcast::error::RecvError::Lagged(_)) => start = self.live_streams(),
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    }

    /// Source streams (not renditions) live now.
    pub fn live_sources(&self) -> Vec<String> {
        let mut live = self.live_streams();
        live.retain(|n| crate::StreamPath::is_source_name(n));
        live
    }

    /// Subscribers of `kind` (`rtmp`: players) per source stream, its
    /// renditions folded in: what a node reports as its audience.
    pub fn subscribers_by_source(&self, kind: &str) -> std::collections::BTreeMap<String, usize> {
        let mut out = std::collections::BTreeMap::new();
        for e in self.inner.streams.iter() {
            let n = e
                .value()
                .kinds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(kind)
                .copied()
                .unwrap_or(0);
            if n == 0 {
                continue;
            }
            if let Ok(path) = crate::StreamPath::parse(e.key()) {
                *out.entry(path.source_name().to_owned()).or_insert(0) += n;
            }
        }
        out
    }

    /// Names of the streams live now.
    pub fn live_streams(&self) -> Vec<String> {
        self.inner
            .streams
            .iter()
            .filter(|e| e.value().lock().live)
            .map(|e| e.key().clone())
            .collect()
    }

    /// What an operator sees of `name`: `None` if the hub does not know it.
    pub fn info(&self, name: &str) -> Option<StreamInfo> {
        let stream = self.inner.streams.get(name)?.value().clone();
        let st = stream.lock();
        let codec = |t: &Option<Arc<TrackInfo>>| {
            t.as_ref().and_then(|t| match t.codec {
                crate::Codec::H264 => crate::codec::AvcConfig::parse(&t.config)
                    .ok()
                    .map(|c| c.codec_string()),
                crate::Codec::Av1 => crate::codec::Av1Config::parse(&t.config)
                    .ok()
                    .map(|c| c.codec_string()),
                crate::Codec::H265 => crate::codec::HevcConfig::parse(&t.config)
                    .ok()
                    .map(|c| c.codec_string()),
                crate::Codec::Aac => crate::codec::AacConfig::parse(&t.config)
                    .ok()
                    .map(|c| c.codec_string()),
            })
        };
        let subscribers = stream
            .kinds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| ((*k).to_owned(), *n))
            .collect();
        Some(StreamInfo {
            live: st.live,
            since: st.since,
            source: st.source.clone(),
            video: codec(&st.video),
            audio: codec(&st.audio),
            bytes_in: st.bytes_in,
            video_frames: st.video_frames,
            keyframe_interval_ms: st.last_keyframe_ms.map(|k| {
                // The GOP open now counts once it is longer than the last.
                let open = u64::try_from(st.last_video_ms - k).unwrap_or(0);
                st.keyframe_interval_ms.max(open)
            }),
            last_video_ms: (st.video_frames > 0).then_some(st.last_video_ms),
            nominal_fps: st.metadata.as_deref().and_then(nominal_fps),
            subscribers,
        })
    }

    /// Subscribes like [`Hub::subscribe`], counted under `kind` in
    /// [`StreamInfo::subscribers`] while it lives.
    pub fn subscribe_as(&self, name: &str, kind: &'static str) -> Subscriber {
        let mut sub = self.subscribe(name);
        *sub.stream
            .kinds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind)
            .or_default() += 1;
        sub.kind = Some(kind);
        sub
    }

    /// Asks the publisher of `name` to leave (an operator's "kick"); `false` if
    /// the stream has no publisher.
    pub fn kick(&self, name: &str) -> bool {
        self.inner
            .streams
            .get(name)
            .and_then(|s| s.value().lock().kick.as_ref().map(|k| k.send(true).is_ok()))
            .unwrap_or(false)
    }

    /// Whether `name` has a publisher now.
    pub fn is_live(&self, name: &str) -> bool {
        self.inner
            .streams
            .get(name)
            .is_some_and(|s| s.value().lock().live)
    }

    /// Number of streams known (live or with waiting subscribers).
    pub fn stream_count(&self) -> usize {
        self.inner.streams.len()
    }

    fn stream_entry(&self, name: &str) -> Arc<Stream> {
        self.inner
            .streams
            .entry(name.to_owned())
            .or_insert_with(|| {
                self.inner.metrics.streams.inc();
                Arc::new(Stream::new())
            })
            .value()
            .clone()
    }

    /// Forgets `name` once it has neither publisher nor subscribers.
    fn release(&self, name: &str) {
        if self
            .inner
            .streams
            .remove_if(name, |_, s| s.is_idle())
            .is_some()
        {
            self.inner.metrics.streams.dec();
        }
    }
}

/// A stream as operators see it (control API live status).
#[derive(Clone, Debug, PartialEq)]
pub struct StreamInfo {
    /// Has a publisher now.
    pub live: bool,
    /// When the current publisher started.
    pub since: Option<std::time::SystemTime>,
    /// Where the publisher connects from, e.g. `rtmp://203.0.113.7:50122`.
    pub source: Option<String>,
    /// RFC 6381 codec string of the video track.
    pub video: Option<String>,
    /// RFC 6381 codec string of the audio track.
    pub audio: Option<String>,
    /// Payload bytes received from the current publisher.
    pub bytes_in: u64,
    /// Video frames received from the current publisher.
    pub video_frames: u64,
    /// Milliseconds between the source's keyframes (the last interval, or
    /// the one open now if longer); `None` before the first keyframe.
    pub keyframe_interval_ms: Option<u64>,
    /// Decode time (ms) of the newest video frame: how far a rendition
    /// trails its source.
    pub last_video_ms: Option<i64>,
    /// The frame rate the publisher announced (`framerate` or `fps` in its
    /// metadata), what the frames received are held against.
    pub nominal_fps: Option<f64>,
    /// Live subscribers by kind (`rtmp` players, `hls` packager, …).
    pub subscribers: std::collections::BTreeMap<String, usize>,
}

/// The frame rate `metadata` announces, when it is a plausible one.
fn nominal_fps(metadata: &Metadata) -> Option<f64> {
    metadata.iter().find_map(|(k, v)| match v {
        crate::MetaValue::Number(n)
            if (k == "framerate" || k == "fps") && n.is_finite() && *n > 0.0 && *n <= 1000.0 =>
        {
            Some(*n)
        }
        _ => None,
    })
}

/// The right to feed one stream; dropping it ends the stream for its subscribers.
pub struct Publisher {
    hub: Hub,
    name: String,
    stream: Arc<Stream>,
    kicked: tokio::sync::watch::Receiver<bool>,
}

impl Publisher {
    /// The stream this publisher feeds.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Records where the publisher connects from, for operators.
    pub fn set_source(&self, source: String) {
        self.stream.lock().source = Some(source);
    }

    /// Resolves when the publisher is told to leave ([`Hub::kick`]); the
    /// protocol side then closes its connection.
    pub async fn kicked(&self) {
        let mut rx = self.kicked.clone();
        let _ = rx.wait_for(|k| *k).await;
    }

    /// Replaces the stream metadata.
    pub fn set_metadata(&self, metadata: Metadata) {
        let metadata = Arc::new(metadata);
        let mut st = self.stream.lock();
        st.metadata = Some(metadata.clone());
        let _ = self.stream.tx.send(Event::Metadata(metadata));
    }

    /// Sets a track's decoder config; an identical repeat is ignored so encoders that
    /// resend headers do not disturb subscribers.
    pub fn set_track(&self, track: TrackInfo) {
        let mut st = self.stream.lock();
        let slot = match track.kind() {
            TrackKind::Video => &mut st.video,
            TrackKind::Audio => &mut st.audio,
        };
        if slot.as_deref() == Some(&track) {
            return;
        }
        let track = Arc::new(track);
        *slot = Some(track.clone());
        let _ = self.stream.tx.send(Event::Track(track));
    }

    /// Sends a packet to every subscriber. Never blocks.
    pub fn send(&self, packet: Packet) {
        let mut st = self.stream.lock();
        st.cache(&packet);
        // An error only means nobody is subscribed right now.
        let _ = self.stream.tx.send(Event::Packet(packet));
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        {
            let mut st = self.stream.lock();
            *st = State::default();
            let _ = self.stream.tx.send(Event::Stopped);
        }
        self.hub.inner.metrics.live_streams.dec();
        self.hub.release(&self.name);
    }
}

/// One consumer's view of a stream.
pub struct Subscriber {
    hub: Hub,
    name: String,
    stream: Arc<Stream>,
    backlog: VecDeque<Event>,
    rx: Option<broadcast::Receiver<Event>>,
    resync: bool,
    has_video: bool,
    dropped: u64,
    kind: Option<&'static str>,
}

impl Subscriber {
    /// The stream subscribed to.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Packets this subscriber lost because it fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether the stream has a publisher now.
    pub fn is_live(&self) -> bool {
        self.stream.lock().live
    }

    /// The next event; waits while there is none. Returns `None` only if the hub
    /// itself is gone.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                return Some(self.observe(e));
            }
            let rx = self.rx.as_mut()?;
            let got = rx.recv().await;
            if let Some(e) = self.accept(got)? {
                return Some(e);
            }
        }
    }

    /// The next event if one is ready, for batching writes.
    pub fn try_recv(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                return Some(self.observe(e));
            }
            let rx = self.rx.as_mut()?;
            let got = match rx.try_recv() {
                Ok(e) => Ok(e),
                Err(broadcast::error::TryRecvError::Empty) => return None,
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    Err(broadcast::error::RecvError::Lagged(n))
                }
                Err(broadcast::error::TryRecvError::Closed) => {
                    Err(broadcast::error::RecvError::Closed)
                }
            };
            if let Some(e) = self.accept(got)? {
                return Some(e);
            }
        }
    }

    /// `None`: the channel is closed; `Some(None)`: skipped, read again.
    fn accept(&mut self, got: Result<Event, broadcast::error::RecvError>) -> Option<Option<Event>> {
        let metrics = &self.hub.inner.metrics;
        match got {
            Ok(Event::Packet(p)) if self.resync => {
                if p.is_sync_point(self.has_video) {
                    self.resync = false;
                    Some(Some(Event::Packet(p)))
                } else {
                    self.dropped += 1;
                    metrics.dropped_packets.inc();
                    Some(None)
                }
            }
            Ok(e) => Some(Some(self.observe(e))),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                // What was skipped may have changed the stream's headers: resend the
                // current ones so the subscriber can decode from the next keyframe.
                let st = self.stream.lock();
                self.has_video = st.has_video();
                self.backlog = st.headers();
                drop(st);
                self.dropped += n;
                metrics.dropped_packets.inc_by(n);
                metrics.resyncs.inc();
                if !self.resync {
                    tracing::debug!(stream = %self.name, skipped = n, "subscriber is too slow, skipping to the next keyframe");
                }
                self.resync = true;
                Some(None)
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    fn observe(&mut self, e: Event) -> Event {
        match &e {
            Event::Started => self.has_video = false,
            Event::Track(t) if t.kind() == TrackKind::Video => self.has_video = true,
            _ => {}
        }
        e
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if let Some(kind) = self.kind
            && let Some(n) = self
                .stream
                .kinds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(kind)
        {
            *n = n.saturating_sub(1);
        }
        // The receiver must be gone before the idle check counts receivers.
        self.rx = None;
        self.hub.release(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::Timestamp;

    const AVCC: &[u8] = &[
        0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x01, 0x67, 0x01, 0x00, 0x01, 0x68,
    ];

    fn video(ms: i64, keyframe: bool) -> Packet {
        Packet {
            track: TrackKind::Video,
            dts: Timestamp::from_millis(ms),
            pts: Timestamp::from_millis(ms),
            keyframe,
            payload: Bytes::from_static(b"frame"),
        }
    }

    fn packet_times(events: &[Event]) -> Vec<i64> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Packet(p) => Some(p.dts.ticks()),
                _ => None,
            })
            .collect()
    }

    fn drain(sub: &mut Subscriber) -> Vec<Event> {
        std::iter::from_fn(|| sub.try_recv()).collect()
    }

    #[test]
    fn late_subscriber_starts_with_headers_and_last_gop() {
        let hub = Hub::new();
        let publisher = hub.publish("s").expect("free");
        publisher.set_track(TrackInfo::h264(Bytes::from_static(AVCC)).expect("avcc"));
        for (ms, key) in [(0, true), (33, false), (66, true), (100, false)] {
            publisher.send(video(ms, key));
        }
        let mut sub = hub.subscribe("s");
        let events = drain(&mut sub);
        assert!(matches!(events[0], Event::Started));
        assert!(matches!(events[1], Event::Track(_)));
        assert_eq!(packet_times(&events), vec![66, 100]);
    }

    #[test]
    fn payload_is_shared_not_copied() {
        let hub = Hub::new();
        let publisher = hub.publish("s").expect("free");
        let mut a = hub.subscribe("s");
        let mut b = hub.subscribe("s");
        let sent = video(0, true);
        publisher.send(sent.clone());
        let got: Vec<_> = [&mut a, &mut b]
            .into_iter()
            .flat_map(drain)
            .filter_map(|e| match e {
                Event::Packet(p) => Some(p.payload.as_ptr()),
                _ => None,
            })
            .collect();
        assert_eq!(got, vec![sent.payload.as_ptr(); 2]);
    }

    #[test]
    fn slow_subscriber_skips_to_next_keyframe_and_is_counted() {
        let hub = Hub::new();
        let publisher = hub.publish("s").expect("free");
        publisher.set_track(TrackInfo::h264(Bytes::from_static(AVCC)).expect("avcc"));
        let mut slow = hub.subscribe("s");
        drain(&mut slow);
        let total = SUBSCRIBER_QUEUE_PACKETS as i64 * 2;
        for i in 0..total {
            publisher.send(video(i, i % 100 == 0));
        }
        let times = packet_times(&drain(&mut slow));
        assert_eq!(times.first().copied(), Some(600), "resumes on a keyframe");
        assert_eq!(*times.last().expect("some"), total - 1);
        assert_eq!(slow.dropped(), 600);
        let mut again = hub.subscribe("s");
        drain(&mut again);
        for i in 0..total {
            publisher.send(video(total + i, i % 100 == 0));
        }
        let events = drain(&mut again);
        assert!(
            matches!(events.first(), Some(Event::Track(_))),
            "after a skip the subscriber gets the track config again"
        );
        assert_eq!(
            hub.metrics().resyncs.get(),
            2,
            "both subscribers were skipped once"
        );
    }

    #[test]
    fn second_publisher_is_refused_and_first_keeps_stream() {
        let hub = Hub::new();
        let first = hub.publish("s").expect("free");
        assert_eq!(
            hub.publish("s").err(),
            Some(HubError::AlreadyPublishing("s".into()))
        );
        assert!(hub.is_live("s"));
        drop(first);
        assert!(hub.publish("s").is_ok());
    }

    #[test]
    fn streams_are_forgotten_when_unused() {
        let hub = Hub::new();
        let sub = hub.subscribe("s");
        let publisher = hub.publish("s").expect("free");
        assert_eq!(hub.stream_count(), 1);
        drop(publisher);
        assert_eq!(hub.stream_count(), 1, "a waiting subscriber keeps it");
        drop(sub);
        assert_eq!(hub.stream_count(), 0);
        assert_eq!(hub.metrics().streams.get(), 0);
        assert_eq!(hub.metrics().live_streams.get(), 0);
    }

    #[test]
    fn subscriber_sees_publisher_leave_and_return() {
        let hub = Hub::new();
        let mut sub = hub.subscribe("s");
        let p = hub.publish("s").expect("free");
        p.send(video(0, true));
        drop(p);
        let p = hub.publish("s").expect("free again");
        p.send(video(5, true));
        let kinds: Vec<_> = drain(&mut sub)
            .iter()
            .map(|e| match e {
                Event::Started => "start",
                Event::Stopped => "stop",
                Event::Packet(_) => "pkt",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["start", "pkt", "stop", "start", "pkt"]);
    }

    #[test]
    fn gop_cache_is_bounded() {
        let hub = Hub::new();
        let p = hub.publish("s").expect("free");
        p.set_track(TrackInfo::h264(Bytes::from_static(AVCC)).expect("avcc"));
        p.send(video(0, true));
        for i in 1..=GOP_CACHE_MAX_PACKETS as i64 {
            p.send(video(i, false));
        }
        let mut sub = hub.subscribe("s");
        assert!(packet_times(&drain(&mut sub)).is_empty());
    }

    #[test]
    fn subscribers_are_counted_per_source_with_its_renditions() {
        let hub = Hub::new();
        let _a = hub.subscribe_as("s", "rtmp");
        let _b = hub.subscribe_as("s/720p", "rtmp");
        let _c = hub.subscribe_as("s", "hls");
        let _d = hub.subscribe_as("t", "rtmp");
        let players = hub.subscribers_by_source("rtmp");
        assert_eq!(players.get("s"), Some(&2));
        assert_eq!(players.get("t"), Some(&1));
        drop(_d);
        assert_eq!(hub.subscribers_by_source("rtmp").get("t"), None);
    }

    #[test]
    fn the_keyframe_interval_is_the_sources_gop_or_the_open_one_if_longer() {
        let hub = Hub::new();
        let p = hub.publish("s").expect("publish");
        let interval = || hub.info("s").and_then(|i| i.keyframe_interval_ms);
        assert_eq!(interval(), None);
        // A 10 s GOP at 30 fps: known as it grows, then exactly.
        p.send(video(0, true));
        for f in 1..150 {
            p.send(video(f * 1000 / 30, false));
        }
        assert_eq!(interval(), Some(4966));
        for f in 150..300 {
            p.send(video(f * 1000 / 30, false));
        }
        p.send(video(10_000, true));
        assert_eq!(interval(), Some(10_000));
        // Back to 2 s GOPs: the last interval, once the 10 s one is gone.
        p.send(video(12_000, true));
        assert_eq!(interval(), Some(2_000));
    }
}
