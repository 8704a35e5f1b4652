//! What the origin reports, so a store outage or a broken encoder is visible
//! on `/metrics`.

use prometheus_client::metrics::{counter::Counter, gauge::Gauge};

media_core::metrics! {
    /// What the HLS origin reports, so a store outage is visible on /metrics.
    pub struct HlsMetrics under "hls" {
        /// HLS segments stored
        pub segments_stored: Counter,
        /// HLS segments the store did not take, left out of playlists
        pub segments_lost: Counter,
        /// HLS playlist writes that failed
        pub playlist_errors: Counter,
        /// Streams being packaged to HLS
        pub packagers: Gauge,
        /// HLS segments waiting for the origin store, all streams
        pub upload_queue: Gauge,
        /// HLS segments cut without a keyframe at the segment length cap
        pub forced_cuts: Counter,
    }
}
