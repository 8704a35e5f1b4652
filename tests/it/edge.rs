//! `ferry edge` against scriptable origins on loopback: one origin fetch per
//! object however many clients ask, bodies streamed to waiters as they
//! arrive, playlists refreshed about once per freshness period, stale then
//! 504 when the origin dies, failover between origins, and bad input.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::test_origin::{Reply, TestOrigin, headers};
use common::*;
use ferry::config::Config;
use ferry::serve::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TS: &str = "video/mp2t";
const SEGMENT_CC: &str = "public, max-age=86400, immutable";
const M3U8: &str = "application/vnd.apple.mpegurl";

struct TestEdge {
    running: Running,
    _data: tempfile::TempDir,
}

impl TestEdge {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.http_addr)
    }
    fn addr(&self) -> SocketAddr {
        self.running.http_addr
    }
    async fn metric(&self, name: &str) -> f64 {
        let text = http_get(self.addr(), "/metrics").await;
        text.lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(k, _)| *k == name || k.starts_with(&format!("{name}{{")))
            .filter_map(|(_, v)| v.parse::<f64>().ok())
            .sum()
    }
}

async fn edge(origins: &[String], edit: impl FnOnce(&mut Config)) -> TestEdge {
    let data = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: data.path().to_owned(),
        ..Config::default()
    };
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.edge.origins = origins.to_vec();
    edit(&mut config);
    let running = ferry::edge_role::start_edge(&config).await.unwrap();
    TestEdge {
        running,
        _data: data,
    }
}

fn segment(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_one_origin_fetch_and_bytes_before_the_fill_ends() {
    const LEN: usize = 1 << 20;
    let body = segment(LEN, 7);
    let expected = body.clone();
    // 1 MiB in 64 KiB pieces 60 ms apart: about a second at the origin.
    let origin = TestOrigin::start(move |path| {
        if path == "/hls/s/source/x-1.ts" {
            Reply::Trickle {
                headers: headers(TS, SEGMENT_CC),
                body: body.clone(),
                chunk: 64 << 10,
                every: Duration::from_millis(60),
            }
        } else {
            Reply::Full(404, vec![], vec![])
        }
    })
    .await;
    let edge = edge(&[origin.url()], |_| {}).await;
    let http = http_client();
    let url = edge.url("/hls/s/source/x-1.ts");
    let mut clients = Vec::new();
    for _ in 0..500 {
        let (http, url) = (http.clone(), url.clone());
        clients.push(tokio::spawn(async move {
            let r = http.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let status = r.headers()["cache-status"].to_str().unwrap().to_owned();
            (status, r.bytes().await.unwrap())
        }));
    }
    // One more client joins mid-fill and times its first byte.
    let late = {
        let (http, url, log) = (http.clone(), url.clone(), origin.log.clone());
        tokio::spawn(async move {
            loop {
                if log
                    .lock()
                    .unwrap()
                    .started
                    .contains_key("/hls/s/source/x-1.ts")
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
            let mut r = http.get(&url).send().await.unwrap();
            let first = r.chunk().await.unwrap().unwrap();
            let at = Instant::now();
            let mut all = first.to_vec();
            while let Some(c) = r.chunk().await.unwrap() {
                all.extend_from_slice(&c);
            }
            (at, all)
        })
    };
    let mut statuses = std::collections::HashMap::<String, usize>::new();
    for c in clients {
        let (status, got) = c.await.unwrap();
        assert!(got[..] == expected[..], "a client got a different body");
        *statuses.entry(status).or_default() += 1;
    }
    let (first_byte_at, all) = late.await.unwrap();
    assert!(all == expected, "the late client got a different body");
    assert_eq!(
        origin.requests("/hls/s/source/x-1.ts"),
        1,
        "the origin was asked more than once"
    );
    let finished = origin.log.lock().unwrap().finished["/hls/s/source/x-1.ts"];
    assert!(
        first_byte_at < finished,
        "the late client's first byte came {:?} after the origin finished",
        first_byte_at - finished
    );
    println!(
        "500 clients: one origin fetch; cache-status: {statuses:?}; late client's first byte {:?} before the fill ended",
        finished - first_byte_at
    );
    assert_eq!(edge.metric("ferry_edge_misses_total").await, 1.0);
    // Afterwards it is a hit.
    let r = http.get(&url).send().await.unwrap();
    assert!(
        r.headers()["cache-status"]
            .to_str()
            .unwrap()
            .contains("hit")
    );
    edge.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polled_playlist_is_fetched_about_once_a_second() {
    let origin = TestOrigin::start(|path| {
        Reply::Full(
            200,
            headers(M3U8, "max-age=1"),
            format!("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:2.0,\na.ts\n# {path}\n")
                .into_bytes(),
        )
    })
    .await;
    let edge = edge(&[origin.url()], |_| {}).await;
    let http = http_client();
    let url = edge.url("/hls/s/source/index.m3u8");
    let start = Instant::now();
    let seconds = 10;
    let mut pollers = Vec::new();
    for _ in 0..200 {
        let (http, url) = (http.clone(), url.clone());
        pollers.push(tokio::spawn(async move {
            let mut n = 0;
            while start.elapsed() < Duration::from_secs(seconds) {
                let r = http.get(&url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                assert!(r.text().await.unwrap().starts_with("#EXTM3U"));
                n += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            n
        }));
    }
    let mut polls = 0;
    for p in pollers {
        polls += p.await.unwrap();
    }
    let fetches = origin.requests("/hls/s/source/index.m3u8");
    println!("{polls} playlist polls by 200 clients in {seconds} s: {fetches} origin fetches");
    assert!(polls > 5_000, "too few polls to mean anything: {polls}");
    assert!(
        (5..=seconds as usize + 2).contains(&fetches),
        "{fetches} origin fetches in {seconds} s"
    );
    edge.running.shutdown().await;
}

async fn get(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    get_bytes(addr, path).await
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> &'a str {
    h.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_origin_gives_stale_playlists_for_the_grace_then_504() {
    let seg = segment(5000, 1);
    let seg2 = seg.clone();
    let mut origin = TestOrigin::start(move |path| match path {
        "/hls/s/source/index.m3u8" => Reply::Full(
            200,
            headers(M3U8, "max-age=1"),
            b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nx-1.ts\n".to_vec(),
        ),
        "/hls/s/source/x-1.ts" => Reply::Full(200, headers(TS, SEGMENT_CC), seg2.clone()),
        _ => Reply::Full(404, vec![], vec![]),
    })
    .await;
    let edge = edge(&[origin.url()], |_| {}).await;
    let a = edge.addr();
    assert_eq!(get(a, "/hls/s/source/index.m3u8").await.0, 200);
    assert_eq!(get(a, "/hls/s/source/x-1.ts").await.0, 200);
    origin.kill().await;
    let killed = Instant::now();
    // Grace: max-age 1 s + 3 target durations of 1 s.
    let mut last_ok = Duration::ZERO;
    let mut first_504 = None;
    while killed.elapsed() < Duration::from_secs(7) {
        let (status, h, body) = get(a, "/hls/s/source/index.m3u8").await;
        match status {
            200 => {
                assert!(body.starts_with(b"#EXTM3U"));
                if killed.elapsed() > Duration::from_millis(1100) {
                    assert!(header(&h, "cache-status").contains("hit; ttl=-"), "{h:?}");
                }
                last_ok = killed.elapsed();
            }
            504 => {
                first_504.get_or_insert(killed.elapsed());
            }
            other => panic!("status {other}"),
        }
        // The segment, immutable, is still served.
        let (status, _, body) = get(a, "/hls/s/source/x-1.ts").await;
        assert_eq!(status, 200);
        assert!(body == seg);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first_504 = first_504.expect("the playlist was served stale for ever");
    println!("origin dead: playlist stale until {last_ok:?}, 504 from {first_504:?}");
    assert!(
        last_ok >= Duration::from_millis(3500),
        "stale only for {last_ok:?}"
    );
    assert!(
        first_504 <= Duration::from_millis(4600),
        "504 only at {first_504:?}"
    );
    assert!(last_ok < first_504, "stale again after a 504");
    // The origin comes back: fresh again at once.
    origin.revive().await;
    let (status, h, _) = get(a, "/hls/s/source/index.m3u8").await;
    assert_eq!(status, 200, "{h:?}");
    assert!(header(&h, "cache-status").contains("fwd=miss"), "{h:?}");
    edge.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_origin_answers_when_the_first_is_dead_or_hung() {
    let make = |tag: u8| {
        move |path: &str| match path {
            "/hls/s/a.ts" => Reply::Full(200, headers(TS, SEGMENT_CC), vec![tag; 100]),
            "/hls/s/b.ts" => Reply::Full(200, headers(TS, SEGMENT_CC), vec![tag; 100]),
            "/hls/s/c.ts" => Reply::Full(200, headers(TS, SEGMENT_CC), vec![tag; 100]),
            _ => Reply::Full(503, vec![], vec![]),
        }
    };
    let mut first = TestOrigin::start(make(1)).await;
    let second = TestOrigin::start(make(2)).await;
    // A hung origin: accepts, never answers.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_url = format!("http://{}", hung.local_addr().unwrap());
    let edge = edge(&[first.url(), second.url()], |c| {
        c.edge.first_byte_timeout_ms = 300;
    })
    .await;
    let (_, _, body) = get(edge.addr(), "/hls/s/a.ts").await;
    assert_eq!(body, vec![1; 100]);
    first.kill().await;
    let (status, _, body) = get(edge.addr(), "/hls/s/b.ts").await;
    assert_eq!((status, body), (200, vec![2; 100]));
    // 5xx from an origin also moves on.
    let (status, _, _) = get(edge.addr(), "/hls/s/other.ts").await;
    assert_eq!(status, 502);
    edge.running.shutdown().await;

    let edge = edge_with_hung(&hung_url, &second.url()).await;
    let t = Instant::now();
    let (status, _, body) = get(edge.addr(), "/hls/s/c.ts").await;
    assert_eq!((status, body), (200, vec![2; 100]));
    let took = t.elapsed();
    println!("hung first origin: answered by the second after {took:?}");
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(2));
    // The hung origin is now in backoff: the next miss goes straight to the second.
    let t = Instant::now();
    assert_eq!(get(edge.addr(), "/hls/s/a.ts").await.0, 200);
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    drop(hung);
    edge.running.shutdown().await;
}

async fn edge_with_hung(hung: &str, good: &str) -> TestEdge {
    edge(&[hung.to_owned(), good.to_owned()], |c| {
        c.edge.first_byte_timeout_ms = 300;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_origin_answers_reach_every_waiter_and_nothing_is_cached() {
    let origin = TestOrigin::start(|path| match path {
        "/hls/s/garbage.ts" => Reply::Garbage,
        "/hls/s/cut.ts" => Reply::CutMidBody(vec![9; 50_000]),
        _ => Reply::Full(404, vec![], vec![]),
    })
    .await;
    let edge = edge(&[origin.url()], |_| {}).await;
    let http = http_client();
    let (status, _, _) = get(edge.addr(), "/hls/s/garbage.ts").await;
    assert!(status == 502 || status == 504, "garbage: {status}");
    // Cut mid-body: every waiter's body fails (no complete, wrong body).
    let mut waiters = Vec::new();
    for _ in 0..20 {
        let (http, url) = (http.clone(), edge.url("/hls/s/cut.ts"));
        waiters.push(tokio::spawn(async move {
            match http.get(&url).send().await {
                Ok(r) => r.bytes().await.map(|b| b.len()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        }));
    }
    for w in waiters {
        let got = w.await.unwrap();
        assert!(
            got.is_err(),
            "a waiter got a whole body from a cut origin: {got:?}"
        );
    }
    let before = origin.requests("/hls/s/cut.ts");
    let _ = http.get(edge.url("/hls/s/cut.ts")).send().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        origin.requests("/hls/s/cut.ts"),
        before + 1,
        "a half-received body was cached"
    );
    // 404 is kept at most a second, then asked again.
    assert_eq!(get(edge.addr(), "/hls/s/later.ts").await.0, 404);
    assert_eq!(get(edge.addr(), "/hls/s/later.ts").await.0, 404);
    assert_eq!(origin.requests("/hls/s/later.ts"), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(edge.addr(), "/hls/s/later.ts").await.0, 404);
    assert_eq!(origin.requests("/hls/s/later.ts"), 2);
    edge.running.shutdown().await;
}

async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_clear_refusals() {
    let seg = segment(1000, 3);
    let origin = TestOrigin::start(move |path| match path {
        "/hls/s/x.ts" => Reply::Full(200, headers(TS, SEGMENT_CC), seg.clone()),
        _ => Reply::Full(404, vec![], vec![]),
    })
    .await;
    let edge = edge(&[origin.url()], |c| {
        c.http.header_read_timeout_seconds = 1;
        c.edge.purge_token = "purge-token-for-tests".into();
    })
    .await;
    let a = edge.addr();
    for path in [
        "/hls/../etc/passwd",
        "/hls/%2e%2e/%2e%2e/etc/passwd",
        "/hls/%252e%252e/x",
        "/hls/..%2f..%2fx",
        "/hls/s/..\\..\\x",
        "/hls//etc/passwd",
        "/hls/s/x.ts%00.m3u8",
    ] {
        let r = raw(
            a,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 400"), "{path}: {r}");
    }
    let r = raw(
        a,
        b"GET http://169.254.169.254/hls/s/x.ts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "absolute URL: {r}");
    let long = format!("/hls/s/{}.ts", "a".repeat(3000));
    let r = raw(
        a,
        format!("GET {long} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.1 414"),
        "long URL: {}",
        &r[..r.len().min(80)]
    );
    let huge = format!(
        "GET /hls/s/x.ts HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(64 << 10)
    );
    let r = raw(a, huge.as_bytes()).await;
    assert!(
        r.is_empty() || r.starts_with("HTTP/1.1 431"),
        "huge header: {}",
        &r[..r.len().min(80)]
    );
    assert_eq!(origin.requests("/etc/passwd"), 0);
    // Ranges, conditional requests, HEAD.
    let r = raw(
        a,
        b"GET /hls/s/x.ts HTTP/1.1\r\nHost: x\r\nRange: bytes=5000-\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.1 416") && r.contains("content-range: bytes */1000"),
        "{r}"
    );
    let r = raw(
        a,
        b"GET /hls/s/x.ts HTTP/1.1\r\nHost: x\r\nRange: bytes=10-19\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.1 206") && r.contains("content-range: bytes 10-19/1000"),
        "{r}"
    );
    // The ETag the edge makes (the origin sent none) comes with hits: a
    // request that joins the fill in flight may get the body before it.
    let mut etag = String::new();
    for _ in 0..50 {
        let (_, h, _) = get(a, "/hls/s/x.ts").await;
        etag = header(&h, "etag").to_owned();
        if !etag.is_empty() {
            assert!(header(&h, "cache-status").contains("hit"), "{h:?}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(etag.starts_with('"'), "no ETag on a hit");
    let r = raw(a, format!("GET /hls/s/x.ts HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n").as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 304"), "{r}");
    let r = raw(
        a,
        b"HEAD /hls/s/x.ts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.1 200")
            && r.contains("content-length: 1000")
            && r.ends_with("\r\n\r\n"),
        "{r}"
    );
    let r = raw(
        a,
        b"DELETE /hls/s/x.ts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    // Slow-loris: half a request head, then nothing.
    let mut s = tokio::net::TcpStream::connect(a).await.unwrap();
    s.write_all(b"GET /hls/s/x.ts HTTP/1.1\r\nHost:")
        .await
        .unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "slow-loris kept for {:?}",
        t.elapsed()
    );
    // Purge: only with the token.
    let purge = |token: &str| {
        format!(
            "POST /purge/s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
    };
    assert!(
        raw(a, purge("wrong").as_bytes())
            .await
            .starts_with("HTTP/1.1 401")
    );
    let r = raw(a, purge("purge-token-for-tests").as_bytes()).await;
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("\"purged\":1"),
        "{r}"
    );
    let before = origin.requests("/hls/s/x.ts");
    assert_eq!(get(a, "/hls/s/x.ts").await.0, 200);
    assert_eq!(origin.requests("/hls/s/x.ts"), before + 1);
    edge.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_tier_stays_within_its_budget() {
    const BUDGET: u64 = 8 << 20;
    let origin = TestOrigin::start(|path| {
        let seed = path.len() as u8;
        Reply::Full(200, headers(TS, SEGMENT_CC), segment(1 << 20, seed))
    })
    .await;
    // No disk tier: segments stay in memory, and it is the memory tier's
    // budget that bounds them.
    let edge = edge(&[origin.url()], |c| {
        c.edge.memory_bytes = BUDGET;
        c.edge.disk_bytes = 0;
    })
    .await;
    let http = http_client();
    let mut peak = 0.0f64;
    for i in 0..60 {
        let r = http
            .get(edge.url(&format!("/hls/s/seg-{i}.ts")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.bytes().await.unwrap().len(), 1 << 20);
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
            peak = peak.max(edge.metric("ferry_edge_memory_bytes").await);
        }
    }
    let evictions = edge.metric("ferry_edge_evictions_total").await;
    println!(
        "60 distinct 1 MiB segments into an 8 MiB tier: peak {:.2} MiB held, {evictions} evictions",
        peak / f64::from(1 << 20)
    );
    assert!(peak <= BUDGET as f64, "over budget: {peak}");
    assert!(
        peak >= (BUDGET / 2) as f64,
        "the tier holds almost nothing: {peak}"
    );
    assert!(evictions >= 40.0, "{evictions}");
    edge.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_registers_with_control_as_an_edge() {
    let control = start().await;
    let origin = TestOrigin::start(|_| Reply::Full(404, vec![], vec![])).await;
    let http = control.running.http_addr;
    let edge = edge(&[origin.url()], |c| {
        c.control.url = format!("http://{http}");
        c.admin_token = ADMIN.into();
        c.edge.public_url = "http://edge-1.example:8080".into();
    })
    .await;
    wait_for(
        "the edge in the node registry",
        Duration::from_secs(10),
        || async {
            let (_, body) = api(http, "GET", "/nodes", Some(ADMIN), None).await;
            body.to_string().contains("http://edge-1.example:8080")
                && body.to_string().contains("\"edge\"")
        },
    )
    .await;
    edge.running.shutdown().await;
    control.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_keep_alive_connections_cost_a_bounded_amount() {
    const CONNECTIONS: usize = 10_000;
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let origin =
        TestOrigin::start(|_| Reply::Full(200, headers(M3U8, "max-age=60"), b"#EXTM3U\n".to_vec()))
            .await;
    let port = free_port();
    let data = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["edge", "--origins", &origin.url(), "--http-listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data.path())
        .env("FERRY_HTTP__MAX_CONNECTIONS", "12000")
        .env("FERRY_HTTP__IDLE_TIMEOUT_SECONDS", "300")
        // Long timeouts: the connections must stay open while RSS is read
        // (the idle timeout bounds a keep-alive connection between requests).
        .env("FERRY_HTTP__HEADER_READ_TIMEOUT_SECONDS", "300")
        .env("FERRY_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for("the edge", Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    assert_eq!(get(addr, "/hls/s/a.m3u8").await.0, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid).unwrap();
    let mut open = Vec::with_capacity(CONNECTIONS);
    for batch in 0..CONNECTIONS / 500 {
        let mut tasks = Vec::new();
        for _ in 0..500 {
            tasks.push(tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                s.write_all(b"GET /hls/s/a.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n")
                    .await
                    .unwrap();
                let mut got = Vec::new();
                while !got.ends_with(b"#EXTM3U\n") {
                    let mut buf = [0u8; 1024];
                    let n = s.read(&mut buf).await.unwrap();
                    assert!(n > 0, "closed");
                    got.extend_from_slice(&buf[..n]);
                }
                s
            }));
        }
        for t in tasks {
            open.push(t.await.unwrap());
        }
        assert_eq!(open.len(), (batch + 1) * 500);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(pid).unwrap();
    let text = http_get(addr, "/metrics").await;
    let held: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("ferry_http_connections "))
        .unwrap()
        .parse()
        .unwrap();
    let per = (after.saturating_sub(before)) as f64 / CONNECTIONS as f64;
    println!(
        "{CONNECTIONS} idle keep-alive connections: RSS {before} KiB -> {after} KiB, {per:.1} KiB each ({held} open)"
    );
    assert!(held >= CONNECTIONS as f64, "only {held} connections held");
    // The hit path holds no buffer while a connection waits (issue 29's
    // target is 2 KiB, measured on a release build by the bench; a debug
    // build's futures are larger).
    assert!(per < 3.0, "{per:.1} KiB per idle connection");
    assert_eq!(origin.requests("/hls/s/a.m3u8"), 1);
    drop(open);
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_evicted_from_memory_come_back_from_disk() {
    const SEG: usize = 512 << 10;
    const DISK: u64 = 8 << 20;
    let origin = TestOrigin::start(|path| {
        let seed = path.len() as u8 ^ path.bytes().last().unwrap_or(0);
        Reply::Full(200, headers(TS, SEGMENT_CC), segment(SEG, seed))
    })
    .await;
    let edge = edge(&[origin.url()], |c| {
        c.edge.memory_bytes = 2 << 20;
        c.edge.disk_bytes = DISK;
    })
    .await;
    let http = http_client();
    let fetch = |i: usize| {
        let (http, url) = (http.clone(), edge.url(&format!("/hls/s/d/seg-{i}.ts")));
        async move {
            let r = http.get(&url).send().await.unwrap();
            let status = r.headers()["cache-status"].to_str().unwrap().to_owned();
            (status, r.bytes().await.unwrap())
        }
    };
    let mut first = Vec::new();
    for i in 0..10 {
        first.push(fetch(i).await.1);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut from_disk = 0;
    for (i, body) in first.iter().enumerate() {
        let (status, again) = fetch(i).await;
        assert!(again == *body, "segment {i} changed");
        assert_eq!(
            origin.requests(&format!("/hls/s/d/seg-{i}.ts")),
            1,
            "segment {i} refetched"
        );
        from_disk += usize::from(status.contains("detail=disk"));
    }
    println!("10 segments of 512 KiB through a 2 MiB memory tier: {from_disk} came back from disk");
    assert!(from_disk >= 5, "only {from_disk} from disk");
    // Past the disk budget: old files go.
    for i in 10..40 {
        fetch(i).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let dir = edge._data.path().join("edge-cache");
    let on_disk: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let gauge = edge.metric("ferry_edge_disk_bytes").await;
    println!(
        "40 segments (20 MiB) into an 8 MiB disk tier: {on_disk} bytes in files, gauge {gauge}"
    );
    assert!(on_disk <= DISK + SEG as u64, "{on_disk} bytes on disk");
    assert!(gauge <= DISK as f64 && gauge > 0.0);
    edge.running.shutdown().await;
}

/// Splits HTTP/1.1 responses read off one connection: each response's head
/// and body, by `Content-Length` (none after a HEAD, a 304 or a 416).
fn responses(mut bytes: &[u8], heads: &[bool]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for &head_only in heads {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(bytes)))
            + 4;
        let head = String::from_utf8_lossy(&bytes[..end]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |v| v.trim().parse().unwrap());
        let no_body = head_only || head.starts_with("http/1.1 304");
        let len = if no_body { 0 } else { length };
        out.push((head, bytes[end..end + len].to_vec()));
        bytes = &bytes[end + len..];
    }
    assert!(
        bytes.is_empty(),
        "left over: {:?}",
        String::from_utf8_lossy(bytes)
    );
    out
}

async fn raw_bytes(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("the edge did not close the connection")
        .unwrap();
    out
}

/// Asks for `path` until the hit comes from the disk tier (or 10 s pass):
/// the file is written off the request path, which on a loaded machine can
/// take a while. Gives the last answer's head and body.
async fn until_from_disk(addr: SocketAddr, path: &str) -> (Vec<(String, String)>, Vec<u8>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, h, body) = get(addr, path).await;
        assert_eq!(status, 200);
        let from_disk = header(&h, "cache-status").contains("detail=disk");
        if from_disk || tokio::time::Instant::now() > deadline {
            return (h, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The edge's own HTTP/1.1 path for hits (`edge_cache::h1`) keeps HTTP's
/// rules, for a playlist from memory and a segment sent from the disk tier
/// with `sendfile`: pipelined requests answered in order, HEAD, ranges,
/// `If-None-Match`, HTTP/1.0 and `Connection: close`, other routes on the
/// same connection; and the segment's bytes leave the heap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hit_path_keeps_http_rules_from_memory_and_from_disk() {
    const LEN: usize = 300_000;
    const PLAYLIST: &[u8] = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n";
    let origin = TestOrigin::start(|path| {
        if path.ends_with(".m3u8") {
            Reply::Full(200, headers(M3U8, "max-age=60"), PLAYLIST.to_vec())
        } else {
            Reply::Full(200, headers(TS, SEGMENT_CC), segment(LEN, 3))
        }
    })
    .await;
    let edge = edge(&[origin.url()], |_| {}).await;
    let addr = edge.addr();
    assert_eq!(get(addr, "/hls/s/v/seg-1.ts").await.0, 200);
    assert_eq!(get(addr, "/hls/s/v/index.m3u8").await.0, 200);
    let (h, body) = until_from_disk(addr, "/hls/s/v/seg-1.ts").await;
    assert!(body == segment(LEN, 3), "the segment changed on disk");
    assert!(
        header(&h, "cache-status").contains("hit")
            && header(&h, "cache-status").contains("detail=disk"),
        "{}",
        header(&h, "cache-status")
    );
    assert_eq!(header(&h, "content-length"), LEN.to_string());
    assert_eq!(header(&h, "accept-ranges"), "bytes");
    assert!(header(&h, "date").ends_with(" GMT"));
    let etag = header(&h, "etag").to_owned();
    assert!(!etag.is_empty());

    // Four requests in one write: answered in order, then closed as asked.
    let pipelined = format!(
        "GET /hls/s/v/index.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n\
         HEAD /hls/s/v/seg-1.ts HTTP/1.1\r\nHost: x\r\n\r\n\
         GET /hls/s/v/seg-1.ts HTTP/1.1\r\nHost: x\r\nRange: bytes=10-19\r\n\r\n\
         GET /hls/s/v/seg-1.ts HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n"
    );
    let out = raw_bytes(addr, pipelined.as_bytes()).await;
    let r = responses(&out, &[false, true, false, false]);
    assert!(r[0].0.starts_with("http/1.1 200"), "{}", r[0].0);
    assert!(r[0].0.contains("cache-status: ferry; hit"), "{}", r[0].0);
    assert_eq!(r[0].1, PLAYLIST);
    assert!(r[1].0.starts_with("http/1.1 200"), "{}", r[1].0);
    assert!(
        r[1].0.contains(&format!("content-length: {LEN}")),
        "{}",
        r[1].0
    );
    assert!(r[2].0.starts_with("http/1.1 206"), "{}", r[2].0);
    assert!(
        r[2].0
            .contains(&format!("content-range: bytes 10-19/{LEN}")),
        "{}",
        r[2].0
    );
    assert_eq!(r[2].1, segment(LEN, 3)[10..20]);
    assert!(r[3].0.starts_with("http/1.1 304"), "{}", r[3].0);
    assert!(r[3].0.contains("connection: close"), "{}", r[3].0);

    // HTTP/1.0 without keep-alive: answered, then closed.
    let out = raw_bytes(addr, b"GET /hls/s/v/index.m3u8 HTTP/1.0\r\n\r\n").await;
    let r = responses(&out, &[false]);
    assert!(r[0].0.contains("connection: close"), "{}", r[0].0);
    assert_eq!(r[0].1, PLAYLIST);
    // HTTP/1.0 with keep-alive stays open for the next request.
    let out = raw_bytes(
        addr,
        b"GET /hls/s/v/index.m3u8 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
          GET /hls/s/v/index.m3u8 HTTP/1.0\r\n\r\n",
    )
    .await;
    let r = responses(&out, &[false, false]);
    assert!(r[0].0.contains("connection: keep-alive"), "{}", r[0].0);
    assert_eq!(r[1].1, PLAYLIST);

    // After an HLS request, the same connection still reaches the other
    // routes, and a refusal is the same as before.
    let out = raw_bytes(
        addr,
        b"GET /hls/s/v/index.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /hls/s/../x.ts HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let r = responses(&out, &[false, false, false]);
    assert!(r[1].0.starts_with("http/1.1 400"), "{}", r[1].0);
    assert_eq!(r[1].1, b"invalid path\n");
    assert!(r[2].0.starts_with("http/1.1 200"), "{}", r[2].0);
    assert_eq!(r[2].1, b"ok\n");

    assert_eq!(origin.requests("/hls/s/v/seg-1.ts"), 1);
    assert_eq!(origin.requests("/hls/s/v/index.m3u8"), 1);
    // The segment lives on disk, not in the heap's memory tier.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let memory = edge.metric("ferry_edge_memory_bytes").await;
    assert!(memory < LEN as f64, "{memory} bytes in the memory tier");
    assert!(edge.metric("ferry_edge_disk_bytes").await >= LEN as f64);
    edge.running.shutdown().await;
}

/// The hit path keeps the HTTP listener's limits on HLS requests: a head
/// sent a byte at a time, a silent connection, an idle keep-alive one and a
/// client that stops reading a segment sent from disk are all closed, and
/// none of them holds up anyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hit_path_closes_slow_silent_idle_and_stalled_clients() {
    const LEN: usize = 24 << 20;
    let origin =
        TestOrigin::start(|_| Reply::Full(200, headers(TS, SEGMENT_CC), segment(LEN, 5))).await;
    let edge = edge(&[origin.url()], |c| {
        c.http.header_read_timeout_seconds = 1;
        c.http.idle_timeout_seconds = 2;
    })
    .await;
    let addr = edge.addr();
    assert_eq!(get(addr, "/hls/s/v/big.ts").await.0, 200);
    let (h, _) = until_from_disk(addr, "/hls/s/v/big.ts").await;
    assert!(
        header(&h, "cache-status").contains("detail=disk"),
        "the segment is not on disk yet"
    );

    let mut loris = tokio::net::TcpStream::connect(addr).await.unwrap();
    loris
        .write_all(b"GET /hls/s/v/big.ts HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"HEAD /hls/s/v/big.ts HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // A client with a small receive buffer that asks for 24 MiB and reads
    // nothing: the edge's sendfile stops when the socket buffers are full.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(addr).await.unwrap();
    stalled
        .write_all(b"GET /hls/s/v/big.ts HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();

    // Meanwhile, everyone else is served.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _, body) = get(addr, "/hls/s/v/big.ts").await;
    assert_eq!((status, body.len()), (200, LEN));

    let (t, got) = until_closed(&mut loris, Duration::from_secs(5)).await;
    assert!(
        t < Duration::from_secs(3) && got.is_empty(),
        "slow loris held {t:?}"
    );
    let (t, _) = until_closed(&mut silent, Duration::from_secs(6)).await;
    assert!(t < Duration::from_secs(4), "silent client held {t:?}");
    let (_, got) = until_closed(&mut idle, Duration::from_secs(6)).await;
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "the keep-alive request was answered before the close"
    );
    // The stalled reader: after the idle timeout the edge gives up, so
    // reading now ends (closed or reset) short of the whole segment.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, got) = until_closed(&mut stalled, Duration::from_secs(10)).await;
    assert!(
        got.len() < LEN,
        "a client that stopped reading got all {} bytes: nothing was cut",
        got.len()
    );
    assert!(edge.metric("ferry_http_idle_closed_total").await >= 2.0);
    edge.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_with_prior_knowledge_is_served() {
    let origin =
        TestOrigin::start(|_| Reply::Full(200, headers(TS, SEGMENT_CC), segment(10_000, 9))).await;
    let edge = edge(&[origin.url()], |_| {}).await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    // Several requests multiplexed on one connection.
    let mut all = Vec::new();
    for i in 0..8 {
        let (h2, url) = (h2.clone(), edge.url(&format!("/hls/s/h2-{}.ts", i % 2)));
        all.push(tokio::spawn(async move {
            let r = h2.get(&url).send().await.unwrap();
            assert_eq!(r.version(), reqwest::Version::HTTP_2);
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap().len()
        }));
    }
    for a in all {
        assert_eq!(a.await.unwrap(), 10_000);
    }
    assert_eq!(origin.requests("/hls/s/h2-0.ts"), 1);
    edge.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_need_a_token_and_never_show_origin_credentials() {
    let e = edge(&["http://fetcher:s3cr3t-pw@127.0.0.1:9".to_owned()], |c| {
        c.http.metrics_token = "metrics-token-for-tests".into();
    })
    .await;
    // An origin fetch, so the origin is named in a label.
    let _ = get(e.addr(), "/hls/demo/index.m3u8").await;
    let c = http_client();
    let r = c.get(e.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(e.url("/metrics"))
        .bearer_auth("wrong-token-of-same-size!")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(e.url("/metrics"))
        .bearer_auth("metrics-token-for-tests")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("origin=\"http://127.0.0.1:9\""), "{text}");
    assert!(!text.contains("s3cr3t"), "credentials in a label");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_holds_at_most_its_share_of_fills_unless_trusted() {
    // A hung origin: every fill waits for its first-byte time.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_url = format!("http://{}", hung.local_addr().unwrap());
    for (trusted, want) in [(false, 429), (true, 504)] {
        let e = edge(std::slice::from_ref(&hung_url), |c| {
            c.edge.first_byte_timeout_ms = 1500;
            c.edge.max_fills_per_client = 1;
            if trusted {
                c.edge.trusted_clients = vec!["127.0.0.1".into()];
            }
        })
        .await;
        let addr = e.addr();
        let first = tokio::spawn(async move { get(addr, "/hls/s/a.ts").await.0 });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (status, headers, _) = get(addr, "/hls/s/b.ts").await;
        assert_eq!(status, want, "trusted {trusted}");
        if status == 429 {
            assert_eq!(header(&headers, "retry-after"), "1");
        }
        assert_eq!(first.await.unwrap(), 504);
        e.running.shutdown().await;
    }
    drop(hung);
}

/// Redundant origins each with their own store: a 404 from one (it was
/// down when the object was made) is not the answer while another has the
/// object; a 503 with `Retry-After` (an origin whose live playlist no
/// packager of its own writes) moves on to the next origin without putting
/// the first in backoff; a 404 from every origin stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_or_a_not_here_from_one_origin_is_asked_of_the_next() {
    const PLAYLIST: &[u8] = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg-1.ts\n";
    let first = TestOrigin::start(|path| match path {
        "/hls/s/v/index.m3u8" => Reply::Full(
            503,
            vec![("retry-after".into(), "1".into())],
            b"not live on this origin\n".to_vec(),
        ),
        "/hls/s/v/only-first.ts" => Reply::Full(200, headers(TS, SEGMENT_CC), vec![1; 100]),
        _ => Reply::Full(404, vec![], vec![]),
    })
    .await;
    let second = TestOrigin::start(|path| match path {
        "/hls/s/v/index.m3u8" => Reply::Full(200, headers(M3U8, "max-age=1"), PLAYLIST.to_vec()),
        "/hls/s/v/seg-1.ts" => Reply::Full(200, headers(TS, SEGMENT_CC), vec![2; 100]),
        _ => Reply::Full(404, vec![], vec![]),
    })
    .await;
    let edge = edge(&[first.url(), second.url()], |_| {}).await;
    let addr = edge.addr();
    let (status, _, body) = get(addr, "/hls/s/v/index.m3u8").await;
    assert_eq!((status, body.as_slice()), (200, PLAYLIST));
    let (status, _, body) = get(addr, "/hls/s/v/seg-1.ts").await;
    assert_eq!((status, body), (200, vec![2; 100]));
    assert_eq!(
        first.requests("/hls/s/v/seg-1.ts"),
        1,
        "the first was asked first"
    );
    // "Not here" said nothing about the first origin's health: it is asked
    // at once for what only it has.
    let t = Instant::now();
    let (status, _, body) = get(addr, "/hls/s/v/only-first.ts").await;
    assert_eq!((status, body), (200, vec![1; 100]));
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(second.requests("/hls/s/v/only-first.ts"), 0);
    // Nobody has it: 404, each asked once.
    assert_eq!(get(addr, "/hls/s/v/nowhere.ts").await.0, 404);
    assert_eq!(first.requests("/hls/s/v/nowhere.ts"), 1);
    assert_eq!(second.requests("/hls/s/v/nowhere.ts"), 1);
    edge.running.shutdown().await;
}

/// A segment the edge's cached playlist lists, which the origin does not
/// have yet (the redundant origin that listed it died a moment ahead of
/// this one), is asked for again rather than answered 404; one the
/// playlist does not list gets its 404 at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_segment_an_origin_lacks_for_a_moment_is_asked_again() {
    const PLAYLIST: &[u8] = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg-5.ts\n";
    let since = Instant::now();
    let origin = TestOrigin::start(move |path| match path {
        "/hls/s/v/index.m3u8" => Reply::Full(200, headers(M3U8, "max-age=1"), PLAYLIST.to_vec()),
        "/hls/s/v/seg-5.ts" if since.elapsed() > Duration::from_millis(700) => {
            Reply::Full(200, headers(TS, SEGMENT_CC), vec![5; 100])
        }
        _ => Reply::Full(404, vec![], vec![]),
    })
    .await;
    let edge = edge(&[origin.url()], |_| {}).await;
    let addr = edge.addr();
    assert_eq!(get(addr, "/hls/s/v/index.m3u8").await.0, 200);
    let (status, _, body) = get(addr, "/hls/s/v/seg-5.ts").await;
    assert_eq!((status, body), (200, vec![5; 100]));
    assert!(origin.requests("/hls/s/v/seg-5.ts") >= 2, "asked again");
    let t = Instant::now();
    assert_eq!(get(addr, "/hls/s/v/seg-6.ts").await.0, 404);
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(origin.requests("/hls/s/v/seg-6.ts"), 1);
    edge.running.shutdown().await;
}
