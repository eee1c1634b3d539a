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

    /// Runs `redis-cli ARGS` on it as [`USER`] (bounded to 10 s), as an
    /// attacker with the store's password would; fails the test unless it
    /// succeeds.
    pub fn cli(&self, args: &[&str]) {
        let program = find_program("redis-cli").expect("redis-cli (apt-get install redis-tools)");
        let mut cmd = Command::new(program);
        cmd.arg("-s")
            .arg(self.socket())
            .args(["--user", USER, "--pass", PASSWORD, "--no-auth-warning"])
            .args(args);
        let out = crate::proc::run_bounded(cmd, Duration::from_secs(10));
        crate::proc::assert_success(&out, format!("redis-cli {args:?}"));
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

/// The `[fleet]` table (and `[fleet.members]`) of gateway `name` among
/// `members`, on `redis` as [`USER`]: each gateway's key is `DIR/GW.key`
/// (its public key `DIR/GW.key.pub`, as `sesame keygen identity` writes
/// them) and the password is in `DIR/redis.pass` ([`write_password`]).
/// `settings` is added to the table as is (`"timeout = \"300ms\"\n"`).
pub fn fleet_table(
    redis: &RedisServer,
    dir: &Path,
    group: &str,
    name: &str,
    members: &[&str],
    settings: &str,
) -> String {
    let members: String = members
        .iter()
        .map(|m| format!("{m} = \"{}\"\n", dir.join(format!("{m}.key.pub")).display()))
        .collect();
    format!(
        "[fleet]\nname = \"{name}\"\ngroup = \"{group}\"\nredis = \"{}\"\nuser = \"{USER}\"\n\
         password_file = \"{}\"\nkey = \"{}\"\n{settings}[fleet.members]\n{members}",
        redis.url(),
        dir.join("redis.pass").display(),
        dir.join(format!("{name}.key")).display(),
    )
}

/// Writes [`PASSWORD`] to `DIR/redis.pass`, mode 0600 (a secret's rules).
pub fn write_password(dir: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("redis.pass");
    std::fs::write(&path, PASSWORD)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(path)
}
