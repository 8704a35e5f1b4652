//! Publish authorisation answered by the control plane: a key maps to its
//! stream if it is active and the stream enabled. Answers are cached for a few
//! seconds (and dropped at once when an operator changes keys or streams), and
//! an address that keeps failing is refused for a while.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use rtmp::auth::{AuthError, AuthFuture, PublishAuthorizer, PublishRequest};
use tracing::warn;

use crate::db::Db;
use crate::secret;

/// How long an answer is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
/// Failed attempts an address may make per [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u32 = 10;
/// The window failures are counted in; a blocked address waits for its end.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

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

impl KeyLookup for Db {
    fn lookup<'a>(&'a self, key: &'a str) -> LookupFuture<'a> {
        let answer = match self.stream_for_key(key) {
            Ok(Some((name, true))) => Ok(Ok(name)),
            Ok(Some((_, false))) => Ok(Err(AuthError::Disabled)),
            Ok(None) => Ok(Err(AuthError::UnknownKey)),
            Err(e) => Err(e.to_string()),
        };
        Box::pin(std::future::ready(answer))
    }
}

/// The control plane as a [`PublishAuthorizer`].
#[derive(Clone)]
pub struct ControlAuth {
    lookup: Arc<dyn KeyLookup>,
    cache: Arc<DashMap<Vec<u8>, (Answer, Instant)>>,
    failures: Arc<DashMap<IpAddr, (u32, Instant)>>,
}

impl ControlAuth {
    /// Answers from `db`.
    pub fn new(db: Arc<Db>) -> Self {
        Self::with_lookup(db)
    }

    /// Answers from any [`KeyLookup`].
    pub fn with_lookup(lookup: Arc<dyn KeyLookup>) -> Self {
        Self {
            lookup,
            cache: Arc::default(),
            failures: Arc::default(),
        }
    }

    /// Forgets cached answers (after a key or stream changed).
    pub fn invalidate(&self) {
        self.cache.clear();
    }

    async fn judge(&self, request: PublishRequest<'_>) -> Answer {
        let ip = request.peer.ip();
        if let Some(entry) = self.failures.get(&ip) {
            let (count, since) = *entry;
            if count >= MAX_FAILURES && since.elapsed() < FAILURE_WINDOW {
                let wait = FAILURE_WINDOW
                    .saturating_sub(since.elapsed())
                    .as_secs()
                    .max(1);
                return Err(AuthError::TooManyAttempts(wait));
            }
        }
        let hash = secret::hash(request.key);
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
            let mut entry = self.failures.entry(ip).or_insert((0, Instant::now()));
            if entry.1.elapsed() >= FAILURE_WINDOW {
                *entry = (0, Instant::now());
            }
            entry.0 += 1;
        }
        answer
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

    fn req(key: &str) -> PublishRequest<'_> {
        PublishRequest {
            app: "live",
            key,
            peer: "192.0.2.1:5000".parse().unwrap(),
        }
    }

    #[tokio::test]
    async fn keys_disabled_streams_and_rate_limits() {
        let db = Arc::new(Db::memory().unwrap());
        db.create_stream("s", true).unwrap();
        let id = db.add_key("s", "good").unwrap();
        let auth = ControlAuth::new(db.clone());
        assert_eq!(auth.judge(req("good")).await, Ok("s".into()));
        db.set_stream_enabled("s", false).unwrap();
        assert_eq!(auth.judge(req("good")).await, Ok("s".into()), "cached");
        auth.invalidate();
        assert_eq!(auth.judge(req("good")).await, Err(AuthError::Disabled));
        db.set_stream_enabled("s", true).unwrap();
        db.revoke_key("s", id).unwrap();
        auth.invalidate();
        assert_eq!(auth.judge(req("good")).await, Err(AuthError::UnknownKey));
        for _ in 1..MAX_FAILURES {
            assert_eq!(auth.judge(req("bad")).await, Err(AuthError::UnknownKey));
        }
        assert!(matches!(
            auth.judge(req("bad")).await,
            Err(AuthError::TooManyAttempts(_))
        ));
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
