//! Counters the hub keeps so operators can see slow subscribers.

use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use prometheus_client::registry::Registry;

/// The hub's Prometheus metrics; cheap to clone (shared atomics).
#[derive(Clone, Debug, Default)]
pub struct HubMetrics {
    /// Streams known to the hub (live, or with subscribers waiting).
    pub streams: Gauge,
    /// Streams with a publisher.
    pub live_streams: Gauge,
    /// Packets a slow subscriber never received because it fell behind.
    pub dropped_packets: Counter,
    /// Times a slow subscriber was moved forward to the next keyframe.
    pub resyncs: Counter,
}

impl HubMetrics {
    /// Adds these metrics to `registry` under the `hub` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("hub");
        r.register("streams", "Streams known to the hub", self.streams.clone());
        r.register(
            "live_streams",
            "Streams with a publisher",
            self.live_streams.clone(),
        );
        r.register(
            "dropped_packets",
            "Packets skipped for subscribers that fell behind",
            self.dropped_packets.clone(),
        );
        r.register(
            "resyncs",
            "Times a slow subscriber was skipped to the next keyframe",
            self.resyncs.clone(),
        );
    }
}
