//! One rung on its own OS thread: scale the shared decoded frame, encode it with
//! x264, and hand AVCC packets (with the source's audio, interleaved) to a sink.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use bytes::Bytes;
use ffmpeg::software::scaling;
use ffmpeg::{Dictionary, codec, encoder, format::Pixel, frame, picture};
use ffmpeg_next as ffmpeg;
use media_core::{Packet, Timestamp, TrackInfo, TrackKind};
use tracing::warn;

use crate::annexb::{avcc_record, to_avcc};
use crate::plan::{LadderConfig, Rung};
use crate::{LadderMetrics, Sink, TranscodeError};

/// Frames queued per rung: enough to ride out an x264 hiccup, small enough
/// that a slow rung holds the decoder back instead of piling up frames.
const RUNG_QUEUE: usize = 8;

/// Audio held while the rung's video catches up (x264 lookahead); beyond
/// this the oldest is released anyway so a stalled encoder cannot grow memory.
const HELD_AUDIO_MAX: usize = 256;

/// What the decoder thread sends a rung.
pub enum RungInput {
    /// A decoded frame, shared by every rung; `key` forces an IDR here.
    Frame {
        /// The decoded picture.
        frame: Arc<frame::Video>,
        /// Presentation time, ms.
        pts: i64,
        /// Force a keyframe (a segment starts here in every variant).
        key: bool,
    },
    /// The source's audio config.
    AudioTrack(TrackInfo),
    /// A source audio packet, passed through.
    Audio(Packet),
}

/// A running rung thread; dropping the sender ends it after a flush.
pub struct RungHandle {
    /// The rung.
    pub rung: Rung,
    /// Its input.
    pub input: SyncSender<RungInput>,
    /// The thread, joined at the end of the stream.
    pub thread: JoinHandle<()>,
}

/// What a rung's encoder is set up with.
#[derive(Clone, Debug)]
pub struct EncoderSettings {
    /// x264 preset.
    pub preset: String,
    /// `tune=zerolatency`.
    pub zerolatency: bool,
    /// VBV buffer in seconds of bitrate.
    pub vbv_seconds: f32,
    /// x264 threads (0 = auto).
    pub threads: u32,
    /// Source frame rate, for rate control.
    pub frame_rate: (i32, i32),
}

impl EncoderSettings {
    /// The settings a ladder config implies for a source at `frame_rate`.
    pub fn new(config: &LadderConfig, frame_rate: (i32, i32)) -> Self {
        Self {
            preset: config.preset.clone(),
            zerolatency: config.zerolatency,
            vbv_seconds: config.vbv_seconds,
            threads: config.threads,
            frame_rate,
        }
    }
}

/// Starts a rung thread.
pub fn spawn(
    rung: Rung,
    settings: EncoderSettings,
    sink: Box<dyn Sink>,
    metrics: LadderMetrics,
) -> Result<RungHandle, TranscodeError> {
    let (tx, rx) = sync_channel(RUNG_QUEUE);
    let name = rung.name.clone();
    let r = rung.clone();
    let thread = std::thread::Builder::new()
        .name(format!("rung-{name}"))
        .spawn(move || {
            if let Err(e) = run(&r, &settings, sink, rx, &metrics) {
                metrics.encode_errors.inc();
                warn!(rung = %r.name, error = %e, "rung stopped");
            }
        })?;
    Ok(RungHandle {
        rung,
        input: tx,
        thread,
    })
}

fn run(
    rung: &Rung,
    settings: &EncoderSettings,
    sink: Box<dyn Sink>,
    rx: Receiver<RungInput>,
    metrics: &LadderMetrics,
) -> Result<(), TranscodeError> {
    let mut encoder = open_encoder(rung, settings)?;
    let mut out = Output {
        sink,
        held_audio: VecDeque::new(),
        last_video_dts: None,
        parameter_sets: (None, None),
        record: None,
    };
    let mut scaler: Option<scaling::Context> = None;
    while let Ok(input) = rx.recv() {
        match input {
            RungInput::AudioTrack(track) => out.sink.track(track),
            RungInput::Audio(p) => out.audio(p),
            RungInput::Frame { frame, pts, key } => {
                let scaler = match scaler.as_mut() {
                    Some(s)
                        if s.input().width == frame.width()
                            && s.input().height == frame.height()
                            && s.input().format == frame.format() =>
                    {
                        s
                    }
                    _ => scaler.insert(scaling::Context::get(
                        frame.format(),
                        frame.width(),
                        frame.height(),
                        Pixel::YUV420P,
                        rung.width,
                        rung.height,
                        scaling::Flags::BICUBIC,
                    )?),
                };
                let mut scaled = frame::Video::empty();
                scaler.run(&frame, &mut scaled)?;
                drop(frame);
                scaled.set_pts(Some(pts));
                scaled.set_kind(if key {
                    picture::Type::I
                } else {
                    picture::Type::None
                });
                encoder.send_frame(&scaled)?;
                out.drain(&mut encoder, metrics)?;
            }
        }
    }
    encoder.send_eof()?;
    out.drain(&mut encoder, metrics)?;
    out.release_audio(i64::MAX);
    Ok(())
}

fn open_encoder(rung: &Rung, s: &EncoderSettings) -> Result<encoder::Video, TranscodeError> {
    let codec = encoder::find_by_name("libx264").ok_or(TranscodeError::NoCodec("libx264"))?;
    let mut enc = codec::Context::new_with_codec(codec).encoder().video()?;
    enc.set_width(rung.width);
    enc.set_height(rung.height);
    enc.set_format(Pixel::YUV420P);
    enc.set_time_base((1, 1000));
    enc.set_frame_rate(Some(s.frame_rate));
    let bitrate = rung.bitrate.to_string();
    let bufsize = ((rung.bitrate as f64) * f64::from(s.vbv_seconds)).round() as u64;
    let mut opts = Dictionary::new();
    opts.set("b", &bitrate);
    opts.set("maxrate", &bitrate);
    opts.set("bufsize", &bufsize.to_string());
    opts.set("threads", &s.threads.to_string());
    opts.set("preset", &s.preset);
    if s.zerolatency {
        opts.set("tune", "zerolatency");
    }
    opts.set("forced-idr", "1");
    // Keyframes only where the ladder forces them, the same frames in every rung.
    opts.set("x264-params", "keyint=infinite:scenecut=0");
    Ok(enc.open_with(opts)?)
}

/// The rung's output side: turns x264's packets into hub packets and keeps the
/// source audio interleaved with them.
struct Output {
    sink: Box<dyn Sink>,
    held_audio: VecDeque<Packet>,
    last_video_dts: Option<i64>,
    parameter_sets: (Option<Bytes>, Option<Bytes>),
    record: Option<Bytes>,
}

impl Output {
    fn audio(&mut self, p: Packet) {
        self.held_audio.push_back(p);
        while self.held_audio.len() > HELD_AUDIO_MAX {
            if let Some(p) = self.held_audio.pop_front() {
                self.sink.packet(p);
            }
        }
        if let Some(dts) = self.last_video_dts {
            self.release_audio(dts);
        }
    }

    /// Passes on the audio up to the video's decode time.
    fn release_audio(&mut self, upto_ms: i64) {
        while self
            .held_audio
            .front()
            .is_some_and(|p| p.dts.as_millis() <= upto_ms)
        {
            if let Some(p) = self.held_audio.pop_front() {
                self.sink.packet(p);
            }
        }
    }

    fn drain(
        &mut self,
        encoder: &mut encoder::Video,
        metrics: &LadderMetrics,
    ) -> Result<(), TranscodeError> {
        loop {
            let mut packet = ffmpeg::Packet::empty();
            match encoder.receive_packet(&mut packet) {
                Ok(()) => {}
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {
                    return Ok(());
                }
                Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            let (Some(data), Some(pts)) = (packet.data(), packet.pts()) else {
                continue;
            };
            let dts = packet.dts().unwrap_or(pts);
            let unit = to_avcc(data);
            if unit.sps.is_some() || unit.pps.is_some() {
                let sps = unit.sps.or_else(|| self.parameter_sets.0.clone());
                let pps = unit.pps.or_else(|| self.parameter_sets.1.clone());
                if let (Some(sps), Some(pps)) = (&sps, &pps) {
                    let record = avcc_record(sps, pps);
                    if record.is_some() && record != self.record {
                        if let Some(track) = record.clone().and_then(|r| TrackInfo::h264(r).ok()) {
                            self.sink.track(track);
                        }
                        self.record = record;
                    }
                }
                self.parameter_sets = (sps, pps);
            }
            if self.record.is_none() || unit.payload.is_empty() {
                continue;
            }
            metrics.frames_encoded.inc();
            self.sink.packet(Packet {
                track: TrackKind::Video,
                dts: Timestamp::from_millis(dts),
                pts: Timestamp::from_millis(pts),
                keyframe: packet.is_key(),
                payload: unit.payload,
            });
            self.last_video_dts = Some(dts);
            self.release_audio(dts);
        }
    }
}
