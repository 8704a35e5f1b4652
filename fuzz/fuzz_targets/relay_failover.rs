//! The pull's failover decisions on made-up clocks: whatever the feeds'
//! timings, an origin is let go only when it exists and has been quiet at
//! least the stall time, a stall is a reason only with a live standby to
//! take over, and a pull stops only with no player for the linger time.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use relay::failover::{Decision, Facts, FeedState, LoseWhy, Timings, decide};

fuzz_target!(|data: &[u8]| {
    let base = Instant::now();
    let at = |b: u8| base + Duration::from_millis(u64::from(b) * 20);
    let t = Timings {
        stall: Duration::from_millis(200),
        dead: Duration::from_secs(1),
        linger: Duration::from_secs(5),
    };
    let mut idle_since = None;
    let mut now = base;
    for op in data.chunks(6) {
        let [flags, a, b, c, d, e] = [0, 1, 2, 3, 4, 5].map(|i| *op.get(i).unwrap_or(&0));
        // Time only goes forward, as the pull's clock does.
        now = now.max(at(a).max(base + Duration::from_millis(u64::from(e) * 25)));
        let feed = |bit: u8, heard: u8| {
            (flags & bit != 0).then(|| FeedState {
                heard: at(heard).min(now),
                can_take_over: flags & (bit << 1) != 0,
            })
        };
        let f = Facts {
            now,
            current: feed(1, b),
            standby: feed(4, c),
            publishing: flags & 16 != 0,
            lost_since: (flags & 32 != 0).then(|| at(d).min(now)),
            players: usize::from(flags >> 6),
            idle_since,
        };
        let Decision {
            lose_current,
            drop_standby,
            end_stream,
            stop,
            idle_since: next_idle,
        } = decide(&f, &t);
        if let Some(why) = lose_current {
            let c = f.current.expect("lost a current that was there");
            let quiet = now - c.heard;
            match why {
                LoseWhy::Dead => assert!(quiet >= t.dead),
                LoseWhy::Stalled => {
                    assert!(quiet >= t.stall);
                    let s = f.standby.expect("a standby to fail over to");
                    assert!(s.can_take_over && now - s.heard < t.stall);
                }
            }
        }
        if drop_standby {
            assert!(now - f.standby.expect("a standby").heard >= t.dead);
        }
        if end_stream {
            assert!(f.current.is_none() && f.publishing);
        }
        if stop {
            assert_eq!(f.players, 0);
        }
        assert_eq!(next_idle.is_some(), f.players == 0);
        idle_since = next_idle;
    }
});
