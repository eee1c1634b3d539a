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

use std::fmt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

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

/// A file or directory that others could change: refused, since whoever
/// can write a config or key file can open doors (or run commands as the
/// daemon).
#[derive(Debug, PartialEq, Eq)]
pub struct WritableByOthers {
    /// The file.
    pub path: PathBuf,
    /// Its permission bits.
    pub mode: u32,
    /// Its owner, when that is the problem (neither root nor the daemon
    /// user).
    pub foreign_owner: Option<u32>,
}

impl fmt::Display for WritableByOthers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(uid) = self.foreign_owner {
            return write!(
                f,
                "{} is owned by uid {uid}, neither root nor the daemon's user; refusing it (its owner could change it). Fix: chown root {}",
                self.path.display(),
                self.path.display()
            );
        }
        let who = match (self.mode & 0o020 != 0, self.mode & 0o002 != 0) {
            (true, true) => "its group and others",
            (true, false) => "its group",
            _ => "others",
        };
        write!(
            f,
            "{} is writable by {who} (mode {:04o}); refusing it. Fix: chmod go-w {}",
            self.path.display(),
            self.mode & 0o7777,
            self.path.display()
        )
    }
}

impl std::error::Error for WritableByOthers {}

/// The uid of `[daemon] user`, also trusted to own config and key files
/// (it must be able to read them after the privilege drop). Unset: 0.
static DAEMON_USER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Trusts `uid` (the daemon user) as the owner of config and key files,
/// besides root and the effective user.
pub fn trust_daemon_user(uid: u32) {
    DAEMON_USER.store(uid, std::sync::atomic::Ordering::Relaxed);
}

/// True when `uid` may own a file the daemon trusts: root, the user the
/// daemon runs as, or the configured daemon user.
pub fn trusted_owner(uid: u32) -> bool {
    uid == 0
        || uid == nix::unistd::geteuid().as_raw()
        || uid == DAEMON_USER.load(std::sync::atomic::Ordering::Relaxed)
}

/// Refuses `path` when its group or others may write it, or when it is
/// owned by anyone but root or the daemon's user. A file that cannot be
/// inspected passes: reading it reports that error better. Symlinks are
/// followed (the target is what gets read); regular files and directories
/// (`%include_folder`) are checked.
pub fn check_not_writable_by_others(path: &Path) -> Result<(), WritableByOthers> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mode = meta.permissions().mode();
    // Only regular files hold config text (/dev/null reads as empty).
    if !(meta.is_file() || meta.is_dir()) {
        return Ok(());
    }
    if mode & 0o022 != 0 {
        return Err(WritableByOthers {
            path: path.to_path_buf(),
            mode: mode & 0o7777,
            foreign_owner: None,
        });
    }
    if !trusted_owner(meta.uid()) {
        return Err(WritableByOthers {
            path: path.to_path_buf(),
            mode: mode & 0o7777,
            foreign_owner: Some(meta.uid()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_owned_by_strangers_are_refused_unless_the_daemon_user_owns_them() {
        if !nix::unistd::geteuid().is_root() {
            return; // chown needs root; CI runs as root
        }
        let path = file("stranger", 0o600);
        nix::unistd::chown(&path, Some(Uid::from_raw(54_322)), None).unwrap();
        let e = check_not_writable_by_others(&path).unwrap_err();
        assert_eq!(e.foreign_owner, Some(54_322));
        assert!(e.to_string().contains("owned by uid 54322"), "{e}");
        trust_daemon_user(54_322);
        let trusted = check_not_writable_by_others(&path);
        trust_daemon_user(0);
        trusted.unwrap();
    }

    fn file(tag: &str, mode: u32) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sesame-fsperm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(tag);
        std::fs::write(&path, "x").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn private_and_read_only_files_pass() {
        for (tag, mode) in [("a", 0o600), ("b", 0o644), ("c", 0o400), ("d", 0o755)] {
            check_not_writable_by_others(&file(tag, mode)).unwrap();
        }
    }

    #[test]
    fn group_writable_is_refused_with_the_fix() {
        let path = file("g", 0o664);
        let e = check_not_writable_by_others(&path).unwrap_err();
        assert_eq!(e.mode, 0o664);
        let msg = e.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("mode 0664"), "{msg}");
        assert!(msg.contains("writable by its group"), "{msg}");
        assert!(
            msg.contains(&format!("chmod go-w {}", path.display())),
            "{msg}"
        );
    }

    #[test]
    fn world_writable_is_refused() {
        let e = check_not_writable_by_others(&file("o", 0o602)).unwrap_err();
        assert!(
            e.to_string().contains("writable by others (mode 0602)"),
            "{e}"
        );
        let e = check_not_writable_by_others(&file("go", 0o666)).unwrap_err();
        assert!(e.to_string().contains("its group and others"), "{e}");
    }

    #[test]
    fn missing_file_is_left_to_the_reader() {
        check_not_writable_by_others(Path::new("/nonexistent-dir/x.toml")).unwrap();
        check_not_writable_by_others(Path::new("/dev/null")).unwrap();
    }

    #[test]
    fn unknown_user_is_named() {
        let e = lookup("no-such-user-sesame-xyz").unwrap_err();
        assert!(e.to_string().contains("no-such-user-sesame-xyz"), "{e}");
        assert_eq!(lookup("root").unwrap().uid, Uid::from_raw(0));
    }
}
