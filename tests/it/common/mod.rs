//! Shared test helpers: a Ferry server in-process, the real ffmpeg tools, and the
//! generated test media.

#![allow(missing_docs)]

pub mod cluster;
pub mod nginx;
pub mod player;
pub mod postgres;
pub mod s3;
pub mod test_origin;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use ferry::config::{Config, StreamConfig};
use ferry::serve::Running;

pub const KEY: &str = "k3y-for-tests";
pub const STREAM: &str = "demo";
pub const ADMIN: &str = "admin-token-for-tests";

/// The ffmpeg binary (override with FFMPEG).
pub fn ffmpeg() -> String {
    std::env::var("FFMPEG").unwrap_or_else(|_| "ffmpeg".into())
}

/// The ffprobe binary (override with FFPROBE).
pub fn ffprobe() -> String {
    std::env::var("FFPROBE").unwrap_or_else(|_| "ffprobe".into())
}

/// The test streams from scripts/make-test-media.sh, generated once per machine.
pub fn media_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = root.join("target").join("test-media");
        if dir.join("h264-aac-240p25.flv").exists() {
            return dir;
        }
        // Generate into a private directory and rename, so parallel test processes never
        // see half-written files.
        let tmp = root
            .join("target")
            .join(format!("test-media.tmp.{}", std::process::id()));
        let status = std::process::Command::new("bash")
            .arg(root.join("scripts/make-test-media.sh"))
            .arg(&tmp)
            .arg("4")
            .status()
            .expect("bash runs");
        assert!(status.success(), "make-test-media.sh failed");
        if std::fs::rename(&tmp, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        dir
    })
}

pub fn sample(name: &str) -> PathBuf {
    media_dir().join(name)
}

pub struct TestServer {
    pub running: Running,
    pub data: tempfile::TempDir,
}

impl TestServer {
    pub fn rtmp_url(&self, name: &str) -> String {
        format!("rtmp://{}/live/{}", self.running.rtmp_addr, name)
    }

    pub async fn metrics(&self) -> String {
        http_get(self.running.http_addr, "/metrics").await
    }

    /// One metric's value from /metrics.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == name).then(|| v.parse().ok()).flatten()
            })
            .unwrap_or_else(|| panic!("metric {name} missing in:\n{text}"))
    }
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

/// A server whose control state is in PostgreSQL at `database_url`, or in
/// SQLite when `None`.
pub async fn start_on(database_url: Option<&str>) -> TestServer {
    start_with(|c| c.control.database_url = database_url.unwrap_or_default().to_owned()).await
}

pub async fn start_with(edit: impl FnOnce(&mut Config)) -> TestServer {
    let data = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: data.path().to_owned(),
        streams: vec![StreamConfig {
            name: STREAM.into(),
            key: KEY.into(),
            settings: Default::default(),
        }],
        ..Config::default()
    };
    config.rtmp.listen = "127.0.0.1:0".parse().unwrap();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.admin_token = ADMIN.into();
    edit(&mut config);
    let running = ferry::serve::start(&config).await.unwrap();
    TestServer { running, data }
}

/// An HTTP client for tests that need many connections at once: no proxy
/// from the environment, up to 1024 idle connections per host.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1024)
        .build()
        .unwrap()
}

/// A minimal HTTP/1.0 GET, so tests depend on no HTTP client crate.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// Reads until the peer closes (or resets): how long that took and what
/// came; fails if it is still open after `limit`.
pub async fn until_closed(s: &mut tokio::net::TcpStream, limit: Duration) -> (Duration, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    let r = tokio::time::timeout(limit, async {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(r.is_ok(), "connection still open after {limit:?}");
    (started.elapsed(), got)
}

/// A GET returning status, lower-cased headers and the raw body.
pub async fn get_bytes(
    addr: std::net::SocketAddr,
    path: &str,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

/// Runs ffmpeg with `args` and returns (success, stderr).
pub async fn run_ffmpeg(args: &[&str], limit: Duration) -> (bool, String) {
    let child = tokio::process::Command::new(ffmpeg())
        .args(["-nostdin", "-hide_banner", "-loglevel", "error"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg runs");
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(out)) => (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Ok(Err(e)) => (false, e.to_string()),
        Err(_) => (false, "timed out".into()),
    }
}

/// Publishes `file` in real time with `ffmpeg -re -c copy -f flv`.
pub async fn publish_file(url: &str, file: &Path) -> (bool, String) {
    publish_looped(url, file, 0).await
}

/// Publishes `file` in real time, `loops` extra times back to back (timestamps continue).
pub async fn publish_looped(url: &str, file: &Path, loops: u32) -> (bool, String) {
    let file = file.to_str().unwrap();
    let loops = loops.to_string();
    let args = [
        "-re",
        "-stream_loop",
        &loops,
        "-i",
        file,
        "-c",
        "copy",
        "-f",
        "flv",
        url,
    ];
    run_ffmpeg(&args, Duration::from_secs(90)).await
}

/// Starts `ffmpeg` playing `url` into the FLV file `out`; it ends when the
/// publisher leaves (UnpublishNotify).
pub fn spawn_player(url: &str, out: &Path) -> tokio::process::Child {
    tokio::process::Command::new(ffmpeg())
        .args([
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            url,
            "-c",
            "copy",
            "-f",
            "flv",
        ])
        .arg(out)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg runs")
}

/// Reads a whole HLS presentation as a player would; returns (success, errors).
pub async fn read_hls(http: std::net::SocketAddr, stream: &str) -> (bool, String) {
    let url = format!("http://{http}/hls/{stream}/master.m3u8");
    run_ffmpeg(
        &["-i", &url, "-c", "copy", "-f", "null", "-"],
        Duration::from_secs(30),
    )
    .await
}

/// What ffprobe says of `target`'s streams: `entries` (e.g.
/// `codec_name,width,height`) as CSV lines, one per stream.
pub fn probe_streams(target: &str, entries: &str) -> String {
    let out = std::process::Command::new(ffprobe())
        .args(["-v", "error", "-show_entries"])
        .arg(format!("stream={entries}"))
        .args(["-of", "csv=p=0", target])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The sequence number in a segment name: `12` of `SESSION-12.ts` (or `12.ts`).
pub fn segment_number(name: &str) -> Option<u64> {
    let stem = name
        .strip_suffix(".ts")
        .or_else(|| name.strip_suffix(".m4s"))?;
    stem.rsplit('-').next()?.parse().ok()
}

/// Sequence numbers of the `.ts` segments stored as files in `dir` (empty if none).
pub fn stored_segments(dir: &Path) -> Vec<u64> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| {
                let name = e.ok()?.file_name();
                let name = name.to_str()?;
                name.ends_with(".ts").then(|| segment_number(name))?
            })
            .collect()
        })
        .unwrap_or_default()
}

/// One packet as ffprobe sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Probed {
    pub video: bool,
    pub pts: i64,
    pub dts: i64,
    pub key: bool,
}

pub fn probe_packets(file: &Path) -> Vec<Probed> {
    let out = std::process::Command::new(ffprobe())
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=codec_type,pts,dts,flags",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "ffprobe failed on {}", file.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            if f.len() < 4 {
                return None;
            }
            Some(Probed {
                video: f[0] == "video",
                pts: f[1].parse().ok()?,
                dts: f[2].parse().ok()?,
                key: f[3].starts_with('K'),
            })
        })
        .collect()
}

/// Waits until `cond` holds, polling; panics with `what` after `limit`.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A structurally valid avcC (one SPS, one PPS) for synthetic publishers.
pub const AVCC: &[u8] = &[
    0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1f, 0x01, 0x00, 0x02, 0x68,
    0xeb,
];
/// AAC-LC, 48 kHz, stereo.
pub const ASC: &[u8] = &[0x11, 0x90];

pub fn video_sequence_header() -> bytes::Bytes {
    let mut b = rtmp::flv::video_header(true, true, 0).to_vec();
    b.extend_from_slice(AVCC);
    b.into()
}

pub fn audio_sequence_header() -> bytes::Bytes {
    let mut b = rtmp::flv::audio_header(true).to_vec();
    b.extend_from_slice(ASC);
    b.into()
}

/// A video tag body whose payload encodes its index, so receivers can check it.
pub fn video_frame(keyframe: bool, index: u32, size: usize) -> bytes::Bytes {
    let mut b = rtmp::flv::video_header(keyframe, false, 0).to_vec();
    b.extend_from_slice(&index.to_be_bytes());
    b.resize(5 + size.max(4), 0xab);
    b.into()
}

/// Connects a synthetic publisher and sends both sequence headers.
pub async fn synthetic_publisher(addr: std::net::SocketAddr) -> rtmp::Client {
    let mut c = rtmp::Client::connect(addr, "live").await.unwrap();
    c.publish(KEY).await.unwrap();
    c.send_video(0, &video_sequence_header()).await.unwrap();
    c.send_audio(0, &audio_sequence_header()).await.unwrap();
    c
}

/// Parses a received video tag: (keyframe, is_sequence_header, frame index if any).
pub fn read_video(body: &[u8]) -> (bool, bool, Option<u32>) {
    let key = body[0] >> 4 == 1;
    let seq = body[1] == 0;
    let index =
        (!seq && body.len() >= 9).then(|| u32::from_be_bytes([body[5], body[6], body[7], body[8]]));
    (key, seq, index)
}

/// The tags of an FLV file: (type, timestamp ms, body). For tests that publish
/// real media faster than real time with [`rtmp::Client`].
pub fn flv_tags(file: &Path) -> Vec<(u8, u32, bytes::Bytes)> {
    rtmp::flv_file::FlvFile::read_path(file)
        .unwrap()
        .into_iter()
        .map(|t| (t.kind, t.timestamp, t.body))
        .collect()
}

/// Publishes `tags` (audio and video) as fast as the connection takes them.
pub async fn publish_tags(client: &mut rtmp::Client, tags: &[(u8, u32, bytes::Bytes)]) {
    for (kind, ts, body) in tags {
        match kind {
            8 => client.send_audio(*ts, body).await.unwrap(),
            9 => client.send_video(*ts, body).await.unwrap(),
            _ => {}
        }
    }
}

/// One API request over HTTP/1.0: (status, JSON body or Null).
pub async fn api(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} /api/v1{path} HTTP/1.0\r\nHost: x\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or_default());
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// A port free on loopback now (for servers that must come back on the same one).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A receiving Ferry on RTMP `port` with one stream `mirror`, key `mirrorkey`.
pub async fn receiver(port: u16) -> TestServer {
    start_with(|c| {
        c.rtmp.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        c.hls.enabled = false;
        c.streams = vec![StreamConfig {
            name: "mirror".into(),
            key: "mirrorkey".into(),
            settings: Default::default(),
        }];
    })
    .await
}

/// Publishes the 720p sample in real time, `loops` extra times, in the
/// background (killed when dropped); for tests that act while it is live.
pub fn publish_background(url: &str, loops: u32) -> tokio::process::Child {
    tokio::process::Command::new(ffmpeg())
        .args([
            "-nostdin",
            "-loglevel",
            "error",
            "-re",
            "-stream_loop",
            &loops.to_string(),
            "-i",
        ])
        .arg(sample("h264-aac-720p30.flv"))
        .args(["-c", "copy", "-f", "flv", url])
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg runs")
}

/// Adds a restream task to `stream` of the control plane at `http`; its id.
pub async fn add_restream_task(http: std::net::SocketAddr, stream: &str, target: &str) -> i64 {
    let body = serde_json::json!({"kind": "restream", "config": {"url": target}}).to_string();
    let (status, task) = api(
        http,
        "POST",
        &format!("/streams/{stream}/tasks"),
        Some(ADMIN),
        Some(&body),
    )
    .await;
    assert_eq!(status, 201, "{task}");
    task["id"].as_i64().unwrap()
}

/// Makes a `node` token (for workers and origins) at the control plane at
/// `http`: (its id, the token).
pub async fn node_token(http: std::net::SocketAddr) -> (i64, String) {
    let (status, made) = api(
        http,
        "POST",
        "/tokens",
        Some(ADMIN),
        Some(r#"{"role":"node"}"#),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    (
        made["id"].as_i64().unwrap(),
        made["token"].as_str().unwrap().to_owned(),
    )
}

/// A TCP connection to `addr` that has done the RTMP handshake, raw.
pub async fn handshaken(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut out = bytes::BytesMut::new();
    let mut hs = rtmp::handshake::ClientHandshake::start(&mut out);
    s.write_all(&out).await.unwrap();
    let mut input = bytes::BytesMut::new();
    let mut c2 = bytes::BytesMut::new();
    while !hs.feed(&mut input, &mut c2).unwrap() {
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "server closed during handshake");
        input.extend_from_slice(&buf[..n]);
    }
    s.write_all(&c2).await.unwrap();
    s
}

/// Reads until the server closes; panics if it keeps the connection open.
pub async fn assert_closed_by_server(mut s: tokio::net::TcpStream, what: &str) {
    use tokio::io::AsyncReadExt;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 65536];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "{what}: connection left open");
}

/// One AMF0 command message on chunk stream 3, as bytes.
pub fn command(body: &[u8], stream_id: u32) -> bytes::BytesMut {
    let mut out = bytes::BytesMut::new();
    rtmp::chunk::ChunkEncoder::new().write(
        &mut out,
        3,
        0,
        rtmp::message::type_id::COMMAND_AMF0,
        stream_id,
        body,
    );
    out
}

/// Where browser tests keep their screenshots (made if missing).
pub fn ui_artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the browser script `tests/ui/{script}` with node and `envs`, within
/// `limit`; asserts it succeeded and printed `ok_line`, and returns its
/// output (stdout then stderr).
pub async fn run_ui_script(
    script: &str,
    envs: &[(&str, String)],
    limit: Duration,
    ok_line: &str,
) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(root.join("tests/ui").join(script))
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("the browser test {script} timed out"))
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && log.contains(ok_line),
        "browser test {script} failed (screenshots in {}):\n{log}",
        ui_artifacts().display()
    );
    log
}

/// The resident memory of process `pid` (KiB), if it is still there.
pub fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
}
