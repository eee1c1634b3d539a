//! The seams between the engine and the outside world.
//!
//! The [`crate::engine::Engine`] decides; these traits are how it reaches
//! what it does not own: the kernel firewall, the store that makes a
//! credential single-use, the files of one-time sequences and the host's own
//! addresses. The daemon implements them with netlink and files; tests use
//! the in-memory stand-ins of `sesame-testkit`.
//!
//! The firewall and the one-time store answer at once: the kernel and a
//! local file are never slow, and their answer decides the engine's books.
//! The replay store may answer later ([`Reservation::Pending`]): a
//! fleet-wide store on the network must not stall the packet loop, so the
//! engine parks the accepted request until
//! [`crate::engine::Engine::reservation_answered`] or its deadline.

use std::net::IpAddr;
use std::time::Duration;

use crate::engine::ruleset::Ruleset;
use crate::replay::{ReplayCache, ReplayKey};
use crate::{Forward, Knock, Service};

/// What a seam reports when it cannot do what was asked. The message names
/// the object and the cause; it is logged as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PortError(pub String);

impl PortError {
    /// Wraps any error's message.
    pub fn from_display(e: impl std::fmt::Display) -> Self {
        PortError(e.to_string())
    }
}

/// The kernel side of a grant: closes the protected services to everyone,
/// observes the knock ports, and lets one address in for a limited time.
pub trait Firewall {
    /// Installs (or updates in place, keeping grants) the ruleset.
    fn install(&mut self, ruleset: &Ruleset) -> Result<(), PortError>;
    /// Lets `addr` reach `services` for `ttl`; the kernel closes it then.
    fn grant(&mut self, addr: IpAddr, services: &[Service], ttl: Duration)
        -> Result<(), PortError>;
    /// Removes `addr`'s grants of `services` now.
    fn revoke(&mut self, addr: IpAddr, services: &[Service]) -> Result<(), PortError>;
    /// Opens `forwards` through this host for `addr` for `ttl` (gateway
    /// doors); the kernel closes them then. A firewall that cannot forward
    /// says so.
    fn forward(
        &mut self,
        addr: IpAddr,
        forwards: &[Forward],
        ttl: Duration,
    ) -> Result<(), PortError> {
        let _ = (addr, ttl);
        cannot_forward(forwards)
    }
    /// Closes `addr`'s `forwards` now.
    fn unforward(&mut self, addr: IpAddr, forwards: &[Forward]) -> Result<(), PortError> {
        let _ = addr;
        cannot_forward(forwards)
    }
}

/// What a firewall without gateway support answers: nothing to do, or it
/// cannot.
fn cannot_forward(forwards: &[Forward]) -> Result<(), PortError> {
    match forwards.is_empty() {
        true => Ok(()),
        false => Err(PortError("this firewall cannot forward".into())),
    }
}

/// A reservation's identifier, unique within one engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// The answer of [`ReplayStore::reserve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Answered now: spent durably (`Ok`), or it could not be (`Err`, and
    /// the engine refuses: an accept that cannot be remembered is not
    /// honoured).
    Done(Result<(), PortError>),
    /// The store answers later, with the same ticket.
    Pending,
}

/// Makes accepted credentials single-use. The local spent set
/// ([`ReplayCache`]) is checked by the engine; the store makes each entry
/// durable (and, for a fleet store, shared) before the door opens.
pub trait ReplayStore {
    /// The spent set held here.
    fn spent(&self) -> &ReplayCache;
    /// The same, to insert into.
    fn spent_mut(&mut self) -> &mut ReplayCache;
    /// After a first start with an empty state directory: credentials made
    /// before this unix second are refused (their replay may have been
    /// forgotten). `None` otherwise.
    fn not_before(&self) -> Option<u64>;
    /// Records `key` (just inserted into the spent set, valid until unix
    /// second `expires`) durably.
    fn reserve(&mut self, ticket: Ticket, key: ReplayKey, expires: u64) -> Reservation;
}

/// The answer of [`FleetStore::spend`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetSpend {
    /// Answered now.
    Done(crate::fleet::SpendAnswer),
    /// The store answers later, through
    /// [`crate::engine::Engine::fleet_answered`] with the same ticket.
    Pending,
}

/// The store a fleet of gateways shares: it makes a credential single-use
/// across the fleet, and carries grants to the other gateways.
pub trait FleetStore {
    /// Records `token` ([`crate::fleet::spend_token`]) as spent for
    /// `ttl`, unless a gateway already did; when it records it, it also
    /// publishes `then_publish` in the same step (the grant the spend
    /// allows: the other gateways need not wait for this one's firewall).
    fn spend(
        &mut self,
        ticket: Ticket,
        token: [u8; 32],
        ttl: Duration,
        then_publish: Option<crate::fleet::Outgoing>,
    ) -> FleetSpend;
    /// Sends a grant or revoke to the other gateways (signed by the
    /// adapter; no answer is awaited).
    fn publish(&mut self, outgoing: crate::fleet::Outgoing);
}

/// Files of knockd-style one-time sequences.
pub trait OneTimeStore {
    /// Marks the current sequence of `door` used and returns the next one
    /// with how many are left after it, or `None` when the file ran out.
    fn consume(&mut self, door: &str) -> Result<Option<(Vec<Knock>, usize)>, PortError>;
}

/// Everything the engine reaches outside itself.
pub trait World {
    /// The firewall.
    fn firewall(&mut self) -> &mut dyn Firewall;
    /// The replay store (absent when no door needs one).
    fn replay(&mut self) -> Option<&mut dyn ReplayStore>;
    /// One-time sequence files.
    fn one_time(&mut self) -> &mut dyn OneTimeStore;
    /// The fleet's store (absent outside fleet mode).
    fn fleet(&mut self) -> Option<&mut dyn FleetStore> {
        None
    }
    /// Why an address a request names explicitly may not be granted because
    /// of this host's own addresses (one of them, or a broadcast address),
    /// or `Some` reason when they cannot be read (fail closed). `None`: it
    /// may be granted.
    fn host_address_refusal(&mut self, addr: IpAddr) -> Option<String>;
}
