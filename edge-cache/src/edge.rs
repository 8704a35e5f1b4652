//! The cache: a memory tier of complete objects, and a table of fills in
//! flight so that each object is fetched from the origins once at a time,
//! whatever the number of clients asking for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use moka::notification::RemovalCause;
use tracing::{debug, warn};

use crate::disk::DiskTier;
use crate::fill::{Fill, FillError};
use crate::metrics::EdgeMetrics;
use crate::object::{FreshnessPolicy, Head, Kind, Object, Staleness, make_etag};
use crate::origin::Origins;
use crate::request::CacheKey;

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
    /// Fills in flight at once.
    pub max_fills: usize,
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
    /// Fresh from the disk tier (now in memory again).
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

/// Why no object could be served.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EdgeError {
    /// The origins failed.
    #[error(transparent)]
    Fill(#[from] FillError),
    /// [`EdgeLimits::max_fills`] fetches are in flight.
    #[error("too many origin fetches in flight")]
    Busy,
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
    origins: Origins,
    policy: FreshnessPolicy,
    limits: EdgeLimits,
    metrics: EdgeMetrics,
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
                origins,
                policy,
                limits,
                metrics,
                disk: None,
            }),
        }
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

    /// The counters.
    pub fn metrics(&self) -> &EdgeMetrics {
        &self.inner.metrics
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
            let on_disk = disk.keys_of(stream);
            for k in &on_disk {
                disk.remove(k);
            }
            purged += on_disk.iter().filter(|k| !keys.contains(k)).count();
        }
        self.inner.memory.run_pending_tasks();
        self.update_memory_gauge();
        purged
    }

    fn update_memory_gauge(&self) {
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

    /// What the edge has for `key`: from memory, from a fill in flight, or
    /// from a new origin fetch.
    pub async fn get(&self, key: &CacheKey) -> Answer {
        let m = &self.inner.metrics;
        let now = Instant::now();
        let cached = self.inner.memory.get(key);
        if cached.is_none()
            && let Some(disk) = &self.inner.disk
            && let Some(object) = disk.load(key).await
            && object.staleness(now) == Staleness::Fresh
        {
            let object = Arc::new(object);
            self.inner.memory.insert(key.clone(), object.clone());
            m.disk_hits.inc();
            return Answer::Cached {
                object,
                status: CacheStatus::DiskHit,
            };
        }
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
                        let _ = self.join_or_start(key);
                    }
                    m.stale.inc();
                    return Answer::Cached {
                        object,
                        status: CacheStatus::StaleWhileRevalidate,
                    };
                }
                Staleness::StaleIfError if self.inner.origins.all_in_backoff() => {
                    return self.stale_or(Some(object), EdgeError::Busy);
                }
                Staleness::StaleIfError => fallback = Some(object),
                Staleness::Expired => {}
            }
        }
        let (fill, started) = match self.join_or_start(key) {
            Ok(f) => f,
            Err(e) => return self.stale_or(fallback, e),
        };
        if started {
            m.misses.inc();
        } else {
            m.collapsed.inc();
        }
        match fill.head(self.inner.limits.head_wait).await {
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

    /// The fill in flight for `key`, or a new one (then `true`).
    fn join_or_start(&self, key: &CacheKey) -> Result<(Arc<Fill>, bool), EdgeError> {
        let inner = &self.inner;
        match inner.fills.entry(key.clone()) {
            Entry::Occupied(e) => Ok((e.get().clone(), false)),
            Entry::Vacant(e) => {
                let in_flight = inner.fills_in_flight.fetch_add(1, Ordering::AcqRel);
                if in_flight >= inner.limits.max_fills {
                    inner.fills_in_flight.fetch_sub(1, Ordering::AcqRel);
                    inner.metrics.refused.inc();
                    return Err(EdgeError::Busy);
                }
                let fill = Arc::new(Fill::default());
                e.insert(fill.clone());
                inner.metrics.fills.inc();
                // Detached: a client that goes away does not cancel the fetch
                // the others wait on.
                tokio::spawn(run_fill(self.clone(), key.clone(), fill.clone()));
                Ok((fill, true))
            }
        }
    }
}

async fn run_fill(edge: Edge, key: CacheKey, fill: Arc<Fill>) {
    let inner = &edge.inner;
    let result = fetch_into(inner, &key, &fill).await;
    if let Ok(head) = &result {
        let body = fill.body();
        let freshness = inner.policy.freshness(Kind::of(key.path()), head, &body);
        if freshness.store {
            let etag = head.etag.clone().unwrap_or_else(|| make_etag(&body));
            let object = Object {
                head: head.clone(),
                body,
                etag,
                received: Instant::now(),
                freshness,
            };
            if let Some(disk) = &inner.disk
                && head.status == 200
                && Kind::of(key.path()) == Kind::Segment
            {
                disk.store(key.clone(), &object);
            }
            inner.memory.insert(key.clone(), Arc::new(object));
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
    inner.fills_in_flight.fetch_sub(1, Ordering::AcqRel);
    inner.metrics.fills.dec();
}

async fn fetch_into(inner: &Inner, key: &CacheKey, fill: &Fill) -> Result<Head, FillError> {
    let max = inner.limits.max_object_bytes;
    let mut response = inner.origins.fetch(key, &inner.metrics).await?;
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
