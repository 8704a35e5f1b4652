//! What the director counts.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// One edge by id.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EdgeLabel {
    /// Node id.
    pub edge: String,
}

/// One stream on one edge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlacementLabel {
    /// Stream name.
    pub stream: String,
    /// Edge node id.
    pub edge: String,
}

/// Why a viewer was placed where it is.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// `home`, `spilled`, `consolidated`, `edge_gone`, `overloaded`, `over_capacity`.
    pub reason: &'static str,
}

media_core::metrics! {
    /// What the director counts.
    pub struct DirectorMetrics under "director" {
        /// Playlists rewritten
        pub rewritten as "playlists_rewritten": Counter,
        /// Playlists served
        pub served as "playlists_served": Counter,
        /// Viewers counted per edge
        pub viewers: Family<EdgeLabel, Gauge>,
        /// Changes of the live edge set
        pub edge_set_changes: Counter,
        /// Requests refused for want of a live edge
        pub no_edge: Counter,
        /// Playlist fetches from edges that failed
        pub fetch_failures: Counter,
        /// New viewers refused for their address's rate
        pub new_viewers_limited: Counter,
        /// Viewers per stream and edge: the edges each stream sits on
        pub stream_viewers: Family<PlacementLabel, Gauge>,
        /// Viewers placed or moved, by reason (home, spilled, consolidated, edge_gone,
        /// overloaded, over_capacity)
        pub placements: Family<ReasonLabel, Counter>,
    }
}
