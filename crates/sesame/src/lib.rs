//! Sesame's application layer: the config file, the daemon loop that wires
//! the sans-IO core (`sesame-core`) to its adapters (`sesame-nflog` for packet
//! observation, `sesame-nftables` for the firewall), the CLIs, and the
//! namespace testbed used by the demo, the tests and the benchmarks. The
//! portable client (knocks, profiles, key files) is `sesame-client`,
//! re-exported here as [`client`] and [`keys`].
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
pub mod control;
pub mod daemon;
pub mod demo;
pub mod docs;
pub use sesame_client::keys;
pub use sesame_config::fwknop_conf;
pub use sesame_config::knockd;
pub mod logging;
pub use sesame_config::one_time;
pub mod privilege;
pub mod safe_fs;
pub mod service;
/// The namespace test bed (`sesame-testkit`), used by `sesame demo`.
pub use sesame_testkit::testbed;
