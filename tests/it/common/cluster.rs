//! Ferry processes on loopback for cluster tests (origins with a relay, RTMP
//! edges), an encoder feeding redundant origins through ffmpeg's tee muxer,
//! and RTMP players that record every video frame they get.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

/// A `ferry` process; killed when dropped.
pub struct Node {
    pub child: tokio::process::Child,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    pub data: tempfile::TempDir,
    args: Vec<String>,
    envs: Vec<(&'static str, String)>,
}

impl Node {
    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    pub fn pid(&self) -> i32 {
        self.child.id().unwrap() as i32
    }

    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    pub async fn metrics(&self) -> String {
        http_get(self.http, "/metrics").await
    }

    /// Sum of every sample of `name` (all label sets), 0 if absent.
    pub async fn metric_sum(&self, name: &str) -> f64 {
        metric_sum(&self.metrics().await, name)
    }

    /// Starts the process again (same ports, same data directory) after it
    /// was killed.
    pub async fn restart(&mut self) {
        let _ = self.child.kill().await;
        self.child = spawn(&self.args, &self.data, &self.envs);
        wait_healthy(self).await;
    }

    /// The log the process wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("log")).unwrap_or_default()
    }
}

pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn spawn(
    args: &[String],
    data: &tempfile::TempDir,
    envs: &[(&str, String)],
) -> tokio::process::Child {
    let log = std::fs::File::create(data.path().join("log")).unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(args)
        .env("FERRY_LOG", "info,relay=debug")
        .env("FERRY_ADMIN_TOKEN", ADMIN)
        // Edges without a control plane pin what the origins' HTTP URLs
        // hand out (the relay test that pins through control overrides it).
        .env("FERRY_RELAY__TRUST_HTTP", "true")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Both listeners accept (HTTP is bound first, RTMP a moment later); a
/// `ferry control` or `ferry director` has HTTP only.
async fn wait_healthy(node: &Node) {
    let rtmp = node
        .args
        .first()
        .is_none_or(|role| role != "control" && role != "director");
    wait_for("the node to listen", Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(node.http).await.is_ok()
            && (!rtmp || tokio::net::TcpStream::connect(node.rtmp).await.is_ok())
    })
    .await;
}

/// `ferry control` with its state in the PostgreSQL at `database_url`.
pub async fn control_node(database_url: &str) -> Node {
    let envs = [("FERRY_CONTROL__DATABASE_URL", database_url.to_owned())];
    start_node(&envs, |_| vec!["control".into()]).await
}

/// `ferry serve` with a relay, HLS on, one stream `demo` with key [`KEY`].
pub async fn origin() -> Node {
    origin_with(&[]).await
}

pub async fn origin_with(envs: &[(&'static str, String)]) -> Node {
    start_node(envs, |data| {
        let config = data.join("ferry.toml");
        std::fs::write(
            &config,
            format!(
                "[relay]\nlisten = \"127.0.0.1:0\"\n[control]\nlocal_worker = false\n\
                 [[streams]]\nname = \"{STREAM}\"\nkey = \"{KEY}\"\n"
            ),
        )
        .unwrap();
        vec![
            "serve".into(),
            "--config".into(),
            config.display().to_string(),
        ]
    })
    .await
}

/// `ferry edge` serving RTMP players, pulling from `origins` in order.
pub async fn rtmp_edge(origins: &[String], envs: &[(&'static str, String)]) -> Node {
    start_node(envs, |_| {
        vec!["edge".into(), "--origins".into(), origins.join(",")]
    })
    .await
}

/// `ferry edge` caching HLS from the origin at `origin`, reporting to the
/// control plane at `control` with the admin token: an edge that can be
/// SIGKILLed.
pub async fn hls_edge(origin: SocketAddr, control: SocketAddr) -> Node {
    hls_edge_of(origin, &format!("http://{control}")).await
}

/// [`hls_edge`] reporting to the control processes at `controls` (a
/// comma-separated URL list).
pub async fn hls_edge_of(origin: SocketAddr, controls: &str) -> Node {
    let envs = [
        ("FERRY_CONTROL__URL", controls.to_owned()),
        ("FERRY_ADMIN_TOKEN", ADMIN.to_owned()),
    ];
    start_node(&envs, |_| {
        vec![
            "edge".into(),
            "--origins".into(),
            format!("http://{origin}"),
        ]
    })
    .await
}

/// A `ferry` process with the arguments `role` gives (from its data
/// directory), on fresh loopback ports, once both its listeners accept.
pub async fn start_node(
    envs: &[(&'static str, String)],
    role: impl FnOnce(&std::path::Path) -> Vec<String>,
) -> Node {
    let data = tempfile::tempdir().unwrap();
    let rtmp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut args = role(data.path());
    args.extend([
        "--data-dir".into(),
        data.path().display().to_string(),
        "--rtmp-listen".into(),
        rtmp.to_string(),
        "--http-listen".into(),
        http.to_string(),
    ]);
    let child = spawn(&args, &data, envs);
    let node = Node {
        child,
        rtmp,
        http,
        data,
        args,
        envs: envs.to_vec(),
    };
    wait_healthy(&node).await;
    node
}

/// One ffmpeg reading the sample in real time and publishing it, copied, to
/// every URL through the tee muxer (an output that fails is dropped, the
/// others go on): the same encoder output on redundant origins.
pub fn publish_tee(urls: &[String], loops: u32) -> tokio::process::Child {
    let tee = urls
        .iter()
        .map(|u| format!("[f=flv:onfail=ignore]{u}"))
        .collect::<Vec<_>>()
        .join("|");
    tokio::process::Command::new(ffmpeg())
        .args(["-nostdin", "-loglevel", "error", "-re", "-stream_loop"])
        .arg(loops.to_string())
        .arg("-i")
        .arg(sample("h264-aac-720p30.flv"))
        .args(["-map", "0", "-c", "copy", "-f", "tee", &tee])
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg runs")
}

/// A video frame as a player received it.
#[derive(Clone, Copy, Debug)]
pub struct Got {
    pub at: Instant,
    pub timestamp: u32,
    pub len: usize,
}

/// An RTMP player that records every video frame it gets.
pub struct Watcher {
    pub frames: Arc<Mutex<Vec<Got>>>,
    pub ended: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    pub async fn start(addr: SocketAddr, stream: &str) -> Watcher {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let ended = Arc::new(Mutex::new(None));
        let (f, e) = (frames.clone(), ended.clone());
        let stream = stream.to_owned();
        let task = tokio::spawn(async move {
            let r: Result<(), rtmp::RtmpError> = async {
                let mut c = rtmp::Client::connect(addr, "live").await?;
                c.play(&stream).await?;
                loop {
                    if let rtmp::message::Message::Video { timestamp, data } = c.read().await? {
                        let (_, header, _) = read_video(&data);
                        if !header {
                            f.lock().unwrap().push(Got {
                                at: Instant::now(),
                                timestamp,
                                len: data.len(),
                            });
                        }
                    }
                }
            }
            .await;
            *e.lock().unwrap() = Some(format!("{r:?}"));
        });
        Watcher {
            frames,
            ended,
            task,
        }
    }

    pub fn count(&self) -> usize {
        self.frames.lock().unwrap().len()
    }

    pub fn frames(&self) -> Vec<Got> {
        self.frames.lock().unwrap().clone()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a player saw across a window.
#[derive(Debug)]
pub struct Seen {
    pub frames: usize,
    /// The longest wall-clock gap between two frames.
    pub longest_gap: Duration,
    /// Frames with a timestamp not after the previous one.
    pub not_monotonic: usize,
    /// Frames whose timestamp (and size) came before.
    pub duplicates: usize,
    /// Frames missing, from the timestamp steps (at the stream's frame rate).
    #[allow(dead_code)] // Printed with the rest (`{seen:?}`); a failover may drop a few.
    pub lost: usize,
}

pub fn seen(frames: &[Got], frame_ms: f64) -> Seen {
    let mut longest_gap = Duration::ZERO;
    let (mut not_monotonic, mut lost) = (0, 0);
    let mut stamps = std::collections::HashSet::new();
    let mut duplicates = 0;
    for w in frames.windows(2) {
        longest_gap = longest_gap.max(w[1].at.duration_since(w[0].at));
        if w[1].timestamp <= w[0].timestamp {
            not_monotonic += 1;
        } else {
            let step = f64::from(w[1].timestamp - w[0].timestamp);
            lost += ((step / frame_ms).round() as usize).saturating_sub(1);
        }
    }
    for f in frames {
        if !stamps.insert((f.timestamp, f.len)) {
            duplicates += 1;
        }
    }
    Seen {
        frames: frames.len(),
        longest_gap,
        not_monotonic,
        duplicates,
        lost,
    }
}
