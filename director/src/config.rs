//! `[director]` settings.

use serde::{Deserialize, Serialize};

use crate::assign::Policy;

/// `[director]` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectorConfig {
    /// How far above its share of viewers an edge may go (0.25: 25 %).
    pub epsilon: f64,
    /// `bounded-load` or `round-robin` (for comparison only).
    pub policy: Policy,
    /// A viewer not seen for this long no longer counts.
    pub viewer_timeout_seconds: u64,
    /// How long a playlist read from an edge is reused.
    pub playlist_cache_ms: u64,
    /// How often the edge list is read from control.
    pub poll_ms: u64,
    /// An edge that failed a playlist fetch gets no viewers for this long
    /// (before control has noticed it is dead).
    pub suspect_ms: u64,
    /// Every edge may take this many viewers before a stream spills to the
    /// next edge, however few viewers there are in all.
    pub min_viewers_per_edge: u64,
    /// `ferry serve` only: also run a director on this address (viewers
    /// use it like a director apart); empty: none.
    pub listen: String,
    /// The key viewer tokens are signed with; directors behind one load
    /// balancer share it. Empty: a random key per process.
    pub token_secret: String,
    /// New viewers (playlists without a valid token) one client address may
    /// start per second; 0: no limit. More get 429.
    pub new_viewers_per_second: f64,
    /// New viewers one address may start at once before the rate applies.
    pub new_viewers_burst: f64,
    /// Seconds a new viewer is settling: until then it may move to the edge
    /// the packing gives its stream (a burst of arrivals then ends with each
    /// stream on as few edges as it needs); afterwards it stays unless its
    /// edge goes or is over its bound by more than ε.
    pub settle_seconds: u64,
    /// Bound edges by the farm's load as the edges report it (open
    /// connections) as well as by this director's own viewers: for several
    /// directors behind one load balancer.
    pub farm_load: bool,
}

impl Default for DirectorConfig {
    fn default() -> Self {
        Self {
            epsilon: 0.25,
            policy: Policy::BoundedLoad,
            viewer_timeout_seconds: 10,
            playlist_cache_ms: 300,
            poll_ms: 500,
            suspect_ms: 3000,
            min_viewers_per_edge: 10,
            listen: String::new(),
            token_secret: String::new(),
            new_viewers_per_second: 100.0,
            new_viewers_burst: 1000.0,
            settle_seconds: 10,
            farm_load: false,
        }
    }
}
