//! Counters the hub keeps so operators can see slow subscribers.

use prometheus_client::metrics::{counter::Counter, gauge::Gauge};

crate::metrics! {
    /// The hub's Prometheus metrics; cheap to clone (shared atomics).
    pub struct HubMetrics under "hub" {
        /// Streams known to the hub
        pub streams: Gauge,
        /// Streams with a publisher
        pub live_streams: Gauge,
        /// Packets skipped for subscribers that fell behind
        pub dropped_packets: Counter,
        /// Times a slow subscriber was skipped to the next keyframe
        pub resyncs: Counter,
    }
}
