//! x264 writes Annex B (start codes, parameter sets in band); the hub carries
//! AVCC (4-byte lengths, parameter sets in the avcC). This turns one into the other.

use bytes::{BufMut, Bytes, BytesMut};

const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;

/// One access unit in AVCC form, with the parameter sets it carried.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AvccUnit {
    /// Length-prefixed NAL units, without SPS, PPS and AUD.
    pub payload: Bytes,
    /// The SPS in band, if any.
    pub sps: Option<Bytes>,
    /// The PPS in band, if any.
    pub pps: Option<Bytes>,
}

/// Splits an Annex B access unit into NAL units (start codes of 3 or 4 bytes).
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut ends: Vec<usize> = starts.iter().skip(1).map(|&s| s - 3).collect();
    ends.push(data.len());
    starts.into_iter().zip(ends).map(move |(s, e)| {
        // A 4-byte start code leaves a zero at the end of the previous unit;
        // trailing zeros are never part of a NAL unit.
        let mut e = e;
        while e > s && data[e - 1] == 0 {
            e -= 1;
        }
        &data[s..e]
    })
}

/// Converts an Annex B access unit to AVCC, taking its parameter sets out.
pub fn to_avcc(data: &[u8]) -> AvccUnit {
    let mut out = BytesMut::with_capacity(data.len() + 16);
    let mut unit = AvccUnit::default();
    for nal in nal_units(data) {
        let Some(&header) = nal.first() else { continue };
        match header & 0x1f {
            NAL_SPS => unit.sps = Some(Bytes::copy_from_slice(nal)),
            NAL_PPS => unit.pps = Some(Bytes::copy_from_slice(nal)),
            NAL_AUD => {}
            _ => {
                out.put_u32(nal.len() as u32);
                out.put_slice(nal);
            }
        }
    }
    unit.payload = out.freeze();
    unit
}

/// Builds an `AVCDecoderConfigurationRecord` (4-byte NAL lengths) from one SPS
/// and one PPS; `None` if the SPS is too short to hold its profile and level.
pub fn avcc_record(sps: &[u8], pps: &[u8]) -> Option<Bytes> {
    if sps.len() < 4 || pps.is_empty() || sps.len() > 0xffff || pps.len() > 0xffff {
        return None;
    }
    let mut out = BytesMut::with_capacity(11 + sps.len() + pps.len());
    out.put_u8(1);
    out.put_slice(&sps[1..4]);
    out.put_u8(0xff); // 6 reserved bits, lengthSizeMinusOne = 3
    out.put_u8(0xe1); // 3 reserved bits, one SPS
    out.put_u16(sps.len() as u16);
    out.put_slice(sps);
    out.put_u8(1);
    out.put_u16(pps.len() as u16);
    out.put_slice(pps);
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use media_core::codec::AvcConfig;

    const SPS: &[u8] = &[0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9];
    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb];

    #[test]
    fn parameter_sets_move_to_the_record_and_slices_get_lengths() {
        let mut au = vec![0, 0, 0, 1, 0x09, 0xf0];
        au.extend([0, 0, 0, 1]);
        au.extend(SPS);
        au.extend([0, 0, 1]);
        au.extend(PPS);
        au.extend([0, 0, 1, 0x65, 0x88, 0x84, 0x00, 0x10]);
        let unit = to_avcc(&au);
        assert_eq!(unit.sps.as_deref(), Some(SPS));
        assert_eq!(unit.pps.as_deref(), Some(PPS));
        assert_eq!(
            &unit.payload[..],
            &[0, 0, 0, 5, 0x65, 0x88, 0x84, 0x00, 0x10][..]
        );

        let record = avcc_record(SPS, PPS).unwrap();
        let parsed = AvcConfig::parse(&record).unwrap();
        assert_eq!(parsed.codec_string(), "avc1.64001f");
        assert_eq!(parsed.nal_length_size, 4);
        assert_eq!(&parsed.sps[0][..], SPS);
        assert_eq!(&parsed.pps[0][..], PPS);
    }

    #[test]
    fn garbage_and_empty_input_give_no_units() {
        assert!(to_avcc(&[]).payload.is_empty());
        assert!(to_avcc(&[1, 2, 3, 4, 5]).payload.is_empty());
        assert_eq!(nal_units(&[0, 0, 1]).count(), 1);
        assert!(avcc_record(&[0x67], PPS).is_none());
    }
}
