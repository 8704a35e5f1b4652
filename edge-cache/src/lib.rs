//! Ferry's HLS caching edge: what replaces a CDN of nginx caching proxies.
//!
//! Each object is fetched from the origins once at a time however many
//! viewers ask for it ([`fill`]), and streamed to all of them as it arrives;
//! playlists are refreshed at most once per freshness period and served stale
//! while that runs ([`object`]); origins fail over in order with backoff
//! ([`origin`]). The policy parts are plain code with unit tests; the HTTP
//! face is [`server`].

pub mod cache_control;
pub mod config;
pub mod disk;
pub mod edge;
pub mod fill;
pub mod h1;
pub mod metrics;
pub mod object;
pub mod origin;
pub mod range;
pub mod reach;
pub mod server;

pub use config::EdgeConfig;
pub use edge::{Answer, CacheStatus, Edge, EdgeError, EdgeLimits, Refusal};
pub use hls::target::CacheKey;
pub use metrics::{EdgeMetrics, StreamTraffic};
pub use origin::{Origin, Origins, Source};
pub use server::router;
