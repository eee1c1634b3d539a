//! Child processes with bounds: every wait has a time limit and a bounded
//! number of turns, and a program is found in the usual places only.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The most turns any [`poll`] takes, whatever its limit.
pub const MAX_POLLS: usize = 100_000;

/// Calls `f` every `every` until it returns true (true) or `limit` passed
/// (false).
pub fn poll(limit: Duration, every: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    for _ in 0..MAX_POLLS {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(every);
    }
    false
}

/// A system program, looked up in the standard sbin and bin folders (not
/// `$PATH`: tests run as root).
pub fn find_program(prog: &str) -> Option<PathBuf> {
    [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ]
    .iter()
    .map(|d| Path::new(d).join(prog))
    .find(|p| p.is_file())
}

/// Whether the tests run under CI (`CI=true`), where a missing program or
/// privilege is a failure, never a skip.
pub fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// `Some(value)`, or `None` where `what` could not be set up here and the
/// test should skip; under `CI=true` that fails the test instead.
pub fn or_skip<T, E: std::fmt::Display>(what: &str, made: Result<T, E>) -> Option<T> {
    match made {
        Ok(value) => Some(value),
        Err(e) if !ci() => {
            eprintln!("skipped: {what}: {e}");
            None
        }
        Err(e) => panic!("CI=true but {what} failed: {e}"),
    }
}

/// Runs `cmd` with its output captured, killing it (and panicking) if it
/// has not finished within `limit`.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let mut status = None;
    poll(limit, Duration::from_millis(5), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{what} did not finish within {limit:?}");
    };
    Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

/// Fails the calling test unless the command behind `out` succeeded;
/// the panic names `what` and shows the command's status and output.
#[track_caller]
pub fn assert_success(out: &Output, what: impl std::fmt::Display) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The output lines of a process (a daemon's log), captured by a thread
/// as they come; clones share the lines.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    /// Adds one line.
    pub fn push(&self, line: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    }

    /// Collects `stream` line by line on a thread; echoes each line to
    /// stderr after `prefix` when `echo` says so.
    pub fn collect(
        &self,
        stream: impl Read + Send + 'static,
        prefix: String,
        echo: impl Fn() -> bool + Send + 'static,
    ) {
        let sink = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if echo() {
                    eprintln!("{prefix} {line}");
                }
                sink.push(line);
            }
        });
    }

    /// The first line containing every needle.
    pub fn find(&self, needles: &[&str]) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .cloned()
    }

    /// Waits up to `limit` for a line containing every needle.
    pub fn wait_for(&self, needles: &[&str], limit: Duration) -> Option<String> {
        let mut found = None;
        poll(limit, Duration::from_millis(10), || {
            found = self.find(needles);
            found.is_some()
        });
        found
    }

    /// Waits up to `limit` for a line containing every needle and returns
    /// it; panics with `what` and everything captured when none comes, so
    /// a failing test shows the whole log.
    #[track_caller]
    pub fn expect(&self, needles: &[&str], limit: Duration, what: &str) -> String {
        match self.wait_for(needles, limit) {
            Some(line) => line,
            None => panic!(
                "{what}: no line with {needles:?} within {limit:?}; captured:\n{}",
                self.dump()
            ),
        }
    }

    /// How many lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Everything captured so far.
    pub fn dump(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
    }
}

/// A fresh directory under the system's temporary directory, removed with
/// everything in it on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates `sesame-TAG-PID-RANDOM`.
    pub fn new(tag: &str) -> std::io::Result<ScratchDir> {
        let mut r = [0u8; 8];
        getrandom::fill(&mut r).map_err(|e| std::io::Error::other(e.to_string()))?;
        let dir = std::env::temp_dir().join(format!(
            "sesame-{tag}-{}-{:x}",
            std::process::id(),
            u64::from_le_bytes(r)
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(ScratchDir(dir))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `name` inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `text` to `name` inside the directory (creating the folders
    /// on its way) and returns its path.
    pub fn write(&self, name: &str, text: &str) -> std::io::Result<PathBuf> {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text)?;
        Ok(path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
