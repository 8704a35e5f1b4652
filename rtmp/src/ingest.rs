//! Ingest: a publisher's FLV tags become hub packets. Used by the RTMP server
//! for encoders, and by anything else that receives FLV tags (a pull client
//! relaying another server's stream into this hub).

use bytes::Bytes;
use media_core::{MetaValue, Metadata, Packet, TrackInfo, TrackKind};
use tracing::warn;

use crate::RtmpError;
use crate::amf0::Amf0Value;
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

/// What one tag became.
#[derive(Debug, PartialEq)]
pub enum Ingested {
    /// A track's decoder config.
    Track(TrackInfo),
    /// A coded frame.
    Packet(Packet),
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
        let got = self.video_tag(ts, data, publisher.name())?;
        apply(publisher, got);
        Ok(())
    }

    /// Takes one audio tag body published at `ts`, like [`Ingest::video`].
    pub fn audio(
        &mut self,
        publisher: &media_core::Publisher,
        ts: u32,
        data: &Bytes,
    ) -> Result<(), RtmpError> {
        let got = self.audio_tag(ts, data, publisher.name())?;
        apply(publisher, got);
        Ok(())
    }

    /// What a video tag of stream `name` becomes, without a hub (for a pull
    /// client that relays another server's stream).
    pub fn video_tag(
        &mut self,
        ts: u32,
        data: &Bytes,
        name: &str,
    ) -> Result<Option<Ingested>, RtmpError> {
        Ok(match flv::parse_video(data)? {
            VideoTag::SequenceHeader(avcc) => {
                let track =
                    TrackInfo::h264(avcc).map_err(|e| RtmpError::Protocol(e.to_string()))?;
                self.has_video_config = true;
                Some(Ingested::Track(track))
            }
            VideoTag::Av1SequenceHeader(av1c) => {
                let track = TrackInfo::av1(av1c).map_err(|e| RtmpError::Protocol(e.to_string()))?;
                self.has_video_config = true;
                Some(Ingested::Track(track))
            }
            VideoTag::HevcSequenceHeader(hvcc) => {
                let track =
                    TrackInfo::h265(hvcc).map_err(|e| RtmpError::Protocol(e.to_string()))?;
                self.has_video_config = true;
                Some(Ingested::Track(track))
            }
            VideoTag::Frame {
                keyframe,
                cts,
                data,
            } if self.has_video_config => {
                let dts = self.clock.unwrap(ts);
                let pts = dts.checked_add_ticks(i64::from(cts)).unwrap_or(dts);
                Some(Ingested::Packet(Packet {
                    track: TrackKind::Video,
                    dts,
                    pts,
                    keyframe,
                    payload: data,
                }))
            }
            VideoTag::Unsupported(codec) => {
                self.warn_once(name, "video", codec);
                None
            }
            _ => None,
        })
    }

    /// What an audio tag of stream `name` becomes, like [`Ingest::video_tag`].
    pub fn audio_tag(
        &mut self,
        ts: u32,
        data: &Bytes,
        name: &str,
    ) -> Result<Option<Ingested>, RtmpError> {
        Ok(match flv::parse_audio(data)? {
            AudioTag::SequenceHeader(asc) => {
                let track = TrackInfo::aac(asc).map_err(|e| RtmpError::Protocol(e.to_string()))?;
                self.has_audio_config = true;
                Some(Ingested::Track(track))
            }
            AudioTag::Frame(payload) if self.has_audio_config => {
                let dts = self.clock.unwrap(ts);
                Some(Ingested::Packet(Packet {
                    track: TrackKind::Audio,
                    dts,
                    pts: dts,
                    keyframe: true,
                    payload,
                }))
            }
            AudioTag::Unsupported(format) => {
                self.warn_once(name, "audio", format);
                None
            }
            _ => None,
        })
    }

    fn warn_once(&mut self, name: &str, kind: &str, id: u8) {
        if !std::mem::replace(&mut self.warned, true) {
            warn!(
                stream = name,
                kind,
                codec_id = id,
                "dropping a track in a codec Ferry does not carry yet (H.264, HEVC and AV1 over Enhanced RTMP, AAC)"
            );
        }
    }
}

fn apply(publisher: &media_core::Publisher, got: Option<Ingested>) {
    match got {
        Some(Ingested::Track(t)) => publisher.set_track(t),
        Some(Ingested::Packet(p)) => publisher.send(p),
        None => {}
    }
}

/// `onMetaData` from `["@setDataFrame", "onMetaData", {..}]` or `["onMetaData", {..}]`.
pub fn metadata(values: &[Amf0Value]) -> Option<Metadata> {
    let at = values
        .iter()
        .position(|v| v.as_str() == Some("onMetaData"))?;
    let props = values.get(at + 1)?.properties()?;
    Some(
        props
            .iter()
            .filter_map(|(k, v)| {
                let v = match v {
                    Amf0Value::Number(n) => MetaValue::Number(*n),
                    Amf0Value::Boolean(b) => MetaValue::Bool(*b),
                    Amf0Value::String(s) => MetaValue::Text(s.clone()),
                    _ => return None,
                };
                Some((k.clone(), v))
            })
            .collect(),
    )
}
