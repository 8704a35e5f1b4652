//! Low-Latency HLS (RFC 8216bis §4.4.3, §6.2.5): the live view of one variant
//! (segments with their partial segments, the segment being built), the
//! playlist rendered from it (server control, parts, preload hint, delta
//! updates, rendition reports), and the rules of blocking reloads. Pure: the
//! origin holds requests and keeps the part bytes.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

pub use crate::playlist::PartEntry;
use crate::playlist::{SegmentEntry, segment_head};

/// The segment being built: its parts so far.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenSegment {
    /// Its media sequence number.
    pub sequence: u64,
    /// Wall-clock time of its first frame at ingest.
    pub program_date_time: SystemTime,
    /// fMP4 init segment it needs.
    pub map: Option<String>,
    /// A discontinuity precedes it.
    pub discontinuity: bool,
    /// Its complete parts, in order.
    pub parts: Vec<PartEntry>,
}

/// Everything a low-latency media playlist is rendered from.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveView {
    /// `EXT-X-TARGETDURATION`, seconds.
    pub target: u64,
    /// `EXT-X-PART-INF:PART-TARGET`, seconds.
    pub part_target: f64,
    /// `EXT-X-DISCONTINUITY-SEQUENCE`.
    pub discontinuity_sequence: u64,
    /// Complete segments (the window), oldest first, each with its parts
    /// while they are listed.
    pub segments: Vec<SegmentEntry>,
    /// The segment being built, if any.
    pub open: Option<OpenSegment>,
    /// The URI the next part will have (`EXT-X-PRELOAD-HINT`), while live.
    pub next_part_uri: Option<String>,
    /// The stream ended (`EXT-X-ENDLIST`): nothing more will come.
    pub ended: bool,
}

/// Where the newest part stands: (media sequence number, part index).
pub type PartPosition = (u64, u64);

impl LiveView {
    /// The newest complete part, if any.
    pub fn last_part(&self) -> Option<PartPosition> {
        if let Some(open) = &self.open
            && !open.parts.is_empty()
        {
            return Some((open.sequence, open.parts.len() as u64 - 1));
        }
        self.segments
            .last()
            .map(|s| (s.sequence, s.parts.len().max(1) as u64 - 1))
    }

    /// Whether a blocking request for `want` can be answered now.
    pub fn satisfies(&self, want: &Blocking) -> bool {
        if self.ended {
            return true;
        }
        let complete = self.segments.last().map(|s| s.sequence);
        match want.part {
            // A whole segment: it must be complete.
            None => complete.is_some_and(|c| c >= want.msn),
            Some(part) => {
                complete.is_some_and(|c| c >= want.msn)
                    || self.open.as_ref().is_some_and(|o| {
                        o.sequence > want.msn
                            || (o.sequence == want.msn && (o.parts.len() as u64) > part)
                    })
            }
        }
    }

    /// Whether `want` is so far ahead that it gets 400 at once (more than two
    /// segments past the newest).
    pub fn too_far(&self, want: &Blocking) -> bool {
        let newest = self
            .open
            .as_ref()
            .map(|o| o.sequence)
            .or_else(|| self.segments.last().map(|s| s.sequence));
        match newest {
            Some(n) => want.msn > n.saturating_add(2),
            None => false,
        }
    }

    /// How long a blocking request is held at most before 503: three
    /// target durations, as the spec suggests for a playlist that stops
    /// updating.
    pub fn hold_limit(&self) -> Duration {
        Duration::from_secs(self.target.max(1) * 3)
    }

    /// `PART-HOLD-BACK`: three part targets (the spec's minimum).
    pub fn part_hold_back(&self) -> f64 {
        self.part_target * 3.0
    }

    /// `CAN-SKIP-UNTIL`: six target durations (the spec's minimum).
    pub fn skip_until(&self) -> f64 {
        (self.target * 6) as f64
    }
}

/// What a blocking playlist request asks for (`_HLS_msn`, `_HLS_part`,
/// `_HLS_skip`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Blocking {
    /// Hold until this media sequence number exists.
    pub msn: u64,
    /// And this part of it.
    pub part: Option<u64>,
}

/// A playlist request's query, checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlaylistQuery {
    /// A blocking reload, if `_HLS_msn` was given.
    pub blocking: Option<Blocking>,
    /// `_HLS_skip=YES`: a delta update.
    pub skip: bool,
}

/// Why a playlist request's query was refused (400).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// `_HLS_part` without `_HLS_msn`.
    #[error("_HLS_part needs _HLS_msn")]
    PartWithoutMsn,
    /// A value that is not a number (or `YES`/`v2` for `_HLS_skip`).
    #[error("invalid {0} value")]
    Invalid(&'static str),
}

impl PlaylistQuery {
    /// Parses a raw query string; unknown parameters are ignored.
    pub fn parse(query: &str) -> Result<Self, QueryError> {
        let mut msn = None;
        let mut part = None;
        let mut skip = false;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = |what| {
                (value.len() <= 19
                    && !value.is_empty()
                    && value.bytes().all(|b| b.is_ascii_digit()))
                .then(|| value.parse::<u64>().ok())
                .flatten()
                .ok_or(QueryError::Invalid(what))
            };
            match name {
                "_HLS_msn" => msn = Some(number("_HLS_msn")?),
                "_HLS_part" => part = Some(number("_HLS_part")?),
                "_HLS_skip" => {
                    skip = match value {
                        "YES" | "v2" => true,
                        _ => return Err(QueryError::Invalid("_HLS_skip")),
                    }
                }
                _ => {}
            }
        }
        let blocking = match (msn, part) {
            (None, Some(_)) => return Err(QueryError::PartWithoutMsn),
            (None, None) => None,
            (Some(msn), part) => Some(Blocking { msn, part }),
        };
        Ok(Self { blocking, skip })
    }
}

/// Another variant's newest part, for `EXT-X-RENDITION-REPORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenditionReport {
    /// Its media playlist, relative to this one (`../720p/index.m3u8`).
    pub uri: String,
    /// Its newest media sequence number.
    pub last_msn: u64,
    /// Its newest part of that segment.
    pub last_part: u64,
}

/// Complete segments whose parts are still listed: those that end within
/// three target durations of the playlist's end (older parts may go).
const PART_LISTED_TARGETS: f64 = 3.0;

/// Renders the low-latency media playlist of `view`; with `skip`, as a delta
/// update (segments older than `CAN-SKIP-UNTIL` replaced by `EXT-X-SKIP`).
pub fn render(view: &LiveView, skip: bool, reports: &[RenditionReport]) -> String {
    let mut out = String::with_capacity(4096);
    let first = view.segments.first().map_or_else(
        || view.open.as_ref().map_or(0, |o| o.sequence),
        |s| s.sequence,
    );
    // Playlists with EXT-X-SKIP are version 9; parts and server control need 6+.
    let version = if skip { 9 } else { 7 };
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:{version}\n#EXT-X-TARGETDURATION:{}\n\
         #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3},CAN-SKIP-UNTIL={:.1}\n\
         #EXT-X-PART-INF:PART-TARGET={:.3}\n#EXT-X-MEDIA-SEQUENCE:{first}\n",
        view.target,
        view.part_hold_back(),
        view.skip_until(),
        view.part_target,
    );
    if view.discontinuity_sequence > 0 {
        let _ = writeln!(
            out,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
            view.discontinuity_sequence
        );
    }
    // Durations from the end: which segments can be skipped, which keep parts.
    let total: f64 = view.segments.iter().map(|s| s.duration).sum::<f64>()
        + view
            .open
            .as_ref()
            .map_or(0.0, |o| o.parts.iter().map(|p| p.duration).sum());
    let mut start = 0.0;
    let mut skipped = 0;
    if skip {
        for s in &view.segments {
            // A segment may be skipped if it ends more than CAN-SKIP-UNTIL
            // before the end of the playlist.
            if total - (start + s.duration) > view.skip_until() {
                start += s.duration;
                skipped += 1;
            } else {
                break;
            }
        }
        let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
    }
    let mut map: Option<&str> = None;
    let mut elapsed = start;
    for s in &view.segments[skipped..] {
        segment_head(
            &mut out,
            s.discontinuity,
            s.map.as_deref(),
            &mut map,
            s.program_date_time,
        );
        elapsed += s.duration;
        if total - elapsed < view.target as f64 * PART_LISTED_TARGETS {
            parts(&mut out, &s.parts);
        }
        let _ = write!(out, "#EXTINF:{:.5},\n{}\n", s.duration, s.uri);
    }
    if let Some(open) = &view.open {
        segment_head(
            &mut out,
            open.discontinuity,
            open.map.as_deref(),
            &mut map,
            open.program_date_time,
        );
        parts(&mut out, &open.parts);
    }
    if view.ended {
        out.push_str("#EXT-X-ENDLIST\n");
    } else if let Some(uri) = &view.next_part_uri {
        let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{uri}\"");
    }
    for r in reports {
        let _ = writeln!(
            out,
            "#EXT-X-RENDITION-REPORT:URI=\"{}\",LAST-MSN={},LAST-PART={}",
            r.uri, r.last_msn, r.last_part
        );
    }
    out
}

fn parts(out: &mut String, parts: &[PartEntry]) {
    for p in parts {
        let _ = write!(
            out,
            "#EXT-X-PART:DURATION={:.5},URI=\"{}\"",
            p.duration, p.uri
        );
        if p.independent {
            out.push_str(",INDEPENDENT=YES");
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn part(i: u64, independent: bool) -> PartEntry {
        PartEntry {
            duration: 0.5,
            uri: format!("s.{i}.m4s"),
            independent,
        }
    }

    fn view(complete: u64, open_parts: usize) -> LiveView {
        let segments = (0..complete)
            .map(|sequence| SegmentEntry {
                sequence,
                duration: 2.0,
                uri: format!("{sequence}.m4s"),
                discontinuity: false,
                program_date_time: UNIX_EPOCH,
                map: Some("init1.mp4".into()),
                parts: (0..4).map(|i| part(i, i == 0)).collect(),
            })
            .collect();
        LiveView {
            target: 2,
            part_target: 0.5,
            discontinuity_sequence: 0,
            segments,
            open: Some(OpenSegment {
                sequence: complete,
                program_date_time: UNIX_EPOCH,
                map: Some("init1.mp4".into()),
                discontinuity: false,
                parts: (0..open_parts as u64).map(|i| part(i, i == 0)).collect(),
            }),
            next_part_uri: Some(format!("{complete}.{open_parts}.m4s")),
            ended: false,
        }
    }

    #[test]
    fn queries_parse_and_refuse() {
        assert_eq!(PlaylistQuery::parse(""), Ok(PlaylistQuery::default()));
        assert_eq!(
            PlaylistQuery::parse("_HLS_msn=12&_HLS_part=3&_HLS_skip=YES&x=1"),
            Ok(PlaylistQuery {
                blocking: Some(Blocking {
                    msn: 12,
                    part: Some(3)
                }),
                skip: true
            })
        );
        assert_eq!(
            PlaylistQuery::parse("_HLS_part=1"),
            Err(QueryError::PartWithoutMsn)
        );
        assert!(PlaylistQuery::parse("_HLS_msn=-1").is_err());
        assert!(PlaylistQuery::parse("_HLS_msn=99999999999999999999999").is_err());
        assert!(PlaylistQuery::parse("_HLS_skip=NO").is_err());
    }

    #[test]
    fn blocking_waits_for_the_part_and_refuses_far_ahead() {
        let v = view(3, 2);
        let want = |msn, part| Blocking { msn, part };
        assert!(v.satisfies(&want(3, Some(1))));
        assert!(!v.satisfies(&want(3, Some(2))));
        assert!(v.satisfies(&want(2, None)));
        assert!(!v.satisfies(&want(3, None)), "segment 3 is not complete");
        assert!(
            v.satisfies(&want(2, Some(9))),
            "a complete segment has every part"
        );
        assert!(!v.too_far(&want(5, None)));
        assert!(v.too_far(&want(6, None)));
        assert_eq!(v.last_part(), Some((3, 1)));
    }

    #[test]
    fn playlist_lists_recent_parts_hint_and_reports() {
        let text = render(
            &view(8, 2),
            false,
            &[RenditionReport {
                uri: "../720p/index.m3u8".into(),
                last_msn: 8,
                last_part: 1,
            }],
        );
        assert!(text.contains(
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500,CAN-SKIP-UNTIL=12.0\n"
        ));
        assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=0.500\n"));
        // Parts of the last segments (within 3 targets of the end) only.
        assert!(!text.contains("#EXT-X-PART:DURATION=0.50000,URI=\"s.0.m4s\",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.50000,URI=\"s.1.m4s\"\n#EXT-X-PART:DURATION=0.50000,URI=\"s.2.m4s\"\n#EXT-X-PART:DURATION=0.50000,URI=\"s.3.m4s\"\n#EXTINF:2.00000,\n4.m4s"));
        assert!(text.contains("URI=\"s.3.m4s\"\n#EXTINF:2.00000,\n5.m4s\n"));
        assert!(
            text.contains(
                "#EXT-X-PART:DURATION=0.50000,URI=\"s.3.m4s\"\n#EXTINF:2.00000,\n7.m4s\n"
            )
        );
        assert!(text.ends_with(
            "#EXT-X-PART:DURATION=0.50000,URI=\"s.1.m4s\"\n\
             #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"8.2.m4s\"\n\
             #EXT-X-RENDITION-REPORT:URI=\"../720p/index.m3u8\",LAST-MSN=8,LAST-PART=1\n"
        ));
    }

    #[test]
    fn delta_update_skips_old_segments() {
        // 10 segments of 2 s + 1 s of parts: 21 s; CAN-SKIP-UNTIL 12 s.
        let text = render(&view(10, 2), true, &[]);
        assert!(text.contains("#EXT-X-VERSION:9\n"));
        assert!(text.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=4\n"), "{text}");
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:0\n"));
        assert!(!text.contains("\n3.m4s\n"));
        assert!(text.contains("\n4.m4s\n"));
        // The map is repeated after the skip.
        assert!(text.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=4\n#EXT-X-MAP:URI=\"init1.mp4\"\n"));
    }
}
