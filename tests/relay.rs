//! The RTMP origin/edge cluster on loopback, as processes: two origins fed
//! the same stream by one ffmpeg (tee muxer), an edge pulling it over the
//! QUIC relay for RTMP players. The current origin is SIGKILLed, SIGSTOPped
//! (hung: no FIN, no RST) or loses its publisher: the players stay connected,
//! timestamps stay monotonic, no frame is duplicated, and the longest gap
//! between frames at the player is printed. Also: fifty players cause one
//! pull; a restarted origin becomes the standby without flapping, and a
//! failover to a different encoder's timeline is rebased.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;

/// The sample's frame duration, ms.
const FRAME_MS: f64 = 1000.0 / 30.0;

struct Cluster {
    a: Node,
    b: Node,
    edge: Node,
    _encoder: tokio::process::Child,
}

fn rtmp_publish_url(n: &Node) -> String {
    format!("rtmp://{}/live/{KEY}", n.rtmp)
}

async fn live_on(node: &Node) -> bool {
    node.metric_sum("ferry_hub_live_streams").await >= 1.0
}

async fn cluster() -> Cluster {
    let a = origin().await;
    let b = origin().await;
    let encoder = publish_tee(&[rtmp_publish_url(&a), rtmp_publish_url(&b)], 20);
    wait_for(
        "the stream on both origins",
        Duration::from_secs(20),
        || async { live_on(&a).await && live_on(&b).await },
    )
    .await;
    let edge = rtmp_edge(&[a.url(), b.url()], &[]).await;
    Cluster {
        a,
        b,
        edge,
        _encoder: encoder,
    }
}

/// The origin the edge pulls `demo` from now.
async fn current_origin(edge: &Node) -> Option<String> {
    edge.metrics().await.lines().find_map(|l| {
        let rest = l.strip_prefix("ferry_relay_current_origin{")?;
        if !rest.ends_with(" 1") || !rest.contains("stream=\"demo\"") {
            return None;
        }
        let o = rest.split("origin=\"").nth(1)?;
        Some(o.split('"').next()?.to_owned())
    })
}

async fn watchers(edge: &Node, n: usize) -> Vec<Watcher> {
    let mut w = Vec::new();
    for _ in 0..n {
        w.push(Watcher::start(edge.rtmp, STREAM).await);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !w.iter().all(|w| w.count() > 20) {
        assert!(
            Instant::now() < deadline,
            "players got no frames; ended: {:?}\nedge log:\n{}",
            w.iter()
                .map(|w| w.ended.lock().unwrap().clone())
                .collect::<Vec<_>>(),
            edge.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w
}

/// Players that are external programs: ffmpeg and rtmpdump, writing FLV.
fn external_players(
    edge: &Node,
    dir: &std::path::Path,
) -> Vec<(tokio::process::Child, std::path::PathBuf)> {
    let url = format!("rtmp://{}/live/{STREAM}", edge.rtmp);
    let ff_out = dir.join("ffmpeg.flv");
    let ff = tokio::process::Command::new(ffmpeg())
        .args([
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            &url,
            "-c",
            "copy",
            "-f",
            "flv",
        ])
        .arg(&ff_out)
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let dump_out = dir.join("rtmpdump.flv");
    let dump = tokio::process::Command::new("rtmpdump")
        .args(["-q", "--live", "-r", &url, "-o"])
        .arg(&dump_out)
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    vec![(ff, ff_out), (dump, dump_out)]
}

/// Video dts of an FLV file, in order.
fn video_dts(file: &std::path::Path) -> Vec<i64> {
    probe_packets(file)
        .into_iter()
        .filter(|p| p.video)
        .map(|p| p.dts)
        .collect()
}

/// Breaks the current origin with `act`, then checks every player.
async fn failover(case: &str, act: impl AsyncFnOnce(&Cluster, &Node)) {
    let c = cluster().await;
    let players = watchers(&c.edge, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let mut external = external_players(&c.edge, dir.path());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let current = current_origin(&c.edge)
        .await
        .expect("the edge names its origin");
    let (victim, survivor) = if current == c.a.url() {
        (&c.a, &c.b)
    } else {
        (&c.b, &c.a)
    };
    let broke = Instant::now();
    act(&c, victim).await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    assert_eq!(
        current_origin(&c.edge).await,
        Some(survivor.url()),
        "{}",
        c.edge.log()
    );
    let failovers = c.edge.metric_sum("ferry_relay_failovers_total").await;
    assert!(failovers >= 1.0, "a failover counted");
    let mut worst = Duration::ZERO;
    for (i, p) in players.iter().enumerate() {
        assert!(
            p.ended.lock().unwrap().is_none(),
            "player {i} disconnected: {:?}",
            p.ended
        );
        let frames = p.frames();
        let after = frames.iter().filter(|f| f.at > broke).count();
        assert!(
            after > 100,
            "player {i} got {after} frames after the failover"
        );
        let s = seen(&frames, FRAME_MS);
        println!("{case}: player {i}: {s:?}");
        assert_eq!(s.not_monotonic, 0, "player {i}: timestamps went back");
        assert_eq!(s.duplicates, 0, "player {i}: a frame came twice");
        worst = worst.max(s.longest_gap);
    }
    println!("{case}: longest gap between video frames at a player: {worst:?}");
    // The test machine may be loaded; the bench measures the stall properly.
    assert!(worst < Duration::from_secs(2), "stall {worst:?}");
    for (child, file) in external.iter_mut() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "{} ended: the player was disconnected",
            file.display()
        );
        child.start_kill().unwrap();
        let _ = child.wait().await;
        let dts = video_dts(file);
        assert!(dts.len() > 200, "{}: {} frames", file.display(), dts.len());
        let back = dts.windows(2).filter(|w| w[1] <= w[0]).count();
        assert_eq!(back, 0, "{}: video dts not increasing", file.display());
    }
    let stall = c
        .edge
        .metric_sum("ferry_relay_failover_stall_seconds_sum")
        .await;
    println!("{case}: stall measured at the edge: {stall:.3} s over {failovers} failover(s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_the_current_origin_keeps_players_going() {
    failover("SIGKILL", async |_, victim| victim.signal("KILL")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_origin_is_left_for_the_standby() {
    failover("SIGSTOP", async |_, victim| victim.signal("STOP")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_origin_losing_its_publisher_is_left_for_the_standby() {
    failover("publisher kicked", async |_, victim| {
        let (status, _) = api(
            victim.http,
            "POST",
            &format!("/streams/{STREAM}/kick"),
            Some(ADMIN),
            None,
        )
        .await;
        assert!(status < 300, "kick: {status}");
    })
    .await;
}
