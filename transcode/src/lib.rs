//! Ferry's transcoding ladder, in process: one libavcodec decode of the source,
//! then per rung a swscale scaler and a libx264 encoder on an OS thread of its
//! own (never a tokio worker), fed through bounded channels.
//!
//! Keyframes are forced on the same source frames in every rung (scene-cut
//! keyframes are off), so every variant's segments start at the same times and
//! players can switch between them. Audio (AAC) is passed through to every rung.
//! The crate is transport-agnostic: [`run`] reads [`Event`]s from any source
//! and writes each rung to a [`Sink`]; the binary wires both to the hub.

pub mod annexb;
mod decode;
mod ffi;
mod ladder;
mod metrics;
mod plan;
mod rung;

pub use ladder::{KeyframeRule, SinkFactory, run};
pub use metrics::LadderMetrics;
pub use plan::{
    LadderConfig, RUNG_HEIGHTS, RUNG_KBPS, Rung, RungConfig, check_rung, plan, valid_rung_name,
};

use media_core::{Packet, TrackInfo};

/// Where a rung's output goes: the hub in the server, a collector in benches.
pub trait Sink: Send {
    /// The rung's track config (the x264 avcC, or the source's AAC config);
    /// sent before the first packet of that track and again when it changes.
    fn track(&mut self, track: TrackInfo);
    /// One packet, in decode order per track, audio interleaved by time.
    fn packet(&mut self, packet: Packet);
}

impl Sink for media_core::Publisher {
    fn track(&mut self, track: TrackInfo) {
        self.set_track(track);
    }
    fn packet(&mut self, packet: Packet) {
        self.send(packet);
    }
}

/// Why a ladder or rung could not run.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// The FFmpeg build lacks a codec (Debian's has h264 and libx264).
    #[error("FFmpeg has no {0}")]
    NoCodec(&'static str),
    /// libavcodec or swscale refused.
    #[error("ffmpeg: {0}")]
    Ffmpeg(#[from] ffmpeg_next::Error),
    /// A thread could not be started.
    #[error("thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Initialises FFmpeg once per process and quiets its own logging (errors are
/// counted and logged through `tracing` instead). Safe to call repeatedly.
pub fn init() -> Result<(), TranscodeError> {
    static INIT: std::sync::OnceLock<Result<(), ffmpeg_next::Error>> = std::sync::OnceLock::new();
    let result = *INIT.get_or_init(|| {
        ffmpeg_next::init()?;
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Fatal);
        Ok(())
    });
    result.map_err(TranscodeError::from)
}
