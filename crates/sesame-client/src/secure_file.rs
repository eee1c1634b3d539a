//! Files that decide who gets in (configs, keys, one-time sequences) must
//! not be writable by anyone but their trusted owner: whoever can write them
//! can open doors. Shared by the daemon and the client, which checks its own
//! key files the same way.

use std::fmt;
use std::path::{Path, PathBuf};

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
        || uid == effective_uid()
        || uid == DAEMON_USER.load(std::sync::atomic::Ordering::Relaxed)
}

#[cfg(unix)]
fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

#[cfg(not(unix))]
fn effective_uid() -> u32 {
    0
}

/// Refuses `path` when its group or others may write it, or when it is
/// owned by anyone but root or the daemon's user. A file that cannot be
/// inspected passes: reading it reports that error better. Symlinks are
/// followed (the target is what gets read); regular files and directories
/// (`%include_folder`) are checked.
#[cfg(unix)]
pub fn check_not_writable_by_others(path: &Path) -> Result<(), WritableByOthers> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
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

/// Elsewhere (Windows) files carry no Unix mode or owner: nothing to check
/// here; the platform's ACLs decide who may write.
#[cfg(not(unix))]
pub fn check_not_writable_by_others(_path: &Path) -> Result<(), WritableByOthers> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_owned_by_strangers_are_refused_unless_the_daemon_user_owns_them() {
        if !nix::unistd::geteuid().is_root() {
            return; // chown needs root; CI runs as root
        }
        let path = file("stranger", 0o600);
        std::os::unix::fs::chown(&path, Some(54_322), None).unwrap();
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
}
