//! Timestamps that carry their timebase, so a value in milliseconds can never be
//! mistaken for one in 90 kHz ticks when it crosses a crate boundary.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

/// Ticks per second of a clock (1000 for RTMP, 90 000 for MPEG-TS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timebase(NonZeroU32);

impl Timebase {
    /// RTMP and FLV count in milliseconds.
    pub const MILLIS: Timebase = Timebase(NonZeroU32::new(1000).expect("nonzero"));
    /// MPEG-TS PTS/DTS count at 90 kHz.
    pub const MPEG_90K: Timebase = Timebase(NonZeroU32::new(90_000).expect("nonzero"));

    /// A timebase of `hz` ticks per second; `None` for zero, which has no meaning.
    pub fn new(hz: u32) -> Option<Self> {
        NonZeroU32::new(hz).map(Self)
    }

    /// Ticks per second.
    pub fn hz(self) -> u32 {
        self.0.get()
    }
}

/// A point on a media timeline: a tick count and the clock it counts in.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp {
    ticks: i64,
    timebase: Timebase,
}

impl Timestamp {
    /// A timestamp of `ticks` in `timebase`.
    pub const fn new(ticks: i64, timebase: Timebase) -> Self {
        Self { ticks, timebase }
    }

    /// A timestamp in milliseconds, RTMP's native unit.
    pub const fn from_millis(ms: i64) -> Self {
        Self::new(ms, Timebase::MILLIS)
    }

    /// The raw tick count; only meaningful together with [`Timestamp::timebase`].
    pub fn ticks(self) -> i64 {
        self.ticks
    }

    /// The clock this timestamp counts in.
    pub fn timebase(self) -> Timebase {
        self.timebase
    }

    /// The same instant in another timebase, rounded down; `None` on overflow.
    pub fn rescale(self, to: Timebase) -> Option<Timestamp> {
        if to == self.timebase {
            return Some(self);
        }
        let scaled = i128::from(self.ticks) * i128::from(to.hz()) / i128::from(self.timebase.hz());
        i64::try_from(scaled).ok().map(|t| Timestamp::new(t, to))
    }

    /// Whole milliseconds, rounded down; saturates instead of overflowing.
    pub fn as_millis(self) -> i64 {
        self.rescale(Timebase::MILLIS)
            .map_or(if self.ticks < 0 { i64::MIN } else { i64::MAX }, |t| {
                t.ticks
            })
    }

    /// `self - other` in `self`'s timebase; `None` on overflow.
    pub fn checked_sub(self, other: Timestamp) -> Option<i64> {
        let other = other.rescale(self.timebase)?;
        self.ticks.checked_sub(other.ticks)
    }

    /// `self + ticks` (in `self`'s timebase); `None` on overflow.
    pub fn checked_add_ticks(self, ticks: i64) -> Option<Timestamp> {
        self.ticks
            .checked_add(ticks)
            .map(|t| Timestamp::new(t, self.timebase))
    }

    /// The distance from `earlier` to `self` as a duration; `None` if negative or overflowing.
    pub fn duration_since(self, earlier: Timestamp) -> Option<Duration> {
        let ticks = u64::try_from(self.checked_sub(earlier)?).ok()?;
        let hz = u64::from(self.timebase.hz());
        let nanos = u128::from(ticks) * 1_000_000_000 / u128::from(hz);
        u64::try_from(nanos).ok().map(Duration::from_nanos)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}Hz", self.ticks, self.timebase.hz())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_between_millis_and_90k() {
        let t = Timestamp::from_millis(1500);
        let r = t.rescale(Timebase::MPEG_90K).expect("fits");
        assert_eq!(r.ticks(), 135_000);
        assert_eq!(r.rescale(Timebase::MILLIS), Some(t));
    }

    #[test]
    fn overflow_is_none_not_a_panic() {
        let t = Timestamp::new(i64::MAX, Timebase::MILLIS);
        assert_eq!(t.rescale(Timebase::MPEG_90K), None);
        assert_eq!(t.checked_add_ticks(1), None);
        assert_eq!(
            Timestamp::new(i64::MIN, Timebase::MILLIS).checked_sub(t),
            None
        );
        assert_eq!(t.as_millis(), i64::MAX);
    }

    #[test]
    fn duration_since_rejects_negative() {
        let a = Timestamp::from_millis(1000);
        let b = Timestamp::new(180_000, Timebase::MPEG_90K);
        assert_eq!(b.duration_since(a), Some(Duration::from_secs(1)));
        assert_eq!(a.duration_since(b), None);
    }

    #[test]
    fn zero_timebase_is_refused() {
        assert!(Timebase::new(0).is_none());
        assert_eq!(Timebase::new(48_000).map(Timebase::hz), Some(48_000));
    }
}
