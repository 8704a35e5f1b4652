//! How far an LL-HLS blocking reload may reach, read from the last media
//! playlist the edge got from its origins.
//!
//! A blocking reload names a segment and a part that may not exist yet; each
//! distinct one is a cache key and an origin request held for seconds. The
//! spec bounds the segment (at most two past the newest, else 400), and a
//! segment can only hold so many parts; with both bounds checked at the edge,
//! a client can make at most a few dozen distinct blocking keys per playlist,
//! however it numbers them.

/// What a media playlist says about the reach of blocking reloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reach {
    /// The media sequence number of the newest segment: the open one, after
    /// the last complete one.
    pub newest: u64,
    /// The most parts one segment can hold: twice what the target duration
    /// over the part target gives, plus one (short parts at keyframes).
    pub max_parts: u64,
}

/// Why a blocking reload reaches too far.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TooFar {
    /// `_HLS_msn` more than two segments past the newest.
    #[error("_HLS_msn is more than two segments past the newest")]
    Segment,
    /// `_HLS_part` past what a segment holds.
    #[error("_HLS_part is past what a segment holds")]
    Part,
}

impl Reach {
    /// Reads the bounds from a media playlist; `None` when it is not an
    /// LL-HLS playlist (no `EXT-X-PART-INF`), so blocking reloads of it mean
    /// nothing.
    pub fn of(playlist: &[u8]) -> Option<Reach> {
        let text = std::str::from_utf8(playlist).ok()?;
        let mut sequence = 0u64;
        let mut complete = 0u64;
        let mut target = None;
        let mut part_target = None;
        for line in text.lines() {
            let line = line.trim_end();
            if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                sequence = v.trim().parse().ok()?;
            } else if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                target = v.trim().parse::<f64>().ok();
            } else if let Some(v) = line.strip_prefix("#EXT-X-PART-INF:") {
                part_target = attribute(v, "PART-TARGET").and_then(|t| t.parse::<f64>().ok());
            } else if let Some(v) = line.strip_prefix("#EXT-X-SKIP:") {
                let skipped: u64 = attribute(v, "SKIPPED-SEGMENTS")?.parse().ok()?;
                complete = complete.saturating_add(skipped);
            } else if line.starts_with("#EXTINF:") {
                complete = complete.saturating_add(1);
            }
        }
        let (target, part) = (target?, part_target?);
        if !(part.is_finite() && part > 0.0 && target.is_finite() && target > 0.0) {
            return None;
        }
        let max_parts = ((2.0 * target / part).ceil() as u64).saturating_add(1);
        Some(Reach {
            newest: sequence.saturating_add(complete),
            max_parts: max_parts.min(hls::target::MAX_PART_INDEX + 1),
        })
    }

    /// Whether a reload for segment `msn`, part `part` is within reach.
    pub fn check(&self, msn: u64, part: Option<u64>) -> Result<(), TooFar> {
        if msn > self.newest.saturating_add(2) {
            return Err(TooFar::Segment);
        }
        if part.is_some_and(|p| p >= self.max_parts) {
            return Err(TooFar::Part);
        }
        Ok(())
    }
}

/// The value of `name` in an attribute list (`A=1,B="x"`), quotes removed.
fn attribute<'a>(list: &'a str, name: &str) -> Option<&'a str> {
    list.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LL: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-VERSION:9\n\
        #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.75\n\
        #EXT-X-PART-INF:PART-TARGET=0.25\n#EXT-X-MEDIA-SEQUENCE:40\n\
        #EXTINF:2.0,\na-40.m4s\n#EXTINF:2.0,\na-41.m4s\n\
        #EXT-X-PART:DURATION=0.25,URI=\"a-42.0.m4s\",INDEPENDENT=YES\n\
        #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"a-42.1.m4s\"\n";

    #[test]
    fn the_open_segment_is_the_newest() {
        let r = Reach::of(LL.as_bytes()).expect("LL playlist");
        assert_eq!(
            r,
            Reach {
                newest: 42,
                max_parts: 17
            }
        );
        assert_eq!(r.check(44, Some(16)), Ok(()));
        assert_eq!(r.check(45, None), Err(TooFar::Segment));
        assert_eq!(r.check(43, Some(17)), Err(TooFar::Part));
    }

    #[test]
    fn delta_updates_count_skipped_segments() {
        let delta = LL.replace(
            "#EXTINF:2.0,\na-40.m4s\n",
            "#EXT-X-SKIP:SKIPPED-SEGMENTS=1\n",
        );
        assert_eq!(Reach::of(delta.as_bytes()).map(|r| r.newest), Some(42));
    }

    #[test]
    fn a_plain_playlist_has_no_reach() {
        let plain = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:3\n#EXTINF:2,\na.ts\n";
        assert_eq!(Reach::of(plain.as_bytes()), None);
        assert_eq!(Reach::of(b"\xff\xfe"), None);
        assert_eq!(
            Reach::of(LL.replace("PART-TARGET=0.25", "PART-TARGET=0").as_bytes()),
            None
        );
    }
}
