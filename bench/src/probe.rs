//! The legitimate client and the protected service: knocks from a given
//! source address, then non-blocking connect attempts (ppoll with 1 ns timer
//! slack) until one completes the TCP handshake; see [`time_to_connect`].

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{poll, ppoll, PollFd, PollFlags, PollTimeout};
use nix::sys::time::TimeSpec;
use sesame::testbed::{Side, Testbed};
use socket2::{Domain, SockAddr, Socket, Type};

/// One knock: port and protocol.
#[derive(Copy, Clone, Debug)]
pub struct Knock {
    /// Port.
    pub port: u16,
    /// UDP datagram (true) or TCP SYN (false).
    pub udp: bool,
}

fn domain(a: IpAddr) -> Domain {
    if a.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    }
}

/// Sends one knock from `src` (an address of the client namespace).
pub fn knock_from(src: IpAddr, dst: IpAddr, knock: Knock) {
    let target = SockAddr::from(SocketAddr::new(dst, knock.port));
    let local = SockAddr::from(SocketAddr::new(src, 0));
    if knock.udp {
        let s = Socket::new(domain(dst), Type::DGRAM, None).unwrap();
        s.bind(&local).unwrap();
        let _ = s.send_to(&[0], &target);
    } else {
        let s = Socket::new(domain(dst), Type::STREAM, None).unwrap();
        s.bind(&local).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&target);
    }
}

/// Knocks `seq` from `src` with `gap` between packets; returns the instant
/// right after the last knock was sent.
pub fn knock_sequence(src: IpAddr, dst: IpAddr, seq: &[Knock], gap: Duration) -> Instant {
    for k in &seq[..seq.len() - 1] {
        knock_from(src, dst, *k);
        std::thread::sleep(gap);
    }
    knock_from(src, dst, seq[seq.len() - 1]);
    Instant::now()
}

/// Fires non-blocking connect attempts until one completes the TCP
/// handshake or `limit` passes; returns the time from `start` to the first
/// established connection.
///
/// The method of `crates/sesame/benches/fwknop_latency.rs`: an attempt every
/// 25 µs at first, then every 1/200 of the time elapsed (the resolution
/// stays within 0.5 % when a daemon takes tens of milliseconds), attempts
/// older than 900 ms closed before their SYN would be retransmitted. That
/// keeps the prober cheap (at most a few hundred sockets polled), so a slow
/// daemon does not make the prober eat the CPU the flood generator needs.
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

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Some(sorted[idx])
}

/// A dual-stack TCP echo service in the server namespace, stopped on drop.
///
/// It is not on the measured path (the kernel completes the handshake before
/// `accept`), so it must stay out of the way of what is: one thread that
/// blocks in `poll` and handles each accept and close as it comes (a few µs
/// each). It used to poll `accept` every 2 ms and spawn a thread per
/// connection: every 2 ms a burst of thread spawns and exits took 0.3–1.3 ms
/// of the client's or the daemon's CPU, and back-to-back SPA openings
/// (~200 µs each, most of it timed) often had a burst inside the timed
/// window. That was the ~1 ms tail of sesamed-spa's p99.
pub struct Service {
    stop: Arc<AtomicBool>,
}

impl Service {
    /// Listens on `[::]:port` (v4 and v6) in the server namespace.
    pub fn start(bed: &Testbed, port: u16) -> Service {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let (tx, rx) = std::sync::mpsc::channel();
        bed.spawn_in(Side::Server, move || {
            let _ = nix::sys::prctl::set_name(c"bench-service");
            let listener = TcpListener::bind(("::", port)).expect("bind service");
            listener.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            let end = Instant::now() + Duration::from_secs(1800);
            let mut conns: Vec<TcpStream> = Vec::new();
            let mut buf = [0u8; 256];
            while !flag.load(Ordering::Relaxed) && Instant::now() < end {
                // Blocks until something happens (no periodic batch): each
                // accept or close is done when it comes, a few µs each.
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
        })
        .unwrap();
        rx.recv_timeout(Duration::from_secs(5))
            .expect("service did not start");
        Service { stop }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
