//! Files in directories the daemon does not fully control (the state
//! directory it hands to its user, the pid file's directory), opened so
//! that a symlink or hard link planted there cannot redirect a write made
//! as root.
//!
//! A [`CheckedDir`] is opened once with `O_DIRECTORY | O_NOFOLLOW`, and its
//! owner and mode are checked on the descriptor. Every file in it is then
//! reached with `openat(2)` relative to that descriptor and `O_NOFOLLOW`,
//! checked with `fstat(2)` (a regular file, one link), written atomically
//! through a fresh `O_EXCL` temporary and `renameat(2)`, and handed over
//! with `fchown(2)` on its descriptor. Nothing here follows a path twice.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag, AT_FDCWD};
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::unistd::{fchown, unlinkat, Gid, Uid, UnlinkatFlags};

/// Why a checked directory or a file in it was refused.
#[derive(Debug, thiserror::Error)]
pub enum SafeFsError {
    /// The directory (or file) could not be opened or used.
    #[error("{path}: {source}")]
    Io {
        /// What was being opened.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// A symlink, a hard link, or something else than what was expected.
    #[error("{path}: {what}; refusing to use it")]
    Unexpected {
        /// The offending path.
        path: PathBuf,
        /// What it is.
        what: String,
    },
    /// Owned by someone the daemon cannot trust, or writable by others.
    #[error("{path}: {what}")]
    Untrusted {
        /// The offending path.
        path: PathBuf,
        /// Why.
        what: String,
    },
}

impl SafeFsError {
    /// As an `io::Error`, for callers that speak io.
    pub fn into_io(self) -> io::Error {
        match self {
            SafeFsError::Io { source, .. } => source,
            other => io::Error::new(io::ErrorKind::PermissionDenied, other.to_string()),
        }
    }
}

fn errno_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// A directory opened once and checked on its descriptor.
#[derive(Debug)]
pub struct CheckedDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl CheckedDir {
    /// Opens `path` (its last component must not be a symlink), creating it
    /// with mode 0700 when `create` is set and it is missing. Refused when
    /// it is not a directory, when group or others may write it, or when
    /// `trusted_owner` refuses its owner.
    pub fn open(
        path: &Path,
        create: bool,
        trusted_owner: impl Fn(u32) -> bool,
    ) -> Result<CheckedDir, SafeFsError> {
        let io_err = |source| SafeFsError::Io {
            path: path.to_path_buf(),
            source,
        };
        if create {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(io_err)?;
            }
            match nix::unistd::mkdir(path, Mode::from_bits_truncate(0o700)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(io_err(errno_io(e))),
            }
        }
        let fd = openat(
            AT_FDCWD,
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::ELOOP | Errno::ENOTDIR => SafeFsError::Unexpected {
                path: path.to_path_buf(),
                what: "not a directory (or a symlink to one)".into(),
            },
            e => io_err(errno_io(e)),
        })?;
        let st = fstat(&fd).map_err(|e| io_err(errno_io(e)))?;
        if st.st_mode & 0o022 != 0 {
            return Err(SafeFsError::Untrusted {
                path: path.to_path_buf(),
                what: format!(
                    "writable by its group or others (mode {:04o}): anyone could plant files there. Fix: chmod go-w {}",
                    st.st_mode & 0o7777,
                    path.display()
                ),
            });
        }
        if !trusted_owner(st.st_uid) {
            return Err(SafeFsError::Untrusted {
                path: path.to_path_buf(),
                what: format!(
                    "owned by uid {}, neither root nor the daemon's user",
                    st.st_uid
                ),
            });
        }
        Ok(CheckedDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The directory's path (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn unexpected(&self, name: &str, what: &str) -> SafeFsError {
        SafeFsError::Unexpected {
            path: self.path.join(name),
            what: what.into(),
        }
    }

    fn io(&self, name: &str, source: io::Error) -> SafeFsError {
        SafeFsError::Io {
            path: self.path.join(name),
            source,
        }
    }

    /// Opens `name` with `flags | O_NOFOLLOW | O_CLOEXEC` and checks that it
    /// is a regular file with one link (a hard link to a file elsewhere
    /// would make a write land there).
    fn open_file(&self, name: &str, flags: OFlag, mode: u32) -> Result<File, SafeFsError> {
        let fd = openat(
            &self.fd,
            name,
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::from_bits_truncate(mode),
        )
        .map_err(|e| match e {
            Errno::ELOOP => self.unexpected(name, "a symlink"),
            e => self.io(name, errno_io(e)),
        })?;
        let st = fstat(&fd).map_err(|e| self.io(name, errno_io(e)))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(self.unexpected(name, "not a regular file"));
        }
        if st.st_nlink > 1 {
            return Err(self.unexpected(name, "a file with other hard links"));
        }
        let file = File::from(fd);
        // O_NONBLOCK only kept a FIFO from blocking the open itself.
        let _ = nix::fcntl::fcntl(
            &file,
            nix::fcntl::FcntlArg::F_SETFL(flags & (OFlag::O_APPEND | OFlag::O_WRONLY)),
        );
        Ok(file)
    }

    /// The contents of `name`, or `None` when it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, SafeFsError> {
        match self.open_file(name, OFlag::O_RDONLY, 0) {
            Ok(mut f) => {
                let mut out = Vec::new();
                f.read_to_end(&mut out).map_err(|e| self.io(name, e))?;
                Ok(Some(out))
            }
            Err(SafeFsError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Replaces `name` with `bytes` atomically (mode 0600): a fresh
    /// temporary created with `O_EXCL`, synced when `sync`, then renamed
    /// over `name` within this directory.
    pub fn write_atomic(&self, name: &str, bytes: &[u8], sync: bool) -> Result<(), SafeFsError> {
        let tmp = format!(".{name}.tmp");
        // A leftover (or planted) temporary is removed, never followed.
        match unlinkat(&self.fd, tmp.as_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(self.io(&tmp, errno_io(e))),
        }
        let mut f = self.open_file(
            &tmp,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
            0o600,
        )?;
        f.write_all(bytes).map_err(|e| self.io(&tmp, e))?;
        if sync {
            f.sync_all().map_err(|e| self.io(&tmp, e))?;
        }
        drop(f);
        renameat(&self.fd, tmp.as_str(), &self.fd, name).map_err(|e| self.io(name, errno_io(e)))
    }

    /// Opens `name` for appending (created 0600 if missing).
    pub fn open_append(&self, name: &str) -> Result<File, SafeFsError> {
        self.open_file(
            name,
            OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT,
            0o600,
        )
    }

    /// Removes `name` if it exists (a symlink is removed, not followed).
    pub fn remove(&self, name: &str) -> Result<(), SafeFsError> {
        match unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(self.io(name, errno_io(e))),
        }
    }

    /// The names in the directory, `.` and `..` left out.
    pub fn names(&self) -> Result<Vec<String>, SafeFsError> {
        let dup = nix::unistd::dup(&self.fd).map_err(|e| self.io(".", errno_io(e)))?;
        let mut dir = nix::dir::Dir::from_fd(dup).map_err(|e| self.io(".", errno_io(e)))?;
        let mut out = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(|e| self.io(".", errno_io(e)))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != "." && name != ".." {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// Hands the directory and every regular file in it to `uid:gid`, by
    /// descriptor. A symlink, a hard-linked file or anything else in it is
    /// refused (nothing is changed through it).
    pub fn chown_all(&self, uid: Uid, gid: Gid) -> Result<(), SafeFsError> {
        for name in self.names()? {
            let f = self.open_file(&name, OFlag::O_RDONLY, 0)?;
            fchown(f.as_fd(), Some(uid), Some(gid)).map_err(|e| self.io(&name, errno_io(e)))?;
        }
        fchown(self.fd.as_fd(), Some(uid), Some(gid)).map_err(|e| self.io(".", errno_io(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sesame-safefs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn writes_are_atomic_and_never_follow_planted_links() {
        let d = scratch("links");
        let dir = CheckedDir::open(&d, true, |_| true).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        dir.write_atomic("state", b"one", true).unwrap();
        assert_eq!(dir.read("state").unwrap().unwrap(), b"one");
        assert_eq!(dir.read("missing").unwrap(), None);

        // A victim file outside, and links to it planted inside.
        let victim = d.with_extension("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, d.join("journal")).unwrap();
        assert!(matches!(
            dir.open_append("journal"),
            Err(SafeFsError::Unexpected { .. })
        ));
        assert!(matches!(
            dir.read("journal"),
            Err(SafeFsError::Unexpected { .. })
        ));
        std::fs::hard_link(&victim, d.join("hard")).unwrap();
        assert!(matches!(
            dir.open_append("hard"),
            Err(SafeFsError::Unexpected { .. })
        ));
        // A planted temporary (a symlink) is removed, not written through.
        std::os::unix::fs::symlink(&victim, d.join(".image.tmp")).unwrap();
        dir.write_atomic("image", b"new", false).unwrap();
        // Replacing a symlink by rename changes the link, not its target.
        std::os::unix::fs::symlink(&victim, d.join("boot")).unwrap();
        dir.write_atomic("boot", b"id", false).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!std::fs::symlink_metadata(d.join("boot"))
            .unwrap()
            .file_type()
            .is_symlink());
        // chown_all refuses to touch anything through the links.
        assert!(dir
            .chown_all(nix::unistd::geteuid(), nix::unistd::getegid())
            .is_err());
        std::fs::remove_dir_all(&d).unwrap();
        std::fs::remove_file(&victim).unwrap();
    }

    #[test]
    fn a_symlinked_or_open_directory_is_refused() {
        let d = scratch("dir");
        std::fs::create_dir_all(&d).unwrap();
        let link = d.with_extension("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&d, &link).unwrap();
        assert!(matches!(
            CheckedDir::open(&link, false, |_| true),
            Err(SafeFsError::Unexpected { .. })
        ));
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            CheckedDir::open(&d, false, |_| true),
            Err(SafeFsError::Untrusted { .. })
        ));
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(matches!(
            CheckedDir::open(&d, false, |_| false),
            Err(SafeFsError::Untrusted { .. })
        ));
        std::fs::remove_file(&link).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }
}
