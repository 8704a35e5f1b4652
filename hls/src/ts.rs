//! An MPEG-TS muxer for HLS segments (ISO/IEC 13818-1): PAT and PMT at the start
//! of every segment, one PES per frame, PCR on the first track, continuity
//! counters, H.264 in Annex B with access unit delimiters and parameter sets
//! before every IDR, AAC in ADTS.
//!
//! Written here rather than on `mpeg2ts`: that crate only frames single 188-byte
//! packets, and the rest (PES splitting, counters, tables, PCR) is this file.

use bytes::{BufMut, BytesMut};
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
    /// Continuity counters of video, audio, PAT and PMT: one per PID, so each
    /// PID counts on without a gap from segment to segment (unless
    /// [`TsMuxer::restart_counters`] is called).
    cc: [u8; 4],
}

impl TsMuxer {
    /// A muxer for these tracks.
    pub fn new(tracks: TsTracks) -> Self {
        Self { tracks, cc: [0; 4] }
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

    /// Counts every PID from 0 again, so the next segment's bytes depend on
    /// its frames alone. Redundant origins with aligned segments call it at
    /// every segment: one that joined late (or whose publisher reconnected)
    /// has muxed a different number of packets, and its counters would make
    /// the same segment differ by a nibble per packet. The cost is a counter
    /// jump at segment boundaries, which HLS players ignore (each segment is
    /// decodable alone) and ffmpeg notes at debug level only; an edge mixing
    /// segments of two origins would see such jumps anyway.
    pub fn restart_counters(&mut self) {
        self.cc = [0; 4];
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
        let slot = &mut self.cc[cc_slot(pid)];
        let cc = *slot;
        *slot = (cc + 1) & 0x0f;
        cc
    }

    /// Muxes one frame. Frames of a track the muxer was not set up for are dropped.
    pub fn write(&mut self, packet: &Packet, out: &mut BytesMut) {
        let to90k = |t: media_core::Timestamp| {
            t.rescale(Timebase::MPEG_90K).map_or(0, |t| t.ticks()) & PTS_MASK
        };
        let (pts, dts) = (to90k(packet.pts), to90k(packet.dts));
        let avc_parts;
        let adts_header;
        let (pid, stream_id, es): (u16, u8, Vec<&[u8]>) = match packet.track {
            TrackKind::Video => {
                let Some(avc) = &self.tracks.video else {
                    return;
                };
                avc_parts = annex_b(avc, packet);
                (VIDEO_PID, 0xe0, avc_parts)
            }
            TrackKind::Audio => {
                let Some(aac) = &self.tracks.audio else {
                    return;
                };
                adts_header = adts_header_for(aac, packet.payload.len());
                (AUDIO_PID, 0xc0, vec![&adts_header[..], &packet.payload[..]])
            }
        };
        let es_len: usize = es.iter().map(|p| p.len()).sum();
        let mut header = BytesMut::with_capacity(19);
        header.put_slice(&[0, 0, 1, stream_id]);
        let with_dts = pts != dts;
        let header_len: usize = if with_dts { 10 } else { 5 };
        let pes_len = 3 + header_len + es_len;
        // Video PES may exceed 16 bits; 0 means "unbounded", which TS allows for video.
        header.put_u16(if stream_id == 0xe0 || pes_len > 0xffff {
            0
        } else {
            pes_len as u16
        });
        header.put_u8(0x80);
        header.put_u8(if with_dts { 0xc0 } else { 0x80 });
        header.put_u8(header_len as u8);
        put_timestamp(&mut header, if with_dts { 0x3 } else { 0x2 }, pts);
        if with_dts {
            put_timestamp(&mut header, 0x1, dts);
        }
        let mut parts = Vec::with_capacity(es.len() + 1);
        parts.push(&header[..]);
        parts.extend(es);
        let pcr = (pid == self.pcr_pid()).then_some(dts);
        let random_access = packet.keyframe && packet.track == TrackKind::Video;
        // The PES is never assembled: its pieces are copied straight into TS packets.
        let cc = &mut self.cc[cc_slot(pid)];
        write_pes(cc, out, pid, Gather::new(parts), pcr, random_access);
    }
}

/// Splits one PES into TS packets: PCR and random-access flag on the first,
/// stuffing in the adaptation field of the last.
fn write_pes(
    cc: &mut u8,
    out: &mut BytesMut,
    pid: u16,
    mut rest: Gather<'_>,
    pcr: Option<i64>,
    random_access: bool,
) {
    out.reserve((rest.len() / 184 + 2) * PACKET);
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
        out.put_u8(control | *cc);
        *cc = (*cc + 1) & 0x0f;
        let af_len = af.len().saturating_sub(1) as u8;
        if let Some(len) = af.first_mut() {
            *len = af_len;
        }
        out.put_slice(&af);
        rest.copy_to(take, out);
        first = false;
    }
}

fn put_timestamp(out: &mut BytesMut, marker: u8, ts: i64) {
    let ts = ts as u64;
    out.put_u8((marker << 4) | (((ts >> 30) as u8 & 0x07) << 1) | 1);
    out.put_u16((((ts >> 15) & 0x7fff) as u16) << 1 | 1);
    out.put_u16(((ts & 0x7fff) as u16) << 1 | 1);
}

fn cc_slot(pid: u16) -> usize {
    match pid {
        VIDEO_PID => 0,
        AUDIO_PID => 1,
        PMT_PID => 3,
        _ => 2,
    }
}

const START_CODE: &[u8] = &[0, 0, 0, 1];
const AUD: &[u8] = &[0, 0, 0, 1, 0x09, 0xf0];

/// AVCC → Annex B, as pieces borrowed from the frame and its config: an access
/// unit delimiter first, SPS and PPS before an IDR (unless the frame carries its
/// own), 4-byte start codes.
fn annex_b<'a>(avc: &'a AvcConfig, packet: &'a Packet) -> Vec<&'a [u8]> {
    let data = &packet.payload[..];
    let n = usize::from(avc.nal_length_size);
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
        // Empty NAL units carry nothing; delimiters in the source would be doubled.
        if !nal.is_empty() && nal[0] & 0x1f != 9 {
            nals.push(nal);
        }
    }
    let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * nals.len() + 5);
    parts.push(AUD);
    let has_sps = nals.iter().any(|nal| nal[0] & 0x1f == 7);
    if packet.keyframe && !has_sps {
        for ps in avc.sps.iter().chain(&avc.pps) {
            parts.push(START_CODE);
            parts.push(ps);
        }
    }
    for nal in nals {
        parts.push(START_CODE);
        parts.push(nal);
    }
    parts
}

/// Byte pieces read in order as one stream, copied out without joining them first.
struct Gather<'a> {
    parts: Vec<&'a [u8]>,
    index: usize,
    offset: usize,
    remaining: usize,
}

impl<'a> Gather<'a> {
    fn new(parts: Vec<&'a [u8]>) -> Self {
        let remaining = parts.iter().map(|p| p.len()).sum();
        Self {
            parts,
            index: 0,
            offset: 0,
            remaining,
        }
    }

    fn len(&self) -> usize {
        self.remaining
    }

    fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    fn copy_to(&mut self, mut n: usize, out: &mut BytesMut) {
        while n > 0 {
            let Some(part) = self.parts.get(self.index) else {
                return;
            };
            let take = (part.len() - self.offset).min(n);
            out.put_slice(&part[self.offset..self.offset + take]);
            self.offset += take;
            self.remaining -= take;
            n -= take;
            if self.offset == part.len() {
                self.index += 1;
                self.offset = 0;
            }
        }
    }
}

/// The 7-byte ADTS header for a raw AAC frame of `frame_len` bytes.
fn adts_header_for(aac: &AacConfig, frame_len: usize) -> [u8; 7] {
    let len = frame_len + 7;
    let profile = aac.object_type.saturating_sub(1) & 0x03;
    [
        0xff,
        0xf1,
        (profile << 6) | ((aac.sample_rate_index & 0x0f) << 2) | ((aac.channels >> 2) & 0x01),
        ((aac.channels & 0x03) << 6) | ((len >> 11) as u8 & 0x03),
        (len >> 3) as u8,
        (((len & 0x07) as u8) << 5) | 0x1f,
        0xfc,
    ]
}
