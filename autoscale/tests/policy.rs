//! The policy on virtual time: HPA's rules one by one, then ramps and
//! oscillations over simulated hours.

use autoscale::{
    AutoscaleConfig, EdgeSample, EdgeState, Figures, Policy, Reason, ScheduledMinimum,
};

const CAPACITY: u32 = 10;

/// Connections only (target 0.8 of capacity 10: 8 viewers an edge), 15 s periods.
fn config() -> AutoscaleConfig {
    AutoscaleConfig {
        target_cpu: 0.0,
        target_viewers: 0.0,
        target_connections: 0.8,
        min_edges: 1,
        max_edges: 20,
        ..AutoscaleConfig::default()
    }
}

fn ready(id: &str, connections: u64) -> EdgeSample {
    EdgeSample {
        id: id.into(),
        state: EdgeState::Ready,
        figures: Some(Figures {
            connections,
            capacity: CAPACITY,
            ..Figures::default()
        }),
        ready_since_ms: 0,
    }
}

fn with_state(id: &str, state: EdgeState) -> EdgeSample {
    EdgeSample {
        id: id.into(),
        state,
        figures: None,
        ready_since_ms: 0,
    }
}

/// `n` ready edges sharing `viewers` evenly.
fn farm(n: u32, viewers: u64) -> Vec<EdgeSample> {
    (0..n)
        .map(|i| {
            ready(
                &format!("e{i}"),
                viewers / u64::from(n) + u64::from(u64::from(i) < viewers % u64::from(n)),
            )
        })
        .collect()
}

#[test]
fn desired_is_current_times_utilisation_over_target() {
    let mut p = Policy::new(config());
    // 3 edges at 16 of 8 wanted viewers each: twice the target, 6 edges.
    let d = p.evaluate(1_000_000, &farm(3, 48));
    assert_eq!((d.current, d.recommendation, d.desired), (3, 6, 6));
    assert_eq!(d.reason, Reason::ScaleUp);
    assert_eq!(d.readings.len(), 1);
    assert!((d.readings[0].utilisation - 1.6).abs() < 1e-9);
    // Exactly on target is 3, not 4 (no rounding up of 2.9999...).
    let mut p = Policy::new(config());
    assert_eq!(p.evaluate(1_000_000, &farm(3, 24)).desired, 3);
}

#[test]
fn no_action_within_the_tolerance() {
    let mut p = Policy::new(config());
    // 26 viewers on 3 edges: 1.083 of target, inside 0.1.
    let d = p.evaluate(1_000_000, &farm(3, 26));
    assert_eq!((d.desired, d.reason), (3, Reason::Steady));
    // 27: 1.125, outside: ceil(3 × 1.125) = 4.
    let mut p = Policy::new(config());
    assert_eq!(p.evaluate(1_000_000, &farm(3, 27)).desired, 4);
}

#[test]
fn growth_is_limited_to_double_or_four_more_per_period() {
    let mut p = Policy::new(config());
    // One edge with 10x its target: 10 wanted, at most max(2, 1 + 4) = 5 now.
    let d = p.evaluate(1_000_000, &farm(1, 80));
    assert_eq!(
        (d.recommendation, d.desired, d.reason),
        (10, 5, Reason::ScaleUpLimited)
    );
    // Within the same period the farm is 5 and may not grow again.
    let d = p.evaluate(1_010_000, &farm(5, 80));
    assert_eq!((d.desired, d.reason), (5, Reason::ScaleUpLimited));
    // A period later: from 5, up to max(10, 9).
    let d = p.evaluate(1_016_000, &farm(5, 80));
    assert_eq!((d.desired, d.reason), (10, Reason::ScaleUp));
}

#[test]
fn shrinking_waits_for_the_highest_recommendation_of_the_window() {
    let mut p = Policy::new(config());
    let t0 = 1_000_000;
    assert_eq!(p.evaluate(t0, &farm(4, 32)).desired, 4);
    // The audience leaves: 1 edge would do, but 4 were recommended 15 s ago.
    let d = p.evaluate(t0 + 15_000, &farm(4, 4));
    assert_eq!(
        (d.recommendation, d.desired, d.reason),
        (1, 4, Reason::ScaleDownHeld)
    );
    let mut t = t0 + 15_000;
    while t < t0 + 300_000 {
        t += 15_000;
        let d = p.evaluate(t, &farm(4, 4));
        if t < t0 + 300_000 {
            assert_eq!(d.desired, 4, "held at {}s", (t - t0) / 1000);
        } else {
            assert_eq!((d.desired, d.reason), (1, Reason::ScaleDown));
        }
    }
}

#[test]
fn edges_without_figures_count_as_the_target_when_shrinking() {
    let mut p = Policy::new(AutoscaleConfig {
        scale_down_window_seconds: 0.0,
        ..config()
    });
    // Two edges nearly idle, two silent: without the rule, 1 edge; with it
    // the silent ones are taken as busy as the target: ceil(4 × 0.625) = 3.
    let mut edges = farm(2, 4);
    edges.push(with_state("s1", EdgeState::Ready));
    edges.push(with_state("s2", EdgeState::Ready));
    let d = p.evaluate(1_000_000, &edges);
    assert_eq!((d.current, d.recommendation), (4, 3));
    assert_eq!(d.readings[0].without_figures, 2);
    // And as nothing when growing: 2 edges at 1.5x, 2 silent: 3 needed of 4.
    let mut edges = farm(2, 24);
    edges.push(with_state("s1", EdgeState::Ready));
    edges.push(with_state("s2", EdgeState::Ready));
    assert_eq!(p.evaluate(1_100_000, &edges).recommendation, 4);
}

#[test]
fn starting_edges_dampen_a_scale_up_instead_of_adding_to_it() {
    let mut p = Policy::new(config());
    // 2 ready edges at 1.5x target would ask for 3; with 2 more starting the
    // farm (4) is already enough once they take viewers.
    let mut edges = farm(2, 24);
    edges.push(with_state("new1", EdgeState::Starting));
    edges.push(with_state("new2", EdgeState::Starting));
    let d = p.evaluate(1_000_000, &edges);
    assert_eq!((d.current, d.starting, d.desired), (4, 2, 4));
    assert_ne!(d.reason, Reason::ScaleUp);
    // Draining edges are not in the farm at all.
    let mut edges = farm(2, 16);
    edges.push(with_state("old", EdgeState::Draining));
    let d = p.evaluate(1_100_000, &edges);
    assert_eq!((d.current, d.draining, d.desired), (2, 1, 2));
}

#[test]
fn a_cold_edges_cpu_does_not_scale_the_farm_again() {
    let mut p = Policy::new(AutoscaleConfig {
        target_connections: 0.0,
        target_cpu: 0.7,
        warmup_seconds: 60.0,
        ..config()
    });
    let now = 1_000_000;
    let cpu = |id: &str, cpu: f64, since: i64| EdgeSample {
        id: id.into(),
        state: EdgeState::Ready,
        figures: Some(Figures {
            cpu,
            capacity: 10,
            ..Figures::default()
        }),
        ready_since_ms: since,
    };
    // The new edge fills its cache from the origin at 100 % CPU for its
    // first seconds; the warm ones are at target.
    let edges = [
        cpu("warm1", 0.7, 0),
        cpu("warm2", 0.72, 0),
        cpu("cold", 1.0, now - 5_000),
    ];
    let d = p.evaluate(now, &edges);
    assert_eq!((d.desired, d.reason), (3, Reason::Steady), "{d:?}");
    assert_eq!(d.readings[0].without_figures, 1);
    // Once warm its figures count.
    let edges = [
        cpu("warm1", 0.7, 0),
        cpu("warm2", 0.72, 0),
        cpu("cold", 1.0, now - 61_000),
    ];
    assert_eq!(p.evaluate(now + 15_000, &edges).desired, 4);
}

#[test]
fn the_largest_recommendation_over_metrics_wins() {
    let mut p = Policy::new(AutoscaleConfig {
        edge_egress_bps: 1_000_000_000,
        target_egress: 0.5,
        target_cpu: 0.7,
        ..config()
    });
    let edges: Vec<EdgeSample> = (0..2)
        .map(|i| EdgeSample {
            id: format!("e{i}"),
            state: EdgeState::Ready,
            // Egress at 2x its target per edge (a few viewers of 4K), few
            // connections, CPU at target.
            figures: Some(Figures {
                egress_bps: 10_000_000_000,
                connections: 2,
                viewers: None,
                capacity: 10,
                cpu: 0.7,
            }),
            ready_since_ms: 0,
        })
        .collect();
    let d = p.evaluate(1_000_000, &edges);
    let by_metric: Vec<(&str, u32)> = d
        .readings
        .iter()
        .map(|r| (r.metric.name(), r.recommendation))
        .collect();
    assert_eq!(by_metric, [("egress", 4), ("connections", 1), ("cpu", 2)]);
    assert_eq!(d.desired, 4);
}

#[test]
fn bounds_and_the_schedule_hold_the_farm() {
    let mut p = Policy::new(AutoscaleConfig {
        min_edges: 2,
        max_edges: 6,
        scale_down_window_seconds: 0.0,
        schedule: vec![ScheduledMinimum {
            from: "2026-12-24T18:00:00Z".into(),
            until: "2026-12-24T21:00:00Z".into(),
            min_edges: 5,
        }],
        ..config()
    });
    let before = 1_798_128_000_000; // 2026-12-24T17:20:00Z
    let during = 1_798_135_200_000; // 2026-12-24T19:20:00Z
    let d = p.evaluate(before, &farm(2, 1));
    assert_eq!((d.desired, d.reason), (2, Reason::Minimum));
    let d = p.evaluate(during, &farm(2, 1));
    assert_eq!((d.desired, d.reason), (5, Reason::ScheduledMinimum));
    let d = p.evaluate(during + 60_000, &farm(5, 400));
    assert_eq!((d.desired, d.reason), (6, Reason::Maximum));
    let d = p.evaluate(during + 4 * 3_600_000, &farm(5, 1));
    assert_eq!(d.desired, 2, "the event is over");
}

#[test]
fn without_figures_the_farm_is_kept() {
    let mut p = Policy::new(config());
    let edges = [
        with_state("a", EdgeState::Ready),
        with_state("b", EdgeState::Starting),
    ];
    let d = p.evaluate(1_000_000, &edges);
    assert_eq!((d.current, d.desired, d.reason), (2, 2, Reason::NoFigures));
    assert!(d.readings.is_empty());
}

/// Runs the policy against a simulated farm that follows its decisions
/// (a new edge reports one period later) under `audience(t)`; returns the
/// farm's size per period.
fn simulate(config: AutoscaleConfig, periods: usize, audience: impl Fn(usize) -> u64) -> Vec<u32> {
    let mut p = Policy::new(config);
    let (mut ready, mut starting) = (1u32, 0u32);
    let mut sizes = Vec::new();
    for i in 0..periods {
        let now = 1_000_000 + i as i64 * 15_000;
        ready += starting;
        starting = 0;
        let edges = farm(ready, audience(i));
        let d = p.evaluate(now, &edges);
        if d.desired > ready {
            starting = d.desired - ready;
        } else {
            ready = d.desired;
        }
        sizes.push(d.desired);
    }
    sizes
}

fn direction_changes(sizes: &[u32]) -> usize {
    let steps: Vec<i64> = sizes
        .windows(2)
        .map(|w| i64::from(w[1]) - i64::from(w[0]))
        .filter(|d| *d != 0)
        .map(i64::signum)
        .collect();
    steps.windows(2).filter(|w| w[0] != w[1]).count()
}

#[test]
fn an_audience_oscillating_around_the_target_does_not_make_the_farm_oscillate() {
    // 4 edges' worth of viewers (32) ± 25 %, a swing every minute, for two hours.
    let sizes = simulate(config(), 480, |i| if (i / 4) % 2 == 0 { 40 } else { 24 });
    let settled = &sizes[20..];
    let (lo, hi) = (settled.iter().min().copied(), settled.iter().max().copied());
    assert!(direction_changes(settled) == 0, "{sizes:?}");
    assert_eq!(
        (lo, hi),
        (Some(5), Some(5)),
        "sized for the peaks: {sizes:?}"
    );
}

#[test]
fn a_ramp_grows_within_the_limits_and_shrinks_after_the_window() {
    // 0 to 80 viewers (10 edges) over 10 periods, 20 periods flat, then to 4.
    let audience = |i: usize| match i {
        0..10 => 8 * i as u64,
        10..30 => 80,
        _ => 4,
    };
    let sizes = simulate(config(), 80, audience);
    for w in sizes.windows(2) {
        let limit = (w[0] * 2).max(w[0] + 4);
        assert!(w[1] <= limit, "grew past the rate limit: {sizes:?}");
    }
    assert_eq!(sizes[29], 10, "{sizes:?}");
    // The audience left at period 30; the window is 300 s = 20 periods.
    assert!(sizes[30..49].iter().all(|s| *s == 10), "{sizes:?}");
    assert_eq!(*sizes.last().unwrap_or(&0), 1, "{sizes:?}");
    assert_eq!(direction_changes(&sizes), 1, "{sizes:?}");
}

#[test]
fn viewers_by_the_directors_count_size_the_farm_once_reported() {
    let mut p = Policy::new(AutoscaleConfig {
        target_viewers: 0.8,
        target_connections: 0.0,
        ..config()
    });
    let with_viewers = |id: &str, viewers: Option<u64>| EdgeSample {
        id: id.into(),
        state: EdgeState::Ready,
        // Connections say nothing here (idle keep-alives, directors' fetches).
        figures: Some(Figures {
            connections: 40,
            viewers,
            capacity: CAPACITY,
            ..Figures::default()
        }),
        ready_since_ms: 0,
    };
    // 2 edges with 12 viewers each: 1.5x the 8 wanted, 3 edges.
    let d = p.evaluate(
        1_000_000,
        &[with_viewers("a", Some(12)), with_viewers("b", Some(12))],
    );
    assert_eq!((d.readings[0].metric.name(), d.desired), ("viewers", 3));
    // No director reporting: nothing to go on.
    let d = p.evaluate(
        1_100_000,
        &[with_viewers("a", None), with_viewers("b", None)],
    );
    assert_eq!(d.reason, Reason::NoFigures);
}
