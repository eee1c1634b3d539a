//! The `sesame` side of the control socket.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::{Request, Response};

/// Sends one request and returns the daemon's answer. Errors are sentences
/// for the user.
pub fn call(path: &Path, request: &Request) -> Result<Response, String> {
    let stream = UnixStream::connect(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => format!(
            "cannot connect to the control socket: is sesamed running? ({})",
            path.display()
        ),
        ErrorKind::PermissionDenied => {
            let group = std::fs::metadata(path).ok().and_then(|m| {
                (m.gid() != 0).then(|| {
                    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(m.gid()))
                        .ok()
                        .flatten()
                        .map_or(m.gid().to_string(), |g| g.name)
                })
            });
            match group {
                Some(g) => format!(
                    "permission denied on {}: run as root or as a member of group {g}",
                    path.display()
                ),
                None => format!(
                    "permission denied on {}: run as root (or set [daemon] control_group)",
                    path.display()
                ),
            }
        }
        _ => format!("control socket {}: {e}", path.display()),
    })?;
    // A reload may take a moment (firewall update, key files).
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut line = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    line.push(b'\n');
    (&stream)
        .write_all(&line)
        .map_err(|e| format!("control socket {}: {e}", path.display()))?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(|e| format!("control socket {}: {e}", path.display()))?;
    if answer.is_empty() {
        return Err(format!(
            "control socket {}: sesamed closed the connection without answering",
            path.display()
        ));
    }
    serde_json::from_str(&answer).map_err(|e| format!("bad answer from sesamed: {e}"))
}
