//! What flows from a publisher to its subscribers: plain data, so a sans-IO
//! consumer (the HLS packager, a fuzz target) can take it without the hub.

use std::sync::Arc;

use crate::{Metadata, Packet, TrackInfo};

/// What a subscriber sees, in order.
#[derive(Clone, Debug)]
pub enum Event {
    /// A publisher started (or was already live when the subscriber joined).
    Started,
    /// Stream metadata changed.
    Metadata(Arc<Metadata>),
    /// A track's decoder config arrived or changed; packets after it use it.
    Track(Arc<TrackInfo>),
    /// A coded frame.
    Packet(Packet),
    /// The publisher left; the subscription stays open for the next one.
    Stopped,
}
