//! Prometheus metrics of the RTMP server and clients.

use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use prometheus_client::registry::Registry;

/// RTMP counters; cheap to clone (shared atomics).
#[derive(Clone, Debug, Default)]
pub struct RtmpMetrics {
    /// Open connections.
    pub connections: Gauge,
    /// Connections accepted since start.
    pub connections_accepted: Counter,
    /// Connections closed at accept because the limit was reached.
    pub connections_rejected: Counter,
    /// Connections closed on accept because their address held too many.
    pub connections_rejected_address: Counter,
    /// Connections refused for an app or stream name too long or not printable.
    pub bad_names: Counter,
    /// Players closed because their stream did not go live in time.
    pub player_wait_expired: Counter,
    /// Connections closed for a protocol violation or timeout.
    pub protocol_errors: Counter,
    /// Connections publishing now.
    pub publishers: Gauge,
    /// Connections playing now.
    pub players: Gauge,
    /// Publish attempts refused (bad key, stream busy).
    pub publish_refused: Counter,
    /// Bytes read from sockets.
    pub bytes_in: Counter,
    /// Bytes written to sockets.
    pub bytes_out: Counter,
    /// RTMPS connections closed before their TLS handshake for coming
    /// faster than the handshake rate.
    pub tls_handshakes_refused: Counter,
}

impl RtmpMetrics {
    /// Adds these metrics to `registry` under the `rtmp` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("rtmp");
        r.register(
            "connections",
            "Open RTMP connections",
            self.connections.clone(),
        );
        r.register(
            "connections_accepted",
            "RTMP connections accepted",
            self.connections_accepted.clone(),
        );
        r.register(
            "connections_rejected",
            "RTMP connections refused at the connection limit",
            self.connections_rejected.clone(),
        );
        r.register(
            "connections_rejected_address",
            "RTMP connections refused at the per-address limit",
            self.connections_rejected_address.clone(),
        );
        r.register(
            "tls_handshakes_refused",
            "RTMPS connections closed before their TLS handshake at the handshake rate",
            self.tls_handshakes_refused.clone(),
        );
        r.register(
            "bad_names",
            "RTMP connections refused for a bad app or stream name",
            self.bad_names.clone(),
        );
        r.register(
            "player_wait_expired",
            "RTMP players closed because their stream did not go live in time",
            self.player_wait_expired.clone(),
        );
        r.register(
            "protocol_errors",
            "RTMP connections closed for malformed input or timeouts",
            self.protocol_errors.clone(),
        );
        r.register("publishers", "RTMP publishers", self.publishers.clone());
        r.register("players", "RTMP players", self.players.clone());
        r.register(
            "publish_refused",
            "Publish attempts refused",
            self.publish_refused.clone(),
        );
        r.register(
            "bytes_in",
            "Bytes received over RTMP",
            self.bytes_in.clone(),
        );
        r.register("bytes_out", "Bytes sent over RTMP", self.bytes_out.clone());
    }
}
