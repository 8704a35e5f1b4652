//! hls.js in headless Chromium (tests/ui/play.cjs) playing a URL, with the
//! time played and the longest stall.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

/// What play.cjs reported.
pub struct Playback {
    pub played: f64,
    pub max_stall_ms: f64,
    /// Ingest-to-display latency, median and 95th percentile (ms; -1 when
    /// the playlist had no EXT-X-PROGRAM-DATE-TIME).
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    pub summary: String,
}

/// Plays `url` for `seconds`; `on_playing` runs once playback has started
/// (with the time since then, for the caller to act mid-playback).
pub async fn play<F, Fut>(url: &str, seconds: u32, on_playing: F) -> Playback
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    play_with(url, seconds, false, on_playing).await
}

/// [`play`], with hls.js in `lowLatencyMode` when `low_latency`.
pub async fn play_with<F, Fut>(
    url: &str,
    seconds: u32,
    low_latency: bool,
    on_playing: F,
) -> Playback
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    play_checked(url, seconds, low_latency, true, on_playing).await
}

/// [`play_with`]; hls.js errors fail the test only when `strict` (a soak
/// counts them instead).
pub async fn play_checked<F, Fut>(
    url: &str,
    seconds: u32,
    low_latency: bool,
    strict: bool,
    on_playing: F,
) -> Playback
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = tokio::process::Command::new("node")
        .arg(root.join("tests/ui/play.cjs"))
        .env("PLAY_URL", url)
        .env("SECONDS", seconds.to_string())
        .env("LOW_LATENCY", if low_latency { "1" } else { "0" })
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (scripts/setup.sh installs it)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut on_playing = Some(on_playing);
    let mut summary = None;
    let mut log = String::new();
    let limit = Duration::from_secs(u64::from(seconds) + 60);
    tokio::time::timeout(limit, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line == "playing"
                && let Some(f) = on_playing.take()
            {
                f().await;
            }
            if let Some(s) = line.strip_prefix("summary ") {
                summary = Some(s.to_owned());
            }
            log.push_str(&line);
            log.push('\n');
        }
    })
    .await
    .expect("the player timed out");
    let status = child.wait().await.unwrap();
    let summary = summary.unwrap_or_else(|| panic!("no summary ({status}):\n{log}"));
    let field = |name: &str| -> f64 {
        let at = summary.find(&format!("\"{name}\":")).unwrap() + name.len() + 3;
        summary[at..]
            .split([',', '}'])
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let playback = Playback {
        played: field("played"),
        max_stall_ms: field("max_stall_ms"),
        latency_p50_ms: field("latency_p50_ms"),
        latency_p95_ms: field("latency_p95_ms"),
        summary,
    };
    assert!(
        !strict
            || (playback.summary.contains("\"fatal\":[]")
                && playback.summary.contains("\"errors\":[]")),
        "player errors: {}",
        playback.summary
    );
    playback
}
