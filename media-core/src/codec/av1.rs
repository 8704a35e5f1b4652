//! `AV1CodecConfigurationRecord` ("av1C", AV1 in ISOBMFF §2.3), what
//! Enhanced RTMP's AV1 sequence start carries, and the picture size from its
//! sequence header OBU.

use bytes::Bytes;

use super::CodecError;
use super::sps::MAX_DIMENSION;

const WHAT: &str = "av1C";
/// OBU type of a sequence header.
const OBU_SEQUENCE_HEADER: u8 = 1;

/// The parts of an av1C that packagers need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Av1Config {
    /// `seq_profile` (0 Main, 1 High, 2 Professional).
    pub profile: u8,
    /// `seq_level_idx_0`.
    pub level: u8,
    /// `seq_tier_0`: high tier.
    pub high_tier: bool,
    /// Bits per sample: 8, 10 or 12.
    pub bit_depth: u8,
    /// The config OBUs (a sequence header OBU), as received.
    pub config_obus: Bytes,
}

impl Av1Config {
    /// Parses an av1C record.
    pub fn parse(data: &[u8]) -> Result<Self, CodecError> {
        if data.len() < 4 {
            return Err(CodecError::Truncated {
                what: WHAT,
                at: data.len(),
            });
        }
        if data[0] != 0x81 {
            return Err(CodecError::Invalid {
                what: WHAT,
                why: format!("marker/version byte {:#04x}, expected 0x81", data[0]),
            });
        }
        let high_bitdepth = data[2] & 0x40 != 0;
        let twelve_bit = data[2] & 0x20 != 0;
        Ok(Self {
            profile: data[1] >> 5,
            level: data[1] & 0x1f,
            high_tier: data[2] & 0x80 != 0,
            bit_depth: match (high_bitdepth, twelve_bit) {
                (true, true) => 12,
                (true, false) => 10,
                _ => 8,
            },
            config_obus: Bytes::copy_from_slice(&data[4..]),
        })
    }

    /// The RFC 6381 codec string (AV1 in ISOBMFF, "Codecs Parameter String"),
    /// short form: `av01.0.04M.08`.
    pub fn codec_string(&self) -> String {
        let tier = if self.high_tier { 'H' } else { 'M' };
        format!(
            "av01.{}.{:02}{tier}.{:02}",
            self.profile, self.level, self.bit_depth
        )
    }

    /// The maximum frame size from the sequence header OBU, if it can be read.
    pub fn resolution(&self) -> Option<(u32, u32)> {
        sequence_header(&self.config_obus).and_then(frame_size)
    }
}

/// Reads a LEB128 value; (value, bytes used).
fn leb128(data: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, b) in data.iter().take(8).enumerate() {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The payload of the first sequence header OBU in `obus`.
pub fn sequence_header(mut obus: &[u8]) -> Option<&[u8]> {
    while !obus.is_empty() {
        let header = obus[0];
        let kind = (header >> 3) & 0x0f;
        let extension = header & 0x04 != 0;
        let has_size = header & 0x02 != 0;
        let mut at = 1 + usize::from(extension);
        let size = if has_size {
            let (size, used) = leb128(obus.get(at..)?)?;
            at += used;
            usize::try_from(size).ok()?
        } else {
            obus.len().checked_sub(at)?
        };
        let payload = obus.get(at..at.checked_add(size)?)?;
        if kind == OBU_SEQUENCE_HEADER {
            return Some(payload);
        }
        obus = &obus[at + size..];
    }
    None
}

/// `max_frame_width_minus_1 + 1` and height from a sequence header OBU
/// payload (AV1 spec 5.5.1).
fn frame_size(obu: &[u8]) -> Option<(u32, u32)> {
    let mut r = Bits { data: obu, at: 0 };
    r.bits(3)?; // seq_profile
    r.bits(1)?; // still_picture
    let reduced = r.bits(1)? == 1;
    if reduced {
        r.bits(5)?; // seq_level_idx[0]
    } else {
        let timing_info = r.bits(1)? == 1;
        let mut decoder_model_info = false;
        let mut buffer_delay_length = 0;
        if timing_info {
            r.bits(32)?; // num_units_in_display_tick
            r.bits(32)?; // time_scale
            if r.bits(1)? == 1 {
                r.uvlc()?; // num_ticks_per_picture_minus_1
            }
            decoder_model_info = r.bits(1)? == 1;
            if decoder_model_info {
                buffer_delay_length = r.bits(5)? + 1;
                r.bits(32)?; // num_units_in_decoding_tick
                r.bits(5)?; // buffer_removal_time_length_minus_1
                r.bits(5)?; // frame_presentation_time_length_minus_1
            }
        }
        let initial_display_delay = r.bits(1)? == 1;
        let points = r.bits(5)? + 1;
        for _ in 0..points {
            r.bits(12)?; // operating_point_idc
            if r.bits(5)? > 7 {
                r.bits(1)?; // seq_tier
            }
            if decoder_model_info && r.bits(1)? == 1 {
                r.bits(buffer_delay_length)?; // decoder_buffer_delay
                r.bits(buffer_delay_length)?; // encoder_buffer_delay
                r.bits(1)?; // low_delay_mode_flag
            }
            if initial_display_delay && r.bits(1)? == 1 {
                r.bits(4)?;
            }
        }
    }
    let width_bits = r.bits(4)? + 1;
    let height_bits = r.bits(4)? + 1;
    let width = r.bits(width_bits)?.checked_add(1)?;
    let height = r.bits(height_bits)?.checked_add(1)?;
    (width <= MAX_DIMENSION && height <= MAX_DIMENSION).then_some((width, height))
}

struct Bits<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u64;
        for _ in 0..n {
            let byte = *self.data.get(self.at / 8)?;
            v = (v << 1) | u64::from((byte >> (7 - self.at % 8)) & 1);
            self.at += 1;
        }
        u32::try_from(v).ok()
    }

    fn uvlc(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bits(1)? == 0 {
            zeros += 1;
            if zeros >= 32 {
                return None;
            }
        }
        Some(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reduced-still-picture-header sequence header OBU: profile 0, level
    /// 4, 12-bit width and height fields, 320x240.
    fn record() -> Vec<u8> {
        // seq_profile 000, still 0, reduced 1, level 00100, wbits 1011, hbits 1011,
        // width-1 = 319 (12 bits), height-1 = 239 (12 bits).
        let bits = "000 0 1 00100 1011 1011 000100111111 000011101111";
        let bits: Vec<u8> = bits
            .bytes()
            .filter(|b| *b != b' ')
            .map(|b| b - b'0')
            .collect();
        let mut payload = vec![0u8; bits.len().div_ceil(8)];
        for (i, b) in bits.iter().enumerate() {
            payload[i / 8] |= b << (7 - i % 8);
        }
        let mut r = vec![0x81, 0x04, 0x0c, 0x00];
        r.push((OBU_SEQUENCE_HEADER << 3) | 0x02);
        r.push(payload.len() as u8);
        r.extend_from_slice(&payload);
        r
    }

    #[test]
    fn parses_names_and_sizes() {
        let c = Av1Config::parse(&record()).expect("valid");
        assert_eq!(
            (c.profile, c.level, c.high_tier, c.bit_depth),
            (0, 4, false, 8)
        );
        assert_eq!(c.codec_string(), "av01.0.04M.08");
        assert_eq!(c.resolution(), Some((320, 240)));
    }

    #[test]
    fn refuses_bad_records_and_survives_bad_obus() {
        assert!(Av1Config::parse(&[0x81, 0, 0]).is_err());
        assert!(Av1Config::parse(&[0x80, 0, 0, 0]).is_err());
        let mut r = record();
        r.truncate(8);
        let c = Av1Config::parse(&r).expect("the 4 bytes are enough");
        assert_eq!(c.resolution(), None);
        assert_eq!(sequence_header(&[0x0a, 0xff, 0xff]), None);
    }
}
