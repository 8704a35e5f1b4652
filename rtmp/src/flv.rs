//! FLV audio/video tag bodies (what RTMP audio and video messages carry), to and
//! from media-core's codec-neutral form.

use bytes::Bytes;
use media_core::{Codec, Packet, TrackInfo, TrackKind};

/// FLV codec id of AVC/H.264.
const CODEC_AVC: u8 = 7;
/// Enhanced RTMP: the first byte's flag for an extended video header.
const EX_HEADER: u8 = 0x80;
/// Enhanced RTMP FourCC of HEVC.
pub const FOURCC_HEVC: [u8; 4] = *b"hvc1";
/// Enhanced RTMP FourCC of AV1.
pub const FOURCC_AV1: [u8; 4] = *b"av01";
/// Enhanced RTMP video packet types.
mod ex {
    pub const SEQUENCE_START: u8 = 0;
    pub const CODED_FRAMES: u8 = 1;
    pub const SEQUENCE_END: u8 = 2;
    pub const CODED_FRAMES_X: u8 = 3;
}
/// FLV sound format of AAC.
const SOUND_AAC: u8 = 10;

/// A tag body that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlvError {
    /// Shorter than its fixed header.
    #[error("{kind} tag of {len} bytes is shorter than its header")]
    TooShort {
        /// "audio" or "video".
        kind: &'static str,
        /// Its length.
        len: usize,
    },
}

/// What a video tag carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VideoTag {
    /// The AVC decoder configuration record (avcC).
    SequenceHeader(Bytes),
    /// Enhanced RTMP `hvc1` sequence start: the HEVC decoder configuration
    /// record (hvcC). Frames after it are HEVC.
    HevcSequenceHeader(Bytes),
    /// Enhanced RTMP `av01` sequence start: the AV1 codec configuration
    /// record (av1C). Frames after it are AV1.
    Av1SequenceHeader(Bytes),
    /// One coded picture, length-prefixed NAL units (of the codec of the last
    /// sequence header).
    Frame {
        /// Frame type 1: an IDR picture.
        keyframe: bool,
        /// Composition time offset in ms (pts - dts), negative allowed.
        cts: i32,
        /// The NAL units.
        data: Bytes,
    },
    /// AVC end of sequence; carries no picture.
    EndOfSequence,
    /// A codec Ferry does not carry yet (Sorenson, VP6, Enhanced RTMP AV1 or
    /// VP9: the first byte, with the extended-header flag).
    Unsupported(u8),
    /// Frame type 5, a command/info frame with no picture.
    Info,
}

/// What an audio tag carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AudioTag {
    /// The AAC AudioSpecificConfig.
    SequenceHeader(Bytes),
    /// One raw AAC frame.
    Frame(Bytes),
    /// A sound format Ferry does not carry yet (MP3, Speex, ...).
    Unsupported(u8),
}

/// Reads a video tag body; the payload is sliced, not copied.
pub fn parse_video(body: &Bytes) -> Result<VideoTag, FlvError> {
    let Some(&first) = body.first() else {
        return Err(FlvError::TooShort {
            kind: "video",
            len: 0,
        });
    };
    if first & EX_HEADER != 0 {
        return parse_extended(first, body);
    }
    let frame_type = first >> 4;
    let codec = first & 0x0f;
    if codec != CODEC_AVC {
        return Ok(VideoTag::Unsupported(codec));
    }
    if frame_type == 5 {
        return Ok(VideoTag::Info);
    }
    if body.len() < 5 {
        return Err(FlvError::TooShort {
            kind: "video",
            len: body.len(),
        });
    }
    // Sign-extend the 24-bit composition time.
    let cts = i32::from_be_bytes([body[2], body[3], body[4], 0]) >> 8;
    Ok(match body[1] {
        0 => VideoTag::SequenceHeader(body.slice(5..)),
        1 => VideoTag::Frame {
            keyframe: frame_type == 1,
            cts,
            data: body.slice(5..),
        },
        _ => VideoTag::EndOfSequence,
    })
}

/// Enhanced RTMP's extended video header: frame type, packet type, FourCC.
fn parse_extended(first: u8, body: &Bytes) -> Result<VideoTag, FlvError> {
    let short = || FlvError::TooShort {
        kind: "video",
        len: body.len(),
    };
    if body.len() < 5 {
        return Err(short());
    }
    let av1 = body[1..5] == FOURCC_AV1;
    if body[1..5] != FOURCC_HEVC && !av1 {
        return Ok(VideoTag::Unsupported(first));
    }
    let frame_type = (first >> 4) & 0x07;
    if frame_type == 5 {
        return Ok(VideoTag::Info);
    }
    let keyframe = frame_type == 1;
    Ok(match first & 0x0f {
        ex::SEQUENCE_START if av1 => VideoTag::Av1SequenceHeader(body.slice(5..)),
        ex::SEQUENCE_START => VideoTag::HevcSequenceHeader(body.slice(5..)),
        // AV1 frames carry no composition time (no reordering on the wire).
        ex::CODED_FRAMES | ex::CODED_FRAMES_X if av1 => VideoTag::Frame {
            keyframe,
            cts: 0,
            data: body.slice(5..),
        },
        ex::CODED_FRAMES => {
            if body.len() < 8 {
                return Err(short());
            }
            VideoTag::Frame {
                keyframe,
                cts: i32::from_be_bytes([body[5], body[6], body[7], 0]) >> 8,
                data: body.slice(8..),
            }
        }
        ex::CODED_FRAMES_X => VideoTag::Frame {
            keyframe,
            cts: 0,
            data: body.slice(5..),
        },
        ex::SEQUENCE_END => VideoTag::EndOfSequence,
        // Metadata, MPEG-2 TS sequence start, multitrack: nothing to carry.
        _ => VideoTag::Info,
    })
}

/// Reads an audio tag body; the payload is sliced, not copied.
pub fn parse_audio(body: &Bytes) -> Result<AudioTag, FlvError> {
    let Some(&first) = body.first() else {
        return Err(FlvError::TooShort {
            kind: "audio",
            len: 0,
        });
    };
    let format = first >> 4;
    if format != SOUND_AAC {
        return Ok(AudioTag::Unsupported(format));
    }
    if body.len() < 2 {
        return Err(FlvError::TooShort {
            kind: "audio",
            len: body.len(),
        });
    }
    Ok(match body[1] {
        0 => AudioTag::SequenceHeader(body.slice(2..)),
        _ => AudioTag::Frame(body.slice(2..)),
    })
}

/// The 5-byte header of an AVC video tag: sequence header or NAL units.
pub fn video_header(keyframe: bool, sequence_header: bool, cts: i32) -> [u8; 5] {
    let frame_type: u8 = if keyframe { 1 } else { 2 };
    let c = cts.to_be_bytes();
    [
        (frame_type << 4) | CODEC_AVC,
        u8::from(!sequence_header),
        c[1],
        c[2],
        c[3],
    ]
}

/// The 2-byte header of an AAC audio tag (the rate/size/channel bits are fixed
/// for AAC; the decoder reads the real ones from the AudioSpecificConfig).
pub fn audio_header(sequence_header: bool) -> [u8; 2] {
    [(SOUND_AAC << 4) | 0x0f, u8::from(!sequence_header)]
}

/// One media message as RTMP carries it, for every writer (players,
/// restreams, pushes): a small tag header of its own and the payload shared
/// with every other subscriber, written as two parts, never joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlvTag {
    /// Audio or video (which chunk stream and message type it goes on).
    pub kind: TrackKind,
    /// The 32-bit millisecond timestamp (RTMP's wrap is the protocol's).
    pub timestamp: u32,
    header: [u8; 8],
    header_len: u8,
    /// The codec payload (AVCC NAL units, raw AAC, or a codec config).
    pub payload: Bytes,
}

impl FlvTag {
    /// The tag of a hub packet of an H.264 stream: keyframe flag and
    /// composition time (clamped to what the 24-bit field holds) for video.
    pub fn packet(p: &Packet) -> Self {
        Self::packet_in(p, Codec::H264)
    }

    /// The tag of a hub packet whose video track is in `video` (HEVC frames
    /// get Enhanced RTMP's extended header).
    pub fn packet_in(p: &Packet, video: Codec) -> Self {
        // RTMP timestamps are 32-bit and wrap; the truncation is the protocol.
        let timestamp = p.dts.as_millis() as u32;
        match p.track {
            TrackKind::Video => {
                let cts = p.pts.checked_sub(p.dts).unwrap_or(0);
                let cts = cts.clamp(-(1 << 23), (1 << 23) - 1) as i32;
                if video == Codec::Av1 {
                    let frame_type: u8 = if p.keyframe { 1 } else { 2 };
                    let mut h = [0u8; 8];
                    h[0] = EX_HEADER | (frame_type << 4) | ex::CODED_FRAMES;
                    h[1..5].copy_from_slice(&FOURCC_AV1);
                    return Self::video(timestamp, h, 5, p.payload.clone());
                }
                if video == Codec::H265 {
                    let frame_type: u8 = if p.keyframe { 1 } else { 2 };
                    let c = cts.to_be_bytes();
                    let mut h = [0u8; 8];
                    h[0] = EX_HEADER | (frame_type << 4) | ex::CODED_FRAMES;
                    h[1..5].copy_from_slice(&FOURCC_HEVC);
                    h[5..8].copy_from_slice(&c[1..4]);
                    return Self::video(timestamp, h, 8, p.payload.clone());
                }
                Self::video5(
                    timestamp,
                    video_header(p.keyframe, false, cts),
                    p.payload.clone(),
                )
            }
            TrackKind::Audio => Self::audio(timestamp, audio_header(false), p.payload.clone()),
        }
    }

    /// The sequence header of a track (avcC, hvcC or AudioSpecificConfig).
    pub fn config(track: &TrackInfo, timestamp: u32) -> Self {
        match track.codec {
            Codec::H264 => {
                Self::video5(timestamp, video_header(true, true, 0), track.config.clone())
            }
            Codec::H265 | Codec::Av1 => {
                let mut h = [0u8; 8];
                h[0] = EX_HEADER | (1 << 4) | ex::SEQUENCE_START;
                h[1..5].copy_from_slice(if track.codec == Codec::Av1 {
                    &FOURCC_AV1
                } else {
                    &FOURCC_HEVC
                });
                Self::video(timestamp, h, 5, track.config.clone())
            }
            Codec::Aac => Self::audio(timestamp, audio_header(true), track.config.clone()),
        }
    }

    fn video5(timestamp: u32, header: [u8; 5], payload: Bytes) -> Self {
        let mut h = [0u8; 8];
        h[..5].copy_from_slice(&header);
        Self::video(timestamp, h, 5, payload)
    }

    fn video(timestamp: u32, header: [u8; 8], len: u8, payload: Bytes) -> Self {
        Self {
            kind: TrackKind::Video,
            timestamp,
            header,
            header_len: len,
            payload,
        }
    }

    fn audio(timestamp: u32, header: [u8; 2], payload: Bytes) -> Self {
        Self {
            kind: TrackKind::Audio,
            timestamp,
            header: [header[0], header[1], 0, 0, 0, 0, 0, 0],
            header_len: 2,
            payload,
        }
    }

    /// The FLV tag header bytes that precede the payload.
    pub fn header(&self) -> &[u8] {
        &self.header[..usize::from(self.header_len)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use media_core::Timestamp;

    #[test]
    fn tags_of_packets_and_configs() {
        let p = Packet {
            track: TrackKind::Video,
            dts: Timestamp::from_millis(1000),
            pts: Timestamp::from_millis(1080),
            keyframe: true,
            payload: Bytes::from_static(b"nal"),
        };
        let t = FlvTag::packet(&p);
        assert_eq!((t.kind, t.timestamp), (TrackKind::Video, 1000));
        assert_eq!(t.header(), video_header(true, false, 80));
        let mut body = t.header().to_vec();
        body.extend_from_slice(&t.payload);
        assert!(matches!(
            parse_video(&Bytes::from(body)),
            Ok(VideoTag::Frame {
                keyframe: true,
                cts: 80,
                ..
            })
        ));
        // A composition time past 24 bits is clamped, not wrapped into a lie.
        let far = Packet {
            pts: Timestamp::from_millis(1000 + (1 << 24)),
            ..p
        };
        assert_eq!(
            FlvTag::packet(&far).header(),
            video_header(true, false, (1 << 23) - 1)
        );
        let a = Packet {
            track: TrackKind::Audio,
            dts: Timestamp::from_millis(5),
            pts: Timestamp::from_millis(5),
            keyframe: true,
            payload: Bytes::from_static(b"aac"),
        };
        assert_eq!(FlvTag::packet(&a).header(), audio_header(false));
        let asc = TrackInfo::aac(Bytes::from_static(&[0x11, 0x90])).expect("asc");
        let c = FlvTag::config(&asc, 7);
        assert_eq!(
            (c.kind, c.timestamp, c.header()),
            (TrackKind::Audio, 7, &audio_header(true)[..])
        );
    }

    #[test]
    fn negative_composition_time_round_trips() {
        let mut body = video_header(false, false, -40).to_vec();
        body.extend_from_slice(b"nal");
        let got = parse_video(&Bytes::from(body)).expect("valid");
        assert_eq!(
            got,
            VideoTag::Frame {
                keyframe: false,
                cts: -40,
                data: Bytes::from_static(b"nal")
            }
        );
    }

    #[test]
    fn sequence_headers_and_short_tags() {
        let mut body = video_header(true, true, 0).to_vec();
        body.extend_from_slice(b"avcc");
        assert_eq!(
            parse_video(&Bytes::from(body)),
            Ok(VideoTag::SequenceHeader(Bytes::from_static(b"avcc")))
        );
        let mut a = audio_header(true).to_vec();
        a.extend_from_slice(&[0x11, 0x90]);
        assert_eq!(
            parse_audio(&Bytes::from(a)),
            Ok(AudioTag::SequenceHeader(Bytes::from_static(&[0x11, 0x90])))
        );
        assert!(parse_video(&Bytes::from_static(&[0x17, 1])).is_err());
        assert!(parse_audio(&Bytes::from_static(&[0xaf])).is_err());
        assert!(parse_video(&Bytes::new()).is_err());
    }

    #[test]
    fn other_codecs_are_named_not_failed() {
        assert_eq!(
            parse_audio(&Bytes::from_static(&[0x2f, 0xff])),
            Ok(AudioTag::Unsupported(2))
        );
        assert_eq!(
            parse_video(&Bytes::from_static(&[0x12, 0])),
            Ok(VideoTag::Unsupported(2))
        );
        assert_eq!(
            parse_video(&Bytes::from_static(&[0x90, b'v', b'p', b'0', b'9'])),
            Ok(VideoTag::Unsupported(0x90))
        );
        assert!(parse_video(&Bytes::from_static(&[0x90, 0, 0])).is_err());
    }

    #[test]
    fn enhanced_rtmp_hevc_round_trips() {
        let hvcc = Bytes::from_static(b"hvcC record");
        let track = TrackInfo {
            codec: Codec::H265,
            config: hvcc.clone(),
        };
        let c = FlvTag::config(&track, 0);
        let mut body = c.header().to_vec();
        body.extend_from_slice(&c.payload);
        assert_eq!(
            parse_video(&Bytes::from(body)),
            Ok(VideoTag::HevcSequenceHeader(hvcc))
        );
        let p = Packet {
            track: TrackKind::Video,
            dts: Timestamp::from_millis(40),
            pts: Timestamp::from_millis(0),
            keyframe: false,
            payload: Bytes::from_static(b"nals"),
        };
        let t = FlvTag::packet_in(&p, Codec::H265);
        let mut body = t.header().to_vec();
        body.extend_from_slice(&t.payload);
        assert_eq!(
            parse_video(&Bytes::from(body)),
            Ok(VideoTag::Frame {
                keyframe: false,
                cts: -40,
                data: Bytes::from_static(b"nals")
            })
        );
        // CodedFramesX: no composition time field.
        let mut x = vec![0x80 | (1 << 4) | 3];
        x.extend_from_slice(&FOURCC_HEVC);
        x.extend_from_slice(b"idr");
        assert!(matches!(
            parse_video(&Bytes::from(x)),
            Ok(VideoTag::Frame {
                keyframe: true,
                cts: 0,
                ..
            })
        ));
        // AV1: no composition time, and the sequence start names its record.
        let av1 = TrackInfo {
            codec: Codec::Av1,
            config: Bytes::from_static(b"av1C record"),
        };
        let c = FlvTag::config(&av1, 0);
        let mut body = c.header().to_vec();
        body.extend_from_slice(&c.payload);
        assert_eq!(
            parse_video(&Bytes::from(body)),
            Ok(VideoTag::Av1SequenceHeader(Bytes::from_static(
                b"av1C record"
            )))
        );
        let t = FlvTag::packet_in(
            &Packet {
                keyframe: true,
                ..p.clone()
            },
            Codec::Av1,
        );
        let mut body = t.header().to_vec();
        body.extend_from_slice(&t.payload);
        assert_eq!(
            parse_video(&Bytes::from(body)),
            Ok(VideoTag::Frame {
                keyframe: true,
                cts: 0,
                data: Bytes::from_static(b"nals")
            })
        );
        // A CodedFrames tag too short for its composition time.
        let mut short = vec![0x80 | (2 << 4) | 1];
        short.extend_from_slice(&FOURCC_HEVC);
        assert!(parse_video(&Bytes::from(short)).is_err());
    }
}
