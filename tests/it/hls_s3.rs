//! The HLS origin on a real S3-compatible server (s3s-fs, installed by
//! scripts/setup.sh) over HTTP on loopback, including the server going away.

use crate::common;

use std::time::Duration;

use common::s3::S3Server;
use common::*;
use ferry::config::StoreKind;
use origin_store::{OriginStore, S3Config};

/// A Ferry whose HLS origin is the bucket `s3`, with `edit` applied after.
async fn server_on(s3: &S3Config, edit: impl FnOnce(&mut ferry::config::Config)) -> TestServer {
    let s3 = s3.clone();
    start_with(move |c| {
        c.store.kind = StoreKind::S3;
        c.store.s3_endpoint = s3.endpoint;
        c.store.s3_bucket = s3.bucket;
        c.store.s3_region = s3.region;
        c.store.s3_access_key_id = s3.access_key_id;
        c.store.s3_secret_access_key = s3.secret_access_key;
        edit(c);
    })
    .await
}

async fn playlist_text(addr: std::net::SocketAddr) -> Option<String> {
    let (status, _, body) = get_bytes(addr, &format!("/hls/{STREAM}/source/index.m3u8")).await;
    let body = String::from_utf8_lossy(&body).into_owned();
    assert!(
        status != 200 || body.starts_with("#EXTM3U"),
        "not a playlist: {body:?}"
    );
    (status == 200).then_some(body)
}

async fn wait_for_endlist(addr: std::net::SocketAddr) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(t) = playlist_text(addr).await
            && t.contains("#EXT-X-ENDLIST")
        {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "playlist never ended"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn listed_segments(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.ends_with(".ts"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_origin_stores_typed_objects_and_deletes_expired_ones() {
    let s3 = S3Server::new();
    let server = server_on(&s3.config(), |c| c.hls.window = 2).await;
    let file = sample("h264-aac-720p30.flv");
    let (ok, err) = publish_looped(&server.rtmp_url(KEY), &file, 3).await;
    assert!(ok, "{err}");
    let text = wait_for_endlist(server.running.http_addr).await;
    let listed = listed_segments(&text);
    assert_eq!(listed.len(), 2, "{text}");

    // Objects straight from the bucket, with the headers stored on them.
    let store = OriginStore::s3(&s3.config()).unwrap();
    for name in &listed {
        let (body, headers) = store
            .get_with_headers(&format!("{STREAM}/source/{name}"))
            .await
            .unwrap();
        assert!(
            body.len() % 188 == 0 && body[0] == 0x47,
            "{name} is MPEG-TS"
        );
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "ContentType" && v == "video/mp2t"),
            "{name}: {headers:?}"
        );
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "CacheControl" && v.contains("immutable")),
            "{name}: {headers:?}"
        );
    }
    let (_, headers) = store
        .get_with_headers(&format!("{STREAM}/source/index.m3u8"))
        .await
        .unwrap();
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "ContentType" && v == "application/vnd.apple.mpegurl"),
        "{headers:?}"
    );

    // Expired segments are gone from the bucket: the window plus one window of grace.
    let stored = s3.stored_segments();
    assert!(
        stored.len() <= 4 && !stored.contains(&0),
        "stored after expiry: {stored:?}"
    );
    let (ok, err) = read_hls(server.running.http_addr, STREAM).await;
    assert!(ok && err.trim().is_empty(), "{err}");
}

/// Publishes 20 s while the store goes away for 10 s after 4 s, with an RTMP
/// player attached; returns the final playlist and the segments lost.
async fn outage(queue_segments: usize) -> (String, f64) {
    let s3 = S3Server::new();
    let server = server_on(&s3.config(), |c| {
        c.hls.window = 20;
        c.hls.upload_queue_segments = queue_segments;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let recorded = dir.path().join("rtmp.flv");
    let player = spawn_player(&server.rtmp_url(STREAM), &recorded);
    wait_for("player", Duration::from_secs(10), || async {
        server.metric("ferry_rtmp_players").await == 1.0
    })
    .await;
    let file = sample("h264-aac-720p30.flv");
    let url = server.rtmp_url(KEY);
    let publisher = tokio::spawn(async move { publish_looped(&url, &file, 4).await });
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (port, root) = s3.stop();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let s3 = S3Server::start(port, root);
    let (ok, err) = publisher.await.unwrap();
    assert!(ok, "the publisher was disturbed by the outage: {err}");

    let text = wait_for_endlist(server.running.http_addr).await;
    for name in listed_segments(&text) {
        let url = format!("/hls/{STREAM}/source/{name}");
        let (status, _, _) = get_bytes(server.running.http_addr, &url).await;
        assert_eq!(status, 200, "{name} is listed but not stored:\n{text}");
    }
    let (ok, err) = read_hls(server.running.http_addr, STREAM).await;
    assert!(ok, "{err}");

    let out = tokio::time::timeout(Duration::from_secs(15), player.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success());
    let got = probe_packets(&recorded);
    let source = probe_packets(&sample("h264-aac-720p30.flv"));
    assert_eq!(
        got.iter().filter(|p| p.video).count(),
        5 * source.iter().filter(|p| p.video).count(),
        "the RTMP player lost video during the store outage"
    );
    let lost = server.metric("ferry_hls_segments_lost_total").await;
    drop(s3);
    (text, lost)
}

/// A 10 s outage fits in the upload queue: when the store returns, the origin
/// catches up and the playlist lists every segment, with no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_is_caught_up_from_the_upload_queue() {
    let (text, lost) = outage(30).await;
    assert_eq!(lost, 0.0, "segments were lost:\n{text}");
    assert!(!text.contains("#EXT-X-DISCONTINUITY"), "{text}");
    let listed: Vec<u64> = listed_segments(&text)
        .iter()
        .map(|n| segment_number(n).unwrap())
        .collect();
    assert_eq!(
        listed,
        (0..listed.len() as u64).collect::<Vec<_>>(),
        "{text}"
    );
    assert!(listed.len() >= 9, "20 s in 2 s segments:\n{text}");
}

/// An outage longer than the queue: the oldest queued segments are dropped, the
/// playlist never names them, and the gap is marked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_beyond_the_queue_marks_the_gap() {
    let (text, lost) = outage(1).await;
    assert!(lost >= 1.0, "nothing was dropped with a 1-segment queue");
    assert!(
        text.contains("#EXT-X-DISCONTINUITY"),
        "the gap is not marked:\n{text}"
    );
}
