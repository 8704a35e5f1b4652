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

use bytes::Bytes;
use hls::Output;
use origin_store::{OriginStore, StoreError};
use tokio::sync::{Notify, mpsc};
use tracing::{info, warn};

use crate::metrics::HlsMetrics;

/// Where the queue stores outputs: the origin store (a test double in the
/// unit tests below, to take it down and bring it back at will).
pub trait Store: Send + Sync + 'static {
    /// Stores `data` at `key`.
    fn put(
        &self,
        key: &str,
        data: Bytes,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send;
    /// Deletes `key` (a missing key is not an error).
    fn delete(&self, key: &str)
    -> impl std::future::Future<Output = Result<(), StoreError>> + Send;
}

impl Store for OriginStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        OriginStore::put(self, key, data).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        OriginStore::delete(self, key).await
    }
}

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
        store: impl Store,
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
            // Parts live in the origin's memory (LL-HLS), never in the store.
            if matches!(out, Output::Part { .. }) {
                continue;
            }
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
    store: impl Store,
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
            Output::Part { .. } => Ok(()),
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A store that can be taken down, and logs what it stored in order.
    #[derive(Clone, Default)]
    struct Flaky {
        down: Arc<AtomicBool>,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Store for Flaky {
        async fn put(&self, key: &str, _data: Bytes) -> Result<(), StoreError> {
            if self.down.load(Ordering::Relaxed) {
                return Err(StoreError::Io(std::io::Error::other("store down")));
            }
            self.log.lock().expect("log").push(format!("put {key}"));
            Ok(())
        }
        async fn delete(&self, key: &str) -> Result<(), StoreError> {
            if self.down.load(Ordering::Relaxed) {
                return Err(StoreError::Io(std::io::Error::other("store down")));
            }
            self.log.lock().expect("log").push(format!("delete {key}"));
            Ok(())
        }
    }

    fn segment(n: u32) -> Output {
        Output::Segment {
            path: format!("source/{n}.ts"),
            data: Bytes::from_static(b"ts"),
        }
    }

    fn playlist(n: u32) -> Output {
        Output::Playlist {
            path: "source/index.m3u8".into(),
            data: Bytes::from(format!("up to {n}")),
        }
    }

    fn log(store: &Flaky) -> Vec<String> {
        store.log.lock().expect("log").clone()
    }

    #[tokio::test(start_paused = true)]
    async fn segments_are_stored_in_order_before_the_playlists_after_them() {
        let store = Flaky::default();
        let uploads = Uploads::start(store.clone(), "s".into(), 10, HlsMetrics::default());
        for n in 0..4 {
            uploads.push(vec![segment(n), playlist(n)]);
        }
        uploads.push(vec![Output::Delete {
            path: "source/0.ts".into(),
        }]);
        uploads.finish().await;
        let got = log(&store);
        let segments: Vec<_> = got
            .iter()
            .filter(|l| l.ends_with(".ts") && l.starts_with("put"))
            .collect();
        assert_eq!(
            segments,
            [
                "put s/source/0.ts",
                "put s/source/1.ts",
                "put s/source/2.ts",
                "put s/source/3.ts"
            ]
        );
        // Every playlist put comes after the segment it was queued behind.
        let last_segment = got
            .iter()
            .rposition(|l| l == "put s/source/3.ts")
            .expect("stored");
        let last_playlist = got
            .iter()
            .rposition(|l| l.ends_with("index.m3u8"))
            .expect("stored");
        assert!(last_playlist > last_segment, "{got:?}");
        assert_eq!(got.last().map(String::as_str), Some("delete s/source/0.ts"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_is_caught_up_with_only_the_newest_playlist() {
        let store = Flaky::default();
        store.down.store(true, Ordering::Relaxed);
        let metrics = HlsMetrics::default();
        let uploads = Uploads::start(store.clone(), "s".into(), 10, metrics.clone());
        for n in 0..5 {
            uploads.push(vec![segment(n), playlist(n)]);
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(log(&store).is_empty());
        assert_eq!(metrics.upload_queue.get(), 5, "the gauge shows the backlog");
        store.down.store(false, Ordering::Relaxed);
        uploads.finish().await;
        let got = log(&store);
        let playlists = got.iter().filter(|l| l.ends_with("index.m3u8")).count();
        assert_eq!(
            got.iter().filter(|l| l.ends_with(".ts")).count(),
            5,
            "{got:?}"
        );
        assert!(playlists <= 2, "stale playlists were uploaded: {got:?}");
        assert_eq!(metrics.upload_queue.get(), 0);
        assert_eq!(metrics.segments_lost.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_bound_the_oldest_segments_are_dropped_and_reported() {
        let store = Flaky::default();
        store.down.store(true, Ordering::Relaxed);
        let metrics = HlsMetrics::default();
        let mut uploads = Uploads::start(store.clone(), "s".into(), 3, metrics.clone());
        for n in 0..5 {
            uploads.push(vec![segment(n), playlist(n)]);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // The bound is applied at the uploader's next try (backoff at most 2 s).
        tokio::time::sleep(MAX_BACKOFF * 2).await;
        let mut lost = Vec::new();
        while let Ok(path) = uploads.lost.try_recv() {
            lost.push(path);
        }
        assert_eq!(lost, ["source/0.ts", "source/1.ts"]);
        assert_eq!(metrics.segments_lost.get(), 2);
        store.down.store(false, Ordering::Relaxed);
        uploads.finish().await;
        let stored: Vec<_> = log(&store)
            .into_iter()
            .filter(|l| l.ends_with(".ts"))
            .collect();
        assert_eq!(
            stored,
            [
                "put s/source/2.ts",
                "put s/source/3.ts",
                "put s/source/4.ts"
            ]
        );
    }
}
