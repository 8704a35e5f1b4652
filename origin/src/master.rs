//! The multivariant playlist policy: when `master.m3u8` is written and what
//! it lists. Plain code over the variants' state, so it is tested without a
//! hub or a store.

use bytes::Bytes;
use hls::playlist::Variant;

/// Segments the first variant must have before the playlist stops waiting for
/// variants that are on the air but have no segment yet.
pub const PATIENCE_SEGMENTS: usize = 3;

/// What the policy needs to know of one variant.
#[derive(Clone, Debug, Default)]
pub struct VariantState {
    /// Listed in the multivariant playlist at all (the source is not when the
    /// ladder leaves it out).
    pub listed: bool,
    /// How it is listed, once it has a segment.
    pub info: Option<Variant>,
    /// Segments in its media playlist.
    pub segments: usize,
    /// Worth waiting for: the source, or a rung that is on the air (a rung
    /// above the source's size never is).
    pub awaited: bool,
}

/// The multivariant playlist, written once every variant that is on the air
/// has a segment (so players can switch to any variant listed), and again when
/// what it says changes.
#[derive(Default)]
pub struct Master {
    last: Option<Bytes>,
}

impl Master {
    /// The playlist to store now, if it is ready and changed.
    pub fn render(&mut self, variants: &[VariantState]) -> Option<hls::Output> {
        let mut ready = Vec::new();
        let mut waiting = false;
        for v in variants.iter().filter(|v| v.listed) {
            match &v.info {
                Some(info) => ready.push(info.clone()),
                None if v.awaited => waiting = true,
                None => {}
            }
        }
        // A rung that never produces a segment must not keep the stream
        // unlisted: once a variant has a few segments, list what is ready.
        let patience_over = variants.iter().any(|v| v.info.is_some())
            && variants.iter().any(|v| v.segments >= PATIENCE_SEGMENTS);
        if ready.is_empty() || (waiting && !patience_over) {
            return None;
        }
        let data = Bytes::from(hls::playlist::multivariant_playlist(&ready));
        if self.last.as_ref() == Some(&data) {
            return None;
        }
        self.last = Some(data.clone());
        Some(hls::Output::Playlist {
            path: "master.m3u8".into(),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant(uri: &str, bandwidth: u64) -> Variant {
        Variant {
            uri: uri.into(),
            bandwidth,
            average_bandwidth: bandwidth,
            codecs: vec!["avc1.64001f".into()],
            resolution: Some((640, 360)),
            frame_rate: Some(30.0),
        }
    }

    fn state(listed: bool, info: Option<Variant>, segments: usize, awaited: bool) -> VariantState {
        VariantState {
            listed,
            info,
            segments,
            awaited,
        }
    }

    fn text(out: Option<hls::Output>) -> String {
        match out {
            Some(hls::Output::Playlist { data, .. }) => String::from_utf8_lossy(&data).into_owned(),
            other => panic!("no playlist: {other:?}"),
        }
    }

    #[test]
    fn waits_for_every_variant_on_the_air_then_lists_them_once() {
        let mut m = Master::default();
        let src = variant("source/index.m3u8", 2_000_000);
        let rung = variant("360p/index.m3u8", 700_000);
        // The source has a segment, the rung on the air has none yet: wait.
        let early = [
            state(true, Some(src.clone()), 1, true),
            state(true, None, 0, true),
        ];
        assert!(m.render(&early).is_none());
        let both = [
            state(true, Some(src.clone()), 1, true),
            state(true, Some(rung), 1, true),
        ];
        let t = text(m.render(&both));
        assert!(
            t.contains("source/index.m3u8") && t.contains("360p/index.m3u8"),
            "{t}"
        );
        assert!(m.render(&both).is_none(), "unchanged: not written again");
    }

    #[test]
    fn a_rung_off_the_air_is_left_out_and_a_stuck_one_stops_blocking() {
        let src = variant("source/index.m3u8", 2_000_000);
        // A rung above the source's size is never on the air: not waited for.
        let mut m = Master::default();
        let t = text(m.render(&[
            state(true, Some(src.clone()), 1, true),
            state(true, None, 0, false),
        ]));
        assert!(!t.contains("1080p"), "{t}");
        // A rung on the air that never makes a segment blocks only until the
        // source has PATIENCE_SEGMENTS.
        let mut m = Master::default();
        let stuck = |segments| {
            [
                state(true, Some(src.clone()), segments, true),
                state(true, None, 0, true),
            ]
        };
        assert!(m.render(&stuck(PATIENCE_SEGMENTS - 1)).is_none());
        assert!(m.render(&stuck(PATIENCE_SEGMENTS)).is_some());
    }

    #[test]
    fn an_unlisted_source_is_not_in_the_playlist() {
        let mut m = Master::default();
        let t = text(m.render(&[
            state(false, Some(variant("source/index.m3u8", 5)), 2, true),
            state(true, Some(variant("480p/index.m3u8", 1)), 2, true),
        ]));
        assert!(!t.contains("source/"), "{t}");
        assert!(t.contains("480p/index.m3u8"), "{t}");
        assert!(Master::default().render(&[]).is_none());
    }
}
