//! Raw-socket packet generator: crafted TCP SYN / UDP packets sent in
//! `sendmmsg` batches.
//!
//! Safety rails (checked on every call to [`flood`]):
//! - the destination must be the testbed's server address (198.18.0.1 or
//!   fd53:5e5a::1), nothing else;
//! - the calling thread must NOT be in the host's network namespace (it is
//!   compared with the process's main thread's), so packets only ever cross the veth pair;
//! - every flood is bounded both in packet count and in time.
//!
//! IPv4 uses `SOCK_RAW`/`IPPROTO_RAW` (which implies `IP_HDRINCL`, also set
//! explicitly); IPv6 uses `SOCK_RAW`/`IPPROTO_RAW`, which on Linux means the
//! caller supplies the IPv6 header. Spoofed sources are one-way: nothing
//! routes back to them, which is the point.
//!
//! IPv6 needs [`pin_neighbours`] first: with a spoofed source the kernel's
//! neighbour solicitation for the server never completes (the answer goes to
//! the spoofed address), so nearly every packet would wait in, and fall out
//! of, the unresolved-neighbour queue. A permanent neighbour entry for the
//! server's address on the client side removes the lookup (IPv4 gets one
//! too, for symmetry). The raw sockets are bound to the client's own
//! address so that the kernel does no source address selection per packet
//! (the packets keep their own spoofed sources).
//!
//! Optional pacing ([`Spec::pps`]) holds a fixed offered rate, so two
//! daemons can be compared at the same load; sequential sources
//! ([`Spec::sequential_from`]) make every packet come from a different
//! address.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sesame::testbed::{CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// What to send.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// (a) SYNs from random spoofed sources to random non-knock ports.
    NonKnock,
    /// (b) one source sweeping SYNs over every port 1..=65535, repeatedly.
    Sweep,
    /// (c) SYNs (or UDP, if the first knock is UDP) from random spoofed
    /// sources to the first knock port.
    SpoofFirst,
    /// (d) random spoofed sources, rotating over every knock port.
    SpoofAll,
    /// (e) random UDP payloads (16..=400 bytes) from random spoofed sources
    /// to the SPA port.
    SpaUdp,
    /// (f) Sesame public-key SPA datagrams from one source: a genuine
    /// packet's key id and header, its ciphertext changed per packet, and
    /// `mac1` valid (the sender knows the server's public key), so each
    /// would cost an X25519.
    PkFlood,
}

impl Mode {
    /// Parses the letter used in the issue and on the command line.
    pub fn from_letter(s: &str) -> Option<Mode> {
        Some(match s {
            "a" => Mode::NonKnock,
            "b" => Mode::Sweep,
            "c" => Mode::SpoofFirst,
            "d" => Mode::SpoofAll,
            "e" => Mode::SpaUdp,
            "f" => Mode::PkFlood,
            _ => return None,
        })
    }

    /// The letter.
    pub fn letter(self) -> &'static str {
        match self {
            Mode::NonKnock => "a",
            Mode::Sweep => "b",
            Mode::SpoofFirst => "c",
            Mode::SpoofAll => "d",
            Mode::SpaUdp => "e",
            Mode::PkFlood => "f",
        }
    }

    /// A short description for tables.
    pub fn describe(self) -> &'static str {
        match self {
            Mode::NonKnock => "SYN to non-knock ports, spoofed sources",
            Mode::Sweep => "same-source SYN sweep over all ports",
            Mode::SpoofFirst => "spoofed sources to the first knock port",
            Mode::SpoofAll => "spoofed sources to every knock port",
            Mode::SpaUdp => "random UDP payloads to the SPA port",
            Mode::PkFlood => "public-key SPA with a valid key id and mac1, one source",
        }
    }
}

/// A knock port and whether it is UDP.
#[derive(Copy, Clone, Debug)]
pub struct Port {
    /// Port number.
    pub port: u16,
    /// UDP (true) or TCP SYN (false).
    pub udp: bool,
}

/// A bounded flood.
#[derive(Clone, Debug)]
pub struct Spec {
    /// What to send.
    pub mode: Mode,
    /// Destination: must be the testbed server address.
    pub dst: IpAddr,
    /// The door's knock sequence (modes c, d).
    pub knocks: Vec<Port>,
    /// Ports mode (a) must never hit (knock ports, protected ports).
    pub avoid: Vec<u16>,
    /// SPA port (mode e).
    pub spa_port: u16,
    /// The single source of mode (b); must be in the destination's family.
    pub sweep_src: IpAddr,
    /// Hard bound on packets.
    pub max_packets: u64,
    /// Hard bound on time.
    pub duration: Duration,
    /// Packets per `sendmmsg` call.
    pub batch: usize,
    /// Mode (f): a genuine packet to vary, and the `mac1` key to re-MAC it.
    pub pk_template: Option<(Vec<u8>, [u8; 32])>,
    /// Seed for the xorshift generator (0: from the clock).
    pub seed: u64,
    /// Offered rate in packets per second; 0 = as fast as possible. Paced
    /// per `sendmmsg` batch against a deadline (batches shrink so there are
    /// at least ~2000 per second).
    pub pps: u64,
    /// Spoofed sources (modes a, c, d, e): `None` = random; `Some(first)` =
    /// sequential, the n-th packet from source number `first + n` (IPv4:
    /// 10.0.0.1 + i within 10.0.0.0/8; IPv6: fd00:bad::1 + i), so
    /// `max_packets` ≤ 2^24 − 1 packets come from that many distinct
    /// addresses.
    pub sequential_from: Option<u64>,
}

/// What a flood achieved.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Packets the kernel accepted from `sendmmsg`.
    pub sent: u64,
    /// `sendmmsg` calls that failed (e.g. ENOBUFS); those packets are not in
    /// `sent`.
    pub errors: u64,
    /// Wall time of the send loop.
    pub elapsed: Duration,
}

impl Report {
    /// Offered packets per second.
    pub fn pps(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Adds another thread's report (sums packets, keeps the longest time).
    pub fn merge(&mut self, other: &Report) {
        self.sent += other.sent;
        self.errors += other.errors;
        self.elapsed = self.elapsed.max(other.elapsed);
    }
}

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let s = if seed == 0 {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64;
            t ^ ((std::process::id() as u64) << 32) ^ 0x9e37_79b9_7f4a_7c15
        } else {
            seed
        };
        Rng(s | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [last] = chunks.remainder() {
        acc += (*last as u32) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Pins the server's IPv4 and IPv6 addresses to its MAC address in the
/// client namespace (`ip neigh replace … nud permanent`); see the module
/// documentation for why IPv6 floods need it.
pub fn pin_neighbours(bed: &sesame::testbed::Testbed) -> io::Result<()> {
    let out = std::process::Command::new("ip")
        .args(["-n", &bed.server, "-o", "link", "show", "dev", "sesame0"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mac = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .ok_or_else(|| io::Error::other(format!("no MAC address for sesame0 in {text:?}")))?
        .to_string();
    for addr in [IpAddr::from(SERVER_V4), IpAddr::from(SERVER_V6)] {
        let addr = addr.to_string();
        let args = [
            "-n",
            &bed.client,
            "neigh",
            "replace",
            &addr,
            "lladdr",
            &mac,
            "dev",
            "sesame1",
            "nud",
            "permanent",
        ];
        let st = std::process::Command::new("ip").args(args).status()?;
        if !st.success() {
            return Err(io::Error::other(format!("ip {args:?} failed")));
        }
    }
    Ok(())
}

/// True if the calling thread is in the process's own (host) network
/// namespace. The testbed moves single threads with `setns`; the main thread
/// never leaves the namespace the benchmark was started in.
fn in_host_netns() -> io::Result<bool> {
    let me = std::fs::read_link("/proc/thread-self/ns/net")?;
    let host = std::fs::read_link("/proc/self/ns/net")?;
    Ok(me == host)
}

const IP4_HDR: usize = 20;
const IP6_HDR: usize = 40;
const BUF: usize = 512;

/// Writes one packet into `buf`; returns its length.
fn craft(spec: &Spec, rng: &mut Rng, counter: u64, buf: &mut [u8; BUF]) -> usize {
    let v6 = spec.dst.is_ipv6();
    // Source address.
    let src: IpAddr = match spec.mode {
        Mode::Sweep | Mode::PkFlood => spec.sweep_src,
        _ if spec.sequential_from.is_some() => {
            let i = spec.sequential_from.unwrap_or(0).wrapping_add(counter);
            if v6 {
                let i = i + 1;
                Ipv6Addr::new(
                    0xfd00,
                    0x0bad,
                    0,
                    0,
                    0,
                    (i >> 32) as u16,
                    (i >> 16) as u16,
                    i as u16,
                )
                .into()
            } else {
                // 10.0.0.1 … 10.255.255.255, wrapping after 2^24 − 1.
                Ipv4Addr::from(0x0a00_0000 | (i % 0x00ff_ffff + 1) as u32).into()
            }
        }
        _ => {
            let r = rng.next();
            if v6 {
                // fd00:bad::/32 + random: never one of the testbed's addresses.
                let lo = r;
                Ipv6Addr::new(
                    0xfd00,
                    0x0bad,
                    (r >> 48) as u16 & 0x0fff,
                    0,
                    (lo >> 48) as u16,
                    (lo >> 32) as u16,
                    (lo >> 16) as u16,
                    lo as u16 | 1,
                )
                .into()
            } else {
                // 10.0.0.0/8, random 24 bits: 16M distinct sources.
                Ipv4Addr::from(0x0a00_0000 | (r as u32 & 0x00ff_ffff)).into()
            }
        }
    };
    // Destination port and protocol.
    let (dport, udp) = match spec.mode {
        Mode::NonKnock => loop {
            let p = (rng.next() % 65535) as u16 + 1;
            if !spec.avoid.contains(&p) {
                break (p, false);
            }
        },
        Mode::Sweep => ((counter % 65535) as u16 + 1, false),
        Mode::SpoofFirst => (spec.knocks[0].port, spec.knocks[0].udp),
        Mode::SpoofAll => {
            let k = spec.knocks[(counter % spec.knocks.len() as u64) as usize];
            (k.port, k.udp)
        }
        Mode::SpaUdp | Mode::PkFlood => (spec.spa_port, true),
    };
    let r = rng.next();
    let sport = 1024 + (r as u16 % 64000);
    let l4_off = if v6 { IP6_HDR } else { IP4_HDR };
    let l4_len = if udp {
        let payload = match (spec.mode, &spec.pk_template) {
            (Mode::SpaUdp, _) => 16 + (r >> 16) as usize % 385,
            (Mode::PkFlood, Some((t, _))) => t.len(),
            _ => 1,
        };
        8 + payload
    } else {
        20
    };
    let total = l4_off + l4_len;
    let b = &mut buf[..total];
    // L4 header.
    {
        let l4 = &mut b[l4_off..];
        l4[0..2].copy_from_slice(&sport.to_be_bytes());
        l4[2..4].copy_from_slice(&dport.to_be_bytes());
        if udp {
            l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            l4[6..8].copy_from_slice(&[0, 0]);
            if let (Mode::PkFlood, Some((t, key))) = (spec.mode, &spec.pk_template) {
                let body = &mut l4[8..8 + t.len()];
                body.copy_from_slice(t);
                body[100..108].copy_from_slice(&counter.to_be_bytes());
                let mac_at = sesame_core::spa::PUBLIC_PACKET_LEN;
                let tag = sesame_core::spa::mac1(key, &body[..mac_at]);
                body[mac_at..].copy_from_slice(&tag);
            } else {
                // Random payload.
                let mut i = 8;
                while i < l4_len {
                    let w = rng.next().to_le_bytes();
                    let n = (l4_len - i).min(8);
                    l4[i..i + n].copy_from_slice(&w[..n]);
                    i += n;
                }
            }
        } else {
            l4[4..8].copy_from_slice(&((r >> 32) as u32).to_be_bytes()); // seq
            l4[8..12].copy_from_slice(&[0; 4]); // ack
            l4[12] = 0x50; // data offset 5
            l4[13] = 0x02; // SYN
            l4[14..16].copy_from_slice(&64240u16.to_be_bytes());
            l4[16..20].copy_from_slice(&[0; 4]); // checksum, urgent
        }
    }
    let proto: u8 = if udp { 17 } else { 6 };
    // IP header and the L4 checksum (pseudo-header).
    let csum_at = l4_off + if udp { 6 } else { 16 };
    match (src, spec.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let ip = &mut b[..IP4_HDR];
            ip[0] = 0x45;
            ip[1] = 0;
            ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&((r >> 48) as u16).to_be_bytes());
            ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
            ip[8] = 64;
            ip[9] = proto;
            ip[10..12].copy_from_slice(&[0, 0]);
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let c = fold(sum16(ip, 0));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            let mut acc = sum16(&s.octets(), 0);
            acc = sum16(&d.octets(), acc);
            acc += proto as u32 + l4_len as u32;
            acc = sum16(&b[l4_off..], acc);
            let mut c = fold(acc);
            if udp && c == 0 {
                c = 0xffff;
            }
            b[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let ip = &mut b[..IP6_HDR];
            ip[0..4].copy_from_slice(&0x6000_0000u32.to_be_bytes());
            ip[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            ip[6] = proto;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            let mut acc = sum16(&s.octets(), 0);
            acc = sum16(&d.octets(), acc);
            acc += l4_len as u32 + proto as u32;
            acc = sum16(&b[l4_off..], acc);
            let mut c = fold(acc);
            if udp && c == 0 {
                c = 0xffff;
            }
            b[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
        }
        _ => unreachable!("source and destination families differ (checked in flood)"),
    }
    total
}

/// Sends `spec` until its packet or time bound, or until `stop` is set.
/// Call it from a thread inside the client namespace (e.g. through
/// `Testbed::spawn_in`).
pub fn flood(spec: &Spec, stop: &AtomicBool) -> io::Result<Report> {
    let allowed = spec.dst == IpAddr::V4(SERVER_V4) || spec.dst == IpAddr::V6(SERVER_V6);
    if !allowed {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "refusing to send to {}: only the testbed server address",
                spec.dst
            ),
        ));
    }
    if in_host_netns()? {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "refusing to flood from the host network namespace; run inside the testbed",
        ));
    }
    if spec.mode == Mode::Sweep && spec.sweep_src.is_ipv6() != spec.dst.is_ipv6() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "sweep source family",
        ));
    }
    if matches!(spec.mode, Mode::SpoofFirst | Mode::SpoofAll) && spec.knocks.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no knock ports",
        ));
    }
    let v6 = spec.dst.is_ipv6();
    let sock = if v6 {
        let s = Socket::new(
            Domain::IPV6,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )?;
        // Bound to the client's own address, the kernel skips source
        // address selection (RFC 6724 over every address of the interface,
        // per packet: with the bench's ~120 legitimate IPv6 sources that
        // cut the rate to ~20 kpps). The packet keeps its own (spoofed)
        // source: the header is ours.
        s.bind(&SockAddr::from(SocketAddr::new(CLIENT_V6.into(), 0)))?;
        s
    } else {
        let s = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )?;
        s.set_header_included_v4(true)?;
        // As for IPv6: no source address selection per packet.
        s.bind(&SockAddr::from(SocketAddr::new(CLIENT_V4.into(), 0)))?;
        s
    };
    let _ = sock.set_send_buffer_size(4 << 20);
    let fd = sock.as_raw_fd();

    // Destination socket address shared by every message (port 0: raw).
    let dest = SockAddr::from(SocketAddr::new(spec.dst, 0));
    let name = dest.as_ptr() as *mut libc::c_void;
    let namelen = dest.len();

    let mut batch = spec.batch.clamp(1, 1024);
    if spec.pps > 0 {
        // Wake-ups on time: 1 ns timer slack for this (generator) thread.
        let _ = nix::sys::prctl::set_timerslack(1);
        batch = batch.min((spec.pps / 2000).max(1) as usize);
    }
    let mut bufs: Vec<[u8; BUF]> = vec![[0u8; BUF]; batch];
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr() as *mut libc::c_void,
            iov_len: 0,
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = (0..batch)
        // SAFETY: mmsghdr is a plain C struct of integers and raw pointers
        // (plus padding); all zeroes is a valid value of it (null pointers,
        // zero lengths). Every pointer is filled in below before use.
        .map(|_| unsafe { std::mem::zeroed::<libc::mmsghdr>() })
        .collect();
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_name = name;
        m.msg_hdr.msg_namelen = namelen;
        m.msg_hdr.msg_iov = iov as *mut libc::iovec;
        m.msg_hdr.msg_iovlen = 1;
    }

    let mut rng = Rng::new(spec.seed);
    let mut report = Report::default();
    let mut counter: u64 = 0;
    let start = Instant::now();
    let end = start + spec.duration;
    // Bounded by max_packets (counter grows by ≥ 1 per iteration unless a
    // send fails) and by `end`, checked on every iteration.
    while counter < spec.max_packets && !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if spec.pps > 0 {
            // Pacing: the batch about to go out is due when the packets
            // crafted so far would have been sent at exactly `pps`.
            let due = start + Duration::from_secs_f64(counter as f64 / spec.pps as f64);
            if due > now {
                std::thread::sleep((due - now).min(end - now));
                continue;
            }
        }
        let n = batch.min((spec.max_packets - counter) as usize);
        for i in 0..n {
            let len = craft(spec, &mut rng, counter, &mut bufs[i]);
            counter += 1;
            iovs[i].iov_len = len;
        }
        // Send the batch; a partial send is resumed where it stopped, so
        // with sequential sources every crafted source goes out (bounded:
        // at most 64 attempts per batch, and never past `end`).
        let mut off = 0usize;
        let mut attempts = 0;
        while off < n && attempts < 64 && Instant::now() < end {
            attempts += 1;
            let rest = &mut msgs[off..n];
            // SAFETY: `fd` is an open socket owned by `sock`; `rest` are
            // initialised mmsghdrs whose iovecs point into `bufs` (lengths
            // within each buffer) and whose names point at `dest`; all of
            // them outlive the call, which only reads them (and writes
            // msg_len inside `rest`).
            let r = unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as libc::c_uint, 0) };
            if r < 0 {
                let e = io::Error::last_os_error();
                report.errors += 1;
                match e.raw_os_error() {
                    Some(libc::ENOBUFS) | Some(libc::EAGAIN) | Some(libc::EINTR) => {
                        std::thread::yield_now();
                    }
                    _ => return Err(e),
                }
            } else {
                off += r as usize;
                report.sent += r as u64;
            }
        }
    }
    report.elapsed = start.elapsed();
    Ok(report)
}
