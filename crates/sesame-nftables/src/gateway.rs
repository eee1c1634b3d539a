//! Gateway mode: the maps, sets and chains that forward a grant through
//! this host, only where the ruleset has forwards (so a host without
//! forwards needs no NAT support in its kernel).
//!
//! ```text
//! map dnat4     { ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; timeout }
//! map redirect4 { ipv4_addr . inet_proto . inet_service : inet_service; timeout }
//! set forward4  { ipv4_addr . inet_proto . ipv4_addr . inet_service; timeout }   # DNAT'd flows
//! set route4    { ipv4_addr . inet_proto . ipv4_addr . inet_service; timeout }   # routed flows
//! set inner4    { ipv4_addr . inet_proto . inet_service }                        # inner services
//! (and the same for IPv6)
//! chain prenat { type nat hook prerouting priority dstnat;
//!   meta nfproto ipv4 fib daddr type local dnat ip to ip saddr . meta l4proto . th dport map @dnat4
//!   meta nfproto ipv4 fib daddr type local redirect to ip saddr . meta l4proto . th dport map @redirect4 }
//! chain forward_gate { type filter hook forward priority -10;
//!   ct state established accept
//!   meta nfproto ipv4 ct status dnat ip saddr . meta l4proto . ip daddr . th dport @forward4 accept
//!   meta nfproto ipv4 ip saddr . meta l4proto . ip daddr . th dport @route4 accept
//!   meta nfproto ipv4 ip daddr . meta l4proto . th dport @inner4 drop }
//! ```
//!
//! Every element carries the grant's timeout, so a killed daemon still
//! closes every forward; NAT bindings live in conntrack, so a flow opened
//! during the grant survives its end. `ct status dnat` on the DNAT accept
//! keeps a DNAT grant from opening the routed path to the same service.

use std::net::{IpAddr, SocketAddr};

use sesame_core::engine::ruleset::Ruleset;
use sesame_core::{Forward, Proto};

use crate::rules::{
    address_service_set, canonical, concat_type, ct_bits_set, dport, established, fib_daddr_local,
    grant_key, killed_not_granted, nfproto_is, port_reg, proto_reg, ChainSpec, Expr, SetSpec,
    V4_SERVICE_KEY, V6_SERVICE_KEY,
};
use crate::sys::*;

/// DNAT of IPv4 knockers: (client, proto, public port) → (inner, port).
pub(crate) const SET_DNAT4: &str = "dnat4";
/// DNAT of IPv6 knockers.
pub(crate) const SET_DNAT6: &str = "dnat6";
/// Local redirects of IPv4 knockers: (client, proto, public port) → port.
pub(crate) const SET_REDIRECT4: &str = "redirect4";
/// Local redirects of IPv6 knockers.
pub(crate) const SET_REDIRECT6: &str = "redirect6";
/// DNAT'd flows allowed through: (client, proto, inner, port).
pub(crate) const SET_FORWARD4: &str = "forward4";
/// The same for IPv6.
pub(crate) const SET_FORWARD6: &str = "forward6";
/// Routed flows allowed through: (client, proto, inner, port).
pub(crate) const SET_ROUTE4: &str = "route4";
/// The same for IPv6.
pub(crate) const SET_ROUTE6: &str = "route6";
/// Routed flows cut by `revoke --kill-flows`, blocked while their peers
/// give up (unless routed again): (client, proto, inner, port).
pub(crate) const SET_KILLED_ROUTE4: &str = "killed_route4";
/// The same for IPv6.
pub(crate) const SET_KILLED_ROUTE6: &str = "killed_route6";
/// Granted flows the inner host sees from this host (`masquerade`):
/// (client, proto, inner, port).
pub(crate) const SET_MASQUERADE4: &str = "masquerade4";
/// The same for IPv6.
pub(crate) const SET_MASQUERADE6: &str = "masquerade6";
/// Inner services closed in the forward path unless granted.
pub(crate) const SET_INNER4: &str = "inner4";
/// The same for IPv6.
pub(crate) const SET_INNER6: &str = "inner6";

/// The NAT chain at prerouting.
pub(crate) const CHAIN_PRENAT: &str = "prenat";
/// The filter chain at forward.
pub(crate) const CHAIN_FORWARD: &str = "forward_gate";
/// The NAT chain at postrouting (masquerade).
pub(crate) const CHAIN_POSTNAT: &str = "postnat";

const V4_FLOW: u32 = concat_type(&[
    NFT_TYPE_IPADDR,
    NFT_TYPE_INET_PROTOCOL,
    NFT_TYPE_IPADDR,
    NFT_TYPE_INET_SERVICE,
]);
const V6_FLOW: u32 = concat_type(&[
    NFT_TYPE_IP6ADDR,
    NFT_TYPE_INET_PROTOCOL,
    NFT_TYPE_IP6ADDR,
    NFT_TYPE_INET_SERVICE,
]);

const fn set(name: &'static str, key_type: u32, key_len: u32, timeout: bool) -> SetSpec {
    SetSpec {
        name,
        key_type,
        key_len,
        flags: if timeout { NFT_SET_TIMEOUT } else { 0 },
        data: None,
    }
}

const fn map(name: &'static str, key_type: u32, key_len: u32, data: (u32, u32)) -> SetSpec {
    SetSpec {
        name,
        key_type,
        key_len,
        flags: NFT_SET_MAP | NFT_SET_TIMEOUT,
        data: Some(data),
    }
}

/// The gateway's sets and maps, in creation order.
pub(crate) const FORWARD_SETS: [SetSpec; 14] = [
    map(
        SET_DNAT4,
        V4_SERVICE_KEY,
        12,
        (concat_type(&[NFT_TYPE_IPADDR, NFT_TYPE_INET_SERVICE]), 8),
    ),
    map(
        SET_DNAT6,
        V6_SERVICE_KEY,
        24,
        (concat_type(&[NFT_TYPE_IP6ADDR, NFT_TYPE_INET_SERVICE]), 20),
    ),
    map(
        SET_REDIRECT4,
        V4_SERVICE_KEY,
        12,
        (NFT_TYPE_INET_SERVICE, 2),
    ),
    map(
        SET_REDIRECT6,
        V6_SERVICE_KEY,
        24,
        (NFT_TYPE_INET_SERVICE, 2),
    ),
    set(SET_FORWARD4, V4_FLOW, 16, true),
    set(SET_FORWARD6, V6_FLOW, 40, true),
    set(SET_ROUTE4, V4_FLOW, 16, true),
    set(SET_ROUTE6, V6_FLOW, 40, true),
    address_service_set(SET_INNER4, false, false),
    address_service_set(SET_INNER6, true, false),
    set(SET_KILLED_ROUTE4, V4_FLOW, 16, true),
    set(SET_KILLED_ROUTE6, V6_FLOW, 40, true),
    set(SET_MASQUERADE4, V4_FLOW, 16, true),
    set(SET_MASQUERADE6, V6_FLOW, 40, true),
];

/// `NF_IP_PRI_NAT_DST`: nft's `dstnat`.
const PRENAT_PRIORITY: i32 = -100;
/// Just before the usual `filter` priority, as the input gate.
const FORWARD_PRIORITY: i32 = -10;
/// `NF_IP_PRI_NAT_SRC`: nft's `srcnat`.
const POSTNAT_PRIORITY: i32 = 100;

/// The gateway's base chains.
pub(crate) const FORWARD_CHAINS: [ChainSpec; 3] = [
    ChainSpec {
        name: CHAIN_PRENAT,
        hook: NF_INET_PRE_ROUTING,
        priority: PRENAT_PRIORITY,
        kind: "nat",
    },
    ChainSpec {
        name: CHAIN_FORWARD,
        hook: NF_INET_FORWARD,
        priority: FORWARD_PRIORITY,
        kind: "filter",
    },
    ChainSpec {
        name: CHAIN_POSTNAT,
        hook: NF_INET_POST_ROUTING,
        priority: POSTNAT_PRIORITY,
        kind: "nat",
    },
];

/// A field of a concatenated key.
#[derive(Clone, Copy)]
enum Field {
    Saddr,
    Daddr,
    L4proto,
    Dport,
}

/// Loads `fields` into consecutive 32-bit registers from `NFT_REG32_00`;
/// returns the expressions.
fn load(family: u8, fields: &[Field]) -> Vec<Expr> {
    let (saddr, daddr, addr_len) = match family {
        NFPROTO_IPV4 => (12, 16, 4),
        _ => (8, 24, 16),
    };
    let mut reg = NFT_REG32_00;
    let mut out = Vec::new();
    for field in fields {
        let (expr, regs) = match field {
            Field::Saddr | Field::Daddr => (
                Expr::Payload {
                    base: NFT_PAYLOAD_NETWORK_HEADER,
                    offset: if matches!(field, Field::Saddr) {
                        saddr
                    } else {
                        daddr
                    },
                    len: addr_len,
                    dreg: reg,
                },
                addr_len / 4,
            ),
            Field::L4proto => (
                Expr::Meta {
                    key: NFT_META_L4PROTO,
                    dreg: reg,
                },
                1,
            ),
            Field::Dport => (dport(reg), 1),
        };
        out.push(expr);
        reg += regs;
    }
    out
}

/// One address family's maps and sets.
struct FamilySets {
    dnat: &'static str,
    redirect: &'static str,
    forward: &'static str,
    route: &'static str,
    inner: &'static str,
    killed_route: &'static str,
    masquerade: &'static str,
}

fn family_sets(family: u8) -> FamilySets {
    match family {
        NFPROTO_IPV4 => FamilySets {
            dnat: SET_DNAT4,
            redirect: SET_REDIRECT4,
            forward: SET_FORWARD4,
            route: SET_ROUTE4,
            inner: SET_INNER4,
            killed_route: SET_KILLED_ROUTE4,
            masquerade: SET_MASQUERADE4,
        },
        _ => FamilySets {
            dnat: SET_DNAT6,
            redirect: SET_REDIRECT6,
            forward: SET_FORWARD6,
            route: SET_ROUTE6,
            inner: SET_INNER6,
            killed_route: SET_KILLED_ROUTE6,
            masquerade: SET_MASQUERADE6,
        },
    }
}

/// The rules of the `prenat` chain: DNAT and redirect of granted
/// knockers' connections to this host's public ports.
pub(crate) fn prenat_rules() -> Vec<Vec<Expr>> {
    use Field::*;
    let mut out = Vec::new();
    for family in [NFPROTO_IPV4, NFPROTO_IPV6] {
        let FamilySets { dnat, redirect, .. } = family_sets(family);
        let addr_regs = if family == NFPROTO_IPV4 { 1 } else { 4 };
        // Local destination, then the (source, protocol, port) key looked
        // up in `map`, whose value lands in register 1 for `verdict`.
        let rule = |map: &'static str, verdict: Expr| {
            let mut v = nfproto_is(family).to_vec();
            v.extend(fib_daddr_local());
            v.extend(load(family, &[Saddr, L4proto, Dport]));
            v.push(Expr::LookupMap {
                set: map,
                sreg: NFT_REG32_00,
                dreg: NFT_REG32_00,
            });
            v.push(verdict);
            v
        };
        let to_inner = rule(
            dnat,
            Expr::Dnat {
                family,
                addr_reg: NFT_REG32_00,
                proto_reg: NFT_REG32_00 + addr_regs,
            },
        );
        let to_local = rule(
            redirect,
            Expr::Redirect {
                proto_reg: NFT_REG32_00,
            },
        );
        out.extend([to_inner, to_local]);
    }
    out
}

/// The rules of the `postnat` chain: granted flows of masquerading
/// forwards leave with this host's address (at postrouting the
/// destination is the inner host's, after DNAT).
pub(crate) fn postnat_rules() -> Vec<Vec<Expr>> {
    use Field::*;
    [NFPROTO_IPV4, NFPROTO_IPV6]
        .into_iter()
        .map(|family| {
            let mut v = nfproto_is(family).to_vec();
            v.extend(load(family, &[Saddr, L4proto, Daddr, Dport]));
            v.push(Expr::Lookup {
                set: family_sets(family).masquerade,
                sreg: NFT_REG32_00,
            });
            v.push(Expr::Masquerade);
            v
        })
        .collect()
}

/// The rules of the `forward_gate` chain: granted flows pass, inner
/// services are dropped otherwise. Like the input gate it only denies: an
/// accept here does not override a drop elsewhere.
pub(crate) fn forward_rules() -> Vec<Vec<Expr>> {
    use Field::*;
    let mut out = Vec::new();
    for family in [NFPROTO_IPV4, NFPROTO_IPV6] {
        let sets = family_sets(family);
        let mut killed = nfproto_is(family).to_vec();
        killed.extend(load(family, &[Saddr, L4proto, Daddr, Dport]));
        killed.push(Expr::Lookup {
            set: sets.killed_route,
            sreg: NFT_REG32_00,
        });
        out.push(killed_not_granted(killed, sets.route));
    }
    out.push(established());
    for family in [NFPROTO_IPV4, NFPROTO_IPV6] {
        let FamilySets {
            forward,
            route,
            inner,
            ..
        } = family_sets(family);
        let flow = load(family, &[Saddr, L4proto, Daddr, Dport]);
        let mut dnatted = nfproto_is(family).to_vec();
        dnatted.extend(ct_bits_set(NFT_CT_STATUS, IPS_DST_NAT));
        dnatted.extend(flow.iter().cloned());
        dnatted.push(Expr::Lookup {
            set: forward,
            sreg: NFT_REG32_00,
        });
        dnatted.push(Expr::Verdict(NF_ACCEPT));
        let mut routed = nfproto_is(family).to_vec();
        routed.extend(flow);
        routed.push(Expr::Lookup {
            set: route,
            sreg: NFT_REG32_00,
        });
        routed.push(Expr::Verdict(NF_ACCEPT));
        let mut closed = nfproto_is(family).to_vec();
        closed.extend(load(family, &[Daddr, L4proto, Dport]));
        closed.push(Expr::Lookup {
            set: inner,
            sreg: NFT_REG32_00,
        });
        closed.push(Expr::Verdict(NF_DROP));
        out.extend([dnatted, routed, closed]);
    }
    out
}

fn addr_bytes(addr: IpAddr) -> Vec<u8> {
    match canonical(addr) {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// `addr . proto . port`, each field register-padded (a grant's key).
fn service_key(addr: IpAddr, proto: Proto, port: u16) -> Vec<u8> {
    grant_key(&addr_bytes(addr), &sesame_core::Service { proto, port })
}

/// `client . proto . inner . port`.
fn flow_key(client: IpAddr, proto: Proto, inner: SocketAddr) -> Vec<u8> {
    let mut k = addr_bytes(client);
    k.extend_from_slice(&proto_reg(proto));
    k.extend_from_slice(&addr_bytes(inner.ip()));
    k.extend_from_slice(&port_reg(inner.port()));
    k
}

/// The elements of `inner4`/`inner6`: every DNAT and route forward's inner
/// service.
pub(crate) fn inner_elements(rules: &Ruleset) -> [(&'static str, Vec<Vec<u8>>); 2] {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for (proto, inner) in rules.forwards.iter().filter_map(Forward::inner_service) {
        let key = service_key(inner.ip(), proto, inner.port());
        match canonical(inner.ip()) {
            IpAddr::V4(_) => v4.push(key),
            IpAddr::V6(_) => v6.push(key),
        }
    }
    for v in [&mut v4, &mut v6] {
        v.sort();
        v.dedup();
    }
    [(SET_INNER4, v4), (SET_INNER6, v6)]
}

/// A map element: key and data.
pub(crate) type MapEntry = (Vec<u8>, Vec<u8>);

/// The elements one grant of `forwards` to `client` adds.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ForwardElements {
    /// Map elements: (map, [(key, data)]).
    pub maps: Vec<(&'static str, Vec<MapEntry>)>,
    /// Set elements: (set, [key]).
    pub sets: Vec<(&'static str, Vec<Vec<u8>>)>,
}

/// The elements for `client`'s `forwards`; forwards of the other address
/// family are left out (no NAT64).
pub(crate) fn forward_elements(client: IpAddr, forwards: &[Forward]) -> ForwardElements {
    let client = canonical(client);
    let family = if client.is_ipv4() {
        NFPROTO_IPV4
    } else {
        NFPROTO_IPV6
    };
    let FamilySets {
        dnat,
        redirect,
        forward,
        route,
        masquerade,
        ..
    } = family_sets(family);
    let mut out = ForwardElements::default();
    let mut map = |name: &'static str, key: Vec<u8>, data: Vec<u8>| match out
        .maps
        .iter_mut()
        .find(|(n, _)| *n == name)
    {
        Some((_, v)) => v.push((key, data)),
        None => out.maps.push((name, vec![(key, data)])),
    };
    let mut sets: Vec<(&'static str, Vec<Vec<u8>>)> = Vec::new();
    let mut set = |name: &'static str, key: Vec<u8>| match sets.iter_mut().find(|(n, _)| *n == name)
    {
        Some((_, v)) => v.push(key),
        None => sets.push((name, vec![key])),
    };
    for f in forwards.iter().filter(|f| f.applies_to(client)) {
        if let Some((proto, inner)) = f.inner_service().filter(|_| f.masquerade()) {
            set(masquerade, flow_key(client, proto, inner));
        }
        match *f {
            Forward::Dnat {
                proto,
                public_port,
                inner,
                ..
            } => {
                let mut data = addr_bytes(inner.ip());
                data.extend_from_slice(&port_reg(inner.port()));
                map(dnat, service_key(client, proto, public_port), data);
                set(forward, flow_key(client, proto, inner));
            }
            Forward::Route { proto, inner, .. } => set(route, flow_key(client, proto, inner)),
            Forward::Redirect {
                proto,
                public_port,
                local_port,
            } => map(
                redirect,
                service_key(client, proto, public_port),
                local_port.to_be_bytes().to_vec(),
            ),
        }
    }
    out.sets = sets;
    out
}

/// `killed_route4`/`killed_route6` keys of `client`'s route forwards.
pub(crate) fn killed_route_elements(
    client: IpAddr,
    forwards: &[Forward],
) -> (&'static str, Vec<Vec<u8>>) {
    let client = canonical(client);
    let family = if client.is_ipv4() {
        NFPROTO_IPV4
    } else {
        NFPROTO_IPV6
    };
    let keys = forwards
        .iter()
        .filter(|f| f.applies_to(client))
        .filter_map(|f| match *f {
            Forward::Route { proto, inner, .. } => Some(flow_key(client, proto, inner)),
            _ => None,
        })
        .collect();
    (family_sets(family).killed_route, keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwards(list: &[&str]) -> Vec<Forward> {
        list.iter().map(|f| f.parse().unwrap()).collect()
    }

    #[test]
    fn elements_are_register_padded_and_stay_in_their_family() {
        let fwd = forwards(&[
            "tcp/2222 -> 10.2.0.2:22",
            "tcp/2222 -> [2001:db8:2::2]:22",
            "udp/10.2.0.3:53",
            "tcp/2223 -> 22",
        ]);
        let e = forward_elements("198.51.100.7".parse().unwrap(), &fwd);
        let client = [198, 51, 100, 7];
        let dnat = &e.maps.iter().find(|(n, _)| *n == SET_DNAT4).unwrap().1;
        assert_eq!(dnat.len(), 1, "the IPv6 forward is left out");
        assert_eq!(
            dnat[0].0,
            [&client[..], &[6, 0, 0, 0], &[0x08, 0xae, 0, 0]].concat()
        );
        assert_eq!(dnat[0].1, vec![10, 2, 0, 2, 0, 22, 0, 0]);
        let redirect = &e.maps.iter().find(|(n, _)| *n == SET_REDIRECT4).unwrap().1;
        assert_eq!(
            redirect[0].1,
            vec![0, 22],
            "a redirect's data is the bare port"
        );
        let route = &e.sets.iter().find(|(n, _)| *n == SET_ROUTE4).unwrap().1;
        assert_eq!(
            route[0],
            [&client[..], &[17, 0, 0, 0], &[10, 2, 0, 3], &[0, 53, 0, 0]].concat()
        );
        let v6 = forward_elements("2001:db8::7".parse().unwrap(), &fwd);
        let dnat6 = &v6.maps.iter().find(|(n, _)| *n == SET_DNAT6).unwrap().1;
        assert_eq!(dnat6[0].0.len(), 24);
        assert_eq!(dnat6[0].1.len(), 20);
        assert!(v6.sets.iter().all(|(n, _)| *n != SET_ROUTE4));
        // Key and data lengths match the declarations.
        for (name, entries) in e.maps.iter().chain(v6.maps.iter()) {
            let spec = FORWARD_SETS.iter().find(|s| s.name == *name).unwrap();
            for (k, d) in entries {
                assert_eq!(k.len() as u32, spec.key_len, "{name}");
                assert_eq!(Some(d.len() as u32), spec.data.map(|(_, l)| l), "{name}");
            }
        }
        for (name, keys) in e.sets.iter().chain(v6.sets.iter()) {
            let spec = FORWARD_SETS.iter().find(|s| s.name == *name).unwrap();
            assert!(
                keys.iter().all(|k| k.len() as u32 == spec.key_len),
                "{name}"
            );
        }
    }

    #[test]
    fn flow_keys_fit_the_registers() {
        // A v6 flow key is 10 registers: within the 16 32-bit registers.
        let rules = forward_rules();
        assert_eq!(rules.len(), 9);
        assert_eq!(prenat_rules().len(), 4);
    }
}
