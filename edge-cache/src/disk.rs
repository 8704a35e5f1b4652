//! The disk tier: complete segments also kept as files, so an edge can hold
//! far more than its memory and a segment evicted from memory is read back
//! from local disk instead of the origin.
//!
//! Plain files named by a hash of the key, written through when a segment
//! enters the memory tier (temporary file, then rename: a reader never sees
//! half a file), indexed in memory by moka weighted by bytes; an eviction
//! deletes the file. The index does not survive a restart, so the directory
//! is emptied on start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use moka::notification::RemovalCause;

use crate::object::Object;
use crate::request::CacheKey;

/// What the disk tier keeps of an object besides its body.
pub struct DiskEntry {
    /// The file.
    path: PathBuf,
    /// The object without its body (the body is the file).
    object: Object,
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
    /// threads; the index is updated once the file is in place.
    pub fn store(self: &Arc<Self>, key: CacheKey, object: &Object) {
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
                Ok(()) => tier
                    .index
                    .insert(key, Arc::new(DiskEntry { path, object: meta })),
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    tracing::warn!(?key, error = %e, "disk tier write failed");
                }
            }
        });
    }

    /// The object at `key`, read back from its file.
    pub async fn load(&self, key: &CacheKey) -> Option<Object> {
        let entry = self.index.get(key)?;
        match tokio::fs::read(&entry.path).await {
            Ok(body) if Some(body.len() as u64) == entry.object.head.content_length => {
                Some(Object {
                    head: entry.object.head.clone(),
                    body: body.into(),
                    etag: entry.object.etag.clone(),
                    received: entry.object.received,
                    freshness: entry.object.freshness,
                })
            }
            _ => {
                self.index.invalidate(key);
                None
            }
        }
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
