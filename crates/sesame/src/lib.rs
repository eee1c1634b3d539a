//! Sesame's application layer: the config file, the daemon loop that wires
//! the sans-IO core (`sesame-core`) to its adapters (`sesame-nflog` for packet
//! observation, `sesame-nftables` for the firewall), the knocking client, and
//! the namespace testbed used by the demo, the tests and the benchmarks.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod docs;
pub mod fwknop_conf;
pub mod keys;
pub mod knockd;
pub mod logging;
pub mod one_time;
pub mod privilege;
pub mod safe_fs;
pub mod service;
pub mod testbed;
