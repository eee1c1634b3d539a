//! The engine's state and the plain types of its interface: what the
//! other engine files share, kept apart so that they import it from here
//! rather than from their parent module.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::grants::Grants;
use crate::ports::Ticket;
use crate::rate::{PrefixBudget, RatePolicy};
use crate::tracker::{DoorId, Event, Tracker};
use crate::{BanPolicy, Instant, Service};

use super::action::{Action, Run};
use super::doors::EngineDoor;
use super::totp_slots::TotpSlots;

/// How long a reservation may wait for an asynchronous replay store before
/// the request it holds is refused.
pub const RESERVATION_TIMEOUT: Duration = Duration::from_secs(2);

/// The most requests that may wait for the replay store at once; more are
/// refused (`replay_store_busy`).
pub const MAX_PENDING: usize = 4096;

/// One reading of both clocks, taken once per input: the monotonic one for
/// deadlines, the wall one (unix seconds) for credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time.
    pub mono: Instant,
    /// Seconds since the Unix epoch.
    pub unix: u64,
}

/// Engine-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// NFLOG group knocks are logged to.
    pub nflog_group: u16,
    /// Interfaces knocks count on (empty: all).
    pub interfaces: Vec<String>,
    /// Knock attempts tracked at once.
    pub max_tracked: usize,
    /// Grants held at once.
    pub max_grants: usize,
    /// Knock failure budget per prefix.
    pub ban: BanPolicy,
    /// Public-key SPA verifications per source prefix.
    pub spa_pk_rate: RatePolicy,
    /// This gateway's fleet (fleet doors need one).
    pub fleet: Option<crate::fleet::FleetPolicy>,
}

/// Hash seeds for the engine's tables (randomness is passed in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seeds {
    /// Knock attempt table.
    pub tracker: [u64; 2],
    /// Grant book.
    pub grants: [u64; 2],
    /// Public-key budget.
    pub budget: [u64; 2],
}

/// Why the doors cannot run together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// Two single-packet doors listen on one UDP port.
    #[error("doors {a:?} and {b:?} both use udp/{port}")]
    PortClash {
        /// First door.
        a: String,
        /// Second door.
        b: String,
        /// The port.
        port: u16,
    },
}

/// A grant as the control plane lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantView {
    /// Who.
    pub addr: IpAddr,
    /// Door (index into [`Engine::doors`]).
    pub door: DoorId,
    /// What it opens.
    pub services: Vec<Service>,
    /// What it forwards through this host (the door's and the request's).
    pub forwards: Vec<crate::Forward>,
    /// When it closes.
    pub until: Instant,
}

/// What [`Engine::take_over`] carried from the engine it replaces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Carried {
    /// Grants kept (their door still exists).
    pub kept: usize,
    /// Grants revoked (their door was removed).
    pub revoked: usize,
    /// Knock attempts kept (their door is unchanged).
    pub knocks: usize,
}

/// An accepted request waiting for the replay store.
pub(super) struct Pending {
    pub(super) deadline: Instant,
    pub(super) via: &'static str,
    pub(super) src: IpAddr,
    pub(super) door: DoorId,
    pub(super) user: String,
    pub(super) then: Accepted,
    /// A fleet door's spend token and how long the fleet keeps it: spent
    /// fleet-wide once the local store answered.
    pub(super) fleet_spend: Option<([u8; 32], Duration)>,
    /// Waiting for the fleet's store rather than the local one.
    pub(super) fleet: bool,
}

/// The protocol object. See the module documentation.
pub struct Engine {
    pub(super) doors: Vec<EngineDoor>,
    /// Names of the tracker's doors (the configured ones, then TOTP slots).
    pub(super) names: Vec<Arc<str>>,
    pub(super) settings: Settings,
    pub(super) tracker: Tracker,
    pub(super) totp: TotpSlots,
    /// Single-packet doors by UDP port.
    pub(super) datagram_ports: HashMap<u16, DoorId>,
    pub(super) grants: Grants,
    /// Services each grant holds (SPA and fwknop may grant a subset).
    pub(super) granted: HashMap<(IpAddr, DoorId), Vec<Service>>,
    /// Grants found in the kernel at start: their on_close already ran.
    pub(super) adopted: HashSet<(IpAddr, DoorId)>,
    /// Forwards a request asked for (fwknop NAT), per grant: they close
    /// with it.
    pub(super) requested: HashMap<(IpAddr, DoorId), Vec<crate::Forward>>,
    /// Roaming SPA doors: where each user's last grant went, so that a
    /// grant to a new address takes the old one's place.
    pub(super) holders: HashMap<(DoorId, String), IpAddr>,
    /// Fleet revokes seen: when (unix ms) each grant was last revoked, so
    /// that an older grant entry delivered late cannot undo the revoke.
    pub(super) fleet_revoked: HashMap<(IpAddr, DoorId), u64>,
    /// When (unix ms) `fleet_revoked` was last pruned: at most once a
    /// second, so a flood of revokes costs no scan per entry.
    pub(super) fleet_revoked_pruned_ms: u64,
    pub(super) pk_budget: PrefixBudget,
    pub(super) pending: HashMap<Ticket, Pending>,
    pub(super) next_ticket: u64,
    /// Unix second of the last TOTP roll.
    pub(super) rolled_at: Option<u64>,
    pub(super) events: Vec<Event>,
    pub(super) closed: Vec<(IpAddr, DoorId)>,
    pub(super) actions: VecDeque<Action>,
    /// Tally first knocks and one-knock evictions per door instead of a
    /// note each (the driver sets it while a flood lasts).
    pub(super) tally_first: bool,
    /// Per tracker door: (first knocks, one-knock evictions) this batch.
    pub(super) tallies: Vec<(u64, u64)>,
}

/// What an accepted request does once its credential is spent.
pub(super) struct Accepted {
    /// Log event (`spa_accepted`, …) and line.
    pub(super) event: &'static str,
    pub(super) message: String,
    pub(super) then: Then,
}

pub(super) enum Then {
    Grant {
        target: IpAddr,
        services: Vec<Service>,
        open_for: Duration,
        /// Forwards this request asked for (fwknop NAT), besides the
        /// door's own.
        forwards: Vec<crate::Forward>,
    },
    Command(Run),
}

/// A credential spent locally, about to be spent fleet-wide.
pub(super) struct SpentLocally {
    pub(super) via: &'static str,
    pub(super) src: IpAddr,
    pub(super) door: DoorId,
    pub(super) user: String,
    /// Its fleet spend token and lifetime (a fleet door's), else `None`.
    pub(super) fleet_spend: Option<([u8; 32], Duration)>,
}
