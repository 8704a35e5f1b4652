//! The parts of an origin's `Cache-Control` that decide how long an edge may
//! keep an object (RFC 9111 §5.2.2): a shared cache reads `s-maxage` before
//! `max-age`, stores nothing marked `no-store` or `private`, and never needs to
//! revalidate what is `immutable` while it is fresh.

use std::time::Duration;

/// Directives longer than this are not parsed (a header is bounded by the
/// HTTP layer already; this bounds the work of one parse).
pub const MAX_HEADER_LEN: usize = 4096;

/// What an origin said about caching one response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `s-maxage`, else `max-age`.
    pub max_age: Option<Duration>,
    /// `no-store` or `private`: a shared cache must not keep it.
    pub no_store: bool,
    /// `no-cache`: kept, but fresh for zero seconds.
    pub no_cache: bool,
    /// `immutable`.
    pub immutable: bool,
}

impl CacheControl {
    /// Parses a header value; unknown directives and malformed numbers are
    /// ignored (an unusable `max-age` counts as absent, so defaults apply).
    pub fn parse(value: &str) -> CacheControl {
        let mut cc = CacheControl::default();
        if value.len() > MAX_HEADER_LEN {
            return cc;
        }
        let mut max_age = None;
        let mut s_maxage = None;
        for directive in value.split(',') {
            let directive = directive.trim();
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (directive, None),
            };
            let seconds = || {
                arg.and_then(|a| a.parse::<u64>().ok())
                    .map(|s| Duration::from_secs(s.min(u64::from(u32::MAX))))
            };
            match name.to_ascii_lowercase().as_str() {
                "max-age" => max_age = seconds(),
                "s-maxage" => s_maxage = seconds(),
                "no-store" | "private" => cc.no_store = true,
                "no-cache" => cc.no_cache = true,
                "immutable" => cc.immutable = true,
                _ => {}
            }
        }
        cc.max_age = s_maxage.or(max_age);
        cc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_a_shared_cache_needs() {
        let cc = CacheControl::parse("public, max-age=86400, immutable");
        assert_eq!(cc.max_age, Some(Duration::from_secs(86400)));
        assert!(cc.immutable && !cc.no_store && !cc.no_cache);
        let cc = CacheControl::parse("max-age=10, s-maxage=2");
        assert_eq!(cc.max_age, Some(Duration::from_secs(2)));
        let cc = CacheControl::parse("Private, MAX-AGE=\"5\"");
        assert!(cc.no_store);
        assert_eq!(cc.max_age, Some(Duration::from_secs(5)));
        assert!(CacheControl::parse("no-cache").no_cache);
    }

    #[test]
    fn garbage_counts_as_absent() {
        for v in [
            "max-age=-1",
            "max-age=",
            "max-age=1e9",
            "=,,=,",
            "\u{7f}max-age=1x",
        ] {
            assert_eq!(CacheControl::parse(v).max_age, None, "{v}");
        }
        assert_eq!(
            CacheControl::parse("max-age=99999999999999999999").max_age,
            None
        );
        let long = format!("max-age=1,{}", "x".repeat(MAX_HEADER_LEN));
        assert_eq!(CacheControl::parse(&long), CacheControl::default());
        assert_eq!(
            CacheControl::parse("max-age=18446744073709551615").max_age,
            Some(Duration::from_secs(u64::from(u32::MAX)))
        );
    }
}
