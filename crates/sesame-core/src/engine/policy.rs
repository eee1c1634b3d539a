//! fwknop's access policy, with fwknopd's meaning: which stanza applies to
//! a packet, and what an authenticated message may do under it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::fwknop::stanza::{FwknopNat, FwknopStanza};
use crate::fwknop::{FwknopError, FwknopMessage, MsgType};
use crate::{Forward, Service};

/// Refusals that do not depend on a stanza's keys (the packet itself is
/// unacceptable), so no other stanza is tried.
pub(super) fn packet_level(e: &FwknopError) -> bool {
    matches!(
        e,
        FwknopError::TooShort { .. }
            | FwknopError::Oversized { .. }
            | FwknopError::BadBase64 { .. }
            | FwknopError::SaltedPrefix
            | FwknopError::GpgUnsupported { .. }
    )
}

/// Whether `src` is in the stanza's SOURCE list (empty = ANY).
pub(super) fn fwknop_source_matches(stanza: &FwknopStanza, src: IpAddr) -> bool {
    in_networks(&stanza.source, src)
}

/// Whether `a` and `b`, addresses `width` bits wide, share their first
/// `prefix` bits.
fn same_prefix(a: u128, b: u128, prefix: u8, width: u32) -> bool {
    let bits = u32::from(prefix).min(width);
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    a >> shift == b >> shift
}

/// Whether `addr` is in one of `networks` (empty: `ANY`).
pub(super) fn in_networks(networks: &[(IpAddr, u8)], addr: IpAddr) -> bool {
    let src = match addr {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
        v4 => v4,
    };
    networks.is_empty()
        || networks.iter().any(|(net, prefix)| match (net, src) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                same_prefix(u32::from(*n).into(), u32::from(a).into(), *prefix, 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                same_prefix(u128::from(*n), u128::from(a), *prefix, 128)
            }
            _ => false,
        })
}

/// What an accepted fwknop packet makes the daemon do.
pub(super) enum FwknopAction {
    /// Run this argv (a command message).
    Command(Vec<String>),
    /// Open these services and forwards for this address, for this long.
    Grant(Grant),
}

/// What an accepted request opens: for whom, which local services, for
/// how long, and which forwards (fwknop NAT).
pub(super) type Grant = (IpAddr, Vec<Service>, Duration, Vec<Forward>);

/// A refusal: its logged reason and the detail.
type Refusal = (&'static str, String);

/// The forward a NAT request (or `FORCE_NAT`) asks for, with fwknopd's
/// meaning: only the first requested port is forwarded; NAT access
/// (types 2, 4) goes to an inner host of the allow-list, DNAT'd unless
/// `DISABLE_DNAT`; local NAT (types 5, 6) redirects the requested port to
/// the NAT port on this host. `None` for a plain access request.
fn nat_forward(
    stanza: &FwknopStanza,
    nat: &FwknopNat,
    msg: &FwknopMessage,
    first: Service,
    target: IpAddr,
) -> Result<Option<Forward>, Refusal> {
    let local = matches!(
        msg.request.msg_type,
        MsgType::LocalNatAccess | MsgType::ClientTimeoutLocalNatAccess
    );
    let asked = msg.request.msg_type.has_nat_access();
    if local && !nat.local {
        return Err((
            "nat_disabled",
            "local NAT access needs ENABLE_IPT_LOCAL_NAT Y in fwknopd.conf".into(),
        ));
    }
    if !local && (asked || stanza.force_nat.is_some()) && !nat.forwarding {
        return Err((
            "nat_disabled",
            "NAT access needs ENABLE_IPT_FORWARDING Y in fwknopd.conf".into(),
        ));
    }
    let inner = match (stanza.force_nat, asked) {
        (None, false) => return Ok(None),
        (Some(forced), _) if !local => forced,
        (_, _) => {
            let Some((host, port)) = &msg.request.nat_access else {
                return Err(("malformed", "a NAT message without its NAT field".into()));
            };
            if local {
                let local_port = Service {
                    proto: first.proto,
                    port: *port,
                };
                if !stanza.open_ports.is_empty() && !stanza.open_ports.contains(&local_port) {
                    return Err((
                        "port_not_allowed",
                        format!("{local_port} (the local NAT port) is not in OPEN_PORTS"),
                    ));
                }
                return Ok(Some(Forward::Redirect {
                    proto: first.proto,
                    public_port: first.port,
                    local_port: *port,
                }));
            }
            // Only an address: fwknopd resolves names only with
            // ENABLE_NAT_DNS, and a name would bypass the allow-list.
            let Ok(ip) = host.parse::<IpAddr>() else {
                return Err((
                    "nat_host_not_allowed",
                    format!("NAT host {host:?} is not an address (names are not resolved)"),
                ));
            };
            if nat.hosts.is_empty() || !in_networks(&nat.hosts, ip) {
                return Err((
                    "nat_host_not_allowed",
                    format!("NAT host {ip} is not in the door's allow-list of inner hosts"),
                ));
            }
            SocketAddr::new(ip, *port)
        }
    };
    if inner.is_ipv4() != target.is_ipv4() {
        return Err((
            "nat_family",
            format!("{inner} and the granted address {target} are not of one address family"),
        ));
    }
    let masquerade = stanza.force_masquerade;
    Ok(Some(if stanza.disable_dnat {
        Forward::Route {
            proto: first.proto,
            inner,
            masquerade,
        }
    } else {
        Forward::Dnat {
            proto: first.proto,
            public_port: first.port,
            inner,
            masquerade,
        }
    }))
}

/// `REQUIRE_USERNAME`: the request names the stanza's user, if it has one.
fn required_username(
    stanza: &FwknopStanza,
    msg: &FwknopMessage,
) -> Result<(), (&'static str, String)> {
    match &stanza.require_username {
        Some(user) if &msg.request.username != user => Err((
            "username",
            format!(
                "username {:?} is not the required {user:?}",
                msg.request.username
            ),
        )),
        _ => Ok(()),
    }
}

/// The argv of an authenticated fwknop command message, only when the
/// stanza has `ENABLE_CMD_EXEC`. Like Debian's fwknopd, the command is split
/// at blanks and run without a shell (`echo x > FILE` prints `x > FILE`).
pub(super) fn fwknop_command(
    stanza: &FwknopStanza,
    msg: &FwknopMessage,
) -> Result<Vec<String>, (&'static str, String)> {
    required_username(stanza, msg)?;
    if !stanza.enable_cmd_exec {
        return Err((
            "command_disabled",
            "command messages need ENABLE_CMD_EXEC in the stanza".into(),
        ));
    }
    match &msg.request.command {
        Some(c) if !c.trim().is_empty() => Ok(c.split_whitespace().map(String::from).collect()),
        _ => Err(("malformed", "empty command".into())),
    }
}

/// What an authenticated fwknop request may open, with fwknopd's policy:
/// (address, services, lifetime), or (reason, detail) when refused.
/// `target_refusal` says why an address the request names may not be
/// granted (see [`super::Engine`]'s explicit-target check).
pub(super) fn fwknop_grant(
    stanza: &FwknopStanza,
    nat: &FwknopNat,
    msg: &FwknopMessage,
    src: IpAddr,
    target_refusal: &mut dyn FnMut(IpAddr) -> Option<String>,
) -> Result<Grant, Refusal> {
    required_username(stanza, msg)?;
    if msg.request.msg_type == MsgType::Command {
        return Err((
            "command_disabled",
            "command messages need ENABLE_CMD_EXEC in the stanza".into(),
        ));
    }
    let local_nat = matches!(
        msg.request.msg_type,
        MsgType::LocalNatAccess | MsgType::ClientTimeoutLocalNatAccess
    );
    let target = match msg.request.access_ip {
        None if stanza.require_source_address => return Err((
            "source_address_required",
            "REQUIRE_SOURCE_ADDRESS is set and the request asks for the packet source (0.0.0.0)"
                .into(),
        )),
        None => src,
        Some(ip) => {
            if let Some(why) = target_refusal(ip) {
                return Err(("address_refused", why));
            }
            ip
        }
    };
    let mut services = Vec::new();
    for port in &msg.request.access {
        let Some(service) = port.service() else {
            return Err((
                "unsupported_proto",
                format!("{port} cannot be granted (TCP and UDP only)"),
            ));
        };
        if stanza.restrict_ports.contains(&service) {
            return Err(("restricted_port", format!("{service} is in RESTRICT_PORTS")));
        }
        // A local NAT request's port is only the public side of a redirect;
        // the local port it reaches is checked instead (in nat_forward).
        if !local_nat && !stanza.open_ports.is_empty() && !stanza.open_ports.contains(&service) {
            return Err((
                "port_not_allowed",
                format!("{service} is not in OPEN_PORTS"),
            ));
        }
        if !services.contains(&service) {
            services.push(service);
        }
    }
    if services.is_empty() {
        return Err(("no_ports", "the request names no port".into()));
    }
    let open_for = match msg.request.client_timeout {
        Some(t) if t > 0 => Duration::from_secs(u64::from(t)).min(stanza.effective_max_timeout()),
        _ => stanza.access_timeout,
    };
    // A forwarded request opens the forward instead of the local ports,
    // as fwknopd's FORWARD/DNAT rules replace its INPUT one.
    match nat_forward(stanza, nat, msg, services[0], target)? {
        Some(forward) => Ok((target, Vec::new(), open_for, vec![forward])),
        None => Ok((target, services, open_for, Vec::new())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fwknop::stanza::{Secret, DEFAULT_ACCESS_TIMEOUT};
    use crate::fwknop::{AccessPort, DigestType, FwknopRequest};
    use crate::Service;

    fn stanza() -> FwknopStanza {
        FwknopStanza {
            line: 1,
            source: vec![
                ("10.0.0.0".parse().unwrap(), 8),
                ("fd00::".parse().unwrap(), 8),
            ],
            open_ports: vec!["tcp/22".parse().unwrap(), "udp/53".parse().unwrap()],
            restrict_ports: vec!["udp/53".parse().unwrap()],
            max_timeout: Some(Duration::from_secs(60)),
            require_username: Some("alice".into()),
            ..FwknopStanza::new(Secret(b"k".to_vec()), None)
        }
    }

    fn message(msg_type: MsgType, ports: &[&str]) -> FwknopMessage {
        FwknopMessage {
            random: "1234567890123456".into(),
            version: "3.0.0".into(),
            request: FwknopRequest {
                username: "alice".into(),
                timestamp: 0,
                msg_type,
                access_ip: None,
                access: ports
                    .iter()
                    .map(|p| AccessPort::Service(p.parse::<Service>().unwrap()))
                    .collect(),
                command: None,
                nat_access: None,
                server_auth: None,
                client_timeout: None,
                digest_type: DigestType::Sha256,
            },
            digest: vec![0; 32],
        }
    }

    #[test]
    fn fwknop_sources_match_v4_and_v6_networks() {
        let s = stanza();
        assert!(fwknop_source_matches(&s, "10.1.2.3".parse().unwrap()));
        assert!(fwknop_source_matches(
            &s,
            "::ffff:10.1.2.3".parse().unwrap()
        ));
        assert!(fwknop_source_matches(&s, "fd12::1".parse().unwrap()));
        assert!(!fwknop_source_matches(&s, "11.0.0.1".parse().unwrap()));
        assert!(!fwknop_source_matches(&s, "2001:db8::1".parse().unwrap()));
        let any = FwknopStanza {
            source: vec![],
            ..stanza()
        };
        assert!(fwknop_source_matches(&any, "2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn fwknop_policy_follows_access_conf() {
        let s = stanza();
        let src: IpAddr = "10.0.0.9".parse().unwrap();
        let ok = fwknop_grant(
            &s,
            &FwknopNat::default(),
            &message(MsgType::Access, &["tcp/22"]),
            src,
            &mut |_| None,
        )
        .unwrap();
        assert_eq!(
            ok,
            (
                src,
                vec!["tcp/22".parse().unwrap()],
                DEFAULT_ACCESS_TIMEOUT,
                Vec::new()
            )
        );

        let reason = |m: &FwknopMessage, st: &FwknopStanza| {
            fwknop_grant(st, &FwknopNat::default(), m, src, &mut |_| None)
                .unwrap_err()
                .0
        };
        assert_eq!(
            reason(&message(MsgType::Access, &["udp/53"]), &s),
            "restricted_port"
        );
        assert_eq!(
            reason(&message(MsgType::Access, &["tcp/80"]), &s),
            "port_not_allowed"
        );
        assert_eq!(
            reason(&message(MsgType::Command, &[]), &s),
            "command_disabled"
        );
        assert_eq!(
            reason(&message(MsgType::NatAccess, &["tcp/22"]), &s),
            "nat_disabled"
        );
        let mut bob = message(MsgType::Access, &["tcp/22"]);
        bob.request.username = "bob".into();
        assert_eq!(reason(&bob, &s), "username");
        let strict = FwknopStanza {
            require_source_address: true,
            ..stanza()
        };
        assert_eq!(
            reason(&message(MsgType::Access, &["tcp/22"]), &strict),
            "source_address_required"
        );

        // A client timeout is honoured up to MAX_FW_TIMEOUT; an explicit
        // address is granted instead of the source.
        let mut m = message(MsgType::ClientTimeoutAccess, &["tcp/22"]);
        m.request.client_timeout = Some(600);
        m.request.access_ip = Some("10.0.0.77".parse().unwrap());
        let (target, _, open_for, _) =
            fwknop_grant(&s, &FwknopNat::default(), &m, src, &mut |_| None).unwrap();
        assert_eq!(target, "10.0.0.77".parse::<IpAddr>().unwrap());
        assert_eq!(open_for, Duration::from_secs(60));
    }
}
