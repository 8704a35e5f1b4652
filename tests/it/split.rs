//! The control plane and the origin as separate servers (`ferry control` and
//! `ferry serve` with `[control] url`): the origin asks control over HTTP
//! whether a key may publish, reports its live streams, and carries out kicks;
//! a `ferry worker` of that control plane restreams the stream from the origin.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use ferry::config::Config;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_asks_a_separate_control_plane() {
    let data = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: data.path().to_owned(),
        admin_token: ADMIN.into(),
        ..Config::default()
    };
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    let control = ferry::serve::start_control(&config).await.unwrap();
    let control_http = control.http_addr;
    // Origins and workers hold a `node` token, not an admin one.
    // One token per node: a token acts as one node id.
    let (_, node_token) = node_token(control_http).await;
    let (_, worker_token) = common::node_token(control_http).await;
    let origin = start_with(|c| {
        c.control.url = format!("http://{control_http}");
        c.admin_token = node_token.clone();
    })
    .await;

    let (status, created) = api(
        control_http,
        "POST",
        "/streams",
        Some(ADMIN),
        Some(r#"{"name":"split"}"#),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"]["key"].as_str().unwrap().to_owned();
    // The origin has no API of its own; it says where control is.
    let (status, _) = api(
        origin.running.http_addr,
        "GET",
        "/streams",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 404);

    let (ok, err) = publish_file(
        &origin.rtmp_url("not-a-key"),
        &sample("h264-aac-240p25.flv"),
    )
    .await;
    assert!(!ok && err.contains("unknown stream key"), "{err}");

    // Settings made at control reach the origin with the publish grant.
    let settings = r#"{"settings":{"transcode":true,"rungs":[{"name":"180p","height":180,"video_kbps":300}]}}"#;
    let (status, s) = api(
        control_http,
        "PATCH",
        "/streams/split",
        Some(ADMIN),
        Some(settings),
    )
    .await;
    assert_eq!(status, 200, "{s}");
    let url = origin.rtmp_url(&key);
    let mut encoder = publish_background(&url, 10);
    wait_for(
        "control to see the stream live",
        Duration::from_secs(10),
        || async {
            api(control_http, "GET", "/streams/split", Some(ADMIN), None)
                .await
                .1["live"]["live"]
                == json!(true)
        },
    )
    .await;
    assert!(origin.running.hub.is_live("split"));
    wait_for(
        "the origin to transcode as control says",
        Duration::from_secs(10),
        || async { origin.running.hub.is_live("split/180p") },
    )
    .await;
    let (_, nodes) = api(control_http, "GET", "/nodes", Some(ADMIN), None).await;
    let origin_node = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["role"] == json!("origin"))
        .unwrap();
    assert_eq!(origin_node["streams"], json!(["split"]), "{nodes}");
    // Control shows the ingest and the ladder as the origin reports them,
    // though it has no hub of its own.
    wait_for(
        "the origin's ingest and rung at control",
        Duration::from_secs(15),
        || async {
            let live = api(control_http, "GET", "/streams/split", Some(ADMIN), None)
                .await
                .1["live"]
                .clone();
            let rung = live["rungs"]
                .as_array()
                .and_then(|r| r.iter().find(|r| r["name"] == "180p"))
                .cloned()
                .unwrap_or_default();
            live["bitrate"].as_u64().unwrap_or(0) > 100_000
                && live["fps"].as_f64().unwrap_or(0.0) > 5.0
                && live["video_codec"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("avc1."))
                && live["keyframe_interval_s"].as_f64().is_some()
                && live["consumers"]["transcode"] == 1
                && live["origins"] == json!([origin_node["id"].clone()])
                && rung["fps"].as_f64().unwrap_or(0.0) > 5.0
                && rung["bitrate"].as_u64().unwrap_or(0) > 10_000
                && rung["lag_ms"].as_i64().is_some()
        },
    )
    .await;

    // A worker of the control plane restreams it, reading it from the origin.
    let port = free_port();
    let receiver = receiver(port).await;
    let task = json!({"kind": "restream", "config": {"url": format!("rtmp://127.0.0.1:{port}/live/mirrorkey")}}).to_string();
    let (status, t) = api(
        control_http,
        "POST",
        "/streams/split/tasks",
        Some(ADMIN),
        Some(&task),
    )
    .await;
    assert_eq!(status, 201, "{t}");
    let _worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["worker", "--id", "w1", "--token", &worker_token])
        .args(["--control", &format!("http://{control_http}")])
        .args([
            "--origin",
            &format!("rtmp://{}/live", origin.running.rtmp_addr),
        ])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_for(
        "the worker to restream from the origin",
        Duration::from_secs(20),
        || async { receiver.running.hub.is_live("mirror") },
    )
    .await;

    // A kick goes to the origin with its next heartbeat.
    let (status, _) = api(
        control_http,
        "POST",
        "/streams/split/kick",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 202);
    let asked = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), encoder.wait())
        .await
        .expect("the publisher was not kicked")
        .unwrap();
    eprintln!("kicked {:?} after the request", asked.elapsed());
    assert!(!origin.running.hub.is_live("split"));

    wait_for(
        "the restream to end with the stream",
        Duration::from_secs(10),
        || async { !receiver.running.hub.is_live("mirror") },
    )
    .await;

    // Publishing again resumes the task. Then the worker loses control (a
    // partition): past its lease it stops the task rather than risk running
    // it twice, while the origin goes on serving the stream.
    let _encoder = publish_background(&url, 10);
    wait_for(
        "the restream to resume",
        Duration::from_secs(20),
        || async { receiver.running.hub.is_live("mirror") },
    )
    .await;
    control.shutdown().await;
    let lost = Instant::now();
    wait_for(
        "the worker to stop its task",
        worker::LEASE + Duration::from_secs(4),
        || async { !receiver.running.hub.is_live("mirror") },
    )
    .await;
    eprintln!("task stopped {:?} after control went away", lost.elapsed());
    assert!(
        lost.elapsed() >= worker::LEASE - Duration::from_secs(1),
        "stopped before the lease ran out"
    );
    assert!(
        origin.running.hub.is_live("split"),
        "the origin stopped serving"
    );
}

/// Two origins of one control plane carry the same stream (redundant
/// origins): live status lists both, a kick with `?node=` reaches only that
/// origin, a kick without reaches both (a kick used to go to one of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kicks_reach_every_redundant_origin_or_just_the_one_named() {
    let data = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: data.path().to_owned(),
        admin_token: ADMIN.into(),
        ..Config::default()
    };
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    let control = ferry::serve::start_control(&config).await.unwrap();
    let control_http = control.http_addr;
    let (status, created) = api(
        control_http,
        "POST",
        "/streams",
        Some(ADMIN),
        Some(r#"{"name":"twin"}"#),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"]["key"].as_str().unwrap().to_owned();
    let mut origins = Vec::new();
    for _ in 0..2 {
        let (_, token) = node_token(control_http).await;
        let origin = start_with(|c| {
            c.control.url = format!("http://{control_http}");
            c.admin_token = token.clone();
            c.hls.enabled = false;
        })
        .await;
        let node = std::fs::read_to_string(origin.data.path().join("node-id"))
            .unwrap()
            .trim()
            .to_owned();
        let encoder = publish_background(&origin.rtmp_url(&key), 10);
        origins.push((origin, node, encoder));
    }
    let live = || async {
        let (_, body) = api(control_http, "GET", "/live", Some(ADMIN), None).await;
        body["twin"]["origins"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    wait_for(
        "both origins in the live status",
        Duration::from_secs(15),
        || async { live().await.len() == 2 },
    )
    .await;
    let mut nodes = live().await;
    let mut ours: Vec<String> = origins.iter().map(|o| o.1.clone()).collect();
    nodes.sort();
    ours.sort();
    assert_eq!(nodes, ours);

    let (first, second) = (&origins[0], &origins[1]);
    let (status, _) = api(
        control_http,
        "POST",
        &format!("/streams/twin/kick?node={}", first.1),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 202);
    wait_for(
        "the named origin's publisher to leave",
        Duration::from_secs(10),
        || async { !first.0.running.hub.is_live("twin") },
    )
    .await;
    // The other one carries on (its encoder did not reconnect in between).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        second.0.running.hub.is_live("twin"),
        "only the named origin is kicked"
    );

    let (status, _) = api(
        control_http,
        "POST",
        "/streams/twin/kick",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 202);
    wait_for(
        "the other origin's publisher to leave",
        Duration::from_secs(10),
        || async { !second.0.running.hub.is_live("twin") },
    )
    .await;
    let (status, _) = api(
        control_http,
        "POST",
        "/streams/twin/kick?node=no-such-node",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 409);
}

async fn edge_states(control: std::net::SocketAddr) -> Vec<(String, String)> {
    let (_, edges) = api(control, "GET", "/edges", Some(ADMIN), None).await;
    edges
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
                    (s("id"), s("state"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The edges the director places viewers on.
async fn placed_edges(director: std::net::SocketAddr) -> Vec<String> {
    let (status, _, body) = get_bytes(director, "/director/placement").await;
    if status != 200 {
        return Vec::new();
    }
    let report: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    report["edges"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Two `ferry control` processes on one PostgreSQL, an origin, two edges, a
/// director and a worker, all given both control URLs. The control process
/// they talk to is SIGKILLed while ffmpeg publishes; then PostgreSQL itself
/// is down for 10 s. Nothing an operator set is lost, publishing and
/// playing go on, and the cluster follows changes through the other one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_outlives_a_control_process_and_a_database_restart() {
    let mut pg = postgres::PgServer::start();
    let mut c1 = cluster::control_node(&pg.url()).await;
    let c2 = cluster::control_node(&pg.url()).await;
    let controls = format!("{},{}", c1.url(), c2.url());

    // Configuration made through the first; read back through the second.
    let (status, created) = api(
        c1.http,
        "POST",
        "/streams",
        Some(ADMIN),
        Some(r#"{"name":"ha"}"#),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"]["key"].as_str().unwrap().to_owned();
    let (status, _) = api(c2.http, "GET", "/streams/ha", Some(ADMIN), None).await;
    assert_eq!(
        status, 200,
        "the second control process reads the same state"
    );

    let origin = start_with(|c| {
        c.control.url = controls.clone();
        c.streams.clear();
    })
    .await;
    let origin_http = origin.running.http_addr;
    let e1 = cluster::hls_edge_of(origin_http, &controls).await;
    let e2 = cluster::hls_edge_of(origin_http, &controls).await;
    let director_data = tempfile::tempdir().unwrap();
    let director = {
        let mut config = Config {
            data_dir: director_data.path().to_owned(),
            admin_token: ADMIN.into(),
            ..Config::default()
        };
        config.http.listen = "127.0.0.1:0".parse().unwrap();
        config.control.url = controls.clone();
        config.director.poll_ms = 200;
        ferry::director_role::start_director(&config).await.unwrap()
    };
    wait_for(
        "both edges live at the second control process",
        Duration::from_secs(30),
        || async {
            edge_states(c2.http)
                .await
                .iter()
                .filter(|e| e.1 == "live")
                .count()
                == 2
        },
    )
    .await;
    let ids: Vec<String> = edge_states(c1.http)
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();

    // A restream task, run by a worker that knows both control URLs.
    let port = free_port();
    let receiver = receiver(port).await;
    let task = json!({"kind": "restream", "config": {"url": format!("rtmp://127.0.0.1:{port}/live/mirrorkey")}}).to_string();
    let (status, t) = api(
        c1.http,
        "POST",
        "/streams/ha/tasks",
        Some(ADMIN),
        Some(&task),
    )
    .await;
    assert_eq!(status, 201, "{t}");
    let worker_dir = tempfile::tempdir().unwrap();
    let _worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "worker",
            "--id",
            "w1",
            "--token",
            ADMIN,
            "--control",
            &controls,
        ])
        .args([
            "--origin",
            &format!("rtmp://{}/live", origin.running.rtmp_addr),
        ])
        .arg("--data-dir")
        .arg(worker_dir.path())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let _encoder = publish_background(&origin.rtmp_url(&key), 100);
    wait_for(
        "the worker to restream",
        Duration::from_secs(30),
        || async { receiver.running.hub.is_live("mirror") },
    )
    .await;

    // An operator drains the second edge through the first control process.
    let (status, _) = api(
        c1.http,
        "POST",
        &format!("/edges/{}/drain", ids[1]),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 204);

    c1.signal("KILL");
    let killed = Instant::now();

    // A stream created after the kill publishes within a bound: the origin
    // moves to the second control process on its own.
    let (status, created) = api(
        c2.http,
        "POST",
        "/streams",
        Some(ADMIN),
        Some(r#"{"name":"fresh"}"#),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let fresh_key = created["key"]["key"].as_str().unwrap().to_owned();
    let asked = Instant::now();
    let _fresh = publish_background(&origin.rtmp_url(&fresh_key), 100);
    wait_for(
        "the new stream to go live",
        Duration::from_secs(15),
        || async { origin.running.hub.is_live("fresh") },
    )
    .await;
    let authorised = asked.elapsed();
    eprintln!(
        "a new stream published {authorised:?} after asking, control killed {:?} before",
        killed.elapsed()
    );
    assert!(
        authorised < Duration::from_secs(8),
        "publish authorised after {authorised:?}"
    );

    // The drain made before the kill holds (the other process reads drains
    // within a second); the edges beat into the other.
    wait_for(
        "the drain and the live edge at the other control process",
        Duration::from_secs(5),
        || async {
            let states = edge_states(c2.http).await;
            states.contains(&(ids[1].clone(), "draining".into()))
                && states.contains(&(ids[0].clone(), "live".into()))
        },
    )
    .await;
    // The worker's task keeps running (renewed through the other URL).
    tokio::time::sleep(worker::LEASE + Duration::from_secs(2)).await;
    assert!(
        receiver.running.hub.is_live("mirror"),
        "the restream stopped"
    );
    let (_, tasks) = api(c2.http, "GET", "/streams/ha/tasks", Some(ADMIN), None).await;
    assert_eq!(tasks[0]["worker"], json!("w1"), "{tasks}");
    assert_eq!(tasks[0]["state"], json!("running"), "{tasks}");

    // An edge started after the kill reaches the director through control.
    let e3 = cluster::hls_edge_of(origin_http, &controls).await;
    wait_for(
        "the director to place viewers on the new edge",
        Duration::from_secs(30),
        || async {
            let placed = placed_edges(director.http_addr).await;
            let new: Vec<String> = edge_states(c2.http)
                .await
                .into_iter()
                .filter(|(id, s)| s == "live" && !ids.contains(id))
                .map(|e| e.0)
                .collect();
            new.len() == 1 && placed.contains(&new[0]) && !placed.contains(&ids[1])
        },
    )
    .await;
    let (status, _, _) = get_bytes(director.http_addr, "/hls/ha/master.m3u8").await;
    assert_eq!(status, 200, "the director serves through the kill");

    // PostgreSQL down for 10 s, then back: the control process answers
    // again, nothing is lost, and the stream was never interrupted.
    pg.stop();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        origin.running.hub.is_live("ha"),
        "publishing stopped with the database"
    );
    pg.start_again();
    wait_for(
        "control to answer from the database again",
        Duration::from_secs(20),
        || async { api(c2.http, "GET", "/streams", Some(ADMIN), None).await.0 == 200 },
    )
    .await;
    let (_, streams) = api(c2.http, "GET", "/streams", Some(ADMIN), None).await;
    let names: Vec<&str> = streams
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["fresh", "ha"]);
    wait_for(
        "the edges to beat again",
        Duration::from_secs(20),
        || async {
            let s = edge_states(c2.http).await;
            s.contains(&(ids[1].clone(), "draining".into()))
                && s.iter().filter(|e| e.1 == "live").count() == 2
        },
    )
    .await;
    wait_for(
        "the restream to run after the database restart",
        Duration::from_secs(20),
        || async { receiver.running.hub.is_live("mirror") },
    )
    .await;

    // The killed process comes back and shares the same state.
    c1.restart().await;
    let (_, states) = api(c1.http, "GET", "/streams/ha", Some(ADMIN), None).await;
    assert_eq!(states["name"], json!("ha"));
    wait_for(
        "the restarted control process to see the drain",
        Duration::from_secs(10),
        || async {
            edge_states(c1.http)
                .await
                .contains(&(ids[1].clone(), "draining".into()))
        },
    )
    .await;
    drop((e1, e2, e3));
}
