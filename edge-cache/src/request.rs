//! What a viewer may ask an edge for, and the cache key it maps to.
//!
//! Paths are checked on the raw bytes of the request target, before any
//! decoding: only `/hls/` followed by segments of letters, digits, `.`, `_`
//! and `-` pass, so no encoding of a traversal (`%2e%2e`, `%252e`, `..\`,
//! overlong UTF-8) reaches a cache key or an origin URL. The query is not part
//! of the key, except the LL-HLS parameters (`_HLS_msn`, `_HLS_part`,
//! `_HLS_skip`) that select a different playlist.

use std::fmt;

/// The longest path accepted (longer gets 414).
pub const MAX_PATH_LEN: usize = 1024;
/// The longest query accepted (longer gets 414).
pub const MAX_QUERY_LEN: usize = 1024;
/// The prefix every cached path has.
pub const HLS_PREFIX: &str = "/hls/";

/// Why a request target was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadTarget {
    /// Longer than [`MAX_PATH_LEN`] or [`MAX_QUERY_LEN`].
    #[error("request target too long")]
    TooLong,
    /// Not under `/hls/`.
    #[error("not an HLS path")]
    NotHls,
    /// A byte outside the allowed set, an empty, `.` or `..` segment.
    #[error("invalid path")]
    Invalid,
}

/// A validated object name: the path below `/hls/` plus the LL-HLS query
/// parameters in a fixed order.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    path: String,
    query: String,
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
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !ok {
                return Err(BadTarget::Invalid);
            }
        }
        Ok(CacheKey {
            path: rest.to_owned(),
            query: ll_hls_query(query.unwrap_or(""))?,
        })
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
        self.query.starts_with("_HLS_msn=")
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

/// Keeps `_HLS_msn`, `_HLS_part` and `_HLS_skip` (checked: numbers, `YES` or
/// `v2`), in that order; drops every other parameter.
fn ll_hls_query(query: &str) -> Result<String, BadTarget> {
    let mut msn = None;
    let mut part = None;
    let mut skip = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = || {
            (!value.is_empty() && value.len() <= 10 && value.bytes().all(|b| b.is_ascii_digit()))
                .then(|| value.to_owned())
                .ok_or(BadTarget::Invalid)
        };
        match name {
            "_HLS_msn" => msn = Some(number()?),
            "_HLS_part" => part = Some(number()?),
            "_HLS_skip" if value == "YES" || value == "v2" => skip = Some(value.to_owned()),
            "_HLS_skip" => return Err(BadTarget::Invalid),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(m) = msn {
        out.push(format!("_HLS_msn={m}"));
    }
    if let Some(p) = part {
        out.push(format!("_HLS_part={p}"));
    }
    if let Some(s) = skip {
        out.push(format!("_HLS_skip={s}"));
    }
    Ok(out.join("&"))
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
        for bad in ["_HLS_msn=-1", "_HLS_msn=", "_HLS_part=1e3", "_HLS_skip=no"] {
            assert_eq!(
                CacheKey::parse("/hls/a/b.m3u8", Some(bad)),
                Err(BadTarget::Invalid),
                "{bad}"
            );
        }
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
