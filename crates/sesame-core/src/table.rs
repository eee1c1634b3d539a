//! A bounded map whose entries expire, with O(1) expected operations.
//!
//! Used by the tracker (key: source address and door, value: knock progress)
//! and by the grants. Design:
//!
//! - a [`HashMap`] keyed with SipHash-1-3 under a caller-supplied seed, so a
//!   flood of chosen source addresses cannot force collisions;
//! - one FIFO queue ("lane") per distinct time-to-live. Entries of a lane
//!   share their TTL and are pushed in time order, so queue order is deadline
//!   order and the lane front is the lane's next deadline;
//! - queue items carry a generation; an item whose entry was removed or
//!   re-inserted is stale and skipped lazily. Every lane front is kept live
//!   (so [`Table::next_deadline`] needs only `&self`), and the queues are
//!   compacted once stale items outnumber live entries, which keeps memory
//!   bounded (at most about twice the capacity) and every operation O(1)
//!   amortised, plus O(lanes) to compare lane fronts.
//!
//! - entries can be *protected* ([`Table::protect`]): a full table pushes
//!   out unprotected entries first, and a protected one only when nothing
//!   else is left. The tracker keeps attempts past their first knock here,
//!   protected ([`Table::insert_protected`]), and its first-knock attempts in
//!   a store of their own. Protected entries leave the FIFO lanes for a
//!   min-heap on deadline (O(log n) for those few entries).
//!
//! An entry is expired once `now >= deadline`.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::time::Duration;

use siphasher::sip::SipHasher13;

use crate::time::Instant;

/// Builds SipHash-1-3 hashers keyed with a caller-supplied seed.
///
/// The seed should be random per process (the daemon reads it from the OS);
/// the core itself has no RNG.
#[derive(Copy, Clone)]
pub struct SeededState {
    keys: [u64; 2],
}

impl SeededState {
    /// A hasher builder keyed with `seed`.
    pub const fn new(seed: [u64; 2]) -> Self {
        SeededState { keys: seed }
    }
}

impl BuildHasher for SeededState {
    type Hasher = SipHasher13;
    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.keys[0], self.keys[1])
    }
}

/// Keeps the keys out of logs.
impl fmt::Debug for SeededState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SeededState { .. }")
    }
}

/// Which live entry to push out when the table is full. Expired entries are
/// always pushed out first, soonest deadline first.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EvictionPolicy {
    /// The entry inserted longest ago.
    Oldest,
    /// The entry whose deadline comes first.
    SoonestDeadline,
}

/// What [`Table::insert`] did besides inserting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inserted<K, V> {
    /// A new entry was added without displacing another.
    New,
    /// The key was present; its old value is returned and its deadline reset.
    Replaced(V),
    /// The table was full: this other entry was removed to make room.
    Evicted {
        /// Key of the removed entry.
        key: K,
        /// Value of the removed entry.
        value: V,
        /// True when the removed entry had already expired.
        expired: bool,
    },
}

#[derive(Debug)]
struct Slot<V> {
    value: V,
    ttl: Duration,
    generation: u64,
    since: Instant,
    deadline: Instant,
    protected: bool,
}

/// A lane item. Its insertion time is `deadline - lane ttl`.
#[derive(Debug)]
struct Queued<K> {
    key: K,
    generation: u64,
    deadline: Instant,
}

/// A protected entry's place in the heap, ordered by deadline then age.
#[derive(Debug)]
struct Held<K> {
    key: K,
    generation: u64,
    deadline: Instant,
}

impl<K> PartialEq for Held<K> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<K> Eq for Held<K> {}

impl<K> PartialOrd for Held<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> Ord for Held<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.deadline, self.generation).cmp(&(other.deadline, other.generation))
    }
}

/// Stale queue items tolerated beyond the live entries before compacting;
/// avoids compacting small tables over and over.
const COMPACT_SLACK: usize = 64;

/// A bounded map from `K` to `V` whose entries expire. See the module docs.
#[derive(Debug)]
pub struct Table<K, V> {
    map: HashMap<K, Slot<V>, SeededState>,
    lanes: BTreeMap<Duration, VecDeque<Queued<K>>>,
    /// Items in all lanes, live and stale.
    queued: usize,
    /// Protected entries (and stale items), soonest deadline on top.
    held: BinaryHeap<Reverse<Held<K>>>,
    /// Live protected entries.
    protected: usize,
    capacity: usize,
    policy: EvictionPolicy,
    next_generation: u64,
    /// Latest `now` seen. Insertions use `max(now, clock)` so lane order stays
    /// deadline order even if the caller's clock ever steps back.
    clock: Instant,
}

impl<K: Hash + Eq + Clone, V> Table<K, V> {
    /// An empty table holding at most `capacity` entries (0 is taken as 1).
    pub fn new(capacity: usize, hash_seed: [u64; 2], policy: EvictionPolicy) -> Self {
        Table {
            map: HashMap::with_hasher(SeededState::new(hash_seed)),
            lanes: BTreeMap::new(),
            queued: 0,
            held: BinaryHeap::new(),
            protected: 0,
            capacity: capacity.max(1),
            policy,
            next_generation: 0,
            clock: Instant::ZERO,
        }
    }

    /// Number of entries, expired or not.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Most entries the table holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// True when `key` has an entry (possibly expired).
    pub fn contains_key(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// The value for `key`, possibly expired.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|s| &s.value)
    }

    /// The value for `key`, mutably. Its deadline is unchanged.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.map.get_mut(key).map(|s| &mut s.value)
    }

    /// When the entry for `key` expires.
    pub fn deadline(&self, key: &K) -> Option<Instant> {
        self.map.get(key).map(|s| s.deadline)
    }

    /// When the entry for `key` was inserted (its deadline minus its TTL).
    pub fn inserted_at(&self, key: &K) -> Option<Instant> {
        self.map.get(key).map(|s| s.since)
    }

    /// Earliest deadline of any entry, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.lanes
            .values()
            .filter_map(|q| q.front().map(|f| f.deadline))
            .chain(self.held.peek().map(|h| h.0.deadline))
            .min()
    }

    /// Number of protected entries.
    pub fn protected_len(&self) -> usize {
        self.protected
    }

    /// Protects the entry for `key` (deadline unchanged): a full table evicts
    /// it only when every other entry is protected too. Returns false if
    /// there is no such entry; protecting twice is harmless. O(log n).
    pub fn protect(&mut self, key: &K) -> bool {
        let generation = self.next_generation;
        let Some(slot) = self.map.get_mut(key) else {
            return false;
        };
        if slot.protected {
            return true;
        }
        self.next_generation += 1;
        slot.protected = true;
        // The lane item goes stale; the heap item replaces it.
        slot.generation = generation;
        let (ttl, deadline) = (slot.ttl, slot.deadline);
        self.protected += 1;
        self.held.push(Reverse(Held {
            key: key.clone(),
            generation,
            deadline,
        }));
        self.clean_front(ttl);
        self.maybe_compact();
        true
    }

    /// Inserts `key` with a deadline of `now + ttl`. An existing entry is
    /// replaced (new value, new deadline). When a new key meets a full table,
    /// one entry is evicted first: an expired one if any, else one chosen by
    /// the [`EvictionPolicy`].
    pub fn insert(&mut self, now: Instant, key: K, ttl: Duration, value: V) -> Inserted<K, V> {
        let since = now.max(self.clock);
        let deadline = since + ttl;
        let (outcome, generation) = self.put(now, &key, value, (since, ttl, deadline), false);
        self.lanes.entry(ttl).or_default().push_back(Queued {
            key,
            generation,
            deadline,
        });
        self.queued += 1;
        self.maybe_compact();
        outcome
    }

    /// Inserts `key` already protected (see [`Table::protect`]) with the
    /// given insertion time and deadline, for an entry that moves here from
    /// elsewhere and keeps its age. Otherwise as [`Table::insert`].
    pub fn insert_protected(
        &mut self,
        now: Instant,
        key: K,
        since: Instant,
        deadline: Instant,
        value: V,
    ) -> Inserted<K, V> {
        let ttl = deadline.saturating_since(since);
        let (outcome, generation) = self.put(now, &key, value, (since, ttl, deadline), true);
        self.protected += 1;
        self.held.push(Reverse(Held {
            key,
            generation,
            deadline,
        }));
        self.maybe_compact();
        outcome
    }

    /// Puts a new slot for `key` in the map, replacing its old one or
    /// evicting another entry if the table is full; the caller queues it.
    /// Returns what happened and the slot's generation.
    fn put(
        &mut self,
        now: Instant,
        key: &K,
        value: V,
        (since, ttl, deadline): (Instant, Duration, Instant),
        protected: bool,
    ) -> (Inserted<K, V>, u64) {
        self.clock = self.clock.max(now).max(since);
        let generation = self.next_generation;
        self.next_generation += 1;
        let slot = Slot {
            value,
            ttl,
            generation,
            since,
            deadline,
            protected,
        };
        let outcome = if let Some(existing) = self.map.get_mut(key) {
            let old = std::mem::replace(existing, slot);
            // The old item is now stale; it may be its lane's or the heap's front.
            self.forget(&old);
            Inserted::Replaced(old.value)
        } else {
            let outcome = if self.map.len() >= self.capacity {
                self.evict_one(now)
            } else {
                Inserted::New
            };
            self.map.insert(key.clone(), slot);
            outcome
        };
        (outcome, generation)
    }

    /// Removes one entry as a full table would to make room (expired first,
    /// then unprotected, then protected), returning it and whether it had
    /// expired. None when empty.
    pub fn evict(&mut self, now: Instant) -> Option<(K, V, bool)> {
        if self.map.is_empty() {
            return None;
        }
        match self.evict_one(now) {
            Inserted::Evicted {
                key,
                value,
                expired,
            } => Some((key, value, expired)),
            _ => None,
        }
    }

    /// Removes the entry for `key`, returning its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let slot = self.map.remove(key)?;
        self.forget(&slot);
        self.maybe_compact();
        Some(slot.value)
    }

    /// Bookkeeping for a slot that left the map or was replaced: its queue
    /// or heap item is stale now.
    fn forget(&mut self, slot: &Slot<V>) {
        if slot.protected {
            self.protected -= 1;
            self.clean_held();
        } else {
            self.clean_front(slot.ttl);
        }
    }

    /// Removes and returns one entry with `deadline <= now`, soonest first.
    /// Call in a loop to collect all of them.
    pub fn pop_expired(&mut self, now: Instant) -> Option<(K, V)> {
        let lane = self.soonest_front();
        let held = self.held.peek().map(|h| h.0.deadline);
        match (lane, held) {
            (Some((_, d)), Some(h)) if h < d => (h <= now).then(|| self.pop_held()).flatten(),
            (None, Some(h)) => (h <= now).then(|| self.pop_held()).flatten(),
            (Some((ttl, d)), _) => (d <= now).then(|| self.pop_front(ttl)).flatten(),
            (None, None) => None,
        }
    }

    /// All entries with their deadlines, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V, Instant)> + '_ {
        self.map.iter().map(|(k, s)| (k, &s.value, s.deadline))
    }

    /// Removes every entry, returning them soonest deadline first.
    pub fn drain(&mut self) -> Vec<(K, V)> {
        let mut all: Vec<_> = self.map.drain().collect();
        all.sort_by_key(|(_, s)| (s.deadline, s.generation));
        self.lanes.clear();
        self.queued = 0;
        self.held.clear();
        self.protected = 0;
        all.into_iter().map(|(k, s)| (k, s.value)).collect()
    }

    /// The lane whose front has the soonest deadline, and that deadline.
    fn soonest_front(&self) -> Option<(Duration, Instant)> {
        self.lanes
            .iter()
            .filter_map(|(ttl, q)| q.front().map(|f| (*ttl, f)))
            .min_by_key(|(_, f)| (f.deadline, f.generation))
            .map(|(ttl, f)| (ttl, f.deadline))
    }

    /// Removes one entry to make room; see [`Table::insert`]. Expired
    /// entries go first, then unprotected ones, then protected ones.
    fn evict_one(&mut self, now: Instant) -> Inserted<K, V> {
        let lane = self.soonest_front();
        let held = self.held.peek().map(|h| h.0.deadline);
        let popped = match (lane, held) {
            (_, Some(h)) if h <= now && lane.is_none_or(|(_, d)| h < d) => {
                self.pop_held().map(|kv| (kv, true))
            }
            (Some((soonest, deadline)), _) => {
                let expired = deadline <= now;
                let lane = if expired || self.policy == EvictionPolicy::SoonestDeadline {
                    soonest
                } else {
                    // Oldest insertion: since = deadline - ttl, compared
                    // without subtracting (a + tb < b + ta).
                    self.lanes
                        .iter()
                        .filter_map(|(ttl, q)| q.front().map(|f| (*ttl, f)))
                        .min_by(|(ta, a), (tb, b)| {
                            (a.deadline + *tb, a.generation).cmp(&(b.deadline + *ta, b.generation))
                        })
                        .map_or(soonest, |(ttl, _)| ttl)
                };
                self.pop_front(lane).map(|kv| (kv, expired))
            }
            (None, Some(h)) => self.pop_held().map(|kv| (kv, h <= now)),
            (None, None) => {
                // Unreachable while the invariants hold (a full table has
                // queued entries); growing by one beats panicking in a daemon.
                debug_assert!(false, "full table with nothing queued");
                None
            }
        };
        match popped {
            Some(((key, value), expired)) => Inserted::Evicted {
                key,
                value,
                expired,
            },
            None => Inserted::New,
        }
    }

    /// Removes the (live) top protected entry.
    fn pop_held(&mut self) -> Option<(K, V)> {
        let Reverse(item) = self.held.pop()?;
        let slot = self.map.remove(&item.key);
        debug_assert!(slot
            .as_ref()
            .is_some_and(|s| s.generation == item.generation && s.protected));
        if slot.is_some() {
            self.protected -= 1;
        }
        self.clean_held();
        slot.map(|s| (item.key, s.value))
    }

    /// Drops stale items from the top of the heap.
    fn clean_held(&mut self) {
        while let Some(top) = self.held.peek() {
            if generation_matches(&self.map, &top.0.key, top.0.generation) {
                break;
            }
            self.held.pop();
        }
    }

    /// Removes the (live) front entry of lane `ttl`.
    fn pop_front(&mut self, ttl: Duration) -> Option<(K, V)> {
        let item = self.lanes.get_mut(&ttl)?.pop_front()?;
        self.queued -= 1;
        let slot = self.map.remove(&item.key);
        debug_assert!(slot
            .as_ref()
            .is_some_and(|s| s.generation == item.generation));
        self.clean_front(ttl);
        slot.map(|s| (item.key, s.value))
    }

    /// Drops stale items from the front of lane `ttl`, and the lane if empty.
    fn clean_front(&mut self, ttl: Duration) {
        let Some(queue) = self.lanes.get_mut(&ttl) else {
            return;
        };
        while let Some(front) = queue.front() {
            if is_live(&self.map, front) {
                break;
            }
            queue.pop_front();
            self.queued -= 1;
        }
        if queue.is_empty() {
            self.lanes.remove(&ttl);
        }
    }

    /// Drops every stale item once they outnumber the live entries (plus
    /// slack). The O(queued) cost is paid for by the removals that made those
    /// items stale, so it is O(1) amortised.
    fn maybe_compact(&mut self) {
        if self.queued + self.held.len() <= 2 * self.map.len() + COMPACT_SLACK {
            return;
        }
        let map = &self.map;
        self.lanes.retain(|_, queue| {
            queue.retain(|item| is_live(map, item));
            !queue.is_empty()
        });
        self.queued = self.lanes.values().map(VecDeque::len).sum();
        self.held
            .retain(|h| generation_matches(map, &h.0.key, h.0.generation));
    }

    /// Checks the internal invariants (tests only).
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        assert!(self.map.len() <= self.capacity, "over capacity");
        let total: usize = self.lanes.values().map(VecDeque::len).sum();
        assert_eq!(total, self.queued, "queued count");
        assert!(
            self.queued + self.held.len() <= 2 * self.map.len() + COMPACT_SLACK + 1,
            "queues not compacted: {} items for {} entries",
            self.queued,
            self.map.len()
        );
        let mut live = 0;
        for (ttl, queue) in &self.lanes {
            assert!(!queue.is_empty(), "empty lane kept");
            assert!(is_live(&self.map, queue.front().unwrap()), "stale front");
            let mut prev: Option<&Queued<K>> = None;
            for item in queue {
                if let Some(p) = prev {
                    assert!(p.deadline <= item.deadline);
                }
                prev = Some(item);
                if is_live(&self.map, item) {
                    live += 1;
                    assert!(!self.map[&item.key].protected, "protected entry in a lane");
                    assert_eq!(self.map[&item.key].ttl, *ttl);
                    assert_eq!(self.map[&item.key].deadline, item.deadline);
                }
            }
        }
        if let Some(top) = self.held.peek() {
            assert!(
                generation_matches(&self.map, &top.0.key, top.0.generation),
                "stale heap top"
            );
        }
        let mut held_live = 0;
        for Reverse(item) in &self.held {
            if generation_matches(&self.map, &item.key, item.generation) {
                held_live += 1;
                assert!(
                    self.map[&item.key].protected,
                    "unprotected entry in the heap"
                );
                assert_eq!(self.map[&item.key].deadline, item.deadline);
            }
        }
        assert_eq!(held_live, self.protected, "protected count");
        assert_eq!(
            self.map.values().filter(|s| s.protected).count(),
            self.protected
        );
        live += held_live;
        assert_eq!(live, self.map.len(), "every entry queued exactly once");
    }

    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }
}

fn is_live<K: Hash + Eq, V>(map: &HashMap<K, Slot<V>, SeededState>, item: &Queued<K>) -> bool {
    generation_matches(map, &item.key, item.generation)
}

fn generation_matches<K: Hash + Eq, V>(
    map: &HashMap<K, Slot<V>, SeededState>,
    key: &K,
    generation: u64,
) -> bool {
    map.get(key).is_some_and(|s| s.generation == generation)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: [u64; 2] = [1, 2];

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn insert_get_remove_and_deadlines() {
        let mut table = Table::new(10, SEED, EvictionPolicy::Oldest);
        assert_eq!(table.insert(t(0), 1u32, secs(5), "a"), Inserted::New);
        assert_eq!(table.insert(t(1000), 2, secs(2), "b"), Inserted::New);
        assert_eq!(table.len(), 2);
        assert_eq!(table.get(&1), Some(&"a"));
        assert_eq!(table.deadline(&1), Some(t(5000)));
        assert_eq!(table.inserted_at(&2), Some(t(1000)));
        assert_eq!(table.next_deadline(), Some(t(3000)));
        *table.get_mut(&2).unwrap() = "B";
        assert_eq!(table.remove(&2), Some("B"));
        assert_eq!(table.remove(&2), None);
        assert_eq!(table.next_deadline(), Some(t(5000)));
        table.check_invariants();
    }

    #[test]
    fn replacing_resets_the_deadline() {
        let mut table = Table::new(10, SEED, EvictionPolicy::Oldest);
        table.insert(t(0), 1u32, secs(5), 'a');
        table.insert(t(1000), 2, secs(5), 'b');
        assert_eq!(
            table.insert(t(2000), 1, secs(5), 'c'),
            Inserted::Replaced('a')
        );
        assert_eq!(table.next_deadline(), Some(t(6000)));
        assert_eq!(table.pop_expired(t(6000)), Some((2, 'b')));
        assert_eq!(table.pop_expired(t(6999)), None);
        assert_eq!(table.pop_expired(t(7000)), Some((1, 'c')));
        assert!(table.is_empty());
        assert_eq!(table.next_deadline(), None);
        table.check_invariants();
    }

    #[test]
    fn expiry_is_in_deadline_order_across_lanes() {
        let mut table = Table::new(10, SEED, EvictionPolicy::Oldest);
        table.insert(t(0), 'a', secs(10), ());
        table.insert(t(1000), 'b', secs(2), ());
        table.insert(t(2000), 'c', secs(5), ());
        table.insert(t(3000), 'd', secs(2), ());
        let mut order = Vec::new();
        while let Some((k, ())) = table.pop_expired(t(60_000)) {
            order.push(k);
        }
        assert_eq!(order, ['b', 'd', 'c', 'a']);
    }

    #[test]
    fn full_table_evicts_oldest_live_entry() {
        let mut table = Table::new(3, SEED, EvictionPolicy::Oldest);
        table.insert(t(0), 'a', secs(100), ());
        table.insert(t(1), 'b', secs(1), ());
        table.insert(t(2), 'c', secs(50), ());
        // 'b' expires first but is live at t=3: the oldest ('a') goes.
        assert_eq!(
            table.insert(t(3), 'd', secs(100), ()),
            Inserted::Evicted {
                key: 'a',
                value: (),
                expired: false
            }
        );
        assert_eq!(table.len(), 3);
        table.check_invariants();
    }

    #[test]
    fn full_table_evicts_expired_before_live() {
        let mut table = Table::new(3, SEED, EvictionPolicy::Oldest);
        table.insert(t(0), 'a', secs(100), ());
        table.insert(t(1), 'b', secs(1), ());
        table.insert(t(2), 'c', secs(50), ());
        assert_eq!(
            table.insert(t(1001), 'd', secs(100), ()),
            Inserted::Evicted {
                key: 'b',
                value: (),
                expired: true
            }
        );
    }

    #[test]
    fn soonest_deadline_policy() {
        let mut table = Table::new(2, SEED, EvictionPolicy::SoonestDeadline);
        table.insert(t(0), 'a', secs(100), ());
        table.insert(t(1), 'b', secs(10), ());
        assert_eq!(
            table.insert(t(2), 'c', secs(100), ()),
            Inserted::Evicted {
                key: 'b',
                value: (),
                expired: false
            }
        );
    }

    #[test]
    fn capacity_zero_means_one() {
        let mut table = Table::new(0, SEED, EvictionPolicy::Oldest);
        assert_eq!(table.capacity(), 1);
        table.insert(t(0), 1u8, secs(1), ());
        assert!(matches!(
            table.insert(t(0), 2, secs(1), ()),
            Inserted::Evicted { key: 1, .. }
        ));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn queues_stay_bounded_under_churn() {
        // Insert/replace/remove churn that leaves stale items mid-queue.
        let mut table = Table::new(100, SEED, EvictionPolicy::Oldest);
        for i in 0..100_000u64 {
            let key = (i * 7919) % 150;
            match i % 3 {
                0 => {
                    table.remove(&key);
                }
                _ => {
                    table.insert(t(i), key, Duration::from_millis(500 + key % 3), i);
                }
            }
            assert!(table.queued() <= 2 * table.len() + COMPACT_SLACK + 1);
            if i % 997 == 0 {
                table.check_invariants();
            }
        }
        table.check_invariants();
    }

    #[test]
    fn clock_stepping_back_keeps_order() {
        let mut table = Table::new(10, SEED, EvictionPolicy::Oldest);
        table.insert(t(5000), 'a', secs(1), ());
        table.insert(t(1000), 'b', secs(1), ());
        // 'b' is treated as inserted at 5000, after 'a'.
        assert_eq!(table.deadline(&'b'), Some(t(6000)));
        table.check_invariants();
        assert_eq!(table.pop_expired(t(6000)), Some(('a', ())));
        assert_eq!(table.pop_expired(t(6000)), Some(('b', ())));
    }

    #[test]
    fn drain_empties_in_deadline_order() {
        let mut table = Table::new(10, SEED, EvictionPolicy::Oldest);
        table.insert(t(0), 'a', secs(10), ());
        table.insert(t(0), 'b', secs(1), ());
        let drained: Vec<char> = table.drain().into_iter().map(|(k, ())| k).collect();
        assert_eq!(drained, ['b', 'a']);
        assert!(table.is_empty());
        assert_eq!(table.next_deadline(), None);
        table.check_invariants();
    }

    #[test]
    fn seeded_hasher_depends_on_seed() {
        let h = |seed| SeededState::new(seed).hash_one(42u32);
        assert_eq!(h([1, 2]), h([1, 2]));
        assert_ne!(h([1, 2]), h([2, 1]));
        assert_eq!(
            format!("{:?}", SeededState::new([7, 7])),
            "SeededState { .. }"
        );
    }

    #[test]
    fn protected_entries_are_evicted_last() {
        let mut table = Table::new(3, SEED, EvictionPolicy::Oldest);
        table.insert(t(0), 1, secs(10), "a");
        table.insert(t(1), 2, secs(10), "b");
        assert!(table.protect(&1));
        assert!(table.protect(&1), "twice is harmless");
        assert!(!table.protect(&9), "no such entry");
        table.check_invariants();
        // A flood of new keys pushes out only unprotected entries.
        for k in 10..1_000 {
            match table.insert(t(2 + k), k, secs(10), "x") {
                Inserted::Evicted { key, expired, .. } => {
                    assert_ne!(key, 1, "protected entry evicted by key {k}");
                    assert!(!expired);
                }
                other => assert!(k < 11, "key {k}: {other:?}"),
            }
            table.check_invariants();
        }
        assert_eq!(table.get(&1), Some(&"a"));
        assert_eq!(table.deadline(&1), Some(t(10_000)), "deadline unchanged");
        assert_eq!(table.protected_len(), 1);
    }

    #[test]
    fn an_all_protected_table_evicts_the_soonest_deadline() {
        let mut table = Table::new(2, SEED, EvictionPolicy::Oldest);
        table.insert(t(0), 1, secs(20), ());
        table.insert(t(5), 2, secs(10), ());
        assert!(table.protect(&1) && table.protect(&2));
        match table.insert(t(6), 3, secs(10), ()) {
            Inserted::Evicted { key, expired, .. } => {
                assert_eq!(key, 2, "deadline 15 s before 20 s");
                assert!(!expired);
            }
            other => panic!("{other:?}"),
        }
        table.check_invariants();
        assert_eq!(table.protected_len(), 1);
    }

    #[test]
    fn protected_entries_expire_in_deadline_order_with_the_rest() {
        let mut table = Table::new(10, SEED, EvictionPolicy::Oldest);
        table.insert(t(0), 1, secs(5), ());
        table.insert(t(1), 2, secs(5), ());
        table.insert(t(2), 3, secs(5), ());
        table.insert(t(3), 4, secs(1), ());
        assert!(table.protect(&2));
        assert!(table.protect(&3));
        table.check_invariants();
        assert_eq!(table.next_deadline(), Some(t(1_003)));
        let mut order = Vec::new();
        while let Some((k, ())) = table.pop_expired(t(60_000)) {
            order.push(k);
            table.check_invariants();
        }
        assert_eq!(order, vec![4, 1, 2, 3]);
        assert!(table.is_empty());
        assert_eq!(table.protected_len(), 0);
    }

    #[test]
    fn an_expired_protected_entry_is_evicted_before_live_ones() {
        let mut table = Table::new(2, SEED, EvictionPolicy::Oldest);
        table.insert(t(0), 1, secs(1), ());
        table.insert(t(1), 2, secs(10), ());
        assert!(table.protect(&1));
        match table.insert(t(2_000), 3, secs(10), ()) {
            Inserted::Evicted { key, expired, .. } => {
                assert_eq!(key, 1);
                assert!(expired);
            }
            other => panic!("{other:?}"),
        }
        table.check_invariants();
    }

    #[test]
    fn replacing_or_removing_a_protected_entry_unprotects_it() {
        let mut table = Table::new(4, SEED, EvictionPolicy::Oldest);
        table.insert(t(0), 1, secs(5), 0);
        table.insert(t(0), 2, secs(5), 0);
        assert!(table.protect(&1) && table.protect(&2));
        assert_eq!(table.insert(t(1), 1, secs(5), 7), Inserted::Replaced(0));
        assert_eq!(table.remove(&2), Some(0));
        assert_eq!(table.protected_len(), 0);
        table.check_invariants();
        // Churn through protect/remove cycles: the heap is compacted.
        for k in 0..10_000u32 {
            table.insert(t(2), 100 + k, secs(5), 0);
            assert!(table.protect(&(100 + k)));
            if k % 2 == 0 {
                table.remove(&(100 + k));
            }
            table.check_invariants();
        }
        assert!(table.held.len() <= 2 * table.len() + COMPACT_SLACK + 1);
    }
}
