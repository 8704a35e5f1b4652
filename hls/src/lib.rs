//! HLS packaging, sans-IO: a [`Packager`] turns a hub subscription's events into
//! MPEG-TS segments and playlists; the caller stores them (segment first) and
//! supplies the wall clock.

pub mod fmp4;
pub mod low_latency;
pub mod naming;
mod packager;
pub mod playlist;
pub mod target;
pub mod ts;
mod video;

pub use video::VideoConfig;

pub use packager::{
    Container, MAX_SEGMENT_BYTES, MAX_SEGMENT_TARGETS, Output, Packager, PackagerConfig,
    SOURCE_VARIANT,
};
