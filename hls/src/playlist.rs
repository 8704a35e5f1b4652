//! Media and multivariant playlists (RFC 8216), rendered by hand: the crates that
//! exist lose tags they do not know and know no LL-HLS tags.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// A segment as a media playlist lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentEntry {
    /// Media sequence number.
    pub sequence: u64,
    /// Duration in seconds.
    pub duration: f64,
    /// URI relative to the playlist.
    pub uri: String,
    /// A discontinuity (publisher reconnect, lost segment) precedes it.
    pub discontinuity: bool,
    /// Wall-clock time of its first frame at ingest.
    pub program_date_time: SystemTime,
    /// fMP4: the init segment it needs (`EXT-X-MAP`).
    pub map: Option<String>,
    /// Low-latency HLS: its partial segments, while they are kept.
    pub parts: Vec<PartEntry>,
}

/// A partial segment as a playlist lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct PartEntry {
    /// Duration in seconds.
    pub duration: f64,
    /// URI relative to the playlist.
    pub uri: String,
    /// Starts with a keyframe: a player may start decoding here.
    pub independent: bool,
}

/// Renders a media playlist of `segments` (the sliding window, oldest first);
/// `discontinuity_sequence` counts discontinuities that already left the window.
pub fn media_playlist(
    target_duration: u64,
    discontinuity_sequence: u64,
    segments: &[SegmentEntry],
    ended: bool,
) -> String {
    let mut out = String::new();
    let first = segments.first().map_or(0, |s| s.sequence);
    // EXT-X-MAP in a media playlist needs version 6 (7 with fMP4 per Apple's spec).
    let version = if segments.iter().any(|s| s.map.is_some()) {
        7
    } else {
        3
    };
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:{version}\n#EXT-X-TARGETDURATION:{target_duration}\n#EXT-X-MEDIA-SEQUENCE:{first}\n"
    );
    let mut map: Option<&str> = None;
    if discontinuity_sequence > 0 {
        let _ = writeln!(
            out,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}"
        );
    }
    for s in segments {
        segment_head(
            &mut out,
            s.discontinuity,
            s.map.as_deref(),
            &mut map,
            s.program_date_time,
        );
        let _ = write!(out, "#EXTINF:{:.3},\n{}\n", s.duration, s.uri);
    }
    if ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

/// The tags before a segment (or the parts of the one being built): a
/// discontinuity, its init segment when it differs from the one before
/// (`map` tracks it), and its date.
pub(crate) fn segment_head<'a>(
    out: &mut String,
    discontinuity: bool,
    init: Option<&'a str>,
    map: &mut Option<&'a str>,
    date: SystemTime,
) {
    if discontinuity {
        out.push_str("#EXT-X-DISCONTINUITY\n");
    }
    if let Some(m) = init
        && *map != Some(m)
    {
        let _ = writeln!(out, "#EXT-X-MAP:URI=\"{m}\"");
        *map = Some(m);
    }
    let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", rfc3339(date));
}

/// One variant of a multivariant playlist.
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    /// URI of its media playlist, relative to the multivariant playlist.
    pub uri: String,
    /// Peak segment bitrate, bits per second.
    pub bandwidth: u64,
    /// Average bitrate, bits per second.
    pub average_bandwidth: u64,
    /// RFC 6381 codec strings.
    pub codecs: Vec<String>,
    /// Picture size, if the variant has video.
    pub resolution: Option<(u32, u32)>,
    /// Frames per second, if known.
    pub frame_rate: Option<f64>,
}

/// Renders a multivariant playlist.
pub fn multivariant_playlist(variants: &[Variant]) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for v in variants {
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\"",
            v.bandwidth,
            v.average_bandwidth,
            v.codecs.join(",")
        );
        if let Some((w, h)) = v.resolution {
            let _ = write!(out, ",RESOLUTION={w}x{h}");
        }
        if let Some(fps) = v.frame_rate {
            let _ = write!(out, ",FRAME-RATE={fps:.3}");
        }
        let _ = write!(out, "\n{}\n", v.uri);
    }
    out
}

/// `2026-11-24T06:07:16.648Z`, without a date crate.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn dates_render_as_rfc3339() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_500_436_648);
        assert_eq!(rfc3339(t), "2026-11-24T06:07:16.648Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }

    /// Golden output; see README.md in this crate on regenerating it.
    #[test]
    fn media_playlist_golden() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_795_500_436);
        let seg = |sequence, duration, discontinuity| SegmentEntry {
            sequence,
            duration,
            uri: format!("{sequence}.ts"),
            discontinuity,
            program_date_time: t0 + Duration::from_secs(sequence * 2),
            map: None,
            parts: Vec::new(),
        };
        let text = media_playlist(3, 0, &[seg(7, 2.0, false), seg(8, 2.5, true)], true);
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXT-X-MEDIA-SEQUENCE:7\n\
             #EXT-X-PROGRAM-DATE-TIME:2026-11-24T06:07:30.000Z\n#EXTINF:2.000,\n7.ts\n\
             #EXT-X-DISCONTINUITY\n\
             #EXT-X-PROGRAM-DATE-TIME:2026-11-24T06:07:32.000Z\n#EXTINF:2.500,\n8.ts\n\
             #EXT-X-ENDLIST\n"
        );
    }

    #[test]
    fn multivariant_golden() {
        let v = Variant {
            uri: "source/index.m3u8".into(),
            bandwidth: 2_500_000,
            average_bandwidth: 2_100_000,
            codecs: vec!["avc1.64001f".into(), "mp4a.40.2".into()],
            resolution: Some((1280, 720)),
            frame_rate: Some(30.0),
        };
        assert_eq!(
            multivariant_playlist(&[v]),
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=2500000,AVERAGE-BANDWIDTH=2100000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=30.000\n\
             source/index.m3u8\n"
        );
    }
}
