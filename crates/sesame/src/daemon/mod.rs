//! `sesamed`: the driver between the engine and its adapters.
//!
//! - [`driver`]: the `poll()` loop: packets in, engine actions out.
//! - [`build`]: config → engine, replay store, one-time files (start and
//!   reload share it).
//! - [`world`]: the engine's seams on a real host (nf_tables, files).
//! - [`observe`]: engine notes → logs, counters, metrics.
//! - [`control`]: the control socket's requests and the reload.
//! - [`replay_file`]: the persisted replay store.

pub mod build;
pub mod checks;
pub mod commands;
mod control;
mod driver;
pub mod load;
pub mod metrics;
pub mod observe;
pub mod replay_file;
pub mod source;
pub mod world;

use std::os::unix::net::UnixStream;

pub use build::unix_now;
pub use driver::Daemon;

use crate::one_time::OneTimeError;

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The config cannot run on this host (see [`checks::check`]).
    #[error("{0}")]
    Config(String),
    /// Installing or talking to the nftables table failed.
    #[error("firewall: {0}")]
    Firewall(#[from] sesame_nftables::FirewallError),
    /// Binding or reading the NFLOG group failed.
    #[error("packet observation: {0}")]
    Nflog(#[from] sesame_nflog::NflogError),
    /// SPA/TOTP/fwknop keys could not be used.
    #[error(transparent)]
    Auth(#[from] build::AuthError),
    /// The replay state could not be used.
    #[error(transparent)]
    Replay(#[from] replay_file::ReplayFileError),
    /// A one-time sequences file could not be used.
    #[error("door {door:?}: {source}")]
    OneTime {
        /// The door.
        door: String,
        /// Cause.
        source: OneTimeError,
    },
    /// The pid file could not be written.
    #[error("pid file {path}: {source}")]
    PidFile {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The control socket could not be set up.
    #[error(transparent)]
    Control(#[from] crate::control::server::ControlError),
    /// The metrics endpoint could not be bound.
    #[error("metrics endpoint {addr}: {source}")]
    Metrics {
        /// The address.
        addr: std::net::SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// Signal setup, poll or randomness failed.
    #[error("{what}: {source}")]
    Os {
        /// What was being done.
        what: &'static str,
        /// Cause.
        source: std::io::Error,
    },
}

pub(crate) fn os(what: &'static str) -> impl FnOnce(std::io::Error) -> DaemonError {
    move |source| DaemonError::Os { what, source }
}

/// Self-pipes the signal handlers write to; the loop polls the read ends.
pub(crate) struct SignalPipes {
    pub(crate) terminate: UnixStream,
    pub(crate) hangup: UnixStream,
    pub(crate) child: UnixStream,
}

impl SignalPipes {
    pub(crate) fn install() -> Result<Self, DaemonError> {
        use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
        use signal_hook::low_level::pipe;
        let pair = || UnixStream::pair().map_err(os("signal pipe"));
        let (terminate, term_w) = pair()?;
        let (hangup, hup_w) = pair()?;
        let (child, chld_w) = pair()?;
        for s in [&terminate, &hangup, &child] {
            s.set_nonblocking(true).map_err(os("signal pipe"))?;
        }
        let reg = |sig, w: &UnixStream| -> Result<(), DaemonError> {
            let w = w.try_clone().map_err(os("signal pipe"))?;
            pipe::register(sig, w)
                .map(drop)
                .map_err(os("signal handler"))
        };
        reg(SIGTERM, &term_w)?;
        reg(SIGINT, &term_w)?;
        reg(SIGHUP, &hup_w)?;
        reg(SIGCHLD, &chld_w)?;
        Ok(SignalPipes {
            terminate,
            hangup,
            child,
        })
    }
}

/// Empties a non-blocking signal pipe; true if anything was pending.
pub(crate) fn drain(mut s: &UnixStream) -> bool {
    use std::io::Read;
    let mut buf = [0u8; 64];
    let mut got = false;
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        got = true;
    }
    got
}
