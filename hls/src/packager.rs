//! The packager: hub events in, segments and playlists out. Sans-IO (the caller
//! supplies the wall clock and does the storing), so it is tested on virtual time.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use media_core::codec::{AacConfig, Av1Config, AvcConfig, HevcConfig};
use media_core::{Codec, Event, Packet, Timestamp, TrackKind};

use crate::fmp4;
use crate::low_latency::{LiveView, OpenSegment, PartEntry};
use crate::playlist::{self, SegmentEntry, Variant};
use crate::ts::{TsMuxer, TsTracks};

/// The variant name of the source, passed through untouched.
pub const SOURCE_VARIANT: &str = "source";

/// How segments are cut and kept.
#[derive(Clone, Debug, PartialEq)]
pub struct PackagerConfig {
    /// A segment is cut at the first keyframe at or after this duration.
    pub target_duration: Duration,
    /// Segments listed in the media playlist.
    pub window: usize,
    /// MPEG-TS or fragmented MP4 segments.
    pub container: Container,
    /// The variant's directory below the stream (`source`, `720p`).
    pub variant: String,
    /// Cut at every keyframe, whatever the duration: for ladder rungs, whose
    /// keyframes the ladder places at segment starts, the same in every rung.
    pub cut_every_keyframe: bool,
    /// Names this publish session in every segment and init segment name
    /// (`SESSION-12.ts`), so a name is never reused for other bytes after a
    /// restart: segments are served `immutable`, and a cache would keep the old
    /// ones. Letters, digits, `_`, `-`; empty (tests) leaves bare numbers.
    /// Redundant origins fed by one encoder name segments alike when given the
    /// same session.
    pub session: String,
    /// Cut and number segments from the source's timestamps alone: segment
    /// `N` starts at the first keyframe at or after `(N - 1/2) × target`, so
    /// origins fed by one encoder cut the same segments with the same numbers
    /// however late each joined (as long as keyframes come at least once per
    /// target duration). Numbers still only go up.
    pub aligned: bool,
    /// Low-Latency HLS (fMP4 only): cut each segment into partial segments
    /// of at most this duration, emitted as [`Output::Part`] as soon as each
    /// is complete; the segment is then exactly its parts end to end.
    pub part_target: Option<Duration>,
}

/// The segment format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Container {
    /// MPEG-TS (`.ts`), what every HLS player reads.
    #[default]
    Ts,
    /// Fragmented MP4 / CMAF (`init*.mp4` + `.m4s`), the base for LL-HLS and HEVC.
    Fmp4,
}

impl Default for PackagerConfig {
    fn default() -> Self {
        Self {
            target_duration: Duration::from_secs(2),
            window: 6,
            container: Container::Ts,
            variant: SOURCE_VARIANT.to_owned(),
            cut_every_keyframe: false,
            session: String::new(),
            aligned: false,
            part_target: None,
        }
    }
}

/// What the caller must do, in order: store a segment before the playlist that
/// names it, delete segments that left the window long enough ago.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Store a segment.
    Segment {
        /// Path below the stream, e.g. `source/12.ts`.
        path: String,
        /// Its bytes.
        data: Bytes,
    },
    /// Store (replace) a playlist.
    Playlist {
        /// `source/index.m3u8`: the variant's media playlist.
        path: String,
        /// Its text.
        data: Bytes,
    },
    /// A partial segment (Low-Latency HLS): served from the origin's
    /// memory, never stored; the segment that holds it follows as
    /// [`Output::Segment`].
    Part {
        /// Path below the stream, e.g. `source/s-12.3.m4s`.
        path: String,
        /// Its bytes (`moof` + `mdat`).
        data: Bytes,
    },
    /// Delete an object.
    Delete {
        /// Path below the stream.
        path: String,
    },
}

struct Open {
    sequence: u64,
    start: Timestamp,
    last_dts: Timestamp,
    last_delta: i64,
    video_frames: u64,
    /// Media bytes in the segment so far (bounded by [`MAX_SEGMENT_BYTES`]).
    payload_bytes: usize,
    data: BytesMut,
    /// fMP4 only: the frames, written out when the segment closes.
    samples: Vec<Packet>,
    map: Option<String>,
    wall: SystemTime,
    discontinuity: bool,
    /// Low-latency HLS: the parts written so far, their bytes end to end, and
    /// where the part being collected starts.
    parts: Vec<PartEntry>,
    part_bytes: BytesMut,
    part_first: usize,
    part_start: Timestamp,
}

/// Packages one stream.
pub struct Packager {
    config: PackagerConfig,
    video: Option<crate::VideoConfig>,
    audio: Option<AacConfig>,
    muxer: Option<TsMuxer>,
    open: Option<Open>,
    window: VecDeque<SegmentEntry>,
    retired: VecDeque<u64>,
    next_sequence: u64,
    discontinuity_sequence: u64,
    pending_discontinuity: bool,
    target: u64,
    ended: bool,
    peak_bps: u64,
    total_bits: u64,
    total_secs: f64,
    video_frames: u64,
    video_secs: f64,
    early_audio: Vec<Packet>,
    last_segment_bytes: usize,
    video_raw: Option<Bytes>,
    audio_raw: Option<Bytes>,
    /// Bumped when the tracks change; names the fMP4 init segment.
    generation: u64,
    /// The init segment written for the current generation, if any.
    map: Option<(u64, String)>,
    /// Segments cut without a keyframe (see [`MAX_SEGMENT_TARGETS`]).
    forced_cuts: u64,
    /// The video track is in a codec not packaged yet (HEVC): its packets are dropped.
    video_unpackaged: bool,
    /// Aligned: the decode time of the first packet seen since the publish
    /// started, to tell whether the first keyframe is the first of its slot.
    first_seen: Option<Timestamp>,
    /// The longest part cut so far (s): `PART-TARGET` never says less (a
    /// keyframe that comes late, as at an encoder's loop, stretches the last
    /// part of a segment), as `EXT-X-TARGETDURATION` grows with segments.
    longest_part: f64,
}

/// Audio frames held while waiting for the first keyframe (about 2 s of AAC).
const EARLY_AUDIO_MAX: usize = 96;
/// A segment is cut without waiting for a keyframe once it spans this many
/// target durations: an encoder that stops sending keyframes must not grow
/// one segment (and the memory holding it) without bound.
pub const MAX_SEGMENT_TARGETS: u32 = 3;
/// A segment is cut without waiting for a keyframe once it holds this many
/// bytes (a bitrate far above any sane ladder).
pub const MAX_SEGMENT_BYTES: usize = 64 << 20;

impl Packager {
    /// A packager with no segments yet.
    pub fn new(config: PackagerConfig) -> Self {
        let target = config.target_duration.as_secs_f64().ceil().max(1.0) as u64;
        Self {
            config,
            video: None,
            audio: None,
            muxer: None,
            open: None,
            window: VecDeque::new(),
            retired: VecDeque::new(),
            next_sequence: 0,
            discontinuity_sequence: 0,
            pending_discontinuity: false,
            target,
            ended: false,
            peak_bps: 0,
            total_bits: 0,
            total_secs: 0.0,
            video_frames: 0,
            video_secs: 0.0,
            early_audio: Vec::new(),
            last_segment_bytes: 0,
            video_raw: None,
            audio_raw: None,
            generation: 0,
            map: None,
            forced_cuts: 0,
            video_unpackaged: false,
            longest_part: 0.0,
            first_seen: None,
        }
    }

    /// Feeds one hub event; `now` is the wall clock at ingest.
    pub fn handle(&mut self, event: &Event, now: SystemTime) -> Vec<Output> {
        let mut out = Vec::new();
        match event {
            Event::Started => {
                if self.next_sequence > 0 {
                    self.pending_discontinuity = true;
                }
                self.ended = false;
                self.video = None;
                self.audio = None;
                self.muxer = None;
                self.early_audio.clear();
                self.first_seen = None;
                self.generation += 1;
            }
            Event::Track(track) => {
                match track.codec {
                    Codec::H264 => {
                        self.video = AvcConfig::parse(&track.config)
                            .ok()
                            .map(crate::VideoConfig::Avc);
                        self.video_raw = Some(track.config.clone());
                        self.video_unpackaged = false;
                    }
                    Codec::H265 | Codec::Av1 if self.config.container == Container::Fmp4 => {
                        self.video = match track.codec {
                            Codec::Av1 => Av1Config::parse(&track.config)
                                .ok()
                                .map(crate::VideoConfig::Av1),
                            _ => HevcConfig::parse(&track.config)
                                .ok()
                                .map(crate::VideoConfig::Hevc),
                        };
                        self.video_raw = Some(track.config.clone());
                        self.video_unpackaged = false;
                    }
                    Codec::H265 | Codec::Av1 => {
                        // HEVC and AV1 go in fMP4 only (as Apple's authoring
                        // spec has it): in MPEG-TS the playlist has audio
                        // only (said once per stream).
                        if !self.video_unpackaged {
                            tracing::warn!(
                                variant = %self.config.variant,
                                codec = ?track.codec,
                                "HEVC and AV1 video are packaged to fMP4 only: this MPEG-TS playlist has audio only (set the stream's hls_container to fmp4)"
                            );
                        }
                        self.video = None;
                        self.video_raw = None;
                        self.video_unpackaged = true;
                    }
                    Codec::Aac => {
                        self.audio = AacConfig::parse(&track.config).ok();
                        self.audio_raw = Some(track.config.clone());
                    }
                }
                self.generation += 1;
                // New configs take effect at the next segment.
                self.muxer = None;
            }
            Event::Metadata(_) => {}
            Event::Packet(p) => self.packet(p, now, &mut out),
            Event::Stopped => {
                self.close(None, &mut out);
                self.ended = true;
                self.playlists(&mut out);
            }
        }
        out
    }

    fn packet(&mut self, p: &Packet, now: SystemTime, out: &mut Vec<Output>) {
        if self.video_unpackaged && p.track == TrackKind::Video {
            return;
        }
        let has_video = self.video.is_some();
        let first_seen = *self.first_seen.get_or_insert(p.dts);
        let sync = p.is_sync_point(has_video)
            && (self.open.is_some() || self.starts_a_slot_seen_whole(p.dts, first_seen));
        let due = self.open.as_ref().is_some_and(|o| {
            (self.config.cut_every_keyframe && p.dts.checked_sub(o.start).is_some_and(|d| d > 0))
                || if self.config.aligned {
                    self.slot(p.dts) > self.slot(o.start)
                } else {
                    p.dts.duration_since(o.start).unwrap_or_default() >= self.config.target_duration
                }
        });
        let forced = !sync
            && self.open.as_ref().is_some_and(|o| {
                p.dts.duration_since(o.start).unwrap_or_default()
                    >= self.config.target_duration * MAX_SEGMENT_TARGETS
                    || o.payload_bytes >= MAX_SEGMENT_BYTES
            });
        if forced {
            self.forced_cuts += 1;
        }
        if (sync && (self.open.is_none() || due)) || forced {
            self.close(Some(p.dts), out);
            let mut muxer = self.muxer.take().unwrap_or_else(|| {
                TsMuxer::new(TsTracks {
                    video: self
                        .video
                        .as_ref()
                        .and_then(crate::VideoConfig::avc)
                        .cloned(),
                    audio: self.audio,
                })
            });
            // Sized like the last segment, so a segment is not reallocated as it grows.
            let mut data =
                BytesMut::with_capacity(self.last_segment_bytes + self.last_segment_bytes / 8);
            if self.config.aligned {
                muxer.restart_counters();
            }
            muxer.start_segment(&mut data);
            self.muxer = Some(muxer);
            if self.config.aligned && !self.config.cut_every_keyframe {
                // Another origin fed by the same encoder put this audio in
                // the segment before: the first segment holds the same
                // frames as theirs only without it.
                self.early_audio.clear();
            }
            let map = self.init_segment(out);
            let sequence = if self.config.aligned {
                self.slot(p.dts).max(self.next_sequence)
            } else {
                self.next_sequence
            };
            self.open = Some(Open {
                sequence,
                start: p.dts,
                last_dts: p.dts,
                last_delta: 0,
                video_frames: 0,
                payload_bytes: 0,
                data,
                samples: Vec::new(),
                map,
                wall: now,
                discontinuity: std::mem::take(&mut self.pending_discontinuity),
                parts: Vec::new(),
                part_bytes: BytesMut::new(),
                part_first: 0,
                part_start: p.dts,
            });
            self.next_sequence = sequence + 1;
        }
        if let Some(target) = self.part_target()
            && (p.track == TrackKind::Video || !has_video)
            && self.open.as_ref().is_some_and(|o| part_due(o, p, target))
        {
            let tracks = self.fmp4_tracks();
            let uri = self.part_names();
            if let Some(open) = self.open.as_mut() {
                let d = cut_part(open, &tracks, &uri, p.dts, out);
                self.longest_part = self.longest_part.max(d);
            }
        }
        let (Some(open), Some(muxer)) = (self.open.as_mut(), self.muxer.as_mut()) else {
            // Before the first keyframe, video cannot start a segment; audio is held
            // (encoders interleave the first audio frames ahead of it) and goes into
            // the first segment.
            if p.track == TrackKind::Audio && self.early_audio.len() < EARLY_AUDIO_MAX {
                self.early_audio.push(p.clone());
            }
            return;
        };
        let fmp4 = self.config.container == Container::Fmp4;
        open.payload_bytes += p.payload.len();
        for early in self.early_audio.drain(..) {
            if fmp4 {
                open.samples.push(early);
            } else {
                muxer.write(&early, &mut open.data);
            }
        }
        if fmp4 {
            open.samples.push(p.clone());
        } else {
            muxer.write(p, &mut open.data);
        }
        if p.track == TrackKind::Video || !has_video {
            if p.track == TrackKind::Video {
                open.video_frames += 1;
            }
            // The frame interval of the timing track, to end the last segment.
            let delta = p.dts.checked_sub(open.last_dts).unwrap_or(0);
            if delta > 0 {
                open.last_delta = delta;
                open.last_dts = p.dts;
            }
        }
    }

    /// Closes the open segment at `end` (the next segment's start), or after its
    /// last frame when the stream stops.
    fn close(&mut self, end: Option<Timestamp>, out: &mut Vec<Output>) {
        let Some(mut open) = self.open.take() else {
            return;
        };
        let end = end.unwrap_or_else(|| {
            open.last_dts
                .checked_add_ticks(open.last_delta)
                .unwrap_or(open.last_dts)
        });
        let duration = end
            .duration_since(open.start)
            .unwrap_or_default()
            .as_secs_f64();
        let path = self.segment_path(open.sequence);
        let data = match self.config.container {
            Container::Ts => open.data.freeze(),
            Container::Fmp4 if self.part_target().is_some() => {
                // The last part, then the segment: its parts end to end.
                let d = cut_part(&mut open, &self.fmp4_tracks(), &self.part_names(), end, out);
                self.longest_part = self.longest_part.max(d);
                std::mem::take(&mut open.part_bytes).freeze()
            }
            Container::Fmp4 => fmp4::media_segment(
                &self.fmp4_tracks(),
                open.sequence as u32 + 1,
                &open.samples,
                Some(end.as_millis()),
            ),
        };
        let bits = data.len() as u64 * 8;
        self.last_segment_bytes = data.len();
        if duration > 0.0 {
            self.peak_bps = self.peak_bps.max((bits as f64 / duration) as u64);
            self.total_bits += bits;
            self.total_secs += duration;
            if open.video_frames > 0 {
                self.video_secs += duration;
                self.video_frames += open.video_frames;
            }
        }
        // EXTINF rounded must never exceed the target duration.
        self.target = self.target.max(duration.round() as u64);
        out.push(Output::Segment {
            path: path.clone(),
            data,
        });
        self.window.push_back(SegmentEntry {
            sequence: open.sequence,
            duration,
            uri: self.relative(&path).to_owned(),
            map: open.map,
            discontinuity: open.discontinuity,
            program_date_time: open.wall,
            parts: std::mem::take(&mut open.parts),
        });
        // Parts are listed for the newest segments only; older ones drop them.
        let keep = PARTS_KEPT_SEGMENTS.min(self.window.len());
        let old = self.window.len() - keep;
        for s in self.window.iter_mut().take(old) {
            s.parts = Vec::new();
        }
        while self.window.len() > self.config.window {
            if let Some(old) = self.window.pop_front() {
                if old.discontinuity {
                    self.discontinuity_sequence += 1;
                }
                self.retired.push_back(old.sequence);
            }
        }
        // Segments stay stored for one more window after they leave the playlist,
        // so players that loaded an older playlist can still fetch them.
        while self.retired.len() > self.config.window {
            if let Some(seq) = self.retired.pop_front() {
                out.push(Output::Delete {
                    path: self.segment_path(seq),
                });
            }
        }
        self.playlists(out);
    }

    /// Forgets a segment the store could not take, so no playlist names it; the
    /// next segment is marked as a discontinuity.
    pub fn segment_lost(&mut self, path: &str) -> Vec<Output> {
        let before = self.window.len();
        let uri = self.relative(path).to_owned();
        self.window.retain(|s| s.uri != uri);
        let mut out = Vec::new();
        if self.window.len() != before {
            self.pending_discontinuity = true;
            if let Some(open) = self.open.as_mut() {
                open.discontinuity = true;
            }
            self.playlists(&mut out);
        }
        out
    }

    fn playlists(&self, out: &mut Vec<Output>) {
        let segments: Vec<SegmentEntry> = self.window.iter().cloned().collect();
        let media = playlist::media_playlist(
            self.target,
            self.discontinuity_sequence,
            &segments,
            self.ended,
        );
        out.push(Output::Playlist {
            path: format!("{}/index.m3u8", self.config.variant),
            data: Bytes::from(media),
        });
    }

    /// How the multivariant playlist lists this variant; `None` until it has a
    /// segment (nothing measured yet, nothing a player could load).
    pub fn variant(&self) -> Option<Variant> {
        if self.window.is_empty() {
            return None;
        }
        let mut codecs = Vec::new();
        if let Some(v) = &self.video {
            codecs.push(v.codec_string());
        }
        if let Some(a) = &self.audio {
            codecs.push(a.codec_string());
        }
        Some(Variant {
            uri: format!("{}/index.m3u8", self.config.variant),
            bandwidth: self.peak_bps,
            average_bandwidth: if self.total_secs > 0.0 {
                (self.total_bits as f64 / self.total_secs) as u64
            } else {
                0
            },
            codecs,
            resolution: self.video.as_ref().and_then(crate::VideoConfig::resolution),
            frame_rate: (self.video_secs > 0.0)
                .then(|| (self.video_frames as f64 / self.video_secs * 1000.0).round() / 1000.0),
        })
    }

    /// Segments cut without a keyframe so far, because the open one reached
    /// [`MAX_SEGMENT_TARGETS`] target durations or [`MAX_SEGMENT_BYTES`].
    pub fn forced_cuts(&self) -> u64 {
        self.forced_cuts
    }

    /// Segments in the media playlist now.
    pub fn segments_listed(&self) -> usize {
        self.window.len()
    }

    /// The variant's directory below the stream.
    pub fn variant_name(&self) -> &str {
        &self.config.variant
    }

    fn relative<'a>(&self, path: &'a str) -> &'a str {
        path.strip_prefix(self.config.variant.as_str())
            .and_then(|p| p.strip_prefix('/'))
            .unwrap_or(path)
    }
}

impl Packager {
    /// The aligned segment number of a keyframe at `dts`: slots of one target
    /// duration, their edges half a target before the multiples, so keyframes
    /// placed every target duration (a timestamp off by a millisecond either
    /// way) fall well inside one.
    fn slot(&self, dts: Timestamp) -> u64 {
        let target = self.config.target_duration.as_secs_f64().max(0.001);
        let t = seconds(dts) / target + 0.5;
        if t <= 0.0 { 0 } else { t as u64 }
    }

    /// Whether the first segment may start at a keyframe at `dts`, given the
    /// first packet seen at `first_seen`. Aligned (source) segments start at
    /// the first keyframe of a slot, so the first segment of an origin that
    /// joined late is the one every other origin cut: a keyframe opens it
    /// only if this packager saw the stream since before the slot's edge (or
    /// at the stream's very start, time zero, which every origin sees alike).
    fn starts_a_slot_seen_whole(&self, dts: Timestamp, first_seen: Timestamp) -> bool {
        !self.config.aligned
            || self.config.cut_every_keyframe
            || dts.ticks() <= 0
            || seconds(first_seen) <= self.slot_edge(self.slot(dts)) + EDGE_SLACK
    }

    /// Where slot `slot` starts (s): half a target before its multiple.
    fn slot_edge(&self, slot: u64) -> f64 {
        let target = self.config.target_duration.as_secs_f64().max(0.001);
        (slot as f64 - 0.5) * target
    }

    /// Where segment `sequence` is stored, below the stream.
    fn segment_path(&self, sequence: u64) -> String {
        let ext = match self.config.container {
            Container::Ts => "ts",
            Container::Fmp4 => "m4s",
        };
        format!(
            "{}/{}{sequence}.{ext}",
            self.config.variant,
            self.session_prefix()
        )
    }

    /// `SESSION-`, or nothing without a session.
    fn session_prefix(&self) -> String {
        if self.config.session.is_empty() {
            String::new()
        } else {
            format!("{}-", self.config.session)
        }
    }

    fn fmp4_tracks(&self) -> fmp4::Fmp4Tracks {
        fmp4::Fmp4Tracks {
            video: self.video.clone().zip(self.video_raw.clone()),
            audio: self.audio.zip(self.audio_raw.clone()),
        }
    }

    /// fMP4: writes the init segment for the current tracks if not yet written,
    /// and returns the URI segments must reference (`EXT-X-MAP`).
    fn init_segment(&mut self, out: &mut Vec<Output>) -> Option<String> {
        if self.config.container != Container::Fmp4 {
            return None;
        }
        if let Some((generation, uri)) = &self.map
            && *generation == self.generation
        {
            return Some(uri.clone());
        }
        let uri = format!("{}init{}.mp4", self.session_prefix(), self.generation);
        out.push(Output::Segment {
            path: format!("{}/{uri}", self.config.variant),
            data: fmp4::init_segment(&self.fmp4_tracks()),
        });
        self.map = Some((self.generation, uri.clone()));
        Some(uri)
    }

    /// The part duration, when Low-Latency HLS is on (fMP4 only).
    fn part_target(&self) -> Option<Duration> {
        self.config
            .part_target
            .filter(|_| self.config.container == Container::Fmp4)
    }

    /// Names part `index` of segment `sequence`: `SESSION-12.3.m4s`.
    fn part_names(&self) -> PartUri {
        PartUri {
            variant: self.config.variant.clone(),
            prefix: self.session_prefix(),
        }
    }

    /// The low-latency view of this variant now: complete segments with
    /// their parts, the segment being built and the next part's name.
    /// `None` unless Low-Latency HLS is on.
    pub fn live_view(&self) -> Option<LiveView> {
        let part_target = self.part_target()?;
        let uri = self.part_names();
        let open = self.open.as_ref().map(|o| OpenSegment {
            sequence: o.sequence,
            program_date_time: o.wall,
            map: o.map.clone(),
            discontinuity: o.discontinuity,
            parts: o.parts.clone(),
        });
        let next_part_uri = (!self.ended).then(|| match &open {
            Some(o) => uri.name(o.sequence, o.parts.len()),
            None => uri.name(self.next_sequence, 0),
        });
        Some(LiveView {
            target: self.target,
            // Milliseconds up, so no part is listed longer than the target.
            part_target: (part_target.as_secs_f64().max(self.longest_part) * 1000.0).ceil()
                / 1000.0,
            discontinuity_sequence: self.discontinuity_sequence,
            segments: self.window.iter().cloned().collect(),
            open,
            next_part_uri,
            ended: self.ended,
        })
    }
}

/// Complete segments whose parts stay listed (and whose part bytes the
/// origin keeps): the spec asks for the last three target durations.
pub const PARTS_KEPT_SEGMENTS: usize = 3;

/// A part may run this much over its target (timestamp rounding) before the
/// frame that would take it further starts the next part.
const PART_SLACK: Duration = Duration::from_millis(2);

/// A packager that joined this long after a slot's edge (s) still saw the
/// slot whole: timestamps are rounded to the millisecond, and no keyframe
/// comes in between.
const EDGE_SLACK: f64 = 0.005;

/// A timestamp in seconds.
fn seconds(t: Timestamp) -> f64 {
    t.ticks() as f64 / f64::from(t.timebase().hz())
}

/// How parts are named.
struct PartUri {
    variant: String,
    prefix: String,
}

impl PartUri {
    fn name(&self, sequence: u64, index: usize) -> String {
        crate::naming::part_name(&self.prefix, sequence, index)
    }
}

/// The `mfhd` sequence number of fragment `part` of segment `sequence`: the
/// same on every origin cutting the same segments, increasing along the stream.
fn fragment_number(sequence: u64, part: usize) -> u32 {
    (sequence as u32)
        .wrapping_mul(4096)
        .wrapping_add(part as u32 + 1)
}

/// Whether the timing-track packet `p` starts a new part of `open`: a frame
/// that would take the part past its target, or a keyframe (so a player can
/// start there).
fn part_due(open: &Open, p: &Packet, target: Duration) -> bool {
    if p.dts == open.part_start || open.samples.len() == open.part_first {
        return false;
    }
    let span = p
        .dts
        .checked_add_ticks(open.last_delta)
        .and_then(|t| t.duration_since(open.part_start))
        .unwrap_or_default();
    span > target + PART_SLACK || (p.keyframe && p.track == TrackKind::Video)
}

/// Closes the part being collected at `end` (the next part's first decode
/// time): its fragment goes out as [`Output::Part`] and onto the segment.
/// Returns its duration in seconds.
fn cut_part(
    open: &mut Open,
    tracks: &fmp4::Fmp4Tracks,
    uri: &PartUri,
    end: Timestamp,
    out: &mut Vec<Output>,
) -> f64 {
    let samples = &open.samples[open.part_first..];
    if samples.is_empty() {
        return 0.0;
    }
    let index = open.parts.len();
    let independent = samples
        .iter()
        .find(|s| s.track == TrackKind::Video)
        .is_none_or(|s| s.keyframe);
    let data = fmp4::media_segment(
        tracks,
        fragment_number(open.sequence, index),
        samples,
        Some(end.as_millis()),
    );
    let duration = end
        .duration_since(open.part_start)
        .unwrap_or_default()
        .as_secs_f64();
    let name = uri.name(open.sequence, index);
    open.part_bytes.extend_from_slice(&data);
    open.parts.push(PartEntry {
        duration,
        uri: name.clone(),
        independent,
    });
    open.part_first = open.samples.len();
    open.part_start = end;
    out.push(Output::Part {
        path: format!("{}/{name}", uri.variant),
        data,
    });
    duration
}
