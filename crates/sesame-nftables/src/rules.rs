//! The nf_tables objects Sesame installs, encoded as netlink attributes:
//! sets, base chains, rule expressions and set-element keys.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sesame_core::{Proto, Service};

use crate::sys::*;
use crate::wire::Writer;
use sesame_core::engine::ruleset::Ruleset;

/// Grants from IPv4 sources: `ipv4_addr . inet_proto . inet_service`.
pub(crate) const SET_GRANTS4: &str = "grants4";
/// Grants from IPv6 sources: `ipv6_addr . inet_proto . inet_service`.
pub(crate) const SET_GRANTS6: &str = "grants6";
/// Flows cut by `revoke --kill-flows` from IPv4 sources, blocked while
/// their peers give up (unless granted again): `ipv4_addr . inet_proto .
/// inet_service`. Conntrack alone would pick a cut flow's next packet up
/// as established again.
pub(crate) const SET_KILLED4: &str = "killed4";
/// The same for IPv6 sources.
pub(crate) const SET_KILLED6: &str = "killed6";
/// Protected services: `inet_proto . inet_service`.
pub(crate) const SET_PROTECTED: &str = "protected";
/// TCP knock ports, SYN-only logging.
pub(crate) const SET_KNOCK_TCP_SYN: &str = "knock_tcp_syn";
/// TCP knock ports, every packet logged.
pub(crate) const SET_KNOCK_TCP_ANY: &str = "knock_tcp_any";
/// UDP knock ports.
pub(crate) const SET_KNOCK_UDP: &str = "knock_udp";
/// TCP guard ports: SYNs are logged, never dropped.
pub(crate) const SET_GUARD_TCP_SYN: &str = "guard_tcp_syn";
/// UDP guard ports: logged, never dropped.
pub(crate) const SET_GUARD_UDP: &str = "guard_udp";
/// UDP ports of Sesame SPA doors: datagrams that cannot be SPA are dropped
/// in the kernel.
pub(crate) const SET_SPA_UDP: &str = "spa_udp";
/// UDP lengths (header included) a Sesame SPA datagram can have.
pub(crate) const SET_SPA_LEN: &str = "spa_len";
/// Interfaces knocks must arrive on (used only when non-empty).
pub(crate) const SET_KNOCK_IFACES: &str = "knock_ifaces";
/// Non-local IPv4 destinations that doors listen on (knockd's `Target`).
pub(crate) const SET_TARGETS4: &str = "targets4";
/// Non-local IPv6 destinations that doors listen on.
pub(crate) const SET_TARGETS6: &str = "targets6";

/// Chain hooked at prerouting, before conntrack: logs and drops knocks.
pub(crate) const CHAIN_OBSERVE: &str = "observe";
/// Chain hooked at input: drops new connections to protected services
/// unless granted.
pub(crate) const CHAIN_GATE: &str = "gate";

/// `NF_IP_PRI_RAW`: after defragmentation (-400), before conntrack (-200).
pub(crate) const OBSERVE_PRIORITY: i32 = -300;
/// Just before the usual `filter` priority (0).
pub(crate) const GATE_PRIORITY: i32 = -10;

pub(crate) const fn concat_type(types: &[u32]) -> u32 {
    let mut t = 0;
    let mut i = 0;
    while i < types.len() {
        t = (t << NFT_TYPE_BITS) | types[i];
        i += 1;
    }
    t
}

/// `ipv4_addr . inet_proto . inet_service`: an IPv4 source and a service.
pub(crate) const V4_SERVICE_KEY: u32 = concat_type(&[
    NFT_TYPE_IPADDR,
    NFT_TYPE_INET_PROTOCOL,
    NFT_TYPE_INET_SERVICE,
]);
/// `ipv6_addr . inet_proto . inet_service`.
pub(crate) const V6_SERVICE_KEY: u32 = concat_type(&[
    NFT_TYPE_IP6ADDR,
    NFT_TYPE_INET_PROTOCOL,
    NFT_TYPE_INET_SERVICE,
]);

/// A set of (address, service) keys, of IPv6 addresses when `v6`, with
/// per-element timeouts when `timeout`.
pub(crate) const fn address_service_set(name: &'static str, v6: bool, timeout: bool) -> SetSpec {
    SetSpec {
        name,
        key_type: if v6 { V6_SERVICE_KEY } else { V4_SERVICE_KEY },
        key_len: if v6 { 24 } else { 12 },
        flags: if timeout { NFT_SET_TIMEOUT } else { 0 },
        data: None,
    }
}

/// Declaration of one named set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SetSpec {
    pub name: &'static str,
    pub key_type: u32,
    pub key_len: u32,
    pub flags: u32,
    /// A map's data: (type, length).
    pub data: Option<(u32, u32)>,
}

/// The sets, in creation order.
pub(crate) const SETS: [SetSpec; 15] = [
    address_service_set(SET_GRANTS4, false, true),
    address_service_set(SET_GRANTS6, true, true),
    SetSpec {
        name: SET_PROTECTED,
        key_type: concat_type(&[NFT_TYPE_INET_PROTOCOL, NFT_TYPE_INET_SERVICE]),
        key_len: 8,
        flags: 0,
        data: None,
    },
    SetSpec {
        name: SET_KNOCK_TCP_SYN,
        key_type: NFT_TYPE_INET_SERVICE,
        key_len: 2,
        flags: 0,
        data: None,
    },
    SetSpec {
        name: SET_KNOCK_TCP_ANY,
        key_type: NFT_TYPE_INET_SERVICE,
        key_len: 2,
        flags: 0,
        data: None,
    },
    SetSpec {
        name: SET_KNOCK_UDP,
        key_type: NFT_TYPE_INET_SERVICE,
        key_len: 2,
        flags: 0,
        data: None,
    },
    SetSpec {
        name: SET_GUARD_TCP_SYN,
        key_type: NFT_TYPE_INET_SERVICE,
        key_len: 2,
        flags: 0,
        data: None,
    },
    SetSpec {
        name: SET_GUARD_UDP,
        key_type: NFT_TYPE_INET_SERVICE,
        key_len: 2,
        flags: 0,
        data: None,
    },
    SetSpec {
        name: SET_SPA_UDP,
        key_type: NFT_TYPE_INET_SERVICE,
        key_len: 2,
        flags: 0,
        data: None,
    },
    SetSpec {
        name: SET_SPA_LEN,
        key_type: NFT_TYPE_INET_SERVICE,
        key_len: 2,
        flags: 0,
        data: None,
    },
    SetSpec {
        name: SET_KNOCK_IFACES,
        key_type: NFT_TYPE_IFNAME,
        key_len: IFNAMSIZ as u32,
        flags: 0,
        data: None,
    },
    SetSpec {
        name: SET_TARGETS4,
        key_type: NFT_TYPE_IPADDR,
        key_len: 4,
        flags: 0,
        data: None,
    },
    SetSpec {
        name: SET_TARGETS6,
        key_type: NFT_TYPE_IP6ADDR,
        key_len: 16,
        flags: 0,
        data: None,
    },
    address_service_set(SET_KILLED4, false, true),
    address_service_set(SET_KILLED6, true, true),
];

/// Attributes of a NEWSET message.
pub(crate) fn set_attrs(w: &mut Writer, table: &str, s: &SetSpec, id: u32) {
    w.put_str(NFTA_SET_TABLE, table);
    w.put_str(NFTA_SET_NAME, s.name);
    if s.flags != 0 {
        w.put_be32(NFTA_SET_FLAGS, s.flags);
    }
    w.put_be32(NFTA_SET_KEY_TYPE, s.key_type);
    w.put_be32(NFTA_SET_KEY_LEN, s.key_len);
    if let Some((data_type, data_len)) = s.data {
        w.put_be32(NFTA_SET_DATA_TYPE, data_type);
        w.put_be32(NFTA_SET_DATA_LEN, data_len);
    }
    w.put_be32(NFTA_SET_ID, id);
}

/// A base chain declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChainSpec {
    pub name: &'static str,
    pub hook: u32,
    pub priority: i32,
    /// `filter` or `nat`.
    pub kind: &'static str,
}

/// The two base chains of every ruleset, both `type filter`, `policy accept`.
pub(crate) const CHAINS: [ChainSpec; 2] = [
    ChainSpec {
        name: CHAIN_OBSERVE,
        hook: NF_INET_PRE_ROUTING,
        priority: OBSERVE_PRIORITY,
        kind: "filter",
    },
    ChainSpec {
        name: CHAIN_GATE,
        hook: NF_INET_LOCAL_IN,
        priority: GATE_PRIORITY,
        kind: "filter",
    },
];

/// Attributes of a NEWCHAIN message.
pub(crate) fn chain_attrs(w: &mut Writer, table: &str, c: &ChainSpec) {
    w.put_str(NFTA_CHAIN_TABLE, table);
    w.put_str(NFTA_CHAIN_NAME, c.name);
    w.nest(NFTA_CHAIN_HOOK, |w| {
        w.put_be32(NFTA_HOOK_HOOKNUM, c.hook);
        w.put_be32(NFTA_HOOK_PRIORITY, c.priority as u32);
    });
    w.put_be32(NFTA_CHAIN_POLICY, NF_ACCEPT);
    w.put_str(NFTA_CHAIN_TYPE, c.kind);
}

/// One nf_tables expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    Meta {
        key: u32,
        dreg: u32,
    },
    Payload {
        base: u32,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    Cmp {
        sreg: u32,
        op: u32,
        data: Vec<u8>,
    },
    Bitwise {
        sreg: u32,
        dreg: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    Lookup {
        set: &'static str,
        sreg: u32,
    },
    /// A lookup that matches when the key is *not* in the set.
    LookupNot {
        set: &'static str,
        sreg: u32,
    },
    /// A map lookup: the data of the key's element goes to `dreg`.
    LookupMap {
        set: &'static str,
        sreg: u32,
        dreg: u32,
    },
    /// `dnat` to the address in `addr_reg` and port in `proto_reg`.
    Dnat {
        family: u8,
        addr_reg: u32,
        proto_reg: u32,
    },
    /// `redirect` to the local port in `proto_reg`.
    Redirect {
        proto_reg: u32,
    },
    /// `masquerade`.
    Masquerade,
    Fib {
        dreg: u32,
        result: u32,
        flags: u32,
    },
    Ct {
        key: u32,
        dreg: u32,
    },
    Log {
        group: u16,
    },
    Verdict(u32),
}

impl Expr {
    fn name(&self) -> &'static str {
        match self {
            Expr::Meta { .. } => "meta",
            Expr::Payload { .. } => "payload",
            Expr::Cmp { .. } => "cmp",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Lookup { .. } | Expr::LookupNot { .. } | Expr::LookupMap { .. } => "lookup",
            Expr::Dnat { .. } => "nat",
            Expr::Redirect { .. } => "redir",
            Expr::Masquerade => "masq",
            Expr::Fib { .. } => "fib",
            Expr::Ct { .. } => "ct",
            Expr::Log { .. } => "log",
            Expr::Verdict(_) => "immediate",
        }
    }

    /// Writes this expression as one `NFTA_LIST_ELEM` of a rule's
    /// `NFTA_RULE_EXPRESSIONS`.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.nest(NFTA_LIST_ELEM, |w| {
            w.put_str(NFTA_EXPR_NAME, self.name());
            w.nest(NFTA_EXPR_DATA, |w| self.encode_data(w));
        });
    }

    fn encode_data(&self, w: &mut Writer) {
        let value = |w: &mut Writer, ty: u16, data: &[u8]| {
            w.nest(ty, |w| w.put(NFTA_DATA_VALUE, data));
        };
        match self {
            Expr::Meta { key, dreg } => {
                w.put_be32(NFTA_META_KEY, *key);
                w.put_be32(NFTA_META_DREG, *dreg);
            }
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                w.put_be32(NFTA_PAYLOAD_DREG, *dreg);
                w.put_be32(NFTA_PAYLOAD_BASE, *base);
                w.put_be32(NFTA_PAYLOAD_OFFSET, *offset);
                w.put_be32(NFTA_PAYLOAD_LEN, *len);
            }
            Expr::Cmp { sreg, op, data } => {
                w.put_be32(NFTA_CMP_SREG, *sreg);
                w.put_be32(NFTA_CMP_OP, *op);
                value(w, NFTA_CMP_DATA, data);
            }
            Expr::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
            } => {
                w.put_be32(NFTA_BITWISE_SREG, *sreg);
                w.put_be32(NFTA_BITWISE_DREG, *dreg);
                w.put_be32(NFTA_BITWISE_LEN, mask.len() as u32);
                value(w, NFTA_BITWISE_MASK, mask);
                value(w, NFTA_BITWISE_XOR, xor);
            }
            Expr::Lookup { set, sreg } => {
                w.put_str(NFTA_LOOKUP_SET, set);
                w.put_be32(NFTA_LOOKUP_SREG, *sreg);
            }
            Expr::LookupNot { set, sreg } => {
                w.put_str(NFTA_LOOKUP_SET, set);
                w.put_be32(NFTA_LOOKUP_SREG, *sreg);
                w.put_be32(NFTA_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
            }
            Expr::LookupMap { set, sreg, dreg } => {
                w.put_str(NFTA_LOOKUP_SET, set);
                w.put_be32(NFTA_LOOKUP_SREG, *sreg);
                w.put_be32(NFTA_LOOKUP_DREG, *dreg);
            }
            Expr::Dnat {
                family,
                addr_reg,
                proto_reg,
            } => {
                w.put_be32(NFTA_NAT_TYPE, NFT_NAT_DNAT);
                w.put_be32(NFTA_NAT_FAMILY, u32::from(*family));
                w.put_be32(NFTA_NAT_REG_ADDR_MIN, *addr_reg);
                w.put_be32(NFTA_NAT_REG_PROTO_MIN, *proto_reg);
                w.put_be32(
                    NFTA_NAT_FLAGS,
                    NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED,
                );
            }
            Expr::Masquerade => {}
            Expr::Redirect { proto_reg } => {
                w.put_be32(NFTA_REDIR_REG_PROTO_MIN, *proto_reg);
                w.put_be32(NFTA_REDIR_FLAGS, NF_NAT_RANGE_PROTO_SPECIFIED);
            }
            Expr::Fib {
                dreg,
                result,
                flags,
            } => {
                w.put_be32(NFTA_FIB_DREG, *dreg);
                w.put_be32(NFTA_FIB_RESULT, *result);
                w.put_be32(NFTA_FIB_FLAGS, *flags);
            }
            Expr::Ct { key, dreg } => {
                w.put_be32(NFTA_CT_KEY, *key);
                w.put_be32(NFTA_CT_DREG, *dreg);
            }
            Expr::Log { group } => {
                w.put_be16(NFTA_LOG_GROUP, *group);
            }
            Expr::Verdict(code) => {
                w.put_be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
                w.nest(NFTA_IMMEDIATE_DATA, |w| {
                    w.nest(NFTA_DATA_VERDICT, |w| w.put_be32(NFTA_VERDICT_CODE, *code));
                });
            }
        }
    }
}

// ---- building blocks ---------------------------------------------------------

/// `fib daddr type local`
pub(crate) fn fib_daddr_local() -> [Expr; 2] {
    [
        Expr::Fib {
            dreg: NFT_REG_1,
            result: NFT_FIB_RESULT_ADDRTYPE,
            flags: NFTA_FIB_F_DADDR,
        },
        Expr::Cmp {
            sreg: NFT_REG_1,
            op: NFT_CMP_EQ,
            data: RTN_LOCAL.to_ne_bytes().to_vec(),
        },
    ]
}

/// `meta l4proto <proto>`
fn l4proto_is(proto: u8) -> [Expr; 2] {
    [
        Expr::Meta {
            key: NFT_META_L4PROTO,
            dreg: NFT_REG_1,
        },
        Expr::Cmp {
            sreg: NFT_REG_1,
            op: NFT_CMP_EQ,
            data: vec![proto],
        },
    ]
}

/// `meta nfproto <family>`
pub(crate) fn nfproto_is(family: u8) -> [Expr; 2] {
    [
        Expr::Meta {
            key: NFT_META_NFPROTO,
            dreg: NFT_REG_1,
        },
        Expr::Cmp {
            sreg: NFT_REG_1,
            op: NFT_CMP_EQ,
            data: vec![family],
        },
    ]
}

/// `th dport` loaded into `dreg`.
pub(crate) fn dport(dreg: u32) -> Expr {
    Expr::Payload {
        base: NFT_PAYLOAD_TRANSPORT_HEADER,
        offset: 2,
        len: 2,
        dreg,
    }
}

/// `th dport @set` (the transport protocol must be checked before).
fn dport_in(set: &'static str) -> [Expr; 2] {
    [
        dport(NFT_REG_1),
        Expr::Lookup {
            set,
            sreg: NFT_REG_1,
        },
    ]
}

/// `tcp flags & (syn | ack) == syn`
fn tcp_syn_without_ack() -> [Expr; 3] {
    const SYN: u8 = sesame_core::door::tcp_flag::SYN;
    const ACK: u8 = sesame_core::door::tcp_flag::ACK;
    [
        Expr::Payload {
            base: NFT_PAYLOAD_TRANSPORT_HEADER,
            offset: 13,
            len: 1,
            dreg: NFT_REG_1,
        },
        Expr::Bitwise {
            sreg: NFT_REG_1,
            dreg: NFT_REG_1,
            mask: vec![SYN | ACK],
            xor: vec![0],
        },
        Expr::Cmp {
            sreg: NFT_REG_1,
            op: NFT_CMP_EQ,
            data: vec![SYN],
        },
    ]
}

/// `<saddr> . meta l4proto . th dport @set`, with the address loaded into
/// consecutive 32-bit registers starting at `NFT_REG32_00` and each further
/// field in the next free one.
fn grant_lookup(family: u8) -> Vec<Expr> {
    let set = match family {
        NFPROTO_IPV4 => SET_GRANTS4,
        _ => SET_GRANTS6,
    };
    source_service_lookup(family, set)
}

/// `<saddr> . meta l4proto . th dport @set` for any set of that shape.
fn source_service_lookup(family: u8, set: &'static str) -> Vec<Expr> {
    let (offset, len) = match family {
        NFPROTO_IPV4 => (12, 4),
        _ => (8, 16),
    };
    let proto_reg = NFT_REG32_00 + len / 4;
    vec![
        Expr::Payload {
            base: NFT_PAYLOAD_NETWORK_HEADER,
            offset,
            len,
            dreg: NFT_REG32_00,
        },
        Expr::Meta {
            key: NFT_META_L4PROTO,
            dreg: proto_reg,
        },
        dport(proto_reg + 1),
        Expr::Lookup {
            set,
            sreg: NFT_REG32_00,
        },
    ]
}

/// `meta iifname @knock_ifaces`
fn iifname_in_set() -> [Expr; 2] {
    [
        Expr::Meta {
            key: NFT_META_IIFNAME,
            dreg: NFT_REG_1,
        },
        Expr::Lookup {
            set: SET_KNOCK_IFACES,
            sreg: NFT_REG_1,
        },
    ]
}

/// `meta nfproto <family> <ip|ip6> daddr @<set>`
fn daddr_in(family: u8, set: &'static str) -> Vec<Expr> {
    let (offset, len) = if family == NFPROTO_IPV4 {
        (16, 4)
    } else {
        (24, 16)
    };
    let mut v = nfproto_is(family).to_vec();
    v.push(Expr::Payload {
        base: NFT_PAYLOAD_NETWORK_HEADER,
        offset,
        len,
        dreg: NFT_REG_1,
    });
    v.push(Expr::Lookup {
        set,
        sreg: NFT_REG_1,
    });
    v
}

/// The rules of the `observe` chain, in order. Knocks addressed to a local
/// address count; so do knocks to a door's `target` (a routed or virtual
/// address) when any door has one. With interfaces configured, only knocks
/// arriving on them count.
pub(crate) fn observe_rules(rules: &Ruleset) -> Vec<Vec<Expr>> {
    const TCP: u8 = Proto::Tcp.number();
    const UDP: u8 = Proto::Udp.number();
    let log = Expr::Log {
        group: rules.nflog_group,
    };
    let drop = Expr::Verdict(NF_DROP);
    let mut destinations: Vec<Vec<Expr>> = vec![fib_daddr_local().to_vec()];
    if rules.targets.iter().any(IpAddr::is_ipv4) {
        destinations.push(daddr_in(NFPROTO_IPV4, SET_TARGETS4));
    }
    if rules.targets.iter().any(IpAddr::is_ipv6) {
        destinations.push(daddr_in(NFPROTO_IPV6, SET_TARGETS6));
    }
    let mut out = Vec::new();
    for dest in destinations {
        let prefix = |proto: u8, set: &'static str| -> Vec<Expr> {
            let mut v = Vec::new();
            if !rules.interfaces.is_empty() {
                v.extend(iifname_in_set());
            }
            v.extend(dest.iter().cloned());
            v.extend(l4proto_is(proto));
            v.extend(dport_in(set));
            v
        };
        let mut syn_log = prefix(TCP, SET_KNOCK_TCP_SYN);
        syn_log.extend(tcp_syn_without_ack());
        syn_log.push(log.clone());

        let mut syn_drop = prefix(TCP, SET_KNOCK_TCP_SYN);
        syn_drop.push(drop.clone());

        let mut any = prefix(TCP, SET_KNOCK_TCP_ANY);
        any.push(log.clone());
        any.push(drop.clone());

        let mut udp = prefix(UDP, SET_KNOCK_UDP);
        udp.push(log.clone());
        udp.push(drop.clone());
        out.extend([syn_log, syn_drop, any]);
        // On SPA ports, what cannot be a Sesame SPA datagram (length, magic,
        // version at fixed offsets) is dropped here, before it costs the
        // daemon anything.
        if !rules.spa_udp.is_empty() {
            // `th payload[offset, len] <test>` on an SPA port: drop.
            let spa_drop = |offset: u32, len: u32, test: Expr| -> Vec<Expr> {
                let mut r = prefix(UDP, SET_SPA_UDP);
                r.push(Expr::Payload {
                    base: NFT_PAYLOAD_TRANSPORT_HEADER,
                    offset,
                    len,
                    dreg: NFT_REG_1,
                });
                r.push(test);
                r.push(drop.clone());
                r
            };
            let cmp = |op: u32, data: &[u8]| Expr::Cmp {
                sreg: NFT_REG_1,
                op,
                data: data.to_vec(),
            };
            // UDP length, magic, version (1 or 2) at fixed offsets.
            let bad_len = spa_drop(
                4,
                2,
                Expr::LookupNot {
                    set: SET_SPA_LEN,
                    sreg: NFT_REG_1,
                },
            );
            let bad_magic = spa_drop(8, 3, cmp(NFT_CMP_NEQ, b"SSM"));
            let bad_version = spa_drop(11, 1, cmp(NFT_CMP_GT, &[2]));
            let zero_version = spa_drop(11, 1, cmp(NFT_CMP_EQ, &[0]));
            out.extend([bad_len, bad_magic, bad_version, zero_version]);
        }
        out.push(udp);
        // Guards are observed, not dropped: they may hold real services,
        // and a sweep hitting them is all the daemon needs to see.
        if !rules.guard_tcp_syn.is_empty() {
            let mut guard = prefix(TCP, SET_GUARD_TCP_SYN);
            guard.extend(tcp_syn_without_ack());
            guard.push(log.clone());
            out.push(guard);
        }
        if !rules.guard_udp.is_empty() {
            let mut guard = prefix(UDP, SET_GUARD_UDP);
            guard.push(log.clone());
            out.push(guard);
        }
    }
    out
}

/// `ct <key> & <bits> != 0`: any of `bits` set in the conntrack field
/// `key` (`state`, `status`).
pub(crate) fn ct_bits_set(key: u32, bits: u32) -> [Expr; 3] {
    [
        Expr::Ct {
            key,
            dreg: NFT_REG_1,
        },
        Expr::Bitwise {
            sreg: NFT_REG_1,
            dreg: NFT_REG_1,
            mask: bits.to_ne_bytes().to_vec(),
            xor: 0u32.to_ne_bytes().to_vec(),
        },
        Expr::Cmp {
            sreg: NFT_REG_1,
            op: NFT_CMP_NEQ,
            data: 0u32.to_ne_bytes().to_vec(),
        },
    ]
}

/// `ct state established accept`.
pub(crate) fn established() -> Vec<Expr> {
    // Not RELATED: a conntrack helper's expectation (FTP, SIP, …) would let
    // a new connection to a protected port in without a grant. ICMP errors,
    // the one related traffic that matters, carry no port and never meet
    // the `protected` drop below.
    let mut rule = ct_bits_set(NFT_CT_STATE, NF_CT_STATE_ESTABLISHED).to_vec();
    rule.push(Expr::Verdict(NF_ACCEPT));
    rule
}

/// `<key> @killed` and not `<key> @granted` (the key loaded by the
/// lookups before): a cut flow's packets, unless granted again.
pub(crate) fn killed_not_granted(mut lookup_killed: Vec<Expr>, granted: &'static str) -> Vec<Expr> {
    lookup_killed.push(Expr::LookupNot {
        set: granted,
        sreg: NFT_REG32_00,
    });
    lookup_killed.push(Expr::Verdict(NF_DROP));
    lookup_killed
}

/// The rules of the `gate` chain, in order.
pub(crate) fn gate_rules() -> Vec<Vec<Expr>> {
    let killed = |family: u8, killed: &'static str, granted: &'static str| {
        let mut v = nfproto_is(family).to_vec();
        v.extend(source_service_lookup(family, killed));
        killed_not_granted(v, granted)
    };
    let established = established();
    let granted = |family: u8| -> Vec<Expr> {
        let mut v = Vec::new();
        v.extend(nfproto_is(family));
        v.extend(grant_lookup(family));
        v.push(Expr::Verdict(NF_ACCEPT));
        v
    };

    let protected = vec![
        Expr::Meta {
            key: NFT_META_L4PROTO,
            dreg: NFT_REG32_00,
        },
        dport(NFT_REG32_00 + 1),
        Expr::Lookup {
            set: SET_PROTECTED,
            sreg: NFT_REG32_00,
        },
        Expr::Verdict(NF_DROP),
    ];

    vec![
        killed(NFPROTO_IPV4, SET_KILLED4, SET_GRANTS4),
        killed(NFPROTO_IPV6, SET_KILLED6, SET_GRANTS6),
        established,
        granted(NFPROTO_IPV4),
        granted(NFPROTO_IPV6),
        protected,
    ]
}

/// Attributes of a NEWRULE message.
pub(crate) fn rule_attrs(w: &mut Writer, table: &str, chain: &str, exprs: &[Expr]) {
    w.put_str(NFTA_RULE_TABLE, table);
    w.put_str(NFTA_RULE_CHAIN, chain);
    w.nest(NFTA_RULE_EXPRESSIONS, |w| {
        for e in exprs {
            e.encode(w);
        }
    });
}

// ---- set element keys --------------------------------------------------------

/// UDP lengths (8-byte header included) of Sesame SPA datagrams: symmetric
/// (124), public-key version 1 (220) and version 2 (236).
pub(crate) const SPA_UDP_LENGTHS: [u16; 3] = [8 + 124, 8 + 220, 8 + 236];

/// Element key of `knock_*`: the port in network byte order.
pub(crate) fn port_key(port: u16) -> Vec<u8> {
    port.to_be_bytes().to_vec()
}

/// One 32-bit register holding the protocol number, zero padded.
pub(crate) fn proto_reg(p: Proto) -> [u8; 4] {
    [p.number(), 0, 0, 0]
}

/// One 32-bit register holding the port in network byte order, zero padded.
pub(crate) fn port_reg(port: u16) -> [u8; 4] {
    let [hi, lo] = port.to_be_bytes();
    [hi, lo, 0, 0]
}

/// Element key of `protected`: `proto | 0 0 0 | port(be) | 0 0`.
pub(crate) fn service_key(s: &Service) -> Vec<u8> {
    let mut k = Vec::with_capacity(8);
    k.extend_from_slice(&proto_reg(s.proto));
    k.extend_from_slice(&port_reg(s.port));
    k
}

/// Which grant set an address belongs in, and its key prefix. IPv4-mapped
/// IPv6 addresses (`::ffff:a.b.c.d`) are treated as IPv4, since that is how
/// such packets arrive.
pub(crate) fn grant_set_for(addr: IpAddr) -> (&'static str, Vec<u8>) {
    match canonical(addr) {
        IpAddr::V4(a) => (SET_GRANTS4, a.octets().to_vec()),
        IpAddr::V6(a) => (SET_GRANTS6, a.octets().to_vec()),
    }
}

/// `addr` with IPv4-mapped IPv6 addresses turned into IPv4.
pub(crate) fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(a),
        },
        v4 => v4,
    }
}

/// Element key of `grants4`/`grants6`: `addr | proto 0 0 0 | port(be) 0 0`.
pub(crate) fn grant_key(addr_bytes: &[u8], s: &Service) -> Vec<u8> {
    let mut k = Vec::with_capacity(addr_bytes.len() + 8);
    k.extend_from_slice(addr_bytes);
    k.extend_from_slice(&service_key(s));
    k
}

/// Decodes a grant-set element key back into an address and a service.
/// Returns `None` for keys that do not describe a TCP/UDP grant.
pub(crate) fn parse_grant_key(set: &str, key: &[u8]) -> Option<(IpAddr, Service)> {
    let addr_len = if set == SET_GRANTS4 { 4 } else { 16 };
    if key.len() != addr_len + 8 {
        return None;
    }
    let addr = if addr_len == 4 {
        IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&key[..4]).ok()?))
    } else {
        IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&key[..16]).ok()?))
    };
    let rest = &key[addr_len..];
    let proto = match rest[0] {
        n if n == Proto::Tcp.number() => Proto::Tcp,
        n if n == Proto::Udp.number() => Proto::Udp,
        _ => return None,
    };
    let port = u16::from_be_bytes([rest[4], rest[5]]);
    Some((addr, Service { proto, port }))
}

/// Sorted, de-duplicated copy of a port list.
fn unique_ports(ports: &[u16]) -> Vec<u16> {
    let mut v = ports.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

/// Element key of `knock_ifaces`: the name, NUL-padded to `IFNAMSIZ`.
/// Callers validate names to at most 15 bytes; longer ones are cut.
pub(crate) fn ifname_key(name: &str) -> Vec<u8> {
    let mut k = vec![0u8; IFNAMSIZ];
    let n = name.len().min(IFNAMSIZ - 1);
    k[..n].copy_from_slice(&name.as_bytes()[..n]);
    k
}

/// The element keys of the configuration-derived sets.
pub(crate) fn config_elements(rules: &Ruleset) -> [(&'static str, Vec<Vec<u8>>); 11] {
    let ports = |p: &[u16]| unique_ports(p).into_iter().map(port_key).collect();
    let mut services = rules.protected.clone();
    services.sort_unstable();
    services.dedup();
    [
        (
            SET_PROTECTED,
            services.iter().map(service_key).collect::<Vec<_>>(),
        ),
        (SET_KNOCK_TCP_SYN, ports(&rules.knock_tcp_syn)),
        (SET_KNOCK_TCP_ANY, ports(&rules.knock_tcp_any)),
        (SET_KNOCK_UDP, ports(&rules.knock_udp)),
        (SET_GUARD_TCP_SYN, ports(&rules.guard_tcp_syn)),
        (SET_GUARD_UDP, ports(&rules.guard_udp)),
        (SET_SPA_UDP, ports(&rules.spa_udp)),
        (
            SET_SPA_LEN,
            if rules.spa_udp.is_empty() {
                Vec::new()
            } else {
                SPA_UDP_LENGTHS.iter().map(|&l| port_key(l)).collect()
            },
        ),
        (
            SET_KNOCK_IFACES,
            rules.interfaces.iter().map(|i| ifname_key(i)).collect(),
        ),
        (
            SET_TARGETS4,
            targets(rules, |a| match a {
                IpAddr::V4(a) => Some(a.octets().to_vec()),
                IpAddr::V6(_) => None,
            }),
        ),
        (
            SET_TARGETS6,
            targets(rules, |a| match a {
                IpAddr::V6(a) => Some(a.octets().to_vec()),
                IpAddr::V4(_) => None,
            }),
        ),
    ]
}

fn targets(rules: &Ruleset, key: impl Fn(IpAddr) -> Option<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = rules
        .targets
        .iter()
        .map(|a| canonical(*a))
        .filter_map(key)
        .collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{attrs, find_attr};

    #[test]
    fn concat_type_ids_match_nft() {
        assert_eq!(SETS[0].key_type, (7 << 6 | 12) << 6 | 13);
        assert_eq!(SETS[0].key_type, 29453);
        assert_eq!(SETS[1].key_type, 33549);
        assert_eq!(SETS[2].key_type, 12 << 6 | 13);
    }

    #[test]
    fn grant_keys_are_register_padded() {
        let ssh = Service::tcp(22);
        let (set, a) = grant_set_for("127.0.0.1".parse().unwrap());
        assert_eq!(set, SET_GRANTS4);
        let k = grant_key(&a, &ssh);
        assert_eq!(k, vec![127, 0, 0, 1, 6, 0, 0, 0, 0, 22, 0, 0]);
        assert_eq!(k.len() as u32, SETS[0].key_len);
        assert_eq!(
            parse_grant_key(set, &k),
            Some(("127.0.0.1".parse().unwrap(), ssh))
        );

        let wg = Service::udp(51820);
        let (set, a) = grant_set_for("2001:db8::1".parse().unwrap());
        assert_eq!(set, SET_GRANTS6);
        let k = grant_key(&a, &wg);
        assert_eq!(k.len() as u32, SETS[1].key_len);
        assert_eq!(&k[16..], &[17, 0, 0, 0, 0xca, 0x6c, 0, 0]);
        assert_eq!(
            parse_grant_key(set, &k),
            Some(("2001:db8::1".parse().unwrap(), wg))
        );
    }

    #[test]
    fn mapped_v6_goes_to_grants4() {
        let (set, a) = grant_set_for("::ffff:192.0.2.7".parse().unwrap());
        assert_eq!(set, SET_GRANTS4);
        assert_eq!(a, vec![192, 0, 2, 7]);
    }

    #[test]
    fn service_key_layout() {
        let k = service_key(&Service::udp(0x1234));
        assert_eq!(k, vec![17, 0, 0, 0, 0x12, 0x34, 0, 0]);
        assert_eq!(k.len() as u32, SETS[2].key_len);
    }

    #[test]
    fn grant_lookup_registers_are_consecutive() {
        let v4 = grant_lookup(NFPROTO_IPV4);
        assert!(matches!(
            v4[0],
            Expr::Payload {
                offset: 12,
                len: 4,
                dreg: 8,
                ..
            }
        ));
        assert!(matches!(v4[1], Expr::Meta { dreg: 9, .. }));
        assert!(matches!(v4[2], Expr::Payload { dreg: 10, .. }));
        let v6 = grant_lookup(NFPROTO_IPV6);
        assert!(matches!(
            v6[0],
            Expr::Payload {
                offset: 8,
                len: 16,
                dreg: 8,
                ..
            }
        ));
        assert!(matches!(v6[1], Expr::Meta { dreg: 12, .. }));
        assert!(matches!(v6[2], Expr::Payload { dreg: 13, .. }));
    }

    #[test]
    fn verdict_encoding() {
        let mut w = Writer::new();
        Expr::Verdict(NF_DROP).encode(&mut w);
        let b = w.into_bytes();
        let (ty, elem) = attrs(&b).next().unwrap().unwrap();
        assert_eq!(ty, NFTA_LIST_ELEM);
        assert_eq!(
            find_attr(elem, NFTA_EXPR_NAME).unwrap(),
            Some(&b"immediate\0"[..])
        );
        let data = find_attr(elem, NFTA_EXPR_DATA).unwrap().unwrap();
        assert_eq!(
            find_attr(data, NFTA_IMMEDIATE_DREG).unwrap(),
            Some(&[0u8, 0, 0, 0][..])
        );
        let imm = find_attr(data, NFTA_IMMEDIATE_DATA).unwrap().unwrap();
        let verdict = find_attr(imm, NFTA_DATA_VERDICT).unwrap().unwrap();
        assert_eq!(
            find_attr(verdict, NFTA_VERDICT_CODE).unwrap(),
            Some(&[0u8, 0, 0, 0][..])
        );
    }

    #[test]
    fn log_group_is_big_endian() {
        let mut w = Writer::new();
        Expr::Log { group: 0x0102 }.encode(&mut w);
        let b = w.into_bytes();
        let (_, elem) = attrs(&b).next().unwrap().unwrap();
        let data = find_attr(elem, NFTA_EXPR_DATA).unwrap().unwrap();
        assert_eq!(
            find_attr(data, NFTA_LOG_GROUP).unwrap(),
            Some(&[1u8, 2][..])
        );
    }

    #[test]
    fn config_elements_are_deduplicated() {
        let rules = Ruleset {
            nflog_group: 1,
            knock_tcp_syn: vec![7000, 7000, 6999],
            knock_tcp_any: vec![],
            knock_udp: vec![9],
            protected: vec![Service::tcp(22), Service::tcp(22)],
            ..Ruleset::default()
        };
        let e = config_elements(&rules);
        assert_eq!(e[0].1.len(), 1);
        assert_eq!(e[1].1, vec![port_key(6999), port_key(7000)]);
        assert!(e[2].1.is_empty());
        assert_eq!(e[3].1, vec![vec![0, 9]]);
    }
}
