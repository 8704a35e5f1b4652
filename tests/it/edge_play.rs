//! Real players through `ferry edge`: hls.js in headless Chromium plays a live
//! stream through an edge in front of `ferry serve`, through an edge whose
//! origin is an S3-compatible server holding what the origin wrote, and keeps
//! playing when the first of two origins is killed (the stall is printed).

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use common::player::play;
use common::s3::S3Server;
use common::*;
use ferry::config::{Config, StoreKind};
use ferry::serve::Running;

async fn edge(edit: impl FnOnce(&mut Config)) -> (Running, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: data.path().to_owned(),
        ..Config::default()
    };
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    edit(&mut config);
    (ferry::edge_role::start_edge(&config).await.unwrap(), data)
}

/// Waits until the origin lists three segments, so a player starting now has
/// the buffer hls.js wants at the live edge (a stall measured later is then
/// the edge's, not the young stream's).
async fn wait_for_master(http: std::net::SocketAddr) {
    wait_for("three segments", Duration::from_secs(30), || async {
        let (status, _, body) = get_bytes(http, &format!("/hls/{STREAM}/source/index.m3u8")).await;
        status == 200 && String::from_utf8_lossy(&body).matches("#EXTINF").count() >= 3
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_js_plays_through_an_edge_in_front_of_ferry_serve() {
    let origin = start().await;
    let _publisher = publish_background(&origin.rtmp_url(KEY), 20);
    wait_for_master(origin.running.http_addr).await;
    let (edge, _data) = edge(|c| {
        c.edge.origins = vec![format!("http://{}", origin.running.http_addr)];
    })
    .await;
    let url = format!("http://{}/hls/{STREAM}/master.m3u8", edge.http_addr);
    let p = play(&url, 6, || async {}).await;
    println!("through an edge: {}", p.summary);
    assert!(p.played > 4.0, "{}", p.summary);
    // ffmpeg reads 4 s of the live presentation through the edge.
    let (ok, errors) = run_ffmpeg(
        &["-i", &url, "-t", "4", "-c", "copy", "-f", "null", "-"],
        Duration::from_secs(30),
    )
    .await;
    assert!(
        ok,
        "ffmpeg could not read the HLS through the edge: {errors}"
    );
    let metrics = http_get(edge.http_addr, "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ferry_edge_hits_total ")
                && l.split(' ').nth(1).unwrap().parse::<f64>().unwrap() > 0.0),
        "{metrics}"
    );
    edge.shutdown().await;
    origin.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_js_plays_through_an_edge_whose_origin_is_s3() {
    let s3 = S3Server::new();
    let s3c = s3.config();
    let cfg = s3c.clone();
    let origin = start_with(move |c| {
        c.store.kind = StoreKind::S3;
        c.store.s3_endpoint = cfg.endpoint;
        c.store.s3_bucket = cfg.bucket;
        c.store.s3_region = cfg.region;
        c.store.s3_access_key_id = cfg.access_key_id;
        c.store.s3_secret_access_key = cfg.secret_access_key;
    })
    .await;
    let _publisher = publish_background(&origin.rtmp_url(KEY), 20);
    wait_for_master(origin.running.http_addr).await;
    let (edge, _data) = edge(|c| {
        c.edge.origins = vec![format!("s3://{}", s3c.bucket)];
        c.store.s3_endpoint = s3c.endpoint.clone();
        c.store.s3_region = s3c.region.clone();
        c.store.s3_access_key_id = s3c.access_key_id.clone();
        c.store.s3_secret_access_key = s3c.secret_access_key.clone();
    })
    .await;
    let url = format!("http://{}/hls/{STREAM}/master.m3u8", edge.http_addr);
    let p = play(&url, 6, || async {}).await;
    println!("through an edge from S3: {}", p.summary);
    assert!(p.played > 4.0, "{}", p.summary);
    edge.shutdown().await;
    origin.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_js_keeps_playing_when_the_first_origin_dies() {
    // Two origins holding the same tree: a plain web server on Ferry's HLS
    // directory (first), and Ferry itself (second).
    let origin = start().await;
    let _publisher = publish_background(&origin.rtmp_url(KEY), 30);
    wait_for_master(origin.running.http_addr).await;
    let port = free_port();
    let mut web = tokio::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
            "--directory",
        ])
        .arg(origin.data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    wait_for("the web server", Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    let (edge, _data) = edge(|c| {
        c.edge.origins = vec![
            format!("http://127.0.0.1:{port}"),
            format!("http://{}", origin.running.http_addr),
        ];
    })
    .await;
    let url = format!("http://{}/hls/{STREAM}/master.m3u8", edge.http_addr);
    let p = play(&url, 14, || async {
        tokio::time::sleep(Duration::from_secs(4)).await;
        web.start_kill().unwrap();
    })
    .await;
    println!("first origin killed 4 s into playback: {}", p.summary);
    let metrics = http_get(edge.http_addr, "/metrics").await;
    let second: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("ferry_edge_origin_fetches_total")
                && l.contains(&origin.running.http_addr.to_string())
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        second > 0.0,
        "the second origin was never asked:\n{metrics}"
    );
    assert!(p.played > 10.0, "playback did not go on: {}", p.summary);
    assert!(p.max_stall_ms < 1000.0, "stalled {} ms", p.max_stall_ms);
    edge.shutdown().await;
    origin.running.shutdown().await;
}
