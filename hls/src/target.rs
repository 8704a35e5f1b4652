//! What a viewer may ask for below `/hls/`, and the key it maps to: one rule
//! for the edge's cache, the director's placement and the fuzz target.
//!
//! Paths are checked on the raw bytes of the request target, before any
//! decoding: only `/hls/` followed by segments of letters, digits, `.`, `_`
//! and `-` pass, so no encoding of a traversal (`%2e%2e`, `%252e`, `..\`,
//! overlong UTF-8) reaches a cache key or an origin URL; a segment longer
//! than a file name can be ([`MAX_SEGMENT_LEN`]) is refused here rather than
//! by the origin's file system. The query is not part of the key, except the
//! LL-HLS parameters (`_HLS_msn`, `_HLS_part`, `_HLS_skip`) of a media
//! playlist, parsed as numbers and written back in one canonical form
//! (`_HLS_msn=017` and `_HLS_msn=17` are one key); on anything else (a
//! segment, a part, the multivariant playlist) they are dropped, so they
//! cannot multiply one object into many cache entries.

use std::fmt;

/// The longest path accepted (longer gets 414).
pub const MAX_PATH_LEN: usize = 1024;
/// The longest query accepted (longer gets 414).
pub const MAX_QUERY_LEN: usize = 1024;
/// The longest path segment accepted (a file name on every file system).
pub const MAX_SEGMENT_LEN: usize = 255;
/// The highest `_HLS_part` index accepted before the edge knows the
/// playlist (the packager numbers at most 4096 parts per segment).
pub const MAX_PART_INDEX: u64 = 4095;
pub use crate::naming::HLS_PREFIX;
use crate::naming::{is_media_playlist, is_part_name};

/// Why a request target was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadTarget {
    /// Longer than [`MAX_PATH_LEN`] or [`MAX_QUERY_LEN`].
    #[error("request target too long")]
    TooLong,
    /// Not under `/hls/`.
    #[error("not an HLS path")]
    NotHls,
    /// A byte outside the allowed set, an empty, `.` or `..` segment, a
    /// segment over [`MAX_SEGMENT_LEN`] bytes.
    #[error("invalid path")]
    Invalid,
    /// LL-HLS parameters that are not numbers, `_HLS_part` without
    /// `_HLS_msn`, or a part index over [`MAX_PART_INDEX`].
    #[error("invalid LL-HLS query")]
    BadQuery,
}

/// The LL-HLS blocking-reload parameters of a media playlist request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LlQuery {
    /// `_HLS_msn`: the media sequence number waited for.
    pub msn: u64,
    /// `_HLS_part`: the part of that segment waited for.
    pub part: Option<u64>,
    /// `_HLS_skip`: a delta update (`YES`) or with date ranges (`v2`).
    pub skip: Option<Skip>,
}

/// `_HLS_skip`'s two values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Skip {
    /// `YES`.
    Yes,
    /// `v2`.
    V2,
}

/// A validated object name: the path below `/hls/` plus the LL-HLS query
/// parameters in a fixed order.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    path: String,
    query: String,
    ll: Option<LlQuery>,
    skip_only: bool,
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)?;
        if !self.query.is_empty() {
            write!(f, "?{}", self.query)?;
        }
        Ok(())
    }
}

impl CacheKey {
    /// Checks a raw path and query (as sent, not decoded).
    pub fn parse(path: &str, query: Option<&str>) -> Result<CacheKey, BadTarget> {
        if path.len() > MAX_PATH_LEN || query.is_some_and(|q| q.len() > MAX_QUERY_LEN) {
            return Err(BadTarget::TooLong);
        }
        let rest = path.strip_prefix(HLS_PREFIX).ok_or(BadTarget::NotHls)?;
        if rest.is_empty() {
            return Err(BadTarget::Invalid);
        }
        for segment in rest.split('/') {
            let ok = !segment.is_empty()
                && segment.len() <= MAX_SEGMENT_LEN
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !ok {
                return Err(BadTarget::Invalid);
            }
        }
        let (ll, skip) = if is_media_playlist(rest) {
            ll_hls_query(query.unwrap_or(""))?
        } else {
            (None, None)
        };
        Ok(CacheKey::with_ll(rest.to_owned(), ll, skip))
    }

    fn with_ll(path: String, ll: Option<LlQuery>, skip: Option<Skip>) -> CacheKey {
        let query = match (ll, skip) {
            (Some(q), _) => canonical(&q),
            // A delta update without a blocking reload (`_HLS_skip` alone).
            (None, Some(s)) => format!("_HLS_skip={}", skip_text(s)),
            (None, None) => String::new(),
        };
        CacheKey {
            path,
            query,
            ll,
            skip_only: ll.is_none() && skip.is_some(),
        }
    }

    /// The same object without LL-HLS parameters: the plain playlist that
    /// says how far a blocking reload may reach.
    pub fn without_query(&self) -> CacheKey {
        CacheKey::with_ll(self.path.clone(), None, None)
    }

    /// The blocking-reload parameters, if any.
    pub fn ll(&self) -> Option<LlQuery> {
        self.ll
    }

    /// An LL-HLS part (`NAME-12.3.m4s`): a hinted one is held by the origin
    /// until it is complete, like a blocking reload.
    pub fn is_part(&self) -> bool {
        is_part_name(self.path.rsplit('/').next().unwrap_or(""))
    }

    /// Whether the origin may hold the request (a blocking reload or a part):
    /// its head comes late, and a 503 for it says nothing about the origin.
    pub fn may_be_held(&self) -> bool {
        self.is_blocking() || self.is_part()
    }

    /// The object's path below `/hls/` (the origin store's key).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The LL-HLS query (`_HLS_msn=N&_HLS_part=M&_HLS_skip=YES`), or empty.
    pub fn query(&self) -> &str {
        &self.query
    }

    /// An LL-HLS blocking playlist reload (`_HLS_msn`): the origin holds it
    /// until the part it names exists.
    pub fn is_blocking(&self) -> bool {
        self.ll.is_some()
    }

    /// A delta update without a blocking reload (`_HLS_skip` alone).
    pub fn is_skip_only(&self) -> bool {
        self.skip_only
    }

    /// The first path segment: the stream (what a purge names).
    pub fn stream(&self) -> &str {
        self.path.split('/').next().unwrap_or("")
    }

    /// Bytes this key takes in memory, for the cache's weight.
    pub fn weight(&self) -> usize {
        self.path.len() + self.query.len() + std::mem::size_of::<Self>()
    }

    /// The path and query to ask an origin for (`/hls/...`).
    pub fn origin_target(&self) -> String {
        if self.query.is_empty() {
            format!("{HLS_PREFIX}{}", self.path)
        } else {
            format!("{HLS_PREFIX}{}?{}", self.path, self.query)
        }
    }
}

fn canonical(q: &LlQuery) -> String {
    let mut out = format!("_HLS_msn={}", q.msn);
    if let Some(p) = q.part {
        out.push_str(&format!("&_HLS_part={p}"));
    }
    if let Some(s) = q.skip {
        out.push_str(&format!("&_HLS_skip={}", skip_text(s)));
    }
    out
}

fn skip_text(s: Skip) -> &'static str {
    match s {
        Skip::Yes => "YES",
        Skip::V2 => "v2",
    }
}

/// Reads `_HLS_msn`, `_HLS_part` and `_HLS_skip` (numbers, `YES` or `v2`);
/// every other parameter is dropped. `_HLS_part` needs `_HLS_msn` (the
/// spec's 400).
fn ll_hls_query(query: &str) -> Result<(Option<LlQuery>, Option<Skip>), BadTarget> {
    let mut msn = None;
    let mut part = None;
    let mut skip = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = || {
            (!value.is_empty() && value.len() <= 20 && value.bytes().all(|b| b.is_ascii_digit()))
                .then(|| value.parse::<u64>().ok())
                .flatten()
                .filter(|n| *n <= u64::from(u32::MAX))
                .ok_or(BadTarget::BadQuery)
        };
        match name {
            "_HLS_msn" => msn = Some(number()?),
            "_HLS_part" => part = Some(number()?),
            "_HLS_skip" if value == "YES" => skip = Some(Skip::Yes),
            "_HLS_skip" if value == "v2" => skip = Some(Skip::V2),
            "_HLS_skip" => return Err(BadTarget::BadQuery),
            _ => {}
        }
    }
    if part.is_some_and(|p| p > MAX_PART_INDEX) {
        return Err(BadTarget::BadQuery);
    }
    match msn {
        Some(msn) => Ok((Some(LlQuery { msn, part, skip }), None)),
        None if part.is_some() => Err(BadTarget::BadQuery),
        None => Ok((None, skip)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_hls_paths_pass() {
        let k = CacheKey::parse("/hls/demo/master.m3u8", None).expect("valid");
        assert_eq!(k.path(), "demo/master.m3u8");
        assert_eq!(k.stream(), "demo");
        assert_eq!(k.origin_target(), "/hls/demo/master.m3u8");
        let k = CacheKey::parse("/hls/demo/720p/a1b2-17.ts", Some("token=x&t=9")).expect("ok");
        assert_eq!(k.query(), "");
        assert_eq!(
            k,
            CacheKey::parse("/hls/demo/720p/a1b2-17.ts", None).expect("ok")
        );
    }

    #[test]
    fn ll_hls_parameters_are_kept_in_order() {
        let k = CacheKey::parse(
            "/hls/demo/source/index.m3u8",
            Some("_HLS_skip=YES&x=1&_HLS_part=2&_HLS_msn=17"),
        )
        .expect("valid");
        assert_eq!(k.query(), "_HLS_msn=17&_HLS_part=2&_HLS_skip=YES");
        assert_eq!(
            k.origin_target(),
            "/hls/demo/source/index.m3u8?_HLS_msn=17&_HLS_part=2&_HLS_skip=YES"
        );
        for bad in [
            "_HLS_msn=-1",
            "_HLS_msn=",
            "_HLS_msn=1&_HLS_part=1e3",
            "_HLS_skip=no",
            "_HLS_part=2",
            "_HLS_msn=1&_HLS_part=4096",
            "_HLS_msn=99999999999999999999",
        ] {
            assert_eq!(
                CacheKey::parse("/hls/a/b.m3u8", Some(bad)),
                Err(BadTarget::BadQuery),
                "{bad}"
            );
        }
    }

    #[test]
    fn ll_hls_parameters_have_one_canonical_form_and_only_on_media_playlists() {
        let a = CacheKey::parse("/hls/a/v/index.m3u8", Some("_HLS_msn=017&_HLS_part=03"))
            .expect("valid");
        let b =
            CacheKey::parse("/hls/a/v/index.m3u8", Some("_HLS_part=3&_HLS_msn=17")).expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.query(), "_HLS_msn=17&_HLS_part=3");
        assert!(a.is_blocking());
        assert_eq!(a.without_query().query(), "");
        // Segments, parts and the multivariant playlist: dropped, even when junk.
        for path in [
            "/hls/a/v/s-17.m4s",
            "/hls/a/v/s-17.2.m4s",
            "/hls/a/master.m3u8",
        ] {
            let k = CacheKey::parse(path, Some("_HLS_msn=5&_HLS_part=999999&_HLS_skip=no"))
                .expect("valid");
            assert_eq!(k.query(), "", "{path}");
            assert!(!k.is_blocking());
        }
        let skip = CacheKey::parse("/hls/a/v/index.m3u8", Some("_HLS_skip=YES")).expect("ok");
        assert!(skip.is_skip_only() && !skip.is_blocking());
        assert!(
            CacheKey::parse("/hls/a/v/s-17.2.m4s", None)
                .expect("ok")
                .is_part()
        );
        assert!(
            !CacheKey::parse("/hls/a/v/s-17.m4s", None)
                .expect("ok")
                .is_part()
        );
    }

    #[test]
    fn a_path_segment_longer_than_a_file_name_is_refused() {
        let ok = format!("/hls/a/{}.ts", "x".repeat(MAX_SEGMENT_LEN - 3));
        assert!(CacheKey::parse(&ok, None).is_ok());
        let long = format!("/hls/a/{}.ts", "x".repeat(MAX_SEGMENT_LEN));
        assert_eq!(CacheKey::parse(&long, None), Err(BadTarget::Invalid));
    }

    #[test]
    fn traversal_in_every_encoding_is_refused() {
        for path in [
            "/hls/../etc/passwd",
            "/hls/demo/../../x",
            "/hls/./demo/x.ts",
            "/hls//demo/x.ts",
            "/hls/demo/",
            "/hls/",
            "/hls/%2e%2e/x",
            "/hls/%252e%252e/x",
            "/hls/..%2fetc",
            "/hls/..\\..\\x",
            "/hls/demo/x.ts%00",
            "/hls/\u{c0}\u{ae}\u{c0}\u{ae}/x",
            "/hls/demo x/a.ts",
        ] {
            assert_eq!(
                CacheKey::parse(path, None),
                Err(BadTarget::Invalid),
                "{path:?}"
            );
        }
        assert_eq!(CacheKey::parse("/etc/passwd", None), Err(BadTarget::NotHls));
        assert_eq!(
            CacheKey::parse("http://evil/hls/x", None),
            Err(BadTarget::NotHls)
        );
        let long = format!("/hls/{}", "a".repeat(MAX_PATH_LEN));
        assert_eq!(CacheKey::parse(&long, None), Err(BadTarget::TooLong));
        let q = "a".repeat(MAX_QUERY_LEN + 1);
        assert_eq!(
            CacheKey::parse("/hls/a/b.ts", Some(&q)),
            Err(BadTarget::TooLong)
        );
    }
}
