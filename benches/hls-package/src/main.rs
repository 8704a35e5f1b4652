//! Packages a recorded FLV file to MPEG-TS segments and playlists on disk with
//! Ferry's packager, the same code `ferry serve` runs, and prints the CPU time it
//! used. `benches/hls-package.sh` runs it beside `ffmpeg -c copy -f hls`.
//!
//! usage: hls-package FILE.flv OUT_DIR [REPEAT]

use std::io::Read;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, bail};
use bytes::Bytes;
use hls::{Output, Packager, PackagerConfig};
use media_core::{Event, Packet, Timestamp, TrackInfo, TrackKind};
use rtmp::flv::{AudioTag, VideoTag, parse_audio, parse_video};

/// Reads FLV tags one by one as (tag type, timestamp ms, body), as a live input
/// would arrive, and hands each to `each`.
fn for_each_tag(
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
fn event(kind: u8, ts: i64, body: &Bytes) -> anyhow::Result<Option<Event>> {
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

fn store(out: &Path, outputs: Vec<Output>, bytes_out: &mut usize) -> anyhow::Result<()> {
    for o in outputs {
        match o {
            Output::Segment { path, data } | Output::Playlist { path, data } => {
                let p = out.join(path);
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                *bytes_out += data.len();
                std::fs::write(p, data)?;
            }
            Output::Delete { path } => {
                let _ = std::fs::remove_file(out.join(path));
            }
        }
    }
    Ok(())
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
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

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(file), Some(out)) = (args.get(1), args.get(2)) else {
        bail!("usage: hls-package FILE.flv OUT_DIR [REPEAT]");
    };
    let repeat: usize = args.get(3).map_or(Ok(1), |r| r.parse()).context("REPEAT")?;
    let out = Path::new(out);
    let cpu_before = cpu_seconds();
    let mut bytes_out = 0usize;
    for _ in 0..repeat {
        let mut packager = Packager::new(PackagerConfig::default());
        let now = SystemTime::now();
        store(out, packager.handle(&Event::Started, now), &mut bytes_out)?;
        for_each_tag(file, |kind, ts, body| {
            if let Some(e) = event(kind, ts, &body)? {
                store(out, packager.handle(&e, SystemTime::now()), &mut bytes_out)?;
            }
            Ok(())
        })?;
        store(out, packager.handle(&Event::Stopped, now), &mut bytes_out)?;
    }
    println!(
        "ferry_cpu_s={:.3} bytes_out={bytes_out}",
        cpu_seconds() - cpu_before
    );
    Ok(())
}
