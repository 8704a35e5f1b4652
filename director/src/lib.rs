//! Ferry's director: viewers ask it for playlists; it answers with playlists
//! whose media URIs name an edge chosen for the viewer, so that viewers are
//! spread over the live edges while each stream's segments stay on as few
//! edges as its audience needs (consistent hashing with bounded loads,
//! [`ring`]). It runs alone (`ferry director`) or inside `ferry serve` on a
//! listener of its own. It keeps no state worth saving: several can run behind a load
//! balancer; the edge list comes from control.

pub mod assign;
pub mod config;
pub mod director;
pub mod metrics;
pub mod playlists;
pub mod pools;
pub mod rewrite;
pub mod ring;
pub mod server;
pub mod token;

pub use assign::Policy;
pub use config::DirectorConfig;
pub use director::{Director, DirectorError, EdgeSource, from_control};
pub use metrics::DirectorMetrics;
pub use server::router;
