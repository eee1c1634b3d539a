//! Time as the caller sees it. The core never reads a clock.

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point on the caller's monotonic clock, expressed as the time elapsed since
/// an arbitrary origin chosen by the caller (for the daemon: its start).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(Duration);

impl Instant {
    /// The clock's origin.
    pub const ZERO: Instant = Instant(Duration::ZERO);

    /// An instant `elapsed` after the origin.
    pub const fn from_elapsed(elapsed: Duration) -> Self {
        Instant(elapsed)
    }

    /// An instant `ms` milliseconds after the origin (handy in tests).
    pub const fn from_millis(ms: u64) -> Self {
        Instant(Duration::from_millis(ms))
    }

    /// Time elapsed since the origin.
    pub const fn elapsed(self) -> Duration {
        self.0
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        Instant(self.0.saturating_add(rhs))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_since(rhs)
    }
}
