//! Door commands: spawned without a shell, tracked until they exit.
//!
//! The daemon never leaves a sleeping child behind to close a door later (as
//! knockd does): close times live in the core's grant table and the daemon's
//! own timer runs `on_close`. Children are reaped on SIGCHLD.

use std::process::{Child, Command, Stdio};
use std::time::Instant;

use tracing::{info, warn};

struct Running {
    child: Child,
    what: String,
    started: Instant,
}

/// The set of door commands currently running.
#[derive(Default)]
pub struct CommandRunner {
    running: Vec<Running>,
}

impl CommandRunner {
    /// Starts `argv`; `what` describes it in logs (e.g. `on_open door=ssh source=…`).
    pub fn spawn(&mut self, argv: &[String], what: String) {
        self.spawn_as(argv, what, None);
    }

    /// Like [`CommandRunner::spawn`], as `(uid, gid)` when given (fwknop's
    /// `CMD_EXEC_USER`; the daemon must be root).
    pub fn spawn_as(&mut self, argv: &[String], what: String, ids: Option<(u32, u32)>) {
        let Some((program, args)) = argv.split_first() else {
            return;
        };
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null());
        if let Some((uid, gid)) = ids {
            use std::os::unix::process::CommandExt;
            // std drops supplementary groups when root sets a uid.
            cmd.gid(gid).uid(uid);
        }
        match cmd.spawn() {
            Ok(child) => {
                // The rendered command line, as knockd logs it; %IP% is the
                // only substitution, so no secret comes from the daemon here.
                info!(event = "command", pid = child.id(), command = %what, "running: {}", shell_words(argv));
                self.running.push(Running {
                    child,
                    what,
                    started: Instant::now(),
                });
            }
            Err(e) => {
                warn!(event = "command_failed", command = %what, "cannot start {program:?}: {e}")
            }
        }
    }

    /// Reaps finished children and logs how they ended.
    pub fn reap(&mut self) {
        self.running.retain_mut(|r| match r.child.try_wait() {
            Ok(Some(status)) => {
                let ms = r.started.elapsed().as_millis();
                if status.success() {
                    info!(event = "command_done", command = %r.what, "exited successfully after {ms} ms");
                } else {
                    warn!(event = "command_failed", command = %r.what, "{status} after {ms} ms");
                }
                false
            }
            Ok(None) => true,
            Err(e) => {
                warn!(event = "command_failed", command = %r.what, "cannot wait for it: {e}");
                false
            }
        });
    }

    /// Number of commands still running.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// True when nothing is running.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Waits (bounded) for running commands at shutdown, so that close
    /// commands finish before the daemon exits.
    pub fn wait_all(&mut self, limit: std::time::Duration) {
        let deadline = Instant::now() + limit;
        while !self.running.is_empty() && Instant::now() < deadline {
            self.reap();
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        for r in &self.running {
            warn!(event = "command_abandoned", command = %r.what, pid = r.child.id(), "still running at shutdown");
        }
    }
}

/// `argv` as one line: a `/bin/sh -c SCRIPT` shows just the script, other
/// arguments containing spaces are quoted.
fn shell_words(argv: &[String]) -> String {
    if let [sh, c, script] = argv {
        if sh == sesame_core::door::SHELL && c == "-c" {
            return script.clone();
        }
    }
    argv.iter()
        .map(|a| {
            if a.is_empty() || a.contains(char::is_whitespace) {
                format!("{a:?}")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
