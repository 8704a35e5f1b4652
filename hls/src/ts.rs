//! An MPEG-TS muxer for HLS segments (ISO/IEC 13818-1): PAT and PMT at the start
//! of every segment, one PES per frame, PCR on the first track, continuity
//! counters, H.264 in Annex B with access unit delimiters and parameter sets
//! before every IDR, AAC in ADTS.
//!
//! Written here rather than on `mpeg2ts`: that crate only frames single 188-byte
//! packets, and the rest (PES splitting, counters, tables, PCR) is this file.

use bytes::{BufMut, Bytes, BytesMut};
use media_core::codec::{AacConfig, AvcConfig};
use media_core::{Packet, Timebase, TrackKind};

const PACKET: usize = 188;
const PMT_PID: u16 = 0x1000;
/// Video elementary stream PID.
pub const VIDEO_PID: u16 = 0x100;
/// Audio elementary stream PID.
pub const AUDIO_PID: u16 = 0x101;
const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_MPEG_2);
/// PTS/DTS are 33-bit counters of a 90 kHz clock.
const PTS_MASK: i64 = (1 << 33) - 1;

/// The tracks a segment carries and how to rewrite their frames.
#[derive(Clone, Debug)]
pub struct TsTracks {
    /// The H.264 config, if the stream has video.
    pub video: Option<AvcConfig>,
    /// The AAC config, if the stream has audio.
    pub audio: Option<AacConfig>,
}

/// Muxes frames into MPEG-TS; one muxer per stream, [`TsMuxer::start_segment`]
/// at every segment boundary.
#[derive(Debug)]
pub struct TsMuxer {
    tracks: TsTracks,
    cc: [u8; 3],
}

impl TsMuxer {
    /// A muxer for these tracks.
    pub fn new(tracks: TsTracks) -> Self {
        Self { tracks, cc: [0; 3] }
    }

    /// The tracks being muxed.
    pub fn tracks(&self) -> &TsTracks {
        &self.tracks
    }

    fn pcr_pid(&self) -> u16 {
        if self.tracks.video.is_some() {
            VIDEO_PID
        } else {
            AUDIO_PID
        }
    }

    /// Writes PAT and PMT, so every segment can be decoded on its own.
    pub fn start_segment(&mut self, out: &mut BytesMut) {
        let mut pat = BytesMut::new();
        pat.put_slice(&[0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01]);
        pat.put_u16(0xe000 | PMT_PID);
        self.write_section(out, 0, 0x00, &pat);

        let mut pmt = BytesMut::new();
        pmt.put_slice(&[0x00, 0x01, 0xc1, 0x00, 0x00]);
        pmt.put_u16(0xe000 | self.pcr_pid());
        pmt.put_u16(0xf000);
        if self.tracks.video.is_some() {
            pmt.put_u8(0x1b);
            pmt.put_u16(0xe000 | VIDEO_PID);
            pmt.put_u16(0xf000);
        }
        if self.tracks.audio.is_some() {
            pmt.put_u8(0x0f);
            pmt.put_u16(0xe000 | AUDIO_PID);
            pmt.put_u16(0xf000);
        }
        self.write_section(out, PMT_PID, 0x02, &pmt);
    }

    fn write_section(&mut self, out: &mut BytesMut, pid: u16, table_id: u8, body: &[u8]) {
        let mut section = BytesMut::new();
        section.put_u8(table_id);
        // Section length counts the body and the CRC.
        section.put_u16(0xb000 | (body.len() as u16 + 4));
        section.put_slice(body);
        let crc = CRC.checksum(&section);
        section.put_u32(crc);
        let start = out.len();
        out.put_u8(0x47);
        out.put_u16(0x4000 | pid);
        out.put_u8(0x10 | self.next_cc(pid));
        out.put_u8(0); // pointer field
        out.put_slice(&section);
        out.resize(start + PACKET, 0xff);
    }

    fn next_cc(&mut self, pid: u16) -> u8 {
        let i = match pid {
            VIDEO_PID => 0,
            AUDIO_PID => 1,
            _ => 2,
        };
        let cc = self.cc[i];
        self.cc[i] = (cc + 1) & 0x0f;
        cc
    }

    /// Muxes one frame. Frames of a track the muxer was not set up for are dropped.
    pub fn write(&mut self, packet: &Packet, out: &mut BytesMut) {
        let to90k = |t: media_core::Timestamp| {
            t.rescale(Timebase::MPEG_90K).map_or(0, |t| t.ticks()) & PTS_MASK
        };
        let (pts, dts) = (to90k(packet.pts), to90k(packet.dts));
        let (pid, stream_id, es) = match packet.track {
            TrackKind::Video => {
                let Some(avc) = &self.tracks.video else {
                    return;
                };
                (VIDEO_PID, 0xe0, annex_b(avc, packet))
            }
            TrackKind::Audio => {
                let Some(aac) = &self.tracks.audio else {
                    return;
                };
                (AUDIO_PID, 0xc0, adts(aac, &packet.payload))
            }
        };
        let mut pes = BytesMut::with_capacity(es.len() + 19);
        pes.put_slice(&[0, 0, 1, stream_id]);
        let with_dts = pts != dts;
        let header_len: usize = if with_dts { 10 } else { 5 };
        let pes_len = 3 + header_len + es.len();
        // Video PES may exceed 16 bits; 0 means "unbounded", which TS allows for video.
        pes.put_u16(if stream_id == 0xe0 || pes_len > 0xffff {
            0
        } else {
            pes_len as u16
        });
        pes.put_u8(0x80);
        pes.put_u8(if with_dts { 0xc0 } else { 0x80 });
        pes.put_u8(header_len as u8);
        put_timestamp(&mut pes, if with_dts { 0x3 } else { 0x2 }, pts);
        if with_dts {
            put_timestamp(&mut pes, 0x1, dts);
        }
        pes.put_slice(&es);
        let pcr = (pid == self.pcr_pid()).then_some(dts);
        self.write_pes(
            out,
            pid,
            &pes,
            pcr,
            packet.keyframe && packet.track == TrackKind::Video,
        );
    }

    fn write_pes(
        &mut self,
        out: &mut BytesMut,
        pid: u16,
        pes: &[u8],
        pcr: Option<i64>,
        random_access: bool,
    ) {
        let mut rest = pes;
        let mut first = true;
        while first || !rest.is_empty() {
            // The adaptation field: its length byte, then flags, PCR and stuffing.
            let mut af: Vec<u8> = Vec::new();
            if first && (pcr.is_some() || random_access) {
                let mut flags = 0u8;
                if random_access {
                    flags |= 0x40;
                }
                if pcr.is_some() {
                    flags |= 0x10;
                }
                af.push(0);
                af.push(flags);
                if let Some(pcr) = pcr {
                    let base = pcr as u64;
                    af.extend_from_slice(&((base >> 1) as u32).to_be_bytes());
                    af.push((((base & 1) << 7) as u8) | 0x7e);
                    af.push(0);
                }
            }
            let room = PACKET - 4 - af.len();
            if rest.len() < room {
                let stuffing = room - rest.len();
                if af.is_empty() {
                    af.push(0);
                    if stuffing > 1 {
                        af.push(0);
                        af.resize(stuffing, 0xff);
                    }
                } else {
                    af.resize(af.len() + stuffing, 0xff);
                }
            }
            let take = rest.len().min(PACKET - 4 - af.len());
            out.put_u8(0x47);
            out.put_u16(if first { 0x4000 } else { 0 } | pid);
            let control = if af.is_empty() { 0x10 } else { 0x30 };
            out.put_u8(control | self.next_cc(pid));
            let af_len = af.len().saturating_sub(1) as u8;
            if let Some(len) = af.first_mut() {
                *len = af_len;
            }
            out.put_slice(&af);
            out.put_slice(&rest[..take]);
            rest = &rest[take..];
            first = false;
        }
    }
}

fn put_timestamp(out: &mut BytesMut, marker: u8, ts: i64) {
    let ts = ts as u64;
    out.put_u8((marker << 4) | (((ts >> 30) as u8 & 0x07) << 1) | 1);
    out.put_u16((((ts >> 15) & 0x7fff) as u16) << 1 | 1);
    out.put_u16(((ts & 0x7fff) as u16) << 1 | 1);
}

/// AVCC → Annex B: an access unit delimiter first, SPS and PPS before an IDR
/// (unless the frame carries its own), 4-byte start codes.
fn annex_b(avc: &AvcConfig, packet: &Packet) -> Bytes {
    let data = &packet.payload;
    let n = usize::from(avc.nal_length_size);
    let mut out = BytesMut::with_capacity(data.len() + 64);
    out.put_slice(&[0, 0, 0, 1, 0x09, 0xf0]);
    let mut nals = Vec::new();
    let mut at = 0;
    while at + n <= data.len() {
        let len = data[at..at + n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        at += n;
        let Some(nal) = data.get(at..at + len) else {
            break;
        };
        at += len;
        if !nal.is_empty() {
            nals.push(nal);
        }
    }
    let has_sps = nals.iter().any(|nal| nal[0] & 0x1f == 7);
    if packet.keyframe && !has_sps {
        for ps in avc.sps.iter().chain(&avc.pps) {
            out.put_slice(&[0, 0, 0, 1]);
            out.put_slice(ps);
        }
    }
    for nal in nals {
        // Access unit delimiters in the source would be doubled.
        if nal[0] & 0x1f == 9 {
            continue;
        }
        out.put_slice(&[0, 0, 0, 1]);
        out.put_slice(nal);
    }
    out.freeze()
}

/// A raw AAC frame with its 7-byte ADTS header.
fn adts(aac: &AacConfig, frame: &[u8]) -> Bytes {
    let len = frame.len() + 7;
    let mut out = BytesMut::with_capacity(len);
    let profile = aac.object_type.saturating_sub(1) & 0x03;
    out.put_u8(0xff);
    out.put_u8(0xf1);
    out.put_u8(
        (profile << 6) | ((aac.sample_rate_index & 0x0f) << 2) | ((aac.channels >> 2) & 0x01),
    );
    out.put_u8(((aac.channels & 0x03) << 6) | ((len >> 11) as u8 & 0x03));
    out.put_u8((len >> 3) as u8);
    out.put_u8((((len & 0x07) as u8) << 5) | 0x1f);
    out.put_u8(0xfc);
    out.put_slice(frame);
    out.freeze()
}
