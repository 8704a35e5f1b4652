//! What the relay counts, for `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

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

/// The relay's counters, both sides; cheap to clone.
#[derive(Clone, Debug)]
pub struct RelayMetrics {
    /// Origin side: streams being sent to edges now.
    pub served_streams: Gauge,
    /// Origin side: bytes sent to edges.
    pub bytes_out: Counter,
    /// Origin side: connections refused at the total or per-address cap.
    pub refused_connections: Counter,
    /// Origin side: requests whose token the origin does not know.
    pub refused_edges: Counter,
    /// Edge side: streams being pulled now.
    pub pulls: Gauge,
    /// Edge side: pulls started (one per stream however many players).
    pub pulls_started: Counter,
    /// Edge side: bytes received from origins (the current and the standby).
    pub bytes_in: Counter,
    /// Edge side: 1 for the origin each pulled stream comes from now.
    pub current_origin: Family<SourceLabel, Gauge>,
    /// Edge side: failovers, by how the new origin was joined.
    pub failovers: Family<JoinLabel, Counter>,
    /// Edge side: from the last packet of the old origin to the first of the new.
    pub failover_stall_seconds: Histogram,
}

impl Default for RelayMetrics {
    fn default() -> Self {
        Self {
            served_streams: Gauge::default(),
            bytes_out: Counter::default(),
            refused_connections: Counter::default(),
            refused_edges: Counter::default(),
            pulls: Gauge::default(),
            pulls_started: Counter::default(),
            bytes_in: Counter::default(),
            current_origin: Family::default(),
            failovers: Family::default(),
            failover_stall_seconds: Histogram::new([0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0]),
        }
    }
}

impl RelayMetrics {
    /// Registers every metric under `relay_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("relay");
        r.register(
            "served_streams",
            "Streams sent to edges now",
            self.served_streams.clone(),
        );
        r.register("sent_bytes", "Bytes sent to edges", self.bytes_out.clone());
        r.register(
            "refused_connections",
            "Relay connections refused at the total or per-address cap",
            self.refused_connections.clone(),
        );
        r.register(
            "refused_edges",
            "Relay requests with a token this origin does not know",
            self.refused_edges.clone(),
        );
        r.register(
            "pulls",
            "Streams pulled from origins now",
            self.pulls.clone(),
        );
        r.register("pulls_started", "Pulls started", self.pulls_started.clone());
        r.register(
            "received_bytes",
            "Bytes received from origins",
            self.bytes_in.clone(),
        );
        r.register(
            "current_origin",
            "1 for the origin each pulled stream comes from now",
            self.current_origin.clone(),
        );
        r.register(
            "failovers",
            "Switches to another origin, by join",
            self.failovers.clone(),
        );
        r.register(
            "failover_stall_seconds",
            "From the old origin's last packet to the new one's first",
            self.failover_stall_seconds.clone(),
        );
    }
}
