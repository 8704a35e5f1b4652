//! Tasks on separate `ferry worker` processes: two workers and one control
//! plane (`ferry serve` with its own worker off); the worker running a restream
//! is killed, and the other takes the task over once the lease expires.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn spawn_worker(server: &TestServer, id: &str, token: &str) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["worker", "--id", id])
        .args(["--control", &format!("http://{}", server.running.http_addr)])
        .args(["--token", token])
        .args([
            "--origin",
            &format!("rtmp://{}/live", server.running.rtmp_addr),
        ])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_task_moves_to_another_worker() {
    let port = free_port();
    let receiver = receiver(port).await;
    let origin = start_with(|c| c.control.local_worker = false).await;
    let http = origin.running.http_addr;
    let target = format!("rtmp://127.0.0.1:{port}/live/mirrorkey");
    let task_path = format!("/tasks/{}", add_restream_task(http, STREAM, &target).await);

    // Workers get a `node` token: enough to take tasks, nothing else.
    // One token per worker: a node token acts as one node id.
    let (_, token1) = node_token(http).await;
    let (_, token2) = node_token(http).await;
    let (status, refused) = api(http, "GET", "/streams", Some(&token1), None).await;
    assert_eq!(status, 403, "{refused}");
    let mut workers = vec![
        ("w1", spawn_worker(&origin, "w1", &token1)),
        ("w2", spawn_worker(&origin, "w2", &token2)),
    ];
    let url = origin.rtmp_url(KEY);
    let publisher =
        tokio::spawn(async move { publish_looped(&url, &sample("h264-aac-720p30.flv"), 10).await });

    wait_for("a worker to restream", Duration::from_secs(20), || async {
        receiver.running.hub.is_live("mirror")
    })
    .await;
    let holder = api(http, "GET", &task_path, Some(ADMIN), None).await.1["worker"]
        .as_str()
        .unwrap()
        .to_owned();
    let i = workers
        .iter()
        .position(|(id, _)| *id == holder)
        .unwrap_or_else(|| panic!("unknown holder {holder}"));
    let (dead, mut child) = workers.remove(i);

    // Kill it outright: no goodbye, its lease just stops being renewed.
    child.kill().await.unwrap();
    let killed = Instant::now();
    wait_for(
        "the receiver to notice",
        Duration::from_secs(10),
        || async { !receiver.running.hub.is_live("mirror") },
    )
    .await;
    wait_for(
        "another worker to take over",
        Duration::from_secs(30),
        || async { receiver.running.hub.is_live("mirror") },
    )
    .await;
    let took = killed.elapsed();
    let t = api(http, "GET", &task_path, Some(ADMIN), None).await.1;
    let now_held_by = t["worker"].as_str().unwrap();
    eprintln!(
        "worker {dead} killed; {now_held_by} restreams again after {took:?} (lease {:?})",
        worker::LEASE
    );
    assert_eq!(now_held_by, workers[0].0, "{t}");
    assert!(
        took < worker::LEASE + Duration::from_secs(5),
        "takeover took {took:?}, lease is {:?}",
        worker::LEASE
    );
    // Both workers registered as nodes.
    let (_, nodes) = api(http, "GET", "/nodes", Some(ADMIN), None).await;
    for id in ["w1", "w2"] {
        assert!(
            nodes
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["id"] == json!(id) && n["role"] == json!("worker")),
            "{id} missing from {nodes}"
        );
    }
    publisher.abort();
}
