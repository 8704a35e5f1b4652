//! Shared by the HLS benches: reading a recorded FLV file tag by tag and turning
//! tags into hub events exactly as the RTMP ingest does.

use std::io::Read;

use anyhow::bail;
use bytes::Bytes;
use media_core::{Event, Packet, Timestamp, TrackInfo, TrackKind};
use rtmp::flv::{AudioTag, VideoTag, parse_audio, parse_video};

/// Reads FLV tags one by one as (tag type, timestamp ms, body), as a live input
/// would arrive, and hands each to `each`.
pub fn for_each_tag(
    file: &str,
    mut each: impl FnMut(u8, i64, Bytes) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut r = std::io::BufReader::with_capacity(64 << 10, std::fs::File::open(file)?);
    let mut head = [0u8; 13];
    r.read_exact(&mut head)?;
    if &head[..3] != b"FLV" {
        bail!("not an FLV file");
    }
    let mut tag = [0u8; 11];
    loop {
        match r.read_exact(&mut tag) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let size = u32::from_be_bytes([0, tag[1], tag[2], tag[3]]) as usize;
        let ts = i64::from(u32::from_be_bytes([tag[7], tag[4], tag[5], tag[6]]));
        let mut body = vec![0u8; size + 4];
        r.read_exact(&mut body)?;
        body.truncate(size);
        each(tag[0], ts, Bytes::from(body))?;
    }
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
