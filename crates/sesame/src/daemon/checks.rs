//! Checks of a config against its own weaknesses and against the host, run
//! by `sesamed --check-config`, at start and at every reload: the same
//! ruleset encoder as the daemon, the sweep odds of short doors, knock ports
//! inside the host's ephemeral port range.

use std::ops::RangeInclusive;
use std::path::Path;

use sesame_core::{BanPolicy, Door, Proto};

use crate::config::{observed_knocks, Config};
use sesame_core::engine::Ruleset;

/// Knocks below this many make a plain door worth a warning.
pub const MIN_PLAIN_KNOCKS: usize = 4;

/// Packets per second of the sweeping attacker the odds assume (line rate of
/// minimum-size frames on 1 GbE).
pub const ATTACKER_PPS: f64 = 1_488_000.0;

/// What a config check found: `warnings` to print or log; `error` when the
/// config cannot run at all.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Findings {
    /// Weaknesses and conflicts worth an operator's attention.
    pub warnings: Vec<String>,
}

/// The ruleset `cfg` installs, known before any key is read (the engine
/// builds the same one from its doors).
pub fn ruleset(cfg: &Config) -> Ruleset {
    let doors: Vec<Door> = cfg
        .doors
        .iter()
        .map(|d| Door {
            sequence: observed_knocks(d, cfg.kinds.get(&d.name)),
            ..d.clone()
        })
        .collect();
    let mut r =
        sesame_core::engine::ruleset::build(&doors, cfg.daemon.nflog_group, &cfg.daemon.interfaces);
    r.spa_udp = cfg
        .kinds
        .values()
        .filter_map(|k| match k {
            crate::config::DoorKind::Spa(spa) => Some(spa.port),
            _ => None,
        })
        .collect();
    r
}

/// Runs every check. Fails when the kernel ruleset cannot be encoded, as
/// the daemon would fail at start or at reload.
pub fn check(cfg: &Config) -> Result<Findings, String> {
    sesame_nftables::encode_install(&cfg.daemon.table, &ruleset(cfg))
        .map_err(|e| format!("the kernel ruleset for this config cannot be built: {e}"))?;
    let mut out = Findings::default();
    for door in &cfg.doors {
        if cfg.kinds.contains_key(&door.name) || cfg.one_time.contains_key(&door.name) {
            continue;
        }
        if door.sequence.len() < MIN_PLAIN_KNOCKS {
            out.warnings.push(sweep_warning(door, &cfg.daemon.ban));
        }
    }
    if let Some(range) = read_ephemeral_range(Path::new(EPHEMERAL_RANGE_FILE)) {
        out.warnings.extend(ephemeral_overlaps(cfg, &range));
    }
    out.warnings.extend(dnat_findings(cfg));
    out.warnings.extend(foreign_drop_findings(cfg));
    Ok(out)
}

/// Protected services that another table drops or rejects: an accept in
/// Sesame's table does not override a drop elsewhere, so such a rule (left
/// from knockd or fwknop, or ufw's and firewalld's default deny) cancels
/// every grant in silence.
pub fn foreign_drop_findings(cfg: &Config) -> Vec<String> {
    let protected = protected_services(cfg);
    let forwarded = forwarded_services(cfg);
    if protected.is_empty() && forwarded.is_empty() {
        return Vec::new();
    }
    match sesame_nftables::Firewall::open(&cfg.daemon.table).and_then(|mut fw| fw.host_ruleset()) {
        Ok(host) => {
            let mut out = foreign_drops(&protected, &host);
            out.extend(foreign_forward_drops(&forwarded, &host));
            out
        }
        Err(e) => vec![format!(
            "could not read the host's nftables ruleset to look for rules in other tables that drop protected ports ({e}); run --check-config as root to check"
        )],
    }
}

/// The warnings for `protected` (door, service) pairs that `host` drops.
pub fn foreign_drops(
    protected: &[(String, sesame_core::Service)],
    host: &sesame_nftables::HostRuleset,
) -> Vec<String> {
    let mut out = Vec::new();
    for (door, service) in protected {
        let l4 = match service.proto {
            sesame_core::Proto::Tcp => 6,
            sesame_core::Proto::Udp => 17,
        };
        for what in host.blockers(l4, service.port) {
            out.push(format!(
                "door {door:?} protects {service}, but {what}: an accept in Sesame's table does not override a drop in another table, so every grant is cancelled. Let the other table accept {service} (Sesame then decides who gets in): see README, \"Host firewall tooling\""
            ));
        }
    }
    out
}

/// The warnings for forwards whose inner service `host` drops in its
/// forward path: the gateway's grant cannot get through such a drop.
pub fn foreign_forward_drops(
    forwarded: &[(String, sesame_core::Forward)],
    host: &sesame_nftables::HostRuleset,
) -> Vec<String> {
    let mut out = Vec::new();
    for (door, forward) in forwarded {
        let Some((proto, inner)) = forward.inner_service() else {
            continue;
        };
        let l4 = proto.number();
        for what in host.forward_blockers(l4, inner.port()) {
            out.push(format!(
                "door {door:?} forwards {forward}, but {what}: an accept in Sesame's table does not override a drop in another table, so the forward never gets through. Let the other table's forward path accept {proto}/{port} to {addr} (Sesame then decides who gets through): see docs/gateway.md",
                port = inner.port(),
                addr = inner.ip(),
            ));
        }
    }
    out
}

/// Every (door, forward) pair of the config.
fn forwarded_services(cfg: &Config) -> Vec<(String, sesame_core::Forward)> {
    cfg.doors
        .iter()
        .flat_map(|d| d.forwards.iter().map(move |f| (d.name.clone(), *f)))
        .collect()
}

/// Every (door, service) pair the config protects.
fn protected_services(cfg: &Config) -> Vec<(String, sesame_core::Service)> {
    cfg.doors
        .iter()
        .flat_map(|d| d.services.iter().map(move |s| (d.name.clone(), *s)))
        .collect()
}

/// Protected services the host also publishes by destination NAT: such
/// traffic is forwarded at prerouting and never meets the `input` hook
/// where Sesame's gate sits, so the door does not protect it. Reads the
/// nftables ruleset (needs CAP_NET_ADMIN; without it, says it could not
/// look) and notes legacy iptables NAT, which it cannot read.
pub fn dnat_findings(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let protected = protected_services(cfg);
    if protected.is_empty() {
        return out;
    }
    let rules =
        sesame_nftables::Firewall::open(&cfg.daemon.table).and_then(|mut fw| fw.dnat_rules());
    match rules {
        Ok(rules) => out.extend(dnat_overlaps(&protected, &rules)),
        Err(e) => out.push(format!(
            "could not read the host's nftables ruleset to look for DNAT rules that bypass protected ports ({e}); run --check-config as root to check"
        )),
    }
    let legacy = std::fs::read_to_string("/proc/net/ip_tables_names").unwrap_or_default()
        + &std::fs::read_to_string("/proc/net/ip6_tables_names").unwrap_or_default();
    if legacy.lines().any(|l| l.trim() == "nat") {
        out.push(
            "legacy iptables has a nat table, which Sesame cannot inspect: any port it forwards by DNAT (iptables -t nat -L -n) bypasses Sesame's gate. See SECURITY.md, \"DNAT'd ports\"".into(),
        );
    }
    out
}

/// The warnings for `protected` (door, service) pairs that a DNAT rule may
/// forward.
pub fn dnat_overlaps(
    protected: &[(String, sesame_core::Service)],
    rules: &[sesame_nftables::DnatRule],
) -> Vec<String> {
    let mut out = Vec::new();
    for (door, service) in protected {
        for r in rules.iter().filter(|r| r.may_forward(service.port)) {
            let how = if r.ports.contains(&service.port) {
                format!("forwards port {} by DNAT", service.port)
            } else {
                "forwards ports by DNAT (through a set, a range or without a port match)".into()
            };
            out.push(format!(
                "door {door:?} protects {service}, but table {} {} chain {} {how}: forwarded connections never reach the input hook, so Sesame does NOT protect them. Protect the service where it runs, or stop publishing it by DNAT (see SECURITY.md, \"DNAT'd ports\")",
                r.family, r.table, r.chain
            ));
        }
    }
    out
}

/// Probability that one random-order sweep of every port delivers `k`
/// knocks in order, when `observed` ports (the knocks and the guard) reset
/// an attempt: `(n-k+1)!/n!`. Without a guard, ports outside the sequence
/// are ignored and only the knocks' relative order matters: `1/k!`.
pub fn sweep_odds(door: &Door) -> f64 {
    let k = door.sequence.len();
    let guard: usize = door.guard_ranges().iter().map(|r| r.len()).sum();
    if guard == 0 {
        return (1..=k).map(|i| 1.0 / i as f64).product();
    }
    let n = guard.max(k);
    (0..k.saturating_sub(1))
        .map(|i| 1.0 / (n - i) as f64)
        .product()
}

/// Expected seconds of sweeping before `door` opens, under `ban`.
pub fn expected_sweep_seconds(door: &Door, ban: &BanPolicy) -> f64 {
    let p = sweep_odds(door);
    let sweeps_per_second = if ban.max_failures == 0 {
        ATTACKER_PPS / 65_535.0
    } else {
        // Each failed sweep is one failure: at most `max_failures` sweeps
        // per ban.
        f64::from(ban.max_failures) / ban.ban_for.as_secs_f64().max(1.0)
    };
    1.0 / (p * sweeps_per_second)
}

fn sweep_warning(door: &Door, ban: &BanPolicy) -> String {
    let p = sweep_odds(door);
    let seconds = expected_sweep_seconds(door, ban);
    let budget = if ban.max_failures == 0 {
        "with banning off (ban_after = 0), at 1.5 Mpps".to_string()
    } else {
        format!(
            "with the failure budget ({} failures, then a {} ban)",
            ban.max_failures,
            humantime::format_duration(ban.ban_for)
        )
    };
    format!(
        "door {:?} has {} knock(s): one blind random-order sweep of every port opens it with probability 1 in {:.0}; {budget} that is about {} of sweeping on average. Use {MIN_PLAIN_KNOCKS} or more knocks (and keep guard = \"auto\")",
        door.name,
        door.sequence.len(),
        1.0 / p,
        human_span(seconds)
    )
}

/// A rough, readable span: seconds to years.
pub fn human_span(seconds: f64) -> String {
    const YEAR: f64 = 365.0 * 86_400.0;
    if seconds >= YEAR {
        format!("{:.1} years", seconds / YEAR)
    } else if seconds >= 86_400.0 {
        format!("{:.1} days", seconds / 86_400.0)
    } else if seconds >= 3_600.0 {
        format!("{:.1} hours", seconds / 3_600.0)
    } else {
        format!("{seconds:.1} seconds")
    }
}

/// Where Linux keeps the ports it picks for outgoing connections (shared by
/// IPv4 and IPv6).
pub const EPHEMERAL_RANGE_FILE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// Reads `FIRST\tLAST` from `path`.
pub fn read_ephemeral_range(path: &Path) -> Option<RangeInclusive<u16>> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut it = text.split_whitespace().map(str::parse::<u16>);
    let (first, last) = (it.next()?.ok()?, it.next()?.ok()?);
    (first <= last).then_some(first..=last)
}

/// Knock ports inside the host's ephemeral range: the kernel drops every
/// packet to them (before conntrack), replies to the host's own outgoing
/// connections included, so those connections fail. One warning per door.
pub fn ephemeral_overlaps(cfg: &Config, range: &RangeInclusive<u16>) -> Vec<String> {
    let mut out = Vec::new();
    for door in &cfg.doors {
        let knocks = observed_knocks(door, cfg.kinds.get(&door.name));
        let inside: Vec<u16> = knocks
            .iter()
            .map(|k| k.port)
            .filter(|p| range.contains(p))
            .collect();
        if inside.is_empty() {
            continue;
        }
        let (lo, hi) = (inside.iter().min(), inside.iter().max());
        let protos: std::collections::BTreeSet<Proto> = knocks
            .iter()
            .filter(|k| range.contains(&k.port))
            .map(|k| k.proto)
            .collect();
        let protos: Vec<&str> = protos.iter().map(|p| p.name()).collect();
        out.push(format!(
            "door {:?}: {} knock port(s) ({}{}, {}) lie in the host's ephemeral port range {}-{} ({EPHEMERAL_RANGE_FILE}); replies to this host's own outgoing connections on those ports would be dropped. Move the knocks out of the range, or shrink the range",
            door.name,
            inside.len(),
            lo.map_or(String::new(), |p| p.to_string()),
            match (lo, hi) {
                (Some(a), Some(b)) if a != b => format!("-{b}"),
                _ => String::new(),
            },
            protos.join("/"),
            range.start(),
            range.end()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn parse(text: &str) -> Config {
        config::parse(text, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn short_plain_doors_are_warned_about_with_their_odds() {
        let cfg = parse(
            r#"
            [door.short]
            sequence = ["7000", "8000", "9000"]
            protect = ["tcp/22"]
            [door.long]
            sequence = ["7001", "8001", "9001", "10001"]
            protect = ["tcp/22"]
            [door.bare]
            sequence = ["7002", "8002"]
            guard = "none"
            protect = ["tcp/22"]
            "#,
        );
        let f = check(&cfg).unwrap();
        let short: Vec<&String> = f
            .warnings
            .iter()
            .filter(|w| w.contains("knock(s)"))
            .collect();
        assert_eq!(short.len(), 2, "{:?}", f.warnings);
        assert!(
            short
                .iter()
                .any(|w| w.contains("\"short\"") && w.contains("1 in 589056")),
            "{short:?}"
        );
        // No guard: two knocks arrive in order half the time.
        assert!(
            short
                .iter()
                .any(|w| w.contains("\"bare\"") && w.contains("1 in 2;")),
            "{short:?}"
        );
        assert!(!short.iter().any(|w| w.contains("\"long\"")));
    }

    #[test]
    fn default_plain_door_takes_years_to_sweep() {
        let cfg = parse(
            r#"
            [door.ssh]
            sequence = ["7000", "8000", "9000"]
            protect = ["tcp/22"]
            "#,
        );
        let secs = expected_sweep_seconds(&cfg.doors[0], &cfg.daemon.ban);
        assert!(secs > 365.0 * 86_400.0, "{}", human_span(secs));
    }

    #[test]
    fn knock_ports_in_the_ephemeral_range_are_named() {
        let cfg = parse(
            r#"
            [door.vpn]
            totp_ports = "40000-42999"
            protect = ["udp/51820"]
            [door.vpn.users.carol]
            totp_secret = "/nonexistent"
            [door.ssh]
            sequence = ["7000", "33000:udp", "9000", "10000"]
            protect = ["tcp/22"]
            "#,
        );
        let w = ephemeral_overlaps(&cfg, &(32768..=60999));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("\"ssh\": 1 knock port(s) (33000, udp)"),
            "{w:?}"
        );
        assert!(
            w[1].contains("\"vpn\": 3000 knock port(s) (40000-42999, tcp)"),
            "{w:?}"
        );
        assert!(ephemeral_overlaps(&cfg, &(50000..=60999)).is_empty());
        let dir = std::env::temp_dir().join(format!("sesame-eph-{}", std::process::id()));
        std::fs::write(&dir, "32768\t60999\n").unwrap();
        assert_eq!(read_ephemeral_range(&dir), Some(32768..=60999));
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn a_totp_range_of_every_port_encodes() {
        // Today's crash: over ~4,096 ports the set's element list exceeded
        // one netlink attribute and the daemon panicked.
        let cfg = parse(
            r#"
            [door.vpn]
            totp_ports = "1024-65535"
            protect = ["udp/51820"]
            [door.vpn.users.carol]
            totp_secret = "/nonexistent"
            "#,
        );
        check(&cfg).unwrap();
    }

    #[test]
    fn ports_are_split_by_flag_predicate() {
        let mut cfg = parse(
            r#"
            [door.a]
            sequence = ["100", "200:udp", "300"]
            protect = ["tcp/22"]
            [door.b]
            sequence = ["300", "400"]
            tcp_flags = "fin,!ack"
            protect = ["tcp/22", "udp/51820"]
            "#,
        );
        cfg.daemon.nflog_group = 9;
        let r = ruleset(&cfg);
        assert_eq!(r.nflog_group, 9);
        assert!(r.targets.is_empty() && r.interfaces.is_empty());
        assert_eq!(r.knock_tcp_syn, vec![100]);
        assert_eq!(r.knock_tcp_any, vec![300, 400]);
        assert_eq!(r.knock_udp, vec![200]);
        assert_eq!(r.protected.len(), 2);
    }
}
