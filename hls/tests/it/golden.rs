//! Byte-exact goldens for the TS muxer and the packager's playlists, from a fixed
//! packet sequence. Regenerate after an intended change with
//! `FERRY_BLESS=1 cargo test -p hls --test it golden::` and review the diff (README.md).

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use hls::{Container, Output, Packager, PackagerConfig};
use media_core::{Event, Packet, Timestamp, TrackInfo, TrackKind};

use crate::fixtures::AVCC;

fn events() -> Vec<Event> {
    let mut out = vec![
        Event::Started,
        Event::Track(TrackInfo::h264(Bytes::from_static(AVCC)).unwrap().into()),
        Event::Track(
            TrackInfo::aac(Bytes::from_static(&[0x11, 0x90]))
                .unwrap()
                .into(),
        ),
    ];
    for i in 0..150i64 {
        let ms = i * 1000 / 30;
        // A 4-byte-length IDR or non-IDR slice of varying size.
        let size = if i % 60 == 0 {
            3000
        } else {
            200 + (i as usize * 37) % 700
        };
        let mut nal = (size as u32).to_be_bytes().to_vec();
        nal.push(if i % 60 == 0 { 0x65 } else { 0x41 });
        nal.extend((1..size).map(|j| (j * 7 + i as usize) as u8));
        out.push(Event::Packet(Packet {
            track: TrackKind::Video,
            dts: Timestamp::from_millis(ms),
            pts: Timestamp::from_millis(ms + 66),
            keyframe: i % 60 == 0,
            payload: Bytes::from(nal),
        }));
        if i % 3 == 0 {
            out.push(Event::Packet(Packet {
                track: TrackKind::Audio,
                dts: Timestamp::from_millis(ms),
                pts: Timestamp::from_millis(ms),
                keyframe: true,
                payload: Bytes::from(vec![0x21; 300]),
            }));
        }
    }
    out.push(Event::Stopped);
    out
}

fn check(name: &str, got: &[u8]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("FERRY_BLESS").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read(&path)
        .unwrap_or_else(|_| panic!("{} missing; see README.md", path.display()));
    assert!(
        want == got,
        "{name} differs from its golden; see hls/README.md"
    );
}

fn outputs(container: Container) -> Vec<Output> {
    let mut p = Packager::new(PackagerConfig {
        container,
        ..PackagerConfig::default()
    });
    let mut outputs = Vec::new();
    for (i, e) in events().iter().enumerate() {
        let now =
            UNIX_EPOCH + Duration::from_secs(1_795_500_000) + Duration::from_millis(i as u64 * 10);
        outputs.extend(p.handle(e, now));
    }
    outputs
}

#[test]
fn fmp4_output_matches_goldens() {
    let mut playlist = None;
    let mut files = 0;
    for o in outputs(Container::Fmp4) {
        match o {
            Output::Segment { path, data } => {
                check(&format!("fmp4-{}", path.replace('/', "-")), &data);
                files += 1;
            }
            Output::Playlist { path, data } if path.ends_with("index.m3u8") => {
                playlist = Some(data)
            }
            _ => {}
        }
    }
    assert_eq!(files, 4, "an init segment and three media segments");
    let playlist = playlist.unwrap();
    assert!(String::from_utf8_lossy(&playlist).contains("#EXT-X-MAP:URI=\"init"));
    check("fmp4-source-index.m3u8", &playlist);
}

#[test]
fn packager_output_matches_goldens() {
    let mut p = Packager::new(PackagerConfig::default());
    let mut outputs = Vec::new();
    for (i, e) in events().iter().enumerate() {
        let now =
            UNIX_EPOCH + Duration::from_secs(1_795_500_000) + Duration::from_millis(i as u64 * 10);
        outputs.extend(p.handle(e, now));
    }
    let mut last_playlist = None;
    let mut segments = 0;
    for o in &outputs {
        match o {
            Output::Segment { path, data } => {
                assert!(data.len() % 188 == 0 && data.chunks(188).all(|c| c[0] == 0x47));
                check(&path.replace('/', "-"), data);
                segments += 1;
            }
            Output::Playlist { path, data } if path.ends_with("index.m3u8") => {
                last_playlist = Some(data.clone())
            }
            _ => {}
        }
    }
    assert_eq!(segments, 3, "cuts at the keyframes at 0 s, 2 s and 4 s");
    check("source-index.m3u8", &last_playlist.unwrap());
}

/// Every PID's continuity counter goes up by one per packet with a payload
/// across consecutive segments: VLC and TS analysers flag any other step (the
/// PAT and the PMT once shared a counter and each skipped one per segment).
#[test]
fn continuity_counters_run_on_across_segments() {
    let mut stream = Vec::new();
    let mut segments = 0;
    for o in outputs(Container::Ts) {
        if let Output::Segment { data, .. } = o {
            stream.extend_from_slice(&data);
            segments += 1;
        }
    }
    assert!(segments >= 3);
    let mut last: std::collections::HashMap<u16, u8> = std::collections::HashMap::new();
    let mut checked = 0;
    for packet in stream.chunks(188) {
        let pid = u16::from_be_bytes([packet[1] & 0x1f, packet[2]]);
        let has_payload = packet[3] & 0x10 != 0;
        let cc = packet[3] & 0x0f;
        if !has_payload {
            continue;
        }
        if let Some(prev) = last.insert(pid, cc) {
            assert_eq!(
                cc,
                (prev + 1) & 0x0f,
                "PID {pid:#x} jumps from {prev} to {cc}"
            );
            checked += 1;
        }
    }
    for pid in [0u16, 0x1000, 0x100, 0x101] {
        assert!(last.contains_key(&pid), "PID {pid:#x} missing");
    }
    assert!(checked > 100);
}
