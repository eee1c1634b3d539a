//! Why the daemon could not start or had to stop.

use super::replay_file::ReplayFileError;
use crate::keys;
use crate::one_time::OneTimeError;

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The config cannot run on this host (see [`super::checks::check`]).
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
    Auth(#[from] AuthError),
    /// Fleet mode cannot start: its keys, password or store URL.
    #[error("fleet: {0}")]
    Fleet(String),
    /// The replay state could not be used.
    #[error(transparent)]
    Replay(#[from] ReplayFileError),
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

/// Why the authenticated doors could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A key file or inline key is unusable.
    #[error("door {door:?} user {user:?}: {source}")]
    Key {
        /// Door.
        door: String,
        /// User.
        user: String,
        /// Cause (names the file).
        source: keys::KeyFileError,
    },
    /// The server key is unusable.
    #[error("daemon.server_key: {0}")]
    ServerKey(keys::KeyFileError),
    /// A public-key SPA user needs the server's X25519 key.
    #[error("door {door:?} user {user:?} uses an identity (public-key SPA) but [daemon] server_key is not set; create one with `sesame keygen server FILE`")]
    NoServerKey {
        /// Door.
        door: String,
        /// User.
        user: String,
    },
    /// The verifier refused a user (duplicate key, ...).
    #[error("door {door:?}: {source}")]
    Policy {
        /// Door.
        door: String,
        /// Cause.
        source: sesame_core::spa::SpaConfigError,
    },
    /// An fwknop stanza's keys or settings are unusable.
    #[error("door {door:?} (access.conf stanza at line {line}): {what}")]
    Fwknop {
        /// Door.
        door: String,
        /// Line of the SOURCE keyword.
        line: usize,
        /// What is wrong (never key material).
        what: String,
    },
}
