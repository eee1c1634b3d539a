//! The rest of the host's ruleset, as far as it decides the fate of a
//! protected port. An accept in Sesame's table does not override a drop in
//! another table: every base chain on the input path must let a packet
//! through. A `tcp dport 22 drop` left from a knockd or fwknop setup, or
//! the default-deny input chain of ufw or firewalld, silently cancels every
//! grant. [`HostRuleset::blockers`] finds those, as a best-effort reading:
//! it judges only rules whose conditions it understands (protocol and
//! destination port) and says so.

use crate::sys::*;
use crate::wire;

pub(crate) const GET_CHAIN: u8 = 4;
const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_TARGET_NAME: u16 = 1;

/// What a rule does with the packets it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `accept`.
    Accept,
    /// `drop`.
    Drop,
    /// `reject`.
    Reject,
}

/// A rule of another table, reduced to what decides a protected port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    /// `ip`, `ip6`, `inet`, ...
    pub family: &'static str,
    /// Table name.
    pub table: String,
    /// Chain name.
    pub chain: String,
    /// The rule's handle (`nft -a list ruleset` shows it).
    pub handle: u64,
    /// IP protocol it requires (6 TCP, 17 UDP), if any.
    pub l4proto: Option<u8>,
    /// Destination ports it requires (`th dport == P`); empty: any port.
    pub ports: Vec<u16>,
    /// It has conditions this reading does not judge (addresses,
    /// interfaces, conntrack state, port sets, ...).
    pub conditional: bool,
    /// Its terminal verdict, if it has one.
    pub verdict: Option<Verdict>,
}

/// A base chain of another table on the input path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostChain {
    /// `ip`, `ip6`, `inet`, ...
    pub family: &'static str,
    /// Table name.
    pub table: String,
    /// Chain name.
    pub chain: String,
    /// Its hook (prerouting 0, input 1, ...); `None` for a regular chain.
    pub hook: Option<u32>,
    /// Its policy drops what no rule accepts.
    pub policy_drop: bool,
}

/// The host's ruleset outside Sesame's table (families ip, ip6, inet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostRuleset {
    /// Every chain.
    pub chains: Vec<HostChain>,
    /// Every rule, in each chain's order.
    pub rules: Vec<HostRule>,
}

impl HostRuleset {
    /// What, outside Sesame's table, drops or rejects new connections to
    /// `proto/port` from an address Sesame granted: one line per finding,
    /// naming family, table, chain and rule.
    pub fn blockers(&self, l4proto: u8, port: u16) -> Vec<String> {
        self.blockers_at(&[NF_INET_PRE_ROUTING, NF_INET_LOCAL_IN], l4proto, port)
    }

    /// The same for connections this host forwards to `proto/port` (a
    /// gateway door's inner service): prerouting and forward chains.
    pub fn forward_blockers(&self, l4proto: u8, port: u16) -> Vec<String> {
        self.blockers_at(&[NF_INET_PRE_ROUTING, NF_INET_FORWARD], l4proto, port)
    }

    fn blockers_at(&self, hooks: &[u32], l4proto: u8, port: u16) -> Vec<String> {
        let mut out = Vec::new();
        for chain in &self.chains {
            // Chains at other hooks never see the packet.
            if matches!(chain.hook, Some(h) if !hooks.contains(&h)) {
                continue;
            }
            let mut decided = false;
            for rule in self.rules.iter().filter(|r| {
                r.family == chain.family && r.table == chain.table && r.chain == chain.chain
            }) {
                let applies = rule.l4proto.is_none_or(|p| p == l4proto)
                    && (rule.ports.is_empty() || rule.ports.contains(&port));
                if !applies || rule.conditional {
                    continue;
                }
                match rule.verdict {
                    Some(Verdict::Accept) => {
                        decided = true;
                        break;
                    }
                    Some(v @ (Verdict::Drop | Verdict::Reject)) => {
                        out.push(format!(
                            "table {} {}, chain {}, rule handle {} ({}{}) {}s it",
                            chain.family,
                            chain.table,
                            chain.chain,
                            rule.handle,
                            if rule.ports.is_empty() {
                                "every port"
                            } else {
                                "dport"
                            },
                            if rule.ports.is_empty() {
                                String::new()
                            } else {
                                format!(" {port}")
                            },
                            if v == Verdict::Drop { "drop" } else { "reject" },
                        ));
                        decided = true;
                        break;
                    }
                    None => {}
                }
            }
            if !decided && chain.policy_drop && chain.hook.is_some() {
                out.push(format!(
                    "table {} {}, chain {}: policy drop, and no rule there accepts it",
                    chain.family, chain.table, chain.chain
                ));
            }
        }
        out
    }
}

fn text(attrs: &[u8], ty: u16) -> String {
    wire::find_attr(attrs, ty)
        .ok()
        .flatten()
        .map(|raw| {
            String::from_utf8_lossy(raw)
                .trim_end_matches('\0')
                .to_string()
        })
        .unwrap_or_default()
}

fn be32(p: Option<&[u8]>) -> Option<u32> {
    p.and_then(|p| p.get(..4))
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn family_ok(family: u8) -> bool {
    matches!(family, NFPROTO_INET | NFPROTO_IPV4 | NFPROTO_IPV6)
}

/// Decodes one chain of a `GETCHAIN` dump.
pub(crate) fn parse_chain(msg: &wire::Msg<'_>) -> Option<HostChain> {
    let family = *msg.payload.first()?;
    if !family_ok(family) {
        return None;
    }
    let attrs = msg.payload.get(NFGENMSG_LEN..)?;
    let hook = wire::find_attr(attrs, NFTA_CHAIN_HOOK)
        .ok()
        .flatten()
        .and_then(|h| be32(wire::find_attr(h, NFTA_HOOK_HOOKNUM).ok().flatten()));
    let policy = be32(wire::find_attr(attrs, NFTA_CHAIN_POLICY).ok().flatten());
    Some(HostChain {
        family: crate::dump::family_name(family),
        table: text(attrs, NFTA_CHAIN_TABLE),
        chain: text(attrs, NFTA_CHAIN_NAME),
        hook,
        policy_drop: policy == Some(NF_DROP),
    })
}

/// Decodes one rule of a `GETRULE` dump.
pub(crate) fn parse_rule(msg: &wire::Msg<'_>) -> Option<HostRule> {
    let family = *msg.payload.first()?;
    if !family_ok(family) {
        return None;
    }
    let attrs = msg.payload.get(NFGENMSG_LEN..)?;
    let handle = wire::find_attr(attrs, NFTA_RULE_HANDLE)
        .ok()
        .flatten()
        .and_then(|h| wire::be64(h).ok())
        .unwrap_or(0);
    let mut rule = HostRule {
        family: crate::dump::family_name(family),
        table: text(attrs, NFTA_RULE_TABLE),
        chain: text(attrs, NFTA_RULE_CHAIN),
        handle,
        l4proto: None,
        ports: Vec::new(),
        conditional: false,
        verdict: None,
    };
    let exprs = wire::find_attr(attrs, NFTA_RULE_EXPRESSIONS)
        .ok()
        .flatten()?;
    // Which register holds what was loaded last.
    let (mut dport_reg, mut proto_reg) = (None, None);
    for elem in wire::attrs(exprs) {
        let Ok((NFTA_LIST_ELEM, elem)) = elem else {
            continue;
        };
        let name = wire::find_attr(elem, NFTA_EXPR_NAME)
            .ok()
            .flatten()
            .unwrap_or(&[]);
        let data = wire::find_attr(elem, NFTA_EXPR_DATA)
            .ok()
            .flatten()
            .unwrap_or(&[]);
        let get = |t| wire::find_attr(data, t).ok().flatten();
        match name {
            b"payload\0" => {
                let (base, offset, len) = (
                    be32(get(NFTA_PAYLOAD_BASE)),
                    be32(get(NFTA_PAYLOAD_OFFSET)),
                    be32(get(NFTA_PAYLOAD_LEN)),
                );
                let reg = be32(get(NFTA_PAYLOAD_DREG));
                if (base, offset, len) == (Some(NFT_PAYLOAD_TRANSPORT_HEADER), Some(2), Some(2)) {
                    dport_reg = reg;
                    if proto_reg == reg {
                        proto_reg = None;
                    }
                } else if (base, offset, len)
                    == (Some(NFT_PAYLOAD_NETWORK_HEADER), Some(9), Some(1))
                    && family == NFPROTO_IPV4
                {
                    // iptables-nft's `-p tcp` in family ip.
                    proto_reg = reg;
                    if dport_reg == reg {
                        dport_reg = None;
                    }
                } else {
                    rule.conditional = true;
                }
            }
            b"meta\0" if be32(get(NFTA_META_KEY)) == Some(NFT_META_L4PROTO) => {
                proto_reg = be32(get(NFTA_META_DREG));
                if dport_reg == proto_reg {
                    dport_reg = None;
                }
            }
            b"cmp\0" => {
                let sreg = be32(get(NFTA_CMP_SREG));
                let value = get(NFTA_CMP_DATA)
                    .and_then(|d| wire::find_attr(d, NFTA_DATA_VALUE).ok().flatten());
                let eq = be32(get(NFTA_CMP_OP)) == Some(NFT_CMP_EQ);
                match value {
                    Some([hi, lo, ..]) if eq && sreg.is_some() && sreg == dport_reg => {
                        rule.ports.push(u16::from_be_bytes([*hi, *lo]));
                    }
                    Some([p, ..]) if eq && sreg.is_some() && sreg == proto_reg => {
                        rule.l4proto = Some(*p);
                    }
                    _ => rule.conditional = true,
                }
            }
            b"immediate\0" if be32(get(NFTA_IMMEDIATE_DREG)) == Some(NFT_REG_VERDICT) => {
                let code = get(NFTA_IMMEDIATE_DATA)
                    .and_then(|d| wire::find_attr(d, NFTA_DATA_VERDICT).ok().flatten())
                    .and_then(|v| be32(wire::find_attr(v, NFTA_VERDICT_CODE).ok().flatten()));
                match code {
                    Some(NF_ACCEPT) => rule.verdict = Some(Verdict::Accept),
                    Some(NF_DROP) => rule.verdict = Some(Verdict::Drop),
                    // jump, goto, return, continue: not a decision here.
                    _ => rule.conditional = true,
                }
            }
            b"reject\0" => rule.verdict = Some(Verdict::Reject),
            // iptables-nft's `-j REJECT` is an x_tables target.
            b"target\0" if get(NFTA_TARGET_NAME) == Some(b"REJECT\0") => {
                rule.verdict = Some(Verdict::Reject);
            }
            // Side effects only.
            b"counter\0" | b"log\0" => {}
            _ => rule.conditional = true,
        }
    }
    Some(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(name: &str, hook: Option<u32>, policy_drop: bool) -> HostChain {
        HostChain {
            family: "inet",
            table: "fw".into(),
            chain: name.into(),
            hook,
            policy_drop,
        }
    }

    fn rule(
        chain: &str,
        handle: u64,
        ports: &[u16],
        conditional: bool,
        verdict: Verdict,
    ) -> HostRule {
        HostRule {
            family: "inet",
            table: "fw".into(),
            chain: chain.into(),
            handle,
            l4proto: Some(6),
            ports: ports.to_vec(),
            conditional,
            verdict: Some(verdict),
        }
    }

    #[test]
    fn the_first_rule_that_decides_the_port_counts() {
        let host = HostRuleset {
            chains: vec![chain("input", Some(NF_INET_LOCAL_IN), false)],
            rules: vec![
                rule("input", 1, &[22], true, Verdict::Accept),
                rule("input", 2, &[22], false, Verdict::Accept),
                rule("input", 3, &[], false, Verdict::Drop),
            ],
        };
        // A conditional accept (say, from one address) decides nothing; the
        // plain accept of 22 comes before the drop of everything.
        assert!(host.blockers(6, 22).is_empty());
        let other = host.blockers(6, 443);
        assert_eq!(other.len(), 1, "{other:?}");
        assert!(
            other[0].contains("rule handle 3 (every port) drops it"),
            "{other:?}"
        );
        // UDP is not what the TCP rules match, but the drop of every
        // port is TCP-only too.
        assert!(host.blockers(17, 22).is_empty());
    }

    #[test]
    fn policies_count_on_the_input_path_only() {
        let host = HostRuleset {
            chains: vec![
                chain("input", Some(NF_INET_LOCAL_IN), true),
                chain("output", Some(3), true),
                chain("helper", None, true),
            ],
            rules: vec![rule("output", 1, &[22], false, Verdict::Drop)],
        };
        let found = host.blockers(6, 22);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("chain input: policy drop"), "{found:?}");
    }

    #[test]
    fn forwarded_services_are_judged_on_the_forward_path() {
        let host = HostRuleset {
            chains: vec![
                chain("input", Some(NF_INET_LOCAL_IN), true),
                chain("forward", Some(NF_INET_FORWARD), true),
            ],
            rules: vec![rule("forward", 7, &[443], false, Verdict::Accept)],
        };
        // The input policy does not see forwarded packets; the forward one
        // does, unless a rule there accepts the port.
        let found = host.forward_blockers(6, 22);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("chain forward: policy drop"), "{found:?}");
        assert!(host.forward_blockers(6, 443).is_empty());
        assert_eq!(host.blockers(6, 443).len(), 1, "input judges local ports");
    }
}
