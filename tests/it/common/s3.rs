//! An S3-compatible server (s3s-fs, installed by scripts/setup.sh) on loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use origin_store::S3Config;

use super::STREAM;

pub const BUCKET: &str = "hls";
pub const ACCESS: &str = "ferrytestaccess";
pub const SECRET: &str = "ferrytestsecretkey";

fn s3s_fs() -> PathBuf {
    if let Ok(p) = std::env::var("S3S_FS") {
        return p.into();
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let cargo_bin = Path::new(&home).join(".cargo/bin/s3s-fs");
    if cargo_bin.exists() {
        cargo_bin
    } else {
        "s3s-fs".into()
    }
}

pub struct S3Server {
    child: Child,
    pub port: u16,
    pub root: Option<tempfile::TempDir>,
}

impl S3Server {
    pub fn start(port: u16, root: tempfile::TempDir) -> S3Server {
        std::fs::create_dir_all(root.path().join(BUCKET)).unwrap();
        let child = Command::new(s3s_fs())
            .args([
                "--access-key",
                ACCESS,
                "--secret-key",
                SECRET,
                "--host",
                "127.0.0.1",
            ])
            .args(["--port", &port.to_string()])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs runs (scripts/setup.sh installs it)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        S3Server {
            child,
            port,
            root: Some(root),
        }
    }

    pub fn new() -> S3Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        S3Server::start(port, tempfile::tempdir().unwrap())
    }

    pub fn stop(mut self) -> (u16, tempfile::TempDir) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        (self.port, self.root.take().expect("root"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn config(&self) -> S3Config {
        S3Config {
            endpoint: format!("http://127.0.0.1:{}", self.port),
            bucket: BUCKET.into(),
            region: "us-east-1".into(),
            access_key_id: ACCESS.into(),
            secret_access_key: SECRET.into(),
        }
    }

    pub fn stored_segments(&self) -> Vec<u64> {
        let dir = self
            .root
            .as_ref()
            .expect("root")
            .path()
            .join(BUCKET)
            .join(STREAM)
            .join("source");
        super::stored_segments(&dir)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
