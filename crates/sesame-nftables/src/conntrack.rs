//! Conntrack entries over ctnetlink (`NFNL_SUBSYS_CTNETLINK`): what
//! `sesame revoke --kill-flows` needs to cut live flows. Expiry never does
//! this: a grant's end only stops new flows.
//!
//! A dump lists every entry; those whose original source is the revoked
//! address (and, when given, whose protocol and destination port match)
//! are deleted by their original tuple, copied as the kernel sent it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sesame_core::Proto;

use crate::wire::{attrs, find_attr, Malformed, Msg};

/// `NFNL_SUBSYS_CTNETLINK`.
pub(crate) const NFNL_SUBSYS_CTNETLINK: u16 = 1;
/// `IPCTNL_MSG_CT_GET`.
pub(crate) const IPCTNL_MSG_CT_GET: u16 = 1;
/// `IPCTNL_MSG_CT_DELETE`.
pub(crate) const IPCTNL_MSG_CT_DELETE: u16 = 2;
/// `CTA_TUPLE_ORIG`.
pub(crate) const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_DST_PORT: u16 = 3;

/// One entry to delete: its layer-3 family and original tuple (the
/// attribute's payload, as dumped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Flow {
    pub family: u8,
    pub tuple: Vec<u8>,
}

/// The flow of dump message `msg` if its original source is `addr` and,
/// with `ports` non-empty, its protocol and destination port are listed.
pub(crate) fn matching_flow(
    msg: &Msg<'_>,
    addr: IpAddr,
    ports: &[(Proto, u16)],
) -> Result<Option<Flow>, Malformed> {
    let Some((&family, body)) = msg.payload.split_first() else {
        return Err(Malformed("short ctnetlink message"));
    };
    let body = body.get(3..).ok_or(Malformed("short nfgenmsg"))?;
    let Some(tuple) = find_attr(body, CTA_TUPLE_ORIG)? else {
        return Ok(None);
    };
    let Some(ip) = find_attr(tuple, CTA_TUPLE_IP)? else {
        return Ok(None);
    };
    let src = match (find_attr(ip, CTA_IP_V4_SRC)?, find_attr(ip, CTA_IP_V6_SRC)?) {
        (Some(v4), _) if v4.len() == 4 => {
            IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(v4).unwrap_or_default()))
        }
        (_, Some(v6)) if v6.len() == 16 => {
            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(v6).unwrap_or_default()))
        }
        _ => return Ok(None),
    };
    if src != addr {
        return Ok(None);
    }
    if !ports.is_empty() {
        let Some(proto) = find_attr(tuple, CTA_TUPLE_PROTO)? else {
            return Ok(None);
        };
        let num = find_attr(proto, CTA_PROTO_NUM)?.and_then(|n| n.first().copied());
        let port = find_attr(proto, CTA_PROTO_DST_PORT)?
            .filter(|p| p.len() == 2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]));
        let hit = ports
            .iter()
            .any(|&(p, port_)| Some(p.number()) == num && Some(port_) == port);
        if !hit {
            return Ok(None);
        }
    }
    // Every attribute must parse: a malformed tuple is not sent back.
    for a in attrs(tuple) {
        a?;
    }
    Ok(Some(Flow {
        family,
        tuple: tuple.to_vec(),
    }))
}
