//! Sans-IO core of Sesame.
//!
//! Everything here is pure computation: door definitions, the per-(source, door)
//! knock state machine, the bounded tables it keeps, the grant bookkeeping and
//! the defensive IPv4/IPv6 packet parser. There are no sockets, no clock and no
//! random number generator: the caller passes the current [`Instant`] and any
//! hash seed in. Adapters (packet observation, firewall, control) live in other
//! crates and drive this one.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ban;
pub mod door;
pub mod engine;
mod first_knocks;
pub mod fleet;
pub mod fwknop;
pub mod grants;
pub mod packet;
pub mod ports;
pub mod rate;
pub mod replay;
pub mod spa;
pub mod table;
pub mod time;
pub mod totp;
pub mod tracker;

pub use ban::{BanPolicy, FailureBudget, Prefix};
pub use door::{
    CommandTemplate, Commands, Door, DoorError, Forward, Guard, Knock, PortRange, Proto, Service,
    TcpFlags, MAX_SEQUENCE_LEN,
};
pub use grants::{GrantOutcome, Grants};
pub use packet::{Packet, ParseError};
pub use replay::{ReplayCache, ReplayError, ReplayKey};
pub use spa::{SpaError, Verified, Verifier};
pub use table::{EvictionPolicy, Table};
pub use time::Instant;
pub use tracker::{DoorId, Event, Observation, Tracker};
