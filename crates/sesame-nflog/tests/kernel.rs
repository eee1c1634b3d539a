//! Tests against the real kernel: each test moves its own thread into a fresh
//! network namespace, installs a tiny nftables ruleset that logs knock packets
//! to an NFLOG group, sends traffic over loopback and reads it back.
//!
//! They need root (CAP_NET_ADMIN/CAP_SYS_ADMIN), `ip` and `nft`. Without them
//! they print "skipped: needs root" and pass, unless `CI=true`, where they fail.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use sesame_nflog::{Batching, Config, NflogError, NflogSocket, Received};
use sesame_testkit::testbed::enter_private_netns;

const UDP_PORT: u16 = 7001;
const TCP_PORT: u16 = 7002;
/// Not in the ruleset: must never be logged.
const OTHER_PORT: u16 = 7009;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const NF_INET_LOCAL_IN: u8 = 1;
const LO_IFINDEX: u32 = 1;

/// Install the test ruleset logging to `group` (in this thread's namespace).
fn install_ruleset(group: u16) {
    let rules = format!(
        "table inet sesame_test {{\n\
           chain input {{\n\
             type filter hook input priority 0; policy accept;\n\
             udp dport {UDP_PORT} log prefix \"knock\" group {group} drop\n\
             tcp dport {TCP_PORT} tcp flags & (syn | ack) == syn log prefix \"knock\" group {group} drop\n\
             udp dport {OTHER_PORT} drop\n\
           }}\n\
         }}\n"
    );
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("cannot run `nft`");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(rules.as_bytes())
        .expect("write ruleset");
    let status = child.wait().expect("wait for nft");
    assert!(status.success(), "nft -f - failed: {status}");
}

/// An owned copy of a logged packet.
#[derive(Debug, Clone)]
struct Got {
    family: u8,
    hw_protocol: u16,
    hook: u8,
    indev: Option<u32>,
    prefix: Option<Vec<u8>>,
    payload: Vec<u8>,
}

/// Transport header fields found in a logged payload.
#[derive(Debug, PartialEq, Eq)]
struct L4 {
    proto: u8,
    dport: u16,
    /// Offset of the transport header in the payload.
    offset: usize,
}

/// Parse the IP header at the start of `p` (IPv4 or IPv6 without extension headers).
fn l4(p: &[u8]) -> Option<L4> {
    let version = p.first()? >> 4;
    let (proto, offset) = match version {
        4 => (*p.get(9)?, usize::from(p[0] & 0x0f) * 4),
        6 => (*p.get(6)?, 40),
        _ => return None,
    };
    let dport = u16::from_be_bytes([*p.get(offset + 2)?, *p.get(offset + 3)?]);
    Some(L4 {
        proto,
        dport,
        offset,
    })
}

/// Poll and drain `sock` until `done(&packets)` or `max` elapses.
/// Returns the packets and the number of `Overrun` results.
fn collect(
    sock: &mut NflogSocket,
    max: Duration,
    done: impl Fn(&[Got]) -> bool,
) -> (Vec<Got>, u64) {
    let deadline = Instant::now() + max;
    let mut got = Vec::new();
    let mut overruns = 0;
    for _ in 0..10_000 {
        // Drain (bounded) until WouldBlock.
        for _ in 0..100_000 {
            let r = sock
                .recv(|p| {
                    got.push(Got {
                        family: p.family,
                        hw_protocol: p.hw_protocol,
                        hook: p.hook,
                        indev: p.indev,
                        prefix: p.prefix.map(<[u8]>::to_vec),
                        payload: p.payload.to_vec(),
                    })
                })
                .expect("recv must not fail");
            match r {
                Received::Packets(_) => {}
                Received::Overrun => overruns += 1,
                Received::WouldBlock => break,
            }
        }
        if done(&got) {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(left.min(Duration::from_millis(100))).unwrap();
        nix::poll::poll(&mut fds, timeout).expect("poll");
    }
    (got, overruns)
}

fn udp_to(dst: SocketAddr, data: &[u8]) {
    let bind: SocketAddr = if dst.is_ipv4() {
        "127.0.0.1:0".parse().unwrap()
    } else {
        "[::1]:0".parse().unwrap()
    };
    let s = UdpSocket::bind(bind).expect("bind UDP sender");
    s.send_to(data, dst).expect("send UDP");
}

fn syn_to(dst: SocketAddr) {
    // The SYN is logged and dropped, so this times out.
    let r = TcpStream::connect_timeout(&dst, Duration::from_millis(100));
    assert!(r.is_err(), "connect to {dst} should not succeed");
}

fn find(got: &[Got], family: u8, proto: u8, dport: u16) -> Option<&Got> {
    got.iter().find(|g| {
        g.family == family && l4(&g.payload).is_some_and(|l| l.proto == proto && l.dport == dport)
    })
}

#[test]
fn recv_would_block_when_idle() {
    if !enter_private_netns() {
        return;
    }
    install_ruleset(2701);
    let mut sock = NflogSocket::bind(&Config::new(2701)).expect("bind");
    assert_eq!(sock.group(), 2701);
    assert!(!sock.has_buffered());
    let r = sock
        .recv(|p| panic!("unexpected packet {p:?}"))
        .expect("recv");
    assert_eq!(r, Received::WouldBlock);
    assert!(sock.recv_buffer_size().expect("SO_RCVBUF") >= 4 << 20);
}

#[test]
fn udp_and_tcp_over_ipv4_and_ipv6_are_logged() {
    if !enter_private_netns() {
        return;
    }
    let group = 2700;
    install_ruleset(group);
    let mut sock = NflogSocket::bind(&Config::new(group)).expect("bind");

    let data = b"sesame knock payload 0123456789";
    udp_to(SocketAddr::from(([127, 0, 0, 1], OTHER_PORT)), data);
    udp_to(SocketAddr::from(([127, 0, 0, 1], UDP_PORT)), data);
    udp_to(SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], UDP_PORT)), data);
    syn_to(SocketAddr::from(([127, 0, 0, 1], TCP_PORT)));
    syn_to(SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], TCP_PORT)));

    let complete = |got: &[Got]| {
        find(got, AF_INET, 17, UDP_PORT).is_some()
            && find(got, AF_INET6, 17, UDP_PORT).is_some()
            && find(got, AF_INET, 6, TCP_PORT).is_some()
            && find(got, AF_INET6, 6, TCP_PORT).is_some()
    };
    let (got, overruns) = collect(&mut sock, Duration::from_secs(2), complete);
    assert!(complete(&got), "missing packets, got {got:#?}");
    assert_eq!(overruns, 0);
    assert_eq!(sock.malformed(), 0);
    assert!(
        got.iter()
            .all(|g| l4(&g.payload).is_some_and(|l| l.dport != OTHER_PORT)),
        "unlogged port leaked: {got:#?}"
    );

    for g in &got {
        assert_eq!(g.hook, NF_INET_LOCAL_IN, "{g:?}");
        assert_eq!(g.indev, Some(LO_IFINDEX), "{g:?}");
        assert_eq!(g.prefix.as_deref(), Some(&b"knock"[..]), "{g:?}");
        match g.family {
            AF_INET => {
                assert_eq!(g.hw_protocol, 0x0800);
                assert_eq!(g.payload[0], 0x45, "IPv4 header without options");
            }
            AF_INET6 => {
                assert_eq!(g.hw_protocol, 0x86dd);
                assert_eq!(g.payload[0] >> 4, 6);
            }
            other => panic!("unexpected family {other}"),
        }
    }

    for family in [AF_INET, AF_INET6] {
        let u = find(&got, family, 17, UDP_PORT).unwrap();
        let l = l4(&u.payload).unwrap();
        assert_eq!(
            &u.payload[l.offset + 8..],
            data,
            "UDP data, family {family}"
        );

        let t = find(&got, family, 6, TCP_PORT).unwrap();
        let l = l4(&t.payload).unwrap();
        let flags = t.payload[l.offset + 13];
        assert_eq!(flags & 0x12, 0x02, "SYN without ACK, family {family}");
    }
}

#[test]
fn small_copy_range_truncates_payload() {
    if !enter_private_netns() {
        return;
    }
    let group = 2702;
    install_ruleset(group);
    let cfg = Config {
        copy_range: 30,
        ..Config::new(group)
    };
    let mut sock = NflogSocket::bind(&cfg).expect("bind");
    let data = [0xabu8; 100];
    udp_to(SocketAddr::from(([127, 0, 0, 1], UDP_PORT)), &data);
    udp_to(
        SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], UDP_PORT)),
        &data,
    );
    let (got, _) = collect(&mut sock, Duration::from_secs(2), |g| g.len() >= 2);
    assert_eq!(got.len(), 2, "{got:#?}");
    for g in &got {
        assert_eq!(g.payload.len(), 30, "truncated to copy_range: {g:?}");
    }
    let v4 = got.iter().find(|g| g.family == AF_INET).expect("IPv4");
    assert_eq!(l4(&v4.payload).unwrap().dport, UDP_PORT);
    assert_eq!(&v4.payload[28..30], &[0xab, 0xab], "first data bytes");
    let v6 = got.iter().find(|g| g.family == AF_INET6).expect("IPv6");
    assert_eq!(v6.payload[0] >> 4, 6);
    assert_eq!(v6.payload[6], 17, "next header UDP");
}

#[test]
fn binding_a_taken_group_says_already_bound() {
    if !enter_private_netns() {
        return;
    }
    let group = 2703;
    let first = NflogSocket::bind(&Config::new(group)).expect("first bind");
    let err = NflogSocket::bind(&Config::new(group)).expect_err("second bind must fail");
    assert!(
        matches!(err, NflogError::GroupBusy { group: 2703, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with("NFLOG group 2703 is already bound by another process ("),
        "{msg}"
    );
    assert!(
        msg.contains(&first.port_id().to_string()),
        "names the owner: {msg}"
    );

    // Closing the owner releases the group.
    drop(first);
    let mut again = None;
    for _ in 0..50 {
        match NflogSocket::bind(&Config::new(group)) {
            Ok(s) => {
                again = Some(s);
                break;
            }
            Err(NflogError::GroupBusy { .. }) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("rebind: {e}"),
        }
    }
    assert!(again.is_some(), "group not released after close");
}

#[test]
fn burst_with_tiny_buffer_overruns_but_keeps_working() {
    if !enter_private_netns() {
        return;
    }
    let group = 2704;
    install_ruleset(group);
    let cfg = Config {
        recv_buffer: 1, // the kernel raises this to its minimum (a few KiB)
        ..Config::new(group)
    };
    let mut sock = NflogSocket::bind(&cfg).expect("bind");

    const BURST: usize = 2000;
    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    let dst = SocketAddr::from(([127, 0, 0, 1], UDP_PORT));
    for i in 0..BURST {
        sender
            .send_to(format!("burst {i}").as_bytes(), dst)
            .expect("send");
    }
    let (got, overruns) = collect(&mut sock, Duration::from_secs(2), |g| g.len() >= BURST);
    eprintln!(
        "burst: {} of {BURST} received, {overruns} overrun(s)",
        got.len()
    );
    assert!(
        got.len() == BURST || overruns > 0,
        "lost packets without an Overrun: {} of {BURST}",
        got.len()
    );
    assert_eq!(overruns, sock.overruns());
    assert_eq!(sock.malformed(), 0);

    // The socket still works after the overrun.
    sender.send_to(b"after the storm", dst).expect("send");
    let is_marker = |g: &Got| g.payload.ends_with(b"after the storm");
    let (later, _) = collect(&mut sock, Duration::from_secs(2), |g| {
        g.iter().any(is_marker)
    });
    assert!(
        later.iter().any(is_marker),
        "packet after overrun not received: {later:#?}"
    );
}

#[test]
fn queue_threshold_batches_several_packets_per_datagram() {
    if !enter_private_netns() {
        return;
    }
    let group = 2705;
    install_ruleset(group);
    let cfg = Config {
        queue_threshold: 5,
        flush_timeout_cs: 50,
        nl_buffer_size: Some(65_536),
        ..Config::new(group)
    };
    let mut sock = NflogSocket::bind(&cfg).expect("bind");
    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    for i in 0..5u8 {
        sender
            .send_to(&[b'b', i], SocketAddr::from(([127, 0, 0, 1], UDP_PORT)))
            .expect("send");
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut seen = Vec::new();
    let mut largest_batch = 0;
    for _ in 0..1_000 {
        match sock.recv(|p| seen.push(p.payload.to_vec())).expect("recv") {
            Received::Packets(n) => largest_batch = largest_batch.max(n),
            Received::Overrun => panic!("unexpected overrun"),
            Received::WouldBlock => {
                if seen.len() >= 5 || Instant::now() >= deadline {
                    break;
                }
                let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
                nix::poll::poll(&mut fds, PollTimeout::from(100u16)).expect("poll");
            }
        }
    }
    assert_eq!(seen.len(), 5, "all batched packets delivered");
    assert!(largest_batch > 1, "expected a multi-packet datagram");
    for (i, p) in seen.iter().enumerate() {
        assert!(p.ends_with(&[b'b', i as u8]), "order/content of packet {i}");
    }
    assert_eq!(sock.malformed(), 0, "NLMSG_DONE trailer is not malformed");
}

/// Sends `n` UDP datagrams to the logged port and returns the sizes of the
/// NFLOG datagrams (packets per `recv`) they arrived in.
fn send_and_batch_sizes(sock: &mut NflogSocket, n: u8, tag: u8) -> Vec<usize> {
    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    for i in 0..n {
        sender
            .send_to(&[tag, i], SocketAddr::from(([127, 0, 0, 1], UDP_PORT)))
            .expect("send");
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut seen = 0usize;
    let mut batches = Vec::new();
    for _ in 0..1_000 {
        match sock.recv(|_| seen += 1).expect("recv") {
            Received::Packets(k) => batches.push(k),
            Received::Overrun => panic!("unexpected overrun"),
            Received::WouldBlock => {
                if seen >= usize::from(n) || Instant::now() >= deadline {
                    break;
                }
                let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
                nix::poll::poll(&mut fds, PollTimeout::from(100u16)).expect("poll");
            }
        }
    }
    assert_eq!(seen, usize::from(n), "every packet delivered");
    batches
}

#[test]
fn batching_switches_at_run_time_and_back() {
    if !enter_private_netns() {
        return;
    }
    let group = 2706;
    install_ruleset(group);
    let mut sock = NflogSocket::bind(&Config::new(group)).expect("bind");
    // Default: one packet per datagram.
    let batches = send_and_batch_sizes(&mut sock, 6, b'i');
    assert!(
        batches.iter().all(|&k| k == 1),
        "immediate mode: {batches:?}"
    );

    // Flood mode: the six packets wait for the flush timer and arrive together.
    sock.set_batching(Batching {
        queue_threshold: 6,
        flush_timeout_cs: 50,
        nl_buffer_size: 65_536,
    })
    .expect("set_batching");
    let batches = send_and_batch_sizes(&mut sock, 6, b'f');
    assert!(
        batches.iter().any(|&k| k > 1),
        "flood mode must batch: {batches:?}"
    );

    // And back.
    sock.set_batching(Batching::IMMEDIATE)
        .expect("set_batching");
    // The switch-back request is processed in order, after any partial batch.
    let batches = send_and_batch_sizes(&mut sock, 6, b'b');
    assert!(
        batches.iter().all(|&k| k == 1),
        "immediate again: {batches:?}"
    );
    assert!(sock.take_config_errors().is_empty());
}
