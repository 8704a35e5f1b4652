//! What the origin reports, so a store outage or a broken encoder is visible
//! on `/metrics`.

use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use prometheus_client::registry::Registry;

/// What the HLS origin reports, so a store outage is visible on /metrics.
#[derive(Clone, Debug, Default)]
pub struct HlsMetrics {
    /// Segments stored.
    pub segments_stored: Counter,
    /// Segments the store would not take after retries; left out of playlists.
    pub segments_lost: Counter,
    /// Playlist writes that failed (the next one replaces it).
    pub playlist_errors: Counter,
    /// Streams being packaged.
    pub packagers: Gauge,
    /// Segments waiting for the store (grows during an outage).
    pub upload_queue: Gauge,
    /// Segments cut without a keyframe (an encoder that stopped sending them).
    pub forced_cuts: Counter,
}

impl HlsMetrics {
    /// Adds these metrics to `registry` under the `hls` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("hls");
        r.register(
            "segments_stored",
            "HLS segments stored",
            self.segments_stored.clone(),
        );
        r.register(
            "segments_lost",
            "HLS segments the store did not take, left out of playlists",
            self.segments_lost.clone(),
        );
        r.register(
            "playlist_errors",
            "HLS playlist writes that failed",
            self.playlist_errors.clone(),
        );
        r.register(
            "upload_queue",
            "HLS segments waiting for the origin store, all streams",
            self.upload_queue.clone(),
        );
        r.register(
            "forced_cuts",
            "HLS segments cut without a keyframe at the segment length cap",
            self.forced_cuts.clone(),
        );
        r.register(
            "packagers",
            "Streams being packaged to HLS",
            self.packagers.clone(),
        );
    }
}
