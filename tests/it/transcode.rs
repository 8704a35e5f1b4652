//! The transcoding ladder in `ferry serve`: streams published with ffmpeg come
//! back as a multivariant HLS presentation whose rungs decode, line up segment
//! for segment, match the ffmpeg CLI's quality at the same settings, and survive
//! corrupt input and many publish cycles.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use ferry::config::Config;
use m3u8_rs::{MasterPlaylist, MediaPlaylist};
use transcode::{LadderConfig, RungConfig};

fn rung(name: &str, height: u32, video_kbps: u32) -> RungConfig {
    RungConfig {
        name: name.into(),
        height,
        video_kbps,
    }
}

/// Transcoding on for the test stream with `ladder`.
fn with_ladder(ladder: LadderConfig) -> impl FnOnce(&mut Config) {
    move |c| {
        c.transcode.enabled = true;
        c.transcode.ladder = ladder;
    }
}

/// A fast ladder for the tests that check structure, not quality.
fn fast(rungs: Vec<RungConfig>, passthrough: bool) -> LadderConfig {
    LadderConfig {
        rungs,
        passthrough,
        preset: "ultrafast".into(),
        ..LadderConfig::default()
    }
}

async fn media(http: SocketAddr, variant: &str) -> Option<MediaPlaylist> {
    let (status, _, body) = get_bytes(http, &format!("/hls/{STREAM}/{variant}/index.m3u8")).await;
    (status == 200).then(|| m3u8_rs::parse_media_playlist_res(&body).unwrap())
}

/// Waits for every variant of the master playlist to end; returns the master
/// and each variant's name and final media playlist.
async fn finished(
    http: SocketAddr,
    count: usize,
) -> (MasterPlaylist, Vec<(String, MediaPlaylist)>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _, body) = get_bytes(http, &format!("/hls/{STREAM}/master.m3u8")).await;
        if status == 200 {
            let master = m3u8_rs::parse_master_playlist_res(&body).unwrap();
            let mut done = Vec::new();
            for v in &master.variants {
                let name = v.uri.trim_end_matches("/index.m3u8").to_owned();
                if let Some(p) = media(http, &name).await
                    && p.end_list
                {
                    done.push((name, p));
                }
            }
            if master.variants.len() == count && done.len() == count {
                // The master is rewritten as the last segments close.
                let (_, _, body) = get_bytes(http, &format!("/hls/{STREAM}/master.m3u8")).await;
                return (m3u8_rs::parse_master_playlist_res(&body).unwrap(), done);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ladder's playlists never ended"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn segment_files(dir: &Path, variant: &str, p: &MediaPlaylist) -> Vec<PathBuf> {
    p.segments
        .iter()
        .map(|s| dir.join(STREAM).join(variant).join(&s.uri))
        .collect()
}

/// Decodes `input` fully with `ffmpeg -v error`; returns what it printed.
async fn decode_errors(input: &Path) -> String {
    let (ok, err) = run_ffmpeg(
        &["-i", input.to_str().unwrap(), "-f", "null", "-"],
        Duration::from_secs(60),
    )
    .await;
    assert!(ok, "ffmpeg failed on {}: {err}", input.display());
    err
}

/// The peak bitrate of a variant, measured from its stored segments.
fn peak_bps(files: &[PathBuf], p: &MediaPlaylist) -> f64 {
    files
        .iter()
        .zip(&p.segments)
        .map(|(f, s)| std::fs::metadata(f).unwrap().len() as f64 * 8.0 / f64::from(s.duration))
        .fold(0.0, f64::max)
}

/// Checks the presentation: expected variants with their sizes, CODECS and
/// measured BANDWIDTH; every variant decodes; segments line up; a player can
/// switch at any boundary.
async fn check_ladder(server: &TestServer, expect: &[(&str, (u64, u64))]) {
    let http = server.running.http_addr;
    let (master, variants) = finished(http, expect.len()).await;
    let hls = server.data.path().join("hls");
    let names: Vec<&str> = variants.iter().map(|(n, _)| n.as_str()).collect();
    let want: Vec<&str> = expect.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, want, "variants in the master playlist");
    for ((name, size), v) in expect.iter().zip(&master.variants) {
        let res = v.resolution.unwrap();
        assert_eq!((res.width, res.height), *size, "RESOLUTION of {name}");
        let codecs = v.codecs.clone().unwrap();
        assert!(
            codecs.starts_with("avc1.") && codecs.contains(",mp4a.40.2"),
            "CODECS {codecs}"
        );
        let (_, playlist) = variants.iter().find(|(n, _)| n == name).unwrap();
        let files = segment_files(&hls, name, playlist);
        let peak = peak_bps(&files, playlist);
        let listed = v.bandwidth as f64;
        assert!(
            (listed - peak).abs() <= peak * 0.1,
            "{name}: BANDWIDTH {listed} vs measured peak {peak}"
        );
        let playlist_file = hls.join(STREAM).join(name).join("index.m3u8");
        let errors = decode_errors(&playlist_file).await;
        assert!(
            errors.is_empty(),
            "{name} does not decode cleanly:\n{errors}"
        );
    }
    // Same segment count, same durations (to the ms), same sequence numbers.
    let (first_name, first) = &variants[0];
    for (name, p) in &variants[1..] {
        assert_eq!(
            p.media_sequence, first.media_sequence,
            "{name} vs {first_name}"
        );
        assert_eq!(
            p.segments.len(),
            first.segments.len(),
            "segments of {name} vs {first_name}"
        );
        for (a, b) in first.segments.iter().zip(&p.segments) {
            // Equal to the millisecond but the last, which ends after its last
            // frame (decode-time arithmetic differs by a rounding with B-frames).
            assert!(
                (a.duration - b.duration).abs() <= 0.002,
                "segment durations of {name} vs {first_name}: {} {}",
                a.duration,
                b.duration
            );
        }
    }
    // A player switching variants at every boundary: segment N of one variant,
    // then N+1 of the next, concatenated as a player's demuxer would see them.
    let dir = tempfile::tempdir().unwrap();
    let count = first.segments.len();
    assert!(count >= 2, "too few segments to switch: {count}");
    let mut switched = Vec::new();
    for n in 0..count {
        let (name, p) = &variants[n % variants.len()];
        let file = &segment_files(&hls, name, p)[n];
        switched.extend(std::fs::read(file).unwrap());
    }
    let joined = dir.path().join("switched.ts");
    std::fs::write(&joined, switched).unwrap();
    let errors = decode_errors(&joined).await;
    assert!(
        errors.is_empty(),
        "switching variants breaks decoding:\n{errors}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1080p_bframe_source_gets_the_default_ladder_below_it() {
    let ladder = LadderConfig {
        preset: "ultrafast".into(),
        ..LadderConfig::default()
    };
    let server = start_with(with_ladder(ladder)).await;
    let (ok, err) = publish_file(
        &server.rtmp_url(KEY),
        &sample("h264-aac-1080p30-bframes.flv"),
    )
    .await;
    assert!(ok, "publish failed: {err}");
    check_ladder(
        &server,
        &[
            ("source", (1920, 1080)),
            ("720p", (1280, 720)),
            ("480p", (854, 480)),
            ("360p", (640, 360)),
            ("240p", (426, 240)),
        ],
    )
    .await;
    assert!(server.metric("ferry_transcode_frames_encoded_total").await >= 4.0 * 120.0);
    assert_eq!(
        server.metric("ferry_transcode_decode_errors_total").await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_240p_source_is_never_upscaled() {
    let rungs = vec![
        rung("720p", 720, 3000),
        rung("240p", 240, 400),
        rung("144p", 144, 200),
    ];
    let server = start_with(with_ladder(fast(rungs, false))).await;
    let (ok, err) = publish_file(&server.rtmp_url(KEY), &sample("h264-aac-240p25.flv")).await;
    assert!(ok, "publish failed: {err}");
    check_ladder(&server, &[("240p", (426, 240)), ("144p", (256, 144))]).await;
    // The source is not listed without passthrough, and no 720p was made.
    let (status, _, _) = get_bytes(
        server.running.http_addr,
        &format!("/hls/{STREAM}/720p/index.m3u8"),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_source_gops_still_get_keyframes_every_segment() {
    let server = start_with(with_ladder(fast(vec![rung("360p", 360, 700)], false))).await;
    let (ok, err) = publish_file(&server.rtmp_url(KEY), &sample("h264-aac-longgop.flv")).await;
    assert!(ok, "publish failed: {err}");
    let (_, variants) = finished(server.running.http_addr, 1).await;
    let (_, p) = &variants[0];
    // 4 s of 5 s GOPs: the rung still gets 2 s segments.
    assert!(p.segments.len() >= 2, "{} segments", p.segments.len());
    for f in segment_files(&server.data.path().join("hls"), "360p", p) {
        assert!(
            probe_packets(&f).iter().find(|p| p.video).unwrap().key,
            "{} starts without a keyframe",
            f.display()
        );
    }
}

/// Average luma+chroma PSNR of `encoded` against `source` scaled to `w`×`h`
/// with the same (bicubic) scaler, frames paired by index (FLV's millisecond
/// timestamps would pair neighbours).
async fn psnr(encoded: &Path, source: &Path, w: u32, h: u32) -> f64 {
    let graph = format!(
        "[0:v]settb=1/30,setpts=N[d];[1:v]scale={w}:{h}:flags=bicubic,settb=1/30,setpts=N[r];[d][r]psnr"
    );
    let out = tokio::process::Command::new(ffmpeg())
        .args(["-nostdin", "-hide_banner", "-i"])
        .arg(encoded)
        .arg("-i")
        .arg(source)
        .args(["-lavfi", &graph, "-f", "null", "-"])
        .output()
        .await
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log
        .lines()
        .find(|l| l.contains("PSNR y:"))
        .unwrap_or_else(|| panic!("no PSNR in:\n{log}"));
    line.split("average:")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rung_quality_matches_the_ffmpeg_cli_at_the_same_settings() {
    let rungs = vec![rung("480p", 480, 1200), rung("360p", 360, 700)];
    let ladder = LadderConfig {
        rungs: rungs.clone(),
        passthrough: false,
        ..LadderConfig::default()
    };
    let server = start_with(with_ladder(ladder)).await;
    let source = sample("h264-aac-720p30.flv");
    let (ok, err) = publish_file(&server.rtmp_url(KEY), &source).await;
    assert!(ok, "publish failed: {err}");
    let (_, variants) = finished(server.running.http_addr, 2).await;
    let hls = server.data.path().join("hls");
    let dir = tempfile::tempdir().unwrap();
    for ((name, _), (w, h, kbps)) in variants.iter().zip([(854, 480, 1200), (640, 360, 700)]) {
        let ours = hls.join(STREAM).join(name).join("index.m3u8");
        let cli = dir.path().join(format!("{name}.mp4"));
        let (b, buf) = (format!("{kbps}k"), format!("{}k", kbps * 2));
        let (ok, err) = run_ffmpeg(
            &[
                "-i",
                source.to_str().unwrap(),
                "-an",
                "-fps_mode",
                "passthrough",
                "-vf",
                &format!("scale={w}:{h}:flags=bicubic"),
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-b:v",
                &b,
                "-maxrate",
                &b,
                "-bufsize",
                &buf,
                "-x264-params",
                "keyint=infinite:scenecut=0",
                "-force_key_frames",
                "expr:gte(t,n_forced*2)",
                "-y",
                cli.to_str().unwrap(),
            ],
            Duration::from_secs(60),
        )
        .await;
        assert!(ok, "ffmpeg CLI failed: {err}");
        let frames = |f: &Path| probe_packets(f).iter().filter(|p| p.video).count();
        assert_eq!(frames(&ours), frames(&source), "{name} lost frames");
        let (a, b) = (
            psnr(&ours, &source, w, h).await,
            psnr(&cli, &source, w, h).await,
        );
        eprintln!("{name}: ferry PSNR {a:.2} dB, ffmpeg CLI {b:.2} dB");
        assert!(
            (a - b).abs() <= 0.5,
            "{name}: ferry {a:.2} dB vs ffmpeg CLI {b:.2} dB"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_video_payloads_keep_the_ladder_running() {
    let dir = tempfile::tempdir().unwrap();
    let noisy = dir.path().join("noisy.flv");
    // Flip about one byte in 200 inside every video payload (headers intact).
    let (ok, err) = run_ffmpeg(
        &[
            "-i",
            sample("h264-aac-720p30.flv").to_str().unwrap(),
            "-c",
            "copy",
            "-bsf:v",
            "noise=amount=200",
            "-f",
            "flv",
            "-y",
            noisy.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    )
    .await;
    assert!(ok, "{err}");
    let server = start_with(with_ladder(fast(vec![rung("360p", 360, 700)], true))).await;
    let (ok, err) = publish_file(&server.rtmp_url(KEY), &noisy).await;
    assert!(ok, "publish failed: {err}");
    let (_, variants) = finished(server.running.http_addr, 2).await;
    let (_, p) = variants.iter().find(|(n, _)| n == "360p").unwrap();
    assert!(!p.segments.is_empty());
    let errors = server.metric("ferry_transcode_decode_errors_total").await;
    let skipped = server.metric("ferry_transcode_skipped_packets_total").await;
    eprintln!(
        "decode errors {errors}, skipped packets {skipped}, rung segments {}",
        p.segments.len()
    );
    assert!(errors > 0.0, "the corruption never reached the decoder");
    let rung = server
        .data
        .path()
        .join("hls")
        .join(STREAM)
        .join("360p/index.m3u8");
    let errors = decode_errors(&rung).await;
    assert!(
        errors.is_empty(),
        "the rung is a fresh encode and must decode cleanly:\n{errors}"
    );
    // The server is still fine: a clean publish afterwards is transcoded too.
    let before = server.metric("ferry_transcode_frames_encoded_total").await;
    let (ok, err) = publish_file(&server.rtmp_url(KEY), &sample("h264-aac-720p30.flv")).await;
    assert!(ok, "publish after corruption failed: {err}");
    wait_for(
        "frames from the second publish",
        Duration::from_secs(20),
        || async { server.metric("ferry_transcode_frames_encoded_total").await > before + 50.0 },
    )
    .await;
}

/// Caps glibc's malloc arenas at 2 for threads made from now on: each new
/// ladder thread would otherwise get an arena of its own (up to 8 per core),
/// and their free pages make RSS wander on a busy machine without any leak.
fn few_malloc_arenas() {
    #[allow(unsafe_code)]
    {
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_ARENA_MAX: i32 = -8;
        // SAFETY: glibc's mallopt only changes allocator tuning; M_ARENA_MAX
        // takes effect for arenas created later and is safe at any time.
        unsafe {
            mallopt(M_ARENA_MAX, 2);
        }
    }
}

/// Resident memory after handing free heap memory back to the kernel, so
/// what is left is what is still allocated (glibc keeps freed memory in up to
/// 8 arenas per core, one per thread that allocated, which grows RSS on a busy
/// machine without any leak).
fn rss_kb() -> u64 {
    #[allow(unsafe_code)]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim only releases free heap pages; it takes no
        // pointers and is safe to call from any thread at any time.
        unsafe {
            malloc_trim(0);
        }
    }
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Threads of this process that belong to a ladder (the decoder thread is
/// `ladder-NAME`, rung threads `rung-NAME`).
fn ladder_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("ladder-") || name.starts_with("rung-"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_cycles_release_threads_and_memory() {
    few_malloc_arenas();
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(dir.path(), "clip.flv", "320x240", 1).await;
    let tags = flv_tags(&clip);
    let server = start_with(with_ladder(fast(
        vec![rung("180p", 180, 300), rung("120p", 120, 150)],
        true,
    )))
    .await;
    let addr = server.running.rtmp_addr;
    let cycle = |i: u32| {
        let tags = tags.clone();
        let server = &server;
        async move {
            let encoded = server.metric("ferry_transcode_frames_encoded_total").await;
            let mut c = rtmp::Client::connect(addr, "live").await.unwrap();
            c.publish(KEY).await.unwrap();
            publish_tags(&mut c, &tags).await;
            // Both rungs encode most of the clip (25 frames; x264 holds a few
            // until the flush) while the publisher is on.
            wait_for(
                &format!("cycle {i}: frames"),
                Duration::from_secs(20),
                || async {
                    server.metric("ferry_transcode_frames_encoded_total").await
                        >= encoded + 2.0 * 15.0
                },
            )
            .await;
            c.unpublish().await.unwrap();
            drop(c);
            wait_for(
                &format!("cycle {i}: the ladder to finish"),
                Duration::from_secs(20),
                || async { server.metric("ferry_transcode_ladders").await == 0.0 },
            )
            .await;
        }
    };
    // Warm-up: the allocator grows its per-thread arenas over the first cycles
    // (more of them on a busy machine), then stays flat.
    const WARM: u32 = 50;
    for i in 0..WARM {
        cycle(i).await;
    }
    let rss = rss_kb();
    let total: u32 = std::env::var("CYCLES").map_or(WARM + 50, |v| v.parse().unwrap());
    for i in WARM..total {
        cycle(i).await;
    }
    // The last ladder's threads end just after its gauge drops.
    wait_for("ladder threads to end", Duration::from_secs(5), || async {
        ladder_threads() == 0
    })
    .await;
    let rss_after = rss_kb();
    eprintln!("RSS after {WARM} cycles: {rss} kB; after {total}: {rss_after} kB");
    // A leaked encoder or frame per cycle would be 100 kB+ each time.
    assert!(
        rss_after < rss + 3_000,
        "RSS grew from {rss} kB to {rss_after} kB over {} cycles",
        total - WARM
    );
}

/// An H.264 + AAC FLV clip of `secs` seconds at 25 fps with 1 s GOPs.
async fn make_clip(dir: &Path, name: &str, size: &str, secs: u32) -> PathBuf {
    let clip = dir.join(name);
    let (ok, err) = run_ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={size}:rate=25"),
            "-f",
            "lavfi",
            "-i",
            "sine=sample_rate=48000",
            "-t",
            &secs.to_string(),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-c:a",
            "aac",
            "-f",
            "flv",
            "-y",
            clip.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    )
    .await;
    assert!(ok, "{err}");
    clip
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_resolution_change_replans_the_ladder() {
    let dir = tempfile::tempdir().unwrap();
    let small = flv_tags(&make_clip(dir.path(), "small.flv", "320x240", 3).await);
    let large = flv_tags(&make_clip(dir.path(), "large.flv", "640x360", 3).await);
    let rungs = vec![rung("288p", 288, 500), rung("180p", 180, 300)];
    let server = start_with(with_ladder(fast(rungs, false))).await;
    let mut c = rtmp::Client::connect(server.running.rtmp_addr, "live")
        .await
        .unwrap();
    c.publish(KEY).await.unwrap();
    // Real time, so the ladder and packagers see the stream as a player would.
    let start = tokio::time::Instant::now();
    let shifted = large.iter().map(|(k, ts, b)| (*k, ts + 3000, b.clone()));
    for (kind, ts, body) in small.iter().cloned().chain(shifted) {
        tokio::time::sleep_until(start + Duration::from_millis(u64::from(ts))).await;
        publish_tags(&mut c, &[(kind, ts, body)]).await;
    }
    c.unpublish().await.unwrap();
    drop(c);
    // 240p source: only 180p; after the switch to 360p: 288p and 180p.
    let (_, variants) = finished(server.running.http_addr, 2).await;
    let hls = server.data.path().join("hls").join(STREAM);
    let (_, small_rung) = variants.iter().find(|(n, _)| n == "180p").unwrap();
    assert!(
        small_rung.segments.iter().any(|s| s.discontinuity),
        "the 180p rung restarted without a discontinuity"
    );
    for (name, size) in [("288p", "512x288"), ("180p", "320x180")] {
        let errors = decode_errors(&hls.join(name).join("index.m3u8")).await;
        assert!(errors.is_empty(), "{name}: {errors}");
        let last = variants
            .iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .segments
            .last()
            .unwrap()
            .uri
            .clone();
        let out = std::process::Command::new(ffprobe())
            .args([
                "-v",
                "error",
                "-select_streams",
                "v",
                "-show_entries",
                "stream=width,height",
                "-of",
                "csv=s=x:p=0",
            ])
            .arg(hls.join(name).join(last))
            .output()
            .unwrap();
        let probed = String::from_utf8_lossy(&out.stdout);
        assert_eq!(probed.lines().next(), Some(size), "{name} after the switch");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rungs_play_over_rtmp_below_the_stream_name() {
    let server = start_with(with_ladder(fast(vec![rung("360p", 360, 700)], true))).await;
    let url = server.rtmp_url(KEY);
    let rung_url = server.rtmp_url(&format!("{STREAM}/360p"));
    let file = sample("h264-aac-720p30.flv");
    let publish = publish_file(&url, &file);
    let probe = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tokio::process::Command::new(ffprobe())
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name,width,height",
                "-of",
                "csv=p=0",
            ])
            .arg(&rung_url)
            .output()
            .await
            .unwrap()
    };
    let ((ok, err), out) = tokio::join!(publish, probe);
    assert!(ok, "publish failed: {err}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("h264,640,360"),
        "rung over RTMP: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("aac"), "rung over RTMP has no audio: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ladder_turned_on_through_the_api_applies_at_the_next_publish() {
    let server = start().await;
    let http = server.running.http_addr;
    let settings = r#"{"settings":{"transcode":true,"hls_container":"fmp4","rungs":[{"name":"180p","height":180,"video_kbps":300}]}}"#;
    let (status, s) = api(
        http,
        "PATCH",
        &format!("/streams/{STREAM}"),
        Some(ADMIN),
        Some(settings),
    )
    .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["settings"]["rungs"][0]["name"], serde_json::json!("180p"));
    let (ok, err) = publish_file(&server.rtmp_url(KEY), &sample("h264-aac-240p25.flv")).await;
    assert!(ok, "publish failed: {err}");
    let (master, variants) = finished(http, 2).await;
    let sizes: Vec<(u64, u64)> = master
        .variants
        .iter()
        .map(|v| v.resolution.map(|r| (r.width, r.height)).unwrap())
        .collect();
    assert_eq!(sizes, [(426, 240), (320, 180)]);
    assert!(
        variants
            .iter()
            .all(|(_, p)| p.segments.iter().all(|s| s.uri.ends_with(".m4s"))),
        "not fMP4"
    );
}
