//! HLS packaging, sans-IO: a [`Packager`] turns a hub subscription's events into
//! MPEG-TS segments and playlists; the caller stores them (segment first) and
//! supplies the wall clock.

mod packager;
pub mod playlist;
pub mod ts;

pub use packager::{Output, Packager, PackagerConfig, VARIANT, segment_path};
