//! What streams and nodes did over the last hours, in memory: a point every
//! sampling period for the last hour, then one a minute (older points folded
//! into their mean) for a day. Bounded in series and points; Prometheus
//! stays the long-term store. Operators read it through the API and the web
//! UI's charts.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;
use utoipa::ToSchema;

/// Fine points kept per series (an hour at the default 5 s period).
pub const FINE_POINTS: usize = 720;
/// Fine points folded into one coarse point (a minute at 5 s).
pub const FOLD: usize = 12;
/// Coarse points kept per series (a day at one a minute).
pub const COARSE_POINTS: usize = 1440;
/// Series kept per kind (streams, nodes); a new series past it replaces
/// the one updated longest ago.
pub const MAX_SERIES: usize = 2000;

/// A point of a series: when, and how several points fold into one.
pub trait Sample: Copy {
    /// Unix milliseconds.
    fn t_ms(&self) -> i64;
    /// One point standing for `points` (not empty): their mean, at the
    /// last one's time.
    fn mean(points: &[Self]) -> Self;
}

/// A stream at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, ToSchema)]
pub struct StreamPoint {
    /// Unix milliseconds.
    pub t_ms: i64,
    /// Ingest bit rate over the last period, bits/s (0 when not live here).
    pub bitrate: f64,
    /// Video frames per second over the last period.
    pub fps: f64,
    /// Seconds between the source's keyframes.
    pub keyframe_interval_s: f64,
    /// HLS viewers (directors' count).
    pub hls_viewers: f64,
    /// RTMP players (origins' and edges' count).
    pub rtmp_players: f64,
    /// Bits per second edges sent for the stream.
    pub egress_bps: f64,
    /// HLS requests per second edges answered for it.
    pub requests_per_s: f64,
}

/// A node at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, ToSchema)]
pub struct NodePoint {
    /// Unix milliseconds.
    pub t_ms: i64,
    /// CPU load per core.
    pub cpu: f64,
    /// Open HTTP connections (edges).
    pub connections: f64,
    /// Bits per second sent to viewers (edges).
    pub egress_bps: f64,
    /// Viewers the directors place on it (edges).
    pub viewers: f64,
    /// Share of requests answered from the cache (edges).
    pub hit_ratio: f64,
}

fn mean_of<P>(points: &[P], f: impl Fn(&P) -> f64) -> f64 {
    points.iter().map(f).sum::<f64>() / points.len().max(1) as f64
}

impl Sample for StreamPoint {
    fn t_ms(&self) -> i64 {
        self.t_ms
    }
    fn mean(p: &[Self]) -> Self {
        Self {
            t_ms: p.last().map_or(0, |p| p.t_ms),
            bitrate: mean_of(p, |p| p.bitrate),
            fps: mean_of(p, |p| p.fps),
            keyframe_interval_s: mean_of(p, |p| p.keyframe_interval_s),
            hls_viewers: mean_of(p, |p| p.hls_viewers),
            rtmp_players: mean_of(p, |p| p.rtmp_players),
            egress_bps: mean_of(p, |p| p.egress_bps),
            requests_per_s: mean_of(p, |p| p.requests_per_s),
        }
    }
}

impl Sample for NodePoint {
    fn t_ms(&self) -> i64 {
        self.t_ms
    }
    fn mean(p: &[Self]) -> Self {
        Self {
            t_ms: p.last().map_or(0, |p| p.t_ms),
            cpu: mean_of(p, |p| p.cpu),
            connections: mean_of(p, |p| p.connections),
            egress_bps: mean_of(p, |p| p.egress_bps),
            viewers: mean_of(p, |p| p.viewers),
            hit_ratio: mean_of(p, |p| p.hit_ratio),
        }
    }
}

/// One series: recent points as they came, older ones folded.
#[derive(Debug)]
pub struct Timeline<P> {
    fine: VecDeque<P>,
    folding: Vec<P>,
    coarse: VecDeque<P>,
}

impl<P> Default for Timeline<P> {
    fn default() -> Self {
        Self {
            fine: VecDeque::new(),
            folding: Vec::new(),
            coarse: VecDeque::new(),
        }
    }
}

impl<P: Sample> Timeline<P> {
    /// Adds the newest point.
    pub fn push(&mut self, point: P) {
        self.fine.push_back(point);
        while self.fine.len() > FINE_POINTS {
            let Some(old) = self.fine.pop_front() else {
                break;
            };
            self.folding.push(old);
            if self.folding.len() >= FOLD {
                self.coarse.push_back(P::mean(&self.folding));
                self.folding.clear();
                if self.coarse.len() > COARSE_POINTS {
                    self.coarse.pop_front();
                }
            }
        }
    }

    /// Points at or after `since_ms`, oldest first (folded ones first).
    pub fn since(&self, since_ms: i64) -> Vec<P> {
        let folding = (!self.folding.is_empty()).then(|| P::mean(&self.folding));
        self.coarse
            .iter()
            .copied()
            .chain(folding)
            .chain(self.fine.iter().copied())
            .filter(|p| p.t_ms() >= since_ms)
            .collect()
    }

    /// Points held.
    pub fn len(&self) -> usize {
        self.fine.len() + self.folding.len() + self.coarse.len()
    }

    /// Whether it holds no point.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn last_ms(&self) -> i64 {
        self.fine.back().map_or(0, Sample::t_ms)
    }
}

/// Series by name, at most [`MAX_SERIES`].
#[derive(Debug)]
pub struct Book<P> {
    series: Mutex<HashMap<String, Timeline<P>>>,
}

impl<P> Default for Book<P> {
    fn default() -> Self {
        Self {
            series: Mutex::new(HashMap::new()),
        }
    }
}

impl<P: Sample> Book<P> {
    /// Adds `point` to `name`'s series.
    pub fn push(&self, name: &str, point: P) {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        if !series.contains_key(name)
            && series.len() >= MAX_SERIES
            && let Some(stalest) = series
                .iter()
                .min_by_key(|(_, t)| t.last_ms())
                .map(|(k, _)| k.clone())
        {
            series.remove(&stalest);
        }
        series.entry(name.to_owned()).or_default().push(point);
    }

    /// `name`'s points at or after `since_ms`; `None` if it has no series.
    pub fn since(&self, name: &str, since_ms: i64) -> Option<Vec<P>> {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series.get(name).map(|t| t.since(since_ms))
    }

    /// Series held.
    pub fn len(&self) -> usize {
        self.series.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no series is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The history of every stream and node.
#[derive(Debug, Default)]
pub struct History {
    /// Per stream name.
    pub streams: Book<StreamPoint>,
    /// Per node id.
    pub nodes: Book<NodePoint>,
    /// Each counted thing's byte and frame (or request) counters at the
    /// last sample, and the rates they gave: rates over the period rather
    /// than since the publisher started.
    last: Mutex<HashMap<String, Counted>>,
}

/// Counters at a sample and the rates since the one before.
#[derive(Clone, Copy, Debug)]
struct Counted {
    t_ms: i64,
    bytes: u64,
    frames: u64,
    rates: Option<(f64, f64)>,
}

impl History {
    /// Rates of `key` (a stream, a rung `stream/rung`, a stream's edge
    /// traffic) from its counters now (`bytes`, `frames`) and at the
    /// previous sample: (bits/s, frames/s); zeros on its first sample or
    /// after the counters went back (a new publisher, an edge gone).
    pub fn rates(&self, key: &str, now_ms: i64, bytes: u64, frames: u64) -> (f64, f64) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.len() > 4 * MAX_SERIES {
            last.clear();
        }
        let previous = last.get(key).copied();
        let rates = match previous {
            Some(p) if now_ms > p.t_ms && bytes >= p.bytes && frames >= p.frames => {
                let secs = (now_ms - p.t_ms) as f64 / 1000.0;
                Some((
                    (bytes - p.bytes) as f64 * 8.0 / secs,
                    (frames - p.frames) as f64 / secs,
                ))
            }
            _ => None,
        };
        last.insert(
            key.to_owned(),
            Counted {
                t_ms: now_ms,
                bytes,
                frames,
                rates,
            },
        );
        rates.unwrap_or((0.0, 0.0))
    }

    /// The rates [`History::rates`] last gave for `key`, if it had a
    /// sample before that one.
    pub fn recent(&self, key: &str) -> Option<(f64, f64)> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.get(key).and_then(|c| c.rates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t_ms: i64, viewers: f64) -> StreamPoint {
        StreamPoint {
            t_ms,
            hls_viewers: viewers,
            ..StreamPoint::default()
        }
    }

    #[test]
    fn an_hour_is_kept_as_it_came_and_older_points_fold_into_minutes() {
        let mut t = Timeline::default();
        // Two hours at 5 s: viewers = the minute number.
        for i in 0..1440i64 {
            t.push(at(i * 5000, (i / 12) as f64));
        }
        let all = t.since(0);
        // 720 fine, 60 folded minutes.
        assert_eq!(all.len(), 720 + 60);
        assert_eq!(all[0].hls_viewers, 0.0);
        assert_eq!(all[59].hls_viewers, 59.0);
        assert_eq!(all[60].t_ms, 720 * 5000);
        assert!(all.windows(2).all(|w| w[0].t_ms < w[1].t_ms));
        // Bounded whatever the run time.
        for i in 1440..(1440 + 12 * (COARSE_POINTS as i64 + 100)) {
            t.push(at(i * 5000, 1.0));
        }
        assert_eq!(t.len(), FINE_POINTS + COARSE_POINTS);
        assert_eq!(t.since(i64::MAX).len(), 0);
    }

    #[test]
    fn series_are_bounded_and_the_stalest_goes_first() {
        let book = Book::default();
        for i in 0..MAX_SERIES as i64 {
            book.push(&format!("s{i}"), at(1000 + i, 1.0));
        }
        book.push("s0", at(10_000_000, 1.0));
        book.push("new", at(10_000_001, 1.0));
        assert_eq!(book.len(), MAX_SERIES);
        assert!(book.since("s1", 0).is_none(), "the stalest series stays");
        assert!(book.since("s0", 0).is_some());
        assert_eq!(book.since("new", 0).map(|p| p.len()), Some(1));
    }

    #[test]
    fn rates_are_over_the_period_and_restart_with_a_new_publisher() {
        let h = History::default();
        assert_eq!(h.rates("s", 0, 0, 0), (0.0, 0.0));
        assert_eq!(h.recent("s"), None, "no rate from one sample");
        assert_eq!(h.rates("s", 5000, 5_000_000, 150), (8_000_000.0, 30.0));
        assert_eq!(h.recent("s"), Some((8_000_000.0, 30.0)));
        assert_eq!(h.rates("s", 10_000, 100, 3), (0.0, 0.0), "counters reset");
        assert_eq!(h.recent("s"), None);
    }
}
