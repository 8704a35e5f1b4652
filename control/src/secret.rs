//! Publish keys and API tokens: random, stored only as SHA-256 hashes, shown in
//! full once (when made) and masked everywhere after.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// The shortest stream key accepted (from the config file or an operator).
pub const MIN_KEY_LEN: usize = 8;
/// The shortest operator token accepted (`FERRY_ADMIN_TOKEN`).
pub const MIN_TOKEN_LEN: usize = 16;

/// Why a stream key given by an operator is refused.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.chars().count() < MIN_KEY_LEN {
        return Err(format!(
            "a stream key needs at least {MIN_KEY_LEN} characters"
        ));
    }
    if key.len() > 128 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a stream key is at most 128 printable ASCII characters, no spaces".into());
    }
    Ok(())
}

/// Why an operator token given in the configuration is refused.
pub fn check_token(token: &str) -> Result<(), String> {
    if token.chars().count() < MIN_TOKEN_LEN {
        return Err(format!(
            "the admin token needs at least {MIN_TOKEN_LEN} characters"
        ));
    }
    Ok(())
}

/// A new random secret: 24 bytes as 48 lowercase hex characters (safe in RTMP
/// stream names, URLs and shells).
pub fn generate() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    hex(&bytes)
}

/// The SHA-256 of a secret, as stored.
pub fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// What operators see of a secret: its first 4 characters and its length.
pub fn hint(secret: &str) -> String {
    let head: String = secret.chars().take(4).collect();
    format!("{head}…({} chars)", secret.chars().count())
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_hex_and_hashes_are_stable() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert_eq!(a.len(), 48);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(hint("abcdef"), "abcd…(6 chars)");
    }
}
