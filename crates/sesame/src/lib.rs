//! Sesame's application layer: the config file, the daemon loop that wires
//! the sans-IO core (`sesame-core`) to its adapters (`sesame-nflog` for packet
//! observation, `sesame-nftables` for the firewall), the CLIs, and the
//! namespace testbed used by the demo, the tests and the benchmarks. The
//! portable client (knocks, profiles, key files) is `sesame-client`,
//! re-exported here as [`client`] and [`keys`].
//!
//! The daemon and what only it needs (control socket, logging, privileges,
//! systemd, the demo) are Linux-only; on macOS and Windows this crate builds
//! the `sesame` client commands alone.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// The knocking client (`sesame-client`): knocks, with its profiles and
/// fwknop doors.
pub mod client {
    pub use sesame_client::knock::*;
    pub use sesame_client::{enroll, fwknop, profile, reach};
}
/// The configuration (`sesame-config`).
pub use sesame_config as config;
pub mod cli;
#[cfg(target_os = "linux")]
pub mod control;
#[cfg(target_os = "linux")]
pub mod daemon;
#[cfg(target_os = "linux")]
pub mod demo;
#[cfg(target_os = "linux")]
pub mod demo_fleet;
pub mod docs;
pub use sesame_client::keys;
pub use sesame_config::fwknop_conf;
pub use sesame_config::knockd;
#[cfg(target_os = "linux")]
pub mod logging;
pub use sesame_config::one_time;
#[cfg(target_os = "linux")]
pub mod privilege;
#[cfg(target_os = "linux")]
pub mod safe_fs;
#[cfg(target_os = "linux")]
pub mod service;
/// The namespace test bed (`sesame-testkit`), used by `sesame demo`.
#[cfg(target_os = "linux")]
pub use sesame_testkit::testbed;
