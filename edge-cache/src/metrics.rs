//! What the edge counts, for `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

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
#[derive(Clone, Debug, Default)]
pub struct StreamTraffic {
    requests: Family<StreamLabel, Counter>,
    bytes: Family<StreamLabel, Counter>,
    /// The same counters by name, for the heartbeat and a lookup that does
    /// not build a label.
    counted: std::sync::Arc<dashmap::DashMap<String, (Counter, Counter)>>,
}

impl StreamTraffic {
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

/// The edge's counters; cheap to clone (each metric is an `Arc`).
#[derive(Clone, Debug)]
pub struct EdgeMetrics {
    /// Answered from the cache, fresh.
    pub hits: Counter,
    /// Started an origin fetch.
    pub misses: Counter,
    /// Answered from the cache, stale (while revalidating or on error).
    pub stale: Counter,
    /// Joined a fetch another request started.
    pub collapsed: Counter,
    /// Origin fetches by origin and result.
    pub origin_fetches: Family<FetchLabel, Counter>,
    /// Time to an origin's response head, by origin.
    pub origin_seconds: Family<OriginLabel, Histogram>,
    /// Held requests (LL-HLS) also asked of the next origin because the
    /// first was slow to answer.
    pub hedged_fetches: Counter,
    /// Body bytes sent to clients.
    pub bytes_out: Counter,
    /// Body bytes received from origins.
    pub bytes_in: Counter,
    /// Bytes held by the memory tier.
    pub memory_bytes: Gauge,
    /// Bytes held by the disk tier.
    pub disk_bytes: Gauge,
    /// Requests answered from the disk tier.
    pub disk_hits: Counter,
    /// Objects evicted for space.
    pub evictions: Counter,
    /// Fetches in flight.
    pub fills: Gauge,
    /// Requests refused: bad path, too many fills.
    pub refused: Counter,
    /// LL-HLS blocking reloads refused as out of the playlist's reach.
    pub refused_ll: Counter,
    /// Bytes of fetched bodies held for clients still reading them.
    pub streaming_bytes: Gauge,
    /// Requests and bytes per stream.
    pub streams: StreamTraffic,
}

impl Default for EdgeMetrics {
    fn default() -> Self {
        Self {
            hits: Counter::default(),
            misses: Counter::default(),
            stale: Counter::default(),
            collapsed: Counter::default(),
            origin_fetches: Family::default(),
            origin_seconds: Family::new_with_constructor(|| {
                Histogram::new(
                    [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
                        .iter()
                        .copied(),
                )
            }),
            hedged_fetches: Counter::default(),
            bytes_out: Counter::default(),
            bytes_in: Counter::default(),
            memory_bytes: Gauge::default(),
            disk_bytes: Gauge::default(),
            disk_hits: Counter::default(),
            evictions: Counter::default(),
            fills: Gauge::default(),
            refused: Counter::default(),
            refused_ll: Counter::default(),
            streaming_bytes: Gauge::default(),
            streams: StreamTraffic::default(),
        }
    }
}

impl EdgeMetrics {
    /// Adds these metrics under the `edge` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("edge");
        r.register(
            "hits",
            "Requests answered fresh from the cache",
            self.hits.clone(),
        );
        r.register(
            "misses",
            "Requests that started an origin fetch",
            self.misses.clone(),
        );
        r.register(
            "stale",
            "Requests answered with a stale object",
            self.stale.clone(),
        );
        r.register(
            "collapsed",
            "Requests that joined a fetch in flight",
            self.collapsed.clone(),
        );
        r.register(
            "origin_fetches",
            "Origin fetches by origin and result",
            self.origin_fetches.clone(),
        );
        r.register(
            "origin_response_seconds",
            "Time to an origin's response head",
            self.origin_seconds.clone(),
        );
        r.register(
            "hedged_fetches",
            "Held LL-HLS requests also asked of the next origin because the first was slow",
            self.hedged_fetches.clone(),
        );
        r.register(
            "bytes_out",
            "Body bytes sent to clients",
            self.bytes_out.clone(),
        );
        r.register(
            "bytes_in",
            "Body bytes received from origins",
            self.bytes_in.clone(),
        );
        r.register(
            "memory_bytes",
            "Bytes held by the memory tier",
            self.memory_bytes.clone(),
        );
        r.register(
            "evictions",
            "Objects evicted for space (memory and disk)",
            self.evictions.clone(),
        );
        r.register(
            "disk_bytes",
            "Bytes held by the disk tier",
            self.disk_bytes.clone(),
        );
        r.register(
            "disk_hits",
            "Requests answered from the disk tier",
            self.disk_hits.clone(),
        );
        r.register(
            "fills_in_flight",
            "Origin fetches in flight",
            self.fills.clone(),
        );
        r.register(
            "refused",
            "Requests refused (bad path, too many fetches in flight)",
            self.refused.clone(),
        );
        r.register(
            "ll_refused",
            "LL-HLS blocking reloads refused as out of the playlist's reach",
            self.refused_ll.clone(),
        );
        r.register(
            "stream_requests",
            "Requests answered with an object (2xx, 304) per stream",
            self.streams.requests.clone(),
        );
        r.register(
            "stream_bytes_out",
            "Body bytes sent to clients per stream",
            self.streams.bytes.clone(),
        );
        r.register(
            "streaming_bytes",
            "Bytes of fetched bodies held for clients still reading them",
            self.streaming_bytes.clone(),
        );
    }
}
