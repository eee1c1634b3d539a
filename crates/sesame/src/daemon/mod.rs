//! `sesamed`: the driver between the engine and its adapters.
//!
//! - [`driver`]: the `poll()` loop: packets in, engine actions out.
//! - [`build`]: config → engine, replay store, one-time files (start and
//!   reload share it).
//! - [`world`]: the engine's seams on a real host (nf_tables, files).
//! - [`observe`]: engine notes → logs, counters, metrics.
//! - [`control`]: the control socket's requests and the reload.
//! - [`replay_file`]: the persisted replay store.
//! - [`cli`]: `sesamed`'s command line.

pub mod build;
pub mod checks;
pub mod cli;
pub mod commands;
mod control;
mod driver;
mod error;
pub mod fleet;
pub mod load;
pub mod metrics;
pub mod observe;
pub mod replay_file;
mod signals;
pub mod source;
pub mod world;

pub use build::unix_now;
pub use driver::Daemon;
pub use error::{AuthError, DaemonError};
