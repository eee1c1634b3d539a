//! Client profiles: `~/.config/sesame/client.toml`, so that
//! `sesame knock myserver ssh` needs no port list or key on the command
//! line. A server has doors of four types, each name used once per server:
//!
//! ```toml
//! [server.myserver]
//! host = "server.example.org"
//! door.legacy = ["7000", "8000:udp", "9000"]   # plain sequence
//! # optional per-server defaults
//! delay_ms = 100
//! family = "ipv6"
//!
//! [server.myserver.spa.ssh]             # single-packet authorization
//! port = 62201                          # the door's UDP port on the server
//! key = "~/.config/sesame/ssh.key"      # symmetric mode, or:
//! # identity = "~/.config/sesame/id"    # public-key mode, with
//! # server_public = "sesame-server-pub-v1:..."   # (or a file holding it)
//! services = ["tcp/22"]                 # optional; empty = all the user may open
//! duration = "1h"                       # optional; 0/absent = the door's maximum
//! # address = "203.0.113.7"            # optional explicit address (NAT)
//!
//! [server.myserver.fwknop.gw]           # an fwknop-format SPA door (a real
//! access = ["tcp/22"]                   # fwknopd, or a Sesame fwknop door):
//! key_base64 = "..."                    # see `super::fwknop` for every key
//! hmac_key_base64 = "..."
//!
//! [server.myserver.totp.vpn]            # rotating TOTP sequence
//! secret = "~/.config/sesame/vpn.totp"
//! ports = "20000-29999"
//! length = 4
//! period = "30s"                        # optional, default 30s
//! proto = "tcp"                         # optional, default tcp
//! ```
//!
//! Unknown keys are errors; every error names the file, the server, the
//! door and the item. Paths may start with `~/` (the home directory). Key
//! files are only read when a door is used (see [`crate::keys`]).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sesame_core::spa::{
    encode_public, encode_symmetric, EncodeError, IdentityKey, KeyId, Mode, Payload, ServerPublic,
    SpaKey, NONCE_LEN,
};
use sesame_core::totp::{TotpSecret, TotpSpec, DEFAULT_PERIOD};
use sesame_core::{DoorError, Knock, Proto, Service};
use zeroize::Zeroizing;

use crate::fwknop::{FwknopDoor, RawFwknop};
use crate::keys::{self, KeyFileError};
use crate::knock::Family;

/// A parsed and checked client config file.
#[derive(Debug, Default)]
pub struct ClientConfig {
    /// The file it was read from (for messages).
    pub path: PathBuf,
    /// Servers by the short name used on the command line.
    pub server: BTreeMap<String, ServerProfile>,
}

/// One server and the doors the user may knock on.
#[derive(Debug)]
pub struct ServerProfile {
    /// Host name or address to knock.
    pub host: String,
    /// Doors by name.
    pub doors: BTreeMap<String, ClientDoor>,
    /// Delay between knocks in milliseconds.
    pub delay_ms: Option<u64>,
    /// Address family to use (`family = "ipv4"` or `"ipv6"`).
    pub family: Family,
}

/// A door as the client knocks on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientDoor {
    /// A fixed knock sequence (`door.NAME = [...]`).
    Plain(Vec<Knock>),
    /// A rotating TOTP sequence (`[server.S.totp.NAME]`).
    Totp(TotpDoor),
    /// Single-packet authorization (`[server.S.spa.NAME]`).
    Spa(SpaDoor),
    /// fwknop-format single-packet authorization (`[server.S.fwknop.NAME]`).
    Fwknop(FwknopDoor),
}

impl ClientDoor {
    /// "plain", "TOTP", "SPA" or "fwknop".
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientDoor::Plain(_) => "plain",
            ClientDoor::Totp(_) => "TOTP",
            ClientDoor::Spa(_) => "SPA",
            ClientDoor::Fwknop(_) => "fwknop",
        }
    }
}

/// A TOTP door: the secret file and the shape of the sequences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpDoor {
    /// The `sesame-totp-v1` secret file (home expanded).
    pub secret: PathBuf,
    /// Length, port range, protocol and period, as on the server.
    pub spec: TotpSpec,
}

/// The sequence to knock at some time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentSequence {
    /// The time step.
    pub step: u64,
    /// Seconds until the next step begins.
    pub seconds_left: u64,
    /// The knocks.
    pub knocks: Vec<Knock>,
}

impl TotpDoor {
    /// Reads the secret file (permissions checked).
    pub fn load_secret(&self) -> Result<TotpSecret, KeyFileError> {
        keys::load_totp_secret(&self.secret)
    }

    /// The sequence of the step containing `unix_secs`.
    pub fn current(
        &self,
        secret: &TotpSecret,
        unix_secs: u64,
    ) -> Result<CurrentSequence, sesame_core::totp::TotpError> {
        let period = self.spec.period.max(1);
        let step = sesame_core::totp::step_of(unix_secs, period);
        Ok(CurrentSequence {
            step,
            seconds_left: (step + 1) * period - unix_secs,
            knocks: self.spec.current(secret, unix_secs)?,
        })
    }
}

/// An SPA door: where to send the packet, with which key, asking for what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaDoor {
    /// The door's UDP port on the server.
    pub port: u16,
    /// The user's credential.
    pub credential: SpaCredential,
    /// Services to ask for; empty asks for all the user may open.
    pub services: Vec<Service>,
    /// Seconds to ask for; 0 asks for the door's maximum.
    pub duration: u32,
    /// Explicit address to open for (NAT); `None` = the observed source.
    pub address: Option<IpAddr>,
}

/// Where an SPA door's key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpaCredential {
    /// Symmetric mode: a `sesame-spa-key-v1` file (home expanded).
    Symmetric {
        /// The key file.
        key: PathBuf,
    },
    /// Public-key mode: the user's identity and the server's public key.
    Public {
        /// The `sesame-identity-v1` file (home expanded).
        identity: PathBuf,
        /// The server's public key: inline `sesame-server-pub-v1:...` or a
        /// file holding that line.
        server_public: String,
    },
}

/// A loaded SPA credential, ready to make packets. Secrets are wiped when
/// dropped; `Debug` shows only key ids.
#[derive(Debug)]
pub enum ClientKey {
    /// Symmetric mode.
    Symmetric(SpaKey),
    /// Public-key mode.
    Public {
        /// The user's identity key (boxed: one copy, on the heap).
        identity: Box<IdentityKey>,
        /// The server's X25519 public key.
        server: ServerPublic,
    },
}

impl ClientKey {
    /// The packet mode.
    pub fn mode(&self) -> Mode {
        match self {
            ClientKey::Symmetric(_) => Mode::Symmetric,
            ClientKey::Public { .. } => Mode::Public,
        }
    }

    /// The key id the server knows the user by.
    pub fn key_id(&self) -> KeyId {
        match self {
            ClientKey::Symmetric(k) => k.key_id(),
            ClientKey::Public { identity, .. } => identity.public().key_id(),
        }
    }

    /// The packet for `payload`, with fresh randomness from the OS (the
    /// AEAD nonce and, in public-key mode, the ephemeral X25519 secret).
    pub fn encode(&self, payload: &Payload) -> Result<Vec<u8>, SpaClientError> {
        let mut nonce = [0u8; NONCE_LEN];
        let mut ephemeral = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut nonce).map_err(random_error)?;
        if self.mode() == Mode::Public {
            getrandom::fill(ephemeral.as_mut()).map_err(random_error)?;
        }
        self.encode_with(payload, nonce, &ephemeral)
    }

    /// The packet for `payload` with the given randomness (tests).
    pub fn encode_with(
        &self,
        payload: &Payload,
        nonce: [u8; NONCE_LEN],
        ephemeral_secret: &[u8; 32],
    ) -> Result<Vec<u8>, SpaClientError> {
        match self {
            ClientKey::Symmetric(key) => encode_symmetric(key, payload, nonce),
            ClientKey::Public { identity, server } => {
                encode_public(identity, server, payload, ephemeral_secret, nonce)
            }
        }
        .map_err(SpaClientError::Encode)
    }
}

/// Why an SPA packet could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SpaClientError {
    /// A key file is unusable.
    #[error(transparent)]
    Key(#[from] KeyFileError),
    /// The OS random number generator failed.
    #[error("cannot get random bytes: {0}")]
    Random(String),
    /// The request cannot be encoded.
    #[error("cannot make the SPA packet: {0}")]
    Encode(EncodeError),
}

fn random_error(e: getrandom::Error) -> SpaClientError {
    SpaClientError::Random(e.to_string())
}

impl SpaDoor {
    /// Reads the key files (secret ones with their permissions checked).
    pub fn load_key(&self) -> Result<ClientKey, KeyFileError> {
        match &self.credential {
            SpaCredential::Symmetric { key } => keys::load_spa_key(key).map(ClientKey::Symmetric),
            SpaCredential::Public {
                identity,
                server_public,
            } => Ok(ClientKey::Public {
                identity: Box::new(keys::load_identity(identity)?),
                server: keys::server_public(server_public)?,
            }),
        }
    }

    /// The request this door sends at `unix_secs`, with the fresh 16-byte
    /// replay `nonce`.
    pub fn payload(&self, unix_secs: u64, nonce: [u8; 16]) -> Payload {
        Payload {
            timestamp: unix_secs,
            nonce,
            services: self.services.clone(),
            duration: self.duration,
            address: self.address,
        }
    }

    /// The request at `unix_secs` with a fresh nonce from the OS.
    pub fn fresh_payload(&self, unix_secs: u64) -> Result<Payload, SpaClientError> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(random_error)?;
        Ok(self.payload(unix_secs, nonce))
    }
}

/// Why a profile could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Unreadable file.
    #[error(transparent)]
    Read(#[from] crate::located::ReadError),
    /// Bad TOML or unknown key.
    #[error("{path}: {source}")]
    Syntax {
        /// File.
        path: String,
        /// Parser error, with line and column.
        source: Box<toml::de::Error>,
    },
    /// A sequence element is invalid.
    #[error("{path}: server {server:?} door {door:?} sequence[{index}] {item:?}: {source}")]
    BadKnock {
        /// File.
        path: String,
        /// Server name.
        server: String,
        /// Door name.
        door: String,
        /// Position in the sequence.
        index: usize,
        /// Offending text.
        item: String,
        /// Cause.
        source: Box<DoorError>,
    },
    /// Another item of a door or server is invalid.
    #[error("{path}: server {server:?} {item}: {message}")]
    Invalid {
        /// File.
        path: String,
        /// Server name.
        server: String,
        /// The item, e.g. `spa door "ssh" services[1] "tcp/x"`.
        item: String,
        /// What is wrong.
        message: String,
    },
    /// No such server.
    #[error("{path}: no server {server:?} (known: {known})")]
    UnknownServer {
        /// File.
        path: String,
        /// Requested server.
        server: String,
        /// Servers that exist.
        known: String,
    },
    /// The server has no such door.
    #[error("{path}: server {server:?} has no door {door:?} (known: {known})")]
    UnknownDoor {
        /// File.
        path: String,
        /// Server name.
        server: String,
        /// Requested door.
        door: String,
        /// Doors that exist.
        known: String,
    },
}

/// The default client config location: `$XDG_CONFIG_HOME/sesame/client.toml`
/// or `~/.config/sesame/client.toml`; on Windows, without those,
/// `%APPDATA%\sesame\client.toml` (the user's roaming profile, private to
/// them by its ACL).
pub fn default_path() -> Option<PathBuf> {
    let home_config = || std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config"));
    #[cfg(windows)]
    let home_config = || home_config().or_else(|| std::env::var_os("APPDATA").map(PathBuf::from));
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(home_config)?;
    Some(base.join("sesame").join("client.toml"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: BTreeMap<String, RawServer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    host: String,
    #[serde(default)]
    door: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    spa: BTreeMap<String, RawSpa>,
    #[serde(default)]
    totp: BTreeMap<String, RawTotp>,
    #[serde(default)]
    fwknop: BTreeMap<String, RawFwknop>,
    delay_ms: Option<u64>,
    family: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpa {
    port: i64,
    key: Option<String>,
    identity: Option<String>,
    server_public: Option<String>,
    #[serde(default)]
    services: Vec<String>,
    duration: Option<RawDuration>,
    address: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTotp {
    secret: String,
    ports: String,
    length: i64,
    period: Option<RawDuration>,
    proto: Option<String>,
}

/// Integer seconds or a human duration such as `"30s"` or `"1h 30m"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Seconds(i64),
    Text(String),
}

impl RawDuration {
    /// Whole seconds; `Err` with a message for the user.
    fn seconds(&self) -> Result<u64, String> {
        match self {
            RawDuration::Seconds(s) => u64::try_from(*s).map_err(|_| format!("{s} is negative")),
            RawDuration::Text(t) if t.trim() == "0" => Ok(0),
            RawDuration::Text(t) => match humantime::parse_duration(t) {
                Ok(d) if d.subsec_nanos() == 0 => Ok(d.as_secs()),
                Ok(_) => Err(format!("{t:?} is not a whole number of seconds")),
                Err(e) => Err(format!(
                    "{t:?}: {e} (examples: 30, \"30s\", \"5m\", \"1h 30m\")"
                )),
            },
        }
    }

    fn shown(&self) -> String {
        match self {
            RawDuration::Seconds(s) => s.to_string(),
            RawDuration::Text(t) => format!("{t:?}"),
        }
    }
}

/// Builds errors for one server.
struct Ctx<'a> {
    path: &'a Path,
    server: &'a str,
}

impl Ctx<'_> {
    fn invalid(&self, item: String, message: impl ToString) -> ProfileError {
        ProfileError::Invalid {
            path: self.path.display().to_string(),
            server: self.server.to_string(),
            item,
            message: message.to_string(),
        }
    }
}

impl ClientConfig {
    /// Reads and checks a client config (key files are not read yet).
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let text = std::fs::read_to_string(path)
            .map_err(crate::located::ReadError::of(path, "client config"))?;
        Self::parse(path, &text)
    }

    /// Parses and checks the text of a client config; `path` names it in
    /// errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ProfileError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ProfileError::Syntax {
            path: path.display().to_string(),
            source: Box::new(source),
        })?;
        let mut server = BTreeMap::new();
        for (name, raw) in raw.server {
            let ctx = Ctx {
                path,
                server: &name,
            };
            let profile = resolve_server(&ctx, raw)?;
            server.insert(name, profile);
        }
        Ok(ClientConfig {
            path: path.to_path_buf(),
            server,
        })
    }

    /// Looks up `server` and its door `door`.
    pub fn door(
        &self,
        server: &str,
        door: &str,
    ) -> Result<(&ServerProfile, &ClientDoor), ProfileError> {
        let path = self.path.display().to_string();
        let profile = self
            .server
            .get(server)
            .ok_or_else(|| ProfileError::UnknownServer {
                path: path.clone(),
                server: server.into(),
                known: join(self.server.keys()),
            })?;
        let found = profile
            .doors
            .get(door)
            .ok_or_else(|| ProfileError::UnknownDoor {
                path,
                server: server.into(),
                door: door.into(),
                known: join(profile.doors.keys()),
            })?;
        Ok((profile, found))
    }
}

fn join<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn resolve_server(ctx: &Ctx<'_>, raw: RawServer) -> Result<ServerProfile, ProfileError> {
    let family = match raw.family.as_deref() {
        None => Family::Any,
        Some("ipv4") => Family::V4,
        Some("ipv6") => Family::V6,
        Some(other) => {
            return Err(ctx.invalid(format!("family {other:?}"), "expected \"ipv4\" or \"ipv6\""))
        }
    };
    if raw.host.trim().is_empty() {
        return Err(ctx.invalid("host".into(), "must not be empty"));
    }
    let mut doors = BTreeMap::new();
    for (name, items) in raw.door {
        let knocks = items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                item.parse().map_err(|source| ProfileError::BadKnock {
                    path: ctx.path.display().to_string(),
                    server: ctx.server.into(),
                    door: name.clone(),
                    index,
                    item: item.clone(),
                    source: Box::new(source),
                })
            })
            .collect::<Result<Vec<Knock>, _>>()?;
        if knocks.is_empty() {
            return Err(ctx.invalid(format!("door {name:?}"), "the sequence is empty"));
        }
        doors.insert(name, ClientDoor::Plain(knocks));
    }
    for (name, spa) in raw.spa {
        let door = resolve_spa(ctx, &name, spa)?;
        insert_unique(ctx, &mut doors, name, ClientDoor::Spa(door))?;
    }
    for (name, totp) in raw.totp {
        let door = resolve_totp(ctx, &name, totp)?;
        insert_unique(ctx, &mut doors, name, ClientDoor::Totp(door))?;
    }
    for (name, fwknop) in raw.fwknop {
        let door = fwknop
            .resolve(&format!("fwknop door {name:?}"))
            .map_err(|(item, message)| ctx.invalid(item, message))?;
        insert_unique(ctx, &mut doors, name, ClientDoor::Fwknop(door))?;
    }
    Ok(ServerProfile {
        host: raw.host,
        doors,
        delay_ms: raw.delay_ms,
        family,
    })
}

fn insert_unique(
    ctx: &Ctx<'_>,
    doors: &mut BTreeMap<String, ClientDoor>,
    name: String,
    door: ClientDoor,
) -> Result<(), ProfileError> {
    if let Some(other) = doors.get(&name) {
        return Err(ctx.invalid(
            format!("{} door {name:?}", door.type_name().to_lowercase()),
            format!(
                "the name is already used by a {} door of this server; door names must be unique",
                other.type_name()
            ),
        ));
    }
    doors.insert(name, door);
    Ok(())
}

fn resolve_spa(ctx: &Ctx<'_>, name: &str, raw: RawSpa) -> Result<SpaDoor, ProfileError> {
    let label = format!("spa door {name:?}");
    let port = match u16::try_from(raw.port) {
        Ok(p) if p > 0 => p,
        _ => {
            return Err(ctx.invalid(
                format!("{label} port {}", raw.port),
                "expected a UDP port from 1 to 65535",
            ))
        }
    };
    let credential = match (raw.key, raw.identity, raw.server_public) {
        (Some(key), None, None) => SpaCredential::Symmetric {
            key: keys::expand_home(&key),
        },
        (None, Some(identity), Some(server_public)) => SpaCredential::Public {
            identity: keys::expand_home(&identity),
            server_public,
        },
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(ctx.invalid(
                label,
                "give either key (symmetric mode) or identity and server_public \
                 (public-key mode), not both",
            ))
        }
        (None, Some(_), None) => {
            return Err(ctx.invalid(
                label,
                "identity needs server_public: the server's public key \
                 (sesame-server-pub-v1:... or its .pub file)",
            ))
        }
        (None, None, Some(_)) => {
            return Err(ctx.invalid(
                label,
                "server_public needs identity: your identity key file",
            ))
        }
        (None, None, None) => {
            return Err(ctx.invalid(
                label,
                "no key: give key = \"FILE\" (symmetric mode) or identity = \"FILE\" \
                 and server_public = \"...\" (public-key mode)",
            ))
        }
    };
    let services = raw
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse::<Service>()
                .map_err(|e| ctx.invalid(format!("{label} services[{i}] {s:?}"), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let duration = match &raw.duration {
        None => 0,
        Some(d) => {
            let item = || format!("{label} duration {}", d.shown());
            let secs = d.seconds().map_err(|e| ctx.invalid(item(), e))?;
            u32::try_from(secs).map_err(|_| ctx.invalid(item(), "too long"))?
        }
    };
    let address = match &raw.address {
        None => None,
        Some(a) => Some(a.trim().parse::<IpAddr>().map_err(|_| {
            ctx.invalid(
                format!("{label} address {a:?}"),
                "expected an IPv4 or IPv6 address",
            )
        })?),
    };
    let door = SpaDoor {
        port,
        credential,
        services,
        duration,
        address,
    };
    // The encoder's own checks: at most 8 services, no repeats, a usable
    // address.
    if let Err(e) = door.payload(0, [0; 16]).encode() {
        let item = match e {
            EncodeError::BadAddress(a) => format!("{label} address \"{a}\""),
            _ => format!("{label} services"),
        };
        return Err(ctx.invalid(item, e));
    }
    Ok(door)
}

fn resolve_totp(ctx: &Ctx<'_>, name: &str, raw: RawTotp) -> Result<TotpDoor, ProfileError> {
    let label = format!("totp door {name:?}");
    let bad_ports = || {
        ctx.invalid(
            format!("{label} ports {:?}", raw.ports),
            "expected LOW-HIGH, e.g. \"20000-29999\"",
        )
    };
    let (lo, hi) = raw.ports.split_once('-').ok_or_else(bad_ports)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad_ports())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad_ports())?;
    let len = usize::try_from(raw.length).map_err(|_| {
        ctx.invalid(
            format!("{label} length {}", raw.length),
            "expected 1 to 32 knocks",
        )
    })?;
    let period = match &raw.period {
        None => DEFAULT_PERIOD,
        Some(d) => {
            let item = format!("{label} period {}", d.shown());
            match d.seconds() {
                Ok(0) => return Err(ctx.invalid(item, "must be longer than zero")),
                Ok(s) => s,
                Err(e) => return Err(ctx.invalid(item, e)),
            }
        }
    };
    let proto = match &raw.proto {
        None => Proto::Tcp,
        Some(p) => p
            .parse()
            .map_err(|e| ctx.invalid(format!("{label} proto {p:?}"), e))?,
    };
    let spec = TotpSpec {
        len,
        ports: lo..=hi,
        proto,
        period,
    };
    spec.validate().map_err(|e| ctx.invalid(label, e))?;
    Ok(TotpDoor {
        secret: keys::expand_home(&raw.secret),
        spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClientConfig, ProfileError> {
        ClientConfig::parse(Path::new("c.toml"), text)
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn profile_lookup() {
        let cfg = parse(
            r#"
            [server.home]
            host = "192.0.2.1"
            door.ssh = ["7000", "8000:udp"]
            delay_ms = 50
            family = "ipv4"
            "#,
        )
        .unwrap();
        let (profile, door) = cfg.door("home", "ssh").unwrap();
        assert_eq!(profile.host, "192.0.2.1");
        assert_eq!(profile.family, Family::V4);
        assert_eq!(profile.delay_ms, Some(50));
        let ClientDoor::Plain(knocks) = door else {
            panic!("{door:?}")
        };
        assert_eq!(knocks.len(), 2);
        let e = cfg.door("elsewhere", "ssh").unwrap_err().to_string();
        assert!(e.contains("no server \"elsewhere\" (known: home)"), "{e}");
        let e = cfg.door("home", "vpn").unwrap_err().to_string();
        assert!(e.contains("no door \"vpn\" (known: ssh)"), "{e}");
    }

    #[test]
    fn bad_profiles_are_reported() {
        assert!(err("[server.a]\nhost='x'\nbogus=1\n").contains("bogus"));
        let e = err("[server.a]\nhost='x'\ndoor.d=['1','x2']\n");
        assert!(e.contains("sequence[1] \"x2\""), "{e}");
        let e = err("[server.a]\nhost='x'\nfamily='ipv5'\n");
        assert!(e.contains("server \"a\" family \"ipv5\""), "{e}");
    }

    const FULL: &str = r#"
        [server.myserver]
        host = "server.example.org"
        door.legacy = ["7000", "8000:udp"]

        [server.myserver.spa.ssh]
        port = 62201
        key = "~/.config/sesame/ssh.key"
        services = ["tcp/22", "udp/51820"]
        duration = "1h"
        address = "203.0.113.7"

        [server.myserver.spa.pk]
        port = 62202
        identity = "/etc/id"
        server_public = "sesame-server-pub-v1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

        [server.myserver.totp.vpn]
        secret = "~/.config/sesame/vpn.totp"
        ports = "20000-29999"
        length = 4
        period = "1m"
        proto = "udp"

        [server.myserver.totp.min]
        secret = "/s"
        ports = "100 - 199"
        length = 3
    "#;

    #[test]
    fn spa_and_totp_doors_parse() {
        let cfg = parse(FULL).unwrap();
        let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
        let (_, door) = cfg.door("myserver", "ssh").unwrap();
        assert_eq!(
            door,
            &ClientDoor::Spa(SpaDoor {
                port: 62201,
                credential: SpaCredential::Symmetric {
                    key: if std::env::var_os("HOME").is_some() {
                        home.join(".config/sesame/ssh.key")
                    } else {
                        PathBuf::from("~/.config/sesame/ssh.key")
                    }
                },
                services: vec!["tcp/22".parse().unwrap(), "udp/51820".parse().unwrap()],
                duration: 3600,
                address: Some("203.0.113.7".parse().unwrap()),
            })
        );
        let (_, door) = cfg.door("myserver", "pk").unwrap();
        let ClientDoor::Spa(pk) = door else {
            panic!("{door:?}")
        };
        assert_eq!(pk.duration, 0);
        assert!(pk.services.is_empty());
        assert_eq!(pk.address, None);
        assert!(matches!(
            &pk.credential,
            SpaCredential::Public { identity, server_public }
                if identity == Path::new("/etc/id") && server_public.starts_with("sesame-server-pub-v1:")
        ));
        let (_, door) = cfg.door("myserver", "vpn").unwrap();
        let ClientDoor::Totp(vpn) = door else {
            panic!("{door:?}")
        };
        assert_eq!(
            vpn.spec,
            TotpSpec {
                len: 4,
                ports: 20000..=29999,
                proto: Proto::Udp,
                period: 60
            }
        );
        let (_, door) = cfg.door("myserver", "min").unwrap();
        let ClientDoor::Totp(min) = door else {
            panic!("{door:?}")
        };
        assert_eq!(min.spec.period, 30);
        assert_eq!(min.spec.proto, Proto::Tcp);
        assert_eq!(min.spec.ports, 100..=199);
        let e = cfg.door("myserver", "x").unwrap_err().to_string();
        assert!(e.contains("(known: legacy, min, pk, ssh, vpn)"), "{e}");
    }

    #[test]
    fn fwknop_doors_parse_and_share_the_namespace() {
        let cfg = parse(
            r#"
            [server.gw]
            host = "192.0.2.1"
            door.legacy = ["7000"]
            [server.gw.fwknop.ssh]
            access = ["tcp/22"]
            key_file = "/k"
            "#,
        )
        .unwrap();
        let (_, door) = cfg.door("gw", "ssh").unwrap();
        let ClientDoor::Fwknop(f) = door else {
            panic!("{door:?}")
        };
        assert_eq!(f.port, 62201);
        assert_eq!(door.type_name(), "fwknop");
        let e = err("[server.s]\nhost = 'h'\ndoor.d = ['1']\n[server.s.fwknop.d]\naccess = ['tcp/22']\nkey = 'k'\n");
        assert!(
            e.contains("fwknop door \"d\": the name is already used by a plain door"),
            "{e}"
        );
        let e = err("[server.s]\nhost = 'h'\n[server.s.fwknop.d]\naccess = ['tcp/x']\nkey = 'k'\n");
        assert!(
            e.starts_with("c.toml: server \"s\" fwknop door \"d\" access[0] \"tcp/x\""),
            "{e}"
        );
    }

    #[test]
    fn totp_current_reports_step_and_time_left() {
        let door = TotpDoor {
            secret: PathBuf::from("/s"),
            spec: TotpSpec {
                len: 4,
                ports: 20000..=29999,
                proto: Proto::Tcp,
                period: 30,
            },
        };
        let secret = TotpSecret::new(&[3; 32]).unwrap();
        let cur = door.current(&secret, 1_699_999_985).unwrap();
        assert_eq!(cur.step, 1_699_999_985 / 30);
        assert_eq!(cur.seconds_left, 25);
        assert_eq!(
            cur.knocks,
            door.spec.current(&secret, 1_699_999_985).unwrap()
        );
    }

    #[test]
    fn spa_packets_have_the_mode_length() {
        let door = SpaDoor {
            port: 1,
            credential: SpaCredential::Symmetric {
                key: PathBuf::from("/k"),
            },
            services: vec!["tcp/22".parse().unwrap()],
            duration: 60,
            address: None,
        };
        let payload = door.fresh_payload(1_700_000_000).unwrap();
        assert_eq!(payload.timestamp, 1_700_000_000);
        assert_ne!(payload.nonce, door.fresh_payload(0).unwrap().nonce);
        let sym = ClientKey::Symmetric(SpaKey::from_bytes(&[1; 32]));
        assert_eq!(
            sym.encode(&payload).unwrap().len(),
            sesame_core::spa::SYMMETRIC_PACKET_LEN
        );
        let server = sesame_core::spa::ServerKey::from_bytes(&[2; 32]);
        let public = ClientKey::Public {
            identity: Box::new(IdentityKey::from_seed(&[3; 32])),
            server: server.public(),
        };
        let a = public.encode(&payload).unwrap();
        assert_eq!(a.len(), sesame_core::spa::PUBLIC_V2_PACKET_LEN);
        assert_ne!(a, public.encode(&payload).unwrap(), "fresh randomness");
        assert_eq!(public.mode(), Mode::Public);
        assert_eq!(
            public.key_id(),
            IdentityKey::from_seed(&[3; 32]).public().key_id()
        );
    }

    #[test]
    fn bad_spa_and_totp_doors_name_the_item() {
        let base = "[server.s]\nhost = 'h'\n";
        let cases: &[(&str, &str)] = &[
            ("[server.s.spa.d]\nport = 0\nkey = 'k'\n", "spa door \"d\" port 0: expected a UDP port"),
            ("[server.s.spa.d]\nport = 70000\nkey = 'k'\n", "spa door \"d\" port 70000"),
            ("[server.s.spa.d]\nport = 1\n", "spa door \"d\": no key"),
            ("[server.s.spa.d]\nport = 1\nkey = 'k'\nidentity = 'i'\n", "not both"),
            ("[server.s.spa.d]\nport = 1\nidentity = 'i'\n", "identity needs server_public"),
            ("[server.s.spa.d]\nport = 1\nserver_public = 'p'\n", "server_public needs identity"),
            ("[server.s.spa.d]\nport = 1\nkey = 'k'\nservices = ['tcp/22', 'tcp/x']\n", "spa door \"d\" services[1] \"tcp/x\""),
            ("[server.s.spa.d]\nport = 1\nkey = 'k'\nservices = ['22', 'tcp/22']\n", "spa door \"d\" services: service tcp/22 listed twice"),
            ("[server.s.spa.d]\nport = 1\nkey = 'k'\nservices = ['1','2','3','4','5','6','7','8','9']\n", "at most 8"),
            ("[server.s.spa.d]\nport = 1\nkey = 'k'\nduration = 'soon'\n", "spa door \"d\" duration \"soon\""),
            ("[server.s.spa.d]\nport = 1\nkey = 'k'\nduration = -1\n", "duration -1: -1 is negative"),
            ("[server.s.spa.d]\nport = 1\nkey = 'k'\naddress = 'nat'\n", "spa door \"d\" address \"nat\""),
            ("[server.s.spa.d]\nport = 1\nkey = 'k'\naddress = '224.0.0.1'\n", "spa door \"d\" address \"224.0.0.1\": 224.0.0.1 cannot be granted"),
            ("[server.s.spa.d]\nport = 1\nkey = 'k'\nbogus = 1\n", "bogus"),
            ("[server.s.totp.d]\nsecret = 's'\nports = '20000'\nlength = 4\n", "totp door \"d\" ports \"20000\""),
            ("[server.s.totp.d]\nsecret = 's'\nports = '7-9'\nlength = 4\n", "fewer than the 4 knocks"),
            ("[server.s.totp.d]\nsecret = 's'\nports = '1-99'\nlength = -4\n", "totp door \"d\" length -4"),
            ("[server.s.totp.d]\nsecret = 's'\nports = '1-99'\nlength = 40\n", "length 40 is invalid"),
            ("[server.s.totp.d]\nsecret = 's'\nports = '1-99'\nlength = 4\nperiod = 0\n", "period 0: must be longer than zero"),
            ("[server.s.totp.d]\nsecret = 's'\nports = '1-99'\nlength = 4\nproto = 'icmp'\n", "totp door \"d\" proto \"icmp\""),
            ("[server.s.totp.d]\nports = '1-99'\nlength = 4\n", "missing field `secret`"),
            ("door.d = ['1']\n[server.s.totp.d]\nsecret = 's'\nports = '1-99'\nlength = 4\n", "totp door \"d\": the name is already used by a plain door"),
        ];
        for (door, expected) in cases {
            let e = err(&format!("{base}{door}"));
            assert!(e.contains(expected), "{door}\n→ {e}\nexpected {expected}");
            assert!(e.starts_with("c.toml"), "{e}");
        }
    }
}
