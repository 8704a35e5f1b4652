//! One coded frame of one track.

use bytes::Bytes;

use crate::Timestamp;

/// Which track of a stream a packet belongs to. A stream carries at most one of each
/// today; variants from the transcoding ladder are separate streams in the hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// Video: H.264 today.
    Video,
    /// Audio: AAC today.
    Audio,
}

/// A coded frame, shared by every subscriber without copying its payload.
///
/// The payload is in the codec's "length-prefixed" form (AVCC NAL units for H.264,
/// raw access units for AAC) exactly as the track's decoder config describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// The track this frame belongs to.
    pub track: TrackKind,
    /// Decode time.
    pub dts: Timestamp,
    /// Presentation time; differs from `dts` when the encoder uses B-frames.
    pub pts: Timestamp,
    /// A random access point: a subscriber may start decoding here.
    pub keyframe: bool,
    /// The coded bytes, reference-counted.
    pub payload: Bytes,
}

impl Packet {
    /// Whether a subscriber that lost packets can restart here. Video restarts on a
    /// keyframe; audio frames are all independent, so audio-only streams restart anywhere.
    pub fn is_sync_point(&self, stream_has_video: bool) -> bool {
        match self.track {
            TrackKind::Video => self.keyframe,
            TrackKind::Audio => !stream_has_video,
        }
    }
}
