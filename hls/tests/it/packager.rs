//! The packager's playlist behaviour on virtual time, without any I/O: the
//! sliding window and deletion, lost segments, discontinuities across
//! publisher restarts, and cutting at every keyframe for ladder rungs.

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use hls::{Output, Packager, PackagerConfig};
use media_core::{Event, Packet, Timestamp, TrackInfo, TrackKind};

use crate::fixtures::AVCC;

/// A publish session: `seconds` of 25 fps video from `start_ms`, a keyframe
/// every `gop_ms`, then (if `stop`) the publisher leaves.
fn session(start_ms: i64, seconds: i64, gop_ms: i64, stop: bool) -> Vec<Event> {
    let mut out = vec![
        Event::Started,
        Event::Track(TrackInfo::h264(Bytes::from_static(AVCC)).unwrap().into()),
    ];
    for i in 0..seconds * 25 {
        let ms = start_ms + i * 40;
        let keyframe = (ms - start_ms) % gop_ms == 0;
        let mut nal = 300u32.to_be_bytes().to_vec();
        nal.push(if keyframe { 0x65 } else { 0x41 });
        nal.extend(std::iter::repeat_n(1u8, 299));
        out.push(Event::Packet(Packet {
            track: TrackKind::Video,
            dts: Timestamp::from_millis(ms),
            pts: Timestamp::from_millis(ms),
            keyframe,
            payload: Bytes::from(nal),
        }));
    }
    if stop {
        out.push(Event::Stopped);
    }
    out
}

fn feed(p: &mut Packager, events: &[Event]) -> Vec<Output> {
    let now = UNIX_EPOCH + Duration::from_secs(1_795_500_000);
    events.iter().flat_map(|e| p.handle(e, now)).collect()
}

fn last_playlist(out: &[Output]) -> String {
    out.iter()
        .rev()
        .find_map(|o| match o {
            Output::Playlist { data, .. } => Some(String::from_utf8_lossy(data).into_owned()),
            _ => None,
        })
        .unwrap()
}

fn segments(out: &[Output]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::Segment { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect()
}

fn deletes(out: &[Output]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::Delete { path } => Some(path.clone()),
            _ => None,
        })
        .collect()
}

fn packager(window: usize, cut_every_keyframe: bool) -> Packager {
    Packager::new(PackagerConfig {
        window,
        cut_every_keyframe,
        ..PackagerConfig::default()
    })
}

#[test]
fn the_window_slides_and_old_segments_are_deleted_one_window_later() {
    let mut p = packager(3, false);
    let out = feed(&mut p, &session(0, 16, 2000, true));
    assert_eq!(segments(&out).len(), 8);
    let text = last_playlist(&out);
    assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:5\n"), "{text}");
    let listed: Vec<&str> = text.lines().filter(|l| l.ends_with(".ts")).collect();
    assert_eq!(listed, ["5.ts", "6.ts", "7.ts"]);
    assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
    // 2, 3, 4 left the playlist but stay stored for one more window.
    assert_eq!(deletes(&out), ["source/0.ts", "source/1.ts"]);
}

#[test]
fn a_lost_segment_leaves_the_playlist_and_marks_the_gap() {
    let mut p = packager(6, false);
    let mut out = feed(&mut p, &session(0, 6, 2000, false));
    assert_eq!(segments(&out), ["source/0.ts", "source/1.ts"]);
    out.extend(p.segment_lost("source/1.ts"));
    let text = last_playlist(&out);
    assert!(!text.contains("\n1.ts"), "{text}");
    // The next segment is marked as a discontinuity.
    let more = feed(&mut p, &session(6000, 4, 2000, true)[2..]);
    let text = last_playlist(&more);
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| *l == "2.ts").unwrap();
    assert!(
        lines[..at]
            .iter()
            .rev()
            .take(3)
            .any(|l| *l == "#EXT-X-DISCONTINUITY"),
        "{text}"
    );
    assert_eq!(
        p.segment_lost("source/99.ts"),
        Vec::new(),
        "unknown: nothing to do"
    );
}

#[test]
fn a_returning_publisher_continues_the_sequence_after_a_discontinuity() {
    let mut p = packager(2, false);
    let mut out = feed(&mut p, &session(0, 4, 2000, true));
    // The encoder restarts its clock at 0.
    out.extend(feed(&mut p, &session(0, 4, 2000, true)));
    let text = last_playlist(&out);
    assert_eq!(
        segments(&out),
        ["source/0.ts", "source/1.ts", "source/2.ts", "source/3.ts"]
    );
    assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:2\n"), "{text}");
    let disc = text.find("#EXT-X-DISCONTINUITY\n").unwrap();
    assert!(disc < text.find("2.ts").unwrap(), "{text}");
    // Once the discontinuity leaves the window, the sequence counts it.
    out.extend(feed(&mut p, &session(0, 6, 2000, true)));
    let text = last_playlist(&out);
    assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:"), "{text}");
}

#[test]
fn rungs_cut_at_every_keyframe_whatever_the_duration() {
    let mut rung = packager(20, true);
    let out = feed(&mut rung, &session(0, 4, 400, true));
    assert_eq!(segments(&out).len(), 10, "a segment per 0.4 s keyframe");
    let text = last_playlist(&out);
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("#EXTINF:0.4"))
            .count(),
        10,
        "{text}"
    );
    let mut source = packager(20, false);
    let out = feed(&mut source, &session(0, 4, 400, true));
    assert_eq!(segments(&out).len(), 2, "the source still waits for 2 s");
}

/// Origins fed by one encoder, one of them joining 5 s late, cut the same
/// segments with the same numbers when aligned.
#[test]
fn aligned_packagers_agree_however_late_they_join() {
    use std::time::SystemTime;
    let config = PackagerConfig {
        target_duration: Duration::from_secs(2),
        aligned: true,
        ..PackagerConfig::default()
    };
    // 30 fps, a keyframe every 60 frames, timestamps off by a millisecond here and there.
    let frames: Vec<Packet> = (0..600u32)
        .map(|i| {
            let ms = i64::from(i) * 1000 / 30 + i64::from(i % 7 == 3);
            Packet {
                track: TrackKind::Video,
                dts: Timestamp::from_millis(ms),
                pts: Timestamp::from_millis(ms),
                keyframe: i % 60 == 0,
                payload: Bytes::from(vec![0, 0, 0, 1, 0x65]),
            }
        })
        .collect();
    let track = TrackInfo::h264(Bytes::from_static(AVCC)).unwrap();
    let run = |from: usize| {
        let mut p = Packager::new(config.clone());
        let mut segments = Vec::new();
        let now = SystemTime::now();
        for e in [
            Event::Started,
            Event::Track(std::sync::Arc::new(track.clone())),
        ] {
            p.handle(&e, now);
        }
        for f in &frames[from..] {
            for out in p.handle(&Event::Packet(f.clone()), now) {
                if let Output::Segment { path, data } = out {
                    segments.push((path, data));
                }
            }
        }
        segments
    };
    let (early, late) = (run(0), run(150));
    let names = |s: &[(String, Bytes)]| s.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    let (early_names, late_names) = (names(&early), names(&late));
    assert_eq!(early_names.first().map(String::as_str), Some("source/0.ts"));
    assert_eq!(
        late_names.first().map(String::as_str),
        Some("source/3.ts"),
        "{late_names:?}"
    );
    assert!(
        early_names.ends_with(&late_names),
        "early {early_names:?}\nlate {late_names:?}"
    );
    assert_eq!(late.len(), 6);
    // Byte for byte too: the continuity counters of a segment must not
    // depend on how many packets this origin muxed before it joined.
    assert!(early.ends_with(&late), "same names, different bytes");
}
