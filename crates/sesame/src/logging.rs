//! Log output for both binaries: human-readable by default, JSON on request.
//!
//! Every knock-related line carries `source`, `door` and `event` fields, and the
//! timestamp has microsecond resolution (RFC 3339, UTC). Besides stderr, the
//! daemon can append to a log file and send to syslog (knockd's `LogFile` and
//! `UseSyslog`).
//!
//! Under systemd (`JOURNAL_STREAM` names our stderr) lines go natively to the
//! journal instead of stderr, with the structured fields `SOURCE`, `DOOR`,
//! `EVENT` and `REASON` (plus every other field, upper-cased). Audit events
//! ([`AUDIT_EVENTS`]: opens, closes, revokes, manual grants, accepted
//! credentials) carry `AUDIT=1` there, and can also go to a separate audit
//! log file that never holds debug output. Floods are rate-limited per
//! `(event, reason)` ([`RateLimiter`]); audit events never are.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::layer::{Context, Filter};
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
    /// The syslog socket, when not [`SYSLOG_SOCKET`].
    pub syslog_socket: Option<PathBuf>,
    /// Append audit events only to this file.
    pub audit_log: Option<PathBuf>,
    /// Send lines natively to the journal instead of stderr (see
    /// [`journald_wanted`]).
    pub journald: bool,
}

/// The `event` values that form the audit trail.
pub const AUDIT_EVENTS: &[&str] = &[
    "open",
    "close",
    "revoke",
    "manual_open",
    "refresh",
    "spa_accepted",
    "totp_accepted",
    "fwknop_accepted",
];

/// Whether stderr is connected to the journal: systemd sets
/// `JOURNAL_STREAM=DEV:INODE` for the service's stdout/stderr stream.
pub fn journald_wanted() -> bool {
    use std::os::fd::AsFd;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(st) = nix::sys::stat::fstat(io::stderr().as_fd()) else {
        return false;
    };
    stream.to_string_lossy() == format!("{}:{}", st.st_dev, st.st_ino)
}

/// The `event` and `reason` fields of a tracing event.
#[derive(Default, Debug)]
struct Kind {
    event: Option<String>,
    reason: Option<String>,
}

impl Visit for Kind {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "event" => self.event = Some(value.to_string()),
            "reason" => self.reason = Some(value.to_string()),
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "event" => self.event = Some(format!("{value:?}").trim_matches('"').to_string()),
            "reason" => self.reason = Some(format!("{value:?}").trim_matches('"').to_string()),
            _ => {}
        }
    }
}

impl Kind {
    fn of(event: &Event<'_>) -> Kind {
        let mut k = Kind::default();
        event.record(&mut k);
        k
    }
    fn is_audit(&self) -> bool {
        self.event
            .as_deref()
            .is_some_and(|e| AUDIT_EVENTS.contains(&e))
    }
}

/// Per-layer filter: only audit events (`true`) or only the others.
struct AuditOnly(bool);

impl<S: Subscriber> Filter<S> for AuditOnly {
    fn enabled(
        &self,
        _meta: &tracing::Metadata<'_>,
        _cx: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        true
    }
    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        Kind::of(event).is_audit() == self.0
    }
}

/// A window's suppressed lines for one `(event, reason)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suppressed {
    /// The `event` field (or the call site when there is none).
    pub event: String,
    /// The `reason` field, or empty.
    pub reason: String,
    /// How many lines were dropped.
    pub count: u64,
}

#[derive(Debug)]
struct Bucket {
    start: Instant,
    passed: u32,
    suppressed: u64,
}

/// Sans-IO flood limiter: at most `burst` lines per `window` for each
/// `(event, reason)`; what is dropped is counted and reported once the
/// window is over. Bounded: at most `max_keys` keys are tracked, the rest
/// share one overflow key.
#[derive(Debug)]
pub struct RateLimiter {
    burst: u32,
    window: Duration,
    max_keys: usize,
    /// Keyed by `event` NUL `reason`, so a hit needs no allocation.
    keys: HashMap<String, Bucket>,
    /// Reused to build lookup keys.
    scratch: String,
    last_sweep: Option<Instant>,
}

/// Separates event and reason in a limiter key (neither contains NUL).
const KEY_SEPARATOR: char = '\0';
/// The key shared by every `(event, reason)` beyond `max_keys`.
const OVERFLOW_KEY: &str = "*\0*";

/// Default lines per window per `(event, reason)`.
pub const DEFAULT_BURST: u32 = 20;

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(DEFAULT_BURST, Duration::from_secs(1), 256)
    }
}

impl RateLimiter {
    /// `burst` lines per `window` per key, at most `max_keys` keys.
    pub fn new(burst: u32, window: Duration, max_keys: usize) -> Self {
        RateLimiter {
            burst,
            window,
            max_keys: max_keys.max(1),
            keys: HashMap::new(),
            scratch: String::new(),
            last_sweep: None,
        }
    }

    /// Whether a line of `(event, reason)` may be written at `now`, and the
    /// summaries of windows that ended with lines dropped (to be logged).
    pub fn check(&mut self, event: &str, reason: &str, now: Instant) -> (bool, Vec<Suppressed>) {
        let summaries = self.sweep(now);
        self.scratch.clear();
        self.scratch.push_str(event);
        self.scratch.push(KEY_SEPARATOR);
        self.scratch.push_str(reason);
        if !self.keys.contains_key(self.scratch.as_str()) {
            let key = if self.keys.len() >= self.max_keys {
                OVERFLOW_KEY.to_string()
            } else {
                self.scratch.clone()
            };
            self.keys.entry(key).or_insert(Bucket {
                start: now,
                passed: 0,
                suppressed: 0,
            });
        }
        let window = self.window;
        let b = match self.keys.get_mut(self.scratch.as_str()) {
            Some(b) => b,
            None => self
                .keys
                .get_mut(OVERFLOW_KEY)
                .expect("overflow key inserted above"),
        };
        if now.saturating_duration_since(b.start) >= window {
            b.start = now;
            b.passed = 0;
        }
        let pass = b.passed < self.burst;
        if pass {
            b.passed += 1;
        } else {
            b.suppressed += 1;
        }
        (pass, summaries)
    }

    /// Summaries of ended windows with drops; forgets idle keys. Scans at
    /// most once per window, so a flood costs O(1) per line.
    pub fn sweep(&mut self, now: Instant) -> Vec<Suppressed> {
        if self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < self.window)
        {
            return Vec::new();
        }
        self.last_sweep = Some(now);
        let window = self.window;
        let mut out = Vec::new();
        self.keys.retain(|key, b| {
            if now.saturating_duration_since(b.start) < window {
                return true;
            }
            if b.suppressed > 0 {
                let (event, reason) = key.split_once(KEY_SEPARATOR).unwrap_or((key, ""));
                out.push(Suppressed {
                    event: event.to_string(),
                    reason: reason.to_string(),
                    count: b.suppressed,
                });
            }
            false
        });
        out.sort_by(|a, b| (&a.event, &a.reason).cmp(&(&b.event, &b.reason)));
        out
    }
}

/// The limiter of the installed subscriber, for [`flush_suppressed`].
static LIMITER: Mutex<Option<Arc<Mutex<RateLimiter>>>> = Mutex::new(None);

fn report(summaries: Vec<Suppressed>) {
    for s in summaries {
        tracing::warn!(
            event = "suppressed",
            suppressed_event = %s.event,
            reason = %s.reason,
            count = s.count,
            "suppressed {} log line(s) of event={} reason={:?} (flood)",
            s.count,
            s.event,
            s.reason
        );
    }
}

/// Logs the summaries of flood windows that have ended. Lines are also
/// summarised on the next logged line; a loop that logs nothing for a while
/// may call this now and then (cheap).
pub fn flush_suppressed() {
    let limiter = LIMITER.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(l) = limiter {
        let summaries = l
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sweep(Instant::now());
        report(summaries);
    }
}

/// Drops lines beyond the [`RateLimiter`]'s budget for the whole subscriber.
/// Audit events and its own summaries always pass.
pub struct RateLimitLayer(Arc<Mutex<RateLimiter>>);

impl RateLimitLayer {
    /// Wraps `limiter`.
    pub fn new(limiter: RateLimiter) -> Self {
        RateLimitLayer(Arc::new(Mutex::new(limiter)))
    }
}

impl<S: Subscriber> Layer<S> for RateLimitLayer {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let kind = Kind::of(event);
        if kind.is_audit() || kind.event.as_deref() == Some("suppressed") {
            return true;
        }
        let name = kind
            .event
            .unwrap_or_else(|| event.metadata().name().to_string());
        let (pass, summaries) = self.0.lock().unwrap_or_else(|e| e.into_inner()).check(
            &name,
            kind.reason.as_deref().unwrap_or(""),
            Instant::now(),
        );
        // The lock is released: the summaries go through the subscriber too.
        report(summaries);
        pass
    }
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
    #[error("syslog: {0}")]
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
    /// The socket is non-blocking: a syslog daemon that stops reading fills
    /// its queue, and then lines are dropped and counted, never waited for.
    fn new(path: &Path) -> io::Result<Self> {
        let sock = UnixDatagram::unbound()?;
        sock.set_nonblocking(true)?;
        Ok(Syslog {
            sock,
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
        if self.0.sock.send_to(msg.as_bytes(), &self.0.path).is_err() {
            SYSLOG_DROPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
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

/// Syslog lines dropped (queue full or no syslog daemon).
static SYSLOG_DROPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The drop counters of the non-blocking stderr and file writers.
static DROP_COUNTERS: Mutex<Vec<tracing_appender::non_blocking::ErrorCounter>> =
    Mutex::new(Vec::new());

/// The writer threads' guards: dropping one flushes what it still holds.
static WRITER_GUARDS: Mutex<Vec<tracing_appender::non_blocking::WorkerGuard>> =
    Mutex::new(Vec::new());

/// Lines each non-blocking writer holds before it drops (and counts) more.
const BUFFERED_LINES: usize = 16_384;

/// Wraps `writer` in a lossy non-blocking writer with a thread of its own:
/// a sink that stops taking lines (a stalled pipe, a slow disk) makes lines
/// drop and be counted, never makes the caller wait.
fn non_blocking<W: Write + Send + 'static>(
    writer: W,
    name: &str,
) -> tracing_appender::non_blocking::NonBlocking {
    let (w, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name(name)
        .finish(writer);
    if let Ok(mut c) = DROP_COUNTERS.lock() {
        c.push(w.error_counter());
    }
    if let Ok(mut g) = WRITER_GUARDS.lock() {
        g.push(guard);
    }
    w
}

/// Log lines dropped so far by every sink (full, stalled or absent).
pub fn dropped_lines() -> u64 {
    let queued: u64 = DROP_COUNTERS
        .lock()
        .map(|c| c.iter().map(|e| e.dropped_lines() as u64).sum())
        .unwrap_or(0);
    queued + SYSLOG_DROPPED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Writes out what the non-blocking writers still hold (at exit).
pub fn flush() {
    if let Ok(mut g) = WRITER_GUARDS.lock() {
        g.clear();
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
    let audit_file = targets
        .audit_log
        .as_deref()
        .map(open_log_file)
        .transpose()?;
    let journald = if targets.journald {
        // An unreachable journal falls back to stderr (which systemd also
        // forwards to the journal).
        let make = || {
            tracing_journald::layer().ok().map(|l| {
                l.with_field_prefix(None)
                    .with_syslog_identifier("sesamed".to_string())
            })
        };
        make().zip(make().map(|l| l.with_custom_fields([("AUDIT", "1")])))
    } else {
        None
    };
    let syslog_path = targets
        .syslog_socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(SYSLOG_SOCKET));
    let syslog = if targets.syslog {
        Some(Syslog::new(&syslog_path).map_err(LogError::Syslog)?)
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
    let mut layers = Vec::new();
    if let Some((j, audit)) = journald {
        layers.push(j.with_filter(AuditOnly(false)).boxed());
        layers.push(audit.with_filter(AuditOnly(true)).boxed());
    } else {
        layers.push(layer(
            BoxMakeWriter::new(non_blocking(io::stderr(), "sesame-log-stderr")),
            json,
            true,
        ));
    }
    if let Some(f) = file {
        layers.push(layer(
            BoxMakeWriter::new(non_blocking(f, "sesame-log-file")),
            json,
            true,
        ));
    }
    if let Some(s) = syslog {
        layers.push(layer(BoxMakeWriter::new(s), json, false));
    }
    if let Some(f) = audit_file {
        layers.push(
            layer(
                BoxMakeWriter::new(non_blocking(f, "sesame-log-audit")),
                json,
                true,
            )
            .with_filter(AuditOnly(true))
            .boxed(),
        );
    }
    let limiter = RateLimitLayer::new(RateLimiter::default());
    let shared = limiter.0.clone();
    // A second init (e.g. in tests) is harmless; ignore it.
    if tracing_subscriber::registry()
        .with(layers.with_filter(level))
        .with(limiter)
        .try_init()
        .is_ok()
    {
        *LIMITER.lock().unwrap_or_else(|e| e.into_inner()) = Some(shared);
    }
    if let Some(e) = syslog_down {
        tracing::warn!(
            event = "syslog_unavailable",
            "syslog ({}) is not accepting messages yet ({e}); lines will reach it once it does",
            syslog_path.display()
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

    /// Item 4 of the audit: a syslog reader that stops reading used to
    /// block the daemon in sendto. Now lines are dropped and counted.
    #[test]
    fn a_stalled_syslog_reader_never_blocks_the_writer() {
        let dir = std::env::temp_dir().join(format!("sesame-stall-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.sock");
        let _ = std::fs::remove_file(&path);
        let _never_read = UnixDatagram::bind(&path).unwrap();
        let s = Syslog::new(&path).unwrap();
        let before = SYSLOG_DROPPED.load(std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Far more than any socket queue holds.
            for i in 0..20_000 {
                let _ = s.make_writer().write_all(format!("line {i}\n").as_bytes());
            }
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(Duration::from_secs(10)).is_ok(),
            "writing to a stalled syslog blocked"
        );
        assert!(SYSLOG_DROPPED.load(std::sync::atomic::Ordering::Relaxed) > before);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rate_limiter_passes_a_burst_then_counts_what_it_drops() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(3, Duration::from_secs(1), 16);
        let mut passed = 0;
        for _ in 0..10 {
            let (pass, sums) = r.check("rejected", "bad_mac", t0);
            assert!(sums.is_empty());
            passed += usize::from(pass);
        }
        assert_eq!(passed, 3);
        // Another (event, reason) has its own budget.
        assert!(r.check("rejected", "stale", t0).0);
        assert!(r.check("reset", "", t0).0);
        // The next window: the summary comes out once, the key passes again.
        let t1 = t0 + Duration::from_secs(1);
        let (pass, sums) = r.check("rejected", "bad_mac", t1);
        assert!(pass);
        assert_eq!(
            sums,
            vec![Suppressed {
                event: "rejected".into(),
                reason: "bad_mac".into(),
                count: 7
            }]
        );
        let (_, sums) = r.check("rejected", "bad_mac", t1 + Duration::from_millis(10));
        assert!(sums.is_empty());
    }

    #[test]
    fn rate_limiter_sweep_reports_idle_keys_and_is_bounded() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(1, Duration::from_secs(1), 2);
        r.check("a", "", t0);
        r.check("a", "", t0);
        r.check("b", "", t0);
        // Keys beyond the bound share the overflow key.
        assert!(r.check("c", "", t0).0);
        assert!(!r.check("d", "", t0).0);
        assert_eq!(r.keys.len(), 3);
        let sums = r.sweep(t0 + Duration::from_secs(2));
        let got: Vec<_> = sums.iter().map(|s| (s.event.as_str(), s.count)).collect();
        assert_eq!(got, vec![("*", 1), ("a", 1)]);
        assert!(r.keys.is_empty(), "idle keys are forgotten");
    }

    #[test]
    fn audit_events_are_classified() {
        for e in AUDIT_EVENTS {
            assert!(Kind {
                event: Some(e.to_string()),
                reason: None
            }
            .is_audit());
        }
        for e in ["stage", "reset", "duplicate", "spa_refused"] {
            assert!(!Kind {
                event: Some(e.to_string()),
                reason: None
            }
            .is_audit());
        }
        assert!(!Kind::default().is_audit());
    }

    #[test]
    fn subscriber_drops_floods_keeps_audit_and_splits_the_audit_file() {
        use tracing_subscriber::fmt::writer::BoxMakeWriter;
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (all, audit) = (Buf::default(), Buf::default());
        let (a, b) = (all.clone(), audit.clone());
        let fmt = |w: BoxMakeWriter| {
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .without_time()
                .with_writer(w)
        };
        let sub = tracing_subscriber::registry()
            .with(vec![
                fmt(BoxMakeWriter::new(move || a.clone())).boxed(),
                fmt(BoxMakeWriter::new(move || b.clone()))
                    .with_filter(AuditOnly(true))
                    .boxed(),
            ])
            .with(RateLimitLayer::new(RateLimiter::new(
                2,
                Duration::from_secs(3600),
                16,
            )));
        tracing::subscriber::with_default(sub, || {
            for _ in 0..50 {
                tracing::info!(event = "rejected", reason = "bad_mac", "flood");
            }
            for _ in 0..5 {
                tracing::info!(event = "open", door = "ssh", "door opened");
            }
            tracing::debug!(event = "duplicate", "debug noise");
        });
        let all = String::from_utf8(all.0.lock().unwrap().clone()).unwrap();
        let audit = String::from_utf8(audit.0.lock().unwrap().clone()).unwrap();
        assert_eq!(all.matches("flood").count(), 2, "{all}");
        assert_eq!(all.matches("door opened").count(), 5, "{all}");
        assert_eq!(audit.matches("door opened").count(), 5, "{audit}");
        assert!(
            !audit.contains("flood") && !audit.contains("debug noise"),
            "{audit}"
        );
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
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent-dir/sesame.log"), "{e}");
    }
}
