//! The upload queue between an HLS packager and the origin store.
//!
//! Packaging never waits for the store: outputs go into a FIFO that one uploader
//! drains in order, so a segment is always stored before the playlists queued
//! after it. While the store is down the uploader keeps retrying the head and the
//! queue grows, up to a bound; past it the oldest segment is dropped (and the
//! packager told, so no playlist names it and the gap is marked). When the store
//! returns the queue drains and the origin catches up. Only the newest playlist
//! of each path is kept queued, so an outage costs memory for segments only.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hls::Output;
use origin_store::OriginStore;
use tokio::sync::{Notify, mpsc};
use tracing::{info, warn};

use crate::hls_origin::HlsMetrics;

/// The longest wait between two tries of the same upload.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Default)]
struct State {
    /// Outputs with an id, so the uploader can tell whether the head it stored is
    /// still the head (without comparing segment bytes).
    queue: VecDeque<(u64, Output)>,
    next_id: u64,
    closed: bool,
}

/// The packager's side of the queue.
pub struct Uploads {
    state: Arc<(Mutex<State>, Notify)>,
    /// Segments the uploader had to drop; the packager must forget them.
    pub lost: mpsc::UnboundedReceiver<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Uploads {
    /// Starts an uploader for stream `name` holding at most `max_segments` segments.
    pub fn start(
        store: OriginStore,
        name: String,
        max_segments: usize,
        metrics: HlsMetrics,
    ) -> Self {
        let state: Arc<(Mutex<State>, Notify)> = Arc::default();
        let (lost_tx, lost) = mpsc::unbounded_channel();
        let task = tokio::spawn(upload(
            store,
            name,
            max_segments.max(1),
            metrics,
            state.clone(),
            lost_tx,
        ));
        Self { state, lost, task }
    }

    /// Queues outputs in order; a playlist replaces the queued one of the same path.
    pub fn push(&self, outputs: Vec<Output>) {
        let (state, notify) = &*self.state;
        let mut st = lock(state);
        for out in outputs {
            if let Output::Playlist { path, .. } = &out {
                st.queue
                    .retain(|(_, q)| !matches!(q, Output::Playlist { path: p, .. } if p == path));
            }
            let id = st.next_id;
            st.next_id += 1;
            st.queue.push_back((id, out));
        }
        drop(st);
        notify.notify_one();
    }

    /// Waits until everything queued is stored (or dropped), then ends the uploader.
    pub async fn finish(self) {
        let (state, notify) = &*self.state;
        lock(state).closed = true;
        notify.notify_one();
        let _ = self.task.await;
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn upload(
    store: OriginStore,
    name: String,
    max_segments: usize,
    metrics: HlsMetrics,
    state: Arc<(Mutex<State>, Notify)>,
    lost: mpsc::UnboundedSender<String>,
) {
    let (st, notify) = &*state;
    let mut backoff = Duration::from_millis(100);
    let mut failing = false;
    // This stream's share of the process-wide gauge, taken back when it ends.
    let mut counted: i64 = 0;
    let mut count = |now: usize| {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        metrics.upload_queue.inc_by(now - counted);
        counted = now;
    };
    loop {
        let (front, closed) = {
            let mut q = lock(st);
            enforce_bound(&mut q.queue, max_segments, &metrics, &lost, &name);
            count(segments(&q.queue));
            (q.queue.front().cloned(), q.closed)
        };
        let (id, head) = match front {
            Some(h) => h,
            None if closed => {
                count(0);
                return;
            }
            None => {
                // A push between the unlock and here leaves a permit: nothing is missed.
                notify.notified().await;
                continue;
            }
        };
        let result = match &head {
            Output::Segment { path, data } | Output::Playlist { path, data } => {
                store.put(&format!("{name}/{path}"), data.clone()).await
            }
            Output::Delete { path } => store.delete(&format!("{name}/{path}")).await,
        };
        match result {
            Ok(()) => {
                if failing {
                    info!(stream = %name, "origin store is back; catching up");
                    failing = false;
                }
                backoff = Duration::from_millis(100);
                let mut q = lock(st);
                // The head may have been replaced (a newer playlist) or dropped meanwhile.
                if q.queue.front().is_some_and(|(front, _)| *front == id) {
                    q.queue.pop_front();
                }
                if matches!(head, Output::Segment { .. }) {
                    metrics.segments_stored.inc();
                }
            }
            Err(e) => {
                if !failing {
                    warn!(stream = %name, error = %e, "origin store unavailable; queueing uploads");
                    failing = true;
                }
                if matches!(head, Output::Playlist { .. }) {
                    metrics.playlist_errors.inc();
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn segments(queue: &VecDeque<(u64, Output)>) -> usize {
    queue
        .iter()
        .filter(|(_, o)| matches!(o, Output::Segment { .. }))
        .count()
}

/// Drops the oldest queued segments beyond the bound, and every queued playlist
/// (they may name a dropped segment; the packager sends corrected ones).
fn enforce_bound(
    queue: &mut VecDeque<(u64, Output)>,
    max_segments: usize,
    metrics: &HlsMetrics,
    lost: &mpsc::UnboundedSender<String>,
    name: &str,
) {
    while segments(queue) > max_segments {
        let Some(at) = queue
            .iter()
            .position(|(_, o)| matches!(o, Output::Segment { .. }))
        else {
            return;
        };
        if let Some((_, Output::Segment { path, .. })) = queue.remove(at) {
            warn!(stream = name, segment = %path, "upload queue full; dropping the oldest segment");
            metrics.segments_lost.inc();
            queue.retain(|(_, o)| !matches!(o, Output::Playlist { .. }));
            let _ = lost.send(path);
        }
    }
}
