//! Prometheus metrics of the RTMP server and clients.

use prometheus_client::metrics::{counter::Counter, gauge::Gauge};

media_core::metrics! {
    /// RTMP counters; cheap to clone (shared atomics).
    pub struct RtmpMetrics under "rtmp" {
        /// Open RTMP connections
        pub connections: Gauge,
        /// RTMP connections accepted
        pub connections_accepted: Counter,
        /// RTMP connections refused at the connection limit
        pub connections_rejected: Counter,
        /// RTMP connections refused at the per-address limit
        pub connections_rejected_address: Counter,
        /// RTMP connections refused for a bad app or stream name
        pub bad_names: Counter,
        /// RTMP players closed because their stream did not go live in time
        pub player_wait_expired: Counter,
        /// RTMP connections closed for malformed input or timeouts
        pub protocol_errors: Counter,
        /// RTMP publishers
        pub publishers: Gauge,
        /// RTMP players
        pub players: Gauge,
        /// Publish attempts refused
        pub publish_refused: Counter,
        /// Bytes received over RTMP
        pub bytes_in: Counter,
        /// Bytes sent over RTMP
        pub bytes_out: Counter,
        /// RTMPS connections closed before their TLS handshake at the handshake rate
        pub tls_handshakes_refused: Counter,
    }
}
