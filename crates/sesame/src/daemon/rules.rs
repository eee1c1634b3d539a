//! Translates doors into the kernel ruleset the firewall adapter installs.

use std::collections::BTreeSet;
use std::net::IpAddr;

use sesame_core::{Door, Proto, TcpFlags};
use sesame_nftables::Ruleset;

use crate::config::{observed_knocks, Config, DaemonSettings};

/// Builds the ruleset for `doors`. TCP knock ports whose doors all use the
/// default `syn,!ack` predicate are filtered in the kernel, so only connection
/// attempts reach the daemon; ports used with custom flags log every TCP
/// packet and leave the flag test to the core.
/// The ruleset for `config`, where `current` holds each configured door's
/// current sequence at the same index (one-time sequences move on; extra
/// tracker-only doors after them are ignored).
pub fn for_config(config: &Config, current: &[Door]) -> Ruleset {
    let spa_udp: Vec<u16> = config
        .kinds
        .values()
        .filter_map(|k| match k {
            crate::config::DoorKind::Spa(spa) => Some(spa.port),
            _ => None,
        })
        .collect();
    let doors: Vec<Door> = config
        .doors
        .iter()
        .enumerate()
        .map(|(i, door)| {
            let mut d = door.clone();
            d.sequence = match config.kinds.get(&door.name) {
                Some(kind) => observed_knocks(door, Some(kind)),
                None => current
                    .get(i)
                    .map_or_else(|| door.sequence.clone(), |c| c.sequence.clone()),
            };
            d
        })
        .collect();
    let mut r = ruleset(&doors, &config.daemon);
    r.spa_udp = spa_udp;
    r
}

/// `doors` carry the knocks to observe in `sequence` (see
/// [`crate::config::observed_knocks`] for SPA and TOTP doors).
pub fn ruleset(doors: &[Door], settings: &DaemonSettings) -> Ruleset {
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
    }
    tcp_syn.retain(|p| !tcp_any.contains(p));
    // Guard ports are logged without being dropped; a port that is also a
    // knock is a knock, and a protected service needs no observing.
    let mut guard_tcp = BTreeSet::new();
    let mut guard_udp = BTreeSet::new();
    for range in doors.iter().flat_map(Door::guard_ranges) {
        for port in range.ports() {
            let service = sesame_core::Service {
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
    Ruleset {
        nflog_group: settings.nflog_group,
        interfaces: settings.interfaces.clone(),
        targets: targets.into_iter().collect(),
        knock_tcp_syn: tcp_syn.into_iter().collect(),
        knock_tcp_any: tcp_any.into_iter().collect(),
        knock_udp: udp.into_iter().collect(),
        guard_tcp_syn: guard_tcp.into_iter().collect(),
        guard_udp: guard_udp.into_iter().collect(),
        spa_udp: Vec::new(),
        protected: protected.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use std::path::Path;

    #[test]
    fn ports_are_split_by_flag_predicate() {
        let cfg = config::parse(
            r#"
            [door.a]
            sequence = ["100", "200:udp", "300"]
            protect = ["tcp/22"]
            [door.b]
            sequence = ["300", "400"]
            tcp_flags = "fin,!ack"
            protect = ["tcp/22", "udp/51820"]
            "#,
            Path::new("t.toml"),
        )
        .unwrap();
        let settings = DaemonSettings {
            nflog_group: 9,
            ..DaemonSettings::default()
        };
        let r = ruleset(&cfg.doors, &settings);
        assert_eq!(r.nflog_group, 9);
        assert!(r.targets.is_empty() && r.interfaces.is_empty());
        assert_eq!(r.knock_tcp_syn, vec![100]);
        assert_eq!(r.knock_tcp_any, vec![300, 400]);
        assert_eq!(r.knock_udp, vec![200]);
        assert_eq!(r.protected.len(), 2);
    }
}
