//! Starting the daemons under test, each in a fresh testbed, with
//! equivalent doors:
//!
//! - knock rows: `sesamed` (TOML door) and `knockd` (same sequence; start
//!   commands add the source to an nft set that opens the service);
//! - SPA rows: `sesamed-spa` (`--fwknop-access`), `fwknopd-pcap` and
//!   `fwknopd-udp` (`ENABLE_UDP_SERVER Y`), all from the same access.conf
//!   stanza and the same fwknopd.conf (port, interface).
//!
//! The fwknopd setup follows `crates/sesame/tests/fwknop_support/mod.rs`
//! (copied, not included, so the bench does not depend on test code).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use attack_bench::probe::{Knock, Service};
use attack_bench::spa::{self, Keys, SPA_PORT};
use sesame::testbed::{Side, Testbed};
use sesame_core::Proto;

/// The protected service (TCP) every door opens.
pub const PORT: u16 = 2222;
/// The knock doors' sequence.
pub const SEQ: [Knock; 3] = [
    Knock {
        proto: Proto::Tcp,
        port: 7000,
    },
    Knock {
        proto: Proto::Udp,
        port: 8000,
    },
    Knock {
        proto: Proto::Tcp,
        port: 9000,
    },
];
/// Grant lifetime of every door (longer than the run: each legitimate
/// source is used once).
pub const OPEN_FOR_SECS: u32 = 900;
/// sesamed's metrics endpoint inside the server namespace.
pub const METRICS: &str = "127.0.0.1:9751";
/// Every daemon the bench knows, in run order.
pub const ALL: [&str; 6] = [
    "sesamed",
    "knockd",
    "sesamed-spa",
    "sesamed-pk",
    "fwknopd-pcap",
    "fwknopd-udp",
];

/// Knock doors or SPA doors.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Port-knock sequence (floods a–d).
    Knock,
    /// fwknop SPA (flood e).
    Spa,
    /// Sesame's public-key SPA, version 2 (floods e and f).
    Pk,
}

/// The kind of a daemon name, `None` if unknown.
pub fn kind(name: &str) -> Option<Kind> {
    match name {
        "sesamed" | "knockd" => Some(Kind::Knock),
        "sesamed-spa" | "fwknopd-pcap" | "fwknopd-udp" => Some(Kind::Spa),
        "sesamed-pk" => Some(Kind::Pk),
        _ => None,
    }
}

/// The sesamed variant a peer is compared with.
pub fn sesame_for(peer: &str) -> Option<&'static str> {
    match peer {
        "knockd" => Some("sesamed"),
        "fwknopd-pcap" | "fwknopd-udp" => Some("sesamed-spa"),
        _ => None,
    }
}

/// Finds `prog` in the usual system directories.
pub use sesame_testkit::proc::find_program as which;

/// The sesamed binary: `$SESAMED`, else `$SESAMED_TARGET_DIR/release`, else
/// the repository's `target/release`.
pub fn sesamed_path() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("SESAMED") {
        return Ok(p.into());
    }
    let mut candidates = Vec::new();
    if let Ok(t) = std::env::var("SESAMED_TARGET_DIR") {
        candidates.push(PathBuf::from(t).join("release/sesamed"));
    }
    candidates.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/sesamed"));
    candidates.iter().find(|c| c.exists()).cloned().ok_or_else(|| {
        format!(
            "sesamed not found (tried {candidates:?}); build it with `cargo build --release -p sesame` \
             in the repository root, or set SESAMED=/path/to/sesamed"
        )
    })
}

/// Runs a command to completion (bounded by `ip`/`iptables` themselves
/// being short-lived); its stdout, or an error naming it.
pub fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `args` inside namespace `ns`.
pub fn ns_exec(ns: &str, args: &[&str]) -> Result<String, String> {
    run(Command::new("ip").args(["netns", "exec", ns]).args(args))
}

/// Fresh legitimate source addresses: every knock starts from a closed
/// door. IPv4 ones are 198.18.1.1 … 198.18.3.250 (the server routes
/// 198.18.0.0/16 to the veth), IPv6 ones fd53:5e5a::1:N.
pub struct Sources {
    v4: usize,
    v6: usize,
    cap4: usize,
    cap6: usize,
}

/// Largest number of fresh sources per family.
pub const POOL: usize = 750;

impl Sources {
    fn v4_addr(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 1 + (i / 250) as u8, 1 + (i % 250) as u8)
    }

    fn v6_addr(i: usize) -> Ipv6Addr {
        Ipv6Addr::new(0xfd53, 0x5e5a, 0, 0, 0, 0, 1, 1 + i as u16)
    }

    /// The next fresh source of the family.
    pub fn next(&mut self, v6: bool) -> Result<IpAddr, String> {
        let (n, cap) = if v6 {
            (&mut self.v6, self.cap6)
        } else {
            (&mut self.v4, self.cap4)
        };
        if *n >= cap {
            return Err(format!(
                "out of fresh {} sources ({cap})",
                if v6 { "IPv6" } else { "IPv4" },
            ));
        }
        let i = *n;
        *n += 1;
        Ok(if v6 {
            Self::v6_addr(i).into()
        } else {
            Self::v4_addr(i).into()
        })
    }
}

/// What the legitimate client does to open the door.
#[derive(Clone)]
pub enum Legit {
    /// The knock sequence [`SEQ`].
    Knock,
    /// One fresh fwknop SPA packet.
    Spa(Box<spa::Client>),
    /// One fresh Sesame public-key SPA packet (version 2).
    Pk(Box<spa::PkClient>),
}

impl Legit {
    /// Opens the door for `src`; the instant right after the last packet
    /// was handed to the kernel.
    pub fn fire(&self, src: IpAddr, dst: IpAddr) -> Instant {
        match self {
            Legit::Knock => {
                attack_bench::probe::knock_sequence(src, dst, &SEQ, Duration::from_micros(200))
            }
            Legit::Spa(c) => c.send(src, dst),
            Legit::Pk(c) => c.send(src, dst),
        }
    }
}

/// Counts (and keeps the last lines of) a daemon's output.
#[derive(Clone, Default)]
pub struct Output {
    lines: Arc<AtomicU64>,
    tail: Arc<Mutex<VecDeque<String>>>,
    /// A log file the daemon writes (knockd's `LogFile`), counted too.
    file: Option<PathBuf>,
}

impl Output {
    fn collect(&self, stream: impl Read + Send + 'static) {
        let lines = self.lines.clone();
        let tail = self.tail.clone();
        std::thread::spawn(move || {
            let _ = nix::sys::prctl::set_name(c"bench-output");
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                lines.fetch_add(1, Ordering::Relaxed);
                let mut t = tail.lock().unwrap();
                if t.len() >= 200 {
                    t.pop_front();
                }
                t.push_back(line);
            }
        });
    }

    /// Log lines written so far (stdout + stderr + log file).
    pub fn count(&self) -> u64 {
        let file = self
            .file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .map(|b| b.iter().filter(|c| **c == b'\n').count() as u64)
            .unwrap_or(0);
        self.lines.load(Ordering::Relaxed) + file
    }

    /// The last lines (stdout/stderr, then the log file's last ones).
    pub fn tail(&self) -> String {
        let mut out: Vec<String> = self.tail.lock().unwrap().iter().cloned().collect();
        if let Some(text) = self
            .file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
        {
            let lines: Vec<&str> = text.lines().collect();
            out.extend(
                lines[lines.len().saturating_sub(40)..]
                    .iter()
                    .map(|s| s.to_string()),
            );
        }
        out.join("\n")
    }

    fn contains(&self, needle: &str) -> bool {
        self.tail.lock().unwrap().iter().any(|l| l.contains(needle))
            || self
                .file
                .as_ref()
                .and_then(|f| std::fs::read_to_string(f).ok())
                .is_some_and(|t| t.contains(needle))
    }
}

/// Removes the scratch directory on drop.
pub struct Scratch(pub PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One daemon under test, in its own testbed. Dropping it kills the daemon
/// (SIGTERM, then SIGKILL after 3 s) and deletes the namespaces.
pub struct Under {
    /// Daemon name (one of [`ALL`]).
    pub name: String,
    /// Its pid (`ip netns exec` execs the daemon in place).
    pub pid: u32,
    /// Its index among the testbed's children.
    pub index: usize,
    /// Its output.
    pub out: Output,
    /// Fresh legitimate sources.
    pub sources: Sources,
    /// How the legitimate client opens the door.
    pub legit: Legit,
    /// sesamed's metrics endpoint (server namespace), if any.
    pub metrics: Option<SocketAddr>,
    /// sesamed's control socket, if any.
    pub control: Option<PathBuf>,
    /// sesamed's syslog socket, if any: a reader that drains it until
    /// paused (see [`Syslog::pause`]).
    pub syslog: Option<Syslog>,
    /// The `sesamed-pk` row's client (flood f's template comes from it).
    pub pk: Option<spa::PkClient>,
    _service: Service,
    // Field order = drop order: the testbed (daemon, namespaces) goes
    // before its scratch directory.
    /// The namespaces.
    pub bed: Testbed,
    _scratch: Scratch,
}

/// A syslog daemon for sesamed: a datagram socket drained by a thread,
/// which can be paused to play a syslog reader that stopped reading.
pub struct Syslog {
    /// The socket's path.
    pub path: PathBuf,
    paused: Arc<std::sync::atomic::AtomicBool>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Syslog {
    fn start(path: PathBuf) -> Result<Syslog, String> {
        use std::os::unix::net::UnixDatagram;
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path).map_err(|e| format!("syslog socket: {e}"))?;
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
        let paused = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, s) = (Arc::clone(&paused), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if p.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                } else {
                    let _ = sock.recv(&mut buf);
                }
            }
        });
        Ok(Syslog { path, paused, stop })
    }

    /// Stops (or resumes) reading. Stopping also fills the socket's queue,
    /// so that the daemon meets a full syslog at once.
    pub fn pause(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
        if paused {
            std::thread::sleep(Duration::from_millis(100));
            if let Ok(filler) = std::os::unix::net::UnixDatagram::unbound() {
                let _ = filler.set_nonblocking(true);
                for _ in 0..100_000 {
                    if filler.send_to(b"<13>bench: filler", &self.path).is_err() {
                        break;
                    }
                }
            }
        }
    }
}

impl Drop for Syslog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// fwknopd.conf for both fwknopd modes and sesamed-spa (`udp_server`:
/// `ENABLE_UDP_SERVER Y`).
fn fwknopd_conf(run_dir: &Path, udp_server: bool) -> String {
    let mut conf = format!(
        "PCAP_INTF sesame0;\nPCAP_FILTER udp port {SPA_PORT};\nUDPSERV_PORT {SPA_PORT};\nFWKNOP_RUN_DIR {};\n",
        run_dir.display()
    );
    if udp_server {
        conf.push_str("ENABLE_UDP_SERVER Y;\n");
    }
    conf
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Adds `n4` IPv4 and `n6` IPv6 fresh sources to the client and the route
/// back to them on the server; disables reverse-path filtering on the
/// server (namespace-local sysctls) so spoofed sources reach the daemon.
fn prepare_bed(bed: &Testbed, n4: usize, n6: usize) -> Result<(), String> {
    for key in [
        "net.ipv4.conf.all.rp_filter",
        "net.ipv4.conf.default.rp_filter",
        "net.ipv4.conf.sesame0.rp_filter",
    ] {
        ns_exec(&bed.server, &["sysctl", "-qw", &format!("{key}=0")])?;
    }
    run(Command::new("ip").args([
        "-n",
        &bed.server,
        "route",
        "add",
        "198.18.0.0/16",
        "dev",
        "sesame0",
    ]))?;
    let mut batch = String::new();
    for i in 0..n4 {
        batch.push_str(&format!(
            "addr add {}/24 dev sesame1\n",
            Sources::v4_addr(i)
        ));
    }
    for i in 0..n6 {
        batch.push_str(&format!(
            "addr add {}/64 dev sesame1 nodad\n",
            Sources::v6_addr(i)
        ));
    }
    let mut child = Command::new("ip")
        .args(["-n", &bed.client, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), batch.as_bytes())
        .map_err(|e| e.to_string())?;
    drop(child.stdin.take());
    if !child.wait().map_err(|e| e.to_string())?.success() {
        return Err("ip -batch (client addresses) failed".into());
    }
    if let Ok(mask) = std::env::var("BENCH_RPS_MASK") {
        ns_exec(
            &bed.server,
            &[
                "sh",
                "-c",
                &format!("echo {mask} > /sys/class/net/sesame0/queues/rx-0/rps_cpus"),
            ],
        )?;
    }
    attack_bench::gen::pin_neighbours(bed).map_err(|e| e.to_string())
}

/// Polls `f` every 10 ms until true or `limit` (bounded in time and count).
fn wait(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    for _ in 0..10_000 {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// sesamed's state directory, control socket and metrics endpoint under
/// `dir`: the control socket and the arguments naming all three.
fn sesamed_args(dir: &Path) -> Result<(PathBuf, Vec<String>), String> {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).map_err(|e| e.to_string())?;
    let sock = dir.join("control.sock");
    let args = vec![
        "--state-dir".into(),
        state.display().to_string(),
        "--control-socket".into(),
        sock.display().to_string(),
        "--metrics".into(),
        METRICS.into(),
    ];
    Ok((sock, args))
}

/// Starts `name` in a fresh testbed with `n4`/`n6` fresh client sources.
pub fn setup(name: &str, n4: usize, n6: usize, keys: &Keys) -> Result<Under, String> {
    let kind = kind(name).ok_or_else(|| format!("unknown daemon {name} (known: {ALL:?})"))?;
    if n4 > POOL || n6 > POOL {
        return Err(format!(
            "{n4} IPv4 / {n6} IPv6 fresh sources needed, at most {POOL}"
        ));
    }
    let tag: String = name.split('-').map(|p| &p[..1]).collect();
    let mut bed = Testbed::create(&format!("atk{tag}")).map_err(|e| e.to_string())?;
    prepare_bed(&bed, n4, n6)?;
    let service = Service::start(&bed, PORT).map_err(|e| format!("echo service: {e}"))?;
    let dir = std::env::temp_dir().join(format!("{}-attack", bed.server));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let scratch = Scratch(dir.clone());
    let mut out = Output::default();
    let mut metrics = None;
    let mut control = None;
    let mut syslog = None;
    let mut pk = None;
    let (program, args, ready): (PathBuf, Vec<String>, &str) = match name {
        "sesamed-pk" => {
            let (sock, mut args) = sesamed_args(&dir)?;
            let server_key = dir.join("server.key");
            let (client, identity) = spa::PkClient::generate(&server_key, SPA_PORT)?;
            let conf = dir.join("sesame.toml");
            write_private(
                &conf,
                &format!(
                    "[daemon]\nserver_key = \"{}\"\n[door.pk]\nspa_port = {SPA_PORT}\nopen_for = \"{OPEN_FOR_SECS}s\"\n\
                     protect = [\"tcp/{PORT}\"]\n[door.pk.users.bench]\nidentity = \"{identity}\"\n",
                    server_key.display()
                ),
            )?;
            pk = Some(client);
            metrics = Some(METRICS.parse().expect("metrics address"));
            control = Some(sock.clone());
            args.extend(["--config".into(), conf.display().to_string()]);
            (sesamed_path()?, args, "sesamed ready")
        }
        "sesamed" | "sesamed-spa" => {
            let (sock, mut args) = sesamed_args(&dir)?;
            if name == "sesamed" {
                // [daemon] left at its defaults (max_tracked is
                // sesame::config::DEFAULT_MAX_TRACKED), but for syslog, as
                // knockd's UseSyslog deploys it: the slow-peer rows stop
                // its reader.
                let log = Syslog::start(dir.join("syslog.sock"))?;
                let conf = dir.join("sesame.toml");
                write_private(
                    &conf,
                    &format!(
                        "[daemon]\nsyslog = true\nsyslog_socket = \"{}\"\n\
                         [door.bench]\nsequence = [\"7000\", \"8000:udp\", \"9000\"]\n\
                         seq_timeout = \"5s\"\nopen_for = \"{OPEN_FOR_SECS}s\"\nprotect = [\"tcp/{PORT}\"]\n",
                        log.path.display()
                    ),
                )?;
                syslog = Some(log);
                args.extend(["--config".into(), conf.display().to_string()]);
            } else {
                let access = dir.join("access.conf");
                write_private(
                    &access,
                    &keys.stanza("ANY", &format!("tcp/{PORT}"), OPEN_FOR_SECS),
                )?;
                let run_dir = dir.join("run");
                std::fs::create_dir_all(&run_dir).map_err(|e| e.to_string())?;
                let conf = dir.join("fwknopd.conf");
                write_private(&conf, &fwknopd_conf(&run_dir, false))?;
                args.extend([
                    "--fwknop-access".into(),
                    access.display().to_string(),
                    "--fwknopd-conf".into(),
                    conf.display().to_string(),
                ]);
            }
            metrics = Some(METRICS.parse().expect("metrics address"));
            control = Some(sock);
            (sesamed_path()?, args, "sesamed ready")
        }
        "knockd" => {
            let nft = which("nft").ok_or("nft not installed (apt-get install nftables)")?;
            let knockd = which("knockd").ok_or("knockd not installed (apt-get install knockd)")?;
            let gate = dir.join("gate.nft");
            std::fs::write(&gate, sesame_testkit::net::knockd_gate(PORT))
                .map_err(|e| e.to_string())?;
            ns_exec(
                &bed.server,
                &[nft.to_str().unwrap(), "-f", gate.to_str().unwrap()],
            )?;
            let nft = nft.display();
            let conf = dir.join("knockd.conf");
            let log = dir.join("knockd.log");
            // Logging as deployed (a log file; Debian's default is syslog),
            // not -v, which would print every packet to stdout.
            std::fs::write(
                &conf,
                format!(
                    "[options]\n\tInterface = sesame0\n\tLogFile = {}\n[bench]\n\tSequence = 7000,8000:udp,9000\n\
                     \tSeq_Timeout = 5\n\tTCPFlags = syn\n\
                     \tStart_Command = {nft} add element inet gate allowed4 {{ %IP% }}\n\
                     \tStart_Command_6 = {nft} add element inet gate allowed6 {{ %IP% }}\n",
                    log.display()
                ),
            )
            .map_err(|e| e.to_string())?;
            out.file = Some(log);
            (
                knockd,
                vec![
                    "-i".into(),
                    "sesame0".into(),
                    "-c".into(),
                    conf.display().to_string(),
                ],
                "starting up, listening on",
            )
        }
        "fwknopd-pcap" | "fwknopd-udp" => {
            let fwknopd =
                which("fwknopd").ok_or("fwknopd not installed (apt-get install fwknop-server)")?;
            let udp = name == "fwknopd-udp";
            for tool in ["iptables", "ip6tables"] {
                which(tool).ok_or(format!("{tool} not installed (apt-get install iptables)"))?;
                // The protected port is closed until fwknopd's jump (which
                // it inserts above this rule) accepts a granted source.
                let rule = format!("{tool} -w -A INPUT -p tcp --dport {PORT} -j DROP");
                ns_exec(&bed.server, &rule.split(' ').collect::<Vec<_>>())?;
            }
            let run_dir = dir.join("run");
            std::fs::create_dir_all(&run_dir).map_err(|e| e.to_string())?;
            let conf = dir.join("fwknopd.conf");
            let access = dir.join("access.conf");
            write_private(&conf, &fwknopd_conf(&run_dir, udp))?;
            write_private(
                &access,
                &keys.stanza("ANY", &format!("tcp/{PORT}"), OPEN_FOR_SECS),
            )?;
            let args = [
                "-f".to_string(),
                "-c".into(),
                conf.display().to_string(),
                "-a".into(),
                access.display().to_string(),
                "-d".into(),
                run_dir.join("digest.cache").display().to_string(),
                "-p".into(),
                run_dir.join("fwknopd.pid").display().to_string(),
                "-r".into(),
                run_dir.display().to_string(),
                "-i".into(),
                "sesame0".into(),
            ];
            (
                fwknopd,
                args.to_vec(),
                if udp {
                    "Kicking off UDP server"
                } else {
                    "Starting fwknopd main event loop"
                },
            )
        }
        other => return Err(format!("unknown daemon {other}")),
    };
    let mut cmd = bed.command(Side::Server, program.to_str().unwrap());
    cmd.args(&args)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let index = bed.spawn(cmd).map_err(|e| format!("{program:?}: {e}"))?;
    let child = bed.child(index);
    let pid = child.id();
    out.collect(child.stdout.take().unwrap());
    out.collect(child.stderr.take().unwrap());
    let mut exited = None;
    let ok = wait(Duration::from_secs(15), || {
        exited = bed.child(index).try_wait().ok().flatten();
        out.contains(ready) || exited.is_some()
    });
    if !ok || exited.is_some() {
        return Err(format!(
            "{name} did not become ready (exit status {exited:?}):\n{}",
            out.tail()
        ));
    }
    if name == "fwknopd-udp"
        && !wait(Duration::from_secs(5), || {
            bed.udp_bound(Side::Server, SPA_PORT)
        })
    {
        return Err(format!(
            "fwknopd-udp never bound UDP {SPA_PORT}:\n{}",
            out.tail()
        ));
    }
    if name.starts_with("fwknopd") {
        let rules = ns_exec(&bed.server, &["iptables", "-w", "-S", "INPUT"])?;
        let order: Vec<&str> = rules.lines().filter(|l| l.starts_with("-A ")).collect();
        if order.first() != Some(&"-A INPUT -j FWKNOP_INPUT") {
            return Err(format!(
                "unexpected INPUT chain after fwknopd started:\n{rules}"
            ));
        }
    }
    // Let the daemon settle (pcap rings, first netlink round trips).
    std::thread::sleep(Duration::from_millis(300));
    let legit = match kind {
        Kind::Knock => Legit::Knock,
        Kind::Spa => Legit::Spa(Box::new(spa::Client::new(keys, PORT))),
        Kind::Pk => Legit::Pk(Box::new(pk.clone().ok_or("sesamed-pk without its client")?)),
    };
    Ok(Under {
        name: name.into(),
        pid,
        index,
        out,
        sources: Sources {
            v4: 0,
            v6: 0,
            cap4: n4,
            cap6: n6,
        },
        legit,
        metrics,
        control,
        syslog,
        pk,
        _service: service,
        bed,
        _scratch: scratch,
    })
}
