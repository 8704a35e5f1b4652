//! The web UI in a real browser: headless Chromium (Debian's) driven by
//! playwright-core from `ui/node_modules` (both installed by scripts/setup.sh)
//! runs `tests/ui/e2e.cjs` against a live `ferry serve`. The screenshot is kept
//! in `target/ui-artifacts/` as the test's artifact.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_creates_a_stream_sees_it_live_and_previews_it() {
    let server = start_with(|c| c.control.history_seconds = 1.0).await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let artifacts = root.join("target/ui-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("stream-live.png");
    let child = tokio::process::Command::new("node")
        .arg(root.join("tests/ui/e2e.cjs"))
        .env("FERRY_URL", format!("http://{}/", server.running.http_addr))
        .env("FERRY_TOKEN", ADMIN)
        .env("SAMPLE", sample("h264-aac-720p30.flv"))
        .env("SHOT", &shot)
        .env("FFMPEG", ffmpeg())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .expect("the browser test timed out")
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "browser test failed (screenshot: {}):\n{log}",
        shot.display()
    );
    assert!(log.contains("ui ok"), "{log}");
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "no screenshot"
    );
}
