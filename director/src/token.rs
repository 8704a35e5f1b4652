//! Viewer tokens the director signs, and the rate at which an address may
//! start new viewers.
//!
//! A viewer token names one viewer in the viewer table. Unsigned, anyone
//! could mint thousands and push real viewers off their home edge; signed
//! with a key only the directors hold (HMAC-SHA256, cut to 64 bits: a token
//! lives for one viewing, and a forgery only buys one more viewer slot), a
//! forged or unsigned token is treated as a new viewer, and new viewers are
//! rate-limited per address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Hex digits of a token: 16 of viewer id, 16 of signature.
pub const TOKEN_LEN: usize = 32;

/// Addresses whose new-viewer allowance is remembered; past it, the full
/// ones are forgotten (a full bucket is the same as none).
pub const MAX_TRACKED_ADDRESSES: usize = 100_000;

/// Signs and checks viewer tokens.
pub struct TokenKey {
    /// HMAC keyed once (its padded key blocks hashed); cloned per token.
    keyed: Hmac<Sha256>,
}

impl TokenKey {
    /// A key from `[director] token_secret`; empty: a random one (tokens
    /// are then valid at this director only: directors behind one load
    /// balancer share a secret).
    pub fn new(secret: &str) -> Self {
        let key = if secret.is_empty() {
            rand::random::<[u8; 32]>().to_vec()
        } else {
            secret.as_bytes().to_vec()
        };
        // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
        let keyed = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(&key)
            .unwrap_or_else(|_| <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default()));
        Self { keyed }
    }

    /// The first 64 bits of the HMAC of `id`.
    fn signature(&self, id: &str) -> u64 {
        let mut mac = self.keyed.clone();
        mac.update(id.as_bytes());
        let out = mac.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&out[..8]);
        u64::from_be_bytes(first)
    }

    /// A new viewer's token.
    pub fn issue(&self) -> String {
        let id = format!("{:016x}", rand::random::<u64>());
        let sig = self.signature(&id);
        format!("{id}{sig:016x}")
    }

    /// Whether `token` was issued with this key (compared in constant time).
    pub fn verify(&self, token: &str) -> bool {
        if token.len() != TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
        let (id, sig) = token.split_at(TOKEN_LEN / 2);
        let Ok(given) = u64::from_str_radix(sig, 16) else {
            return false;
        };
        // Compared as one machine word: no early exit on the first
        // differing byte.
        (self.signature(id) ^ given) == 0
    }
}

/// A token bucket per client address for new viewers.
pub struct NewViewerLimit {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl NewViewerLimit {
    /// `per_second` new viewers per address, `burst` at once; 0 disables it.
    pub fn new(per_second: f64, burst: f64) -> Self {
        Self {
            per_second,
            burst: burst.max(1.0),
            buckets: Mutex::default(),
        }
    }

    /// Whether `ip` may start one more viewer at `now`.
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        if self.per_second <= 0.0 {
            return true;
        }
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() >= MAX_TRACKED_ADDRESSES {
            let (rate, burst) = (self.per_second, self.burst);
            b.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = b.entry(ip).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tokens_verify_only_with_their_key() {
        let a = TokenKey::new("secret");
        let t = a.issue();
        assert_eq!(t.len(), TOKEN_LEN);
        assert!(a.verify(&t));
        assert!(TokenKey::new("secret").verify(&t), "shared secrets agree");
        assert!(!TokenKey::new("other").verify(&t));
        let mut forged = t.clone();
        forged.replace_range(31..32, if t.ends_with('0') { "1" } else { "0" });
        assert!(!a.verify(&forged));
        assert!(!a.verify("00ff"));
        assert!(!a.verify(&"z".repeat(TOKEN_LEN)));
    }

    #[test]
    fn new_viewers_are_limited_per_address() {
        let l = NewViewerLimit::new(2.0, 3.0);
        let now = Instant::now();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        assert!((0..3).all(|_| l.allow(a, now)));
        assert!(!l.allow(a, now));
        assert!(l.allow(b, now), "another address has its own allowance");
        assert!(l.allow(a, now + Duration::from_millis(500)));
        assert!(!l.allow(a, now + Duration::from_millis(500)));
        assert!(NewViewerLimit::new(0.0, 0.0).allow(a, now));
    }
}
