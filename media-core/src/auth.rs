//! Who may publish: one trait, so that the config file's static keys and the
//! control plane (over HTTP, with a cache for its outages) answer the same
//! question.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

/// A publish attempt to be judged.
#[derive(Clone, Copy, Debug)]
pub struct PublishRequest<'a> {
    /// The RTMP application (`live`).
    pub app: &'a str,
    /// The stream key the encoder sent as the stream name.
    pub key: &'a str,
    /// Where the publisher connects from (for rate limits and logs).
    pub peer: SocketAddr,
}

/// Why a publish attempt is refused; the text is sent to the encoder.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No stream has this key.
    #[error("unknown stream key")]
    UnknownKey,
    /// The stream exists but may not go live now.
    #[error("stream is disabled")]
    Disabled,
    /// Too many failed attempts from this address; try again later.
    #[error("too many failed publish attempts, retry in {0} s")]
    TooManyAttempts(u64),
    /// The authority could not be asked.
    #[error("publish authorisation is unavailable: {0}")]
    Unavailable(String),
}

/// The future an authorizer returns.
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Result<String, AuthError>> + Send + 'a>>;

/// Decides whether a key may publish, and which stream it publishes.
pub trait PublishAuthorizer: Send + Sync + 'static {
    /// The stream name the key publishes to, or why not.
    fn authorize<'a>(&'a self, request: PublishRequest<'a>) -> AuthFuture<'a>;
}

/// Keys from the config file: each key publishes one named stream.
#[derive(Clone, Debug, Default)]
pub struct StaticKeys {
    streams: Vec<(String, String)>,
}

impl StaticKeys {
    /// Builds the table from `(stream name, key)` pairs.
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let streams: HashMap<String, String> = pairs.into_iter().collect();
        Self {
            streams: streams.into_iter().collect(),
        }
    }

    fn lookup(&self, key: &str) -> Option<&str> {
        // Compare against every key, in constant time per key, so timing reveals nothing.
        let mut found = None;
        for (name, k) in &self.streams {
            if constant_time_eq(k.as_bytes(), key.as_bytes()) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

impl PublishAuthorizer for StaticKeys {
    fn authorize<'a>(&'a self, request: PublishRequest<'a>) -> AuthFuture<'a> {
        let result = self
            .lookup(request.key)
            .map(str::to_owned)
            .ok_or(AuthError::UnknownKey);
        Box::pin(std::future::ready(result))
    }
}

/// Compares two secrets without an early exit on the first differing byte.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A key as it may appear in logs: its first two characters and its length.
pub fn mask_key(key: &str) -> String {
    let head: String = key.chars().take(2).collect();
    format!("{head}…({} chars)", key.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_map_to_streams() {
        let keys = StaticKeys::new([("demo".to_owned(), "s3cret".to_owned())]);
        let peer: SocketAddr = ([127, 0, 0, 1], 1).into();
        let ask = |key| PublishRequest {
            app: "live",
            key,
            peer,
        };
        assert_eq!(keys.authorize(ask("s3cret")).await, Ok("demo".to_owned()));
        assert_eq!(
            keys.authorize(ask("demo")).await,
            Err(AuthError::UnknownKey)
        );
        assert_eq!(keys.authorize(ask("")).await, Err(AuthError::UnknownKey));
    }

    #[test]
    fn masking_hides_the_key() {
        assert_eq!(mask_key("abcdef"), "ab…(6 chars)");
        assert!(!mask_key("supersecret").contains("secret"));
    }
}
