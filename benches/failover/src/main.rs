//! Failover bench: two `ferry serve` origins fed the same tags by one
//! publisher (the same encoder output, as `ffmpeg -f tee` would send, but
//! reconnecting to an origin that comes back), one `ferry edge` pulling the
//! stream over the relay, RTMP players on the edge. The origin the edge pulls
//! from is killed over and over, alternating SIGKILL and SIGSTOP (a hung
//! node), and brought back; every time, the longest wall-clock gap between
//! video frames at any player is the stall. Also counts frames lost or
//! duplicated and players disconnected.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rtmp::Client;
use rtmp::flv_file::{FileTag, FlvFile, TAG_AUDIO, TAG_VIDEO};
use rtmp::message::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

#[derive(Parser)]
#[command(about = "Kills the origin an RTMP edge pulls from and measures the stall at its players")]
struct Args {
    /// The ferry binary.
    #[arg(long)]
    ferry: PathBuf,
    /// An FLV file (H.264 + AAC) the publisher sends in a loop, in real time.
    #[arg(long)]
    flv: PathBuf,
    /// Where the nodes keep their data and logs.
    #[arg(long)]
    work: PathBuf,
    /// Origin failures to cause.
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// Players on the edge.
    #[arg(long, default_value_t = 5)]
    players: usize,
    /// First of the loopback ports used (six in a row).
    #[arg(long, default_value_t = 27100)]
    port: u16,
}

const KEY: &str = "failoverkey";
const STREAM: &str = "bench";
/// How long after a failure the players are watched.
const WATCH: Duration = Duration::from_secs(3);

/// A tag of the recorded stream: FLV's own, with the reader's names.
type Tag = FileTag;

fn read_flv(path: &Path) -> anyhow::Result<Vec<Tag>> {
    let tags: Vec<Tag> = FlvFile::read_path(path)
        .with_context(|| path.display().to_string())?
        .into_iter()
        .filter(|t| t.kind == TAG_AUDIO || t.kind == TAG_VIDEO)
        .collect();
    anyhow::ensure!(!tags.is_empty(), "no audio or video tags");
    Ok(tags)
}

fn is_sequence_header(t: &Tag) -> bool {
    t.body.len() > 1 && t.body[1] == 0 && (t.kind == 9 || t.body[0] >> 4 == 10)
}

/// Keeps one origin fed with the shared tags, reconnecting whenever it can;
/// a stuck origin is dropped (writes time out) so it never holds the others.
async fn feed_origin(addr: SocketAddr, mut rx: mpsc::Receiver<Arc<Tag>>) {
    let mut headers: Vec<Arc<Tag>> = Vec::new();
    let mut conn: Option<Client> = None;
    let mut retry_at = Instant::now();
    while let Some(tag) = rx.recv().await {
        if is_sequence_header(&tag) {
            headers.retain(|h| h.kind != tag.kind);
            headers.push(tag.clone());
        }
        if conn.is_none() && Instant::now() >= retry_at {
            retry_at = Instant::now() + Duration::from_millis(300);
            let c = async {
                let mut c = Client::connect(addr, "live").await?;
                c.publish(KEY).await?;
                for h in &headers {
                    send(&mut c, h).await?;
                }
                Ok::<_, rtmp::RtmpError>(c)
            };
            if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_millis(500), c).await {
                conn = Some(c);
            }
        }
        if let Some(c) = conn.as_mut() {
            let sent = tokio::time::timeout(Duration::from_millis(300), send(c, &tag)).await;
            if !matches!(sent, Ok(Ok(()))) {
                conn = None;
            }
        }
    }
}

async fn send(c: &mut Client, t: &Tag) -> Result<(), rtmp::RtmpError> {
    if t.kind == 9 {
        c.send_video(t.timestamp, &t.body).await
    } else {
        c.send_audio(t.timestamp, &t.body).await
    }
}

/// Sends the tags in real time, looped, to every origin's feeder.
fn publish(tags: Vec<Tag>, origins: Vec<SocketAddr>) {
    let tags: Vec<Arc<Tag>> = tags.into_iter().map(Arc::new).collect();
    // A loop starts one video frame after the last one (no seam that would
    // look like a lost frame at the players).
    let video: Vec<u32> = tags
        .iter()
        .filter(|t| t.kind == 9 && !is_sequence_header(t))
        .map(|t| t.timestamp)
        .collect();
    let step = match (video.first(), video.last()) {
        (Some(a), Some(b)) if video.len() > 1 => (b - a) / (video.len() as u32 - 1),
        _ => 33,
    };
    let span = match (video.first(), video.last()) {
        (Some(a), Some(b)) => b - a + step,
        _ => tags.last().map_or(0, |t| t.timestamp) + step,
    };
    let senders: Vec<_> = origins
        .into_iter()
        .map(|addr| {
            let (tx, rx) = mpsc::channel(4096);
            tokio::spawn(feed_origin(addr, rx));
            tx
        })
        .collect();
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        for round in 0u32.. {
            for t in &tags {
                if round > 0 && is_sequence_header(t) {
                    continue;
                }
                let ts = t.timestamp + round * span;
                tokio::time::sleep_until(start + Duration::from_millis(u64::from(ts))).await;
                let tag = Arc::new(Tag {
                    kind: t.kind,
                    timestamp: ts,
                    body: t.body.clone(),
                });
                for s in &senders {
                    let _ = s.try_send(tag.clone());
                }
            }
        }
    });
}

struct Node {
    args: Vec<String>,
    child: tokio::process::Child,
    http: SocketAddr,
    log: PathBuf,
}

impl Node {
    fn spawn(
        ferry: &Path,
        args: Vec<String>,
        http: SocketAddr,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let child = start(ferry, &args, &log)?;
        Ok(Self {
            args,
            child,
            http,
            log,
        })
    }

    fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    fn signal(&self, sig: &str) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args([format!("-{sig}"), pid.to_string()])
                .status();
        }
    }

    async fn restart(&mut self, ferry: &Path) -> anyhow::Result<()> {
        let _ = self.child.kill().await;
        self.child = start(ferry, &self.args, &self.log)?;
        wait_listening(self.http).await
    }
}

fn start(ferry: &Path, args: &[String], log: &Path) -> anyhow::Result<tokio::process::Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    Ok(tokio::process::Command::new(ferry)
        .args(args)
        .env(
            "FERRY_LOG",
            std::env::var("FERRY_LOG").unwrap_or_else(|_| "info".into()),
        )
        .env("FERRY_ADMIN_TOKEN", "failover-bench-admin-token")
        // The edge pins what the origins' HTTP URLs hand out (loopback, no control).
        .env("FERRY_RELAY__TRUST_HTTP", "true")
        .stdout(out.try_clone()?)
        .stderr(out)
        .kill_on_drop(true)
        .spawn()?)
}

async fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("{addr} did not start listening")
}

async fn metrics(addr: SocketAddr) -> String {
    let get = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    match tokio::time::timeout(Duration::from_secs(1), get).await {
        Ok(Ok(s)) => s,
        _ => String::new(),
    }
}

fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn current_origin(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix("ferry_relay_current_origin{")?;
        if !rest.ends_with(" 1") {
            return None;
        }
        Some(
            rest.split("origin=\"")
                .nth(1)?
                .split('"')
                .next()?
                .to_owned(),
        )
    })
}

/// A video frame as a player got it.
#[derive(Clone, Copy)]
struct Got {
    at: Instant,
    ts: u32,
    len: usize,
}

struct Player {
    frames: Arc<Mutex<Vec<Got>>>,
    ended: Arc<Mutex<Option<String>>>,
}

fn player(edge: SocketAddr) -> Player {
    let frames = Arc::new(Mutex::new(Vec::new()));
    let ended = Arc::new(Mutex::new(None));
    let (f, e) = (frames.clone(), ended.clone());
    tokio::spawn(async move {
        let r = async {
            let mut c = Client::connect(edge, "live").await?;
            c.play(STREAM).await?;
            loop {
                if let Message::Video { timestamp, data } = c.read().await?
                    && data.len() > 1
                    && data[1] == 1
                {
                    f.lock().unwrap_or_else(|e| e.into_inner()).push(Got {
                        at: Instant::now(),
                        ts: timestamp,
                        len: data.len(),
                    });
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), rtmp::RtmpError>(())
        }
        .await;
        *e.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{r:?}"));
    });
    Player { frames, ended }
}

/// What players saw in a window.
#[derive(Default)]
struct Window {
    stall: Duration,
    lost: usize,
    duplicates: usize,
    backwards: usize,
}

fn window(players: &[Player], from: Instant, to: Instant, frame_ms: f64) -> Window {
    let mut w = Window::default();
    for p in players {
        let frames: Vec<Got> = p
            .frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|g| g.at >= from && g.at <= to)
            .copied()
            .collect();
        let mut seen = std::collections::HashSet::new();
        for g in &frames {
            if !seen.insert((g.ts, g.len)) {
                w.duplicates += 1;
            }
        }
        for pair in frames.windows(2) {
            w.stall = w.stall.max(pair[1].at.duration_since(pair[0].at));
            if pair[1].ts <= pair[0].ts {
                w.backwards += 1;
            } else {
                let step = f64::from(pair[1].ts - pair[0].ts);
                w.lost += ((step / frame_ms).round() as usize).saturating_sub(1);
            }
        }
    }
    w
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tags = read_flv(&args.flv)?;
    let video: Vec<u32> = tags
        .iter()
        .filter(|t| t.kind == 9 && !is_sequence_header(t))
        .map(|t| t.timestamp)
        .collect();
    let frame_ms = match (video.first(), video.last()) {
        (Some(a), Some(b)) if video.len() > 1 => f64::from(b - a) / (video.len() - 1) as f64,
        _ => 1000.0 / 30.0,
    };
    let stream_bps = tags.iter().map(|t| t.body.len() as f64).sum::<f64>()
        / (f64::from(tags.last().map_or(1, |t| t.timestamp.max(1))) / 1000.0);
    std::fs::create_dir_all(&args.work)?;
    let p = args.port;
    let addr = |i: u16| SocketAddr::from(([127, 0, 0, 1], p + i));
    let mut origins = Vec::new();
    for (i, name) in ["a", "b"].iter().enumerate() {
        let dir = args.work.join(name);
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("ferry.toml");
        std::fs::write(
            &config,
            format!(
                "[relay]\nlisten = \"127.0.0.1:0\"\n[hls]\nenabled = false\n[control]\nlocal_worker = false\n\
                 [rtmp]\nmax_connections_per_address = 10000\n[[streams]]\nname = \"{STREAM}\"\nkey = \"{KEY}\"\n"
            ),
        )?;
        let (rtmp, http) = (addr(2 * i as u16), addr(2 * i as u16 + 1));
        let node = Node::spawn(
            &args.ferry,
            vec![
                "serve".into(),
                "--config".into(),
                config.display().to_string(),
                "--data-dir".into(),
                dir.display().to_string(),
                "--rtmp-listen".into(),
                rtmp.to_string(),
                "--http-listen".into(),
                http.to_string(),
            ],
            http,
            dir.join("log"),
        )?;
        wait_listening(http).await?;
        origins.push((node, rtmp));
    }
    publish(tags, origins.iter().map(|(_, r)| *r).collect());
    let edge_dir = args.work.join("edge");
    std::fs::create_dir_all(&edge_dir)?;
    let (edge_rtmp, edge_http) = (addr(4), addr(5));
    let mut edge = Node::spawn(
        &args.ferry,
        vec![
            "edge".into(),
            "--origins".into(),
            format!("{},{}", origins[0].0.url(), origins[1].0.url()),
            "--data-dir".into(),
            edge_dir.display().to_string(),
            "--rtmp-listen".into(),
            edge_rtmp.to_string(),
            "--http-listen".into(),
            edge_http.to_string(),
        ],
        edge_http,
        edge_dir.join("log"),
    )?;
    wait_listening(edge_http).await?;
    // Both origins live before the players come.
    for (o, _) in &origins {
        let mut live = false;
        for _ in 0..100 {
            if metric_sum(&metrics(o.http).await, "ferry_hub_live_streams") >= 1.0 {
                live = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::ensure!(live, "the stream did not go live on {}", o.url());
    }
    let players: Vec<Player> = (0..args.players).map(|_| player(edge_rtmp)).collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let quiet_from = Instant::now();
    let relay0 = metric_sum(
        &metrics(edge_http).await,
        "ferry_relay_received_bytes_total",
    );
    tokio::time::sleep(WATCH).await;
    let relay_bps = (metric_sum(
        &metrics(edge_http).await,
        "ferry_relay_received_bytes_total",
    ) - relay0)
        / quiet_from.elapsed().as_secs_f64();
    let baseline = window(&players, quiet_from, Instant::now(), frame_ms);
    println!(
        "baseline (no failure, {:.0} s): longest gap between frames {:.0} ms, lost {}, duplicates {}",
        WATCH.as_secs_f64(),
        ms(baseline.stall),
        baseline.lost,
        baseline.duplicates
    );
    println!(
        "relay: the edge receives {:.0} kB/s = {:.2}x the stream's {:.0} kB/s (current origin + warm standby)",
        relay_bps / 1000.0,
        relay_bps / stream_bps,
        stream_bps / 1000.0
    );

    let mut stalls = Vec::new();
    let (mut lost, mut dups, mut back) = (0, 0, 0);
    for k in 0..args.kills {
        // Wait for a current origin and a standby (one relayed stream each).
        let mut ready = false;
        for _ in 0..300 {
            let mut n = 0.0;
            for (o, _) in &origins {
                n += metric_sum(&metrics(o.http).await, "ferry_relay_served_streams");
            }
            if n >= 2.0 {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::ensure!(ready, "kill {k}: no standby came back");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let current = current_origin(&metrics(edge_http).await).context("no current origin")?;
        let i = origins
            .iter()
            .position(|(o, _)| o.url() == current)
            .context("unknown origin")?;
        let sig = if k % 2 == 0 { "KILL" } else { "STOP" };
        let before = Instant::now() - Duration::from_millis(200);
        origins[i].0.signal(sig);
        tokio::time::sleep(WATCH).await;
        let w = window(&players, before, Instant::now(), frame_ms);
        println!(
            "kill {:>2} SIG{sig:<4} origin {}: stall {:>4.0} ms, lost {}, duplicates {}, backwards {}",
            k + 1,
            ["a", "b"][i],
            ms(w.stall),
            w.lost,
            w.duplicates,
            w.backwards
        );
        stalls.push(w.stall);
        lost += w.lost;
        dups += w.duplicates;
        back += w.backwards;
        if sig == "KILL" {
            origins[i].0.restart(&args.ferry).await?;
        } else {
            origins[i].0.signal("CONT");
        }
    }
    let disconnected = players
        .iter()
        .filter(|p| p.ended.lock().unwrap_or_else(|e| e.into_inner()).is_some())
        .count();
    let text = metrics(edge_http).await;
    let joins: Vec<String> = ["continuous", "gap", "rebased"]
        .iter()
        .map(|j| {
            format!(
                "{j} {}",
                metric_sum(
                    &text,
                    &format!("ferry_relay_failovers_total{{join=\"{j}\"}}")
                )
            )
        })
        .collect();
    stalls.sort();
    let median = stalls.get(stalls.len() / 2).copied().unwrap_or_default();
    let worst = stalls.last().copied().unwrap_or_default();
    println!();
    println!(
        "RESULT kills={} players={} stall_median_ms={:.0} stall_worst_ms={:.0} baseline_gap_ms={:.0} lost_frames={lost} duplicates={dups} backwards={back} disconnected={disconnected}",
        stalls.len(),
        players.len(),
        ms(median),
        ms(worst),
        ms(baseline.stall)
    );
    println!("failovers by join: {}", joins.join(", "));
    let _ = edge.child.kill().await;
    Ok(())
}
