//! `HEVCDecoderConfigurationRecord` (ISO/IEC 14496-15 §8.3.3, "hvcC"), what
//! Enhanced RTMP's HEVC sequence start carries.

use bytes::Bytes;

use super::CodecError;

const WHAT: &str = "hvcC";
/// NAL unit types of the parameter sets.
const VPS: u8 = 32;
const SPS: u8 = 33;
const PPS: u8 = 34;

/// The most parameter sets of one kind an hvcC may list (the spec allows
/// 16 VPS, 16 SPS and 64 PPS): a record of zero-length entries must not turn
/// a few megabytes into millions of allocations.
pub const MAX_PARAMETER_SETS: usize = 64;
/// The most NAL entries an hvcC may list in all (SEI and others included).
pub const MAX_NAL_ENTRIES: usize = 256;

/// The parts of an hvcC that packagers and players need: the profile, tier
/// and level for the `CODECS` string, the NAL length size, the parameter sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HevcConfig {
    /// `general_profile_space` (0..=3).
    pub profile_space: u8,
    /// `general_tier_flag`: high tier.
    pub high_tier: bool,
    /// `general_profile_idc` (1 Main, 2 Main 10, …).
    pub profile: u8,
    /// `general_profile_compatibility_flags`.
    pub compatibility: u32,
    /// `general_constraint_indicator_flags` (48 bits).
    pub constraints: [u8; 6],
    /// `general_level_idc` (30 × the level: 93 is 3.1).
    pub level: u8,
    /// Bytes in each NAL unit length prefix (1, 2 or 4).
    pub nal_length_size: u8,
    /// Video parameter sets.
    pub vps: Vec<Bytes>,
    /// Sequence parameter sets.
    pub sps: Vec<Bytes>,
    /// Picture parameter sets.
    pub pps: Vec<Bytes>,
}

impl HevcConfig {
    /// Parses an hvcC record.
    pub fn parse(data: &[u8]) -> Result<Self, CodecError> {
        let bytes = Bytes::copy_from_slice(data);
        let need = |at: usize| {
            if data.len() < at {
                Err(CodecError::Truncated {
                    what: WHAT,
                    at: data.len(),
                })
            } else {
                Ok(())
            }
        };
        need(23)?;
        if data[0] != 1 {
            return Err(CodecError::Invalid {
                what: WHAT,
                why: format!("configurationVersion {}, expected 1", data[0]),
            });
        }
        let profile_space = data[1] >> 6;
        let high_tier = data[1] & 0x20 != 0;
        let profile = data[1] & 0x1f;
        let compatibility = u32::from_be_bytes([data[2], data[3], data[4], data[5]]);
        let mut constraints = [0u8; 6];
        constraints.copy_from_slice(&data[6..12]);
        let level = data[12];
        let nal_length_size = (data[21] & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(CodecError::Invalid {
                what: WHAT,
                why: "NAL length size 3 is not allowed".into(),
            });
        }
        let arrays = data[22];
        let mut at = 23;
        let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
        let mut entries = 0usize;
        let too_many = |why: &str| CodecError::Invalid {
            what: WHAT,
            why: why.into(),
        };
        for _ in 0..arrays {
            need(at + 3)?;
            let kind = data[at] & 0x3f;
            let count = u16::from_be_bytes([data[at + 1], data[at + 2]]);
            at += 3;
            for _ in 0..count {
                entries += 1;
                if entries > MAX_NAL_ENTRIES {
                    return Err(too_many("more NAL entries than a configuration holds"));
                }
                need(at + 2)?;
                let len = usize::from(u16::from_be_bytes([data[at], data[at + 1]]));
                at += 2;
                if len == 0 {
                    return Err(too_many("an empty parameter set"));
                }
                need(at + len)?;
                let nal = bytes.slice(at..at + len);
                at += len;
                let list = match kind {
                    VPS => &mut vps,
                    SPS => &mut sps,
                    PPS => &mut pps,
                    _ => continue,
                };
                if list.len() >= MAX_PARAMETER_SETS {
                    return Err(too_many("more parameter sets of one kind than allowed"));
                }
                list.push(nal);
            }
        }
        if vps.is_empty() || sps.is_empty() || pps.is_empty() {
            return Err(CodecError::Invalid {
                what: WHAT,
                why: "no VPS, SPS or PPS".into(),
            });
        }
        Ok(Self {
            profile_space,
            high_tier,
            profile,
            compatibility,
            constraints,
            level,
            nal_length_size,
            vps,
            sps,
            pps,
        })
    }

    /// The RFC 6381 codec string for `CODECS` (ISO/IEC 14496-15 Annex E), e.g.
    /// `hvc1.1.6.L93.B0`.
    pub fn codec_string(&self) -> String {
        let space = match self.profile_space {
            1 => "A",
            2 => "B",
            3 => "C",
            _ => "",
        };
        // The compatibility flags in reverse bit order, in hex.
        let compat = self.compatibility.reverse_bits();
        let tier = if self.high_tier { 'H' } else { 'L' };
        let mut s = format!(
            "hvc1.{space}{}.{compat:X}.{tier}{}",
            self.profile, self.level
        );
        // Constraint bytes, trailing zero bytes left out.
        let used = self
            .constraints
            .iter()
            .rposition(|b| *b != 0)
            .map_or(0, |i| i + 1);
        for b in &self.constraints[..used] {
            s.push_str(&format!(".{b:X}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An hvcC as x265 makes one for Main profile, level 3.1 (parameter sets shortened).
    fn record() -> Vec<u8> {
        let mut r = vec![
            1,    // version
            0x01, // space 0, tier main, profile 1 (Main)
            0x60, 0, 0, 0, // compatibility: Main and Main 10
            0x90, 0, 0, 0, 0, 0,  // progressive, frame only
            93, // level 3.1
            0xf0, 0, 0xfc, 0xfd, 0xf8, 0xf8, 0, 0,    // segmentation .. frame rate
            0x0f, // lengthSizeMinusOne 3
            3,    // arrays
        ];
        for (kind, nal) in [
            (VPS, &[0x40u8, 1, 0xc][..]),
            (SPS, &[0x42, 1, 1]),
            (PPS, &[0x44, 1, 0xc1]),
        ] {
            r.extend_from_slice(&[0x80 | kind, 0, 1, 0, nal.len() as u8]);
            r.extend_from_slice(nal);
        }
        r
    }

    #[test]
    fn parses_and_names_the_codec() {
        let c = HevcConfig::parse(&record()).expect("valid");
        assert_eq!((c.profile, c.level, c.nal_length_size), (1, 93, 4));
        assert_eq!((c.vps.len(), c.sps.len(), c.pps.len()), (1, 1, 1));
        assert_eq!(c.codec_string(), "hvc1.1.6.L93.90");
    }

    #[test]
    fn a_flood_of_empty_or_many_parameter_sets_is_refused() {
        // 8 MiB of zero-length entries once became 128-256 MiB of allocations.
        let mut r = record();
        r[22] = 4;
        r.extend_from_slice(&[0x80 | PPS, 0xff, 0xff]);
        r.extend(std::iter::repeat_n(0u8, 2 * 0xffff));
        assert!(HevcConfig::parse(&r).is_err());
        let mut r = record();
        r[22] = 4;
        r.extend_from_slice(&[0x80 | PPS, 0, 65]);
        for _ in 0..65 {
            r.extend_from_slice(&[0, 3, 0x44, 1, 0xc1]);
        }
        let e = HevcConfig::parse(&r).expect_err("65 PPS");
        assert!(e.to_string().contains("parameter sets"), "{e}");
    }

    #[test]
    fn refuses_truncated_and_incomplete_records() {
        let r = record();
        for cut in [0, 1, 22, 23, 26, r.len() - 1] {
            assert!(HevcConfig::parse(&r[..cut]).is_err(), "cut at {cut}");
        }
        let mut no_pps = r.clone();
        no_pps[22] = 2;
        assert!(HevcConfig::parse(&no_pps).is_err());
        let mut v2 = r;
        v2[0] = 2;
        assert!(HevcConfig::parse(&v2).is_err());
    }
}
