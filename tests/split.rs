//! The control plane and the origin as separate servers (`ferry control` and
//! `ferry serve` with `[control] url`): the origin asks control over HTTP
//! whether a key may publish, reports its live streams, and carries out kicks;
//! a `ferry worker` of that control plane restreams the stream from the origin.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

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
