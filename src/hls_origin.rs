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
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::hls_upload::Uploads;

/// How long a packager waits for a publisher to come back before it ends the
/// stream's playlist for good (a returning publisher continues it after a
/// discontinuity).
pub const RECONNECT_GRACE: Duration = Duration::from_secs(30);

type Active = Arc<Mutex<HashSet<String>>>;

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
    /// Streams whose segment format differs from `config.container`.
    pub containers: Arc<std::collections::HashMap<String, hls::Container>>,
    /// Stops everything.
    pub cancel: CancellationToken,
}

/// Follows the hub until cancelled, packaging every stream that goes live.
pub async fn run(origin: HlsOrigin) {
    let active: Active = Arc::default();
    let mut published = origin.hub.published();
    let mut start = origin.hub.live_streams();
    loop {
        for name in start.drain(..) {
            spawn_packager(&origin, &active, name);
        }
        tokio::select! {
            _ = origin.cancel.cancelled() => return,
            got = published.recv() => match got {
                Ok(name) => start.push(name),
                Err(RecvError::Lagged(_)) => start = origin.hub.live_streams(),
                Err(RecvError::Closed) => return,
            }
        }
    }
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

/// Packages `name` until it has been off the air for [`RECONNECT_GRACE`].
async fn package(origin: &HlsOrigin, name: &str) {
    let HlsOrigin {
        hub,
        store,
        config,
        metrics,
        max_queued,
        ..
    } = origin;
    let mut sub = hub.subscribe(name);
    let mut stream_config = config.clone();
    if let Some(c) = origin.containers.get(name) {
        stream_config.container = *c;
    }
    let mut packager = Packager::new(stream_config);
    let mut uploads = Uploads::start(store.clone(), name.to_owned(), *max_queued, metrics.clone());
    info!(stream = name, "hls packaging started");
    let mut live = true;
    loop {
        tokio::select! {
            event = sub.recv() => {
                let Some(event) = event else { break };
                match &event {
                    Event::Started => live = true,
                    Event::Stopped => live = false,
                    _ => {}
                }
                uploads.push(packager.handle(&event, SystemTime::now()));
            }
            Some(path) = uploads.lost.recv() => uploads.push(packager.segment_lost(&path)),
            () = tokio::time::sleep(RECONNECT_GRACE), if !live => break,
        }
    }
    uploads.finish().await;
    info!(stream = name, "hls packaging ended");
}
