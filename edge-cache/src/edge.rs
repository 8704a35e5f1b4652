//! The cache: a memory tier of complete objects, and a table of fills in
//! flight so that each object is fetched from the origins once at a time,
//! whatever the number of clients asking for it.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use moka::notification::RemovalCause;
use tracing::{debug, warn};

use crate::disk::{DiskFile, DiskTier};
use crate::fill::{Fill, FillError};
use crate::metrics::{EdgeMetrics, StreamTraffic};
use crate::object::{FreshnessPolicy, Head, Object, Staleness, make_etag};
use crate::origin::{BLOCKING_FIRST_BYTE, Origins};
use crate::reach::{Reach, TooFar};
use hls::naming::ObjectKind;
use hls::target::CacheKey;

/// Media playlists whose reach is remembered (the newest of them).
pub const MAX_REACH_ENTRIES: u64 = 10_000;
/// A playlist's reach is forgotten after this long without a fetch.
pub const REACH_TTL: Duration = Duration::from_secs(60);

/// Bytes counted per cached object on top of its body and key (headers,
/// bookkeeping), so that many tiny objects cannot exceed the budget.
pub const OBJECT_OVERHEAD: usize = 512;

/// The bounds an edge keeps.
#[derive(Clone, Copy, Debug)]
pub struct EdgeLimits {
    /// Bytes of objects in memory.
    pub memory_bytes: u64,
    /// The largest object fetched.
    pub max_object_bytes: u64,
    /// Fills in flight at once (not counting blocking reloads).
    pub max_fills: usize,
    /// LL-HLS blocking-reload fills in flight at once: a pool of their own,
    /// so held requests never take a normal miss's slot.
    pub max_blocking_fills: usize,
    /// Blocking-reload fills in flight for one stream.
    pub max_blocking_fills_per_stream: usize,
    /// Fills in flight that one client address started.
    pub max_fills_per_client: usize,
    /// Bytes of fetched bodies held for clients still reading them (fills
    /// in flight and done but not yet read by everyone); past it, new fills
    /// are refused.
    pub streaming_bytes: u64,
    /// Longest stall of an origin body (and of a waiter reading a fill).
    pub body_timeout: Duration,
    /// Longest wait for a response head (all origins tried in turn).
    pub head_wait: Duration,
}

/// How a request was answered, for `Cache-Status` and the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// Fresh from the cache.
    Hit,
    /// Fresh from the disk tier.
    DiskHit,
    /// Stale from the cache while one refresh runs.
    StaleWhileRevalidate,
    /// Stale from the cache because no origin answered.
    StaleIfError,
    /// This request started the origin fetch.
    Miss,
    /// This request joined a fetch in flight.
    Collapsed,
}

/// What the cache has for a request.
pub enum Answer {
    /// A complete object.
    Cached {
        /// The object.
        object: Arc<Object>,
        /// How it was found.
        status: CacheStatus,
    },
    /// An object arriving from an origin, to be streamed as it comes.
    Streaming {
        /// The origin's status and headers.
        head: Arc<Head>,
        /// The fill to read.
        fill: Arc<Fill>,
        /// Miss or collapsed.
        status: CacheStatus,
    },
    /// No object: every origin failed, or too many fills are in flight.
    Failed(EdgeError),
}

/// What the cache has for a request that can take a file: an answer, or a
/// segment on disk to send as it is.
pub enum Found {
    /// A segment in the disk tier, fresh.
    File(DiskFile),
    /// Anything else.
    Answer(Answer),
}

/// Why a request was refused before any origin was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A blocking reload out of the playlist's reach (400).
    #[error(transparent)]
    TooFar(#[from] TooFar),
    /// [`EdgeLimits::max_fills_per_client`] fills in flight for this
    /// client (429).
    #[error("too many origin fetches in flight for this client")]
    Client,
    /// [`EdgeLimits::max_blocking_fills_per_stream`] blocking reloads in
    /// flight for this stream (503).
    #[error("too many blocking reloads in flight for this stream")]
    Stream,
    /// [`EdgeLimits::streaming_bytes`] held for slow readers (503).
    #[error("too many bytes held for slow readers")]
    Memory,
}

/// Why no object could be served.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EdgeError {
    /// The origins failed.
    #[error(transparent)]
    Fill(#[from] FillError),
    /// [`EdgeLimits::max_fills`] fetches are in flight.
    #[error("too many origin fetches in flight")]
    Busy,
    /// Refused before the origins were asked.
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// The caching edge; cheap to clone.
#[derive(Clone)]
pub struct Edge {
    inner: Arc<Inner>,
}

struct Inner {
    memory: moka::sync::Cache<CacheKey, Arc<Object>>,
    fills: DashMap<CacheKey, Arc<Fill>>,
    fills_in_flight: AtomicUsize,
    blocking_in_flight: AtomicUsize,
    per_client: DashMap<IpAddr, usize>,
    per_stream_blocking: DashMap<String, usize>,
    streaming: Arc<AtomicU64>,
    reach: moka::sync::Cache<String, Reach>,
    trusted: Vec<IpAddr>,
    origins: Origins,
    policy: FreshnessPolicy,
    limits: EdgeLimits,
    metrics: EdgeMetrics,
    traffic: StreamTraffic,
    disk: Option<Arc<DiskTier>>,
}

impl Edge {
    /// An empty cache in front of `origins`.
    pub fn new(
        origins: Origins,
        policy: FreshnessPolicy,
        limits: EdgeLimits,
        metrics: EdgeMetrics,
    ) -> Self {
        let evictions = metrics.evictions.clone();
        let memory = moka::sync::Cache::builder()
            .max_capacity(limits.memory_bytes)
            .weigher(|k: &CacheKey, v: &Arc<Object>| {
                u32::try_from(k.weight() + v.body.len() + OBJECT_OVERHEAD).unwrap_or(u32::MAX)
            })
            .eviction_listener(move |_k, _v, cause| {
                if cause == RemovalCause::Size {
                    evictions.inc();
                }
            })
            .build();
        Self {
            inner: Arc::new(Inner {
                memory,
                fills: DashMap::new(),
                fills_in_flight: AtomicUsize::new(0),
                blocking_in_flight: AtomicUsize::new(0),
                per_client: DashMap::new(),
                per_stream_blocking: DashMap::new(),
                streaming: Arc::new(AtomicU64::new(0)),
                reach: moka::sync::Cache::builder()
                    .max_capacity(MAX_REACH_ENTRIES)
                    .time_to_live(REACH_TTL)
                    .build(),
                trusted: Vec::new(),
                origins,
                policy,
                limits,
                traffic: StreamTraffic::new(&metrics),
                metrics,
                disk: None,
            }),
        }
    }

    /// The origins it fills from (replaced in place when it follows the
    /// control plane's list).
    pub fn origins(&self) -> &Origins {
        &self.inner.origins
    }

    /// This edge with a disk tier for segments (call before serving).
    pub fn with_disk(self, disk: DiskTier) -> Self {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.disk = Some(Arc::new(disk));
                Self {
                    inner: Arc::new(inner),
                }
            }
            Err(inner) => Self { inner },
        }
    }

    /// This edge with `clients` exempt from the per-client fill cap (call
    /// before serving).
    pub fn with_trusted(self, clients: Vec<IpAddr>) -> Self {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.trusted = clients;
                Self {
                    inner: Arc::new(inner),
                }
            }
            Err(inner) => Self { inner },
        }
    }

    /// The counters.
    pub fn metrics(&self) -> &EdgeMetrics {
        &self.inner.metrics
    }

    /// Requests and bytes per stream (the audience it reports).
    pub fn traffic(&self) -> &StreamTraffic {
        &self.inner.traffic
    }

    /// The limits.
    pub fn limits(&self) -> &EdgeLimits {
        &self.inner.limits
    }

    /// Bytes the memory tier holds, after pending evictions have run (also
    /// sets the gauge: call it about once a second).
    pub fn memory_bytes(&self) -> u64 {
        self.inner.memory.run_pending_tasks();
        self.update_memory_gauge();
        self.inner.memory.weighted_size()
    }

    /// Drops every cached object of `stream`; returns how many.
    pub fn purge(&self, stream: &str) -> usize {
        let keys: Vec<CacheKey> = self
            .inner
            .memory
            .iter()
            .filter(|(k, _)| k.stream() == stream)
            .map(|(k, _)| CacheKey::clone(&k))
            .collect();
        for k in &keys {
            self.inner.memory.invalidate(k);
        }
        let mut purged = keys.len();
        if let Some(disk) = &self.inner.disk {
            let in_memory: HashSet<&CacheKey> = keys.iter().collect();
            let on_disk = disk.keys_of(stream);
            for k in &on_disk {
                disk.remove(k);
            }
            purged += on_disk.iter().filter(|k| !in_memory.contains(k)).count();
        }
        self.inner.memory.run_pending_tasks();
        self.update_memory_gauge();
        purged
    }

    fn update_memory_gauge(&self) {
        self.inner
            .metrics
            .streaming_bytes
            .set(i64::try_from(self.inner.streaming.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        let bytes = self.inner.memory.weighted_size();
        self.inner
            .metrics
            .memory_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        if let Some(disk) = &self.inner.disk {
            self.inner
                .metrics
                .disk_bytes
                .set(i64::try_from(disk.bytes()).unwrap_or(i64::MAX));
        }
    }

    /// What the edge has for `key` asked by `client`: from memory, from a
    /// fill in flight, or from a new origin fetch. A blocking reload is first
    /// checked against the playlist's reach (learnt from the plain playlist
    /// when not known yet); on a playlist without parts its LL-HLS query is
    /// dropped.
    pub async fn get(&self, key: &CacheKey, client: Option<IpAddr>) -> Answer {
        match self.find(key, client, false).await {
            Found::Answer(a) => a,
            // Not asked for; read it rather than lose it.
            Found::File(f) => self.loaded(f).await,
        }
    }

    /// As [`Edge::get`], but a fresh segment in the disk tier comes as its
    /// open file, for a response that sends it with `sendfile`.
    pub async fn get_or_file(&self, key: &CacheKey, client: Option<IpAddr>) -> Found {
        self.find(key, client, true).await
    }

    /// The answer for a segment found on disk, its body read from the file
    /// (a 504-like failure if the file went short under it).
    pub async fn loaded(&self, file: DiskFile) -> Answer {
        match file.load().await {
            Some(object) => Answer::Cached {
                object: Arc::new(object),
                status: CacheStatus::DiskHit,
            },
            None => Answer::Failed(EdgeError::Busy),
        }
    }

    async fn find(&self, key: &CacheKey, client: Option<IpAddr>, files: bool) -> Found {
        if key.ll().is_some() || key.is_skip_only() {
            let plain = key.without_query();
            let reach = match self.inner.reach.get(plain.path()) {
                Some(r) => Some(r),
                None => self.learn_reach(&plain, client).await,
            };
            let Some(reach) = reach else {
                // Not an LL-HLS playlist (or not there): the query means nothing.
                return self.lookup(&plain, client, files).await;
            };
            if let Some(q) = key.ll()
                && let Err(e) = reach.check(q.msn, q.part)
            {
                self.inner.metrics.refused_ll.inc();
                return Found::Answer(Answer::Failed(EdgeError::Refused(e.into())));
            }
        }
        self.lookup(key, client, files).await
    }

    /// The reach of the media playlist `plain`, read from it (fetched now
    /// if it is not cached).
    async fn learn_reach(&self, plain: &CacheKey, client: Option<IpAddr>) -> Option<Reach> {
        let body = match self.lookup(plain, client, false).await {
            Found::Answer(Answer::Cached { object, .. }) if object.head.status == 200 => {
                object.body.clone()
            }
            Found::Answer(Answer::Streaming { head, fill, .. }) if head.status == 200 => {
                fill.complete(self.inner.limits.body_timeout).await.ok()?
            }
            _ => return None,
        };
        let reach = Reach::of(&body)?;
        self.inner.reach.insert(plain.path().to_owned(), reach);
        Some(reach)
    }

    async fn lookup(&self, key: &CacheKey, client: Option<IpAddr>, files: bool) -> Found {
        let m = &self.inner.metrics;
        let now = Instant::now();
        let cached = self.inner.memory.get(key);
        // Segments live on disk once written (the page cache holds the hot
        // ones): a disk hit is sent from the file, or read for this answer
        // only, never brought back into the heap.
        if cached.is_none()
            && let Some(disk) = &self.inner.disk
            && let Some(file) = disk.file(key)
            && file.meta.staleness(now) == Staleness::Fresh
        {
            m.disk_hits.inc();
            return if files {
                Found::File(file)
            } else {
                Found::Answer(self.loaded(file).await)
            };
        }
        Found::Answer(self.lookup_memory(key, client, cached, now).await)
    }

    async fn lookup_memory(
        &self,
        key: &CacheKey,
        client: Option<IpAddr>,
        cached: Option<Arc<Object>>,
        now: Instant,
    ) -> Answer {
        let m = &self.inner.metrics;
        let mut fallback = None;
        if let Some(object) = cached {
            match object.staleness(now) {
                Staleness::Fresh => {
                    m.hits.inc();
                    return Answer::Cached {
                        object,
                        status: CacheStatus::Hit,
                    };
                }
                Staleness::Revalidate => {
                    // One background refresh; everyone gets the stale copy now.
                    if !self.inner.origins.all_in_backoff() {
                        let _ = self.join_or_start(key, client);
                    }
                    m.stale.inc();
                    return Answer::Cached {
                        object,
                        status: CacheStatus::StaleWhileRevalidate,
                    };
                }
                // A playlist is asked for before it is served stale: the
                // origins may have recovered, and a live playlist frozen for
                // a backoff period stalls every viewer.
                Staleness::StaleIfError
                    if self.inner.origins.all_in_backoff()
                        && ObjectKind::of(key.path()) != ObjectKind::Playlist =>
                {
                    return self.stale_or(Some(object), EdgeError::Busy);
                }
                Staleness::StaleIfError => fallback = Some(object),
                Staleness::Expired => {}
            }
        }
        let (fill, started) = match self.join_or_start(key, client) {
            Ok(f) => f,
            Err(e) => return self.stale_or(fallback, e),
        };
        if started {
            m.misses.inc();
        } else {
            m.collapsed.inc();
        }
        // The origin may hold a blocking reload or a hinted part: its waiter
        // waits as long as the fetch may take.
        let wait = if key.may_be_held() {
            let origins = u32::try_from(self.inner.origins.len().max(1)).unwrap_or(u32::MAX);
            self.inner
                .limits
                .head_wait
                .max(BLOCKING_FIRST_BYTE * origins + Duration::from_millis(500))
        } else {
            self.inner.limits.head_wait
        };
        match fill.head(wait).await {
            Ok(head) => Answer::Streaming {
                head,
                fill,
                status: if started {
                    CacheStatus::Miss
                } else {
                    CacheStatus::Collapsed
                },
            },
            Err(e) => self.stale_or(fallback, EdgeError::Fill(e)),
        }
    }

    fn stale_or(&self, fallback: Option<Arc<Object>>, error: EdgeError) -> Answer {
        match fallback {
            Some(object) => {
                self.inner.metrics.stale.inc();
                Answer::Cached {
                    object,
                    status: CacheStatus::StaleIfError,
                }
            }
            None => Answer::Failed(error),
        }
    }

    /// The fill in flight for `key`, or a new one (then `true`) if the
    /// bounds allow: the pool of its kind, the client's and the stream's
    /// share, the bytes held for slow readers.
    fn join_or_start(
        &self,
        key: &CacheKey,
        client: Option<IpAddr>,
    ) -> Result<(Arc<Fill>, bool), EdgeError> {
        let inner = &self.inner;
        match inner.fills.entry(key.clone()) {
            Entry::Occupied(e) => Ok((e.get().clone(), false)),
            Entry::Vacant(e) => {
                let ticket = self.ticket(key, client).inspect_err(|_| {
                    inner.metrics.refused.inc();
                })?;
                let fill = Arc::new(Fill::with_budget(inner.streaming.clone()));
                e.insert(fill.clone());
                inner.metrics.fills.inc();
                // Detached: a client that goes away does not cancel the fetch
                // the others wait on.
                tokio::spawn(run_fill(self.clone(), key.clone(), fill.clone(), ticket));
                Ok((fill, true))
            }
        }
    }

    /// Takes a slot for a new fill of `key` started by `client`.
    fn ticket(&self, key: &CacheKey, client: Option<IpAddr>) -> Result<FillTicket, EdgeError> {
        let inner = &self.inner;
        let limits = &inner.limits;
        if inner.streaming.load(Ordering::Relaxed) > limits.streaming_bytes {
            return Err(Refusal::Memory.into());
        }
        let blocking = key.is_blocking();
        let (pool, max) = if blocking {
            (&inner.blocking_in_flight, limits.max_blocking_fills)
        } else {
            (&inner.fills_in_flight, limits.max_fills)
        };
        if pool.fetch_add(1, Ordering::AcqRel) >= max {
            pool.fetch_sub(1, Ordering::AcqRel);
            return Err(EdgeError::Busy);
        }
        // From here the ticket gives back what it took, also when refused.
        let mut ticket = FillTicket {
            edge: self.clone(),
            blocking,
            client: None,
            stream: None,
        };
        if let Some(ip) = client.filter(|ip| !inner.trusted.contains(ip)) {
            let mut n = inner.per_client.entry(ip).or_insert(0);
            if *n >= limits.max_fills_per_client {
                return Err(Refusal::Client.into());
            }
            *n += 1;
            ticket.client = Some(ip);
        }
        if blocking {
            let mut n = inner
                .per_stream_blocking
                .entry(key.stream().to_owned())
                .or_insert(0);
            if *n >= limits.max_blocking_fills_per_stream {
                return Err(Refusal::Stream.into());
            }
            *n += 1;
            ticket.stream = Some(key.stream().to_owned());
        }
        Ok(ticket)
    }
}

/// A fill's place in the bounds, given back when the fill ends (however it
/// ends).
struct FillTicket {
    edge: Edge,
    blocking: bool,
    client: Option<IpAddr>,
    stream: Option<String>,
}

impl Drop for FillTicket {
    fn drop(&mut self) {
        let inner = &self.edge.inner;
        let pool = if self.blocking {
            &inner.blocking_in_flight
        } else {
            &inner.fills_in_flight
        };
        pool.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.client {
            inner.per_client.remove_if_mut(&ip, |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            });
        }
        if let Some(stream) = &self.stream {
            inner.per_stream_blocking.remove_if_mut(stream, |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            });
        }
    }
}

async fn run_fill(edge: Edge, key: CacheKey, fill: Arc<Fill>, ticket: FillTicket) {
    let inner = &edge.inner;
    let result = fetch_into(inner, &key, &fill).await;
    if let Ok(head) = &result {
        let body = fill.body();
        if head.status == 200
            && hls::naming::is_media_playlist(key.path())
            && let Some(reach) = Reach::of(&body)
        {
            inner.reach.insert(key.path().to_owned(), reach);
        }
        let freshness = inner
            .policy
            .freshness(ObjectKind::of(key.path()), head, &body);
        if freshness.store {
            let etag = head.etag.clone().unwrap_or_else(|| make_etag(&body));
            let object = Object {
                head: head.clone(),
                body,
                etag,
                received: Instant::now(),
                freshness,
            };
            let object = Arc::new(object);
            if let Some(disk) = &inner.disk
                && head.status == 200
                && ObjectKind::of(key.path()).is_segment()
            {
                // In memory until the file is in place, then only there.
                let (memory, stored, k) = (inner.memory.clone(), object.clone(), key.clone());
                disk.store(key.clone(), &object, move || {
                    if memory.get(&k).is_some_and(|o| Arc::ptr_eq(&o, &stored)) {
                        memory.invalidate(&k);
                    }
                });
            }
            inner.memory.insert(key.clone(), object);
            edge.update_memory_gauge();
        }
    }
    // Stored first, then out of the table: a request in between finds one or
    // the other, never neither.
    inner.fills.remove_if(&key, |_, f| Arc::ptr_eq(f, &fill));
    if let Err(e) = &result {
        match e {
            FillError::Body(_) | FillError::TooLarge(_) => {
                warn!(?key, error = %e, "origin fetch failed mid-body; nothing cached")
            }
            _ => debug!(?key, error = %e, "origin fetch failed"),
        }
    }
    fill.finish(result.map(|_| ()));
    drop(ticket);
    inner.metrics.fills.dec();
}

/// How long a segment that a playlist this edge holds names, but no origin
/// has, is asked for again before the 404 stands.
pub const LISTED_WAIT: Duration = Duration::from_secs(2);

/// Whether `key` is a segment or part that the media playlist cached beside
/// it names. Redundant origins cut the same segment a moment apart: when the
/// one that listed it first dies, the other answers 404 for a few hundred
/// milliseconds, and a 404 cached then would fail every viewer of it.
fn listed_beside(inner: &Inner, key: &CacheKey) -> bool {
    if !(ObjectKind::of(key.path()).is_segment() || key.is_part()) {
        return false;
    }
    let Some((dir, name)) = key.path().rsplit_once('/') else {
        return false;
    };
    let path = format!("{}{dir}/index.m3u8", hls::naming::HLS_PREFIX);
    let Ok(playlist) = CacheKey::parse(&path, None) else {
        return false;
    };
    inner
        .memory
        .get(&playlist)
        .is_some_and(|o| o.body.windows(name.len()).any(|w| w == name.as_bytes()))
}

async fn fetch_into(inner: &Inner, key: &CacheKey, fill: &Fill) -> Result<Head, FillError> {
    let max = inner.limits.max_object_bytes;
    let mut response = inner.origins.fetch(key, &inner.metrics).await?;
    let waited = Instant::now();
    while response.head.status == 404 && waited.elapsed() < LISTED_WAIT && listed_beside(inner, key)
    {
        debug!(?key, "listed, but no origin has it yet: asking again");
        tokio::time::sleep(Duration::from_millis(200)).await;
        response = inner.origins.fetch(key, &inner.metrics).await?;
    }
    if response.head.content_length.is_some_and(|n| n > max) {
        return Err(FillError::TooLarge(max));
    }
    let head = response.head.clone();
    fill.set_head(response.head);
    loop {
        let chunk = tokio::time::timeout(inner.limits.body_timeout, response.body.chunk())
            .await
            .map_err(|_| FillError::Body("origin body stalled".into()))??;
        let Some(chunk) = chunk else { break };
        inner.metrics.bytes_in.inc_by(chunk.len() as u64);
        if fill.received() + chunk.len() as u64 > max {
            return Err(FillError::TooLarge(max));
        }
        fill.push(chunk);
    }
    if head.content_length.is_some_and(|n| n != fill.received()) {
        return Err(FillError::Body(
            "body shorter than its Content-Length".into(),
        ));
    }
    Ok(head)
}
