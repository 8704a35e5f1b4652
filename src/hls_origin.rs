//! Runs an HLS packager for every live stream and stores what it produces in the
//! origin store: segment first, then the playlists that name it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hls::{Output, Packager, PackagerConfig};
use media_core::{Event, Hub};
use origin_store::OriginStore;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long a packager waits for a publisher to come back before it ends the
/// stream's playlist for good (a returning publisher continues it after a
/// discontinuity).
pub const RECONNECT_GRACE: Duration = Duration::from_secs(30);

type Active = Arc<Mutex<HashSet<String>>>;

/// Follows the hub until `cancel` fires, packaging every stream that goes live.
pub async fn run(hub: Hub, store: OriginStore, config: PackagerConfig, cancel: CancellationToken) {
    let active: Active = Arc::default();
    let mut published = hub.published();
    let mut start = hub.live_streams();
    loop {
        for name in start.drain(..) {
            spawn_packager(&hub, &store, &config, &active, &cancel, name);
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
    active: &Active,
    cancel: &CancellationToken,
    name: String,
) {
    if !lock(active).insert(name.clone()) {
        return;
    }
    let (hub, store, config, active, cancel) = (
        hub.clone(),
        store.clone(),
        config.clone(),
        active.clone(),
        cancel.clone(),
    );
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                () = package(&hub, &store, &config, &name) => {}
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

fn lock(active: &Active) -> std::sync::MutexGuard<'_, HashSet<String>> {
    active.lock().unwrap_or_else(|e| e.into_inner())
}

/// Packages `name` until it has been off the air for [`RECONNECT_GRACE`].
async fn package(hub: &Hub, store: &OriginStore, config: &PackagerConfig, name: &str) {
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
        apply(store, name, &mut packager, outputs).await;
    }
    info!(stream = name, "hls packaging ended");
}

async fn apply(store: &OriginStore, name: &str, packager: &mut Packager, outputs: Vec<Output>) {
    let mut queue = std::collections::VecDeque::from(outputs);
    while let Some(out) = queue.pop_front() {
        match out {
            Output::Segment { path, data } => {
                if let Err(e) = store.put(&format!("{name}/{path}"), data).await {
                    warn!(stream = name, segment = %path, error = %e, "segment not stored; leaving it out of the playlist");
                    // Replace the playlists that would have named it.
                    queue.retain(|o| !matches!(o, Output::Playlist { .. }));
                    queue.extend(packager.segment_lost(&path));
                }
            }
            Output::Playlist { path, data } => {
                if let Err(e) = store.put(&format!("{name}/{path}"), data).await {
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
