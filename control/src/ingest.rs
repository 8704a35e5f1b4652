//! A live stream's ingest, as one report whoever counts it: the hub of this
//! process (`ferry serve`) or an origin's heartbeat (a separate `ferry
//! control`). The API, the history and the warnings read only reports, so
//! an operator sees the same figures however the cluster is split.
//!
//! The control plane sees its own process's streams only through
//! [`LocalStreams`]: `ferry serve` hands it the hub, `ferry control` has none.

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use control_client::types::{IngestReport, RungReport};
use media_core::{Hub, StreamInfo, StreamPath};

fn unix_ms(t: Option<std::time::SystemTime>) -> i64 {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn report_of(info: StreamInfo) -> IngestReport {
    IngestReport {
        publisher: info.source,
        since_ms: unix_ms(info.since),
        video_codec: info.video,
        audio_codec: info.audio,
        bytes_in: info.bytes_in,
        video_frames: info.video_frames,
        keyframe_interval_ms: info.keyframe_interval_ms,
        nominal_fps: info.nominal_fps,
        consumers: info
            .subscribers
            .into_iter()
            .map(|(k, n)| (k, n as u64))
            .collect(),
        rungs: BTreeMap::new(),
    }
}

/// Every live source stream of `hub` with its ladder's rungs: what an
/// origin reports and what `ferry serve` shows of itself.
pub fn of_hub(hub: &Hub) -> BTreeMap<String, IngestReport> {
    let mut sources = BTreeMap::new();
    let mut rungs: Vec<(String, String, StreamInfo)> = Vec::new();
    for name in hub.live_streams() {
        let Ok(path) = StreamPath::parse(&name) else {
            continue;
        };
        let Some(info) = hub.info(&name).filter(|i| i.live) else {
            continue;
        };
        match path.rendition_name() {
            None => {
                sources.insert(name.clone(), (info.last_video_ms, report_of(info)));
            }
            Some(rung) => rungs.push((path.source_name().to_owned(), rung.to_owned(), info)),
        }
    }
    for (source, rung, info) in rungs {
        if let Some((source_last, report)) = sources.get_mut(&source) {
            let lag_ms = info
                .last_video_ms
                .zip(*source_last)
                .map(|(r, s)| (s - r).max(0));
            report.rungs.insert(
                rung,
                RungReport {
                    bytes_out: info.bytes_in,
                    video_frames: info.video_frames,
                    since_ms: unix_ms(info.since),
                    lag_ms,
                },
            );
        }
    }
    sources.into_iter().map(|(k, (_, r))| (k, r)).collect()
}

/// What the control plane sees of the streams live in its own process.
/// `ferry serve` hands it its hub; a separate `ferry control` has
/// [`NoLocalStreams`] and sees streams only through the origins' heartbeats.
pub trait LocalStreams: Send + Sync + 'static {
    /// Every live source stream with its ladder's rungs.
    fn reports(&self) -> BTreeMap<String, IngestReport>;
    /// The names of the live source streams (not rungs).
    fn live_sources(&self) -> Vec<String>;
    /// Disconnects the publisher of `name`; false if it is not live here.
    fn kick(&self, name: &str) -> bool;
}

impl LocalStreams for Hub {
    fn reports(&self) -> BTreeMap<String, IngestReport> {
        of_hub(self)
    }

    fn live_sources(&self) -> Vec<String> {
        Hub::live_sources(self)
    }

    fn kick(&self, name: &str) -> bool {
        Hub::kick(self, name)
    }
}

/// A control plane with no streams of its own (`ferry control`).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLocalStreams;

impl LocalStreams for NoLocalStreams {
    fn reports(&self) -> BTreeMap<String, IngestReport> {
        BTreeMap::new()
    }

    fn live_sources(&self) -> Vec<String> {
        Vec::new()
    }

    fn kick(&self, _: &str) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use media_core::{MetaValue, Packet, Publisher, Timestamp, TrackInfo, TrackKind};

    const AVCC: &[u8] = &[
        0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x01, 0x67, 0x01, 0x00, 0x01, 0x68,
    ];

    fn track() -> TrackInfo {
        TrackInfo::h264(Bytes::from_static(AVCC)).expect("avcC")
    }

    fn video(p: &Publisher, ms: i64, keyframe: bool) {
        p.send(Packet {
            track: TrackKind::Video,
            dts: Timestamp::from_millis(ms),
            pts: Timestamp::from_millis(ms),
            keyframe,
            payload: Bytes::from_static(&[0u8; 100]),
        });
    }

    #[test]
    fn a_source_and_its_rungs_are_one_report_with_each_rung_s_lag() {
        let hub = Hub::new();
        let source = hub.publish("s").expect("source");
        source.set_metadata(vec![("framerate".into(), MetaValue::Number(30.0))]);
        source.set_track(track());
        let rung = hub.publish("s/360p").expect("rung");
        rung.set_track(track());
        for i in 0..10 {
            video(&source, i * 33, i == 0);
        }
        for i in 0..4 {
            video(&rung, i * 33, i == 0);
        }
        let all = of_hub(&hub);
        assert_eq!(all.len(), 1, "rungs are not streams of their own: {all:?}");
        let s = &all["s"];
        assert_eq!(s.video_frames, 10);
        assert_eq!(s.bytes_in, 1000);
        assert_eq!(s.nominal_fps, Some(30.0));
        assert!(s.since_ms > 0);
        let r = &s.rungs["360p"];
        assert_eq!(r.video_frames, 4);
        assert_eq!(r.bytes_out, 400);
        assert_eq!(r.lag_ms, Some(9 * 33 - 3 * 33));
        drop(source);
        assert!(of_hub(&hub).is_empty(), "an ended stream is not reported");
    }
}
