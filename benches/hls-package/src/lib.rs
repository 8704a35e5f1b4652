//! Shared by the HLS benches: reading a recorded FLV file tag by tag and turning
//! tags into hub events exactly as the RTMP ingest does.

use bytes::Bytes;
use media_core::{Event, Packet, Timestamp, TrackInfo, TrackKind};
use rtmp::flv::{AudioTag, VideoTag, parse_audio, parse_video};
use rtmp::flv_file::FlvFile;

/// Reads FLV tags one by one as (tag type, timestamp ms, body), as a live input
/// would arrive, and hands each to `each`.
pub fn for_each_tag(
    file: &str,
    mut each: impl FnMut(u8, i64, Bytes) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let file = std::io::BufReader::with_capacity(64 << 10, std::fs::File::open(file)?);
    for tag in FlvFile::new(file) {
        let tag = tag?;
        each(tag.kind, i64::from(tag.timestamp), tag.body)?;
    }
    Ok(())
}

/// The hub event an FLV tag becomes, as the RTMP ingest makes it.
pub fn event(kind: u8, ts: i64, body: &Bytes) -> anyhow::Result<Option<Event>> {
    let t = Timestamp::from_millis(ts);
    Ok(match kind {
        9 => match parse_video(body)? {
            VideoTag::SequenceHeader(c) => Some(Event::Track(TrackInfo::h264(c)?.into())),
            VideoTag::Frame {
                keyframe,
                cts,
                data,
            } => Some(Event::Packet(Packet {
                track: TrackKind::Video,
                dts: t,
                pts: Timestamp::from_millis(ts + i64::from(cts)),
                keyframe,
                payload: data,
            })),
            _ => None,
        },
        8 => match parse_audio(body)? {
            AudioTag::SequenceHeader(c) => Some(Event::Track(TrackInfo::aac(c)?.into())),
            AudioTag::Frame(data) => Some(Event::Packet(Packet {
                track: TrackKind::Audio,
                dts: t,
                pts: t,
                keyframe: true,
                payload: data,
            })),
            AudioTag::Unsupported(_) => None,
        },
        _ => None,
    })
}

/// User + system CPU seconds of this process (all threads) so far.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
