//! Sesame's firewall adapter: one nftables table, spoken to `nf_tables`
//! directly over netlink. No `nft` binary, no libnftnl, no shell.
//!
//! The table Sesame owns (default `inet sesame`) holds:
//!
//! * chain `observe` (prerouting, priority -300): packets to a local address
//!   on a knock port are sent to an NFLOG group and dropped, so a knock is
//!   never answered and never reaches a socket;
//! * chain `gate` (input, priority -10): established traffic passes,
//!   new traffic from a granted `address . proto . port` passes, and every
//!   other packet to a protected service is dropped;
//! * the sets those chains look up. `grants4`/`grants6` carry per-element
//!   timeouts, so the kernel closes a door on time even if the daemon dies.
//!
//! Every change is one atomic nf_tables transaction (a netlink batch): the
//! ruleset is never observable half-installed, and a grant refresh never
//! leaves a gap.
//!
//! ```no_run
//! use std::time::Duration;
//! use sesame_nftables::{Firewall, Ruleset};
//! let mut fw = Firewall::open("sesame")?;
//! let ssh = "tcp/22".parse().unwrap();
//! fw.install(&Ruleset { nflog_group: 2700, knock_tcp_syn: vec![7000], protected: vec![ssh], ..Ruleset::default() })?;
//! fw.grant("192.0.2.7".parse().unwrap(), &[ssh], Duration::from_secs(30))?;
//! # Ok::<(), sesame_nftables::FirewallError>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod batch;
mod conntrack;
mod dump;
mod gateway;
mod host;
mod rules;
mod sys;
mod types;
mod watch;
mod wire;

pub use dump::DnatRule;
pub use host::{HostChain, HostRule, HostRuleset, Verdict};
pub use types::{validate_table_name, FirewallError, Grant, InstallOutcome, MAX_TABLE_NAME};
pub use watch::{ChangeWatch, Tampering};

use std::io;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use sesame_core::{Forward, Proto, Service};

use crate::batch::{grant_keys, Batch, NFT_TABLE_F_OWNER, NFT_TABLE_F_PERSIST};
use crate::dump::{parse_dnat_rule, parse_elements};
use crate::rules::*;
use crate::sys::*;
use crate::wire::{Msg, Writer};

pub use sesame_core::engine::ruleset::DEFAULT_TABLE;

/// How long `revoke --kill-flows` keeps a cut flow blocked: longer than
/// TCP keeps retransmitting into silence (about 15 minutes by default),
/// so both ends give up. A new grant lifts it at once.
pub const KILLED_BLOCK: Duration = Duration::from_secs(20 * 60);

/// How long to wait for the kernel's answer to one request.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

pub use sesame_core::engine::ruleset::Ruleset;

/// A handle on Sesame's nftables table.
#[derive(Debug)]
pub struct Firewall {
    sock: Socket,
    table: String,
    seq: u32,
    buf: Vec<u8>,
    /// Send buffer size last asked for (0: the system default).
    sndbuf: usize,
    /// Ask the kernel to make the table this socket's own (see
    /// [`Firewall::set_owned`]).
    want_owned: bool,
    /// The kernel refused owned tables once (older than Linux 6.9).
    owner_unsupported: bool,
    /// The table is owned by this socket now.
    owned: bool,
}

/// Encodes the transaction that installs `rules` in `table` without sending
/// it, exactly as [`Firewall::install`] would (updating in place), and
/// returns its size in bytes. `sesamed --check-config` runs this so that a
/// ruleset the daemon could not encode is refused before it runs.
///
/// # Errors
///
/// [`FirewallError::BadTableName`] or [`FirewallError::TooLarge`].
pub fn encode_install(table: &str, rules: &Ruleset) -> Result<usize, FirewallError> {
    validate_table_name(table)?;
    let mut b = Batch::new(table, 0);
    b.ruleset(rules, true);
    match b.finish() {
        (Some(bytes), ..) => Ok(bytes.len()),
        (None, msgs, ..) => Err(FirewallError::TooLarge {
            op: msgs
                .first()
                .map_or("install", |m| m.op.as_str())
                .to_string(),
            table: table.to_string(),
        }),
    }
}

impl Firewall {
    /// Opens a netlink socket for managing `table`. Nothing is changed yet.
    ///
    /// # Errors
    ///
    /// [`FirewallError::BadTableName`] or [`FirewallError::Socket`].
    pub fn open(table: &str) -> Result<Self, FirewallError> {
        validate_table_name(table)?;
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(FirewallError::Socket)?;
        sock.bind_auto().map_err(FirewallError::Socket)?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(FirewallError::Socket)?;
        // Extended acks give the kernel's own explanation; capped acks keep
        // error replies small. Both are optional.
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_cap_ack(true);
        sock.set_non_blocking(true).map_err(FirewallError::Socket)?;
        Ok(Self {
            sock,
            table: table.to_string(),
            seq: std::process::id().wrapping_mul(1 << 12),
            buf: Vec::with_capacity(64 * 1024),
            sndbuf: 0,
            want_owned: false,
            owner_unsupported: false,
            owned: false,
        })
    }

    /// The netlink port id of this handle's socket: its changes carry it in
    /// nf_tables notifications (see [`ChangeWatch::drain`]).
    pub fn port_id(&self) -> u32 {
        watch::port_id(&self.sock)
    }

    /// The table this handle manages.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Whether the table exists.
    pub fn exists(&mut self) -> Result<bool, FirewallError> {
        let op = "look up the table";
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut w = Writer::new();
        w.message(
            (NFNL_SUBSYS_NFTABLES << 8) | u16::from(NFT_MSG_GETTABLE),
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            NFPROTO_INET,
            0,
            |w| w.put_str(NFTA_TABLE_NAME, &self.table),
        );
        self.send(op, &w.into_bytes())?;
        match self.collect(op, seq, |_| Ok(())) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Installs `rules`, creating the table or updating it in place in one
    /// transaction. Live grants survive an update. If the existing table has
    /// an incompatible shape (e.g. written by another version), it is
    /// replaced atomically and its grants are carried over.
    pub fn install(&mut self, rules: &Ruleset) -> Result<InstallOutcome, FirewallError> {
        let flags = if self.want_owned && !self.owner_unsupported {
            NFT_TABLE_F_OWNER | NFT_TABLE_F_PERSIST
        } else {
            0
        };
        match self.install_with(rules, flags) {
            Err(e) if flags != 0 && matches!(e.errno(), Some(EOPNOTSUPP) | Some(EINVAL)) => {
                // A kernel without persistent owned tables: an owner-only
                // table would vanish with a crashed daemon, so none at all.
                // Only when the plain table then installs is the kernel the
                // cause; otherwise the ruleset was, and ownership stays.
                let outcome = self.install_with(rules, 0).map_err(|_| e)?;
                self.owner_unsupported = true;
                self.owned = false;
                Ok(outcome)
            }
            Ok(outcome) => {
                self.owned = flags != 0;
                Ok(outcome)
            }
            Err(e) => Err(e),
        }
    }

    /// Makes the table this socket's own from the next [`Firewall::install`]
    /// on, when the kernel can (Linux 6.9 and later): then no other program
    /// can delete, flush or change it (`nft flush ruleset` from
    /// nftables.service leaves it alone), it stays when the daemon exits
    /// (fail closed), and the next daemon takes it over. Older kernels keep
    /// a plain table (see [`Firewall::owns_table`]).
    pub fn set_owned(&mut self, owned: bool) {
        self.want_owned = owned;
    }

    /// Whether the kernel holds the table as this socket's own.
    pub fn owns_table(&self) -> bool {
        self.owned
    }

    fn install_with(
        &mut self,
        rules: &Ruleset,
        flags: u32,
    ) -> Result<InstallOutcome, FirewallError> {
        if !self.exists()? {
            let table = self.table.clone();
            let mut b = Batch::new(&table, self.seq);
            b.table_flags = flags;
            b.ruleset(rules, false);
            self.commit(b)?;
            return Ok(InstallOutcome::Created);
        }
        let table = self.table.clone();
        let mut b = Batch::new(&table, self.seq);
        b.table_flags = flags;
        b.ruleset(rules, true);
        let first_try = match self.commit(b) {
            Ok(()) => return Ok(InstallOutcome::Updated),
            Err(e @ FirewallError::PermissionDenied { .. }) => return Err(e),
            Err(e) => e,
        };
        let carried = self.grants().unwrap_or_default();
        let mut b = Batch::new(&table, self.seq);
        b.table_flags = flags;
        b.del_table();
        b.ruleset(rules, false);
        for g in &carried {
            let (set, keys) = grant_keys(g.addr, &[g.service]);
            let ttl = g.expires_in.unwrap_or(Duration::from_millis(1));
            b.elements(set, &keys, Some(ttl), false);
        }
        self.commit(b).map_err(|second| match second {
            FirewallError::Rejected {
                op,
                table,
                source,
                detail,
            } => FirewallError::Rejected {
                op,
                table,
                source,
                detail: format!("{detail}; in-place update had failed first: {first_try}"),
            },
            other => other,
        })?;
        Ok(InstallOutcome::Recreated)
    }

    /// Lets `addr` reach `services` for `ttl`. An existing grant is
    /// refreshed to the full `ttl` in the same transaction, never dropped.
    pub fn grant(
        &mut self,
        addr: IpAddr,
        services: &[Service],
        ttl: Duration,
    ) -> Result<(), FirewallError> {
        if services.is_empty() {
            return Ok(());
        }
        let (set, keys) = grant_keys(addr, services);
        let table = self.table.clone();
        let mut b = Batch::new(&table, self.seq);
        // add (no-op if present) ; delete ; add with the new timeout
        b.elements(set, &keys, Some(ttl), false);
        b.elements(set, &keys, None, true);
        b.elements(set, &keys, Some(ttl), false);
        self.commit(b)
    }

    /// Opens `forwards` through this host for `addr` for `ttl` (gateway
    /// mode; the ruleset must have them). A forward already open is
    /// refreshed to the full `ttl` in the same transaction.
    pub fn forward(
        &mut self,
        addr: IpAddr,
        forwards: &[Forward],
        ttl: Duration,
    ) -> Result<(), FirewallError> {
        self.forward_elements(addr, forwards, Some(ttl))
    }

    /// Closes `addr`'s `forwards`, open or not. Flows already forwarded
    /// keep their conntrack binding.
    pub fn unforward(&mut self, addr: IpAddr, forwards: &[Forward]) -> Result<(), FirewallError> {
        self.forward_elements(addr, forwards, None)
    }

    fn forward_elements(
        &mut self,
        addr: IpAddr,
        forwards: &[Forward],
        ttl: Option<Duration>,
    ) -> Result<(), FirewallError> {
        let elements = gateway::forward_elements(addr, forwards);
        if elements.maps.is_empty() && elements.sets.is_empty() {
            return Ok(());
        }
        let table = self.table.clone();
        let mut b = Batch::new(&table, self.seq);
        b.forward_elements(&elements, ttl);
        self.commit(b)
    }

    /// Removes the grants of `addr` to `services`, present or not.
    pub fn revoke(&mut self, addr: IpAddr, services: &[Service]) -> Result<(), FirewallError> {
        if services.is_empty() {
            return Ok(());
        }
        let (set, keys) = grant_keys(addr, services);
        let table = self.table.clone();
        let mut b = Batch::new(&table, self.seq);
        // The add makes the delete valid whether or not the grant existed.
        b.elements(set, &keys, Some(Duration::from_millis(1)), false);
        b.elements(set, &keys, None, true);
        self.commit(b)
    }

    /// Lists the live grants in the kernel.
    pub fn grants(&mut self) -> Result<Vec<Grant>, FirewallError> {
        let mut out = Vec::new();
        for set in [SET_GRANTS4, SET_GRANTS6] {
            let op = format!("list set {set}");
            self.seq = self.seq.wrapping_add(1);
            let seq = self.seq;
            let mut w = Writer::new();
            w.message(
                (NFNL_SUBSYS_NFTABLES << 8) | u16::from(NFT_MSG_GETSETELEM),
                NLM_F_REQUEST | NLM_F_DUMP,
                seq,
                NFPROTO_INET,
                0,
                |w| {
                    w.put_str(NFTA_SET_ELEM_LIST_TABLE, &self.table);
                    w.put_str(NFTA_SET_ELEM_LIST_SET, set);
                },
            );
            self.send(&op, &w.into_bytes())?;
            self.collect(&op, seq, |msg| {
                parse_elements(set, msg, &mut out).map_err(|what| FirewallError::Malformed {
                    op: format!("list set {set}"),
                    what,
                })
            })?;
        }
        Ok(out)
    }

    /// Every destination-NAT rule of the host's ruleset, in any table and
    /// family (Docker's `-p`, libvirt, Kubernetes NodePorts, a hand-written
    /// `dnat to`): traffic it forwards never passes the input hook, so
    /// Sesame's gate does not see it. Rules of legacy (x_tables) iptables
    /// are not visible here.
    pub fn dnat_rules(&mut self) -> Result<Vec<DnatRule>, FirewallError> {
        let op = "list the ruleset's DNAT rules";
        let mut out = Vec::new();
        self.dump(NFT_MSG_GETRULE, op, |msg| {
            if let Some(rule) = parse_dnat_rule(msg).map_err(|what| FirewallError::Malformed {
                op: op.to_string(),
                what,
            })? {
                out.push(rule);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Every chain and rule of the host's other tables (families ip, ip6,
    /// inet), for [`HostRuleset::blockers`].
    pub fn host_ruleset(&mut self) -> Result<HostRuleset, FirewallError> {
        let own = self.table.clone();
        let ours = |family: &str, table: &str| family == "inet" && table == own;
        let mut out = HostRuleset::default();
        self.dump(host::GET_CHAIN, "list the ruleset's chains", |msg| {
            if let Some(c) = host::parse_chain(msg).filter(|c| !ours(c.family, &c.table)) {
                out.chains.push(c);
            }
            Ok(())
        })?;
        self.dump(NFT_MSG_GETRULE, "list the ruleset's rules", |msg| {
            if let Some(r) = host::parse_rule(msg).filter(|r| !ours(r.family, &r.table)) {
                out.rules.push(r);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Dumps every object of message type `kind` (chains, rules) of every
    /// family, handing each message to `on_msg`.
    fn dump(
        &mut self,
        kind: u8,
        op: &str,
        on_msg: impl FnMut(&Msg<'_>) -> Result<(), FirewallError>,
    ) -> Result<(), FirewallError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut w = Writer::new();
        w.message(
            (NFNL_SUBSYS_NFTABLES << 8) | u16::from(kind),
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
            NFPROTO_UNSPEC,
            0,
            |_| {},
        );
        self.send(op, &w.into_bytes())?;
        self.collect(op, seq, on_msg)
    }

    /// Blocks `addr`'s flows to `services` (local) and through `forwards`
    /// for [`KILLED_BLOCK`] unless the address is granted again: what
    /// [`Firewall::delete_flows`] cuts must stay cut (conntrack would pick
    /// a cut flow's next packet up as established). One transaction, on
    /// the socket that owns the table.
    pub fn block_cut_flows(
        &mut self,
        addr: IpAddr,
        services: &[Service],
        forwards: &[Forward],
    ) -> Result<(), FirewallError> {
        let addr = canonical(addr);
        let (killed, keys) = {
            let (set, prefix) = grant_set_for(addr);
            let set = if set == SET_GRANTS4 {
                SET_KILLED4
            } else {
                SET_KILLED6
            };
            (
                set,
                services
                    .iter()
                    .map(|s| grant_key(&prefix, s))
                    .collect::<Vec<_>>(),
            )
        };
        let (killed_route, route_keys) = gateway::killed_route_elements(addr, forwards);
        let table = self.table.clone();
        let mut b = Batch::new(&table, self.seq);
        for (set, keys) in [(killed, &keys), (killed_route, &route_keys)] {
            b.elements(set, keys, Some(KILLED_BLOCK), false);
            b.elements(set, keys, None, true);
            b.elements(set, keys, Some(KILLED_BLOCK), false);
        }
        self.commit(b)
    }

    /// Cuts `addr`'s live flows to `services` (local) and through
    /// `forwards`: deletes their conntrack entries (a DNAT'd or redirected
    /// flow loses its translation and is answered with a reset). Call
    /// [`Firewall::block_cut_flows`] first. Conntrack is not part of the
    /// table, so any handle will do: a large conntrack table takes a while,
    /// and the daemon runs this away from its packet loop. Returns how many
    /// entries were deleted; those that ended meanwhile are no error.
    pub fn delete_flows(
        &mut self,
        addr: IpAddr,
        services: &[Service],
        forwards: &[Forward],
    ) -> Result<usize, FirewallError> {
        let addr = canonical(addr);
        // A flow's original destination port: the service's, a DNAT or
        // redirect's public port, a route's inner port.
        let mut ports: Vec<(Proto, u16)> = services.iter().map(|s| (s.proto, s.port)).collect();
        for f in forwards.iter().filter(|f| f.applies_to(addr)) {
            ports.push(match *f {
                Forward::Dnat {
                    proto, public_port, ..
                }
                | Forward::Redirect {
                    proto, public_port, ..
                } => (proto, public_port),
                Forward::Route { proto, inner, .. } => (proto, inner.port()),
            });
        }
        if ports.is_empty() {
            return Ok(0);
        }
        let op = format!("list the conntrack entries of {addr}");
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut w = Writer::new();
        w.message(
            (conntrack::NFNL_SUBSYS_CTNETLINK << 8) | conntrack::IPCTNL_MSG_CT_GET,
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
            NFPROTO_UNSPEC,
            0,
            |_| {},
        );
        self.send(&op, &w.into_bytes())?;
        let mut flows = Vec::new();
        self.collect(&op, seq, |msg| {
            if let Some(f) = conntrack::matching_flow(msg, addr, &ports).map_err(|m| {
                FirewallError::Malformed {
                    op: op.clone(),
                    what: m.0,
                }
            })? {
                flows.push(f);
            }
            Ok(())
        })?;
        let mut killed = 0;
        for flow in flows {
            let op = format!("delete a conntrack entry of {addr}");
            self.seq = self.seq.wrapping_add(1);
            let seq = self.seq;
            let mut w = Writer::new();
            w.message(
                (conntrack::NFNL_SUBSYS_CTNETLINK << 8) | conntrack::IPCTNL_MSG_CT_DELETE,
                NLM_F_REQUEST | NLM_F_ACK,
                seq,
                flow.family,
                0,
                |w| w.put(conntrack::CTA_TUPLE_ORIG | NLA_F_NESTED, &flow.tuple),
            );
            self.send(&op, &w.into_bytes())?;
            match self.collect(&op, seq, |_| Ok(())) {
                Ok(()) => killed += 1,
                Err(e) if e.errno() == Some(ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(killed)
    }

    /// Deletes the table and everything in it. Returns whether it existed.
    pub fn remove(&mut self) -> Result<bool, FirewallError> {
        let table = self.table.clone();
        let mut b = Batch::new(&table, self.seq);
        b.del_table();
        match self.commit(b) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A batch is one datagram, and netlink refuses one larger than the
    /// socket's send buffer: grow it (forced, as CAP_NET_ADMIN may) for a
    /// large ruleset. A failure shows up as the send's own error.
    fn fit_send_buffer(&mut self, len: usize) {
        const DEFAULT_SNDBUF: usize = 200 * 1024;
        let want = len + 64 * 1024;
        if want <= DEFAULT_SNDBUF.max(self.sndbuf) {
            return;
        }
        let fd = self.sock.as_fd();
        let forced =
            nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::SndBufForce, &want);
        if forced.is_err() {
            let _ = nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::SndBuf, &want);
        }
        self.sndbuf = want;
    }

    fn send(&mut self, op: &str, bytes: &[u8]) -> Result<(), FirewallError> {
        loop {
            match self.sock.send(bytes, 0) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(self.io_error(op, source)),
            }
        }
    }

    fn io_error(&self, op: &str, source: io::Error) -> FirewallError {
        if source.raw_os_error() == Some(Errno::EPERM as i32) {
            return FirewallError::PermissionDenied {
                op: op.to_string(),
                table: self.table.clone(),
            };
        }
        FirewallError::Io {
            op: op.to_string(),
            table: self.table.clone(),
            source,
        }
    }

    fn rejected(&self, op: &str, errno: i32, ext: Option<String>) -> FirewallError {
        if errno == Errno::EPERM as i32 {
            return FirewallError::PermissionDenied {
                op: op.to_string(),
                table: self.table.clone(),
            };
        }
        FirewallError::Rejected {
            op: op.to_string(),
            table: self.table.clone(),
            source: io::Error::from_raw_os_error(errno),
            detail: ext.map(|m| format!(" ({m})")).unwrap_or_default(),
        }
    }

    /// Sends a batch and waits for every acknowledgement; the first error
    /// (in message order) is returned.
    fn commit(&mut self, batch: Batch<'_>) -> Result<(), FirewallError> {
        let (bytes, msgs, begin_seq, last_seq) = batch.finish();
        self.seq = last_seq;
        let what = msgs.first().map_or("commit", |m| m.op.as_str()).to_string();
        let Some(bytes) = bytes else {
            return Err(FirewallError::TooLarge {
                op: what,
                table: self.table.clone(),
            });
        };
        self.fit_send_buffer(bytes.len());
        self.send(&what, &bytes)?;
        let mut acked = vec![false; msgs.len()];
        let mut first_error: Option<(usize, i32, Option<String>)> = None;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        while acked.iter().any(|a| !a) {
            let got = self.recv_some(&what, deadline, first_error.is_some())?;
            let Some(buf) = got else { break };
            let parsed = wire::messages(&buf).map_err(|m| FirewallError::Malformed {
                op: what.clone(),
                what: m.0,
            })?;
            for m in parsed {
                if m.ty != NLMSG_ERROR {
                    continue;
                }
                let e = wire::parse_error(&m).map_err(|x| FirewallError::Malformed {
                    op: what.clone(),
                    what: x.0,
                })?;
                if m.seq == begin_seq && e.error != 0 {
                    // The whole batch was refused (privilege, missing subsystem).
                    return Err(self.rejected(&what, -e.error, e.ext_msg));
                }
                if let Some(i) = msgs.iter().position(|p| p.seq == m.seq) {
                    acked[i] = true;
                    if e.error != 0 && first_error.as_ref().is_none_or(|(j, ..)| i < *j) {
                        first_error = Some((i, -e.error, e.ext_msg));
                    }
                }
            }
        }
        if let Some((i, errno, ext)) = first_error {
            return Err(self.rejected(&msgs[i].op, errno, ext));
        }
        if acked.iter().any(|a| !a) {
            return Err(FirewallError::Timeout {
                op: what,
                table: self.table.clone(),
                timeout_ms: REPLY_TIMEOUT.as_millis() as u64,
            });
        }
        Ok(())
    }

    /// Reads messages answering request `seq` until the final ACK or
    /// `NLMSG_DONE`, passing the others to `on_msg`.
    fn collect(
        &mut self,
        op: &str,
        seq: u32,
        mut on_msg: impl FnMut(&Msg<'_>) -> Result<(), FirewallError>,
    ) -> Result<(), FirewallError> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let Some(buf) = self.recv_some(op, deadline, false)? else {
                return Err(FirewallError::Timeout {
                    op: op.to_string(),
                    table: self.table.clone(),
                    timeout_ms: REPLY_TIMEOUT.as_millis() as u64,
                });
            };
            let parsed = wire::messages(&buf).map_err(|m| FirewallError::Malformed {
                op: op.to_string(),
                what: m.0,
            })?;
            for m in parsed {
                if m.seq != seq {
                    continue;
                }
                match m.ty {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let e = wire::parse_error(&m).map_err(|x| FirewallError::Malformed {
                            op: op.to_string(),
                            what: x.0,
                        })?;
                        if e.error == 0 {
                            return Ok(());
                        }
                        return Err(self.rejected(op, -e.error, e.ext_msg));
                    }
                    _ => on_msg(&m)?,
                }
            }
        }
    }

    /// Receives one datagram. Waits until `deadline`, or not at all when
    /// `drain_only`. `None` means nothing arrived.
    fn recv_some(
        &mut self,
        op: &str,
        deadline: Instant,
        drain_only: bool,
    ) -> Result<Option<Vec<u8>>, FirewallError> {
        loop {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, 0) {
                Ok(_) => return Ok(Some(self.buf.clone())),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if drain_only || left.is_zero() {
                        return Ok(None);
                    }
                    let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
                    let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
                    match nix::poll::poll(&mut fds, timeout) {
                        Ok(_) | Err(Errno::EINTR) => {}
                        Err(e) => return Err(self.io_error(op, e.into())),
                    }
                }
                Err(source) => return Err(self.io_error(op, source)),
            }
        }
    }
}

/// The core's firewall seam, on nf_tables.
impl sesame_core::ports::Firewall for Firewall {
    fn install(&mut self, ruleset: &Ruleset) -> Result<(), sesame_core::ports::PortError> {
        Firewall::install(self, ruleset)
            .map(drop)
            .map_err(sesame_core::ports::PortError::from_display)
    }

    fn grant(
        &mut self,
        addr: IpAddr,
        services: &[Service],
        ttl: Duration,
    ) -> Result<(), sesame_core::ports::PortError> {
        Firewall::grant(self, addr, services, ttl)
            .map_err(sesame_core::ports::PortError::from_display)
    }

    fn revoke(
        &mut self,
        addr: IpAddr,
        services: &[Service],
    ) -> Result<(), sesame_core::ports::PortError> {
        Firewall::revoke(self, addr, services).map_err(sesame_core::ports::PortError::from_display)
    }

    fn forward(
        &mut self,
        addr: IpAddr,
        forwards: &[Forward],
        ttl: Duration,
    ) -> Result<(), sesame_core::ports::PortError> {
        Firewall::forward(self, addr, forwards, ttl)
            .map_err(sesame_core::ports::PortError::from_display)
    }

    fn unforward(
        &mut self,
        addr: IpAddr,
        forwards: &[Forward],
    ) -> Result<(), sesame_core::ports::PortError> {
        Firewall::unforward(self, addr, forwards)
            .map_err(sesame_core::ports::PortError::from_display)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::timeout_ms;
    use proptest::prelude::*;

    /// Every attribute of `buf`, nested ones included, lies inside its
    /// parent: what the kernel checks first.
    fn well_formed(buf: &[u8], depth: usize) -> bool {
        wire::attrs(buf).all(|a| match a {
            Ok((ty, body)) => depth == 0 || ty & NLA_F_NESTED == 0 || well_formed(body, depth - 1),
            Err(_) => false,
        })
    }

    fn ports() -> impl Strategy<Value = Vec<u16>> {
        prop_oneof![
            prop::collection::vec(1u16.., 0..64),
            (1u16..=65535, 0usize..=65535)
                .prop_map(|(a, n)| { (a..=a.saturating_add(n as u16)).collect::<Vec<u16>>() }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Any ruleset, up to every port in every set, encodes without a
        /// panic into messages whose attributes are all well formed.
        #[test]
        fn any_ruleset_encodes(
            syn in ports(),
            any in ports(),
            udp in ports(),
            guard in ports(),
            ifaces in prop::collection::vec("[a-z0-9]{1,15}", 0..300),
        ) {
            let rules = Ruleset {
                nflog_group: 7,
                knock_tcp_syn: syn,
                knock_tcp_any: any,
                knock_udp: udp,
                guard_tcp_syn: guard.clone(),
                guard_udp: guard,
                interfaces: ifaces,
                ..Ruleset::default()
            };
            let mut b = Batch::new("sesame", 0);
            b.ruleset(&rules, true);
            let (bytes, ..) = b.finish();
            let bytes = bytes.expect("encodable");
            prop_assert_eq!(encode_install("sesame", &rules).unwrap(), bytes.len());
            let msgs = wire::messages(&bytes).unwrap();
            for m in msgs {
                prop_assert!(m.payload.len() >= 4);
                prop_assert!(well_formed(&m.payload[4..], 6));
            }
        }
    }

    #[test]
    fn table_names_are_checked() {
        assert!(validate_table_name("sesame").is_ok());
        assert!(validate_table_name("sesame-test_1.x").is_ok());
        for bad in ["", "1abc", "a b", "a;b", &"x".repeat(65)] {
            let e = validate_table_name(bad).unwrap_err();
            assert!(e.to_string().contains("invalid nftables table name"), "{e}");
        }
    }

    #[test]
    fn batch_is_framed_and_acked_per_message() {
        let mut b = Batch::new("t", 10);
        b.ruleset(&Ruleset::default(), true);
        let n = b.msgs.len();
        let (bytes, msgs, begin, last) = b.finish();
        let bytes = bytes.unwrap();
        assert_eq!(begin, 11);
        let parsed = wire::messages(&bytes).unwrap();
        assert_eq!(parsed.len(), n + 2);
        assert_eq!(parsed[0].ty, NFNL_MSG_BATCH_BEGIN);
        assert_eq!(parsed[n + 1].ty, NFNL_MSG_BATCH_END);
        for (p, m) in parsed[1..=n].iter().zip(&msgs) {
            assert_eq!(p.seq, m.seq);
            assert_ne!(p.flags & NLM_F_ACK, 0);
        }
        // Empty config sets get no element message, and no guard or SPA
        // port means no rules for them; the table, 15 sets, 11 flushes, 2
        // chains, 2 chain flushes and 10 rules remain.
        assert_eq!(n, 1 + 15 + 11 + 2 + 2 + 10);
        assert_eq!(last, 10 + n as u32 + 2);
    }

    #[test]
    fn element_timeouts_are_at_least_one_millisecond() {
        assert_eq!(timeout_ms(Duration::ZERO), 1);
        assert_eq!(timeout_ms(Duration::from_secs(30)), 30_000);
    }
}
