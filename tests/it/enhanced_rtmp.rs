//! HEVC over Enhanced RTMP. Debian's ffmpeg 5.1 cannot publish it (6.1+
//! can), so the stream is made here: `ffmpeg -c:v libx265` writes an HEVC
//! elementary stream, this test turns it into an hvcC and length-prefixed
//! frames, and Ferry's own RTMP client publishes them with Enhanced RTMP's
//! extended video header (audio from the AAC sample). A player that
//! announces `hvc1` in `fourCcList` gets every frame byte for byte; a legacy
//! player (rtmpdump) gets the audio only, never a broken video track.

use crate::common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use rtmp::flv::{FOURCC_AV1, FOURCC_HEVC, VideoTag};
use rtmp::message::Message;

fn nal_type(nal: &[u8]) -> u8 {
    (nal[0] >> 1) & 0x3f
}

/// An hvcC from the parameter sets (profile, tier, level from the SPS).
fn hvcc(vps: &[u8], sps: &[u8], pps: &[u8]) -> Vec<u8> {
    let s = media_core::codec::rbsp(sps);
    // NAL header (2), then vps id / max sub layers / nesting (1), then
    // profile_tier_level: space/tier/profile (1), compat (4), constraints (6), level (1).
    let mut r = vec![1u8];
    r.extend_from_slice(&s[3..15]);
    r.extend_from_slice(&[0xf0, 0, 0xfc, 0xfd, 0xf8, 0xf8, 0, 0, 0x0f, 3]);
    for (kind, nal) in [(32u8, vps), (33, sps), (34, pps)] {
        r.extend_from_slice(&[0x80 | kind, 0, 1]);
        r.extend_from_slice(&(nal.len() as u16).to_be_bytes());
        r.extend_from_slice(nal);
    }
    r
}

/// An HEVC access unit: its length-prefixed NAL units and whether it is a keyframe.
struct Frame {
    data: Bytes,
    keyframe: bool,
}

/// Encodes `seconds` of 25 fps test video with libx265 and returns the hvcC
/// and the frames.
fn hevc_stream(dir: &std::path::Path, seconds: u32) -> (Bytes, Vec<Frame>) {
    let out = dir.join("v.hevc");
    let ok = std::process::Command::new(ffmpeg())
        .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=320x240:rate=25:duration={seconds}"))
        .args([
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "aud=1:bframes=0:keyint=25:log-level=error",
            "-f",
            "hevc",
        ])
        .arg(&out)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ffmpeg with libx265");
    let data = std::fs::read(&out).unwrap();
    let nals: Vec<&[u8]> = transcode::annexb::nal_units(&data).collect();
    let find = |t: u8| *nals.iter().find(|n| nal_type(n) == t).unwrap();
    let config = hvcc(find(32), find(33), find(34));
    let mut frames = Vec::new();
    let mut current: Option<(Vec<u8>, bool)> = None;
    for nal in nals {
        match nal_type(nal) {
            35 => {
                // An access unit delimiter starts the next picture.
                if let Some((d, k)) = current.take()
                    && !d.is_empty()
                {
                    frames.push(Frame {
                        data: d.into(),
                        keyframe: k,
                    });
                }
                current = Some((Vec::new(), false));
            }
            32..=34 => {} // in the hvcC
            t => {
                let (d, k) = current.get_or_insert_with(|| (Vec::new(), false));
                d.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                d.extend_from_slice(nal);
                *k |= (16..=21).contains(&t);
            }
        }
    }
    if let Some((d, k)) = current
        && !d.is_empty()
    {
        frames.push(Frame {
            data: d.into(),
            keyframe: k,
        });
    }
    (Bytes::from(config), frames)
}

fn tagged(fourcc: [u8; 4], first: u8, rest: &[u8]) -> Bytes {
    let mut b = vec![first];
    b.extend_from_slice(&fourcc);
    b.extend_from_slice(rest);
    b.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hevc_over_enhanced_rtmp_reaches_players_that_ask_and_only_them() {
    let dir = tempfile::tempdir().unwrap();
    let (config, frames) = hevc_stream(dir.path(), 4);
    assert!(
        frames.len() >= 90 && frames[0].keyframe,
        "{} frames",
        frames.len()
    );
    let s = start_with(|c| c.hls.enabled = false).await;

    // An Enhanced RTMP player (Ferry's client announces hvc1) and a legacy
    // one (rtmpdump), both before the publisher.
    let mut player = rtmp::Client::connect(s.running.rtmp_addr, "live")
        .await
        .unwrap();
    player.play(STREAM).await.unwrap();
    let legacy_out = dir.path().join("legacy.flv");
    // rtmpdump does not announce Enhanced RTMP and writes what it gets.
    let mut legacy = tokio::process::Command::new("rtmpdump")
        .args([
            "-q",
            "--live",
            "--stop",
            "3",
            "-r",
            &s.rtmp_url(STREAM),
            "-o",
        ])
        .arg(&legacy_out)
        .stderr(std::fs::File::create(dir.path().join("legacy.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let sent_frames = frames.len();
    let publish = publish_hevc(s.running.rtmp_addr, config, frames).await;

    // The Enhanced RTMP player: the hvcC, then every frame, bytes intact.
    let mut got_config = None;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < sent_frames && Instant::now() < deadline {
        let msg = tokio::time::timeout(Duration::from_secs(5), player.read()).await;
        let Ok(Ok(Message::Video { data, .. })) = msg else {
            continue;
        };
        match rtmp::flv::parse_video(&data).unwrap() {
            VideoTag::HevcSequenceHeader(c) => got_config = Some(c),
            VideoTag::Frame { keyframe, data, .. } => got.push((keyframe, data)),
            other => panic!("unexpected {other:?}"),
        }
    }
    let (_publisher, frames) = publish.await.unwrap();
    assert!(got_config.is_some(), "no HEVC sequence start");
    assert_eq!(got.len(), frames.len(), "every HEVC frame arrived");
    for (i, ((k, d), f)) in got.iter().zip(&frames).enumerate() {
        assert_eq!((*k, d), (f.keyframe, &f.data), "frame {i}");
    }
    let info = s.running.hub.info(STREAM).unwrap();
    let codec = info.video.unwrap_or_default();
    assert!(codec.starts_with("hvc1.1."), "{codec}");

    // The legacy player: audio only (and a NetStream.Play.VideoUnsupported warning).
    let _ = tokio::time::timeout(Duration::from_secs(8), legacy.wait()).await;
    let streams = probe_streams(&legacy_out.display().to_string(), "codec_name");
    let log = std::fs::read_to_string(dir.path().join("legacy.log")).unwrap_or_default();
    assert_eq!(
        streams.trim(),
        "aac",
        "a legacy player gets the audio only; rtmpdump said: {log}"
    );
}

/// Publishes the HEVC frames (25 fps, in real time) with the AAC sample's
/// audio, over Enhanced RTMP; returns the frames when done.
async fn publish_hevc(
    addr: std::net::SocketAddr,
    config: Bytes,
    frames: Vec<Frame>,
) -> tokio::task::JoinHandle<(rtmp::Client, Vec<Frame>)> {
    publish_enhanced(addr, FOURCC_HEVC, config, frames).await
}

/// Publishes `frames` of the codec `fourcc` like [`publish_hevc`] (HEVC
/// frames carry a composition time, AV1 frames none).
async fn publish_enhanced(
    addr: std::net::SocketAddr,
    fourcc: [u8; 4],
    config: Bytes,
    frames: Vec<Frame>,
) -> tokio::task::JoinHandle<(rtmp::Client, Vec<Frame>)> {
    let audio: Vec<_> = flv_tags(&sample("h264-aac-240p25.flv"))
        .into_iter()
        .filter(|t| t.0 == 8)
        .collect();
    let mut publisher = synthetic_publisher_with_key(addr).await;
    let started = Instant::now();
    tokio::spawn(async move {
        publisher
            .send_video(0, &tagged(fourcc, 0x80 | (1 << 4), &config))
            .await
            .unwrap();
        let mut audio = audio.into_iter().peekable();
        for (i, f) in frames.iter().enumerate() {
            let ts = (i as u32) * 40;
            while let Some(a) = audio.next_if(|a| a.1 <= ts) {
                publisher.send_audio(a.1, &a.2).await.unwrap();
            }
            let first = 0x80 | (if f.keyframe { 1 } else { 2 } << 4) | 1;
            // CodedFrames: HEVC has a composition time (zero: no B-frames), AV1 none.
            let mut body = if fourcc == FOURCC_HEVC {
                vec![0u8, 0, 0]
            } else {
                Vec::new()
            };
            body.extend_from_slice(&f.data);
            publisher
                .send_video(ts, &tagged(fourcc, first, &body))
                .await
                .unwrap();
            tokio::time::sleep_until((started + Duration::from_millis(u64::from(ts))).into()).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        (publisher, frames)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hevc_source_is_transcoded_to_h264_rungs_every_player_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (config, frames) = hevc_stream(dir.path(), 8);
    let s = with_180p_rung().await;
    let _publish = publish_hevc(s.running.rtmp_addr, config, frames).await;
    assert_h264_rung(&s).await;
}

/// A server whose stream gets one 180p rung (the ladder runs with HLS
/// packaging: its rungs are HLS variants).
async fn with_180p_rung() -> TestServer {
    start_with(|c| {
        c.streams[0].settings.transcode = Some(true);
        c.streams[0].settings.rungs = Some(vec![transcode::RungConfig {
            name: "180p".into(),
            height: 180,
            video_kbps: 300,
        }]);
    })
    .await
}

/// Waits for the 180p rung's H.264 track (it comes with the first encoded
/// frame) and has a legacy player (ffprobe 5.1) read it: H.264, 240x180.
/// Returns the rung's name.
async fn assert_h264_rung(s: &TestServer) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let rung = format!("{STREAM}/180p");
    let video = loop {
        if let Some(v) = s.running.hub.info(&rung).and_then(|i| i.video) {
            break v;
        }
        assert!(Instant::now() < deadline, "{rung} has no video track");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(video.starts_with("avc1."), "{rung}: {video}");
    let streams = probe_streams(
        &format!("rtmp://{}/live/{rung}", s.running.rtmp_addr),
        "codec_name,width,height",
    );
    assert!(streams.contains("h264,240,180"), "{streams}");
    rung
}

/// A publisher on the test stream's key, past `publish`.
async fn synthetic_publisher_with_key(addr: std::net::SocketAddr) -> rtmp::Client {
    let mut c = rtmp::Client::connect(addr, "live").await.unwrap();
    c.publish(KEY).await.unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hevc_is_packaged_to_fmp4_hls_with_its_codec_and_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let (config, frames) = hevc_stream(dir.path(), 8);
    let s = start_with(|c| {
        c.streams[0].settings.hls_container = Some(ferry::config::HlsContainer::Fmp4)
    })
    .await;
    let _publish = publish_hevc(s.running.rtmp_addr, config, frames).await;
    let http = s.running.http_addr;
    let deadline = Instant::now() + Duration::from_secs(30);
    let master = loop {
        let m = http_get(http, &format!("/hls/{STREAM}/master.m3u8")).await;
        if m.contains("hvc1.") {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "no master playlist naming hvc1: {m}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("{master}");
    assert!(master.contains("RESOLUTION=320x240"), "{master}");
    assert!(master.contains("mp4a.40.2"), "{master}");
    // ffprobe reads the fMP4 media playlist: HEVC 320x240 and AAC.
    let streams = probe_streams(
        &format!("http://{http}/hls/{STREAM}/source/index.m3u8"),
        "codec_name,width,height",
    );
    assert!(
        streams.contains("hevc,320,240") && streams.contains("aac"),
        "{streams}"
    );
    // And ffmpeg decodes 3 s of it (HEVC and AAC) without an error.
    let url = format!("http://{http}/hls/{STREAM}/master.m3u8");
    let (ok, err) = run_ffmpeg(
        &["-xerror", "-i", &url, "-t", "3", "-f", "null", "-"],
        Duration::from_secs(30),
    )
    .await;
    assert!(ok, "{err}");
}

/// Encodes `seconds` of 25 fps test video with SVT-AV1 into IVF and returns
/// an av1C (profile 0, level 4.0, 8-bit 4:2:0 and the sequence header OBU)
/// and the temporal units (temporal delimiters dropped, as ISOBMFF has it).
fn av1_stream(dir: &std::path::Path, seconds: u32) -> (Bytes, Vec<Frame>) {
    let out = dir.join("v.ivf");
    let ok = std::process::Command::new(ffmpeg())
        .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=320x240:rate=25:duration={seconds}"))
        .args([
            "-c:v",
            "libsvtav1",
            "-preset",
            "12",
            "-g",
            "25",
            "-pix_fmt",
            "yuv420p",
            "-f",
            "ivf",
        ])
        .arg(&out)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ffmpeg with libsvtav1");
    let data = std::fs::read(&out).unwrap();
    let header = usize::from(u16::from_le_bytes([data[6], data[7]]));
    let mut at = header;
    let mut frames = Vec::new();
    let mut sequence_header = None;
    while at + 12 <= data.len() {
        let size = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        let tu = &data[at + 12..at + 12 + size];
        at += 12 + size;
        // Walk the OBUs (each with a size field, as IVF from ffmpeg has them).
        let (mut kept, mut keyframe, mut i) = (Vec::new(), false, 0);
        while i < tu.len() {
            let h = tu[i];
            let kind = (h >> 3) & 0x0f;
            let ext = usize::from(h & 0x04 != 0);
            let (mut len, mut used, mut shift) = (0usize, 0usize, 0);
            loop {
                let b = tu[i + 1 + ext + used];
                len |= usize::from(b & 0x7f) << shift;
                used += 1;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
            }
            let end = i + 1 + ext + used + len;
            let payload = &tu[i + 1 + ext + used..end];
            match kind {
                2 => {} // temporal delimiter
                1 => {
                    sequence_header.get_or_insert_with(|| tu[i..end].to_vec());
                    kept.extend_from_slice(&tu[i..end]);
                }
                3 | 6 => {
                    // show_existing_frame = 0 and frame_type = KEY_FRAME
                    keyframe |= payload.first().is_some_and(|b| b & 0xe0 == 0);
                    kept.extend_from_slice(&tu[i..end]);
                }
                _ => kept.extend_from_slice(&tu[i..end]),
            }
            i = end;
        }
        frames.push(Frame {
            data: kept.into(),
            keyframe,
        });
    }
    let mut config = vec![0x81, 0x08, 0x0c, 0x00];
    config.extend_from_slice(&sequence_header.expect("a sequence header OBU"));
    (config.into(), frames)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn av1_over_enhanced_rtmp_plays_packages_to_fmp4_and_spares_legacy_players() {
    let dir = tempfile::tempdir().unwrap();
    let (config, frames) = av1_stream(dir.path(), 6);
    assert!(
        frames.len() >= 140 && frames[0].keyframe,
        "{} frames",
        frames.len()
    );
    let s = start_with(|c| {
        c.streams[0].settings.hls_container = Some(ferry::config::HlsContainer::Fmp4)
    })
    .await;
    let mut player = rtmp::Client::connect(s.running.rtmp_addr, "live")
        .await
        .unwrap();
    player.play(STREAM).await.unwrap();
    let legacy_out = dir.path().join("legacy.flv");
    let mut legacy = tokio::process::Command::new("rtmpdump")
        .args([
            "-q",
            "--live",
            "--stop",
            "3",
            "-r",
            &s.rtmp_url(STREAM),
            "-o",
        ])
        .arg(&legacy_out)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let sent = frames.len();
    let publish = publish_enhanced(s.running.rtmp_addr, FOURCC_AV1, config, frames).await;
    let mut got_config = None;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < sent && Instant::now() < deadline {
        let msg = tokio::time::timeout(Duration::from_secs(5), player.read()).await;
        let Ok(Ok(Message::Video { data, .. })) = msg else {
            continue;
        };
        match rtmp::flv::parse_video(&data).unwrap() {
            VideoTag::Av1SequenceHeader(c) => got_config = Some(c),
            VideoTag::Frame { keyframe, data, .. } => got.push((keyframe, data)),
            other => panic!("unexpected {other:?}"),
        }
    }
    // HLS while the stream is live: fMP4 with av01, AV1 320x240 by ffprobe.
    let http = s.running.http_addr;
    let master = http_get(http, &format!("/hls/{STREAM}/master.m3u8")).await;
    assert!(
        master.contains("av01.0.") && master.contains("RESOLUTION=320x240"),
        "{master}"
    );
    let streams = probe_streams(
        &format!("http://{http}/hls/{STREAM}/source/index.m3u8"),
        "codec_name,width,height",
    );
    assert!(
        streams.contains("av1,320,240") && streams.contains("aac"),
        "{streams}"
    );
    let (_publisher, frames) = publish.await.unwrap();
    assert!(got_config.is_some(), "no AV1 sequence start");
    assert_eq!(got.len(), frames.len(), "every AV1 temporal unit arrived");
    for (i, ((k, d), f)) in got.iter().zip(&frames).enumerate() {
        assert_eq!((*k, d), (f.keyframe, &f.data), "temporal unit {i}");
    }
    let codec = s
        .running
        .hub
        .info(STREAM)
        .and_then(|i| i.video)
        .unwrap_or_default();
    assert!(codec.starts_with("av01.0.08M.08"), "{codec}");
    let _ = tokio::time::timeout(Duration::from_secs(8), legacy.wait()).await;
    let streams = probe_streams(&legacy_out.display().to_string(), "codec_name");
    assert_eq!(streams.trim(), "aac");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_av1_source_is_transcoded_to_h264_rungs() {
    let dir = tempfile::tempdir().unwrap();
    let (config, frames) = av1_stream(dir.path(), 20);
    let s = with_180p_rung().await;
    let _publish = publish_enhanced(s.running.rtmp_addr, FOURCC_AV1, config, frames).await;
    let rung = assert_h264_rung(&s).await;
    // hls.js in Chromium plays the rung's HLS (while the source is live).
    let url = format!("http://{}/hls/{rung}/index.m3u8", s.running.http_addr);
    let p = common::player::play(&url, 4, || async {}).await;
    println!("hls.js on the H.264 rung of an AV1 source: {}", p.summary);
    assert!(p.played >= 2.0, "{}", p.summary);
}
