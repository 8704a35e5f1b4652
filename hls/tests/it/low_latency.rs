//! Low-Latency HLS in the packager, on virtual time: parts are cut at the
//! part target, a segment is exactly its parts end to end, parts that start
//! with a keyframe are marked independent, and the live view names the next
//! part.

use std::time::{Duration, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use hls::low_latency::{Blocking, render};
use hls::{Container, Output, Packager, PackagerConfig};
use media_core::{Event, Packet, Timestamp, TrackInfo, TrackKind};

use crate::fixtures::AVCC;

/// AAC-LC, 44.1 kHz, stereo.
const ASC: &[u8] = &[0x12, 0x10];

/// `seconds` of 30 fps video with a keyframe every 2 s and AAC audio
/// interleaved, then the publisher leaves.
fn stream(seconds: i64) -> Vec<Event> {
    stream_with_gop(seconds, 60)
}

/// As [`stream`], with a keyframe every `gop` frames.
fn stream_with_gop(seconds: i64, gop: i64) -> Vec<Event> {
    let mut out = vec![
        Event::Started,
        Event::Track(TrackInfo::h264(Bytes::from_static(AVCC)).unwrap().into()),
        Event::Track(TrackInfo::aac(Bytes::from_static(ASC)).unwrap().into()),
    ];
    let mut audio_ms = 0.0f64;
    for i in 0..seconds * 30 {
        let ms = i * 1000 / 30;
        while audio_ms <= ms as f64 {
            out.push(Event::Packet(Packet {
                track: TrackKind::Audio,
                dts: Timestamp::from_millis(audio_ms as i64),
                pts: Timestamp::from_millis(audio_ms as i64),
                keyframe: true,
                payload: Bytes::from(vec![0x21; 20]),
            }));
            audio_ms += 1024.0 * 1000.0 / 44_100.0;
        }
        let keyframe = i % gop == 0;
        let mut nal = 200u32.to_be_bytes().to_vec();
        nal.push(if keyframe { 0x65 } else { 0x41 });
        nal.extend(std::iter::repeat_n(i as u8, 199));
        out.push(Event::Packet(Packet {
            track: TrackKind::Video,
            dts: Timestamp::from_millis(ms),
            pts: Timestamp::from_millis(ms),
            keyframe,
            payload: Bytes::from(nal),
        }));
    }
    out.push(Event::Stopped);
    out
}

fn ll_packager() -> Packager {
    Packager::new(PackagerConfig {
        container: Container::Fmp4,
        part_target: Some(Duration::from_millis(500)),
        session: "s".into(),
        window: 10,
        ..PackagerConfig::default()
    })
}

#[test]
fn a_segment_is_its_parts_end_to_end() {
    let mut p = ll_packager();
    let now = UNIX_EPOCH + Duration::from_secs(1_795_500_000);
    let mut parts: Vec<(String, Bytes)> = Vec::new();
    let mut segments = 0;
    for e in stream(9) {
        for o in p.handle(&e, now) {
            match o {
                Output::Part { path, data } => parts.push((path, data)),
                Output::Segment { path, data } if path.ends_with(".m4s") => {
                    segments += 1;
                    // source/s-3.m4s: its parts are source/s-3.N.m4s.
                    let stem = path.trim_end_matches(".m4s");
                    let mine: Vec<_> = parts
                        .iter()
                        .filter(|(p, _)| p.strip_prefix(stem).is_some_and(|r| r.starts_with('.')))
                        .collect();
                    // 2 s segments in 0.5 s parts; the last one (8-9 s) is 1 s.
                    let want = if path.ends_with("-4.m4s") { 2 } else { 4 };
                    assert_eq!(mine.len(), want, "{path}: {} parts", mine.len());
                    let mut joined = BytesMut::new();
                    for (_, d) in &mine {
                        joined.extend_from_slice(d);
                    }
                    assert_eq!(joined.freeze(), data, "{path} is not its parts end to end");
                    // Parts named in order from 0.
                    for (i, (name, _)) in mine.iter().enumerate() {
                        assert_eq!(name, &format!("{stem}.{i}.m4s"));
                    }
                }
                _ => {}
            }
        }
    }
    assert_eq!(
        segments, 5,
        "9 s with a 2 s GOP: 4 whole segments and a last one"
    );
}

#[test]
fn parts_keep_to_the_target_and_keyframes_start_independent_parts() {
    let mut p = ll_packager();
    let now = UNIX_EPOCH + Duration::from_secs(1_795_500_000);
    let events = stream(7);
    // Stop before the publisher leaves: the view is live.
    for e in &events[..events.len() - 1] {
        p.handle(e, now);
    }
    let view = p.live_view().unwrap();
    assert_eq!(view.part_target, 0.5);
    assert!(!view.ended);
    assert_eq!(view.segments.len(), 3);
    for s in &view.segments {
        assert_eq!(s.parts.len(), 4, "2 s of 30 fps in 0.5 s parts");
        let sum: f64 = s.parts.iter().map(|p| p.duration).sum();
        assert!((sum - s.duration).abs() < 0.002, "{sum} vs {}", s.duration);
        for (i, part) in s.parts.iter().enumerate() {
            assert!(
                part.duration <= 0.502,
                "part {} of {} s",
                part.uri,
                part.duration
            );
            assert_eq!(part.independent, i == 0, "{}", part.uri);
        }
    }
    let open = view.open.as_ref().unwrap();
    assert_eq!(open.sequence, 3);
    assert_eq!(open.parts.len(), 1, "0.5 s into the 4th segment");
    assert_eq!(view.next_part_uri.as_deref(), Some("s-3.1.m4s"));
    assert!(view.satisfies(&Blocking {
        msn: 3,
        part: Some(0)
    }));
    assert!(!view.satisfies(&Blocking {
        msn: 3,
        part: Some(1)
    }));
    let text = render(&view, false, &[]);
    assert!(text.contains("#EXT-X-PART:DURATION=0.50000,URI=\"s-3.0.m4s\",INDEPENDENT=YES\n"));
    assert!(text.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"s-3.1.m4s\"\n"));

    // The publisher leaves: the view ends and names no next part.
    p.handle(&Event::Stopped, now);
    let view = p.live_view().unwrap();
    assert!(view.ended && view.next_part_uri.is_none());
    assert!(render(&view, false, &[]).ends_with("#EXT-X-ENDLIST\n"));
}

#[test]
fn without_a_part_target_nothing_changes() {
    let mut p = Packager::new(PackagerConfig {
        container: Container::Fmp4,
        ..PackagerConfig::default()
    });
    let now = UNIX_EPOCH;
    let out: Vec<Output> = stream(5).iter().flat_map(|e| p.handle(e, now)).collect();
    assert!(!out.iter().any(|o| matches!(o, Output::Part { .. })));
    assert!(p.live_view().is_none());
}

/// Two origins fed by one encoder, one joining mid-slot (keyframes every
/// second, 2 s segments): with aligned segments their parts and segments
/// carry the same names and the same bytes from the late one's first
/// segment on, which starts at the first keyframe of a slot it saw whole.
#[test]
fn aligned_origins_cut_interchangeable_parts_however_late_one_joins() {
    let config = PackagerConfig {
        container: Container::Fmp4,
        part_target: Some(Duration::from_millis(500)),
        session: "a".into(),
        aligned: true,
        window: 20,
        ..PackagerConfig::default()
    };
    let events = stream_with_gop(16, 30);
    let now = UNIX_EPOCH + Duration::from_secs(1_795_500_000);
    let run = |joined_ms: i64| {
        let mut p = Packager::new(config.clone());
        let mut objects = std::collections::BTreeMap::new();
        for e in &events {
            if let Event::Packet(packet) = e
                && packet.dts.as_millis() < joined_ms
            {
                continue;
            }
            for out in p.handle(e, now) {
                if let Output::Part { path, data } | Output::Segment { path, data } = out {
                    objects.insert(path, data);
                }
            }
        }
        objects
    };
    let (early, late) = (run(0), run(3_333));
    // 3.33 s is in slot 2 (2 s to 3 s is its first half): its keyframe at
    // 4 s does not start a segment; the one at 5 s starts slot 3.
    let first_late = late.keys().find(|k| k.ends_with(".m4s")).cloned();
    assert_eq!(
        first_late.as_deref(),
        Some("source/a-3.0.m4s"),
        "{:?}",
        late.keys()
    );
    let media: Vec<&String> = late.keys().filter(|k| !k.contains("init")).collect();
    assert!(media.len() > 20, "{media:?}");
    for name in media {
        assert!(
            early.get(name) == late.get(name),
            "{name}: different bytes (or missing) on the origin that joined first"
        );
    }
    assert!(late.contains_key("source/a-3.m4s"));
}
