//! Fleet mode in the engine: the fleet-wide spend that follows the local
//! one, the store-down policy, publishing grants and revokes to the other
//! gateways, and applying theirs.

use std::net::IpAddr;
use std::time::Duration;

use crate::fleet::{
    one_time_token, spend_token, EntryKind, Outgoing, SpendAnswer, StoreDown, VerifiedEntry,
    ONE_TIME_SPEND_TTL,
};
use crate::ports::{FleetSpend, Ticket, World};
use crate::tracker::DoorId;
use crate::Service;

use super::action::{Level, Note};

/// Another gateway's revoke is remembered this long past the door's
/// `open_for`: a grant made before the revoke that arrives after it (a
/// slow gateway, clock skew) must not reopen the door. Later, any such
/// grant has expired anyway.
const REVOKE_MEMORY_MARGIN: Duration = Duration::from_secs(60);
/// Up to this many remembered revokes, none are pruned.
const REVOKES_KEPT_WITHOUT_PRUNING: usize = 1024;
use super::state::{Accepted, Engine, Now, Pending, SpentLocally, Then};

impl Engine {
    /// The fleet spend of a credential of `door` with `key`, kept until
    /// unix second `expires`: `None` outside fleet mode or for other doors.
    pub(super) fn fleet_spend(
        &self,
        now: Now,
        door: DoorId,
        key: &crate::replay::ReplayKey,
        expires: u64,
    ) -> Option<([u8; 32], Duration)> {
        let policy = self.settings.fleet.as_ref()?;
        self.doors[door].fleet.as_ref()?;
        let token = spend_token(&policy.group, &self.doors[door].door.name, key);
        let ttl = Duration::from_secs(expires.saturating_sub(now.unix).saturating_add(1));
        Some((token, ttl))
    }

    /// The local spend is durable: a fleet door spends the credential
    /// fleet-wide before it opens; any other door opens now.
    pub(super) fn spent_locally<W: World + ?Sized>(
        &mut self,
        now: Now,
        c: SpentLocally,
        then: Accepted,
        world: &mut W,
    ) {
        let (Some((token, ttl)), Some(timeout)) = (
            c.fleet_spend,
            self.settings.fleet.as_ref().map(|f| f.timeout),
        ) else {
            return self.carry_out(now, c.src, c.door, c.user, then, false, world);
        };
        let ticket = self.ticket();
        let publish = self.grant_entry(c.door, &then);
        let answer = match world.fleet() {
            Some(store) => store.spend(ticket, token, ttl, publish),
            None => FleetSpend::Done(SpendAnswer::Unavailable(
                "this daemon has no fleet store".into(),
            )),
        };
        match answer {
            FleetSpend::Done(answer) => {
                self.fleet_decide(now, c.via, c.src, c.door, c.user, then, answer, world)
            }
            FleetSpend::Pending => {
                self.pending.insert(
                    ticket,
                    Pending {
                        deadline: now.mono + timeout,
                        via: c.via,
                        src: c.src,
                        door: c.door,
                        user: c.user,
                        then,
                        fleet_spend: None,
                        fleet: true,
                    },
                );
            }
        }
    }

    /// A one-time door's current sequence was knocked: it is used here
    /// whatever happens next (the file moves on), and a fleet door also
    /// spends it fleet-wide before it opens, so a sequence used at one
    /// gateway opens no other.
    pub(super) fn one_time_open<W: World + ?Sized>(
        &mut self,
        now: Now,
        src: IpAddr,
        door: DoorId,
        world: &mut W,
    ) {
        let d = &self.doors[door];
        let (services, open_for) = (d.door.services.clone(), d.door.open_for);
        let fleet_spend = match (&self.settings.fleet, &d.fleet) {
            (Some(policy), Some(_)) => Some((
                one_time_token(
                    &policy.group,
                    &d.door.name,
                    &self.tracker.doors()[door].sequence,
                ),
                ONE_TIME_SPEND_TTL,
            )),
            _ => None,
        };
        self.next_one_time_sequence(door, world);
        let Some(fleet_spend) = fleet_spend else {
            // As before fleet mode: no accept note, the grant says it all.
            return self.open_with(now, src, door, &services, open_for, world);
        };
        let accepted = Accepted {
            event: "one_time_accepted",
            message: "one-time sequence accepted".into(),
            then: Then::Grant {
                target: src,
                services,
                open_for,
                forwards: Vec::new(),
            },
        };
        let spent = SpentLocally {
            via: "one_time",
            src,
            door,
            user: String::new(),
            fleet_spend: Some(fleet_spend),
        };
        self.spent_locally(now, spent, accepted, world);
    }

    /// The fleet's store answered a spend it left pending.
    pub fn fleet_answered<W: World + ?Sized>(
        &mut self,
        now: Now,
        ticket: Ticket,
        answer: SpendAnswer,
        world: &mut W,
    ) {
        let Some(p) = self.take_pending(ticket, true) else {
            return;
        };
        self.fleet_decide(now, p.via, p.src, p.door, p.user, p.then, answer, world);
    }

    /// A fleet spend waited past its deadline: the store counts as down.
    pub(super) fn fleet_timed_out<W: World + ?Sized>(
        &mut self,
        now: Now,
        p: Pending,
        world: &mut W,
    ) {
        let timeout = self.settings.fleet.as_ref().map(|f| f.timeout);
        let why = format!("the fleet store did not answer within {timeout:?}");
        let answer = SpendAnswer::Unavailable(why);
        self.fleet_decide(now, p.via, p.src, p.door, p.user, p.then, answer, world);
    }

    #[allow(clippy::too_many_arguments)]
    fn fleet_decide<W: World + ?Sized>(
        &mut self,
        now: Now,
        via: &'static str,
        src: IpAddr,
        door: DoorId,
        user: String,
        then: Accepted,
        answer: SpendAnswer,
        world: &mut W,
    ) {
        match answer {
            SpendAnswer::Spent => {
                // The store published the grant with the spend.
                let published = self.grant_entry(door, &then).is_some();
                self.carry_out(now, src, door, user, then, published, world)
            }
            SpendAnswer::SpentElsewhere { by } => {
                let message = format!(
                    "{via} credential of user {user:?} refused: already spent in the fleet (first at gateway {by})"
                );
                self.refuse(
                    via,
                    Level::Info,
                    src,
                    door,
                    Some(user),
                    "fleet_replay",
                    message,
                );
            }
            SpendAnswer::Unavailable(error) => {
                let policy = self.settings.fleet.as_ref().map(|f| f.on_store_down);
                if policy == Some(StoreDown::Local) {
                    let door_name = self.name(door);
                    self.note(Note::FleetLocalOnly {
                        src,
                        door: door_name,
                        error,
                    });
                    return self.carry_out(now, src, door, user, then, false, world);
                }
                let message = format!(
                    "{via} credential of user {user:?} refused: the fleet store is unreachable ({error}) and on_store_down = \"deny\""
                );
                self.refuse(
                    via,
                    Level::Error,
                    src,
                    door,
                    Some(user),
                    "fleet_store_down",
                    message,
                );
            }
        }
    }

    /// The entry a grant of `door` that `then` makes is published as, when
    /// the door's grants open on other gateways.
    fn grant_entry(&self, door: DoorId, then: &Accepted) -> Option<Outgoing> {
        let Then::Grant {
            target,
            services,
            open_for,
            ..
        } = &then.then
        else {
            return None;
        };
        let to = self.doors[door].fleet.as_ref()?.open_on.clone()?;
        Some(Outgoing {
            kind: EntryKind::Grant,
            door: self.doors[door].door.name.clone(),
            addr: *target,
            services: services.clone(),
            to,
            lasts: *open_for,
        })
    }

    /// A grant of a door whose grants open on other gateways was made or
    /// refreshed here: tell them.
    pub(super) fn publish_grant<W: World + ?Sized>(
        &mut self,
        addr: IpAddr,
        door: DoorId,
        lasts: Duration,
        world: &mut W,
    ) {
        self.publish(EntryKind::Grant, addr, door, lasts, world);
    }

    /// A grant of such a door was revoked here: tell the others.
    pub(super) fn publish_revoke<W: World + ?Sized>(
        &mut self,
        addr: IpAddr,
        door: DoorId,
        world: &mut W,
    ) {
        let lasts = self.doors[door].door.open_for;
        self.publish(EntryKind::Revoke, addr, door, lasts, world);
    }

    fn publish<W: World + ?Sized>(
        &mut self,
        kind: EntryKind,
        addr: IpAddr,
        door: DoorId,
        lasts: Duration,
        world: &mut W,
    ) {
        let Some(to) = self.doors[door]
            .fleet
            .as_ref()
            .and_then(|f| f.open_on.clone())
        else {
            return;
        };
        if self.settings.fleet.is_none() {
            return;
        }
        let services = self.services_of(addr, door);
        let Some(store) = world.fleet() else { return };
        store.publish(Outgoing {
            kind,
            door: self.doors[door].door.name.clone(),
            addr,
            services,
            to,
            lasts,
        });
    }

    /// How many revokes of other gateways are remembered (to refuse grants
    /// made before them); bounded, see [`Engine::fleet_entry`].
    pub fn fleet_revokes_held(&self) -> usize {
        self.fleet_revoked.len()
    }

    /// Remembers that `addr`'s grant of `door` was revoked at `made_ms`.
    /// Revokes older than the door's `open_for` (plus a margin) are
    /// forgotten once many are held (one scan a second at most), and at
    /// most `max_grants` are held: roaming users and revoking admins must
    /// not grow this for ever, and a flood of revokes costs no scan each.
    fn remember_revoke(&mut self, addr: IpAddr, door: DoorId, made_ms: u64, now_ms: u64) {
        if let Some(at) = self.fleet_revoked.get_mut(&(addr, door)) {
            *at = (*at).max(made_ms);
            return;
        }
        if self.fleet_revoked.len() >= REVOKES_KEPT_WITHOUT_PRUNING
            && now_ms >= self.fleet_revoked_pruned_ms.saturating_add(1000)
        {
            self.fleet_revoked_pruned_ms = now_ms;
            let doors = &self.doors;
            self.fleet_revoked.retain(|&(_, d), at| {
                let kept = doors[d].door.open_for + REVOKE_MEMORY_MARGIN;
                at.saturating_add(kept.as_millis() as u64) > now_ms
            });
        }
        let cap = self.settings.max_grants.max(REVOKES_KEPT_WITHOUT_PRUNING);
        if self.fleet_revoked.len() < cap {
            self.fleet_revoked.insert((addr, door), made_ms);
        }
    }

    /// A grant or revoke another gateway signed (checked by the adapter
    /// against the allow-list of signers), at unix millisecond `now_ms`.
    /// A grant opens only what this gateway's own door of that name
    /// protects, for the time the grant has left and at most the door's
    /// `open_for`. A revoke is remembered for the door's `open_for` and a
    /// minute more, so that an older grant arriving late stays closed.
    pub fn fleet_entry<W: World + ?Sized>(
        &mut self,
        now: Now,
        now_ms: u64,
        verified: &VerifiedEntry,
        world: &mut W,
    ) {
        let e = verified.entry();
        let outcome = self.apply_entry(now, now_ms, verified, world);
        self.note(Note::FleetEntry {
            kind: e.kind,
            from: e.from.clone(),
            src: e.addr,
            door: e.door.clone(),
            outcome,
        });
    }

    fn apply_entry<W: World + ?Sized>(
        &mut self,
        now: Now,
        now_ms: u64,
        verified: &VerifiedEntry,
        world: &mut W,
    ) -> &'static str {
        let e = verified.entry();
        let Some(policy) = &self.settings.fleet else {
            return "not_in_a_fleet";
        };
        if e.from == policy.name {
            return "own";
        }
        if !e.to.includes(&policy.name) {
            return "not_for_us";
        }
        let Ok(door) = self.door_id(&e.door) else {
            return "unknown_door";
        };
        let accepts = self.doors[door]
            .fleet
            .as_ref()
            .and_then(|f| f.open_on.as_ref())
            .is_some_and(|t| t.includes(&e.from));
        if !accepts {
            return "not_a_fleet_door";
        }
        let revoked = self.fleet_revoked.get(&(e.addr, door)).copied();
        match e.kind {
            EntryKind::Revoke => {
                self.remember_revoke(e.addr, door, e.made_ms, now_ms);
                if !self.granted.contains_key(&(e.addr, door))
                    && self.grants.expires_at(e.addr, door).is_none()
                {
                    return "applied";
                }
                let why = format!("revoked at gateway {}", e.from);
                match self.revoke_one(e.addr, door, &why, world) {
                    Ok(_) => "applied",
                    Err(_) => "revoke_failed",
                }
            }
            EntryKind::Grant => {
                if e.expires_ms <= now_ms {
                    return "expired";
                }
                if revoked.is_some_and(|r| e.made_ms <= r) {
                    return "revoked_later";
                }
                if super::flows::target_refusal(world, e.addr).is_some() {
                    return "address_refused";
                }
                let d = &self.doors[door].door;
                let services: Vec<Service> = d
                    .services
                    .iter()
                    .copied()
                    .filter(|s| e.services.contains(s))
                    .collect();
                let left = Duration::from_millis(e.expires_ms - now_ms).min(d.open_for);
                self.open_with(now, e.addr, door, &services, left, world);
                if self.grants.expires_at(e.addr, door).is_some() {
                    "applied"
                } else {
                    "open_failed"
                }
            }
        }
    }
}
