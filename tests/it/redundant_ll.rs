//! LL-HLS from redundant origins, as processes: two origins with aligned
//! segments, each fed the same stream (the same file copied, as one encoder
//! with two outputs sends it), list the same parts with the same bytes and
//! answer each other's blocking reloads; an edge in front of both keeps a
//! low-latency player's blocking reloads and parts coming when the origin
//! it uses hangs (SIGSTOP) and then dies (SIGKILL).

use crate::common;
use crate::ll_hls::hinted;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;

const PLAYLIST: &str = "/hls/demo/source/index.m3u8";

/// An origin packaging LL-HLS (0.5 s parts) with aligned segment names.
async fn ll_origin() -> Node {
    origin_with(&[
        ("FERRY_HLS__ALIGNED_SEGMENTS", "true".to_owned()),
        ("FERRY_HLS__LOW_LATENCY", "true".to_owned()),
        ("FERRY_HLS__PART_SECONDS", "0.5".to_owned()),
        ("FERRY_HLS__WINDOW", "10".to_owned()),
    ])
    .await
}

async fn text(addr: SocketAddr, target: &str) -> (u16, String) {
    let (status, _, body) = get_bytes(addr, target).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Two LL origins, each fed the same file by its own ffmpeg (the encoders
/// are killed when dropped).
async fn ll_pair() -> (Node, Node, [tokio::process::Child; 2]) {
    let a = ll_origin().await;
    let b = ll_origin().await;
    let encoders = [
        publish_background(&format!("rtmp://{}/live/{KEY}", a.rtmp), 20),
        publish_background(&format!("rtmp://{}/live/{KEY}", b.rtmp), 20),
    ];
    (a, b, encoders)
}

/// The part URIs a media playlist lists, in order.
fn parts_of(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .filter_map(|l| {
            l.split("URI=\"")
                .nth(1)?
                .split('"')
                .next()
                .map(str::to_owned)
        })
        .collect()
}

/// The segment URIs a media playlist lists, in order.
fn segments_of(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .filter(|l| l.ends_with(".m4s") && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

fn line<'a>(playlist: &'a str, tag: &str) -> Option<&'a str> {
    playlist.lines().find(|l| l.starts_with(tag))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redundant_ll_origins_serve_the_same_parts_and_each_others_blocking_reloads() {
    let (a, b, _encoders) = ll_pair().await;
    // Both list at least six common parts past their first segment.
    let deadline = Instant::now() + Duration::from_secs(40);
    let (pa, pb, common) = loop {
        let ((sa, pa), (sb, pb)) = (text(a.http, PLAYLIST).await, text(b.http, PLAYLIST).await);
        if sa == 200 && sb == 200 {
            let theirs = parts_of(&pb);
            let common: Vec<String> = parts_of(&pa)
                .into_iter()
                .filter(|p| theirs.contains(p))
                .collect();
            let segments = segments_of(&pb);
            let both = segments_of(&pa)
                .iter()
                .filter(|s| segments.contains(s))
                .count();
            if common.len() >= 6 && both >= 2 {
                break (pa, pb, common);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no six parts alike:\n{pa}\n{pb}",
            pa = text(a.http, PLAYLIST).await.1,
            pb = text(b.http, PLAYLIST).await.1
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        line(&pa, "#EXT-X-PART-INF:"),
        line(&pb, "#EXT-X-PART-INF:"),
        "the same part target"
    );
    assert_eq!(
        line(&pa, "#EXT-X-SERVER-CONTROL:"),
        line(&pb, "#EXT-X-SERVER-CONTROL:")
    );
    for uri in &common {
        let path = format!("/hls/demo/source/{uri}");
        let ((sa, _, ba), (sb, _, bb)) = (
            get_bytes(a.http, &path).await,
            get_bytes(b.http, &path).await,
        );
        assert_eq!((sa, sb), (200, 200), "{uri}");
        assert!(ba == bb, "{uri}: the origins' bytes differ");
        assert_eq!(&ba[4..8], b"moof");
    }
    println!(
        "parts listed and byte-identical on both origins: {}",
        common.len()
    );
    // Every segment both list is the same object, the first included.
    let (sa, sb) = (segments_of(&pa), segments_of(&pb));
    let both: Vec<&String> = sa.iter().filter(|s| sb.contains(s)).collect();
    assert!(both.len() >= 2, "{sa:?} {sb:?}");
    for uri in both {
        let path = format!("/hls/demo/source/{uri}");
        let (ba, bb) = (
            get_bytes(a.http, &path).await.2,
            get_bytes(b.http, &path).await.2,
        );
        assert!(!ba.is_empty() && ba == bb, "segment {uri} differs");
    }
    // A blocking reload for the part A hints next is answered by B, and
    // the part it names is the same on both.
    let (_, now_a) = text(a.http, PLAYLIST).await;
    let (uri, msn, part) = hinted(&now_a).unwrap();
    let t = Instant::now();
    let (status, from_b) = text(
        b.http,
        &format!("{PLAYLIST}?_HLS_msn={msn}&_HLS_part={part}"),
    )
    .await;
    assert_eq!(status, 200, "{from_b}");
    assert!(
        from_b.contains(&format!("URI=\"{uri}\"")),
        "{uri} not in\n{from_b}"
    );
    println!(
        "A's next part {uri} answered by B's blocking reload in {:?}",
        t.elapsed()
    );
    let path = format!("/hls/demo/source/{uri}");
    assert!(get_bytes(a.http, &path).await.2 == get_bytes(b.http, &path).await.2);
}

/// One low-latency viewer through an edge: blocking reload for the hinted
/// part, then the part, again and again; when each part arrived.
struct LlViewer {
    parts: std::sync::Arc<std::sync::Mutex<Vec<(Instant, u64, u64)>>>,
    failures: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl LlViewer {
    fn start(edge: SocketAddr) -> LlViewer {
        let parts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let failures = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (p, f) = (parts.clone(), failures.clone());
        let task = tokio::spawn(async move {
            let mut target = PLAYLIST.to_owned();
            loop {
                let (status, playlist) = text(edge, &target).await;
                let Some((uri, msn, part)) = (status == 200).then(|| hinted(&playlist)).flatten()
                else {
                    f.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                // The part before the hint is the newest complete one.
                let (status, _, body) = get_bytes(edge, &format!("/hls/demo/source/{uri}")).await;
                if status == 200 && body.get(4..8) == Some(b"moof") {
                    p.lock().unwrap().push((Instant::now(), msn, part));
                } else {
                    f.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                target = format!("{PLAYLIST}?_HLS_msn={msn}&_HLS_part={part}");
            }
        });
        LlViewer {
            parts,
            failures,
            task,
        }
    }

    /// The longest time between two parts arriving from `since` on.
    fn longest_gap(&self, since: Instant) -> Duration {
        let parts = self.parts.lock().unwrap();
        parts
            .windows(2)
            .filter(|w| w[1].0 >= since)
            .map(|w| w[1].0 - w[0].0)
            .max()
            .unwrap_or_default()
    }

    fn count(&self) -> usize {
        self.parts.lock().unwrap().len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edge_keeps_low_latency_viewers_going_when_their_origin_hangs_then_dies() {
    let (a, b, _encoders) = ll_pair().await;
    let edge = start_node(&[], |_| {
        vec![
            "edge".into(),
            "--origins".into(),
            format!("http://{},http://{}", a.http, b.http),
        ]
    })
    .await;
    wait_for("parts on both origins", Duration::from_secs(40), || async {
        text(a.http, PLAYLIST).await.1.contains("#EXT-X-PART:")
            && text(b.http, PLAYLIST).await.1.contains("#EXT-X-PART:")
    })
    .await;
    let viewer = LlViewer::start(edge.http);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let steady = viewer.longest_gap(Instant::now() - Duration::from_secs(3));
    assert!(viewer.count() >= 5, "{} parts in 4 s", viewer.count());

    // The first origin hangs: held requests are asked of the second after
    // the first-byte time, and the hung one is left in backoff.
    let hung = Instant::now();
    a.signal("STOP");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let while_hung = viewer.longest_gap(hung);
    let count_hung = viewer.count();
    // Then it dies.
    let died = Instant::now();
    a.signal("KILL");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after_death = viewer.longest_gap(died);
    let failures = viewer.failures.load(std::sync::atomic::Ordering::Relaxed);
    viewer.task.abort();
    let parts = viewer.parts.lock().unwrap().clone();
    // Parts come in order, none skipped: the origins' parts are one sequence.
    let mut skipped = 0;
    for w in parts.windows(2) {
        let (a, b) = ((w[0].1, w[0].2), (w[1].1, w[1].2));
        assert!(b > a, "parts out of order: {a:?} then {b:?}");
        if !(b.0 == a.0 && b.1 == a.1 + 1 || b.0 == a.0 + 1 && b.1 == 0) {
            skipped += 1;
        }
    }
    println!(
        "LL viewer through an edge: longest gap between parts {steady:?} steady, \
         {while_hung:?} with its origin SIGSTOPped, {after_death:?} after SIGKILL; \
         {} parts, {skipped} jumps, {failures} failed requests",
        parts.len()
    );
    assert!(count_hung > 5, "no parts while the origin hung");
    assert!(
        while_hung < Duration::from_millis(2500),
        "{while_hung:?} without a part while the origin hung"
    );
    assert!(
        after_death < Duration::from_millis(2000),
        "{after_death:?} without a part after the origin died"
    );
    assert_eq!(failures, 0, "requests failed");
    // A viewer held up for a second and a half comes back to a hint some
    // parts on, as a player rejoins the live edge: at most one jump at the
    // start and one for each fault.
    assert!(skipped <= 3, "{skipped} jumps in the part sequence");
    // Whether a held request met the hung origin (and was hedged) or a
    // plain one did (and timed out) depends on the moment of the SIGSTOP.
    let hedged = edge.metric_sum("ferry_edge_hedged_fetches_total").await;
    println!("held requests hedged: {hedged}");
}

/// An origin killed mid-stream leaves a live playlist (no `EXT-X-ENDLIST`)
/// in its store. Restarted without its publisher, it answers that playlist
/// 503 with `Retry-After` ("not here": edges ask the other origin, players
/// retry) instead of serving it frozen; once its publisher is back and a
/// segment cut, the playlist is its own again. Segments stay served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_origin_does_not_serve_the_playlist_it_left_behind() {
    const TS_PLAYLIST: &str = "/hls/demo/source/index.m3u8";
    let mut a = origin_with(&[]).await;
    let url = format!("rtmp://{}/live/{KEY}", a.rtmp);
    let encoder = publish_background(&url, 20);
    wait_for("segments", Duration::from_secs(30), || async {
        text(a.http, TS_PLAYLIST).await.1.matches("#EXTINF").count() >= 2
    })
    .await;
    let left = text(a.http, TS_PLAYLIST).await.1;
    a.signal("KILL");
    drop(encoder);
    a.restart().await;
    let (status, headers, body) = get_bytes(a.http, TS_PLAYLIST).await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert!(
        headers.iter().any(|(k, _)| k == "retry-after"),
        "{headers:?}"
    );
    let segment = segments_of_ts(&left).pop().unwrap();
    let (status, _, _) = get_bytes(a.http, &format!("/hls/demo/source/{segment}")).await;
    assert_eq!(status, 200, "the segments it stored are still served");
    let _encoder = publish_background(&url, 20);
    wait_for(
        "its own playlist again",
        Duration::from_secs(30),
        || async { text(a.http, TS_PLAYLIST).await.0 == 200 },
    )
    .await;
    let fresh = text(a.http, TS_PLAYLIST).await.1;
    assert!(
        fresh.contains("#EXT-X-DISCONTINUITY") || fresh != left,
        "{fresh}"
    );
}

fn segments_of_ts(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .filter(|l| l.ends_with(".ts") && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}
