//! The origin role: everything between the hub and the origin store.
//!
//! For every live source stream, a packaging task subscribes to the source and
//! its ladder rungs, cuts them into HLS segments ([`hls::Packager`]), writes
//! the multivariant playlist once the variants are ready ([`master`]) and hands
//! every output to an ordered upload queue ([`upload`]) that survives store
//! outages. Each publish session names its segments afresh ([`session`]). The
//! ladder supervisor ([`ladders`]) runs a transcoding ladder per transcoded
//! stream on OS threads.

pub mod ladders;
pub mod live;
pub mod master;
mod metrics;
mod packaging;
pub mod policy;
pub mod session;
pub mod upload;

pub use ladders::Transcoding;
pub use live::{HoldLimits, LiveAnswer, LiveHls, LiveMetrics};
pub use metrics::HlsMetrics;
pub use packaging::{HlsOrigin, Packaging, RECONNECT_GRACE, SHUTDOWN_FLUSH, run};
pub use policy::{Policies, PolicyLookup, StreamPolicy};
