//! fwknopd.conf: the settings Sesame uses, and a treatment for every
//! other keyword (noted, or refused where ignoring it would widen access).

use std::collections::BTreeMap;
use std::path::Path;

use super::model::*;
use super::values::*;

/// How Sesame treats an fwknopd.conf keyword it does not use itself.
enum Treatment {
    /// Accepted; the import output says why it has no effect.
    Ignored(&'static str),
    /// Accepted when `N`; `Y` is refused with this reason.
    RefusedIfYes(&'static str),
    /// Always refused, with this reason.
    Refused(&'static str),
}

const FIREWALL_NOTE: &str = "fwknopd firewall backend setting; Sesame replaces it with nftables \
     grant sets in its own table (inet sesame), closed by kernel timeouts";
const CAPTURE_NOTE: &str =
    "capture tuning; Sesame receives only the SPA port's packets through NFLOG";

fn fwknopd_treatment(kw: &str) -> Option<Treatment> {
    use Treatment::*;
    Some(match kw {
        "FIREWALL_TYPE" | "FIREWALL_EXE" | "FLUSH_IPT_AT_INIT" | "IPT_INPUT_ACCESS"
        | "IPT_OUTPUT_ACCESS" | "IPT_FORWARD_ACCESS" | "IPT_DNAT_ACCESS" | "IPT_SNAT_ACCESS"
        | "IPT_MASQUERADE_ACCESS" | "ENABLE_IPT_COMMENT_CHECK" | "IPT_EXEC_TRIES"
        | "ENABLE_RULE_PREPEND" | "RULES_CHECK_THRESHOLD" | "FLUSH_FIREWD_AT_INIT"
        | "FIREWD_INPUT_ACCESS" | "FIREWD_OUTPUT_ACCESS" | "FIREWD_FORWARD_ACCESS"
        | "FIREWD_DNAT_ACCESS" | "FIREWD_SNAT_ACCESS" | "FIREWD_MASQUERADE_ACCESS"
        | "ENABLE_FIREWD_COMMENT_CHECK" | "FLUSH_IPFW_AT_INIT" | "FLUSH_IPFW_AT_EXIT"
        | "IPFW_START_RULE_NUM" | "IPFW_MAX_RULES" | "IPFW_ACTIVE_SET_NUM"
        | "IPFW_EXPIRE_SET_NUM" | "IPFW_EXPIRE_PURGE_INTERVAL" | "IPFW_ADD_CHECK_STATE"
        | "PF_ANCHOR_NAME" | "PF_EXPIRE_INTERVAL" => Ignored(FIREWALL_NOTE),
        "FLUSH_IPT_AT_EXIT" | "FLUSH_FIREWD_AT_EXIT" => Ignored(
            "Sesame keeps its table when it stops (protected ports stay closed); open grants end by their kernel timeouts",
        ),
        "ENABLE_IPT_SNAT" | "ENABLE_FIREWD_SNAT" | "SNAT_TRANSLATE_IP" => RefusedIfYes(
            "SNAT to a chosen address is not supported: Sesame's forwards keep the client's address, or masquerade (access.conf FORCE_MASQUERADE)",
        ),
        "ENABLE_NAT_DNS" => RefusedIfYes(
            "NAT hosts must be addresses: a name resolved at request time would bypass the allow-list of inner hosts (--nat-host)",
        ),
        "ENABLE_DESTINATION_RULE" => RefusedIfYes(
            "with Y, fwknopd's grants admit connections to the SPA packet's destination address only; Sesame's grants admit the granted source on every local address, so ignoring it would widen access (DESTINATION itself is supported: it selects the stanza)",
        ),
        "ENABLE_IPT_OUTPUT" | "ENABLE_FIREWD_OUTPUT" => Ignored(
            "Sesame adds no output rules; replies of granted connections need your output policy to accept established traffic",
        ),
        "ENABLE_PCAP_PROMISC" | "PCAP_DISPATCH_COUNT" | "PCAP_LOOP_SLEEP" | "MAX_SNIFF_BYTES"
        | "EXIT_AT_INTF_DOWN" | "UDPSERV_SELECT_TIMEOUT" | "NFQ_TABLE" | "NFQ_CHAIN"
        | "NFQ_QUEUE_NUMBER" | "NFQ_LOOP_SLEEP" => Ignored(CAPTURE_NOTE),
        "ENABLE_PCAP_ANY_DIRECTION" => Ignored(
            "Sesame sees SPA packets as they arrive (prerouting), whatever their destination",
        ),
        "PCAP_FILE" => Ignored("offline pcap input (a debugging aid) has no Sesame equivalent"),
        "ENABLE_TCP_SERVER" | "TCPSERV_PORT" => Ignored(
            "Sesame receives SPA packets over UDP only; clients using `fwknop -P tcp` must switch to UDP",
        ),
        "ENABLE_SPA_OVER_HTTP" | "ALLOW_ANY_USER_AGENT" | "ENABLE_X_FORWARDED_FOR" => Ignored(
            "Sesame does not read SPA packets from HTTP requests; clients must send UDP",
        ),
        "DIGEST_FILE" | "DIGEST_DB_FILE" => Ignored(
            "Sesame keeps its own replay cache in [daemon] state_dir; this file is not imported",
        ),
        "CMD_EXEC_TIMEOUT" | "SUDO_EXE" => Ignored("command execution setting; not used by Sesame"),
        "GPG_HOME_DIR" | "GPG_EXE" => {
            Ignored("GPG is out of scope (access.conf GPG_* keywords are refused)")
        }
        "LOCALE" | "SYSLOG_IDENTITY" | "SYSLOG_FACILITY" | "VERBOSE" => Ignored(
            "logging setting; see sesamed --log-format and [daemon] syslog / log_file",
        ),
        "FWKNOP_RUN_DIR" | "FWKNOP_CONF_DIR" | "FWKNOP_PID_FILE" | "ACCESS_FILE" => Ignored(
            "fwknopd path; Sesame reads the access.conf given on its command line and has its own pid_file and state_dir",
        ),
        "ACCESS_FOLDER" => Refused(
            "Sesame reads the access.conf given on its command line; read the folder from it with `%include_folder DIR`",
        ),
        "BLACKLIST" | "ENABLE_EXTERNAL_CMDS" | "EXTERNAL_CMD_OPEN" | "EXTERNAL_CMD_CLOSE"
        | "EXTERNAL_CMD_ALARM" | "ENABLE_EXT_CMD_PREFIX" | "EXT_CMD_PREFIX" => {
            Ignored("not implemented by fwknopd 2.6 either")
        }
        "AFL_PKT_FILE" | "FAULT_INJECTION_TAG" => Ignored("fwknopd test setting"),
        _ => return None,
    })
}

/// Parses fwknopd.conf text; `path` is only used in messages.
pub fn parse_fwknopd(text: &str, path: &Path) -> Result<FwknopdSettings, FwknopConfError> {
    let mut set: BTreeMap<&'static str, (String, usize)> = BTreeMap::new();
    let mut notes = Vec::new();
    let shown = path.display().to_string();
    for l in conf_lines(text) {
        let kw = l.keyword;
        let err = |m: String| invalid(path, l.number, kw, m);
        const USED: [&str; 14] = [
            "ENABLE_IPT_FORWARDING",
            "ENABLE_IPT_LOCAL_NAT",
            "ENABLE_FIREWD_FORWARDING",
            "ENABLE_FIREWD_LOCAL_NAT",
            "PCAP_INTF",
            "PCAP_FILTER",
            "ENABLE_UDP_SERVER",
            "UDPSERV_PORT",
            "ENABLE_NFQ_CAPTURE",
            "NFQ_PORT",
            "NFQ_INTERFACE",
            "ENABLE_SPA_PACKET_AGING",
            "MAX_SPA_PACKET_AGE",
            "ENABLE_DIGEST_PERSISTENCE",
        ];
        if let Some(used) = USED.iter().find(|u| **u == kw) {
            if let Some((_, first)) = set.get(used) {
                return Err(err(format!("already set at line {first}; give it once")));
            }
            set.insert(used, (l.value.to_string(), l.number));
            continue;
        }
        let note = |text: &str| Note {
            path: shown.clone(),
            line: l.number,
            keyword: kw.to_string(),
            stanza: None,
            text: text.to_string(),
        };
        match fwknopd_treatment(kw) {
            Some(Treatment::Ignored(why)) => notes.push(note(why)),
            Some(Treatment::RefusedIfYes(why)) => {
                if yes_no(l.value).map_err(err)? {
                    return Err(err(why.to_string()));
                }
                notes.push(note("N: no effect."));
            }
            Some(Treatment::Refused(why)) => return Err(err(why.to_string())),
            None => {
                let upper = kw.to_ascii_uppercase();
                let hint = if upper != kw
                    && (USED.contains(&upper.as_str()) || fwknopd_treatment(&upper).is_some())
                {
                    format!(" (keywords are upper case: {upper})")
                } else {
                    String::new()
                };
                return Err(err(format!("unknown fwknopd.conf keyword{hint}")));
            }
        }
    }

    let mut out = FwknopdSettings {
        interfaces_origin: "fwknopd.conf has no PCAP_INTF: fwknopd sniffed eth0 by default".into(),
        ..FwknopdSettings::default()
    };
    let get = |k: &str| set.get(k).map(|(v, n)| (v.as_str(), *n));
    let flag = |k: &str| -> Result<bool, FwknopConfError> {
        match get(k) {
            None => Ok(false),
            Some((v, n)) => yes_no(v).map_err(|e| invalid(path, n, k, e)),
        }
    };
    let unused = |notes: &mut Vec<Note>, k: &str, why: &str| {
        if let Some((_, n)) = get(k) {
            notes.push(Note {
                path: shown.clone(),
                line: n,
                keyword: k.to_string(),
                stanza: None,
                text: why.to_string(),
            });
        }
    };
    let port_of = |k: &str| -> Result<Option<(u16, usize)>, FwknopConfError> {
        match get(k) {
            None => Ok(None),
            Some((v, n)) => match v.parse::<u16>() {
                Ok(p) if p != 0 => Ok(Some((p, n))),
                _ => Err(invalid(
                    path,
                    n,
                    k,
                    format!("expected a port from 1 to 65535, found {v:?}"),
                )),
            },
        }
    };
    out.nat_forwarding = flag("ENABLE_IPT_FORWARDING")? || flag("ENABLE_FIREWD_FORWARDING")?;
    out.nat_local = flag("ENABLE_IPT_LOCAL_NAT")? || flag("ENABLE_FIREWD_LOCAL_NAT")?;
    let udp = flag("ENABLE_UDP_SERVER")?;
    let nfq = flag("ENABLE_NFQ_CAPTURE")?;
    if udp && nfq {
        let (_, n) = get("ENABLE_NFQ_CAPTURE").expect("set");
        return Err(invalid(
            path,
            n,
            "ENABLE_NFQ_CAPTURE",
            "ENABLE_UDP_SERVER is Y too: fwknopd reads packets one way; say which",
        ));
    }
    let interface = |k: &str| -> Result<Option<(String, usize)>, FwknopConfError> {
        match get(k) {
            None => Ok(None),
            Some((v, n)) if v.eq_ignore_ascii_case("any") => Ok(Some((String::new(), n))),
            Some((v, n)) if crate::model::valid_interface_name(v) => Ok(Some((v.to_string(), n))),
            Some((v, n)) => Err(invalid(
                path,
                n,
                k,
                format!("{v:?}: expected an interface name of 1 to 15 characters, or any"),
            )),
        }
    };
    let set_interface = |out: &mut FwknopdSettings, k: &str, v: Option<(String, usize)>| {
        if let Some((name, n)) = v {
            if name.is_empty() {
                out.interfaces_origin = format!("{k} any (line {n}): every interface");
            } else {
                out.interfaces_origin = format!("{k} {name} (line {n})");
                out.interfaces = vec![name];
            }
        }
    };
    if nfq {
        if let Some((p, pn)) = port_of("NFQ_PORT")? {
            out.port = p;
            out.port_origin = format!("NFQ_PORT {p} (line {pn}, NFQUEUE capture)");
        } else {
            out.port_origin = "NFQUEUE capture with fwknopd's default NFQ_PORT 62201".into();
        }
        out.interfaces_origin = "NFQUEUE capture with no NFQ_INTERFACE: every interface".into();
        let iface = interface("NFQ_INTERFACE")?;
        set_interface(&mut out, "NFQ_INTERFACE", iface);
        for k in ["PCAP_INTF", "PCAP_FILTER", "UDPSERV_PORT"] {
            unused(
                &mut notes,
                k,
                "not used by fwknopd in NFQUEUE capture mode.",
            );
        }
    } else if udp {
        let (_, n) = get("ENABLE_UDP_SERVER").expect("set");
        match port_of("UDPSERV_PORT")? {
            Some((p, pn)) => {
                out.port = p;
                out.port_origin = format!("UDPSERV_PORT {p} (line {pn}, UDP server mode)");
            }
            None => {
                out.port_origin = format!(
                    "UDP server mode (ENABLE_UDP_SERVER at line {n}) with fwknopd's default UDPSERV_PORT 62201"
                )
            }
        }
        out.interfaces_origin = format!(
            "fwknopd's UDP server (ENABLE_UDP_SERVER at line {n}) listened on every interface"
        );
        for k in ["PCAP_INTF", "PCAP_FILTER", "NFQ_PORT", "NFQ_INTERFACE"] {
            unused(&mut notes, k, "not used by fwknopd in UDP server mode.");
        }
    } else {
        if let Some((filter, n)) = get("PCAP_FILTER") {
            out.port = parse_pcap_filter(filter).ok_or_else(|| {
                invalid(
                    path,
                    n,
                    "PCAP_FILTER",
                    format!(
                        "{filter:?}: Sesame observes exactly one UDP port; expected `udp port N` or `udp dst port N`"
                    ),
                )
            })?;
            out.port_origin = format!("PCAP_FILTER \"{filter}\" (line {n})");
        }
        let iface = interface("PCAP_INTF")?;
        set_interface(&mut out, "PCAP_INTF", iface);
        for k in ["UDPSERV_PORT", "NFQ_PORT", "NFQ_INTERFACE"] {
            unused(
                &mut notes,
                k,
                "not used by fwknopd in pcap mode (ENABLE_UDP_SERVER / ENABLE_NFQ_CAPTURE not Y).",
            );
        }
    }
    if let Some((v, n)) = get("MAX_SPA_PACKET_AGE") {
        out.max_age = seconds(v, MAX_PACKET_AGE_SECS)
            .map_err(|e| invalid(path, n, "MAX_SPA_PACKET_AGE", e))?;
        out.max_age_origin = format!("MAX_SPA_PACKET_AGE {v} (line {n})");
    }
    if let Some((v, n)) = get("ENABLE_SPA_PACKET_AGING") {
        if !yes_no(v).map_err(|e| invalid(path, n, "ENABLE_SPA_PACKET_AGING", e))? {
            return Err(invalid(
                path,
                n,
                "ENABLE_SPA_PACKET_AGING",
                format!(
                    "Sesame always checks the packet's age (its replay protection relies on it); for clients with poor clocks, raise MAX_SPA_PACKET_AGE (at most {MAX_PACKET_AGE_SECS})"
                ),
            ));
        }
    }
    if let Some((v, n)) = get("ENABLE_DIGEST_PERSISTENCE") {
        if !yes_no(v).map_err(|e| invalid(path, n, "ENABLE_DIGEST_PERSISTENCE", e))? {
            notes.push(Note {
                path: shown.clone(),
                line: n,
                keyword: "ENABLE_DIGEST_PERSISTENCE".into(),
                stanza: None,
                text: "N: Sesame always persists its replay cache, so a packet seen before a restart is still refused after it.".into(),
            });
        }
    }
    notes.sort_by_key(|n| n.line);
    out.notes = notes;
    Ok(out)
}

/// The port of a `udp port N` / `udp dst port N` filter (keywords
/// case-insensitive), or `None` for anything else.
pub(super) fn parse_pcap_filter(filter: &str) -> Option<u16> {
    let words: Vec<String> = filter
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let port = match words
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["udp", "port", p]
        | ["udp", "dst", "port", p]
        | ["udp", "and", "port", p]
        | ["udp", "and", "dst", "port", p]
        | ["port", p, "and", "udp"]
        | ["dst", "port", p, "and", "udp"]
        | ["udp", "&&", "port", p]
        | ["udp", "&&", "dst", "port", p] => p.parse::<u16>().ok()?,
        _ => return None,
    };
    (port != 0).then_some(port)
}
