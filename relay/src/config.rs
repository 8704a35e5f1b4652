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
    /// trust, as `GET /relay` on each origin shows them, besides those the
    /// control plane lists (an edge with `[control] url` learns its live
    /// origins' pins there).
    pub pins: Vec<String>,
    /// Edges: with no pin at all (none here, none from control), trust the
    /// certificate an origin's plain-HTTP `GET /relay` hands out. Off: such
    /// an edge pulls nothing.
    pub trust_http: bool,
    /// Edges: the token shown to origins with every relay request; empty:
    /// the edge's control token (`admin_token`, an `edge` token).
    pub token: String,
    /// Origins: tokens of edges served besides those the control plane
    /// knows (edge and admin tokens).
    pub edge_tokens: Vec<String>,
    /// Origins: edge connections at once.
    pub max_connections: usize,
    /// Origins: connections from one address at once.
    pub max_connections_per_address: usize,
    /// Origins: streams one edge connection may have open at once.
    pub max_streams_per_connection: u32,
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
            trust_http: false,
            token: String::new(),
            edge_tokens: Vec::new(),
            max_connections: 1024,
            max_connections_per_address: 16,
            max_streams_per_connection: 1024,
            stall_ms: p.stall.as_millis() as u64,
            dead_ms: p.dead.as_millis() as u64,
            linger_ms: p.linger.as_millis() as u64,
        }
    }
}

impl RelayConfig {
    /// The origin's bounds these values make.
    pub fn limits(&self) -> crate::RelayLimits {
        crate::RelayLimits {
            max_connections: self.max_connections.max(1),
            max_connections_per_address: self.max_connections_per_address.max(1),
            max_streams_per_connection: self.max_streams_per_connection.max(1),
        }
    }

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
