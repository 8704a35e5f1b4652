//! How many edges the farm should have: Kubernetes' HorizontalPodAutoscaler
//! rules (its replica calculation, tolerance, stabilisation windows and rate
//! limits, its treatment of pods without figures or not yet ready), on
//! virtual time so every rule is tested without waiting for it.

use std::collections::VecDeque;

use serde::Serialize;

use crate::config::AutoscaleConfig;

/// A figure the farm is scaled on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Bits per second sent to viewers, against what the edge can send.
    Egress,
    /// Viewers the directors placed on it, against the viewers it is sized
    /// for: what the director fills edges by, so what the farm is sized by.
    Viewers,
    /// Open connections, against the viewers the edge is sized for.
    Connections,
    /// CPU load per core.
    Cpu,
}

impl Metric {
    /// Its name in the API and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Egress => "egress",
            Metric::Viewers => "viewers",
            Metric::Connections => "connections",
            Metric::Cpu => "cpu",
        }
    }
}

/// Where an edge is in its life, as the autoscaler counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeState {
    /// Reporting and taking viewers.
    Ready,
    /// Asked for, not reporting yet (HPA: a pod not ready).
    Starting,
    /// Leaving: takes no new viewers, not counted in the farm.
    Draining,
}

/// An edge's last report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Bits per second sent to viewers.
    pub egress_bps: u64,
    /// Open connections (players' idle keep-alives and directors' playlist
    /// fetches included).
    pub connections: u64,
    /// Viewers the directors count on it; `None` when no director reports.
    pub viewers: Option<u64>,
    /// Relative capacity: the viewers it is sized for.
    pub capacity: u32,
    /// CPU load per core.
    pub cpu: f64,
}

/// One edge as the policy sees it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EdgeSample {
    /// Node id.
    pub id: String,
    /// Where it is in its life.
    pub state: EdgeState,
    /// Its last report; `None` when it has not reported any.
    pub figures: Option<Figures>,
    /// Unix ms since it reports: CPU figures of a younger edge than the
    /// warm-up are not counted.
    pub ready_since_ms: i64,
}

/// Why the farm is (or stays) the size it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Every metric within tolerance of its target.
    Steady,
    /// The metrics ask for more edges.
    ScaleUp,
    /// More were asked for than one period's growth allows.
    ScaleUpLimited,
    /// A rise not yet held for the scale-up window.
    ScaleUpHeld,
    /// The metrics ask for fewer edges.
    ScaleDown,
    /// Fewer were asked for, but a higher recommendation within the
    /// scale-down window holds the farm.
    ScaleDownHeld,
    /// Fewer were asked for than one period's shrinking allows.
    ScaleDownLimited,
    /// Held at `min_edges`.
    Minimum,
    /// Held at a scheduled minimum.
    ScheduledMinimum,
    /// Held at `max_edges`.
    Maximum,
    /// No edge reports figures: nothing to go on, the farm is kept.
    NoFigures,
}

impl Reason {
    /// Its name in the API and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Steady => "steady",
            Reason::ScaleUp => "scale_up",
            Reason::ScaleUpLimited => "scale_up_limited",
            Reason::ScaleUpHeld => "scale_up_held",
            Reason::ScaleDown => "scale_down",
            Reason::ScaleDownHeld => "scale_down_held",
            Reason::ScaleDownLimited => "scale_down_limited",
            Reason::Minimum => "minimum",
            Reason::ScheduledMinimum => "scheduled_minimum",
            Reason::Maximum => "maximum",
            Reason::NoFigures => "no_figures",
        }
    }
}

/// One metric's part in a decision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reading {
    /// The metric.
    pub metric: Metric,
    /// Mean utilisation of the ready edges with figures (1.0 = at capacity).
    pub utilisation: f64,
    /// Its target.
    pub target: f64,
    /// Edges it asks for.
    pub recommendation: u32,
    /// Edges whose figures were missing or not counted (cold, starting).
    pub without_figures: u32,
}

/// One evaluation: what was seen, what was decided, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    /// Unix ms.
    pub at_ms: i64,
    /// Edges in the farm (ready and starting; draining ones are leaving).
    pub current: u32,
    /// Of which reporting.
    pub ready: u32,
    /// Of which asked for and not reporting yet.
    pub starting: u32,
    /// Edges draining (not counted in `current`).
    pub draining: u32,
    /// What the metrics ask for (the largest over metrics).
    pub recommendation: u32,
    /// What the farm should be after windows, limits and bounds.
    pub desired: u32,
    /// Per metric.
    pub readings: Vec<Reading>,
    /// The rule that set `desired`.
    pub reason: Reason,
}

/// The policy and what it remembers: recent recommendations (for the
/// windows) and recent changes (for the rate limits).
#[derive(Debug)]
pub struct Policy {
    config: AutoscaleConfig,
    schedule: Vec<(i64, i64, u32)>,
    recommendations: VecDeque<(i64, u32)>,
    changes: VecDeque<(i64, i64)>,
}

impl Policy {
    /// A policy with `config` (validated: an invalid schedule entry is
    /// skipped here, refused by [`AutoscaleConfig::validate`]).
    pub fn new(config: AutoscaleConfig) -> Self {
        let schedule = config
            .schedule
            .iter()
            .filter_map(|s| s.window().ok().map(|(f, u)| (f, u, s.min_edges)))
            .collect();
        Self {
            config,
            schedule,
            recommendations: VecDeque::new(),
            changes: VecDeque::new(),
        }
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &AutoscaleConfig {
        &self.config
    }

    /// Decides the farm's size at `now_ms` from `edges`. The caller acts on
    /// `desired` (and should, or tell [`Policy::record_change`] what it did
    /// instead: the rate limits count changes made).
    pub fn evaluate(&mut self, now_ms: i64, edges: &[EdgeSample]) -> Decision {
        let ready = count(edges, EdgeState::Ready);
        let starting = count(edges, EdgeState::Starting);
        let draining = count(edges, EdgeState::Draining);
        let current = ready + starting;
        let warm_after = now_ms - secs_ms(self.config.warmup_seconds);
        let readings: Vec<Reading> = self
            .config
            .targets()
            .into_iter()
            .filter_map(|(metric, target)| self.reading(metric, target, edges, current, warm_after))
            .collect();
        let mut decision = Decision {
            at_ms: now_ms,
            current,
            ready,
            starting,
            draining,
            recommendation: current,
            desired: current,
            readings,
            reason: Reason::Steady,
        };
        let Some(recommendation) = decision.readings.iter().map(|r| r.recommendation).max() else {
            // HPA keeps the scale when no metric can be computed; bounds still hold.
            decision.reason = Reason::NoFigures;
            self.bound(now_ms, &mut decision);
            self.remember(now_ms, &decision);
            return decision;
        };
        decision.recommendation = recommendation;
        self.stabilise(now_ms, &mut decision);
        self.limit_rate(now_ms, &mut decision);
        self.bound(now_ms, &mut decision);
        self.remember(now_ms, &decision);
        decision
    }

    /// Notes a change the caller made (`delta` edges, + or -) at `now_ms`,
    /// for the rate limits. [`Policy::evaluate`] notes its own decisions;
    /// this is for changes made otherwise (an operator's drain).
    pub fn record_change(&mut self, now_ms: i64, delta: i64) {
        if delta != 0 {
            self.changes.push_back((now_ms, delta));
        }
    }

    /// HPA's replica calculation for one metric.
    fn reading(
        &self,
        metric: Metric,
        target: f64,
        edges: &[EdgeSample],
        current: u32,
        warm_after: i64,
    ) -> Option<Reading> {
        let mut measured = Vec::new();
        let (mut missing, mut unready) = (0u32, 0u32);
        for e in edges {
            match e.state {
                EdgeState::Draining => {}
                EdgeState::Starting => unready += 1,
                EdgeState::Ready => {
                    let cold = metric == Metric::Cpu && e.ready_since_ms > warm_after;
                    match (e.figures.and_then(|f| self.utilisation(metric, &f)), cold) {
                        (_, true) => unready += 1,
                        (None, false) => missing += 1,
                        (Some(u), false) => measured.push(u),
                    }
                }
            }
        }
        if measured.is_empty() {
            return None;
        }
        let ready = measured.len() as f64;
        let sum: f64 = measured.iter().sum();
        let ratio = sum / (target * ready);
        let tolerance = self.config.tolerance;
        let mut reading = Reading {
            metric,
            utilisation: sum / ready,
            target,
            recommendation: current,
            without_figures: missing + unready,
        };
        let scale_up_with_unready = unready > 0 && ratio > 1.0;
        if !scale_up_with_unready && missing == 0 {
            if (1.0 - ratio).abs() > tolerance {
                reading.recommendation = ceil_u32(ratio * ready);
            }
            return Some(reading);
        }
        // Missing figures count as the target when scaling down and as
        // nothing when scaling up; edges not ready yet as nothing when
        // scaling up (so a fresh edge dampens a scale-up, never adds one).
        let mut total = sum;
        let mut counted = ready;
        if missing > 0 {
            if ratio < 1.0 {
                total += f64::from(missing) * target;
            }
            counted += f64::from(missing);
        }
        if scale_up_with_unready {
            counted += f64::from(unready);
        }
        let new_ratio = total / (target * counted);
        let reversed = (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0);
        if (1.0 - new_ratio).abs() <= tolerance || reversed {
            return Some(reading);
        }
        let new = ceil_u32(new_ratio * counted);
        if !((new_ratio < 1.0 && new > current) || (new_ratio > 1.0 && new < current)) {
            reading.recommendation = new;
        }
        Some(reading)
    }

    /// An edge's utilisation by `metric` (1.0 = at its capacity), if its
    /// figures hold that metric: what the policy averages, and what an
    /// operator's own HPA or KEDA would scale on.
    pub fn utilisation(&self, metric: Metric, f: &Figures) -> Option<f64> {
        let capacity = f64::from(f.capacity.max(1));
        Some(match metric {
            Metric::Egress => {
                f.egress_bps as f64 / (self.config.edge_egress_bps.max(1) as f64 * capacity)
            }
            Metric::Viewers => f.viewers? as f64 / capacity,
            Metric::Connections => f.connections as f64 / capacity,
            Metric::Cpu => f.cpu,
        })
    }

    /// The windows: a rise must hold for the scale-up window (its lowest
    /// recommendation counts), a fall for the scale-down window (its
    /// highest counts).
    fn stabilise(&mut self, now_ms: i64, d: &mut Decision) {
        let up_from = now_ms - secs_ms(self.config.scale_up_window_seconds);
        let down_from = now_ms - secs_ms(self.config.scale_down_window_seconds);
        let (mut up, mut down) = (d.recommendation, d.recommendation);
        for &(at, r) in &self.recommendations {
            if at > up_from {
                up = up.min(r);
            }
            if at > down_from {
                down = down.max(r);
            }
        }
        d.desired = d.current;
        d.reason = Reason::Steady;
        if d.desired < up {
            d.desired = up;
            d.reason = Reason::ScaleUp;
        } else if d.recommendation > d.current {
            d.reason = Reason::ScaleUpHeld;
        }
        if d.desired > down {
            d.desired = down;
            d.reason = Reason::ScaleDown;
        } else if d.recommendation < d.current && down >= d.current {
            d.reason = Reason::ScaleDownHeld;
        }
    }

    /// HPA's rate limits, against the farm's size at the start of the period.
    fn limit_rate(&mut self, now_ms: i64, d: &mut Decision) {
        let period_from = now_ms - secs_ms(self.config.period_seconds);
        while self.changes.front().is_some_and(|c| c.0 <= period_from) {
            self.changes.pop_front();
        }
        let added: i64 = self.changes.iter().map(|c| c.1).filter(|c| *c > 0).sum();
        let removed: i64 = -self
            .changes
            .iter()
            .map(|c| c.1)
            .filter(|c| *c < 0)
            .sum::<i64>();
        let current = i64::from(d.current);
        let desired = i64::from(d.desired);
        if desired > current {
            let start = (current - added).max(0);
            let by_share = start + start * i64::from(self.config.scale_up_percent) / 100;
            let by_count = start + i64::from(self.config.scale_up_edges);
            let limit = by_share.max(by_count).max(current);
            if desired > limit {
                d.desired = u32::try_from(limit).unwrap_or(u32::MAX);
                d.reason = Reason::ScaleUpLimited;
            }
        } else if desired < current {
            let start = current + removed;
            let share = i64::from(self.config.scale_down_percent.min(100));
            let mut limit = start - start * share / 100;
            if self.config.scale_down_edges > 0 {
                limit = limit.max(start - i64::from(self.config.scale_down_edges));
            }
            let limit = limit.min(current);
            if desired < limit {
                d.desired = u32::try_from(limit).unwrap_or(0);
                d.reason = Reason::ScaleDownLimited;
            }
        }
    }

    /// `min_edges`, the scheduled minimum in force, `max_edges`.
    fn bound(&self, now_ms: i64, d: &mut Decision) {
        let scheduled = self
            .schedule
            .iter()
            .filter(|(from, until, _)| (*from..*until).contains(&now_ms))
            .map(|s| s.2)
            .max()
            .unwrap_or(0);
        let max = self.config.max_edges;
        if d.desired < self.config.min_edges.min(max) {
            d.desired = self.config.min_edges.min(max);
            d.reason = Reason::Minimum;
        }
        if d.desired < scheduled.min(max) {
            d.desired = scheduled.min(max);
            d.reason = Reason::ScheduledMinimum;
        }
        if d.desired > max {
            d.desired = max;
            d.reason = Reason::Maximum;
        }
    }

    fn remember(&mut self, now_ms: i64, d: &Decision) {
        let keep_from = now_ms
            - secs_ms(
                self.config
                    .scale_down_window_seconds
                    .max(self.config.scale_up_window_seconds),
            );
        while self
            .recommendations
            .front()
            .is_some_and(|r| r.0 <= keep_from)
        {
            self.recommendations.pop_front();
        }
        if d.reason != Reason::NoFigures {
            self.recommendations.push_back((now_ms, d.recommendation));
        }
        self.record_change(now_ms, i64::from(d.desired) - i64::from(d.current));
    }
}

fn count(edges: &[EdgeSample], state: EdgeState) -> u32 {
    u32::try_from(edges.iter().filter(|e| e.state == state).count()).unwrap_or(u32::MAX)
}

fn secs_ms(s: f64) -> i64 {
    (s * 1000.0) as i64
}

fn ceil_u32(x: f64) -> u32 {
    // A hair below an integer is that integer: 3 × 0.8 / 0.8 must not be 4.
    let x = (x - 1e-9).ceil();
    if x <= 0.0 {
        0
    } else {
        x.min(f64::from(u32::MAX)) as u32
    }
}
