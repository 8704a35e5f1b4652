//! The packager's bounds against a broken encoder.

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use hls::{MAX_SEGMENT_TARGETS, Output, Packager, PackagerConfig};
use media_core::{Event, Packet, Timestamp, TrackInfo, TrackKind};

use crate::fixtures::AVCC;

/// One keyframe, then 40 s without another: segments are still cut (at
/// MAX_SEGMENT_TARGETS target durations), so playlists keep moving and the
/// open segment's memory stays bounded.
#[test]
fn a_stream_without_keyframes_is_still_cut() {
    let mut p = Packager::new(PackagerConfig::default());
    let now = UNIX_EPOCH + Duration::from_secs(1_795_500_000);
    let mut out = p.handle(&Event::Started, now);
    out.extend(p.handle(
        &Event::Track(TrackInfo::h264(Bytes::from_static(AVCC)).unwrap().into()),
        now,
    ));
    for i in 0..1200i64 {
        let ms = i * 1000 / 30;
        let mut nal = 500u32.to_be_bytes().to_vec();
        nal.push(if i == 0 { 0x65 } else { 0x41 });
        nal.extend(std::iter::repeat_n(7u8, 499));
        out.extend(p.handle(
            &Event::Packet(Packet {
                track: TrackKind::Video,
                dts: Timestamp::from_millis(ms),
                pts: Timestamp::from_millis(ms),
                keyframe: i == 0,
                payload: Bytes::from(nal),
            }),
            now,
        ));
    }
    let segments = out
        .iter()
        .filter(|o| matches!(o, Output::Segment { .. }))
        .count();
    // 40 s at 6 s per forced cut: 6 closed segments (the 7th is still open).
    assert_eq!(segments, 6, "segments closed");
    assert_eq!(p.forced_cuts(), 6);
    let limit = 2.0 * f64::from(MAX_SEGMENT_TARGETS);
    let Some(Output::Playlist { data, .. }) = out
        .iter()
        .rev()
        .find(|o| matches!(o, Output::Playlist { .. }))
    else {
        panic!("no playlist");
    };
    let text = String::from_utf8_lossy(data);
    for line in text.lines().filter(|l| l.starts_with("#EXTINF:")) {
        let d: f64 = line[8..].trim_end_matches(',').parse().unwrap();
        assert!(d <= limit + 0.05, "{line}");
    }
}
