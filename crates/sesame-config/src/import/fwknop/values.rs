//! fwknop's value syntax and limits, shared by the access.conf importer
//! and by Sesame's own TOML for fwknop doors: sources, ports, keys,
//! usernames, timeouts. Nothing here depends on the schema.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use sesame_core::fwknop::{DigestType, EncMode};
use sesame_core::{Proto, Service};

pub use sesame_core::fwknop::stanza::{
    FwknopDoor, FwknopNat, FwknopStanza, Secret, DEFAULT_ACCESS_TIMEOUT, DEFAULT_MAX_FW_TIMEOUT,
};

/// Default fwknop SPA port (UDP).
pub const DEFAULT_PORT: u16 = 62201;
/// Default accepted packet age (fwknopd's `MAX_SPA_PACKET_AGE`).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(120);
/// Largest `FW_ACCESS_TIMEOUT` / `MAX_FW_TIMEOUT` fwknopd accepts, seconds.
pub const MAX_TIMEOUT_SECS: u64 = 8_388_608;
/// Largest `MAX_SPA_PACKET_AGE` fwknopd accepts, seconds.
pub const MAX_PACKET_AGE_SECS: u64 = 100_000;
/// Longest `KEY` / decoded `KEY_BASE64` (fwknop's Rijndael key size).
pub const MAX_KEY_LEN: usize = 32;
/// Longest `HMAC_KEY` / decoded `HMAC_KEY_BASE64` (fwknop's limit).
pub const MAX_HMAC_KEY_LEN: usize = 136;
/// Longest `REQUIRE_USERNAME` (fwknop's username limit).
pub const MAX_USERNAME_LEN: usize = 64;
/// How many files deep `%include` may nest (the top access.conf counts as
/// one), as in fwknopd.
pub const MAX_INCLUDE_DEPTH: usize = 3;
/// Name of the door built from an access.conf.
pub const DOOR_NAME: &str = "fwknop";
/// The placeholder the packaged access.conf ships with.
pub(super) const CHANGEME: &str = "__CHANGEME__";

/// Checks the invariants shared by every way of writing a stanza (key
/// sizes, known digest and mode, timeouts in range, legacy mode without
/// HMAC, OPEN_PORTS present). Messages never contain key material.
pub fn check_stanza(stanza: &FwknopStanza) -> Result<(), String> {
    if stanza.key.0.is_empty() || stanza.key.0.len() > MAX_KEY_LEN {
        return Err(format!(
            "the key is {} bytes; fwknop keys are 1 to {MAX_KEY_LEN} bytes",
            stanza.key.0.len()
        ));
    }
    if let Some(h) = &stanza.hmac_key {
        if h.0.is_empty() || h.0.len() > MAX_HMAC_KEY_LEN {
            return Err(format!(
                "the HMAC key is {} bytes; fwknop HMAC keys are 1 to {MAX_HMAC_KEY_LEN} bytes",
                h.0.len()
            ));
        }
    }
    if stanza.encryption_mode == EncMode::CbcLegacyIv && stanza.hmac_key.is_some() {
        return Err(
            "legacy encryption mode cannot be used with an HMAC key (the fwknop client refuses the combination)"
                .into(),
        );
    }
    for (what, d) in [
        ("access timeout", Some(stanza.access_timeout)),
        ("max timeout", stanza.max_timeout),
    ] {
        if let Some(d) = d {
            if d.is_zero() || d > Duration::from_secs(MAX_TIMEOUT_SECS) {
                return Err(format!(
                    "the {what} must be from 1 to {MAX_TIMEOUT_SECS} seconds"
                ));
            }
        }
    }
    if let Some(u) = &stanza.require_username {
        check_username(u)?;
    }
    Ok(())
}

/// Parses a `SOURCE` list: `ANY`, or comma-separated IPv4/IPv6 addresses and
/// CIDR networks (an IPv4 network may also be written with a dotted mask).
/// Returns an empty list for `ANY`. Host bits of networks are cleared.
pub fn parse_source(text: &str) -> Result<Vec<(IpAddr, u8)>, String> {
    let mut out: Vec<(IpAddr, u8)> = Vec::new();
    let mut any = false;
    for (i, item) in text.split(',').map(str::trim).enumerate() {
        if item.is_empty() {
            return Err(format!(
                "item {} is empty (two commas in a row, or a trailing comma)",
                i + 1
            ));
        }
        if item.eq_ignore_ascii_case("ANY") {
            any = true;
            continue;
        }
        let net = parse_network(item).map_err(|e| format!("item {} {item:?}: {e}", i + 1))?;
        if !out.contains(&net) {
            out.push(net);
        }
    }
    if any {
        out.clear();
    }
    Ok(out)
}

pub(super) fn parse_network(item: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = match item.split_once('/') {
        Some((a, p)) => (a.trim(), Some(p.trim())),
        None => (item, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| "expected an IPv4 or IPv6 address or network, or ANY".to_string())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("prefix length {p} is over {max}")),
            }
        }
        Some(p) if addr.is_ipv4() => {
            let mask: Ipv4Addr = p
                .parse()
                .map_err(|_| format!("{p:?} is neither a prefix length nor a netmask"))?;
            let bits = u32::from(mask);
            if bits.leading_ones() + bits.trailing_zeros() != 32 {
                return Err(format!("netmask {p} is not contiguous"));
            }
            bits.leading_ones() as u8
        }
        Some(p) => return Err(format!("prefix length {p:?} is not a number")),
    };
    Ok((mask_addr(addr, prefix), prefix))
}

pub(super) fn mask_addr(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

/// Writes a source list back: `["ANY"]` when empty, plain addresses for
/// single hosts, `addr/prefix` for networks.
pub fn format_source(source: &[(IpAddr, u8)]) -> Vec<String> {
    if source.is_empty() {
        return vec!["ANY".to_string()];
    }
    source
        .iter()
        .map(|(a, p)| {
            let host = if a.is_ipv4() { 32 } else { 128 };
            if *p == host {
                a.to_string()
            } else {
                format!("{a}/{p}")
            }
        })
        .collect()
}

/// Parses one `proto/port` item (`tcp/22`, `udp/53`; protocol
/// case-insensitive), as in `OPEN_PORTS`.
pub fn parse_port_item(item: &str) -> Result<Service, String> {
    let bad = || format!("{item:?}: expected tcp/PORT or udp/PORT with a port from 1 to 65535");
    let (proto, port) = item.trim().split_once('/').ok_or_else(bad)?;
    let proto: Proto = proto.trim().parse().map_err(|_| bad())?;
    let port = port.trim();
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match port.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(Service {
            proto,
            port: p as u16,
        }),
        _ => Err(bad()),
    }
}

/// Parses an `OPEN_PORTS` / `RESTRICT_PORTS` list: comma-separated
/// `proto/port` items, duplicates dropped.
pub fn parse_port_list(text: &str) -> Result<Vec<Service>, String> {
    let mut out: Vec<Service> = Vec::new();
    for (i, item) in text.split(',').map(str::trim).enumerate() {
        if item.is_empty() {
            return Err(format!(
                "item {} is empty (two commas in a row, or a trailing comma)",
                i + 1
            ));
        }
        let s = parse_port_item(item).map_err(|e| format!("item {}: {e}", i + 1))?;
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// Parses `HMAC_DIGEST_TYPE` (case-insensitive; `-` accepted for `_`).
pub fn parse_hmac_digest(text: &str) -> Result<DigestType, String> {
    let wanted = text.trim().to_ascii_uppercase().replace('-', "_");
    DigestType::ALL
        .into_iter()
        .find(|d| d.name() == wanted)
        .ok_or_else(|| {
            let names: Vec<&str> = DigestType::ALL.iter().map(|d| d.name()).collect();
            format!(
                "unknown HMAC digest {text:?}; expected one of {}",
                names.join(", ")
            )
        })
}

/// Parses `ENCRYPTION_MODE` (case-insensitive).
pub fn parse_encryption_mode(text: &str) -> Result<EncMode, String> {
    let t = text.trim();
    if let Some(m) = EncMode::ALL
        .into_iter()
        .find(|m| m.name().eq_ignore_ascii_case(t))
    {
        return Ok(m);
    }
    if t.eq_ignore_ascii_case("asymmetric") {
        return Err("asymmetric (GPG) mode is out of scope: Sesame's fwknop door takes Rijndael keys only (KEY or KEY_BASE64)".into());
    }
    if t.eq_ignore_ascii_case("pcbc") {
        return Err("PCBC is listed by fwknop but not supported by it either".into());
    }
    let names: Vec<&str> = EncMode::ALL.iter().map(|m| m.name()).collect();
    Err(format!(
        "unknown encryption mode {t:?}; expected one of {}",
        names.join(", ")
    ))
}

/// base64 decoding for keys: standard alphabet, `=` padding optional.
/// Errors never contain the text.
pub fn decode_key_base64(text: &str) -> Result<Vec<u8>, String> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    match LENIENT.decode(text.trim()) {
        Ok(v) if v.is_empty() => Err("decodes to an empty key".into()),
        Ok(v) => Ok(v),
        Err(_) => Err("not valid base64 (the value is not shown)".into()),
    }
}

/// Checks a `REQUIRE_USERNAME` value.
pub fn check_username(u: &str) -> Result<(), String> {
    if u.is_empty() || u.len() > MAX_USERNAME_LEN {
        return Err(format!(
            "the username must be 1 to {MAX_USERNAME_LEN} characters"
        ));
    }
    Ok(())
}

pub(super) fn yes_no(value: &str) -> Result<bool, String> {
    match value.to_ascii_uppercase().as_str() {
        "Y" | "YES" => Ok(true),
        "N" | "NO" => Ok(false),
        _ => Err(format!("expected Y or N, found {value:?}")),
    }
}

pub(super) fn seconds(value: &str, max: u64) -> Result<Duration, String> {
    match value.parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(format!(
            "expected whole seconds from 1 to {max}, found {value:?}"
        )),
    }
}

/// `MM/DD/YYYY` → Unix time of 00:00 UTC that day.
/// fwknopd's `ACCESS_EXPIRE MM/DD/YYYY`: midnight at the start of that day,
/// in the host's local time zone (fwknopd used `mktime`), as Unix seconds.
/// Years read as fwknopd reads them: under 100 are 2000 + YY, over 1900 as
/// written, others as years since 1900.
pub(super) fn fwknop_expire_date(value: &str) -> Option<i64> {
    use chrono::TimeZone;
    let mut parts = value.trim().split('/');
    let (m, d, y) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || m.len() > 2 || d.len() > 2 || y.len() > 4 {
        return None;
    }
    let (m, d, y): (u32, u32, i32) = (m.parse().ok()?, d.parse().ok()?, y.parse().ok()?);
    let year = match y {
        y if y > 1900 => y,
        y if y < 100 => 2000 + y,
        y => 1900 + y,
    };
    let day = chrono::NaiveDate::from_ymd_opt(year, m, d)?;
    let midnight = day.and_hms_opt(0, 0, 0)?;
    let local = chrono::Local.from_local_datetime(&midnight).earliest()?;
    Some(local.timestamp())
}

// ---------------------------------------------------------------------------
// Line splitting (both files).

pub(super) struct ConfLine<'a> {
    pub(super) number: usize,
    pub(super) keyword: &'a str,
    pub(super) value: &'a str,
}

pub(super) fn conf_lines(text: &str) -> impl Iterator<Item = ConfLine<'_>> {
    text.lines().enumerate().filter_map(|(i, raw)| {
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            return None;
        }
        let (keyword, rest) = match t.find(char::is_whitespace) {
            Some(at) => (&t[..at], &t[at..]),
            None => (t, ""),
        };
        let keyword = keyword.strip_suffix(':').unwrap_or(keyword);
        let value = rest.split(';').next().unwrap_or_default().trim();
        Some(ConfLine {
            number: i + 1,
            keyword,
            value,
        })
    })
}

// ---------------------------------------------------------------------------
// access.conf

/// `--nat-host` values (addresses or networks) as networks; each error
/// names the value. `ANY` is refused: the allow-list names inner networks.
pub fn parse_nat_hosts(values: &[String]) -> Result<Vec<(IpAddr, u8)>, String> {
    let mut out = Vec::new();
    for v in values {
        if v.trim().eq_ignore_ascii_case("any") {
            return Err(format!(
                "--nat-host {v:?}: name the inner networks (0.0.0.0/0 if you mean every IPv4 address)"
            ));
        }
        out.extend(parse_source(v).map_err(|e| format!("--nat-host {v:?}: {e}"))?);
    }
    Ok(out)
}
