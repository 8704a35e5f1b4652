//! The RTMP origin/edge cluster on loopback, as processes: two origins fed
//! the same stream by one ffmpeg (tee muxer), an edge pulling it over the
//! QUIC relay for RTMP players. The current origin is SIGKILLed, SIGSTOPped
//! (hung: no FIN, no RST) or loses its publisher: the players stay connected,
//! timestamps stay monotonic, no frame is duplicated, and the longest gap
//! between frames at the player is printed. Also: fifty players cause one
//! pull; a restarted origin becomes the standby without flapping, and a
//! failover to a different encoder's timeline is rebased.

use crate::common;

use std::time::{Duration, Instant};

use common::cluster::*;
use common::nginx::Nginx;
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
    cluster_with(&[]).await
}

async fn cluster_with(edge_env: &[(&'static str, String)]) -> Cluster {
    let a = origin().await;
    let b = origin().await;
    let encoder = publish_tee(&[rtmp_publish_url(&a), rtmp_publish_url(&b)], 20);
    wait_for(
        "the stream on both origins",
        Duration::from_secs(20),
        || async { live_on(&a).await && live_on(&b).await },
    )
    .await;
    let edge = rtmp_edge(&[a.url(), b.url()], edge_env).await;
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

async fn served(n: &Node) -> f64 {
    n.metric_sum("ferry_relay_served_streams").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_players_cause_one_pull_which_stops_after_the_last_leaves() {
    let c = cluster_with(&[("FERRY_RELAY__LINGER_MS", "1000".into())]).await;
    let players = futures_join(
        (0..50)
            .map(|_| Watcher::start(c.edge.rtmp, STREAM))
            .collect(),
    )
    .await;
    wait_for(
        "fifty players to get frames",
        Duration::from_secs(20),
        || async { players.iter().all(|p| p.count() > 10) },
    )
    .await;
    assert_eq!(
        c.edge.metric_sum("ferry_relay_pulls_started_total").await,
        1.0
    );
    assert_eq!(c.edge.metric_sum("ferry_relay_pulls").await, 1.0);
    // The current origin and the warm standby: one relayed stream on each.
    assert_eq!(served(&c.a).await, 1.0);
    assert_eq!(served(&c.b).await, 1.0);
    drop(players);
    wait_for("the pull to stop", Duration::from_secs(10), || async {
        c.edge.metric_sum("ferry_relay_pulls").await == 0.0
            && served(&c.a).await == 0.0
            && served(&c.b).await == 0.0
    })
    .await;
    // A player arriving later starts a new pull.
    let late = Watcher::start(c.edge.rtmp, STREAM).await;
    wait_for(
        "the late player to get frames",
        Duration::from_secs(10),
        || async { late.count() > 10 },
    )
    .await;
    assert_eq!(
        c.edge.metric_sum("ferry_relay_pulls_started_total").await,
        2.0
    );
}

async fn futures_join(starts: Vec<impl std::future::Future<Output = Watcher>>) -> Vec<Watcher> {
    let mut out = Vec::new();
    for s in starts {
        out.push(s.await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_origin_is_a_standby_without_flapping_and_another_timeline_is_rebased() {
    let mut c = cluster().await;
    let players = watchers(&c.edge, 2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let first = current_origin(&c.edge).await.unwrap();
    let a_first = first == c.a.url();
    let (victim, survivor) = if a_first {
        (&mut c.a, &c.b)
    } else {
        (&mut c.b, &c.a)
    };
    victim.signal("KILL");
    let survivor_url = survivor.url();
    wait_for("the failover", Duration::from_secs(5), || async {
        current_origin(&c.edge).await.as_deref() == Some(survivor_url.as_str())
    })
    .await;
    // The dead origin comes back with its own encoder (another timeline).
    let (victim, survivor) = if a_first {
        (&mut c.a, &c.b)
    } else {
        (&mut c.b, &c.a)
    };
    victim.restart().await;
    let _second_encoder = publish_background(&rtmp_publish_url(victim), 20);
    wait_for(
        "the edge to keep a standby on the restarted origin",
        Duration::from_secs(15),
        || async { served(victim).await == 1.0 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        current_origin(&c.edge).await.as_deref(),
        Some(survivor.url().as_str()),
        "no switch back while the current origin works"
    );
    assert_eq!(c.edge.metric_sum("ferry_relay_failovers_total").await, 1.0);
    // Now the survivor dies: the edge goes over to the other timeline, rebased.
    let broke = Instant::now();
    survivor.signal("KILL");
    let victim_url = victim.url();
    wait_for("the second failover", Duration::from_secs(5), || async {
        current_origin(&c.edge).await.as_deref() == Some(victim_url.as_str())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let text = c.edge.metrics().await;
    assert_eq!(
        metric_sum(&text, "ferry_relay_failovers_total{join=\"rebased\"}"),
        1.0,
        "{text}"
    );
    for (i, p) in players.iter().enumerate() {
        assert!(p.ended.lock().unwrap().is_none(), "player {i} disconnected");
        let frames = p.frames();
        assert!(frames.iter().filter(|f| f.at > broke).count() > 40);
        let s = seen(&frames, FRAME_MS);
        println!("rebased: player {i}: {s:?}");
        assert_eq!(s.not_monotonic, 0, "player {i}: timestamps went back");
        assert_eq!(s.duplicates, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edge_pulls_from_nginx_rtmp_as_a_foreign_origin() {
    let nginx = Nginx::start();
    let _publisher = publish_background(
        &format!("rtmp://127.0.0.1:{}/live/{STREAM}", nginx.port),
        20,
    );
    let edge = rtmp_edge(&[format!("rtmp://127.0.0.1:{}/live", nginx.port)], &[]).await;
    // nginx-rtmp takes a moment to have the stream; players keep asking.
    let players = watchers(&edge, 3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        edge.metric_sum("ferry_relay_pulls_started_total").await,
        1.0
    );
    for (i, p) in players.iter().enumerate() {
        let s = seen(&p.frames(), FRAME_MS);
        println!("nginx-rtmp origin: player {i}: {s:?}");
        assert!(s.frames > 60, "player {i}: {s:?}");
        assert_eq!(s.not_monotonic, 0);
        assert_eq!(s.duplicates, 0);
    }
    // ffprobe, a player of its own, reads the stream through the edge.
    let out = std::process::Command::new(ffprobe())
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(format!("rtmp://{}/live/{STREAM}", edge.rtmp))
        .output()
        .unwrap();
    let codecs = String::from_utf8_lossy(&out.stdout);
    assert!(
        codecs.contains("h264") && codecs.contains("aac"),
        "{codecs}"
    );
}

/// `(EXTINF, URI)` of every segment of a media playlist, in order.
fn segments_of(playlist: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = playlist.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0].starts_with("#EXTINF:") && !w[1].starts_with('#'))
        .map(|w| (w[0].to_owned(), w[1].to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redundant_origins_publish_interchangeable_segments() {
    let env = [("FERRY_HLS__ALIGNED_SEGMENTS", "true".to_owned())];
    let a = origin_with(&env).await;
    let b = origin_with(&env).await;
    let _encoder = publish_tee(&[rtmp_publish_url(&a), rtmp_publish_url(&b)], 20);
    let playlist = format!("/hls/{STREAM}/source/index.m3u8");
    let deadline = Instant::now() + Duration::from_secs(30);
    let common = loop {
        let (sa, _, pa) = get_bytes(a.http, &playlist).await;
        let (sb, _, pb) = get_bytes(b.http, &playlist).await;
        if sa == 200 && sb == 200 {
            let (pa, pb) = (String::from_utf8_lossy(&pa), String::from_utf8_lossy(&pb));
            let theirs = segments_of(&pb);
            let common: Vec<_> = segments_of(&pa)
                .into_iter()
                // The first segment included: each origin's starts at the
                // first keyframe of a slot it saw whole.
                .filter(|s| theirs.contains(s))
                .collect();
            if common.len() >= 3 {
                // Neither window has slid yet: both began with one segment.
                assert_eq!(
                    segments_of(&pa).first(),
                    segments_of(&pb).first(),
                    "the origins' first segments differ"
                );
                break common;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no three segments alike on both origins"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("segments listed alike (duration and name) on both origins: {common:?}");
    let mut identical = 0;
    for (_, uri) in &common {
        let path = format!("/hls/{STREAM}/source/{uri}");
        let (sa, _, ba) = get_bytes(a.http, &path).await;
        let (sb, _, bb) = get_bytes(b.http, &path).await;
        assert_eq!((sa, sb), (200, 200), "{uri}");
        let dir = tempfile::tempdir().unwrap();
        let (fa, fb) = (dir.path().join("a.ts"), dir.path().join("b.ts"));
        std::fs::write(&fa, &ba).unwrap();
        std::fs::write(&fb, &bb).unwrap();
        let (pa, pb) = (probe_packets(&fa), probe_packets(&fb));
        assert_eq!(pa.len(), pb.len(), "{uri}: same frames");
        assert_eq!(
            pa.first().map(|p| p.dts),
            pb.first().map(|p| p.dts),
            "{uri}: same first timestamp"
        );
        identical += usize::from(ba == bb);
    }
    println!("byte-identical segments: {identical} of {}", common.len());
    assert_eq!(identical, common.len(), "the muxer is deterministic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edge_pins_origins_through_control_and_strangers_pull_nothing() {
    let a = origin().await;
    let _encoder = publish_tee(&[rtmp_publish_url(&a)], 20);
    wait_for(
        "the stream on the origin",
        Duration::from_secs(20),
        || async { live_on(&a).await },
    )
    .await;
    // The origin's pin reaches edges through control's authenticated API,
    // and is the certificate its relay really has.
    let (status, made) = api(
        a.http,
        "POST",
        "/tokens",
        Some(ADMIN),
        Some(r#"{"role":"edge"}"#),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let token = made["token"].as_str().unwrap().to_owned();
    let info: serde_json::Value = serde_json::from_str(&http_get(a.http, "/relay").await).unwrap();
    wait_for(
        "the origin's pin in control",
        Duration::from_secs(10),
        || async {
            let (_, pins) = api(a.http, "GET", "/relay/pins", Some(&token), None).await;
            pins.as_array()
                .is_some_and(|p| p.contains(&info["fingerprint"]))
        },
    )
    .await;
    let pinned = rtmp_edge(
        &[a.url()],
        &[
            ("FERRY_RELAY__TRUST_HTTP", "false".into()),
            ("FERRY_CONTROL__URL", a.url()),
            ("FERRY_ADMIN_TOKEN", token.clone()),
        ],
    )
    .await;
    // No pin and no trust in plain HTTP: nothing is pulled.
    let unpinned = rtmp_edge(&[a.url()], &[("FERRY_RELAY__TRUST_HTTP", "false".into())]).await;
    // A certificate trusted, a token the origin does not know: refused.
    let stranger = rtmp_edge(
        &[a.url()],
        &[("FERRY_ADMIN_TOKEN", "a-token-no-origin-knows".into())],
    )
    .await;
    let good = Watcher::start(pinned.rtmp, STREAM).await;
    let none = Watcher::start(unpinned.rtmp, STREAM).await;
    let refused = Watcher::start(stranger.rtmp, STREAM).await;
    wait_for(
        "frames through the pinned edge",
        Duration::from_secs(20),
        || async { good.count() > 30 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(none.count(), 0, "an unpinned edge pulled");
    assert_eq!(refused.count(), 0, "an unknown edge was served");
    assert!(a.metric_sum("ferry_relay_refused_edges_total").await >= 1.0);
    assert!(unpinned.log().contains("not pinned"), "{}", unpinned.log());
}

/// An edge given only the control plane's URL learns the origins from it
/// (their URLs, streams and relay pins): it serves HLS and RTMP players
/// from the first origin with certificates pinned through control, and
/// follows an origin that joins later with a stream of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_with_only_a_control_url_finds_the_origins_and_follows_a_new_one() {
    let a = origin().await;
    let _encoder = publish_tee(&[rtmp_publish_url(&a)], 30);
    wait_for(
        "the stream on the origin",
        Duration::from_secs(20),
        || async { live_on(&a).await },
    )
    .await;
    let edge = start_node(
        &[
            ("FERRY_RELAY__TRUST_HTTP", "false".into()),
            ("FERRY_CONTROL__URL", a.url()),
        ],
        |_| vec!["edge".into()],
    )
    .await;
    let first = Watcher::start(edge.rtmp, STREAM).await;
    wait_for(
        "frames through the edge",
        Duration::from_secs(20),
        || async { first.count() > 30 },
    )
    .await;
    wait_for("HLS through the edge", Duration::from_secs(20), || async {
        get_bytes(edge.http, &format!("/hls/{STREAM}/master.m3u8"))
            .await
            .0
            == 200
    })
    .await;

    // A second origin joins, reporting to the same control plane, with a
    // stream only it carries.
    let (status, made) = api(
        a.http,
        "POST",
        "/streams",
        Some(ADMIN),
        Some(r#"{"name":"later"}"#),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let key = made["key"]["key"].as_str().unwrap().to_owned();
    let control = a.url();
    let b = start_node(&[("FERRY_RELAY__TRUST_HTTP", "false".into())], move |data| {
        let config = data.join("ferry.toml");
        std::fs::write(
            &config,
            format!("[relay]\nlisten = \"127.0.0.1:0\"\n[control]\nurl = \"{control}\"\nlocal_worker = false\n"),
        )
        .unwrap();
        vec!["serve".into(), "--config".into(), config.display().to_string()]
    })
    .await;
    let _second = publish_tee(&[format!("rtmp://{}/live/{key}", b.rtmp)], 30);
    wait_for(
        "the new origin's stream through the edge",
        Duration::from_secs(30),
        || async {
            let (status, _, body) = get_bytes(edge.http, "/hls/later/master.m3u8").await;
            status == 200 && String::from_utf8_lossy(&body).contains("#EXT-X-STREAM-INF")
        },
    )
    .await;
    let later = Watcher::start(edge.rtmp, "later").await;
    wait_for(
        "RTMP frames of the new origin's stream",
        Duration::from_secs(20),
        || async { later.count() > 30 },
    )
    .await;
    assert!(
        edge.log().contains("origins from the control plane"),
        "{}",
        edge.log()
    );
    assert!(!edge.log().contains("not pinned"), "{}", edge.log());
}
