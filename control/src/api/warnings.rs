//! What the API warns an operator of about a live stream, from its ingest
//! and the edge farm: each rule a small function with its own test.

use serde::Serialize;
use utoipa::ToSchema;

use crate::Control;
use control_client::types::EdgeRow;

use super::streams::*;

/// Something wrong with a live stream that an operator can fix.
#[derive(Serialize, ToSchema, Clone, Debug, PartialEq)]
pub struct StreamWarning {
    /// A stable code: `keyframe_interval`, `no_live_edge`.
    pub code: &'static str,
    /// What is wrong and what to change, in words.
    pub message: String,
}

/// Directors run but no edge is live: every viewer through them gets 503.
pub(super) fn no_live_edge(c: &Control, edges: &[EdgeRow]) -> Option<StreamWarning> {
    let live = edges.iter().any(|e| e.state == "live");
    (!live && c.nodes.directors_alive() > 0).then(|| StreamWarning {
        code: "no_live_edge",
        message: "directors are running but no edge is live: viewers through a director get 503. \
                  Start `ferry edge` processes (or check the autoscaler's provider), or point \
                  players at the origin's HLS"
            .into(),
    })
}

/// Warnings that need a trend wait this long into a publish (encoders
/// start slowly, rates need two samples).
pub(super) const WARN_AFTER_MS: i64 = 15_000;
/// Frames below this share of the announced rate are warned of.
pub(super) const LOW_FPS_SHARE: f64 = 0.8;
/// A recent bit rate below this share of the minute before is a drop.
pub(super) const BITRATE_DROP_SHARE: f64 = 0.5;
/// How far back the bit-rate drop looks.
pub(super) const BITRATE_WINDOW_MS: i64 = 60_000;
/// A rung this many segment targets (and at least 3 s) behind the source
/// is falling behind.
pub(super) const RUNG_LAG_SEGMENTS: f64 = 2.0;

/// Every edge that directors give more viewers than its capacity.
pub(super) fn edges_over_capacity(edges: &[EdgeRow]) -> Option<StreamWarning> {
    let over: Vec<String> = edges
        .iter()
        .filter(|e| e.state == "live" && e.viewers > u64::from(e.load.capacity))
        .map(|e| {
            format!(
                "{} ({} viewers, capacity {})",
                e.id, e.viewers, e.load.capacity
            )
        })
        .collect();
    (!over.is_empty()).then(|| StreamWarning {
        code: "edge_over_capacity",
        message: format!(
            "edges over capacity: {}. Their viewers may stall: add edges (or raise [autoscale] \
             max_edges), or raise [edge] capacity if they have the headroom",
            over.join(", ")
        ),
    })
}

/// Frames arrive at `fps`, below what the encoder announced.
pub(super) fn low_fps_warning(fps: f64, nominal: f64) -> Option<StreamWarning> {
    (nominal > 0.0 && fps < nominal * LOW_FPS_SHARE).then(|| StreamWarning {
        code: "low_fps",
        message: format!(
            "frames arrive at {fps:.1} fps, the encoder announced {nominal:.0}: it is overloaded \
             or its uplink drops frames. In OBS see View > Stats (skipped frames: pick a faster \
             encoder preset or a smaller output resolution; dropped frames: lower the bit rate)"
        ),
    })
}

/// Points the bit-rate drop is judged on: a drop must last this many
/// history periods (a long GOP makes single periods uneven).
pub(super) const BITRATE_DROP_POINTS: usize = 3;

/// The source's bit rate over the last few history periods fell below half
/// of its mean over the rest of the minute before.
pub(super) fn bitrate_drop_warning(c: &Control, name: &str, now: i64) -> Option<StreamWarning> {
    let points = c.history.streams.since(name, now - BITRATE_WINDOW_MS)?;
    let rates: Vec<f64> = points.iter().map(|p| p.bitrate).collect();
    bitrate_drop(&rates).map(|(recent, mean)| StreamWarning {
        code: "bitrate_drop",
        message: format!(
            "the source's bit rate fell to {:.0} kb/s from {:.0} kb/s over the last minute: \
             the encoder's uplink is congested or its rate control starves the picture. Check \
             the encoder's network (OBS: View > Stats, dropped frames) and use constant bit rate",
            recent / 1000.0,
            mean / 1000.0
        ),
    })
}

/// (recent, before) when the mean of the last [`BITRATE_DROP_POINTS`]
/// `rates` is below [`BITRATE_DROP_SHARE`] of the mean of the (non-zero)
/// ones before.
pub(super) fn bitrate_drop(rates: &[f64]) -> Option<(f64, f64)> {
    let split = rates.len().checked_sub(BITRATE_DROP_POINTS)?;
    let (before, recent) = rates.split_at(split);
    let before: Vec<f64> = before.iter().copied().filter(|b| *b > 0.0).collect();
    if before.len() < BITRATE_DROP_POINTS {
        return None;
    }
    let mean = before.iter().sum::<f64>() / before.len() as f64;
    let now = recent.iter().sum::<f64>() / recent.len() as f64;
    (now < mean * BITRATE_DROP_SHARE).then_some((now, mean))
}

/// A rung that trails the source or encodes fewer frames than it gets.
pub(super) fn rung_behind_warning(
    r: &RungStatus,
    source_fps: f64,
    segment: f64,
) -> Option<StreamWarning> {
    let lag_limit = (segment * RUNG_LAG_SEGMENTS * 1000.0).max(3000.0) as i64;
    let lagging = r.lag_ms.is_some_and(|l| l > lag_limit);
    let slow = source_fps > 0.0 && r.fps < source_fps * LOW_FPS_SHARE;
    (lagging || slow).then(|| StreamWarning {
        code: "rung_behind",
        message: format!(
            "rung {} falls behind: {:.1} fps of the source's {source_fps:.1}, {:.1} s behind. \
             This machine cannot encode the ladder in real time: drop a rung or lower its size, \
             or pick a faster [transcode.ladder] preset",
            r.name,
            r.fps,
            r.lag_ms.unwrap_or(0) as f64 / 1000.0
        ),
    })
}

/// Keyframes further apart than this many segment targets (plus a frame's
/// slack) are warned of.
pub(super) const KEYFRAME_SLACK: f64 = 1.05;

/// The warnings for a source with keyframes `interval` seconds apart when
/// segments should last `target` seconds.
pub(super) fn keyframe_warning(interval: f64, target: f64) -> Option<StreamWarning> {
    (target > 0.0 && interval > target * KEYFRAME_SLACK).then(|| StreamWarning {
        code: "keyframe_interval",
        message: format!(
            "keyframes arrive every {interval:.1} s, longer than the {target:.0} s segment target: \
             segments last {interval:.1} s, so players start and switch late and latency grows. \
             Set the encoder's keyframe interval to {target:.0} s (OBS: Settings > Output > \
             Keyframe Interval = {target:.0}; ffmpeg: -g at {target:.0} × the frame rate)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bit_rate_drop_must_last_three_periods() {
        let steady = [4e6, 4e6, 4e6, 4e6];
        assert_eq!(
            bitrate_drop(&[&steady[..], &[4e6, 1e6, 4e6]].concat()),
            None
        );
        assert_eq!(
            bitrate_drop(&[&steady[..], &[1e6, 1e6, 1e6]].concat()),
            Some((1e6, 4e6))
        );
        // A long GOP: every other period carries the keyframe.
        let gop = [6e6, 2e6, 6e6, 2e6, 6e6, 2e6, 6e6];
        assert_eq!(bitrate_drop(&gop), None);
        assert_eq!(bitrate_drop(&[1e6, 1e6, 1e6]), None, "nothing before");
    }

    #[test]
    fn frames_below_four_fifths_of_the_announced_rate_are_warned_of() {
        assert_eq!(low_fps_warning(29.5, 30.0), None);
        assert_eq!(low_fps_warning(24.5, 30.0), None);
        let w = low_fps_warning(20.0, 30.0).expect("warned");
        assert_eq!(w.code, "low_fps");
        assert!(
            w.message.contains("20.0 fps") && w.message.contains("30"),
            "{}",
            w.message
        );
        assert_eq!(low_fps_warning(0.0, 0.0), None, "no announced rate");
    }

    #[test]
    fn a_rung_is_behind_when_it_lags_two_segments_or_drops_frames() {
        let rung = |fps: f64, lag_ms: Option<i64>| RungStatus {
            name: "720p".into(),
            bitrate: 1_000_000,
            fps,
            lag_ms,
        };
        assert_eq!(rung_behind_warning(&rung(30.0, Some(400)), 30.0, 2.0), None);
        assert_eq!(rung_behind_warning(&rung(30.0, None), 30.0, 2.0), None);
        let lagging = rung_behind_warning(&rung(30.0, Some(4500)), 30.0, 2.0).expect("lag");
        assert_eq!(lagging.code, "rung_behind");
        assert!(lagging.message.contains("720p") && lagging.message.contains("4.5 s"));
        // 3 s is the least lag that counts, whatever the segment.
        assert_eq!(
            rung_behind_warning(&rung(30.0, Some(2500)), 30.0, 1.0),
            None
        );
        assert!(rung_behind_warning(&rung(18.0, Some(100)), 30.0, 2.0).is_some());
    }

    #[test]
    fn only_live_edges_with_more_viewers_than_capacity_are_named() {
        let edge = |id: &str, state: &str, viewers: u64| EdgeRow {
            id: id.into(),
            state: state.into(),
            viewers,
            load: control_client::types::EdgeLoad {
                capacity: 100,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            edges_over_capacity(&[edge("a", "live", 100), edge("b", "dead", 500)]),
            None
        );
        let w =
            edges_over_capacity(&[edge("a", "live", 101), edge("b", "live", 50)]).expect("over");
        assert!(
            w.message.contains("a (101 viewers, capacity 100)"),
            "{}",
            w.message
        );
        assert!(!w.message.contains("b ("), "{}", w.message);
    }
}
