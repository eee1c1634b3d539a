//! The compliance harness: one knockd.conf, two daemons, the same outside view.
//!
//! A scenario gets a [`Harness`] for one [`Impl`]. The harness builds a fresh
//! namespace pair, installs a "gate" (`table inet gate`) in the server
//! namespace that drops TCP port [`PORT`] except for addresses in its sets,
//! starts an echo service on that port, writes the rendered knockd.conf and
//! starts either Debian's `knockd` or `sesamed --knockd-config`. The door
//! commands add/remove the knocker's address in the gate and append a line to
//! `cmd.log`, so a scenario only observes what anyone outside could: whether a
//! real TCP connect from the client namespace succeeds, and what the commands
//! wrote.
//!
//! Every wait is bounded in time and in iterations. Everything started in the
//! namespaces is killed, and the namespaces and the temp dir are removed, when
//! the harness is dropped (also on panic).

use sesame_testkit::proc::{assert_success, ci};
pub use sesame_testkit::proc::{find_program, poll, run_bounded};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use sesame::testbed::{Side, Testbed, CLIENT2_V4, CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::support;

/// The protected TCP port (the gate drops it unless a command opened it).
pub const PORT: u16 = 2222;

/// Start command for IPv4 knockers (placeholders filled by [`render`]).
pub const START4: &str =
    "@NFT@ add element inet gate allowed4 { %IP% } ; echo \"start %IP%\" >> @DIR@/cmd.log";
/// Stop command for IPv4 knockers.
pub const STOP4: &str =
    "@NFT@ delete element inet gate allowed4 { %IP% } ; echo \"stop %IP%\" >> @DIR@/cmd.log";
/// Start command for IPv6 knockers (`Start_Command_6`).
pub const START6: &str =
    "@NFT@ add element inet gate allowed6 { %IP% } ; echo \"start6 %IP%\" >> @DIR@/cmd.log";
/// Stop command for IPv6 knockers (`Stop_Command_6`).
pub const STOP6: &str =
    "@NFT@ delete element inet gate allowed6 { %IP% } ; echo \"stop6 %IP%\" >> @DIR@/cmd.log";

/// The daemon under test.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Impl {
    /// Debian's knockd 0.8 (`knockd -i sesame0 -c FILE -v`).
    Knockd,
    /// `sesamed --knockd-config FILE`.
    Sesame,
}

/// The knock client.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Client {
    /// Debian's `knock`.
    Knock,
    /// `sesame knock`.
    Sesame,
}

/// Transport of a single hit.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// Outcome of a [`Harness::probe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The connection was accepted.
    Accepted,
    /// A RST came back.
    Refused,
    /// Nothing came back.
    Silent,
    /// Anything else.
    Other(String),
}

/// Resolves the external programs every scenario needs; `None` means skip
/// (outside CI). Under `CI=true` a missing program is a failure.
fn programs() -> Option<Programs> {
    let find = |p: &str| {
        let found = find_program(p);
        if found.is_none() {
            let msg = format!("`{p}` is not installed (apt-get install knockd nftables hping3)");
            if ci() {
                panic!("CI=true but {msg}");
            }
            eprintln!("skipped: {msg}");
        }
        found
    };
    Some(Programs {
        knockd: find("knockd")?,
        knock: find("knock")?,
        nft: find("nft")?,
        hping3: find("hping3")?,
    })
}

struct Programs {
    knockd: PathBuf,
    knock: PathBuf,
    nft: PathBuf,
    hping3: PathBuf,
}

/// Captured output lines of a daemon.
pub use sesame_testkit::proc::Lines as Log;

/// Replaces the placeholders of a config template: `@START4@`, `@STOP4@`,
/// `@START6@`, `@STOP6@` (the gate commands), then `@DIR@` and `@NFT@`.
fn render(template: &str, dir: &Path, nft: &Path) -> String {
    template
        .replace("@START4@", START4)
        .replace("@STOP4@", STOP4)
        .replace("@START6@", START6)
        .replace("@STOP6@", STOP6)
        .replace("@DIR@", dir.to_str().unwrap())
        .replace("@NFT@", nft.to_str().unwrap())
}

/// One scenario's world: namespaces, gate, service, daemon.
pub struct Harness {
    /// The daemon under test.
    pub imp: Impl,
    /// Scratch directory (config, cmd.log, sequence files).
    pub dir: PathBuf,
    /// The daemon's captured output.
    pub log: Log,
    daemon: usize,
    progs: Programs,
    service: Option<support::Service>,
    bed: Option<Testbed>,
}

impl Harness {
    /// Builds everything and starts `imp` on `config` (a template, see
    /// [`render`]). `files` are written to the scratch dir first (name,
    /// content; the content is rendered too). `None` means the scenario is
    /// skipped (no root outside CI, or a missing program outside CI).
    pub fn start(imp: Impl, tag: &str, config: &str, files: &[(&str, &str)]) -> Option<Harness> {
        let progs = programs()?;
        let tag = match imp {
            Impl::Knockd => format!("k{tag}"),
            Impl::Sesame => format!("s{tag}"),
        };
        let bed = support::testbed(&tag)?;
        let dir = std::env::temp_dir().join(format!("{}-compliance", bed.server));
        std::fs::create_dir_all(&dir).unwrap();
        let mut h = Harness {
            imp,
            dir,
            log: Log::default(),
            daemon: 0,
            progs,
            service: None,
            bed: Some(bed),
        };

        // The gate, then the service it protects.
        let gate = h.dir.join("gate.nft");
        std::fs::write(&gate, sesame_testkit::net::knockd_gate(PORT)).unwrap();
        let mut nft = h.bed().command(Side::Server, h.progs.nft.to_str().unwrap());
        nft.arg("-f").arg(&gate);
        let out = run_bounded(nft, Duration::from_secs(10));
        assert_success(&out, "installing the gate");
        h.service = Some(support::Service::start(h.bed(), PORT).expect("echo service"));

        for (name, content) in files {
            std::fs::write(h.dir.join(name), h.render(content)).unwrap();
        }
        let conf = h.dir.join("knockd.conf");
        std::fs::write(&conf, h.render(config)).unwrap();
        std::fs::write(h.dir.join("cmd.log"), "").unwrap();

        let (program, args, ready): (String, Vec<String>, &str) = match imp {
            Impl::Knockd => (
                h.progs.knockd.to_str().unwrap().into(),
                vec![
                    "-i".into(),
                    "sesame0".into(),
                    "-c".into(),
                    conf.to_str().unwrap().into(),
                    "-v".into(),
                ],
                "listening on sesame0",
            ),
            Impl::Sesame => (
                env!("CARGO_BIN_EXE_sesamed").into(),
                vec![
                    "--knockd-config".into(),
                    conf.to_str().unwrap().into(),
                    "--control-socket".into(),
                    h.dir.join("control.sock").to_str().unwrap().into(),
                ],
                "sesamed ready",
            ),
        };
        let mut cmd = h.bed().command(Side::Server, &program);
        cmd.args(&args)
            .current_dir(&h.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let bed = h.bed.as_mut().unwrap();
        h.daemon = bed
            .spawn(cmd)
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let child = bed.child(h.daemon);
        h.log
            .collect(child.stdout.take().unwrap(), String::new(), || false);
        h.log
            .collect(child.stderr.take().unwrap(), String::new(), || false);
        let log = h.log.clone();
        let mut exited = None;
        let ready_seen = poll(Duration::from_secs(10), Duration::from_millis(10), || {
            if log.find(&[ready]).is_some() {
                return true;
            }
            exited = h.bed.as_mut().unwrap().child(h.daemon).try_wait().unwrap();
            exited.is_some()
        });
        if exited.is_some() {
            // Let the reader threads drain the last lines.
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            ready_seen && exited.is_none(),
            "{imp:?} did not become ready ({program} {args:?}; exit: {exited:?}):\n{}",
            h.log.dump()
        );
        Some(h)
    }

    fn bed(&self) -> &Testbed {
        self.bed.as_ref().unwrap()
    }

    /// Renders a template with this harness's paths.
    pub fn render(&self, template: &str) -> String {
        render(template, &self.dir, &self.progs.nft)
    }

    /// Server address of a family.
    pub fn server(v6: bool) -> IpAddr {
        if v6 {
            SERVER_V6.into()
        } else {
            SERVER_V4.into()
        }
    }

    /// The client's (default source) address of a family.
    pub fn client(v6: bool) -> IpAddr {
        if v6 {
            CLIENT_V6.into()
        } else {
            CLIENT_V4.into()
        }
    }

    /// The client namespace's second IPv4 address ("another host").
    pub fn client2() -> IpAddr {
        CLIENT2_V4.into()
    }

    /// Knocks from the client namespace with `client`:
    /// `knock|sesame knock -d 100 [-4|-6] [extra…] SERVER ports…`.
    pub fn knock_with(&self, client: Client, v6: bool, extra: &[&str], ports: &[&str]) {
        self.knock_host(client, Self::server(v6), extra, ports);
    }

    /// Like [`Harness::knock_with`], to any destination `host`.
    pub fn knock_host(&self, client: Client, host: IpAddr, extra: &[&str], ports: &[&str]) {
        let v6 = host.is_ipv6();
        let mut cmd = match client {
            Client::Knock => self
                .bed()
                .command(Side::Client, self.progs.knock.to_str().unwrap()),
            Client::Sesame => {
                let mut c = self
                    .bed()
                    .command(Side::Client, env!("CARGO_BIN_EXE_sesame"));
                c.arg("knock");
                c
            }
        };
        cmd.args(["-d", "100", if v6 { "-6" } else { "-4" }])
            .args(extra)
            .arg(host.to_string())
            .args(ports);
        let out = run_bounded(cmd, Duration::from_secs(20));
        assert_success(&out, format!("{client:?} client on {ports:?}"));
    }

    /// Knocks over IPv4 with `client`.
    pub fn knock(&self, client: Client, ports: &[&str]) {
        self.knock_with(client, false, &[], ports);
    }

    /// Sends one hit from `src` (an address of the client namespace): a TCP
    /// SYN (non-blocking connect, then close) or a one-byte UDP datagram.
    pub fn hit(&self, src: IpAddr, port: u16, proto: Proto) {
        let dst = Self::server(src.is_ipv6());
        let knock = match proto {
            Proto::Tcp => sesame_core::Knock::tcp(port),
            Proto::Udp => sesame_core::Knock::udp(port),
        };
        self.bed()
            .run_in(Side::Client, move || {
                sesame_testkit::net::send_knock(src, dst, knock).expect("send the hit")
            })
            .unwrap();
    }

    /// Runs hping3 in the client namespace with `args` then the server's
    /// IPv4 address (one crafted packet, e.g. `-c 1 -S -A -p 8000`).
    pub fn hping3(&self, args: &[&str]) {
        let mut cmd = self
            .bed()
            .command(Side::Client, self.progs.hping3.to_str().unwrap());
        cmd.args(args).arg(Self::server(false).to_string());
        let out = run_bounded(cmd, Duration::from_secs(10));
        assert!(
            out.status.success() || out.status.code() == Some(1),
            "hping3 {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// One real TCP connect (plus an echo round trip) from `src` to the
    /// protected port.
    pub fn can_connect_from(&self, src: IpAddr) -> bool {
        let dst = Self::server(src.is_ipv6());
        self.bed()
            .run_in(Side::Client, move || {
                let domain = Domain::for_address(SocketAddr::new(src, 0));
                let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP)).expect("socket");
                s.bind(&SockAddr::from(SocketAddr::new(src, 0)))
                    .expect("bind source");
                let to = SockAddr::from(SocketAddr::new(dst, PORT));
                if s.connect_timeout(&to, Duration::from_millis(300)).is_err() {
                    return false;
                }
                let mut s: std::net::TcpStream = s.into();
                s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                let mut buf = [0u8; 4];
                s.write_all(b"ping").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"ping"
            })
            .unwrap()
    }

    /// Whether the client (default source of the family) can connect now.
    pub fn is_open(&self, v6: bool) -> bool {
        self.can_connect_from(Self::client(v6))
    }

    /// Waits up to `limit` until a connect from `src` succeeds.
    pub fn opens_from(&self, src: IpAddr, limit: Duration) -> bool {
        poll(limit, Duration::from_millis(20), || {
            self.can_connect_from(src)
        })
    }

    /// Waits up to `limit` for the client of the family to get in.
    pub fn opens(&self, v6: bool, limit: Duration) -> bool {
        self.opens_from(Self::client(v6), limit)
    }

    /// Waits up to `limit` until connects from the client fail.
    pub fn closes(&self, v6: bool, limit: Duration) -> bool {
        poll(limit, Duration::from_millis(20), || !self.is_open(v6))
    }

    /// True if no connect from `src` succeeds during `period`.
    pub fn stays_closed_from(&self, src: IpAddr, period: Duration) -> bool {
        !poll(period, Duration::from_millis(50), || {
            self.can_connect_from(src)
        })
    }

    /// True if the client of the family never gets in during `period`.
    pub fn stays_closed(&self, v6: bool, period: Duration) -> bool {
        self.stays_closed_from(Self::client(v6), period)
    }

    /// A TCP connect from the client to `port` on the server (IPv4): what
    /// the client sees.
    pub fn probe(&self, port: u16, limit: Duration) -> Probe {
        let to = SocketAddr::new(Self::server(false), port);
        self.bed()
            .run_in(
                Side::Client,
                move || match std::net::TcpStream::connect_timeout(&to, limit) {
                    Ok(_) => Probe::Accepted,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Probe::Refused,
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Probe::Silent,
                    Err(e) => Probe::Other(e.to_string()),
                },
            )
            .unwrap()
    }

    /// Makes the client send packets for `addr` (an address nobody owns) to
    /// the server's MAC, so the server sees knocks addressed to it (for
    /// `Target`).
    pub fn route_to_server(&self, addr: IpAddr) {
        let out = run_bounded(
            {
                let mut c = Command::new("ip");
                c.args(["-n", &self.bed().server, "-o", "link", "show", "sesame0"]);
                c
            },
            Duration::from_secs(5),
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mac = text
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or_else(|| panic!("no MAC for the server's sesame0: {text}"))
            .to_string();
        let mut c = Command::new("ip");
        c.args(["-n", &self.bed().client, "neigh", "replace"])
            .arg(addr.to_string())
            .args(["lladdr", &mac, "dev", "sesame1", "nud", "permanent"]);
        let out = run_bounded(c, Duration::from_secs(5));
        assert_success(&out, "ip neigh replace");
    }

    /// Sends SIGTERM to the daemon (by its pid).
    pub fn terminate(&mut self) {
        let pid = self.bed.as_mut().unwrap().child(self.daemon).id();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
    }

    /// Waits up to `limit` for the daemon to exit.
    pub fn daemon_exits(&mut self, limit: Duration) -> bool {
        let daemon = self.daemon;
        let bed = self.bed.as_mut().unwrap();
        poll(limit, Duration::from_millis(10), || {
            bed.child(daemon).try_wait().unwrap().is_some()
        })
    }

    /// What the commands wrote.
    pub fn cmd_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("cmd.log")).unwrap_or_default()
    }

    /// Lines of cmd.log equal to `line`.
    pub fn cmd_count(&self, line: &str) -> usize {
        self.cmd_log().lines().filter(|l| *l == line).count()
    }

    /// Waits up to `limit` for cmd.log to hold `line` at least `n` times.
    pub fn wait_cmd(&self, line: &str, n: usize, limit: Duration) -> bool {
        poll(limit, Duration::from_millis(20), || {
            self.cmd_count(line) >= n
        })
    }

    /// A file of the scratch dir.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// Everything useful for a failure message.
    pub fn diag(&self) -> String {
        format!(
            "\n--- {:?} output ---\n{}\n--- cmd.log ---\n{}--- end ---",
            self.imp,
            self.log.dump(),
            self.cmd_log()
        )
    }

    /// Kills (by pid) every process still running in the two namespaces:
    /// the daemon, and what it started (knockd's sleeping command children,
    /// commands). All of them were started by this harness.
    fn kill_namespace_processes(&self) {
        let me = std::process::id();
        let pids = |ns: &str| -> Vec<i32> {
            let Ok(out) = Command::new("ip")
                .args(["netns", "pids", ns])
                .stdin(Stdio::null())
                .output()
            else {
                return Vec::new();
            };
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
                .filter(|p| *p as u32 != me)
                .collect()
        };
        let bed = self.bed();
        let all = || {
            let mut v = pids(&bed.server);
            v.extend(pids(&bed.client));
            v
        };
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        for p in all() {
            let _ = kill(Pid::from_raw(p), Signal::SIGTERM);
        }
        if !poll(Duration::from_secs(2), Duration::from_millis(20), || {
            all().is_empty()
        }) {
            for p in all() {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if std::env::var_os("COMPLIANCE_VERBOSE").is_some() {
            eprintln!("{}", self.diag());
        }
        self.service.take();
        if self.bed.is_some() {
            self.kill_namespace_processes();
        }
        // Reaps the daemon and deletes the namespaces.
        self.bed.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
