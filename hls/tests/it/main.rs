//! The HLS packager's tests in one binary: byte-exact goldens, bounds against
//! a broken encoder, Low-Latency HLS parts, and playlist behaviour, all on
//! virtual time without I/O.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod fixtures;
mod golden;
mod limits;
mod low_latency;
mod packager;
