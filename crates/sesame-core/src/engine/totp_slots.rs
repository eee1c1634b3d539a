//! TOTP slot scheduling. The tracker matches fixed sequences; a TOTP door
//! gets three tracker "slot doors" per user, holding the sequences of the
//! previous, current and next time step (`step % 3`). At each step boundary
//! the slots roll; a sequence already spent stays disabled (empty).

use std::collections::HashMap;
use std::time::Duration;

use crate::replay::{ReplayCache, ReplayKey};
use crate::totp::steps_at;
use crate::tracker::DoorId;
use crate::{Door, Knock};

use super::doors::{DoorKind, EngineDoor};

/// What a TOTP slot stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotOwner {
    /// The TOTP door (index into the engine's doors).
    pub door: DoorId,
    /// User index within that door.
    pub user: usize,
    /// Slot (step % 3).
    pub slot: usize,
}

/// A user's three slots: (tracker door id, step it holds), by `step % 3`.
type UserSlots = [(DoorId, Option<u64>); 3];

/// The slots of every TOTP door.
#[derive(Default)]
pub struct TotpSlots {
    /// `slots[door][user][step % 3]` = (tracker door id, step it holds).
    slots: HashMap<DoorId, Vec<UserSlots>>,
    /// Tracker slot door → owner.
    owner: HashMap<DoorId, SlotOwner>,
}

/// A slot's credential: what makes its sequence single-use.
pub struct SlotCredential {
    /// Replay key.
    pub key: ReplayKey,
    /// Last unix second it could be valid.
    pub expires: u64,
    /// Its time step.
    pub step: u64,
    /// First unix second of that step.
    pub step_start: u64,
    /// The user's name.
    pub user: String,
}

/// The replay key of a TOTP sequence, attributed to its user so that each
/// user gets a fair share of the replay cache.
pub fn totp_key(door: &str, user: &str, step: u64, sequence: &[Knock]) -> ReplayKey {
    ReplayKey::totp(door, step, sequence).with_owner(ReplayKey::owner_id(
        b"totp",
        format!("{door}/{user}").as_bytes(),
    ))
}

impl TotpSlots {
    /// The doors to give the tracker: the configured doors with every
    /// non-sequence door emptied (they never match a knock sequence),
    /// followed by three empty slot doors per TOTP user, filled by
    /// [`TotpSlots::roll`].
    pub fn tracker_doors(doors: &[EngineDoor]) -> (Vec<Door>, TotpSlots) {
        let mut out: Vec<Door> = doors.iter().map(|d| d.door.clone()).collect();
        let mut this = TotpSlots::default();
        for (id, d) in doors.iter().enumerate() {
            if !d.kind.is_sequence() {
                out[id].sequence.clear();
            }
            let DoorKind::Totp(t) = &d.kind else { continue };
            let template = out[id].clone();
            let mut per_user = Vec::new();
            for user in 0..t.users.len() {
                let mut slots = [(0, None); 3];
                for (slot, entry) in slots.iter_mut().enumerate() {
                    let slot_id = out.len();
                    out.push(template.clone());
                    *entry = (slot_id, None);
                    this.owner.insert(
                        slot_id,
                        SlotOwner {
                            door: id,
                            user,
                            slot,
                        },
                    );
                }
                per_user.push(slots);
            }
            this.slots.insert(id, per_user);
        }
        (out, this)
    }

    /// The owner of a tracker door, when it is a TOTP slot.
    pub fn owner(&self, tracker_door: DoorId) -> Option<SlotOwner> {
        self.owner.get(&tracker_door).copied()
    }

    /// Whether any TOTP door exists.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Brings every slot to the steps valid at `now_unix`; returns the new
    /// sequences, as `(slot door, sequence)`. A sequence already spent (in
    /// `spent`) stays disabled (empty).
    pub fn roll(
        &mut self,
        doors: &[EngineDoor],
        now_unix: u64,
        spent: Option<&ReplayCache>,
    ) -> Vec<(DoorId, Vec<Knock>)> {
        let mut changes = Vec::new();
        for (&id, per_user) in &mut self.slots {
            let DoorKind::Totp(t) = &doors[id].kind else {
                continue;
            };
            for (user, (name, secret)) in t.users.iter().enumerate() {
                for step in steps_at(now_unix, t.spec.period) {
                    let slot = (step % 3) as usize;
                    let (slot_id, held) = per_user[user][slot];
                    if held == Some(step) {
                        continue;
                    }
                    per_user[user][slot].1 = Some(step);
                    let sequence = t.spec.sequence(secret, step).unwrap_or_default();
                    let key = totp_key(&doors[id].door.name, name, step, &sequence);
                    let used = spent.is_some_and(|c| c.contains(&key));
                    changes.push((slot_id, if used { Vec::new() } else { sequence }));
                }
            }
        }
        changes
    }

    /// The credential of the sequence a slot holds.
    pub fn credential(&self, doors: &[EngineDoor], owner: SlotOwner) -> Option<SlotCredential> {
        let DoorKind::Totp(t) = &doors.get(owner.door)?.kind else {
            return None;
        };
        let (_, step) = self.slots.get(&owner.door)?.get(owner.user)?[owner.slot];
        let step = step?;
        let (user, secret) = t.users.get(owner.user)?;
        let sequence = t.spec.sequence(secret, step).ok()?;
        Some(SlotCredential {
            key: totp_key(&doors[owner.door].door.name, user, step, &sequence),
            expires: t.spec.replay_expires(step),
            step,
            step_start: step.saturating_mul(t.spec.period),
            user: user.clone(),
        })
    }

    /// Time until the next step boundary of any TOTP door.
    pub fn next_roll_in(doors: &[EngineDoor], now_unix: u64) -> Option<Duration> {
        doors
            .iter()
            .filter_map(|d| match &d.kind {
                DoorKind::Totp(t) => {
                    let p = t.spec.period.max(1);
                    Some(Duration::from_secs(p - now_unix % p))
                }
                _ => None,
            })
            .min()
    }
}
