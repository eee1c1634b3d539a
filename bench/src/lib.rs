//! Shared pieces of the attack benchmark: the raw-socket packet generator
//! ([`gen`]), the legitimate-client probes ([`probe`]) and the fwknop SPA
//! client ([`spa`]).

pub mod gen;
pub mod probe;
pub mod spa;
