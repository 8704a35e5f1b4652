//! Low-Latency HLS at the origin: every variant packaged with parts publishes
//! its live view and part bytes here, and the HTTP layer answers from memory:
//! an object store cannot hold a request until a part exists, and parts live
//! for seconds. Whole segments still go to the store.
//!
//! Blocking reloads (`_HLS_msn`, `_HLS_part`) and requests for the hinted
//! next part wait on a `watch` channel of the variant's view, at most the
//! view's hold limit (three target durations), then get 503. Held requests
//! are bounded in total and per client address ([`HoldLimits`]; beyond,
//! 503 at once), and every held request woken by the same view gets the same
//! rendered playlist (rendered once per view, delta or not).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hls::low_latency::{LiveView, PlaylistQuery, RenditionReport, render};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::watch;

/// What a low-latency request gets.
#[derive(Debug)]
pub enum LiveAnswer {
    /// This variant is not packaged with parts here: serve from the store.
    NotLive,
    /// A media playlist; `blocking` when it answered `_HLS_msn` (such an
    /// answer stays right, so caches may keep it longer).
    Playlist {
        /// The playlist text (shared by every request for the same view).
        body: Bytes,
        /// Whether it answered a blocking reload.
        blocking: bool,
    },
    /// A part's bytes.
    Part(Bytes),
    /// Too many requests held already, in total or from this address (503
    /// with `Retry-After`).
    Busy,
    /// A query the spec says to refuse (400), or a request too far ahead.
    BadRequest(String),
    /// No such part (any more).
    NotFound,
    /// The part or playlist update did not come within the hold limit (503).
    Unavailable,
}

media_core::metrics! {
    /// What the low-latency origin reports.
    pub struct LiveMetrics under "llhls" {
        /// LL-HLS requests held until their part exists
        pub held as "held_requests": Gauge,
        /// LL-HLS partial segments produced
        pub parts: Counter,
        /// From the frame that completes a part to the part being readable
        pub part_latency as "part_latency_seconds": Histogram =
            Histogram::new([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]),
        /// LL-HLS blocking playlist requests answered
        pub blocking_requests: Counter,
        /// LL-HLS requests refused because too many were held (total or per address)
        pub refused as "held_refused": Counter,
        /// LL-HLS playlists rendered (once per view and form)
        pub renders: Counter,
    }
}

/// How many requests the origin holds at once.
#[derive(Clone, Copy, Debug)]
pub struct HoldLimits {
    /// In total.
    pub total: usize,
    /// From one client address (an edge holds one request per distinct
    /// blocking reload, however many viewers wait behind it).
    pub per_address: usize,
}

impl Default for HoldLimits {
    fn default() -> Self {
        Self {
            total: 8192,
            per_address: 256,
        }
    }
}

/// Requests held now, in total and by address.
#[derive(Default)]
struct Holds {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Every stream packaged with parts on this origin.
#[derive(Clone, Default)]
pub struct LiveHls {
    streams: Arc<Mutex<HashMap<String, Arc<LiveStream>>>>,
    metrics: LiveMetrics,
    limits: HoldLimits,
    holds: Arc<Mutex<Holds>>,
}

/// One stream's variants, in the packager's order.
pub struct LiveStream {
    variants: Vec<(String, LiveVariant)>,
}

struct LiveVariant {
    view: watch::Sender<Option<Arc<LiveView>>>,
    parts: Mutex<HashMap<String, Bytes>>,
    /// The last playlists rendered, full and delta: every request for the
    /// same view (and the same rendition reports) shares them.
    rendered: Mutex<[Option<Rendered>; 2]>,
}

/// A rendered playlist and what it was rendered from.
struct Rendered {
    view: Arc<LiveView>,
    reports: Vec<RenditionReport>,
    body: Bytes,
}

/// A held request's place in [`Holds`], given back when it is answered.
struct HoldPermit {
    holds: Arc<Mutex<Holds>>,
    ip: Option<IpAddr>,
    _held: Held,
}

impl Drop for HoldPermit {
    fn drop(&mut self) {
        let mut h = lock(&self.holds);
        h.total = h.total.saturating_sub(1);
        if let Some(ip) = self.ip
            && let Some(n) = h.by_address.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                h.by_address.remove(&ip);
            }
        }
    }
}

impl LiveHls {
    /// A registry reporting to `metrics`, holding at most `limits` requests.
    pub fn new(metrics: LiveMetrics, limits: HoldLimits) -> Self {
        Self {
            streams: Arc::default(),
            metrics,
            limits,
            holds: Arc::default(),
        }
    }

    /// A place for one more held request from `client`, or `None` at a bound.
    fn hold(&self, client: Option<IpAddr>) -> Option<HoldPermit> {
        let mut h = lock(&self.holds);
        let here = client.map_or(0, |ip| h.by_address.get(&ip).copied().unwrap_or(0));
        if h.total >= self.limits.total || here >= self.limits.per_address {
            drop(h);
            self.metrics.refused.inc();
            return None;
        }
        h.total += 1;
        if let Some(ip) = client {
            *h.by_address.entry(ip).or_insert(0) += 1;
        }
        Some(HoldPermit {
            holds: self.holds.clone(),
            ip: client,
            _held: Held::new(&self.metrics.held),
        })
    }

    /// Starts serving `stream` with these variants (directory names);
    /// replaces an earlier registration.
    pub fn open(&self, stream: &str, variants: &[String]) -> LivePublisher {
        let live = Arc::new(LiveStream {
            variants: variants
                .iter()
                .map(|v| {
                    (
                        v.clone(),
                        LiveVariant {
                            view: watch::channel(None).0,
                            parts: Mutex::default(),
                            rendered: Mutex::default(),
                        },
                    )
                })
                .collect(),
        });
        lock(&self.streams).insert(stream.to_owned(), live.clone());
        LivePublisher {
            registry: self.clone(),
            name: stream.to_owned(),
            stream: live,
        }
    }

    fn variant(&self, stream: &str, variant: &str) -> Option<(Arc<LiveStream>, usize)> {
        let s = lock(&self.streams).get(stream).cloned()?;
        let i = s.variants.iter().position(|(v, _)| v == variant)?;
        Some((s, i))
    }

    /// `GET STREAM/VARIANT/index.m3u8?QUERY` from `client`.
    pub async fn playlist(
        &self,
        stream: &str,
        variant: &str,
        query: &str,
        client: Option<IpAddr>,
    ) -> LiveAnswer {
        let Some((live, i)) = self.variant(stream, variant) else {
            return LiveAnswer::NotLive;
        };
        let query = match PlaylistQuery::parse(query) {
            Ok(q) => q,
            Err(e) => return LiveAnswer::BadRequest(e.to_string()),
        };
        let v = &live.variants[i].1;
        let mut rx = v.view.subscribe();
        let Some(view) = rx.borrow_and_update().clone() else {
            return LiveAnswer::NotLive;
        };
        let view = match query.blocking {
            None => view,
            Some(want) => {
                if view.too_far(&want) {
                    return LiveAnswer::BadRequest(format!(
                        "_HLS_msn={} is more than two segments ahead of the playlist",
                        want.msn
                    ));
                }
                let deadline = tokio::time::Instant::now() + view.hold_limit();
                let mut view = view;
                let mut permit = None;
                while !view.satisfies(&want) {
                    if permit.is_none() {
                        permit = self.hold(client);
                        if permit.is_none() {
                            return LiveAnswer::Busy;
                        }
                    }
                    match tokio::time::timeout_at(deadline, rx.changed()).await {
                        Ok(Ok(())) => {}
                        // The stream's packager left, or the hold limit passed.
                        Ok(Err(_)) | Err(_) => return LiveAnswer::Unavailable,
                    }
                    match rx.borrow_and_update().clone() {
                        Some(next) => view = next,
                        None => return LiveAnswer::Unavailable,
                    }
                }
                self.metrics.blocking_requests.inc();
                view
            }
        };
        let reports = live.reports(i);
        LiveAnswer::Playlist {
            body: self.rendered(v, &view, query.skip, reports),
            blocking: query.blocking.is_some(),
        }
    }

    /// `view` rendered (a delta update when `skip`), once for every request
    /// that asks for the same view with the same reports.
    fn rendered(
        &self,
        v: &LiveVariant,
        view: &Arc<LiveView>,
        skip: bool,
        reports: Vec<RenditionReport>,
    ) -> Bytes {
        let mut cache = lock(&v.rendered);
        let slot = &mut cache[usize::from(skip)];
        if let Some(r) = slot
            && Arc::ptr_eq(&r.view, view)
            && r.reports == reports
        {
            return r.body.clone();
        }
        self.metrics.renders.inc();
        let body = Bytes::from(render(view, skip, &reports));
        *slot = Some(Rendered {
            view: view.clone(),
            reports,
            body: body.clone(),
        });
        body
    }

    /// `GET STREAM/VARIANT/NAME` for a part from `client`: from memory; the
    /// hinted next part is waited for.
    pub async fn part(
        &self,
        stream: &str,
        variant: &str,
        name: &str,
        client: Option<IpAddr>,
    ) -> LiveAnswer {
        let Some((live, i)) = self.variant(stream, variant) else {
            return LiveAnswer::NotLive;
        };
        let v = &live.variants[i].1;
        let mut rx = v.view.subscribe();
        let mut deadline = None;
        let mut permit = None;
        loop {
            if let Some(bytes) = lock(&v.parts).get(name) {
                return LiveAnswer::Part(bytes.clone());
            }
            let view = rx.borrow_and_update().clone();
            let hinted = view
                .as_ref()
                .is_some_and(|view| view.next_part_uri.as_deref() == Some(name));
            if !hinted {
                return LiveAnswer::NotFound;
            }
            let limit = view
                .as_ref()
                .map_or(Duration::from_secs(6), |v| v.hold_limit());
            let deadline = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + limit);
            if permit.is_none() {
                permit = self.hold(client);
                if permit.is_none() {
                    return LiveAnswer::Busy;
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return LiveAnswer::Unavailable,
            }
        }
    }
}

impl LiveStream {
    /// The other variants' newest parts.
    fn reports(&self, me: usize) -> Vec<RenditionReport> {
        self.variants
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != me)
            .filter_map(|(_, (name, v))| {
                let view = v.view.borrow().clone()?;
                let (last_msn, last_part) = view.last_part()?;
                Some(RenditionReport {
                    uri: format!("../{name}/index.m3u8"),
                    last_msn,
                    last_part,
                })
            })
            .collect()
    }
}

/// What a packaging task holds to publish one stream's parts and views.
pub struct LivePublisher {
    registry: LiveHls,
    name: String,
    stream: Arc<LiveStream>,
}

impl LivePublisher {
    /// Keeps a part of variant `variant` (its path below the stream, e.g.
    /// `source/s-3.1.m4s`); `since` is when the frame that completed it arrived.
    pub fn part(&self, variant: usize, path: &str, data: Bytes, since: Instant) {
        let Some((_, v)) = self.stream.variants.get(variant) else {
            return;
        };
        let name = path.rsplit('/').next().unwrap_or(path);
        lock(&v.parts).insert(name.to_owned(), data);
        self.registry.metrics.parts.inc();
        self.registry
            .metrics
            .part_latency
            .observe(since.elapsed().as_secs_f64());
    }

    /// Publishes variant `variant`'s view (after its parts), waking held
    /// requests; parts no longer listed are let go.
    pub fn publish(&self, variant: usize, view: LiveView) {
        let Some((_, v)) = self.stream.variants.get(variant) else {
            return;
        };
        {
            let listed: std::collections::HashSet<&str> = view
                .segments
                .iter()
                .flat_map(|s| &s.parts)
                .chain(view.open.iter().flat_map(|o| &o.parts))
                .map(|p| p.uri.as_str())
                .collect();
            lock(&v.parts).retain(|name, _| listed.contains(name.as_str()));
        }
        v.view.send_replace(Some(Arc::new(view)));
    }
}

impl Drop for LivePublisher {
    fn drop(&mut self) {
        let mut streams = lock(&self.registry.streams);
        if streams
            .get(&self.name)
            .is_some_and(|s| Arc::ptr_eq(s, &self.stream))
        {
            streams.remove(&self.name);
        }
        // Held requests see the senders go and answer 503.
        for (_, v) in &self.stream.variants {
            v.view.send_replace(None);
        }
    }
}

/// Counts a held request while it waits.
struct Held(Gauge);

impl Held {
    fn new(g: &Gauge) -> Self {
        g.inc();
        Self(g.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
