//! Chooses how the kernel delivers logged packets: one per datagram while
//! traffic is light (lowest latency), batched during a flood (one `recv` per
//! few hundred packets instead of one per packet).
//!
//! The switch has hysteresis: it enters flood mode as soon as one window
//! counts [`ENTER_PER_WINDOW`] packets, and leaves it only after
//! [`QUIET_WINDOWS`] consecutive windows under [`LEAVE_PER_WINDOW`], so a
//! pulsed flood cannot make it flap. Time is passed in.

use std::time::{Duration, Instant};

/// Length of one counting window.
pub const WINDOW: Duration = Duration::from_millis(100);
/// Packets in one window that switch batching on (5,000 packets/s).
pub const ENTER_PER_WINDOW: u64 = 500;
/// A window with fewer packets than this is quiet (500 packets/s).
pub const LEAVE_PER_WINDOW: u64 = 50;
/// Consecutive quiet windows that switch batching off again (1 s).
pub const QUIET_WINDOWS: u32 = 10;

/// A change of delivery mode to apply to the NFLOG socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// Start batching; `rate` is the packet rate that triggered it (per s).
    ToBatched {
        /// Packets per second in the window that triggered the switch.
        rate: u64,
    },
    /// Back to one packet per datagram.
    ToImmediate,
}

/// Counts logged packets per window and decides when to switch.
#[derive(Debug, Clone)]
pub struct LoadGovernor {
    window_start: Instant,
    in_window: u64,
    batched: bool,
    quiet: u32,
}

impl LoadGovernor {
    /// Starts in immediate mode, with a window opening at `now`.
    pub fn new(now: Instant) -> Self {
        LoadGovernor {
            window_start: now,
            in_window: 0,
            batched: false,
            quiet: 0,
        }
    }

    /// Whether flood mode (batching) is on.
    pub fn is_batched(&self) -> bool {
        self.batched
    }

    /// Records `packets` read at `now` and says whether to switch.
    pub fn record(&mut self, now: Instant, packets: u64) -> Option<Switch> {
        let switch = self.roll(now);
        self.in_window += packets;
        if !self.batched && self.in_window >= ENTER_PER_WINDOW {
            let elapsed = now
                .saturating_duration_since(self.window_start)
                .max(WINDOW / 10);
            let rate = (self.in_window as f64 / elapsed.as_secs_f64()) as u64;
            self.batched = true;
            self.quiet = 0;
            return Some(Switch::ToBatched { rate });
        }
        switch
    }

    /// When [`LoadGovernor::record`] should be called even without packets,
    /// so flood mode can end: the end of the current window, while batched.
    pub fn next_check(&self) -> Option<Instant> {
        self.batched.then_some(self.window_start + WINDOW)
    }

    /// Closes every window that ended before `now`.
    fn roll(&mut self, now: Instant) -> Option<Switch> {
        let mut switch = None;
        // Bounded: after QUIET_WINDOWS empty windows nothing changes any more.
        let mut closed = 0;
        while now >= self.window_start + WINDOW {
            if self.batched {
                if self.in_window < LEAVE_PER_WINDOW {
                    self.quiet += 1;
                    if self.quiet >= QUIET_WINDOWS {
                        self.batched = false;
                        self.quiet = 0;
                        switch = Some(Switch::ToImmediate);
                    }
                } else {
                    self.quiet = 0;
                }
            }
            self.in_window = 0;
            self.window_start += WINDOW;
            closed += 1;
            if closed > QUIET_WINDOWS {
                // Skip the rest of a long idle gap in one step.
                let gap = now.saturating_duration_since(self.window_start);
                let skip = gap.as_nanos() / WINDOW.as_nanos();
                self.window_start += WINDOW * u32::try_from(skip).unwrap_or(u32::MAX);
            }
        }
        switch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(base: Instant, n: u64) -> Instant {
        base + Duration::from_millis(n)
    }

    #[test]
    fn light_traffic_stays_immediate() {
        let t0 = Instant::now();
        let mut g = LoadGovernor::new(t0);
        for i in 0..1_000 {
            // 40 packets per 100 ms = 400/s.
            assert_eq!(g.record(ms(t0, i * 10), 4), None);
        }
        assert!(!g.is_batched());
        assert_eq!(g.next_check(), None);
    }

    #[test]
    fn a_flood_switches_to_batching_within_one_window() {
        let t0 = Instant::now();
        let mut g = LoadGovernor::new(t0);
        let mut switched_at = None;
        for i in 0..100 {
            if let Some(s) = g.record(ms(t0, i), 64) {
                assert!(
                    matches!(s, Switch::ToBatched { rate } if rate > 5_000),
                    "{s:?}"
                );
                switched_at = Some(i);
                break;
            }
        }
        // 500 packets at 64 per ms: the 8th read.
        assert_eq!(switched_at, Some(7));
        assert!(g.is_batched());
        assert_eq!(g.next_check(), Some(ms(t0, 100)));
    }

    #[test]
    fn batching_ends_after_a_quiet_second_not_before() {
        let t0 = Instant::now();
        let mut g = LoadGovernor::new(t0);
        assert!(g.record(t0, 1_000).is_some());
        // 0.9 s of quiet: still batched.
        for w in 1..=9 {
            assert_eq!(g.record(ms(t0, w * 100), 0), None, "window {w}");
        }
        assert!(g.is_batched());
        // The tenth quiet window closes.
        assert_eq!(g.record(ms(t0, 1_000), 0), None);
        assert_eq!(g.record(ms(t0, 1_100), 0), Some(Switch::ToImmediate));
        assert!(!g.is_batched());
    }

    #[test]
    fn a_pulsed_flood_keeps_batching_on() {
        let t0 = Instant::now();
        let mut g = LoadGovernor::new(t0);
        assert!(g.record(t0, 1_000).is_some());
        // A burst every 0.5 s keeps resetting the quiet count.
        for w in 1..100u64 {
            let packets = if w % 5 == 0 { 1_000 } else { 0 };
            assert_eq!(g.record(ms(t0, w * 100), packets), None, "window {w}");
        }
        assert!(g.is_batched());
    }

    #[test]
    fn a_long_idle_gap_is_one_step() {
        let t0 = Instant::now();
        let mut g = LoadGovernor::new(t0);
        assert!(g.record(t0, 1_000).is_some());
        // A day later: one call, flood mode over, window realigned.
        assert_eq!(
            g.record(t0 + Duration::from_secs(86_400), 1),
            Some(Switch::ToImmediate)
        );
        assert!(g.window_start + WINDOW > t0 + Duration::from_secs(86_400));
    }
}
