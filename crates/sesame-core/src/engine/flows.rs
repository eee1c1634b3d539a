//! The credential doors (Sesame SPA, fwknop SPA, TOTP): from a datagram or
//! a completed slot to an accepted request, then the one accept protocol
//! they share: refuse what predates a first start, refuse a replay, make
//! the credential spent in the store (which may answer later), and only
//! then grant or run.

use std::net::IpAddr;

use crate::fwknop::{self, FwknopError, FwknopMessage, MsgType};
use crate::ports::{PortError, Reservation, World};
use crate::replay::{ReplayError, ReplayKey};
use crate::spa::Cost;
use crate::tracker::DoorId;

use super::action::{Action, Level, Note, Run};
use super::doors::DoorKind;
use super::policy::{self, FwknopAction};
use super::state::{
    Accepted, Engine, Now, Pending, SpentLocally, Then, MAX_PENDING, RESERVATION_TIMEOUT,
};
use super::totp_slots::SlotOwner;

/// A credential about to be spent.
struct Credential {
    via: &'static str,
    src: IpAddr,
    door: DoorId,
    user: String,
    /// Unix second it was made (a packet's timestamp, a TOTP step's start).
    made_at: u64,
    key: ReplayKey,
    expires: u64,
    /// Already inserted into the spent set (SPA verifies and inserts in one).
    inserted: bool,
}

fn what(via: &str) -> &'static str {
    match via {
        "spa" => "SPA packet",
        "totp" => "TOTP sequence",
        _ => "fwknop SPA packet",
    }
}

/// The replay key of an fwknop request accepted by stanza `line` of `door`
/// (a stanza holds one user's keys).
pub fn fwknop_key(door: &str, line: usize, msg: &FwknopMessage) -> ReplayKey {
    msg.replay_key().with_owner(ReplayKey::owner_id(
        b"fwknop",
        format!("{door}/{line}").as_bytes(),
    ))
}

/// Why an address a request names explicitly may not be granted: one no
/// grant should go to (loopback, link-local and the like), or one of this
/// host's own or broadcast addresses.
pub(super) fn target_refusal<W: World + ?Sized>(world: &mut W, addr: IpAddr) -> Option<String> {
    let addr = match addr {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    };
    if !crate::spa::usable_address(addr) {
        return Some(format!(
            "{addr} cannot be granted (unspecified, multicast, broadcast, loopback or link-local)"
        ));
    }
    world.host_address_refusal(addr)
}

impl Engine {
    pub(super) fn spa_datagram<W: World + ?Sized>(
        &mut self,
        now: Now,
        src: IpAddr,
        door: DoorId,
        bytes: &[u8],
        world: &mut W,
    ) {
        let DoorKind::Spa(spa) = &self.doors[door].kind else {
            return;
        };
        // Cheap checks first (length, magic, version, mac1, key id); a
        // public-key verification then spends the source prefix's budget,
        // so one prefix's flood cannot take the others' share.
        match spa.verifier.precheck(bytes) {
            Err(e) => {
                let message = format!("SPA packet refused: {e}");
                return self.refuse("spa", Level::Debug, src, door, None, e.reason(), message);
            }
            Ok(Cost::PublicKey) if !self.pk_budget.allow(now.mono, src) => {
                return self.refuse(
                    "spa",
                    Level::Debug,
                    src,
                    door,
                    None,
                    "rate_limited",
                    "public-key SPA packet refused: this source's budget of verifications is spent"
                        .into(),
                );
            }
            Ok(_) => {}
        }
        let DoorKind::Spa(spa) = &self.doors[door].kind else {
            return;
        };
        let Some(store) = world.replay() else { return };
        let v = match spa
            .verifier
            .verify_and_record(bytes, now.unix, store.spent_mut())
        {
            Ok(v) => v,
            Err(e) => {
                let message = format!("SPA packet refused: {e}");
                return self.refuse("spa", Level::Info, src, door, None, e.reason(), message);
            }
        };
        let user = v.user.to_string();
        let target = v.payload.address.unwrap_or(src);
        if let Some(explicit) = v.payload.address {
            if let Some(why) = target_refusal(world, explicit) {
                return self.refuse(
                    "spa",
                    Level::Info,
                    src,
                    door,
                    Some(user),
                    "address_refused",
                    format!("SPA request refused: {why}"),
                );
            }
        }
        let accepted = Accepted {
            event: "spa_accepted",
            message: format!("SPA request from user {user} accepted ({} mode)", v.mode),
            then: Then::Grant {
                target,
                services: v.services,
                open_for: v.duration,
                forwards: Vec::new(),
            },
        };
        let credential = Credential {
            via: "spa",
            src,
            door,
            user,
            made_at: v.payload.timestamp,
            key: v.replay_key,
            expires: v.replay_expires,
            inserted: true,
        };
        self.accept(now, credential, accepted, world);
    }

    /// An fwknop packet, with fwknopd's meaning: the first stanza whose
    /// SOURCE and DESTINATION match, that has not expired, whose keys
    /// authenticate the packet and whose policy allows the request decides.
    /// A stanza that authenticates the packet but refuses it on policy does
    /// not end the search (fwknop's "dual usage access key" setups rely on
    /// it).
    pub(super) fn fwknop_datagram<W: World + ?Sized>(
        &mut self,
        now: Now,
        src: IpAddr,
        dst: IpAddr,
        door: DoorId,
        bytes: &[u8],
        world: &mut W,
    ) {
        let DoorKind::Fwknop(f) = &self.doors[door].kind else {
            return;
        };
        let nat = &f.nat;
        let mut last_error: Option<FwknopError> = None;
        let mut policy_refusal: Option<(&'static str, String)> = None;
        let mut found = None;
        let mut packet_error = None;
        for loaded in &f.stanzas {
            let stanza = &loaded.stanza;
            if !policy::fwknop_source_matches(stanza, src)
                || !policy::in_networks(&stanza.destination, dst)
                || stanza.access_expire.is_some_and(|t| now.unix >= t)
            {
                continue;
            }
            match fwknop::decode(bytes, &loaded.keys, now.unix, f.max_age) {
                Ok(msg) => {
                    let action = if msg.request.msg_type == MsgType::Command {
                        policy::fwknop_command(stanza, &msg).map(FwknopAction::Command)
                    } else {
                        policy::fwknop_grant(stanza, nat, &msg, src, &mut |a| {
                            target_refusal(world, a)
                        })
                        .map(FwknopAction::Grant)
                    };
                    match action {
                        Ok(action) => {
                            found = Some((stanza.line, loaded.run_as, msg, action));
                            break;
                        }
                        Err((reason, detail)) => {
                            policy_refusal = Some((
                                reason,
                                format!("{detail} (stanza at line {})", stanza.line),
                            ));
                        }
                    }
                }
                // Another stanza may hold the right keys.
                Err(e) if !policy::packet_level(&e) => last_error = Some(e),
                Err(e) => {
                    packet_error = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = packet_error {
            let message = format!("fwknop SPA packet refused: {e}");
            return self.refuse("fwknop", Level::Info, src, door, None, e.reason(), message);
        }
        let max_age = f.max_age;
        let Some((line, run_as, msg, action)) = found else {
            let (reason, detail) = match (policy_refusal, last_error) {
                (Some(r), _) => r,
                (None, Some(e)) => (e.reason(), e.to_string()),
                (None, None) => (
                    "no_stanza",
                    format!("no access.conf stanza matches source {src}"),
                ),
            };
            return self.refuse(
                "fwknop",
                Level::Info,
                src,
                door,
                None,
                reason,
                format!("fwknop SPA packet refused: {detail}"),
            );
        };
        let name = self.name(door);
        let user = msg.request.username.clone();
        let accepted = match action {
            FwknopAction::Command(argv) => Accepted {
                event: "fwknop_command",
                message: format!(
                    "fwknop command message accepted (ENABLE_CMD_EXEC; stanza at line {line})"
                ),
                then: Then::Command(Run {
                    argv,
                    why: format!("fwknop command door={name} source={src}"),
                    run_as,
                }),
            },
            FwknopAction::Grant((target, services, open_for, forwards)) => Accepted {
                event: "fwknop_accepted",
                message: format!(
                    "fwknop SPA request {} accepted (stanza at line {line})",
                    msg.message_string()
                ),
                then: Then::Grant {
                    target,
                    services,
                    open_for,
                    forwards,
                },
            },
        };
        let credential = Credential {
            via: "fwknop",
            src,
            door,
            user,
            made_at: msg.request.timestamp,
            key: fwknop_key(&name, line, &msg),
            expires: msg.replay_expiry(max_age),
            inserted: false,
        };
        self.accept(now, credential, accepted, world);
    }

    /// A TOTP slot's sequence was knocked: single use, whatever happens
    /// next, so the slot is retired; then the accept protocol decides.
    pub(super) fn totp_open<W: World + ?Sized>(
        &mut self,
        now: Now,
        src: IpAddr,
        slot: DoorId,
        owner: SlotOwner,
        world: &mut W,
    ) {
        let Some(c) = self.totp.credential(&self.doors, owner) else {
            return;
        };
        self.tracker.set_sequence(slot, Vec::new());
        let door = &self.doors[owner.door].door;
        let accepted = Accepted {
            event: "totp_accepted",
            message: format!(
                "TOTP sequence of user {} for step {} accepted",
                c.user, c.step
            ),
            then: Then::Grant {
                target: src,
                services: door.services.clone(),
                open_for: door.open_for,
                forwards: Vec::new(),
            },
        };
        let credential = Credential {
            via: "totp",
            src,
            door: owner.door,
            user: c.user,
            made_at: c.step_start,
            key: c.key,
            expires: c.expires,
            inserted: false,
        };
        self.accept(now, credential, accepted, world);
    }

    /// The accept protocol every credential door shares.
    fn accept<W: World + ?Sized>(
        &mut self,
        now: Now,
        c: Credential,
        then: Accepted,
        world: &mut W,
    ) {
        let Some(store) = world.replay() else { return };
        if let Some(first) = store.not_before().filter(|&t| c.made_at < t) {
            let message = format!("{} refused: made at {} (unix), before this daemon's first start with an empty state directory at {first}; a lost state directory must not let captured credentials be replayed", what(c.via), c.made_at);
            return self.refuse(
                c.via,
                Level::Info,
                c.src,
                c.door,
                Some(c.user),
                "before_first_start",
                message,
            );
        }
        if !c.inserted {
            if let Err(e) = store
                .spent_mut()
                .check_and_insert(c.key, c.expires, now.unix)
            {
                let reason = match e {
                    ReplayError::Replayed => "replay",
                    _ => "replay_unverifiable",
                };
                let message = format!("{} refused: {e} (user {:?})", what(c.via), c.user);
                return self.refuse(
                    c.via,
                    Level::Info,
                    c.src,
                    c.door,
                    Some(c.user),
                    reason,
                    message,
                );
            }
        }
        // A store that stops answering must not let requests pile up: past
        // the cap, refuse (the credential stays spent: fail closed).
        if self.pending.len() >= MAX_PENDING {
            let message = format!(
                "{} refused: {MAX_PENDING} requests already wait for the replay store",
                what(c.via)
            );
            return self.refuse(
                c.via,
                Level::Error,
                c.src,
                c.door,
                Some(c.user),
                "replay_store_busy",
                message,
            );
        }
        let ticket = self.ticket();
        let fleet_spend = self.fleet_spend(now, c.door, &c.key, c.expires);
        match store.reserve(ticket, c.key, c.expires) {
            Reservation::Done(Ok(())) => {
                let spent = SpentLocally {
                    via: c.via,
                    src: c.src,
                    door: c.door,
                    user: c.user,
                    fleet_spend,
                };
                self.spent_locally(now, spent, then, world)
            }
            Reservation::Done(Err(e)) => self.spend_failed(c.via, c.src, c.door, c.user, e),
            Reservation::Pending => {
                self.pending.insert(
                    ticket,
                    Pending {
                        deadline: now.mono + RESERVATION_TIMEOUT,
                        via: c.via,
                        src: c.src,
                        door: c.door,
                        user: c.user,
                        then,
                        fleet_spend,
                        fleet: false,
                    },
                );
            }
        }
    }

    /// The replay store answered a reservation it left pending.
    pub fn reservation_answered<W: World + ?Sized>(
        &mut self,
        now: Now,
        ticket: crate::ports::Ticket,
        answer: Result<(), PortError>,
        world: &mut W,
    ) {
        let Some(p) = self.take_pending(ticket, false) else {
            return;
        };
        match answer {
            Ok(()) => {
                let spent = SpentLocally {
                    via: p.via,
                    src: p.src,
                    door: p.door,
                    user: p.user,
                    fleet_spend: p.fleet_spend,
                };
                self.spent_locally(now, spent, p.then, world)
            }
            Err(e) => self.spend_failed(p.via, p.src, p.door, p.user, e),
        }
    }

    /// Fail closed: an accept that cannot be remembered is not honoured.
    fn spend_failed(
        &mut self,
        via: &'static str,
        src: IpAddr,
        door: DoorId,
        user: String,
        e: PortError,
    ) {
        self.refuse(
            via,
            Level::Error,
            src,
            door,
            Some(user),
            "replay_state",
            e.0,
        );
    }

    /// Opens or runs what an accepted request asked for; a grant is
    /// published to the other gateways of a fleet door unless the spend
    /// already did (`published`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn carry_out<W: World + ?Sized>(
        &mut self,
        now: Now,
        src: IpAddr,
        door: DoorId,
        user: String,
        a: Accepted,
        published: bool,
        world: &mut W,
    ) {
        let door_name = self.name(door);
        let roaming = matches!(&self.doors[door].kind, DoorKind::Spa(s) if s.roaming);
        let holder = roaming.then(|| user.clone());
        self.note(Note::Accepted {
            event: a.event,
            src,
            door: door_name,
            user,
            message: a.message,
        });
        match a.then {
            Then::Grant {
                target,
                services,
                open_for,
                forwards,
            } => {
                if let Some(user) = holder {
                    self.move_holder(door, user, target, world);
                }
                if !forwards.is_empty() {
                    let held = self.requested.entry((target, door)).or_default();
                    for f in forwards {
                        if !held.contains(&f) {
                            held.push(f);
                        }
                    }
                }
                self.open_with(now, target, door, &services, open_for, world);
                if !published && self.grants.expires_at(target, door).is_some() {
                    self.publish_grant(target, door, open_for, world);
                }
            }
            Then::Command(run) => self.actions.push_back(Action::Run(run)),
        }
    }

    /// A roaming door's grant for `user` goes to `target`: the grant of
    /// the address the user held before (if still open) is revoked.
    fn move_holder<W: World + ?Sized>(
        &mut self,
        door: DoorId,
        user: String,
        target: IpAddr,
        world: &mut W,
    ) {
        let Some(previous) = self.holders.insert((door, user.clone()), target) else {
            return;
        };
        if previous == target || !self.granted.contains_key(&(previous, door)) {
            return;
        }
        let why = format!("user {user} moved to {target}");
        // A failed revoke is noted by revoke_one; the old grant then ends
        // with its kernel timeout.
        if self.revoke_one(previous, door, &why, world).is_ok() {
            self.publish_revoke(previous, door, world);
        }
    }
}
