//! What the relay counts, for `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

/// A pulled stream and the origin it comes from now.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// Stream name.
    pub stream: String,
    /// Origin as configured.
    pub origin: String,
}

/// How a failover joined the new origin's packets.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JoinLabel {
    /// `continuous`, `gap` or `rebased`.
    pub join: &'static str,
}

media_core::metrics! {
    /// The relay's counters, both sides; cheap to clone.
    pub struct RelayMetrics under "relay" {
        /// Streams sent to edges now
        pub served_streams: Gauge,
        /// Bytes sent to edges
        pub bytes_out as "sent_bytes": Counter,
        /// Relay connections refused at the total or per-address cap
        pub refused_connections: Counter,
        /// Relay requests with a token this origin does not know
        pub refused_edges: Counter,
        /// Streams pulled from origins now
        pub pulls: Gauge,
        /// Pulls started
        pub pulls_started: Counter,
        /// Bytes received from origins
        pub bytes_in as "received_bytes": Counter,
        /// 1 for the origin each pulled stream comes from now
        pub current_origin: Family<SourceLabel, Gauge>,
        /// Switches to another origin, by join
        pub failovers: Family<JoinLabel, Counter>,
        /// From the old origin's last packet to the new one's first
        pub failover_stall_seconds: Histogram =
            Histogram::new([0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0]),
    }
}
