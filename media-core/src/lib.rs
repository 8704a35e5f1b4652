//! The media core every Ferry stage plugs into.
//!
//! Ingest protocols turn their wire format into [`Packet`]s and [`TrackInfo`]s and
//! hand them to a [`Hub`]; players, packagers and transcoders subscribe to the hub.
//! Nothing here knows about RTMP, HLS or any other protocol, so every protocol can
//! feed every consumer.

pub mod codec;
mod hub;
mod metadata;
mod metrics;
mod packet;
pub mod path;
mod time;
mod track;

pub use hub::{
    Event, GOP_CACHE_MAX_BYTES, GOP_CACHE_MAX_PACKETS, Hub, HubError, Publisher,
    SUBSCRIBER_QUEUE_PACKETS, StreamInfo, Subscriber,
};
pub use metadata::{MetaValue, Metadata};
pub use metrics::HubMetrics;
pub use packet::{Packet, TrackKind};
pub use path::{PathError, StreamPath};
pub use time::{Timebase, Timestamp};
pub use track::{Codec, TrackInfo};
