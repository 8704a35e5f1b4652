//! Schemathesis (property-based, from the OpenAPI document) against the real
//! API: thousands of generated requests, valid and not, with and without
//! stateful sequences; no response may be a server error.

use crate::common;

use std::time::Duration;

use common::*;

fn schemathesis() -> String {
    let venv = std::path::Path::new(&std::env::var("HOME").unwrap())
        .join(".local/share/ferry-tools/bin/st");
    if venv.exists() {
        return venv.display().to_string();
    }
    "st".into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_never_get_a_server_error() {
    let server = start().await;
    let http = server.running.http_addr;
    // Schemathesis keeps a cache in its working directory.
    let cwd = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(schemathesis())
        .current_dir(cwd.path())
        .arg("run")
        .arg(format!("http://{http}/api/v1/openapi.json"))
        .args(["--url", &format!("http://{http}/api/v1")])
        .args(["-H", &format!("Authorization: Bearer {ADMIN}")])
        .args(["--checks", "not_a_server_error", "-n", "40", "--seed", "1"])
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("schemathesis timed out")
        .expect("schemathesis runs (scripts/setup.sh installs it)");
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{log}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tested = log
        .lines()
        .find(|l| l.contains(" generated, "))
        .unwrap_or_default()
        .to_owned();
    eprintln!("schemathesis: {tested}");
    assert!(tested.contains("passed"), "{log}");
}
