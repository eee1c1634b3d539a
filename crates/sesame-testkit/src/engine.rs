//! In-memory stand-ins for every seam, and [`Harness`]: an engine, a
//! world and a virtual clock, driven from packet bytes to firewall calls
//! without root, sockets or real time (quinn's `Pair`, for Sesame).
//!

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sesame_core::fleet::{self, Outgoing, Signers, SpendAnswer};
use sesame_core::spa::IdentityKey;

use sesame_core::engine::{Action, Engine, Note, Now, Ruleset, Run};
use sesame_core::packet::{self, testing as wire};
use sesame_core::ports::{
    Firewall, FleetSpend, FleetStore, OneTimeStore, PortError, ReplayStore, Reservation, Ticket,
    World,
};
use sesame_core::replay::{ReplayCache, ReplayKey};
use sesame_core::tracker::Observation;
use sesame_core::{Forward, Instant, Knock, Proto, Service};

/// A firewall in memory: the grants it holds, with their kernel expiry.
#[derive(Debug, Default)]
pub struct MemoryFirewall {
    /// The installed ruleset.
    pub ruleset: Option<Ruleset>,
    /// How many times a ruleset was installed.
    pub installs: usize,
    /// (address, service) → expiry on the harness clock.
    pub grants: BTreeMap<(IpAddr, Service), Instant>,
    /// (address, forward) → expiry on the harness clock.
    pub forwards: BTreeMap<(IpAddr, Forward), Instant>,
    /// The harness clock, kept current by [`Harness`].
    pub now: Instant,
    /// Make every call fail (a lost netlink socket, a full kernel set).
    pub failing: bool,
}

impl MemoryFirewall {
    /// Whether `addr` may reach `service` now (its grant has not expired).
    pub fn admits(&self, addr: IpAddr, service: Service) -> bool {
        self.grants
            .get(&(addr, service))
            .is_some_and(|&t| t > self.now)
    }

    /// Whether `addr` may use `forward` now.
    pub fn forwards(&self, addr: IpAddr, forward: Forward) -> bool {
        self.forwards
            .get(&(addr, forward))
            .is_some_and(|&t| t > self.now)
    }

    fn check(&self) -> Result<(), PortError> {
        if self.failing {
            Err(PortError("memory firewall: failing on purpose".into()))
        } else {
            Ok(())
        }
    }
}

impl Firewall for MemoryFirewall {
    fn install(&mut self, ruleset: &Ruleset) -> Result<(), PortError> {
        self.check()?;
        self.ruleset = Some(ruleset.clone());
        self.installs += 1;
        Ok(())
    }

    fn grant(
        &mut self,
        addr: IpAddr,
        services: &[Service],
        ttl: Duration,
    ) -> Result<(), PortError> {
        self.check()?;
        for s in services {
            self.grants.insert((addr, *s), self.now + ttl);
        }
        Ok(())
    }

    fn revoke(&mut self, addr: IpAddr, services: &[Service]) -> Result<(), PortError> {
        self.check()?;
        for s in services {
            self.grants.remove(&(addr, *s));
        }
        Ok(())
    }

    fn forward(
        &mut self,
        addr: IpAddr,
        forwards: &[Forward],
        ttl: Duration,
    ) -> Result<(), PortError> {
        self.check()?;
        for f in forwards {
            self.forwards.insert((addr, *f), self.now + ttl);
        }
        Ok(())
    }

    fn unforward(&mut self, addr: IpAddr, forwards: &[Forward]) -> Result<(), PortError> {
        self.check()?;
        for f in forwards {
            self.forwards.remove(&(addr, *f));
        }
        Ok(())
    }
}

/// How [`MemoryReplay`] answers reservations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreMode {
    /// At once, successfully (a local file).
    #[default]
    Immediate,
    /// Later: the test answers with [`Harness::answer`] (a network store).
    Deferred,
    /// At once, with an error (a full disk).
    Failing,
}

/// A replay store in memory.
#[derive(Debug)]
pub struct MemoryReplay {
    /// The spent set.
    pub cache: ReplayCache,
    /// First-start floor.
    pub not_before: Option<u64>,
    /// How reservations are answered.
    pub mode: StoreMode,
    /// Durable records, in order.
    pub recorded: Vec<ReplayKey>,
    /// Reservations waiting for an answer.
    pub waiting: Vec<Ticket>,
}

impl Default for MemoryReplay {
    fn default() -> Self {
        MemoryReplay {
            cache: ReplayCache::new(1024),
            not_before: None,
            mode: StoreMode::Immediate,
            recorded: Vec::new(),
            waiting: Vec::new(),
        }
    }
}

impl ReplayStore for MemoryReplay {
    fn spent(&self) -> &ReplayCache {
        &self.cache
    }
    fn spent_mut(&mut self) -> &mut ReplayCache {
        &mut self.cache
    }
    fn not_before(&self) -> Option<u64> {
        self.not_before
    }
    fn reserve(&mut self, ticket: Ticket, key: ReplayKey, _expires: u64) -> Reservation {
        match self.mode {
            StoreMode::Immediate => {
                self.recorded.push(key);
                Reservation::Done(Ok(()))
            }
            StoreMode::Deferred => {
                self.recorded.push(key);
                self.waiting.push(ticket);
                Reservation::Pending
            }
            StoreMode::Failing => {
                Reservation::Done(Err(PortError("memory store: disk full".into())))
            }
        }
    }
}

/// One-time sequence files in memory: door name → sequences left.
#[derive(Debug, Default)]
pub struct MemoryOneTime {
    /// The sequences after each door's current one.
    pub next: HashMap<String, VecDeque<Vec<Knock>>>,
    /// Marking fails (a read-only file).
    pub failing: bool,
}

impl OneTimeStore for MemoryOneTime {
    fn consume(&mut self, door: &str) -> Result<Option<(Vec<Knock>, usize)>, PortError> {
        if self.failing {
            return Err(PortError(format!("one-time file of {door}: read-only")));
        }
        let left = self.next.entry(door.to_string()).or_default();
        Ok(left.pop_front().map(|s| (s, left.len())))
    }
}

/// A fleet's store in memory, shared by several [`Harness`]es: the spent
/// set and the log of signed entries, as Redis would hold them.
#[derive(Debug, Default)]
pub struct SharedStore {
    /// Spent tokens → the gateway that spent each first.
    pub spent: HashMap<[u8; 32], String>,
    /// Signed entry lines, in order (anyone with store access may append).
    pub entries: Vec<(String, [u8; 64])>,
    /// The store is unreachable.
    pub down: bool,
    /// The store accepts requests and never answers (a hung server).
    pub hung: bool,
}

/// One gateway's side of a [`SharedStore`].
pub struct MemoryFleet {
    /// This gateway's name.
    pub name: String,
    /// The fleet's group.
    pub group: String,
    /// This gateway's signing key.
    pub key: IdentityKey,
    /// Whose entries it installs.
    pub signers: Signers,
    /// The store.
    pub store: Arc<Mutex<SharedStore>>,
    /// Entries read so far.
    pub cursor: usize,
    /// The harness's wall clock in unix ms (entries are stamped with it).
    pub stamp_ms: u64,
    /// Spends a hung store left unanswered.
    pub unanswered: Vec<Ticket>,
}

impl MemoryFleet {
    /// The entry line, stamped with the harness clock, and its signature.
    fn signed(&self, outgoing: Outgoing) -> (String, [u8; 64]) {
        let line = outgoing.stamp(&self.name, self.stamp_ms).encode();
        let sig = fleet::sign(&self.key, &self.group, &line);
        (line, sig)
    }

    /// Gateway `name` of `group` on `store`, trusting `signers`.
    pub fn new(
        name: &str,
        group: &str,
        key: IdentityKey,
        signers: Signers,
        store: Arc<Mutex<SharedStore>>,
    ) -> Self {
        MemoryFleet {
            name: name.into(),
            group: group.into(),
            key,
            signers,
            store,
            cursor: 0,
            stamp_ms: 0,
            unanswered: Vec::new(),
        }
    }
}

impl std::fmt::Debug for MemoryFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemoryFleet({})", self.name)
    }
}

impl FleetStore for MemoryFleet {
    fn spend(
        &mut self,
        ticket: Ticket,
        token: [u8; 32],
        _ttl: Duration,
        then_publish: Option<Outgoing>,
    ) -> FleetSpend {
        let entry = then_publish.map(|o| self.signed(o));
        let mut store = self.store.lock().expect("fleet store lock");
        if store.hung {
            self.unanswered.push(ticket);
            return FleetSpend::Pending;
        }
        if store.down {
            return FleetSpend::Done(SpendAnswer::Unavailable("memory store down".into()));
        }
        FleetSpend::Done(match store.spent.get(&token) {
            Some(by) => SpendAnswer::SpentElsewhere { by: by.clone() },
            None => {
                store.spent.insert(token, self.name.clone());
                store.entries.extend(entry);
                SpendAnswer::Spent
            }
        })
    }

    fn publish(&mut self, outgoing: Outgoing) {
        let entry = self.signed(outgoing);
        let mut store = self.store.lock().expect("fleet store lock");
        if !store.down {
            store.entries.push(entry);
        }
    }
}

/// Every seam in memory.
#[derive(Debug, Default)]
pub struct MemoryWorld {
    /// The firewall.
    pub firewall: MemoryFirewall,
    /// The replay store, when doors need one.
    pub replay: Option<MemoryReplay>,
    /// One-time files.
    pub one_time: MemoryOneTime,
    /// This host's addresses (a grant to them is refused).
    pub local: Vec<IpAddr>,
    /// The fleet's store, in fleet mode.
    pub fleet: Option<MemoryFleet>,
}

impl World for MemoryWorld {
    fn firewall(&mut self) -> &mut dyn Firewall {
        &mut self.firewall
    }
    fn replay(&mut self) -> Option<&mut dyn ReplayStore> {
        self.replay.as_mut().map(|r| r as &mut dyn ReplayStore)
    }
    fn one_time(&mut self) -> &mut dyn OneTimeStore {
        &mut self.one_time
    }
    fn fleet(&mut self) -> Option<&mut dyn FleetStore> {
        self.fleet.as_mut().map(|f| f as &mut dyn FleetStore)
    }
    fn host_address_refusal(&mut self, addr: IpAddr) -> Option<String> {
        self.local
            .contains(&addr)
            .then(|| format!("{addr} is an address of this host"))
    }
}

/// Small engine settings for tests: NFLOG group 7, 1024 attempts, 64
/// grants, default ban and rate policies, no fleet.
pub fn test_settings() -> sesame_core::engine::Settings {
    sesame_core::engine::Settings {
        nflog_group: 7,
        interfaces: Vec::new(),
        max_tracked: 1024,
        max_grants: 64,
        ban: sesame_core::BanPolicy::default(),
        spa_pk_rate: sesame_core::rate::RatePolicy::default(),
        fleet: None,
    }
}

/// `door` as a TOTP door for tests: user `carol` (a secret of twenty 7s),
/// four knocks in 20000–20999 over TCP, 30 s steps, no fleet. Returns the
/// door, its spec and carol's secret.
pub fn totp_door(
    door: sesame_core::Door,
) -> (
    sesame_core::engine::EngineDoor,
    sesame_core::totp::TotpSpec,
    sesame_core::totp::TotpSecret,
) {
    let spec = sesame_core::totp::TotpSpec {
        len: 4,
        ports: 20000..=20999,
        proto: Proto::Tcp,
        period: 30,
    };
    let secret = sesame_core::totp::TotpSecret::new(&[7u8; 20]).expect("a TOTP secret");
    let engine_door = sesame_core::engine::EngineDoor {
        door,
        kind: sesame_core::engine::DoorKind::Totp(sesame_core::engine::TotpDoor {
            spec: spec.clone(),
            users: vec![("carol".into(), secret.clone())],
        }),
        fleet: None,
    };
    (engine_door, spec, secret)
}

/// An engine, its world and a virtual clock.
pub struct Harness {
    /// The engine under test.
    pub engine: Engine,
    /// Its seams.
    pub world: MemoryWorld,
    /// The clock.
    pub now: Now,
    /// Every note the engine produced, in order.
    pub notes: Vec<Note>,
    /// Every command it asked to run.
    pub runs: Vec<Run>,
}

impl Harness {
    /// Starts `engine` at unix second `unix`, with a replay store when its
    /// doors need one, and installs its ruleset.
    pub fn new(engine: Engine, unix: u64) -> Self {
        let mut world = MemoryWorld::default();
        if engine.needs_replay_store() {
            world.replay = Some(MemoryReplay::default());
        }
        let mut h = Harness {
            engine,
            world,
            now: Now {
                mono: Instant::ZERO + Duration::from_secs(1),
                unix,
            },
            notes: Vec::new(),
            runs: Vec::new(),
        };
        let ruleset = h.engine.ruleset();
        h.world.firewall.install(&ruleset).expect("memory install");
        h.tick();
        h
    }

    /// Lets `d` pass, firing every deadline on the way, in order.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now.mono + d;
        let end_unix = self.now.unix + d.as_secs();
        for _ in 0..100_000 {
            match self.engine.poll_timeout(self.now) {
                Some(t) if t <= end && t > self.now.mono => {
                    let secs = t.saturating_since(self.now.mono).as_secs();
                    self.now = Now {
                        mono: t,
                        unix: self.now.unix + secs,
                    };
                    self.tick();
                }
                _ => break,
            }
        }
        self.now = Now {
            mono: end,
            unix: end_unix,
        };
        self.tick();
    }

    /// Fires what is due now.
    pub fn tick(&mut self) {
        self.sync_clock();
        self.engine.handle_timeout(self.now, &mut self.world);
        self.drain();
    }

    /// One packet, as NFLOG would deliver it: raw IP bytes from `src` to
    /// `dst`, a TCP SYN or a UDP datagram with `payload`.
    pub fn packet(&mut self, src: IpAddr, dst: IpAddr, proto: Proto, port: u16, payload: &[u8]) {
        let l4 = match proto {
            Proto::Tcp => wire::tcp(40000, port, sesame_core::door::tcp_flag::SYN, payload),
            Proto::Udp => wire::udp(40000, port, payload),
        };
        let number = if proto == Proto::Tcp {
            wire::TCP
        } else {
            wire::UDP
        };
        let bytes = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => wire::ipv4(s, d, number, &l4),
            (IpAddr::V6(s), IpAddr::V6(d)) => wire::ipv6(s, d, &[], number, &l4),
            _ => panic!("mixed address families"),
        };
        self.sync_clock();
        let p = packet::parse(&bytes).expect("the builder makes valid packets");
        if p.proto == Proto::Udp && self.engine.wants_datagram(p.dst_port) {
            let payload = p.payload.to_vec();
            self.engine.datagram(
                self.now,
                p.src,
                p.dst,
                p.dst_port,
                &payload,
                &mut self.world,
            );
        } else {
            let obs = Observation::from(&p);
            self.engine.observe(self.now, &[obs], &mut self.world);
        }
        self.drain();
    }

    /// One batch of observed knock packets, as one NFLOG read delivers them.
    pub fn observe(&mut self, batch: &[Observation]) {
        self.sync_clock();
        self.engine.observe(self.now, batch, &mut self.world);
        self.drain();
    }

    /// Knocks `knocks` in order from `src` to `dst`, 10 ms apart.
    pub fn knock(&mut self, src: IpAddr, dst: IpAddr, knocks: &[Knock]) {
        for k in knocks {
            self.packet(src, dst, k.proto, k.port, &[]);
            self.advance(Duration::from_millis(10));
        }
    }

    /// Answers the oldest deferred reservation.
    pub fn answer(&mut self, ok: bool) {
        let store = self.world.replay.as_mut().expect("a replay store");
        let ticket = store.waiting.remove(0);
        let answer = if ok {
            Ok(())
        } else {
            Err(PortError("store said no".into()))
        };
        self.engine
            .reservation_answered(self.now, ticket, answer, &mut self.world);
        self.drain();
    }

    /// Installs the entries other gateways wrote to the fleet's store
    /// since the last call, as the adapter does: only those that verify
    /// against this gateway's signers reach the engine. Returns how many
    /// did not verify.
    pub fn deliver_fleet(&mut self) -> usize {
        self.sync_clock();
        let Some(f) = self.world.fleet.as_mut() else {
            return 0;
        };
        let new: Vec<(String, [u8; 64])> = {
            let store = f.store.lock().expect("fleet store lock");
            store.entries[f.cursor..].to_vec()
        };
        f.cursor += new.len();
        let verified: Vec<_> = new
            .iter()
            .map(|(line, sig)| f.signers.verify(&f.group, line, sig))
            .collect();
        let mut rejected = 0;
        for v in verified {
            match v {
                Ok(entry) => {
                    let now_ms = self.now.unix * 1000;
                    self.engine
                        .fleet_entry(self.now, now_ms, &entry, &mut self.world)
                }
                Err(_) => rejected += 1,
            }
        }
        self.drain();
        rejected
    }

    fn sync_clock(&mut self) {
        self.world.firewall.now = self.now.mono;
        if let Some(f) = self.world.fleet.as_mut() {
            f.stamp_ms = self.now.unix * 1000;
        }
    }

    /// Whether `addr` may reach `service` now.
    pub fn admits(&self, addr: IpAddr, service: Service) -> bool {
        self.world.firewall.admits(addr, service)
    }

    /// The `reason`s of the refusals noted so far.
    pub fn refusals(&self) -> Vec<&'static str> {
        self.notes
            .iter()
            .filter_map(|n| match n {
                Note::Refused { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect()
    }

    fn drain(&mut self) {
        while let Some(a) = self.engine.poll_action() {
            match a {
                Action::Note(n) => self.notes.push(n),
                Action::Run(r) => self.runs.push(r),
            }
        }
    }
}
