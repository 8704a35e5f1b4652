//! What a viewer controls at an LL-HLS origin: a playlist request's query
//! (`_HLS_msn`, `_HLS_part`, `_HLS_skip`). Parsing never panics; an accepted
//! query can be checked against a live view and rendered, without panics,
//! and a request the view satisfies is never also refused as too far ahead.
#![no_main]

use std::time::UNIX_EPOCH;

use hls::low_latency::{LiveView, OpenSegment, PartEntry, PlaylistQuery, render};
use hls::playlist::SegmentEntry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (shape, query) = data.split_at(data.len().min(2));
    let complete = u64::from(shape.first().copied().unwrap_or(3) % 12);
    let open_parts = usize::from(shape.get(1).copied().unwrap_or(2) % 6);
    let Ok(q) = PlaylistQuery::parse(&String::from_utf8_lossy(query)) else {
        return;
    };
    let part = |i: u64| PartEntry {
        duration: 0.5,
        uri: format!("p.{i}.m4s"),
        independent: i == 0,
    };
    let view = LiveView {
        target: 2,
        part_target: 0.5,
        discontinuity_sequence: 0,
        segments: (0..complete)
            .map(|sequence| SegmentEntry {
                sequence,
                duration: 2.0,
                uri: format!("{sequence}.m4s"),
                discontinuity: sequence == 1,
                program_date_time: UNIX_EPOCH,
                map: Some("init.mp4".into()),
                parts: (0..4).map(part).collect(),
            })
            .collect(),
        open: Some(OpenSegment {
            sequence: complete,
            program_date_time: UNIX_EPOCH,
            map: Some("init.mp4".into()),
            discontinuity: false,
            parts: (0..open_parts as u64).map(part).collect(),
        }),
        next_part_uri: Some("next.m4s".into()),
        ended: false,
    };
    if let Some(want) = q.blocking {
        assert!(!(view.satisfies(&want) && view.too_far(&want)));
    }
    let text = render(&view, q.skip, &[]);
    assert!(text.starts_with("#EXTM3U\n"));
});
