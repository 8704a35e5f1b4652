//! Runs an HLS packager for every live stream and stores what it produces in the
//! origin store: segment first, then the playlists that name it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hls::{Packager, PackagerConfig};
use media_core::{Event, Hub};
use origin_store::OriginStore;
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::hls_upload::Uploads;

/// How long a packager waits for a publisher to come back before it ends the
/// stream's playlist for good (a returning publisher continues it after a
/// discontinuity).
pub const RECONNECT_GRACE: Duration = Duration::from_secs(30);

type Active = Arc<Mutex<HashSet<String>>>;

/// A stream's HLS segment format, asked when it goes live.
pub type ContainerLookup = Arc<dyn Fn(&str) -> hls::Container + Send + Sync>;

/// What the HLS origin reports, so a store outage is visible on /metrics.
#[derive(Clone, Debug, Default)]
pub struct HlsMetrics {
    /// Segments stored.
    pub segments_stored: Counter,
    /// Segments the store would not take after retries; left out of playlists.
    pub segments_lost: Counter,
    /// Playlist writes that failed (the next one replaces it).
    pub playlist_errors: Counter,
    /// Streams being packaged.
    pub packagers: Gauge,
    /// Segments waiting for the store (grows during an outage).
    pub upload_queue: Gauge,
    /// Segments cut without a keyframe (an encoder that stopped sending them).
    pub forced_cuts: Counter,
}

impl HlsMetrics {
    /// Adds these metrics to `registry` under the `hls` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("hls");
        r.register(
            "segments_stored",
            "HLS segments stored",
            self.segments_stored.clone(),
        );
        r.register(
            "segments_lost",
            "HLS segments the store did not take, left out of playlists",
            self.segments_lost.clone(),
        );
        r.register(
            "playlist_errors",
            "HLS playlist writes that failed",
            self.playlist_errors.clone(),
        );
        r.register(
            "upload_queue",
            "HLS segments waiting for the origin store, all streams",
            self.upload_queue.clone(),
        );
        r.register(
            "forced_cuts",
            "HLS segments cut without a keyframe at the segment length cap",
            self.forced_cuts.clone(),
        );
        r.register(
            "packagers",
            "Streams being packaged to HLS",
            self.packagers.clone(),
        );
    }
}

/// What every packager task of the origin shares.
#[derive(Clone)]
pub struct HlsOrigin {
    /// Where streams come from.
    pub hub: Hub,
    /// Where segments and playlists go.
    pub store: OriginStore,
    /// How streams are cut.
    pub config: PackagerConfig,
    /// What is reported.
    pub metrics: HlsMetrics,
    /// Segments held per stream while the store is down.
    pub max_queued: usize,
    /// Each stream's segment format (asked when it goes live).
    pub containers: ContainerLookup,
    /// Transcoded streams: their rungs (hub streams `NAME/RUNG`) become variants.
    pub ladders: crate::transcoding::LadderLookup,
    /// Stops everything.
    pub cancel: CancellationToken,
}

/// Follows the hub until cancelled, packaging every stream that goes live.
pub async fn run(origin: HlsOrigin) {
    let active: Active = Arc::default();
    // Rungs (`NAME/RUNG`) are packaged by their source's task.
    let (hub, cancel) = (origin.hub.clone(), origin.cancel.clone());
    hub.follow_sources(cancel.cancelled(), |name| {
        spawn_packager(&origin, &active, name);
    })
    .await;
}

fn spawn_packager(origin: &HlsOrigin, active: &Active, name: String) {
    if !lock(active).insert(name.clone()) {
        return;
    }
    let (origin, active) = (origin.clone(), active.clone());
    tokio::spawn(async move {
        origin.metrics.packagers.inc();
        let _gauge = DecOnDrop(origin.metrics.packagers.clone());
        loop {
            tokio::select! {
                _ = origin.cancel.cancelled() => return,
                () = package(&origin, &name) => {}
            }
            // Checked under the lock the announcer uses, so a publish that raced
            // with this exit is never left without a packager.
            let mut set = lock(&active);
            if !origin.hub.is_live(&name) {
                set.remove(&name);
                return;
            }
        }
    });
}

/// The hub name of rung `rung` of source `source`.
fn rendition_name(source: &str, rung: &str) -> String {
    media_core::StreamPath::rendition(source, rung)
        .map_or_else(|_| format!("{source}/{rung}"), |p| p.to_string())
}

/// Decrements a gauge however the task ends (including cancellation).
struct DecOnDrop(Gauge);

impl Drop for DecOnDrop {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn lock(active: &Active) -> std::sync::MutexGuard<'_, HashSet<String>> {
    active.lock().unwrap_or_else(|e| e.into_inner())
}

/// One variant being packaged: the source or a rung.
struct VariantPackager {
    packager: Packager,
    /// Listed in the multivariant playlist (the source is not when the ladder
    /// leaves it out).
    listed: bool,
    /// The hub stream it reads.
    hub_name: String,
}

/// Packages `name` (and its rungs, if transcoded) until it has been off the air
/// for [`RECONNECT_GRACE`].
async fn package(origin: &HlsOrigin, name: &str) {
    let HlsOrigin {
        hub,
        store,
        config,
        metrics,
        max_queued,
        ..
    } = origin;
    let mut base = config.clone();
    base.container = (origin.containers)(name);
    base.session = session_id();
    let ladder = (origin.ladders)(name);
    let mut variants = vec![VariantPackager {
        packager: Packager::new(base.clone()),
        listed: ladder.as_ref().is_none_or(|l| l.passthrough),
        hub_name: name.to_owned(),
    }];
    for rung in ladder.iter().flat_map(|l| &l.rungs) {
        variants.push(VariantPackager {
            packager: Packager::new(PackagerConfig {
                variant: rung.name.clone(),
                cut_every_keyframe: true,
                ..base.clone()
            }),
            listed: true,
            hub_name: rendition_name(name, &rung.name),
        });
    }
    // Every variant is subscribed now, before the ladder publishes its rungs,
    // so each rung is packaged from its first frame and segment numbers match.
    let (tx, mut events) = tokio::sync::mpsc::channel::<(usize, Event)>(256);
    let forwarders: Vec<_> = variants
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut sub = hub.subscribe_as(&v.hub_name, "hls");
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(e) = sub.recv().await {
                    if tx.send((i, e)).await.is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    drop(tx);
    let cleanup = tokio::spawn(remove_stale(
        store.clone(),
        name.to_owned(),
        base.session.clone(),
        variants
            .iter()
            .map(|v| v.packager.variant_name().to_owned())
            .collect(),
    ));
    let mut uploads = Uploads::start(store.clone(), name.to_owned(), *max_queued, metrics.clone());
    let mut master = Master::default();
    info!(
        stream = name,
        variants = variants.len(),
        "hls packaging started"
    );
    let mut live = true;
    loop {
        tokio::select! {
            got = events.recv() => {
                let Some((i, event)) = got else { break };
                if i == 0 {
                    match &event {
                        Event::Started => live = true,
                        Event::Stopped => live = false,
                        _ => {}
                    }
                }
                let Some(v) = variants.get_mut(i) else { continue };
                if !v.listed {
                    continue;
                }
                let forced = v.packager.forced_cuts();
                let out = v.packager.handle(&event, SystemTime::now());
                metrics.forced_cuts.inc_by(v.packager.forced_cuts() - forced);
                let closed = out.iter().any(|o| matches!(o, hls::Output::Playlist { .. }));
                uploads.push(out);
                if closed {
                    uploads.push(master.render(hub, &variants));
                }
            }
            Some(path) = uploads.lost.recv() => {
                let variant = path.split('/').next().unwrap_or_default();
                if let Some(v) = variants.iter_mut().find(|v| v.packager.variant_name() == variant) {
                    uploads.push(v.packager.segment_lost(&path));
                }
            }
            () = tokio::time::sleep(RECONNECT_GRACE), if !live => break,
        }
    }
    for f in forwarders {
        f.abort();
    }
    uploads.finish().await;
    let _ = cleanup.await;
    info!(stream = name, "hls packaging ended");
}

/// A new publish session's id: the wall clock in milliseconds, base 36, and
/// never the same twice in this process (a restart sees a later clock). It
/// goes into every segment name, so names are never reused for other bytes.
pub fn session_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let prev = LAST.fetch_max(now, Ordering::Relaxed);
    let id = if prev >= now {
        // Same millisecond (or a clock step back): take the next free value.
        LAST.fetch_add(1, Ordering::Relaxed) + 1
    } else {
        now
    };
    base36(id)
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Deletes what earlier publish sessions of `stream` left in the store:
/// segments and init segments of other sessions, and playlists of variants
/// this session does not have (its own playlists replace the others).
async fn remove_stale(store: OriginStore, stream: String, session: String, variants: Vec<String>) {
    let keys = match store.list(&stream).await {
        Ok(keys) => keys,
        Err(e) => {
            warn!(stream, error = %e, "cannot list old segments to clean up");
            return;
        }
    };
    let own = format!("{session}-");
    let mut removed = 0usize;
    for key in keys {
        let Some(rest) = key.strip_prefix(&format!("{stream}/")) else {
            continue;
        };
        let (variant, file) = rest.split_once('/').unwrap_or(("", rest));
        let stale = match origin_store::Kind::of(file) {
            origin_store::Kind::TsSegment | origin_store::Kind::Mp4Segment => {
                !file.starts_with(&own)
            }
            origin_store::Kind::Playlist => {
                !variant.is_empty() && !variants.iter().any(|v| v == variant)
            }
            origin_store::Kind::Other => false,
        };
        if stale && store.delete(&key).await.is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        info!(
            stream,
            removed, "removed what earlier sessions left in the store"
        );
    }
}

/// The multivariant playlist, written once every variant that is on the air
/// has a segment (so players can switch to any variant listed), and again when
/// what it says changes.
#[derive(Default)]
struct Master {
    last: Option<bytes::Bytes>,
}

impl Master {
    fn render(&mut self, hub: &Hub, variants: &[VariantPackager]) -> Vec<hls::Output> {
        let listed = variants.iter().enumerate().filter(|(_, v)| v.listed);
        let mut ready = Vec::new();
        let mut waiting = false;
        for (i, v) in listed {
            match v.packager.variant() {
                Some(info) => ready.push(info),
                // A rung not on the air (above the source's size) is left out; the
                // source, or a rung that is on the air, is waited for.
                None if i == 0 || hub.is_live(&v.hub_name) => waiting = true,
                None => {}
            }
        }
        // A rung that never produces a segment must not keep the stream unlisted:
        // once the first variant has three segments, list what is ready.
        let patience_over = variants
            .iter()
            .filter_map(|v| v.packager.variant())
            .next()
            .is_some()
            && variants.iter().any(|v| v.packager.segments_listed() >= 3);
        if ready.is_empty() || (waiting && !patience_over) {
            return Vec::new();
        }
        let data = bytes::Bytes::from(hls::playlist::multivariant_playlist(&ready));
        if self.last.as_ref() == Some(&data) {
            return Vec::new();
        }
        self.last = Some(data.clone());
        vec![hls::Output::Playlist {
            path: "master.m3u8".into(),
            data,
        }]
    }
}
