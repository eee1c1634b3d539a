//! Open-door bookkeeping: which (source, door) grants exist and when each
//! closes.
//!
//! The daemon closes grants from its own timer (driven by
//! [`Grants::next_deadline`] and [`Grants::expire`]) rather than from a
//! sleeping child process, so a knock that refreshes a grant simply moves its
//! close time.
//!
//! The number of grants is bounded. When a new grant meets a full table, the
//! grant that expires soonest is closed early: it leaves the table at once and
//! is reported, like an expired one, by the next [`Grants::expire`] call (it
//! is due at the instant it was evicted, so [`Grants::next_deadline`] asks for
//! that call right away). Until then it counts as still open for
//! [`Grants::open`] (which keeps it instead of opening it anew),
//! [`Grants::revoke`] and [`Grants::drain`], so no grant is ever closed twice
//! or left open unreported.

use std::net::IpAddr;
use std::time::Duration;

use crate::table::{EvictionPolicy, Inserted, Table};
use crate::time::Instant;
use crate::tracker::DoorId;

type Key = (IpAddr, DoorId);

/// Whether [`Grants::open`] created a grant or extended an existing one.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum GrantOutcome {
    /// No grant existed: the caller should open the door.
    New,
    /// The grant already existed (the door is already open); its close time
    /// was moved to `now + open_for` if that is later.
    Refreshed,
}

/// Grants keyed by (source, door), each with its close time. Operations are
/// O(1) expected (plus O(distinct `open_for` values) for deadline lookups).
#[derive(Debug)]
pub struct Grants {
    active: Table<Key, ()>,
    /// Grants evicted by a full table, due for closing at their eviction
    /// time. Unbounded in principle but emptied by every `expire` call, which
    /// `next_deadline` makes due immediately.
    evicted: Table<Key, ()>,
}

impl Grants {
    /// Empty bookkeeping for at most `capacity` grants (0 is taken as 1).
    /// `hash_seed` keys the hasher and should be random.
    pub fn new(capacity: usize, hash_seed: [u64; 2]) -> Self {
        Grants {
            active: Table::new(capacity, hash_seed, EvictionPolicy::SoonestDeadline),
            evicted: Table::new(usize::MAX, hash_seed, EvictionPolicy::SoonestDeadline),
        }
    }

    /// Most grants held at once.
    pub fn capacity(&self) -> usize {
        self.active.capacity()
    }

    /// Number of active grants (not counting evicted ones awaiting
    /// [`Grants::expire`]).
    pub fn len(&self) -> usize {
        self.active.len()
    }

    /// True when no grant is active.
    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// When the grant for (`src`, `door`) closes, if it is active.
    pub fn expires_at(&self, src: IpAddr, door: DoorId) -> Option<Instant> {
        self.active.deadline(&(src, door))
    }

    /// Opens `door` for `src` until `now + open_for`, or extends an existing
    /// grant to then. A refresh never shortens a grant and never duplicates
    /// it. A grant past its close time but not yet collected by
    /// [`Grants::expire`] is still open in the firewall, so it is refreshed.
    pub fn open(
        &mut self,
        now: Instant,
        src: IpAddr,
        door: DoorId,
        open_for: Duration,
    ) -> GrantOutcome {
        let key = (src, door);
        let outcome = match self.active.deadline(&key) {
            Some(until) if now + open_for <= until => return GrantOutcome::Refreshed,
            Some(_) => GrantOutcome::Refreshed,
            // Evicted but its close has not been reported: keep it instead.
            None if self.evicted.remove(&key).is_some() => GrantOutcome::Refreshed,
            None => GrantOutcome::New,
        };
        if let Inserted::Evicted { key, .. } = self.active.insert(now, key, open_for, ()) {
            self.evicted.insert(now, key, Duration::ZERO, ());
        }
        outcome
    }

    /// Takes the grants evicted by a full table since the last call (they
    /// are no longer reported by [`Grants::expire`]), for the caller to
    /// remove from the firewall now rather than at their timeout.
    pub fn drain_evicted(&mut self) -> Vec<(IpAddr, DoorId)> {
        self.evicted
            .drain()
            .into_iter()
            .map(|(key, ())| key)
            .collect()
    }

    /// Appends every grant due to close by `now` to `closed` (grants evicted
    /// early first, then expired ones soonest first) and forgets them.
    pub fn expire(&mut self, now: Instant, closed: &mut Vec<(IpAddr, DoorId)>) {
        closed.extend(self.evicted.drain().into_iter().map(|(key, ())| key));
        while let Some((key, ())) = self.active.pop_expired(now) {
            closed.push(key);
        }
    }

    /// Forgets the grant for (`src`, `door`) without reporting it; the caller
    /// closes it. False if there was none.
    pub fn revoke(&mut self, src: IpAddr, door: DoorId) -> bool {
        let key = (src, door);
        self.active.remove(&key).is_some() || self.evicted.remove(&key).is_some()
    }

    /// Forgets every grant and returns them (for shutdown), evicted ones
    /// first, then soonest close first.
    pub fn drain(&mut self) -> Vec<(IpAddr, DoorId)> {
        let mut all: Vec<Key> = self.evicted.drain().into_iter().map(|(k, ())| k).collect();
        all.extend(self.active.drain().into_iter().map(|(k, ())| k));
        all
    }

    /// When [`Grants::expire`] next has something to close. An evicted grant
    /// is due at its eviction time, i.e. immediately.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.evicted.next_deadline(), self.active.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Active grants as (source, door, close time), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, DoorId, Instant)> + '_ {
        self.active
            .iter()
            .map(|(&(src, door), (), until)| (src, door, until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    const SEED: [u64; 2] = [9, 9];

    fn ip(n: u16) -> IpAddr {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n))
    }

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn expire(g: &mut Grants, ms: u64) -> Vec<(IpAddr, DoorId)> {
        let mut closed = Vec::new();
        g.expire(t(ms), &mut closed);
        closed
    }

    #[test]
    fn new_then_refreshed_moves_close_time() {
        let mut g = Grants::new(10, SEED);
        assert_eq!(g.open(t(0), ip(1), 0, secs(30)), GrantOutcome::New);
        assert_eq!(g.open(t(0), ip(1), 1, secs(30)), GrantOutcome::New);
        assert_eq!(
            g.open(t(10_000), ip(1), 0, secs(30)),
            GrantOutcome::Refreshed
        );
        assert_eq!(g.len(), 2, "refresh never duplicates");
        assert_eq!(g.expires_at(ip(1), 0), Some(t(40_000)));
        assert_eq!(g.next_deadline(), Some(t(30_000)));
        assert_eq!(expire(&mut g, 30_000), [(ip(1), 1)]);
        assert!(expire(&mut g, 39_999).is_empty());
        assert_eq!(expire(&mut g, 40_000), [(ip(1), 0)]);
        assert!(g.is_empty());
        assert_eq!(g.next_deadline(), None);
    }

    #[test]
    fn refresh_never_shortens() {
        let mut g = Grants::new(10, SEED);
        g.open(t(0), ip(1), 0, secs(60));
        assert_eq!(g.open(t(1000), ip(1), 0, secs(5)), GrantOutcome::Refreshed);
        assert_eq!(g.expires_at(ip(1), 0), Some(t(60_000)));
        assert_eq!(g.iter().count(), 1);
    }

    #[test]
    fn expiry_order_across_durations() {
        let mut g = Grants::new(10, SEED);
        g.open(t(0), ip(1), 0, secs(60));
        g.open(t(1000), ip(2), 1, secs(10));
        g.open(t(2000), ip(3), 0, secs(60));
        g.open(t(3000), ip(4), 2, secs(20));
        g.open(t(4000), ip(2), 1, secs(10)); // refresh: now 14 s
        assert_eq!(
            expire(&mut g, 100_000),
            [(ip(2), 1), (ip(4), 2), (ip(1), 0), (ip(3), 0)]
        );
    }

    #[test]
    fn overdue_but_uncollected_grant_is_refreshed() {
        let mut g = Grants::new(10, SEED);
        g.open(t(0), ip(1), 0, secs(10));
        assert_eq!(
            g.open(t(12_000), ip(1), 0, secs(10)),
            GrantOutcome::Refreshed
        );
        assert!(expire(&mut g, 12_000).is_empty());
        assert_eq!(expire(&mut g, 22_000), [(ip(1), 0)]);
    }

    #[test]
    fn full_table_evicts_soonest_expiry_and_reports_it_closed() {
        let mut g = Grants::new(2, SEED);
        g.open(t(0), ip(1), 0, secs(60));
        g.open(t(0), ip(2), 0, secs(10));
        assert_eq!(g.open(t(1000), ip(3), 0, secs(60)), GrantOutcome::New);
        assert_eq!(g.len(), 2);
        // Due immediately, so the daemon's timer fires at once.
        assert_eq!(g.next_deadline(), Some(t(1000)));
        assert_eq!(expire(&mut g, 1000), [(ip(2), 0)]);
        assert_eq!(g.next_deadline(), Some(t(60_000)));
        let mut left: Vec<_> = g.iter().map(|(src, _, _)| src).collect();
        left.sort();
        assert_eq!(left, [ip(1), ip(3)]);
    }

    #[test]
    fn reopening_an_evicted_grant_before_its_close_keeps_it() {
        let mut g = Grants::new(1, SEED);
        g.open(t(0), ip(1), 0, secs(10));
        g.open(t(1), ip(2), 0, secs(10)); // evicts ip(1), close pending
        assert_eq!(g.open(t(2), ip(1), 0, secs(10)), GrantOutcome::Refreshed);
        // ip(2) is evicted in turn; ip(1) must not be closed.
        assert_eq!(expire(&mut g, 2), [(ip(2), 0)]);
        assert_eq!(g.expires_at(ip(1), 0), Some(t(10_002)));
    }

    #[test]
    fn revoke_and_drain() {
        let mut g = Grants::new(2, SEED);
        g.open(t(0), ip(1), 0, secs(10));
        g.open(t(0), ip(2), 0, secs(20));
        assert!(g.revoke(ip(1), 0));
        assert!(!g.revoke(ip(1), 0));
        assert!(expire(&mut g, 15_000).is_empty());
        g.open(t(0), ip(3), 0, secs(5));
        g.open(t(0), ip(4), 0, secs(30)); // evicts ip(3)
        assert_eq!(g.drain(), [(ip(3), 0), (ip(2), 0), (ip(4), 0)]);
        assert!(g.is_empty());
        assert_eq!(g.next_deadline(), None);
        assert!(expire(&mut g, 1_000_000).is_empty());
        // Revoking a grant awaiting its eviction close cancels that close.
        g.open(t(0), ip(5), 0, secs(5));
        g.open(t(0), ip(6), 0, secs(5));
        g.open(t(0), ip(7), 0, secs(50));
        assert!(g.revoke(ip(5), 0));
        assert!(expire(&mut g, 0).is_empty());
    }
}
