//! The origins an edge fetches from, in order, with failover.
//!
//! A fetch tries the origins in their configured order, skipping those in
//! backoff. An origin that cannot be reached, answers 5xx or sends no
//! response head within the first-byte time is put in backoff (doubling, up
//! to [`MAX_BACKOFF`]) and the next one is tried; when every origin is in
//! backoff they are all tried anyway, so a recovered origin is found by the
//! next request rather than after a timer.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use origin_store::{OriginStore, StoreError};
use reqwest::header::{self, HeaderMap};

use crate::fill::FillError;
use crate::metrics::{EdgeMetrics, FetchLabel, OriginLabel};
use crate::object::Head;
use hls::target::CacheKey;

/// The first backoff after a failure.
pub const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// The longest backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Idle connections to an origin are kept this long for the next fetch.
pub const POOL_IDLE: Duration = Duration::from_secs(90);

/// The HTTP client origins share: keep-alive pool, no proxy from the
/// environment, no redirects (an origin answers or fails), `connect` bounded.
pub fn http_client(connect: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(connect)
        .pool_idle_timeout(POOL_IDLE)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())
}

/// Where objects come from.
pub enum Source {
    /// An HTTP base URL holding `/hls/...` (a Ferry origin, any web server,
    /// an S3 website endpoint).
    Http {
        /// `http://HOST:PORT`, without a trailing slash.
        base: String,
        /// Shared connection pool.
        client: reqwest::Client,
    },
    /// A bucket read with credentials (object keys are the paths below `/hls/`).
    Store(OriginStore),
}

struct Health {
    failures: u32,
    skip_until: Option<Instant>,
}

/// One origin.
pub struct Origin {
    name: String,
    source: Source,
    health: Mutex<Health>,
    /// The streams it carries, when the control plane says so (`None`:
    /// unknown, as for a configured origin: it may have any).
    carries: Mutex<Option<Vec<String>>>,
}

impl Origin {
    /// An origin called `name` (as configured, for logs and metrics).
    pub fn new(name: impl Into<String>, source: Source) -> Self {
        Self {
            name: name.into(),
            source,
            health: Mutex::new(Health {
                failures: 0,
                skip_until: None,
            }),
            carries: Mutex::new(None),
        }
    }

    /// Says which streams this origin carries: fetches of those try it
    /// before origins that do not.
    pub fn set_streams(&self, streams: Vec<String>) {
        *self.carries.lock().unwrap_or_else(|e| e.into_inner()) = Some(streams);
    }

    /// Whether it carries `stream` as far as is known.
    fn carries(&self, stream: &str) -> bool {
        self.carries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_none_or(|s| s.iter().any(|x| x == stream))
    }

    /// Its name in logs and metrics.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn in_backoff(&self, now: Instant) -> bool {
        let h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        h.skip_until.is_some_and(|t| now < t)
    }

    fn failed(&self) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        h.failures = h.failures.saturating_add(1);
        let backoff = MIN_BACKOFF
            .saturating_mul(1 << h.failures.min(8).saturating_sub(1))
            .min(MAX_BACKOFF);
        h.skip_until = Some(Instant::now() + backoff);
    }

    fn succeeded(&self) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        h.failures = 0;
        h.skip_until = None;
    }
}

/// An origin's answer: the head, and the body to read.
pub struct Response {
    /// Status and headers.
    pub head: Head,
    /// The body.
    pub body: Body,
    /// Which origin answered.
    pub origin: usize,
}

/// A body being received.
pub enum Body {
    /// Streamed from an HTTP origin.
    Http(reqwest::Response),
    /// Read whole (object store).
    Whole(Option<Bytes>),
}

impl Body {
    /// The next chunk; `None` at the end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, FillError> {
        match self {
            Body::Http(r) => r.chunk().await.map_err(|e| FillError::Body(e.to_string())),
            Body::Whole(b) => Ok(b.take()),
        }
    }
}

/// How long an origin may hold an LL-HLS blocking reload before its answer
/// starts: above the spec's hold limit of three target durations for the
/// usual 1–3 s targets.
pub const BLOCKING_FIRST_BYTE: Duration = Duration::from_secs(10);

/// An origin's 503 with `Retry-After`: it cannot answer this one now, and
/// says nothing about its health.
const NOT_HERE: &str = "status 503 (not here, retry after)";

/// What became of one origin attempt: the origin's index, when it started,
/// and its answer.
type Attempt = (usize, Instant, Result<(Head, Body), FillError>);

/// The origins, in order of preference: configured, or followed from the
/// control plane (replaced as origins come and go).
pub struct Origins {
    list: std::sync::RwLock<Arc<Vec<Arc<Origin>>>>,
    first_byte: Duration,
}

impl Origins {
    /// `list` tried in order; each must send its response head within `first_byte`.
    pub fn new(list: Vec<Origin>, first_byte: Duration) -> Self {
        Self {
            list: std::sync::RwLock::new(Arc::new(list.into_iter().map(Arc::new).collect())),
            first_byte,
        }
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Origin>>> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the list (the control plane's origins changed). An origin
    /// kept by name keeps its health; `make` builds a new one.
    pub fn replace(&self, names: &[String], make: impl Fn(&str) -> Origin) {
        let old = self.snapshot();
        let list: Vec<Arc<Origin>> = names
            .iter()
            .map(|n| {
                old.iter()
                    .find(|o| o.name == *n)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(make(n)))
            })
            .collect();
        *self.list.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(list);
    }

    /// The origin named `name`, if in the list.
    pub fn get(&self, name: &str) -> Option<Arc<Origin>> {
        self.snapshot().iter().find(|o| o.name == name).cloned()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.snapshot().is_empty()
    }

    /// Whether every origin is in backoff (then a background refresh is not
    /// worth starting and a stale object is served at once).
    pub fn all_in_backoff(&self) -> bool {
        let now = Instant::now();
        self.snapshot().iter().all(|o| o.in_backoff(now))
    }

    /// The names of the origins, in order.
    pub fn names(&self) -> Vec<String> {
        self.snapshot().iter().map(|o| o.name.clone()).collect()
    }

    /// Fetches `key` from the first origin that answers (200 or 404).
    pub async fn fetch(
        &self,
        key: &CacheKey,
        metrics: &EdgeMetrics,
    ) -> Result<Response, FillError> {
        let now = Instant::now();
        let list = self.snapshot();
        let healthy: Vec<usize> = (0..list.len())
            .filter(|&i| !list[i].in_backoff(now))
            .collect();
        let mut order = if healthy.is_empty() {
            (0..list.len()).collect()
        } else {
            healthy
        };
        // Origins known to carry the stream first, the others after.
        order.sort_by_key(|&i| !list[i].carries(key.stream()));
        if key.may_be_held() && order.len() > 1 {
            return self.fetch_hedged(key, &list, &order, metrics).await;
        }
        let mut last = FillError::Unreachable("no origin configured".into());
        // A 404 from one origin may only mean it missed the object (it was
        // down when it was made): the others are asked before it stands.
        let mut not_found = None;
        for i in order {
            let origin = &list[i];
            let started = Instant::now();
            // An LL-HLS blocking reload is held by the origin until its part
            // exists (at most three target durations): its head comes late.
            let first_byte = if key.may_be_held() {
                self.first_byte.max(BLOCKING_FIRST_BYTE)
            } else {
                self.first_byte
            };
            let result = tokio::time::timeout(first_byte, fetch_one(origin, key))
                .await
                .unwrap_or(Err(FillError::Timeout));
            match settle(origin, key, started, result, metrics) {
                Ok((head, body)) if head.status == 404 => {
                    not_found.get_or_insert(Response {
                        head,
                        body,
                        origin: i,
                    });
                }
                Ok((head, body)) => {
                    return Ok(Response {
                        head,
                        body,
                        origin: i,
                    });
                }
                Err(e) => last = e,
            }
        }
        not_found.ok_or(last)
    }

    /// A request an origin may hold (an LL-HLS blocking reload or hinted
    /// part), hedged: the first origin is asked; if it has not answered
    /// within the first-byte time, the next is asked too, and the first
    /// answer wins. An origin that is hung (SIGSTOP, a full disk) holds
    /// every such request up to [`BLOCKING_FIRST_BYTE`], which would stall
    /// low-latency players for seconds; a held request that another origin
    /// answered first puts the one still holding it in backoff.
    async fn fetch_hedged(
        &self,
        key: &CacheKey,
        list: &[Arc<Origin>],
        order: &[usize],
        metrics: &EdgeMetrics,
    ) -> Result<Response, FillError> {
        let mut attempts: tokio::task::JoinSet<Attempt> = tokio::task::JoinSet::new();
        let mut pending: Vec<(usize, Instant)> = Vec::new();
        let mut next = order.iter().copied();
        let start = |attempts: &mut tokio::task::JoinSet<Attempt>,
                     pending: &mut Vec<(usize, Instant)>,
                     i: usize| {
            let (origin, key) = (list[i].clone(), key.clone());
            let started = Instant::now();
            pending.push((i, started));
            attempts.spawn(async move {
                let r = tokio::time::timeout(BLOCKING_FIRST_BYTE, fetch_one(&origin, &key))
                    .await
                    .unwrap_or(Err(FillError::Timeout));
                (i, started, r)
            });
        };
        if let Some(i) = next.next() {
            start(&mut attempts, &mut pending, i);
        }
        let mut last = FillError::Unreachable("no origin configured".into());
        let mut not_found: Option<Response> = None;
        loop {
            let more = next.len() > 0;
            let hedge = tokio::time::sleep(self.first_byte);
            tokio::select! {
                done = attempts.join_next() => {
                    let Some(done) = done else { return not_found.ok_or(last) };
                    let Ok((i, started, result)) = done else { continue };
                    pending.retain(|&(p, _)| p != i);
                    match settle(&list[i], key, started, result, metrics) {
                        Ok((head, body)) if head.status == 404 => {
                            not_found.get_or_insert(Response { head, body, origin: i });
                            if attempts.is_empty() {
                                match next.next() {
                                    Some(n) => start(&mut attempts, &mut pending, n),
                                    None => return not_found.take().ok_or(last),
                                }
                            }
                        }
                        Ok((head, body)) => {
                            // Those asked before the winner still hold what it
                            // already had: behind, or hung.
                            for &(p, asked) in &pending {
                                if asked < started {
                                    tracing::info!(origin = %list[p].name, ?key, "another origin answered a held request first: backing off");
                                    list[p].failed();
                                }
                            }
                            return Ok(Response { head, body, origin: i });
                        }
                        Err(e) => {
                            last = e;
                            if attempts.is_empty() {
                                match next.next() {
                                    Some(n) => start(&mut attempts, &mut pending, n),
                                    None => return not_found.take().ok_or(last),
                                }
                            }
                        }
                    }
                }
                () = hedge, if more => {
                    if let Some(n) = next.next() {
                        tracing::debug!(origin = %list[n].name, ?key, "a held request is slow: asking the next origin too");
                        metrics.hedged_fetches.inc();
                        start(&mut attempts, &mut pending, n);
                    }
                }
            }
        }
    }
}

/// Records one origin attempt (metrics, health) and gives its answer, or
/// the error to try the next origin with.
fn settle(
    origin: &Origin,
    key: &CacheKey,
    started: Instant,
    result: Result<(Head, Body), FillError>,
    metrics: &EdgeMetrics,
) -> Result<(Head, Body), FillError> {
    let label = match &result {
        Ok((head, _)) if head.status == 404 => "not_found",
        Ok(_) => "ok",
        Err(FillError::Timeout) => "timeout",
        Err(_) => "error",
    };
    metrics
        .origin_fetches
        .get_or_create(&FetchLabel {
            origin: origin.name.clone(),
            result: label,
        })
        .inc();
    match result {
        Ok(answer) => {
            metrics
                .origin_seconds
                .get_or_create(&OriginLabel {
                    origin: origin.name.clone(),
                })
                .observe(started.elapsed().as_secs_f64());
            origin.succeeded();
            Ok(answer)
        }
        Err(e) => {
            tracing::debug!(origin = %origin.name, ?key, error = %e, "origin fetch failed, trying the next");
            // A blocking reload or hinted part the origin gave up holding
            // (503: the stream stalled) says nothing about the origin's
            // health.
            let held_too_long = key.may_be_held()
                && matches!(&e, FillError::BadResponse(m) if m.starts_with("status 503"));
            // 503 with Retry-After: this origin does not have it now (a
            // playlist it no longer updates, requests held to its limit).
            let not_here = matches!(&e, FillError::BadResponse(m) if m == NOT_HERE);
            if (!matches!(e, FillError::BadResponse(_)) || is_server_error(&e))
                && !held_too_long
                && !not_here
            {
                origin.failed();
            }
            Err(e)
        }
    }
}

fn is_server_error(e: &FillError) -> bool {
    matches!(e, FillError::BadResponse(m) if m.starts_with("status 5"))
}

async fn fetch_one(origin: &Origin, key: &CacheKey) -> Result<(Head, Body), FillError> {
    match &origin.source {
        Source::Http { base, client } => {
            let url = format!("{base}{}", key.origin_target());
            let response = client.get(&url).send().await.map_err(|e| {
                if e.is_timeout() {
                    FillError::Timeout
                } else {
                    FillError::Unreachable(e.to_string())
                }
            })?;
            let status = response.status().as_u16();
            if status == 503 && response.headers().contains_key(header::RETRY_AFTER) {
                return Err(FillError::BadResponse(NOT_HERE.into()));
            }
            if status != 200 && status != 404 {
                return Err(FillError::BadResponse(format!("status {status}")));
            }
            let head = head_from(status, response.headers(), response.content_length());
            Ok((head, Body::Http(response)))
        }
        Source::Store(store) => match store.get(key.path()).await {
            Ok(body) => {
                let kind = hls::naming::ObjectKind::of(key.path());
                let head = Head {
                    status: 200,
                    content_type: Some(kind.content_type().into()),
                    cache_control: Some(kind.cache_control().into()),
                    etag: None,
                    last_modified: None,
                    allow_origin: None,
                    content_length: Some(body.len() as u64),
                    age: Duration::ZERO,
                };
                Ok((head, Body::Whole(Some(body))))
            }
            Err(StoreError::NotFound(_) | StoreError::BadKey(_)) => Ok((
                Head {
                    status: 404,
                    content_type: Some("text/plain; charset=utf-8".into()),
                    cache_control: None,
                    etag: None,
                    last_modified: None,
                    allow_origin: None,
                    content_length: Some(0),
                    age: Duration::ZERO,
                },
                Body::Whole(None),
            )),
            Err(e) => Err(FillError::Unreachable(e.to_string())),
        },
    }
}

fn head_from(status: u16, headers: &HeaderMap, content_length: Option<u64>) -> Head {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 1024)
            .map(str::to_owned)
    };
    Head {
        status,
        content_type: text(header::CONTENT_TYPE),
        cache_control: text(header::CACHE_CONTROL),
        etag: text(header::ETAG),
        last_modified: text(header::LAST_MODIFIED),
        allow_origin: text(header::ACCESS_CONTROL_ALLOW_ORIGIN),
        content_length,
        age: text(header::AGE)
            .and_then(|a| a.trim().parse::<u32>().ok())
            .map_or(Duration::ZERO, |s| Duration::from_secs(u64::from(s))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_resets() {
        let o = Origin::new("a", Source::Store(OriginStore::memory()));
        let now = Instant::now();
        assert!(!o.in_backoff(now));
        o.failed();
        assert!(o.in_backoff(Instant::now()));
        assert!(!o.in_backoff(Instant::now() + MIN_BACKOFF));
        for _ in 0..20 {
            o.failed();
        }
        assert!(o.in_backoff(Instant::now() + MAX_BACKOFF / 2));
        assert!(!o.in_backoff(Instant::now() + MAX_BACKOFF));
        o.succeeded();
        assert!(!o.in_backoff(Instant::now()));
    }
}
