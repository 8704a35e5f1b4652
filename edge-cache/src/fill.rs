//! One origin fetch in flight, shared by every client that wants the object.
//!
//! The fetch task appends chunks as they arrive; each waiter reads them from
//! its own position and is woken on every append, so a client that joins
//! mid-fill gets what has arrived at once and the rest as it comes, without
//! waiting for the whole object. Chunks are `Bytes` received once and shared.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::sync::watch;

use crate::object::Head;

/// Why a fill did not produce an object; every waiter gets the same one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FillError {
    /// No origin answered in time (504).
    #[error("origin timed out")]
    Timeout,
    /// No origin could be reached (504).
    #[error("no origin reachable: {0}")]
    Unreachable(String),
    /// An origin answered with something that is not an object (502).
    #[error("bad origin response: {0}")]
    BadResponse(String),
    /// The origin closed or failed mid-body (the client's connection is cut).
    #[error("origin body failed: {0}")]
    Body(String),
    /// Larger than the edge may hold (502).
    #[error("object larger than {0} bytes")]
    TooLarge(u64),
    /// The waiter waited longer than its bound.
    #[error("waited too long for the origin")]
    WaitTimeout,
}

#[derive(Default)]
struct State {
    head: Option<Arc<Head>>,
    chunks: Vec<Bytes>,
    received: u64,
    end: Option<Result<(), FillError>>,
}

/// A fetch in flight.
pub struct Fill {
    state: Mutex<State>,
    changed: watch::Sender<()>,
    /// Bytes held by every fill alive (in flight, or done and still read by
    /// a slow client), shared with the edge's budget.
    held: Option<Arc<AtomicU64>>,
}

impl Default for Fill {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            changed: watch::channel(()).0,
            held: None,
        }
    }
}

impl Drop for Fill {
    fn drop(&mut self) {
        if let Some(held) = &self.held {
            let received = self.state.get_mut().map_or(0, |s| s.received);
            held.fetch_sub(received, Ordering::Relaxed);
        }
    }
}

impl Fill {
    /// A fill whose bytes count in `held` for as long as it is alive.
    pub fn with_budget(held: Arc<AtomicU64>) -> Self {
        Self {
            state: Mutex::default(),
            changed: watch::channel(()).0,
            held: Some(held),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The origin's status and headers are known.
    pub fn set_head(&self, head: Head) {
        self.lock().head = Some(Arc::new(head));
        self.changed.send_replace(());
    }

    /// A chunk of the body arrived.
    pub fn push(&self, chunk: Bytes) {
        {
            let mut s = self.lock();
            s.received += chunk.len() as u64;
            if let Some(held) = &self.held {
                held.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
            s.chunks.push(chunk);
        }
        self.changed.send_replace(());
    }

    /// The fetch ended.
    pub fn finish(&self, result: Result<(), FillError>) {
        self.lock().end = Some(result);
        self.changed.send_replace(());
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.lock().received
    }

    /// The body so far as one buffer (one copy, made once when the fill
    /// completes, so cache hits send a single contiguous `Bytes`).
    pub fn body(&self) -> Bytes {
        let s = self.lock();
        match s.chunks.as_slice() {
            [one] => one.clone(),
            chunks => {
                let mut all = Vec::with_capacity(usize::try_from(s.received).unwrap_or(0));
                for c in chunks {
                    all.extend_from_slice(c);
                }
                all.into()
            }
        }
    }

    /// Waits, at most `limit`, until `ready` says something of the state
    /// (woken on every change of it).
    async fn wait_until<T>(
        &self,
        limit: Duration,
        ready: impl Fn(&State) -> Option<Result<T, FillError>>,
    ) -> Result<T, FillError> {
        let mut rx = self.changed.subscribe();
        let wait = async {
            loop {
                rx.borrow_and_update();
                if let Some(r) = ready(&self.lock()) {
                    return r;
                }
                if rx.changed().await.is_err() {
                    return Err(FillError::Body("fill dropped".into()));
                }
            }
        };
        tokio::time::timeout(limit, wait)
            .await
            .unwrap_or(Err(FillError::WaitTimeout))
    }

    /// Waits for the whole body, at most `limit`.
    pub async fn complete(&self, limit: Duration) -> Result<Bytes, FillError> {
        self.wait_until(limit, |s| s.end.clone()).await?;
        Ok(self.body())
    }

    /// Waits for the head, at most `limit`.
    pub async fn head(&self, limit: Duration) -> Result<Arc<Head>, FillError> {
        self.wait_until(limit, |s| match (&s.head, &s.end) {
            (Some(h), _) => Some(Ok(h.clone())),
            (None, Some(Err(e))) => Some(Err(e.clone())),
            (None, Some(Ok(()))) => {
                Some(Err(FillError::BadResponse("ended without a head".into())))
            }
            (None, None) => None,
        })
        .await
    }

    /// The bytes `start..end` (`end` `None`: to the end) as they arrive; an
    /// error if the fill fails or nothing arrives for `idle`.
    pub fn reader(
        self: &Arc<Self>,
        start: u64,
        end: Option<u64>,
        idle: Duration,
    ) -> impl Stream<Item = Result<Bytes, FillError>> + Send + 'static {
        let reader = Reader {
            fill: self.clone(),
            rx: self.changed.subscribe(),
            next_chunk: 0,
            position: 0,
            start,
            end,
            idle,
            done: false,
        };
        futures::stream::unfold(reader, |mut r| async move {
            let item = r.next().await?;
            Some((item, r))
        })
    }
}

struct Reader {
    fill: Arc<Fill>,
    rx: watch::Receiver<()>,
    next_chunk: usize,
    /// Offset of `next_chunk` in the body.
    position: u64,
    start: u64,
    end: Option<u64>,
    idle: Duration,
    done: bool,
}

impl Reader {
    async fn next(&mut self) -> Option<Result<Bytes, FillError>> {
        if self.done {
            return None;
        }
        loop {
            self.rx.borrow_and_update();
            {
                let s = self.fill.lock();
                while let Some(chunk) = s.chunks.get(self.next_chunk) {
                    let from = self.position;
                    let to = from + chunk.len() as u64;
                    self.next_chunk += 1;
                    self.position = to;
                    if self.end.is_some_and(|e| from >= e) {
                        self.done = true;
                        return None;
                    }
                    let lo = self.start.max(from);
                    let hi = self.end.map_or(to, |e| e.min(to));
                    if lo < hi {
                        let piece = chunk.slice((lo - from) as usize..(hi - from) as usize);
                        if self.end.is_some_and(|e| hi >= e) {
                            self.done = true;
                        }
                        return Some(Ok(piece));
                    }
                }
                match &s.end {
                    Some(Ok(())) => {
                        self.done = true;
                        return None;
                    }
                    Some(Err(e)) => {
                        self.done = true;
                        return Some(Err(e.clone()));
                    }
                    None => {}
                }
                if self.end.is_some_and(|e| self.position >= e) {
                    self.done = true;
                    return None;
                }
            }
            match tokio::time::timeout(self.idle, self.rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    self.done = true;
                    return Some(Err(FillError::WaitTimeout));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn head() -> Head {
        Head {
            status: 200,
            content_type: None,
            cache_control: None,
            etag: None,
            last_modified: None,
            allow_origin: None,
            content_length: None,
            age: Duration::ZERO,
        }
    }

    async fn collect(
        s: impl Stream<Item = Result<Bytes, FillError>>,
    ) -> Result<Vec<u8>, FillError> {
        let mut out = Vec::new();
        futures::pin_mut!(s);
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn a_late_reader_gets_what_arrived_then_the_rest() {
        let fill = Arc::new(Fill::default());
        fill.set_head(head());
        fill.push(Bytes::from_static(b"hello "));
        let idle = Duration::from_secs(5);
        let mut early = Box::pin(fill.reader(0, None, idle));
        assert_eq!(
            early.next().await.expect("chunk").expect("ok"),
            &b"hello "[..]
        );
        let late = fill.reader(0, None, idle);
        let ranged = fill.reader(3, Some(8), idle);
        let writer = {
            let fill = fill.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                fill.push(Bytes::from_static(b"wor"));
                fill.push(Bytes::from_static(b"ld"));
                fill.finish(Ok(()));
            })
        };
        assert_eq!(collect(late).await.expect("ok"), b"hello world");
        assert_eq!(collect(ranged).await.expect("ok"), b"lo wo");
        assert_eq!(collect(early).await.expect("ok"), b"world");
        writer.await.expect("writer");
        assert_eq!(&fill.body()[..], b"hello world");
    }

    #[tokio::test]
    async fn every_waiter_sees_the_same_error() {
        let fill = Arc::new(Fill::default());
        let idle = Duration::from_secs(5);
        let a = fill.reader(0, None, idle);
        let b = fill.reader(0, None, idle);
        let h = {
            let fill = fill.clone();
            tokio::spawn(async move { fill.head(Duration::from_secs(5)).await })
        };
        fill.finish(Err(FillError::Timeout));
        assert_eq!(collect(a).await, Err(FillError::Timeout));
        assert_eq!(collect(b).await, Err(FillError::Timeout));
        assert_eq!(h.await.expect("join").err(), Some(FillError::Timeout));
    }

    #[tokio::test(start_paused = true)]
    async fn waits_are_bounded() {
        let fill = Arc::new(Fill::default());
        assert_eq!(
            fill.head(Duration::from_secs(2)).await.err(),
            Some(FillError::WaitTimeout)
        );
        fill.set_head(head());
        fill.push(Bytes::from_static(b"x"));
        let r = fill.reader(0, None, Duration::from_secs(3));
        assert_eq!(collect(r).await, Err(FillError::WaitTimeout));
    }
}
