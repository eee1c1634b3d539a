//! Shared helpers for the namespace integration tests.
//!
//! Every test builds its own uniquely named namespace pair ([`Testbed`]),
//! which is removed with everything running in it when the test ends, even
//! on panic. Every wait loop is bounded in time.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sesame::testbed::{Side, Testbed, TestbedError};
use sesame_core::Knock;

/// Path of a binary of this package.
pub fn bin(name: &str) -> PathBuf {
    match name {
        "sesamed" => PathBuf::from(env!("CARGO_BIN_EXE_sesamed")),
        "sesame" => PathBuf::from(env!("CARGO_BIN_EXE_sesame")),
        other => panic!("unknown binary {other}"),
    }
}

/// Creates a testbed, or decides the test cannot run here. Under `CI=true`
/// a missing privilege is a failure, never a skip.
pub fn testbed(tag: &str) -> Option<Testbed> {
    match Testbed::create(tag) {
        Ok(bed) => Some(bed),
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true but the namespace testbed is unavailable: {e}");
            }
            if matches!(e, TestbedError::NotRoot) {
                eprintln!("skipped: {e}");
                None
            } else {
                panic!("testbed setup failed: {e}");
            }
        }
    }
}

/// `let mut bed = testbed_or_skip!("tag");`: the test's [`testbed`], or a
/// return from the test where it cannot run (never under `CI=true`).
#[allow(unused_macros)] // not every test binary uses it
macro_rules! testbed_or_skip {
    ($tag:expr) => {
        match testbed($tag) {
            Some(bed) => bed,
            None => return,
        }
    };
}
#[allow(unused_imports)]
pub(crate) use testbed_or_skip;

/// Whether daemon log lines are echoed to stderr as they arrive (they are
/// always captured). Benchmarks turn this off to keep output readable.
pub static ECHO_DAEMON_LOGS: AtomicBool = AtomicBool::new(true);

#[allow(unused_imports)] // not every test binary runs commands
pub use sesame_testkit::proc::assert_success;
/// Captured daemon log lines.
pub use sesame_testkit::proc::Lines as Log;

/// A running `sesamed` in the server namespace.
pub struct Daemon {
    /// Index of the child in the testbed.
    pub index: usize,
    /// PID of the `ip netns exec` process, which execs sesamed.
    pub pid: u32,
    /// Its log.
    pub log: Log,
    /// Its control socket.
    pub socket: PathBuf,
}

/// Writes `config` to a temp file and starts sesamed on it; waits for ready.
pub fn start_daemon(bed: &mut Testbed, config: &str, extra: &[&str]) -> Daemon {
    let dir = std::env::temp_dir().join(format!("{}-cfg", bed.server));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sesame.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = bed.command(Side::Server, bin("sesamed").to_str().unwrap());
    cmd.arg("--config").arg(&path);
    // Each test daemon gets its own control socket (the default path is
    // shared by the whole host).
    let socket = match extra.iter().position(|a| *a == "--control-socket") {
        Some(i) => PathBuf::from(extra[i + 1]),
        None => {
            let socket = dir.join("control.sock");
            cmd.arg("--control-socket").arg(&socket);
            socket
        }
    };
    cmd.args(extra).stdin(Stdio::null()).stderr(Stdio::piped());
    let index = bed.spawn(cmd).expect("spawn sesamed");
    let child = bed.child(index);
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let log = Log::default();
    log.collect(stderr, format!("sesamed[{pid}]"), || {
        ECHO_DAEMON_LOGS.load(Ordering::Relaxed)
    });
    assert!(
        log.wait_for(&["sesamed ready"], Duration::from_secs(10))
            .is_some(),
        "sesamed did not become ready:\n{}",
        log.dump()
    );
    Daemon {
        index,
        pid,
        log,
        socket,
    }
}

/// Sends `signal` to the daemon and waits (bounded) for it to exit.
pub fn stop_daemon(bed: &mut Testbed, daemon: &Daemon, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.pid as i32), signal).unwrap();
    let child = bed.child(daemon.index);
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        assert!(Instant::now() < end, "sesamed did not exit after {signal}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A dual-stack TCP echo service in the server namespace, stopped on drop.
#[allow(unused_imports)] // not every test binary starts one
pub use sesame_testkit::net::EchoService as Service;

/// One connect attempt from the client namespace: true if it connects and
/// the echo service answers.
pub fn can_connect(bed: &Testbed, server: IpAddr, port: u16) -> bool {
    bed.run_in(Side::Client, move || {
        let addr = SocketAddr::new(server, port);
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_secs(2))).ok();
        let mut buf = [0u8; 4];
        s.write_all(b"ping").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"ping"
    })
    .unwrap()
}

/// Polls [`can_connect`] until it returns `want` or `limit` passes.
pub fn wait_connect(bed: &Testbed, server: IpAddr, port: u16, want: bool, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    loop {
        if can_connect(bed, server, port) == want {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// sesamed's own share of each opening in `log` whose line contains
/// `needle`: `open_us` of its `open` lines (packet read → grant committed).
#[allow(dead_code)] // the benchmarks' helper
pub fn open_times(log: &Log, needle: &str) -> Vec<Duration> {
    log.dump()
        .lines()
        .filter(|l| l.contains("event=\"open\"") && l.contains(needle))
        .filter_map(|l| {
            let us = l.split("open_us=").nth(1)?.split_whitespace().next()?;
            us.parse().ok().map(Duration::from_micros)
        })
        .collect()
}

/// Fails the test unless `server:port` opens for the client within 2 s.
#[track_caller]
pub fn assert_opens(bed: &Testbed, server: IpAddr, port: u16) {
    assert!(
        wait_connect(bed, server, port, true, Duration::from_secs(2)),
        "{server} port {port} did not open within 2 s"
    );
}

/// Fails the test unless `server:port` closes for the client within `limit`.
#[track_caller]
pub fn assert_closes(bed: &Testbed, server: IpAddr, port: u16, limit: Duration) {
    assert!(
        wait_connect(bed, server, port, false, limit),
        "{server} port {port} still open after {limit:?}"
    );
}

/// Knocks from the client namespace with the library client.
pub fn knock(bed: &Testbed, server: IpAddr, sequence: &[&str]) {
    let knocks: Vec<Knock> = sequence.iter().map(|s| s.parse().unwrap()).collect();
    bed.run_in(Side::Client, move || {
        sesame::client::knock_sequence(server, &knocks, Duration::from_millis(5), |_| {})
    })
    .unwrap()
    .expect("knock");
}

/// Runs `nft ARGS` in the server namespace and returns stdout.
pub fn nft(bed: &Testbed, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &bed.server, "nft"])
        .args(args)
        .output()
        .expect("run nft (install nftables)");
    assert_success(&out, format!("nft {args:?}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Ones' complement sum of `data`, folded, as TCP checksums need.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for part in parts {
        for pair in part.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A bare TCP SYN header from `src:sport` to `dst:dport`, checksummed.
pub fn syn_segment(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, seq: u32) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..8].copy_from_slice(&seq.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = sesame_core::door::tcp_flag::SYN;
    h[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let pseudo: Vec<u8> = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => [&s.octets()[..], &d.octets(), &[0, 6, 0, 20]].concat(),
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            [&s.octets()[..], &d.octets(), &[0, 0, 0, 20, 0, 0, 0, 6]].concat()
        }
        _ => panic!("mixed families"),
    };
    let sum = checksum(&[&pseudo, &h]);
    h[16..18].copy_from_slice(&sum.to_be_bytes());
    h
}

/// A small fixed-seed generator for sweep orders (xorshift64*).
pub struct SweepRng(pub u64);

impl SweepRng {
    /// Shuffles `v` (Fisher–Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let r = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
            v.swap(i, (r % (i as u64 + 1)) as usize);
        }
    }
}

/// Sends `sweeps` random-order TCP SYN sweeps of `ports` from `src` (a
/// client-namespace address) to `dst`, with a raw socket: one SYN per port
/// per sweep, back to back. Bounded by the port count and by `limit`.
pub fn syn_sweeps(
    bed: &Testbed,
    src: IpAddr,
    dst: IpAddr,
    ports: Vec<u16>,
    sweeps: usize,
    seed: u64,
    limit: Duration,
) -> usize {
    bed.run_in(Side::Client, move || {
        use socket2::{Domain, Protocol, Socket, Type};
        let domain = if src.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let sock = Socket::new(domain, Type::RAW, Some(Protocol::TCP)).expect("raw socket");
        sock.bind(&SocketAddr::new(src, 0).into()).unwrap();
        let to = SocketAddr::new(dst, 0).into();
        let mut rng = SweepRng(seed | 1);
        let mut order = ports;
        let end = Instant::now() + limit;
        let mut sent = 0usize;
        for sweep in 0..sweeps {
            rng.shuffle(&mut order);
            for &port in &order {
                let seg = syn_segment(src, dst, 40_000 + (sweep as u16 % 1000), port, sent as u32);
                // A full send buffer is a dropped probe, as on a real wire.
                if sock.send_to(&seg, &to).is_ok() {
                    sent += 1;
                }
            }
            assert!(Instant::now() < end, "sweeps took longer than {limit:?}");
        }
        sent
    })
    .unwrap()
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `sesame keygen KIND FILE`, which must succeed.
pub fn keygen(kind: &str, file: &std::path::Path) {
    let out = Command::new(bin("sesame"))
        .args(["keygen", kind, file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&out, format!("keygen {kind}"));
}

/// `sesame knock ARGS` in the client namespace, within 20 s; must succeed.
pub fn knock_from_client(bed: &Testbed, args: &[&str]) -> Output {
    let mut cmd = bed.command(Side::Client, bin("sesame").to_str().unwrap());
    cmd.arg("knock").args(args);
    let out = sesame_testkit::proc::run_bounded(cmd, Duration::from_secs(20));
    assert_success(&out, format!("sesame knock {args:?}"));
    out
}

/// `sesame knock --config CLIENT ARGS` in the client namespace; must
/// succeed.
pub fn sesame_knock(bed: &Testbed, client_toml: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--config", client_toml.to_str().unwrap()];
    all.extend_from_slice(args);
    knock_from_client(bed, &all)
}

/// A TCP connect to `server:port` from `src` (a client-namespace IPv4
/// address): true if it completes.
pub fn connects_from(bed: &Testbed, src: IpAddr, server: IpAddr, port: u16) -> bool {
    bed.run_in(Side::Client, move || {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.bind(&SocketAddr::new(src, 0).into()).unwrap();
        sock.connect_timeout(
            &SocketAddr::new(server, port).into(),
            Duration::from_millis(300),
        )
        .is_ok()
    })
    .unwrap()
}

/// TCP SYN knocks on `ports` from `src`, a client-namespace IPv4 address.
pub fn knock_from(bed: &Testbed, src: IpAddr, server: IpAddr, ports: &[u16]) {
    let ports = ports.to_vec();
    bed.run_in(Side::Client, move || {
        for port in ports {
            let sock =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            sock.bind(&SocketAddr::new(src, 0).into()).unwrap();
            let _ = sock.connect_timeout(
                &SocketAddr::new(server, port).into(),
                Duration::from_millis(30),
            );
        }
    })
    .unwrap();
}

/// Sends `datagram` from `src` (a client-namespace address) to
/// `server:port`.
pub fn send_from(bed: &Testbed, src: IpAddr, server: IpAddr, port: u16, datagram: Vec<u8>) {
    bed.run_in(Side::Client, move || {
        let s = std::net::UdpSocket::bind(SocketAddr::new(src, 0)).unwrap();
        s.send_to(&datagram, SocketAddr::new(server, port)).unwrap();
    })
    .unwrap();
}

/// The body of `GET /metrics` from `addr` in the server namespace.
pub fn scrape(bed: &Testbed, addr: &'static str) -> String {
    bed.run_in(Side::Server, move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    })
    .unwrap()
}

/// The value of the first series in `/metrics` at `addr` that starts with
/// `series` (0 when absent).
pub fn metric(bed: &Testbed, addr: &'static str, series: &str) -> f64 {
    scrape(bed, addr)
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// `sesame status --json` of a daemon [`start_daemon`] started.
#[allow(dead_code)]
pub fn status_json(daemon: &Daemon) -> serde_json::Value {
    let out = std::process::Command::new(bin("sesame"))
        .args(["status", "--json", "--socket"])
        .arg(&daemon.socket)
        .output()
        .expect("run sesame status");
    assert_success(&out, "sesame status");
    serde_json::from_slice(&out.stdout).expect("status --json is JSON")
}

/// Runs `cmd` with `input` on its stdin; kills it after `limit`.
#[allow(dead_code)] // for the tests and benches that proxy
pub fn run_with_input(mut cmd: Command, input: &[u8], limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let end = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= end {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} still running after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Loses `percent`% of the packets on the link, each way: a random drop
/// where each namespace receives, before anything else (sesamed's observe
/// chain included) sees them. A drop on the sending side would not do:
/// the kernel tells the sender (EPERM), where a lossy link says nothing.
#[allow(dead_code)] // for the tests and benches of lossy links
pub fn lossy_link(bed: &Testbed, percent: u8) {
    let rules = bed.scratch().join("loss.nft");
    std::fs::write(
        &rules,
        format!(
            "table inet loss {{\n  chain in {{\n    type filter hook prerouting priority -400;\n    \
             numgen random mod 100 < {percent} drop\n  }}\n}}\n"
        ),
    )
    .unwrap();
    for side in [Side::Client, Side::Server] {
        let _ = bed
            .command(side, "nft")
            .args(["delete", "table", "inet", "loss"])
            .output();
        let out = bed
            .command(side, "nft")
            .args(["-f", rules.to_str().unwrap()])
            .output()
            .expect("run nft");
        assert_success(&out, "nft -f");
    }
}

/// sesamed with an SPA door (udp/62201) for alice protecting tcp/2222, the echo service,
/// and alice's client config (server `srv`, door `ssh`); `wrong_key` gives
/// the client a key the server does not know.
#[allow(dead_code)] // for the tests and benches of SPA clients
pub fn spa_door_and_client(bed: &mut Testbed, wrong_key: bool) -> (std::path::PathBuf, Daemon) {
    let dir = bed.scratch();
    let key = dir.join("alice.key");
    keygen("spa", &key);
    let client_key = if wrong_key {
        let other = dir.join("mallory.key");
        keygen("spa", &other);
        other
    } else {
        key.clone()
    };
    let config = format!(
        "[daemon]\nstate_dir = \"{}\"\n[door.ssh]\nspa_port = 62201\nopen_for = \"30s\"\n\
         protect = [\"tcp/2222\"]\n[door.ssh.users.alice]\nkey = \"{}\"\n",
        dir.join("state").display(),
        key.display()
    );
    let client = dir.join("client.toml");
    std::fs::write(
        &client,
        format!(
            "[server.srv]\nhost = \"{}\"\n[server.srv.spa.ssh]\nport = 62201\nkey = \"{}\"\n",
            Testbed::addr(Side::Server, false),
            client_key.display()
        ),
    )
    .unwrap();
    let daemon = start_daemon(bed, &config, &[]);
    (client, daemon)
}

/// `sesame proxy srv 2222 --config CONFIG --attempts N [extra…]` in the
/// client namespace (the server and door of [`spa_door_and_client`]).
#[allow(dead_code)] // for the tests and benches that proxy
pub fn proxy_command(bed: &Testbed, config: &Path, attempts: u32, extra: &[&str]) -> Command {
    let mut cmd = bed.command(Side::Client, bin("sesame").to_str().unwrap());
    cmd.args(["proxy", "srv", "2222", "--config"])
        .arg(config)
        .args(["--attempts", &attempts.to_string()])
        .args(extra);
    cmd
}

/// Waits for a TOTP step (of `period` seconds) that began after `started`
/// (earlier ones are refused after a first start: see SECURITY.md), with
/// at least 4 s of it left, then returns door `door` of server `srv`'s
/// sequence as the client computes it (`sesame sequence`), one knock per
/// item (`PORT` or `PORT:udp`).
#[allow(dead_code)] // for the TOTP tests
pub fn fresh_totp_sequence(client: &Path, door: &str, started: u64, period: u64) -> Vec<String> {
    for _ in 0..300 {
        let now = unix_now();
        if now / period > started / period && now % period + 4 <= period {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = Command::new(bin("sesame"))
        .args(["sequence", "--config"])
        .arg(client)
        .args(["srv", door])
        .output()
        .unwrap();
    assert_success(&out, "sesame sequence");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// `sesame status` of a daemon [`start_daemon`] started, as printed.
#[allow(dead_code)]
pub fn status_text(daemon: &Daemon) -> String {
    let out = Command::new(bin("sesame"))
        .args(["status", "--socket"])
        .arg(&daemon.socket)
        .output()
        .unwrap();
    assert_success(&out, "sesame status");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
