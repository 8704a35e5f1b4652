//! The one thing Ferry reads from an H.264 sequence parameter set: the picture
//! size, for `RESOLUTION` in multivariant playlists.

/// The largest width or height believed (H.264 level 6.2 allows 8192x4320;
/// this leaves room and refuses nonsense).
pub const MAX_DIMENSION: u32 = 16_384;

/// Picture size from a sequence parameter set (ITU-T H.264 7.3.2.1.1), for the
/// `RESOLUTION` of a multivariant playlist. `None` if the SPS cannot be read.
pub fn sps_resolution(sps: &[u8]) -> Option<(u32, u32)> {
    let rbsp = rbsp(sps.get(1..)?);
    let mut r = Bits { data: &rbsp, at: 0 };
    let profile = r.bits(8)?;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format = 1;
    let mut separate_planes = 0;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format = r.ue()?;
        if chroma_format == 3 {
            separate_planes = r.bits(1)?;
        }
        r.ue()?; // bit depth luma
        r.ue()?; // bit depth chroma
        r.bits(1)?; // transform bypass
        if r.bits(1)? == 1 {
            let lists = if chroma_format == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bits(1)? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256) % 256;
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bits(1)?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()?.min(255) {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bits(1)?; // gaps allowed
    // Checked: the fields are up to 32 bits, and a hostile SPS must give
    // `None`, not an overflow.
    let width_mbs = r.ue()?.checked_add(1)?;
    let height_units = r.ue()?.checked_add(1)?;
    let frame_mbs_only = r.bits(1)?;
    if frame_mbs_only == 0 {
        r.bits(1)?;
    }
    r.bits(1)?; // direct_8x8_inference
    let (mut crop_x, mut crop_y) = (0, 0);
    if r.bits(1)? == 1 {
        let (l, rt, t, b) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        let array_type = if separate_planes == 1 {
            0
        } else {
            chroma_format
        };
        let (sub_w, sub_h) = match array_type {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let unit_x = if array_type == 0 { 1 } else { sub_w };
        let unit_y = (if array_type == 0 { 1 } else { sub_h }) * (2 - frame_mbs_only);
        crop_x = l.checked_add(rt)?.checked_mul(unit_x)?;
        crop_y = t.checked_add(b)?.checked_mul(unit_y)?;
    }
    let width = width_mbs.checked_mul(16)?.checked_sub(crop_x)?;
    let height = height_units
        .checked_mul(16 * (2 - frame_mbs_only))?
        .checked_sub(crop_y)?;
    (width <= MAX_DIMENSION && height <= MAX_DIMENSION).then_some((width, height))
}

/// Picture size from an HEVC sequence parameter set (ITU-T H.265 7.3.2.2.1),
/// NAL header included, for `RESOLUTION` and the ladder. `None` if it cannot
/// be read.
pub fn hevc_sps_resolution(sps: &[u8]) -> Option<(u32, u32)> {
    // Two bytes of NAL header, then the RBSP.
    let rbsp = rbsp(sps.get(2..)?);
    let mut r = Bits { data: &rbsp, at: 0 };
    r.bits(4)?; // sps_video_parameter_set_id
    let sub_layers = r.bits(3)?; // sps_max_sub_layers_minus1
    r.bits(1)?; // temporal_id_nesting
    // profile_tier_level: general profile (88 bits) and level (8).
    r.skip(96)?;
    let mut present = Vec::new();
    for _ in 0..sub_layers {
        present.push((r.bits(1)?, r.bits(1)?));
    }
    if sub_layers > 0 {
        for _ in sub_layers..8 {
            r.bits(2)?;
        }
    }
    for (profile, level) in present {
        r.skip(88 * profile + 8 * level)?;
    }
    r.ue()?; // sps_seq_parameter_set_id
    let chroma_format = r.ue()?;
    if chroma_format == 3 {
        r.bits(1)?; // separate_colour_plane_flag
    }
    let width = r.ue()?;
    let height = r.ue()?;
    let (sub_w, sub_h) = match chroma_format {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let (mut crop_x, mut crop_y) = (0u32, 0u32);
    if r.bits(1)? == 1 {
        let (l, rt, t, b) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        crop_x = l.checked_add(rt)?.checked_mul(sub_w)?;
        crop_y = t.checked_add(b)?.checked_mul(sub_h)?;
    }
    let width = width.checked_sub(crop_x)?;
    let height = height.checked_sub(crop_y)?;
    (width > 0 && height > 0 && width <= MAX_DIMENSION && height <= MAX_DIMENSION)
        .then_some((width, height))
}

/// A NAL unit's payload without emulation-prevention bytes (00 00 03 -> 00 00):
/// what parameter-set fields are read from.
pub fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

struct Bits<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.at / 8)?;
            v = (v << 1) | u32::from((byte >> (7 - self.at % 8)) & 1);
            self.at += 1;
        }
        Some(v)
    }

    fn skip(&mut self, n: u32) -> Option<()> {
        let end = self.at.checked_add(n as usize)?;
        (end <= self.data.len() * 8).then(|| self.at = end)
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bits(1)? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)) as u32)
    }

    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPS from x264 through ffmpeg for scripts/make-test-media.sh's streams.
    #[test]
    fn real_x264_sizes() {
        let baseline_720p = [
            0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03,
            0x00, 0x40, 0x00, 0x00, 0x0f, 0x03, 0xc6, 0x0c, 0xa8,
        ];
        let baseline_240p = [
            0x67, 0x42, 0xc0, 0x15, 0xda, 0x06, 0xc7, 0xf9, 0x3c, 0x04, 0x40, 0x00, 0x00, 0x03,
            0x00, 0x40, 0x00, 0x00, 0x0c, 0x83, 0xc5, 0x8b, 0xa8,
        ];
        let high_1080p = [
            0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00,
            0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc6, 0x58,
        ];
        assert_eq!(sps_resolution(&baseline_720p), Some((1280, 720)));
        assert_eq!(sps_resolution(&baseline_240p), Some((426, 240)));
        assert_eq!(sps_resolution(&high_1080p), Some((1920, 1080)));
    }

    /// Writes H.264 bit fields, for hand-made SPSs.
    struct Writer(Vec<bool>);

    impl Writer {
        fn bits(&mut self, v: u64, n: u32) -> &mut Self {
            for i in (0..n).rev() {
                self.0.push((v >> i) & 1 == 1);
            }
            self
        }
        fn ue(&mut self, v: u64) -> &mut Self {
            let n = 64 - (v + 1).leading_zeros() - 1;
            self.bits(0, n).bits(v + 1, n + 1)
        }
        fn bytes(&self) -> Vec<u8> {
            let mut out = vec![0x67];
            for chunk in self.0.chunks(8) {
                let mut b = 0u8;
                for (i, bit) in chunk.iter().enumerate() {
                    b |= u8::from(*bit) << (7 - i);
                }
                out.push(b);
            }
            out
        }
    }

    /// A baseline SPS with these size fields (and no cropping unless given).
    fn baseline(width_mbs_minus1: u64, height_minus1: u64, crop: Option<[u64; 4]>) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        w.bits(66, 8)
            .bits(0, 16)
            .ue(0)
            .ue(0)
            .ue(0)
            .ue(0)
            .ue(1)
            .bits(0, 1);
        w.ue(width_mbs_minus1)
            .ue(height_minus1)
            .bits(1, 1)
            .bits(1, 1);
        match crop {
            Some([l, r, t, b]) => w.bits(1, 1).ue(l).ue(r).ue(t).ue(b),
            None => w.bits(0, 1),
        };
        w.bits(0, 1).bits(1, 1);
        w.bytes()
    }

    #[test]
    fn hand_made_sizes_and_hostile_ones() {
        assert_eq!(sps_resolution(&baseline(79, 44, None)), Some((1280, 720)));
        assert_eq!(
            sps_resolution(&baseline(119, 67, Some([0, 0, 0, 4]))),
            Some((1920, 1080))
        );
        // Fields near 2^32 once overflowed u32 arithmetic.
        assert_eq!(
            sps_resolution(&baseline(u64::from(u32::MAX) - 1, 1, None)),
            None
        );
        assert_eq!(sps_resolution(&baseline(0x1000_0000, 1, None)), None);
        assert_eq!(
            sps_resolution(&baseline(10, 10, Some([u64::from(u32::MAX) - 1, 5, 0, 0]))),
            None
        );
        assert_eq!(
            sps_resolution(&baseline(2000, 1, None)),
            None,
            "over MAX_DIMENSION"
        );
    }

    #[test]
    fn truncated_sps_is_none() {
        assert_eq!(sps_resolution(&[0x67, 0x64]), None);
        assert_eq!(sps_resolution(&[]), None);
    }
}
