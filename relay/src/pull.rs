//! The edge side: the first player of a stream makes the edge pull it from an
//! origin into the edge's own hub; further players share that pull. Where a
//! second origin has the stream, it is kept open as a warm standby (its
//! frames buffered, not forwarded), and the edge switches to it as soon as
//! the current origin goes quiet, ends or loses its publisher.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use futures::stream::{FuturesUnordered, StreamExt};
use media_core::{Hub, Metadata, Publisher, TrackInfo, TrackKind};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::RelayMetrics;
use crate::failover;
use crate::frame::Frame;
use crate::link::LinkError;
use crate::metrics::{JoinLabel, SourceLabel};
use crate::origin::{Origin, Reader};
use crate::splice::{Join, Splicer, Standby};

/// What an operator can tune about pulling.
#[derive(Clone, Debug)]
pub struct PullConfig {
    /// The current origin silent this long, while the standby is not, is a
    /// failover.
    pub stall: Duration,
    /// The current origin silent this long with no standby is given up on.
    pub dead: Duration,
    /// A pull with no player for this long stops.
    pub linger: Duration,
    /// How often a missing standby (or a missing stream) is looked for.
    pub retry: Duration,
}

impl Default for PullConfig {
    fn default() -> Self {
        Self {
            stall: Duration::from_millis(200),
            dead: Duration::from_secs(1),
            linger: Duration::from_secs(5),
            retry: Duration::from_millis(500),
        }
    }
}

/// How often a pull checks for stalls and players.
const TICK: Duration = Duration::from_millis(25);

/// Pulls streams on demand into an edge's hub.
pub struct Puller {
    hub: Hub,
    /// Origins in order of preference; only ever appended to (an origin the
    /// control plane adds later), so an index stays the same origin.
    links: std::sync::RwLock<Vec<Arc<Origin>>>,
    config: PullConfig,
    metrics: RelayMetrics,
    active: DashMap<String, ()>,
    /// Made with the puller, so no request between `new` and `run` is missed.
    demand: std::sync::Mutex<Option<tokio::sync::broadcast::Receiver<String>>>,
}

impl Puller {
    /// A puller feeding `hub` from `links` (in order of preference).
    pub fn new(
        hub: Hub,
        links: Vec<Arc<Origin>>,
        config: PullConfig,
        metrics: RelayMetrics,
    ) -> Arc<Self> {
        let demand = std::sync::Mutex::new(Some(hub.demand()));
        Arc::new(Self {
            hub,
            links: std::sync::RwLock::new(links),
            config,
            metrics,
            active: DashMap::new(),
            demand,
        })
    }

    /// Adds origins after the others (ones the control plane reported
    /// since); pulls that look for an origin from now on try them too.
    pub fn add_links(&self, more: Vec<Arc<Origin>>) {
        self.links
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend(more);
    }

    /// The origins, in order.
    fn links(&self) -> Vec<Arc<Origin>> {
        self.links.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The name of origin `i`.
    fn link_name(&self, i: usize) -> String {
        self.links
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(i)
            .map(|l| l.name().to_owned())
            .unwrap_or_default()
    }

    /// Streams being pulled now.
    pub fn active(&self) -> usize {
        self.active.len()
    }

    /// Starts a pull for every stream a player asks for, until `cancel`.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let taken = self.demand.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut demand = taken.unwrap_or_else(|| self.hub.demand());
        loop {
            let name = tokio::select! {
                () = cancel.cancelled() => return,
                got = demand.recv() => match got {
                    Ok(n) => n,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        warn!(missed = n, "pull requests came faster than they were read");
                        continue;
                    }
                    Err(_) => return,
                },
            };
            self.clone().ensure(name, &cancel);
        }
    }

    fn ensure(self: Arc<Self>, name: String, cancel: &CancellationToken) {
        if self.hub.is_live(&name) || self.active.insert(name.clone(), ()).is_some() {
            return;
        }
        let cancel = cancel.clone();
        tokio::spawn(async move {
            self.metrics.pulls.inc();
            self.metrics.pulls_started.inc();
            Pull::new(&self, &name).run(&cancel).await;
            self.metrics.pulls.dec();
            self.active.remove(&name);
            // A player who came while this pull was stopping is not left waiting.
            if !cancel.is_cancelled() && self.hub.subscriber_count(&name) > 0 {
                self.ensure(name, &cancel);
            }
        });
    }

    /// Opens `name` on the first origin (not `except`) that has it live.
    async fn open_any(
        links: Vec<(usize, Arc<Origin>)>,
        name: String,
        metrics: RelayMetrics,
    ) -> Option<Feed> {
        let mut tries: FuturesUnordered<_> = links
            .into_iter()
            .map(|(i, link)| {
                let (name, metrics) = (name.clone(), metrics.clone());
                async move { (i, link.open(&name, &metrics).await) }
            })
            .collect();
        while let Some((i, r)) = tries.next().await {
            match r {
                Ok(reader) => return Some(Feed::new(i, reader)),
                Err(LinkError::NotLive | LinkError::Backoff) => {}
                Err(e) => debug!(stream = %name, error = %e, "origin could not be asked"),
            }
        }
        None
    }
}

/// One origin's frames for the stream.
struct Feed {
    origin: usize,
    reader: Reader,
    heard: Instant,
    metadata: Option<Metadata>,
    tracks: Vec<TrackInfo>,
    buffer: Standby,
}

impl Feed {
    fn new(origin: usize, reader: Reader) -> Self {
        Self {
            origin,
            reader,
            heard: Instant::now(),
            metadata: None,
            tracks: Vec::new(),
            buffer: Standby::default(),
        }
    }

    fn has_video(&self) -> bool {
        self.tracks.iter().any(|t| t.kind() == TrackKind::Video)
    }

    /// Has a place to start from: a keyframe (or, audio only, any frame).
    fn ready(&self) -> bool {
        self.buffer.has_start()
    }

    /// Can take over from a current origin: it sends (a splice onto the same
    /// frames needs no keyframe; otherwise the splice waits for one).
    fn can_take_over(&self) -> bool {
        !self.buffer.packets().is_empty()
    }

    fn remember_track(&mut self, t: TrackInfo) {
        self.tracks.retain(|old| old.kind() != t.kind());
        self.tracks.push(t);
    }
}

/// What a feed said.
enum Heard {
    Frame(Frame),
    Ended(String),
}

async fn next_of(feed: &mut Option<Feed>) -> Heard {
    let Some(f) = feed.as_mut() else {
        return std::future::pending().await;
    };
    match f.reader.next().await {
        Ok(Some(frame)) => {
            f.heard = Instant::now();
            Heard::Frame(frame)
        }
        Ok(None) => Heard::Ended("the origin ended the stream".into()),
        Err(e) => Heard::Ended(e.to_string()),
    }
}

/// One stream's pull: at most one current feed and one standby.
struct Pull<'a> {
    puller: &'a Puller,
    name: String,
    publisher: Option<Publisher>,
    splicer: Splicer,
    current: Option<Feed>,
    standby: Option<Feed>,
    opening: Option<JoinHandle<Option<Feed>>>,
    next_open: Instant,
    /// When the last packet was forwarded, and whether a failover is waiting
    /// for its first packet (to measure the stall).
    last_sent: Instant,
    stalled_since: Option<Instant>,
    lost_since: Option<Instant>,
    idle_since: Option<Instant>,
}

impl<'a> Pull<'a> {
    fn new(puller: &'a Puller, name: &str) -> Self {
        Self {
            puller,
            name: name.to_owned(),
            publisher: None,
            splicer: Splicer::new(false),
            current: None,
            standby: None,
            opening: None,
            next_open: Instant::now(),
            last_sent: Instant::now(),
            stalled_since: None,
            lost_since: Some(Instant::now()),
            idle_since: None,
        }
    }

    async fn run(mut self, cancel: &CancellationToken) {
        info!(stream = %self.name, "pull started");
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.maybe_open();
            tokio::select! {
                () = cancel.cancelled() => break,
                heard = next_of(&mut self.current) => self.on_current(heard),
                heard = next_of(&mut self.standby) => self.on_standby(heard),
                opened = async { self.opening.as_mut().expect("guarded").await }, if self.opening.is_some() => {
                    self.opening = None;
                    if let Ok(Some(feed)) = opened {
                        debug!(stream = %self.name, origin = %self.puller.link_name(feed.origin), "standby opened");
                        self.standby = Some(feed);
                    }
                }
                _ = tick.tick() => {
                    if !self.check() {
                        break;
                    }
                }
            }
        }
        if let Some(c) = &self.current {
            self.clear_origin_label(c.origin);
        }
        info!(stream = %self.name, "pull stopped");
    }

    /// Looks for a standby (or a first source) in the background.
    fn maybe_open(&mut self) {
        if self.standby.is_some() || self.opening.is_some() || Instant::now() < self.next_open {
            return;
        }
        self.next_open = Instant::now() + self.puller.config.retry;
        let except = self.current.as_ref().map(|c| c.origin);
        let links = self
            .puller
            .links()
            .into_iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != except)
            .collect();
        self.opening = Some(tokio::spawn(Puller::open_any(
            links,
            self.name.clone(),
            self.puller.metrics.clone(),
        )));
    }

    fn on_current(&mut self, heard: Heard) {
        match heard {
            Heard::Frame(Frame::Packet(p)) => self.forward(&p),
            Heard::Frame(Frame::Track(t)) => {
                self.splicer
                    .set_has_video(self.splicer_has_video() || t.kind() == TrackKind::Video);
                if let Some(c) = self.current.as_mut() {
                    c.remember_track(t.clone());
                }
                if let Some(p) = &self.publisher {
                    p.set_track(t);
                }
            }
            Heard::Frame(Frame::Metadata(m)) => {
                if let Some(c) = self.current.as_mut() {
                    c.metadata = Some(m.clone());
                }
                if let Some(p) = &self.publisher {
                    p.set_metadata(m);
                }
            }
            Heard::Frame(Frame::Stopped) => self.lose_current("its publisher left"),
            Heard::Frame(_) => {}
            Heard::Ended(why) => self.lose_current(&why),
        }
    }

    fn splicer_has_video(&self) -> bool {
        self.current.as_ref().is_some_and(Feed::has_video)
    }

    fn on_standby(&mut self, heard: Heard) {
        let Some(s) = self.standby.as_mut() else {
            return;
        };
        match heard {
            Heard::Frame(Frame::Packet(p)) => {
                let v = s.has_video();
                s.buffer.push(&p, v);
            }
            Heard::Frame(Frame::Track(t)) => s.remember_track(t),
            Heard::Frame(Frame::Metadata(m)) => s.metadata = Some(m),
            Heard::Frame(Frame::Stopped) | Heard::Ended(_) => {
                debug!(stream = %self.name, "standby lost");
                self.standby = None;
            }
            Heard::Frame(_) => {}
        }
        if self.current.is_none() && self.standby.as_ref().is_some_and(Feed::ready) {
            self.promote();
        }
    }

    fn forward(&mut self, p: &media_core::Packet) {
        let Some(out) = self.splicer.pass(p) else {
            return;
        };
        if let Some(publisher) = &self.publisher {
            publisher.send(out);
        }
        let now = Instant::now();
        if let Some(since) = self.stalled_since.take() {
            let stall = now.duration_since(since);
            self.puller
                .metrics
                .failover_stall_seconds
                .observe(stall.as_secs_f64());
            info!(stream = %self.name, stall_ms = stall.as_millis() as u64, "failover complete");
        }
        self.last_sent = now;
    }

    fn lose_current(&mut self, why: &str) {
        let Some(old) = self.current.take() else {
            return;
        };
        warn!(stream = %self.name, origin = %self.puller.link_name(old.origin), why, "lost the current origin");
        self.clear_origin_label(old.origin);
        if self.stalled_since.is_none() {
            self.stalled_since = Some(self.last_sent);
        }
        self.lost_since = Some(Instant::now());
        if self.standby.as_ref().is_some_and(Feed::can_take_over) {
            self.promote();
        } else {
            // Look again at once, including the origin just lost (it may
            // only have restarted its stream).
            self.next_open = Instant::now();
        }
    }

    /// Makes the standby current, splicing its buffer onto what was sent.
    fn promote(&mut self) {
        let Some(mut feed) = self.standby.take() else {
            return;
        };
        let origin = self.puller.link_name(feed.origin);
        if self.publisher.is_none() {
            match self.puller.hub.publish(&self.name) {
                Ok(p) => {
                    p.set_source(format!("relay {origin}"));
                    self.publisher = Some(p);
                    self.splicer = Splicer::new(false);
                }
                Err(e) => {
                    warn!(stream = %self.name, error = %e, "cannot feed the edge's hub");
                    return;
                }
            }
        }
        let publisher = self.publisher.as_ref().expect("set above");
        if let Some(m) = feed.metadata.clone() {
            publisher.set_metadata(m);
        }
        for t in &feed.tracks {
            publisher.set_track(t.clone());
        }
        self.splicer.set_has_video(feed.has_video());
        let failover = self.lost_since.is_some() && self.stalled_since.is_some();
        let (join, packets) = self.splicer.switch(&feed.buffer);
        debug!(
            stream = %self.name,
            ?join,
            last_sent = ?self.splicer.last_video(),
            buffered_from = ?feed.buffer.packets().first().map(|p| p.dts.ticks()),
            buffered_to = ?feed.buffer.packets().last().map(|p| p.dts.ticks()),
            marks_from = ?feed.buffer.marks().front().map(|m| m.dts),
            marks_to = ?feed.buffer.marks().back().map(|m| m.dts),
            resumed_at = ?packets.iter().find(|p| p.track == TrackKind::Video).map(|p| p.dts.ticks()),
            "splice"
        );
        for p in packets {
            publisher.send(p);
            self.last_sent = Instant::now();
            if let Some(since) = self.stalled_since.take() {
                let stall = self.last_sent.duration_since(since);
                self.puller
                    .metrics
                    .failover_stall_seconds
                    .observe(stall.as_secs_f64());
                info!(stream = %self.name, stall_ms = stall.as_millis() as u64, "failover complete");
            }
        }
        if failover {
            let join = match join {
                Join::Continuous => "continuous",
                Join::Gap => "gap",
                Join::Rebased => "rebased",
            };
            self.puller
                .metrics
                .failovers
                .get_or_create(&JoinLabel { join })
                .inc();
            info!(stream = %self.name, %origin, join, "switched origin");
        } else {
            info!(stream = %self.name, %origin, "pulling");
        }
        feed.buffer = Standby::default();
        self.puller
            .metrics
            .current_origin
            .get_or_create(&SourceLabel {
                stream: self.name.clone(),
                origin,
            })
            .set(1);
        self.current = Some(feed);
        self.lost_since = None;
        self.next_open = Instant::now();
    }

    fn clear_origin_label(&self, origin: usize) {
        self.puller.metrics.current_origin.remove(&SourceLabel {
            stream: self.name.clone(),
            origin: self.puller.link_name(origin),
        });
    }

    /// Stall, death and idleness checks ([`failover::decide`]); `false`
    /// when the pull should stop.
    fn check(&mut self) -> bool {
        let state = |f: &Feed| failover::FeedState {
            heard: f.heard,
            can_take_over: f.can_take_over(),
        };
        let cfg = &self.puller.config;
        let decision = failover::decide(
            &failover::Facts {
                now: Instant::now(),
                current: self.current.as_ref().map(state),
                standby: self.standby.as_ref().map(state),
                publishing: self.publisher.is_some(),
                lost_since: self.lost_since,
                players: self.puller.hub.subscriber_count(&self.name),
                idle_since: self.idle_since,
            },
            &failover::Timings {
                stall: cfg.stall,
                dead: cfg.dead,
                linger: cfg.linger,
            },
        );
        if let Some(why) = decision.lose_current {
            self.lose_current(why.as_str());
        }
        if decision.drop_standby {
            debug!(stream = %self.name, "standby silent, dropped");
            self.standby = None;
        }
        if decision.end_stream {
            info!(stream = %self.name, "no origin has the stream");
            self.publisher = None;
            self.stalled_since = None;
        }
        self.idle_since = decision.idle_since;
        !decision.stop
    }
}
