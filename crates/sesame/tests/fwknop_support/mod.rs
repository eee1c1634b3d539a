//! Running Debian's fwknop (client `fwknop`, server `fwknopd`) inside the
//! namespace testbed, for the fwknop interop tests (`tests/fwknop.rs`) and
//! the fwknop latency bench (`benches/fwknop_latency.rs`).
//!
//! fwknopd gets everything in a scratch directory: its own `fwknopd.conf`
//! (`PCAP_INTF sesame0`, `FWKNOP_RUN_DIR`, optionally `ENABLE_UDP_SERVER Y`),
//! `access.conf`, digest cache, pid file and run dir, so it never touches
//! `/etc/fwknop` or `/var/run/fwknop`. It runs in the foreground in the
//! server namespace and drives iptables (iptables-nft) there: it creates its
//! chain `FWKNOP_INPUT`, jumped to from position 1 of `INPUT`, and appends an
//! `ACCEPT` rule per grant. Before it starts, the harness appends
//! `INPUT -p tcp --dport PORT -j DROP`, so the protected port is closed until
//! fwknopd's jump (inserted above the drop) accepts a granted source.
//!
//! Every wait is bounded. The processes are children of the [`Testbed`] and
//! die with it, also on panic.

#![allow(dead_code)]

use sesame_testkit::proc::{assert_success, ci};
pub use sesame_testkit::proc::{find_program, poll, run_bounded};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use sesame::testbed::{Side, Testbed};

/// Resolves every program in `progs`; `None` (after printing `skipped: …`)
/// when one is missing outside CI. Under `CI=true` a missing program is a
/// failure.
pub fn programs(progs: &[&str]) -> Option<Vec<PathBuf>> {
    let mut found = Vec::new();
    for p in progs {
        match find_program(p) {
            Some(path) => found.push(path),
            None => {
                let msg = format!(
                    "`{p}` is not installed (apt-get install fwknop-client fwknop-server iptables)"
                );
                if ci() {
                    panic!("CI=true but {msg}");
                }
                eprintln!("skipped: {msg}");
                return None;
            }
        }
    }
    Some(found)
}

#[allow(unused_imports)] // not every test binary uses both
pub use sesame_testkit::fwknop::{random_key_base64, Keys};

/// Captured output lines of a process (stdout and stderr).
pub use sesame_testkit::proc::Lines;

/// Runs `iptables ARGS` (iptables-nft) in the server namespace; panics on
/// failure. Returns stdout.
pub fn iptables(bed: &Testbed, args: &[&str]) -> String {
    let mut cmd = bed.command(Side::Server, "iptables");
    cmd.arg("-w").args(args);
    let out = run_bounded(cmd, Duration::from_secs(10));
    assert_success(&out, format!("iptables {args:?}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How fwknopd receives packets.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Capture {
    /// libpcap sniffing on `sesame0` (the Debian default; no socket).
    Pcap,
    /// `ENABLE_UDP_SERVER Y`: a plain UDP socket on the SPA port.
    UdpServer,
}

impl Capture {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Capture::Pcap => "pcap",
            Capture::UdpServer => "UDP server",
        }
    }
}

/// A running fwknopd in the server namespace.
pub struct Fwknopd {
    /// Its captured stdout and stderr.
    pub log: Lines,
    /// The scratch directory with its files.
    pub dir: PathBuf,
    /// Index of the child in the testbed.
    pub index: usize,
}

/// The fwknopd.conf the harness writes.
pub fn fwknopd_conf(run_dir: &Path, capture: Capture, port: u16) -> String {
    let mut conf = format!(
        "PCAP_INTF sesame0;\nPCAP_FILTER udp port {port};\nUDPSERV_PORT {port};\nFWKNOP_RUN_DIR {};\n",
        run_dir.display()
    );
    if capture == Capture::UdpServer {
        conf.push_str("ENABLE_UDP_SERVER Y;\n");
    }
    conf
}

/// Closes TCP `protect_port` in the server namespace with iptables, then
/// starts fwknopd on `access_conf` (written to `dir`) and waits until it
/// is ready: its main loop (pcap) or its UDP socket (UDP server) is up and
/// its `FWKNOP_INPUT` jump sits above the drop rule. `verbose` adds `-v`.
pub fn start_fwknopd(
    bed: &mut Testbed,
    fwknopd: &Path,
    dir: &Path,
    access_conf: &str,
    capture: Capture,
    protect_port: u16,
    verbose: bool,
) -> Fwknopd {
    let spa_port = 62201;
    iptables(
        bed,
        &[
            "-A",
            "INPUT",
            "-p",
            "tcp",
            "--dport",
            &protect_port.to_string(),
            "-j",
            "DROP",
        ],
    );
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    let conf = dir.join("fwknopd.conf");
    let access = dir.join("access.conf");
    std::fs::write(&conf, fwknopd_conf(&run, capture, spa_port)).unwrap();
    std::fs::write(&access, access_conf).unwrap();
    for f in [&conf, &access] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut cmd = bed.command(Side::Server, fwknopd.to_str().unwrap());
    cmd.arg("-f")
        .arg("-c")
        .arg(&conf)
        .arg("-a")
        .arg(&access)
        .arg("-d")
        .arg(run.join("digest.cache"))
        .arg("-p")
        .arg(run.join("fwknopd.pid"))
        .arg("-r")
        .arg(&run)
        .arg("-i")
        .arg("sesame0");
    if verbose {
        cmd.arg("-v");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let index = bed.spawn(cmd).expect("spawn fwknopd");
    let child = bed.child(index);
    let pid = child.id();
    let log = Lines::default();
    let echo = verbose;
    log.collect(
        child.stdout.take().unwrap(),
        format!("fwknopd[{pid}]"),
        move || echo,
    );
    log.collect(
        child.stderr.take().unwrap(),
        format!("fwknopd[{pid}]"),
        move || echo,
    );
    let ready = match capture {
        Capture::Pcap => log
            .wait_for(
                &["Starting fwknopd main event loop"],
                Duration::from_secs(15),
            )
            .is_some(),
        Capture::UdpServer => {
            log.wait_for(&["Kicking off UDP server"], Duration::from_secs(15))
                .is_some()
                && poll(Duration::from_secs(5), Duration::from_millis(10), || {
                    bed.udp_bound(Side::Server, spa_port)
                })
        }
    };
    if !ready {
        let exited = bed.child(index).try_wait().ok().flatten();
        panic!(
            "fwknopd ({}) did not become ready (exit status {exited:?}):\n{}",
            capture.name(),
            log.dump()
        );
    }
    let rules = iptables(bed, &["-S", "INPUT"]);
    let order: Vec<&str> = rules.lines().filter(|l| l.starts_with("-A ")).collect();
    assert!(
        order.first() == Some(&"-A INPUT -j FWKNOP_INPUT")
            && order
                .iter()
                .any(|l| l.contains(&format!("--dport {protect_port} -j DROP"))),
        "unexpected INPUT chain after fwknopd started:\n{rules}"
    );
    Fwknopd {
        log,
        dir: dir.to_path_buf(),
        index,
    }
}

/// A running `sesamed` in the server namespace (see [`start_sesamed`]).
pub struct Sesamed {
    /// Its captured stderr (the log).
    pub log: Lines,
    /// Index of the child in the testbed.
    pub index: usize,
    /// Its pid (`ip netns exec` execs it in place).
    pub pid: u32,
}

/// Starts `sesamed ARGS` in the server namespace and waits for its
/// `sesamed ready` line.
///
/// The replay cache goes to `state_root` (`--state-dir`), so tests running
/// at the same time (and the host) never share one. Restarting with the
/// same `state_root` keeps the replay cache, as a restart on a real host
/// would.
pub fn start_sesamed(
    bed: &mut Testbed,
    sesamed: &Path,
    state_root: &Path,
    args: &[&str],
    echo: bool,
) -> Sesamed {
    std::fs::create_dir_all(state_root).unwrap();
    let mut cmd = bed.command(Side::Server, sesamed.to_str().unwrap());
    cmd.arg("--state-dir")
        .arg(state_root)
        .arg("--control-socket")
        .arg(state_root.with_extension("sock"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let index = bed.spawn(cmd).expect("spawn sesamed");
    let child = bed.child(index);
    let pid = child.id();
    let log = Lines::default();
    log.collect(
        child.stderr.take().unwrap(),
        format!("sesamed[{pid}]"),
        move || echo,
    );
    if log
        .wait_for(&["sesamed ready"], Duration::from_secs(10))
        .is_none()
    {
        let exited = bed.child(index).try_wait().ok().flatten();
        panic!(
            "sesamed {args:?} did not become ready (exit status {exited:?}):\n{}",
            log.dump()
        );
    }
    Sesamed { log, index, pid }
}

/// Sends `signal` to sesamed and waits (bounded) for it to exit.
pub fn stop_sesamed(bed: &mut Testbed, daemon: &Sesamed, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.pid as i32), signal).unwrap();
    let child = bed.child(daemon.index);
    let exited = poll(Duration::from_secs(10), Duration::from_millis(10), || {
        child.try_wait().unwrap().is_some()
    });
    assert!(exited, "sesamed did not exit after {signal}");
}

/// Runs Debian's `fwknop` client in the client namespace with `args`
/// (after `--no-rc-file --no-save-args`, with `HOME` set to `home` so it
/// never touches the real home directory). Panics if it fails.
pub fn fwknop_client(bed: &Testbed, fwknop: &Path, home: &Path, args: &[&str]) -> Output {
    let mut cmd = bed.command(Side::Client, "env");
    cmd.arg(format!("HOME={}", home.display()))
        .arg(fwknop)
        .args(["--no-rc-file", "--no-save-args"])
        .args(args);
    let out = run_bounded(cmd, Duration::from_secs(20));
    sesame_testkit::proc::assert_success(&out, format!("fwknop {args:?}"));
    out
}
