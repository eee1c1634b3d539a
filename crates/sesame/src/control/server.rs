//! The daemon side of the control socket: a non-blocking listener polled in
//! the daemon's loop. Each accepted connection is served at once: peer
//! credentials checked, one request line read (bounded in size and time),
//! one response line written.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::{Gid, Group, Uid};

use super::{Request, Response, MAX_REQUEST};

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The directory is unsafe or unusable.
    #[error("control socket directory {dir}: {message}")]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The group does not exist.
    #[error("[daemon] control_group {0:?}: no such group")]
    NoGroup(String),
    /// Binding or setting permissions failed.
    #[error("control socket {path}: {message}")]
    Socket {
        /// The socket.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// The listening control socket. The socket file is removed on drop.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    group: Option<(String, Gid)>,
}

/// A request read from an authorised peer, to be answered with
/// [`ControlServer::respond`].
pub struct Pending {
    stream: UnixStream,
    /// The request, or why it could not be read.
    pub request: Result<Request, String>,
    /// The peer's uid (for the log).
    pub uid: u32,
}

impl ControlServer {
    /// Checks the directory, removes a stale socket and binds `path` with
    /// mode 0660 root:`group` (0600 without a group).
    pub fn bind(path: &Path, group: Option<&str>) -> Result<Self, ControlError> {
        let group = match group {
            None => None,
            Some(name) => {
                let g = Group::from_name(name)
                    .ok()
                    .flatten()
                    .ok_or_else(|| ControlError::NoGroup(name.to_string()))?;
                Some((name.to_string(), g.gid))
            }
        };
        let sock_err = |message: String| ControlError::Socket {
            path: path.to_path_buf(),
            message,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let dir_err = |message: String| ControlError::Directory {
            dir: dir.clone(),
            message,
        };
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&dir)
                .map_err(|e| dir_err(format!("cannot create it: {e}")))?;
        }
        let meta = std::fs::metadata(&dir).map_err(|e| dir_err(e.to_string()))?;
        if !meta.is_dir() {
            return Err(dir_err("not a directory".into()));
        }
        if meta.mode() & 0o002 != 0 {
            return Err(dir_err(format!(
                "writable by others (mode {:o}): anyone could replace the socket; use a directory such as /run/sesame (chmod o-w)",
                meta.mode() & 0o7777
            )));
        }
        let me = Uid::effective().as_raw();
        if meta.uid() != 0 && meta.uid() != me {
            return Err(dir_err(format!(
                "owned by uid {}, not root: its owner could replace the socket",
                meta.uid()
            )));
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                if UnixStream::connect(path).is_ok() {
                    return Err(sock_err(
                        "another sesamed is listening on it (use --control-socket or [daemon] control_socket for a second daemon)".into(),
                    ));
                }
                std::fs::remove_file(path)
                    .map_err(|e| sock_err(format!("remove stale socket: {e}")))?;
            }
            Ok(_) => return Err(sock_err("exists and is not a socket".into())),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(sock_err(e.to_string())),
        }
        // No window in which the socket is reachable with wider permissions.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(path);
        nix::sys::stat::umask(old);
        let listener = bound.map_err(|e| sock_err(format!("bind: {e}")))?;
        let server = ControlServer {
            listener,
            path: path.to_path_buf(),
            group,
        };
        if let Some((_, gid)) = &server.group {
            nix::unistd::chown(path, None, Some(*gid))
                .map_err(|e| sock_err(format!("chown to group: {e}")))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
                .map_err(|e| sock_err(format!("chmod 0660: {e}")))?;
        }
        server
            .listener
            .set_nonblocking(true)
            .map_err(|e| sock_err(e.to_string()))?;
        Ok(server)
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// For poll().
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// Accepts every waiting connection (bounded per call). Unauthorised
    /// peers get an error line and are dropped here; the others' requests
    /// are returned.
    pub fn accept(&self) -> Vec<Pending> {
        let mut out = Vec::new();
        for _ in 0..32 {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(_) => break,
            };
            let Ok(cred) = getsockopt(&stream, PeerCredentials) else {
                continue;
            };
            let uid = cred.uid();
            if !self.authorised(uid, cred.gid(), cred.pid()) {
                tracing::warn!(
                    event = "control_denied",
                    uid,
                    pid = cred.pid(),
                    "control socket: refused uid {uid} (not root{})",
                    self.group
                        .as_ref()
                        .map(|(n, _)| format!(" nor in group {n}"))
                        .unwrap_or_default()
                );
                let _ = write_response(
                    &stream,
                    &Response::error(match &self.group {
                        Some((n, _)) => {
                            format!("permission denied: root or members of group {n} only")
                        }
                        None => "permission denied: root only".to_string(),
                    }),
                );
                continue;
            }
            let request = read_request(&stream);
            out.push(Pending {
                stream,
                request,
                uid,
            });
        }
        out
    }

    fn authorised(&self, uid: u32, gid: u32, pid: i32) -> bool {
        if uid == 0 || uid == Uid::effective().as_raw() {
            return true;
        }
        let Some((_, want)) = &self.group else {
            return false;
        };
        let want = want.as_raw();
        if gid == want {
            return true;
        }
        // Supplementary groups of the peer process.
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Groups:").map(str::to_string))
            })
            .is_some_and(|g| g.split_whitespace().any(|x| x.parse() == Ok(want)))
    }

    /// Answers a request.
    pub fn respond(pending: Pending, response: &Response) {
        let _ = write_response(&pending.stream, response);
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn read_request(stream: &UnixStream) -> Result<Request, String> {
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(stream.take(MAX_REQUEST as u64))
        .read_line(&mut line)
        .map_err(|e| format!("reading the request: {e}"))?;
    serde_json::from_str(line.trim()).map_err(|e| format!("bad request: {e}"))
}

fn write_response(mut stream: &UnixStream, response: &Response) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(Duration::from_millis(500)))?;
    let mut line = serde_json::to_vec(response).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)
}
