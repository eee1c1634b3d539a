//! Per-source failure budget: a prefix that fails too many knock attempts in
//! a window is ignored for a while.
//!
//! A blind attacker who sweeps ports makes one *trial* each time a packet of
//! theirs happens to be a door's first knock; every trial that does not open
//! the door ends in a reset or a timeout, which is a failure here. Bounding
//! failures per prefix bounds trials per hour, and so turns "a sweep opens a
//! door with probability p" into "an expected 1 / (p · trials per hour)
//! hours". `SECURITY.md` has the arithmetic.
//!
//! Failures are counted per prefix (IPv4 /32 and IPv6 /64 by default), not
//! per address, because an IPv6 attacker owns a whole /64. IPv4-mapped IPv6
//! addresses count as IPv4. State is bounded: counting records are evicted
//! oldest first, bans only when every record is a ban.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::table::{EvictionPolicy, Inserted, Table};
use crate::time::Instant;

/// When a prefix is banned and for how long.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BanPolicy {
    /// Failures within `window` that start a ban; 0 disables banning.
    pub max_failures: u32,
    /// Window the failures are counted in, from the first of them.
    pub window: Duration,
    /// How long a ban lasts.
    pub ban_for: Duration,
    /// Prefix length IPv4 sources are grouped by (1 to 32).
    pub v4_prefix: u8,
    /// Prefix length IPv6 sources are grouped by (1 to 128).
    pub v6_prefix: u8,
    /// Most prefixes remembered at once.
    pub capacity: usize,
}

impl BanPolicy {
    /// 5 failures within 10 minutes ban a /32 or /64 for an hour; 65,536
    /// prefixes are remembered.
    pub const DEFAULT: BanPolicy = BanPolicy {
        max_failures: 5,
        window: Duration::from_secs(600),
        ban_for: Duration::from_secs(3600),
        v4_prefix: 32,
        v6_prefix: 64,
        capacity: 65_536,
    };

    /// No banning at all.
    pub const OFF: BanPolicy = BanPolicy {
        max_failures: 0,
        ..BanPolicy::DEFAULT
    };

    /// The prefix `addr` belongs to under this policy.
    pub fn prefix_of(&self, addr: IpAddr) -> Prefix {
        Prefix::of(addr, self.v4_prefix, self.v6_prefix)
    }
}

impl Default for BanPolicy {
    fn default() -> Self {
        BanPolicy::DEFAULT
    }
}

/// An address prefix: the network address (host bits zero) and its length.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    /// Network address, host bits cleared.
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub len: u8,
}

impl Prefix {
    /// The prefix of `addr` with `v4` or `v6` bits (clamped to the family's
    /// width). IPv4-mapped IPv6 addresses are taken as IPv4.
    pub fn of(addr: IpAddr, v4: u8, v6: u8) -> Prefix {
        let addr = match addr {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        match addr {
            IpAddr::V4(a) => {
                let len = v4.min(32);
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                Prefix {
                    addr: IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask)),
                    len,
                }
            }
            IpAddr::V6(a) => {
                let len = v6.min(128);
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                Prefix {
                    addr: IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask)),
                    len,
                }
            }
        }
    }

    /// True when `addr` lies in this prefix.
    pub fn contains(&self, addr: IpAddr) -> bool {
        Prefix::of(addr, self.len, self.len) == *self
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Why a prefix text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address or prefix {0:?}: expected ADDRESS or ADDRESS/LENGTH")]
pub struct BadPrefix(pub String);

/// Parses `ADDRESS` (a full-length prefix) or `ADDRESS/LENGTH`; host bits
/// are cleared.
impl std::str::FromStr for Prefix {
    type Err = BadPrefix;
    fn from_str(s: &str) -> Result<Self, BadPrefix> {
        let bad = || BadPrefix(s.to_string());
        let (addr, len) = match s.trim().split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(width);
        if len == 0 || len > width {
            return Err(bad());
        }
        Ok(Prefix::of(addr, len, len))
    }
}

/// What the budget holds for one prefix.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct Record {
    failures: u32,
    window_start: Instant,
    banned_until: Option<Instant>,
}

/// A ban that has just started.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Ban {
    /// The banned prefix.
    pub prefix: Prefix,
    /// When it ends.
    pub until: Instant,
}

/// Failure counts and bans per prefix. See the module docs.
#[derive(Debug)]
pub struct FailureBudget {
    policy: BanPolicy,
    records: Table<Prefix, Record>,
    /// Live bans, so the packet path skips the lookup when there are none.
    banned: usize,
    /// Packets ignored because their prefix was banned.
    ignored: u64,
    /// Bans started since creation.
    bans_started: u64,
}

impl FailureBudget {
    /// An empty budget.
    pub fn new(policy: BanPolicy, hash_seed: [u64; 2]) -> Self {
        FailureBudget {
            policy,
            records: Table::new(policy.capacity.max(1), hash_seed, EvictionPolicy::Oldest),
            banned: 0,
            ignored: 0,
            bans_started: 0,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &BanPolicy {
        &self.policy
    }

    /// Replaces the policy (a reload), keeping counts and live bans. Bans
    /// keep the end they were given.
    pub fn set_policy(&mut self, policy: BanPolicy) {
        self.policy = policy;
    }

    /// True when packets from `src` are to be ignored at `now`; counts them.
    pub fn is_banned(&mut self, now: Instant, src: IpAddr) -> bool {
        if self.banned == 0 {
            return false;
        }
        let prefix = self.policy.prefix_of(src);
        let banned = self
            .records
            .get(&prefix)
            .and_then(|r| r.banned_until)
            .is_some_and(|until| now < until);
        if banned {
            self.ignored += 1;
        }
        banned
    }

    /// Counts one failed attempt from `src`; returns the ban it started, if
    /// any. Failures of an already banned prefix are not counted.
    pub fn record_failure(&mut self, now: Instant, src: IpAddr) -> Option<Ban> {
        if self.policy.max_failures == 0 {
            return None;
        }
        let prefix = self.policy.prefix_of(src);
        let mut record = match self.records.get(&prefix) {
            Some(r) if r.banned_until.is_some_and(|u| now < u) => return None,
            Some(r)
                if r.banned_until.is_none()
                    && now.saturating_since(r.window_start) < self.policy.window =>
            {
                *r
            }
            _ => Record {
                failures: 0,
                window_start: now,
                banned_until: None,
            },
        };
        if let Some(old) = self.records.remove(&prefix) {
            self.forget(old);
        }
        record.failures += 1;
        if record.failures >= self.policy.max_failures {
            let until = now + self.policy.ban_for;
            record.banned_until = Some(until);
            let outcome = self
                .records
                .insert_protected(now, prefix, now, until, record);
            self.banned += 1;
            self.bans_started += 1;
            self.note_eviction(outcome);
            Some(Ban { prefix, until })
        } else {
            let ttl = self
                .policy
                .window
                .saturating_sub(now.saturating_since(record.window_start));
            let outcome =
                self.records
                    .insert(now, prefix, ttl.max(Duration::from_millis(1)), record);
            self.note_eviction(outcome);
            None
        }
    }

    /// Forgets the failures of `src`'s prefix (a successful opening); a
    /// live ban stays.
    pub fn record_success(&mut self, src: IpAddr) {
        let prefix = self.policy.prefix_of(src);
        if self
            .records
            .get(&prefix)
            .is_some_and(|r| r.banned_until.is_none())
        {
            self.records.remove(&prefix);
        }
    }

    /// Lifts every ban whose prefix contains `addr`'s address or equals the
    /// given prefix; `None` lifts them all. Returns the lifted prefixes.
    pub fn unban(&mut self, which: Option<Prefix>) -> Vec<Prefix> {
        let lifted: Vec<Prefix> = self
            .records
            .iter()
            .filter(|(_, r, _)| r.banned_until.is_some())
            .map(|(p, _, _)| *p)
            .filter(|p| match which {
                None => true,
                Some(w) => *p == w || w.contains(p.addr) || p.contains(w.addr),
            })
            .collect();
        for p in &lifted {
            if let Some(r) = self.records.remove(p) {
                self.forget(r);
            }
        }
        lifted
    }

    /// Live bans and when each ends, soonest first.
    pub fn bans(&self, now: Instant) -> Vec<(Prefix, Instant)> {
        let mut out: Vec<(Prefix, Instant)> = self
            .records
            .iter()
            .filter_map(|(p, r, _)| r.banned_until.filter(|u| now < *u).map(|u| (*p, u)))
            .collect();
        out.sort_by_key(|&(p, u)| (u, p));
        out
    }

    /// Drops records whose time has passed; returns the bans that ended.
    pub fn expire(&mut self, now: Instant) -> Vec<Prefix> {
        let mut ended = Vec::new();
        while let Some((prefix, record)) = self.records.pop_expired(now) {
            if record.banned_until.is_some() {
                self.banned -= 1;
                ended.push(prefix);
            }
        }
        ended
    }

    /// When the next record expires.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.records.next_deadline()
    }

    /// Number of live bans.
    pub fn banned(&self) -> usize {
        self.banned
    }

    /// Packets ignored because their prefix was banned.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// Bans started since creation.
    pub fn bans_started(&self) -> u64 {
        self.bans_started
    }

    /// Moves every record of `old` into this budget (a reload).
    pub fn carry_from(&mut self, old: &mut FailureBudget, now: Instant) {
        let mut records: Vec<(Prefix, Record, Instant)> =
            old.records.iter().map(|(p, r, d)| (*p, *r, d)).collect();
        records.sort_by_key(|&(_, r, _)| r.window_start);
        for (prefix, record, deadline) in records {
            if deadline <= now {
                continue;
            }
            let outcome = if record.banned_until.is_some() {
                self.banned += 1;
                self.records
                    .insert_protected(now, prefix, record.window_start, deadline, record)
            } else {
                self.records
                    .insert(now, prefix, deadline.saturating_since(now), record)
            };
            self.note_eviction(outcome);
        }
        self.ignored = old.ignored;
        self.bans_started = old.bans_started;
    }

    fn forget(&mut self, record: Record) {
        if record.banned_until.is_some() {
            self.banned -= 1;
        }
    }

    fn note_eviction(&mut self, outcome: Inserted<Prefix, Record>) {
        if let Inserted::Evicted { value, .. } | Inserted::Replaced(value) = outcome {
            self.forget(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> Instant {
        Instant::from_millis(s * 1000)
    }

    fn policy() -> BanPolicy {
        BanPolicy {
            max_failures: 3,
            window: Duration::from_secs(60),
            ban_for: Duration::from_secs(600),
            ..BanPolicy::DEFAULT
        }
    }

    #[test]
    fn prefixes_group_ipv6_by_64_and_mapped_v4_as_v4() {
        let p = Prefix::of("2001:db8:1:2:aaaa::1".parse().unwrap(), 32, 64);
        assert_eq!(p.to_string(), "2001:db8:1:2::/64");
        assert!(p.contains("2001:db8:1:2:ffff::9".parse().unwrap()));
        assert!(!p.contains("2001:db8:1:3::1".parse().unwrap()));
        let m = Prefix::of("::ffff:192.0.2.7".parse().unwrap(), 24, 64);
        assert_eq!(m.to_string(), "192.0.2.0/24");
        assert_eq!(
            "10.1.2.3/8".parse::<Prefix>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert!("10.1.2.3/33".parse::<Prefix>().is_err());
        assert!("nonsense".parse::<Prefix>().is_err());
    }

    #[test]
    fn failures_within_the_window_ban_the_prefix_and_the_ban_ends() {
        let mut b = FailureBudget::new(policy(), [1, 2]);
        let src: IpAddr = "2001:db8::1".parse().unwrap();
        let neighbour: IpAddr = "2001:db8::ffff".parse().unwrap();
        assert_eq!(b.record_failure(at(0), src), None);
        assert_eq!(b.record_failure(at(10), neighbour), None);
        let ban = b.record_failure(at(20), src).expect("third failure bans");
        assert_eq!(ban.prefix.to_string(), "2001:db8::/64");
        assert_eq!(ban.until, at(620));
        assert!(b.is_banned(at(21), neighbour));
        assert!(!b.is_banned(at(21), "2001:db9::1".parse().unwrap()));
        assert_eq!(b.record_failure(at(30), src), None, "no second ban");
        assert_eq!(b.bans(at(30)).len(), 1);
        assert_eq!(b.ignored(), 1);
        assert!(b.expire(at(619)).is_empty());
        assert_eq!(b.expire(at(620)), vec![ban.prefix]);
        assert!(!b.is_banned(at(620), src));
        assert_eq!(b.banned(), 0);
    }

    #[test]
    fn failures_spread_wider_than_the_window_do_not_ban() {
        let mut b = FailureBudget::new(policy(), [1, 2]);
        let src: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 0..10 {
            assert_eq!(b.record_failure(at(i * 31), src), None, "failure {i}");
        }
    }

    #[test]
    fn success_clears_the_count_and_unban_lifts() {
        let mut b = FailureBudget::new(policy(), [1, 2]);
        let src: IpAddr = "192.0.2.1".parse().unwrap();
        b.record_failure(at(0), src);
        b.record_failure(at(1), src);
        b.record_success(src);
        assert_eq!(b.record_failure(at(2), src), None);
        b.record_failure(at(3), src);
        assert!(b.record_failure(at(4), src).is_some());
        assert_eq!(b.unban(Some("192.0.2.0/24".parse().unwrap())).len(), 1);
        assert!(!b.is_banned(at(5), src));
        assert_eq!(b.banned(), 0);
    }

    #[test]
    fn off_policy_never_bans() {
        let mut b = FailureBudget::new(BanPolicy::OFF, [1, 2]);
        for i in 0..100 {
            assert_eq!(b.record_failure(at(i), "192.0.2.1".parse().unwrap()), None);
        }
    }

    #[test]
    fn a_flood_of_counting_records_cannot_push_out_a_ban() {
        let mut b = FailureBudget::new(
            BanPolicy {
                capacity: 8,
                ..policy()
            },
            [1, 2],
        );
        let src: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 0..3 {
            b.record_failure(at(i), src);
        }
        for i in 0..1000u32 {
            b.record_failure(at(5), IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)));
        }
        assert!(b.is_banned(at(6), src));
        assert_eq!(b.banned(), 1);
    }

    #[test]
    fn carry_keeps_bans_across_a_reload() {
        let mut old = FailureBudget::new(policy(), [1, 2]);
        let src: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 0..3 {
            old.record_failure(at(i), src);
        }
        let mut new = FailureBudget::new(policy(), [3, 4]);
        new.carry_from(&mut old, at(10));
        assert!(new.is_banned(at(11), src));
        assert_eq!(new.expire(at(602)).len(), 1);
    }
}
