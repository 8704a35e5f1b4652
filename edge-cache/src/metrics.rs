//! What the edge counts, for `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

/// One origin, by its index and address.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OriginLabel {
    /// As configured (credentials never appear in an origin's name).
    pub origin: String,
}

/// One origin and how a fetch from it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FetchLabel {
    /// As configured.
    pub origin: String,
    /// `ok`, `not_found`, `error`, `timeout`.
    pub result: &'static str,
}

/// One stream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabel {
    /// Its name (the first path element below `/hls/`).
    pub stream: String,
}

/// Streams an edge counts traffic of; requests for more streams count only
/// in the totals (object names come from viewers: a stranger must not grow
/// the metrics without bound).
pub const MAX_COUNTED_STREAMS: usize = 1000;

/// Requests answered and body bytes sent per stream: what operators see as
/// a stream's HLS audience traffic, and what the edge reports to control.
/// Counts into [`EdgeMetrics`]'s per-stream families.
#[derive(Clone, Debug)]
pub struct StreamTraffic {
    requests: Family<StreamLabel, Counter>,
    bytes: Family<StreamLabel, Counter>,
    /// The same counters by name, for the heartbeat and a lookup that does
    /// not build a label.
    counted: std::sync::Arc<dashmap::DashMap<String, (Counter, Counter)>>,
}

impl StreamTraffic {
    /// Counts into `metrics`' per-stream families.
    pub fn new(metrics: &EdgeMetrics) -> Self {
        Self {
            requests: metrics.stream_requests.clone(),
            bytes: metrics.stream_bytes_out.clone(),
            counted: Default::default(),
        }
    }

    /// The request and byte counters of `stream`, made on its first
    /// request while fewer than [`MAX_COUNTED_STREAMS`] are counted.
    pub fn of(&self, stream: &str) -> Option<(Counter, Counter)> {
        if let Some(c) = self.counted.get(stream) {
            return Some(c.clone());
        }
        if self.counted.len() >= MAX_COUNTED_STREAMS {
            return None;
        }
        let label = StreamLabel {
            stream: stream.to_owned(),
        };
        let pair = (
            self.requests.get_or_create(&label).clone(),
            self.bytes.get_or_create(&label).clone(),
        );
        self.counted.insert(stream.to_owned(), pair.clone());
        Some(pair)
    }

    /// Each counted stream's (requests, bytes) since the edge started.
    pub fn totals(&self) -> Vec<(String, u64, u64)> {
        self.counted
            .iter()
            .map(|e| (e.key().clone(), e.value().0.get(), e.value().1.get()))
            .collect()
    }
}

/// Buckets of the time to an origin's response head (seconds).
const ORIGIN_SECONDS: [f64; 8] = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0];

media_core::metrics! {
    /// The edge's counters; cheap to clone (each metric is an `Arc`).
    pub struct EdgeMetrics under "edge" {
        /// Requests answered fresh from the cache
        pub hits: Counter,
        /// Requests that started an origin fetch
        pub misses: Counter,
        /// Requests answered with a stale object
        pub stale: Counter,
        /// Requests that joined a fetch in flight
        pub collapsed: Counter,
        /// Origin fetches by origin and result
        pub origin_fetches: Family<FetchLabel, Counter>,
        /// Time to an origin's response head
        pub origin_seconds as "origin_response_seconds": Family<OriginLabel, Histogram> =
            Family::new_with_constructor(|| Histogram::new(ORIGIN_SECONDS.iter().copied())),
        /// Held LL-HLS requests also asked of the next origin because the first was slow
        pub hedged_fetches: Counter,
        /// Body bytes sent to clients
        pub bytes_out: Counter,
        /// Body bytes received from origins
        pub bytes_in: Counter,
        /// Bytes held by the memory tier
        pub memory_bytes: Gauge,
        /// Objects evicted for space (memory and disk)
        pub evictions: Counter,
        /// Bytes held by the disk tier
        pub disk_bytes: Gauge,
        /// Requests answered from the disk tier
        pub disk_hits: Counter,
        /// Origin fetches in flight
        pub fills as "fills_in_flight": Gauge,
        /// Requests refused (bad path, too many fetches in flight)
        pub refused: Counter,
        /// LL-HLS blocking reloads refused as out of the playlist's reach
        pub refused_ll as "ll_refused": Counter,
        /// Requests answered with an object (2xx, 304) per stream
        pub stream_requests: Family<StreamLabel, Counter>,
        /// Body bytes sent to clients per stream
        pub stream_bytes_out: Family<StreamLabel, Counter>,
        /// Bytes of fetched bodies held for clients still reading them
        pub streaming_bytes: Gauge,
    }
}
