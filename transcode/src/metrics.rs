//! What the ladder reports on /metrics.

use prometheus_client::metrics::{counter::Counter, gauge::Gauge};

media_core::metrics! {
    /// Counters shared by every ladder of the process.
    pub struct LadderMetrics under "transcode" {
        /// Transcoding ladders running
        pub ladders: Gauge,
        /// Source frames decoded
        pub frames_decoded: Counter,
        /// Frames encoded, all rungs
        pub frames_encoded: Counter,
        /// Source packets the decoder refused (skipped to the next keyframe)
        pub decode_errors: Counter,
        /// Source video packets skipped while waiting for a keyframe
        pub skipped_packets: Counter,
        /// Rungs stopped by an encoder error
        pub encode_errors: Counter,
    }
}
