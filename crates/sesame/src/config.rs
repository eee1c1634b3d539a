//! The daemon's configuration file: strict TOML, validated into core doors.
//!
//! Unknown keys are errors, and every error names the file, the line and the
//! offending item, so that `sesamed --check-config` and a reload can say
//! exactly what is wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use std::net::IpAddr;

use sesame_core::door::{CommandTemplate, Commands};
use sesame_core::{BanPolicy, Door, DoorError, Guard, Knock, PortRange, Proto, Service, TcpFlags};
use toml::Spanned;

/// NFLOG group used when the config does not name one.
pub const DEFAULT_NFLOG_GROUP: u16 = 2700;
/// Default bound on in-progress knocks (per source and door).
pub const DEFAULT_MAX_TRACKED: usize = 100_000;
/// Default bound on simultaneously open grants.
pub const DEFAULT_MAX_GRANTS: usize = 100_000;
/// Default knock window, counted from the first knock.
pub const DEFAULT_SEQ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default grant lifetime.
pub const DEFAULT_OPEN_FOR: Duration = Duration::from_secs(30);
/// Default location of the daemon config.
pub const DEFAULT_PATH: &str = "/etc/sesame/sesame.toml";

/// A validated daemon configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    /// Daemon-wide settings.
    pub daemon: DaemonSettings,
    /// Doors, sorted by name.
    pub doors: Vec<Door>,
    /// Doors whose sequence comes from a knockd-style one-time sequences
    /// file: door name → file. The door's `sequence` is the first unused one.
    pub one_time: BTreeMap<String, PathBuf>,
    /// Doors that are not plain knock sequences: door name → kind. Their
    /// core `Door::sequence` is a placeholder (the SPA port, or the first
    /// port of the TOTP range) the daemon never matches on.
    pub kinds: BTreeMap<String, DoorKind>,
}

/// A door opened by something other than a fixed sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DoorKind {
    /// Single-packet authorization on a UDP port.
    Spa(SpaDoor),
    /// Rotating, single-use sequences derived from per-user secrets.
    Totp(TotpDoor),
    /// fwknop-compatible SPA (FKO protocol 3.0.0, access.conf stanzas).
    Fwknop(crate::fwknop_conf::FwknopDoor),
}

/// An SPA door (`spa_port`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpaDoor {
    /// UDP port the packet is sent to (observed, never bound).
    pub port: u16,
    /// Accepted clock difference between client and server.
    pub window: Duration,
    /// Who may open it.
    pub users: Vec<SpaUser>,
    /// Also accept version 1 public-key packets, which lack `mac1` and so
    /// cost an X25519 before they can be refused (legacy clients).
    pub accept_v1: bool,
}

/// One SPA user of a door.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpaUser {
    /// Name used in logs.
    pub name: String,
    /// Where the user's key comes from.
    pub credential: CredentialSource,
    /// Services this user may open (a subset of the door's).
    pub services: Vec<Service>,
    /// Whether the packet may name another address to open for (NAT).
    pub allow_address: bool,
}

/// How an SPA user proves who they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// A shared symmetric key file (`key = "FILE"`).
    SymmetricKeyFile(PathBuf),
    /// An Ed25519 public key, inline or a file (`identity = "..."`).
    Identity(String),
}

/// A TOTP door (`totp_ports`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TotpDoor {
    /// Ports the knocks are drawn from.
    pub ports: std::ops::RangeInclusive<u16>,
    /// Knocks per sequence.
    pub length: usize,
    /// Length of a time step.
    pub period: Duration,
    /// Protocol of every knock.
    pub proto: Proto,
    /// Users and their secret files.
    pub users: Vec<(String, PathBuf)>,
}

/// Every knock the kernel must observe (log and drop) for `door`: its
/// sequence, the SPA port, or a TOTP door's whole port range (so no port of
/// the range ever answers, whichever step is current).
pub fn observed_knocks(door: &Door, kind: Option<&DoorKind>) -> Vec<Knock> {
    match kind {
        None => door.sequence.clone(),
        Some(DoorKind::Spa(spa)) => vec![Knock {
            port: spa.port,
            proto: Proto::Udp,
        }],
        Some(DoorKind::Fwknop(f)) => vec![Knock {
            port: f.port,
            proto: Proto::Udp,
        }],
        Some(DoorKind::Totp(t)) => t
            .ports
            .clone()
            .map(|port| Knock {
                port,
                proto: t.proto,
            })
            .collect(),
    }
}

/// Default SPA time window (± this much clock difference).
pub const DEFAULT_SPA_WINDOW: Duration = Duration::from_secs(60);
/// Default TOTP step.
pub const DEFAULT_TOTP_PERIOD: Duration = Duration::from_secs(30);
/// Default TOTP sequence length.
pub const DEFAULT_TOTP_LENGTH: usize = 4;
/// Default control socket path.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/sesame/control.sock";

/// Default state directory (replay cache).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/sesame";

/// Daemon-wide settings from the `[daemon]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonSettings {
    /// nftables table name (family `inet`).
    pub table: String,
    /// Ask the kernel to make the table sesamed's own (Linux 6.9+): no
    /// other program can delete or flush it.
    pub owned_table: bool,
    /// NFLOG group the knock rules log to.
    pub nflog_group: u16,
    /// Bound on in-progress knocks.
    pub max_tracked: usize,
    /// Bound on simultaneously open grants.
    pub max_grants: usize,
    /// Only knocks arriving on these interfaces count (empty: every
    /// interface). Matched by name, so interfaces may come and go.
    pub interfaces: Vec<String>,
    /// Also append log lines to this file.
    pub log_file: Option<PathBuf>,
    /// Also send log lines to syslog (`/dev/log`).
    pub syslog: bool,
    /// The syslog socket, when not `/dev/log`.
    pub syslog_socket: Option<PathBuf>,
    /// Write the daemon's pid here while it runs.
    pub pid_file: Option<PathBuf>,
    /// Where the replay cache is persisted.
    pub state_dir: PathBuf,
    /// The server's X25519 secret key file (public-key SPA).
    pub server_key: Option<PathBuf>,
    /// Run as this user after setup, keeping only CAP_NET_ADMIN (root when
    /// unset).
    pub user: Option<String>,
    /// Also append audit events (opens, closes, revokes, manual grants) to
    /// this file.
    pub audit_log: Option<PathBuf>,
    /// The control socket (`sesame status`, `revoke`, `open`, `reload`).
    pub control_socket: PathBuf,
    /// Group whose members may use the control socket (root only if unset).
    pub control_group: Option<String>,
    /// Address of the Prometheus metrics endpoint (off when unset).
    pub metrics: Option<std::net::SocketAddr>,
    /// The failure budget of knock doors: when a source prefix is banned.
    pub ban: BanPolicy,
    /// Public-key SPA verifications each source prefix may ask for.
    pub spa_pk_rate: sesame_core::rate::RatePolicy,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            table: sesame_nftables::DEFAULT_TABLE.to_string(),
            nflog_group: DEFAULT_NFLOG_GROUP,
            max_tracked: DEFAULT_MAX_TRACKED,
            max_grants: DEFAULT_MAX_GRANTS,
            interfaces: Vec::new(),
            log_file: None,
            syslog: false,
            syslog_socket: None,
            owned_table: true,
            pid_file: None,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            server_key: None,
            user: None,
            audit_log: None,
            control_socket: PathBuf::from(DEFAULT_CONTROL_SOCKET),
            control_group: None,
            metrics: None,
            ban: BanPolicy::DEFAULT,
            spa_pk_rate: sesame_core::rate::RatePolicy::default(),
        }
    }
}

/// Checks a user name for `[daemon] user` / `sesamed --user`.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// Longest interface name Linux allows (`IFNAMSIZ` - 1).
pub const MAX_IFNAME: usize = 15;

/// Checks an interface name: 1 to 15 printable bytes without '/' or ':'.
/// Names are matched exactly, as in knockd.
pub fn valid_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IFNAME
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != ':')
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is writable by its group or others.
    #[error("{0}")]
    Permissions(#[from] crate::privilege::WritableByOthers),
    /// The file could not be read.
    #[error("{path}: cannot read config: {source}")]
    Read {
        /// File that failed.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// TOML syntax, unknown key or wrong type.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// File.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A value that parses but is not acceptable.
    #[error("{path}:{line}:{column}: {item}: {message}")]
    Invalid {
        /// File.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The offending item, e.g. `door "ssh" sequence[1] "70x0"`.
        item: String,
        /// What is wrong with it.
        message: String,
    },
    /// The file defines no door.
    #[error(
        "{path}: no door defined; add at least one [door.NAME] table (see examples/sesame.toml)"
    )]
    NoDoors {
        /// File.
        path: String,
    },
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    door: BTreeMap<String, Spanned<RawDoor>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    table: Option<Spanned<String>>,
    nflog_group: Option<Spanned<i64>>,
    max_tracked: Option<Spanned<i64>>,
    max_grants: Option<Spanned<i64>>,
    #[serde(default)]
    interfaces: Vec<Spanned<String>>,
    log_file: Option<String>,
    #[serde(default)]
    syslog: bool,
    syslog_socket: Option<String>,
    owned_table: Option<bool>,
    pid_file: Option<String>,
    state_dir: Option<String>,
    server_key: Option<String>,
    user: Option<Spanned<String>>,
    audit_log: Option<String>,
    control_socket: Option<String>,
    control_group: Option<Spanned<String>>,
    metrics: Option<Spanned<String>>,
    ban_after: Option<Spanned<i64>>,
    ban_window: Option<Spanned<RawDuration>>,
    ban_for: Option<Spanned<RawDuration>>,
    ban_prefix_v4: Option<Spanned<i64>>,
    ban_prefix_v6: Option<Spanned<i64>>,
    spa_pk_rate: Option<Spanned<i64>>,
    spa_pk_burst: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDoor {
    /// `"auto"`, `"none"`, or port ranges (`"7000-7100"`, `"8000-8100:udp"`).
    guard: Option<Spanned<toml::Value>>,
    /// `"7000,8000:udp"` or `["7000", "8000:udp"]` (or bare integers).
    sequence: Option<Spanned<toml::Value>>,
    /// knockd-style one-time sequences file (instead of `sequence`).
    one_time_sequences: Option<Spanned<String>>,
    target: Option<Spanned<String>>,
    seq_timeout: Option<Spanned<RawDuration>>,
    open_for: Option<Spanned<RawDuration>>,
    tcp_flags: Option<Spanned<String>>,
    #[serde(default)]
    protect: Vec<Spanned<String>>,
    on_open: Option<Spanned<Vec<String>>>,
    on_close: Option<Spanned<Vec<String>>>,
    on_open_v6: Option<Spanned<Vec<String>>>,
    on_close_v6: Option<Spanned<Vec<String>>>,
    on_open_shell: Option<Spanned<String>>,
    on_close_shell: Option<Spanned<String>>,
    on_open_shell_v6: Option<Spanned<String>>,
    on_close_shell_v6: Option<Spanned<String>>,
    /// SPA door: UDP port.
    spa_port: Option<Spanned<i64>>,
    spa_window: Option<Spanned<RawDuration>>,
    /// SPA door: accept version 1 public-key packets (no mac1).
    spa_accept_v1: Option<Spanned<bool>>,
    /// TOTP door: `"20000-29999"`.
    totp_ports: Option<Spanned<String>>,
    totp_length: Option<Spanned<i64>>,
    totp_period: Option<Spanned<RawDuration>>,
    totp_proto: Option<Spanned<String>>,
    #[serde(default)]
    users: BTreeMap<String, Spanned<RawUser>>,
    /// fwknop door: UDP port of the fwknop SPA packets.
    fwknop_port: Option<Spanned<i64>>,
    fwknop_max_age: Option<Spanned<RawDuration>>,
    /// fwknop door: access.conf stanzas, in order.
    #[serde(default)]
    stanzas: Vec<Spanned<RawStanza>>,
}

/// One `[[door.NAME.stanzas]]` of an fwknop door (access.conf's meaning).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStanza {
    /// `["ANY"]` or addresses and networks.
    source: Spanned<Vec<String>>,
    /// Defaults to the door's `protect` list.
    open_ports: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    restrict_ports: Vec<Spanned<String>>,
    key: Option<Spanned<String>>,
    key_base64: Option<Spanned<String>>,
    hmac_key: Option<Spanned<String>>,
    hmac_key_base64: Option<Spanned<String>>,
    hmac_digest: Option<Spanned<String>>,
    encryption_mode: Option<Spanned<String>>,
    access_timeout: Option<Spanned<RawDuration>>,
    max_timeout: Option<Spanned<RawDuration>>,
    require_username: Option<Spanned<String>>,
    #[serde(default)]
    require_source_address: bool,
    #[serde(default)]
    enable_cmd_exec: bool,
    cmd_exec_user: Option<Spanned<String>>,
    cmd_exec_group: Option<Spanned<String>>,
    /// `["ANY"]` or addresses and networks the packet must be sent to.
    destination: Option<Spanned<Vec<String>>>,
    access_expire: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    /// SPA symmetric key file.
    key: Option<String>,
    /// SPA Ed25519 public key (inline or file).
    identity: Option<String>,
    /// TOTP secret file.
    totp_secret: Option<String>,
    #[serde(default)]
    services: Vec<Spanned<String>>,
    #[serde(default)]
    allow_address: bool,
}

/// Integer seconds or a human duration such as `"30s"`, `"5m"`, `"500ms"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Seconds(i64),
    Text(String),
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    crate::privilege::check_not_writable_by_others(path)?;
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, path)
}

/// Validates config text; `path` is only used in messages.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let ctx = Ctx {
        text,
        path: path.display().to_string(),
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let (line, column) = ctx.position(e.span().unwrap_or(0..0));
        ConfigError::Syntax {
            path: ctx.path.clone(),
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })?;
    let daemon = ctx.daemon(raw.daemon)?;
    if raw.door.is_empty() {
        return Err(ConfigError::NoDoors { path: ctx.path });
    }
    let mut doors = Vec::with_capacity(raw.door.len());
    let mut one_time = BTreeMap::new();
    let mut kinds = BTreeMap::new();
    for (name, door) in raw.door {
        let (door, file, kind) = ctx.door(name, door)?;
        if let Some(file) = file {
            one_time.insert(door.name.clone(), file);
        }
        if let Some(kind) = kind {
            kinds.insert(door.name.clone(), kind);
        }
        doors.push(door);
    }
    ctx.check_cross_door(&doors, &kinds)?;
    Ok(Config {
        path: path.to_path_buf(),
        daemon,
        doors,
        one_time,
        kinds,
    })
}

struct Ctx<'a> {
    text: &'a str,
    path: String,
}

impl Ctx<'_> {
    fn position(&self, span: Range<usize>) -> (usize, usize) {
        let offset = span.start.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }

    fn invalid(&self, span: Range<usize>, item: String, message: impl ToString) -> ConfigError {
        let (line, column) = self.position(span);
        ConfigError::Invalid {
            path: self.path.clone(),
            line,
            column,
            item,
            message: message.to_string(),
        }
    }

    /// Span of `item` inside the value at `within`, so errors point at the
    /// element itself; falls back to the whole value.
    fn item_span(&self, within: &Range<usize>, item: &str) -> Range<usize> {
        let value = self.text.get(within.clone()).unwrap_or_default();
        match (item.is_empty(), value.find(item)) {
            (false, Some(at)) => within.start + at..within.start + at + item.len(),
            _ => within.clone(),
        }
    }

    fn daemon(&self, raw: RawDaemon) -> Result<DaemonSettings, ConfigError> {
        let mut out = DaemonSettings::default();
        if let Some(table) = raw.table {
            let ok = !table.get_ref().is_empty()
                && table.get_ref().len() <= 64
                && table
                    .get_ref()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok {
                return Err(self.invalid(
                    table.span(),
                    format!("daemon.table {:?}", table.get_ref()),
                    "use 1 to 64 letters, digits, '_' or '-'",
                ));
            }
            out.table = table.into_inner();
        }
        if let Some(group) = raw.nflog_group {
            out.nflog_group = u16::try_from(*group.get_ref()).map_err(|_| {
                self.invalid(
                    group.span(),
                    format!("daemon.nflog_group {}", group.get_ref()),
                    "expected an NFLOG group number from 0 to 65535",
                )
            })?;
        }
        for name in raw.interfaces {
            if !valid_interface_name(name.get_ref()) {
                return Err(self.invalid(
                    name.span(),
                    format!("daemon.interfaces {:?}", name.get_ref()),
                    "expected an interface name of 1 to 15 characters",
                ));
            }
            if !out.interfaces.contains(name.get_ref()) {
                out.interfaces.push(name.into_inner());
            }
        }
        out.log_file = raw.log_file.map(PathBuf::from);
        if let Some(dir) = raw.state_dir {
            out.state_dir = PathBuf::from(dir);
        }
        out.server_key = raw.server_key.map(PathBuf::from);
        if let Some(user) = raw.user {
            if !valid_user_name(user.get_ref()) {
                return Err(self.invalid(
                    user.span(),
                    format!("daemon.user {:?}", user.get_ref()),
                    "expected a user name (letters, digits, '_', '-', '.'; at most 32)",
                ));
            }
            out.user = Some(user.into_inner());
        }
        out.audit_log = raw.audit_log.map(PathBuf::from);
        if let Some(path) = raw.control_socket {
            out.control_socket = PathBuf::from(path);
        }
        if let Some(group) = raw.control_group {
            let ok = !group.get_ref().is_empty()
                && group
                    .get_ref()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
            if !ok {
                return Err(self.invalid(
                    group.span(),
                    format!("daemon.control_group {:?}", group.get_ref()),
                    "expected a group name",
                ));
            }
            out.control_group = Some(group.into_inner());
        }
        if let Some(addr) = raw.metrics {
            out.metrics = Some(addr.get_ref().parse().map_err(|_| {
                self.invalid(
                    addr.span(),
                    format!("daemon.metrics {:?}", addr.get_ref()),
                    "expected ADDRESS:PORT, e.g. \"127.0.0.1:9751\"",
                )
            })?);
        }
        out.pid_file = raw.pid_file.map(PathBuf::from);
        out.syslog = raw.syslog;
        if let Some(owned) = raw.owned_table {
            out.owned_table = owned;
        }
        out.syslog_socket = raw.syslog_socket.map(PathBuf::from);
        if let Some(n) = raw.ban_after {
            out.ban.max_failures = u32::try_from(*n.get_ref())
                .ok()
                .filter(|n| *n <= 1000)
                .ok_or_else(|| {
                    self.invalid(
                        n.span(),
                        format!("daemon.ban_after {}", n.get_ref()),
                        "expected a number of failures from 0 (never ban) to 1000",
                    )
                })?;
        }
        out.ban.window = self.duration("daemon", "ban_window", raw.ban_window, out.ban.window)?;
        out.ban.ban_for = self.duration("daemon", "ban_for", raw.ban_for, out.ban.ban_for)?;
        for (key, field, width, target) in [
            (
                "ban_prefix_v4",
                raw.ban_prefix_v4,
                32,
                &mut out.ban.v4_prefix,
            ),
            (
                "ban_prefix_v6",
                raw.ban_prefix_v6,
                128,
                &mut out.ban.v6_prefix,
            ),
        ] {
            if let Some(v) = field {
                *target = u8::try_from(*v.get_ref())
                    .ok()
                    .filter(|n| (1..=width).contains(n))
                    .ok_or_else(|| {
                        self.invalid(
                            v.span(),
                            format!("daemon.{key} {}", v.get_ref()),
                            format!("expected a prefix length from 1 to {width}"),
                        )
                    })?;
            }
        }
        for (key, field, target) in [
            (
                "spa_pk_rate",
                raw.spa_pk_rate,
                &mut out.spa_pk_rate.per_second,
            ),
            ("spa_pk_burst", raw.spa_pk_burst, &mut out.spa_pk_rate.burst),
        ] {
            if let Some(v) = field {
                *target = u32::try_from(*v.get_ref())
                    .ok()
                    .filter(|n| *n <= 1_000_000)
                    .ok_or_else(|| {
                        self.invalid(
                            v.span(),
                            format!("daemon.{key} {}", v.get_ref()),
                            "expected a number from 0 (no limit) to 1000000",
                        )
                    })?;
            }
        }
        out.spa_pk_rate.v4_prefix = out.ban.v4_prefix;
        out.spa_pk_rate.v6_prefix = out.ban.v6_prefix;
        for (key, field, target) in [
            ("max_tracked", raw.max_tracked, &mut out.max_tracked),
            ("max_grants", raw.max_grants, &mut out.max_grants),
        ] {
            if let Some(v) = field {
                *target = usize::try_from(*v.get_ref())
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| {
                        self.invalid(
                            v.span(),
                            format!("daemon.{key} {}", v.get_ref()),
                            "expected a positive integer",
                        )
                    })?;
            }
        }
        Ok(out)
    }

    fn door(
        &self,
        name: String,
        raw: Spanned<RawDoor>,
    ) -> Result<(Door, Option<PathBuf>, Option<DoorKind>), ConfigError> {
        let door_span = raw.span();
        let mut raw = raw.into_inner();
        let label = format!("door {name:?}");

        let users_given = !raw.users.is_empty();
        let special = self.special_kind(&label, &door_span, &mut raw)?;
        let (seq_span, items, one_time) = match (raw.sequence, raw.one_time_sequences) {
            _ if special.is_some() => {
                let (span, items, _) = special.as_ref().expect("checked");
                (span.clone(), items.clone(), None)
            }
            _ if users_given => {
                return Err(self.invalid(
                    door_span,
                    format!("{label} users"),
                    "users are only for SPA (spa_port) and TOTP (totp_ports) doors",
                ))
            }
            (Some(_), Some(file)) => {
                return Err(self.invalid(
                    file.span(),
                    format!("{label} one_time_sequences"),
                    "give either sequence or one_time_sequences, not both",
                ))
            }
            (None, None) => {
                return Err(self.invalid(
                    door_span,
                    label,
                    "missing sequence (or one_time_sequences)",
                ))
            }
            (None, Some(file)) => {
                let path = PathBuf::from(file.get_ref());
                let otf = crate::one_time::OneTimeFile::open(&path).map_err(|e| {
                    self.invalid(file.span(), format!("{label} one_time_sequences"), e)
                })?;
                let Some(current) = otf.current() else {
                    return Err(self.invalid(
                        file.span(),
                        format!("{label} one_time_sequences {:?}", file.get_ref()),
                        "no unused sequence left in the file",
                    ));
                };
                let items = current.iter().map(|k| k.to_string()).collect();
                (file.span(), items, Some(path))
            }
            (Some(sequence), None) => {
                let seq_span = sequence.span();
                let items: Vec<String> = match sequence.into_inner() {
                    toml::Value::String(text) => {
                        text.split(',').map(|s| s.trim().to_string()).collect()
                    }
                    toml::Value::Array(values) => values
                        .into_iter()
                        .map(|v| match v {
                            toml::Value::String(s) => s,
                            toml::Value::Integer(i) => i.to_string(),
                            other => other.to_string(),
                        })
                        .collect(),
                    other => {
                        return Err(self.invalid(
                            seq_span,
                            format!("{label} sequence"),
                            format!(
                                "expected a list such as [\"7000\", \"8000:udp\"] or a string \"7000,8000:udp\", found {}",
                                other.type_str()
                            ),
                        ))
                    }
                };
                (seq_span, items, None)
            }
        };
        let mut sequence = Vec::with_capacity(items.len());
        for (i, text) in items.iter().enumerate() {
            let knock: Knock = text.parse().map_err(|e: DoorError| {
                self.invalid(
                    self.item_span(&seq_span, text),
                    format!("{label} sequence[{i}] {text:?}"),
                    e,
                )
            })?;
            sequence.push(knock);
        }

        let seq_timeout =
            self.duration(&label, "seq_timeout", raw.seq_timeout, DEFAULT_SEQ_TIMEOUT)?;
        let open_for_given = raw.open_for.is_some();
        let open_for = self.duration(&label, "open_for", raw.open_for, DEFAULT_OPEN_FOR)?;

        let tcp_flags = match raw.tcp_flags {
            None => TcpFlags::default(),
            Some(f) => f.get_ref().parse().map_err(|e: DoorError| {
                self.invalid(f.span(), format!("{label} tcp_flags {:?}", f.get_ref()), e)
            })?,
        };

        let mut services = Vec::with_capacity(raw.protect.len());
        for (i, s) in raw.protect.iter().enumerate() {
            let service: Service = s.get_ref().parse().map_err(|e: DoorError| {
                self.invalid(
                    s.span(),
                    format!("{label} protect[{i}] {:?}", s.get_ref()),
                    e,
                )
            })?;
            if !services.contains(&service) {
                services.push(service);
            }
        }

        let mut cmd_spans: Vec<(Range<usize>, String)> = Vec::new();
        let on_open = self.commands(
            &label,
            "on_open",
            [raw.on_open, raw.on_open_v6],
            [raw.on_open_shell, raw.on_open_shell_v6],
            &mut cmd_spans,
        )?;
        let on_close = self.commands(
            &label,
            "on_close",
            [raw.on_close, raw.on_close_v6],
            [raw.on_close_shell, raw.on_close_shell_v6],
            &mut cmd_spans,
        )?;
        let target = match raw.target {
            None => None,
            Some(t) => Some(t.get_ref().parse::<IpAddr>().map_err(|_| {
                self.invalid(
                    t.span(),
                    format!("{label} target {:?}", t.get_ref()),
                    "expected an IPv4 or IPv6 address",
                )
            })?),
        };

        let guard = self.guard(&label, raw.guard, special.as_ref().map(|(_, _, k)| k))?;
        let mut door = Door {
            name: name.clone(),
            sequence,
            seq_timeout,
            open_for,
            tcp_flags,
            services,
            target,
            on_open,
            on_close,
            guard,
        };
        door.validate().map_err(|e| {
            // Point at the most specific place we know for the failing check.
            let span = match &e {
                DoorError::EmptySequence | DoorError::SequenceTooLong(_) => seq_span.clone(),
                DoorError::EmptyCommand(key) | DoorError::ServicePlaceholderWithoutService(key) => {
                    cmd_spans
                        .iter()
                        .find(|(_, k)| k == key)
                        .map_or(door_span.clone(), |(s, _)| s.clone())
                }
                _ => door_span.clone(),
            };
            self.invalid(span, label.clone(), e)
        })?;
        let kind = match special {
            None => None,
            Some((span, _, mut kind)) => {
                if let DoorKind::Spa(spa) = &mut kind {
                    if door.services.is_empty() {
                        return Err(self.invalid(
                            span,
                            format!("{label} spa_port"),
                            "an SPA door needs protect = [...]: the services its users may open",
                        ));
                    }
                    for user in &mut spa.users {
                        if user.services.is_empty() {
                            user.services = door.services.clone();
                        } else if let Some(extra) =
                            user.services.iter().find(|s| !door.services.contains(s))
                        {
                            return Err(self.invalid(
                                span.clone(),
                                format!("{label} users.{} services {extra}", user.name),
                                "not among the door's protect list",
                            ));
                        }
                    }
                }
                if let DoorKind::Fwknop(f) = &mut kind {
                    self.fwknop_services(&label, &span, &door, f)?;
                    if !open_for_given {
                        door.open_for = f.longest_grant();
                    }
                }
                Some(kind)
            }
        };
        Ok((door, one_time, kind))
    }

    /// A door's `guard`: plain doors default to [`Guard::Auto`]; a TOTP
    /// door's range is always its guard; SPA doors have none.
    fn guard(
        &self,
        label: &str,
        raw: Option<Spanned<toml::Value>>,
        kind: Option<&DoorKind>,
    ) -> Result<Guard, ConfigError> {
        let fixed = match kind {
            None => None,
            Some(DoorKind::Totp(t)) => Some(Guard::Ranges(vec![PortRange {
                proto: t.proto,
                first: *t.ports.start(),
                last: *t.ports.end(),
            }])),
            Some(DoorKind::Spa(_) | DoorKind::Fwknop(_)) => Some(Guard::None),
        };
        let Some(raw) = raw else {
            return Ok(fixed.unwrap_or(Guard::Auto));
        };
        let span = raw.span();
        if fixed.is_some() {
            return Err(self.invalid(
                span,
                format!("{label} guard"),
                "guard is for sequence doors: a TOTP door's whole range is its guard, and SPA doors need none",
            ));
        }
        let items: Vec<String> = match raw.into_inner() {
            toml::Value::String(s) if s.trim() == "auto" => return Ok(Guard::Auto),
            toml::Value::String(s) if s.trim() == "none" => return Ok(Guard::None),
            toml::Value::String(s) => s.split(',').map(|i| i.trim().to_string()).collect(),
            toml::Value::Array(values) => values
                .into_iter()
                .map(|v| match v {
                    toml::Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect(),
            other => {
                return Err(self.invalid(
                    span,
                    format!("{label} guard"),
                    format!(
                        "expected \"auto\", \"none\" or a list of port ranges such as [\"7000-7255\", \"8000-8255:udp\"], found {}",
                        other.type_str()
                    ),
                ))
            }
        };
        let mut ranges = Vec::with_capacity(items.len());
        for (i, text) in items.iter().enumerate() {
            let range: PortRange = text.parse().map_err(|e: DoorError| {
                self.invalid(
                    self.item_span(&span, text),
                    format!("{label} guard[{i}] {text:?}"),
                    e,
                )
            })?;
            ranges.push(range);
        }
        Ok(Guard::Ranges(ranges))
    }

    /// A positive duration: integer seconds or a humantime string.
    fn duration(
        &self,
        label: &str,
        key: &str,
        raw: Option<Spanned<RawDuration>>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(raw) = raw else { return Ok(default) };
        let span = raw.span();
        match raw.into_inner() {
            RawDuration::Seconds(s) if s > 0 => Ok(Duration::from_secs(s as u64)),
            RawDuration::Seconds(s) => Err(self.invalid(
                span,
                format!("{label} {key} {s}"),
                "must be a positive number of seconds",
            )),
            RawDuration::Text(t) => match humantime::parse_duration(&t) {
                Ok(d) if !d.is_zero() => Ok(d),
                Ok(_) => Err(self.invalid(
                    span,
                    format!("{label} {key} {t:?}"),
                    "must be longer than zero",
                )),
                Err(e) => Err(self.invalid(
                    span,
                    format!("{label} {key} {t:?}"),
                    format!("{e} (examples: 30, \"30s\", \"5m\", \"1h 30m\")"),
                )),
            },
        }
    }

    /// Reads the SPA/TOTP keys of a door. Returns the span and placeholder
    /// sequence items used for the core door, and the kind.
    #[allow(clippy::type_complexity)]
    fn special_kind(
        &self,
        label: &str,
        door_span: &Range<usize>,
        raw: &mut RawDoor,
    ) -> Result<Option<(Range<usize>, Vec<String>, DoorKind)>, ConfigError> {
        let spa = raw.spa_port.take();
        let totp = raw.totp_ports.take();
        let fwknop = raw.fwknop_port.take();
        let exclusive = |span: Range<usize>, key: &str| {
            self.invalid(
                span,
                format!("{label} {key}"),
                "a door is exactly one of: sequence, one_time_sequences, spa_port, totp_ports, fwknop_port",
            )
        };
        if fwknop.is_none() {
            for (key, given) in [
                ("fwknop_max_age", raw.fwknop_max_age.is_some()),
                ("stanzas", !raw.stanzas.is_empty()),
            ] {
                if given {
                    return Err(self.invalid(
                        door_span.clone(),
                        format!("{label} {key}"),
                        "only valid with fwknop_port",
                    ));
                }
            }
        }
        if spa.is_none() {
            for (key, given) in [
                ("spa_window", raw.spa_window.is_some()),
                ("spa_accept_v1", raw.spa_accept_v1.is_some()),
            ] {
                if given {
                    return Err(self.invalid(
                        door_span.clone(),
                        format!("{label} {key}"),
                        "only valid with spa_port",
                    ));
                }
            }
        }
        if totp.is_none() {
            for (key, given) in [
                ("totp_length", raw.totp_length.is_some()),
                ("totp_period", raw.totp_period.is_some()),
                ("totp_proto", raw.totp_proto.is_some()),
            ] {
                if given {
                    return Err(self.invalid(
                        door_span.clone(),
                        format!("{label} {key}"),
                        "only valid with totp_ports",
                    ));
                }
            }
        }
        let users = std::mem::take(&mut raw.users);
        if let Some(port) = fwknop {
            for (key, span) in [
                ("spa_port", spa.as_ref().map(Spanned::span)),
                ("totp_ports", totp.as_ref().map(Spanned::span)),
                ("sequence", raw.sequence.as_ref().map(Spanned::span)),
                (
                    "one_time_sequences",
                    raw.one_time_sequences.as_ref().map(Spanned::span),
                ),
            ] {
                if let Some(span) = span {
                    return Err(exclusive(span, key));
                }
            }
            return self
                .fwknop_kind(label, door_span, port, users, raw)
                .map(Some);
        }
        if let Some(port) = spa {
            if let Some(t) = &totp {
                return Err(exclusive(t.span(), "totp_ports"));
            }
            if let Some(s) = &raw.sequence {
                return Err(exclusive(s.span(), "sequence"));
            }
            if let Some(s) = &raw.one_time_sequences {
                return Err(exclusive(s.span(), "one_time_sequences"));
            }
            let span = port.span();
            let port_num = u16::try_from(*port.get_ref())
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| {
                    self.invalid(
                        span.clone(),
                        format!("{label} spa_port {}", port.get_ref()),
                        "expected a UDP port from 1 to 65535",
                    )
                })?;
            let window = self.duration(
                label,
                "spa_window",
                raw.spa_window.take(),
                DEFAULT_SPA_WINDOW,
            )?;
            if users.is_empty() {
                return Err(self.invalid(
                    span,
                    format!("{label} users"),
                    "an SPA door needs at least one [door.NAME.users.USER] with key or identity",
                ));
            }
            let mut out = Vec::new();
            for (user, raw_user) in users {
                let uspan = raw_user.span();
                let u = raw_user.into_inner();
                let ulabel = format!("{label} users.{user}");
                let credential = match (u.key, u.identity, u.totp_secret) {
                    (Some(k), None, None) => CredentialSource::SymmetricKeyFile(PathBuf::from(k)),
                    (None, Some(i), None) => CredentialSource::Identity(i),
                    _ => {
                        return Err(self.invalid(uspan, ulabel, "give exactly one of key (symmetric key file) or identity (Ed25519 public key)"))
                    }
                };
                let mut services = Vec::new();
                for (i, sv) in u.services.iter().enumerate() {
                    let service: Service = sv.get_ref().parse().map_err(|e: DoorError| {
                        self.invalid(
                            sv.span(),
                            format!("{ulabel} services[{i}] {:?}", sv.get_ref()),
                            e,
                        )
                    })?;
                    services.push(service);
                }
                out.push(SpaUser {
                    name: user,
                    credential,
                    services,
                    allow_address: u.allow_address,
                });
            }
            return Ok(Some((
                span,
                vec![format!("{port_num}:udp")],
                DoorKind::Spa(SpaDoor {
                    port: port_num,
                    window,
                    users: out,
                    accept_v1: raw.spa_accept_v1.take().is_some_and(|v| *v.get_ref()),
                }),
            )));
        }
        let Some(ports) = totp else {
            return Ok(None);
        };
        if let Some(s) = &raw.sequence {
            return Err(exclusive(s.span(), "sequence"));
        }
        if let Some(s) = &raw.one_time_sequences {
            return Err(exclusive(s.span(), "one_time_sequences"));
        }
        let span = ports.span();
        let bad_range = || {
            self.invalid(
                span.clone(),
                format!("{label} totp_ports {:?}", ports.get_ref()),
                "expected a port range such as \"20000-29999\"",
            )
        };
        let (lo, hi) = ports.get_ref().split_once('-').ok_or_else(bad_range)?;
        let lo: u16 = lo.trim().parse().map_err(|_| bad_range())?;
        let hi: u16 = hi.trim().parse().map_err(|_| bad_range())?;
        let length = match raw.totp_length.take() {
            None => DEFAULT_TOTP_LENGTH,
            Some(l) => usize::try_from(*l.get_ref()).map_err(|_| {
                self.invalid(
                    l.span(),
                    format!("{label} totp_length {}", l.get_ref()),
                    "expected a positive integer",
                )
            })?,
        };
        let period = self.duration(
            label,
            "totp_period",
            raw.totp_period.take(),
            DEFAULT_TOTP_PERIOD,
        )?;
        let proto = match raw.totp_proto.take() {
            None => Proto::Tcp,
            Some(p) => p.get_ref().parse().map_err(|e: DoorError| {
                self.invalid(p.span(), format!("{label} totp_proto {:?}", p.get_ref()), e)
            })?,
        };
        let spec = sesame_core::totp::TotpSpec {
            len: length,
            ports: lo..=hi,
            proto,
            period: period.as_secs(),
        };
        spec.validate()
            .map_err(|e| self.invalid(span.clone(), format!("{label} totp_ports"), e))?;
        if period.subsec_nanos() != 0 {
            return Err(self.invalid(
                span,
                format!("{label} totp_period"),
                "must be whole seconds",
            ));
        }
        if users.is_empty() {
            return Err(self.invalid(
                span,
                format!("{label} users"),
                "a TOTP door needs at least one [door.NAME.users.USER] with totp_secret",
            ));
        }
        let mut out = Vec::new();
        for (user, raw_user) in users {
            let uspan = raw_user.span();
            let u = raw_user.into_inner();
            match (
                u.totp_secret,
                u.key.is_some()
                    || u.identity.is_some()
                    || !u.services.is_empty()
                    || u.allow_address,
            ) {
                (Some(secret), false) => out.push((user, PathBuf::from(secret))),
                _ => {
                    return Err(self.invalid(
                        uspan,
                        format!("{label} users.{user}"),
                        "a TOTP user has exactly one key: totp_secret",
                    ))
                }
            }
        }
        Ok(Some((
            span,
            vec![format!("{lo}:{proto}")],
            DoorKind::Totp(TotpDoor {
                ports: lo..=hi,
                length,
                period,
                proto,
                users: out,
            }),
        )))
    }

    /// Reads an fwknop door (`fwknop_port`, `fwknop_max_age`, `stanzas`).
    /// Stanzas without `open_ports` get the door's `protect` list later, in
    /// [`Ctx::fwknop_services`].
    fn fwknop_kind(
        &self,
        label: &str,
        door_span: &Range<usize>,
        port: Spanned<i64>,
        users: BTreeMap<String, Spanned<RawUser>>,
        raw: &mut RawDoor,
    ) -> Result<(Range<usize>, Vec<String>, DoorKind), ConfigError> {
        use crate::fwknop_conf as fk;
        let span = port.span();
        if let Some((user, u)) = users.iter().next() {
            return Err(self.invalid(
                u.span(),
                format!("{label} users.{user}"),
                "an fwknop door has no users: each [[door.NAME.stanzas]] holds its own keys",
            ));
        }
        let port_num = u16::try_from(*port.get_ref())
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                self.invalid(
                    span.clone(),
                    format!("{label} fwknop_port {}", port.get_ref()),
                    "expected a UDP port from 1 to 65535",
                )
            })?;
        let age_span = raw.fwknop_max_age.as_ref().map(Spanned::span);
        let max_age = self.duration(
            label,
            "fwknop_max_age",
            raw.fwknop_max_age.take(),
            fk::DEFAULT_MAX_AGE,
        )?;
        if max_age > Duration::from_secs(fk::MAX_PACKET_AGE_SECS) {
            return Err(self.invalid(
                age_span.unwrap_or(span.clone()),
                format!("{label} fwknop_max_age"),
                format!(
                    "at most {} seconds (as in fwknopd)",
                    fk::MAX_PACKET_AGE_SECS
                ),
            ));
        }
        let raw_stanzas = std::mem::take(&mut raw.stanzas);
        if raw_stanzas.is_empty() {
            return Err(self.invalid(
                door_span.clone(),
                format!("{label} stanzas"),
                "an fwknop door needs at least one [[door.NAME.stanzas]] (access.conf's SOURCE stanzas)",
            ));
        }
        let mut stanzas = Vec::with_capacity(raw_stanzas.len());
        for (i, st) in raw_stanzas.into_iter().enumerate() {
            stanzas.push(self.fwknop_stanza(label, i, st)?);
        }
        Ok((
            span,
            vec![format!("{port_num}:udp")],
            DoorKind::Fwknop(fk::FwknopDoor {
                port: port_num,
                max_age,
                stanzas,
            }),
        ))
    }

    /// Reads one `[[door.NAME.stanzas]]`.
    fn fwknop_stanza(
        &self,
        label: &str,
        index: usize,
        raw: Spanned<RawStanza>,
    ) -> Result<crate::fwknop_conf::FwknopStanza, ConfigError> {
        use crate::fwknop_conf as fk;
        let stanza_span = raw.span();
        let (line, _) = self.position(stanza_span.clone());
        let raw = raw.into_inner();
        let label = format!("{label} stanzas[{index}]");
        let bad = |span: Range<usize>, key: &str, message: String| {
            self.invalid(span, format!("{label} {key}"), message)
        };
        if raw.source.get_ref().is_empty() {
            return Err(bad(
                raw.source.span(),
                "source",
                "empty; use [\"ANY\"] or list addresses and networks".into(),
            ));
        }
        let source = fk::parse_source(&raw.source.get_ref().join(","))
            .map_err(|e| bad(raw.source.span(), "source", e))?;
        let destination = match &raw.destination {
            None => Vec::new(),
            Some(d) => fk::parse_source(&d.get_ref().join(","))
                .map_err(|e| bad(d.span(), "destination", e))?,
        };
        let open_ports = match &raw.open_ports {
            None => Vec::new(),
            Some(list) if list.get_ref().is_empty() => {
                return Err(bad(
                    list.span(),
                    "open_ports",
                    "empty; leave it out to allow every service of the door's protect list".into(),
                ))
            }
            Some(list) => {
                let mut out = Vec::new();
                for item in list.get_ref() {
                    let s = fk::parse_port_item(item)
                        .map_err(|e| bad(self.item_span(&list.span(), item), "open_ports", e))?;
                    if !out.contains(&s) {
                        out.push(s);
                    }
                }
                out
            }
        };
        let mut restrict_ports = Vec::new();
        for item in &raw.restrict_ports {
            let s = fk::parse_port_item(item.get_ref())
                .map_err(|e| bad(item.span(), "restrict_ports", e))?;
            if !restrict_ports.contains(&s) {
                restrict_ports.push(s);
            }
        }
        let secret = |plain: Option<Spanned<String>>,
                      b64: Option<Spanned<String>>,
                      name: &str|
         -> Result<Option<fk::Secret>, ConfigError> {
            match (plain, b64) {
                (Some(_), Some(b)) => Err(bad(
                    b.span(),
                    &format!("{name}_base64"),
                    format!("give either {name} or {name}_base64, not both"),
                )),
                (Some(p), None) => Ok(Some(fk::Secret(p.into_inner().into_bytes()))),
                (None, Some(b)) => fk::decode_key_base64(b.get_ref())
                    .map(|v| Some(fk::Secret(v)))
                    .map_err(|e| bad(b.span(), &format!("{name}_base64"), e)),
                (None, None) => Ok(None),
            }
        };
        let key = secret(raw.key, raw.key_base64, "key")?.ok_or_else(|| {
            bad(
                stanza_span.clone(),
                "key",
                "missing: give key (the passphrase) or key_base64".into(),
            )
        })?;
        let hmac_key = secret(raw.hmac_key, raw.hmac_key_base64, "hmac_key")?;
        let hmac_digest = match &raw.hmac_digest {
            None => "SHA256",
            Some(d) => {
                fk::parse_hmac_digest(d.get_ref()).map_err(|e| bad(d.span(), "hmac_digest", e))?
            }
        };
        let encryption_mode = match &raw.encryption_mode {
            None => "CBC",
            Some(m) => fk::parse_encryption_mode(m.get_ref())
                .map_err(|e| bad(m.span(), "encryption_mode", e))?,
        };
        let access_timeout = self.duration(
            &label,
            "access_timeout",
            raw.access_timeout,
            fk::DEFAULT_ACCESS_TIMEOUT,
        )?;
        let max_timeout = match raw.max_timeout {
            None => None,
            Some(m) => Some(self.duration(&label, "max_timeout", Some(m), Duration::ZERO)?),
        };
        let access_expire = match raw.access_expire {
            None => None,
            Some(t) => Some(u64::try_from(*t.get_ref()).map_err(|_| {
                bad(
                    t.span(),
                    "access_expire",
                    "expected Unix seconds (0 or more)".into(),
                )
            })?),
        };
        let name =
            |v: Option<Spanned<String>>, what: &str| -> Result<Option<String>, ConfigError> {
                match v {
                    None => Ok(None),
                    Some(v) if valid_user_name(v.get_ref()) => Ok(Some(v.into_inner())),
                    Some(v) => Err(bad(v.span(), what, "expected a user or group name".into())),
                }
            };
        let cmd_exec_user = name(raw.cmd_exec_user, "cmd_exec_user")?;
        let cmd_exec_group = name(raw.cmd_exec_group, "cmd_exec_group")?;
        Ok(fk::FwknopStanza {
            line,
            source,
            open_ports,
            restrict_ports,
            key,
            hmac_key,
            hmac_digest: hmac_digest.to_string(),
            encryption_mode: encryption_mode.to_string(),
            access_timeout,
            max_timeout,
            require_username: raw.require_username.map(Spanned::into_inner),
            require_source_address: raw.require_source_address,
            enable_cmd_exec: raw.enable_cmd_exec,
            cmd_exec_user,
            cmd_exec_group,
            destination,
            access_expire,
        })
    }

    /// Gives stanzas without `open_ports` the door's `protect` list, checks
    /// the others stay within it, and checks every stanza.
    fn fwknop_services(
        &self,
        label: &str,
        span: &Range<usize>,
        door: &Door,
        f: &mut crate::fwknop_conf::FwknopDoor,
    ) -> Result<(), ConfigError> {
        if door.services.is_empty() {
            return Err(self.invalid(
                span.clone(),
                format!("{label} fwknop_port"),
                "an fwknop door needs protect = [...]: the services its stanzas may open",
            ));
        }
        for (i, st) in f.stanzas.iter_mut().enumerate() {
            let at = self.line_start(st.line);
            if st.open_ports.is_empty() {
                st.open_ports = door.services.clone();
            } else if let Some(extra) = st.open_ports.iter().find(|s| !door.services.contains(s)) {
                return Err(self.invalid(
                    at..at,
                    format!("{label} stanzas[{i}] open_ports {extra}"),
                    "not among the door's protect list",
                ));
            }
            crate::fwknop_conf::check_stanza(st)
                .map_err(|e| self.invalid(at..at, format!("{label} stanzas[{i}]"), e))?;
        }
        Ok(())
    }

    /// Byte offset of the start of 1-based `line`.
    fn line_start(&self, line: usize) -> usize {
        if line <= 1 {
            return 0;
        }
        self.text
            .match_indices('\n')
            .nth(line - 2)
            .map_or(self.text.len(), |(i, _)| i + 1)
    }

    /// Builds one event's commands from its argv keys (`on_open`,
    /// `on_open_v6`) or shell keys (`on_open_shell`, `on_open_shell_v6`). The
    /// plain key sets both families; the `_v6` key overrides IPv6, and an
    /// empty `_v6` value disables it (knockd's `Start_Command_6`).
    fn commands(
        &self,
        label: &str,
        key: &str,
        argv: [Option<Spanned<Vec<String>>>; 2],
        shell: [Option<Spanned<String>>; 2],
        spans: &mut Vec<(Range<usize>, String)>,
    ) -> Result<Commands, ConfigError> {
        let [argv_both, argv_v6] = argv;
        let [shell_both, shell_v6] = shell;
        if argv_both.is_some() || argv_v6.is_some() {
            if let Some(s) = shell_both.as_ref().or(shell_v6.as_ref()) {
                return Err(self.invalid(
                    s.span(),
                    format!("{label} {key}_shell"),
                    format!("give either {key} (argv) or {key}_shell (a /bin/sh command line), not both"),
                ));
            }
        }
        let from_argv = |c: Spanned<Vec<String>>| (c.span(), CommandTemplate::argv(c.into_inner()));
        let from_shell = |c: Spanned<String>| (c.span(), CommandTemplate::shell(c.get_ref()));
        let both = argv_both.map(from_argv).or(shell_both.map(from_shell));
        let v6 = argv_v6.map(from_argv).or(shell_v6.map(from_shell));
        if let Some((span, _)) = &both {
            spans.push((span.clone(), key.to_string()));
        }
        let mut out = Commands::both(both.map(|(_, c)| c));
        if let Some((span, cmd)) = v6 {
            let empty =
                cmd.argv.is_empty() || cmd.shell_script().is_some_and(|s| s.trim().is_empty());
            if empty {
                out.v6 = None;
            } else {
                spans.push((span, key.to_string()));
                out.v6 = Some(cmd);
            }
        }
        Ok(out)
    }

    /// Checks that need every door at once.
    fn check_cross_door(
        &self,
        doors: &[Door],
        kinds: &BTreeMap<String, DoorKind>,
    ) -> Result<(), ConfigError> {
        // Knock packets are dropped, so a knock port that is also a protected
        // service would make the service unreachable even when granted.
        let protected: BTreeSet<(Proto, u16)> = doors
            .iter()
            .flat_map(|d| d.services.iter().map(|s| (s.proto, s.port)))
            .collect();
        for door in doors {
            for knock in observed_knocks(door, kinds.get(&door.name)) {
                if protected.contains(&(knock.proto, knock.port)) {
                    let needle = format!("[door.{}]", door.name);
                    let at = self.text.find(&needle).unwrap_or(0);
                    return Err(self.invalid(
                        at..at,
                        format!("door {:?} sequence {}", door.name, knock),
                        format!(
                            "{}/{} is also a protected service; knock packets are dropped, so it could never be reached",
                            knock.proto, knock.port
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        parse(text, Path::new("test.toml"))
    }

    #[test]
    fn daemon_user_and_audit_log() {
        let cfg = parse(
            "[daemon]\nuser = \"sesame\"\naudit_log = \"/var/log/sesame-audit.log\"\n[door.d]\nsequence = [\"1000\"]\nprotect = [\"tcp/22\"]\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(cfg.daemon.user.as_deref(), Some("sesame"));
        assert_eq!(
            cfg.daemon.audit_log,
            Some(PathBuf::from("/var/log/sesame-audit.log"))
        );
        let e = parse("[daemon]\nuser = \"-x y\"\n", Path::new("t.toml")).unwrap_err();
        assert!(e.to_string().contains("daemon.user"), "{e}");
        let cfg = parse(
            "[door.d]\nsequence = [\"1000\"]\nprotect = [\"tcp/22\"]\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert!(cfg.daemon.user.is_none());
    }

    #[test]
    fn group_writable_config_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("sesame-perm-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "[door.d]\nsequence = [\"1000\"]\nprotect = [\"tcp/22\"]\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
        let e = load(&path).unwrap_err();
        assert!(matches!(e, ConfigError::Permissions(_)), "{e}");
        assert!(e.to_string().contains("chmod go-w"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn example_config_is_valid() {
        let text = include_str!("../../../examples/sesame.toml");
        let cfg = parse_str(text).expect("examples/sesame.toml must be valid");
        assert!(!cfg.doors.is_empty());
    }

    #[test]
    fn full_door_parses_with_defaults() {
        let cfg = parse_str(
            r#"
            [door.ssh]
            sequence = ["7000", "8000:udp", 9000]
            protect = ["tcp/22"]
            "#,
        )
        .unwrap();
        let door = &cfg.doors[0];
        assert_eq!(door.name, "ssh");
        assert_eq!(door.sequence.len(), 3);
        assert_eq!(door.sequence[1].proto, Proto::Udp);
        assert_eq!(door.seq_timeout, DEFAULT_SEQ_TIMEOUT);
        assert_eq!(door.open_for, DEFAULT_OPEN_FOR);
        assert_eq!(cfg.daemon.nflog_group, DEFAULT_NFLOG_GROUP);
        assert_eq!(cfg.daemon.max_tracked, DEFAULT_MAX_TRACKED);
    }

    #[test]
    fn comma_string_sequence_and_durations() {
        let cfg = parse_str(
            r#"
            [door.web]
            sequence = "1000, 2000:udp"
            seq_timeout = "1500ms"
            open_for = 45
            protect = ["tcp/443", "udp/443"]
            "#,
        )
        .unwrap();
        let door = &cfg.doors[0];
        assert_eq!(door.sequence.len(), 2);
        assert_eq!(door.seq_timeout, Duration::from_millis(1500));
        assert_eq!(door.open_for, Duration::from_secs(45));
        assert_eq!(door.services.len(), 2);
    }

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let err =
            parse_str("[door.ssh]\nsequence = [\"7000\"]\nprotect = [\"tcp/22\"]\nopen_fro = 3\n")
                .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("test.toml:4:"), "{msg}");
        assert!(msg.contains("open_fro"), "{msg}");
    }

    #[test]
    fn junk_port_names_line_and_item() {
        let err =
            parse_str("[door.ssh]\nprotect = [\"tcp/22\"]\nsequence = [\"7000\",\n  \"70x0\"]\n")
                .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("test.toml:4:4:"), "{msg}");
        assert!(msg.contains("door \"ssh\" sequence[1] \"70x0\""), "{msg}");
    }

    #[test]
    fn bad_values_are_refused() {
        let cases = [
            ("sequence = []\nprotect = [\"22\"]", "empty"),
            ("sequence = [\"1\"]\nprotect = [\"sctp/22\"]", "protect[0]"),
            (
                "sequence = [\"1\"]\nprotect = [\"22\"]\nopen_for = \"soon\"",
                "open_for",
            ),
            (
                "sequence = [\"1\"]\nprotect = [\"22\"]\nseq_timeout = 0",
                "seq_timeout",
            ),
            (
                "sequence = [\"1\"]\nprotect = [\"22\"]\ntcp_flags = \"syn,nope\"",
                "tcp_flags",
            ),
            ("sequence = [\"1\"]", "protects no service"),
            (
                "sequence = [\"22\"]\nprotect = [\"22\"]",
                "also a protected service",
            ),
            (
                "sequence = [\"1\"]\non_open = [\"echo\", \"%PORT%\"]",
                "%PORT%",
            ),
            (
                "sequence = [\"1\"]\nprotect = [\"22\"]\non_open = []",
                "on_open is empty",
            ),
        ];
        for (body, needle) in cases {
            let text = format!("[door.d]\n{body}\n");
            let msg = parse_str(&text).unwrap_err().to_string();
            assert!(msg.contains(needle), "{body:?} gave {msg}");
            assert!(msg.starts_with("test.toml:"), "{msg}");
        }
        let long: Vec<String> = (1..=33).map(|p| format!("\"{p}\"")).collect();
        let text = format!(
            "[door.d]\nprotect=[\"22\"]\nsequence = [{}]\n",
            long.join(",")
        );
        assert!(parse_str(&text)
            .unwrap_err()
            .to_string()
            .contains("at most 32"));
    }

    #[test]
    fn daemon_settings_are_validated() {
        let door = "[door.d]\nsequence=[\"1\"]\nprotect=[\"22\"]\n";
        let ok = parse_str(&format!(
            "[daemon]\nnflog_group = 7\nmax_tracked = 5\ntable = \"t_1\"\n{door}"
        ))
        .unwrap();
        assert_eq!(ok.daemon.nflog_group, 7);
        assert_eq!(ok.daemon.max_tracked, 5);
        assert_eq!(ok.daemon.table, "t_1");
        for (bad, needle) in [
            ("nflog_group = 70000", "nflog_group"),
            ("max_tracked = 0", "max_tracked"),
            ("table = \"a b\"", "daemon.table"),
            ("bogus = 1", "bogus"),
        ] {
            let msg = parse_str(&format!("[daemon]\n{bad}\n{door}"))
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains(needle) && msg.starts_with("test.toml:2:"),
                "{msg}"
            );
        }
        assert!(matches!(
            parse_str("[daemon]\n"),
            Err(ConfigError::NoDoors { .. })
        ));
    }

    #[test]
    fn fwknop_doors_parse_with_defaults_and_lines() {
        let cfg = parse_str(
            "[door.fw]\nfwknop_port = 62201\nprotect = [\"tcp/22\", \"tcp/443\"]\n\
             [[door.fw.stanzas]]\nsource = [\"ANY\"]\nkey = \"pass\"\n\
             \n[[door.fw.stanzas]]\nsource = [\"192.0.2.1\", \"2001:db8::/32\"]\n\
             open_ports = [\"tcp/443\"]\nkey_base64 = \"YWJj\"\nhmac_key_base64 = \"aG1hYw==\"\n\
             hmac_digest = \"sha384\"\nencryption_mode = \"cfb\"\naccess_timeout = 60\n\
             max_timeout = \"10m\"\nrequire_username = \"bob\"\nrequire_source_address = true\n\
             enable_cmd_exec = true\naccess_expire = 2000000000\n",
        )
        .unwrap();
        let Some(DoorKind::Fwknop(f)) = cfg.kinds.get("fw") else {
            panic!("fwknop door kind");
        };
        assert_eq!(f.port, 62201);
        assert_eq!(f.max_age, crate::fwknop_conf::DEFAULT_MAX_AGE);
        let (a, b) = (&f.stanzas[0], &f.stanzas[1]);
        assert_eq!((a.line, b.line), (4, 8), "the [[door.fw.stanzas]] lines");
        assert_eq!(a.open_ports.len(), 2, "default: every protected service");
        assert!(a.source.is_empty() && a.hmac_key.is_none());
        assert_eq!(a.key.0, b"pass");
        assert_eq!(
            (a.hmac_digest.as_str(), a.encryption_mode.as_str()),
            ("SHA256", "CBC")
        );
        assert_eq!(b.source.len(), 2);
        assert_eq!(b.open_ports.len(), 1);
        assert_eq!(b.key.0, b"abc");
        assert_eq!(b.hmac_key.as_ref().unwrap().0, b"hmac");
        assert_eq!(
            (b.hmac_digest.as_str(), b.encryption_mode.as_str()),
            ("SHA384", "CFB")
        );
        assert_eq!(b.access_timeout, Duration::from_secs(60));
        assert_eq!(b.max_timeout, Some(Duration::from_secs(600)));
        assert_eq!(b.require_username.as_deref(), Some("bob"));
        assert!(b.require_source_address && b.enable_cmd_exec);
        assert_eq!(b.access_expire, Some(2_000_000_000));
        let door = &cfg.doors[0];
        assert_eq!(
            door.open_for,
            Duration::from_secs(600),
            "default: the longest grant"
        );
        assert_eq!(
            observed_knocks(door, cfg.kinds.get("fw")),
            [Knock {
                port: 62201,
                proto: Proto::Udp
            }]
        );
    }

    #[test]
    fn fwknop_doors_refuse_bad_values_with_their_line() {
        let head = "[door.fw]\nfwknop_port = 62201\nprotect = [\"tcp/22\"]\n";
        let st = "[[door.fw.stanzas]]\nsource = [\"ANY\"]\n";
        for (text, line, needle) in [
            (format!("{head}sequence = [\"1\"]\n{st}key = \"k\""), 4, "exactly one of"),
            (format!("{head}spa_port = 1\n{st}key = \"k\""), 4, "exactly one of"),
            ("[door.fw]\nsequence = [\"1\"]\nprotect = [\"tcp/22\"]\nfwknop_max_age = 5".into(), 1, "only valid with fwknop_port"),
            ("[door.fw]\nsequence = [\"1\"]\nprotect = [\"tcp/22\"]\n[[door.fw.stanzas]]\nsource = [\"ANY\"]\nkey = \"k\"".into(), 1, "only valid with fwknop_port"),
            (head.to_string(), 1, "at least one [[door.NAME.stanzas]]"),
            (format!("{head}{st}key = \"k\"\nopen_ports = [\"tcp/80\"]"), 4, "not among the door's protect"),
            (format!("{head}{st}key = \"k\"\nopen_ports = []"), 7, "leave it out"),
            (format!("{head}{st}key = \"k\"\nopen_ports = [\"tcp/22\", \"icmp/1\"]"), 7, "icmp/1"),
            (format!("{head}{st}key_base64 = \"not base64!\""), 6, "not valid base64"),
            (format!("{head}{st}key = \"k\"\nkey_base64 = \"YQ==\""), 7, "not both"),
            (format!("{head}{st}hmac_key = \"h\""), 4, "missing: give key"),
            (format!("{head}{st}key = \"{}\"", "k".repeat(33)), 4, "1 to 32 bytes"),
            (format!("{head}{st}key = \"k\"\nhmac_key = \"h\"\nencryption_mode = \"legacy\""), 4, "legacy"),
            (format!("{head}{st}key = \"k\"\nencryption_mode = \"xts\""), 7, "unknown encryption mode"),
            (format!("{head}{st}key = \"k\"\nhmac_digest = \"sha224\""), 7, "unknown HMAC digest"),
            (format!("{head}{st}key = \"k\"\nsource_port = 1"), 7, "source_port"),
            (format!("{head}{st}key = \"k\"\naccess_expire = -1"), 7, "Unix seconds"),
            (format!("{head}[[door.fw.stanzas]]\nsource = [\"10.0.0.0/40\"]\nkey = \"k\""), 5, "over 32"),
            (format!("{head}[[door.fw.stanzas]]\nsource = []\nkey = \"k\""), 5, "empty"),
            (format!("{head}fwknop_max_age = 100001\n{st}key = \"k\""), 4, "at most 100000"),
            (format!("{head}[door.fw.users.u]\nkey = \"k\"\n{st}key = \"k\""), 4, "no users"),
            (format!("[door.fw]\nfwknop_port = 0\nprotect = [\"tcp/22\"]\n{st}key = \"k\""), 2, "UDP port"),
            (format!("[door.fw]\nfwknop_port = 62201\n{st}key = \"k\""), 1, "protects no service"),
            (format!("[door.fw]\nfwknop_port = 22\nprotect = [\"udp/22\"]\n{st}key = \"k\""), 1, "also a protected service"),
        ] {
            let err = parse_str(&text).expect_err(&text).to_string();
            assert!(err.contains(needle), "{text:?} gave {err}");
            assert!(err.starts_with(&format!("test.toml:{line}:")), "{text:?} gave {err}");
        }
    }

    #[test]
    fn spa_and_totp_doors_parse_and_refuse_mixtures() {
        let cfg = parse_str(
            "[door.spa]\nspa_port = 62201\nprotect = [\"tcp/22\", \"tcp/443\"]\n\
             [door.spa.users.alice]\nkey = \"/k/alice\"\n\
             [door.spa.users.bob]\nidentity = \"sesame-identity-pub-v1:x\"\nservices = [\"tcp/22\"]\n\
             [door.vpn]\ntotp_ports = \"20000-20999\"\ntotp_length = 3\nprotect = [\"udp/51820\"]\n\
             [door.vpn.users.carol]\ntotp_secret = \"/k/carol\"\n",
        )
        .unwrap();
        let Some(DoorKind::Spa(spa)) = cfg.kinds.get("spa") else {
            panic!("spa door kind");
        };
        assert_eq!(spa.port, 62201);
        assert_eq!(spa.window, DEFAULT_SPA_WINDOW);
        assert_eq!(
            spa.users[0].services.len(),
            2,
            "default: every protected service"
        );
        assert_eq!(spa.users[1].services.len(), 1);
        let Some(DoorKind::Totp(t)) = cfg.kinds.get("vpn") else {
            panic!("totp door kind");
        };
        assert_eq!((t.ports.clone(), t.length), (20000..=20999, 3));
        let vpn = cfg.doors.iter().find(|d| d.name == "vpn").unwrap();
        assert_eq!(observed_knocks(vpn, cfg.kinds.get("vpn")).len(), 1000);

        for (text, needle) in [
            (
                "[door.a]\nspa_port = 1\nsequence = [\"5\"]\nprotect = [\"tcp/22\"]\n[door.a.users.u]\nkey = \"k\"",
                "exactly one of",
            ),
            ("[door.a]\nspa_port = 1\nprotect = [\"tcp/22\"]", "at least one"),
            (
                "[door.a]\nsequence = [\"5\"]\nprotect = [\"tcp/22\"]\n[door.a.users.u]\nkey = \"k\"",
                "only for SPA",
            ),
            (
                "[door.a]\nspa_port = 1\nprotect = [\"tcp/22\"]\n[door.a.users.u]\nkey = \"k\"\nservices = [\"tcp/80\"]",
                "not among the door's protect",
            ),
            (
                "[door.a]\ntotp_ports = \"9-5\"\nprotect = [\"tcp/22\"]\n[door.a.users.u]\ntotp_secret = \"k\"",
                "totp_ports",
            ),
            (
                "[door.a]\ntotp_ports = \"20-2000\"\nprotect = [\"tcp/22\"]\n[door.a.users.u]\ntotp_secret = \"k\"",
                "protected service",
            ),
            ("[door.a]\nsequence = [\"5\"]\nprotect = [\"tcp/22\"]\ntotp_length = 3", "only valid with totp_ports"),
        ] {
            let err = parse_str(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{text:?} gave {err}");
            assert!(err.starts_with("test.toml:"), "{err}");
        }
    }
}
