//! Node-to-node media over QUIC.
//!
//! An origin serves its hub's streams on a relay endpoint ([`RelayServer`]);
//! an edge pulls a stream the first time a player asks for it ([`Puller`]),
//! into its own hub, so its players get the same GOP cache, pacing and
//! slow-player handling as on an origin. Where a stream is live on more than
//! one origin the edge keeps a warm standby and switches to it when the
//! current origin dies, hangs or loses its publisher, splicing the two so
//! players see one stream ([`splice`]).

mod config;
pub mod failover;
mod foreign;
pub mod frame;
mod link;
mod metrics;
mod origin;
mod pull;
mod serve;
pub mod splice;
pub mod tls;

pub use config::RelayConfig;
pub use foreign::ForeignOrigin;
pub use link::{LinkError, OriginLink, RelayInfo, Trust};
pub use metrics::RelayMetrics;
pub use origin::{Origin, origins};
pub use pull::{PullConfig, Puller};
pub use serve::{RelayAuth, RelayLimits, RelayServer, ServeError};

use std::sync::Arc;
use std::time::Duration;

/// `url` as logs and metric labels may show it: without credentials
/// (`user:password@`), query or fragment.
pub fn redacted(url: &str) -> String {
    let cut = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..cut];
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// QUIC keep-alives: often enough that a silent peer is noticed within a few
/// hundred milliseconds (quinn sends none by default).
pub const KEEP_ALIVE: Duration = Duration::from_millis(100);
/// A connection with nothing heard for this long is dead.
pub const IDLE_TIMEOUT: Duration = Duration::from_millis(1500);

/// The edge's side of the transport (the origin's is in [`serve`]): media in.
fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE));
    t.max_idle_timeout(IDLE_TIMEOUT.try_into().ok());
    // Many streams per edge; a stream's window fits a burst of a few
    // seconds of a high bit rate stream (the GOP on join).
    // The origin opens no stream towards an edge.
    t.max_concurrent_bidi_streams(0u32.into());
    t.max_concurrent_uni_streams(0u32.into());
    t.stream_receive_window((8u32 << 20).into());
    t.receive_window((64u32 << 20).into());
    t.send_window(64 << 20);
    Arc::new(t)
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_never_reach_a_name() {
        assert_eq!(
            super::redacted("http://user:pw@origin:8080/base?token=x#f"),
            "http://origin:8080/base"
        );
        assert_eq!(super::redacted("http://origin:8080"), "http://origin:8080");
        assert_eq!(super::redacted("s3://bucket"), "s3://bucket");
        assert_eq!(super::redacted("rtmp://a:b@h/live"), "rtmp://h/live");
    }
}
