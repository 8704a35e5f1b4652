//! How HLS objects are named, in one place: the packager writes these names,
//! the origin and the store answer by them, the edge caches by them and the
//! director places viewers by them.

/// The prefix of every HLS path on an origin, an edge and a director.
pub const HLS_PREFIX: &str = "/hls/";

/// What kind of object a name is, from its extension: it decides the HTTP
/// headers an origin sends and the freshness an edge assumes when the origin
/// says nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// A playlist: changes every segment, so cached only briefly.
    Playlist,
    /// An MPEG-TS segment: never changes once written.
    TsSegment,
    /// An fMP4 media or init segment, or an LL-HLS part: never changes once
    /// written.
    Mp4Segment,
    /// Audio-only or subtitle segments (`.aac`, `.vtt`) that a foreign origin
    /// may serve: immutable like the others, sent as bytes.
    OtherSegment,
    /// Anything else.
    Other,
}

impl ObjectKind {
    /// The kind of the object at `path`.
    pub fn of(path: &str) -> ObjectKind {
        if path.ends_with(".m3u8") {
            ObjectKind::Playlist
        } else if path.ends_with(".ts") {
            ObjectKind::TsSegment
        } else if path.ends_with(".m4s") || path.ends_with(".mp4") {
            ObjectKind::Mp4Segment
        } else if path.ends_with(".aac") || path.ends_with(".vtt") {
            ObjectKind::OtherSegment
        } else {
            ObjectKind::Other
        }
    }

    /// Media that never changes once written.
    pub fn is_segment(self) -> bool {
        matches!(
            self,
            ObjectKind::TsSegment | ObjectKind::Mp4Segment | ObjectKind::OtherSegment
        )
    }

    /// `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            ObjectKind::Playlist => "application/vnd.apple.mpegurl",
            ObjectKind::TsSegment => "video/mp2t",
            ObjectKind::Mp4Segment => "video/mp4",
            ObjectKind::OtherSegment | ObjectKind::Other => "application/octet-stream",
        }
    }

    /// `Cache-Control`: playlists for one second, segments for a day, immutable.
    pub fn cache_control(self) -> &'static str {
        match self {
            ObjectKind::Playlist => "max-age=1",
            k if k.is_segment() => "public, max-age=86400, immutable",
            _ => "no-cache",
        }
    }
}

/// Part `index` of segment `sequence` in a session whose names start with
/// `prefix`: `SESSION-12.3.m4s` (the segment itself is `SESSION-12.m4s`).
pub fn part_name(prefix: &str, sequence: u64, index: usize) -> String {
    format!("{prefix}{sequence}.{index}.m4s")
}

/// Whether `file` names an LL-HLS part ([`part_name`]): the rule the origin
/// answers parts by and the edge holds them by.
pub fn is_part_name(file: &str) -> bool {
    file.strip_suffix(".m4s")
        .and_then(|stem| stem.rsplit_once('.'))
        .is_some_and(|(_, index)| !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `path` (below `/hls/`) names a media playlist: the only object
/// LL-HLS parameters select among.
pub fn is_media_playlist(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or("");
    file.ends_with(".m3u8") && file != "master.m3u8"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_extensions() {
        assert_eq!(ObjectKind::of("a/index.m3u8"), ObjectKind::Playlist);
        assert_eq!(ObjectKind::of("a/1.ts").content_type(), "video/mp2t");
        assert!(
            ObjectKind::of("a/1.ts")
                .cache_control()
                .contains("immutable")
        );
        assert_eq!(
            ObjectKind::of("demo/source/ab-1.m4s"),
            ObjectKind::Mp4Segment
        );
        assert!(ObjectKind::of("a/init3.mp4").is_segment());
        assert!(ObjectKind::of("a/audio-1.aac").is_segment());
        assert!(!ObjectKind::of("a/index.m3u8").is_segment());
        assert_eq!(ObjectKind::of("a/readme.txt").cache_control(), "no-cache");
    }

    #[test]
    fn parts_are_named_and_recognised_by_one_rule() {
        let name = part_name("ab-", 12, 3);
        assert_eq!(name, "ab-12.3.m4s");
        assert!(is_part_name(&name));
        assert!(!is_part_name("ab-12.m4s"));
        assert!(!is_part_name("ab-12..m4s"));
        assert!(!is_part_name("ab-12.x.m4s"));
        assert!(is_media_playlist("demo/source/index.m3u8"));
        assert!(!is_media_playlist("demo/master.m3u8"));
    }
}
