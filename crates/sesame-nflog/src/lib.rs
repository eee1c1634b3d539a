//! Packet observation for Sesame through nfnetlink_log (NFLOG) groups.
//!
//! The firewall, not this crate, decides which packets are interesting: the
//! nftables ruleset Sesame installs contains rules such as
//!
//! ```text
//! udp dport { 7001, 7002 } log group 2700 drop
//! ```
//!
//! and the kernel hands exactly those packets to the process bound to NFLOG
//! group 2700 over a `NETLINK_NETFILTER` socket (subsystem `NFNL_SUBSYS_ULOG`).
//! This crate binds such a group and decodes the `NFULNL_MSG_PACKET` messages,
//! in pure Rust, without libnetfilter_log.
//!
//! # Why NFLOG
//!
//! * **Only knock packets leave the kernel.** There is no promiscuous capture
//!   and no BPF filter to get right: traffic that does not match a knock rule
//!   never reaches user space, so the daemon sees (and could leak) nothing else
//!   and costs nothing under unrelated load.
//! * **No libpcap, no raw sockets, no extra C library.** Just one netlink
//!   socket that can be `poll()`ed next to the daemon's other descriptors.
//! * **Every interface type, all at once.** Logging happens in the netfilter
//!   input path, after the link layer is stripped, so the same rule sees
//!   Ethernet, `lo`, tun/tap, WireGuard, PPP, VLANs and bridges, on all
//!   interfaces, including ones that appear after the daemon started. The
//!   payload always starts at the IP header.
//! * **The firewall stays in charge.** A knock rule can log and drop in one
//!   step, so knock ports look closed (no RST/ICMP) to a scanner.
//!
//! # Usage
//!
//! ```no_run
//! use sesame_nflog::{Config, NflogSocket, Received};
//!
//! let mut sock = NflogSocket::bind(&Config { group: 2700, ..Config::default() })?;
//! loop {
//!     // poll() sock.as_fd() for POLLIN here, then drain:
//!     loop {
//!         match sock.recv(|pkt| println!("{} bytes from family {}", pkt.payload.len(), pkt.family))? {
//!             Received::Packets(_) => continue,
//!             Received::Overrun => eprintln!("kernel dropped NFLOG messages"),
//!             Received::WouldBlock => break,
//!         }
//!     }
//! #   break;
//! }
//! # Ok::<(), sesame_nflog::NflogError>(())
//! ```
//!
//! Binding requires `CAP_NET_ADMIN` in the socket's network namespace. Only
//! one socket can own a group; closing the socket (dropping [`NflogSocket`])
//! releases it.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod wire;

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{setsockopt, sockopt, MsgFlags};

pub use error::NflogError;
pub use wire::LoggedPacket;
use wire::{CfgAttr, Message};

/// Default number of bytes copied from each logged packet.
pub const DEFAULT_COPY_RANGE: u32 = 512;
/// Default kernel queue threshold (1: every packet is sent at once).
pub const DEFAULT_QUEUE_THRESHOLD: u32 = 1;
/// Default kernel flush timeout in centiseconds.
pub const DEFAULT_FLUSH_TIMEOUT_CS: u32 = 1;
/// Default socket receive buffer (8 MiB): room for tens of thousands of
/// logged packets while the reader catches up with a burst.
pub const DEFAULT_RECV_BUFFER: usize = 8 << 20;
/// Largest `copy_range` the kernel honours (`0xFFFF - NLA_HDRLEN`); larger
/// values are clamped by the kernel.
pub const MAX_COPY_RANGE: u32 = 0xFFFF - 4;
/// Largest per-instance netlink buffer the kernel accepts (`NFULA_CFG_NLBUFSIZ`).
pub const MAX_NL_BUFFER_SIZE: u32 = 131_072;

/// Size of the user-space datagram buffer. The kernel's per-group skb is at
/// most 128 KiB requested, which slab rounding can grow to just under 256 KiB.
const RECV_BUF_LEN: usize = 256 * 1024;
/// How long [`NflogSocket::bind`] waits for each acknowledgement. The kernel
/// answers synchronously, so this only matters if something is badly wrong.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// Where the kernel lists the NFLOG instances of the caller's network namespace.
const PROC_NFLOG: &str = "/proc/thread-self/net/netfilter/nfnetlink_log";

/// How to bind and configure an NFLOG group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// NFLOG group number, as in the nftables rule `log group N`.
    pub group: u16,
    /// Bytes of each packet to copy, counted from the IP header
    /// (`NFULNL_COPY_PACKET` range). Default 512. `0` means as much as the
    /// kernel allows ([`MAX_COPY_RANGE`]). A rule's own `snaplen` can lower it.
    pub copy_range: u32,
    /// Number of packets the kernel batches before sending (`NFULA_CFG_QTHRESH`).
    /// Default 1 = deliver each packet at once, lowest latency. A rule's own
    /// `queue-threshold` can lower it.
    pub queue_threshold: u32,
    /// Flush timeout for a partial batch, in centiseconds (`NFULA_CFG_TIMEOUT`).
    /// Default 1.
    pub flush_timeout_cs: u32,
    /// Socket receive buffer in bytes. Default 8 MiB. `SO_RCVBUFFORCE` is tried
    /// first (works with `CAP_NET_ADMIN`, ignores `net.core.rmem_max`), then
    /// `SO_RCVBUF`. `0` keeps the system default.
    pub recv_buffer: usize,
    /// Kernel-side buffer for batching messages (`NFULA_CFG_NLBUFSIZ`), only
    /// relevant with `queue_threshold > 1`. `None` (default) keeps the kernel's
    /// default (one page); the kernel silently ignores values outside
    /// one page ..= [`MAX_NL_BUFFER_SIZE`].
    pub nl_buffer_size: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            group: 0,
            copy_range: DEFAULT_COPY_RANGE,
            queue_threshold: DEFAULT_QUEUE_THRESHOLD,
            flush_timeout_cs: DEFAULT_FLUSH_TIMEOUT_CS,
            recv_buffer: DEFAULT_RECV_BUFFER,
            nl_buffer_size: None,
        }
    }
}

impl Config {
    /// Default configuration for `group`.
    pub fn new(group: u16) -> Self {
        Self {
            group,
            ..Self::default()
        }
    }

    fn validate(&self) -> Result<(), NflogError> {
        if self.recv_buffer > i32::MAX as usize {
            return Err(NflogError::InvalidConfig(
                "recv_buffer must not exceed 2147483647 bytes",
            ));
        }
        if self.nl_buffer_size.is_some_and(|n| n > MAX_NL_BUFFER_SIZE) {
            return Err(NflogError::InvalidConfig(
                "nl_buffer_size must not exceed 131072 bytes",
            ));
        }
        Ok(())
    }
}

/// How the kernel groups logged packets into datagrams; can change while the
/// socket runs ([`NflogSocket::set_batching`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Packets per datagram before the kernel sends it (`NFULA_CFG_QTHRESH`).
    pub queue_threshold: u32,
    /// Flush timeout for a partial batch, in centiseconds (`NFULA_CFG_TIMEOUT`).
    pub flush_timeout_cs: u32,
    /// Kernel-side datagram buffer (`NFULA_CFG_NLBUFSIZ`), one page ..=
    /// [`MAX_NL_BUFFER_SIZE`]. The kernel allocates this much per datagram,
    /// so keep it small when `queue_threshold` is 1.
    pub nl_buffer_size: u32,
}

impl Batching {
    /// One packet per datagram, sent at once: the lowest latency.
    pub const IMMEDIATE: Batching = Batching {
        queue_threshold: 1,
        flush_timeout_cs: 1,
        nl_buffer_size: 4096,
    };

    /// Up to 256 packets per datagram, flushed at the latest after 10 ms:
    /// one `recv` per batch instead of one per packet, for floods.
    pub const FLOOD: Batching = Batching {
        queue_threshold: 256,
        flush_timeout_cs: 1,
        nl_buffer_size: 65_536,
    };
}

/// Outcome of one [`NflogSocket::recv`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// One datagram was read; this many packets were handed to the callback
    /// (possibly 0, e.g. if every message in it was malformed).
    Packets(usize),
    /// `ENOBUFS`: the socket buffer overflowed and the kernel dropped log
    /// messages. Not fatal: count it and keep reading.
    Overrun,
    /// Nothing to read right now.
    WouldBlock,
}

/// A bound, configured, non-blocking NFLOG group socket.
pub struct NflogSocket {
    sock: Socket,
    group: u16,
    portid: u32,
    seq: u32,
    buf: Vec<u8>,
    /// Datagrams with packets that arrived while `bind` waited for acks.
    pending: VecDeque<Vec<u8>>,
    /// An overrun seen while waiting for acks, not yet reported.
    pending_overrun: bool,
    malformed: u64,
    overruns: u64,
    /// Errors the kernel reported for unacknowledged configuration requests.
    config_errors: Vec<i32>,
}

impl std::fmt::Debug for NflogSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NflogSocket")
            .field("fd", &self.sock.as_raw_fd())
            .field("group", &self.group)
            .field("portid", &self.portid)
            .field("malformed", &self.malformed)
            .field("overruns", &self.overruns)
            .finish_non_exhaustive()
    }
}

impl NflogSocket {
    /// Open a `NETLINK_NETFILTER` socket, bind NFLOG group `cfg.group` and set
    /// copy mode `NFULNL_COPY_PACKET` with `cfg.copy_range`, the queue
    /// threshold, the flush timeout and (optionally) the kernel buffer size.
    /// Every request is acknowledged by the kernel and checked. The socket is
    /// left non-blocking.
    ///
    /// Packets that arrive while `bind` waits for the acknowledgements are kept
    /// and returned by the next [`recv`](Self::recv) calls, so, as always with
    /// a non-blocking socket, drain it with `recv` until
    /// [`Received::WouldBlock`] before the first `poll()`.
    ///
    /// # Errors
    ///
    /// [`NflogError::GroupBusy`] if another socket owns the group,
    /// [`NflogError::PermissionDenied`] without `CAP_NET_ADMIN`, and the other
    /// variants for socket or configuration failures.
    pub fn bind(cfg: &Config) -> Result<Self, NflogError> {
        cfg.validate()?;
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(NflogError::Socket)?;
        let portid = sock.bind_auto().map_err(NflogError::Socket)?.port_number();
        sock.set_non_blocking(true).map_err(NflogError::Socket)?;
        if cfg.recv_buffer > 0 {
            set_recv_buffer(&sock, cfg.recv_buffer)?;
        }
        let mut this = Self {
            sock,
            group: cfg.group,
            portid,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF_LEN),
            pending: VecDeque::new(),
            pending_overrun: false,
            malformed: 0,
            overruns: 0,
            config_errors: Vec::new(),
        };

        // PF_BIND/PF_UNBIND are deliberately not sent: modern kernels do not
        // need them, and PF_BIND would change the namespace's default logger.
        this.request("BIND", &[CfgAttr::Cmd(wire::NFULNL_CFG_CMD_BIND)])
            .map_err(|e| this.classify_bind_error(e))?;

        let mut attrs = vec![
            CfgAttr::Mode {
                copy_range: cfg.copy_range,
                copy_mode: wire::NFULNL_COPY_PACKET,
            },
            CfgAttr::Qthresh(cfg.queue_threshold),
            CfgAttr::Timeout(cfg.flush_timeout_cs),
        ];
        if let Some(n) = cfg.nl_buffer_size {
            attrs.push(CfgAttr::NlBufSiz(n));
        }
        this.request(
            "configuration (copy mode, queue threshold, timeout)",
            &attrs,
        )?;
        Ok(this)
    }

    /// The bound NFLOG group.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// The socket's netlink port id (shown as `peer_portid` in
    /// `/proc/net/netfilter/nfnetlink_log`).
    pub fn port_id(&self) -> u32 {
        self.portid
    }

    /// Number of kernel messages skipped because they could not be decoded.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Number of [`Received::Overrun`] results returned so far.
    pub fn overruns(&self) -> u64 {
        self.overruns
    }

    /// Whether [`recv`](Self::recv) has something to return without reading
    /// the socket (data kept from [`bind`](Self::bind)). `poll()` cannot see it.
    pub fn has_buffered(&self) -> bool {
        self.pending_overrun || !self.pending.is_empty()
    }

    /// Changes how the kernel batches packets, without waiting for an
    /// acknowledgement: under a flood the socket buffer may hold megabytes
    /// ahead of an ack, or have no room left for one. The kernel only answers
    /// if the request fails; such answers are collected by [`recv`](Self::recv)
    /// and returned by [`take_config_errors`](Self::take_config_errors).
    ///
    /// # Errors
    ///
    /// If the request cannot be sent.
    pub fn set_batching(&mut self, batching: Batching) -> Result<(), NflogError> {
        let attrs = [
            CfgAttr::NlBufSiz(batching.nl_buffer_size),
            CfgAttr::Timeout(batching.flush_timeout_cs),
            CfgAttr::Qthresh(batching.queue_threshold),
        ];
        self.seq = self.seq.wrapping_add(1);
        let msg = wire::encode_config_flags(self.seq, self.group, &attrs, false);
        let kernel = SocketAddr::new(0, 0);
        loop {
            match self.sock.send_to(&msg, &kernel, 0) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(NflogError::Send {
                        group: self.group,
                        op: "batching",
                        source,
                    })
                }
            }
        }
    }

    /// Errors the kernel reported for [`set_batching`](Self::set_batching)
    /// requests since the last call.
    pub fn take_config_errors(&mut self) -> Vec<io::Error> {
        std::mem::take(&mut self.config_errors)
            .into_iter()
            .map(io::Error::from_raw_os_error)
            .collect()
    }

    /// Effective receive buffer size as reported by the kernel (which doubles
    /// the requested value for bookkeeping).
    pub fn recv_buffer_size(&self) -> io::Result<usize> {
        self.sock.get_rx_buf_sz()
    }

    /// Read ONE netlink datagram without blocking and hand every NFLOG packet
    /// in it to `on_packet`. A datagram may hold several packets when
    /// `queue_threshold > 1`. Malformed messages are skipped and counted in
    /// [`malformed`](Self::malformed); they never cause an error or a panic.
    ///
    /// # Errors
    ///
    /// Only for unexpected socket errors; `EAGAIN` is
    /// [`Received::WouldBlock`] and `ENOBUFS` is [`Received::Overrun`].
    pub fn recv(
        &mut self,
        mut on_packet: impl FnMut(LoggedPacket<'_>),
    ) -> Result<Received, NflogError> {
        if std::mem::take(&mut self.pending_overrun) {
            self.overruns += 1;
            return Ok(Received::Overrun);
        }
        if let Some(datagram) = self.pending.pop_front() {
            let n = self.dispatch_owned(&datagram, false, &mut on_packet);
            return Ok(Received::Packets(n));
        }
        loop {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, MsgFlags::MSG_TRUNC.bits()) {
                Ok(len) => {
                    let truncated = len > self.buf.len();
                    let buf = std::mem::take(&mut self.buf);
                    let n = self.dispatch_owned(&buf, truncated, &mut on_packet);
                    self.buf = buf;
                    return Ok(Received::Packets(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Received::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(Errno::ENOBUFS as i32) => {
                    self.overruns += 1;
                    return Ok(Received::Overrun);
                }
                Err(source) => {
                    return Err(NflogError::Recv {
                        group: self.group,
                        source,
                    })
                }
            }
        }
    }

    /// Decode `datagram` and call `on_packet` for each packet; returns the count.
    fn dispatch_owned(
        &mut self,
        datagram: &[u8],
        truncated: bool,
        on_packet: &mut impl FnMut(LoggedPacket<'_>),
    ) -> usize {
        let mut packets = 0;
        let mut malformed = 0;
        for msg in wire::messages(datagram) {
            match msg {
                Message::Packet(p) => {
                    packets += 1;
                    on_packet(p.packet);
                }
                Message::Malformed => malformed += 1,
                Message::Overrun => self.pending_overrun = true,
                Message::Ack { errno, .. } if errno != 0 && self.config_errors.len() < 16 => {
                    self.config_errors.push(errno)
                }
                Message::Ack { .. } | Message::Ignored => {}
            }
        }
        // A datagram larger than our buffer lost its tail: count it once.
        if truncated && malformed == 0 {
            malformed = 1;
        }
        self.malformed += malformed;
        packets
    }

    /// Send one `NFULNL_MSG_CONFIG` and wait for its acknowledgement.
    fn request(&mut self, op: &'static str, attrs: &[CfgAttr]) -> Result<(), NflogError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let msg = wire::encode_config(seq, self.group, attrs);
        let kernel = SocketAddr::new(0, 0);
        loop {
            match self.sock.send_to(&msg, &kernel, 0) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(NflogError::Send {
                        group: self.group,
                        op,
                        source,
                    })
                }
            }
        }
        self.wait_ack(op, seq)
    }

    /// Read until the acknowledgement for `seq` arrives, keeping any packet
    /// datagrams for [`recv`](Self::recv). Bounded by [`ACK_TIMEOUT`].
    fn wait_ack(&mut self, op: &'static str, seq: u32) -> Result<(), NflogError> {
        let deadline = Instant::now() + ACK_TIMEOUT;
        loop {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, 0) {
                Ok(_) => {
                    let mut result = None;
                    let mut keep = false;
                    for msg in wire::messages(&self.buf) {
                        match msg {
                            Message::Ack { seq: s, errno } if s == seq => result = Some(errno),
                            Message::Packet(_) | Message::Malformed => keep = true,
                            Message::Overrun => self.pending_overrun = true,
                            Message::Ack { .. } | Message::Ignored => {}
                        }
                    }
                    if keep {
                        self.pending.push_back(self.buf.clone());
                    }
                    match result {
                        Some(0) => return Ok(()),
                        Some(errno) => {
                            return Err(NflogError::Rejected {
                                group: self.group,
                                op,
                                source: io::Error::from_raw_os_error(errno),
                            })
                        }
                        None => continue,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(Errno::ENOBUFS as i32) => {
                    self.pending_overrun = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(NflogError::NoAck {
                            group: self.group,
                            op,
                            timeout_ms: ACK_TIMEOUT.as_millis() as u64,
                        });
                    }
                    let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
                    let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
                    match nix::poll::poll(&mut fds, timeout) {
                        Ok(_) | Err(Errno::EINTR) => {}
                        Err(e) => {
                            return Err(NflogError::Recv {
                                group: self.group,
                                source: e.into(),
                            })
                        }
                    }
                }
                Err(source) => {
                    return Err(NflogError::Recv {
                        group: self.group,
                        source,
                    })
                }
            }
        }
    }

    /// Turn a failed BIND into a precise error.
    ///
    /// The kernel answers `EPERM` both when the caller lacks `CAP_NET_ADMIN`
    /// and when another socket owns the group (`EBUSY` only when the same
    /// socket binds twice), so `EPERM` is disambiguated through the kernel's
    /// instance list in procfs.
    fn classify_bind_error(&self, err: NflogError) -> NflogError {
        let NflogError::Rejected { source, .. } = &err else {
            return err;
        };
        let group = self.group;
        let Some(errno) = source.raw_os_error().map(Errno::from_raw) else {
            return err;
        };
        match errno {
            Errno::EBUSY | Errno::EEXIST => NflogError::GroupBusy {
                group,
                detail: format!("{errno:?}"),
            },
            Errno::EPERM => match group_owner(group) {
                Some(owner) if owner != self.portid => NflogError::GroupBusy {
                    group,
                    detail: format!("{errno:?}; owner's netlink port id {owner}"),
                },
                _ => NflogError::PermissionDenied { group },
            },
            _ => err,
        }
    }
}

impl AsFd for NflogSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl AsRawFd for NflogSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

/// Try `SO_RCVBUFFORCE`, then `SO_RCVBUF`.
fn set_recv_buffer(sock: &Socket, bytes: usize) -> Result<(), NflogError> {
    if setsockopt(sock, sockopt::RcvBufForce, &bytes).is_ok() {
        return Ok(());
    }
    setsockopt(sock, sockopt::RcvBuf, &bytes).map_err(|e| NflogError::RecvBuffer {
        bytes,
        source: e.into(),
    })
}

/// Netlink port id owning `group` in the calling thread's network namespace,
/// from `/proc/thread-self/net/netfilter/nfnetlink_log` (root-readable).
fn group_owner(group: u16) -> Option<u32> {
    let text = std::fs::read_to_string(PROC_NFLOG).ok()?;
    parse_group_owner(&text, group)
}

/// Parse the procfs instance list: `group portid qlen copy_mode copy_range timeout use`.
fn parse_group_owner(text: &str, group: u16) -> Option<u32> {
    text.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let g: u16 = fields.next()?.parse().ok()?;
        let portid: u32 = fields.next()?.parse().ok()?;
        (g == group).then_some(portid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = Config::default();
        assert_eq!(c.copy_range, 512);
        assert_eq!(c.queue_threshold, 1);
        assert_eq!(c.flush_timeout_cs, 1);
        assert_eq!(c.recv_buffer, 8 * 1024 * 1024);
        assert_eq!(c.nl_buffer_size, None);
        assert_eq!(Config::new(7).group, 7);
    }

    #[test]
    fn validation() {
        let mut c = Config::new(1);
        c.nl_buffer_size = Some(MAX_NL_BUFFER_SIZE + 1);
        assert!(matches!(c.validate(), Err(NflogError::InvalidConfig(_))));
        c.nl_buffer_size = Some(MAX_NL_BUFFER_SIZE);
        assert!(c.validate().is_ok());
        c.recv_buffer = usize::MAX;
        assert!(matches!(c.validate(), Err(NflogError::InvalidConfig(_))));
    }

    #[test]
    fn proc_instance_list() {
        let text = " 2700   4242     0 2   512      1  1\n    1 123456     0 2 65531    100  1\n";
        assert_eq!(parse_group_owner(text, 2700), Some(4242));
        assert_eq!(parse_group_owner(text, 1), Some(123456));
        assert_eq!(parse_group_owner(text, 3), None);
        assert_eq!(parse_group_owner("garbage\n\n", 3), None);
    }

    #[test]
    fn busy_error_message() {
        let e = NflogError::GroupBusy {
            group: 2700,
            detail: "EBUSY".into(),
        };
        assert_eq!(
            e.to_string(),
            "NFLOG group 2700 is already bound by another process (EBUSY)"
        );
    }
}
