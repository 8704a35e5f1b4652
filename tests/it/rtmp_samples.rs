//! Every test stream, published with the real ffmpeg CLI and played back with
//! ffmpeg and with rtmpdump (an independent client), must come out packet for
//! packet as it went in.

use crate::common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;

/// Per track: the deltas between decode times and the pts-dts offsets, the
/// timeline's shape independent of where each side starts its clock.
fn shape(packets: &[Probed], video: bool) -> Vec<(i64, i64)> {
    let track: Vec<&Probed> = packets.iter().filter(|p| p.video == video).collect();
    track
        .windows(2)
        .map(|w| (w[1].dts - w[0].dts, w[1].pts - w[1].dts))
        .collect()
}

fn assert_same_stream(source: &Path, got: &Path, who: &str) {
    let want = probe_packets(source);
    let have = probe_packets(got);
    for video in [true, false] {
        let kind = if video { "video" } else { "audio" };
        let n_want = want.iter().filter(|p| p.video == video).count();
        let n_have = have.iter().filter(|p| p.video == video).count();
        assert_eq!(n_have, n_want, "{who}: {kind} packet count");
        assert_eq!(
            shape(&have, video),
            shape(&want, video),
            "{who}: {kind} timing"
        );
        let dts: Vec<i64> = have
            .iter()
            .filter(|p| p.video == video)
            .map(|p| p.dts)
            .collect();
        assert!(
            dts.windows(2).all(|w| w[0] <= w[1]),
            "{who}: {kind} dts not monotonic"
        );
    }
    if let Some(first) = have.iter().find(|p| p.video) {
        assert!(first.key, "{who}: first video packet is not a keyframe");
    }
}

async fn round_trip(file: &str) {
    let server = start().await;
    let dir = tempfile::tempdir().unwrap();
    let via_ffmpeg = dir.path().join("ffmpeg.flv");
    let via_rtmpdump = dir.path().join("rtmpdump.flv");
    let play_url = server.rtmp_url(STREAM);

    // Players join before the publisher, so they must receive every packet.
    let ffmpeg_player = spawn_player(&play_url, &via_ffmpeg);
    let rtmpdump_player = tokio::process::Command::new("rtmpdump")
        .args(["-q", "--live", "-r", &play_url, "-o"])
        .arg(&via_rtmpdump)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("rtmpdump runs");
    wait_for("two players", Duration::from_secs(10), || async {
        server.metric("ferry_rtmp_players").await == 2.0
    })
    .await;

    let (ok, err) = publish_file(&server.rtmp_url(KEY), &sample(file)).await;
    assert!(ok, "publish failed: {err}");

    // Both players end on their own when the publisher leaves (UnpublishNotify).
    for (who, child) in [("ffmpeg", ffmpeg_player), ("rtmpdump", rtmpdump_player)] {
        let out = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{who} did not stop after the publisher left"))
            .unwrap();
        // rtmpdump exits 2 ("incomplete") for a live stream that ends; that is its normal end.
        assert!(
            out.status.success() || (who == "rtmpdump" && out.status.code() == Some(2)),
            "{who} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_same_stream(&sample(file), &via_ffmpeg, "ffmpeg player");
    assert_same_stream(&sample(file), &via_rtmpdump, "rtmpdump player");
    server.running.shutdown().await;
}

#[tokio::test]
async fn obs_like_720p30() {
    round_trip("h264-aac-720p30.flv").await;
}

#[tokio::test]
async fn bframes_1080p30() {
    round_trip("h264-aac-1080p30-bframes.flv").await;
}

#[tokio::test]
async fn long_irregular_gop() {
    round_trip("h264-aac-longgop.flv").await;
}

#[tokio::test]
async fn fps60_audio_44k1() {
    round_trip("h264-aac-720p60-44k.flv").await;
}

#[tokio::test]
async fn video_only() {
    round_trip("h264-only.flv").await;
}

#[tokio::test]
async fn audio_only() {
    round_trip("aac-only.flv").await;
}

#[tokio::test]
async fn small_240p25() {
    round_trip("h264-aac-240p25.flv").await;
}

/// The publisher path OBS Studio takes: librtmp (through Debian's python3-librtmp),
/// not ffmpeg's own RTMP code.
#[tokio::test]
async fn librtmp_publisher_like_obs() {
    let server = start().await;
    let dir = tempfile::tempdir().unwrap();
    let played = dir.path().join("played.flv");
    let player = spawn_player(&server.rtmp_url(STREAM), &played);
    wait_for("player", Duration::from_secs(10), || async {
        server.metric("ferry_rtmp_players").await == 1.0
    })
    .await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/librtmp_publish.py");
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let source = sample("h264-aac-1080p30-bframes.flv");
    let publish = |key: String| {
        let (script, source) = (script.clone(), source.clone());
        let url = server.rtmp_url(&key);
        async move {
            tokio::process::Command::new(python)
                .arg(script)
                .arg(url)
                .arg(source)
                .output()
                .await
                .unwrap()
        }
    };
    let refused = publish("wrong-key".into()).await;
    assert_eq!(
        refused.status.code(),
        Some(2),
        "librtmp must see the refusal"
    );
    let out = publish(KEY.into()).await;
    assert!(
        out.status.success(),
        "librtmp publish failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = tokio::time::timeout(Duration::from_secs(15), player.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(done.status.success());
    assert_same_stream(&source, &played, "librtmp publisher");
}
