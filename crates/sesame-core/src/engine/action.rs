//! What the engine asks its driver to do: run a command, or take note of
//! something (log it, count it, export it). Grants and ruleset changes go
//! through the [`crate::ports::Firewall`] seam, whose answer the engine
//! needs; these actions need no answer.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::tracker::Event;
use crate::{Prefix, Service};

/// One thing for the driver to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run a command (a door's `on_open`/`on_close`, an fwknop command
    /// message). Never through a shell unless the template is one.
    Run(Run),
    /// Something happened: log it, count it.
    Note(Note),
}

/// A command to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Why, for the log (`on_open door=ssh source=…`).
    pub why: String,
    /// Run as this (uid, gid) rather than the daemon's own.
    pub run_as: Option<(u32, u32)>,
}

/// How loudly a note should be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Routine detail (floods of these are normal).
    Debug,
    /// A normal event.
    Info,
    /// Something failed.
    Error,
}

/// Why a grant ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// Its time ran out.
    Expired,
    /// `max_grants` was reached and it closed first.
    Evicted,
    /// The daemon is stopping (its on_close runs now).
    Shutdown,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CloseReason::Expired => "expired",
            CloseReason::Evicted => "evicted: max_grants reached",
            CloseReason::Shutdown => "daemon shutdown",
        })
    }
}

/// Something the engine saw or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A knock attempt moved (the tracker's event). `door` names the door
    /// (a TOTP slot's is its door's name); `door_id` is the tracker's.
    Knock {
        /// What happened.
        event: Event,
        /// The door's name.
        door: Arc<str>,
    },
    /// While first knocks are tallied ([`crate::engine::Engine::tally_first_knocks`]):
    /// how many first knocks, and evictions of one-knock attempts, a door
    /// saw in one batch of packets, instead of a [`Note::Knock`] each.
    FirstKnocks {
        /// The door's name.
        door: Arc<str>,
        /// The tracker's door.
        door_id: crate::tracker::DoorId,
        /// First knocks (`Event::Stage` with one knock matched).
        stages: u64,
        /// One-knock attempts evicted to make room.
        evictions: u64,
    },
    /// A banned prefix's knocks count again.
    BanEnded {
        /// The prefix.
        prefix: Prefix,
    },
    /// A credential was accepted (`event`: `spa_accepted`, `totp_accepted`,
    /// `fwknop_accepted`, `fwknop_command`).
    Accepted {
        /// Log event name.
        event: &'static str,
        /// Sender.
        src: IpAddr,
        /// Door.
        door: Arc<str>,
        /// The credential's user.
        user: String,
        /// The log line.
        message: String,
    },
    /// A credential was refused.
    Refused {
        /// The door type (`spa`, `totp`, `fwknop`): event `<via>_refused`.
        via: &'static str,
        /// How loudly.
        level: Level,
        /// Sender.
        src: IpAddr,
        /// Door.
        door: Arc<str>,
        /// The user, when known.
        user: Option<String>,
        /// A stable label (metrics and log field).
        reason: &'static str,
        /// The log line.
        message: String,
    },
    /// A new grant.
    Opened {
        /// Who.
        src: IpAddr,
        /// Door.
        door: Arc<str>,
        /// What (empty: a commands-only or forwards-only door).
        services: Vec<Service>,
        /// What it forwards through this host (gateway mode).
        forwards: Vec<crate::Forward>,
        /// For how long.
        open_for: Duration,
    },
    /// A grant was extended.
    Refreshed {
        /// Who.
        src: IpAddr,
        /// Door.
        door: Arc<str>,
        /// New lifetime from now.
        open_for: Duration,
    },
    /// The firewall refused a grant: the door stays closed.
    OpenFailed {
        /// Who.
        src: IpAddr,
        /// Door.
        door: Arc<str>,
        /// The firewall's error.
        error: String,
    },
    /// `max_grants` was reached: the oldest-closing grant was closed.
    GrantEvicted {
        /// Whose.
        src: IpAddr,
        /// Door.
        door: Arc<str>,
        /// `max_grants`.
        capacity: usize,
    },
    /// A grant ended.
    Closed {
        /// Whose.
        src: IpAddr,
        /// Door.
        door: Arc<str>,
        /// Why.
        why: CloseReason,
    },
    /// A grant was revoked before its time.
    Revoked {
        /// Whose.
        src: IpAddr,
        /// Door.
        door: Arc<str>,
        /// What was removed.
        services: Vec<Service>,
        /// By whom or why.
        why: String,
    },
    /// Removing a grant from the kernel failed.
    RevokeFailed {
        /// Whose.
        src: IpAddr,
        /// Door.
        door: Arc<str>,
        /// The firewall's error.
        error: String,
        /// The grant was evicted (it still closes at its kernel timeout).
        evicted: bool,
    },
    /// A one-time door moved to its next sequence.
    OneTimeNext {
        /// Door.
        door: Arc<str>,
        /// Knocks in the next sequence.
        knocks: usize,
        /// Sequences left after it.
        remaining: usize,
    },
    /// A one-time door used its last sequence: it is retired.
    OneTimeExhausted {
        /// Door.
        door: Arc<str>,
    },
    /// A used one-time sequence could not be marked: the door is disabled.
    OneTimeFailed {
        /// Door.
        door: Arc<str>,
        /// The store's error.
        error: String,
    },
    /// The ruleset could not be updated for a door's new knock ports.
    RulesetFailed {
        /// Door.
        door: Arc<str>,
        /// The firewall's error.
        error: String,
    },
    /// The fleet's store was down and the door's `on_store_down = "local"`
    /// let a credential in with single use on this gateway only.
    FleetLocalOnly {
        /// Sender.
        src: IpAddr,
        /// Door.
        door: Arc<str>,
        /// Why the store did not answer.
        error: String,
    },
    /// A grant or revoke from another gateway of the fleet was applied
    /// (`applied`) or ignored, and why.
    FleetEntry {
        /// Grant or revoke.
        kind: crate::fleet::EntryKind,
        /// The gateway that sent it.
        from: String,
        /// Whose grant.
        src: IpAddr,
        /// The door's name, as sent.
        door: String,
        /// `applied`, or why it was ignored (`expired`, `not_for_us`,
        /// `unknown_door`, `not_a_fleet_door`, `revoked_later`,
        /// `address_refused`, `open_failed`).
        outcome: &'static str,
    },
}
