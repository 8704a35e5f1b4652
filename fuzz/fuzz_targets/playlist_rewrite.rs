//! The director rewrites playlists that come from edges (network bytes): no
//! input may panic, the output has one line per input line, and every line
//! without a URI passes through unchanged.
#![no_main]

use director::rewrite;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let media = rewrite::media_by_sequence(
        &text,
        "/hls/s/v/index.m3u8",
        |msn| if msn % 2 == 0 { "http://a" } else { "http://b" },
        "00ff",
    );
    let master = rewrite::multivariant(&text, "00ff");
    let _ = rewrite::sequence_span(&text);
    for out in [&media, &master] {
        assert_eq!(out.lines().count(), text.lines().count());
        for (a, b) in text.lines().zip(out.lines()) {
            // Lines end in "\n" on the way out (a CR before it is line ending).
            if a.starts_with('#') && !a.contains("URI=\"") {
                assert_eq!(a.trim_end_matches('\r'), b.trim_end_matches('\r'));
            }
        }
    }
    for line in text.lines().take(8) {
        if let Some(p) = rewrite::resolve("/hls/s/v/index.m3u8", line) {
            assert!(p.starts_with('/'));
            assert!(
                !p.split('?')
                    .next()
                    .unwrap_or("")
                    .split('/')
                    .any(|s| s == "..")
            );
        }
    }
});
