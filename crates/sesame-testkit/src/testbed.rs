//! Two network namespaces joined by a veth pair, for the demo, the
//! integration tests and the latency benchmark.
//!
//! Namespaces get unique names and are deleted (with every process started in
//! them) when the [`Testbed`] is dropped, also on panic. Traffic only ever goes
//! between the two namespaces. Needs root and iproute2's `ip`.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sched::{setns, CloneFlags};

/// Server-side IPv4 address (inside the server namespace).
pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Client-side IPv4 address.
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// Second client-side IPv4 address, for "another host" tests.
pub const CLIENT2_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
/// Server-side IPv6 address.
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0xfd53, 0x5e5a, 0, 0, 0, 0, 0, 1);
/// Client-side IPv6 address.
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd53, 0x5e5a, 0, 0, 0, 0, 0, 2);
/// The inner host's IPv4 address, behind the server acting as a gateway
/// ([`Testbed::create_gateway`]).
pub const INNER_V4: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 2);
/// The gateway's IPv4 address on the inner link.
pub const GATEWAY_INNER_V4: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
/// The inner host's IPv6 address.
pub const INNER_V6: Ipv6Addr = Ipv6Addr::new(0xfd53, 0x5e5a, 2, 0, 0, 0, 0, 2);
/// The gateway's IPv6 address on the inner link.
pub const GATEWAY_INNER_V6: Ipv6Addr = Ipv6Addr::new(0xfd53, 0x5e5a, 2, 0, 0, 0, 0, 1);

/// Why the testbed could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    /// Not running as root.
    #[error("network namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN); run this as root, e.g. with sudo")]
    NotRoot,
    /// An `ip` command failed.
    #[error("`ip {args}` failed: {message}")]
    Ip {
        /// Arguments given to `ip`.
        args: String,
        /// stderr or spawn error.
        message: String,
    },
    /// Entering a namespace failed.
    #[error("cannot enter network namespace {name}: {message}")]
    Enter {
        /// Namespace.
        name: String,
        /// Cause.
        message: String,
    },
}

/// Which end of the pair.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Side {
    /// Runs sesamed and the protected service.
    Server,
    /// Knocks and connects.
    Client,
    /// The host behind the server when the server is a gateway
    /// ([`Testbed::create_gateway`]).
    Inner,
}

/// A pair of namespaces; deleted on drop.
pub struct Testbed {
    /// Server namespace name.
    pub server: String,
    /// Client namespace name.
    pub client: String,
    /// Inner host namespace name (gateway test beds only).
    pub inner: Option<String>,
    children: Vec<Child>,
}

fn ip(args: &[&str]) -> Result<(), TestbedError> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| TestbedError::Ip {
            args: args.join(" "),
            message: format!("cannot run ip (install iproute2): {e}"),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(TestbedError::Ip {
            args: args.join(" "),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// A veth pair between two namespaces: (device, namespace) each.
fn veth(a: (&str, &str), b: (&str, &str)) -> Result<(), TestbedError> {
    ip(&[
        "link", "add", a.0, "netns", a.1, "type", "veth", "peer", "name", b.0, "netns", b.1,
    ])
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Testbed {
    /// A directory for this test's files, `<server namespace>-files` in the
    /// system's temporary directory; removed with the testbed, so files
    /// do not pile up when a test fails half way.
    pub fn scratch(&self) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("{}-files", self.server));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create {}: {e}", dir.display());
        }
        dir
    }

    /// Removes every `<server namespace>-*` entry of the temporary
    /// directory: [`Testbed::scratch`] and what helpers made the same way.
    /// Namespace names are unique to the process and testbed, so nothing
    /// else matches.
    fn remove_scratch(&self) {
        let prefix = format!("{}-", self.server);
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            // remove_dir_all does not follow links; a plain file or link
            // goes with remove_file.
            match entry.file_type() {
                Ok(t) if t.is_dir() => drop(std::fs::remove_dir_all(entry.path())),
                _ => drop(std::fs::remove_file(entry.path())),
            }
        }
    }

    /// Creates `sesame-<tag>-<pid>-<n>-{srv,cli}` joined by a veth pair with
    /// the addresses above (IPv6 without duplicate address detection, so it
    /// is usable at once).
    pub fn create(tag: &str) -> Result<Self, TestbedError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(TestbedError::NotRoot);
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = format!("sesame-{tag}-{}-{n}", std::process::id());
        let bed = Testbed {
            server: format!("{base}-srv"),
            client: format!("{base}-cli"),
            inner: None,
            children: Vec::new(),
        };
        ip(&["netns", "add", &bed.server])?;
        ip(&["netns", "add", &bed.client])?;
        veth(("sesame0", &bed.server), ("sesame1", &bed.client))?;
        let v4 = |a: Ipv4Addr| format!("{a}/24");
        let v6 = |a: Ipv6Addr| format!("{a}/64");
        for (ns, dev, addrs4, addr6) in [
            (&bed.server, "sesame0", vec![v4(SERVER_V4)], v6(SERVER_V6)),
            (
                &bed.client,
                "sesame1",
                vec![v4(CLIENT_V4), v4(CLIENT2_V4)],
                v6(CLIENT_V6),
            ),
        ] {
            for a in &addrs4 {
                ip(&["-n", ns, "addr", "add", a, "dev", dev])?;
            }
            ip(&["-n", ns, "addr", "add", &addr6, "dev", dev, "nodad"])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(bed)
    }

    /// A test bed whose server is a gateway: a third namespace, the inner
    /// host, sits behind it on its own link (`INNER_V4`, `INNER_V6`), with
    /// the gateway as its default route; the server forwards, and the
    /// client routes the inner networks through it.
    pub fn create_gateway(tag: &str) -> Result<Self, TestbedError> {
        let mut bed = Testbed::create(tag)?;
        let inner = bed.server.replace("-srv", "-inn");
        ip(&["netns", "add", &inner])?;
        bed.inner = Some(inner.clone());
        veth(("sesame2", &bed.server), ("sesame3", &inner))?;
        for (ns, dev, a4, a6) in [
            (&bed.server, "sesame2", GATEWAY_INNER_V4, GATEWAY_INNER_V6),
            (&inner, "sesame3", INNER_V4, INNER_V6),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{a4}/24"), "dev", dev])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{a6}/64"),
                "dev",
                dev,
                "nodad",
            ])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        let gw4 = GATEWAY_INNER_V4.to_string();
        let gw6 = GATEWAY_INNER_V6.to_string();
        ip(&["-n", &inner, "route", "add", "default", "via", &gw4])?;
        ip(&["-n", &inner, "-6", "route", "add", "default", "via", &gw6])?;
        let (s4, s6) = (SERVER_V4.to_string(), SERVER_V6.to_string());
        ip(&["-n", &bed.client, "route", "add", "10.2.0.0/24", "via", &s4])?;
        ip(&[
            "-n",
            &bed.client,
            "-6",
            "route",
            "add",
            "fd53:5e5a:2::/64",
            "via",
            &s6,
        ])?;
        for key in ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"] {
            let path = format!("/proc/sys/{}", key.replace('.', "/"));
            let server = bed.server.clone();
            let written = bed
                .run_in(Side::Server, move || std::fs::write(&path, "1"))
                .map_err(|e| TestbedError::Ip {
                    args: format!("netns {server} sysctl {key}=1"),
                    message: e.to_string(),
                })?;
            written.map_err(|e| TestbedError::Ip {
                args: format!("sysctl {key}=1 in {}", bed.server),
                message: e.to_string(),
            })?;
        }
        Ok(bed)
    }

    /// Namespace name of `side`.
    pub fn name(&self, side: Side) -> &str {
        match side {
            Side::Server => &self.server,
            Side::Client => &self.client,
            Side::Inner => self
                .inner
                .as_deref()
                .unwrap_or("no-inner-namespace-in-this-testbed"),
        }
    }

    /// Address of `side` in the family of `v6`.
    pub fn addr(side: Side, v6: bool) -> IpAddr {
        match (side, v6) {
            (Side::Server, false) => SERVER_V4.into(),
            (Side::Server, true) => SERVER_V6.into(),
            (Side::Client, false) => CLIENT_V4.into(),
            (Side::Client, true) => CLIENT_V6.into(),
            (Side::Inner, false) => INNER_V4.into(),
            (Side::Inner, true) => INNER_V6.into(),
        }
    }

    /// Adds `addr` (with its prefix length) to the client's veth, so
    /// that tests and benchmarks can send from many sources. IPv6 skips
    /// duplicate address detection, so the address is usable at once.
    pub fn add_client_address(&self, addr: IpAddr) -> Result<(), TestbedError> {
        let (with_len, mut args) = match addr {
            IpAddr::V4(_) => (format!("{addr}/24"), vec![]),
            IpAddr::V6(_) => (format!("{addr}/64"), vec!["nodad"]),
        };
        let mut all = vec![
            "-n",
            &self.client,
            "addr",
            "add",
            &with_len,
            "dev",
            "sesame1",
        ];
        all.append(&mut args);
        ip(&all)
    }

    /// A command that runs `program` inside `side`'s namespace.
    pub fn command(&self, side: Side, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.name(side), program]);
        cmd
    }

    /// Spawns `cmd` (from [`Testbed::command`]) and kills it when the testbed
    /// is dropped. Returns its index for [`Testbed::child`].
    pub fn spawn(&mut self, mut cmd: Command) -> std::io::Result<usize> {
        let child = cmd.spawn()?;
        self.children.push(child);
        Ok(self.children.len() - 1)
    }

    /// A child started with [`Testbed::spawn`].
    pub fn child(&mut self, index: usize) -> &mut Child {
        &mut self.children[index]
    }

    /// Runs `f` on a fresh thread inside `side`'s namespace; sockets it
    /// creates stay in that namespace.
    pub fn run_in<T, F>(&self, side: Side, f: F) -> Result<T, TestbedError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let handle = self.spawn_in(side, f)?;
        handle.join().map_err(|_| TestbedError::Enter {
            name: self.name(side).into(),
            message: "the closure panicked".into(),
        })
    }

    /// Whether a UDP socket is bound to `port` on `side` (read from the
    /// namespace's `/proc/net/udp`, so it works for any daemon).
    pub fn udp_bound(&self, side: Side, port: u16) -> bool {
        let needle = format!(":{port:04X} ");
        self.run_in(side, move || {
            std::fs::read_to_string("/proc/thread-self/net/udp")
                .map(|t| t.lines().skip(1).any(|l| l.contains(&needle)))
                .unwrap_or(false)
        })
        .unwrap_or(false)
    }

    /// Like [`Testbed::run_in`] but returns the thread handle (for servers).
    pub fn spawn_in<T, F>(
        &self,
        side: Side,
        f: F,
    ) -> Result<std::thread::JoinHandle<T>, TestbedError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let name = self.name(side).to_string();
        let path = format!("/run/netns/{name}");
        let file = File::open(&path).map_err(|e| TestbedError::Enter {
            name: name.clone(),
            message: e.to_string(),
        })?;
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            // setns only affects this thread.
            if let Err(e) = setns(&file, CloneFlags::CLONE_NEWNET) {
                let _ = tx.send(Err(e.to_string()));
                // Unwind quietly: the caller gets the error from the channel.
                std::panic::resume_unwind(Box::new(()));
            }
            let _ = tx.send(Ok(()));
            f()
        });
        match rx.recv() {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(message)) => Err(TestbedError::Enter { name, message }),
            Err(_) => Err(TestbedError::Enter {
                name,
                message: "the namespace thread exited early".into(),
            }),
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        for child in &mut self.children {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(10))
                    }
                    Ok(None) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        // Deleting the namespaces also deletes the veth pair.
        let _ = ip(&["netns", "del", &self.server]);
        let _ = ip(&["netns", "del", &self.client]);
        if let Some(inner) = &self.inner {
            let _ = ip(&["netns", "del", inner]);
        }
        self.remove_scratch();
    }
}

/// Moves the calling thread into a new network namespace of its own with
/// `lo` up, for a kernel test that needs nothing else. False where the test
/// cannot run here (not root, no namespaces, no `ip`): it should return.
/// Under `CI=true` that is a failure instead: this panics.
pub fn enter_private_netns() -> bool {
    fn skip_or_fail(why: &str) -> bool {
        if crate::proc::ci() {
            panic!("kernel test cannot run under CI=true: {why}");
        }
        eprintln!("skipped: {why}");
        false
    }
    if !nix::unistd::Uid::effective().is_root() {
        return skip_or_fail("needs root");
    }
    if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
        return skip_or_fail(&format!("unshare(CLONE_NEWNET) failed: {e}"));
    }
    match Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
    {
        Ok(s) if s.success() => true,
        Ok(s) => panic!("`ip link set lo up` failed: {s}"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => skip_or_fail("`ip` not installed"),
        Err(e) => panic!("cannot run `ip`: {e}"),
    }
}
