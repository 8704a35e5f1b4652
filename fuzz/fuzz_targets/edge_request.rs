//! What a viewer controls at an edge: the request target, `Range`, and (from
//! an origin) `Cache-Control`, a playlist's target duration and its reach for
//! blocking reloads. None may
//! panic; an accepted target never names anything outside `/hls/`; a range is
//! always inside the object.
#![no_main]

use edge_cache::cache_control::CacheControl;
use edge_cache::object::target_duration;
use edge_cache::range::{self, RangeRequest};
use hls::target::CacheKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let target = parts.next().unwrap_or("");
    let range_header = parts.next().unwrap_or("");
    let rest = parts.next().unwrap_or("");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    if let Ok(key) = CacheKey::parse(path, query) {
        let t = key.origin_target();
        assert!(t.starts_with("/hls/"));
        for segment in key.path().split('/') {
            assert!(!segment.is_empty() && segment != "." && segment != "..");
            assert!(
                segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            );
        }
        assert!(!t.contains("//") && !t.contains('%') && !t.contains('\\'));
        assert!(key.path().split('/').all(|s| s.len() <= 255));
        // One canonical form: parsing what the key asks the origin for
        // gives the same key.
        let (p, q) = match t.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (t.as_str(), None),
        };
        assert_eq!(CacheKey::parse(p, q).ok().as_ref(), Some(&key));
        if let Some(reach) = edge_cache::reach::Reach::of(rest.as_bytes())
            && let Some(ll) = key.ll()
        {
            let _ = reach.check(ll.msn, ll.part);
            assert!(reach.max_parts <= hls::target::MAX_PART_INDEX + 1);
        }
    }
    let len = u64::from(data.first().copied().unwrap_or(0)) * 1000;
    match range::parse(range_header, len) {
        RangeRequest::Part { start, end } => assert!(start < end && end <= len),
        RangeRequest::Whole | RangeRequest::Unsatisfiable => {}
    }
    let _ = CacheControl::parse(rest);
    let _ = target_duration(rest.as_bytes());
});
