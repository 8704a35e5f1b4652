//! Runs an HLS packager for every live stream and stores what it produces in the
//! origin store: segment first, then the playlists that name it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hls::{Output, Packager, PackagerConfig};
use media_core::{Event, Hub};
use origin_store::OriginStore;
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use prometheus_client::registry::Registry;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

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

/// Follows the hub until `cancel` fires, packaging every stream that goes live.
pub async fn run(
    hub: Hub,
    store: OriginStore,
    config: PackagerConfig,
    metrics: HlsMetrics,
    cancel: CancellationToken,
) {
    let active: Active = Arc::default();
    let mut published = hub.published();
    let mut start = hub.live_streams();
    loop {
        for name in start.drain(..) {
            spawn_packager(&hub, &store, &config, &metrics, &active, &cancel, name);
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            got = published.recv() => match got {
                Ok(name) => start.push(name),
                Err(RecvError::Lagged(_)) => start = hub.live_streams(),
                Err(RecvError::Closed) => return,
            }
        }
    }
}

fn spawn_packager(
    hub: &Hub,
    store: &OriginStore,
    config: &PackagerConfig,
    metrics: &HlsMetrics,
    active: &Active,
    cancel: &CancellationToken,
    name: String,
) {
    if !lock(active).insert(name.clone()) {
        return;
    }
    let (hub, store, config, metrics, active, cancel) = (
        hub.clone(),
        store.clone(),
        config.clone(),
        metrics.clone(),
        active.clone(),
        cancel.clone(),
    );
    tokio::spawn(async move {
        metrics.packagers.inc();
        let _gauge = DecOnDrop(metrics.packagers.clone());
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                () = package(&hub, &store, &config, &metrics, &name) => {}
            }
            // Checked under the lock the announcer uses, so a publish that raced
            // with this exit is never left without a packager.
            let mut set = lock(&active);
            if !hub.is_live(&name) {
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
async fn package(
    hub: &Hub,
    store: &OriginStore,
    config: &PackagerConfig,
    metrics: &HlsMetrics,
    name: &str,
) {
    let mut sub = hub.subscribe(name);
    let mut packager = Packager::new(config.clone());
    info!(stream = name, "hls packaging started");
    let mut live = true;
    loop {
        let event = if live {
            sub.recv().await
        } else {
            match tokio::time::timeout(RECONNECT_GRACE, sub.recv()).await {
                Ok(e) => e,
                Err(_) => break,
            }
        };
        let Some(event) = event else { break };
        match &event {
            Event::Started => live = true,
            Event::Stopped => live = false,
            _ => {}
        }
        let outputs = packager.handle(&event, SystemTime::now());
        apply(store, metrics, name, &mut packager, outputs).await;
    }
    info!(stream = name, "hls packaging ended");
}

async fn apply(
    store: &OriginStore,
    metrics: &HlsMetrics,
    name: &str,
    packager: &mut Packager,
    outputs: Vec<Output>,
) {
    let mut queue = std::collections::VecDeque::from(outputs);
    while let Some(out) = queue.pop_front() {
        match out {
            Output::Segment { path, data } => {
                let stored = store.put(&format!("{name}/{path}"), data).await;
                if stored.is_ok() {
                    metrics.segments_stored.inc();
                }
                if let Err(e) = stored {
                    metrics.segments_lost.inc();
                    warn!(stream = name, segment = %path, error = %e, "segment not stored; leaving it out of the playlist");
                    // Replace the playlists that would have named it.
                    queue.retain(|o| !matches!(o, Output::Playlist { .. }));
                    queue.extend(packager.segment_lost(&path));
                }
            }
            Output::Playlist { path, data } => {
                if let Err(e) = store.put(&format!("{name}/{path}"), data).await {
                    metrics.playlist_errors.inc();
                    warn!(stream = name, playlist = %path, error = %e, "playlist not stored");
                }
            }
            Output::Delete { path } => {
                if let Err(e) = store.delete(&format!("{name}/{path}")).await {
                    warn!(stream = name, segment = %path, error = %e, "expired segment not deleted");
                }
            }
        }
    }
}
