//! The `ferry` binary as a newcomer runs it: embedded defaults, a generated key that
//! survives a restart, config errors that name the bad key, clean shutdown on ctrl-c.

use crate::common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Ferry {
    child: Child,
    rtmp: u16,
    http: u16,
}

impl Ferry {
    fn spawn(data_dir: &Path, extra: &[&str]) -> Ferry {
        let (rtmp, http) = (free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--rtmp-listen", &format!("127.0.0.1:{rtmp}")])
            .args(["--http-listen", &format!("127.0.0.1:{http}")])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let f = Ferry { child, rtmp, http };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", http)).is_err() {
            assert!(Instant::now() < deadline, "ferry serve did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        f
    }

    /// Sends SIGINT (what ctrl-c does) and returns (exit success, log output).
    fn interrupt(self) -> (bool, String) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let out = self.child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), log)
    }
}

fn stored_key(data_dir: &Path) -> String {
    let text = std::fs::read_to_string(data_dir.join("streams.toml")).unwrap();
    let value: toml::Value = toml::from_str(&text).unwrap();
    value["streams"][0]["key"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn serve_on_defaults_generates_a_key_that_survives_restart() {
    let data = tempfile::tempdir().unwrap();
    let ferry = Ferry::spawn(data.path(), &[]);
    let key = stored_key(data.path());
    let url = format!("rtmp://127.0.0.1:{}/live/{key}", ferry.rtmp);
    let (ok, err) = publish_file(&url, &sample("h264-aac-240p25.flv")).await;
    assert!(ok, "publishing with the generated key failed: {err}");
    let metrics = http_get(([127, 0, 0, 1], ferry.http).into(), "/metrics").await;
    assert!(
        metrics.contains("ferry_rtmp_connections_accepted_total 1"),
        "{metrics}"
    );
    let (ok, log) = ferry.interrupt();
    assert!(ok, "ferry did not exit cleanly on SIGINT:\n{log}");
    assert!(log.contains("created stream \"demo\""), "{log}");
    assert!(!log.contains(&key), "the key was logged:\n{log}");

    let ferry = Ferry::spawn(data.path(), &[]);
    assert_eq!(
        stored_key(data.path()),
        key,
        "the key changed across a restart"
    );
    let url = format!("rtmp://127.0.0.1:{}/live/{key}", ferry.rtmp);
    let (ok, err) = publish_file(&url, &sample("aac-only.flv")).await;
    assert!(ok, "the same key must work after a restart: {err}");
    let (ok, log) = ferry.interrupt();
    assert!(ok);
    assert!(
        !log.contains("created stream"),
        "a second key was generated:\n{log}"
    );
    assert!(!log.contains(&key), "the key was logged:\n{log}");
}

#[test]
fn unknown_config_key_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ferry.toml");
    std::fs::write(&file, "[rtmp]\nlisen = \"0.0.0.0:1935\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lisen"),
        "the error does not name the key: {err}"
    );
}

#[test]
fn environment_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ferry.toml");
    std::fs::write(&file, "[rtmp]\napp = \"fromfile\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["config", "--config"])
        .arg(&file)
        .env("FERRY_RTMP__APP", "fromenv")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: toml::Value = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(printed["rtmp"]["app"].as_str(), Some("fromenv"));
    let bad = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["config"])
        .env("FERRY_RTMP__NOPE", "1")
        .output()
        .unwrap();
    assert!(
        !bad.status.success(),
        "an unknown FERRY_ variable must be refused"
    );
}
