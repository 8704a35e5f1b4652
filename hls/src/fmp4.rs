//! Fragmented MP4 (CMAF) for HLS: an init segment (`ftyp` + `moov`) per stream
//! configuration and `moof` + `mdat` media segments. H.264 stays in AVCC form, as
//! MP4 stores it, so video payloads are copied once into `mdat`.

use bytes::{BufMut, Bytes, BytesMut};
use media_core::codec::AacConfig;
use media_core::{Packet, Timebase, TrackKind};

use crate::VideoConfig;

const VIDEO_TIMESCALE: u32 = 90_000;
/// Samples per AAC frame, the duration of every audio sample.
const AAC_FRAME: u32 = 1024;

/// The tracks of an fMP4 stream and their raw decoder configs.
#[derive(Clone, Debug)]
pub struct Fmp4Tracks {
    /// H.264 or HEVC: parsed config and the avcC/hvcC bytes as received.
    pub video: Option<(VideoConfig, Bytes)>,
    /// AAC: parsed config and the AudioSpecificConfig bytes as received.
    pub audio: Option<(AacConfig, Bytes)>,
}

impl Fmp4Tracks {
    fn video_id(&self) -> u32 {
        1
    }

    fn audio_id(&self) -> u32 {
        if self.video.is_some() { 2 } else { 1 }
    }
}

fn bx(out: &mut BytesMut, kind: &[u8; 4], body: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    out.put_u32(0);
    out.put_slice(kind);
    body(out);
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

fn full(
    out: &mut BytesMut,
    kind: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut BytesMut),
) {
    bx(out, kind, |o| {
        o.put_u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
        body(o);
    });
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// The init segment: what a player needs before any media segment.
pub fn init_segment(tracks: &Fmp4Tracks) -> Bytes {
    let mut out = BytesMut::with_capacity(1024);
    bx(&mut out, b"ftyp", |o| {
        o.put_slice(b"iso6");
        o.put_u32(0);
        for brand in [b"iso6", b"cmfc", b"mp41"] {
            o.put_slice(brand);
        }
    });
    bx(&mut out, b"moov", |o| {
        full(o, b"mvhd", 0, 0, |o| {
            o.put_u32(0);
            o.put_u32(0);
            o.put_u32(1000);
            o.put_u32(0);
            o.put_u32(0x0001_0000);
            o.put_u16(0x0100);
            o.put_slice(&[0; 10]);
            MATRIX.iter().for_each(|m| o.put_u32(*m));
            o.put_slice(&[0; 24]);
            o.put_u32(3);
        });
        if let Some((video, record)) = &tracks.video {
            let (w, h) = video.resolution().unwrap_or((0, 0));
            let (entry, config_box) = video.mp4_boxes();
            trak(
                o,
                tracks.video_id(),
                VIDEO_TIMESCALE,
                b"vide",
                (w, h),
                |o| {
                    full(o, b"vmhd", 0, 1, |o| o.put_slice(&[0; 8]));
                },
                |o| {
                    bx(o, entry, |o| {
                        o.put_slice(&[0; 6]);
                        o.put_u16(1);
                        o.put_slice(&[0; 16]);
                        o.put_u16(w as u16);
                        o.put_u16(h as u16);
                        o.put_u32(0x0048_0000);
                        o.put_u32(0x0048_0000);
                        o.put_u32(0);
                        o.put_u16(1);
                        o.put_slice(&[0; 32]);
                        o.put_u16(0x0018);
                        o.put_i16(-1);
                        bx(o, config_box, |o| o.put_slice(record));
                    });
                },
            );
        }
        if let Some((aac, asc)) = &tracks.audio {
            trak(
                o,
                tracks.audio_id(),
                aac.sample_rate,
                b"soun",
                (0, 0),
                |o| {
                    full(o, b"smhd", 0, 0, |o| o.put_u32(0));
                },
                |o| {
                    bx(o, b"mp4a", |o| {
                        o.put_slice(&[0; 6]);
                        o.put_u16(1);
                        o.put_slice(&[0; 8]);
                        o.put_u16(u16::from(aac.channels.max(1)));
                        o.put_u16(16);
                        o.put_u32(0);
                        o.put_u32(aac.sample_rate.min(0xffff) << 16);
                        full(o, b"esds", 0, 0, |o| esds(o, asc));
                    });
                },
            );
        }
        bx(o, b"mvex", |o| {
            let ids = tracks
                .video
                .as_ref()
                .map(|_| tracks.video_id())
                .into_iter()
                .chain(tracks.audio.as_ref().map(|_| tracks.audio_id()));
            for id in ids {
                full(o, b"trex", 0, 0, |o| {
                    o.put_u32(id);
                    o.put_u32(1);
                    o.put_u32(0);
                    o.put_u32(0);
                    o.put_u32(0);
                });
            }
        });
    });
    out.freeze()
}

fn trak(
    o: &mut BytesMut,
    id: u32,
    timescale: u32,
    handler: &[u8; 4],
    (w, h): (u32, u32),
    media_header: impl FnOnce(&mut BytesMut),
    sample_entry: impl FnOnce(&mut BytesMut),
) {
    bx(o, b"trak", |o| {
        full(o, b"tkhd", 0, 3, |o| {
            o.put_u32(0);
            o.put_u32(0);
            o.put_u32(id);
            o.put_u32(0);
            o.put_u32(0);
            o.put_slice(&[0; 8]);
            o.put_u16(0);
            o.put_u16(0);
            o.put_u16(if handler == b"soun" { 0x0100 } else { 0 });
            o.put_u16(0);
            MATRIX.iter().for_each(|m| o.put_u32(*m));
            o.put_u32(w << 16);
            o.put_u32(h << 16);
        });
        bx(o, b"mdia", |o| {
            full(o, b"mdhd", 0, 0, |o| {
                o.put_u32(0);
                o.put_u32(0);
                o.put_u32(timescale);
                o.put_u32(0);
                o.put_u16(0x55c4);
                o.put_u16(0);
            });
            full(o, b"hdlr", 0, 0, |o| {
                o.put_u32(0);
                o.put_slice(handler);
                o.put_slice(&[0; 12]);
                o.put_slice(b"Ferry\0");
            });
            bx(o, b"minf", |o| {
                media_header(o);
                bx(o, b"dinf", |o| {
                    full(o, b"dref", 0, 0, |o| {
                        o.put_u32(1);
                        full(o, b"url ", 0, 1, |_| {});
                    });
                });
                bx(o, b"stbl", |o| {
                    full(o, b"stsd", 0, 0, |o| {
                        o.put_u32(1);
                        sample_entry(o);
                    });
                    full(o, b"stts", 0, 0, |o| o.put_u32(0));
                    full(o, b"stsc", 0, 0, |o| o.put_u32(0));
                    full(o, b"stsz", 0, 0, |o| {
                        o.put_u32(0);
                        o.put_u32(0);
                    });
                    full(o, b"stco", 0, 0, |o| o.put_u32(0));
                });
            });
        });
    });
}

/// An MPEG-4 ES descriptor carrying the AudioSpecificConfig.
fn esds(o: &mut BytesMut, asc: &[u8]) {
    let asc = &asc[..asc.len().min(100)];
    let dsi = 2 + asc.len();
    let dcd = 2 + 13 + dsi;
    let es = 3 + dcd + 3;
    o.put_u8(0x03);
    o.put_u8(es as u8);
    o.put_u16(0);
    o.put_u8(0);
    o.put_u8(0x04);
    o.put_u8((13 + dsi) as u8);
    o.put_u8(0x40);
    o.put_u8(0x15);
    o.put_slice(&[0, 0, 0]);
    o.put_u32(0);
    o.put_u32(0);
    o.put_u8(0x05);
    o.put_u8(asc.len() as u8);
    o.put_slice(asc);
    o.put_u8(0x06);
    o.put_u8(1);
    o.put_u8(0x02);
}

struct Sample {
    duration: u32,
    size: u32,
    flags: u32,
    cts: i32,
}

/// A media segment or partial segment (`moof` + `mdat`) of `packets`;
/// `fragment` is its `mfhd` sequence number (increasing along the stream);
/// `end_ms` is where it ends (the next one's first decode time). A track with
/// no sample here gets no `traf`.
pub fn media_segment(
    tracks: &Fmp4Tracks,
    fragment: u32,
    packets: &[Packet],
    end_ms: Option<i64>,
) -> Bytes {
    let mut runs: Vec<(u32, u64, Vec<Sample>, Vec<&Packet>)> = Vec::new();
    if tracks.video.is_some() {
        let video: Vec<&Packet> = packets
            .iter()
            .filter(|p| p.track == TrackKind::Video)
            .collect();
        let to90k =
            |t: media_core::Timestamp| t.rescale(Timebase::MPEG_90K).map_or(0, |t| t.ticks());
        let end = end_ms.map(|ms| ms * 90);
        let samples = video
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let next = video.get(i + 1).map(|n| to90k(n.dts)).or(end);
                let prev = i.checked_sub(1).map(|j| to90k(p.dts) - to90k(video[j].dts));
                let duration = next.map(|n| n - to90k(p.dts)).or(prev).unwrap_or(3000);
                Sample {
                    duration: u32::try_from(duration.max(0)).unwrap_or(0),
                    size: p.payload.len() as u32,
                    flags: if p.keyframe { 0x0200_0000 } else { 0x0101_0000 },
                    cts: i32::try_from(to90k(p.pts) - to90k(p.dts)).unwrap_or(0),
                }
            })
            .collect();
        let base = video.first().map_or(0, |p| to90k(p.dts).max(0) as u64);
        runs.push((tracks.video_id(), base, samples, video));
    }
    if let Some((aac, _)) = &tracks.audio {
        let audio: Vec<&Packet> = packets
            .iter()
            .filter(|p| p.track == TrackKind::Audio)
            .collect();
        let rate = Timebase::new(aac.sample_rate).unwrap_or(Timebase::MILLIS);
        let samples = audio
            .iter()
            .map(|p| Sample {
                duration: AAC_FRAME,
                size: p.payload.len() as u32,
                flags: 0x0200_0000,
                cts: 0,
            })
            .collect();
        let base = audio
            .first()
            .and_then(|p| p.dts.rescale(rate))
            .map_or(0, |t| t.ticks().max(0) as u64);
        runs.push((tracks.audio_id(), base, samples, audio));
    }

    runs.retain(|(_, _, samples, _)| !samples.is_empty());
    let mut out = BytesMut::new();
    let mut offsets = Vec::new();
    bx(&mut out, b"moof", |o| {
        full(o, b"mfhd", 0, 0, |o| o.put_u32(fragment));
        for (id, base, samples, _) in &runs {
            bx(o, b"traf", |o| {
                full(o, b"tfhd", 0, 0x02_0000, |o| o.put_u32(*id));
                full(o, b"tfdt", 1, 0, |o| o.put_u64(*base));
                full(o, b"trun", 1, 0x000f01, |o| {
                    o.put_u32(samples.len() as u32);
                    offsets.push(o.len());
                    o.put_i32(0);
                    for s in samples {
                        o.put_u32(s.duration);
                        o.put_u32(s.size);
                        o.put_u32(s.flags);
                        o.put_i32(s.cts);
                    }
                });
            });
        }
    });
    let moof_len = out.len();
    let mut data_at = moof_len + 8;
    for ((_, _, samples, _), at) in runs.iter().zip(&offsets) {
        out[*at..*at + 4].copy_from_slice(&(data_at as i32).to_be_bytes());
        data_at += samples.iter().map(|s| s.size as usize).sum::<usize>();
    }
    bx(&mut out, b"mdat", |o| {
        for (_, _, _, packets) in &runs {
            for p in packets {
                o.put_slice(&p.payload);
            }
        }
    });
    out.freeze()
}
