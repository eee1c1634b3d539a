//! Per-source-prefix token buckets: a fair budget of expensive work.
//!
//! Each source prefix (IPv4 /32, IPv6 /64 by default) earns `rate` tokens a
//! second up to `burst`; an expensive operation (a public-key SPA
//! verification) spends one. A flood from one prefix empties only its own
//! bucket, so another prefix's requests still find tokens. The table of
//! buckets is bounded; when full, the least recently refilled bucket goes
//! (a new prefix starts with a full bucket, which is what an attacker who
//! rotates prefixes gets anyway).

use std::net::IpAddr;
use std::time::Duration;

use crate::ban::Prefix;
use crate::table::{EvictionPolicy, Table};
use crate::time::Instant;

/// How much expensive work each source prefix may ask for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RatePolicy {
    /// Tokens earned per second (0: no limit).
    pub per_second: u32,
    /// Most tokens held.
    pub burst: u32,
    /// Prefix length IPv4 sources are grouped by.
    pub v4_prefix: u8,
    /// Prefix length IPv6 sources are grouped by.
    pub v6_prefix: u8,
    /// Most prefixes tracked at once.
    pub capacity: usize,
}

impl Default for RatePolicy {
    /// 50 a second, bursts of 20, per /32 or /64; 16,384 prefixes.
    fn default() -> Self {
        RatePolicy {
            per_second: 50,
            burst: 20,
            v4_prefix: 32,
            v6_prefix: 64,
            capacity: 16_384,
        }
    }
}

#[derive(Copy, Clone, Debug)]
struct Bucket {
    /// Tokens in thousandths.
    milli_tokens: u64,
    refilled: Instant,
}

/// Token buckets per source prefix. See the module docs.
#[derive(Debug)]
pub struct PrefixBudget {
    policy: RatePolicy,
    buckets: Table<Prefix, Bucket>,
    refused: u64,
}

/// How long an idle bucket is kept: long enough to refill completely.
fn idle_ttl(policy: &RatePolicy) -> Duration {
    let secs = u64::from(policy.burst) / u64::from(policy.per_second.max(1)) + 1;
    Duration::from_secs(secs.max(1))
}

impl PrefixBudget {
    /// An empty budget.
    pub fn new(policy: RatePolicy, hash_seed: [u64; 2]) -> Self {
        PrefixBudget {
            policy,
            buckets: Table::new(policy.capacity.max(1), hash_seed, EvictionPolicy::Oldest),
            refused: 0,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &RatePolicy {
        &self.policy
    }

    /// Spends one token of `src`'s prefix at `now`; false (and counted)
    /// when the bucket is empty.
    pub fn allow(&mut self, now: Instant, src: IpAddr) -> bool {
        if self.policy.per_second == 0 {
            return true;
        }
        let prefix = Prefix::of(src, self.policy.v4_prefix, self.policy.v6_prefix);
        let full = u64::from(self.policy.burst.max(1)) * 1000;
        let mut bucket = self.buckets.get(&prefix).copied().unwrap_or(Bucket {
            milli_tokens: full,
            refilled: now,
        });
        let earned = now.saturating_since(bucket.refilled).as_millis() as u64
            * u64::from(self.policy.per_second);
        bucket.milli_tokens = (bucket.milli_tokens + earned).min(full);
        bucket.refilled = now;
        let allowed = bucket.milli_tokens >= 1000;
        if allowed {
            bucket.milli_tokens -= 1000;
        } else {
            self.refused += 1;
        }
        self.buckets
            .insert(now, prefix, idle_ttl(&self.policy), bucket);
        allowed
    }

    /// Requests refused so far.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Forgets buckets idle long enough to be full again.
    pub fn expire(&mut self, now: Instant) {
        while self.buckets.pop_expired(now).is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    #[test]
    fn a_flooding_prefix_empties_only_its_own_bucket() {
        let mut b = PrefixBudget::new(
            RatePolicy {
                per_second: 10,
                burst: 5,
                ..RatePolicy::default()
            },
            [1, 2],
        );
        let flood: IpAddr = "2001:db8:bad::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:bad::2".parse().unwrap();
        let other: IpAddr = "198.51.100.7".parse().unwrap();
        let allowed = (0..1000).filter(|_| b.allow(ms(0), flood)).count();
        assert_eq!(allowed, 5, "the burst, then nothing");
        assert!(!b.allow(ms(0), same_64), "the same /64 shares the bucket");
        assert!(b.allow(ms(0), other), "another prefix is untouched");
        // 100 ms earn one token at 10/s.
        assert!(b.allow(ms(100), flood));
        assert!(!b.allow(ms(100), flood));
        assert_eq!(b.refused(), 997);
    }

    #[test]
    fn zero_rate_means_no_limit() {
        let mut b = PrefixBudget::new(
            RatePolicy {
                per_second: 0,
                ..RatePolicy::default()
            },
            [1, 2],
        );
        assert!((0..10_000).all(|_| b.allow(ms(0), "192.0.2.1".parse().unwrap())));
    }
}
