//! Privilege drop and file-permission checks.
//!
//! `sesamed` starts as root: it installs the nftables table, binds the NFLOG
//! group and opens its files. Then, when a user is configured (`[daemon]
//! user` or `sesamed --user`), [`drop_to`] switches to that user and keeps
//! **only CAP_NET_ADMIN** — in the permitted and effective sets and in the
//! bounding set; the inheritable and ambient sets are emptied and
//! `no_new_privs` is set. CAP_NET_ADMIN is what adding and removing grant set
//! elements needs; the NFLOG socket stays open across the switch.
//!
//! Consequences: `on_open`/`on_close` commands then run as that user with no
//! capabilities at all (they cannot gain any: no_new_privs, empty bounding
//! set beyond CAP_NET_ADMIN, empty ambient set); the state directory is
//! handed to that user before the switch ([`hand_over`]) so the replay cache
//! can still be written; config and key files must stay readable by that user
//! for a later reload.

use std::path::Path;

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Uid, User};

/// Why the privilege drop failed. Every error is fatal: the daemon never
/// runs with more privilege than asked for.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// No such user in the passwd database.
    #[error("user {0:?} does not exist (create it, e.g. `useradd --system --no-create-home {0}`)")]
    NoSuchUser(String),
    /// The user database could not be read.
    #[error("looking up user {name:?}: {source}")]
    Lookup {
        /// The user.
        name: String,
        /// Cause.
        source: nix::Error,
    },
    /// Switching user needs root.
    #[error("switching to user {0:?} needs root (running as uid {1})")]
    NotRoot(String, u32),
    /// A system call of the switch failed.
    #[error("privilege drop: {step}: {source}")]
    Os {
        /// What was being done.
        step: &'static str,
        /// Cause.
        source: nix::Error,
    },
    /// A capability operation failed.
    #[error("privilege drop: {step}: {message}")]
    Caps {
        /// What was being done.
        step: &'static str,
        /// Cause.
        message: String,
    },
    /// The state directory could not be handed over.
    #[error("state directory {path}: {source}")]
    Chown {
        /// The file.
        path: String,
        /// Cause.
        source: nix::Error,
    },
    /// The state directory could not be handed over safely (a symlink or
    /// hard link planted in it, an untrusted owner).
    #[error("handing the state directory over: {0}")]
    Unsafe(#[from] crate::safe_fs::SafeFsError),
    /// After the switch, root could be regained: refuse to run.
    #[error("privilege drop did not stick: setuid(0) still succeeds")]
    NotDropped,
}

/// The unprivileged user to run as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// User name.
    pub name: String,
    /// Its uid.
    pub uid: Uid,
    /// Its primary gid (the only group kept).
    pub gid: Gid,
}

/// Looks `name` up in the passwd database.
pub fn lookup(name: &str) -> Result<Target, PrivilegeError> {
    let user = User::from_name(name)
        .map_err(|source| PrivilegeError::Lookup {
            name: name.to_string(),
            source,
        })?
        .ok_or_else(|| PrivilegeError::NoSuchUser(name.to_string()))?;
    Ok(Target {
        name: name.to_string(),
        uid: user.uid,
        gid: user.gid,
    })
}

/// Gives `dir` (when it exists) and the regular files directly in it to
/// `target`, so the daemon can keep writing its state after the switch.
pub fn hand_over(dir: &Path, target: &Target) -> Result<(), PrivilegeError> {
    if std::fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    // By descriptor: a path-based chown races a file-to-symlink swap by
    // whoever already owns the directory (the daemon user).
    let checked = crate::safe_fs::CheckedDir::open(dir, false, trusted_owner)?;
    checked.chown_all(target.uid, target.gid)?;
    Ok(())
}

/// The only capability kept.
pub const KEPT: Capability = Capability::CAP_NET_ADMIN;

fn caps_err(step: &'static str) -> impl Fn(caps::errors::CapsError) -> PrivilegeError {
    move |e| PrivilegeError::Caps {
        step,
        message: e.to_string(),
    }
}

fn os(step: &'static str) -> impl Fn(nix::Error) -> PrivilegeError {
    move |source| PrivilegeError::Os { step, source }
}

/// Switches the process to `target`, keeping only CAP_NET_ADMIN, and sets
/// no_new_privs. Call it once, from the main thread, before any other thread
/// is started (capability sets are per thread).
pub fn drop_to(target: &Target) -> Result<(), PrivilegeError> {
    let uid = nix::unistd::geteuid();
    if !uid.is_root() {
        return Err(PrivilegeError::NotRoot(target.name.clone(), uid.as_raw()));
    }
    // 1. Bounding set: needs CAP_SETPCAP, so while still root.
    for cap in caps::all() {
        if cap != KEPT && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(caps_err("dropping the bounding set"))?;
        }
    }
    // 2. Keep the permitted set across the uid change.
    nix::sys::prctl::set_keepcaps(true).map_err(os("PR_SET_KEEPCAPS"))?;
    // 3. Groups, then gid, then uid (real, effective and saved).
    nix::unistd::setgroups(&[target.gid]).map_err(os("setgroups"))?;
    nix::unistd::setresgid(target.gid, target.gid, target.gid).map_err(os("setresgid"))?;
    nix::unistd::setresuid(target.uid, target.uid, target.uid).map_err(os("setresuid"))?;
    nix::sys::prctl::set_keepcaps(false).map_err(os("PR_SET_KEEPCAPS off"))?;
    // 4. Exactly CAP_NET_ADMIN permitted and effective; nothing inheritable
    //    or ambient.
    let only: CapsHashSet = [KEPT].into_iter().collect();
    caps::clear(None, CapSet::Ambient).map_err(caps_err("clearing the ambient set"))?;
    caps::set(None, CapSet::Inheritable, &CapsHashSet::new())
        .map_err(caps_err("clearing the inheritable set"))?;
    caps::set(None, CapSet::Permitted, &only).map_err(caps_err("setting the permitted set"))?;
    caps::set(None, CapSet::Effective, &only).map_err(caps_err("setting the effective set"))?;
    // 5. Never gain privileges again, not through exec of setuid or
    //    file-capability binaries either.
    nix::sys::prctl::set_no_new_privs().map_err(os("PR_SET_NO_NEW_PRIVS"))?;
    if !target.uid.is_root() && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(PrivilegeError::NotDropped);
    }
    Ok(())
}

/// Becomes `target` for good, with no capability left (the uid change from
/// root clears them): for checks that must see files as the daemon will.
pub fn become_user(target: &Target) -> Result<(), PrivilegeError> {
    nix::unistd::setgroups(&[target.gid]).map_err(os("setgroups"))?;
    nix::unistd::setresgid(target.gid, target.gid, target.gid).map_err(os("setresgid"))?;
    nix::unistd::setresuid(target.uid, target.uid, target.uid).map_err(os("setresuid"))?;
    if !target.uid.is_root() && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(PrivilegeError::NotDropped);
    }
    Ok(())
}

/// For a daemon started unprivileged with CAP_NET_ADMIN (the systemd unit:
/// `User=sesame`, `AmbientCapabilities=CAP_NET_ADMIN`): keeps only
/// CAP_NET_ADMIN permitted and effective, empties the inheritable and
/// ambient sets so commands run without any capability, and sets
/// no_new_privs. Does nothing for root (see [`drop_to`]).
pub fn restrict_in_place() -> Result<(), PrivilegeError> {
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let only: CapsHashSet = caps::read(None, CapSet::Permitted)
        .map_err(caps_err("reading the permitted set"))?
        .into_iter()
        .filter(|c| *c == KEPT)
        .collect();
    caps::clear(None, CapSet::Ambient).map_err(caps_err("clearing the ambient set"))?;
    caps::set(None, CapSet::Inheritable, &CapsHashSet::new())
        .map_err(caps_err("clearing the inheritable set"))?;
    caps::set(None, CapSet::Effective, &only).map_err(caps_err("setting the effective set"))?;
    caps::set(None, CapSet::Permitted, &only).map_err(caps_err("setting the permitted set"))?;
    nix::sys::prctl::set_no_new_privs().map_err(os("PR_SET_NO_NEW_PRIVS"))?;
    Ok(())
}

pub use sesame_client::secure_file::{
    check_not_writable_by_others, trust_daemon_user, trusted_owner, WritableByOthers,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_user_is_named() {
        let e = lookup("no-such-user-sesame-xyz").unwrap_err();
        assert!(e.to_string().contains("no-such-user-sesame-xyz"), "{e}");
        assert_eq!(lookup("root").unwrap().uid, Uid::from_raw(0));
    }
}
