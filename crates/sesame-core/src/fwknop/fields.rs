//! The plaintext fields of FKO 3.0.0: splitting by message type, per-field
//! validation, and the encoder's side of the same grammar.
//!
//! ```text
//! rand ":" B64(user) ":" timestamp ":" version ":" type ":" B64(message)
//!      [":" B64(nat_access)] [":" B64(server_auth)] [":" client_timeout]
//! ```

use std::net::{IpAddr, Ipv4Addr};

use super::encoding::DigestType;
use super::encoding::{b64_decode, b64_encode};
use super::message::{message_string, AccessPort, FwknopRequest, Malformed, MsgType};
use crate::door::Service;

/// Length of the random value.
pub(super) const RANDOM_LEN: usize = 16;
/// Longest username, decoded (fwknop's `MAX_SPA_USERNAME_SIZE`).
pub(super) const MAX_USERNAME_LEN: usize = 64;
/// Longest timestamp field.
const MAX_TIMESTAMP_LEN: usize = 12;
/// Longest version field.
const MAX_VERSION_LEN: usize = 8;
/// Longest message, decoded (fwknop's `MAX_SPA_MESSAGE_SIZE`).
pub(super) const MAX_MESSAGE_LEN: usize = 256;
/// Longest NAT host.
const MAX_NAT_HOST_LEN: usize = 70;
/// Fewest `:`-separated fields before the digest (fwknop's `MIN_SPA_FIELDS`).
const MIN_FIELDS: usize = 6;
/// Characters fwknop never allows in a username.
const USERNAME_FORBIDDEN: &[u8] = b"\"/\\[]:;|=,+*?<>";
/// Characters fwknop never allows in a NAT host.
const NAT_HOST_FORBIDDEN: &[u8] = b" /?\"'\\";

/// The fields of a message, without its digest (the request's digest type
/// is the caller's to set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Fields {
    pub random: String,
    pub version: String,
    pub request: FwknopRequest,
}

/// Splits the encoded message (the plaintext without `:digest`) into its
/// fields and reads the message type, enforcing the field-count rules:
/// at least six fields; after the type, one to two fields for types 0/1,
/// two to three for 2/3/5, three to four for 4/6.
pub(super) fn split(encoded: &str) -> Result<(Vec<&str>, MsgType), Malformed> {
    let parts: Vec<&str> = encoded.split(':').collect();
    if parts.len() < MIN_FIELDS {
        return Err(Malformed::FieldCount {
            fields: parts.len(),
        });
    }
    let t = parts[4];
    let msg_type = if (1..=2).contains(&t.len()) && all_digits(t) {
        t.parse::<u8>().ok().and_then(MsgType::from_number)
    } else {
        None
    }
    .ok_or(Malformed::MessageType)?;
    let rest = parts.len() - 5;
    let (min, max) = field_range(msg_type);
    if rest < min || rest > max {
        return Err(Malformed::FieldCount {
            fields: parts.len(),
        });
    }
    Ok((parts, msg_type))
}

/// Fewest and most fields after the type field: the message, the NAT access
/// and client timeout when the type has them, and an optional server auth.
fn field_range(t: MsgType) -> (usize, usize) {
    let min = 1 + usize::from(t.has_nat_access()) + usize::from(t.has_client_timeout());
    (min, min + 1)
}

/// Validates every field of a split message.
pub(super) fn validate(parts: &[&str], msg_type: MsgType) -> Result<Fields, Malformed> {
    let random = parts[0];
    if random.len() != RANDOM_LEN || !all_digits(random) {
        return Err(Malformed::Random);
    }
    let username = b64_field(parts[1], Malformed::Username)?;
    validate_username(&username)?;
    let timestamp = parts[2];
    if timestamp.is_empty() || timestamp.len() > MAX_TIMESTAMP_LEN || !all_digits(timestamp) {
        return Err(Malformed::Timestamp);
    }
    let timestamp: u64 = timestamp.parse().map_err(|_| Malformed::Timestamp)?;
    let version = parts[3];
    if version.is_empty() || version.len() > MAX_VERSION_LEN {
        return Err(Malformed::Version);
    }

    let mut rest = &parts[5..];
    let message = b64_field(rest[0], Malformed::Message)?;
    rest = &rest[1..];
    let (access_ip, access, command) = parse_message(&message, msg_type)?;
    let nat_access = if msg_type.has_nat_access() {
        let nat = b64_field(rest[0], Malformed::NatAccess)?;
        rest = &rest[1..];
        Some(parse_nat_access(&nat)?)
    } else {
        None
    };
    let client_timeout = if msg_type.has_client_timeout() {
        let (last, before) = rest.split_last().expect("counted by split()");
        rest = before;
        Some(parse_client_timeout(last)?)
    } else {
        None
    };
    let server_auth = match rest {
        [] => None,
        [sa] => Some(b64_field(sa, Malformed::ServerAuth)?),
        _ => unreachable!("counted by split()"),
    };
    Ok(Fields {
        random: random.to_string(),
        version: version.to_string(),
        request: FwknopRequest {
            username,
            timestamp,
            msg_type,
            access_ip,
            access,
            command,
            nat_access,
            server_auth,
            client_timeout,
            digest_type: DigestType::Sha256,
        },
    })
}

fn all_digits(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

/// Decodes a base64 field into text without control characters.
fn b64_field(s: &str, err: Malformed) -> Result<String, Malformed> {
    let bytes = b64_decode(s).ok_or(err)?;
    let text = String::from_utf8(bytes).map_err(|_| err)?;
    if text.chars().any(char::is_control) {
        return Err(err);
    }
    Ok(text)
}

/// fwknop's username rules: 1–64 printable ASCII characters, none of
/// `" / \ [ ] : ; | = , + * ? < >`.
pub(super) fn validate_username(u: &str) -> Result<(), Malformed> {
    let ok = !u.is_empty()
        && u.len() <= MAX_USERNAME_LEN
        && u.bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && !USERNAME_FORBIDDEN.contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Malformed::Username)
    }
}

/// `IP,proto/port[,proto/port...]` (access types) or `IP,command` (type 0).
#[allow(clippy::type_complexity)]
fn parse_message(
    msg: &str,
    t: MsgType,
) -> Result<(Option<IpAddr>, Vec<AccessPort>, Option<String>), Malformed> {
    if msg.len() > MAX_MESSAGE_LEN {
        return Err(Malformed::Message);
    }
    let (ip, rest) = msg.split_once(',').ok_or(Malformed::Message)?;
    if !(7..=15).contains(&ip.len()) {
        return Err(Malformed::AccessIp);
    }
    let ip: Ipv4Addr = ip.parse().map_err(|_| Malformed::AccessIp)?;
    let access_ip = (!ip.is_unspecified()).then_some(IpAddr::V4(ip));
    if t == MsgType::Command {
        if rest.is_empty() {
            return Err(Malformed::Command);
        }
        return Ok((access_ip, Vec::new(), Some(rest.to_string())));
    }
    let access = rest
        .split(',')
        .map(parse_access_port)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((access_ip, access, None))
}

/// `tcp/22`, `udp/53`, `icmp/N` or `none/N`, port 1–65535.
fn parse_access_port(s: &str) -> Result<AccessPort, Malformed> {
    let (proto, port) = s.split_once('/').ok_or(Malformed::AccessPort)?;
    let port = parse_port(port).ok_or(Malformed::AccessPort)?;
    Ok(match proto {
        "tcp" => AccessPort::Service(Service::tcp(port)),
        "udp" => AccessPort::Service(Service::udp(port)),
        "icmp" => AccessPort::Icmp(port),
        "none" => AccessPort::Unspecified(port),
        _ => return Err(Malformed::AccessPort),
    })
}

/// 1–5 decimal digits, 1–65535.
fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !all_digits(s) {
        return None;
    }
    match s.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Some(p as u16),
        _ => None,
    }
}

/// `host,port`: exactly one comma; host 1–70 printable ASCII characters
/// without space, `/`, `?`, `"`, `'` or `\`; port 1–65535.
fn parse_nat_access(s: &str) -> Result<(String, u16), Malformed> {
    let (host, port) = s.split_once(',').ok_or(Malformed::NatAccess)?;
    let host_ok = !host.is_empty()
        && host.len() <= MAX_NAT_HOST_LEN
        && host
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',' && !NAT_HOST_FORBIDDEN.contains(&b));
    if !host_ok {
        return Err(Malformed::NatAccess);
    }
    let port = parse_port(port).ok_or(Malformed::NatAccess)?;
    Ok((host.to_string(), port))
}

/// Decimal seconds, 1–10 digits, fits in 32 bits.
fn parse_client_timeout(s: &str) -> Result<u32, Malformed> {
    if s.is_empty() || s.len() > 10 || !all_digits(s) {
        return Err(Malformed::ClientTimeout);
    }
    s.parse().map_err(|_| Malformed::ClientTimeout)
}

/// The encoded message (without digest) of `f`, exactly as the fwknop
/// client builds it. The caller validates the result by parsing it back.
pub(super) fn build(f: &Fields) -> String {
    let r = &f.request;
    let mut s = String::with_capacity(128);
    s.push_str(&f.random);
    s.push(':');
    s.push_str(&b64_encode(r.username.as_bytes()));
    s.push(':');
    s.push_str(&r.timestamp.to_string());
    s.push(':');
    s.push_str(&f.version);
    s.push(':');
    s.push_str(&r.msg_type.number().to_string());
    s.push(':');
    let msg = message_string(r.access_ip, &r.access, r.command.as_deref());
    s.push_str(&b64_encode(msg.as_bytes()));
    if let Some((host, port)) = &r.nat_access {
        s.push(':');
        s.push_str(&b64_encode(format!("{host},{port}").as_bytes()));
    }
    if let Some(sa) = &r.server_auth {
        s.push(':');
        s.push_str(&b64_encode(sa.as_bytes()));
    }
    if let Some(t) = r.client_timeout {
        s.push(':');
        s.push_str(&t.to_string());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> String {
        b64_encode(s.as_bytes())
    }

    fn parse(encoded: &str) -> Result<Fields, Malformed> {
        let (parts, t) = split(encoded)?;
        validate(&parts, t)
    }

    fn line(t: u8, msg: &str, tail: &[&str]) -> String {
        let mut s = format!(
            "1234567890123456:{}:1795533693:3.0.0:{t}:{}",
            enc("root"),
            enc(msg)
        );
        for x in tail {
            s.push(':');
            s.push_str(x);
        }
        s
    }

    #[test]
    fn field_counts_follow_the_type() {
        let msg = "10.0.0.1,tcp/22";
        let nat = enc("192.168.1.2,22");
        let sa = enc("auth");
        assert!(parse(&line(1, msg, &[])).is_ok());
        assert!(parse(&line(1, msg, &[&sa])).is_ok());
        assert_eq!(
            parse(&line(1, msg, &[&sa, &sa])),
            Err(Malformed::FieldCount { fields: 8 })
        );
        assert!(parse(&line(2, msg, &[&nat])).is_ok());
        assert!(parse(&line(2, msg, &[&nat, &sa])).is_ok());
        assert_eq!(
            parse(&line(2, msg, &[])),
            Err(Malformed::FieldCount { fields: 6 })
        );
        let f = parse(&line(3, msg, &[&sa, "45"])).unwrap();
        assert_eq!(f.request.client_timeout, Some(45));
        assert_eq!(f.request.server_auth.as_deref(), Some("auth"));
        let f = parse(&line(4, msg, &[&nat, "60"])).unwrap();
        assert_eq!(f.request.nat_access, Some(("192.168.1.2".into(), 22)));
        assert_eq!(f.request.client_timeout, Some(60));
        assert!(parse(&line(6, msg, &[&nat, &sa, "60"])).is_ok());
        assert_eq!(parse(&line(7, msg, &[])), Err(Malformed::MessageType));
        assert_eq!(parse(&line(1, msg, &[])[..20]).unwrap_err(), {
            Malformed::FieldCount { fields: 2 }
        });
        assert_eq!(
            parse("1234567890123456:cm9vdA:1:3.0.0:01x:MQ"),
            Err(Malformed::MessageType)
        );
    }

    #[test]
    fn usernames() {
        for ok in ["root", "alice bob", "a-b_c.d@e", &"x".repeat(64)] {
            assert_eq!(validate_username(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "a/b",
            "a:b",
            "a,b",
            "a=b",
            "a\u{7f}",
            "é",
            &"x".repeat(65),
        ] {
            assert_eq!(validate_username(bad), Err(Malformed::Username), "{bad}");
        }
    }

    #[test]
    fn access_messages() {
        let f = parse(&line(1, "10.77.0.2,tcp/22,udp/53,icmp/8,none/7", &[])).unwrap();
        assert_eq!(f.request.access_ip, Some("10.77.0.2".parse().unwrap()));
        assert_eq!(f.request.access.len(), 4);
        assert_eq!(
            message_string(f.request.access_ip, &f.request.access, None),
            "10.77.0.2,tcp/22,udp/53,icmp/8,none/7"
        );
        let f = parse(&line(1, "0.0.0.0,tcp/22", &[])).unwrap();
        assert_eq!(f.request.access_ip, None);
        for (bad, why) in [
            ("10.0.0.1", Malformed::Message),
            ("10.0.0.1,", Malformed::AccessPort),
            ("10.0.0.1,tcp/22,", Malformed::AccessPort),
            ("10.0.0.1,tcp/0", Malformed::AccessPort),
            ("10.0.0.1,tcp/65536", Malformed::AccessPort),
            ("10.0.0.1,TCP/22", Malformed::AccessPort),
            ("10.0.0.1,sctp/22", Malformed::AccessPort),
            ("10.0.0.1,tcp/+22", Malformed::AccessPort),
            ("10.0.0.1, tcp/22", Malformed::AccessPort),
            ("::1,tcp/22", Malformed::AccessIp),
            ("10.0.0.256,tcp/22", Malformed::AccessIp),
            ("1.2.3,tcp/22", Malformed::AccessIp),
            ("host.example,tcp/22", Malformed::AccessIp),
        ] {
            assert_eq!(parse(&line(1, bad, &[])), Err(why), "{bad}");
        }
        let f = parse(&line(0, "10.0.0.1,touch /tmp/x", &[])).unwrap();
        assert_eq!(f.request.command.as_deref(), Some("touch /tmp/x"));
        assert!(f.request.access.is_empty());
        assert_eq!(parse(&line(0, "10.0.0.1,", &[])), Err(Malformed::Command));
        assert_eq!(
            parse(&line(1, &format!("10.0.0.1,{}", "tcp/1,".repeat(60)), &[])),
            Err(Malformed::Message)
        );
    }

    #[test]
    fn nat_access_and_timeouts() {
        let m = "10.0.0.1,tcp/22";
        for bad in ["192.168.1.2", "a,b,22", ",22", "h st,22", "h,0", "h,x"] {
            assert_eq!(
                parse(&line(2, m, &[&enc(bad)])),
                Err(Malformed::NatAccess),
                "{bad}"
            );
        }
        let nat = enc("internal.example,2222");
        let f = parse(&line(2, m, &[&nat])).unwrap();
        assert_eq!(
            f.request.nat_access,
            Some(("internal.example".into(), 2222))
        );
        for bad in ["", "x", "4294967296", "-1", "12345678901"] {
            assert_eq!(
                parse(&line(3, m, &[bad])),
                Err(Malformed::ClientTimeout),
                "{bad}"
            );
        }
        assert_eq!(
            parse(&line(3, m, &["4294967295"]))
                .unwrap()
                .request
                .client_timeout,
            Some(u32::MAX)
        );
    }

    #[test]
    fn scalar_fields() {
        let good = line(1, "10.0.0.1,tcp/22", &[]);
        let with = |i: usize, v: &str| {
            let mut p: Vec<&str> = good.split(':').collect();
            p[i] = v;
            p.join(":")
        };
        assert_eq!(parse(&with(0, "123")), Err(Malformed::Random));
        assert_eq!(parse(&with(1, "!!")), Err(Malformed::Username));
        assert_eq!(parse(&with(2, "")), Err(Malformed::Timestamp));
        assert_eq!(parse(&with(2, "1234567890123")), Err(Malformed::Timestamp));
        assert_eq!(parse(&with(2, "-5")), Err(Malformed::Timestamp));
        assert_eq!(parse(&with(3, "")), Err(Malformed::Version));
        assert_eq!(parse(&with(3, "123456789")), Err(Malformed::Version));
        assert_eq!(parse(&with(3, "x")).unwrap().version, "x");
        assert_eq!(parse(&with(5, "*")), Err(Malformed::Message));
        // A control character inside a base64 field.
        assert_eq!(parse(&with(1, &enc("a\nb"))), Err(Malformed::Username));
    }

    #[test]
    fn build_matches_the_client() {
        let f = parse(&line(
            4,
            "10.77.0.2,tcp/22",
            &[&enc("192.168.10.5,22"), "60"],
        ))
        .unwrap();
        assert_eq!(
            build(&f),
            line(4, "10.77.0.2,tcp/22", &[&enc("192.168.10.5,22"), "60"])
        );
        assert_eq!(
            build(&f),
            "1234567890123456:cm9vdA:1795533693:3.0.0:4:MTAuNzcuMC4yLHRjcC8yMg:MTkyLjE2OC4xMC41LDIy:60"
        );
    }
}
