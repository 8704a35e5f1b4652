//! HLS from `ferry serve`: every test stream published with ffmpeg comes back over
//! HTTP as playlists an independent parser accepts and segments ffmpeg decodes.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use ferry::config::HlsContainer;
use m3u8_rs::{MasterPlaylist, MediaPlaylist};

async fn media_playlist(addr: SocketAddr, stream: &str) -> Option<(String, MediaPlaylist)> {
    let (status, _, body) = get_bytes(addr, &format!("/hls/{stream}/source/index.m3u8")).await;
    if status != 200 {
        return None;
    }
    let text = String::from_utf8(body).unwrap();
    let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes())
        .unwrap_or_else(|e| panic!("invalid playlist {e:?}:\n{text}"));
    Some((text, parsed))
}

async fn wait_for_endlist(addr: SocketAddr, stream: &str) -> (String, MediaPlaylist) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((text, p)) = media_playlist(addr, stream).await
            && p.end_list
        {
            return (text, p);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "playlist never ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn source_duration(file: &Path) -> f64 {
    let out = std::process::Command::new(ffprobe())
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// RFC 8216 rules a player relies on, checked on a parsed media playlist.
fn check_rules(p: &MediaPlaylist, text: &str) {
    for s in &p.segments {
        assert!(
            (s.duration.round() as u64) <= p.target_duration,
            "EXTINF {} exceeds target {}:\n{text}",
            s.duration,
            p.target_duration
        );
    }
    assert!(
        text.contains("#EXT-X-PROGRAM-DATE-TIME:"),
        "no program date time:\n{text}"
    );
}

async fn packaged(file: &str) {
    packaged_as(file, HlsContainer::Ts).await;
}

async fn packaged_as(file: &str, container: HlsContainer) {
    let server = start_with(|c| c.hls.container = container).await;
    let fmp4 = container == HlsContainer::Fmp4;
    let http = server.running.http_addr;
    let (ok, err) = publish_file(&server.rtmp_url(KEY), &sample(file)).await;
    assert!(ok, "publish failed: {err}");
    let (text, playlist) = wait_for_endlist(http, STREAM).await;
    check_rules(&playlist, &text);

    let (status, headers, master) = get_bytes(http, &format!("/hls/{STREAM}/master.m3u8")).await;
    assert_eq!(status, 200);
    assert!(headers.contains(&(
        "content-type".into(),
        "application/vnd.apple.mpegurl".into()
    )));
    assert!(headers.contains(&("access-control-allow-origin".into(), "*".into())));
    let master: MasterPlaylist = m3u8_rs::parse_master_playlist_res(&master).unwrap();
    let variant = &master.variants[0];
    let source = probe_packets(&sample(file));
    let has_video = source.iter().any(|p| p.video);
    let has_audio = source.iter().any(|p| !p.video);
    let codecs = variant.codecs.clone().unwrap_or_default();
    assert_eq!(codecs.contains("avc1."), has_video, "CODECS {codecs}");
    assert_eq!(codecs.contains("mp4a.40.2"), has_audio, "CODECS {codecs}");
    assert_eq!(variant.resolution.is_some(), has_video);
    assert!(variant.bandwidth > 0);

    // Durations add up to what was published, within one segment.
    let total: f64 = playlist
        .segments
        .iter()
        .map(|s| f64::from(s.duration))
        .sum();
    let want = source_duration(&sample(file));
    assert!(
        (total - want).abs() <= playlist.target_duration as f64,
        "segments last {total} s, the source {want} s"
    );

    // Every segment is stored, typed, starts on a keyframe, and together they hold every packet.
    let dir = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    let mut init = Vec::new();
    for s in &playlist.segments {
        if let Some(map) = &s.map {
            let (status, headers, body) =
                get_bytes(http, &format!("/hls/{STREAM}/source/{}", map.uri)).await;
            assert_eq!(status, 200, "init segment {} missing", map.uri);
            assert!(headers.contains(&("content-type".into(), "video/mp4".into())));
            init = body;
        }
        assert_eq!(s.uri.ends_with(".m4s"), fmp4, "{}", s.uri);
        let (status, headers, mut body) =
            get_bytes(http, &format!("/hls/{STREAM}/source/{}", s.uri)).await;
        assert_eq!(status, 200, "segment {} missing", s.uri);
        let content_type = if fmp4 { "video/mp4" } else { "video/mp2t" };
        assert!(headers.contains(&("content-type".into(), content_type.into())));
        if fmp4 {
            // A media segment decodes after its init segment, as a player feeds it.
            body.splice(0..0, init.iter().copied());
        }
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "cache-control" && v.contains("immutable"))
        );
        let path = dir.path().join(&s.uri);
        std::fs::write(&path, body).unwrap();
        let packets = probe_packets(&path);
        if let Some(first) = packets.iter().find(|p| p.video) {
            assert!(
                first.key,
                "segment {} does not start with a keyframe",
                s.uri
            );
        }
        all.extend(packets);
    }
    for video in [true, false] {
        let n = |ps: &[Probed]| ps.iter().filter(|p| p.video == video).count();
        assert_eq!(
            n(&all),
            n(&source),
            "video={video}: packets across all segments"
        );
        let dts: Vec<i64> = all
            .iter()
            .filter(|p| p.video == video)
            .map(|p| p.dts)
            .collect();
        assert!(
            dts.windows(2).all(|w| w[0] < w[1]),
            "video={video}: dts not continuous across segments"
        );
    }

    // The whole presentation decodes without a single error, as a player reads it.
    let (ok, err) = read_hls(http, STREAM).await;
    assert!(
        ok && err.trim().is_empty(),
        "ffmpeg reading the HLS failed: {err}"
    );
    assert_eq!(
        server.metric("ferry_hls_segments_lost_total").await,
        0.0,
        "no segment lost on a healthy store"
    );
    assert!(
        server.metric("ferry_hls_segments_stored_total").await >= playlist.segments.len() as f64
    );
    server.running.shutdown().await;
}

#[tokio::test]
async fn fmp4_bframes_1080p30() {
    packaged_as("h264-aac-1080p30-bframes.flv", HlsContainer::Fmp4).await;
}

#[tokio::test]
async fn fmp4_fps60_audio_44k1() {
    packaged_as("h264-aac-720p60-44k.flv", HlsContainer::Fmp4).await;
}

#[tokio::test]
async fn fmp4_video_only() {
    packaged_as("h264-only.flv", HlsContainer::Fmp4).await;
}

#[tokio::test]
async fn fmp4_audio_only() {
    packaged_as("aac-only.flv", HlsContainer::Fmp4).await;
}

#[tokio::test]
async fn hls_obs_like_720p30() {
    packaged("h264-aac-720p30.flv").await;
}

#[tokio::test]
async fn hls_bframes_1080p30() {
    packaged("h264-aac-1080p30-bframes.flv").await;
}

#[tokio::test]
async fn hls_long_irregular_gop() {
    packaged("h264-aac-longgop.flv").await;
}

#[tokio::test]
async fn hls_fps60_audio_44k1() {
    packaged("h264-aac-720p60-44k.flv").await;
}

#[tokio::test]
async fn hls_video_only() {
    packaged("h264-only.flv").await;
}

#[tokio::test]
async fn hls_audio_only() {
    packaged("aac-only.flv").await;
}

#[tokio::test]
async fn hls_small_240p25() {
    packaged("h264-aac-240p25.flv").await;
}

/// A long stream in a short window: the media sequence advances by one per
/// segment that leaves, and segments are deleted one window after they leave.
#[tokio::test]
async fn sliding_window_deletes_old_segments() {
    let server = start_with(|c| c.hls.window = 2).await;
    let http = server.running.http_addr;
    let file = sample("h264-aac-720p30.flv");
    let (ok, err) = publish_looped(&server.rtmp_url(KEY), &file, 3).await;
    assert!(ok, "{err}");
    let (text, playlist) = wait_for_endlist(http, STREAM).await;
    check_rules(&playlist, &text);
    assert_eq!(playlist.segments.len(), 2, "{text}");
    let first = playlist.media_sequence;
    assert!(
        first >= 5,
        "16 s in 2 s segments leaves sequence {first}:\n{text}"
    );
    let names: Vec<u64> = playlist
        .segments
        .iter()
        .map(|s| segment_number(&s.uri).unwrap())
        .collect();
    assert_eq!(names, vec![first, first + 1], "sequence numbers match URIs");
    let dir = server.data.path().join("hls").join(STREAM).join("source");
    let stored = stored_segments(&dir);
    assert!(
        stored.iter().all(|&n| n + 4 >= first + 2),
        "old segments kept: {stored:?}"
    );
    assert!(stored.len() <= 4, "window + grace: {stored:?}");
}

/// A publisher that comes back within the grace period continues the playlist
/// after a discontinuity.
#[tokio::test]
async fn reconnect_continues_with_a_discontinuity() {
    let server = start().await;
    let http = server.running.http_addr;
    for _ in 0..2 {
        let (ok, err) = publish_file(&server.rtmp_url(KEY), &sample("h264-aac-240p25.flv")).await;
        assert!(ok, "{err}");
    }
    let (text, playlist) = wait_for_endlist(http, STREAM).await;
    check_rules(&playlist, &text);
    assert!(text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
    assert_eq!(playlist.media_sequence, 0);
    assert!(
        playlist.segments.iter().filter(|s| s.discontinuity).count() == 1,
        "{text}"
    );
    let (ok, err) = read_hls(http, STREAM).await;
    assert!(ok, "{err}");
    // Two publishes, packaging, the ladder's watch, uploads: every service
    // of the role is still running.
    let services = server.running.services();
    for name in ["hls packaging", "ladders", "http", "heartbeat", "history"] {
        assert!(services.contains(&name), "{services:?}");
    }
    assert_eq!(server.running.services_ended_early(), Vec::<&str>::new());
}

#[tokio::test]
async fn unknown_streams_and_traversal_are_not_found() {
    let server = start().await;
    let http = server.running.http_addr;
    std::fs::write(server.data.path().join("streams.toml"), "secret").unwrap();
    for path in [
        "/hls/nope/master.m3u8",
        "/hls/../streams.toml",
        "/hls/%2e%2e/streams.toml",
        "/hls/demo/..%2f..%2fstreams.toml",
    ] {
        let (status, _, body) = get_bytes(http, path).await;
        assert_eq!(status, 404, "{path}: {}", String::from_utf8_lossy(&body));
        assert!(!String::from_utf8_lossy(&body).contains("secret"));
    }
}

/// While the stream is live, every segment a playlist names can already be
/// fetched: segments are stored before the playlists that name them.
#[tokio::test]
async fn playlists_never_name_a_segment_before_it_is_stored() {
    let server = start().await;
    let http = server.running.http_addr;
    let url = server.rtmp_url(KEY);
    let file = sample("h264-aac-720p30.flv");
    let publisher = tokio::spawn(async move { publish_looped(&url, &file, 1).await });
    let mut checked = 0;
    let mut ended = false;
    while !ended {
        if let Some((text, playlist)) = media_playlist(http, STREAM).await {
            for s in &playlist.segments {
                let (status, _, _) =
                    get_bytes(http, &format!("/hls/{STREAM}/source/{}", s.uri)).await;
                assert_eq!(status, 200, "{} named before it was stored:\n{text}", s.uri);
                checked += 1;
            }
            ended = playlist.end_list;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (ok, err) = publisher.await.unwrap();
    assert!(ok, "{err}");
    assert!(checked > 20, "only {checked} checks while live");
}

/// Every stored segment and init segment of `stream`, name → bytes.
fn stored_objects(root: &Path, stream: &str) -> std::collections::HashMap<String, Vec<u8>> {
    let mut out = std::collections::HashMap::new();
    let base = root.join("hls").join(stream);
    for variant in std::fs::read_dir(&base).unwrap().flatten() {
        if !variant.path().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(variant.path()).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".m3u8") {
                let key = format!("{}/{name}", variant.file_name().to_string_lossy());
                out.insert(key, std::fs::read(f.path()).unwrap());
            }
        }
    }
    out
}

/// A restart (or a publish after the reconnect grace) starts a new session:
/// its segment names are new, never a name of the old session with other
/// bytes (segments are served `immutable`, so a cache would keep the old
/// ones), and what the old session left is removed from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_names_are_never_reused_across_sessions() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_owned();
    for container in [HlsContainer::Ts, HlsContainer::Fmp4] {
        let first = start_with(|c| {
            c.data_dir = dir.clone();
            c.hls.container = container;
        })
        .await;
        let (ok, err) = publish_file(&first.rtmp_url(KEY), &sample("h264-aac-240p25.flv")).await;
        assert!(ok, "{err}");
        let (text1, _) = wait_for_endlist(first.running.http_addr, STREAM).await;
        let before = stored_objects(&dir, STREAM);
        first.running.shutdown().await;

        let second = start_with(|c| {
            c.data_dir = dir.clone();
            c.hls.container = container;
        })
        .await;
        let (ok, err) = publish_file(&second.rtmp_url(KEY), &sample("h264-aac-720p30.flv")).await;
        assert!(ok, "{err}");
        let (text2, p2) = wait_for_endlist(second.running.http_addr, STREAM).await;
        let after = stored_objects(&dir, STREAM);
        for (name, bytes) in &after {
            if let Some(old) = before.get(name) {
                assert_eq!(old, bytes, "{name} was rewritten with other bytes");
            }
        }
        for s in &p2.segments {
            assert!(
                !text1.contains(&s.uri),
                "{} of the new session was named in the old playlist:\n{text1}\n{text2}",
                s.uri
            );
        }
        assert!(
            before.keys().all(|k| !after.contains_key(k)),
            "the old session's objects are still stored: {:?}",
            before
                .keys()
                .filter(|k| after.contains_key(*k))
                .collect::<Vec<_>>()
        );
        second.running.shutdown().await;
    }
}

/// A clean stop mid-stream (ctrl-c) closes the open segments and ends every
/// playlist with EXT-X-ENDLIST before the process exits: the store keeps a
/// complete, decodable VOD recording instead of a live playlist cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_mid_stream_leaves_a_complete_vod_playlist() {
    let server = start().await;
    let http = server.running.http_addr;
    let publisher = publish_background(&server.rtmp_url(KEY), 5);
    wait_for("three segments listed", Duration::from_secs(30), || async {
        media_playlist(http, STREAM)
            .await
            .is_some_and(|(_, p)| p.segments.len() >= 3)
    })
    .await;
    let TestServer { running, data } = server;
    running.shutdown().await;
    drop(publisher);
    let dir = data.path().join("hls").join(STREAM).join("source");
    let text = std::fs::read_to_string(dir.join("index.m3u8")).unwrap();
    assert!(text.contains("#EXT-X-ENDLIST"), "not ended:\n{text}");
    let listed: Vec<&str> = text.lines().filter(|l| l.ends_with(".ts")).collect();
    assert!(listed.len() >= 3, "{text}");
    for name in &listed {
        assert!(dir.join(name).exists(), "{name} listed but not stored");
    }
    let master = data.path().join("hls").join(STREAM).join("master.m3u8");
    assert!(master.exists());
    // The recording decodes end to end.
    let out = std::process::Command::new(ffmpeg())
        .args(["-v", "error", "-i"])
        .arg(dir.join("index.m3u8"))
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
}
