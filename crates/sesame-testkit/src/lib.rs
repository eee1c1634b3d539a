//! Sesame's test kit, shared by the tests, the benchmarks and the demo:
//!
//! - [`engine`]: every seam of the core engine in memory, and [`engine::Harness`],
//!   which drives an engine from raw packet bytes to firewall grants on a
//!   virtual clock, without root (quinn's `Pair`, for Sesame);
//! - [`testbed`]: network namespaces joined by veth pairs, cleaned up on drop;
//! - [`proc`]: bounded waits for child processes and program lookup;
//! - [`net`]: knocks, timed connects, an echo service and latency figures;
//! - [`fwknop`]: fwknop keys, stanzas and a packet-making client.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod engine;
pub mod fwknop;
pub mod net;
pub mod proc;
pub mod redis;
pub mod testbed;
