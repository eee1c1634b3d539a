//! The engine: Sesame's protocol object.
//!
//! It takes `(now, input)` and decides, for every door type, whether to
//! open, refresh, refuse or close. Inputs are observed knocks
//! ([`Engine::observe`]), single-packet datagrams ([`Engine::datagram`]),
//! the passing of time ([`Engine::handle_timeout`]), answers of an
//! asynchronous replay store ([`Engine::reservation_answered`]) and the
//! control plane's requests. It reaches the firewall and the stores through
//! the [`World`] seams and hands everything else back as [`Action`]s, which
//! the driver drains with [`Engine::poll_action`]. [`Engine::poll_timeout`]
//! says when to call [`Engine::handle_timeout`] next.
//!
//! Who is open lives here, once: the grant book ([`Grants`]) with the
//! services each grant holds. The kernel set is its image, restored from it
//! when the table is lost.
//!
//! The shape follows boringtun's `Tunn` and quinn-proto's `Connection`:
//! no sockets, no clock, no randomness (seeds are passed in), and a test
//! can drive the whole flow from packet bytes to firewall calls in memory
//! (see `sesame-testkit`).

pub mod action;
pub mod doors;
mod fleet;
mod flows;
mod policy;
pub mod ruleset;
mod state;
mod totp_slots;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::grants::{GrantOutcome, Grants};
use crate::ports::{Ticket, World};
use crate::rate::PrefixBudget;
use crate::tracker::{DoorId, Event, Observation, Tracker};
use crate::{Door, Forward, Instant, Prefix, Service};

pub use action::{Action, CloseReason, Level, Note, Run};
pub use doors::{DoorKind, EngineDoor, FwknopDoor, LoadedStanza, SpaDoor, TotpDoor};
pub use ruleset::Ruleset;
pub use state::{
    Carried, Engine, EngineError, GrantView, Now, Seeds, Settings, MAX_PENDING, RESERVATION_TIMEOUT,
};
pub use totp_slots::totp_key;
use totp_slots::TotpSlots;

impl Engine {
    /// Builds the engine for `doors`.
    pub fn new(
        doors: Vec<EngineDoor>,
        settings: Settings,
        seeds: Seeds,
    ) -> Result<Self, EngineError> {
        let mut datagram_ports = HashMap::new();
        for (id, d) in doors.iter().enumerate() {
            if let Some(port) = d.kind.datagram_port() {
                if let Some(other) = datagram_ports.insert(port, id) {
                    return Err(EngineError::PortClash {
                        a: doors[other].door.name.clone(),
                        b: d.door.name.clone(),
                        port,
                    });
                }
            }
        }
        let (tracker_doors, totp) = TotpSlots::tracker_doors(&doors);
        let names = tracker_doors
            .iter()
            .map(|d| Arc::<str>::from(d.name.as_str()))
            .collect();
        let mut tracker = Tracker::new(tracker_doors, settings.max_tracked, seeds.tracker);
        tracker.set_ban_policy(settings.ban);
        Ok(Engine {
            grants: Grants::new(settings.max_grants, seeds.grants),
            pk_budget: PrefixBudget::new(settings.spa_pk_rate, seeds.budget),
            doors,
            names,
            settings,
            tracker,
            totp,
            datagram_ports,
            granted: HashMap::new(),
            adopted: HashSet::new(),
            holders: HashMap::new(),
            fleet_revoked: HashMap::new(),
            fleet_revoked_pruned_ms: 0,
            requested: HashMap::new(),
            pending: HashMap::new(),
            next_ticket: 0,
            rolled_at: None,
            events: Vec::new(),
            closed: Vec::new(),
            actions: VecDeque::new(),
            tally_first: false,
            tallies: Vec::new(),
        })
    }

    // ----- inputs ---------------------------------------------------------

    /// Whether a UDP datagram to `port` is a single-packet credential for
    /// [`Engine::datagram`] rather than a knock for [`Engine::observe`].
    pub fn wants_datagram(&self, port: u16) -> bool {
        self.datagram_ports.contains_key(&port)
    }

    /// Feeds observed knocks (a batch, as read together).
    pub fn observe<W: World + ?Sized>(&mut self, now: Now, knocks: &[Observation], world: &mut W) {
        for obs in knocks {
            self.tracker.observe(now.mono, obs, &mut self.events);
        }
        self.handle_events(now, world);
    }

    /// Feeds one single-packet datagram sent from `src` to `dst:port`.
    pub fn datagram<W: World + ?Sized>(
        &mut self,
        now: Now,
        src: IpAddr,
        dst: IpAddr,
        port: u16,
        bytes: &[u8],
        world: &mut W,
    ) {
        let Some(&door) = self.datagram_ports.get(&port) else {
            return;
        };
        match &self.doors[door].kind {
            DoorKind::Spa(_) => self.spa_datagram(now, src, door, bytes, world),
            DoorKind::Fwknop(_) => self.fwknop_datagram(now, src, dst, door, bytes, world),
            _ => {}
        }
    }

    /// Fires what is due: TOTP step rolls, knock timeouts, ban ends, grant
    /// closes and reservations that waited too long.
    pub fn handle_timeout<W: World + ?Sized>(&mut self, now: Now, world: &mut W) {
        self.roll_totp(now, world);
        self.tracker.expire(now.mono, &mut self.events);
        self.handle_events(now, world);
        for prefix in self.tracker.expire_bans(now.mono) {
            self.note(Note::BanEnded { prefix });
        }
        self.grants.expire(now.mono, &mut self.closed);
        let closed = std::mem::take(&mut self.closed);
        for &(src, door) in &closed {
            self.on_close(src, door, CloseReason::Expired);
        }
        self.closed = closed;
        self.closed.clear();
        let late: Vec<Ticket> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now.mono)
            .map(|(t, _)| *t)
            .collect();
        for ticket in late {
            if let Some(p) = self.pending.remove(&ticket) {
                if p.fleet {
                    self.fleet_timed_out(now, p, world);
                    continue;
                }
                self.refuse(p.via, Level::Error, p.src, p.door, Some(p.user), "replay_store_timeout", format!("the replay store did not answer within {RESERVATION_TIMEOUT:?}: refused (fail closed)"));
            }
        }
    }

    /// The next monotonic deadline ([`Engine::handle_timeout`] must run
    /// then), or `None` when nothing is scheduled. TOTP step boundaries
    /// are on the wall clock: they are given relative to `now`.
    pub fn poll_timeout(&self, now: Now) -> Option<Instant> {
        let roll = TotpSlots::next_roll_in(&self.doors, now.unix).map(|d| now.mono + d);
        let pending = self.pending.values().map(|p| p.deadline).min();
        [
            self.tracker.next_deadline(),
            self.grants.next_deadline(),
            roll,
            pending,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next thing for the driver to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    // ----- queries --------------------------------------------------------

    /// The configured doors.
    pub fn doors(&self) -> &[EngineDoor] {
        &self.doors
    }

    /// A configured door by name.
    pub fn door_id(&self, name: &str) -> Result<DoorId, String> {
        self.doors
            .iter()
            .position(|d| d.door.name == name)
            .ok_or_else(|| {
                format!(
                    "no door named {name:?} (doors: {})",
                    self.doors
                        .iter()
                        .map(|d| d.door.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }

    /// The knock tracker (bans, attempts in progress).
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// Knock attempts in progress per configured door (TOTP slots count
    /// for their door).
    pub fn in_progress_by_door(&self) -> Vec<usize> {
        let mut out = vec![0usize; self.doors.len()];
        for (id, n) in self.tracker.in_progress_by_door().iter().enumerate() {
            let owner = self.totp.owner(id).map_or(id, |o| o.door);
            if let Some(slot) = out.get_mut(owner) {
                *slot += n;
            }
        }
        out
    }

    /// Lifts bans (all, or one prefix); returns the prefixes lifted.
    pub fn unban(&mut self, which: Option<Prefix>) -> Vec<Prefix> {
        self.tracker.unban(which)
    }

    /// Every grant, with the services it holds.
    pub fn grants(&self) -> Vec<GrantView> {
        self.grants
            .iter()
            .map(|(addr, door, until)| GrantView {
                addr,
                door,
                services: self.services_of(addr, door),
                forwards: self.forwards_for(door, addr),
                until,
            })
            .collect()
    }

    /// How many grants are held.
    pub fn grant_count(&self) -> usize {
        self.grants.len()
    }

    /// The kernel ruleset for the doors as they are now (a one-time door's
    /// knocks move on).
    pub fn ruleset(&self) -> Ruleset {
        let current = self.tracker.doors();
        let observed: Vec<Door> = self
            .doors
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let mut door = d.door.clone();
                door.sequence = d.observed_knocks(&current[i].sequence);
                door
            })
            .collect();
        let mut r = ruleset::build(
            &observed,
            self.settings.nflog_group,
            &self.settings.interfaces,
        );
        r.spa_udp = self
            .doors
            .iter()
            .filter_map(|d| match &d.kind {
                DoorKind::Spa(s) => Some(s.port),
                _ => None,
            })
            .collect();
        // fwknop NAT requests name their forwards at run time.
        r.gateway = self
            .doors
            .iter()
            .any(|d| matches!(&d.kind, DoorKind::Fwknop(f) if f.nat.enabled()));
        r
    }

    /// The widest clock window any door accepts, in seconds.
    pub fn widest_window(&self) -> u64 {
        self.doors
            .iter()
            .map(|d| d.kind.window_secs())
            .max()
            .unwrap_or(0)
    }

    /// How many credential holders share the replay cache.
    pub fn credential_owners(&self) -> usize {
        self.doors.iter().map(|d| d.kind.credential_owners()).sum()
    }

    /// Whether any door has credentials to make single-use.
    pub fn needs_replay_store(&self) -> bool {
        self.doors
            .iter()
            .any(|d| !matches!(d.kind, DoorKind::Sequence | DoorKind::OneTime))
    }

    // ----- control plane --------------------------------------------------

    /// Opens `door` for `addr` for `open_for` on an admin's request; true
    /// when the grant is in place.
    pub fn manual_open<W: World + ?Sized>(
        &mut self,
        now: Now,
        addr: IpAddr,
        door: DoorId,
        open_for: Duration,
        world: &mut W,
    ) -> bool {
        let services = self.doors[door].door.services.clone();
        self.open_with(now, addr, door, &services, open_for, world);
        let open = self.grants.expires_at(addr, door).is_some();
        if open {
            self.publish_grant(addr, door, open_for, world);
        }
        open
    }

    /// Revokes `addr`'s grants (of one door, or all), running on_close.
    /// Returns the grants removed, or the firewall's error (grants revoked
    /// before it stay revoked).
    pub fn revoke<W: World + ?Sized>(
        &mut self,
        addr: IpAddr,
        door: Option<DoorId>,
        why: &str,
        world: &mut W,
    ) -> Result<Vec<GrantView>, String> {
        let targets: Vec<(IpAddr, DoorId, Instant)> = self
            .grants
            .iter()
            .filter(|&(a, d, _)| a == addr && door.is_none_or(|o| o == d))
            .collect();
        let mut done = Vec::new();
        for (a, d, until) in targets {
            let forwards = self.forwards_for(d, a);
            // The other gateways learn before the books forget the services.
            self.publish_revoke(a, d, world);
            let services = self.revoke_one(a, d, why, world)?;
            done.push(GrantView {
                addr: a,
                door: d,
                services,
                forwards,
                until,
            });
        }
        Ok(done)
    }

    /// Takes over grants the kernel still held at start (left by the
    /// previous run, which ran their on_close): `(address, service, time
    /// left)`. Each goes to the first door protecting its service.
    pub fn adopt(&mut self, now: Now, found: &[(IpAddr, Service, Duration)]) -> usize {
        let mut adopted = 0;
        for &(addr, service, left) in found {
            let Some(door) = self
                .doors
                .iter()
                .position(|d| d.door.services.contains(&service))
            else {
                continue;
            };
            self.grants.open(now.mono, addr, door, left);
            let services = self.granted.entry((addr, door)).or_default();
            if !services.contains(&service) {
                services.push(service);
            }
            self.adopted.insert((addr, door));
            adopted += 1;
        }
        adopted
    }

    /// The table was lost: installs the ruleset again with every grant
    /// still held. Returns how many grants were restored.
    pub fn restore<W: World + ?Sized>(&mut self, now: Now, world: &mut W) -> Result<usize, String> {
        world.firewall().install(&self.ruleset()).map_err(|e| e.0)?;
        let mut restored = 0;
        for g in self.grants() {
            let left = g
                .until
                .saturating_since(now.mono)
                .max(Duration::from_millis(1));
            let granted =
                g.services.is_empty() || world.firewall().grant(g.addr, &g.services, left).is_ok();
            let forwarded = world.firewall().forward(g.addr, &g.forwards, left).is_ok();
            if granted && forwarded && !(g.services.is_empty() && g.forwards.is_empty()) {
                restored += 1;
            }
        }
        Ok(restored)
    }

    /// Replaces `old` (a reload): knock attempts of unchanged plain doors,
    /// bans, and grants whose door still exists (by name) carry over;
    /// grants of removed doors are revoked. The public-key budget is kept
    /// when its policy did not change. `self`'s ruleset must be installed.
    pub fn take_over<W: World + ?Sized>(
        &mut self,
        old: &mut Engine,
        now: Now,
        world: &mut W,
    ) -> Carried {
        let mapping: Vec<Option<DoorId>> = (0..old.tracker.doors().len())
            .map(|o| {
                let od = old
                    .doors
                    .get(o)
                    .filter(|d| matches!(d.kind, DoorKind::Sequence))?;
                let j = self.door_id(&od.door.name).ok()?;
                (matches!(self.doors[j].kind, DoorKind::Sequence) && self.doors[j].door == od.door)
                    .then_some(j)
            })
            .collect();
        let knocks = self.tracker.carry_from(
            &old.tracker,
            |o| mapping.get(o).copied().flatten(),
            &mut self.events,
        );
        self.tracker.carry_bans_from(&mut old.tracker, now.mono);
        self.tally_first = old.tally_first;
        let mut carried = Carried {
            knocks,
            ..Carried::default()
        };
        let mut removed = Vec::new();
        for (src, d, until) in old.grants.iter() {
            match self.door_id(&old.doors[d].door.name) {
                Ok(j) => {
                    self.grants.open(
                        now.mono,
                        src,
                        j,
                        until
                            .saturating_since(now.mono)
                            .max(Duration::from_millis(1)),
                    );
                    if let Some(s) = old.granted.get(&(src, d)) {
                        self.granted.insert((src, j), s.clone());
                    }
                    carried.kept += 1;
                }
                Err(_) => removed.push((src, d)),
            }
        }
        for (src, d) in removed {
            if old
                .revoke_one(src, d, "its door was removed by a reload", world)
                .is_ok()
            {
                carried.revoked += 1;
            }
        }
        for ((addr, d), forwards) in std::mem::take(&mut old.requested) {
            if let Ok(j) = self.door_id(&old.doors[d].door.name) {
                self.requested.insert((addr, j), forwards);
            }
        }
        for ((addr, d), at) in std::mem::take(&mut old.fleet_revoked) {
            if let Ok(j) = self.door_id(&old.doors[d].door.name) {
                self.fleet_revoked.insert((addr, j), at);
            }
        }
        for ((d, user), addr) in std::mem::take(&mut old.holders) {
            if let Ok(j) = self.door_id(&old.doors[d].door.name) {
                self.holders.insert((j, user), addr);
            }
        }
        // Requests waiting for the store keep waiting, under the new door
        // of the same name; their tickets stay unique. A removed door's are
        // refused (never dropped silently).
        self.next_ticket = self.next_ticket.max(old.next_ticket);
        for (ticket, mut p) in std::mem::take(&mut old.pending) {
            match self.door_id(&old.doors[p.door].door.name) {
                Ok(j) => {
                    p.door = j;
                    self.pending.insert(ticket, p);
                }
                Err(_) => old.refuse(
                    p.via,
                    Level::Error,
                    p.src,
                    p.door,
                    Some(p.user),
                    "door_removed",
                    "its door was removed by a reload while the replay store had not answered"
                        .into(),
                ),
            }
        }
        self.actions.extend(old.actions.drain(..));
        if self.settings.spa_pk_rate == old.settings.spa_pk_rate {
            std::mem::swap(&mut self.pk_budget, &mut old.pk_budget);
        }
        self.handle_events(now, world);
        carried
    }

    /// The daemon stops: grants keep their kernel timeouts, and the close
    /// commands that no one would run later run now.
    pub fn shutdown(&mut self) {
        for (src, door) in self.grants.drain() {
            if self.doors[door].door.on_close.for_addr(src).is_some() {
                self.on_close(src, door, CloseReason::Shutdown);
            }
        }
    }

    // ----- internals ------------------------------------------------------

    fn note(&mut self, note: Note) {
        self.actions.push_back(Action::Note(note));
    }

    fn name(&self, door: DoorId) -> Arc<str> {
        Arc::clone(&self.names[door])
    }

    fn services_of(&self, addr: IpAddr, door: DoorId) -> Vec<Service> {
        self.granted
            .get(&(addr, door))
            .cloned()
            .unwrap_or_else(|| self.doors[door].door.services.clone())
    }

    #[allow(clippy::too_many_arguments)]
    fn refuse(
        &mut self,
        via: &'static str,
        level: Level,
        src: IpAddr,
        door: DoorId,
        user: Option<String>,
        reason: &'static str,
        message: String,
    ) {
        self.note(Note::Refused {
            via,
            level,
            src,
            door: self.name(door),
            user,
            reason,
            message,
        });
    }

    fn handle_events<W: World + ?Sized>(&mut self, now: Now, world: &mut W) {
        let events = std::mem::take(&mut self.events);
        for &event in &events {
            if self.tally_first && self.tally(event) {
                continue;
            }
            let door = self.name(event.door());
            self.note(Note::Knock { event, door });
            if let Event::Open { src, door } = event {
                match self.totp.owner(door) {
                    Some(owner) => self.totp_open(now, src, door, owner, world),
                    None => {
                        let d = &self.doors[door];
                        let (services, open_for) = (d.door.services.clone(), d.door.open_for);
                        let one_time = matches!(d.kind, DoorKind::OneTime);
                        if one_time {
                            self.one_time_open(now, src, door, world);
                            continue;
                        }
                        self.open_with(now, src, door, &services, open_for, world);
                        if self.grants.expires_at(src, door).is_some() {
                            self.publish_grant(src, door, open_for, world);
                        }
                    }
                }
            }
        }
        self.events = events;
        self.events.clear();
        self.flush_tallies();
    }

    /// Counts a first knock or a one-knock eviction while tallying; false
    /// for any other event.
    fn tally(&mut self, event: Event) -> bool {
        let (door, first) = match event {
            Event::Stage {
                door, matched: 1, ..
            } => (door, true),
            Event::Evicted {
                door, matched: 1, ..
            } => (door, false),
            _ => return false,
        };
        if self.tallies.len() <= door {
            self.tallies.resize(door + 1, (0, 0));
        }
        let t = &mut self.tallies[door];
        if first {
            t.0 += 1;
        } else {
            t.1 += 1;
        }
        true
    }

    fn flush_tallies(&mut self) {
        for door_id in 0..self.tallies.len() {
            let (stages, evictions) = std::mem::take(&mut self.tallies[door_id]);
            if stages + evictions > 0 {
                let door = self.name(door_id);
                self.note(Note::FirstKnocks {
                    door,
                    door_id,
                    stages,
                    evictions,
                });
            }
        }
    }

    /// While `on`, first knocks and evictions of one-knock attempts are
    /// counted per door and reported once per batch of packets
    /// ([`Note::FirstKnocks`]) rather than one [`Note::Knock`] each: under a
    /// flood of spoofed first knocks that is most of the engine's output.
    /// Tallies are reported at the end of every input, so none is pending
    /// when this is called.
    pub fn tally_first_knocks(&mut self, on: bool) {
        self.tally_first = on;
    }

    fn roll_totp<W: World + ?Sized>(&mut self, now: Now, world: &mut W) {
        if self.totp.is_empty() || self.rolled_at == Some(now.unix) {
            return;
        }
        self.rolled_at = Some(now.unix);
        let store = world.replay();
        let spent = store.as_ref().map(|r| r.spent());
        for (slot, sequence) in self.totp.roll(&self.doors, now.unix, spent) {
            self.tracker.set_sequence(slot, sequence);
        }
    }

    /// Opens `services` of a door for `src` for `open_for`.
    fn open_with<W: World + ?Sized>(
        &mut self,
        now: Now,
        src: IpAddr,
        door: DoorId,
        services: &[Service],
        open_for: Duration,
        world: &mut W,
    ) {
        let name = self.name(door);
        // A redirect reaches a local port: the grant lets the knocker in
        // there too (fwknop's local NAT does the same).
        let forwards = self.forwards_for(door, src);
        let mut services = services.to_vec();
        for local in forwards.iter().filter_map(Forward::local_service) {
            if !services.contains(&local) {
                services.push(local);
            }
        }
        let services = &services[..];
        if !services.is_empty() {
            if let Err(e) = world.firewall().grant(src, services, open_for) {
                self.note(Note::OpenFailed {
                    src,
                    door: name,
                    error: e.0,
                });
                return;
            }
        }
        if let Err(e) = world.firewall().forward(src, &forwards, open_for) {
            // All or nothing: the services just granted are taken back.
            let _ = world.firewall().revoke(src, services);
            self.note(Note::OpenFailed {
                src,
                door: name,
                error: e.0,
            });
            return;
        }
        let entry = self.granted.entry((src, door)).or_default();
        for s in services {
            if !entry.contains(s) {
                entry.push(*s);
            }
        }
        match self.grants.open(now.mono, src, door, open_for) {
            GrantOutcome::New => {
                self.note(Note::Opened {
                    src,
                    door: name,
                    services: services.to_vec(),
                    forwards: forwards.clone(),
                    open_for,
                });
                let d = &self.doors[door].door;
                if let Some(cmd) = d.on_open.for_addr(src) {
                    let runs = commands(cmd, "on_open", src, d, services);
                    self.actions.extend(runs.into_iter().map(Action::Run));
                }
            }
            GrantOutcome::Refreshed => self.note(Note::Refreshed {
                src,
                door: name,
                open_for,
            }),
        }
        self.close_evicted_grants(world);
    }

    /// Grants pushed out by `max_grants` are closed now, in the kernel too,
    /// so the books and the kernel agree. A service another live grant of
    /// the same address still covers stays open.
    fn close_evicted_grants<W: World + ?Sized>(&mut self, world: &mut W) {
        for (src, door) in self.grants.drain_evicted() {
            let services = self
                .granted
                .remove(&(src, door))
                .unwrap_or_else(|| self.doors[door].door.services.clone());
            let still: Vec<Service> = (0..self.doors.len())
                .filter_map(|d| self.granted.get(&(src, d)))
                .flatten()
                .copied()
                .collect();
            let remove: Vec<Service> = services
                .into_iter()
                .filter(|s| !still.contains(s))
                .collect();
            let name = self.name(door);
            let forwards = self.forwards_for(door, src);
            if let Err(e) = world.firewall().unforward(src, &forwards) {
                self.note(Note::RevokeFailed {
                    src,
                    door: Arc::clone(&name),
                    error: e.0,
                    evicted: true,
                });
            }
            if !remove.is_empty() {
                if let Err(e) = world.firewall().revoke(src, &remove) {
                    self.note(Note::RevokeFailed {
                        src,
                        door: Arc::clone(&name),
                        error: e.0,
                        evicted: true,
                    });
                }
            }
            let capacity = self.grants.capacity();
            self.note(Note::GrantEvicted {
                src,
                door: name,
                capacity,
            });
            self.on_close(src, door, CloseReason::Evicted);
        }
    }

    /// A one-time sequence was used: the store marks it and names the next
    /// one, or the door retires when none is left (also when marking fails:
    /// a sequence that cannot be marked used must not stay usable). The
    /// ruleset is updated so the new ports are observed.
    fn next_one_time_sequence<W: World + ?Sized>(&mut self, door: DoorId, world: &mut W) {
        let name = self.name(door);
        let next = match world.one_time().consume(&name) {
            Ok(Some((next, remaining))) => {
                self.note(Note::OneTimeNext {
                    door: Arc::clone(&name),
                    knocks: next.len(),
                    remaining,
                });
                Some(next)
            }
            Ok(None) => {
                self.note(Note::OneTimeExhausted {
                    door: Arc::clone(&name),
                });
                None
            }
            Err(e) => {
                self.note(Note::OneTimeFailed {
                    door: Arc::clone(&name),
                    error: e.0,
                });
                None
            }
        };
        self.tracker.set_sequence(door, next.unwrap_or_default());
        if let Err(e) = world.firewall().install(&self.ruleset()) {
            self.note(Note::RulesetFailed {
                door: name,
                error: e.0,
            });
        }
    }

    fn on_close(&mut self, src: IpAddr, door: DoorId, why: CloseReason) {
        self.granted.remove(&(src, door));
        self.requested.remove(&(src, door));
        let adopted = self.adopted.remove(&(src, door));
        self.note(Note::Closed {
            src,
            door: self.name(door),
            why,
        });
        if adopted {
            return;
        }
        let d = &self.doors[door].door;
        if let Some(cmd) = d.on_close.for_addr(src) {
            let runs = commands(cmd, "on_close", src, d, &d.services);
            self.actions.extend(runs.into_iter().map(Action::Run));
        }
    }

    /// Removes one grant from the kernel and the books, and runs on_close.
    fn revoke_one<W: World + ?Sized>(
        &mut self,
        addr: IpAddr,
        door: DoorId,
        why: &str,
        world: &mut W,
    ) -> Result<Vec<Service>, String> {
        let services = self.services_of(addr, door);
        let name = self.name(door);
        // A service another grant of the same address still holds stays.
        let still: Vec<Service> = self
            .grants
            .iter()
            .filter(|&(a, d, _)| a == addr && d != door)
            .flat_map(|(a, d, _)| self.services_of(a, d))
            .collect();
        let remove: Vec<Service> = services
            .iter()
            .copied()
            .filter(|s| !still.contains(s))
            .collect();
        let forwards = self.forwards_for(door, addr);
        let removed = world
            .firewall()
            .revoke(addr, &remove)
            .and_then(|()| world.firewall().unforward(addr, &forwards));
        if let Err(e) = removed {
            self.note(Note::RevokeFailed {
                src: addr,
                door: Arc::clone(&name),
                error: e.0.clone(),
                evicted: false,
            });
            return Err(format!("removing the grant of {addr} on {name}: {e}"));
        }
        self.granted.remove(&(addr, door));
        self.requested.remove(&(addr, door));
        self.adopted.remove(&(addr, door));
        self.grants.revoke(addr, door);
        self.note(Note::Revoked {
            src: addr,
            door: name,
            services: services.clone(),
            why: why.to_string(),
        });
        let d = &self.doors[door].door;
        if let Some(cmd) = d.on_close.for_addr(addr) {
            let runs = commands(cmd, "on_close", addr, d, &d.services);
            self.actions.extend(runs.into_iter().map(Action::Run));
        }
        Ok(services)
    }

    /// The forwards a grant of `door` for `addr` uses: the door's own (of
    /// the address's family) and those its request asked for.
    fn forwards_for(&self, door: DoorId, addr: IpAddr) -> Vec<Forward> {
        let own = self.doors.get(door).map(|d| d.door.forwards.as_slice());
        let asked = self.requested.get(&(addr, door)).map(Vec::as_slice);
        own.unwrap_or_default()
            .iter()
            .chain(asked.unwrap_or_default())
            .filter(|f| f.applies_to(addr))
            .copied()
            .collect()
    }

    /// Takes the request waiting on `ticket` for the fleet's store
    /// (`fleet`) or the local one; an answer from the other store for it
    /// leaves it waiting (its own answer or deadline still comes).
    fn take_pending(&mut self, ticket: Ticket, fleet: bool) -> Option<state::Pending> {
        match self.pending.get(&ticket) {
            Some(p) if p.fleet == fleet => self.pending.remove(&ticket),
            _ => None,
        }
    }

    fn ticket(&mut self) -> Ticket {
        self.next_ticket += 1;
        Ticket(self.next_ticket)
    }
}

/// The commands a template renders to: one per service, or one for a
/// commands-only door.
fn commands(
    cmd: &crate::CommandTemplate,
    which: &str,
    src: IpAddr,
    door: &Door,
    services: &[Service],
) -> Vec<Run> {
    if services.is_empty() {
        return vec![Run {
            argv: cmd.render(src, &door.name, None),
            why: format!("{which} door={} source={src}", door.name),
            run_as: None,
        }];
    }
    services
        .iter()
        .map(|service| Run {
            argv: cmd.render(src, &door.name, Some(*service)),
            why: format!("{which} door={} source={src} service={service}", door.name),
            run_as: None,
        })
        .collect()
}
