//! The control plane through its real HTTP API: stream lifecycle with real
//! ffmpeg publishers, key rotation and kicks, token checks on every route of
//! the OpenAPI document, validation errors, and state that survives a restart.

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Runs the test `$name(db)` twice: on SQLite (`db` is `None`) and on a
/// PostgreSQL server of its own (`db` is its URL).
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(None).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let pg = super::postgres::PgServer::start();
                super::$name(Some(pg.url())).await
            }
        }
    };
}

on_both_backends!(stream_lifecycle_through_the_api);
async fn stream_lifecycle_through_the_api(db: Option<String>) {
    let server = start_on(db.as_deref()).await;
    let http = server.running.http_addr;
    let tok = Some(ADMIN);

    let (status, created) = api(http, "POST", "/streams", tok, Some(r#"{"name":"studio"}"#)).await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"]["key"].as_str().unwrap().to_owned();
    let key_id = created["key"]["id"].as_i64().unwrap();
    let (status, _) = api(http, "POST", "/streams", tok, Some(r#"{"name":"studio"}"#)).await;
    assert_eq!(status, 409, "duplicate name");

    // The key is never shown again: lists carry a hint only.
    let (_, listed) = api(http, "GET", "/streams/studio", tok, None).await;
    assert!(!listed.to_string().contains(&key), "key leaked: {listed}");
    assert_eq!(
        listed["keys"][0]["hint"].as_str().unwrap(),
        format!("{}…(48 chars)", &key[..4])
    );

    // Publish with the key; the API shows it live with what it carries.
    let mut encoder = publish_background(&server.rtmp_url(&key), 10);
    wait_for("studio to be live", Duration::from_secs(10), || async {
        api(http, "GET", "/streams/studio", tok, None).await.1["live"]["live"] == json!(true)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, s) = api(http, "GET", "/streams/studio", tok, None).await;
    let live = &s["live"];
    assert!(
        live["publisher"]
            .as_str()
            .unwrap()
            .starts_with("rtmp://127.0.0.1:"),
        "{live}"
    );
    assert!(
        live["video_codec"].as_str().unwrap().starts_with("avc1."),
        "{live}"
    );
    assert_eq!(live["audio_codec"], json!("mp4a.40.2"));
    let bitrate = live["bitrate"].as_u64().unwrap();
    assert!(
        (1_500_000..4_000_000).contains(&bitrate),
        "bitrate {bitrate}"
    );
    let fps = live["fps"].as_f64().unwrap();
    assert!((20.0..40.0).contains(&fps), "fps {fps}");
    // A 2 s GOP (what OBS sends by default) against 2 s segments: fine.
    assert_eq!(live["keyframe_interval_s"], json!(2.0), "{live}");
    assert_eq!(live["warnings"], json!([]), "{live}");
    // The packager feeds on it; nobody watches.
    assert_eq!(live["consumers"]["hls"], json!(1), "{live}");
    assert_eq!(
        live["audience"],
        json!({"hls": 0, "rtmp": 0, "requests": 0, "egress_bytes": 0}),
        "{live}"
    );
    // ffmpeg announces its frame rate (onMetaData), and sends it: no
    // low-fps warning above; no ladder here.
    let nominal = live["nominal_fps"].as_f64().unwrap_or(0.0);
    assert!((fps - nominal).abs() < nominal * 0.2, "{live}");
    assert_eq!(live["rungs"], json!([]), "{live}");

    // Rotate: the live publisher keeps going; the old key is refused next time.
    let (status, rotated) = api(
        http,
        "POST",
        &format!("/streams/studio/keys/{key_id}/rotate"),
        tok,
        None,
    )
    .await;
    assert_eq!(status, 201, "{rotated}");
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    assert!(
        encoder.try_wait().unwrap().is_none(),
        "rotation cut the live publisher"
    );

    // Kick: the publisher is disconnected.
    let (status, _) = api(http, "POST", "/streams/studio/kick", tok, None).await;
    assert_eq!(status, 204);
    let ended = tokio::time::timeout(Duration::from_secs(10), encoder.wait()).await;
    assert!(ended.is_ok(), "ffmpeg still publishing after a kick");
    let (status, err) = api(http, "POST", "/streams/studio/kick", tok, None).await;
    assert_eq!(status, 409, "{err}");

    let (ok, err) = publish_file(&server.rtmp_url(&key), &sample("h264-aac-240p25.flv")).await;
    assert!(!ok && err.contains("unknown stream key"), "old key: {err}");
    let (ok, err) = publish_file(&server.rtmp_url(&new_key), &sample("h264-aac-240p25.flv")).await;
    assert!(ok, "new key refused: {err}");

    // Disabled streams are refused with a reason.
    let (status, _) = api(
        http,
        "PATCH",
        "/streams/studio",
        tok,
        Some(r#"{"enabled":false}"#),
    )
    .await;
    assert_eq!(status, 200);
    let (ok, err) = publish_file(&server.rtmp_url(&new_key), &sample("h264-aac-240p25.flv")).await;
    assert!(!ok && err.contains("disabled"), "disabled stream: {err}");

    let (status, _) = api(http, "DELETE", "/streams/studio", tok, None).await;
    assert_eq!(status, 204);
    let (status, err) = api(http, "GET", "/streams/studio", tok, None).await;
    assert_eq!(status, 404, "{err}");
    assert!(err["error"].as_str().unwrap().contains("studio"));
}

/// Every operation of the OpenAPI document, with path parameters filled in.
async fn operations(http: std::net::SocketAddr) -> Vec<(String, String)> {
    let (status, doc) = api(http, "GET", "/openapi.json", None, None).await;
    assert_eq!(status, 200, "the OpenAPI document needs no token");
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let path = path.replace("{name}", STREAM).replace("{id}", "1");
            ops.push((method.to_uppercase(), path));
        }
    }
    assert!(ops.len() >= 15, "only {} operations documented", ops.len());
    ops
}

on_both_backends!(every_route_refuses_a_missing_or_wrong_token);
async fn every_route_refuses_a_missing_or_wrong_token(db: Option<String>) {
    let server = start_on(db.as_deref()).await;
    let http = server.running.http_addr;
    for (method, path) in operations(http).await {
        for token in [None, Some("wrong-token"), Some("")] {
            let (status, body) = api(http, &method, &path, token, Some("{}")).await;
            assert_eq!(status, 401, "{method} {path} with {token:?}: {body}");
            assert!(body["error"].as_str().unwrap().contains("token"), "{body}");
        }
    }
    let (status, _) = api(http, "GET", "/streams", Some(ADMIN), None).await;
    assert_eq!(status, 200);
    // Tokens: made once, listed as hints, deleted; the last admin token stays.
    let (made_id, made_token) = node_token(http).await;
    let (_, list) = api(http, "GET", "/tokens", Some(ADMIN), None).await;
    assert!(
        !list.to_string().contains(&made_token),
        "token shown: {list}"
    );
    let admin_id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["role"] == json!("admin"))
        .unwrap()["id"]
        .clone();
    let (status, err) = api(
        http,
        "DELETE",
        &format!("/tokens/{admin_id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 409, "{err}");
    let (status, _) = api(
        http,
        "DELETE",
        &format!("/tokens/{made_id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 204);
}

on_both_backends!(invalid_bodies_get_400_with_a_reason);
async fn invalid_bodies_get_400_with_a_reason(db: Option<String>) {
    let server = start_on(db.as_deref()).await;
    let http = server.running.http_addr;
    let tok = Some(ADMIN);
    let cases: &[(&str, &str, &str, &str)] = &[
        ("POST", "/streams", "{", "invalid JSON"),
        ("POST", "/streams", "{}", "name"),
        ("POST", "/streams", r#"{"name":"a b"}"#, "letters"),
        ("POST", "/streams", r#"{"name":"x","colour":1}"#, "colour"),
        (
            "PATCH",
            &format!("/streams/{STREAM}"),
            r#"{"enabled":"yes"}"#,
            "enabled",
        ),
        (
            "POST",
            &format!("/streams/{STREAM}/tasks"),
            r#"{"kind":"teleport","config":{}}"#,
            "unknown task type",
        ),
        (
            "POST",
            &format!("/streams/{STREAM}/tasks"),
            r#"{"kind":"restream","config":{"url":"http://x/a/b"}}"#,
            "rtmp://",
        ),
        (
            "POST",
            &format!("/streams/{STREAM}/tasks"),
            r#"{"kind":"restream","config":{}}"#,
            "url",
        ),
        ("GET", "/tasks/abc", "", "numeric id"),
        (
            "PATCH",
            &format!("/streams/{STREAM}"),
            "{}",
            "nothing to change",
        ),
        (
            "PATCH",
            &format!("/streams/{STREAM}"),
            r#"{"settings":{"hls_container":"mkv"}}"#,
            "invalid settings",
        ),
        (
            "PATCH",
            &format!("/streams/{STREAM}"),
            r#"{"settings":{"rungs":[{"name":"a/b","height":360,"video_kbps":700}]}}"#,
            "rung name",
        ),
        (
            "POST",
            "/nodes/heartbeat",
            r#"{"id":"n1","role":"king","address":"x","version":"1"}"#,
            "role",
        ),
    ];
    for (method, path, body, says) in cases {
        let body = (!body.is_empty()).then_some(*body);
        let (status, err) = api(http, method, path, tok, body).await;
        assert_eq!(status, 400, "{method} {path} {body:?}: {err}");
        let msg = err["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains(says),
            "{method} {path}: {msg:?} should mention {says:?}"
        );
    }
}

on_both_backends!(state_survives_a_restart);
async fn state_survives_a_restart(db: Option<String>) {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_owned();
    let first = start_with(|c| {
        c.data_dir = dir.clone();
        c.control.database_url = db.clone().unwrap_or_default();
    })
    .await;
    let http = first.running.http_addr;
    let (_, created) = api(
        http,
        "POST",
        "/streams",
        Some(ADMIN),
        Some(r#"{"name":"kept"}"#),
    )
    .await;
    let key = created["key"]["key"].as_str().unwrap().to_owned();
    let task = r#"{"kind":"restream","config":{"url":"rtmp://127.0.0.1:9/live/secret-target-key"},"enabled":false}"#;
    let (status, t) = api(http, "POST", "/streams/kept/tasks", Some(ADMIN), Some(task)).await;
    assert_eq!(status, 201, "{t}");
    assert!(
        !t.to_string().contains("secret-target-key"),
        "target key shown: {t}"
    );
    first.running.shutdown().await;

    let second = start_with(|c| {
        c.data_dir = dir.clone();
        c.control.database_url = db.clone().unwrap_or_default();
    })
    .await;
    let http = second.running.http_addr;
    let (status, s) = api(http, "GET", "/streams/kept", Some(ADMIN), None).await;
    assert_eq!(status, 200, "{s}");
    let (_, tasks) = api(http, "GET", "/streams/kept/tasks", Some(ADMIN), None).await;
    assert_eq!(tasks.as_array().unwrap().len(), 1, "{tasks}");
    assert_eq!(tasks[0]["kind"], json!("restream"));
    let (ok, err) = publish_file(&second.rtmp_url(&key), &sample("h264-aac-240p25.flv")).await;
    assert!(ok, "key lost across the restart: {err}");
    let _: Value = tasks;
}

/// A token of `role` made at `http`.
async fn token_of(http: std::net::SocketAddr, role: &str) -> String {
    let (status, made) = api(
        http,
        "POST",
        "/tokens",
        Some(ADMIN),
        Some(&format!(r#"{{"role":"{role}"}}"#)),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    made["token"].as_str().unwrap().to_owned()
}

fn edge_beat(id: &str, address: &str) -> String {
    serde_json::json!({
        "id": id, "role": "edge", "address": address, "version": "1",
        "edge": {"capacity": 5, "connections": 0, "egress_bps": 0, "hit_ratio": 1.0}
    })
    .to_string()
}

on_both_backends!(node_tokens_act_as_one_kind_and_a_node_id_belongs_to_its_first_token);
async fn node_tokens_act_as_one_kind_and_a_node_id_belongs_to_its_first_token(db: Option<String>) {
    let server = start_on(db.as_deref()).await;
    let http = server.running.http_addr;
    let beat = |token: String, body: String| async move {
        api(http, "POST", "/nodes/heartbeat", Some(&token), Some(&body)).await
    };
    // A director's token reads the edge list and does nothing else: it
    // cannot register an edge that the director would then send viewers to.
    let director = token_of(http, "director").await;
    assert_eq!(
        api(http, "GET", "/edges", Some(&director), None).await.0,
        200
    );
    assert_eq!(
        api(http, "GET", "/streams", Some(&director), None).await.0,
        403
    );
    let (status, body) = beat(director.clone(), edge_beat("rogue", "http://127.0.0.1:9")).await;
    assert_eq!(status, 403, "{body}");
    // Nor can a token for workers and origins.
    let (_, node) = node_token(http).await;
    assert_eq!(
        beat(node, edge_beat("rogue", "http://127.0.0.1:9")).await.0,
        403
    );
    // An edge token heartbeats as an edge only.
    let a = token_of(http, "edge").await;
    let (status, body) = beat(a.clone(), edge_beat("e1", "http://127.0.0.1:8081")).await;
    assert_eq!(status, 200, "{body}");
    let as_origin = r#"{"id":"e1","role":"origin","address":"http://x","version":"1"}"#;
    assert_eq!(beat(a.clone(), as_origin.into()).await.0, 403);
    assert_eq!(
        api(http, "POST", "/auth/publish", Some(&a), Some("{}"))
            .await
            .0,
        403
    );
    // The node id belongs to the token that first used it: a fresh edge
    // token, or the admin's, cannot take over its URL.
    let b = token_of(http, "edge").await;
    let (status, body) = beat(b, edge_beat("e1", "http://127.0.0.1:6666")).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = beat(ADMIN.into(), edge_beat("e1", "http://127.0.0.1:6666")).await;
    assert_eq!(status, 403);
    let (_, edges) = api(http, "GET", "/edges", Some(ADMIN), None).await;
    assert_eq!(edges[0]["url"], "http://127.0.0.1:8081", "{edges}");
    // An edge's address goes into playlists: a plain URL or nothing.
    for bad in [
        "http://e1/\"><x",
        "http://e1\r\n#EXT-X-ENDLIST",
        "http://e 1",
        "http://",
        "http://user:pw@e1",
        "http://e1/?a=1",
        "javascript:alert(1)",
    ] {
        let (status, body) = beat(a.clone(), edge_beat("e1", bad)).await;
        assert_eq!(status, 400, "{bad:?}: {body}");
    }
}

on_both_backends!(a_fleet_token_acts_as_many_edges_each_its_own_and_directors_report_viewers);
async fn a_fleet_token_acts_as_many_edges_each_its_own_and_directors_report_viewers(
    db: Option<String>,
) {
    let server = start_on(db.as_deref()).await;
    let http = server.running.http_addr;
    let beat = |token: String, body: String| async move {
        api(http, "POST", "/nodes/heartbeat", Some(&token), Some(&body)).await
    };
    // A Deployment's replicas share one token.
    let fleet = token_of(http, "edge_fleet").await;
    for (id, port) in [("ferry-edge-a", 8081), ("ferry-edge-b", 8082)] {
        let (status, body) = beat(
            fleet.clone(),
            edge_beat(id, &format!("http://127.0.0.1:{port}")),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = beat(
        fleet.clone(),
        edge_beat("ferry-edge-a", "http://127.0.0.1:8081"),
    )
    .await;
    assert_eq!(status, 200, "again: {body}");
    // Each id is the fleet's: another edge token cannot take one over.
    let other = token_of(http, "edge").await;
    let (status, body) = beat(other, edge_beat("ferry-edge-b", "http://10.9.9.9:80")).await;
    assert_eq!(status, 403, "{body}");
    // Still edges only.
    let as_origin = r#"{"id":"ferry-edge-c","role":"origin","address":"http://x","version":"1"}"#;
    assert_eq!(beat(fleet.clone(), as_origin.into()).await.0, 403);
    // A director reports its viewers per edge; the edge list shows their sum.
    let director = token_of(http, "director").await;
    let report = serde_json::json!({
        "id": "dir-1", "role": "director", "address": "http://127.0.0.1:9000", "version": "1",
        "viewers": {"ferry-edge-a": 7, "ferry-edge-b": 2}
    });
    let (status, body) = beat(director.clone(), report.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let (_, edges) = api(http, "GET", "/edges", Some(ADMIN), None).await;
    let viewers: Vec<(String, u64)> = edges
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_owned(),
                e["viewers"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        viewers,
        [("ferry-edge-a".into(), 7), ("ferry-edge-b".into(), 2)]
    );
    // Only directors report viewers, and a director token cannot be an edge.
    let mut forged = serde_json::from_str::<serde_json::Value>(&edge_beat(
        "ferry-edge-a",
        "http://127.0.0.1:8081",
    ))
    .unwrap();
    forged["viewers"] = serde_json::json!({"ferry-edge-a": 1000});
    assert_eq!(beat(fleet.clone(), forged.to_string()).await.0, 400);
    // Audiences: a director counts HLS viewers, an edge RTMP players, and
    // neither the other's; both add up per stream.
    let mut players = serde_json::from_str::<serde_json::Value>(&edge_beat(
        "ferry-edge-a",
        "http://127.0.0.1:8081",
    ))
    .unwrap();
    players["audience"] =
        serde_json::json!({"studio": {"rtmp": 3, "requests": 10, "egress_bytes": 5000}});
    assert_eq!(beat(fleet.clone(), players.to_string()).await.0, 200);
    players["audience"] = serde_json::json!({"studio": {"hls": 3}});
    assert_eq!(beat(fleet.clone(), players.to_string()).await.0, 400);
    players["audience"] = serde_json::json!({"studio": {"variants": {"720p": 3}}});
    assert_eq!(beat(fleet.clone(), players.to_string()).await.0, 400);
    // Only origins report ingest.
    let mut ingest = players.clone();
    ingest["audience"] = serde_json::json!({});
    ingest["ingest"] = serde_json::json!({"studio": {"bytes_in": 1}});
    assert_eq!(beat(fleet.clone(), ingest.to_string()).await.0, 400);
    players["audience"] = serde_json::json!({"bad name!": {"rtmp": 1}});
    assert_eq!(beat(fleet, players.to_string()).await.0, 400);
    let mut watched = report.clone();
    watched["audience"] = serde_json::json!({"studio": {"hls": 40}});
    assert_eq!(beat(director.clone(), watched.to_string()).await.0, 200);
    watched["audience"] = serde_json::json!({"studio": {"rtmp": 40}});
    assert_eq!(beat(director.clone(), watched.to_string()).await.0, 400);
    watched["audience"] = serde_json::json!({"studio": {"hls": 40, "egress_bytes": 1}});
    assert_eq!(beat(director.clone(), watched.to_string()).await.0, 400);
    watched["audience"] =
        serde_json::json!({"studio": {"hls": 40, "variants": {"720p": 30, "360p": 10}}});
    assert_eq!(beat(director.clone(), watched.to_string()).await.0, 200);
    let (_, created) = api(
        http,
        "POST",
        "/streams",
        Some(ADMIN),
        Some(r#"{"name":"studio"}"#),
    )
    .await;
    assert!(created["stream"]["name"] == "studio", "{created}");
    let (_, live) = api(http, "GET", "/live", Some(ADMIN), None).await;
    assert_eq!(
        live["studio"]["audience"],
        serde_json::json!({"hls": 40, "rtmp": 3, "variants": {"720p": 30, "360p": 10},
            "requests": 10, "egress_bytes": 5000}),
        "{live}"
    );
    let (_, node) = node_token(http).await;
    assert_eq!(
        beat(node, report.to_string()).await.0,
        403,
        "node tokens are not directors"
    );
}

/// A source whose keyframes are 10 s apart (against 2 s segments) is warned
/// of, with what to change; the warning names the interval it measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_keyframe_interval_is_warned_of_with_the_setting_to_change() {
    let server = start().await;
    let http = server.running.http_addr;
    let _encoder = tokio::process::Command::new(ffmpeg())
        .args(["-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x240:rate=30")
        .args(["-t", "25", "-c:v", "libx264", "-preset", "ultrafast"])
        .args([
            "-g",
            "300",
            "-keyint_min",
            "300",
            "-sc_threshold",
            "0",
            "-f",
            "flv",
        ])
        .arg(server.rtmp_url(KEY))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let live = || async {
        let (_, live) = api(http, "GET", "/live", Some(ADMIN), None).await;
        live[STREAM].clone()
    };
    // Known as soon as the open GOP passes the target, exactly after 10 s.
    wait_for("the full interval", Duration::from_secs(25), || async {
        live().await["keyframe_interval_s"].as_f64().unwrap_or(0.0) >= 9.99
    })
    .await;
    let status = live().await;
    let warnings = status["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{status}");
    assert_eq!(warnings[0]["code"], "keyframe_interval");
    let message = warnings[0]["message"].as_str().unwrap();
    for words in [
        "every 10.0 s",
        "2 s segment target",
        "Keyframe Interval = 2",
    ] {
        assert!(message.contains(words), "{words:?} not in {message:?}");
    }
}

/// Workers claiming through different control processes at the same
/// instant: on PostgreSQL each task goes to exactly one of them (the lease
/// is taken with a conditional write, not read-then-write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_on_postgres_lease_each_task_once() {
    let pg = postgres::PgServer::start();
    let db = std::sync::Arc::new(control::Db::connect(&pg.url()).await.unwrap());
    // A second pool, as a second control process has.
    let other = std::sync::Arc::new(control::Db::connect(&pg.url()).await.unwrap());
    db.create_stream("s", true).await.unwrap();
    for _ in 0..20 {
        db.create_task("s", "restream", &json!({}), true)
            .await
            .unwrap();
    }
    let live = vec!["s".to_owned()];
    let until = control::db::now_ms() + 60_000;
    let mut claims = Vec::new();
    for w in 0..8 {
        let db = if w % 2 == 0 {
            db.clone()
        } else {
            other.clone()
        };
        let live = live.clone();
        claims.push(tokio::spawn(async move {
            db.claim_tasks(&format!("w{w}"), &live, until, 100)
                .await
                .unwrap()
        }));
    }
    let mut taken = Vec::new();
    for c in claims {
        taken.extend(c.await.unwrap().into_iter().map(|t| (t.id, t.worker)));
    }
    let mut ids: Vec<i64> = taken.iter().map(|t| t.0).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "every task leased");
    assert_eq!(taken.len(), 20, "no task leased twice: {taken:?}");
    // What the database says agrees with what each worker was told.
    for t in db.tasks(Some("s")).await.unwrap() {
        assert!(taken.contains(&(t.id, t.worker.clone())), "{t:?}");
    }
}
