//! HLS latency: publishes a recorded FLV file in real time over RTMP and measures,
//! for every segment, the time from sending the keyframe that closes it (the
//! packager cannot close a segment earlier) to the media playlist naming it being
//! readable over HTTP.
//!
//! usage: hls-latency RTMP_ADDR HTTP_ADDR KEY STREAM FILE.flv

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hls_package::for_each_tag;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn playlist(http: SocketAddr, path: &str) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(http).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let ok = text
        .lines()
        .next()
        .is_some_and(|l| l.split(' ').nth(1) == Some("200"));
    ok.then_some(text)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, rtmp_addr, http_addr, key, stream, file] = &args[..] else {
        bail!("usage: hls-latency RTMP_ADDR HTTP_ADDR KEY STREAM FILE.flv");
    };
    let rtmp_addr: SocketAddr = rtmp_addr.parse().context("RTMP_ADDR")?;
    let http: SocketAddr = http_addr.parse().context("HTTP_ADDR")?;
    let mut tags = Vec::new();
    for_each_tag(file, |kind, ts, body| {
        tags.push((kind, ts, body));
        Ok(())
    })?;

    // Segment N is closed by the (N+1)th keyframe; remember when each went out.
    let closed_at: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let seen_at: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (seen_at, done) = (seen_at.clone(), done.clone());
        let path = format!("/hls/{stream}/source/index.m3u8");
        tokio::spawn(async move {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(text) = playlist(http, &path).await {
                    let now = Instant::now();
                    let mut seen = seen_at.lock().unwrap_or_else(|e| e.into_inner());
                    for n in text
                        .lines()
                        .filter_map(|l| l.strip_suffix(".ts")?.parse::<u64>().ok())
                    {
                        seen.entry(n).or_insert(now);
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };

    let mut client = rtmp::Client::connect(rtmp_addr, "live").await?;
    client.publish(key).await?;
    let start = Instant::now();
    let mut keyframes = 0u64;
    for (kind, ts, body) in &tags {
        tokio::time::sleep_until((start + Duration::from_millis(*ts as u64)).into()).await;
        match kind {
            9 => {
                client.send_video(*ts as u32, body).await?;
                let is_key_frame = body.len() > 1 && body[0] >> 4 == 1 && body[1] == 1;
                if is_key_frame {
                    if keyframes > 0 {
                        closed_at
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(keyframes - 1, Instant::now());
                    }
                    keyframes += 1;
                }
            }
            8 => client.send_audio(*ts as u32, body).await?,
            _ => {}
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    poller.await?;
    client.unpublish().await?;

    let closed = closed_at.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let seen = seen_at.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut ms: Vec<f64> = closed
        .iter()
        .filter_map(|(n, t)| {
            Some(seen.get(n)?.saturating_duration_since(*t).as_secs_f64() * 1000.0)
        })
        .collect();
    if ms.is_empty() {
        bail!("no segment was seen in the playlist");
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "segments={} latency_ms_median={:.1} latency_ms_p99={:.1} latency_ms_max={:.1}",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms[ms.len() - 1]
    );
    Ok(())
}
