//! `[edge]`: what an operator sets for a caching edge.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::object::FreshnessPolicy;

/// The disk tier's default budget: what nginx users give `proxy_cache_path
/// max_size` on a small edge.
pub const DEFAULT_DISK_BYTES: u64 = 4 << 30;

/// The caching edge's settings (`[edge]` in Ferry's configuration file,
/// `FERRY_EDGE__*` in the environment).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// Origins in order of preference: HTTP base URLs (`http://HOST:8080`)
    /// holding `/hls/...`, or `s3://BUCKET` read with the `[store]`
    /// credentials. With `rtmp` on, RTMP players' streams are pulled from
    /// the Ferry origins among them (over their relay) and from foreign RTMP
    /// servers named `rtmp://HOST[:PORT]/APP` (used for nothing else).
    pub origins: Vec<String>,
    /// The URL viewers reach this edge at (reported to the control plane).
    pub public_url: String,
    /// Bytes of objects the memory tier holds.
    pub memory_bytes: u64,
    /// Bytes of segments the disk tier holds under `DATA_DIR/edge-cache`
    /// (emptied on start). Segments live there once complete, in the page
    /// cache when hot, and go out with `sendfile`; 0: no disk tier, segments
    /// stay in the memory tier (the heap).
    pub disk_bytes: u64,
    /// The largest object the edge fetches; larger answers get 502.
    pub max_object_bytes: u64,
    /// Origin fetches in flight at once; more requests for uncached objects get 503.
    pub max_fills: usize,
    /// LL-HLS blocking reloads in flight to the origins at once (a pool
    /// apart from `max_fills`); more get 503.
    pub max_blocking_fills: usize,
    /// LL-HLS blocking reloads in flight for one stream; more get 503.
    pub max_blocking_fills_per_stream: usize,
    /// Origin fetches in flight that one client address started; more get 429.
    pub max_fills_per_client: usize,
    /// Client addresses exempt from `max_fills_per_client`: the directors
    /// (each reads every viewer's playlists from one address) and other
    /// nodes of the farm.
    pub trusted_clients: Vec<String>,
    /// Bytes of fetched bodies held for clients still reading them; past
    /// it, requests that need a new origin fetch get 503.
    pub streaming_bytes: u64,
    /// Milliseconds an origin has to send its response head before the next is tried.
    pub first_byte_timeout_ms: u64,
    /// Milliseconds an origin body may stall before the fetch fails.
    pub body_timeout_ms: u64,
    /// Milliseconds a 404 is kept (0: never kept).
    pub not_found_ms: u64,
    /// Seconds a segment without `max-age` is kept.
    pub segment_seconds: u64,
    /// A playlist is served stale while no origin answers for at most this
    /// many target durations, then 504.
    pub playlist_stale_targets: f64,
    /// A bearer token for `POST /purge/STREAM`; empty disables purging.
    pub purge_token: String,
    /// Viewers this edge is sized for, relative to the other edges (the
    /// director gives edges shares of viewers in proportion).
    pub capacity: u32,
    /// The edge pool (a content-steering pathway: players fall back from one
    /// pool to the next on their own).
    pub pool: String,
    /// Serve RTMP players on `[rtmp] listen`, pulling each stream from the
    /// origins' relays on the first player (`ferry edge --rtmp-listen`).
    pub rtmp: bool,
    /// On SIGTERM or ctrl-c, keep serving this many seconds while reporting
    /// draining (directors stop naming the edge within one poll; players
    /// finish fetches from old playlists), then stop. 0: stop at once.
    /// Under Kubernetes, below `terminationGracePeriodSeconds`.
    pub drain_seconds: u64,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            origins: Vec::new(),
            public_url: String::new(),
            memory_bytes: 512 << 20,
            disk_bytes: DEFAULT_DISK_BYTES,
            max_object_bytes: 64 << 20,
            max_fills: 1024,
            max_blocking_fills: 256,
            max_blocking_fills_per_stream: 64,
            max_fills_per_client: 128,
            trusted_clients: Vec::new(),
            streaming_bytes: 256 << 20,
            first_byte_timeout_ms: 1000,
            body_timeout_ms: 10_000,
            not_found_ms: 1000,
            segment_seconds: 86_400,
            playlist_stale_targets: 3.0,
            purge_token: String::new(),
            capacity: 1000,
            pool: "default".into(),
            drain_seconds: 0,
            rtmp: false,
        }
    }
}

impl EdgeConfig {
    /// The freshness defaults these settings give.
    pub fn freshness(&self) -> FreshnessPolicy {
        FreshnessPolicy {
            not_found: Duration::from_millis(self.not_found_ms),
            segment: Duration::from_secs(self.segment_seconds),
            playlist_stale_targets: self.playlist_stale_targets,
            ..FreshnessPolicy::default()
        }
    }

    /// Checks what the types cannot; with no origin configured, the edge
    /// must `follow_control` (learn them from the control plane).
    pub fn validate(&self, follow_control: bool) -> Result<(), String> {
        if self.origins.is_empty() && !follow_control {
            return Err(
                "[edge] origins: at least one origin URL is needed (or [control] url to follow its origins)"
                    .into(),
            );
        }
        for o in &self.origins {
            let ok = ["http://", "https://", "s3://", "rtmp://"]
                .iter()
                .any(|p| o.starts_with(p));
            if !ok || o.contains('?') || o.contains('#') {
                return Err(format!(
                    "[edge] origins: {o:?} is not http://HOST[:PORT][/PATH], s3://BUCKET or rtmp://HOST[:PORT]/APP"
                ));
            }
        }
        if self.memory_bytes == 0
            || self.max_object_bytes == 0
            || self.max_fills == 0
            || self.max_blocking_fills == 0
            || self.max_blocking_fills_per_stream == 0
            || self.max_fills_per_client == 0
            || self.streaming_bytes == 0
        {
            return Err(
                "[edge] memory_bytes, max_object_bytes, streaming_bytes and the fill limits must be above 0".into(),
            );
        }
        if self.first_byte_timeout_ms == 0 || self.body_timeout_ms == 0 {
            return Err("[edge] timeouts must be above 0".into());
        }
        let pool_ok = (1..=32).contains(&self.pool.len())
            && self
                .pool
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !pool_ok {
            return Err("[edge] pool: 1-32 letters, digits, '.', '-' or '_'".into());
        }
        if let Some(bad) = self
            .trusted_clients
            .iter()
            .find(|a| a.parse::<std::net::IpAddr>().is_err())
        {
            return Err(format!(
                "[edge] trusted_clients: {bad:?} is not an IP address"
            ));
        }
        if !(1..=1_000_000).contains(&self.capacity) {
            return Err("[edge] capacity must be within 1..=1000000".into());
        }
        if !(0.0..=100.0).contains(&self.playlist_stale_targets) {
            return Err("[edge] playlist_stale_targets must be within 0..100".into());
        }
        Ok(())
    }
}
