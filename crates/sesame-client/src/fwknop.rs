//! fwknop-format SPA for `sesame knock`: one UDP datagram that a real
//! `fwknopd` (or a Sesame fwknop door) accepts, built like the fwknop 2.6
//! client builds it, with [`sesame_core::fwknop::encode`].
//!
//! A profile door:
//!
//! ```toml
//! [server.myserver.fwknop.ssh]
//! port = 62201                      # optional, fwknop's default
//! access = ["tcp/22"]               # -A: what to open (tcp, udp, icmp, none)
//! # allow_ip = "203.0.113.7"        # -a: the IPv4 address to open for;
//! #                                 # absent or "source" = 0.0.0.0 (-s)
//! key_base64 = "..."                # --key-base64-rijndael, or key = "passphrase"
//! #                                 # (--key-rijndael), or key_file = "FILE"
//! hmac_key_base64 = "..."           # --key-base64-hmac, or hmac_key / hmac_key_file
//! # hmac_digest = "sha256"          # --hmac-digest-type (default SHA256)
//! # encryption_mode = "cbc"         # -M (default CBC)
//! # digest = "sha256"               # -m: the inner digest (default SHA256)
//! # client_timeout = 60             # -f: ask for N seconds (message type 3)
//! # username = "alice"              # -U (default: $USER, else root)
//! # nat_access = "10.2.0.2:22"      # -N: forward the first access port to
//! #                                 # this inner service (message type 2)
//! ```
//!
//! Every packet gets fresh randomness from the OS (`getrandom`): the
//! 16-digit random value and the 8-byte salt of the key derivation; its
//! timestamp is the current time.
//!
//! **The address to open.** The access message carries an IPv4 address. The
//! fwknop client insists on a choice (`-a IP`, `-s` for `0.0.0.0`, or `-R`
//! to ask a web service for the external address). Sesame defaults to
//! `0.0.0.0`, "open for the source address the server sees", like its own
//! SPA doors: it works through NAT with no web service, and it is the only
//! possible choice over IPv6 (fwknopd grants the packet's source for
//! `0.0.0.0`; so does sesamed, over IPv4 and IPv6). An fwknopd stanza with
//! `REQUIRE_SOURCE_ADDRESS Y` refuses `0.0.0.0`: set `allow_ip` to your
//! address for such a server.
//!
//! **Secrets.** Key files (`key_file`, `hmac_key_file`) must be private
//! (mode 0600, yours or root's), as Sesame's own key files. They hold
//! `NAME: value` lines as `fwknop --key-gen-file` writes them (`KEY_BASE64`,
//! `KEY`, `HMAC_KEY_BASE64`, `HMAC_KEY`; `:`, `=` or spaces separate the
//! name from the value; `#` starts a comment), so one `fwknop -k -K FILE`
//! output can serve as both; a file holding nothing but one base64 line is
//! that key. Inline keys (`key`, `key_base64`, `hmac_key`,
//! `hmac_key_base64`) are accepted, as in `~/.fwknoprc`, but then the client
//! config itself must be private: a door with an inline key is refused when
//! the file is readable by group or others.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde::Deserialize;
use sesame_core::fwknop::{
    encode, AccessPort, DigestType, EncMode, FwknopEncodeError, FwknopKeyError, FwknopKeys,
    FwknopRequest, HmacType, DEFAULT_PORT,
};
use sesame_core::Service;
use zeroize::Zeroizing;

use crate::keys::{self, KeyFileError};

/// Longest key file read.
const MAX_KEY_FILE_LEN: usize = 4096;

/// Base64 for keys: standard alphabet, `=` optional (fwknop's key-gen
/// output has it, hand-made keys may not).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Which address the server should open for (the access message's IP).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AllowIp {
    /// `0.0.0.0`: the packet's source address, as the server sees it
    /// (`fwknop -s`). The default.
    Source,
    /// An explicit IPv4 address (`fwknop -a IP`).
    Addr(Ipv4Addr),
}

impl AllowIp {
    /// The access message's address: `None` for `0.0.0.0`.
    pub fn access_ip(self) -> Option<IpAddr> {
        match self {
            AllowIp::Source => None,
            AllowIp::Addr(a) => Some(IpAddr::V4(a)),
        }
    }
}

impl fmt::Display for AllowIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowIp::Source => f.write_str("0.0.0.0 (the packet's source address)"),
            AllowIp::Addr(a) => write!(f, "{a}"),
        }
    }
}

/// Where a key comes from. `Debug` never shows an inline secret.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Inline passphrase: its bytes are the key (`key`, `hmac_key`).
    Raw(Zeroizing<String>),
    /// Inline base64 (`key_base64`, `hmac_key_base64`).
    Base64(Zeroizing<String>),
    /// A private key file (`key_file`, `hmac_key_file`), home expanded.
    File(PathBuf),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Raw(_) => f.write_str("Raw(<inline passphrase>)"),
            KeySource::Base64(_) => f.write_str("Base64(<inline key>)"),
            KeySource::File(p) => write!(f, "File({})", p.display()),
        }
    }
}

impl KeySource {
    fn is_inline(&self) -> bool {
        !matches!(self, KeySource::File(_))
    }
}

/// An fwknop door of a client profile (`[server.S.fwknop.NAME]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FwknopDoor {
    /// The server's UDP port (default 62201).
    pub port: u16,
    /// What to open, in fwknop's `proto/port` syntax (at least one).
    pub access: Vec<AccessPort>,
    /// The address to open for.
    pub allow_ip: AllowIp,
    /// The encryption key.
    pub key: KeySource,
    /// The HMAC key and type; `None` sends no HMAC (fwknop without
    /// `--use-hmac`).
    pub hmac: Option<(KeySource, HmacType)>,
    /// The AES mode.
    pub mode: EncMode,
    /// The inner digest type.
    pub digest: DigestType,
    /// Seconds to ask for (message type 3); `None` = the stanza's
    /// `FW_ACCESS_TIMEOUT`.
    pub client_timeout: Option<u32>,
    /// The username to send; `None` = `$USER`, else `root`.
    pub username: Option<String>,
    /// `-N HOST:PORT`: ask the server to forward the first access port to
    /// this inner service (a NAT access message, type 2 or 4).
    pub nat_access: Option<std::net::SocketAddr>,
}

/// Why an fwknop packet could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FwknopClientError {
    /// A key file is unusable.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// A key file holds no key of the kind needed.
    #[error("{file}: no {wanted} line (expected `{wanted}: VALUE` lines as `fwknop --key-gen-file` writes them, or one base64 line)")]
    MissingKey {
        /// The file.
        file: String,
        /// e.g. `KEY_BASE64 or KEY`.
        wanted: &'static str,
    },
    /// Base64 that does not decode (no secret shown).
    #[error("{what}: invalid base64")]
    BadBase64 {
        /// Which key, and where.
        what: String,
    },
    /// The config holds inline keys but others may read it.
    #[error(
        "{file}: permissions {mode:04o} are too open for a client config holding inline fwknop keys; \
         run `chmod 600 {file}` (or move the keys to key_file / hmac_key_file)"
    )]
    ConfigTooOpen {
        /// The client config.
        file: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The keys are unusable (empty, too long).
    #[error(transparent)]
    Keys(#[from] FwknopKeyError),
    /// The OS random number generator failed.
    #[error("cannot get random bytes: {0}")]
    Random(String),
    /// No usable username.
    #[error(
        "$USER {0:?} cannot be sent as an fwknop username; set username = \"...\" in the door"
    )]
    BadUser(String),
    /// The request cannot be encoded.
    #[error("cannot make the fwknop packet: {0}")]
    Encode(#[from] FwknopEncodeError),
}

/// A packet ready to send, with the request it carries (for `--dry-run`).
#[derive(Debug)]
pub struct FwknopPacket {
    /// What was encoded.
    pub request: FwknopRequest,
    /// The datagram: base64 text, HMAC appended.
    pub text: String,
}

impl FwknopDoor {
    /// Reads the key files and checks where inline keys live: `config` is
    /// the client config, which must be private if it holds inline keys.
    pub fn load_keys(&self, config: &Path) -> Result<FwknopKeys, FwknopClientError> {
        let inline = self.key.is_inline() || self.hmac.as_ref().is_some_and(|(k, _)| k.is_inline());
        if inline {
            if let Some((mode, _)) = std::fs::metadata(config)
                .ok()
                .and_then(|meta| crate::os::mode_and_owner(&meta))
            {
                if mode & 0o077 != 0 {
                    return Err(FwknopClientError::ConfigTooOpen {
                        file: config.display().to_string(),
                        mode,
                    });
                }
            }
        }
        let key = secret(&self.key, "KEY", "encryption key (key / key_base64)")?;
        let hmac = match &self.hmac {
            None => None,
            Some((source, t)) => Some((
                secret(source, "HMAC_KEY", "HMAC key (hmac_key / hmac_key_base64)")?,
                *t,
            )),
        };
        Ok(FwknopKeys::new(
            &key,
            self.mode,
            hmac.as_ref().map(|(k, t)| (k.as_slice(), *t)),
        )?)
    }

    /// The username to send: the door's, else `$USER`, else `root`.
    pub fn username(&self) -> String {
        self.username.clone().unwrap_or_else(|| {
            std::env::var("USER")
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "root".into())
        })
    }

    /// The request this door sends at `unix_secs` as `username`.
    pub fn request(&self, username: &str, unix_secs: u64) -> FwknopRequest {
        let mut req = FwknopRequest::access(
            username,
            unix_secs,
            self.allow_ip.access_ip(),
            self.access.clone(),
        );
        if let Some(inner) = self.nat_access {
            req.msg_type = sesame_core::fwknop::MsgType::NatAccess;
            req.nat_access = Some((inner.ip().to_string(), inner.port()));
        }
        let mut req = match self.client_timeout {
            Some(secs) => req.with_client_timeout(secs),
            None => req,
        };
        req.digest_type = self.digest;
        req
    }

    /// The packet at `unix_secs` with the given randomness (tests).
    pub fn packet_with(
        &self,
        keys: &FwknopKeys,
        unix_secs: u64,
        random: u64,
        salt: [u8; 8],
    ) -> Result<FwknopPacket, FwknopClientError> {
        let username = self.username();
        let request = self.request(&username, unix_secs);
        let text = match encode(&request, keys, random, salt) {
            Ok(t) => t,
            Err(FwknopEncodeError::Invalid(_)) if self.username.is_none() => {
                // Say so when it is $USER that cannot be sent.
                let probe = self.request("root", unix_secs);
                encode(&probe, keys, random, salt)?;
                return Err(FwknopClientError::BadUser(username));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(FwknopPacket { request, text })
    }

    /// The packet at `unix_secs`, with a fresh random value and salt from
    /// the OS.
    pub fn packet(
        &self,
        keys: &FwknopKeys,
        unix_secs: u64,
    ) -> Result<FwknopPacket, FwknopClientError> {
        let mut random = [0u8; 8];
        let mut salt = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| FwknopClientError::Random(e.to_string()))?;
        getrandom::fill(&mut salt).map_err(|e| FwknopClientError::Random(e.to_string()))?;
        self.packet_with(keys, unix_secs, u64::from_le_bytes(random), salt)
    }
}

impl FwknopPacket {
    /// What `sesame knock --dry-run` prints after "dry run: nothing sent":
    /// one `name: value` line per field, then the packet itself.
    pub fn describe(&self, door_label: &str, keys: &FwknopKeys, dest: SocketAddr) -> String {
        let r = &self.request;
        let allow = match r.access_ip {
            None => AllowIp::Source.to_string(),
            Some(ip) => ip.to_string(),
        };
        let access = r
            .access
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let timeout = r.client_timeout.map_or_else(
            || "(none: the stanza's FW_ACCESS_TIMEOUT)".into(),
            |t| format!("{t} s"),
        );
        let hmac = keys
            .hmac_type()
            .map_or_else(|| "none".to_string(), |t| t.to_string());
        format!(
            "door:        {door_label}\n\
             destination: {dest} (udp)\n\
             username:    {}\n\
             timestamp:   {}\n\
             type:        {}\n\
             allow ip:    {allow}\n\
             access:      {access}\n\
             timeout:     {timeout}\n\
             digest:      {}\n\
             hmac:        {hmac}\n\
             encryption:  AES-256 {}\n\
             packet:      {} bytes\n\
             data:        {}\n",
            r.username,
            r.timestamp,
            r.msg_type,
            r.digest_type,
            keys.mode(),
            self.text.len(),
            self.text,
        )
    }

    /// Sends the packet to `dest` from an ordinary (unprivileged) UDP
    /// socket; returns the bytes sent.
    pub fn send(&self, dest: SocketAddr) -> std::io::Result<usize> {
        let bind: SocketAddr = match dest {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let sent = UdpSocket::bind(bind)?.send_to(self.text.as_bytes(), dest)?;
        if sent != self.text.len() {
            return Err(std::io::Error::other(format!(
                "only {sent} of {} bytes sent",
                self.text.len()
            )));
        }
        Ok(sent)
    }
}

/// The key bytes of `source`; `name` is the key-file line for it (`KEY` or
/// `HMAC_KEY`, with or without `_BASE64`).
fn secret(
    source: &KeySource,
    name: &'static str,
    what: &str,
) -> Result<Zeroizing<Vec<u8>>, FwknopClientError> {
    match source {
        KeySource::Raw(s) => Ok(Zeroizing::new(s.as_bytes().to_vec())),
        KeySource::Base64(s) => decode_b64(s.trim()).ok_or_else(|| FwknopClientError::BadBase64 {
            what: format!("inline {what}"),
        }),
        KeySource::File(path) => {
            let text = read_private(path)?;
            let file = path.display().to_string();
            let wanted = if name == "KEY" {
                "KEY_BASE64 or KEY"
            } else {
                "HMAC_KEY_BASE64 or HMAC_KEY"
            };
            match key_file_value(&text, name) {
                Some((true, value)) => {
                    decode_b64(&value).ok_or_else(|| FwknopClientError::BadBase64 {
                        what: format!("{file}: {name}_BASE64"),
                    })
                }
                Some((false, value)) => Ok(Zeroizing::new(value.as_bytes().to_vec())),
                None => Err(FwknopClientError::MissingKey { file, wanted }),
            }
        }
    }
}

fn decode_b64(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    B64.decode(s).ok().map(Zeroizing::new)
}

/// Finds `NAME_BASE64` (→ `(true, value)`) or `NAME` (→ `(false, value)`)
/// in a key file; a file of one bare line is that key in base64.
fn key_file_value(text: &str, name: &str) -> Option<(bool, Zeroizing<String>)> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let b64_name = format!("{name}_BASE64");
    for line in &lines {
        let split = line
            .find(|c: char| c == ':' || c == '=' || c.is_whitespace())
            .unwrap_or(line.len());
        let (key, rest) = line.split_at(split);
        let value = rest
            .strip_prefix([':', '='])
            .unwrap_or(rest)
            .trim_start_matches([':', '='])
            .trim();
        if key.eq_ignore_ascii_case(&b64_name) {
            return Some((true, Zeroizing::new(value.to_string())));
        }
        if key.eq_ignore_ascii_case(name) {
            return Some((false, Zeroizing::new(value.to_string())));
        }
    }
    // One bare base64 line: the key itself.
    match lines.as_slice() {
        [only]
            if !only.contains([':', ' ', '\t'])
                && only
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c)) =>
        {
            Some((true, Zeroizing::new((*only).to_string())))
        }
        _ => None,
    }
}

/// Reads a private key file: a regular file, mode `0600` or stricter, owned
/// by the current user or root.
fn read_private(path: &Path) -> Result<Zeroizing<String>, KeyFileError> {
    let file_name = path.display().to_string();
    let read_err = |source| KeyFileError::read(path, source);
    let mut file = File::open(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(KeyFileError::NotRegular { file: file_name });
    }
    if let Some((mode, owner)) = crate::os::mode_and_owner(&meta) {
        if mode & 0o077 != 0 {
            return Err(KeyFileError::TooOpen {
                file: file_name,
                mode,
            });
        }
        let uid = crate::os::effective_uid();
        if owner != uid && owner != 0 {
            return Err(KeyFileError::BadOwner {
                file: file_name,
                owner,
                uid,
            });
        }
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(512));
    (&mut file)
        .take(MAX_KEY_FILE_LEN as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(read_err)?;
    if buf.len() > MAX_KEY_FILE_LEN {
        return Err(KeyFileError::TooLong {
            file: file_name,
            len: buf.len(),
        });
    }
    match std::str::from_utf8(&buf) {
        Ok(s) => Ok(Zeroizing::new(s.to_string())),
        Err(_) => Err(KeyFileError::read(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not text"),
        )),
    }
}

/// `[server.S.fwknop.NAME]` as written in the client config.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFwknop {
    port: Option<i64>,
    access: Vec<String>,
    allow_ip: Option<String>,
    key: Option<String>,
    key_base64: Option<String>,
    key_file: Option<String>,
    hmac_key: Option<String>,
    hmac_key_base64: Option<String>,
    hmac_key_file: Option<String>,
    hmac_digest: Option<String>,
    encryption_mode: Option<String>,
    digest: Option<String>,
    client_timeout: Option<i64>,
    username: Option<String>,
    nat_access: Option<String>,
}

/// One of several ways to give a key, or none.
fn one_key(
    label: &str,
    names: [&str; 3],
    raw: Option<String>,
    base64: Option<String>,
    file: Option<String>,
) -> Result<Option<KeySource>, (String, String)> {
    let given = [raw.is_some(), base64.is_some(), file.is_some()]
        .iter()
        .filter(|g| **g)
        .count();
    if given > 1 {
        return Err((
            label.to_string(),
            format!(
                "give one of {}, {} or {}, not several",
                names[0], names[1], names[2]
            ),
        ));
    }
    Ok(match (raw, base64, file) {
        (Some(r), _, _) => Some(KeySource::Raw(Zeroizing::new(r))),
        (_, Some(b), _) => {
            if decode_b64(b.trim()).is_none() {
                return Err((format!("{label} {}", names[1]), "invalid base64".into()));
            }
            Some(KeySource::Base64(Zeroizing::new(b)))
        }
        (_, _, Some(f)) => Some(KeySource::File(keys::expand_home(&f))),
        _ => None,
    })
}

/// Parses fwknop's `proto/port`: `tcp/22`, `udp/53`, `icmp/0`, `none/7`.
fn access_port(s: &str) -> Option<AccessPort> {
    let (proto, port) = s.trim().split_once('/')?;
    let port: u16 = port.trim().parse().ok().filter(|p| *p > 0)?;
    match proto.trim().to_ascii_lowercase().as_str() {
        "tcp" | "udp" => format!("{proto}/{port}")
            .parse::<Service>()
            .ok()
            .map(AccessPort::Service),
        "icmp" => Some(AccessPort::Icmp(port)),
        "none" => Some(AccessPort::Unspecified(port)),
        _ => None,
    }
}

impl RawFwknop {
    /// Checks the door `label` (e.g. `fwknop door "ssh"`); an error is
    /// `(item, message)` for the profile's error type.
    pub(crate) fn resolve(self, label: &str) -> Result<FwknopDoor, (String, String)> {
        let port = match self.port {
            None => DEFAULT_PORT,
            Some(p) => match u16::try_from(p) {
                Ok(p) if p > 0 => p,
                _ => {
                    return Err((
                        format!("{label} port {p}"),
                        "expected a UDP port from 1 to 65535".into(),
                    ))
                }
            },
        };
        if self.access.is_empty() {
            return Err((
                format!("{label} access"),
                "list at least one proto/port to open, e.g. [\"tcp/22\"]".into(),
            ));
        }
        let access = self
            .access
            .iter()
            .enumerate()
            .map(|(i, s)| {
                access_port(s).ok_or_else(|| {
                    (
                        format!("{label} access[{i}] {s:?}"),
                        "expected PROTO/PORT with PROTO tcp, udp, icmp or none and PORT 1-65535"
                            .to_string(),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let allow_ip =
            match self.allow_ip.as_deref().map(str::trim) {
                None | Some("source") | Some("0.0.0.0") => AllowIp::Source,
                Some(a) => match a.parse::<IpAddr>() {
                    Ok(IpAddr::V4(v4)) if !v4.is_unspecified() => AllowIp::Addr(v4),
                    Ok(IpAddr::V6(_)) => return Err((
                        format!("{label} allow_ip {a:?}"),
                        "the fwknop access message carries an IPv4 address only; leave allow_ip \
                         out to open for the packet's source (IPv6 included)"
                            .into(),
                    )),
                    _ => {
                        return Err((
                            format!("{label} allow_ip {a:?}"),
                            "expected an IPv4 address or \"source\"".into(),
                        ))
                    }
                },
            };
        let key = one_key(
            label,
            ["key", "key_base64", "key_file"],
            self.key,
            self.key_base64,
            self.key_file,
        )?
        .ok_or_else(|| {
            (
                label.to_string(),
                "no key: give key_base64 = \"...\" (fwknop's KEY_BASE64), key = \"passphrase\" \
                 or key_file = \"FILE\""
                    .to_string(),
            )
        })?;
        let hmac_key = one_key(
            label,
            ["hmac_key", "hmac_key_base64", "hmac_key_file"],
            self.hmac_key,
            self.hmac_key_base64,
            self.hmac_key_file,
        )?;
        let hmac_type = match &self.hmac_digest {
            None => DigestType::Sha256,
            Some(d) => d
                .parse::<DigestType>()
                .map_err(|e| (format!("{label} hmac_digest {d:?}"), e.to_string()))?,
        };
        if hmac_key.is_none() && self.hmac_digest.is_some() {
            return Err((
                format!("{label} hmac_digest"),
                "needs an HMAC key (hmac_key_base64, hmac_key or hmac_key_file)".into(),
            ));
        }
        let mode = match &self.encryption_mode {
            None => EncMode::Cbc,
            Some(m) => m
                .parse::<EncMode>()
                .map_err(|e| (format!("{label} encryption_mode {m:?}"), e.to_string()))?,
        };
        let digest = match &self.digest {
            None => DigestType::Sha256,
            Some(d) => d
                .parse::<DigestType>()
                .map_err(|e| (format!("{label} digest {d:?}"), e.to_string()))?,
        };
        let client_timeout = match self.client_timeout {
            None => None,
            Some(t) => match u32::try_from(t) {
                Ok(t) if t > 0 => Some(t),
                _ => {
                    return Err((
                        format!("{label} client_timeout {t}"),
                        "expected a number of seconds from 1 to 4294967295".into(),
                    ))
                }
            },
        };
        let door = FwknopDoor {
            port,
            access,
            allow_ip,
            key,
            hmac: hmac_key.map(|k| (k, hmac_type)),
            mode,
            digest,
            client_timeout,
            username: self.username,
            nat_access: match &self.nat_access {
                None => None,
                Some(n) => Some(n.trim().parse().map_err(|_| {
                    (
                        format!("{label} nat_access {n:?}"),
                        "expected the inner service as ADDR:PORT (fwknop -N)".to_string(),
                    )
                })?),
            },
        };
        // The encoder's own checks (username, ports, message length), with
        // a dummy key.
        let keys = FwknopKeys::new(
            &[1; 16],
            door.mode,
            door.hmac.as_ref().map(|(_, t)| (&[1u8; 32][..], *t)),
        )
        .map_err(|e| (label.to_string(), e.to_string()))?;
        let username = door.username.clone().unwrap_or_else(|| "root".into());
        if let Err(e) = encode(&door.request(&username, 1_700_000_000), &keys, 0, [0; 8]) {
            let item = if door.username.is_some() {
                format!("{label} username / access")
            } else {
                format!("{label} access")
            };
            return Err((item, e.to_string()));
        }
        Ok(door)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use sesame_core::fwknop::{decode, MsgType};

    fn raw(toml_text: &str) -> Result<FwknopDoor, (String, String)> {
        toml::from_str::<RawFwknop>(toml_text)
            .map_err(|e| (String::new(), e.to_string()))?
            .resolve("fwknop door \"d\"")
    }

    const KEY: &str = "Fc/NU6E6xvcAVboPL4TmZ/2pCl7HYgx0kFKns/NoqjU=";
    const HMAC: &str =
        "xgoyi1p6Yvt9S6e2RHaikMW4sWntxvzpomnojI1Q92+hJ7S6nUKljbveYqFs2yIO967QSWxjXVNZuonNttRKJA==";

    #[test]
    fn defaults_are_fwknops() {
        let door = raw(&format!(
            "access = [\"tcp/22\"]\nkey_base64 = \"{KEY}\"\nhmac_key_base64 = \"{HMAC}\"\n"
        ))
        .unwrap();
        assert_eq!(door.port, 62201);
        assert_eq!(door.allow_ip, AllowIp::Source);
        assert_eq!(door.mode, EncMode::Cbc);
        assert_eq!(door.digest, DigestType::Sha256);
        assert!(matches!(
            door.hmac,
            Some((KeySource::Base64(_), DigestType::Sha256))
        ));
        assert_eq!(door.client_timeout, None);
        assert!(!format!("{door:?}").contains(KEY), "Debug shows the key");
    }

    #[test]
    fn packets_decode_with_the_servers_keys() {
        let mut door = raw(&format!(
            "access = [\"tcp/22\", \"udp/53\"]\nkey = \"s3cret\"\nhmac_key_base64 = \"{HMAC}\"\n\
             hmac_digest = \"sha512\"\nallow_ip = \"192.0.2.7\"\nclient_timeout = 45\nusername = \"alice\"\n\
             encryption_mode = \"ctr\"\ndigest = \"sha1\"\n"
        ))
        .unwrap();
        let hmac = B64.decode(HMAC).unwrap();
        let keys =
            FwknopKeys::new(b"s3cret", EncMode::Ctr, Some((&hmac, DigestType::Sha512))).unwrap();
        let p = door.packet(&keys, 1_800_000_000).unwrap();
        let msg = decode(p.text.as_bytes(), &keys, 1_800_000_010, 120).unwrap();
        assert_eq!(msg.request.username, "alice");
        assert_eq!(msg.request.msg_type, MsgType::ClientTimeoutAccess);
        assert_eq!(msg.request.client_timeout, Some(45));
        assert_eq!(msg.request.access_ip, Some("192.0.2.7".parse().unwrap()));
        assert_eq!(msg.request.digest_type, DigestType::Sha1);
        assert_eq!(msg.message_string(), "192.0.2.7,tcp/22,udp/53");
        // Fresh randomness every time.
        assert_ne!(p.text, door.packet(&keys, 1_800_000_000).unwrap().text);
        // Default: 0.0.0.0, type 1.
        door.allow_ip = AllowIp::Source;
        door.client_timeout = None;
        let p = door.packet_with(&keys, 1_800_000_000, 42, [7; 8]).unwrap();
        let msg = decode(p.text.as_bytes(), &keys, 1_800_000_000, 120).unwrap();
        assert_eq!(msg.request.access_ip, None);
        assert_eq!(msg.request.msg_type, MsgType::Access);
        assert_eq!(msg.random, "0000000000000042");
    }

    #[test]
    fn key_files_in_fwknop_key_gen_format() {
        let text = format!("KEY_BASE64: {KEY}\nHMAC_KEY_BASE64: {HMAC}\n");
        let (b64, v) = key_file_value(&text, "KEY").unwrap();
        assert!(b64);
        assert_eq!(v.as_str(), KEY);
        let (b64, v) = key_file_value(&text, "HMAC_KEY").unwrap();
        assert!(b64);
        assert_eq!(v.as_str(), HMAC);
        let (b64, v) = key_file_value("# c\nKEY  passphrase\n", "KEY").unwrap();
        assert!(!b64);
        assert_eq!(v.as_str(), "passphrase");
        let (b64, v) = key_file_value("HMAC_KEY=abc\n", "HMAC_KEY").unwrap();
        assert!(!b64);
        assert_eq!(v.as_str(), "abc");
        let (b64, v) = key_file_value(&format!("{KEY}\n"), "KEY").unwrap();
        assert!(b64);
        assert_eq!(v.as_str(), KEY);
        assert!(key_file_value("HMAC_KEY_BASE64: x\n", "KEY").is_none());
    }

    #[test]
    fn key_files_must_be_private() {
        let dir = std::env::temp_dir().join(format!("sesame-fwknop-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k");
        std::fs::write(&path, format!("KEY_BASE64: {KEY}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let door = FwknopDoor {
            port: 1,
            access: vec![access_port("tcp/22").unwrap()],
            allow_ip: AllowIp::Source,
            key: KeySource::File(path.clone()),
            hmac: None,
            mode: EncMode::Cbc,
            digest: DigestType::Sha256,
            client_timeout: None,
            username: None,
            nat_access: None,
        };
        let e = door
            .load_keys(&dir.join("none.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("too open"), "{e}");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let keys = door.load_keys(&dir.join("none.toml")).unwrap();
        assert_eq!(keys.hmac_type(), None);
        // Inline keys need a private config.
        let cfg = dir.join("client.toml");
        std::fs::write(&cfg, "").unwrap();
        std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let inline = FwknopDoor {
            key: KeySource::Base64(Zeroizing::new(KEY.into())),
            ..door
        };
        let e = inline.load_keys(&cfg).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bad_doors_name_the_item() {
        let k = format!("key_base64 = \"{KEY}\"\n");
        let cases: Vec<(String, &str)> = vec![
            (k.clone() + "access = []\n", "access"),
            (k.clone() + "access = [\"tcp/0\"]\n", "access[0] \"tcp/0\""),
            (
                k.clone() + "access = [\"sctp/1\"]\n",
                "access[0] \"sctp/1\"",
            ),
            (k.clone() + "access = [\"22\"]\n", "access[0] \"22\""),
            (k.clone() + "access = [\"tcp/22\"]\nport = 0\n", "port 0"),
            (
                k.clone() + "access = [\"tcp/22\"]\nallow_ip = \"::1\"\n",
                "IPv4 address only",
            ),
            (
                k.clone() + "access = [\"tcp/22\"]\nallow_ip = \"x\"\n",
                "allow_ip \"x\"",
            ),
            ("access = [\"tcp/22\"]\n".into(), "no key"),
            (
                k.clone() + "access = [\"tcp/22\"]\nkey = \"p\"\n",
                "not several",
            ),
            (
                k.clone() + "access = [\"tcp/22\"]\nhmac_digest = \"sha256\"\n",
                "needs an HMAC key",
            ),
            (
                k.clone() + "access = [\"tcp/22\"]\nhmac_key = \"h\"\nhmac_digest = \"sha9\"\n",
                "hmac_digest \"sha9\"",
            ),
            (
                k.clone() + "access = [\"tcp/22\"]\nencryption_mode = \"pcbc\"\n",
                "encryption_mode \"pcbc\"",
            ),
            (
                k.clone() + "access = [\"tcp/22\"]\nclient_timeout = 0\n",
                "client_timeout 0",
            ),
            (
                k.clone() + "access = [\"tcp/22\"]\nusername = \"a:b\"\n",
                "username",
            ),
            (
                "access = [\"tcp/22\"]\nkey_base64 = \"!!\"\n".into(),
                "key_base64",
            ),
        ];
        for (text, expected) in cases {
            let (item, msg) = raw(&text).unwrap_err();
            let shown = format!("{item}: {msg}");
            assert!(
                shown.contains(expected),
                "{text}\n→ {shown}\nexpected {expected}"
            );
        }
    }
}
