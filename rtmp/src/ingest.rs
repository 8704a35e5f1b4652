//! Ingest: a publisher's FLV tags become hub packets. Used by the RTMP server
//! for encoders, and by anything else that receives FLV tags (a pull client
//! relaying another server's stream into this hub).

use bytes::Bytes;
use media_core::{Packet, TrackInfo, TrackKind};
use tracing::warn;

use crate::RtmpError;
use crate::flv::{self, AudioTag, VideoTag};
use crate::time::Unwrapper;

/// Turns a publisher's FLV tags into hub packets.
#[derive(Default)]
pub struct Ingest {
    clock: Unwrapper,
    warned: bool,
    has_video_config: bool,
    has_audio_config: bool,
}

impl Ingest {
    /// Takes one video tag body published at `ts`: a sequence header sets the
    /// track, a frame becomes a packet (frames before the first header are dropped).
    pub fn video(
        &mut self,
        publisher: &media_core::Publisher,
        ts: u32,
        data: &Bytes,
    ) -> Result<(), RtmpError> {
        match flv::parse_video(data)? {
            VideoTag::SequenceHeader(avcc) => {
                let track =
                    TrackInfo::h264(avcc).map_err(|e| RtmpError::Protocol(e.to_string()))?;
                publisher.set_track(track);
                self.has_video_config = true;
            }
            VideoTag::Frame {
                keyframe,
                cts,
                data,
            } if self.has_video_config => {
                let dts = self.clock.unwrap(ts);
                let pts = dts.checked_add_ticks(i64::from(cts)).unwrap_or(dts);
                publisher.send(Packet {
                    track: TrackKind::Video,
                    dts,
                    pts,
                    keyframe,
                    payload: data,
                });
            }
            VideoTag::Unsupported(codec) => self.warn_once(publisher, "video", codec),
            _ => {}
        }
        Ok(())
    }

    /// Takes one audio tag body published at `ts`, like [`Ingest::video`].
    pub fn audio(
        &mut self,
        publisher: &media_core::Publisher,
        ts: u32,
        data: &Bytes,
    ) -> Result<(), RtmpError> {
        match flv::parse_audio(data)? {
            AudioTag::SequenceHeader(asc) => {
                let track = TrackInfo::aac(asc).map_err(|e| RtmpError::Protocol(e.to_string()))?;
                publisher.set_track(track);
                self.has_audio_config = true;
            }
            AudioTag::Frame(payload) if self.has_audio_config => {
                let dts = self.clock.unwrap(ts);
                publisher.send(Packet {
                    track: TrackKind::Audio,
                    dts,
                    pts: dts,
                    keyframe: true,
                    payload,
                });
            }
            AudioTag::Unsupported(format) => self.warn_once(publisher, "audio", format),
            _ => {}
        }
        Ok(())
    }

    fn warn_once(&mut self, publisher: &media_core::Publisher, kind: &str, id: u8) {
        if !std::mem::replace(&mut self.warned, true) {
            warn!(
                stream = publisher.name(),
                kind,
                codec_id = id,
                "dropping a track in a codec Ferry does not carry yet (only H.264 and AAC)"
            );
        }
    }
}
