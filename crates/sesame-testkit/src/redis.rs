//! A private `redis-server` for tests: its own directory, a Unix socket
//! (reachable from every network namespace, since it lives in the file
//! system), no TCP port, no persistence, and an ACL user with a password.
//! Stopped (and its directory removed) on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::proc::{find_program, poll, ScratchDir};

/// The ACL user tests connect as.
pub const USER: &str = "sesame";
/// Its password.
pub const PASSWORD: &str = "fleet-test-password";

/// A running `redis-server`.
pub struct RedisServer {
    dir: ScratchDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one (tag names its directory), or says why it cannot.
    pub fn start(tag: &str) -> Result<RedisServer, String> {
        let dir = ScratchDir::new(&format!("redis-{tag}")).map_err(|e| e.to_string())?;
        let mut server = RedisServer { dir, child: None };
        server.restart()?;
        Ok(server)
    }

    /// The socket: `unix://PATH` is the URL.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    /// `unix:///…/redis.sock`.
    pub fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The directory (write a password file here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether it runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops it (SIGKILL: a crash, as far as clients can tell).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// Starts it again (an empty store: nothing persists).
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        let program = find_program("redis-server")
            .ok_or("redis-server is not installed (apt-get install redis-server)")?;
        let acl = format!("user {USER} on >{PASSWORD} ~sesame:* &* +@all -@dangerous");
        let child = Command::new(program)
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--dir"])
            .arg(self.dir.path())
            .args(["--user", "default", "off"])
            .args(["--user"])
            .args(acl.split(' ').skip(1))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server: {e}"))?;
        self.child = Some(child);
        let socket = self.socket();
        if !poll(Duration::from_secs(10), Duration::from_millis(20), || {
            socket.exists()
        }) {
            self.stop();
            return Err("redis-server did not create its socket within 10 s".into());
        }
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
