//! `AudioSpecificConfig` (ISO/IEC 14496-3), the AAC decoder config.

use super::CodecError;

const WHAT: &str = "AudioSpecificConfig";
const SAMPLE_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// What packagers need from an AAC config: the object type for `CODECS`
/// (`mp4a.40.2`) and ADTS headers, the sample rate and the channel count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AacConfig {
    /// Audio object type (2 = AAC-LC).
    pub object_type: u8,
    /// Index into the standard sample-rate table (ADTS carries the index).
    pub sample_rate_index: u8,
    /// Sampling frequency in Hz.
    pub sample_rate: u32,
    /// Channel configuration (1 = mono, 2 = stereo, ...).
    pub channels: u8,
}

impl AacConfig {
    /// Parses the first two bytes of an AudioSpecificConfig; explicit frequencies
    /// (index 15) and escape object types are refused because ADTS cannot carry them.
    pub fn parse(data: &[u8]) -> Result<Self, CodecError> {
        let [a, b, ..] = *data else {
            return Err(CodecError::Truncated {
                what: WHAT,
                at: data.len(),
            });
        };
        let object_type = a >> 3;
        let sample_rate_index = ((a & 0x07) << 1) | (b >> 7);
        let channels = (b >> 3) & 0x0f;
        if object_type == 0 || object_type == 31 {
            return Err(CodecError::Invalid {
                what: WHAT,
                why: format!("audio object type {object_type} is not supported"),
            });
        }
        let sample_rate = *SAMPLE_RATES
            .get(usize::from(sample_rate_index))
            .ok_or_else(|| CodecError::Invalid {
                what: WHAT,
                why: format!("sample rate index {sample_rate_index} is not supported"),
            })?;
        Ok(Self {
            object_type,
            sample_rate_index,
            sample_rate,
            channels,
        })
    }

    /// The RFC 6381 codec string, e.g. `mp4a.40.2`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lc_48k_stereo() {
        let c = AacConfig::parse(&[0x11, 0x90]).expect("valid");
        assert_eq!(c.object_type, 2);
        assert_eq!(c.sample_rate, 48_000);
        assert_eq!(c.channels, 2);
        assert_eq!(c.codec_string(), "mp4a.40.2");
    }

    #[test]
    fn parses_lc_44k1_mono() {
        let c = AacConfig::parse(&[0x12, 0x08]).expect("valid");
        assert_eq!(c.sample_rate, 44_100);
        assert_eq!(c.channels, 1);
    }

    #[test]
    fn refuses_short_and_explicit_rate() {
        assert!(AacConfig::parse(&[0x11]).is_err());
        assert!(AacConfig::parse(&[0x17, 0x80]).is_err());
    }
}
