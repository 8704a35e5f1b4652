//! Parsers for the decoder configs publishers send. They read untrusted bytes, so
//! every length is checked and every failure is an error, never a panic.

mod aac;
mod av1;
mod avc;
mod hevc;
mod sps;

pub use aac::AacConfig;
pub use av1::Av1Config;
pub use avc::AvcConfig;
pub use hevc::HevcConfig;
pub use sps::{hevc_sps_resolution, rbsp, sps_resolution};

/// A decoder config that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// The bytes end before a field the format requires.
    #[error("{what}: truncated at byte {at}")]
    Truncated {
        /// Which structure.
        what: &'static str,
        /// Offset where more bytes were needed.
        at: usize,
    },
    /// A field holds a value the format forbids or Ferry cannot carry.
    #[error("{what}: {why}")]
    Invalid {
        /// Which structure.
        what: &'static str,
        /// What is wrong with it.
        why: String,
    },
}
