//! What a subscriber needs before the first packet: the codec and its decoder config.

use bytes::Bytes;

use crate::TrackKind;
use crate::codec::{AacConfig, Av1Config, AvcConfig, CodecError, HevcConfig};

/// The codecs Ferry carries end to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// H.264 / AVC in AVCC (length-prefixed) form.
    H264,
    /// H.265 / HEVC in length-prefixed form (Enhanced RTMP `hvc1`).
    H265,
    /// AV1, low-overhead OBUs as in ISOBMFF (Enhanced RTMP `av01`).
    Av1,
    /// AAC, raw access units (no ADTS headers).
    Aac,
}

impl Codec {
    /// The track kind this codec belongs on.
    pub fn kind(self) -> TrackKind {
        match self {
            Codec::H264 | Codec::H265 | Codec::Av1 => TrackKind::Video,
            Codec::Aac => TrackKind::Audio,
        }
    }
}

/// A track's codec and decoder configuration, validated once at ingest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackInfo {
    /// The codec.
    pub codec: Codec,
    /// The decoder config exactly as received: an `AVCDecoderConfigurationRecord`
    /// (avcC) for H.264, an `AudioSpecificConfig` for AAC.
    pub config: Bytes,
}

impl TrackInfo {
    /// An H.264 track; refuses an avcC that does not parse, so every consumer can
    /// rely on having SPS/PPS.
    pub fn h264(avcc: Bytes) -> Result<Self, CodecError> {
        AvcConfig::parse(&avcc)?;
        Ok(Self {
            codec: Codec::H264,
            config: avcc,
        })
    }

    /// An HEVC track; refuses an hvcC that does not parse.
    pub fn h265(hvcc: Bytes) -> Result<Self, CodecError> {
        HevcConfig::parse(&hvcc)?;
        Ok(Self {
            codec: Codec::H265,
            config: hvcc,
        })
    }

    /// An AV1 track; refuses an av1C that does not parse.
    pub fn av1(av1c: Bytes) -> Result<Self, CodecError> {
        Av1Config::parse(&av1c)?;
        Ok(Self {
            codec: Codec::Av1,
            config: av1c,
        })
    }

    /// An AAC track; refuses an AudioSpecificConfig that does not parse.
    pub fn aac(asc: Bytes) -> Result<Self, CodecError> {
        AacConfig::parse(&asc)?;
        Ok(Self {
            codec: Codec::Aac,
            config: asc,
        })
    }

    /// The track kind.
    pub fn kind(&self) -> TrackKind {
        self.codec.kind()
    }
}
