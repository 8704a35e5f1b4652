//! The HLS origin: one interface over `object_store` backends. It knows keys,
//! bytes and HTTP cache semantics, not media.
//!
//! `LocalFileSystem` refuses object attributes, so content type and cache policy
//! are derived from the key's kind here, for every backend alike.

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hls::naming::ObjectKind;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, ClientOptions, ObjectStore, PutOptions, PutPayload, RetryConfig,
};
use tracing::warn;

/// Upload attempts before a put is reported as failed.
pub const PUT_ATTEMPTS: u32 = 4;
/// The first retry waits this long; each further one twice as long.
pub const RETRY_BASE: Duration = Duration::from_millis(100);

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No object at this key.
    #[error("not found: {0}")]
    NotFound(String),
    /// A key that could escape the store (`..`, empty parts, absolute).
    #[error("invalid key {0:?}")]
    BadKey(String),
    /// The backend failed.
    #[error("object store: {0}")]
    Backend(#[from] object_store::Error),
    /// The local directory could not be prepared.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The origin store, cheap to clone.
#[derive(Clone, Debug)]
pub struct OriginStore {
    inner: Arc<dyn ObjectStore>,
    /// Whether the backend keeps `Content-Type`/`Cache-Control` with objects
    /// (S3 does; the local file system refuses them).
    attributes: bool,
}

/// An S3-compatible bucket (AWS, Garage, MinIO, s3s-fs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Config {
    /// `http://127.0.0.1:9000`; empty for AWS itself.
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// The region the server expects (Garage checks it).
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

/// How long one S3 request may take before it counts as failed.
pub const S3_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

impl OriginStore {
    /// Objects as files below `dir` (created if missing): the embedded default.
    pub fn local(dir: &FsPath) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let fs = LocalFileSystem::new_with_prefix(dir)?;
        Ok(Self {
            inner: Arc::new(fs),
            attributes: false,
        })
    }

    /// Objects in memory, for tests.
    pub fn memory() -> Self {
        Self {
            inner: Arc::new(InMemory::new()),
            attributes: true,
        }
    }

    /// Objects in an S3-compatible bucket, path-style, plain HTTP allowed (for
    /// servers on a private network or loopback). Requests give up quickly: the
    /// packager, not the client, decides what to do when the store is down.
    pub fn s3(config: &S3Config) -> Result<Self, StoreError> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_virtual_hosted_style_request(false)
            // Client options replace the builder's, so plain HTTP is allowed here.
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(true)
                    .with_timeout(S3_REQUEST_TIMEOUT)
                    .with_connect_timeout(Duration::from_secs(2)),
            )
            .with_retry(RetryConfig {
                max_retries: 1,
                retry_timeout: S3_REQUEST_TIMEOUT,
                ..RetryConfig::default()
            });
        if !config.endpoint.is_empty() {
            builder = builder.with_endpoint(&config.endpoint);
        }
        Ok(Self {
            inner: Arc::new(builder.build()?),
            attributes: true,
        })
    }

    /// Stores `data` at `key`, retrying with exponential backoff.
    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let path = parse_key(key)?;
        let mut delay = RETRY_BASE;
        let mut attempt = 1;
        loop {
            let payload = PutPayload::from(data.clone());
            let result = if self.attributes {
                let kind = ObjectKind::of(key);
                let attributes = Attributes::from_iter([
                    (Attribute::ContentType, kind.content_type()),
                    (Attribute::CacheControl, kind.cache_control()),
                ]);
                let opts = PutOptions {
                    attributes,
                    ..PutOptions::default()
                };
                self.inner.put_opts(&path, payload, opts).await
            } else {
                self.inner.put(&path, payload).await
            };
            match result {
                Ok(_) => return Ok(()),
                Err(e) if attempt < PUT_ATTEMPTS => {
                    warn!(key, attempt, error = %e, "store put failed, retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads the object at `key` with the headers stored with it (`Content-Type`,
    /// `Cache-Control`), where the backend keeps them.
    pub async fn get_with_headers(
        &self,
        key: &str,
    ) -> Result<(Bytes, Vec<(String, String)>), StoreError> {
        let path = parse_key(key)?;
        match self.inner.get(&path).await {
            Ok(r) => {
                let headers = r
                    .attributes
                    .iter()
                    .map(|(k, v)| (format!("{k:?}"), v.as_ref().to_owned()))
                    .collect();
                Ok((r.bytes().await?, headers))
            }
            Err(object_store::Error::NotFound { .. }) => Err(StoreError::NotFound(key.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads the object at `key`.
    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = parse_key(key)?;
        match self.inner.get(&path).await {
            Ok(r) => Ok(r.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => Err(StoreError::NotFound(key.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the object at `key`; a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = parse_key(key)?;
        match self.inner.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl OriginStore {
    /// Every key below `prefix` (a directory, without the trailing `/`), for
    /// cleaning up what an earlier publish session left behind.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        use futures::TryStreamExt;
        let path = parse_key(prefix)?;
        let metas: Vec<_> = self.inner.list(Some(&path)).try_collect().await?;
        Ok(metas.into_iter().map(|m| m.location.to_string()).collect())
    }
}

/// The longest part of a key: a file name on every file system (a longer
/// one is a name the store cannot hold, answered as not found rather than
/// as a store failure).
pub const MAX_KEY_PART: usize = 255;

/// Accepts only plain relative keys made of safe characters, so no request can
/// reach outside the store.
pub fn parse_key(key: &str) -> Result<Path, StoreError> {
    let ok = !key.is_empty()
        && key.split('/').all(|part| {
            !part.is_empty()
                && part.len() <= MAX_KEY_PART
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    if !ok {
        return Err(StoreError::BadKey(key.to_owned()));
    }
    Path::parse(key).map_err(|_| StoreError::BadKey(key.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "a/./b",
            "a\\b",
            "a b",
            "%2e%2e/x",
            &format!("a/{}.ts", "x".repeat(MAX_KEY_PART)),
        ] {
            assert!(parse_key(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_key("demo/source/12.ts").is_ok());
    }

    #[tokio::test]
    async fn local_round_trip_and_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = OriginStore::local(dir.path()).expect("store");
        store
            .put("s/source/1.ts", Bytes::from_static(b"seg"))
            .await
            .expect("put");
        assert_eq!(
            store.get("s/source/1.ts").await.expect("get"),
            Bytes::from_static(b"seg")
        );
        assert!(dir.path().join("s/source/1.ts").exists());
        store.delete("s/source/1.ts").await.expect("delete");
        store.delete("s/source/1.ts").await.expect("delete twice");
        assert!(matches!(
            store.get("s/source/1.ts").await,
            Err(StoreError::NotFound(_))
        ));
    }
}
