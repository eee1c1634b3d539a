//! The validated configuration: what the daemon runs, its defaults, and
//! why a file is refused.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use sesame_client::located::FileError;
use sesame_core::{BanPolicy, Door, Knock, Proto, Service};

/// NFLOG group used when the config does not name one.
pub const DEFAULT_NFLOG_GROUP: u16 = 2700;
/// Default bound on in-progress knocks (per source and door).
pub const DEFAULT_MAX_TRACKED: usize = 100_000;
/// Default bound on simultaneously open grants.
pub const DEFAULT_MAX_GRANTS: usize = 100_000;
/// Default knock window, counted from the first knock.
pub const DEFAULT_SEQ_TIMEOUT: Duration = sesame_core::door::DEFAULT_SEQ_TIMEOUT;
/// Default grant lifetime.
pub const DEFAULT_OPEN_FOR: Duration = sesame_core::door::DEFAULT_OPEN_FOR;
/// Default location of the daemon config.
pub const DEFAULT_PATH: &str = "/etc/sesame/sesame.toml";

/// A validated daemon configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
    /// Fleet mode (`[fleet]`), when configured.
    pub fleet: Option<FleetSettings>,
    /// Fleet doors: door name → its fleet settings.
    pub fleet_doors: BTreeMap<String, sesame_core::fleet::DoorFleet>,
}

/// Default time a spend may wait for the fleet's store.
pub const DEFAULT_FLEET_TIMEOUT: Duration = Duration::from_millis(50);
/// Default interval of fleet heartbeats.
pub const DEFAULT_FLEET_HEARTBEAT: Duration = Duration::from_secs(1);

/// `[fleet]`: the shared store and this gateway's place in the fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetSettings {
    /// This gateway's name.
    pub name: String,
    /// The fleet's group (a key prefix; spends and signatures are bound
    /// to it).
    pub group: String,
    /// The Redis server: `redis://HOST:PORT[/DB]` or `unix:///PATH`.
    pub redis: String,
    /// Redis ACL user.
    pub user: Option<String>,
    /// File holding the Redis password (a secret: root- or
    /// sesame-owned, not readable by others).
    pub password_file: Option<PathBuf>,
    /// This gateway's Ed25519 signing key (`sesame keygen identity`).
    pub key: PathBuf,
    /// How long a spend may wait for the store.
    pub timeout: Duration,
    /// What fleet doors do when the store is unreachable.
    pub on_store_down: sesame_core::fleet::StoreDown,
    /// How often this gateway says it is alive.
    pub heartbeat: Duration,
    /// How far back a (re)starting gateway reads grants (default: the
    /// longest `open_for` of the fleet doors).
    pub catch_up: Option<Duration>,
    /// Gateways whose grants are installed: name → Ed25519 public key
    /// (inline `sesame-identity-pub-v1:…` or a file).
    pub members: BTreeMap<String, String>,
}

/// A door opened by something other than a fixed sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DoorKind {
    /// Single-packet authorization on a UDP port.
    Spa(SpaDoor),
    /// Rotating, single-use sequences derived from per-user secrets.
    Totp(TotpDoor),
    /// fwknop-compatible SPA (FKO protocol 3.0.0, access.conf stanzas).
    Fwknop(sesame_core::fwknop::stanza::FwknopDoor),
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
    /// A user's grant follows them: a grant to a new address revokes the
    /// one to the address they knocked from before (`roaming = true`).
    pub roaming: bool,
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
    /// Key rotation: the credential being replaced, and the Unix time
    /// after which it is refused (`previous_key` or `previous_identity`,
    /// with `previous_until`).
    pub previous: Option<(CredentialSource, u64)>,
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
            table: sesame_core::engine::ruleset::DEFAULT_TABLE.to_string(),
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
    /// The file is unusable: permissions, reading, or a value that parses
    /// but is not acceptable.
    #[error(transparent)]
    File(FileError),
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
    /// The file defines no door.
    #[error(
        "{path}: no door defined; add at least one [door.NAME] table (see examples/sesame.toml)"
    )]
    NoDoors {
        /// File.
        path: String,
    },
}

sesame_client::file_error_conversions!(ConfigError);
