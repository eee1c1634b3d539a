//! Knock-to-connect latency, measured end to end in network namespaces.
//!
//! Run as root: `cargo bench -p sesame --bench knock_latency`
//! (`SESAME_BENCH_KNOCKS=N` changes the knock count: 50 to 240, default 200 per family).
//!
//! For each knock, a fresh client source address sends the 3-packet sequence;
//! the clock starts right after the last knock packet is sent, then
//! non-blocking connect attempts are fired every 25 µs until one completes the
//! TCP handshake. Each knock uses its own address, so every measurement starts
//! from a closed door. The same run also measures a baseline: connecting to a
//! door that is already open, i.e. the handshake alone.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::time::TimeSpec;
use sesame::testbed::{Side, Testbed};
use sesame_core::Knock;
use socket2::{Domain, SockAddr, Socket, Type};

#[path = "../tests/support/mod.rs"]
mod support;

const PORT: u16 = 2222;
const SEQ: [&str; 3] = ["7000", "8000:udp", "9000"];

fn source(v6: bool, i: usize) -> IpAddr {
    let i = i as u16;
    if v6 {
        Ipv6Addr::new(0xfd53, 0x5e5a, 0, 0, 0, 0, 1, i + 1).into()
    } else {
        // Same /24 as the server, so no route is needed.
        Ipv4Addr::new(198, 18, 0, 10 + i as u8).into()
    }
}

fn knock_from(src: IpAddr, dst: IpAddr, knock: Knock) {
    let domain = if dst.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let target = SockAddr::from(SocketAddr::new(dst, knock.port));
    let local = SockAddr::from(SocketAddr::new(src, 0));
    match knock.proto {
        sesame_core::Proto::Tcp => {
            let s = Socket::new(domain, Type::STREAM, None).unwrap();
            s.bind(&local).unwrap();
            s.set_nonblocking(true).unwrap();
            let _ = s.connect(&target);
        }
        sesame_core::Proto::Udp => {
            let s = Socket::new(domain, Type::DGRAM, None).unwrap();
            s.bind(&local).unwrap();
            s.send_to(&[0], &target).unwrap();
        }
    }
}

/// Fires a connect attempt every 25 µs until one completes; returns the time
/// from `start` to the first established connection. Between attempts the
/// thread sleeps in `ppoll` (timer slack set to 1 ns by the caller).
fn time_to_connect(src: IpAddr, dst: IpAddr, start: Instant) -> Option<Duration> {
    let domain = if dst.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let target = SockAddr::from(SocketAddr::new(dst, PORT));
    let local = SockAddr::from(SocketAddr::new(src, 0));
    let mut attempts: Vec<Socket> = Vec::new();
    let mut next_attempt = Instant::now();
    let limit = start + Duration::from_secs(2);
    while Instant::now() < limit && attempts.len() < 4000 {
        if Instant::now() >= next_attempt {
            let s = Socket::new(domain, Type::STREAM, None).unwrap();
            s.bind(&local).unwrap();
            s.set_nonblocking(true).unwrap();
            let _ = s.connect(&target);
            attempts.push(s);
            next_attempt = Instant::now() + Duration::from_micros(25);
        }
        let mut fds: Vec<PollFd> = attempts
            .iter()
            .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLOUT))
            .collect();
        // Sleep (not spin) until the next attempt is due, so the daemon and
        // the kernel get the CPU; a completed handshake wakes us at once.
        let wait = next_attempt.saturating_duration_since(Instant::now());
        if ppoll(&mut fds, Some(TimeSpec::from_duration(wait)), None).unwrap_or(0) > 0 {
            for (fd, s) in fds.iter().zip(&attempts) {
                if fd.revents().is_some_and(|r| r.contains(PollFlags::POLLOUT))
                    && s.take_error().ok().flatten().is_none()
                {
                    return Some(start.elapsed());
                }
            }
        }
    }
    None
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn report(label: &str, mut samples: Vec<Duration>, failures: usize) {
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{label:<34} n={:<4} fail={failures:<3} median={:>7.1} µs  p99={:>7.1} µs  max={:>7.1} µs",
        samples.len(),
        us(percentile(&samples, 0.5)),
        us(percentile(&samples, 0.99)),
        us(*samples.last().unwrap()),
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would pass nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let knocks: usize = std::env::var("SESAME_BENCH_KNOCKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
        .clamp(50, 240);
    support::ECHO_DAEMON_LOGS.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut bed = support::testbed("bench").expect("the benchmark needs root");
    for i in 0..knocks {
        for v6 in [false, true] {
            let prefix = if v6 { 64 } else { 24 };
            let addr = format!("{}/{prefix}", source(v6, i));
            let mut args = vec!["-n", &bed.client, "addr", "add", &addr, "dev", "sesame1"];
            if v6 {
                args.push("nodad");
            }
            let ok = std::process::Command::new("ip")
                .args(&args)
                .status()
                .unwrap()
                .success();
            assert!(ok, "ip {args:?}");
        }
    }
    let _service = support::Service::start(&bed, PORT);
    let config = format!(
        "[door.bench]\nsequence = [\"7000\", \"8000:udp\", \"9000\"]\nseq_timeout = \"5s\"\nopen_for = \"60s\"\nprotect = [\"tcp/{PORT}\"]\n[daemon]\nmax_tracked = 100000\n"
    );
    let daemon = support::start_daemon(&mut bed, &config, &[]);
    let seq: Vec<Knock> = SEQ.iter().map(|s| s.parse().unwrap()).collect();
    println!(
        "knock → connect latency, {knocks} knocks per family, each from a fresh source address"
    );
    for v6 in [false, true] {
        let dst = Testbed::addr(Side::Server, v6);
        let seq = seq.clone();
        let (knock_samples, base_samples, failures) = bed
            .run_in(Side::Client, move || {
                // Precise ppoll() wakeups instead of the default 50 µs slack.
                nix::sys::prctl::set_timerslack(1).expect("prctl(PR_SET_TIMERSLACK)");
                let mut knock_samples = Vec::new();
                let mut base_samples = Vec::new();
                let mut failures = 0;
                for i in 0..knocks {
                    let src = source(v6, i);
                    for k in &seq[..seq.len() - 1] {
                        knock_from(src, dst, *k);
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    knock_from(src, dst, seq[seq.len() - 1]);
                    let start = Instant::now();
                    match time_to_connect(src, dst, start) {
                        Some(d) => knock_samples.push(d),
                        None => failures += 1,
                    }
                    // Baseline: the door is now open for `src`.
                    if let Some(d) = time_to_connect(src, dst, Instant::now()) {
                        base_samples.push(d);
                    }
                }
                (knock_samples, base_samples, failures)
            })
            .unwrap();
        let fam = if v6 { "IPv6" } else { "IPv4" };
        report(
            &format!("{fam} last knock → connected"),
            knock_samples,
            failures,
        );
        report(&format!("{fam} baseline (already open)"), base_samples, 0);
        // The daemon's own share: knock packet read → grant committed.
        let inside: Vec<Duration> = daemon
            .log
            .dump()
            .lines()
            .filter(|l| {
                l.contains("event=\"open\"")
                    && l.contains(if v6 { "source=fd53" } else { "source=198." })
            })
            .filter_map(|l| {
                l.split("open_us=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .map(Duration::from_micros)
            .collect();
        report(&format!("{fam} inside sesamed (read → granted)"), inside, 0);
    }
}
