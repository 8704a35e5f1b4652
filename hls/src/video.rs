//! The video codecs HLS carries: H.264 (TS and fMP4), HEVC and AV1 (fMP4
//! only, as Apple's HLS authoring spec has it).

use media_core::codec::{Av1Config, AvcConfig, HevcConfig, hevc_sps_resolution, sps_resolution};

/// A video track's parsed decoder config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VideoConfig {
    /// H.264 (avcC).
    Avc(AvcConfig),
    /// HEVC (hvcC).
    Hevc(HevcConfig),
    /// AV1 (av1C).
    Av1(Av1Config),
}

impl VideoConfig {
    /// The RFC 6381 string for `CODECS`.
    pub fn codec_string(&self) -> String {
        match self {
            VideoConfig::Avc(c) => c.codec_string(),
            VideoConfig::Hevc(c) => c.codec_string(),
            VideoConfig::Av1(c) => c.codec_string(),
        }
    }

    /// Picture size from the first SPS, for `RESOLUTION` and the sample entry.
    pub fn resolution(&self) -> Option<(u32, u32)> {
        match self {
            VideoConfig::Avc(c) => c.sps.first().and_then(|s| sps_resolution(s)),
            VideoConfig::Hevc(c) => c.sps.first().and_then(|s| hevc_sps_resolution(s)),
            VideoConfig::Av1(c) => c.resolution(),
        }
    }

    /// The H.264 config, for the MPEG-TS muxer (which carries H.264 only).
    pub fn avc(&self) -> Option<&AvcConfig> {
        match self {
            VideoConfig::Avc(c) => Some(c),
            VideoConfig::Hevc(_) | VideoConfig::Av1(_) => None,
        }
    }

    /// The MP4 sample entry and config box types: `avc1`/`avcC`,
    /// `hvc1`/`hvcC`, `av01`/`av1C`.
    pub fn mp4_boxes(&self) -> (&'static [u8; 4], &'static [u8; 4]) {
        match self {
            VideoConfig::Avc(_) => (b"avc1", b"avcC"),
            VideoConfig::Hevc(_) => (b"hvc1", b"hvcC"),
            VideoConfig::Av1(_) => (b"av01", b"av1C"),
        }
    }
}
