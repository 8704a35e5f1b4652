//! The web UI in a real browser: headless Chromium (Debian's) driven by
//! playwright-core from `ui/node_modules` (both installed by scripts/setup.sh)
//! runs `tests/ui/e2e.cjs` against a live `ferry serve`. The screenshot is kept
//! in `target/ui-artifacts/` as the test's artifact.

use crate::common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_creates_a_stream_sees_it_live_and_previews_it() {
    let server = start_with(|c| c.control.history_seconds = 1.0).await;
    let shot = ui_artifacts().join("stream-live.png");
    let envs = [
        ("FERRY_URL", format!("http://{}/", server.running.http_addr)),
        ("FERRY_TOKEN", ADMIN.to_owned()),
        (
            "SAMPLE",
            sample("h264-aac-720p30.flv").display().to_string(),
        ),
        ("SHOT", shot.display().to_string()),
        ("FFMPEG", ffmpeg()),
    ];
    run_ui_script("e2e.cjs", &envs, Duration::from_secs(120), "ui ok").await;
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "no screenshot"
    );
}

/// Viewers that follow `stream` through the director at `director` as a
/// player does: the multivariant playlist once, then their media playlist
/// every second, until dropped.
fn audience(
    director: std::net::SocketAddr,
    stream: &str,
    n: usize,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let stream = stream.to_owned();
            tokio::spawn(async move {
                let (_, _, master) =
                    get_bytes(director, &format!("/hls/{stream}/master.m3u8")).await;
                let master = String::from_utf8_lossy(&master).into_owned();
                let Some(variant) = master
                    .lines()
                    .find(|l| !l.starts_with('#') && !l.is_empty())
                else {
                    return;
                };
                let path = format!("/hls/{stream}/{variant}");
                loop {
                    let _ = get_bytes(director, &path).await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_page_shows_the_audience_the_edges_and_a_killed_edge() {
    const VIEWERS: usize = 6;
    let server = start_with(|c| {
        c.director.listen = "127.0.0.1:0".into();
        c.director.poll_ms = 200;
        c.control.history_seconds = 1.0;
    })
    .await;
    let o = server.running.http_addr;
    let director = server.running.director_addr.expect("a director");
    let _publisher = publish_background(&server.rtmp_url(KEY), 60);
    // A second stream from an encoder with a 10 s keyframe interval.
    let (status, created) = api(
        o,
        "POST",
        "/streams",
        Some(ADMIN),
        Some(r#"{"name":"longgop"}"#),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let long_key = created["key"]["key"].as_str().unwrap().to_owned();
    let _long_gop = tokio::process::Command::new(ffmpeg())
        .args(["-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x240:rate=30")
        .args(["-t", "90", "-c:v", "libx264", "-preset", "ultrafast"])
        .args(["-g", "300", "-keyint_min", "300", "-sc_threshold", "0"])
        .args(["-f", "flv"])
        .arg(server.rtmp_url(&long_key))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let edges = [cluster::hls_edge(o, o).await, cluster::hls_edge(o, o).await];
    wait_for("two live edges", Duration::from_secs(30), || async {
        let (_, e) = api(o, "GET", "/edges", Some(ADMIN), None).await;
        e.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["state"] == "live")
            .count()
            == 2
    })
    .await;
    wait_for("segments", Duration::from_secs(30), || async {
        let (status, _, body) = get_bytes(o, &format!("/hls/{STREAM}/source/index.m3u8")).await;
        status == 200 && String::from_utf8_lossy(&body).matches("#EXTINF").count() >= 2
    })
    .await;
    let viewers = audience(director, STREAM, VIEWERS);

    let artifacts = ui_artifacts();
    let envs = [
        ("FERRY_URL", format!("http://{o}/")),
        ("FERRY_TOKEN", ADMIN.to_owned()),
        ("STREAM", STREAM.to_owned()),
        ("VIEWERS", VIEWERS.to_string()),
        ("KILL_PID", edges[0].pid().to_string()),
        ("SHOT_DIR", artifacts.display().to_string()),
    ];
    let log = run_ui_script(
        "cluster.cjs",
        &envs,
        Duration::from_secs(150),
        "cluster ui ok",
    )
    .await;
    println!("{log}");
    // The dead-edge time is 3 s and the page refreshes every 2 s.
    let dead_ms: u64 = log
        .lines()
        .find_map(|l| l.strip_prefix("edge shown dead after ms="))
        .and_then(|v| v.trim().parse().ok())
        .expect("no dead-edge time in the log");
    assert!(
        dead_ms <= 6000,
        "the killed edge was shown dead after {dead_ms} ms"
    );
    // The director URL the page offers plays in hls.js.
    let url = log
        .lines()
        .find_map(|l| l.strip_prefix("director url="))
        .expect("no director URL shown")
        .trim()
        .to_owned();
    assert!(
        url.contains(&format!("{director}/hls/{STREAM}/master.m3u8")),
        "{url}"
    );
    let p = common::player::play(&url, 6, || async {}).await;
    assert!(
        p.played > 4.0,
        "the director URL does not play: {}",
        p.summary
    );
    for v in viewers {
        v.abort();
    }
    for shot in ["stream-cluster.png", "nodes-cluster.png"] {
        assert!(
            std::fs::metadata(artifacts.join(shot)).unwrap().len() > 10_000,
            "no screenshot {shot}"
        );
    }
}
