//! Log output for both binaries: human-readable by default, JSON on request.
//!
//! Every knock-related line carries `source`, `door` and `event` fields, and the
//! timestamp has microsecond resolution (RFC 3339, UTC). Besides stderr, the
//! daemon can append to a log file and send to syslog (knockd's `LogFile` and
//! `UseSyslog`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use clap::ValueEnum;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{filter::LevelFilter, Layer};

/// Output format of log lines.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Where log lines go besides stderr.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogTargets {
    /// Append every line to this file.
    pub file: Option<PathBuf>,
    /// Send every line to the local syslog daemon (`/dev/log`).
    pub syslog: bool,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log file could not be opened for appending.
    #[error("log file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Cause.
        source: io::Error,
    },
    /// No socket for syslog could be created.
    #[error("syslog ({SYSLOG_SOCKET}): {0}")]
    Syslog(io::Error),
}

/// The local syslog socket.
pub const SYSLOG_SOCKET: &str = "/dev/log";

/// Sends each formatted line as one RFC 3164 datagram, facility user,
/// severity notice (what knockd uses). The socket is addressed per datagram,
/// so a syslog daemon that starts (or restarts) later still gets the lines.
#[derive(Debug)]
struct Syslog {
    sock: UnixDatagram,
    path: PathBuf,
    tag: String,
}

impl Syslog {
    /// Prepares the sender; `Err` only if no datagram socket can be made.
    /// Whether `path` is listening is reported by [`Syslog::reachable`].
    fn new(path: &Path) -> io::Result<Self> {
        Ok(Syslog {
            sock: UnixDatagram::unbound()?,
            path: path.to_path_buf(),
            tag: format!("sesamed[{}]", std::process::id()),
        })
    }

    /// Sends a probe-free check: whether the syslog socket exists now.
    fn reachable(&self) -> io::Result<()> {
        let probe = UnixDatagram::unbound()?;
        probe.connect(&self.path)
    }
}

/// One event's worth of output for [`Syslog`].
struct SyslogLine<'a>(&'a Syslog);

impl Write for SyslogLine<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        const USER_NOTICE: u8 = 8 + 5;
        let line = String::from_utf8_lossy(buf);
        let msg = format!("<{USER_NOTICE}>{}: {}", self.0.tag, line.trim_end());
        // A full or absent syslog daemon must never stall knock handling.
        let _ = self.0.sock.send_to(msg.as_bytes(), &self.0.path);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = SyslogLine<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        SyslogLine(self)
    }
}

fn open_log_file(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| LogError::File {
            path: path.display().to_string(),
            source,
        })
}

/// Installs the global subscriber writing to stderr. `verbose` enables
/// debug events such as duplicate knocks and malformed packets.
pub fn init(format: LogFormat, verbose: bool) {
    // Nothing extra to open, so this cannot fail.
    let _ = init_with(format, verbose, &LogTargets::default());
}

/// Like [`init`], also writing to `targets`. Files are opened before the
/// subscriber is installed, so an error leaves logging untouched. A syslog
/// daemon that is not running yet is not an error (knockd starts without one
/// too): a warning says so, and lines reach it once it listens.
pub fn init_with(format: LogFormat, verbose: bool, targets: &LogTargets) -> Result<(), LogError> {
    let level = if verbose {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    };
    let file = targets.file.as_deref().map(open_log_file).transpose()?;
    let syslog = if targets.syslog {
        Some(Syslog::new(Path::new(SYSLOG_SOCKET)).map_err(LogError::Syslog)?)
    } else {
        None
    };
    let syslog_down = syslog.as_ref().and_then(|s| s.reachable().err());
    let layer = |writer: tracing_subscriber::fmt::writer::BoxMakeWriter, json: bool, time: bool| {
        let base = tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(false)
            .with_writer(writer);
        match (json, time) {
            (true, _) => base
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .boxed(),
            (false, true) => base.boxed(),
            // syslog stamps lines itself
            (false, false) => base.without_time().with_level(false).boxed(),
        }
    };
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let json = format == LogFormat::Json;
    let mut layers = vec![layer(BoxMakeWriter::new(io::stderr), json, true)];
    if let Some(f) = file {
        layers.push(layer(BoxMakeWriter::new(Mutex::new(f)), json, true));
    }
    if let Some(s) = syslog {
        layers.push(layer(BoxMakeWriter::new(s), json, false));
    }
    // A second init (e.g. in tests) is harmless; ignore it.
    let _ = tracing_subscriber::registry()
        .with(layers.with_filter(level))
        .try_init();
    if let Some(e) = syslog_down {
        tracing::warn!(
            event = "syslog_unavailable",
            "syslog ({SYSLOG_SOCKET}) is not accepting messages yet ({e}); lines will reach it once it does"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_lines_are_rfc3164_datagrams() {
        let dir = std::env::temp_dir().join(format!("sesame-syslog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        let s = Syslog::new(&path).unwrap();
        s.reachable().unwrap();
        s.make_writer().write_all(b"door opened\n").unwrap();
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(got.starts_with("<13>sesamed["), "{got}");
        assert!(got.ends_with("]: door opened"), "{got}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_syslog_socket_is_not_fatal() {
        let s = Syslog::new(Path::new("/nonexistent-dir/log")).unwrap();
        assert!(s.reachable().is_err());
        // Writing still succeeds: lines are dropped until syslog listens.
        s.make_writer().write_all(b"door opened\n").unwrap();
    }

    #[test]
    fn unwritable_log_file_is_named() {
        let e = init_with(
            LogFormat::Text,
            false,
            &LogTargets {
                file: Some("/nonexistent-dir/sesame.log".into()),
                syslog: false,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent-dir/sesame.log"), "{e}");
    }
}
