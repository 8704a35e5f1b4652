//! The control plane against operator mistakes and stolen or buggy node
//! tokens: seeds that come back, old admin tokens, weak secrets, one token
//! acting as many nodes, oversized heartbeats, key probing.

use crate::common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_seed_stays_deleted_and_a_changed_env_token_revokes_the_old() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_owned();
    let first = start_with(|c| c.data_dir = dir.clone()).await;
    let http = first.running.http_addr;
    let (status, _) = api(
        http,
        "DELETE",
        &format!("/streams/{STREAM}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 204);
    first.running.shutdown().await;

    let new_admin = "a-new-admin-token-after-rotation";
    let second = start_with(|c| {
        c.data_dir = dir.clone();
        c.admin_token = new_admin.into();
    })
    .await;
    let http = second.running.http_addr;
    let (status, body) = api(
        http,
        "GET",
        &format!("/streams/{STREAM}"),
        Some(new_admin),
        None,
    )
    .await;
    assert_eq!(status, 404, "the deleted seed came back: {body}");
    let (status, _) = api(http, "GET", "/streams", Some(ADMIN), None).await;
    assert_eq!(status, 401, "the previous FERRY_ADMIN_TOKEN still works");
    // The seeded key does not publish a stream that is gone.
    let (ok, _) = publish_file(&second.rtmp_url(KEY), &sample("h264-aac-240p25.flv")).await;
    assert!(!ok, "the deleted stream's key still publishes");
}

#[tokio::test]
async fn weak_secrets_are_refused_at_start() {
    let data = tempfile::tempdir().unwrap();
    let mut config = ferry::config::Config {
        data_dir: data.path().to_owned(),
        admin_token: "x".into(),
        ..ferry::config::Config::default()
    };
    config.rtmp.listen = "127.0.0.1:0".parse().unwrap();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    let err = ferry::serve::start(&config)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("at least 16"), "{err}");
    config.admin_token = ADMIN.into();
    config.streams = vec![ferry::config::StreamConfig {
        name: "s".into(),
        key: String::new(),
        settings: Default::default(),
    }];
    let err = ferry::serve::start(&config)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("at least 8"), "{err}");
}

#[tokio::test]
async fn a_node_token_acts_as_one_node() {
    let server = start().await;
    let http = server.running.http_addr;
    let (_, token) = node_token(http).await;
    let beat = |id: &str| {
        json!({"id": id, "role": "worker", "address": "-", "version": "t", "load": 0.1, "live": []})
            .to_string()
    };
    let (status, body) = api(
        http,
        "POST",
        "/nodes/heartbeat",
        Some(&token),
        Some(&beat("n1")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api(
        http,
        "POST",
        "/nodes/heartbeat",
        Some(&token),
        Some(&beat("n2")),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("n1"), "{body}");
    let (status, _) = api(http, "POST", "/workers/n2/claim", Some(&token), Some("{}")).await;
    assert_eq!(status, 403, "claims as another worker");
    let (status, body) = api(http, "POST", "/workers/n1/claim", Some(&token), Some("{}")).await;
    assert_eq!(status, 200, "{body}");
    // Another token is another node.
    let (_, other) = node_token(http).await;
    let (status, _) = api(
        http,
        "POST",
        "/nodes/heartbeat",
        Some(&other),
        Some(&beat("n2")),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn heartbeats_are_bounded() {
    let server = start().await;
    let http = server.running.http_addr;
    let (_, token) = node_token(http).await;
    let long = json!({"id": "n1", "role": "origin", "address": "a".repeat(10_000), "version": "t", "live": []});
    let (status, body) = api(
        http,
        "POST",
        "/nodes/heartbeat",
        Some(&token),
        Some(&long.to_string()),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let names: Vec<String> = (0..2000).map(|i| format!("s{i}")).collect();
    let many = json!({"id": "n1", "role": "origin", "address": "x", "version": "t", "live": names});
    let (status, body) = api(
        http,
        "POST",
        "/nodes/heartbeat",
        Some(&token),
        Some(&many.to_string()),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let huge = json!({"id": "n1", "role": "origin", "address": "x", "version": "t", "live": ["x".repeat(1 << 20)]});
    let (status, _) = api(
        http,
        "POST",
        "/nodes/heartbeat",
        Some(&token),
        Some(&huge.to_string()),
    )
    .await;
    assert_eq!(status, 413);
    let (_, nodes) = api(http, "GET", "/nodes", Some(ADMIN), None).await;
    assert!(
        nodes.to_string().len() < 10_000,
        "{} bytes",
        nodes.to_string().len()
    );
}

#[tokio::test]
async fn publish_checks_are_rate_limited_per_token() {
    let server = start().await;
    let http = server.running.http_addr;
    let (_, token) = node_token(http).await;
    let mut limited = 0;
    for i in 0..(control::AUTH_CHECKS_PER_WINDOW + 5) {
        let body = json!({"key": format!("guess-{i}")}).to_string();
        let (status, _) = api(http, "POST", "/auth/publish", Some(&token), Some(&body)).await;
        match status {
            403 => {}
            429 => limited += 1,
            other => panic!("status {other}"),
        }
    }
    assert_eq!(limited, 5);
    // Another token (another origin) is unaffected.
    let (_, other) = node_token(http).await;
    let body = json!({"key": KEY}).to_string();
    let (status, grant) = api(http, "POST", "/auth/publish", Some(&other), Some(&body)).await;
    assert_eq!(status, 200, "{grant}");
}

/// A node keeps its id across restarts (kept in its data directory): the
/// registry shows one node, not one more per restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_keeps_its_id() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_owned();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let server = start_with(|c| c.data_dir = dir.clone()).await;
        let http = server.running.http_addr;
        wait_for(
            "the node registers",
            std::time::Duration::from_secs(10),
            || async {
                let listed = api(http, "GET", "/nodes", Some(ADMIN), None).await.1;
                listed.as_array().is_some_and(|a| !a.is_empty())
            },
        )
        .await;
        let listed = api(http, "GET", "/nodes", Some(ADMIN), None).await.1;
        let nodes = listed.as_array().unwrap();
        assert_eq!(nodes.len(), 1, "{listed}");
        assert_eq!(nodes[0]["role"], json!("all"));
        ids.push(nodes[0]["id"].as_str().unwrap().to_owned());
        server.running.shutdown().await;
    }
    assert_eq!(ids[0], ids[1]);
    assert!(ids[0].starts_with("node-"), "{}", ids[0]);
}
