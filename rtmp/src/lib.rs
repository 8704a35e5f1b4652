//! RTMP for Ferry: a sans-IO chunk/message layer of our own (every byte from every
//! client crosses it, so it must never panic and must bound everything), AMF0,
//! the FLV tag mapping to media-core packets, and tokio drivers for a server
//! (publish and play) and a client (pull, push, load generation).
//!
//! `rml_rtmp` is not used: it is unmaintained, panics on legal inputs (a lone
//! `@setDataFrame`, interleaved chunk streams) and lacks aggregate messages.

pub mod amf0;
pub mod chunk;
mod client;
mod error;
pub mod flv;
pub mod flv_file;
pub mod handshake;
pub mod ingest;
pub mod limits;
pub mod message;
mod metrics;
mod server;
pub mod time;
pub mod tls;
pub mod transport;

pub use client::Client;
pub use error::RtmpError;
pub use metrics::RtmpMetrics;
pub use server::{Server, ServerConfig};
