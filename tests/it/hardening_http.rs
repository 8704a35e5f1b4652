//! The HTTP listener against silent, slow and numerous clients: each one is
//! closed in bounded time, and a flood of them cannot starve RTMP ingest.

use crate::common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start_strict() -> TestServer {
    start_with(|c| {
        c.http.header_read_timeout_seconds = 1;
        c.http.idle_timeout_seconds = 2;
        c.http.max_connections = 20;
    })
    .await
}

#[tokio::test]
async fn slow_silent_and_idle_connections_are_closed() {
    let server = start_strict().await;
    let http = server.running.http_addr;

    // Half a request, then nothing (slow loris).
    let mut loris = TcpStream::connect(http).await.unwrap();
    loris
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Nothing at all.
    let mut silent = TcpStream::connect(http).await.unwrap();
    // One request on a keep-alive connection, then idle.
    let mut idle = TcpStream::connect(http).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();

    let (t, _) = until_closed(&mut loris, Duration::from_secs(5)).await;
    assert!(t < Duration::from_secs(3), "slow loris held {t:?}");
    let (t, _) = until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(t < Duration::from_secs(3), "silent client held {t:?}");
    let (_, got) = until_closed(&mut idle, Duration::from_secs(6)).await;
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "the keep-alive request was answered before the close"
    );
}

#[tokio::test]
async fn an_http_flood_does_not_stop_ingest_and_clears_itself() {
    let server = start_strict().await;
    let http = server.running.http_addr;
    let mut flood = Vec::new();
    for _ in 0..20 {
        flood.push(TcpStream::connect(http).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Over the cap: closed at once, without an answer.
    let mut extra = TcpStream::connect(http).await.unwrap();
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let (_, got) = until_closed(&mut extra, Duration::from_secs(2)).await;
    assert!(got.is_empty(), "answered over the cap");
    // RTMP ingest is untouched.
    let (ok, err) = publish_file(&server.rtmp_url(KEY), &sample("h264-aac-240p25.flv")).await;
    assert!(ok, "publish during the HTTP flood: {err}");
    // The flood is closed by the timeouts and HTTP answers again.
    wait_for("http answers again", Duration::from_secs(10), || async {
        let Ok(mut s) = TcpStream::connect(http).await else {
            return false;
        };
        if s.write_all(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")
            .await
            .is_err()
        {
            return false;
        }
        let mut got = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut got)).await;
        got.contains("ok")
    })
    .await;
    assert!(server.metric("ferry_http_connections_rejected_total").await >= 1.0);
    drop(flood);
}

/// The web UI cannot be framed by another site and runs no inline code.
#[tokio::test]
async fn the_ui_is_served_with_security_headers() {
    let server = start().await;
    let mut s = TcpStream::connect(server.running.http_addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).await.unwrap();
    let head = got.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    assert!(head.contains("x-frame-options: deny"), "{head}");
    assert!(head.contains("frame-ancestors 'none'"), "{head}");
    assert!(head.contains("script-src 'self'"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
}

/// The bounds added against hostile clients each have a metric an operator can
/// watch trip (the upload queue gauge was once documented but never registered).
#[tokio::test]
async fn every_new_bound_has_a_metric() {
    let server = start().await;
    let text = server.metrics().await;
    for name in [
        "ferry_hls_upload_queue",
        "ferry_hls_forced_cuts_total",
        "ferry_rtmp_bad_names_total",
        "ferry_rtmp_connections_rejected_address_total",
        "ferry_rtmp_player_wait_expired_total",
        "ferry_http_connections",
        "ferry_http_connections_rejected_total",
        "ferry_http_idle_closed_total",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} missing from /metrics"
        );
    }
}
