//! Runs an HLS packager for every live stream and stores what it produces in the
//! origin store: segment first, then the playlists that name it. On shutdown
//! every open segment is closed, playlists end with `EXT-X-ENDLIST`, and the
//! upload queues are drained before the task returns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hls::{Packager, PackagerConfig};
use media_core::{Event, Hub};
use origin_store::OriginStore;
use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::live::{LiveHls, LivePublisher};
use crate::master::{Master, VariantState};
use crate::metrics::HlsMetrics;
use crate::policy::Policies;
use crate::session::{remove_stale, session_id};
use crate::upload::Uploads;

/// How long a packager waits for a publisher to come back before it ends the
/// stream's playlist for good (a returning publisher continues it after a
/// discontinuity).
pub const RECONNECT_GRACE: Duration = Duration::from_secs(30);

/// How long a clean stop waits for the last segments and playlists to reach
/// the store (a store that is down must not hold the process for ever).
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(10);

/// The streams this origin is packaging now (live, or within their
/// reconnect grace), and whether their packager has written a playlist yet.
/// Its HTTP face asks it: a live playlist that no packager here has written
/// since this process started (the origin restarted, its publisher is not
/// back or its first segment not cut) is a stale one, which edges must get
/// from another origin.
#[derive(Clone, Default)]
pub struct Packaging(Arc<Mutex<HashMap<String, bool>>>);

impl Packaging {
    /// Whether this origin's playlists of `stream` are its packager's own,
    /// written since this process started.
    pub fn writes(&self, stream: &str) -> bool {
        self.lock().get(stream).copied().unwrap_or(false)
    }

    fn written(&self, stream: &str) {
        if let Some(fresh) = self.lock().get_mut(stream) {
            *fresh = true;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, bool>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
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
    /// Each publish's container, LL-HLS part target and ladder (its rungs,
    /// hub streams `NAME/RUNG`, become variants), shared with the ladders.
    pub policies: Arc<Policies>,
    /// Where streams with Low-Latency HLS publish their parts and live views.
    pub live: LiveHls,
    /// The streams being packaged, shared with the HTTP face.
    pub packaging: Packaging,
    /// Stops everything.
    pub cancel: CancellationToken,
}

/// Follows the hub until cancelled, packaging every stream that goes live;
/// returns once every packager has closed its stream and drained its uploads.
pub async fn run(origin: HlsOrigin) {
    let active = origin.packaging.clone();
    let tracker = TaskTracker::new();
    // Rungs (`NAME/RUNG`) are packaged by their source's task.
    let (hub, cancel) = (origin.hub.clone(), origin.cancel.clone());
    hub.follow_sources(cancel.cancelled(), |name| {
        spawn_packager(&origin, &active, &tracker, name);
    })
    .await;
    tracker.close();
    tracker.wait().await;
}

fn spawn_packager(origin: &HlsOrigin, active: &Packaging, tracker: &TaskTracker, name: String) {
    if let std::collections::hash_map::Entry::Vacant(v) = active.lock().entry(name.clone()) {
        v.insert(false);
    } else {
        return;
    }
    let (origin, active) = (origin.clone(), active.clone());
    tracker.spawn(async move {
        origin.metrics.packagers.inc();
        let _gauge = DecOnDrop(origin.metrics.packagers.clone());
        loop {
            // Returns after the grace, or at shutdown with everything stored.
            package(&origin, &name).await;
            // Checked under the lock the announcer uses, so a publish that raced
            // with this exit is never left without a packager.
            let mut set = active.lock();
            if origin.cancel.is_cancelled() || !origin.hub.is_live(&name) {
                set.remove(&name);
                return;
            }
        }
    });
}

/// Hands a variant's new parts, then its view, to the low-latency origin.
fn publish_live(
    live: &LivePublisher,
    variant: usize,
    packager: &Packager,
    out: &[hls::Output],
    since: std::time::Instant,
) {
    if out.is_empty() {
        return;
    }
    for o in out {
        if let hls::Output::Part { path, data } = o {
            live.part(variant, path, data.clone(), since);
        }
    }
    if let Some(view) = packager.live_view() {
        live.publish(variant, view);
    }
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

/// One variant being packaged: the source or a rung.
struct VariantPackager {
    packager: Packager,
    /// Listed in the multivariant playlist (the source is not when the ladder
    /// leaves it out).
    listed: bool,
    /// The hub stream it reads.
    hub_name: String,
}

/// What the multivariant policy sees of each variant now.
fn states(hub: &Hub, variants: &[VariantPackager]) -> Vec<VariantState> {
    variants
        .iter()
        .enumerate()
        .map(|(i, v)| VariantState {
            listed: v.listed,
            info: v.packager.variant(),
            segments: v.packager.segments_listed(),
            // The source, or a rung on the air; a rung above the source's
            // size never goes live and is not waited for.
            awaited: i == 0 || hub.is_live(&v.hub_name),
        })
        .collect()
}

/// The session part of aligned segment names (`a-1234.ts`).
pub const ALIGNED_SESSION: &str = "a";

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
    let policy = origin.policies.for_publish(hub, name);
    let mut base = config.clone();
    base.container = policy.container;
    base.part_target = policy.part_target;
    // Aligned segments are named alike on every origin of one encoder: one
    // fixed session for all (their numbers come from the encoder's clock).
    base.session = if base.aligned {
        ALIGNED_SESSION.to_owned()
    } else {
        session_id()
    };
    let ladder = policy.ladder.as_ref();
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
    let live: Option<LivePublisher> = base.part_target.is_some().then(|| {
        let names: Vec<String> = variants
            .iter()
            .map(|v| v.packager.variant_name().to_owned())
            .collect();
        origin.live.open(name, &names)
    });
    // When each variant's previous event arrived: a part is cut when the frame
    // after it comes, so its latency counts from the one before.
    let mut last_event = vec![std::time::Instant::now(); variants.len()];
    info!(
        stream = name,
        variants = variants.len(),
        "hls packaging started"
    );
    let mut on_air = true;
    loop {
        tokio::select! {
            got = events.recv() => {
                let Some((i, event)) = got else { break };
                if i == 0 {
                    match &event {
                        Event::Started => on_air = true,
                        Event::Stopped => on_air = false,
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
                if let Some(live) = &live {
                    publish_live(live, i, &v.packager, &out, last_event[i]);
                    last_event[i] = std::time::Instant::now();
                }
                let closed = out.iter().any(|o| matches!(o, hls::Output::Playlist { .. }));
                if closed {
                    origin.packaging.written(name);
                }
                uploads.push(out);
                if closed {
                    uploads.push(master.render(&states(hub, &variants)).into_iter().collect());
                }
            }
            () = origin.cancel.cancelled() => {
                // A clean stop: close what is open, so the store keeps a whole
                // stream with EXT-X-ENDLIST rather than a cut-off live one.
                if on_air {
                    for (i, v) in variants.iter_mut().enumerate().filter(|(_, v)| v.listed) {
                        let out = v.packager.handle(&Event::Stopped, SystemTime::now());
                        if let Some(live) = &live {
                            publish_live(live, i, &v.packager, &out, std::time::Instant::now());
                        }
                        uploads.push(out);
                    }
                    uploads.push(master.render(&states(hub, &variants)).into_iter().collect());
                }
                break;
            }
            Some(path) = uploads.lost.recv() => {
                let variant = path.split('/').next().unwrap_or_default();
                if let Some(v) = variants.iter_mut().find(|v| v.packager.variant_name() == variant) {
                    uploads.push(v.packager.segment_lost(&path));
                }
            }
            () = tokio::time::sleep(RECONNECT_GRACE), if !on_air => break,
        }
    }
    for f in forwarders {
        f.abort();
    }
    if tokio::time::timeout(SHUTDOWN_FLUSH, uploads.finish())
        .await
        .is_err()
    {
        warn!(
            stream = name,
            "the origin store did not take the last uploads in time"
        );
    }
    let _ = cleanup.await;
    info!(stream = name, "hls packaging ended");
}
