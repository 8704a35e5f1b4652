//! Runs a transcoding ladder for every live stream that has one: the source is
//! read from the hub on a dedicated OS thread (the decoder thread), and every
//! rung is published back into the hub as `STREAM/RUNG`, where the HLS origin
//! (and RTMP players) find it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use media_core::Hub;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use transcode::{LadderMetrics, Rung, Sink};

/// What every ladder of the process shares.
#[derive(Clone)]
pub struct Transcoding {
    /// Where sources come from and rungs go.
    pub hub: Hub,
    /// Each publish's ladder, if it is transcoded (the policy the packager
    /// uses too).
    pub policies: Arc<crate::policy::Policies>,
    /// HLS segment duration: rungs get a keyframe at least this often.
    pub segment: Duration,
    /// What is reported.
    pub metrics: LadderMetrics,
    /// Stops everything.
    pub cancel: CancellationToken,
}

type Active = Arc<Mutex<HashSet<String>>>;

/// Follows the hub until cancelled, starting a ladder for every transcoded
/// stream that goes live. Ladder threads end with their stream.
pub async fn run(t: Transcoding) {
    if let Err(e) = transcode::init() {
        warn!(error = %e, "transcoding disabled: FFmpeg could not be initialised");
        // Still a service of the role until it stops: ending now would read
        // as a crash.
        t.cancel.cancelled().await;
        return;
    }
    let active: Active = Arc::default();
    let (hub, cancel) = (t.hub.clone(), t.cancel.clone());
    hub.follow_sources(cancel.cancelled(), |name| {
        spawn_ladder(&t, &active, name);
    })
    .await;
}

fn lock(active: &Active) -> std::sync::MutexGuard<'_, HashSet<String>> {
    active.lock().unwrap_or_else(|e| e.into_inner())
}

fn spawn_ladder(t: &Transcoding, active: &Active, name: String) {
    let Some(config) = t.policies.for_publish(&t.hub, &name).ladder.clone() else {
        return;
    };
    if !lock(active).insert(name.clone()) {
        return;
    }
    let (t, active) = (t.clone(), active.clone());
    let runtime = tokio::runtime::Handle::current();
    let spawned = std::thread::Builder::new()
        .name(format!("ladder-{name}"))
        .spawn(move || {
            loop {
                // Subscribed before the ladder starts, so it sees the GOP cache. A
                // publish that already ended leaves nothing to transcode.
                let mut sub = t.hub.subscribe_as(&name, "transcode");
                if !sub.is_live() {
                    let mut set = lock(&active);
                    if !t.hub.is_live(&name) {
                        set.remove(&name);
                        return;
                    }
                    continue;
                }
                let cancel = t.cancel.clone();
                let mut source = || {
                    runtime.block_on(async {
                        tokio::select! {
                            _ = cancel.cancelled() => None,
                            e = sub.recv() => e,
                        }
                    })
                };
                let hub = t.hub.clone();
                let stream = name.clone();
                let mut sinks = |rung: &Rung| -> Option<Box<dyn Sink>> {
                    let path = match media_core::StreamPath::rendition(&stream, &rung.name) {
                        Ok(p) => p.to_string(),
                        Err(e) => {
                            warn!(stream = %stream, rung = %rung.name, error = %e, "rung not published");
                            return None;
                        }
                    };
                    match hub.publish(&path) {
                        Ok(p) => Some(Box::new(p)),
                        Err(e) => {
                            warn!(stream = %stream, rung = %rung.name, error = %e, "rung not published");
                            None
                        }
                    }
                };
                info!(stream = %name, "ladder started");
                transcode::run(&config, t.segment, &mut source, &mut sinks, &t.metrics);
                info!(stream = %name, "ladder stopped");
                drop(sub);
                // Checked under the lock the announcer uses, so a publish that
                // raced with this exit is never left without a ladder.
                let mut set = lock(&active);
                if t.cancel.is_cancelled() || !t.hub.is_live(&name) {
                    set.remove(&name);
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start a ladder thread");
    }
}
