//! `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15, "avcC").

use bytes::Bytes;

use super::CodecError;

const WHAT: &str = "avcC";

/// The parts of an avcC that packagers need: profile/level for the `CODECS`
/// string, NAL length size for splitting frames, and the parameter sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvcConfig {
    /// `profile_idc`.
    pub profile: u8,
    /// `profile_compatibility` flags.
    pub compatibility: u8,
    /// `level_idc`.
    pub level: u8,
    /// Bytes in each NAL unit length prefix (1, 2 or 4).
    pub nal_length_size: u8,
    /// Sequence parameter sets.
    pub sps: Vec<Bytes>,
    /// Picture parameter sets.
    pub pps: Vec<Bytes>,
}

impl AvcConfig {
    /// Parses an avcC record.
    pub fn parse(data: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader { data, at: 0 };
        let version = r.u8()?;
        if version != 1 {
            return Err(CodecError::Invalid {
                what: WHAT,
                why: format!("configurationVersion {version}, expected 1"),
            });
        }
        let profile = r.u8()?;
        let compatibility = r.u8()?;
        let level = r.u8()?;
        let nal_length_size = (r.u8()? & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(CodecError::Invalid {
                what: WHAT,
                why: "NAL length size 3 is not allowed".into(),
            });
        }
        let sps_count = r.u8()? & 0x1f;
        let sps = (0..sps_count)
            .map(|_| r.nal())
            .collect::<Result<Vec<_>, _>>()?;
        let pps_count = r.u8()?;
        let pps = (0..pps_count)
            .map(|_| r.nal())
            .collect::<Result<Vec<_>, _>>()?;
        if sps.is_empty() || pps.is_empty() {
            return Err(CodecError::Invalid {
                what: WHAT,
                why: "no SPS or no PPS".into(),
            });
        }
        Ok(Self {
            profile,
            compatibility,
            level,
            nal_length_size,
            sps,
            pps,
        })
    }

    /// The RFC 6381 codec string, e.g. `avc1.64001f`, for HLS `CODECS`.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile, self.compatibility, self.level
        )
    }
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn u8(&mut self) -> Result<u8, CodecError> {
        let b = *self.data.get(self.at).ok_or(CodecError::Truncated {
            what: WHAT,
            at: self.at,
        })?;
        self.at += 1;
        Ok(b)
    }

    fn nal(&mut self) -> Result<Bytes, CodecError> {
        let len = usize::from(u16::from_be_bytes([self.u8()?, self.u8()?]));
        let end = self.at + len;
        let nal = self.data.get(self.at..end).ok_or(CodecError::Truncated {
            what: WHAT,
            at: self.data.len(),
        })?;
        self.at = end;
        if nal.is_empty() {
            return Err(CodecError::Invalid {
                what: WHAT,
                why: "empty parameter set".into(),
            });
        }
        Ok(Bytes::copy_from_slice(nal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An avcC shaped like x264's at 1280x720 High@3.1: one SPS, one PPS, 4-byte lengths.
    const X264_720P: &[u8] = &[
        0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40,
        0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0,
        0xf1, 0x83, 0x19, 0x60, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0,
    ];

    #[test]
    fn parses_x264_record() {
        let c = AvcConfig::parse(X264_720P).expect("valid");
        assert_eq!(c.codec_string(), "avc1.64001f");
        assert_eq!(c.nal_length_size, 4);
        assert_eq!(c.sps.len(), 1);
        assert_eq!(c.sps[0].len(), 0x1a);
        assert_eq!(c.pps[0].len(), 6);
    }

    #[test]
    fn every_truncation_is_an_error() {
        for n in 0..X264_720P.len() {
            assert!(AvcConfig::parse(&X264_720P[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn wrong_version_is_refused() {
        let mut bad = X264_720P.to_vec();
        bad[0] = 2;
        assert!(matches!(
            AvcConfig::parse(&bad),
            Err(CodecError::Invalid { .. })
        ));
    }
}
