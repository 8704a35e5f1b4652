//! Publish authorisation answered by the control plane: a key maps to its
//! stream if it is active and the stream enabled. Answers are cached for a few
//! seconds (and dropped at once when an operator changes keys or streams), and
//! an address that keeps failing is refused for a while.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use media_core::auth::{AuthError, AuthFuture, PublishAuthorizer, PublishRequest};
use tracing::warn;

use sha2::{Digest, Sha256};

/// How long an answer is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
/// Failed attempts with one key from one address per [`FAILURE_WINDOW`]; past
/// it that key is refused from that address without a lookup (an encoder
/// retrying a stale key). Other keys from the address are unaffected.
pub const MAX_FAILURES: u32 = 10;
/// Failed attempts an address may make with any keys per [`FAILURE_WINDOW`];
/// past it, keys from that address that do not publish a stream are answered
/// "too many attempts" instead of "unknown key". A correct key still publishes.
pub const MAX_ADDRESS_FAILURES: u32 = 100;
/// The window failures are counted in; a blocked key waits for its end.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Failure entries kept before expired ones are swept out.
const FAILURE_ENTRIES_SWEEP: usize = 4096;

type Answer = Result<String, AuthError>;

/// The future a [`KeyLookup`] returns.
pub type LookupFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Answer, String>> + Send + 'a>>;

/// Where keys are looked up: the database in this process, or the control API
/// of another (`ferry serve` with `[control] url`).
pub trait KeyLookup: Send + Sync + 'static {
    /// The stream `key` publishes, or why not; `Err` when the authority cannot
    /// be asked.
    fn lookup<'a>(&'a self, key: &'a str) -> LookupFuture<'a>;
}

/// The control plane as a [`PublishAuthorizer`].
#[derive(Clone)]
pub struct ControlAuth {
    lookup: Arc<dyn KeyLookup>,
    cache: Arc<DashMap<Vec<u8>, (Answer, Instant)>>,
    /// Failures per (address, key hash).
    failures: Arc<Failures<(IpAddr, Vec<u8>)>>,
    /// Failures per address, any key.
    address_failures: Arc<Failures<IpAddr>>,
}

/// Keys are held (cache, failure tables) only as their SHA-256.
fn key_hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Failures counted per key in a window: (count, window start).
type Failures<K> = DashMap<K, (u32, Instant)>;

/// Counts a failure in a windowed counter; returns the count.
fn count_failure<K: std::hash::Hash + Eq>(map: &DashMap<K, (u32, Instant)>, key: K) -> u32 {
    let mut entry = map.entry(key).or_insert((0, Instant::now()));
    if entry.1.elapsed() >= FAILURE_WINDOW {
        *entry = (0, Instant::now());
    }
    entry.0 += 1;
    entry.0
}

/// Seconds left of a blocked counter's window, if it is over `limit`.
fn blocked_for<K: std::hash::Hash + Eq>(
    map: &DashMap<K, (u32, Instant)>,
    key: &K,
    limit: u32,
) -> Option<u64> {
    let entry = map.get(key)?;
    let (count, since) = *entry;
    (count >= limit && since.elapsed() < FAILURE_WINDOW).then(|| {
        FAILURE_WINDOW
            .saturating_sub(since.elapsed())
            .as_secs()
            .max(1)
    })
}

impl ControlAuth {
    /// Answers from any [`KeyLookup`].
    pub fn with_lookup(lookup: Arc<dyn KeyLookup>) -> Self {
        Self {
            lookup,
            cache: Arc::default(),
            failures: Arc::default(),
            address_failures: Arc::default(),
        }
    }

    /// Forgets cached answers (after a key or stream changed).
    pub fn invalidate(&self) {
        self.cache.clear();
    }

    async fn judge(&self, request: PublishRequest<'_>) -> Answer {
        let ip = request.peer.ip();
        let hash = key_hash(request.key);
        let pair = (ip, hash.clone());
        if let Some(wait) = blocked_for(&self.failures, &pair, MAX_FAILURES) {
            return Err(AuthError::TooManyAttempts(wait));
        }
        let cached = self
            .cache
            .get(&hash)
            .filter(|e| e.1.elapsed() < CACHE_TTL)
            .map(|e| e.0.clone());
        let answer = match cached {
            Some(a) => a,
            None => match self.lookup.lookup(request.key).await {
                Ok(answer) => {
                    self.cache.insert(hash, (answer.clone(), Instant::now()));
                    answer
                }
                Err(e) => {
                    warn!(error = %e, "publish authorisation failed");
                    return Err(AuthError::Unavailable(
                        "the control plane did not answer".into(),
                    ));
                }
            },
        };
        if matches!(answer, Err(AuthError::UnknownKey)) {
            self.sweep();
            count_failure(&self.failures, pair);
            count_failure(&self.address_failures, ip);
            if let Some(wait) = blocked_for(&self.address_failures, &ip, MAX_ADDRESS_FAILURES) {
                return Err(AuthError::TooManyAttempts(wait));
            }
        }
        answer
    }

    /// Drops expired failure entries once the maps grow, so addresses and
    /// keys tried once are not kept for ever.
    fn sweep(&self) {
        if self.failures.len() + self.address_failures.len() < FAILURE_ENTRIES_SWEEP {
            return;
        }
        self.failures.retain(|_, v| v.1.elapsed() < FAILURE_WINDOW);
        self.address_failures
            .retain(|_, v| v.1.elapsed() < FAILURE_WINDOW);
        self.cache.retain(|_, v| v.1.elapsed() < CACHE_TTL);
    }

    /// Failure entries held now (for tests and metrics).
    pub fn failure_entries(&self) -> usize {
        self.failures.len() + self.address_failures.len()
    }
}

impl PublishAuthorizer for ControlAuth {
    fn authorize<'a>(&'a self, request: PublishRequest<'a>) -> AuthFuture<'a> {
        Box::pin(self.judge(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys → (stream, enabled), changed by the test as an operator would.
    #[derive(Default)]
    pub(super) struct Keys(std::sync::Mutex<std::collections::HashMap<String, (String, bool)>>);

    impl Keys {
        pub(super) fn set(&self, key: &str, stream: &str, enabled: bool) {
            self.0
                .lock()
                .expect("keys")
                .insert(key.into(), (stream.into(), enabled));
        }
        fn revoke(&self, key: &str) {
            self.0.lock().expect("keys").remove(key);
        }
    }

    impl KeyLookup for Keys {
        fn lookup<'a>(&'a self, key: &'a str) -> LookupFuture<'a> {
            let answer = match self.0.lock().expect("keys").get(key) {
                Some((s, true)) => Ok(s.clone()),
                Some((_, false)) => Err(AuthError::Disabled),
                None => Err(AuthError::UnknownKey),
            };
            Box::pin(std::future::ready(Ok(answer)))
        }
    }

    fn req(key: &str) -> PublishRequest<'_> {
        PublishRequest {
            app: "live",
            key,
            peer: "192.0.2.1:5000".parse().unwrap(),
        }
    }

    #[tokio::test]
    async fn keys_disabled_streams_and_rate_limits() {
        let db = Arc::new(Keys::default());
        db.set("good", "s", true);
        let auth = ControlAuth::with_lookup(db.clone());
        assert_eq!(auth.judge(req("good")).await, Ok("s".into()));
        db.set("good", "s", false);
        assert_eq!(auth.judge(req("good")).await, Ok("s".into()), "cached");
        auth.invalidate();
        assert_eq!(auth.judge(req("good")).await, Err(AuthError::Disabled));
        db.revoke("good");
        auth.invalidate();
        assert_eq!(auth.judge(req("good")).await, Err(AuthError::UnknownKey));
        for _ in 1..MAX_FAILURES {
            assert_eq!(auth.judge(req("bad")).await, Err(AuthError::UnknownKey));
        }
        assert_eq!(auth.judge(req("bad")).await, Err(AuthError::UnknownKey));
        assert!(matches!(
            auth.judge(req("bad")).await,
            Err(AuthError::TooManyAttempts(_))
        ));
        // The same address with the right key is not locked out.
        db.set("right", "s", true);
        auth.invalidate();
        assert_eq!(auth.judge(req("right")).await, Ok("s".into()));
        let other = PublishRequest {
            peer: "192.0.2.2:5000".parse().unwrap(),
            ..req("bad")
        };
        assert_eq!(
            auth.judge(other).await,
            Err(AuthError::UnknownKey),
            "other addresses unaffected"
        );
    }
}

#[cfg(test)]
mod lockout_tests {
    use super::*;
    use crate::auth::tests::Keys;

    /// An address trying many different keys is refused as a whole past
    /// MAX_ADDRESS_FAILURES, but a correct key from it still publishes; the
    /// maps are swept once they grow.
    #[tokio::test]
    async fn address_lockout_spares_the_right_key_and_maps_are_swept() {
        let db = Arc::new(Keys::default());
        db.set("the-right-key", "s", true);
        let auth = ControlAuth::with_lookup(db);
        let peer = "192.0.2.9:5000".parse().unwrap();
        let mut refused = 0;
        for i in 0..(MAX_ADDRESS_FAILURES + 5) {
            let key = format!("guess-{i}");
            let r = auth
                .judge(PublishRequest {
                    app: "live",
                    key: &key,
                    peer,
                })
                .await;
            if matches!(r, Err(AuthError::TooManyAttempts(_))) {
                refused += 1;
            }
        }
        assert_eq!(refused, 6, "from the 100th failure on");
        let right = auth
            .judge(PublishRequest {
                app: "live",
                key: "the-right-key",
                peer,
            })
            .await;
        assert_eq!(right, Ok("s".into()));
        // Many one-off addresses, then their window passes: the next failure
        // sweeps them out instead of keeping them for ever.
        for i in 0..FAILURE_ENTRIES_SWEEP as u32 {
            let peer = std::net::SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 1));
            let _ = auth
                .judge(PublishRequest {
                    app: "live",
                    key: "x",
                    peer,
                })
                .await;
        }
        assert!(auth.failure_entries() >= FAILURE_ENTRIES_SWEEP);
        let long_ago = Instant::now() - FAILURE_WINDOW - Duration::from_secs(1);
        for mut e in auth.failures.iter_mut() {
            e.1 = long_ago;
        }
        for mut e in auth.address_failures.iter_mut() {
            e.1 = long_ago;
        }
        let _ = auth
            .judge(PublishRequest {
                app: "live",
                key: "y",
                peer,
            })
            .await;
        assert_eq!(auth.failure_entries(), 2, "only the newest failure is kept");
    }
}
