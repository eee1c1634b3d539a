//! Knock-to-connect latency, measured end to end in network namespaces.
//!
//! Run as root: `cargo bench -p sesame --bench knock_latency`
//! (`SESAME_BENCH_KNOCKS=N` changes the knock count: 50 to 240, default 200 per family).
//!
//! For each knock, a fresh client source address sends the 3-packet sequence;
//! the clock starts right after the last knock packet is sent, then
//! non-blocking connect attempts are fired (every 25 µs at first, see
//! `sesame_testkit::net::time_to_connect`) until one completes the TCP
//! handshake. Each knock uses its own address, so every measurement starts
//! from a closed door. The same run also measures a baseline: connecting to a
//! door that is already open, i.e. the handshake alone.
//!
//! The server is a gateway (a third namespace, the inner host, behind it):
//! knocks alternate between timing the local service and timing a DNAT
//! forward to the inner host's service (gateway mode), so both figures
//! come from the same run, under the same load.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use sesame::testbed::{Side, Testbed};
use sesame_core::Knock;
use sesame_testkit::net::{bench_samples, latency_line, send_knock, Openings};

#[path = "../tests/support/mod.rs"]
mod support;

const PORT: u16 = 2222;
/// The gateway's DNAT port to the inner host's [`INNER_PORT`].
const FORWARD_PORT: u16 = 2223;
const INNER_PORT: u16 = 22;
const SEQ: [&str; 3] = ["7000", "8000:udp", "9000"];
/// Give up on one sample after this long.
const SAMPLE_LIMIT: Duration = Duration::from_secs(3);

fn source(v6: bool, i: usize) -> IpAddr {
    let i = i as u16;
    if v6 {
        Ipv6Addr::new(0xfd53, 0x5e5a, 0, 0, 0, 0, 1, i + 1).into()
    } else {
        // Same /24 as the server, so no route is needed.
        Ipv4Addr::new(198, 18, 0, 10 + i as u8).into()
    }
}

fn main() {
    let Some(knocks) = bench_samples("SESAME_BENCH_KNOCKS", 200, 50..=240) else {
        return;
    };
    support::ECHO_DAEMON_LOGS.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut bed = Testbed::create_gateway("bench").expect("the benchmark needs root");
    for i in 0..knocks {
        for v6 in [false, true] {
            bed.add_client_address(source(v6, i))
                .expect("a source address");
        }
    }
    let _service = support::Service::start(&bed, PORT).expect("echo service");
    let _inner = support::Service::start_on(&bed, Side::Inner, INNER_PORT).expect("inner echo");
    let (i4, i6) = (
        Testbed::addr(Side::Inner, false),
        Testbed::addr(Side::Inner, true),
    );
    let config = format!(
        "[door.bench]\nsequence = [\"7000\", \"8000:udp\", \"9000\"]\nseq_timeout = \"5s\"\nopen_for = \"60s\"\nprotect = [\"tcp/{PORT}\"]\n\
         forward = [\"tcp/{FORWARD_PORT} -> {i4}:{INNER_PORT}\", \"tcp/{FORWARD_PORT} -> [{i6}]:{INNER_PORT}\"]\n\
         [daemon]\nmax_tracked = 100000\n"
    );
    let daemon = support::start_daemon(&mut bed, &config, &[]);
    let seq: Vec<Knock> = SEQ.iter().map(|s| s.parse().unwrap()).collect();
    println!(
        "knock → connect latency, {knocks} knocks per family, each from a fresh source address"
    );
    for v6 in [false, true] {
        let dst = Testbed::addr(Side::Server, v6);
        let seq = seq.clone();
        let (local, forwarded) = bed
            .run_in(Side::Client, move || {
                // Precise ppoll() wakeups instead of the default 50 µs slack.
                nix::sys::prctl::set_timerslack(1).expect("prctl(PR_SET_TIMERSLACK)");
                let mut local = Openings::default();
                let mut forwarded = Openings::default();
                for i in 0..knocks {
                    let src = source(v6, i);
                    for k in &seq[..seq.len() - 1] {
                        let _ = send_knock(src, dst, *k);
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    let _ = send_knock(src, dst, seq[seq.len() - 1]);
                    // Even knocks time the local door, odd ones the forward.
                    match i % 2 {
                        0 => local.time(src, dst, PORT, Instant::now(), SAMPLE_LIMIT),
                        _ => forwarded.time(src, dst, FORWARD_PORT, Instant::now(), SAMPLE_LIMIT),
                    }
                }
                (local, forwarded)
            })
            .unwrap();
        let fam = if v6 { "IPv6" } else { "IPv4" };
        println!(
            "{}",
            local.report(&format!("{fam} last knock (local door)"))
        );
        println!(
            "{}",
            forwarded.report(&format!("{fam} last knock (DNAT forward)"))
        );
        // The daemon's own share: knock packet read → grant committed.
        let source = if v6 { "source=fd53" } else { "source=198." };
        let inside = support::open_times(&daemon.log, source);
        report_line(&format!("{fam} inside sesamed (read → granted)"), inside, 0);
    }
}

fn report_line(label: &str, samples: Vec<Duration>, failures: usize) {
    println!("{}", latency_line(label, samples, failures));
}
