//! The ladder driver: reads the source's events, decodes video once, and feeds
//! every rung thread the same frames with the same forced keyframes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ffmpeg_next::frame;
use media_core::codec::{Av1Config, AvcConfig, HevcConfig, hevc_sps_resolution, sps_resolution};
use media_core::{Codec, Event, Packet, TrackInfo, TrackKind};
use tracing::{info, warn};

use crate::decode::Decoder;
use crate::plan::{LadderConfig, Rung, plan};
use crate::rung::{self, EncoderSettings, RungHandle, RungInput};
use crate::{LadderMetrics, Sink};

/// Where segments start: the same frames in every rung.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyframeRule {
    /// At the first source keyframe at or after `segment` since the last cut
    /// (by decode time): exactly where the HLS packager cuts the passed-through
    /// source, so the source variant lines up with the rungs.
    SourceKeyframes,
    /// At the first frame at or after `segment` since the last cut (by
    /// presentation time), whatever the source's GOP.
    Every,
}

/// Decides which frames become keyframes in every rung.
#[derive(Debug)]
struct Cuts {
    rule: KeyframeRule,
    segment_ms: i64,
    last: Option<i64>,
    /// SourceKeyframes: presentation times of the source keyframes chosen, until
    /// their frames come out of the decoder.
    chosen: VecDeque<i64>,
}

impl Cuts {
    fn new(rule: KeyframeRule, segment: Duration) -> Self {
        Self {
            rule,
            segment_ms: segment.as_millis().max(1) as i64,
            last: None,
            chosen: VecDeque::new(),
        }
    }

    fn due(&mut self, at: i64) -> bool {
        if self.last.is_none_or(|last| at - last >= self.segment_ms) {
            self.last = Some(at);
            true
        } else {
            false
        }
    }

    /// A source video packet about to be decoded.
    fn packet(&mut self, p: &Packet) {
        if self.rule == KeyframeRule::SourceKeyframes && p.keyframe && self.due(p.dts.as_millis()) {
            self.chosen.push_back(p.pts.as_millis());
            if self.chosen.len() > 64 {
                self.chosen.pop_front();
            }
        }
    }

    /// A decoded frame: force a keyframe here?
    fn frame(&mut self, pts: i64) -> bool {
        match self.rule {
            KeyframeRule::Every => self.due(pts),
            KeyframeRule::SourceKeyframes => {
                while self.chosen.front().is_some_and(|&c| c < pts) {
                    self.chosen.pop_front();
                }
                if self.chosen.front() == Some(&pts) {
                    self.chosen.pop_front();
                    true
                } else {
                    false
                }
            }
        }
    }
}

/// Makes the sink each rung's output goes to; `None` skips the rung.
pub type SinkFactory<'a> = dyn FnMut(&Rung) -> Option<Box<dyn Sink>> + 'a;

/// Transcodes one stream until its source ends (`Event::Stopped` or `None`
/// from `source`). Runs on the caller's thread, which becomes the decoder
/// thread; rungs get threads of their own, all joined before this returns.
pub fn run(
    config: &LadderConfig,
    segment: Duration,
    source: &mut dyn FnMut() -> Option<Event>,
    sinks: &mut SinkFactory<'_>,
    metrics: &LadderMetrics,
) {
    metrics.ladders.inc();
    let rule = if config.passthrough {
        KeyframeRule::SourceKeyframes
    } else {
        KeyframeRule::Every
    };
    let mut state = State {
        config,
        metrics,
        cuts: Cuts::new(rule, segment),
        decoder: None,
        rungs: Vec::new(),
        size: None,
        audio: None,
        waiting_for_keyframe: true,
        planned: None,
        pending: Vec::new(),
    };
    while let Some(event) = source() {
        match event {
            Event::Started | Event::Metadata(_) => {}
            Event::Stopped => break,
            Event::Track(track) => state.track(&track),
            Event::Packet(p) => match p.track {
                TrackKind::Audio => state.each_rung(|| RungInput::Audio(p.clone())),
                TrackKind::Video => state.video(&p, sinks),
            },
        }
    }
    state.finish(sinks);
    metrics.ladders.dec();
}

struct State<'a> {
    config: &'a LadderConfig,
    metrics: &'a LadderMetrics,
    cuts: Cuts,
    decoder: Option<Decoder>,
    rungs: Vec<RungHandle>,
    size: Option<(u32, u32)>,
    audio: Option<TrackInfo>,
    waiting_for_keyframe: bool,
    /// Rungs planned for the current source size, started once the frame rate
    /// is known.
    planned: Option<Vec<Rung>>,
    /// Frames decoded before the rungs start (the first [`FRAME_RATE_SAMPLE`]).
    pending: Vec<(Arc<frame::Video>, i64, bool)>,
}

/// Frames looked at to learn the source frame rate, which x264's rate control
/// needs before the first frame. Costs start-up latency only.
const FRAME_RATE_SAMPLE: usize = 2;

impl State<'_> {
    fn track(&mut self, track: &Arc<TrackInfo>) {
        match track.codec {
            Codec::Aac => {
                self.audio = Some((**track).clone());
                self.each_rung(|| RungInput::AudioTrack((**track).clone()));
            }
            Codec::H264 | Codec::H265 | Codec::Av1 => {
                self.video_config(track.config.clone(), track.codec)
            }
        }
    }

    fn video_config(&mut self, config: Bytes, kind: Codec) {
        if self.decoder.as_ref().is_some_and(|d| d.config == config) {
            return;
        }
        let size = match kind {
            Codec::H265 => HevcConfig::parse(&config)
                .ok()
                .and_then(|c| c.sps.first().and_then(|sps| hevc_sps_resolution(sps))),
            Codec::Av1 => Av1Config::parse(&config).ok().and_then(|c| c.resolution()),
            _ => AvcConfig::parse(&config)
                .ok()
                .and_then(|c| c.sps.first().and_then(|sps| sps_resolution(sps))),
        };
        // The decoder follows the new config at once (from the next keyframe).
        match Decoder::open(config, kind) {
            Ok(d) => self.decoder = Some(d),
            Err(e) => {
                warn!(error = %e, "cannot open the source decoder");
                self.decoder = None;
            }
        }
        self.waiting_for_keyframe = true;
        let Some(size) = size else { return };
        if self.size == Some(size) {
            return;
        }
        // A new source size: plan the ladder again; every rung restarts with a
        // fresh encoder (players see a discontinuity).
        self.stop_rungs();
        self.size = Some(size);
        let rungs = plan(self.config, size.0, size.1);
        info!(
            width = size.0,
            height = size.1,
            rungs = rungs.len(),
            "ladder planned"
        );
        self.planned = Some(rungs);
    }

    fn video(&mut self, p: &Packet, sinks: &mut SinkFactory<'_>) {
        if self.waiting_for_keyframe {
            if !p.keyframe {
                self.metrics.skipped_packets.inc();
                return;
            }
            self.waiting_for_keyframe = false;
        }
        let Some(decoder) = self.decoder.as_mut() else {
            self.metrics.skipped_packets.inc();
            return;
        };
        self.cuts.packet(p);
        let mut frames = Vec::new();
        let result = decoder.decode(p, &mut |f| frames.push(f));
        if let Err(e) = result {
            // Skip to the next keyframe; the frames already decoded still go out.
            self.metrics.decode_errors.inc();
            warn!(error = %e, "source decode error; skipping to the next keyframe");
            decoder.reset();
            self.waiting_for_keyframe = true;
        }
        for f in frames {
            self.frame(f, sinks);
        }
    }

    fn frame(&mut self, frame: frame::Video, sinks: &mut SinkFactory<'_>) {
        self.metrics.frames_decoded.inc();
        let Some(pts) = frame.pts().or_else(|| frame.timestamp()) else {
            return;
        };
        let key = self.cuts.frame(pts);
        let frame = Arc::new(frame);
        if self.rungs.is_empty() && self.planned.is_some() {
            self.pending.push((frame, pts, key));
            if self.pending.len() >= FRAME_RATE_SAMPLE {
                self.start_rungs(sinks);
            }
            return;
        }
        self.each_rung(|| RungInput::Frame {
            frame: frame.clone(),
            pts,
            key,
        });
    }

    fn start_rungs(&mut self, sinks: &mut SinkFactory<'_>) {
        let Some(planned) = self.planned.take() else {
            return;
        };
        let pts: Vec<i64> = self.pending.iter().map(|(_, pts, _)| *pts).collect();
        let settings = EncoderSettings::new(self.config, frame_rate(&pts));
        for r in planned {
            let Some(sink) = sinks(&r) else { continue };
            match rung::spawn(r.clone(), settings.clone(), sink, self.metrics.clone()) {
                Ok(handle) => self.rungs.push(handle),
                Err(e) => warn!(rung = %r.name, error = %e, "cannot start rung"),
            }
        }
        if let Some(audio) = self.audio.clone() {
            self.each_rung(|| RungInput::AudioTrack(audio.clone()));
        }
        for (frame, pts, key) in std::mem::take(&mut self.pending) {
            self.each_rung(|| RungInput::Frame {
                frame: frame.clone(),
                pts,
                key,
            });
        }
    }

    /// Sends to every rung, waiting while a rung's queue is full (a slow rung
    /// holds the decoder back, and the hub skips it ahead if it falls too far).
    fn each_rung(&mut self, mut input: impl FnMut() -> RungInput) {
        self.rungs.retain(|r| {
            let alive = r.input.send(input()).is_ok();
            if !alive {
                warn!(rung = %r.rung.name, "rung thread gone; dropped from the ladder");
            }
            alive
        });
    }

    fn stop_rungs(&mut self) {
        for r in self.rungs.drain(..) {
            drop(r.input);
            if r.thread.join().is_err() {
                warn!(rung = %r.rung.name, "rung thread panicked");
            }
        }
    }

    fn finish(&mut self, sinks: &mut SinkFactory<'_>) {
        if let Some(decoder) = self.decoder.as_mut() {
            let mut frames = Vec::new();
            if decoder.finish(&mut |f| frames.push(f)).is_ok() {
                for f in frames {
                    self.frame(f, sinks);
                }
            }
        }
        if !self.pending.is_empty() {
            self.start_rungs(sinks);
        }
        self.stop_rungs();
    }
}

/// The frame rate of frames at `pts` (ms, presentation order), snapped to a
/// common rate when close; 30 fps when there is too little to tell.
fn frame_rate(pts: &[i64]) -> (i32, i32) {
    let (Some(first), Some(last)) = (pts.iter().min(), pts.iter().max()) else {
        return (30, 1);
    };
    let span = last - first;
    if pts.len() < 2 || span <= 0 {
        return (30, 1);
    }
    let fps = (pts.len() - 1) as f64 * 1000.0 / span as f64;
    const COMMON: [(i32, i32); 9] = [
        (24000, 1001),
        (24, 1),
        (25, 1),
        (30000, 1001),
        (30, 1),
        (50, 1),
        (60000, 1001),
        (60, 1),
        (15, 1),
    ];
    COMMON
        .iter()
        .copied()
        .min_by(|a, b| {
            let da = (f64::from(a.0) / f64::from(a.1) - fps).abs();
            let db = (f64::from(b.0) / f64::from(b.1) - fps).abs();
            da.total_cmp(&db)
        })
        .filter(|c| (f64::from(c.0) / f64::from(c.1) - fps).abs() / fps < 0.03)
        .unwrap_or_else(|| {
            if (fps - fps.round()).abs() < 0.02 {
                (fps.round() as i32, 1)
            } else {
                ((fps * 1000.0).round() as i32, 1000)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use media_core::Timestamp;

    fn video(dts: i64, pts: i64, keyframe: bool) -> Packet {
        Packet {
            track: TrackKind::Video,
            dts: Timestamp::from_millis(dts),
            pts: Timestamp::from_millis(pts),
            keyframe,
            payload: Bytes::new(),
        }
    }

    #[test]
    fn source_rule_picks_the_keyframes_the_packager_cuts_at() {
        let mut cuts = Cuts::new(KeyframeRule::SourceKeyframes, Duration::from_secs(2));
        // 1 s GOPs: every second keyframe starts a segment.
        let mut forced = Vec::new();
        for i in 0..150 {
            let t = (i * 1000 + 15) / 30;
            cuts.packet(&video(t, t + 66, i % 30 == 0));
            if cuts.frame(t + 66) {
                forced.push(i);
            }
        }
        assert_eq!(forced, [0, 60, 120]);
    }

    #[test]
    fn every_rule_forces_keyframes_at_the_segment_duration_whatever_the_gop() {
        let mut cuts = Cuts::new(KeyframeRule::Every, Duration::from_secs(2));
        let forced: Vec<i64> = (0..200).filter(|i| cuts.frame(i * 40)).collect();
        assert_eq!(forced, [0, 50, 100, 150]);
    }

    #[test]
    fn frame_rates_snap_to_common_ones() {
        let at = |fps: f64| -> Vec<i64> {
            (0..8)
                .map(|i| (i as f64 * 1000.0 / fps).round() as i64)
                .collect()
        };
        assert_eq!(frame_rate(&at(30.0)), (30, 1));
        assert_eq!(frame_rate(&at(29.97)), (30000, 1001));
        assert_eq!(frame_rate(&at(25.0)), (25, 1));
        assert_eq!(frame_rate(&at(12.0)), (12, 1));
        assert_eq!(frame_rate(&at(12.5)), (12500, 1000));
        assert_eq!(frame_rate(&[5]), (30, 1));
    }
}
