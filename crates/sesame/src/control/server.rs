//! The daemon side of the control socket. A thread of its own accepts
//! connections and checks peer credentials; each authorised connection gets
//! a short-lived thread that reads one request line (bounded in size and
//! time), hands it to the daemon's loop over a channel (waking the loop
//! through a pipe the loop polls), waits for the answer and writes it, all
//! under deadlines. A slow or stalled peer holds only its own thread: the
//! packet loop never reads from or writes to a control connection.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
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

/// The listening control socket. The socket file is removed on drop, and
/// the accepting thread stops.
pub struct ControlServer {
    path: PathBuf,
    requests: mpsc::Receiver<Pending>,
    /// Readable when requests are waiting; the loop polls it.
    wake: UnixStream,
    stop: Arc<AtomicBool>,
    /// Bound but not yet accepting (see [`ControlServer::start`]).
    idle: Option<Acceptor>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Connections closed unserved so far (busy or too slow).
    refused: Arc<AtomicU64>,
}

/// A request read from an authorised peer, to be answered with
/// [`ControlServer::respond`].
pub struct Pending {
    reply: mpsc::SyncSender<Response>,
    /// The request, or why it could not be read.
    pub request: Result<Request, String>,
    /// The peer's uid (for the log).
    pub uid: u32,
}

/// Most control connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 8;
/// How long a peer has to send its request line.
pub const READ_DEADLINE: Duration = Duration::from_secs(2);
/// How long a peer has to take the response.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(2);
/// How long a connection waits for the daemon's answer (a reload can take
/// a moment) before it gives up.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(30);

/// What the accepting thread needs.
struct Acceptor {
    listener: UnixListener,
    group: Option<(String, Gid)>,
    requests: mpsc::Sender<Pending>,
    wake: UnixStream,
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
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
        if let Some((_, gid)) = &group {
            nix::unistd::chown(path, None, Some(*gid))
                .map_err(|e| sock_err(format!("chown to group: {e}")))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
                .map_err(|e| sock_err(format!("chmod 0660: {e}")))?;
        }
        listener
            .set_nonblocking(true)
            .map_err(|e| sock_err(e.to_string()))?;
        let (wake, wake_w) = UnixStream::pair().map_err(|e| sock_err(e.to_string()))?;
        for s in [&wake, &wake_w] {
            s.set_nonblocking(true)
                .map_err(|e| sock_err(e.to_string()))?;
        }
        let (tx, requests) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicU64::new(0));
        let acceptor = Acceptor {
            listener,
            group,
            requests: tx,
            wake: wake_w,
            stop: Arc::clone(&stop),
            refused: Arc::clone(&refused),
        };
        Ok(ControlServer {
            path: path.to_path_buf(),
            requests,
            wake,
            stop,
            idle: Some(acceptor),
            thread: None,
            refused,
        })
    }

    /// Starts the accepting thread. Called once the daemon has dropped its
    /// privileges, so that no thread keeps more than the loop has.
    /// Connections made before are queued by the kernel meanwhile.
    pub fn start(&mut self) -> std::io::Result<()> {
        let Some(acceptor) = self.idle.take() else {
            return Ok(());
        };
        self.thread = Some(
            std::thread::Builder::new()
                .name("sesame-control".into())
                .spawn(move || acceptor.run())?,
        );
        Ok(())
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// For poll(): readable when requests wait in [`ControlServer::take`].
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// The requests read so far, never waiting.
    pub fn take(&self) -> Vec<Pending> {
        let mut sink = [0u8; 64];
        while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
        self.requests.try_iter().collect()
    }

    /// Connections closed unserved so far (too many at once, or too slow).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Answers a request: hands the response to the connection's thread,
    /// which writes it under its own deadline.
    pub fn respond(pending: Pending, response: &Response) {
        let _ = pending.reply.try_send(response.clone());
    }
}

impl Acceptor {
    fn run(self) {
        let active = Arc::new(AtomicUsize::new(0));
        while !self.stop.load(Ordering::Relaxed) {
            let mut fds = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::from(100u16)).unwrap_or(0) == 0 {
                continue;
            }
            while let Ok((stream, _)) = self.listener.accept() {
                self.admit(stream, &active);
            }
        }
    }

    /// Checks the peer and starts its connection thread.
    fn admit(&self, stream: UnixStream, active: &Arc<AtomicUsize>) {
        let Ok(cred) = getsockopt(&stream, PeerCredentials) else {
            return;
        };
        let uid = cred.uid();
        let denied = !self.authorised(uid, cred.gid(), cred.pid());
        if denied {
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
        }
        if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            self.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                event = "control_busy",
                uid,
                "control socket: {MAX_CONNECTIONS} connections already open; closed a new one from uid {uid}"
            );
            return;
        }
        let denial = denied.then(|| {
            Response::error(match &self.group {
                Some((n, _)) => format!("permission denied: root or members of group {n} only"),
                None => "permission denied: root only".to_string(),
            })
        });
        active.fetch_add(1, Ordering::Relaxed);
        let count = Arc::clone(active);
        let requests = self.requests.clone();
        let wake = self.wake.try_clone();
        let refused = Arc::clone(&self.refused);
        let spawned = std::thread::Builder::new()
            .name("sesame-control-conn".into())
            .spawn(move || {
                let response = match denial {
                    Some(r) => Some(r),
                    None => match read_request(&stream) {
                        Err(e) if e.timed_out => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            None
                        }
                        read => {
                            let (reply, answer) = mpsc::sync_channel(1);
                            let pending = Pending {
                                reply,
                                request: read.map_err(|e| e.message),
                                uid,
                            };
                            let sent = requests.send(pending).is_ok();
                            if let (true, Ok(w)) = (sent, &wake) {
                                let _ = (&*w).write(&[1]);
                            }
                            answer.recv_timeout(ANSWER_DEADLINE).ok()
                        }
                    },
                };
                if let Some(r) = response {
                    let _ = write_response(&stream, &r);
                }
                count.fetch_sub(1, Ordering::Relaxed);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::Relaxed);
        }
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
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // The accept loop wakes at least every 100 ms.
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Why a request line could not be read.
struct ReadError {
    message: String,
    /// The peer was too slow: nothing is answered.
    timed_out: bool,
}

/// Reads one request line of at most [`MAX_REQUEST`] bytes, within
/// [`READ_DEADLINE`] in all (a peer dripping bytes is cut off too).
fn read_request(stream: &UnixStream) -> Result<Request, ReadError> {
    let fail = |message: String, timed_out| ReadError { message, timed_out };
    stream
        .set_nonblocking(false)
        .map_err(|e| fail(e.to_string(), false))?;
    let deadline = std::time::Instant::now() + READ_DEADLINE;
    let mut line = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(fail("the request line took too long".into(), true));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| fail(e.to_string(), false))?;
        let n = match (&*stream).read(&mut chunk) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(fail("the request line took too long".into(), true))
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(format!("reading the request: {e}"), false)),
        };
        line.extend_from_slice(&chunk[..n]);
        if let Some(end) = line.iter().position(|&b| b == b'\n') {
            line.truncate(end);
            break;
        }
        if n == 0 {
            break;
        }
        if line.len() > MAX_REQUEST {
            return Err(fail(
                format!("request longer than {MAX_REQUEST} bytes"),
                false,
            ));
        }
    }
    let text = String::from_utf8_lossy(&line);
    serde_json::from_str(text.trim()).map_err(|e| fail(format!("bad request: {e}"), false))
}

fn write_response(mut stream: &UnixStream, response: &Response) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(WRITE_DEADLINE))?;
    let mut line = serde_json::to_vec(response).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)
}
