//! The pull's failover decisions, pure and on virtual time: given when each
//! feed was last heard, whether the standby could take over, whether the
//! edge's stream still has a publisher and players, decide what to let go.
//! The pull (`pull.rs`) does the IO and acts on the answer; this is what its
//! unit tests and fuzz target drive with made-up clocks.

use std::time::{Duration, Instant};

/// The timings an operator can tune (`PullConfig`'s policy part).
#[derive(Clone, Copy, Debug)]
pub struct Timings {
    /// The current origin silent this long, while the standby is not, is a
    /// failover.
    pub stall: Duration,
    /// The current origin silent this long with no live standby is given
    /// up on; a standby silent this long is dropped.
    pub dead: Duration,
    /// With no source (or no player) for this long, the edge's stream ends
    /// (the pull stops).
    pub linger: Duration,
}

/// A feed as the decision sees it.
#[derive(Clone, Copy, Debug)]
pub struct FeedState {
    /// When a frame last came from it.
    pub heard: Instant,
    /// It has frames buffered to take over with (a standby only).
    pub can_take_over: bool,
}

/// What the pull knows at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Facts {
    /// Now.
    pub now: Instant,
    /// The origin being forwarded, if any.
    pub current: Option<FeedState>,
    /// The warm standby, if any.
    pub standby: Option<FeedState>,
    /// The edge's hub stream still has a publisher.
    pub publishing: bool,
    /// Since when the pull has had no current origin.
    pub lost_since: Option<Instant>,
    /// Players on the edge's stream now.
    pub players: usize,
    /// Since when it has had none.
    pub idle_since: Option<Instant>,
}

/// Why the current origin is let go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoseWhy {
    /// Nothing heard for [`Timings::dead`].
    Dead,
    /// Quiet for [`Timings::stall`] while the standby was not.
    Stalled,
}

impl LoseWhy {
    /// For the log.
    pub fn as_str(self) -> &'static str {
        match self {
            LoseWhy::Dead => "nothing heard from it",
            LoseWhy::Stalled => "it went quiet while the standby did not",
        }
    }
}

/// What to do now; everything false/`None` is "carry on".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Let the current origin go (and fail over if the standby can).
    pub lose_current: Option<LoseWhy>,
    /// Drop the standby: it sends nothing.
    pub drop_standby: bool,
    /// End the edge's stream: no origin has had it for a while.
    pub end_stream: bool,
    /// Stop the pull: nobody has watched for a while.
    pub stop: bool,
    /// The new `idle_since` to keep.
    pub idle_since: Option<Instant>,
}

/// The decision for `f` under `t`.
pub fn decide(f: &Facts, t: &Timings) -> Decision {
    let now = f.now;
    let quiet = |s: &FeedState| now.saturating_duration_since(s.heard);
    let mut d = Decision::default();
    let standby_alive = f
        .standby
        .as_ref()
        .is_some_and(|s| s.can_take_over && quiet(s) < t.stall);
    if let Some(c) = &f.current {
        if quiet(c) >= t.dead {
            d.lose_current = Some(LoseWhy::Dead);
        } else if quiet(c) >= t.stall && standby_alive {
            d.lose_current = Some(LoseWhy::Stalled);
        }
    }
    // A standby that sends nothing (hung, or a foreign origin that started a
    // play for a stream it does not have) is let go, so another can be
    // looked for.
    d.drop_standby = f.standby.as_ref().is_some_and(|s| quiet(s) >= t.dead);
    d.end_stream = f.current.is_none()
        && f.publishing
        && f.lost_since
            .is_some_and(|l| now.saturating_duration_since(l) >= t.linger);
    if f.players == 0 {
        let since = f.idle_since.unwrap_or(now);
        d.idle_since = Some(since);
        d.stop = now.saturating_duration_since(since) >= t.linger;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timings = Timings {
        stall: Duration::from_millis(200),
        dead: Duration::from_secs(1),
        linger: Duration::from_secs(5),
    };

    fn ms(base: Instant, n: u64) -> Instant {
        base + Duration::from_millis(n)
    }

    fn facts(now: Instant) -> Facts {
        Facts {
            now,
            current: None,
            standby: None,
            publishing: true,
            lost_since: None,
            players: 1,
            idle_since: None,
        }
    }

    fn feed(heard: Instant, can_take_over: bool) -> Option<FeedState> {
        Some(FeedState {
            heard,
            can_take_over,
        })
    }

    #[test]
    fn a_quiet_origin_is_left_for_a_live_standby_after_the_stall_time() {
        let t0 = Instant::now();
        let mut f = facts(ms(t0, 199));
        f.current = feed(t0, false);
        f.standby = feed(ms(t0, 190), true);
        assert_eq!(decide(&f, &T).lose_current, None, "not yet");
        f.now = ms(t0, 200);
        assert_eq!(decide(&f, &T).lose_current, Some(LoseWhy::Stalled));
        // A standby with nothing buffered, or quiet itself, is no reason.
        f.standby = feed(ms(t0, 190), false);
        assert_eq!(decide(&f, &T).lose_current, None);
        f.standby = feed(t0, true);
        assert_eq!(decide(&f, &T).lose_current, None);
    }

    #[test]
    fn without_a_standby_the_origin_is_given_the_dead_time() {
        let t0 = Instant::now();
        let mut f = facts(ms(t0, 999));
        f.current = feed(t0, false);
        assert_eq!(decide(&f, &T).lose_current, None);
        f.now = ms(t0, 1000);
        assert_eq!(decide(&f, &T).lose_current, Some(LoseWhy::Dead));
    }

    #[test]
    fn a_silent_standby_is_dropped_and_a_sourceless_stream_ends_after_the_linger() {
        let t0 = Instant::now();
        let mut f = facts(ms(t0, 1000));
        f.standby = feed(t0, true);
        assert!(decide(&f, &T).drop_standby);
        f.standby = None;
        f.lost_since = Some(t0);
        assert!(!decide(&f, &T).end_stream);
        f.now = ms(t0, 5000);
        assert!(decide(&f, &T).end_stream);
        f.publishing = false;
        assert!(!decide(&f, &T).end_stream, "already ended");
    }

    #[test]
    fn a_pull_stops_only_after_the_linger_with_no_player() {
        let t0 = Instant::now();
        let mut f = facts(t0);
        f.players = 0;
        let d = decide(&f, &T);
        assert_eq!((d.stop, d.idle_since), (false, Some(t0)));
        f.now = ms(t0, 4999);
        f.idle_since = d.idle_since;
        assert!(!decide(&f, &T).stop);
        f.now = ms(t0, 5000);
        assert!(decide(&f, &T).stop);
        f.players = 1;
        let d = decide(&f, &T);
        assert_eq!((d.stop, d.idle_since), (false, None), "a player resets it");
    }

    #[test]
    fn a_clock_that_reads_earlier_than_a_feed_decides_nothing() {
        let t0 = Instant::now();
        let mut f = facts(t0);
        f.current = feed(ms(t0, 500), false);
        f.standby = feed(ms(t0, 500), true);
        f.lost_since = Some(ms(t0, 500));
        assert_eq!(decide(&f, &T), Decision::default());
    }
}
