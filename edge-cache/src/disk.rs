//! The disk tier: where complete segments live, as files, so that their
//! bytes sit in the kernel's page cache (shared, reclaimed under pressure,
//! sent to sockets with `sendfile`) rather than in the edge's heap, and an
//! edge holds far more than its memory.
//!
//! Plain files named by a counter, written when a segment's fill completes
//! (temporary file, then rename: a reader never sees half a file), indexed
//! in memory by moka weighted by bytes; an eviction deletes the file (a
//! reader that opened it keeps its inode). The memory tier holds the segment
//! only until its file is in place. The index does not survive a restart,
//! so the directory is emptied on start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use moka::notification::RemovalCause;

use crate::object::Object;
use hls::target::CacheKey;

/// What the disk tier keeps of an object besides its body.
pub struct DiskEntry {
    /// The file.
    path: PathBuf,
    /// The object without its body (the body is the file).
    object: Arc<Object>,
}

/// A segment on disk, opened: what a response needs to send it.
pub struct DiskFile {
    /// The open file (stays readable if the entry is evicted meanwhile).
    pub file: std::fs::File,
    /// The object's head, freshness and `ETag`; its body is empty and
    /// `head.content_length` is the file's length.
    pub meta: Arc<Object>,
}

impl DiskFile {
    /// The file's length.
    pub fn len(&self) -> u64 {
        self.meta.head.content_length.unwrap_or(0)
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole object, its body read from the file, off the async threads.
    pub async fn load(self) -> Option<Object> {
        let expected = self.len();
        let mut file = self.file;
        let body = tokio::task::spawn_blocking(move || {
            let mut body = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
            std::io::Read::read_to_end(&mut file, &mut body).map(|_| body)
        })
        .await
        .ok()?
        .ok()?;
        (body.len() as u64 == expected).then(|| Object {
            body: body.into(),
            ..Object::clone(&self.meta)
        })
    }
}

/// Files of complete segments under one directory, within a byte budget.
pub struct DiskTier {
    dir: PathBuf,
    index: moka::sync::Cache<CacheKey, Arc<DiskEntry>>,
    next: AtomicU64,
}

impl DiskTier {
    /// Empties `dir` (creating it) and keeps at most `budget` bytes there.
    pub fn open(
        dir: &Path,
        budget: u64,
        evictions: prometheus_client::metrics::counter::Counter,
    ) -> std::io::Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
        let index = moka::sync::Cache::builder()
            .max_capacity(budget)
            .weigher(|_k: &CacheKey, v: &Arc<DiskEntry>| {
                u32::try_from(v.object.head.content_length.unwrap_or(0)).unwrap_or(u32::MAX)
            })
            .eviction_listener(move |_k, v: Arc<DiskEntry>, cause| {
                if cause == RemovalCause::Size {
                    evictions.inc();
                }
                // Replaced or evicted: the file goes (a reader that opened it
                // keeps reading its inode).
                let _ = std::fs::remove_file(&v.path);
            })
            .build();
        Ok(Self {
            dir: dir.to_owned(),
            index,
            next: AtomicU64::new(0),
        })
    }

    /// Writes `object` (complete, with its body) to a file, off the async
    /// threads; the index is updated once the file is in place, and then
    /// `stored` runs (not when the write fails).
    pub fn store(
        self: &Arc<Self>,
        key: CacheKey,
        object: &Object,
        stored: impl FnOnce() + Send + 'static,
    ) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{n:016x}.obj"));
        let body = object.body.clone();
        let meta = Object {
            head: crate::object::Head {
                content_length: Some(body.len() as u64),
                ..object.head.clone()
            },
            body: Bytes::new(),
            etag: object.etag.clone(),
            received: object.received,
            freshness: object.freshness,
        };
        let tier = self.clone();
        tokio::task::spawn_blocking(move || {
            let tmp = path.with_extension("tmp");
            let written = std::fs::write(&tmp, &body).and_then(|()| std::fs::rename(&tmp, &path));
            match written {
                Ok(()) => {
                    tier.index.insert(
                        key,
                        Arc::new(DiskEntry {
                            path,
                            object: Arc::new(meta),
                        }),
                    );
                    stored();
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    tracing::warn!(?key, error = %e, "disk tier write failed");
                }
            }
        });
    }

    /// The file of `key`, opened (a local open, as nginx does on its
    /// event loop: a metadata lookup, no data read).
    pub fn file(&self, key: &CacheKey) -> Option<DiskFile> {
        let entry = self.index.get(key)?;
        match std::fs::File::open(&entry.path) {
            Ok(file) => Some(DiskFile {
                file,
                meta: entry.object.clone(),
            }),
            Err(_) => {
                self.index.invalidate(key);
                None
            }
        }
    }

    /// The object at `key`, read back from its file.
    pub async fn load(&self, key: &CacheKey) -> Option<Object> {
        let object = self.file(key)?.load().await;
        if object.is_none() {
            self.index.invalidate(key);
        }
        object
    }

    /// Drops `key`.
    pub fn remove(&self, key: &CacheKey) {
        self.index.invalidate(key);
    }

    /// Keys of `stream`.
    pub fn keys_of(&self, stream: &str) -> Vec<CacheKey> {
        self.index
            .iter()
            .filter(|(k, _)| k.stream() == stream)
            .map(|(k, _)| CacheKey::clone(&k))
            .collect()
    }

    /// Bytes held, after pending evictions have run.
    pub fn bytes(&self) -> u64 {
        self.index.run_pending_tasks();
        self.index.weighted_size()
    }
}
