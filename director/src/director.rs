//! The director: the live edge sets (polled from control, [`crate::pools`]),
//! the viewer table ([`crate::assign`]), and the caches of playlists read
//! from edges and rewritten for them ([`crate::playlists`]); this module
//! fetches playlists from edges with failover and answers viewers.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::assign::Assignments;
use crate::config::DirectorConfig;
use crate::metrics::{DirectorMetrics, EdgeLabel, PlacementLabel, ReasonLabel};
use crate::playlists::{Fetched, Fetches, Rewrites};
use crate::pools::{EdgeSet, Pools, Suspects};
use crate::rewrite;
use crate::ring::hash;

/// How long an edge may take to answer a playlist request.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// How long an edge may hold an LL-HLS blocking reload (the origin holds it
/// at most three target durations).
const BLOCKING_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request got no playlist.
#[derive(Debug, thiserror::Error)]
pub enum DirectorError {
    /// No edge is live (503).
    #[error("no live edges")]
    NoEdge,
    /// No edge could give the playlist (502), or it does not exist (404).
    #[error("playlist unavailable from every edge: {0}")]
    Fetch(String),
    /// The playlist does not exist.
    #[error("not found")]
    NotFound,
}

/// Where the director learns the edges: the control plane over HTTP
/// ([`from_control`]), or the one in the same process (`ferry serve`).
pub type EdgeSource = Arc<
    dyn Fn() -> std::pin::Pin<
            Box<
                dyn std::future::Future<
                        Output = Result<Vec<control_client::types::EdgeRow>, String>,
                    > + Send,
            >,
        > + Send
        + Sync,
>;

/// The edge list of the control plane at `client`.
pub fn from_control(client: Arc<control_client::ControlClient>) -> EdgeSource {
    Arc::new(move || {
        let client = client.clone();
        Box::pin(async move { client.edges().await.map_err(|e| e.to_string()) })
    })
}

/// How long a player keeps a steering manifest before asking again.
pub const STEERING_TTL_SECONDS: u64 = 10;

/// The director; cheap to clone.
#[derive(Clone)]
pub struct Director {
    inner: Arc<Inner>,
}

struct Inner {
    config: DirectorConfig,
    edges: RwLock<Arc<Pools>>,
    viewers: Mutex<Assignments>,
    suspects: Mutex<Suspects>,
    last_sweep: Mutex<Instant>,
    playlists: Mutex<Fetches>,
    rewritten: Mutex<Rewrites>,
    http: reqwest::Client,
    metrics: DirectorMetrics,
    tokens: crate::token::TokenKey,
    new_viewers: crate::token::NewViewerLimit,
    /// Whether an edge list has arrived since start.
    listed: tokio::sync::watch::Sender<bool>,
}

/// A playlist for a viewer.
pub struct Served {
    /// The body.
    pub body: Arc<str>,
    /// The edge its media URIs name (none for a multivariant playlist).
    pub edge: Option<String>,
}

impl Director {
    /// A director with no edges yet.
    pub fn new(config: DirectorConfig, metrics: DirectorMetrics) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_millis(500))
            .timeout(BLOCKING_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            inner: Arc::new(Inner {
                viewers: Mutex::new(
                    Assignments::new(config.policy, config.epsilon, config.min_viewers_per_edge)
                        .with_settle(Duration::from_secs(config.settle_seconds)),
                ),
                tokens: crate::token::TokenKey::new(&config.token_secret),
                new_viewers: crate::token::NewViewerLimit::new(
                    config.new_viewers_per_second,
                    config.new_viewers_burst,
                ),
                config,
                edges: RwLock::default(),
                suspects: Mutex::default(),
                last_sweep: Mutex::new(Instant::now()),
                playlists: Mutex::default(),
                rewritten: Mutex::default(),
                http,
                metrics,
                listed: tokio::sync::watch::Sender::new(false),
            }),
        })
    }

    /// The counters.
    pub fn metrics(&self) -> &DirectorMetrics {
        &self.inner.metrics
    }

    /// The viewer's token if it is one this director (or one sharing its
    /// secret) signed.
    pub fn verified<'a>(&self, token: Option<&'a str>) -> Option<&'a str> {
        token.filter(|t| self.inner.tokens.verify(t))
    }

    /// A token for a new viewer from `client`, or `None` when that address
    /// starts new viewers faster than its allowance.
    pub fn new_viewer(&self, client: Option<std::net::IpAddr>) -> Option<String> {
        if let Some(ip) = client
            && !self.inner.new_viewers.allow(ip, Instant::now())
        {
            self.inner.metrics.new_viewers_limited.inc();
            return None;
        }
        Some(self.inner.tokens.issue())
    }

    /// The current edge sets, by pool.
    pub fn edges(&self) -> Arc<Pools> {
        self.inner
            .edges
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Where each stream sits now: per edge its viewers and bound, per
    /// stream its viewers on each edge and what the packing plans there.
    pub fn placement(&self) -> crate::assign::PlacementReport {
        let pools = self.edges();
        let viewers = self.inner.viewers.lock().unwrap_or_else(|e| e.into_inner());
        viewers.report(pools.sets.values().map(|s| &s.ring))
    }

    /// Replaces the edge sets with the live, non-draining edges of `rows`
    /// (a no-op when nothing changed).
    pub fn set_edges(&self, rows: &[control_client::types::EdgeRow]) {
        self.inner.listed.send_replace(true);
        if self.inner.config.farm_load {
            let farm = rows
                .iter()
                .filter(|r| r.state == "live")
                .map(|r| (r.id.clone(), r.load.connections))
                .collect();
            self.inner
                .viewers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .set_farm(farm);
        }
        let Some(pools) = self.edges().changed(rows) else {
            return;
        };
        info!(version = pools.version, edges = ?pools.edges(), "edge set changed");
        self.inner.metrics.edge_set_changes.inc();
        *self.inner.edges.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(pools);
    }

    /// Waits, at most `limit`, for the first edge list since start. A
    /// director that has just (re)started knows no edge until its first
    /// read of control answers: without this wait its first viewers would be
    /// told "no live edges" (503) by a director that is merely starting.
    pub async fn listed(&self, limit: Duration) {
        let mut listed = self.inner.listed.subscribe();
        let _ = tokio::time::timeout(limit, listed.wait_for(|l| *l)).await;
    }

    /// Pools with a usable edge, least loaded first (viewers per unit of
    /// capacity): the content-steering priority.
    pub fn steering_order(&self) -> Vec<String> {
        let pools = self.edges();
        let viewers = self.inner.viewers.lock().unwrap_or_else(|e| e.into_inner());
        let mut order: Vec<(f64, String)> = pools
            .sets
            .keys()
            .filter(|p| !self.usable(p).ring.is_empty())
            .map(|p| {
                let set = &pools.sets[p];
                let capacity: u64 = set.ring.members().iter().map(|m| u64::from(m.weight)).sum();
                let load: u64 = set.ring.members().iter().map(|m| viewers.load(&m.id)).sum();
                (load as f64 / capacity.max(1) as f64, p.clone())
            })
            .collect();
        order.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        order.into_iter().map(|(_, p)| p).collect()
    }

    /// The steering manifest for a viewer (RFC 8216bis content steering).
    pub fn steering(&self, token: &str) -> Result<String, DirectorError> {
        let order = self.steering_order();
        if order.is_empty() {
            return Err(DirectorError::NoEdge);
        }
        let list: Vec<String> = order.iter().map(|p| format!("\"{p}\"")).collect();
        Ok(format!(
            "{{\"VERSION\":1,\"TTL\":{},\"RELOAD-URI\":\"steering.json?v={token}\",\"PATHWAY-PRIORITY\":[{}]}}\n",
            STEERING_TTL_SECONDS,
            list.join(",")
        ))
    }

    /// `pool`'s ring without edges that recently failed a fetch.
    fn usable(&self, pool: &str) -> Arc<EdgeSet> {
        let Some(set) = self.edges().sets.get(pool).cloned() else {
            return Arc::new(EdgeSet::default());
        };
        lock(&self.inner.suspects).usable(&set, Instant::now())
    }

    /// The pool a request uses: the one it names if that has edges, else the
    /// first in steering order.
    fn pool_for(&self, asked: Option<&str>) -> Result<String, DirectorError> {
        if let Some(p) = asked
            && self.edges().sets.contains_key(p)
        {
            return Ok(p.to_owned());
        }
        self.steering_order()
            .into_iter()
            .next()
            .ok_or(DirectorError::NoEdge)
    }

    fn suspect(&self, id: &str) {
        let until = Instant::now() + Duration::from_millis(self.inner.config.suspect_ms);
        lock(&self.inner.suspects).suspect(id, until);
    }

    /// Reads `path` (`/hls/...`) from the edges, starting at `first`, with a
    /// short cache; an edge that fails is suspected and the next one tried.
    async fn fetch(
        &self,
        set: &EdgeSet,
        first: usize,
        path: &str,
    ) -> Result<Arc<Fetched>, DirectorError> {
        let ttl = Duration::from_millis(self.inner.config.playlist_cache_ms);
        // Keyed by the edge it came from: edges may differ for a moment (one
        // a part behind), and a viewer must get its own edge's playlist.
        if let Some(url) = set.urls.get(first)
            && let Some(f) = lock(&self.inner.playlists).fresh(url, path, ttl, Instant::now())
        {
            return Ok(f);
        }
        let n = set.urls.len();
        let mut last = String::from("no edge");
        for k in 0..n.min(3) {
            let i = (first + k) % n;
            let url = format!("{}{path}", set.urls[i]);
            // A blocking reload is held by the edge until its part exists.
            let timeout = if path.contains("_HLS_msn=") {
                BLOCKING_TIMEOUT
            } else {
                FETCH_TIMEOUT
            };
            match self.inner.http.get(&url).timeout(timeout).send().await {
                Ok(r) if r.status() == 404 => return Err(DirectorError::NotFound),
                Ok(r) if r.status().is_success() => match r.bytes().await {
                    Ok(body) => {
                        let text = String::from_utf8_lossy(&body).into_owned();
                        let fetched = Arc::new(Fetched {
                            at: Instant::now(),
                            version: hash(&body[..]),
                            span: rewrite::sequence_span(&text),
                            text,
                        });
                        lock(&self.inner.playlists).insert(&set.urls[i], path, fetched.clone());
                        return Ok(fetched);
                    }
                    Err(e) => last = e.to_string(),
                },
                Ok(r) => last = format!("status {}", r.status()),
                Err(e) => last = e.to_string(),
            }
            self.inner.metrics.fetch_failures.inc();
            warn!(edge = %set.urls[i], %path, error = %last, "playlist fetch from an edge failed");
            self.suspect(&set.ring.members()[i].id);
        }
        Err(DirectorError::Fetch(last))
    }

    /// The multivariant playlist at `path` for a new viewer `token`.
    pub async fn multivariant(
        &self,
        stream: &str,
        path: &str,
        token: &str,
    ) -> Result<Served, DirectorError> {
        let order = self.steering_order();
        let set = self.usable(order.first().ok_or(DirectorError::NoEdge)?);
        let home = set
            .ring
            .walk(hash(stream))
            .next()
            .ok_or(DirectorError::NoEdge)?;
        let fetched = self.fetch(&set, home, path).await?;
        self.inner.metrics.served.inc();
        Ok(Served {
            body: rewrite::steered(&fetched.text, token, &order, "steering.json").into(),
            edge: None,
        })
    }

    /// The media playlist at `path` for viewer `token` of `stream`, with its
    /// media URIs on the viewer's edge.
    /// `ll_query` is the LL-HLS blocking-reload query (`_HLS_msn=...`), passed
    /// on to the edge, or empty.
    pub async fn media(
        &self,
        stream: &str,
        path: &str,
        ll_query: &str,
        token: &str,
        pool: Option<&str>,
    ) -> Result<Served, DirectorError> {
        let pool = self.pool_for(pool)?;
        // A viewer is placed per pool: its pathways are separate viewers.
        let viewer = format!("{token}@{pool}");
        let mut set = self.usable(&pool);
        for _ in 0..2 {
            // Fetched first, placed after: a request that fails (or names a
            // stream that does not exist) counts as no viewer anywhere.
            let proposal = self
                .inner
                .viewers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .propose(&viewer, stream, &set.ring, Instant::now());
            let (proposed, kept) = match proposal {
                None => return Err(DirectorError::NoEdge),
                Some(crate::assign::Proposal::Kept(a)) => (a.index, Some(a)),
                Some(crate::assign::Proposal::Try(i)) => (i, None),
            };
            let target = if ll_query.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{ll_query}")
            };
            let fetched = match self.fetch(&set, proposed, &target).await {
                Ok(f) => f,
                Err(DirectorError::Fetch(e)) => {
                    // The assigned edge failed: re-assign among the others.
                    let again = self.usable(&pool);
                    if again.urls.len() < set.urls.len() {
                        set = again;
                        continue;
                    }
                    return Err(DirectorError::Fetch(e));
                }
                Err(e) => return Err(e),
            };
            let assigned = match kept {
                Some(a) => a,
                None => {
                    let placed = self
                        .inner
                        .viewers
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .assign(&viewer, stream, &set.ring, Instant::now());
                    let Some(a) = placed else {
                        return Err(DirectorError::NoEdge);
                    };
                    a
                }
            };
            let i = assigned.index;
            if assigned.reason != crate::assign::Reason::Kept {
                self.inner
                    .metrics
                    .placements
                    .get_or_create(&ReasonLabel {
                        reason: assigned.reason.as_str(),
                    })
                    .inc();
            }
            let (first_msn, count) = fetched.span;
            let member = &set.ring.members()[i];
            let new = member.url.as_str();
            let given = {
                let mut viewers = self.inner.viewers.lock().unwrap_or_else(|e| e.into_inner());
                viewers.watching(&viewer, variant_of(stream, path));
                let last_msn = (first_msn + count).saturating_sub(1);
                let given = viewers.given_elsewhere(&viewer, first_msn, last_msn, new);
                if count > 0 {
                    viewers.give(&viewer, first_msn, first_msn + count - 1, new);
                }
                given
            };
            let out = if let Some(given) = given {
                // Moved: segments it was given keep their edges, later ones
                // come from the new one.
                self.inner.metrics.rewritten.inc();
                rewrite::media_by_sequence(
                    &fetched.text,
                    path,
                    |msn| given.url_of(msn).unwrap_or(new),
                    token,
                )
                .into()
            } else {
                self.shared_rewrite(&set, i, path, &fetched, token)
            };
            self.inner.metrics.served.inc();
            return Ok(Served {
                body: out,
                edge: Some(member.id.clone()),
            });
        }
        Err(DirectorError::NoEdge)
    }

    /// The playlist rewritten for edge `i`, from the cache when this version
    /// was rewritten for this edge set already.
    fn shared_rewrite(
        &self,
        set: &EdgeSet,
        i: usize,
        path: &str,
        fetched: &Fetched,
        token: &str,
    ) -> Arc<str> {
        let member = &set.ring.members()[i];
        let version = fetched.version;
        let cached = lock(&self.inner.rewritten).get(path, &member.id, version, set.version);
        if let Some(b) = cached {
            return b;
        }
        self.inner.metrics.rewritten.inc();
        let b: Arc<str> = rewrite::media(&fetched.text, path, &member.url, token).into();
        // Tokens appear only in rendition reports; a playlist with none is
        // the same for every viewer on this edge.
        if !b.contains("v=") {
            lock(&self.inner.rewritten).insert(path, &member.id, version, set.version, b.clone());
        }
        b
    }

    /// Where a segment request that reached the director goes: the
    /// stream's home edge (a fallback; rewritten playlists name edges).
    pub fn redirect(&self, stream: &str, path: &str) -> Result<String, DirectorError> {
        let set = self.usable(&self.pool_for(None)?);
        let i = set
            .ring
            .walk(hash(stream))
            .next()
            .ok_or(DirectorError::NoEdge)?;
        Ok(format!("{}{path}", set.urls[i]))
    }

    /// Forgets idle viewers (a sweep every quarter of the viewer timeout)
    /// and stale caches, and updates the gauges.
    pub fn housekeeping(&self) {
        let now = Instant::now();
        let timeout = Duration::from_secs(self.inner.config.viewer_timeout_seconds);
        let mut viewers = self.inner.viewers.lock().unwrap_or_else(|e| e.into_inner());
        let due = {
            let mut last = self
                .inner
                .last_sweep
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let due = now.duration_since(*last) >= timeout / 4;
            if due {
                *last = now;
            }
            due
        };
        if due {
            viewers.expire(now, timeout);
        }
        self.inner.metrics.viewers.clear();
        for (edge, n) in viewers.loads() {
            self.inner
                .metrics
                .viewers
                .get_or_create(&EdgeLabel { edge: edge.clone() })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        self.inner.metrics.stream_viewers.clear();
        for (stream, edge, n) in viewers.placement() {
            self.inner
                .metrics
                .stream_viewers
                .get_or_create(&PlacementLabel {
                    stream: stream.clone(),
                    edge: edge.clone(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        drop(viewers);
        let ttl = Duration::from_millis(self.inner.config.playlist_cache_ms);
        lock(&self.inner.playlists).expire(ttl * 10, now);
        lock(&self.inner.rewritten).keep_set(self.edges().version);
    }

    /// Reads the edge list from `source` every `poll_ms` until `cancel`.
    pub async fn follow(self, source: EdgeSource, cancel: CancellationToken) {
        let mut tick =
            tokio::time::interval(Duration::from_millis(self.inner.config.poll_ms.max(50)));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            match source().await {
                Ok(rows) => self.set_edges(&rows),
                Err(e) => {
                    warn!(error = %e, "reading the edge list failed; keeping the last one")
                }
            }
            self.housekeeping();
        }
    }
}

/// The lock's value, whether or not a holder panicked (every update here
/// leaves the value whole).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The variant a media playlist at `path` (`/hls/STREAM/VARIANT/index.m3u8`)
/// belongs to: its directory below the stream (`default` for a playlist
/// directly under it).
fn variant_of<'a>(stream: &str, path: &'a str) -> &'a str {
    let rest = path
        .strip_prefix(hls::target::HLS_PREFIX)
        .and_then(|p| p.strip_prefix(stream))
        .and_then(|p| p.strip_prefix('/'))
        .unwrap_or("");
    match rest.rsplit_once('/') {
        Some((dir, _)) if !dir.is_empty() => dir,
        _ => "default",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{Member, Ring};

    /// An HTTP server on loopback answering every path with `body`.
    async fn edge_answering(body: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().fallback(move || async move { body });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_playlist_read_from_one_edge_is_never_served_for_another() {
        let a = edge_answering("#EXTM3U\n#from-a\n").await;
        let b = edge_answering("#EXTM3U\n#from-b\n").await;
        let members: Vec<Member> = [("a", &a), ("b", &b)]
            .iter()
            .map(|(id, url)| Member {
                id: (*id).into(),
                url: (*url).clone(),
                weight: 1,
            })
            .collect();
        let set = EdgeSet {
            version: 1,
            urls: members.iter().map(|m| m.url.clone()).collect(),
            ring: Ring::new(members),
        };
        let d =
            Director::new(DirectorConfig::default(), DirectorMetrics::default()).expect("director");
        let path = "/hls/s/source/index.m3u8";
        let ia = set.urls.iter().position(|u| *u == a).expect("a");
        let ib = set.urls.iter().position(|u| *u == b).expect("b");
        // Within the cache's lifetime, each edge's viewers get that edge's copy.
        let from_a = d.fetch(&set, ia, path).await.expect("a answers");
        let from_b = d.fetch(&set, ib, path).await.expect("b answers");
        assert!(from_a.text.contains("#from-a"), "{}", from_a.text);
        assert!(from_b.text.contains("#from-b"), "{}", from_b.text);
        let again = d.fetch(&set, ia, path).await.expect("cached");
        assert!(Arc::ptr_eq(&again, &from_a), "a cache hit, from a");
    }

    #[tokio::test(start_paused = true)]
    async fn a_starting_director_holds_requests_until_its_first_edge_list() {
        let d =
            Director::new(DirectorConfig::default(), DirectorMetrics::default()).expect("director");
        // No list at all: the wait gives up at its limit.
        let started = tokio::time::Instant::now();
        d.listed(Duration::from_secs(2)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        // A list arriving meanwhile ends the wait at once, even an empty one
        // (control answered: there are no edges).
        let waiting = tokio::spawn({
            let d = d.clone();
            async move {
                let started = tokio::time::Instant::now();
                d.listed(Duration::from_secs(2)).await;
                started.elapsed()
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        d.set_edges(&[]);
        let waited = waiting.await.expect("waiter");
        assert_eq!(waited, Duration::from_millis(300));
        // Later requests do not wait.
        let started = tokio::time::Instant::now();
        d.listed(Duration::from_secs(2)).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
