//! The edge farm scaled by the autoscaler on the `local` provider: real
//! `ferry edge` processes started and stopped by `ferry serve`'s control
//! plane, a synthetic audience that follows playlists like players through
//! the director, ramping from 0 to four edges' worth and back. The farm must
//! grow within the rate limits, shrink only after the window, drain before
//! it stops an edge, and no viewer request may fail on the way.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// Viewers an edge is sized for (`[edge] capacity`); the target is 0.8 of
/// it, so 4 viewers an edge.
const CAPACITY: u32 = 5;
const FIRST_PORT: u16 = 18_640;

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// A viewer that follows playlists like a player: every second it reloads
/// its media playlist through the director and fetches the newest segment
/// it has not fetched yet from wherever the playlist says. Every answer
/// that is not a 200 with a body, or no answer, is a failure.
async fn viewer(director: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    // Players drop idle connections to an edge they no longer use.
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_idle_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let get = async |url: String| -> Option<bytes::Bytes> {
        match http.get(&url).send().await {
            Ok(r) if r.status() == 200 => match r.bytes().await {
                Ok(b) => {
                    tally.ok.fetch_add(1, Ordering::Relaxed);
                    Some(b)
                }
                Err(e) => {
                    eprintln!("viewer: {url}: body: {e}");
                    tally.failed.fetch_add(1, Ordering::Relaxed);
                    None
                }
            },
            Ok(r) => {
                eprintln!("viewer: {url}: {}", r.status());
                tally.failed.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) => {
                eprintln!("viewer: {url}: {e}");
                tally.failed.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    };
    let Some(master) = get(format!("http://{director}/hls/{STREAM}/master.m3u8")).await else {
        return;
    };
    let master = String::from_utf8_lossy(&master).into_owned();
    let variant = master
        .lines()
        .find(|l| !l.starts_with('#') && !l.is_empty())
        .unwrap()
        .to_owned();
    let mut last = String::new();
    while !stop.load(Ordering::Relaxed) {
        if let Some(media) = get(format!("http://{director}/hls/{STREAM}/{variant}")).await {
            let media = String::from_utf8_lossy(&media).into_owned();
            if let Some(uri) = media
                .lines()
                .rfind(|l| !l.starts_with('#') && !l.is_empty())
                && uri != last
            {
                last = uri.to_owned();
                get(last.clone()).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn status(control: SocketAddr) -> serde_json::Value {
    api(control, "GET", "/autoscale", Some(ADMIN), None).await.1
}

async fn edges(control: SocketAddr) -> Vec<serde_json::Value> {
    let (_, body) = api(control, "GET", "/edges", Some(ADMIN), None).await;
    body.as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_farm_follows_its_audience_and_no_viewer_request_fails() {
    let server = start_with(|c| {
        c.director.listen = "127.0.0.1:0".into();
        c.director.poll_ms = 200;
        // Each edge up to its share plus ε, no floor: what the farm is
        // sized for is what the director fills.
        c.director.min_viewers_per_edge = 1;
        c.director.settle_seconds = 2;
        let a = &mut c.autoscale;
        a.enabled = true;
        a.provider = "local".into();
        a.local.program = env!("CARGO_BIN_EXE_ferry").into();
        a.local.first_port = FIRST_PORT;
        a.local.last_port = FIRST_PORT + 19;
        a.local.env = vec![
            format!("FERRY_EDGE__CAPACITY={CAPACITY}"),
            "FERRY_LOG=warn".into(),
        ];
        a.min_edges = 1;
        a.max_edges = 6;
        a.period_seconds = 1.0;
        a.target_cpu = 0.0; // every edge shares this host's CPU
        // Sized by the director's viewers (connections count idle
        // keep-alives and the director's own playlist fetches).
        a.target_viewers = 0.8;
        a.target_connections = 0.0;
        a.scale_down_window_seconds = 8.0;
        a.drain_min_seconds = 4.0;
        a.drain_quiet_seconds = 3.0;
        a.drain_max_seconds = 30.0;
    })
    .await;
    let control = server.running.http_addr;
    let director = server.running.director_addr.unwrap();
    let _publisher = publish_background(&server.rtmp_url(KEY), 60);
    wait_for("the minimum edge", Duration::from_secs(30), || async {
        edges(control).await.iter().any(|e| e["state"] == "live")
    })
    .await;
    wait_for("segments", Duration::from_secs(30), || async {
        let (s, _, b) = get_bytes(control, &format!("/hls/{STREAM}/source/index.m3u8")).await;
        s == 200 && String::from_utf8_lossy(&b).matches("#EXTINF").count() >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let mut audience: Vec<(Arc<AtomicBool>, tokio::task::JoinHandle<()>)> = Vec::new();
    let mut timeline = Vec::new();
    let mut peak_edges = 0;
    let mut most_live = 0;
    // 0 → 16 viewers over 8 s, 24 s flat, → 1 over 4 s, then watch the farm shrink.
    for second in 0..80u64 {
        let wanted = match second {
            0..8 => 2 * (second + 1) as usize,
            8..32 => 16,
            32..36 => 16 - 4 * (second - 31) as usize,
            _ => 1,
        }
        .max(1);
        while audience.len() < wanted {
            let stop = Arc::new(AtomicBool::new(false));
            let task = tokio::spawn(viewer(director, stop.clone(), tally.clone()));
            audience.push((stop, task));
        }
        while audience.len() > wanted {
            let (stop, task) = audience.pop().unwrap();
            stop.store(true, Ordering::Relaxed);
            drop(task);
        }
        let s = status(control).await;
        let e = edges(control).await;
        let live: Vec<String> = e
            .iter()
            .filter(|e| e["state"] != "dead")
            .map(|e| {
                format!(
                    "{}:{}:{}v/{}c",
                    e["id"].as_str().unwrap().trim_start_matches("edge-local-"),
                    e["state"].as_str().unwrap().chars().next().unwrap(),
                    e["viewers"],
                    e["load"]["connections"]
                )
            })
            .collect();
        let live_count = e.iter().filter(|e| e["state"] == "live").count();
        most_live = most_live.max(live_count);
        peak_edges = peak_edges.max(s["current"].as_u64().unwrap_or(0));
        let last = s["decisions"]
            .as_array()
            .and_then(|d| d.last())
            .cloned()
            .unwrap_or_default();
        timeline.push(format!(
            "{:>3}s viewers {:>2} farm {} → {} ({}) edges [{}] ok {} failed {}",
            start.elapsed().as_secs(),
            wanted,
            s["current"],
            s["desired"],
            last["reason"].as_str().unwrap_or("-"),
            live.join(" "),
            tally.ok.load(Ordering::Relaxed),
            tally.failed.load(Ordering::Relaxed),
        ));
        if second >= 40 && s["current"] == 1 && s["draining"].as_array().is_some_and(Vec::is_empty)
        {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for (stop, _) in &audience {
        stop.store(true, Ordering::Relaxed);
    }
    let s = status(control).await;
    println!("{}", timeline.join("\n"));
    let actions: Vec<String> = s["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{} {} {}", a["kind"], a["edge"], a["detail"]))
        .collect();
    println!("actions:\n{}", actions.join("\n"));

    assert_eq!(
        tally.failed.load(Ordering::Relaxed),
        0,
        "failed viewer requests"
    );
    assert!(
        tally.ok.load(Ordering::Relaxed) > 500,
        "the audience watched"
    );
    assert!(
        peak_edges >= 4 && most_live >= 4,
        "16 viewers at 4 an edge: {peak_edges} edges"
    );
    // Growth within HPA's limits: never more than max(2x, +4) per decision.
    for d in s["decisions"].as_array().unwrap() {
        let (cur, des) = (
            d["current"].as_u64().unwrap(),
            d["desired"].as_u64().unwrap(),
        );
        assert!(des <= (cur * 2).max(cur + 4), "grew too fast: {d}");
    }
    // Shrunk back to the minimum, each removal drained first and stopped
    // once quiet.
    assert_eq!(s["current"], 1, "{s}");
    let removes: Vec<&serde_json::Value> = s["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "remove")
        .collect();
    let drains = s["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "drain")
        .count();
    assert!(removes.len() >= 3, "{actions:?}");
    assert!(
        drains >= removes.len(),
        "every removal was drained first: {actions:?}"
    );
    assert!(
        removes.iter().all(|a| a["detail"] == "drained: quiet"),
        "stopped once quiet, not on a timeout: {actions:?}"
    );
    // The web UI's Nodes page shows the same.
    let envs = [
        ("FERRY_URL", format!("http://{control}/")),
        ("FERRY_TOKEN", ADMIN.to_owned()),
        (
            "SHOT",
            ui_artifacts().join("autoscale.png").display().to_string(),
        ),
    ];
    run_ui_script(
        "autoscale.cjs",
        &envs,
        Duration::from_secs(120),
        "autoscale ui ok",
    )
    .await;
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("ferry_autoscale_edge_utilisation{pod=\"edge-local-"),
        "the per-edge figure an HPA would scale on: {metrics}"
    );
    assert!(
        metrics.contains("ferry_autoscale_edges_removed_total{verdict=\"quiet\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscale_status_is_404_when_off_and_bad_settings_are_refused() {
    let server = start().await;
    let (status, body) = api(
        server.running.http_addr,
        "GET",
        "/autoscale",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(body.to_string().contains("autoscaling is off"), "{body}");
    let data = tempfile::tempdir().unwrap();
    let mut config = ferry::config::Config {
        data_dir: data.path().to_owned(),
        ..ferry::config::Config::default()
    };
    config.autoscale.enabled = true;
    config.autoscale.min_edges = 9;
    config.autoscale.max_edges = 3;
    let err = ferry::serve::start(&config).await.err().unwrap();
    assert!(err.to_string().contains("min_edges"), "{err}");
}

/// An edge told to stop (SIGTERM, ctrl-c, a pod's deletion) first reports
/// draining, so directors stop naming it, and keeps serving for
/// `[edge] drain_seconds` before it closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_edge_reports_draining_and_serves_through_its_drain() {
    let server = start().await;
    let control = server.running.http_addr;
    let data = tempfile::tempdir().unwrap();
    let mut config = ferry::config::Config {
        data_dir: data.path().to_owned(),
        admin_token: ADMIN.into(),
        ..ferry::config::Config::default()
    };
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.edge.origins = vec![format!("http://{control}")];
    config.control.url = format!("http://{control}");
    config.edge.drain_seconds = 3;
    let edge = ferry::edge_role::start_edge(&config).await.unwrap();
    let addr = edge.http_addr;
    let state = async || {
        edges(control)
            .await
            .first()
            .map(|e| e["state"].as_str().unwrap().to_owned())
    };
    wait_for("the edge live", Duration::from_secs(10), || async {
        state().await.as_deref() == Some("live")
    })
    .await;
    let began = Instant::now();
    let stopping = tokio::spawn(edge.shutdown());
    wait_for("the edge draining", Duration::from_secs(2), || async {
        state().await.as_deref() == Some("draining")
    })
    .await;
    let (status, _, _) = get_bytes(addr, "/healthz").await;
    assert_eq!(status, 200, "still serving while it drains");
    stopping.await.unwrap();
    assert!(
        began.elapsed() >= Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "closed after the drain"
    );
}
