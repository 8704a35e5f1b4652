//! `[relay]`: what an operator sets for node-to-node media.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::PullConfig;

/// The relay's settings (`[relay]` in Ferry's configuration file,
/// `FERRY_RELAY__*` in the environment).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Origins: the UDP address edges pull streams from (e.g.
    /// `0.0.0.0:1936`); empty: no relay. The certificate is made on first
    /// start in the data directory; edges learn port and certificate from
    /// this origin's `GET /relay`.
    pub listen: String,
    /// Edges: SHA-256 fingerprints (hex) of the origin certificates to
    /// trust, as `GET /relay` on each origin shows them. Empty: trust the
    /// certificate the origin's HTTP URL hands out (as far as that URL is
    /// trusted).
    pub pins: Vec<String>,
    /// Edges: the current origin silent this many milliseconds while the
    /// standby is not is a failover.
    pub stall_ms: u64,
    /// Edges: the current origin silent this many milliseconds with no
    /// standby is given up on.
    pub dead_ms: u64,
    /// Edges: a pull with no player for this many milliseconds stops.
    pub linger_ms: u64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        let p = PullConfig::default();
        Self {
            listen: String::new(),
            pins: Vec::new(),
            stall_ms: p.stall.as_millis() as u64,
            dead_ms: p.dead.as_millis() as u64,
            linger_ms: p.linger.as_millis() as u64,
        }
    }
}

impl RelayConfig {
    /// The pull settings these values make.
    pub fn pull(&self) -> PullConfig {
        PullConfig {
            stall: Duration::from_millis(self.stall_ms.max(20)),
            dead: Duration::from_millis(self.dead_ms.max(self.stall_ms).max(100)),
            linger: Duration::from_millis(self.linger_ms),
            ..PullConfig::default()
        }
    }
}
