//! RTMP timestamps are 32-bit milliseconds that wrap after 49.7 days; this is the
//! one place they are widened, so the rest of Ferry sees a monotonic `i64`.

use media_core::Timestamp;

/// Widens wrapping 32-bit timestamps into a continuous timeline. A step backwards by
/// more than half the range is taken as a wrap; small steps backwards (audio and
/// video interleaving) are kept as they are.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unwrapper {
    last: Option<u32>,
    epoch: i64,
}

impl Unwrapper {
    /// A fresh timeline.
    pub fn new() -> Self {
        Self::default()
    }

    /// The widened timestamp for `ts`.
    pub fn unwrap(&mut self, ts: u32) -> Timestamp {
        const HALF: u32 = 1 << 31;
        let mut epoch = self.epoch;
        if let Some(last) = self.last {
            if ts < last && last - ts > HALF {
                self.epoch += 1i64 << 32;
                epoch = self.epoch;
                self.last = Some(ts);
            } else if ts > last && ts - last > HALF {
                // A late packet from before the most recent wrap.
                epoch -= 1i64 << 32;
            } else {
                self.last = Some(ts);
            }
        } else {
            self.last = Some(ts);
        }
        Timestamp::from_millis(epoch + i64::from(ts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_once_and_tolerates_interleaving() {
        let mut u = Unwrapper::new();
        let got: Vec<i64> = [u32::MAX - 10, u32::MAX - 20, 5, u32::MAX - 2, 30]
            .into_iter()
            .map(|t| u.unwrap(t).ticks())
            .collect();
        let base = i64::from(u32::MAX);
        assert_eq!(
            got,
            vec![base - 10, base - 20, base + 6, base - 2, base + 31]
        );
    }
}
