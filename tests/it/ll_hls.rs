//! Low-Latency HLS end to end, with the real ffmpeg publishing: parts and
//! blocking reloads at the origin (answered as soon as the part exists,
//! refused when too far ahead, delta updates), a segment that is its parts
//! end to end, independent parts that start with a keyframe, held requests
//! answered when the publisher leaves, one origin request for 500 viewers
//! blocked behind an edge, and hls.js in lowLatencyMode playing it.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::player::play_with;
use common::*;
use ferry::config::Config;

const PLAYLIST: &str = "/hls/demo/source/index.m3u8";

async fn ll_origin(edit: impl FnOnce(&mut Config)) -> TestServer {
    start_with(|c| {
        c.hls.low_latency = true;
        c.hls.part_seconds = 0.5;
        c.hls.window = 10;
        edit(c);
    })
    .await
}

async fn get(addr: SocketAddr, path: &str) -> (u16, bytes::Bytes) {
    let r = http_client()
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap())
}

async fn text(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, body) = get(addr, path).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// `(msn, part)` of the preload hint (`...-12.3.m4s`): the next part.
pub(crate) fn hinted(playlist: &str) -> Option<(String, u64, u64)> {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))?;
    let uri = line.split("URI=\"").nth(1)?.split('"').next()?.to_owned();
    let stem = uri.strip_suffix(".m4s")?;
    let (seg, part) = stem.rsplit_once('.')?;
    let msn = seg.rsplit(['-', '/']).next()?.parse().ok()?;
    Some((uri.clone(), msn, part.parse().ok()?))
}

/// Waits until the origin lists parts for `demo`, with at least `segments`
/// complete segments; the playlist.
async fn wait_for_parts(addr: SocketAddr, segments: usize) -> String {
    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline {
        let (status, body) = text(addr, PLAYLIST).await;
        if status == 200
            && body.contains("#EXT-X-PART:")
            && body.matches("#EXTINF:").count() >= segments
        {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("no parts in time; last playlist:\n{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_reloads_wait_for_the_part_refuse_far_ahead_and_skip() {
    let server = ll_origin(|_| {}).await;
    let addr = server.running.http_addr;
    let _publisher = publish_background(&server.rtmp_url(KEY), 20);
    let playlist = wait_for_parts(addr, 1).await;
    assert!(playlist.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.5"));
    assert!(playlist.contains("#EXT-X-PART-INF:PART-TARGET=0.5"));
    assert!(playlist.contains("#EXT-X-MAP:URI="));

    // The next part: the answer comes when it exists, within about one part.
    let (uri, msn, part) = hinted(&playlist).expect("a preload hint");
    let asked = Instant::now();
    let (status, body) = text(addr, &format!("{PLAYLIST}?_HLS_msn={msn}&_HLS_part={part}")).await;
    let waited = asked.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("URI=\"{uri}\""))
            && !body.contains(&format!("PRELOAD-HINT:TYPE=PART,URI=\"{uri}\"")),
        "the answer lists part {uri}:\n{body}"
    );
    println!("blocking reload for the next part answered after {waited:?}");
    assert!(
        waited < Duration::from_millis(1500),
        "held {waited:?} for a 0.5 s part"
    );

    // The hinted part itself is held until complete, then served.
    let (_, body) = text(addr, PLAYLIST).await;
    let (uri, _, _) = hinted(&body).unwrap();
    let (status, part_bytes) = get(addr, &format!("/hls/demo/source/{uri}")).await;
    assert_eq!(status, 200);
    assert_eq!(&part_bytes[4..8], b"moof", "a part is a CMAF fragment");

    // More than two segments ahead: 400 at once.
    let asked = Instant::now();
    let (status, _) = text(addr, &format!("{PLAYLIST}?_HLS_msn={}", msn + 3)).await;
    assert_eq!(status, 400);
    assert!(asked.elapsed() < Duration::from_secs(1));
    // _HLS_part without _HLS_msn, and nonsense: 400.
    assert_eq!(text(addr, &format!("{PLAYLIST}?_HLS_part=1")).await.0, 400);
    assert_eq!(text(addr, &format!("{PLAYLIST}?_HLS_msn=x")).await.0, 400);
    // A part that never existed: 404.
    assert_eq!(get(addr, "/hls/demo/source/nope-1.9.m4s").await.0, 404);

    // Delta update: once more than 12 s (6 targets) are listed, older
    // segments are skipped and the rest is the full playlist's tail.
    wait_for_parts(addr, 8).await;
    let (_, full) = text(addr, PLAYLIST).await;
    let (status, delta) = text(addr, &format!("{PLAYLIST}?_HLS_skip=YES")).await;
    assert_eq!(status, 200);
    let skipped: usize = delta
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-SKIP:SKIPPED-SEGMENTS="))
        .expect("EXT-X-SKIP")
        .parse()
        .unwrap();
    assert!(skipped >= 1, "{delta}");
    assert!(delta.contains("#EXT-X-VERSION:9"));
    let uris = |p: &str| -> Vec<String> {
        p.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let (full_uris, delta_uris) = (uris(&full), uris(&delta));
    let full_seq = full
        .lines()
        .find(|l| l.starts_with("#EXT-X-MEDIA-SEQUENCE:"));
    let delta_seq = delta
        .lines()
        .find(|l| l.starts_with("#EXT-X-MEDIA-SEQUENCE:"));
    if full_seq == delta_seq {
        // The same window: the delta is the full list minus the skipped.
        assert_eq!(
            &full_uris[skipped..],
            &delta_uris[..full_uris.len() - skipped]
        );
    }
    assert!(
        server.running.http_addr == addr,
        "same server for both requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_make_up_their_segment_and_independent_parts_start_with_a_keyframe() {
    let server = ll_origin(|_| {}).await;
    let addr = server.running.http_addr;
    let _publisher = publish_background(&server.rtmp_url(KEY), 20);
    let playlist = wait_for_parts(addr, 2).await;
    // The newest complete segment and its parts, listed before its EXTINF.
    let lines: Vec<&str> = playlist.lines().collect();
    let extinf = lines
        .iter()
        .rposition(|l| l.starts_with("#EXTINF:"))
        .unwrap();
    let segment = lines[extinf + 1];
    let mut parts = Vec::new();
    let mut i = extinf;
    while i > 0 && lines[i - 1].starts_with("#EXT-X-PART:") {
        i -= 1;
        parts.insert(0, lines[i]);
    }
    assert!(
        parts.len() >= 3,
        "parts of {segment}: {parts:?}\n{playlist}"
    );
    let map = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .unwrap()
        .trim_end_matches('"');
    let (_, init) = get(addr, &format!("/hls/demo/source/{map}")).await;
    let part_target: f64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PART-INF:PART-TARGET="))
        .unwrap()
        .parse()
        .unwrap();
    let mut joined = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    for (n, line) in parts.iter().enumerate() {
        let uri = line
            .split("URI=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let (status, bytes) = get(addr, &format!("/hls/demo/source/{uri}")).await;
        assert_eq!(status, 200, "{uri}");
        joined.extend_from_slice(&bytes);
        let duration: f64 = line
            .split("DURATION=")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            duration <= part_target + 1e-9,
            "{line} is over PART-TARGET {part_target}"
        );
        assert!(
            duration <= 0.6,
            "{line}: parts keep close to the configured 0.5 s"
        );
        if line.contains("INDEPENDENT=YES") {
            // init + this part alone decodes from a keyframe.
            let file = dir.path().join(format!("part{n}.mp4"));
            std::fs::write(&file, [&init[..], &bytes[..]].concat()).unwrap();
            let out = std::process::Command::new(ffprobe())
                .args([
                    "-v",
                    "error",
                    "-select_streams",
                    "v",
                    "-show_entries",
                    "frame=key_frame",
                ])
                .args(["-read_intervals", "%+#1", "-of", "csv=p=0"])
                .arg(&file)
                .output()
                .unwrap();
            let first = String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned();
            assert_eq!(first.trim(), "1", "{uri} does not start with a keyframe");
        }
    }
    assert!(
        parts[0].contains("INDEPENDENT=YES"),
        "a segment's first part is independent"
    );
    let (status, whole) = get(addr, &format!("/hls/demo/source/{segment}")).await;
    assert_eq!(status, 200);
    assert_eq!(whole.len(), joined.len());
    assert!(
        whole[..] == joined[..],
        "{segment} is not its parts end to end"
    );

    // ffmpeg reads the low-latency playlist as a plain one, without errors.
    let (ok, log) = run_ffmpeg(
        &[
            "-v",
            "error",
            "-i",
            &format!("http://{addr}{PLAYLIST}"),
            "-t",
            "3",
            "-f",
            "null",
            "-",
        ],
        Duration::from_secs(30),
    )
    .await;
    assert!(ok && log.trim().is_empty(), "ffmpeg: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_requests_are_answered_when_the_publisher_leaves() {
    let server = ll_origin(|_| {}).await;
    let addr = server.running.http_addr;
    let mut publisher = publish_background(&server.rtmp_url(KEY), 20);
    let playlist = wait_for_parts(addr, 1).await;
    let (_, msn, _) = hinted(&playlist).unwrap();
    // Two segments ahead: held about 4 s; the publisher leaves meanwhile.
    let asked = Instant::now();
    let held = tokio::spawn(async move {
        text(
            addr,
            &format!("{PLAYLIST}?_HLS_msn={}&_HLS_part=0", msn + 2),
        )
        .await
    });
    let part_held = tokio::spawn({
        let (uri, _, _) = hinted(&playlist).unwrap();
        async move {
            // The hinted part may complete before the publisher leaves: 200
            // then, else 503 at the hold limit; never a hang.
            get(addr, &format!("/hls/demo/source/{uri}")).await.0
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    publisher.kill().await.unwrap();
    let (status, body) = tokio::time::timeout(Duration::from_secs(8), held)
        .await
        .expect("a held request is answered within the hold limit")
        .unwrap();
    println!(
        "held request answered after {:?}: {status}",
        asked.elapsed()
    );
    assert!(
        (status == 200 && body.contains("#EXT-X-ENDLIST")) || status == 503,
        "{status}: {body}"
    );
    let part_status = tokio::time::timeout(Duration::from_secs(8), part_held)
        .await
        .unwrap()
        .unwrap();
    assert!(part_status == 200 || part_status == 503, "{part_status}");
    // The stored playlist and segments still work once the live one is gone.
    let (status, body) = text(addr, PLAYLIST).await;
    assert_eq!(status, 200);
    assert!(body.contains("#EXT-X-ENDLIST"), "{body}");
}

/// An edge in front of the origin, in this process.
async fn edge_for(origin: SocketAddr) -> (ferry::serve::Running, tempfile::TempDir) {
    edge_with(origin, |_| {}).await
}

async fn edge_with(
    origin: SocketAddr,
    edit: impl FnOnce(&mut Config),
) -> (ferry::serve::Running, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: data.path().to_owned(),
        ..Config::default()
    };
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.http.max_connections = 4096;
    config.edge.origins = vec![format!("http://{origin}")];
    edit(&mut config);
    let running = ferry::edge_role::start_edge(&config).await.unwrap();
    (running, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_viewers_blocked_behind_an_edge_cost_one_origin_request() {
    let server = ll_origin(|c| c.http.max_connections = 4096).await;
    let addr = server.running.http_addr;
    let _publisher = publish_background(&server.rtmp_url(KEY), 20);
    let (edge, _data) = edge_for(addr).await;
    let playlist = wait_for_parts(addr, 1).await;
    let (uri, msn, part) = hinted(&playlist).unwrap();
    // Ask two parts ahead, so every viewer is surely waiting before it exists.
    let (msn, part) = if part >= 2 {
        (msn + 1, 0)
    } else {
        (msn, part + 1)
    };
    let before = server.metric("ferry_llhls_blocking_requests_total").await;
    let edge_addr = edge.http_addr;
    let c = http_client();
    let target = format!("http://{edge_addr}{PLAYLIST}?_HLS_msn={msn}&_HLS_part={part}");
    let started = Instant::now();
    let answers = futures_join(500, |_| {
        let (c, target) = (c.clone(), target.clone());
        async move {
            let r = c.get(&target).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    })
    .await;
    let elapsed = started.elapsed();
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert!(body.contains("#EXT-X-PART:"), "{body}");
    }
    assert!(
        answers.iter().all(|(_, b)| b == &answers[0].1),
        "every viewer got the same playlist"
    );
    let after = server.metric("ferry_llhls_blocking_requests_total").await;
    println!(
        "500 blocked viewers answered in {elapsed:?}; origin blocking requests: {}",
        after - before
    );
    assert_eq!(after - before, 1.0, "one origin request for 500 viewers");
    // And the hinted part through the edge.
    let (status, bytes) = get(edge_addr, &format!("/hls/demo/source/{uri}")).await;
    assert_eq!(status, 200);
    assert_eq!(&bytes[4..8], b"moof");
}

/// Runs `n` futures made by `f` at once; their outputs in order.
async fn futures_join<F, Fut, T>(n: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|i| tokio::spawn(f(i))).collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_js_plays_low_latency_from_the_origin_and_through_an_edge() {
    let server = ll_origin(|_| {}).await;
    let addr = server.running.http_addr;
    let _publisher = publish_background(&server.rtmp_url(KEY), 30);
    let (edge, _data) = edge_for(addr).await;
    wait_for_parts(addr, 2).await;
    for (name, at) in [("origin", addr), ("edge", edge.http_addr)] {
        let url = format!("http://{at}/hls/demo/master.m3u8");
        let p = play_with(&url, 15, true, || async {}).await;
        println!(
            "LL-HLS via {name}: played {:.1} s, longest stall {:.0} ms, latency p50 {:.0} ms p95 {:.0} ms",
            p.played, p.max_stall_ms, p.latency_p50_ms, p.latency_p95_ms
        );
        assert!(p.played > 10.0, "{name}: {}", p.summary);
        assert!(
            p.latency_p50_ms > 0.0,
            "{name}: no latency samples: {}",
            p.summary
        );
        // Generous here (two busy cores); the bench measures the target.
        assert!(p.latency_p50_ms < 4000.0, "{name}: {}", p.summary);
    }
    assert!(server.metric("ferry_llhls_parts_total").await > 20.0);
}

/// Parts (count and durations) of each complete segment listed with parts:
/// `msn -> [durations]`.
fn parts_by_segment(playlist: &str) -> std::collections::BTreeMap<u64, Vec<f64>> {
    let mut out = std::collections::BTreeMap::new();
    let mut first: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .unwrap()
        .parse()
        .unwrap();
    let mut pending = Vec::new();
    for line in playlist.lines() {
        if let Some(rest) = line.strip_prefix("#EXT-X-PART:DURATION=") {
            pending.push(rest.split(',').next().unwrap().parse::<f64>().unwrap());
        } else if !line.starts_with('#') && !line.is_empty() {
            if !pending.is_empty() {
                out.insert(first, std::mem::take(&mut pending));
            }
            first += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_latency_through_the_api_with_a_ladder_keeps_parts_aligned_across_variants() {
    let server = start().await;
    let http = server.running.http_addr;
    let settings = r#"{"settings":{"low_latency":true,"transcode":true,"rungs":[{"name":"144p","height":144,"video_kbps":200}]}}"#;
    let (status, s) = api(
        http,
        "PATCH",
        &format!("/streams/{STREAM}"),
        Some(ADMIN),
        Some(settings),
    )
    .await;
    assert_eq!(status, 200, "{s}");
    let _publisher = tokio::process::Command::new(ffmpeg())
        .args([
            "-nostdin",
            "-loglevel",
            "error",
            "-re",
            "-stream_loop",
            "10",
            "-i",
        ])
        .arg(sample("h264-aac-240p25.flv"))
        .args(["-c", "copy", "-f", "flv", &server.rtmp_url(KEY)])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let rung = "/hls/demo/144p/index.m3u8";
    let mut last = (String::new(), String::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "no aligned parts in time:\n{}\n{}",
            last.0,
            last.1
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (a, source) = text(http, PLAYLIST).await;
        let (b, ladder) = text(http, rung).await;
        last = (source.clone(), ladder.clone());
        if a != 200 || b != 200 {
            continue;
        }
        let (x, y) = (parts_by_segment(&source), parts_by_segment(&ladder));
        let common: Vec<_> = x.keys().filter(|k| y.contains_key(k)).collect();
        if common.len() < 2 {
            continue;
        }
        for msn in common {
            let (p, q) = (&x[msn], &y[msn]);
            assert_eq!(p.len(), q.len(), "segment {msn}: {p:?} vs {q:?}");
            for (d, e) in p.iter().zip(q) {
                // Within half a frame: a rung's segment ends on its own
                // keyframe, which may be a rounded millisecond off the source's.
                assert!((d - e).abs() < 0.02, "segment {msn}: {p:?} vs {q:?}");
            }
        }
        // Each variant reports the other's newest part.
        assert!(
            source.contains("#EXT-X-RENDITION-REPORT:URI=\"../144p/index.m3u8\",LAST-MSN="),
            "{source}"
        );
        assert!(
            ladder.contains("#EXT-X-RENDITION-REPORT:URI=\"../source/index.m3u8\",LAST-MSN="),
            "{ladder}"
        );
        break;
    }
}

/// `(media sequence of the open segment, hinted part)` from a playlist.
fn open_segment(playlist: &str) -> (u64, u64) {
    let (_, msn, part) = hinted(playlist).unwrap();
    (msn, part)
}

/// Requests made-up blocking reloads (random parts, two segments ahead)
/// and hangs up at once, as the probe did; `n` of them.
async fn flood_made_up_parts(edge: SocketAddr, msn: u64, n: usize) {
    let c = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let c = c.clone();
            // Spread over what a segment may hold and far past it.
            let part = (i * 7919) % 5000;
            let url = format!(
                "http://{edge}{PLAYLIST}?_HLS_msn={}&_HLS_part={part}",
                msn + 2
            );
            tokio::spawn(async move {
                let _ = c.get(url).send().await;
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
}

/// A viewer through `edge` for `run`: plain reload, blocking reload for the
/// hinted part, the hinted part; every answer must be a 200 that is not
/// stale. Returns the failures.
async fn viewer(edge: SocketAddr, run: Duration) -> Vec<String> {
    let c = http_client();
    let mut failures = Vec::new();
    let until = Instant::now() + run;
    while Instant::now() < until {
        let r = c
            .get(format!("http://{edge}{PLAYLIST}"))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let cs = r
            .headers()
            .get("cache-status")
            .map(|v| v.to_str().unwrap_or("").to_owned())
            .unwrap_or_default();
        let body = r.text().await.unwrap();
        if status != 200 || cs.contains("stale") {
            failures.push(format!("playlist {status} {cs}"));
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let Some((uri, msn, part)) = hinted(&body) else {
            continue;
        };
        let (status, _) = text(edge, &format!("{PLAYLIST}?_HLS_msn={msn}&_HLS_part={part}")).await;
        if status != 200 {
            failures.push(format!("blocking reload {status}"));
        }
        let (status, _) = get(edge, &format!("/hls/demo/source/{uri}")).await;
        if status != 200 {
            failures.push(format!("part {uri} {status}"));
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_parts_cannot_take_an_edges_fills_from_a_viewer() {
    let server = ll_origin(|c| c.http.max_connections = 4096).await;
    let addr = server.running.http_addr;
    let _publisher = publish_background(&server.rtmp_url(KEY), 20);
    // A small fill table, so the flood would fill it many times over.
    let (edge, _data) = edge_with(addr, |c| c.edge.max_fills = 64).await;
    let playlist = wait_for_parts(addr, 1).await;
    let (msn, _) = open_segment(&playlist);
    let before = server.metric("ferry_llhls_blocking_requests_total").await;
    let watching = tokio::spawn(viewer(edge.http_addr, Duration::from_secs(6)));
    for _ in 0..3 {
        flood_made_up_parts(edge.http_addr, msn, 300).await;
    }
    let failures = watching.await.unwrap();
    assert!(failures.is_empty(), "the viewer was hurt: {failures:?}");
    let held = server.metric("ferry_llhls_blocking_requests_total").await - before;
    let metrics = http_get(edge.http_addr, "/metrics").await;
    let refused = common::cluster::metric_sum(&metrics, "ferry_edge_ll_refused_total");
    println!("900 made-up parts: {held} origin blocking requests, {refused} refused at the edge");
    assert!(refused > 0.0, "parts past what a segment holds are refused");
    assert!(
        held < 120.0,
        "made-up parts are bounded per playlist: {held}"
    );
    // A part index past what a segment holds is a 400 at once, not a wait.
    let (status, _) = text(
        edge.http_addr,
        &format!("{PLAYLIST}?_HLS_msn={msn}&_HLS_part=4000"),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = text(edge.http_addr, &format!("{PLAYLIST}?_HLS_msn={}", msn + 50)).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_variants_of_a_segment_and_long_names_cost_the_origin_nothing() {
    let server = ll_origin(|_| {}).await;
    let addr = server.running.http_addr;
    let _publisher = publish_background(&server.rtmp_url(KEY), 20);
    let (edge, _data) = edge_for(addr).await;
    let playlist = wait_for_parts(addr, 2).await;
    let segment = playlist
        .lines()
        .find(|l| !l.starts_with('#') && l.ends_with(".m4s"))
        .unwrap()
        .to_owned();
    let edge_addr = edge.http_addr;
    let misses = || async {
        common::cluster::metric_sum(
            &http_get(edge_addr, "/metrics").await,
            "ferry_edge_misses_total",
        )
    };
    let before = misses().await;
    for i in 0..50 {
        let (status, _) = get(
            edge_addr,
            &format!("/hls/demo/source/{segment}?_HLS_msn={i}&_HLS_part={i}"),
        )
        .await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        misses().await - before,
        1.0,
        "50 query variants are one object"
    );
    // A name longer than a file name: 400 at the edge, 404 at the origin
    // (never a store failure that would put the origin in backoff).
    let long = format!("/hls/demo/source/{}.m4s", "x".repeat(300));
    assert_eq!(get(edge_addr, &long).await.0, 400);
    assert_eq!(get(addr, &long).await.0, 404);
    let failures = viewer(edge_addr, Duration::from_secs(2)).await;
    assert!(failures.is_empty(), "{failures:?}");
    // A blocking reload for the next whole segment waits as long as the
    // origin holds it (up to a segment and more), not the 1.5 s of a miss.
    let (open, _) = open_segment(&text(addr, PLAYLIST).await.1);
    let started = Instant::now();
    let (status, body) = text(edge_addr, &format!("{PLAYLIST}?_HLS_msn={}", open + 1)).await;
    println!(
        "next-segment blocking reload through the edge: {status} after {:?}",
        started.elapsed()
    );
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_requests_are_bounded_per_address_and_share_one_render() {
    let server = ll_origin(|c| c.hls.max_held_per_address = 40).await;
    let addr = server.running.http_addr;
    let _publisher = publish_background(&server.rtmp_url(KEY), 20);
    let playlist = wait_for_parts(addr, 1).await;
    let (_, msn, part) = hinted(&playlist).unwrap();
    let (msn, part) = if part >= 2 {
        (msn + 1, 0)
    } else {
        (msn, part + 1)
    };
    let renders = || async { server.metric("ferry_llhls_renders_total").await };
    let before = renders().await;
    let c = http_client();
    let target = format!("http://{addr}{PLAYLIST}?_HLS_msn={msn}&_HLS_part={part}");
    let answers = futures_join(60, |_| {
        let (c, target) = (c.clone(), target.clone());
        async move {
            let r = c.get(&target).send().await.unwrap();
            let retry = r.headers().contains_key("retry-after");
            (r.status().as_u16(), retry, r.text().await.unwrap())
        }
    })
    .await;
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    let refused = answers.iter().filter(|a| a.0 == 503 && a.1).count();
    let rendered = renders().await - before;
    println!("60 held from one address: {ok} answered, {refused} refused, {rendered} renders");
    assert_eq!(ok + refused, 60, "{answers:?}");
    assert!(
        refused >= 15,
        "the per-address bound held {} requests",
        60 - refused
    );
    assert!(
        rendered <= 4.0,
        "each held request rendered its own playlist: {rendered}"
    );
    let bodies: std::collections::HashSet<&str> = answers
        .iter()
        .filter(|a| a.0 == 200)
        .map(|a| a.2.as_str())
        .collect();
    assert!(bodies.len() <= 2, "one playlist for the same view");
    assert!(server.metric("ferry_llhls_held_refused_total").await >= 15.0);
}
