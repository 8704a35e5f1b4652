//! Playlist rewriting, line by line: only URIs change; every other line
//! (sequence numbers, dates, discontinuities, tags this code has never
//! heard of) passes through byte for byte.
//!
//! Why not parse and re-serialise with m3u8-rs: its writer puts every tag of
//! a segment in its own fixed order (unknown tags just before `#EXTINF`) and
//! re-formats dates and durations, and a director must not change what it
//! does not need to.
//! m3u8-rs is used in the tests to check that the output still parses to the
//! same playlist apart from the URIs.

/// Tags whose `URI` attribute names a media object (fetched from an edge).
const MEDIA_URI_TAGS: &[&str] = &[
    "#EXT-X-MAP:",
    "#EXT-X-PART:",
    "#EXT-X-PRELOAD-HINT:",
    "#EXT-X-KEY:",
];
/// Tags whose `URI` attribute names a playlist (asked of the director again).
const PLAYLIST_URI_TAGS: &[&str] = &[
    "#EXT-X-MEDIA:",
    "#EXT-X-I-FRAME-STREAM-INF:",
    "#EXT-X-RENDITION-REPORT:",
];

/// Replaces the value of the `URI="..."` attribute of `line` with `f(value)`.
fn map_uri_attribute(line: &str, f: impl FnOnce(&str) -> String) -> String {
    let Some(at) = line.find("URI=\"") else {
        return line.to_owned();
    };
    // `URI=` must start an attribute (not be the tail of another name).
    if at > 0 && !matches!(line.as_bytes()[at - 1], b':' | b',') {
        return line.to_owned();
    }
    let start = at + 5;
    let Some(len) = line[start..].find('"') else {
        return line.to_owned();
    };
    let value = &line[start..start + len];
    format!("{}{}{}", &line[..start], f(value), &line[start + len..])
}

fn has_scheme(uri: &str) -> bool {
    uri.split_once(':').is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    })
}

/// `uri` resolved against the directory of `playlist_path` (`/hls/s/v/index.m3u8`),
/// as an absolute path (`/hls/s/v/x.ts`); `None` for an absolute URL.
pub fn resolve(playlist_path: &str, uri: &str) -> Option<String> {
    if has_scheme(uri) || uri.starts_with("//") {
        return None;
    }
    let joined = if uri.starts_with('/') {
        uri.to_owned()
    } else {
        let dir = playlist_path.rsplit_once('/').map_or("", |(d, _)| d);
        format!("{dir}/{uri}")
    };
    let (path, query) = match joined.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (joined.as_str(), None),
    };
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

/// A media playlist served at `playlist_path` with every media URI made an
/// absolute URL on `edge` (`http://10.0.7:8080`), and playlist URIs
/// (rendition reports) kept relative with the viewer's `token`.
pub fn media(playlist: &str, playlist_path: &str, edge: &str, token: &str) -> String {
    media_by_sequence(playlist, playlist_path, |_| edge, token)
}

/// The media sequence number of the first segment and the number of
/// segments of a media playlist.
pub fn sequence_span(playlist: &str) -> (u64, u64) {
    let mut first = 0;
    let mut count = 0;
    for line in playlist.lines() {
        if let Some(n) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            first = n.trim().parse().unwrap_or(0);
        } else if let Some(n) = skipped(line) {
            // A delta update stands for the segments it skips.
            count += n;
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            count += 1;
        }
    }
    (first, count)
}

/// Like [`media`], with the edge chosen per segment by its media sequence
/// number: a viewer moved to another edge keeps the URIs it has already seen
/// (players such as hls.js treat a changed URI for the same sequence number
/// as a broken playlist) and gets the new edge from the next segment on.
pub fn media_by_sequence<'a>(
    playlist: &str,
    playlist_path: &str,
    edge_for: impl Fn(u64) -> &'a str,
    token: &str,
) -> String {
    let on_edge = |uri: &str, msn: u64| match resolve(playlist_path, uri) {
        Some(path) => format!("{}{path}", edge_for(msn).trim_end_matches('/')),
        None => uri.to_owned(),
    };
    let mut msn = 0u64;
    let mut out = String::with_capacity(playlist.len() + playlist.len() / 2);
    for line in playlist.lines() {
        let rewritten = if line.starts_with('#') {
            if let Some(n) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                msn = n.trim().parse().unwrap_or(0);
                line.to_owned()
            } else if let Some(n) = skipped(line) {
                msn = msn.saturating_add(n);
                line.to_owned()
            } else if MEDIA_URI_TAGS.iter().any(|t| line.starts_with(t)) {
                // Maps, parts and hints belong to the segment being listed.
                map_uri_attribute(line, |u| on_edge(u, msn))
            } else {
                tag_with_token(line, token)
            }
        } else if line.trim().is_empty() {
            line.to_owned()
        } else {
            let uri = on_edge(line.trim(), msn);
            msn += 1;
            uri
        };
        out.push_str(&rewritten);
        out.push('\n');
    }
    out
}

/// `SKIPPED-SEGMENTS` of an `EXT-X-SKIP` line (an LL-HLS delta update).
fn skipped(line: &str) -> Option<u64> {
    let attrs = line.strip_prefix("#EXT-X-SKIP:")?;
    attrs
        .split(',')
        .find_map(|a| a.strip_prefix("SKIPPED-SEGMENTS="))
        .and_then(|n| n.trim().parse().ok())
}

/// A tag line with its playlist `URI` (if it names one) carrying `token`.
fn tag_with_token(line: &str, token: &str) -> String {
    if PLAYLIST_URI_TAGS.iter().any(|t| line.starts_with(t)) {
        map_uri_attribute(line, |u| with_token(u, token))
    } else {
        line.to_owned()
    }
}

/// `uri` with `v=TOKEN` added to its query.
pub fn with_token(uri: &str, token: &str) -> String {
    if has_scheme(uri) {
        return uri.to_owned();
    }
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}v={token}")
}

/// A multivariant playlist with every playlist URI carrying the viewer's
/// `token`, so its reloads come back to the director as this viewer.
pub fn multivariant(playlist: &str, token: &str) -> String {
    let mut out = String::with_capacity(playlist.len() + 64);
    for line in playlist.lines() {
        let rewritten = if line.starts_with('#') {
            tag_with_token(line, token)
        } else if line.trim().is_empty() {
            line.to_owned()
        } else {
            with_token(line.trim(), token)
        };
        out.push_str(&rewritten);
        out.push('\n');
    }
    out
}

/// Whether `name` may be a pathway (RFC 8216bis: letters, digits, `.`, `-`,
/// `_`), and short.
pub fn valid_pathway(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// A multivariant playlist for content steering: every variant once per
/// pathway (edge pool) with `PATHWAY-ID`, its URI carrying the viewer's token
/// and the pool (`p=`), and `EXT-X-CONTENT-STEERING` naming `steering_uri`
/// with `pools[0]` as the first pathway. A playlist that already steers, or
/// has no variants, gets the plain rewrite.
pub fn steered(playlist: &str, token: &str, pools: &[String], steering_uri: &str) -> String {
    let variants = playlist
        .lines()
        .filter(|l| l.starts_with("#EXT-X-STREAM-INF:"))
        .count();
    let ok = variants > 0
        && !pools.is_empty()
        && pools.iter().all(|p| valid_pathway(p))
        && !playlist.contains("#EXT-X-CONTENT-STEERING")
        && !playlist.contains("PATHWAY-ID=");
    if !ok {
        return multivariant(playlist, token);
    }
    let mut out = String::with_capacity(playlist.len() * (pools.len() + 1));
    let mut pending: Option<&str> = None;
    for (n, line) in playlist.lines().enumerate() {
        if n == 0 {
            out.push_str(line);
            out.push('\n');
            out.push_str(&format!(
                "#EXT-X-CONTENT-STEERING:SERVER-URI=\"{}\",PATHWAY-ID=\"{}\"\n",
                with_token(steering_uri, token),
                pools[0]
            ));
            continue;
        }
        if line.starts_with("#EXT-X-STREAM-INF:") {
            pending = Some(line);
            continue;
        }
        match pending.take() {
            Some(inf) if !line.starts_with('#') && !line.trim().is_empty() => {
                for pool in pools {
                    out.push_str(&format!("{inf},PATHWAY-ID=\"{pool}\"\n"));
                    out.push_str(&with_token(&with_pool(line.trim(), pool), token));
                    out.push('\n');
                }
            }
            other => {
                if let Some(inf) = other {
                    out.push_str(inf);
                    out.push('\n');
                }
                out.push_str(&tag_with_token(line, token));
                out.push('\n');
            }
        }
    }
    out
}

/// `uri` with `p=POOL` added to its query.
fn with_pool(uri: &str, pool: &str) -> String {
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}p={pool}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steering_lists_every_variant_per_pathway() {
        let m = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-STREAM-INF:BANDWIDTH=1\nsource/index.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=2\n720p/index.m3u8\n";
        let pools = vec!["east".to_owned(), "west".to_owned()];
        let out = steered(m, "ab", &pools, "steering.json");
        assert!(out.starts_with(
            "#EXTM3U\n#EXT-X-CONTENT-STEERING:SERVER-URI=\"steering.json?v=ab\",PATHWAY-ID=\"east\"\n"
        ));
        assert!(out.contains(
            "#EXT-X-STREAM-INF:BANDWIDTH=1,PATHWAY-ID=\"west\"\nsource/index.m3u8?p=west&v=ab\n"
        ));
        assert!(out.contains(
            "#EXT-X-STREAM-INF:BANDWIDTH=2,PATHWAY-ID=\"east\"\n720p/index.m3u8?p=east&v=ab\n"
        ));
        let parsed = m3u8_rs::parse_master_playlist_res(out.as_bytes()).expect("parses");
        assert_eq!(parsed.variants.len(), 4);
        // Already steering: left alone apart from tokens.
        let again = steered(&out, "cd", &pools, "steering.json");
        assert_eq!(again.matches("PATHWAY-ID=\"west\"").count(), 2);
        assert!(!valid_pathway("a b") && !valid_pathway("") && valid_pathway("eu-1.a_b"));
    }

    #[test]
    fn delta_updates_keep_sequence_numbers_and_parts_follow_their_segment() {
        let p = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:10\n#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n\
#EXTINF:2.0,\ns-13.m4s\n#EXT-X-PART:DURATION=0.25,URI=\"s-14.0.m4s\"\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"s-14.1.m4s\"\n";
        assert_eq!(sequence_span(p), (10, 4));
        let out = media_by_sequence(
            p,
            "/hls/demo/source/index.m3u8",
            |msn| if msn < 14 { "http://old" } else { "http://new" },
            "t",
        );
        assert!(
            out.contains("\nhttp://old/hls/demo/source/s-13.m4s\n"),
            "{out}"
        );
        assert!(
            out.contains("URI=\"http://new/hls/demo/source/s-14.0.m4s\""),
            "{out}"
        );
        assert!(
            out.contains("URI=\"http://new/hls/demo/source/s-14.1.m4s\""),
            "{out}"
        );
    }

    const TS: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:17\n\
#EXT-X-PROGRAM-DATE-TIME:2026-12-02T20:19:35.519Z\n#EXTINF:2.000,\nmx6kkjsk-17.ts\n\
#EXT-X-DISCONTINUITY\n#EXT-X-FUTURE-TAG:A=1,URI=\"keep\"\n#EXTINF:2.000,\nmx6kkjsk-18.ts\n";

    #[test]
    fn media_uris_go_to_the_edge_and_nothing_else_changes() {
        let out = media(TS, "/hls/demo/source/index.m3u8", "http://e1:8080/", "t1");
        let expected = TS
            .replace(
                "\nmx6kkjsk-17.ts",
                "\nhttp://e1:8080/hls/demo/source/mx6kkjsk-17.ts",
            )
            .replace(
                "\nmx6kkjsk-18.ts",
                "\nhttp://e1:8080/hls/demo/source/mx6kkjsk-18.ts",
            );
        assert_eq!(out, expected);
        let a = m3u8_rs::parse_media_playlist_res(TS.as_bytes()).expect("input parses");
        let b = m3u8_rs::parse_media_playlist_res(out.as_bytes()).expect("output parses");
        assert_eq!(a.media_sequence, b.media_sequence);
        assert_eq!(a.segments.len(), b.segments.len());
        for (x, y) in a.segments.iter().zip(&b.segments) {
            assert_eq!((x.duration, x.discontinuity), (y.duration, y.discontinuity));
            assert_eq!(x.program_date_time, y.program_date_time);
            assert!(y.uri.ends_with(&x.uri));
        }
    }

    #[test]
    fn fmp4_maps_and_ll_hls_tags() {
        let p = "#EXTM3U\n#EXT-X-MAP:URI=\"ab-init0.mp4\"\n#EXTINF:2.0,\nab-1.m4s\n\
#EXT-X-PART:DURATION=0.5,URI=\"ab-2.0.m4s\",INDEPENDENT=YES\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"ab-2.1.m4s\"\n\
#EXT-X-RENDITION-REPORT:URI=\"../720p/index.m3u8\",LAST-MSN=2\n";
        let out = media(p, "/hls/s/source/index.m3u8", "http://e", "tok");
        assert!(out.contains("#EXT-X-MAP:URI=\"http://e/hls/s/source/ab-init0.mp4\"\n"));
        assert!(out.contains("\nhttp://e/hls/s/source/ab-1.m4s\n"));
        assert!(out.contains("URI=\"http://e/hls/s/source/ab-2.0.m4s\",INDEPENDENT=YES"));
        assert!(
            out.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"http://e/hls/s/source/ab-2.1.m4s\"")
        );
        assert!(
            out.contains("#EXT-X-RENDITION-REPORT:URI=\"../720p/index.m3u8?v=tok\",LAST-MSN=2")
        );
    }

    #[test]
    fn multivariant_variants_carry_the_token() {
        let m = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS=\"avc1.4d401f\"\nsource/index.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=2\n720p/index.m3u8?x=1\n";
        let out = multivariant(m, "abc");
        assert!(out.contains("\nsource/index.m3u8?v=abc\n"));
        assert!(out.contains("\n720p/index.m3u8?x=1&v=abc\n"));
        assert!(out.contains("CODECS=\"avc1.4d401f\"\n"));
        let parsed = m3u8_rs::parse_master_playlist_res(out.as_bytes()).expect("parses");
        assert_eq!(parsed.variants.len(), 2);
    }

    #[test]
    fn a_moved_viewer_keeps_the_uris_it_has_seen() {
        let out = media_by_sequence(
            TS,
            "/hls/demo/source/index.m3u8",
            |msn| if msn < 18 { "http://old" } else { "http://new" },
            "t",
        );
        assert!(out.contains("\nhttp://old/hls/demo/source/mx6kkjsk-17.ts\n"));
        assert!(out.contains("\nhttp://new/hls/demo/source/mx6kkjsk-18.ts\n"));
        assert_eq!(sequence_span(TS), (17, 2));
    }

    #[test]
    fn resolution_of_relative_and_absolute_uris() {
        let p = "/hls/s/v/index.m3u8";
        assert_eq!(resolve(p, "x.ts").as_deref(), Some("/hls/s/v/x.ts"));
        assert_eq!(resolve(p, "../a/x.ts").as_deref(), Some("/hls/s/a/x.ts"));
        assert_eq!(resolve(p, "/other/x.ts").as_deref(), Some("/other/x.ts"));
        assert_eq!(resolve(p, "x.ts?q=1").as_deref(), Some("/hls/s/v/x.ts?q=1"));
        assert_eq!(resolve(p, "../../../../x.ts").as_deref(), Some("/x.ts"));
        assert_eq!(resolve(p, "https://cdn/x.ts"), None);
        assert_eq!(resolve(p, "//cdn/x.ts"), None);
        assert_eq!(
            media("#EXTM3U\nhttps://cdn/x.ts\n", p, "http://e", "t"),
            "#EXTM3U\nhttps://cdn/x.ts\n"
        );
    }
}
