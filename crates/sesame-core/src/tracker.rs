//! The knock state machine: progress per (source address, door).
//!
//! Each observed packet is routed through an index from (protocol, port) to
//! the doors whose sequence uses it, so the work per packet depends on the
//! number of doors sharing that port, never on the number of sources being
//! tracked. At most `capacity` attempts are tracked, in two stores:
//!
//! - attempts at their first knock, which a spoofed flood creates at one per
//!   packet, in [`FirstKnocks`](crate::first_knocks): a store that costs a
//!   flood packet about two cache misses;
//! - attempts past their first knock in a [`Table`], all protected: when the
//!   bound is reached, the oldest first-knock attempt is evicted (and
//!   reported) rather than the new one refused, and an advanced attempt only
//!   when no first-knock attempt is left. Spoofed first knocks, which cost
//!   an attacker one packet each, cannot push out a knock in progress.
//!
//! Differences from knockd, on purpose:
//! - a repeat of the knock just matched (a SYN retransmit, a client knocking
//!   twice) is ignored instead of resetting the attempt;
//! - timeouts are reported by [`Tracker::expire`] when they happen, not on the
//!   source's next packet.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::ban::{Ban, BanPolicy, FailureBudget, Prefix};
use crate::door::{tcp_flag, Door, Knock, PortRange, Proto};
use crate::first_knocks::{Attempt, FirstKnocks};
use crate::packet::Packet;
use crate::table::{EvictionPolicy, SeededState, Table};
use crate::time::Instant;

/// Index of a door in the list given to [`Tracker::new`].
pub type DoorId = usize;

/// The parts of a packet the state machine looks at.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Observation {
    /// Source address of the packet.
    pub src: IpAddr,
    /// Destination address (matched against a door's `target`).
    pub dst: IpAddr,
    /// Transport protocol.
    pub proto: Proto,
    /// Destination port.
    pub dst_port: u16,
    /// TCP flags byte (ignored for UDP).
    pub tcp_flags: u8,
}

impl Observation {
    /// The knock this packet would be.
    pub const fn knock(&self) -> Knock {
        Knock {
            port: self.dst_port,
            proto: self.proto,
        }
    }
}

impl From<&Packet<'_>> for Observation {
    fn from(p: &Packet<'_>) -> Self {
        Observation {
            src: p.src,
            dst: p.dst,
            proto: p.proto,
            dst_port: p.dst_port,
            tcp_flags: p.tcp_flags,
        }
    }
}

/// Something that happened to a (source, door) knock attempt.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A knock was accepted; `matched` knocks of `of` so far (1-based).
    Stage {
        /// Knocking address.
        src: IpAddr,
        /// Door being knocked.
        door: DoorId,
        /// Knocks matched so far, including this one.
        matched: usize,
        /// Length of the door's sequence.
        of: usize,
    },
    /// A repeat of the knock just matched: ignored, progress kept.
    Duplicate {
        /// Knocking address.
        src: IpAddr,
        /// Door being knocked.
        door: DoorId,
        /// Knocks matched so far.
        matched: usize,
    },
    /// A knock of this door's sequence arrived out of order: progress lost.
    Reset {
        /// Knocking address.
        src: IpAddr,
        /// Door being knocked.
        door: DoorId,
        /// Knocks matched before the wrong one.
        matched_before: usize,
        /// The out-of-order knock.
        got: Knock,
    },
    /// The door's `seq_timeout` passed before the sequence completed.
    Timeout {
        /// Knocking address.
        src: IpAddr,
        /// Door being knocked.
        door: DoorId,
        /// Knocks matched when time ran out.
        matched: usize,
    },
    /// The attempt was pushed out because the table was full.
    Evicted {
        /// Knocking address.
        src: IpAddr,
        /// Door being knocked.
        door: DoorId,
        /// Knocks matched when evicted.
        matched: usize,
    },
    /// The full sequence arrived in order and in time: open the door.
    Open {
        /// Knocking address.
        src: IpAddr,
        /// Door to open.
        door: DoorId,
    },
    /// `src`'s prefix used up its failure budget (its last failure was on
    /// `door`): its knocks are ignored on every door until `until`.
    Banned {
        /// The address whose failure started the ban.
        src: IpAddr,
        /// The door of that failure.
        door: DoorId,
        /// The banned prefix.
        prefix: Prefix,
        /// When the ban ends.
        until: Instant,
    },
}

impl Event {
    /// The knocking address.
    pub const fn src(&self) -> IpAddr {
        match *self {
            Event::Stage { src, .. }
            | Event::Duplicate { src, .. }
            | Event::Reset { src, .. }
            | Event::Timeout { src, .. }
            | Event::Evicted { src, .. }
            | Event::Open { src, .. }
            | Event::Banned { src, .. } => src,
        }
    }

    /// The door concerned.
    pub const fn door(&self) -> DoorId {
        match *self {
            Event::Stage { door, .. }
            | Event::Duplicate { door, .. }
            | Event::Reset { door, .. }
            | Event::Timeout { door, .. }
            | Event::Evicted { door, .. }
            | Event::Open { door, .. }
            | Event::Banned { door, .. } => door,
        }
    }
}

/// Where an attempt's progress is kept.
#[derive(Copy, Clone, Debug)]
enum Progress {
    /// In [`FirstKnocks`]: one knock matched.
    First { hash: u64, deadline: Instant },
    /// In the table: `matched` (2 or more) knocks.
    Advanced { matched: usize, deadline: Instant },
}

impl Progress {
    /// Knocks matched so far, and when the attempt times out.
    fn matched_and_deadline(self) -> (usize, Instant) {
        match self {
            Progress::First { deadline, .. } => (1, deadline),
            Progress::Advanced { matched, deadline } => (matched, deadline),
        }
    }
}

/// A guard range and the doors it guards, ascending.
#[derive(Clone, Debug)]
struct GuardGroup {
    range: PortRange,
    doors: Vec<DoorId>,
}

/// Tracks knock progress for every (source, door) pair. See the module docs.
#[derive(Debug)]
pub struct Tracker {
    doors: Vec<Door>,
    /// Doors whose sequence contains a knock, ascending, without repeats.
    index: HashMap<Knock, Vec<DoorId>, SeededState>,
    /// Guard ranges: a hit resets the source's attempt on each door listed
    /// whose sequence does not contain the knock.
    guards: Vec<GuardGroup>,
    /// Failures per source prefix, and bans.
    budget: FailureBudget,
    /// Attempts that matched one knock: the ones a spoofed flood creates.
    first: FirstKnocks,
    /// Attempts that matched 2 ..= len - 1 knocks, all protected: they go
    /// only when no first-knock attempt is left to push out.
    table: Table<Attempt, usize>,
    /// Most attempts in `first` and `table` together.
    capacity: usize,
    /// Every door's `target`: knocks addressed there belong to those doors
    /// only, not to doors listening on the host's own addresses.
    targets: Vec<IpAddr>,
    hash_seed: [u64; 2],
}

impl Tracker {
    /// A tracker for `doors` (already validated) holding at most `capacity`
    /// attempts in progress (0 is taken as 1). `hash_seed` keys the hashes
    /// and should be random.
    pub fn new(doors: Vec<Door>, capacity: usize, hash_seed: [u64; 2]) -> Self {
        let capacity = capacity.max(1);
        let mut tracker = Tracker {
            doors,
            index: HashMap::with_hasher(SeededState::new(hash_seed)),
            guards: Vec::new(),
            budget: FailureBudget::new(BanPolicy::OFF, hash_seed),
            first: FirstKnocks::new(capacity, hash_seed),
            table: Table::new(capacity, hash_seed, EvictionPolicy::Oldest),
            capacity,
            targets: Vec::new(),
            hash_seed,
        };
        tracker.reindex();
        tracker
    }

    fn reindex(&mut self) {
        let mut index: HashMap<Knock, Vec<DoorId>, SeededState> =
            HashMap::with_hasher(SeededState::new(self.hash_seed));
        for (id, door) in self.doors.iter().enumerate() {
            for knock in &door.sequence {
                let ids = index.entry(*knock).or_default();
                // Ids are visited in ascending order, so a repeat is last.
                if ids.last() != Some(&id) {
                    ids.push(id);
                }
            }
        }
        self.index = index;
        self.targets = self.doors.iter().filter_map(|d| d.target).collect();
        let mut guards: Vec<GuardGroup> = Vec::new();
        for (id, door) in self.doors.iter().enumerate() {
            if door.sequence.is_empty() {
                continue;
            }
            for range in door.guard_ranges() {
                match guards.iter_mut().find(|g| g.range == range) {
                    Some(g) => g.doors.push(id),
                    None => guards.push(GuardGroup {
                        range,
                        doors: vec![id],
                    }),
                }
            }
        }
        self.guards = guards;
    }

    /// Sets the failure budget's policy (see [`crate::ban`]); counts and
    /// live bans are kept. Banning is off until this is called.
    pub fn set_ban_policy(&mut self, policy: BanPolicy) {
        self.budget.set_policy(policy);
    }

    /// The failure budget: live bans and counters.
    pub fn budget(&self) -> &FailureBudget {
        &self.budget
    }

    /// Moves `old`'s failure counts and bans here (a reload: a ban must not
    /// end because the config was reloaded).
    pub fn carry_bans_from(&mut self, old: &mut Tracker, now: Instant) {
        self.budget.carry_from(&mut old.budget, now);
    }

    /// Lifts bans (see [`FailureBudget::unban`]).
    pub fn unban(&mut self, which: Option<Prefix>) -> Vec<Prefix> {
        self.budget.unban(which)
    }

    /// Drops ended bans and stale failure counts; returns the bans that
    /// ended.
    pub fn expire_bans(&mut self, now: Instant) -> Vec<Prefix> {
        self.budget.expire(now)
    }

    /// Replaces the sequence of `door` (a one-time sequence was used up) and
    /// forgets every attempt in progress on it. An empty `sequence` disables
    /// the door: nothing matches it any more. Costs O(doors + capacity).
    pub fn set_sequence(&mut self, door: DoorId, sequence: Vec<Knock>) {
        let Some(d) = self.doors.get_mut(door) else {
            return;
        };
        d.sequence = sequence;
        let stale: Vec<Attempt> = self
            .table
            .iter()
            .filter(|(key, _, _)| key.door_id() == door)
            .map(|(k, _, _)| *k)
            .collect();
        for key in stale {
            self.table.remove(&key);
        }
        self.first.remove_door(door);
        self.reindex();
    }

    /// The doors, indexed by [`DoorId`].
    pub fn doors(&self) -> &[Door] {
        &self.doors
    }

    /// Most attempts tracked at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of attempts in progress (including expired ones not yet
    /// collected by [`Tracker::expire`]).
    pub fn in_progress(&self) -> usize {
        self.first.len() + self.table.len()
    }

    /// Attempts in progress per door, indexed by [`DoorId`]. O(capacity).
    pub fn in_progress_by_door(&self) -> Vec<usize> {
        let mut out = vec![0; self.doors.len()];
        let doors = self.table.iter().map(|(key, _, _)| key.door_id());
        for door in doors.chain(self.first.iter().map(|(a, _)| a.door_id())) {
            if let Some(n) = out.get_mut(door) {
                *n += 1;
            }
        }
        out
    }

    /// Knocks matched so far by `src` on `door`, if an attempt is tracked.
    pub fn progress(&self, src: IpAddr, door: DoorId) -> Option<usize> {
        let key = Attempt::new(src, door);
        locate(&self.first, &self.table, &key, self.first.hash(&key))
            .map(|at| at.matched_and_deadline().0)
    }

    /// When the next attempt times out; call [`Tracker::expire`] then.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.first.next_deadline(), self.table.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Feeds one packet seen at `now`, appending what happened to `events`.
    /// Events for different doors come in ascending door order. Packets from
    /// a banned prefix are ignored; a reset or timeout counts against the
    /// source's failure budget and may end in [`Event::Banned`].
    pub fn observe(&mut self, now: Instant, obs: &Observation, events: &mut Vec<Event>) {
        let knock = obs.knock();
        let routed = self.index.get(&knock);
        let guarded = self.guards.iter().any(|g| g.range.contains(knock));
        if routed.is_none() && !guarded {
            return;
        }
        if self.budget.is_banned(now, obs.src) {
            return;
        }
        let start = events.len();
        let routed: &[DoorId] = routed.map_or(&[], Vec::as_slice);
        for &id in routed {
            let door = &self.doors[id];
            if self.addressed(door, obs.dst) {
                let mut attempts = Attempts {
                    first: &mut self.first,
                    table: &mut self.table,
                    capacity: self.capacity,
                };
                attempts.step(door, id, now, obs, events);
            }
        }
        // A guard hit is a sweep's signature: a connection attempt (TCP SYN
        // without ACK) or any UDP packet, whatever the door's own flags.
        let sweep_like = obs.proto == Proto::Udp
            || obs.tcp_flags & (tcp_flag::SYN | tcp_flag::ACK) == tcp_flag::SYN;
        if guarded && sweep_like {
            for group in &self.guards {
                if !group.range.contains(knock) {
                    continue;
                }
                for &id in &group.doors {
                    if routed.contains(&id) || !self.addressed(&self.doors[id], obs.dst) {
                        continue;
                    }
                    let mut attempts = Attempts {
                        first: &mut self.first,
                        table: &mut self.table,
                        capacity: self.capacity,
                    };
                    attempts.guard_hit(id, now, obs.src, knock, events);
                }
            }
        }
        self.account(now, start, events);
    }

    /// True when a packet to `dst` is addressed to `door`.
    fn addressed(&self, door: &Door, dst: IpAddr) -> bool {
        match door.target {
            Some(target) => dst == target,
            None => !self.targets.contains(&dst),
        }
    }

    /// Charges the failures among `events[start..]` to their sources'
    /// budgets and forgets the failures of a source whose door opened.
    fn account(&mut self, now: Instant, start: usize, events: &mut Vec<Event>) {
        let end = events.len();
        for i in start..end {
            match events[i] {
                Event::Reset { src, door, .. } | Event::Timeout { src, door, .. } => {
                    if let Some(Ban { prefix, until }) = self.budget.record_failure(now, src) {
                        events.push(Event::Banned {
                            src,
                            door,
                            prefix,
                            until,
                        });
                    }
                }
                Event::Open { src, .. } => self.budget.record_success(src),
                _ => {}
            }
        }
    }

    /// Carries the attempts in progress of `old` over to this tracker (a
    /// config reload): an attempt on old door `o` is kept as an attempt on
    /// door `n` when `mapping(o) == Some(n)`, with its progress, its start
    /// time and so its deadline unchanged; attempts on unmapped doors are
    /// dropped silently. Map only doors whose definition is unchanged, so the
    /// progress still means the same knocks. Attempts are re-inserted oldest
    /// first, so the eviction order is kept; if this tracker is smaller, the
    /// oldest are evicted (returned as [`Event::Evicted`] in `events`).
    /// Returns how many attempts were carried. Costs O(attempts · log).
    pub fn carry_from(
        &mut self,
        old: &Tracker,
        mapping: impl Fn(DoorId) -> Option<DoorId>,
        events: &mut Vec<Event>,
    ) -> usize {
        let advanced = old.table.iter().filter_map(|(key, &matched, _)| {
            let since = old.table.inserted_at(key)?;
            Some((since, key.src, key.door_id(), matched))
        });
        let first = old.first.iter().filter_map(|(a, deadline)| {
            let ttl = old.doors.get(a.door_id())?.seq_timeout;
            Some((deadline - ttl, a.src, a.door_id(), 1))
        });
        let mut kept: Vec<(Instant, IpAddr, DoorId, usize)> = advanced
            .chain(first)
            .filter_map(|(since, src, door, matched)| {
                let new = mapping(door)?;
                (new < self.doors.len()).then_some((since, src, new, matched))
            })
            .collect();
        kept.sort_by_key(|&(since, ..)| since);
        for &(since, src, door, matched) in &kept {
            let ttl = self.doors[door].seq_timeout;
            let mut attempts = Attempts {
                first: &mut self.first,
                table: &mut self.table,
                capacity: self.capacity,
            };
            attempts.insert(since, Attempt::new(src, door), ttl, matched, events);
        }
        kept.len()
    }

    /// Drops every attempt whose `seq_timeout` has passed, emitting
    /// [`Event::Timeout`] for each, soonest first.
    pub fn expire(&mut self, now: Instant, events: &mut Vec<Event>) {
        let start = events.len();
        self.expire_attempts(now, events);
        self.account(now, start, events);
    }

    fn expire_attempts(&mut self, now: Instant, events: &mut Vec<Event>) {
        loop {
            let first = self.first.next_deadline().filter(|&d| d <= now);
            let advanced = self.table.next_deadline().filter(|&d| d <= now);
            let popped = match (first, advanced) {
                (None, None) => break,
                (Some(f), a) if a.is_none_or(|a| f <= a) => {
                    self.first.pop_expired(now).map(|a| (a.src, a.door_id(), 1))
                }
                _ => self
                    .table
                    .pop_expired(now)
                    .map(|(key, matched)| (key.src, key.door_id(), matched)),
            };
            let Some((src, door, matched)) = popped else {
                break;
            };
            events.push(Event::Timeout { src, door, matched });
        }
    }

    /// Checks the internal invariants (tests only).
    #[cfg(test)]
    fn check_invariants(&self) {
        self.table.check_invariants();
        self.first.check_invariants();
        assert!(self.in_progress() <= self.capacity, "over capacity");
    }
}

/// Where the attempt `key` is, if tracked (possibly timed out); `hash` is
/// its hash in `first`.
fn locate(
    first: &FirstKnocks,
    table: &Table<Attempt, usize>,
    key: &Attempt,
    hash: u64,
) -> Option<Progress> {
    if let Some(deadline) = first.deadline(hash, key) {
        return Some(Progress::First { hash, deadline });
    }
    let matched = *table.get(key)?;
    let deadline = table.deadline(key)?;
    Some(Progress::Advanced { matched, deadline })
}

/// The two stores of attempts and their shared bound, borrowed apart from
/// the doors for one step.
struct Attempts<'a> {
    first: &'a mut FirstKnocks,
    table: &'a mut Table<Attempt, usize>,
    capacity: usize,
}

impl Attempts<'_> {
    fn remove(&mut self, key: &Attempt, at: Progress) {
        match at {
            Progress::First { hash, .. } => {
                self.first.remove(hash, key);
            }
            Progress::Advanced { .. } => {
                self.table.remove(key);
            }
        }
    }

    /// Makes room for one more attempt if the bound is reached: a timed-out
    /// or the oldest first-knock attempt goes, and an advanced one only when
    /// there is none (reported in `events`).
    fn make_room(&mut self, now: Instant, events: &mut Vec<Event>) {
        if self.first.len() + self.table.len() < self.capacity {
            return;
        }
        let pushed = match self.first.pop_oldest(now) {
            Some((a, expired)) => Some((a.src, a.door_id(), 1, expired)),
            None => self
                .table
                .evict(now)
                .map(|(key, matched, expired)| (key.src, key.door_id(), matched, expired)),
        };
        if let Some((src, door, matched, expired)) = pushed {
            events.push(if expired {
                Event::Timeout { src, door, matched }
            } else {
                Event::Evicted { src, door, matched }
            });
        }
    }

    /// Tracks `key` with `matched` knocks from `since` until `since + ttl`,
    /// making room first.
    fn insert(
        &mut self,
        since: Instant,
        key: Attempt,
        ttl: std::time::Duration,
        matched: usize,
        events: &mut Vec<Event>,
    ) {
        self.make_room(since, events);
        if matched == 1 {
            let attempt = key;
            let hash = self.first.hash(&attempt);
            self.insert_first(since, hash, &attempt, ttl, events);
        } else {
            self.table
                .insert_protected(since, key, since, since + ttl, matched);
        }
    }

    fn insert_first(
        &mut self,
        now: Instant,
        hash: u64,
        attempt: &Attempt,
        ttl: std::time::Duration,
        events: &mut Vec<Event>,
    ) {
        self.first.insert(now, hash, attempt, ttl, |d| {
            let (src, door) = (d.attempt.src, d.attempt.door as DoorId);
            events.push(if d.expired {
                Event::Timeout {
                    src,
                    door,
                    matched: 1,
                }
            } else {
                Event::Evicted {
                    src,
                    door,
                    matched: 1,
                }
            });
        });
    }

    /// Advances the attempt of `obs.src` on one door.
    fn step(
        &mut self,
        door: &Door,
        id: DoorId,
        now: Instant,
        obs: &Observation,
        events: &mut Vec<Event>,
    ) {
        // knockd semantics: a TCP packet with the wrong flags (e.g. the SYN|ACK
        // or ACK of an unrelated connection) is not a knock at all.
        if obs.proto == Proto::Tcp && !door.tcp_flags.matches(obs.tcp_flags) {
            return;
        }
        let src = obs.src;
        let knock = obs.knock();
        let key = Attempt::new(src, id);
        let seq = &door.sequence;
        // Hashed once: the flood path looks up and inserts with it.
        let hash = self.first.hash(&key);

        let mut at = locate(self.first, self.table, &key, hash);
        if let Some(found) = at {
            let (matched, deadline) = found.matched_and_deadline();
            if now >= deadline {
                // Not yet collected by `expire`: report it now, then start over.
                self.remove(&key, found);
                events.push(Event::Timeout {
                    src,
                    door: id,
                    matched,
                });
                at = None;
            }
        }
        let Some(found) = at else {
            self.start(door, id, now, hash, &key, knock, events);
            return;
        };
        let (m, deadline) = found.matched_and_deadline();
        if seq.get(m) == Some(&knock) {
            // Advancing wins over Duplicate when a sequence repeats a knock.
            if m + 1 == seq.len() {
                self.remove(&key, found);
                events.push(Event::Open { src, door: id });
                return;
            }
            match found {
                Progress::First { hash, .. } => {
                    // Past its first knock, an attempt moves to the table,
                    // protected: spoofed first knocks cannot push it out. It
                    // keeps its deadline.
                    self.first.remove(hash, &key);
                    let since = deadline - door.seq_timeout;
                    self.table
                        .insert_protected(now, key, since, deadline, m + 1);
                }
                Progress::Advanced { .. } => {
                    if let Some(progress) = self.table.get_mut(&key) {
                        *progress = m + 1;
                    }
                }
            }
            events.push(Event::Stage {
                src,
                door: id,
                matched: m + 1,
                of: seq.len(),
            });
        } else if m > 0 && seq.get(m - 1) == Some(&knock) {
            events.push(Event::Duplicate {
                src,
                door: id,
                matched: m,
            });
        } else {
            // The index only routes knocks of this door's sequence here, so
            // this is an out-of-order knock of this door.
            self.remove(&key, found);
            events.push(Event::Reset {
                src,
                door: id,
                matched_before: m,
                got: knock,
            });
            self.start(door, id, now, hash, &key, knock, events);
        }
    }

    /// A guard port of door `id` was hit: the source's attempt on it, if
    /// any, is reset (a timed-out one is reported as a timeout).
    fn guard_hit(
        &mut self,
        id: DoorId,
        now: Instant,
        src: IpAddr,
        got: Knock,
        events: &mut Vec<Event>,
    ) {
        let key = Attempt::new(src, id);
        let hash = self.first.hash(&key);
        let Some(found) = locate(self.first, self.table, &key, hash) else {
            return;
        };
        let (matched, deadline) = found.matched_and_deadline();
        self.remove(&key, found);
        events.push(if now >= deadline {
            Event::Timeout {
                src,
                door: id,
                matched,
            }
        } else {
            Event::Reset {
                src,
                door: id,
                matched_before: matched,
                got,
            }
        });
    }

    /// Begins an attempt if `knock` is the door's first knock.
    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        door: &Door,
        id: DoorId,
        now: Instant,
        hash: u64,
        key: &Attempt,
        knock: Knock,
        events: &mut Vec<Event>,
    ) {
        if door.sequence.first() != Some(&knock) {
            return;
        }
        if door.sequence.len() == 1 {
            events.push(Event::Open {
                src: key.src,
                door: id,
            });
            return;
        }
        self.make_room(now, events);
        self.insert_first(now, hash, key, door.seq_timeout, events);
        events.push(Event::Stage {
            src: key.src,
            door: id,
            matched: 1,
            of: door.sequence.len(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::door::tcp_flag::{ACK, FIN, PSH, SYN, URG};
    use crate::door::Service;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    const SEED: [u64; 2] = [0x5e5a, 0x3e];
    const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0xc000_0200 + n))
    }

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn door(name: &str, seq: &[&str]) -> Door {
        let ssh = Service::tcp(22);
        let sequence = seq.iter().map(|k| k.parse().unwrap()).collect();
        Door {
            seq_timeout: Duration::from_secs(5),
            ..Door::new(name, sequence, vec![ssh])
        }
    }

    fn tcp(src: IpAddr, port: u16, flags: u8) -> Observation {
        Observation {
            src,
            dst: SERVER,
            proto: Proto::Tcp,
            dst_port: port,
            tcp_flags: flags,
        }
    }

    fn syn(src: IpAddr, port: u16) -> Observation {
        tcp(src, port, SYN)
    }

    fn udp(src: IpAddr, port: u16) -> Observation {
        Observation {
            src,
            dst: SERVER,
            proto: Proto::Udp,
            dst_port: port,
            tcp_flags: 0,
        }
    }

    fn knock(s: &str) -> Knock {
        s.parse().unwrap()
    }

    /// Feeds one observation and returns its events.
    fn feed(tr: &mut Tracker, ms: u64, obs: Observation) -> Vec<Event> {
        let mut ev = Vec::new();
        tr.observe(t(ms), &obs, &mut ev);
        tr.check_invariants();
        ev
    }

    fn opens(events: &[Event]) -> Vec<(IpAddr, DoorId)> {
        events
            .iter()
            .filter_map(|e| match *e {
                Event::Open { src, door } => Some((src, door)),
                _ => None,
            })
            .collect()
    }

    fn guarded(seq: &[&str], guard: &str) -> Door {
        Door {
            guard: crate::door::Guard::Ranges(vec![guard.parse().unwrap()]),
            ..door("g", seq)
        }
    }

    #[test]
    fn a_guard_port_resets_an_attempt_and_starts_nothing() {
        // Today's TOTP flaw: a range port outside the sequence was ignored,
        // so a sweep delivered the sequence in order by chance.
        let mut tr = Tracker::new(
            vec![guarded(&["20005", "20001", "20009"], "20000-20010")],
            10,
            SEED,
        );
        let a = ip(1);
        assert_eq!(feed(&mut tr, 0, syn(a, 20005)).len(), 1);
        let ev = feed(&mut tr, 1, syn(a, 20003));
        assert!(
            matches!(ev[..], [Event::Reset { matched_before: 1, got, .. }] if got.port == 20003),
            "{ev:?}"
        );
        assert_eq!(tr.progress(a, 0), None);
        // The rest of the sequence no longer opens.
        assert!(feed(&mut tr, 2, syn(a, 20001)).is_empty());
        assert!(opens(&feed(&mut tr, 3, syn(a, 20009))).is_empty());
        // A guard hit with no attempt is silent; the honest order opens.
        assert!(feed(&mut tr, 4, syn(a, 20010)).is_empty());
        feed(&mut tr, 5, syn(a, 20005));
        feed(&mut tr, 6, syn(a, 20001));
        assert_eq!(opens(&feed(&mut tr, 7, syn(a, 20009))), vec![(a, 0)]);
    }

    #[test]
    fn guard_hits_from_others_and_non_syn_packets_do_not_reset() {
        let mut tr = Tracker::new(
            vec![guarded(&["20005", "20001", "20009"], "20000-20010")],
            10,
            SEED,
        );
        let (a, b) = (ip(1), ip(2));
        feed(&mut tr, 0, syn(a, 20005));
        assert!(feed(&mut tr, 1, syn(b, 20003)).is_empty());
        assert!(feed(&mut tr, 2, tcp(a, 20003, SYN | ACK)).is_empty());
        assert!(feed(&mut tr, 3, udp(a, 20003)).is_empty(), "a TCP guard");
        assert_eq!(tr.progress(a, 0), Some(1));
    }

    #[test]
    fn auto_guard_covers_the_block_of_each_knock_above_1023() {
        let d = Door {
            guard: crate::door::Guard::Auto,
            ..door("a", &["7000", "7001", "8000:udp", "80"])
        };
        let ranges: Vec<String> = d.guard_ranges().iter().map(|r| r.to_string()).collect();
        assert_eq!(ranges, vec!["6912-7167:tcp", "7936-8191:udp"]);
        let mut tr = Tracker::new(vec![d], 10, SEED);
        let a = ip(1);
        feed(&mut tr, 0, syn(a, 7000));
        assert!(matches!(
            feed(&mut tr, 1, syn(a, 7100))[..],
            [Event::Reset { .. }]
        ));
    }

    #[test]
    fn failures_ban_the_prefix_on_every_door_until_it_ends_or_is_lifted() {
        let mut tr = Tracker::new(
            vec![
                door("a", &["7000", "8000"]),
                door("b", &["9000", "9500", "9600"]),
            ],
            100,
            SEED,
        );
        tr.set_ban_policy(BanPolicy {
            max_failures: 2,
            window: Duration::from_secs(60),
            ban_for: Duration::from_secs(600),
            ..BanPolicy::DEFAULT
        });
        let a = ip(1);
        feed(&mut tr, 0, syn(a, 7000));
        // A duplicate is not a failure.
        assert!(matches!(
            feed(&mut tr, 1, syn(a, 7000))[..],
            [Event::Duplicate { .. }]
        ));
        // A timeout is the first failure.
        let mut ev = Vec::new();
        tr.expire(t(5_000), &mut ev);
        assert!(matches!(ev[..], [Event::Timeout { .. }]), "{ev:?}");
        assert_eq!(tr.budget().banned(), 0);
        // A reset on the other door is the second: banned.
        feed(&mut tr, 6_000, syn(a, 9000));
        let ev = feed(&mut tr, 6_001, syn(a, 9600));
        assert!(
            ev.iter()
                .any(|e| matches!(e, Event::Banned { prefix, .. } if prefix.contains(a))),
            "{ev:?}"
        );
        // Banned: even the right sequence is ignored, on both doors.
        assert!(feed(&mut tr, 7_000, syn(a, 7000)).is_empty());
        assert!(feed(&mut tr, 7_001, syn(a, 8000)).is_empty());
        assert_eq!(tr.budget().banned(), 1);
        // Another source is not affected.
        feed(&mut tr, 7_002, syn(ip(2), 7000));
        assert_eq!(
            opens(&feed(&mut tr, 7_003, syn(ip(2), 8000))),
            vec![(ip(2), 0)]
        );
        // Lifted by hand, the source opens again.
        assert_eq!(tr.unban(Some(crate::ban::Prefix::of(a, 32, 64))).len(), 1);
        feed(&mut tr, 8_000, syn(a, 7000));
        assert_eq!(opens(&feed(&mut tr, 8_001, syn(a, 8000))), vec![(a, 0)]);
    }

    fn one_door() -> Tracker {
        Tracker::new(vec![door("ssh", &["7000", "8000", "9000"])], 100, SEED)
    }

    #[test]
    fn in_order_knock_opens() {
        let mut tr = one_door();
        let a = ip(1);
        assert_eq!(
            feed(&mut tr, 0, syn(a, 7000)),
            [Event::Stage {
                src: a,
                door: 0,
                matched: 1,
                of: 3
            }]
        );
        assert_eq!(tr.progress(a, 0), Some(1));
        assert_eq!(
            feed(&mut tr, 100, syn(a, 8000)),
            [Event::Stage {
                src: a,
                door: 0,
                matched: 2,
                of: 3
            }]
        );
        assert_eq!(
            feed(&mut tr, 200, syn(a, 9000)),
            [Event::Open { src: a, door: 0 }]
        );
        assert_eq!(tr.in_progress(), 0);
        assert_eq!(tr.next_deadline(), None);
    }

    #[test]
    fn unrelated_ports_are_ignored() {
        let mut tr = one_door();
        let a = ip(1);
        feed(&mut tr, 0, syn(a, 7000));
        assert!(feed(&mut tr, 1, syn(a, 22)).is_empty());
        assert!(feed(&mut tr, 2, udp(a, 8000)).is_empty()); // wrong protocol
        assert_eq!(feed(&mut tr, 3, syn(a, 8000)).len(), 1);
        assert_eq!(opens(&feed(&mut tr, 4, syn(a, 9000))), [(a, 0)]);
    }

    #[test]
    fn knock_not_starting_the_sequence_is_ignored() {
        let mut tr = one_door();
        assert!(feed(&mut tr, 0, syn(ip(1), 8000)).is_empty());
        assert!(feed(&mut tr, 0, syn(ip(1), 9000)).is_empty());
        assert_eq!(tr.in_progress(), 0);
    }

    #[test]
    fn wrong_port_resets() {
        let a = ip(1);
        // Going back to a knock other than the previous one resets.
        let mut tr = Tracker::new(vec![door("d", &["1000", "2000", "3000", "4000"])], 10, SEED);
        feed(&mut tr, 0, syn(a, 1000));
        feed(&mut tr, 1, syn(a, 2000));
        feed(&mut tr, 2, syn(a, 3000));
        assert_eq!(
            feed(&mut tr, 3, syn(a, 2000)),
            [Event::Reset {
                src: a,
                door: 0,
                matched_before: 3,
                got: knock("2000")
            }]
        );
        assert_eq!(tr.progress(a, 0), None);
        // The rest of the old sequence no longer opens.
        assert!(opens(&feed(&mut tr, 4, syn(a, 4000))).is_empty());
    }

    #[test]
    fn out_of_order_knock_resets_and_first_port_restarts() {
        let mut tr = one_door();
        let a = ip(1);
        feed(&mut tr, 0, syn(a, 7000));
        assert_eq!(
            feed(&mut tr, 1, syn(a, 9000)),
            [Event::Reset {
                src: a,
                door: 0,
                matched_before: 1,
                got: knock("9000")
            }]
        );
        feed(&mut tr, 2, syn(a, 7000));
        feed(&mut tr, 3, syn(a, 8000));
        // Going back to the first port: reset, then a fresh attempt.
        assert_eq!(
            feed(&mut tr, 4, syn(a, 7000)),
            [
                Event::Reset {
                    src: a,
                    door: 0,
                    matched_before: 2,
                    got: knock("7000")
                },
                Event::Stage {
                    src: a,
                    door: 0,
                    matched: 1,
                    of: 3
                }
            ]
        );
        feed(&mut tr, 5, syn(a, 8000));
        assert_eq!(opens(&feed(&mut tr, 6, syn(a, 9000))), [(a, 0)]);
    }

    #[test]
    fn fresh_attempt_after_reset_gets_its_own_timeout() {
        let mut tr = one_door();
        let a = ip(1);
        feed(&mut tr, 0, syn(a, 7000));
        feed(&mut tr, 4000, syn(a, 8000));
        feed(&mut tr, 4500, syn(a, 7000)); // reset + restart at 4.5 s
        feed(&mut tr, 8000, syn(a, 8000));
        assert_eq!(opens(&feed(&mut tr, 9000, syn(a, 9000))), [(a, 0)]);
    }

    #[test]
    fn duplicate_does_not_reset() {
        let mut tr = one_door();
        let a = ip(1);
        // A retransmitted first knock.
        feed(&mut tr, 0, syn(a, 7000));
        assert_eq!(
            feed(&mut tr, 1000, syn(a, 7000)),
            [Event::Duplicate {
                src: a,
                door: 0,
                matched: 1
            }]
        );
        feed(&mut tr, 1100, syn(a, 8000));
        // And a retransmitted middle knock.
        assert_eq!(
            feed(&mut tr, 1200, syn(a, 8000)),
            [Event::Duplicate {
                src: a,
                door: 0,
                matched: 2
            }]
        );
        assert_eq!(opens(&feed(&mut tr, 1300, syn(a, 9000))), [(a, 0)]);
    }

    #[test]
    fn duplicate_does_not_extend_the_timeout() {
        let mut tr = one_door();
        let a = ip(1);
        feed(&mut tr, 0, syn(a, 7000));
        feed(&mut tr, 4900, syn(a, 7000));
        feed(&mut tr, 4950, syn(a, 8000));
        let ev = feed(&mut tr, 5000, syn(a, 9000));
        assert_eq!(
            ev,
            [Event::Timeout {
                src: a,
                door: 0,
                matched: 2
            }]
        );
    }

    #[test]
    fn repeated_knock_in_sequence_advances() {
        let mut tr = Tracker::new(vec![door("d", &["1000", "1000", "2000"])], 10, SEED);
        let a = ip(1);
        feed(&mut tr, 0, syn(a, 1000));
        assert!(matches!(
            feed(&mut tr, 1, syn(a, 1000))[..],
            [Event::Stage { matched: 2, .. }]
        ));
        assert!(matches!(
            feed(&mut tr, 2, syn(a, 1000))[..],
            [Event::Duplicate { matched: 2, .. }]
        ));
        assert_eq!(opens(&feed(&mut tr, 3, syn(a, 2000))), [(a, 0)]);
    }

    #[test]
    fn late_completion_does_not_open() {
        let mut tr = one_door();
        let a = ip(1);
        feed(&mut tr, 0, syn(a, 7000));
        feed(&mut tr, 2000, syn(a, 8000));
        // seq_timeout (5 s) counts from the first knock; 5000 ms is too late.
        let ev = feed(&mut tr, 5000, syn(a, 9000));
        assert_eq!(
            ev,
            [Event::Timeout {
                src: a,
                door: 0,
                matched: 2
            }]
        );
        assert_eq!(tr.in_progress(), 0);
        // One millisecond earlier would have opened.
        feed(&mut tr, 10_000, syn(a, 7000));
        feed(&mut tr, 12_000, syn(a, 8000));
        assert_eq!(opens(&feed(&mut tr, 14_999, syn(a, 9000))), [(a, 0)]);
    }

    #[test]
    fn timed_out_first_knock_restarts() {
        let mut tr = one_door();
        let a = ip(1);
        feed(&mut tr, 0, syn(a, 7000));
        assert_eq!(
            feed(&mut tr, 6000, syn(a, 7000)),
            [
                Event::Timeout {
                    src: a,
                    door: 0,
                    matched: 1
                },
                Event::Stage {
                    src: a,
                    door: 0,
                    matched: 1,
                    of: 3
                }
            ]
        );
    }

    #[test]
    fn expire_emits_timeout_on_time() {
        let mut tr = one_door();
        let (a, b) = (ip(1), ip(2));
        feed(&mut tr, 0, syn(a, 7000));
        feed(&mut tr, 1000, syn(b, 7000));
        feed(&mut tr, 1500, syn(b, 8000));
        assert_eq!(tr.next_deadline(), Some(t(5000)));
        let mut ev = Vec::new();
        tr.expire(t(4999), &mut ev);
        assert!(ev.is_empty());
        tr.expire(t(5000), &mut ev);
        assert_eq!(
            ev,
            [Event::Timeout {
                src: a,
                door: 0,
                matched: 1
            }]
        );
        assert_eq!(tr.next_deadline(), Some(t(6000)));
        ev.clear();
        tr.expire(t(60_000), &mut ev);
        assert_eq!(
            ev,
            [Event::Timeout {
                src: b,
                door: 0,
                matched: 2
            }]
        );
        assert_eq!((tr.in_progress(), tr.next_deadline()), (0, None));
        // Nothing left to time out later.
        assert!(feed(&mut tr, 60_001, syn(a, 8000)).is_empty());
    }

    #[test]
    fn tcp_flags_default_door_ignores_syn_ack_and_ack() {
        let mut tr = one_door();
        let a = ip(1);
        feed(&mut tr, 0, syn(a, 7000));
        // Not knocks: no reset, no progress.
        assert!(feed(&mut tr, 1, tcp(a, 9000, SYN | ACK)).is_empty());
        assert!(feed(&mut tr, 2, tcp(a, 9000, ACK)).is_empty());
        assert!(feed(&mut tr, 3, tcp(a, 8000, ACK | PSH)).is_empty());
        assert!(feed(&mut tr, 4, tcp(a, 7000, 0)).is_empty());
        assert_eq!(tr.progress(a, 0), Some(1));
        feed(&mut tr, 5, syn(a, 8000));
        // SYN with ECE|CWR (ECN setup) still satisfies syn,!ack.
        assert_eq!(opens(&feed(&mut tr, 6, tcp(a, 9000, SYN | 0xc0))), [(a, 0)]);
    }

    #[test]
    fn custom_tcp_flags_door() {
        let mut d = door("fin", &["1000", "2000"]);
        d.tcp_flags = "fin,urg,!syn".parse().unwrap();
        let mut tr = Tracker::new(vec![d], 10, SEED);
        let a = ip(1);
        assert!(feed(&mut tr, 0, syn(a, 1000)).is_empty());
        assert!(feed(&mut tr, 1, tcp(a, 1000, FIN)).is_empty());
        assert!(feed(&mut tr, 2, tcp(a, 1000, FIN | URG | SYN)).is_empty());
        assert_eq!(feed(&mut tr, 3, tcp(a, 1000, FIN | URG)).len(), 1);
        // Extra unconstrained flags are fine.
        assert_eq!(
            opens(&feed(&mut tr, 4, tcp(a, 2000, FIN | URG | PSH | ACK))),
            [(a, 0)]
        );
    }

    #[test]
    fn interleaved_sources_both_open() {
        let mut tr = one_door();
        let (a, b) = (ip(1), ip(2));
        let mut all = Vec::new();
        for (ms, port) in [(0, 7000), (10, 8000), (20, 9000)] {
            all.extend(feed(&mut tr, ms, syn(a, port)));
            all.extend(feed(&mut tr, ms + 5, syn(b, port)));
            // B also sends junk on the door's ports in between: only B's
            // attempt can be affected.
            all.extend(feed(&mut tr, ms + 6, tcp(b, 9000, ACK)));
        }
        assert_eq!(opens(&all), [(a, 0), (b, 0)]);
        // Another source's wrong port never resets A.
        feed(&mut tr, 100, syn(a, 7000));
        let ev = feed(&mut tr, 101, syn(b, 9000));
        assert!(ev.iter().all(|e| e.src() == b));
        feed(&mut tr, 102, syn(a, 8000));
        assert_eq!(opens(&feed(&mut tr, 103, syn(a, 9000))), [(a, 0)]);
    }

    #[test]
    fn doors_sharing_a_prefix_are_independent() {
        let mut tr = Tracker::new(
            vec![
                door("short", &["1000", "2000"]),
                door("long", &["1000", "2000", "3000"]),
                door("other", &["1000", "4000"]),
            ],
            100,
            SEED,
        );
        let a = ip(1);
        let ev = feed(&mut tr, 0, syn(a, 1000));
        assert_eq!(ev.len(), 3);
        assert_eq!(ev.iter().map(Event::door).collect::<Vec<_>>(), [0, 1, 2]);
        let ev = feed(&mut tr, 1, syn(a, 2000));
        // 'short' opens, 'long' advances, 'other' is untouched (2000 is not
        // in its sequence).
        assert_eq!(
            ev,
            [
                Event::Open { src: a, door: 0 },
                Event::Stage {
                    src: a,
                    door: 1,
                    matched: 2,
                    of: 3
                }
            ]
        );
        assert_eq!(tr.progress(a, 2), Some(1));
        let ev = feed(&mut tr, 2, syn(a, 3000));
        assert_eq!(opens(&ev), [(a, 1)]);
        assert_eq!(opens(&feed(&mut tr, 3, syn(a, 4000))), [(a, 2)]);
        assert_eq!(tr.in_progress(), 0);
    }

    #[test]
    fn target_door_only_matches_knocks_to_its_target() {
        let vip: IpAddr = "203.0.113.9".parse().unwrap();
        let mut routed = door("routed", &["4000:udp"]);
        routed.target = Some(vip);
        let local = door("local", &["4000:udp"]);
        let mut tr = Tracker::new(vec![routed, local], 10, SEED);
        let a = ip(1);
        // To the host's own address: only the door without a target.
        assert_eq!(
            feed(&mut tr, 0, udp(a, 4000)),
            [Event::Open { src: a, door: 1 }]
        );
        // To the target: only the target door.
        let mut to_vip = udp(a, 4000);
        to_vip.dst = vip;
        assert_eq!(feed(&mut tr, 1, to_vip), [Event::Open { src: a, door: 0 }]);
    }

    #[test]
    fn replaced_sequence_drops_progress_and_matches_whole_new_sequence() {
        let mut tr = Tracker::new(vec![door("otp", &["1000", "2000", "3000"])], 10, SEED);
        let a = ip(1);
        feed(&mut tr, 0, syn(a, 1000));
        assert_eq!(tr.progress(a, 0), Some(1));
        tr.set_sequence(0, vec![knock("1000"), knock("2000"), knock("4000")]);
        assert_eq!(
            tr.progress(a, 0),
            None,
            "progress on the old sequence is gone"
        );
        // The old sequence no longer opens: its last knock differs.
        feed(&mut tr, 1, syn(a, 1000));
        feed(&mut tr, 2, syn(a, 2000));
        assert!(!feed(&mut tr, 3, syn(a, 3000)).contains(&Event::Open { src: a, door: 0 }));
        feed(&mut tr, 4, syn(a, 1000));
        feed(&mut tr, 5, syn(a, 2000));
        assert_eq!(
            feed(&mut tr, 6, syn(a, 4000)),
            [Event::Open { src: a, door: 0 }]
        );
        // An empty sequence disables the door.
        tr.set_sequence(0, Vec::new());
        assert!(feed(&mut tr, 7, syn(a, 1000)).is_empty());
    }

    #[test]
    fn single_knock_door_opens_immediately() {
        let mut tr = Tracker::new(vec![door("one", &["5000:udp"])], 10, SEED);
        let a = ip(1);
        assert_eq!(
            feed(&mut tr, 0, udp(a, 5000)),
            [Event::Open { src: a, door: 0 }]
        );
        assert_eq!(tr.in_progress(), 0);
    }

    #[test]
    fn mixed_tcp_udp_sequence() {
        let mut tr = Tracker::new(
            vec![door("mix", &["1000:udp", "1000:tcp", "2000:udp"])],
            10,
            SEED,
        );
        let a = ip(1);
        // TCP 1000 first is out of order for this door: nothing tracked yet.
        assert!(feed(&mut tr, 0, syn(a, 1000)).is_empty());
        feed(&mut tr, 1, udp(a, 1000));
        // A TCP knock on 2000 is not in the sequence: ignored.
        assert!(feed(&mut tr, 2, syn(a, 2000)).is_empty());
        feed(&mut tr, 3, syn(a, 1000));
        // UDP knocks carry no flags, so the TCP flag rule does not apply.
        assert_eq!(opens(&feed(&mut tr, 4, udp(a, 2000))), [(a, 0)]);
        // Wrong protocol order resets.
        feed(&mut tr, 10, udp(a, 1000));
        assert!(matches!(
            feed(&mut tr, 11, udp(a, 2000))[..],
            [Event::Reset { .. }]
        ));
    }

    #[test]
    fn table_bound_evicts_oldest() {
        const N: usize = 4;
        let mut tr = Tracker::new(vec![door("ssh", &["7000", "8000", "9000"])], N, SEED);
        for i in 0..N as u32 {
            feed(&mut tr, u64::from(i), syn(ip(i), 7000));
        }
        assert_eq!(tr.in_progress(), N);
        let ev = feed(&mut tr, 10, syn(ip(100), 7000));
        assert_eq!(
            ev,
            [
                Event::Evicted {
                    src: ip(0),
                    door: 0,
                    matched: 1
                },
                Event::Stage {
                    src: ip(100),
                    door: 0,
                    matched: 1,
                    of: 3
                }
            ]
        );
        assert_eq!(tr.in_progress(), N);
        // The evicted source's later knocks no longer open.
        assert!(feed(&mut tr, 11, syn(ip(0), 8000)).is_empty());
        assert!(feed(&mut tr, 12, syn(ip(0), 9000)).is_empty());
        // The others still can.
        feed(&mut tr, 13, syn(ip(1), 8000));
        assert_eq!(opens(&feed(&mut tr, 14, syn(ip(1), 9000))), [(ip(1), 0)]);
        // A flood never grows the table.
        for i in 1000..3000 {
            feed(&mut tr, 20, syn(ip(i), 7000));
            assert!(tr.in_progress() <= N);
        }
    }

    #[test]
    fn first_knock_flood_cannot_evict_an_attempt_in_progress() {
        const N: usize = 8;
        let mut tr = Tracker::new(
            vec![door("ssh", &["7000", "8000", "9000", "7500"])],
            N,
            SEED,
        );
        let legit = ip(42);
        feed(&mut tr, 0, syn(legit, 7000));
        feed(&mut tr, 1, syn(legit, 8000));
        // 100 × the table size of spoofed first knocks.
        for i in 0..(100 * N) as u32 {
            let ev = feed(&mut tr, 2, syn(ip(10_000 + i), 7000));
            assert!(
                !ev.iter()
                    .any(|e| matches!(e, Event::Evicted { src, .. } if *src == legit)),
                "legit attempt evicted by spoofed knock {i}"
            );
            assert!(tr.in_progress() <= N);
        }
        assert_eq!(tr.progress(legit, 0), Some(2));
        feed(&mut tr, 3, syn(legit, 9000));
        assert_eq!(opens(&feed(&mut tr, 4, syn(legit, 7500))), [(legit, 0)]);
    }

    #[test]
    fn a_table_full_of_advanced_attempts_still_takes_new_ones() {
        const N: usize = 3;
        let mut tr = Tracker::new(vec![door("ssh", &["7000", "8000", "9000"])], N, SEED);
        for i in 0..N as u32 {
            feed(&mut tr, u64::from(i), syn(ip(i), 7000));
            feed(&mut tr, u64::from(i), syn(ip(i), 8000));
        }
        // Every entry is protected: the one closest to timing out goes.
        let ev = feed(&mut tr, 10, syn(ip(99), 7000));
        assert!(
            matches!(ev[..], [Event::Evicted { src, matched: 2, .. }, Event::Stage { .. }] if src == ip(0)),
            "{ev:?}"
        );
        assert_eq!(tr.in_progress(), N);
    }

    #[test]
    fn full_table_reports_expired_entry_as_timeout() {
        let mut tr = Tracker::new(vec![door("ssh", &["7000", "8000"])], 1, SEED);
        feed(&mut tr, 0, syn(ip(1), 7000));
        assert_eq!(
            feed(&mut tr, 6000, syn(ip(2), 7000))[0],
            Event::Timeout {
                src: ip(1),
                door: 0,
                matched: 1
            }
        );
    }

    #[test]
    fn observation_from_packet() {
        use crate::packet::{parse, testing};
        let bytes = testing::ipv4(
            Ipv4Addr::new(192, 0, 2, 9),
            Ipv4Addr::new(192, 0, 2, 1),
            testing::TCP,
            &testing::tcp(40000, 7000, SYN, &[]),
        );
        let obs = Observation::from(&parse(&bytes).unwrap());
        let mut want = syn(ip(9), 7000);
        want.dst = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(obs, want);
    }

    #[test]
    fn carry_from_keeps_progress_of_mapped_doors_only() {
        let old_doors = vec![
            door("a", &["1000", "2000", "3000"]),
            door("b", &["4000", "5000", "6000"]),
        ];
        let mut old = Tracker::new(old_doors, 100, SEED);
        feed(&mut old, 0, syn(ip(1), 1000));
        feed(&mut old, 100, syn(ip(1), 2000));
        feed(&mut old, 200, syn(ip(2), 4000));
        assert_eq!(old.in_progress(), 2);
        // Reloaded: "b" removed, a new door "c" first, "a" unchanged at index 1.
        let new_doors = vec![
            door("c", &["7000", "8000"]),
            door("a", &["1000", "2000", "3000"]),
        ];
        let mut new = Tracker::new(new_doors, 100, SEED);
        let mut events = Vec::new();
        let carried = new.carry_from(&old, |id| (id == 0).then_some(1), &mut events);
        assert_eq!(carried, 1);
        assert!(events.is_empty());
        assert_eq!(new.progress(ip(1), 1), Some(2));
        assert_eq!(new.progress(ip(2), 0), None);
        assert_eq!(new.in_progress(), 1);
        assert_eq!(new.in_progress_by_door(), [0, 1]);
        // The deadline is the original one (first knock at 0 + 5 s).
        assert_eq!(new.next_deadline(), Some(t(5000)));
        // The knock goes on where it was.
        assert_eq!(opens(&feed(&mut new, 300, syn(ip(1), 3000))), [(ip(1), 1)]);
    }

    #[test]
    fn carry_from_times_out_on_the_original_deadline_and_keeps_order() {
        let mut old = Tracker::new(vec![door("a", &["1000", "2000", "3000"])], 100, SEED);
        feed(&mut old, 0, syn(ip(1), 1000));
        feed(&mut old, 1000, syn(ip(2), 1000));
        feed(&mut old, 2000, syn(ip(3), 1000));
        // A smaller table: the oldest attempt is evicted, the newest kept.
        let mut new = Tracker::new(vec![door("a", &["1000", "2000", "3000"])], 2, SEED);
        let mut events = Vec::new();
        assert_eq!(new.carry_from(&old, Some, &mut events), 3);
        assert_eq!(
            events,
            [Event::Evicted {
                src: ip(1),
                door: 0,
                matched: 1
            }]
        );
        let mut events = Vec::new();
        new.expire(t(6000), &mut events);
        assert_eq!(
            events,
            [Event::Timeout {
                src: ip(2),
                door: 0,
                matched: 1
            }]
        );
        assert_eq!(new.progress(ip(3), 0), Some(1));
    }
}
