//! Change notifications: the kernel multicasts every committed nf_tables
//! change to the `NFNLGRP_NFTABLES` group. [`ChangeWatch`] listens there so
//! the daemon learns within a poll wake-up, not a timer tick, that someone
//! else deleted or flushed part of its table (`nft flush ruleset` from
//! nftables.service, firewalld, a hand-typed command).

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use crate::sys::*;
use crate::types::{validate_table_name, FirewallError};
use crate::wire;

/// `NFNLGRP_NFTABLES`: the multicast group of nf_tables notifications.
const NFNLGRP_NFTABLES: u32 = 7;
const NFT_MSG_DELCHAIN: u8 = 5;
const NFT_MSG_DELSET: u8 = 11;
const NFT_MSG_NEWGEN: u8 = 15;
const NFT_MSG_DELOBJ: u8 = 20;
const NFT_MSG_DELFLOWTABLE: u8 = 24;
const NFTA_GEN_PROC_PID: u16 = 2;
const NFTA_GEN_PROC_NAME: u16 = 3;
/// The table name is attribute 1 of every table-scoped object (table,
/// chain, rule, set, element list, object, flowtable).
const NFTA_OBJECT_TABLE: u16 = 1;
/// Room for bursts of notifications (a large `nft -f` reload): 4 MiB.
const RECV_BUFFER: usize = 4 << 20;

/// Something another program removed from the watched table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tampering {
    /// What went: `table`, `chain`, `rule`, `set`, `set elements`, ...; or
    /// `unknown` when notifications were lost (the receive buffer overran).
    pub what: &'static str,
    /// The program that committed it, as the kernel names it (`nft[1234]`),
    /// when known.
    pub by: Option<String>,
}

/// A socket subscribed to nf_tables change notifications, reporting
/// deletions in one table made by anyone but the given port ids (the
/// daemon's own sockets).
pub struct ChangeWatch {
    sock: Socket,
    table: String,
    buf: Vec<u8>,
}

impl ChangeWatch {
    /// Subscribes to nf_tables notifications for `table` (family inet).
    ///
    /// # Errors
    ///
    /// [`FirewallError::Socket`] when the socket cannot be made or joined
    /// to the group (CAP_NET_ADMIN is not needed to listen).
    pub fn open(table: &str) -> Result<Self, FirewallError> {
        validate_table_name(table)?;
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(FirewallError::Socket)?;
        sock.bind_auto().map_err(FirewallError::Socket)?;
        sock.add_membership(NFNLGRP_NFTABLES)
            .map_err(FirewallError::Socket)?;
        sock.set_non_blocking(true).map_err(FirewallError::Socket)?;
        let fd = sock.as_fd();
        // A forced size needs CAP_NET_ADMIN; the plain one is capped by
        // net.core.rmem_max. An overrun is detected either way.
        if nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::RcvBufForce, &RECV_BUFFER)
            .is_err()
        {
            let _ =
                nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::RcvBuf, &RECV_BUFFER);
        }
        Ok(Self {
            sock,
            table: table.to_string(),
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// The socket, for `poll()`.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Reads every pending notification without blocking. Returns the
    /// deletions in the watched table committed by sockets other than
    /// `own` (element deletions by the kernel itself, port id 0, are its
    /// timeouts and not reported). A lost notification (receive buffer
    /// overrun) is reported as `unknown`: the caller must then check.
    pub fn drain(&mut self, own: &[u32]) -> Vec<Tampering> {
        // (committer's port id, finding): NEWGEN, sent after a batch's
        // changes, names the program.
        let mut found: Vec<(u32, Tampering)> = Vec::new();
        // Bounded: at most 4096 datagrams per call, the rest next wake-up.
        for _ in 0..4096 {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, 0) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.raw_os_error() == Some(ENOBUFS) => {
                    found.push((
                        0,
                        Tampering {
                            what: "unknown",
                            by: None,
                        },
                    ));
                    continue;
                }
                Err(_) => break,
            }
            let Ok(messages) = wire::messages(&self.buf) else {
                continue;
            };
            for m in messages {
                if m.ty >> 8 != NFNL_SUBSYS_NFTABLES {
                    continue;
                }
                let kind = (m.ty & 0xff) as u8;
                if kind == NFT_MSG_NEWGEN {
                    let name = describe_process(&m);
                    for (_, t) in found
                        .iter_mut()
                        .filter(|(pid, t)| *pid == m.pid && t.by.is_none())
                    {
                        t.by.clone_from(&name);
                    }
                    continue;
                }
                let what = match kind {
                    NFT_MSG_DELTABLE => "table",
                    NFT_MSG_DELCHAIN => "chain",
                    NFT_MSG_DELRULE => "rule",
                    NFT_MSG_DELSET => "set",
                    NFT_MSG_DELSETELEM if m.pid != 0 => "set elements",
                    NFT_MSG_DELOBJ => "object",
                    NFT_MSG_DELFLOWTABLE => "flowtable",
                    _ => continue,
                };
                if own.contains(&m.pid) || !self.in_table(&m) {
                    continue;
                }
                found.push((m.pid, Tampering { what, by: None }));
            }
        }
        found.into_iter().map(|(_, t)| t).collect()
    }

    fn in_table(&self, m: &wire::Msg<'_>) -> bool {
        let family = m.payload.first().copied();
        if family != Some(NFPROTO_INET) {
            return false;
        }
        let Some(attrs) = m.payload.get(NFGENMSG_LEN..) else {
            return false;
        };
        matches!(
            wire::find_attr(attrs, NFTA_OBJECT_TABLE),
            Ok(Some(name)) if name.strip_suffix(b"\0").unwrap_or(name) == self.table.as_bytes()
        )
    }
}

/// `name[pid]` of a NEWGEN notification, when the kernel gave them.
fn describe_process(m: &wire::Msg<'_>) -> Option<String> {
    let attrs = m.payload.get(NFGENMSG_LEN..)?;
    let name = wire::find_attr(attrs, NFTA_GEN_PROC_NAME).ok()??;
    let name = String::from_utf8_lossy(name.strip_suffix(b"\0").unwrap_or(name)).into_owned();
    let pid = wire::find_attr(attrs, NFTA_GEN_PROC_PID)
        .ok()
        .flatten()
        .and_then(|p| p.get(..4))
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    Some(match pid {
        Some(pid) => format!("{name}[{pid}]"),
        None => name,
    })
}

/// The port id the kernel gave `sock` (what its changes carry in
/// notifications).
pub(crate) fn port_id(sock: &Socket) -> u32 {
    let mut addr = SocketAddr::new(0, 0);
    match sock.get_address(&mut addr) {
        Ok(()) => addr.port_number(),
        Err(_) => 0,
    }
}
