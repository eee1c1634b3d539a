//! The client's and the protected service's side of a namespace test or
//! benchmark: one knock packet, a timed connect, an echo service, and
//! latency figures. Call these from inside the right namespace (see
//! [`crate::testbed::Testbed::run_in`]).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{poll, ppoll, PollFd, PollFlags, PollTimeout};
use nix::sys::time::TimeSpec;
use sesame_core::{Knock, Proto};
use socket2::{Domain, SockAddr, Socket, Type};

use crate::testbed::{Side, Testbed};

fn domain(a: IpAddr) -> Domain {
    if a.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    }
}

/// Sends one knock from `src` to `dst` without waiting: a TCP SYN (a
/// non-blocking connect) or a one-byte UDP datagram.
pub fn send_knock(src: IpAddr, dst: IpAddr, knock: Knock) -> std::io::Result<()> {
    let target = SockAddr::from(SocketAddr::new(dst, knock.port));
    let local = SockAddr::from(SocketAddr::new(src, 0));
    let kind = match knock.proto {
        Proto::Tcp => Type::STREAM,
        Proto::Udp => Type::DGRAM,
    };
    let s = Socket::new(domain(dst), kind, None)?;
    s.bind(&local)?;
    match knock.proto {
        Proto::Tcp => {
            s.set_nonblocking(true)?;
            // In progress (EINPROGRESS) is the point: the SYN is out.
            let _ = s.connect(&target);
        }
        Proto::Udp => {
            s.send_to(&[0], &target)?;
        }
    }
    Ok(())
}

/// Fires non-blocking connect attempts from `src` to `dst:port` until one
/// completes the TCP handshake or `limit` passes; returns the time from
/// `start` to the first established connection.
///
/// An attempt every 25 µs at first, then every 1/200 of the time elapsed
/// (the resolution stays within 0.5 % when a daemon takes tens of
/// milliseconds); attempts older than 900 ms are closed before their SYN
/// would be retransmitted. That keeps the prober cheap (at most a few
/// hundred sockets polled), so a slow daemon does not make the prober eat
/// the CPU a flood generator needs. Set the thread's timer slack to 1 ns
/// for microsecond figures.
pub fn time_to_connect(
    src: IpAddr,
    dst: IpAddr,
    port: u16,
    start: Instant,
    limit: Duration,
) -> Option<Duration> {
    let target = SockAddr::from(SocketAddr::new(dst, port));
    let local = SockAddr::from(SocketAddr::new(src, 0));
    let mut attempts: VecDeque<(Instant, Socket)> = VecDeque::new();
    let mut next_attempt = Instant::now();
    let end = start + limit;
    // Bounded in time (`end`) and in iterations.
    for _ in 0..1_000_000 {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if now >= next_attempt {
            let s = Socket::new(domain(dst), Type::STREAM, None).ok()?;
            s.bind(&local).ok()?;
            s.set_nonblocking(true).ok()?;
            let _ = s.connect(&target);
            attempts.push_back((now, s));
            let interval = now.saturating_duration_since(start) / 200;
            next_attempt = now + interval.max(Duration::from_micros(25));
            while attempts
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_millis(900))
            {
                attempts.pop_front();
            }
        }
        let mut fds: Vec<PollFd> = attempts
            .iter()
            .map(|(_, s)| PollFd::new(s.as_fd(), PollFlags::POLLOUT))
            .collect();
        let wait = next_attempt
            .min(end)
            .saturating_duration_since(Instant::now());
        if ppoll(&mut fds, Some(TimeSpec::from_duration(wait)), None).unwrap_or(0) > 0 {
            for (fd, (_, s)) in fds.iter().zip(&attempts) {
                if fd.revents().is_some_and(|r| r.contains(PollFlags::POLLOUT))
                    && s.take_error().ok().flatten().is_none()
                {
                    let took = start.elapsed();
                    // Reset, not FIN: the teardown of every attempt (both
                    // ends) then costs the next opening nothing.
                    for (_, s) in &attempts {
                        let _ = s.set_linger(Some(Duration::ZERO));
                    }
                    return Some(took);
                }
            }
        }
    }
    None
}

/// The samples of a latency run: the time to connect after the opening
/// packet, a baseline connect to the door already open (the handshake
/// alone), and the openings that never connected.
#[derive(Debug, Default, Clone)]
pub struct Openings {
    /// Opening packet sent → connected.
    pub opened: Vec<Duration>,
    /// Connected to the door already open.
    pub baseline: Vec<Duration>,
    /// Openings that did not connect within the limit.
    pub failures: usize,
}

impl Openings {
    /// Times one opening from `start` (right after its last packet left),
    /// then a baseline connect.
    pub fn time(&mut self, src: IpAddr, dst: IpAddr, port: u16, start: Instant, limit: Duration) {
        match time_to_connect(src, dst, port, start, limit) {
            Some(d) => self.opened.push(d),
            None => self.failures += 1,
        }
        if let Some(d) = time_to_connect(src, dst, port, Instant::now(), limit) {
            self.baseline.push(d);
        }
    }

    /// Two lines: the openings as `label`, and the baseline.
    pub fn report(self, label: &str) -> String {
        format!(
            "{}\n{}",
            latency_line(&format!("{label} → connected"), self.opened, self.failures),
            latency_line(
                &format!("{label}: baseline (already open)"),
                self.baseline,
                0
            )
        )
    }
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Some(sorted[idx.min(sorted.len() - 1)])
}

/// One line of latency figures: count, failures, median, p99 and maximum.
pub fn latency_line(label: &str, mut samples: Vec<Duration>, failures: usize) -> String {
    samples.sort();
    let us = |p: f64| percentile(&samples, p).map_or(f64::NAN, |d| d.as_secs_f64() * 1e6);
    if samples.is_empty() {
        return format!("{label:<46} n=0    fail={failures}");
    }
    format!(
        "{label:<46} n={:<4} fail={failures:<3} median={:>9.1} µs  p99={:>9.1} µs  max={:>9.1} µs",
        samples.len(),
        us(0.5),
        us(0.99),
        us(1.0),
    )
}

/// The sample count of a benchmark, or `None` when it should not run.
///
/// `cargo bench` passes `--bench`; `cargo test --benches` passes nothing,
/// and a namespace benchmark must not run there. The count comes from the
/// environment variable `var` (default `default`), held within `range`.
pub fn bench_samples(
    var: &str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Option<usize> {
    if !std::env::args().any(|a| a == "--bench") {
        return None;
    }
    let asked = std::env::var(var).ok().and_then(|v| v.parse().ok());
    Some(asked.unwrap_or(default).clamp(*range.start(), *range.end()))
}

/// A dual-stack TCP echo service in the server namespace, stopped on drop.
///
/// It must stay off the measured path of a benchmark (the kernel completes
/// the handshake before `accept`): one thread blocks in `poll` and handles
/// each accept, echo and close as it comes, a few µs each. A thread per
/// connection, or an `accept` polled every few milliseconds, put bursts of
/// work inside timed windows.
pub struct EchoService {
    stop: Arc<AtomicBool>,
}

impl EchoService {
    /// Listens on `[::]:port` (v4 and v6) in the server namespace; serves
    /// for at most 30 minutes.
    pub fn start(bed: &Testbed, port: u16) -> std::io::Result<EchoService> {
        EchoService::start_on(bed, Side::Server, port)
    }

    /// The same in `side`'s namespace (the inner host of a gateway bed).
    pub fn start_on(bed: &Testbed, side: Side, port: u16) -> std::io::Result<EchoService> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let (tx, rx) = std::sync::mpsc::channel();
        bed.spawn_in(side, move || {
            let _ = nix::sys::prctl::set_name(c"echo-service");
            let listener = match TcpListener::bind(("::", port)) {
                Ok(l) if l.set_nonblocking(true).is_ok() => l,
                Ok(_) => return,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(Ok(()));
            serve(&listener, &flag, Instant::now() + Duration::from_secs(1800));
        })
        .map_err(std::io::Error::other)?;
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(EchoService { stop }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::Error::other("the echo service did not start")),
        }
    }
}

fn serve(listener: &TcpListener, stop: &AtomicBool, end: Instant) {
    let mut conns: Vec<TcpStream> = Vec::new();
    let mut buf = [0u8; 256];
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        let mut fds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        fds.extend(
            conns
                .iter()
                .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN)),
        );
        let ready = poll(&mut fds, PollTimeout::from(100u16)).unwrap_or(0);
        let hit: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready == 0 {
            continue;
        }
        let mut i = 0;
        conns.retain_mut(|s| {
            i += 1;
            if !hit[i] {
                return true;
            }
            match s.read(&mut buf) {
                Ok(0) => false,
                Ok(n) => s.write_all(&buf[..n]).is_ok(),
                Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
            }
        });
        // Bounded: the accept queue is finite.
        while let Ok((s, _)) = listener.accept() {
            if s.set_nonblocking(true).is_ok() && conns.len() < 4096 {
                conns.push(s);
            }
        }
    }
}

impl Drop for EchoService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The nftables gate the knockd peers' commands open: TCP `port` is dropped
/// except from the addresses in sets `allowed4`/`allowed6` of table
/// `inet gate` (`nft add element inet gate allowed4 { %IP% }`), established
/// flows pass. Installed before knockd starts.
pub fn knockd_gate(port: u16) -> String {
    format!(
        "table inet gate {{
	set allowed4 {{ type ipv4_addr; }}
	set allowed6 {{ type ipv6_addr; }}
	chain input {{
		type filter hook input priority 0; policy accept;
		ct state established,related accept
		tcp dport {port} ip saddr @allowed4 accept
		tcp dport {port} ip6 saddr @allowed6 accept
		tcp dport {port} drop
	}}
}}
"
    )
}
