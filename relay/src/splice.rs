//! Joining one origin's packets onto another's at a failover, so the edge's
//! players see one stream: timestamps that only go forward, no frame twice,
//! and a decoder that never starts mid-GOP.
//!
//! Two origins fed by the same encoder (an `ffmpeg -f tee`, an encoder with
//! two outputs) carry the same frames at the same timestamps. When the new
//! source's recent frames overlap what was already forwarded (same
//! timestamp, same bytes), the splice continues right after the last frame
//! sent, with no gap, no duplicate and no need for a keyframe. Otherwise the
//! new source starts at a keyframe, rebased to follow the last timestamp sent.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};

use media_core::{Packet, Timestamp, TrackKind};

/// How many recent video frames are remembered to recognise the same timeline.
pub const HISTORY_FRAMES: usize = 512;
/// A new source whose first keyframe lies this close after the last frame sent
/// is taken as the same timeline (a gap, not a rebase), in milliseconds.
pub const SAME_TIMELINE_GAP_MS: i64 = 1000;

/// A cheap fingerprint of a frame: its timestamp and (part of) its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameMark {
    /// Decode time in ticks of the packet's timebase.
    pub dts: i64,
    /// Hash of the payload's length and its first and last bytes.
    pub digest: u64,
}

impl FrameMark {
    /// The mark of `p`.
    pub fn of(p: &Packet) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let b = &p.payload;
        b.len().hash(&mut h);
        b[..b.len().min(256)].hash(&mut h);
        b[b.len().saturating_sub(256)..].hash(&mut h);
        Self {
            dts: p.dts.ticks(),
            digest: h.finish(),
        }
    }
}

/// Recent packets of a source that is not forwarded (the warm standby):
/// its last two GOPs (so a keyframe that reached the standby just before the
/// switch does not cut away the frames right after the last one sent), and
/// marks of its recent frames.
#[derive(Default)]
pub struct Standby {
    buffer: Vec<Packet>,
    bytes: usize,
    /// Where the newest GOP starts in `buffer`.
    newest: usize,
    /// A keyframe (a place a decoder can start from) is buffered.
    has_start: bool,
    marks: VecDeque<FrameMark>,
}

/// A standby keeps at most this many bytes of packets.
pub const STANDBY_MAX_BYTES: usize = 32 << 20;
/// Of an audio-only standby, this many packets make one "GOP".
const AUDIO_ONLY_RUN: usize = 256;

impl Standby {
    /// Remembers `p`.
    pub fn push(&mut self, p: &Packet, has_video: bool) {
        if p.track == TrackKind::Video {
            if self.marks.len() == HISTORY_FRAMES {
                self.marks.pop_front();
            }
            self.marks.push_back(FrameMark::of(p));
        }
        let sync = p.is_sync_point(has_video);
        // Frames before the first keyframe are kept too: no decoder can start
        // on them, but a splice onto the same encoder's frames continues
        // through them (a standby that joined mid-GOP, e.g. a restarted origin).
        self.has_start |= sync;
        let new_gop = sync
            && (p.track == TrackKind::Video || self.buffer.len() - self.newest > AUDIO_ONLY_RUN);
        if new_gop {
            // Keep the GOP ending now and start the next; older ones go.
            let old: usize = self.buffer[..self.newest]
                .iter()
                .map(|p| p.payload.len())
                .sum();
            self.buffer.drain(..self.newest);
            self.bytes -= old;
            self.newest = self.buffer.len();
        }
        if self.bytes + p.payload.len() > STANDBY_MAX_BYTES {
            self.buffer.clear();
            self.bytes = 0;
            self.newest = 0;
            self.has_start = false;
            return;
        }
        self.bytes += p.payload.len();
        self.buffer.push(p.clone());
    }

    /// The buffered packets (the last two GOPs, or what came before the
    /// first keyframe), oldest first.
    pub fn packets(&self) -> &[Packet] {
        &self.buffer
    }

    /// Whether a keyframe is buffered: a stream can start from this standby.
    pub fn has_start(&self) -> bool {
        self.has_start
    }

    /// The newest GOP, from its keyframe.
    pub fn newest_gop(&self) -> &[Packet] {
        &self.buffer[self.newest.min(self.buffer.len())..]
    }

    /// Marks of recent video frames, oldest first.
    pub fn marks(&self) -> &VecDeque<FrameMark> {
        &self.marks
    }
}

/// How a failover joined the new source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Join {
    /// Same frames on both: continued right after the last frame sent.
    Continuous,
    /// Same timeline, but frames in between were not available: resumed at a keyframe.
    Gap,
    /// Another timeline: resumed at a keyframe, timestamps shifted to follow on.
    Rebased,
}

/// The state that makes successive sources one output stream.
#[derive(Default)]
pub struct Splicer {
    /// Added to a source's timestamps (ticks).
    offset: i64,
    /// Last source dts forwarded per track (video, audio).
    last_src: [Option<i64>; 2],
    /// Last output dts per track.
    last_out: [Option<i64>; 2],
    /// Marks of forwarded video frames (source timestamps).
    sent: VecDeque<FrameMark>,
    /// Drop video until a keyframe (and audio before it).
    wait_keyframe: bool,
    /// On the next keyframe, recompute the offset.
    rebase: bool,
    /// Spacing of the last two video frames, used as the step after a rebase.
    frame_step: i64,
    has_video: bool,
}

fn slot(t: TrackKind) -> usize {
    match t {
        TrackKind::Video => 0,
        TrackKind::Audio => 1,
    }
}

impl Splicer {
    /// A splicer for a stream with (or without) video.
    pub fn new(has_video: bool) -> Self {
        Self {
            has_video,
            ..Self::default()
        }
    }

    /// The source timestamp of the last video frame forwarded (for logs).
    pub fn last_video(&self) -> Option<i64> {
        self.sent.back().map(|m| m.dts)
    }

    /// Tells the splicer the stream has video after all (a track arrived).
    pub fn set_has_video(&mut self, has_video: bool) {
        self.has_video = has_video;
    }

    /// The packet to forward for `p` from the current source, or `None` to drop
    /// it (already sent, before the keyframe to resume at, or not monotonic).
    pub fn pass(&mut self, p: &Packet) -> Option<Packet> {
        let s = slot(p.track);
        let sync = p.is_sync_point(self.has_video);
        if self.last_src[s].is_some_and(|last| p.dts.ticks() <= last) {
            return None;
        }
        if self.wait_keyframe {
            if !sync {
                return None;
            }
            if self.rebase {
                let step = if self.frame_step > 0 {
                    self.frame_step
                } else {
                    1
                };
                let after = self.last_out.iter().flatten().max().copied();
                self.offset = after.map_or(0, |a| a + step - p.dts.ticks());
                self.rebase = false;
            }
            self.wait_keyframe = false;
        }
        let dts = p.dts.ticks() + self.offset;
        if self.last_out[s].is_some_and(|last| dts <= last) {
            return None;
        }
        if p.track == TrackKind::Video {
            if let Some(prev) = self.last_src[0] {
                let step = p.dts.ticks() - prev;
                if step > 0 {
                    self.frame_step = step;
                }
            }
            if self.sent.len() == HISTORY_FRAMES {
                self.sent.pop_front();
            }
            self.sent.push_back(FrameMark::of(p));
        }
        self.last_src[s] = Some(p.dts.ticks());
        self.last_out[s] = Some(dts);
        let tb = p.dts.timebase();
        let pts = p.pts.rescale(tb).unwrap_or(p.dts).ticks() + self.offset;
        Some(Packet {
            dts: Timestamp::new(dts, tb),
            pts: Timestamp::new(pts, tb),
            ..p.clone()
        })
    }

    /// Switches to a new source whose recent past is `standby`; returns how
    /// it joined and the packets to forward now.
    pub fn switch(&mut self, standby: &Standby) -> (Join, Vec<Packet>) {
        let join = self.join_kind(standby);
        match join {
            Join::Continuous => {}
            Join::Gap => self.wait_keyframe = true,
            Join::Rebased => {
                self.wait_keyframe = true;
                self.rebase = true;
                self.last_src = [None, None];
            }
        }
        // Another timeline resumes at its newest keyframe (nothing older
        // of it is worth sending); the same one after the last frame sent.
        let from = match join {
            Join::Rebased => standby.newest_gop(),
            _ => standby.packets(),
        };
        let out = from.iter().filter_map(|p| self.pass(p)).collect();
        (join, out)
    }

    fn join_kind(&self, standby: &Standby) -> Join {
        let Some(last) = self.sent.back() else {
            // Nothing sent yet (audio only, or a failover before the first
            // frame): keep the timeline if it is close, else rebase.
            return match (self.last_src[1], standby.packets().first()) {
                (Some(a), Some(p)) if (p.dts.ticks() - a).abs() <= self.gap_ticks(p) => Join::Gap,
                (None, _) => Join::Gap,
                _ => Join::Rebased,
            };
        };
        let theirs = standby.marks();
        let first_kept = standby
            .packets()
            .iter()
            .find(|p| p.track == TrackKind::Video)
            .map(|p| p.dts.ticks());
        if theirs.contains(last) {
            // They have our last frame: is the frame after it still in their GOP?
            let next = theirs.iter().skip_while(|m| *m != last).nth(1);
            return match (first_kept, next) {
                (Some(first), Some(next)) if first > next.dts => Join::Gap,
                _ => Join::Continuous,
            };
        }
        if theirs.iter().any(|m| self.sent.contains(m)) {
            // Same frames, theirs behind ours: what they send next follows
            // our last frame if their GOP reaches back to it.
            return match first_kept {
                Some(first) if first <= last.dts => Join::Continuous,
                _ => Join::Gap,
            };
        }
        match standby
            .packets()
            .iter()
            .find(|p| p.track == TrackKind::Video && p.keyframe)
        {
            Some(k)
                if k.dts.ticks() > last.dts && k.dts.ticks() - last.dts <= self.gap_ticks(k) =>
            {
                Join::Gap
            }
            _ => Join::Rebased,
        }
    }

    fn gap_ticks(&self, p: &Packet) -> i64 {
        SAME_TIMELINE_GAP_MS * i64::from(p.dts.timebase().hz()) / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn video(ms: i64, key: bool, tag: u8) -> Packet {
        Packet {
            track: TrackKind::Video,
            dts: Timestamp::from_millis(ms),
            pts: Timestamp::from_millis(ms),
            keyframe: key,
            payload: Bytes::from(vec![tag; 100 + (ms % 50) as usize]),
        }
    }

    fn audio(ms: i64) -> Packet {
        Packet {
            track: TrackKind::Audio,
            dts: Timestamp::from_millis(ms),
            pts: Timestamp::from_millis(ms),
            keyframe: true,
            payload: Bytes::from_static(b"aac"),
        }
    }

    /// An encoder's output: a keyframe every 10 frames, 40 ms apart, audio between.
    fn encoder(from: usize, to: usize, tag: u8) -> Vec<Packet> {
        (from..to)
            .flat_map(|i| {
                let ms = i as i64 * 40;
                [video(ms, i % 10 == 0, tag), audio(ms + 20)]
            })
            .collect()
    }

    fn dts(ps: &[Packet], t: TrackKind) -> Vec<i64> {
        ps.iter()
            .filter(|p| p.track == t)
            .map(|p| p.dts.ticks())
            .collect()
    }

    #[test]
    fn same_encoder_continues_after_the_last_frame_sent() {
        let mut s = Splicer::new(true);
        let sent: Vec<_> = encoder(0, 25, 1).iter().filter_map(|p| s.pass(p)).collect();
        // The standby has seen a little more than the primary (it is ahead).
        let mut standby = Standby::default();
        for p in encoder(0, 28, 1) {
            standby.push(&p, true);
        }
        let (join, now) = s.switch(&standby);
        assert_eq!(join, Join::Continuous);
        assert_eq!(dts(&now, TrackKind::Video), vec![1000, 1040, 1080]);
        let later: Vec<_> = encoder(28, 30, 1)
            .iter()
            .filter_map(|p| s.pass(p))
            .collect();
        let all: Vec<_> = sent.into_iter().chain(now).chain(later).collect();
        let v = dts(&all, TrackKind::Video);
        assert_eq!(
            v,
            (0..30).map(|i| i * 40).collect::<Vec<_>>(),
            "every frame once"
        );
        let a = dts(&all, TrackKind::Audio);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(a.len(), 30);
    }

    #[test]
    fn same_encoder_behind_continues_without_duplicates() {
        let mut s = Splicer::new(true);
        let _: Vec<_> = encoder(0, 25, 1).iter().filter_map(|p| s.pass(p)).collect();
        let mut standby = Standby::default();
        for p in encoder(0, 22, 1) {
            standby.push(&p, true);
        }
        let (join, now) = s.switch(&standby);
        assert_eq!(join, Join::Continuous, "they are behind on the same frames");
        assert!(now.is_empty(), "nothing older than what was sent");
        // Their frames after our last one follow on, each once.
        let later: Vec<_> = encoder(22, 32, 1)
            .iter()
            .filter_map(|p| s.pass(p))
            .collect();
        let v = dts(&later, TrackKind::Video);
        assert_eq!(v, (25..32).map(|i| i * 40).collect::<Vec<_>>());
    }

    #[test]
    fn another_encoder_is_rebased_at_a_keyframe() {
        let mut s = Splicer::new(true);
        let sent: Vec<_> = encoder(0, 25, 1).iter().filter_map(|p| s.pass(p)).collect();
        // Another encoder, started much later: timestamps 400 000 ms on.
        let mut standby = Standby::default();
        for p in encoder(10_000, 10_013, 2) {
            standby.push(&p, true);
        }
        let (join, now) = s.switch(&standby);
        assert_eq!(join, Join::Rebased);
        let v = dts(&now, TrackKind::Video);
        // The last audio frame went out at 980: one frame step after it.
        assert_eq!(
            v[0],
            980 + 40,
            "follows the last frame sent by one frame step"
        );
        assert!(now[0].keyframe, "starts on a keyframe");
        let all: Vec<_> = sent.into_iter().chain(now).collect();
        for t in [TrackKind::Video, TrackKind::Audio] {
            let d = dts(&all, t);
            assert!(d.windows(2).all(|w| w[0] < w[1]), "{t:?} monotonic: {d:?}");
        }
    }

    #[test]
    fn a_standby_just_past_a_keyframe_still_continues() {
        let mut s = Splicer::new(true);
        let _: Vec<_> = encoder(0, 28, 1).iter().filter_map(|p| s.pass(p)).collect();
        // Their newest GOP starts at frame 30; the one before still holds 28, 29.
        let mut standby = Standby::default();
        for p in encoder(0, 32, 1) {
            standby.push(&p, true);
        }
        let (join, now) = s.switch(&standby);
        assert_eq!(join, Join::Continuous);
        assert_eq!(dts(&now, TrackKind::Video), vec![1120, 1160, 1200, 1240]);
    }

    #[test]
    fn a_standby_that_joined_mid_gop_continues_through_its_first_frames() {
        let mut s = Splicer::new(true);
        let _: Vec<_> = encoder(0, 25, 1).iter().filter_map(|p| s.pass(p)).collect();
        // It came up at frame 22: no keyframe yet, but the same frames.
        let mut standby = Standby::default();
        for p in encoder(22, 28, 1) {
            standby.push(&p, true);
        }
        assert!(!standby.has_start());
        let (join, now) = s.switch(&standby);
        assert_eq!(join, Join::Continuous);
        assert_eq!(dts(&now, TrackKind::Video), vec![1000, 1040, 1080]);
    }

    #[test]
    fn a_gop_past_our_last_frame_resumes_at_its_keyframe() {
        let mut s = Splicer::new(true);
        let _: Vec<_> = encoder(0, 25, 1).iter().filter_map(|p| s.pass(p)).collect();
        // They are two GOPs ahead: frames 25-29 are nowhere to be had.
        let mut standby = Standby::default();
        for p in encoder(30, 43, 1) {
            standby.push(&p, true);
        }
        let (join, now) = s.switch(&standby);
        assert_eq!(join, Join::Gap);
        assert_eq!(
            dts(&now, TrackKind::Video),
            (30..43).map(|i| i * 40).collect::<Vec<_>>()
        );
        assert!(
            now.iter()
                .find(|p| p.track == TrackKind::Video)
                .expect("video")
                .keyframe
        );
    }

    #[test]
    fn a_second_failover_keeps_the_shifted_timeline() {
        let mut s = Splicer::new(true);
        let _: Vec<_> = encoder(0, 25, 1).iter().filter_map(|p| s.pass(p)).collect();
        let mut b = Standby::default();
        for p in encoder(10_000, 10_013, 2) {
            b.push(&p, true);
        }
        let (_, first) = s.switch(&b);
        let more: Vec<_> = encoder(10_013, 10_020, 2)
            .iter()
            .filter_map(|p| s.pass(p))
            .collect();
        // Back to a source carrying B's frames (its twin origin): continuous.
        let mut twin = Standby::default();
        for p in encoder(10_000, 10_022, 2) {
            twin.push(&p, true);
        }
        let (join, now) = s.switch(&twin);
        assert_eq!(join, Join::Continuous);
        let all: Vec<_> = first.into_iter().chain(more).chain(now).collect();
        let v = dts(&all, TrackKind::Video);
        assert!(v.windows(2).all(|w| w[1] - w[0] == 40), "{v:?}");
    }
}
