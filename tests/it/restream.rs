//! Restream tasks against real receivers: a second Ferry and nginx-rtmp (Debian
//! `libnginx-mod-rtmp`, started here on loopback). The stream is read back from
//! the receiver with ffmpeg; a receiver that goes away and comes back is
//! reconnected to by the task on its own.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::nginx::Nginx;
use common::*;
use serde_json::json;

/// Reads `secs` seconds of `url` with ffmpeg and returns its packets.
async fn read_back(url: &str, secs: u32, dir: &Path) -> Vec<Probed> {
    let out = dir.join(format!("read-{}.flv", rand_suffix()));
    let (ok, err) = run_ffmpeg(
        &[
            "-i",
            url,
            "-t",
            &secs.to_string(),
            "-c",
            "copy",
            "-f",
            "flv",
            "-y",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(u64::from(secs) + 20),
    )
    .await;
    assert!(ok, "reading {url} failed: {err}");
    probe_packets(&out)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

async fn task(server: &TestServer, id: i64) -> serde_json::Value {
    api(
        server.running.http_addr,
        "GET",
        &format!("/tasks/{id}"),
        Some(ADMIN),
        None,
    )
    .await
    .1
}

fn check_media(packets: &[Probed], secs: u32) {
    let video: Vec<&Probed> = packets.iter().filter(|p| p.video).collect();
    assert!(
        video.len() as u32 >= secs * 30 * 8 / 10,
        "only {} video packets in {secs} s",
        video.len()
    );
    assert!(
        video[0].key,
        "the receiver's stream does not start on a keyframe"
    );
    assert!(
        packets.iter().any(|p| !p.video),
        "no audio reached the receiver"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restream_to_another_ferry_reconnects_when_it_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let b = receiver(port).await;
    let a = start().await;
    let id = add_restream_task(
        a.running.http_addr,
        STREAM,
        &format!("rtmp://127.0.0.1:{port}/live/mirrorkey"),
    )
    .await;
    let publish_url = a.rtmp_url(KEY);
    let publisher = tokio::spawn(async move {
        publish_looped(&publish_url, &sample("h264-aac-720p30.flv"), 6).await
    });

    let mirror = format!("rtmp://127.0.0.1:{port}/live/mirror");
    wait_for(
        "the restream to reach the receiver",
        Duration::from_secs(15),
        || async { b.running.hub.is_live("mirror") },
    )
    .await;
    check_media(&read_back(&mirror, 4, dir.path()).await, 4);
    let t = task(&a, id).await;
    assert_eq!(t["state"], json!("running"), "{t}");
    assert!(t["worker"].as_str().is_some(), "{t}");

    // The receiver goes away: the task fails, says why, and keeps retrying.
    b.running.shutdown().await;
    wait_for("the failure to show", Duration::from_secs(10), || async {
        let t = task(&a, id).await;
        t["restarts"].as_i64().unwrap() >= 1 && t["last_error"].as_str().is_some()
    })
    .await;
    let t = task(&a, id).await;
    eprintln!("task while the receiver is down: {t}");
    assert!(
        t["last_error"].as_str().unwrap().contains("127.0.0.1"),
        "{t}"
    );

    // It comes back on the same address: the task reconnects by itself.
    let back = Instant::now();
    let b = receiver(port).await;
    wait_for(
        "the restream to resume",
        Duration::from_secs(40),
        || async { b.running.hub.is_live("mirror") },
    )
    .await;
    eprintln!(
        "restream resumed {:?} after the receiver came back",
        back.elapsed()
    );
    check_media(&read_back(&mirror, 3, dir.path()).await, 3);
    publisher.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restream_to_nginx_rtmp() {
    let dir = tempfile::tempdir().unwrap();
    let nginx = Nginx::start();
    let a = start().await;
    let id = add_restream_task(
        a.running.http_addr,
        STREAM,
        &format!("rtmp://127.0.0.1:{}/live/fromferry", nginx.port),
    )
    .await;
    let publish_url = a.rtmp_url(KEY);
    let publisher = tokio::spawn(async move {
        publish_looped(&publish_url, &sample("h264-aac-720p30.flv"), 3).await
    });
    wait_for("the task to run", Duration::from_secs(10), || async {
        task(&a, id).await["state"] == json!("running")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // nginx-rtmp has no GOP cache: a player waits up to a GOP (2 s) for a keyframe.
    let packets = read_back(
        &format!("rtmp://127.0.0.1:{}/live/fromferry", nginx.port),
        7,
        dir.path(),
    )
    .await;
    check_media(&packets, 4);
    let t = task(&a, id).await;
    assert_eq!(t["restarts"], json!(0), "{t}");
    publisher.abort();
}
