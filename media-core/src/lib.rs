//! The media core every Ferry stage plugs into.
//!
//! Ingest protocols turn their wire format into [`Packet`]s and [`TrackInfo`]s and
//! hand them to a [`Hub`]; players, packagers and transcoders subscribe to the hub.
//! Nothing here knows about RTMP, HLS or any other protocol, so every protocol can
//! feed every consumer.
//!
//! The types are plain data with no runtime under them; the [`Hub`] (tokio
//! channels, metrics) is the `hub` feature, so the sans-IO HLS packager and
//! the fuzz targets build without tokio.

pub mod auth;
pub mod codec;
mod event;
#[cfg(feature = "hub")]
mod hub;
mod metadata;
#[cfg(feature = "hub")]
mod metrics;
mod metrics_macro;
mod packet;
pub mod path;
mod time;
mod track;

pub use event::Event;
#[cfg(feature = "hub")]
pub use hub::{
    GOP_CACHE_MAX_BYTES, GOP_CACHE_MAX_PACKETS, Hub, HubError, Publisher, SUBSCRIBER_QUEUE_PACKETS,
    StreamInfo, Subscriber,
};
pub use metadata::{MetaValue, Metadata};
#[cfg(feature = "hub")]
pub use metrics::HubMetrics;
pub use packet::{Packet, TrackKind};
pub use path::{PathError, StreamPath};
pub use time::{Timebase, Timestamp};
pub use track::{Codec, TrackInfo};
