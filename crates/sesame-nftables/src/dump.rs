//! Reading the kernel's dumps back: grant elements and the host's DNAT rules.

use std::time::Duration;

use crate::rules::parse_grant_key;
use crate::sys::*;
use crate::types::Grant;
use crate::wire::{self, Msg};

/// A destination-NAT rule of the host's ruleset (see
/// [`Firewall::dnat_rules`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnatRule {
    /// `ip`, `ip6`, `inet`, … as `nft` names the family.
    pub family: &'static str,
    /// The rule's table.
    pub table: String,
    /// The rule's chain.
    pub chain: String,
    /// Destination ports it matches with `th dport == PORT`.
    pub ports: Vec<u16>,
    /// It matches ports some other way (a set, a range) or not at all: any
    /// port may be forwarded.
    pub any_port: bool,
}

impl DnatRule {
    /// True when the rule may forward traffic to `port`.
    pub fn may_forward(&self, port: u16) -> bool {
        self.any_port || self.ports.contains(&port)
    }
}

pub(crate) fn family_name(f: u8) -> &'static str {
    match f {
        NFPROTO_INET => "inet",
        2 => "ip",
        NFPROTO_IPV6 => "ip6",
        3 => "arp",
        7 => "bridge",
        5 => "netdev",
        _ => "?",
    }
}

/// Reads one `NEWRULE` dump message: a DNAT rule, or `None`. Port matches
/// are recognised as nft writes them: a transport-header payload load of
/// offset 2, length 2 into a register, then an equality compare on it.
pub(crate) fn parse_dnat_rule(msg: &Msg<'_>) -> Result<Option<DnatRule>, &'static str> {
    let family = *msg.payload.first().ok_or("short message")?;
    let attrs = msg.payload.get(NFGENMSG_LEN..).ok_or("short message")?;
    let text = |ty| -> Result<String, &'static str> {
        let raw = wire::find_attr(attrs, ty).map_err(|m| m.0)?.unwrap_or(&[]);
        Ok(String::from_utf8_lossy(raw)
            .trim_end_matches('\0')
            .to_string())
    };
    let Some(exprs) = wire::find_attr(attrs, NFTA_RULE_EXPRESSIONS).map_err(|m| m.0)? else {
        return Ok(None);
    };
    let be32 = |p: Option<&[u8]>| -> Option<u32> {
        p.and_then(|p| p.get(..4))
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (mut dport_reg, mut ports, mut dnat, mut other_match) = (None, Vec::new(), false, false);
    for elem in wire::attrs(exprs) {
        let (ty, elem) = elem.map_err(|m| m.0)?;
        if ty != NFTA_LIST_ELEM {
            continue;
        }
        let name = wire::find_attr(elem, NFTA_EXPR_NAME)
            .map_err(|m| m.0)?
            .unwrap_or(&[]);
        let data = wire::find_attr(elem, NFTA_EXPR_DATA)
            .map_err(|m| m.0)?
            .unwrap_or(&[]);
        let get = |t| wire::find_attr(data, t).ok().flatten();
        match name {
            b"payload\0" => {
                let is_dport = be32(get(NFTA_PAYLOAD_BASE)) == Some(NFT_PAYLOAD_TRANSPORT_HEADER)
                    && be32(get(NFTA_PAYLOAD_OFFSET)) == Some(2)
                    && be32(get(NFTA_PAYLOAD_LEN)) == Some(2);
                if is_dport {
                    dport_reg = be32(get(NFTA_PAYLOAD_DREG));
                }
            }
            b"cmp\0" if dport_reg.is_some() && be32(get(NFTA_CMP_SREG)) == dport_reg => {
                let value = get(NFTA_CMP_DATA)
                    .and_then(|d| wire::find_attr(d, NFTA_DATA_VALUE).ok().flatten());
                match (be32(get(NFTA_CMP_OP)), value) {
                    (Some(NFT_CMP_EQ), Some([hi, lo, ..])) => {
                        ports.push(u16::from_be_bytes([*hi, *lo]))
                    }
                    _ => other_match = true,
                }
            }
            // A set or a range of ports (NFTA_RANGE_SREG is attribute 1).
            b"lookup\0" if dport_reg.is_some() && be32(get(NFTA_LOOKUP_SREG)) == dport_reg => {
                other_match = true
            }
            b"range\0" if dport_reg.is_some() && be32(get(1)) == dport_reg => other_match = true,
            b"nat\0" if be32(get(NFTA_NAT_TYPE)) == Some(NFT_NAT_DNAT) => dnat = true,
            _ => {}
        }
    }
    if !dnat {
        return Ok(None);
    }
    Ok(Some(DnatRule {
        family: family_name(family),
        table: text(NFTA_RULE_TABLE)?,
        chain: text(NFTA_RULE_CHAIN)?,
        any_port: other_match || ports.is_empty(),
        ports,
    }))
}

/// Decodes the grant elements of one `NEWSETELEM` dump message.
pub(crate) fn parse_elements(
    set: &str,
    msg: &Msg<'_>,
    out: &mut Vec<Grant>,
) -> Result<(), &'static str> {
    let attrs = msg.payload.get(NFGENMSG_LEN..).ok_or("short message")?;
    let Some(elems) = wire::find_attr(attrs, NFTA_SET_ELEM_LIST_ELEMENTS).map_err(|m| m.0)? else {
        return Ok(());
    };
    for elem in wire::attrs(elems) {
        let (ty, elem) = elem.map_err(|m| m.0)?;
        if ty != NFTA_LIST_ELEM {
            continue;
        }
        let key = wire::find_attr(elem, NFTA_SET_ELEM_KEY)
            .map_err(|m| m.0)?
            .ok_or("element without key")?;
        let key = wire::find_attr(key, NFTA_DATA_VALUE)
            .map_err(|m| m.0)?
            .ok_or("key without value")?;
        let expires_in = match wire::find_attr(elem, NFTA_SET_ELEM_EXPIRATION).map_err(|m| m.0)? {
            Some(p) => Some(Duration::from_millis(wire::be64(p).map_err(|m| m.0)?)),
            None => None,
        };
        if let Some((addr, service)) = parse_grant_key(set, key) {
            out.push(Grant {
                addr,
                service,
                expires_in,
            });
        }
    }
    Ok(())
}
