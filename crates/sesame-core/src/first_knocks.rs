//! The attempts that have matched exactly one knock, stored for speed under
//! a spoofed first-knock flood.
//!
//! A flood of spoofed first knocks creates one attempt per packet, and each
//! must push an older one out of a full store. In a general hash map that
//! costs four or so cache misses per packet (the new key's control bytes and
//! slot, then the evicted key's). Here the work per flood packet is one read
//! of a random cache line and one write to another:
//!
//! - an attempt is found at a place computed from its keyed hash: a 4-way
//!   bucket of 64 bytes (one cache line), which a lookup reads once. A place
//!   holds the whole 64-bit hash and where the attempt is in its lane; the
//!   address is compared there only when the hash matches, so a flood
//!   packet (no match) reads nothing else. There are twice as many places
//!   as attempts allowed, so a full bucket (whose soonest deadline then
//!   makes way) is uncommon;
//! - the attempts themselves, in insertion order, are in one FIFO lane per
//!   time-to-live, so insertion order is deadline order in a lane, and the
//!   oldest attempt and the next deadline are at lane fronts. Lanes are read
//!   and written sequentially. A lane item knows its place and the place
//!   knows its item, so pushing out the oldest attempt only writes to its
//!   place (a store does not stall like a load);
//! - an attempt removed early (it advanced, was reset, or made way in a full
//!   bucket) leaves a dead lane item behind, skipped when it reaches the
//!   front. A lane holds at most twice the store's bound: past that, its
//!   front goes even if live, which bounds memory whatever the churn.
//!
//! The bucket array is zeroed memory, so the OS maps its pages only when an
//! attempt first lands there: an idle daemon does not pay for the bound.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::table::SeededState;
use crate::time::Instant;

/// Places per bucket.
const WAYS: usize = 4;
/// `u64` words per place: the attempt's hash (made odd: 0 is an empty
/// place) and its lane position.
const WORDS_PER_PLACE: usize = 2;
const WORDS_PER_BUCKET: usize = WAYS * WORDS_PER_PLACE;
/// Lane positions keep the lane index in their top byte.
const LANE_SHIFT: u32 = 56;
const POSITION_MASK: u64 = (1 << LANE_SHIFT) - 1;
/// The lane item flag of a removed attempt.
const DEAD: u64 = 1;

/// An attempt's identity: source address and door. The door is a `u32`
/// (24 bytes instead of 32); the tracker's table uses it as its key too.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Attempt {
    pub(crate) src: IpAddr,
    pub(crate) door: u32,
}

/// Hashed in two fixed-size writes: the keyed SipHash costs per write, and
/// this runs per packet.
impl Hash for Attempt {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (bits, v6) = self.bits();
        state.write_u128(bits);
        state.write_u64(u64::from(self.door) << 1 | u64::from(v6));
    }
}

impl Attempt {
    pub(crate) fn new(src: IpAddr, door: usize) -> Self {
        // A config with 4 billion doors does not load; saturate regardless.
        let door = u32::try_from(door).unwrap_or(u32::MAX);
        Attempt { src, door }
    }

    pub(crate) fn door_id(&self) -> usize {
        self.door as usize
    }

    /// The address as 128 bits, and whether it is IPv6 (an IPv4 source and
    /// its IPv4-mapped IPv6 form are different attempts).
    fn bits(&self) -> (u128, bool) {
        match self.src {
            IpAddr::V4(a) => (u128::from(u32::from(a)), false),
            IpAddr::V6(a) => (u128::from(a), true),
        }
    }

    /// Door and family in 32 bits, never 0 (a zeroed place is empty). Door
    /// ids stop far below 2^31 (each door is a heap allocation); larger ones
    /// saturate.
    fn tag(&self) -> u32 {
        let door = self.door.min(u32::MAX / 2 - 1) + 1;
        door << 1 | u32::from(self.bits().1)
    }

    fn from_parts(hi: u64, lo: u64, tag: u32) -> Attempt {
        let bits = u128::from(hi) << 64 | u128::from(lo);
        let src = if tag & 1 == 1 {
            IpAddr::V6(Ipv6Addr::from(bits))
        } else {
            IpAddr::V4(Ipv4Addr::from(bits as u32))
        };
        Attempt {
            src,
            door: (tag >> 1) - 1,
        }
    }
}

/// An attempt pushed out of the store by [`FirstKnocks::insert`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Displaced {
    pub(crate) attempt: Attempt,
    /// True when it had already timed out.
    pub(crate) expired: bool,
}

/// A lane item: the attempt, its deadline and its place.
#[derive(Copy, Clone, Debug)]
struct Item {
    hi: u64,
    lo: u64,
    deadline: Instant,
    /// Tag (high 32 bits), place (31 bits) and the [`DEAD`] flag.
    word: u64,
}

impl Item {
    fn is_dead(&self) -> bool {
        self.word & DEAD != 0
    }

    fn place(&self) -> u32 {
        (self.word as u32) >> 1
    }

    fn attempt(&self) -> Attempt {
        Attempt::from_parts(self.hi, self.lo, (self.word >> 32) as u32)
    }
}

#[derive(Debug)]
struct Lane {
    ttl: Duration,
    items: VecDeque<Item>,
    /// Position of the front item; positions count every item ever pushed.
    front: u64,
}

impl Lane {
    /// The index in `items` of the item at `position`, if still queued.
    fn index(&self, position: u64) -> Option<usize> {
        usize::try_from(position.checked_sub(self.front)?).ok()
    }

    fn get_mut(&mut self, position: u64) -> Option<&mut Item> {
        let index = self.index(position)?;
        self.items.get_mut(index)
    }
}

/// Attempts at their first knock, bounded by the caller. See the module docs.
pub(crate) struct FirstKnocks {
    /// Buckets of `WORDS_PER_BUCKET` words from `base` on; bucket 0 starts
    /// on a 64-byte boundary.
    words: Vec<u64>,
    base: usize,
    buckets: usize,
    hasher: SeededState,
    /// By time-to-live; indexes are kept (places refer to them).
    lanes: Vec<Lane>,
    live: usize,
    /// Most items per lane, dead or live.
    lane_bound: usize,
    /// Latest insertion time: lanes stay in deadline order even if the
    /// caller's clock ever steps back.
    clock: Instant,
}

/// Keeps the bucket array out of debug output.
impl std::fmt::Debug for FirstKnocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirstKnocks")
            .field("live", &self.live)
            .field("buckets", &self.buckets)
            .field("lanes", &self.lanes.len())
            .finish_non_exhaustive()
    }
}

impl FirstKnocks {
    /// A store for `capacity` attempts (twice as many places), its hash
    /// keyed with `hash_seed`.
    pub(crate) fn new(capacity: usize, hash_seed: [u64; 2]) -> Self {
        let capacity = capacity.max(1);
        let buckets = (capacity * 2).div_ceil(WAYS);
        // `vec![0; n]` is a zeroed allocation: pages are mapped on first use.
        let words = vec![0u64; buckets * WORDS_PER_BUCKET + 8];
        let misalign = (words.as_ptr() as usize / 8) % 8;
        FirstKnocks {
            base: (8 - misalign) % 8,
            words,
            buckets,
            hasher: SeededState::new(hash_seed),
            lanes: Vec::new(),
            live: 0,
            lane_bound: capacity * 2,
            clock: Instant::ZERO,
        }
    }

    /// Number of attempts stored, timed out or not.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// The keyed hash of `attempt`: compute once per packet, pass to the
    /// other calls.
    pub(crate) fn hash(&self, attempt: &Attempt) -> u64 {
        self.hasher.hash_one(attempt)
    }

    fn bucket_start(&self, hash: u64) -> usize {
        // Multiply-shift maps the hash onto 0..buckets without a division.
        let bucket = ((u128::from(hash) * self.buckets as u128) >> 64) as usize;
        self.base + bucket * WORDS_PER_BUCKET
    }

    fn place_start(&self, place: u32) -> usize {
        self.base + place as usize * WORDS_PER_PLACE
    }

    fn place_of(&self, w: usize) -> u32 {
        ((w - self.base) / WORDS_PER_PLACE) as u32
    }

    /// The word index of `attempt`'s place, if stored.
    fn find(&self, hash: u64, attempt: &Attempt) -> Option<usize> {
        let start = self.bucket_start(hash);
        (0..WAYS)
            .map(|way| start + way * WORDS_PER_PLACE)
            .filter(|&w| self.words[w] == hash | 1)
            .find(|&w| self.item(w).is_some_and(|item| item.attempt() == *attempt))
    }

    /// The lane item of the attempt at word `w`.
    fn item(&self, w: usize) -> Option<&Item> {
        let position = self.words[w + 1];
        let lane = self.lanes.get((position >> LANE_SHIFT) as usize)?;
        lane.items.get(lane.index(position & POSITION_MASK)?)
    }

    /// The deadline of `attempt`, if stored (possibly already past).
    pub(crate) fn deadline(&self, hash: u64, attempt: &Attempt) -> Option<Instant> {
        let w = self.find(hash, attempt)?;
        self.item(w).map(|item| item.deadline)
    }

    /// Removes `attempt`; true if it was stored.
    pub(crate) fn remove(&mut self, hash: u64, attempt: &Attempt) -> bool {
        match self.find(hash, attempt) {
            Some(w) => {
                self.kill(w);
                true
            }
            None => false,
        }
    }

    /// Empties the place at word `w` and marks its lane item dead; drops
    /// dead items from that lane's front, so every front stays live.
    fn kill(&mut self, w: usize) {
        let position = self.words[w + 1];
        self.words[w] = 0;
        self.live -= 1;
        let lane = (position >> LANE_SHIFT) as usize;
        if let Some(item) = self
            .lanes
            .get_mut(lane)
            .and_then(|l| l.get_mut(position & POSITION_MASK))
        {
            item.word |= DEAD;
        }
        self.clean_lane(lane);
    }

    /// Drops dead items from the front of lane `i`.
    fn clean_lane(&mut self, i: usize) {
        let lane = &mut self.lanes[i];
        while lane.items.front().is_some_and(Item::is_dead) {
            lane.items.pop_front();
            lane.front += 1;
        }
    }

    /// Stores `attempt` (which must not be stored yet) from `since` until
    /// `since + ttl`. The caller keeps the total under its bound (see
    /// [`FirstKnocks::pop_oldest`]); this pushes an attempt out only when
    /// the bucket is full (its soonest deadline) or the lane is at its
    /// bound (its front), and reports it to `displaced`.
    pub(crate) fn insert(
        &mut self,
        since: Instant,
        hash: u64,
        attempt: &Attempt,
        ttl: Duration,
        mut displaced: impl FnMut(Displaced),
    ) {
        debug_assert!(self.find(hash, attempt).is_none());
        let since = since.max(self.clock);
        self.clock = since;
        let deadline = since + ttl;
        let lane = match self.lanes.iter().position(|l| l.ttl == ttl) {
            Some(i) => i,
            None => {
                self.lanes.push(Lane {
                    ttl,
                    items: VecDeque::new(),
                    front: 0,
                });
                self.lanes.len() - 1
            }
        };
        if self.lanes[lane].items.len() >= self.lane_bound {
            // Only reached when dead items pile up (churn): bound memory.
            if let Some(front) = self.lanes[lane].items.front().copied() {
                self.kill(self.place_start(front.place()));
                displaced(Displaced {
                    attempt: front.attempt(),
                    expired: front.deadline <= since,
                });
            }
        }
        let start = self.bucket_start(hash);
        let w = match (0..WAYS)
            .map(|way| start + way * WORDS_PER_PLACE)
            .find(|&w| self.words[w] == 0)
        {
            Some(empty) => empty,
            None => {
                // Full bucket: the soonest deadline makes way (a timed-out
                // one if any; within a lane, soonest is also oldest).
                let victim = (0..WAYS)
                    .map(|way| start + way * WORDS_PER_PLACE)
                    .filter_map(|w| self.item(w).map(|item| (w, *item)))
                    .min_by_key(|(_, item)| item.deadline);
                let Some((w, item)) = victim else {
                    debug_assert!(false, "place without a lane item");
                    return;
                };
                self.kill(w);
                displaced(Displaced {
                    attempt: item.attempt(),
                    expired: item.deadline <= since,
                });
                w
            }
        };
        let (bits, _) = attempt.bits();
        let (hi, lo, tag) = ((bits >> 64) as u64, bits as u64, attempt.tag());
        let place = self.place_of(w);
        let l = &mut self.lanes[lane];
        let position = l.front + l.items.len() as u64;
        l.items.push_back(Item {
            hi,
            lo,
            deadline,
            word: u64::from(tag) << 32 | u64::from(place) << 1,
        });
        self.words[w] = hash | 1;
        self.words[w + 1] = (lane as u64) << LANE_SHIFT | (position & POSITION_MASK);
        self.live += 1;
    }

    /// Earliest deadline of a stored attempt.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.lanes
            .iter()
            .filter_map(|l| l.items.front().map(|r| r.deadline))
            .min()
    }

    /// Removes the front attempt of the lane that `pick` ranks first.
    fn pop_front_by(&mut self, pick: impl Fn(&Lane, &Item) -> u64) -> Option<Attempt> {
        let lane = self
            .lanes
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.items.front().map(|item| (i, pick(l, item))))
            .min_by_key(|&(_, rank)| rank)
            .map(|(i, _)| i)?;
        let l = &mut self.lanes[lane];
        let item = l.items.pop_front()?;
        l.front += 1;
        debug_assert!(!item.is_dead(), "dead lane front");
        // Only a write to the place: the attempt is in the lane item.
        let w = self.place_start(item.place());
        self.words[w] = 0;
        self.live -= 1;
        self.clean_lane(lane);
        Some(item.attempt())
    }

    /// Removes the attempt with the soonest deadline if it is `<= now`.
    /// Call in a loop to collect them all, soonest first.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<Attempt> {
        if self.next_deadline()? > now {
            return None;
        }
        self.pop_front_by(|_, item| item.deadline.as_nanos())
    }

    /// Removes an attempt to make room: the soonest deadline if already
    /// past `now`, else the one inserted longest ago. Returns it and
    /// whether it had timed out.
    pub(crate) fn pop_oldest(&mut self, now: Instant) -> Option<(Attempt, bool)> {
        if self.next_deadline()? <= now {
            return self.pop_expired(now).map(|a| (a, true));
        }
        // Inserted at deadline - ttl.
        self.pop_front_by(|l, item| (item.deadline - l.ttl).as_nanos())
            .map(|a| (a, false))
    }

    /// Every stored attempt with its deadline, oldest first per lane.
    /// O(attempts + dead items).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Attempt, Instant)> + '_ {
        self.lanes
            .iter()
            .flat_map(|l| l.items.iter())
            .filter(|item| !item.is_dead())
            .map(|item| (item.attempt(), item.deadline))
    }

    /// Removes every attempt on `door`. O(attempts + dead items).
    pub(crate) fn remove_door(&mut self, door: usize) {
        let mut doomed = Vec::new();
        for item in self.lanes.iter().flat_map(|l| l.items.iter()) {
            if !item.is_dead() && item.attempt().door_id() == door {
                doomed.push(self.place_start(item.place()));
            }
        }
        for w in doomed {
            self.kill(w);
        }
    }

    /// Checks the internal invariants (tests only).
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let mut stored = 0;
        for place in 0..(self.buckets * WAYS) as u32 {
            let w = self.place_start(place);
            if self.words[w] == 0 {
                continue;
            }
            stored += 1;
            let item = self.item(w).expect("a place without its lane item");
            assert!(!item.is_dead(), "a place with a dead item");
            assert_eq!(item.place(), place, "item and place disagree");
            assert_eq!(self.words[w], self.hash(&item.attempt()) | 1, "hash");
        }
        assert_eq!(stored, self.live, "live count");
        let mut live_items = 0;
        for lane in &self.lanes {
            assert!(lane.items.len() <= self.lane_bound, "lane over its bound");
            if let Some(front) = lane.items.front() {
                assert!(!front.is_dead(), "dead lane front");
            }
            let mut prev = Instant::ZERO;
            for item in &lane.items {
                assert!(prev <= item.deadline, "lane out of deadline order");
                prev = item.deadline;
                live_items += usize::from(!item.is_dead());
            }
        }
        assert_eq!(live_items, self.live, "every attempt has one live item");
        assert_eq!(
            (self.words.as_ptr() as usize + self.base * 8) % 64,
            0,
            "bucket 0 off a cache line"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: [u64; 2] = [3, 5];

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn v4(n: u32, door: u32) -> Attempt {
        Attempt {
            src: IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32.wrapping_add(n))),
            door,
        }
    }

    fn insert(s: &mut FirstKnocks, ms: u64, a: Attempt, ttl_s: u64) -> Option<Displaced> {
        let h = s.hash(&a);
        let mut out = Vec::new();
        s.insert(t(ms), h, &a, Duration::from_secs(ttl_s), |d| out.push(d));
        s.check_invariants();
        assert!(out.len() <= 1, "{out:?}");
        out.pop()
    }

    fn has(s: &FirstKnocks, a: &Attempt) -> Option<Instant> {
        s.deadline(s.hash(a), a)
    }

    #[test]
    fn stores_finds_and_removes_v4_and_v6_apart() {
        let mut s = FirstKnocks::new(100, SEED);
        let a = v4(1, 0);
        let mapped = Attempt {
            src: IpAddr::V6(Ipv4Addr::from(0x0a00_0001).to_ipv6_mapped()),
            door: 0,
        };
        let v6 = Attempt {
            src: "2001:db8::1".parse().unwrap(),
            door: 7,
        };
        assert_eq!(insert(&mut s, 0, a, 5), None);
        assert_eq!(
            has(&s, &mapped),
            None,
            "an IPv4-mapped source is another source"
        );
        assert_eq!(has(&s, &Attempt { door: 1, ..a }), None, "another door");
        assert_eq!(insert(&mut s, 10, v6, 5), None);
        assert_eq!(insert(&mut s, 20, mapped, 5), None);
        assert_eq!(s.len(), 3);
        assert_eq!(has(&s, &a), Some(t(5000)));
        assert_eq!(has(&s, &v6), Some(t(5010)));
        let mut all: Vec<_> = s.iter().collect();
        all.sort_by_key(|(_, d)| *d);
        assert_eq!(all, [(a, t(5000)), (v6, t(5010)), (mapped, t(5020))]);
        assert!(s.remove(s.hash(&a), &a));
        assert!(!s.remove(s.hash(&a), &a));
        s.check_invariants();
        assert_eq!(has(&s, &a), None);
        assert_eq!(s.next_deadline(), Some(t(5010)), "the front moved on");
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn a_full_bucket_pushes_out_its_soonest_deadline() {
        // Capacity 2: one bucket of 4 places. Lanes (one per time-to-live)
        // stay under their bound of 4 items, so the fifth attempt meets a
        // full bucket (the caller's bound is not applied here).
        let mut s = FirstKnocks::new(2, SEED);
        assert_eq!(insert(&mut s, 0, v4(0, 0), 9), None);
        assert_eq!(insert(&mut s, 10, v4(1, 0), 9), None);
        assert_eq!(insert(&mut s, 20, v4(2, 0), 5), None);
        assert_eq!(insert(&mut s, 30, v4(3, 0), 7), None);
        assert_eq!(
            insert(&mut s, 100, v4(9, 0), 20),
            Some(Displaced {
                attempt: v4(2, 0),
                expired: false
            })
        );
        assert_eq!(s.next_deadline(), Some(t(7030)));
        // Much later every place has timed out: the one pushed out says so.
        assert_eq!(
            insert(&mut s, 60_000, v4(10, 0), 30),
            Some(Displaced {
                attempt: v4(3, 0),
                expired: true
            })
        );
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn oldest_and_expired_are_found_across_lanes() {
        let mut s = FirstKnocks::new(100, SEED);
        insert(&mut s, 0, v4(1, 0), 10); // deadline 10 s
        insert(&mut s, 100, v4(2, 1), 2); // deadline 2.1 s
        insert(&mut s, 200, v4(3, 1), 2); // deadline 2.2 s
                                          // Oldest by insertion, not by deadline.
        assert_eq!(s.pop_oldest(t(300)), Some((v4(1, 0), false)));
        s.check_invariants();
        // A timed-out attempt goes before any older live one.
        insert(&mut s, 400, v4(4, 0), 10);
        assert_eq!(s.pop_oldest(t(2150)), Some((v4(2, 1), true)));
        assert_eq!(s.pop_expired(t(2150)), None);
        assert_eq!(s.pop_expired(t(2200)), Some(v4(3, 1)));
        assert_eq!(s.next_deadline(), Some(t(10_400)));
        assert_eq!(s.pop_expired(t(10_400)), Some(v4(4, 0)));
        assert_eq!((s.len(), s.next_deadline()), (0, None));
        s.check_invariants();
    }

    #[test]
    fn remove_door_forgets_only_that_door() {
        let mut s = FirstKnocks::new(100, SEED);
        for i in 0..20 {
            insert(&mut s, u64::from(i), v4(i, i % 2), 5);
        }
        s.remove_door(1);
        s.check_invariants();
        assert_eq!(s.len(), 10);
        assert!(s.iter().all(|(a, _)| a.door == 0));
    }

    #[test]
    fn a_lane_full_of_dead_items_pushes_out_its_front() {
        // Capacity 2: lanes hold at most 4 items. Attempts removed early
        // leave dead items behind the live front.
        let mut s = FirstKnocks::new(2, SEED);
        insert(&mut s, 0, v4(0, 0), 5);
        for i in 1..4 {
            insert(&mut s, u64::from(i), v4(i, 0), 5);
            assert!(s.remove(s.hash(&v4(i, 0)), &v4(i, 0)));
        }
        s.check_invariants();
        assert_eq!(s.len(), 1);
        assert_eq!(
            insert(&mut s, 10, v4(9, 0), 5),
            Some(Displaced {
                attempt: v4(0, 0),
                expired: false
            })
        );
        assert_eq!(s.iter().collect::<Vec<_>>(), [(v4(9, 0), t(5010))]);
    }

    #[test]
    fn references_stay_bounded_under_churn() {
        const CAP: usize = 64;
        let mut s = FirstKnocks::new(CAP, SEED);
        let mut n = 0u32;
        for round in 0..2_000u64 {
            // Insert under the bound, as the tracker does, then remove some
            // (advanced or reset) so that references go stale.
            if s.len() >= CAP {
                s.pop_oldest(t(round)).expect("full store pops");
            }
            let a = v4(n, n % 3);
            n = n.wrapping_mul(2_654_435_761).wrapping_add(1);
            insert(&mut s, round, a, 1 + round % 3);
            if round % 3 == 0 {
                assert!(s.remove(s.hash(&a), &a));
            }
            s.check_invariants();
            assert!(s.len() <= CAP);
            while s.pop_expired(t(round.saturating_sub(500))).is_some() {}
        }
    }
}
