//! The backend-neutral description of what the kernel must enforce, built
//! from the doors: which knocks to observe, which services to close. A
//! firewall adapter (`sesame-nftables`) turns it into its own rules.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::{Door, Forward, Proto, Service, TcpFlags};

/// The firewall table name used when the configuration does not choose one.
pub const DEFAULT_TABLE: &str = "sesame";

/// What the kernel ruleset must enforce, derived from the doors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// NFLOG group knocks are logged to.
    pub nflog_group: u16,
    /// TCP knock ports where only SYN-without-ACK packets are logged.
    pub knock_tcp_syn: Vec<u16>,
    /// TCP knock ports where every packet is logged (custom flag predicates).
    pub knock_tcp_any: Vec<u16>,
    /// UDP knock ports.
    pub knock_udp: Vec<u16>,
    /// TCP guard ports: connection attempts are logged (not dropped), so
    /// a sweep that hits them resets the sweeper's knock attempts.
    pub guard_tcp_syn: Vec<u16>,
    /// UDP guard ports, logged and not dropped.
    pub guard_udp: Vec<u16>,
    /// UDP ports of Sesame SPA doors (also in `knock_udp`): datagrams whose
    /// length, magic or version cannot be SPA are dropped in the kernel.
    pub spa_udp: Vec<u16>,
    /// Services closed to everyone without a grant.
    pub protected: Vec<Service>,
    /// Knocks count only when they arrive on one of these interfaces (by
    /// name, so interfaces may come and go); empty means every interface.
    pub interfaces: Vec<String>,
    /// Non-local destination addresses knocks may be sent to (knockd's
    /// `Target`), besides the host's own addresses.
    pub targets: Vec<IpAddr>,
    /// Every door's forwards (gateway mode), sorted and de-duplicated:
    /// their public ports are in `protected`, and their inner services are
    /// closed in the forward path unless granted.
    pub forwards: Vec<Forward>,
    /// The gateway's chains are needed even without `forwards` (fwknop NAT
    /// requests name theirs at run time).
    pub gateway: bool,
}

/// Builds the ruleset for `doors`, whose `sequence` holds the knocks to
/// observe (see [`super::EngineDoor::observed_knocks`]). TCP knock ports
/// whose doors all use the default `syn,!ack` predicate are filtered in the
/// kernel, so only connection attempts reach the daemon; ports used with
/// custom flags log every TCP packet and leave the flag test to the core.
pub fn build(doors: &[Door], nflog_group: u16, interfaces: &[String]) -> Ruleset {
    let mut tcp_any = BTreeSet::new();
    let mut tcp_syn = BTreeSet::new();
    let mut udp = BTreeSet::new();
    let mut protected = BTreeSet::new();
    for door in doors {
        for knock in &door.sequence {
            match knock.proto {
                Proto::Udp => {
                    udp.insert(knock.port);
                }
                Proto::Tcp if door.tcp_flags == TcpFlags::SYN_NOT_ACK => {
                    tcp_syn.insert(knock.port);
                }
                Proto::Tcp => {
                    tcp_any.insert(knock.port);
                }
            }
        }
        protected.extend(door.services.iter().copied());
        // A forward's public port answers nobody without a grant.
        protected.extend(door.forwards.iter().filter_map(Forward::public_service));
    }
    tcp_syn.retain(|p| !tcp_any.contains(p));
    // Guard ports are logged without being dropped; a port that is also a
    // knock is a knock, and a protected service needs no observing.
    let mut guard_tcp = BTreeSet::new();
    let mut guard_udp = BTreeSet::new();
    for range in doors.iter().flat_map(Door::guard_ranges) {
        for port in range.ports() {
            let service = Service {
                proto: range.proto,
                port,
            };
            if protected.contains(&service) {
                continue;
            }
            match range.proto {
                Proto::Tcp if !tcp_syn.contains(&port) && !tcp_any.contains(&port) => {
                    guard_tcp.insert(port);
                }
                Proto::Udp if !udp.contains(&port) => {
                    guard_udp.insert(port);
                }
                _ => {}
            }
        }
    }
    let targets: BTreeSet<IpAddr> = doors.iter().filter_map(|d| d.target).collect();
    let forwards: BTreeSet<Forward> = doors
        .iter()
        .flat_map(|d| d.forwards.iter().copied())
        .collect();
    Ruleset {
        nflog_group,
        interfaces: interfaces.to_vec(),
        targets: targets.into_iter().collect(),
        knock_tcp_syn: tcp_syn.into_iter().collect(),
        knock_tcp_any: tcp_any.into_iter().collect(),
        knock_udp: udp.into_iter().collect(),
        guard_tcp_syn: guard_tcp.into_iter().collect(),
        guard_udp: guard_udp.into_iter().collect(),
        spa_udp: Vec::new(),
        protected: protected.into_iter().collect(),
        forwards: forwards.into_iter().collect(),
        gateway: false,
    }
}
