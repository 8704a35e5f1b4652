//! What the ladder reports on /metrics.

use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use prometheus_client::registry::Registry;

/// Counters shared by every ladder of the process.
#[derive(Clone, Debug, Default)]
pub struct LadderMetrics {
    /// Ladders running (one per transcoded live stream).
    pub ladders: Gauge,
    /// Source frames decoded.
    pub frames_decoded: Counter,
    /// Frames encoded, all rungs together.
    pub frames_encoded: Counter,
    /// Source packets the decoder refused; it skipped to the next keyframe.
    pub decode_errors: Counter,
    /// Source video packets not decoded (waiting for a keyframe).
    pub skipped_packets: Counter,
    /// Rungs that stopped on an encoder error.
    pub encode_errors: Counter,
}

impl LadderMetrics {
    /// Adds these metrics to `registry` under the `transcode` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("transcode");
        r.register(
            "ladders",
            "Transcoding ladders running",
            self.ladders.clone(),
        );
        r.register(
            "frames_decoded",
            "Source frames decoded",
            self.frames_decoded.clone(),
        );
        r.register(
            "frames_encoded",
            "Frames encoded, all rungs",
            self.frames_encoded.clone(),
        );
        r.register(
            "decode_errors",
            "Source packets the decoder refused (skipped to the next keyframe)",
            self.decode_errors.clone(),
        );
        r.register(
            "skipped_packets",
            "Source video packets skipped while waiting for a keyframe",
            self.skipped_packets.clone(),
        );
        r.register(
            "encode_errors",
            "Rungs stopped by an encoder error",
            self.encode_errors.clone(),
        );
    }
}
