//! fwknop SPA packet → port reachable, for sesamed and for Debian's fwknopd
//! (pcap and UDP-server capture), measured in one run.
//!
//! Run as root: `cargo bench -p sesame --bench fwknop_latency`
//! (`SESAME_BENCH_FWKNOP_PACKETS=N` sets the packets per implementation: 30
//! to 240, default 100; `SESAME_BENCH_FWKNOP_IMPLS=sesamed,pcap,udp` picks
//! a subset). Needs `fwknopd` and `iptables` (Debian's fwknop-server and
//! iptables packages).
//!
//! Each implementation gets its own fresh namespace pair, the same access
//! stanza (`SOURCE ANY`, `OPEN_PORTS tcp/2222`, base64 Rijndael key,
//! HMAC-SHA256, CBC, `FW_ACCESS_TIMEOUT 120`), the same echo service on TCP
//! 2222 and the same client:
//!
//! - `sesamed --fwknop-access access.conf` (nftables grant sets, NFLOG),
//!   with its replay cache (`--state-dir`) in a directory under the scratch
//!   directory (`std::env::temp_dir()`; sesamed appends one journal
//!   record to it, without fsync, before each grant);
//! - `fwknopd` with its defaults (libpcap on `sesame0`), its own
//!   fwknopd.conf/access.conf/run dir, driving iptables-nft, with
//!   `INPUT -p tcp --dport 2222 -j DROP` below its `FWKNOP_INPUT` jump;
//! - the same with `ENABLE_UDP_SERVER Y` (a UDP socket instead of pcap).
//!
//! Every sample uses a fresh client source address (both daemons keep a
//! grant for the access timeout, and refuse a repeated packet), and a fresh
//! packet made by `sesame`'s fwknop encoder (the format of the fwknop
//! client: 16-digit random value, fresh salt, timestamp = now, asking for
//! the packet's source, `0.0.0.0`). The clock starts right after the
//! datagram is handed to the kernel; non-blocking connect attempts are then
//! fired until one completes the TCP handshake: every 25 µs at first, then
//! every 1/200 of the time elapsed (so the resolution stays within 0.5 %
//! when a daemon takes tens of milliseconds; attempts older than 900 ms are
//! closed before their SYN would be retransmitted). Between attempts the
//! thread sleeps in `ppoll` with a 1 ns timer slack. The same run also
//! measures a baseline per implementation: connecting once the door is open
//! (the handshake alone), and for sesamed its own share (`open_us` of its
//! `open` log lines: packet read → grant committed in the kernel).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use sesame::testbed::{Side, SERVER_V4};
use sesame_testkit::fwknop::Client;
use sesame_testkit::net::{bench_samples, latency_line, Openings};

#[path = "../tests/fwknop_support/mod.rs"]
mod fwknop_support;
#[path = "../tests/support/mod.rs"]
mod support;

use fwknop_support::{Capture, Keys};

const PORT: u16 = 2222;
/// Give up on one sample after this long.
const SAMPLE_LIMIT: Duration = Duration::from_secs(3);

/// The implementations compared.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Impl {
    Sesamed,
    Fwknopd(Capture),
}

impl Impl {
    fn label(self) -> String {
        match self {
            Impl::Sesamed => "sesamed (NFLOG)".into(),
            Impl::Fwknopd(c) => format!("fwknopd ({})", c.name()),
        }
    }
}

/// The i-th sample's source address (same /24 as the server: no route
/// needed).
fn source(i: usize) -> IpAddr {
    Ipv4Addr::new(198, 18, 0, 10 + i as u8).into()
}

/// One implementation: fresh namespaces, the daemon, `n` samples.
fn measure(imp: Impl, n: usize, keys: &Keys, fwknopd: &std::path::Path) {
    let mut bed = support::testbed("fwkbench").expect("the benchmark needs root");
    for i in 0..n {
        bed.add_client_address(source(i)).expect("a source address");
    }
    let dir = std::env::temp_dir().join(format!("{}-fwkbench", bed.server));
    std::fs::create_dir_all(&dir).unwrap();
    let access = keys.stanza("ANY", &format!("tcp/{PORT}"), 120);
    let _service = support::Service::start(&bed, PORT).expect("echo service");
    // Keep the daemons alive until the end of the measurement.
    let mut daemon = None;
    let mut fwknopd_running = None;
    match imp {
        Impl::Sesamed => {
            let path = dir.join("access.conf");
            std::fs::write(&path, &access).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            // Its own replay-cache directory (see start_sesamed).
            daemon = Some(fwknop_support::start_sesamed(
                &mut bed,
                &support::bin("sesamed"),
                &dir.join("var-lib"),
                &["--fwknop-access", path.to_str().unwrap()],
                false,
            ));
        }
        Impl::Fwknopd(capture) => {
            fwknopd_running = Some(fwknop_support::start_fwknopd(
                &mut bed, fwknopd, &dir, &access, capture, PORT, false,
            ));
        }
    }
    let dst = IpAddr::from(SERVER_V4);
    let client = Client::new(keys, PORT);
    let openings = bed
        .run_in(Side::Client, move || {
            nix::sys::prctl::set_timerslack(1).expect("prctl(PR_SET_TIMERSLACK)");
            let mut openings = Openings::default();
            for i in 0..n {
                let src = source(i);
                let start = client.send(src, dst);
                openings.time(src, dst, PORT, start, SAMPLE_LIMIT);
            }
            openings
        })
        .unwrap();
    let failures = openings.failures;
    println!("{}", openings.report(&format!("{}: packet", imp.label())));
    if let Some(d) = &daemon {
        // The daemon's own share: packet read → grant committed.
        let inside = support::open_times(&d.log, "");
        report_line("sesamed: inside (packet read → granted)", inside, 0);
        if failures > 0 {
            eprintln!("sesamed log:\n{}", d.log.dump());
        }
    }
    if let Some(f) = &fwknopd_running {
        if failures > 0 {
            eprintln!("fwknopd log:\n{}", f.log.dump());
        }
    }
    drop(bed);
    std::fs::remove_dir_all(&dir).ok();
}

fn main() {
    let Some(n) = bench_samples("SESAME_BENCH_FWKNOP_PACKETS", 100, 30..=240) else {
        return;
    };
    let progs = fwknop_support::programs(&["fwknopd", "iptables"]).expect(
        "the benchmark needs fwknopd and iptables (apt-get install fwknop-server iptables)",
    );
    let keys = Keys::generate();
    println!(
        "fwknop SPA packet → TCP connect latency, {n} packets per implementation, each from a fresh source address"
    );
    let only = std::env::var("SESAME_BENCH_FWKNOP_IMPLS").unwrap_or_default();
    for (name, imp) in [
        ("sesamed", Impl::Sesamed),
        ("pcap", Impl::Fwknopd(Capture::Pcap)),
        ("udp", Impl::Fwknopd(Capture::UdpServer)),
    ] {
        if only.is_empty() || only.split(',').any(|o| o.trim() == name) {
            measure(imp, n, &keys, &progs[0]);
        }
    }
}

fn report_line(label: &str, samples: Vec<Duration>, failures: usize) {
    println!("{}", latency_line(label, samples, failures));
}
