//! Door definitions: what a knock looks like and what it opens.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

/// knockd's limit on sequence length, which we keep.
pub const MAX_SEQUENCE_LEN: usize = 32;

/// How long a whole sequence may take when a door does not say.
pub const DEFAULT_SEQ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a grant lasts when a door does not say.
pub const DEFAULT_OPEN_FOR: Duration = Duration::from_secs(30);

/// Transport protocol of a knock or of a protected service.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
}

impl Proto {
    /// The IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    /// Lower-case name, as used in configs and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Proto {
    type Err = DoorError;
    fn from_str(s: &str) -> Result<Self, DoorError> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            _ => Err(DoorError::BadProto(s.to_string())),
        }
    }
}

/// One element of a knock sequence: a packet to `port` over `proto`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Knock {
    /// Destination port of the knock packet.
    pub port: u16,
    /// Protocol of the knock packet.
    pub proto: Proto,
}

impl Knock {
    /// A TCP knock (a SYN) on `port`.
    pub const fn tcp(port: u16) -> Knock {
        Knock {
            port,
            proto: Proto::Tcp,
        }
    }

    /// A UDP knock (a datagram) on `port`.
    pub const fn udp(port: u16) -> Knock {
        Knock {
            port,
            proto: Proto::Udp,
        }
    }
}

impl fmt::Display for Knock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.port, self.proto)
    }
}

/// Parses knockd's `port[:tcp|udp]` syntax. TCP is the default. Unlike knockd,
/// junk is an error rather than port 0, and an unknown protocol is an error
/// rather than TCP.
impl FromStr for Knock {
    type Err = DoorError;
    fn from_str(s: &str) -> Result<Self, DoorError> {
        let s = s.trim();
        let (port, proto) = match s.split_once(':') {
            Some((port, proto)) => (port, proto.parse()?),
            None => (s, Proto::Tcp),
        };
        Ok(Knock {
            port: parse_port(port)?,
            proto,
        })
    }
}

/// An inclusive range of ports over one protocol, e.g. a guard range or a
/// TOTP door's range.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    /// Protocol of the packets the range matches.
    pub proto: Proto,
    /// First port (inclusive).
    pub first: u16,
    /// Last port (inclusive), `>= first`.
    pub last: u16,
}

impl PortRange {
    /// True when `knock` falls in the range.
    pub const fn contains(&self, knock: Knock) -> bool {
        knock.proto as u8 == self.proto as u8 && knock.port >= self.first && knock.port <= self.last
    }

    /// Number of ports in the range.
    pub const fn len(&self) -> usize {
        (self.last - self.first) as usize + 1
    }

    /// Never true (a range holds at least one port); for clippy's sake.
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// The ports of the range.
    pub fn ports(&self) -> impl Iterator<Item = u16> {
        self.first..=self.last
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}:{}", self.first, self.proto)
        } else {
            write!(f, "{}-{}:{}", self.first, self.last, self.proto)
        }
    }
}

/// Parses `PORT`, `FIRST-LAST`, either followed by `:tcp` or `:udp` (TCP is
/// the default), as knocks are written.
impl FromStr for PortRange {
    type Err = DoorError;
    fn from_str(s: &str) -> Result<Self, DoorError> {
        let s = s.trim();
        let (ports, proto) = match s.split_once(':') {
            Some((ports, proto)) => (ports, proto.parse()?),
            None => (s, Proto::Tcp),
        };
        let (first, last) = match ports.split_once('-') {
            Some((a, b)) => (parse_port(a)?, parse_port(b)?),
            None => {
                let p = parse_port(ports)?;
                (p, p)
            }
        };
        if first > last {
            return Err(DoorError::BadRange(s.to_string()));
        }
        Ok(PortRange { proto, first, last })
    }
}

/// Ports around a door's knocks that reset an attempt when hit, so that a
/// blind sweep cannot deliver the knocks in order by chance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Guard {
    /// No guard: ports outside the sequence never disturb an attempt
    /// (knockd's behaviour).
    None,
    /// The 256-port block around each knock, from port 1024 up (see
    /// [`Door::guard_ranges`]). The default for plain sequence doors.
    #[default]
    Auto,
    /// These ranges.
    Ranges(Vec<PortRange>),
}

/// Ports below this are never part of an automatic guard: they hold the
/// host's well-known services, whose traffic would otherwise be observed.
pub const AUTO_GUARD_FLOOR: u16 = 1024;

/// Size (and alignment) of the block an automatic guard takes around each
/// knock port.
pub const AUTO_GUARD_BLOCK: u16 = 256;

/// A protected service: new connections to it are dropped unless granted.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Service {
    /// Protocol of the service.
    pub proto: Proto,
    /// Port of the service.
    pub port: u16,
}

impl Service {
    /// TCP `port`.
    pub const fn tcp(port: u16) -> Service {
        Service {
            proto: Proto::Tcp,
            port,
        }
    }

    /// UDP `port`.
    pub const fn udp(port: u16) -> Service {
        Service {
            proto: Proto::Udp,
            port,
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.proto, self.port)
    }
}

/// Parses `tcp/22`, `udp/51820`, `22/tcp` or a bare `22` (TCP).
impl FromStr for Service {
    type Err = DoorError;
    fn from_str(s: &str) -> Result<Self, DoorError> {
        let s = s.trim();
        let bad = || DoorError::BadService(s.to_string());
        match s.split_once('/') {
            Some((a, b)) => {
                if let Ok(proto) = a.parse::<Proto>() {
                    Ok(Service {
                        proto,
                        port: parse_port(b).map_err(|_| bad())?,
                    })
                } else {
                    let proto = b.parse::<Proto>().map_err(|_| bad())?;
                    Ok(Service {
                        proto,
                        port: parse_port(a).map_err(|_| bad())?,
                    })
                }
            }
            None => Ok(Service::tcp(parse_port(s).map_err(|_| bad())?)),
        }
    }
}

fn parse_port(s: &str) -> Result<u16, DoorError> {
    let s = s.trim();
    match s.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err(DoorError::BadPort(s.to_string())),
    }
}

/// TCP flag bits as they appear in byte 13 of the TCP header.
pub mod tcp_flag {
    /// FIN
    pub const FIN: u8 = 0x01;
    /// SYN
    pub const SYN: u8 = 0x02;
    /// RST
    pub const RST: u8 = 0x04;
    /// PSH
    pub const PSH: u8 = 0x08;
    /// ACK
    pub const ACK: u8 = 0x10;
    /// URG
    pub const URG: u8 = 0x20;
}

/// A predicate on TCP flags, in knockd's `syn,!ack` syntax: listed flags must
/// be set, `!`-prefixed flags must be clear, the others are ignored.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct TcpFlags {
    /// Bits that must be set.
    pub set: u8,
    /// Bits that must be clear.
    pub clear: u8,
}

impl TcpFlags {
    /// The default for TCP knocks: a connection attempt, i.e. SYN without ACK.
    pub const SYN_NOT_ACK: TcpFlags = TcpFlags {
        set: tcp_flag::SYN,
        clear: tcp_flag::ACK,
    };

    /// True when `flags` (TCP header byte 13) satisfies the predicate.
    pub const fn matches(self, flags: u8) -> bool {
        flags & self.set == self.set && flags & self.clear == 0
    }
}

impl Default for TcpFlags {
    fn default() -> Self {
        TcpFlags::SYN_NOT_ACK
    }
}

impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(u8, &str); 6] = [
            (tcp_flag::FIN, "fin"),
            (tcp_flag::SYN, "syn"),
            (tcp_flag::RST, "rst"),
            (tcp_flag::PSH, "psh"),
            (tcp_flag::ACK, "ack"),
            (tcp_flag::URG, "urg"),
        ];
        let mut first = true;
        for (bit, name) in NAMES {
            let prefix = if self.set & bit != 0 {
                ""
            } else if self.clear & bit != 0 {
                "!"
            } else {
                continue;
            };
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{prefix}{name}")?;
        }
        Ok(())
    }
}

impl FromStr for TcpFlags {
    type Err = DoorError;
    fn from_str(s: &str) -> Result<Self, DoorError> {
        let mut flags = TcpFlags { set: 0, clear: 0 };
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (negated, name) = match item.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, item),
            };
            let bit = match name.to_ascii_lowercase().as_str() {
                "fin" => tcp_flag::FIN,
                "syn" => tcp_flag::SYN,
                "rst" => tcp_flag::RST,
                "psh" => tcp_flag::PSH,
                "ack" => tcp_flag::ACK,
                "urg" => tcp_flag::URG,
                _ => return Err(DoorError::BadTcpFlag(item.to_string())),
            };
            if (flags.set | flags.clear) & bit != 0 {
                return Err(DoorError::BadTcpFlag(format!("{item} (flag given twice)")));
            }
            if negated {
                flags.clear |= bit;
            } else {
                flags.set |= bit;
            }
        }
        Ok(flags)
    }
}

/// A command to run on a door event: an argv, executed directly.
/// `%IP%`, `%PORT%`, `%PROTO%` and `%DOOR%` are substituted per argument, from
/// validated values only (an address is always printed by `IpAddr`'s
/// `Display`, so it holds nothing but hex digits, dots and colons).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandTemplate {
    /// Program followed by its arguments, before substitution.
    pub argv: Vec<String>,
}

/// Shell used for knockd-style command strings.
pub const SHELL: &str = "/bin/sh";

impl CommandTemplate {
    /// A command given as an argv (Sesame's own form: no shell).
    pub fn argv<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Self {
        CommandTemplate {
            argv: argv.into_iter().map(Into::into).collect(),
        }
    }

    /// A knockd-style command line, run as `/bin/sh -c SCRIPT`.
    pub fn shell(script: &str) -> Self {
        CommandTemplate {
            argv: vec![SHELL.to_string(), "-c".to_string(), script.to_string()],
        }
    }

    /// The script when this is a shell command line.
    pub fn shell_script(&self) -> Option<&str> {
        match self.argv.as_slice() {
            [sh, c, script] if sh == SHELL && c == "-c" => Some(script),
            _ => None,
        }
    }

    /// True when any argument mentions `%PORT%` or `%PROTO%`.
    pub fn uses_service(&self) -> bool {
        self.argv
            .iter()
            .any(|a| a.contains("%PORT%") || a.contains("%PROTO%"))
    }

    /// The argv with every placeholder replaced. `service` is `None` for doors
    /// that protect no service, in which case validation guarantees that
    /// `%PORT%` and `%PROTO%` do not appear.
    pub fn render(
        &self,
        ip: std::net::IpAddr,
        door: &str,
        service: Option<Service>,
    ) -> Vec<String> {
        let ip = ip.to_string();
        let (port, proto) = match service {
            Some(s) => (s.port.to_string(), s.proto.to_string()),
            None => (String::new(), String::new()),
        };
        self.argv
            .iter()
            .map(|a| {
                a.replace("%IP%", &ip)
                    .replace("%PORT%", &port)
                    .replace("%PROTO%", &proto)
                    .replace("%DOOR%", door)
            })
            .collect()
    }
}

/// The command for each address family of the knocker (knockd's
/// `Start_Command` / `Start_Command_6`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Commands {
    /// Run for IPv4 knockers.
    pub v4: Option<CommandTemplate>,
    /// Run for IPv6 knockers.
    pub v6: Option<CommandTemplate>,
}

impl Commands {
    /// The same command (or none) for both families.
    pub fn both(cmd: Option<CommandTemplate>) -> Self {
        Commands {
            v4: cmd.clone(),
            v6: cmd,
        }
    }

    /// The command for a knocker at `addr` (IPv4-mapped IPv6 counts as IPv4).
    pub fn for_addr(&self, addr: IpAddr) -> Option<&CommandTemplate> {
        let v4 = match addr {
            IpAddr::V4(_) => true,
            IpAddr::V6(a) => a.to_ipv4_mapped().is_some(),
        };
        if v4 {
            self.v4.as_ref()
        } else {
            self.v6.as_ref()
        }
    }

    /// True when neither family has a command.
    pub fn is_empty(&self) -> bool {
        self.v4.is_none() && self.v6.is_none()
    }

    fn iter(&self) -> impl Iterator<Item = &CommandTemplate> {
        self.v4.iter().chain(self.v6.iter())
    }
}

/// A door: a knock sequence and what it opens, for whom and for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Door {
    /// Name used in logs and on the command line.
    pub name: String,
    /// Ordered knock sequence, 1 to [`MAX_SEQUENCE_LEN`] elements.
    pub sequence: Vec<Knock>,
    /// The whole sequence must arrive within this window, counted from the
    /// first knock.
    pub seq_timeout: Duration,
    /// Lifetime of the grant once the door opens.
    pub open_for: Duration,
    /// Predicate that TCP knock packets must satisfy; others are ignored.
    pub tcp_flags: TcpFlags,
    /// Services the grant opens for the knocking address.
    pub services: Vec<Service>,
    /// Knocks must be addressed to this IP (knockd's `Target`, for routers
    /// and virtual IPs); `None` means any local address.
    pub target: Option<IpAddr>,
    /// Commands run when the door opens for an address.
    pub on_open: Commands,
    /// Commands run when the grant ends.
    pub on_close: Commands,
    /// Ports whose hit resets an attempt in progress (sweep protection).
    pub guard: Guard,
    /// What the grant opens through this host (gateway mode): DNAT,
    /// route and redirect forwards, for the knocker only.
    pub forwards: Vec<Forward>,
}

impl Door {
    /// A door with the defaults: [`DEFAULT_SEQ_TIMEOUT`], [`DEFAULT_OPEN_FOR`],
    /// TCP knocks that are SYN without ACK, any local address, no commands
    /// and no guard. Change the rest with struct update syntax.
    pub fn new(name: impl Into<String>, sequence: Vec<Knock>, services: Vec<Service>) -> Door {
        Door {
            name: name.into(),
            sequence,
            seq_timeout: DEFAULT_SEQ_TIMEOUT,
            open_for: DEFAULT_OPEN_FOR,
            tcp_flags: TcpFlags::SYN_NOT_ACK,
            services,
            target: None,
            on_open: Commands::default(),
            on_close: Commands::default(),
            guard: Guard::None,
            forwards: Vec::new(),
        }
    }

    /// The guard ranges for the current sequence: [`Guard::Auto`] takes the
    /// [`AUTO_GUARD_BLOCK`]-aligned block holding each knock port (ports below
    /// [`AUTO_GUARD_FLOOR`] left out), per protocol, merged. Knocks of the
    /// sequence inside a range still count as knocks, not as guard hits.
    pub fn guard_ranges(&self) -> Vec<PortRange> {
        let mut ranges = match &self.guard {
            Guard::None => return Vec::new(),
            Guard::Ranges(r) => r.clone(),
            Guard::Auto => self
                .sequence
                .iter()
                .filter_map(|k| {
                    let first = (k.port & !(AUTO_GUARD_BLOCK - 1)).max(AUTO_GUARD_FLOOR);
                    let last = k.port | (AUTO_GUARD_BLOCK - 1);
                    (k.port >= AUTO_GUARD_FLOOR).then_some(PortRange {
                        proto: k.proto,
                        first,
                        last,
                    })
                })
                .collect(),
        };
        ranges.sort();
        let mut merged: Vec<PortRange> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                Some(m) if m.proto == r.proto && u32::from(r.first) <= u32::from(m.last) + 1 => {
                    m.last = m.last.max(r.last);
                }
                _ => merged.push(r),
            }
        }
        merged
    }

    /// Checks the invariants the rest of the core relies on.
    pub fn validate(&self) -> Result<(), DoorError> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(DoorError::BadName(self.name.clone()));
        }
        if self.sequence.is_empty() {
            return Err(DoorError::EmptySequence);
        }
        if self.sequence.len() > MAX_SEQUENCE_LEN {
            return Err(DoorError::SequenceTooLong(self.sequence.len()));
        }
        if self.seq_timeout.is_zero() {
            return Err(DoorError::ZeroDuration("seq_timeout"));
        }
        if self.open_for.is_zero() {
            return Err(DoorError::ZeroDuration("open_for"));
        }
        if self.tcp_flags.set & self.tcp_flags.clear != 0 {
            return Err(DoorError::BadTcpFlag(self.tcp_flags.to_string()));
        }
        if self.services.is_empty() && self.on_open.is_empty() && self.forwards.is_empty() {
            return Err(DoorError::NothingToOpen);
        }
        for (key, cmds) in [("on_open", &self.on_open), ("on_close", &self.on_close)] {
            for cmd in cmds.iter() {
                if cmd.argv.first().is_none_or(|p| p.is_empty()) {
                    return Err(DoorError::EmptyCommand(key));
                }
                if self.services.is_empty() && cmd.uses_service() {
                    return Err(DoorError::ServicePlaceholderWithoutService(key));
                }
            }
        }
        Ok(())
    }
}

/// Why a door definition is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DoorError {
    /// Port is not an integer in 1..=65535.
    #[error("invalid port {0:?}: expected an integer from 1 to 65535")]
    BadPort(String),
    /// Protocol is neither tcp nor udp.
    #[error("invalid protocol {0:?}: expected \"tcp\" or \"udp\"")]
    BadProto(String),
    /// Service is not `proto/port`.
    #[error("invalid service {0:?}: expected \"tcp/PORT\" or \"udp/PORT\"")]
    BadService(String),
    /// Unknown or repeated TCP flag.
    #[error("invalid TCP flag {0:?}: expected a comma list of fin, syn, rst, psh, ack, urg, each optionally prefixed with '!'")]
    BadTcpFlag(String),
    /// Door name unusable in logs and commands.
    #[error("invalid door name {0:?}: use letters, digits, '-', '_' or '.'")]
    BadName(String),
    /// No knocks.
    #[error("the knock sequence is empty")]
    EmptySequence,
    /// More than [`MAX_SEQUENCE_LEN`] knocks.
    #[error("the knock sequence has {0} ports; at most 32 are allowed")]
    SequenceTooLong(usize),
    /// A port range whose first port is above its last.
    #[error("invalid port range {0:?}: expected FIRST-LAST with FIRST <= LAST, optionally followed by :tcp or :udp")]
    BadRange(String),
    /// A duration that must be positive is zero.
    #[error("{0} must be longer than zero")]
    ZeroDuration(&'static str),
    /// Door opens nothing.
    #[error(
        "the door protects no service, forwards nothing and runs no on_open command, so opening it would do nothing"
    )]
    NothingToOpen,
    /// Empty argv.
    #[error("{0} is empty: give the program and its arguments as a list")]
    EmptyCommand(&'static str),
    /// A forward (`forward`, `route`, `redirect`) that cannot be read.
    #[error("invalid forward {forward:?}: {reason}")]
    BadForward {
        /// As written.
        forward: String,
        /// What is wrong.
        reason: String,
    },
    /// `%PORT%`/`%PROTO%` used by a door without services.
    #[error("{0} uses %PORT% or %PROTO% but the door protects no service")]
    ServicePlaceholderWithoutService(&'static str),
}

// ---- gateway forwards -------------------------------------------------------
//
// Gateway doors: what a grant opens *through* this host, besides its own
// services. Three kinds, each for the knocker's address only and with the
// grant's lifetime:
//
// - **DNAT** (`"tcp/2222 -> 10.2.0.2:22"`): the knocker's connections to
//   this host's port 2222 go to the inner host's port 22;
// - **route** (`"tcp/10.2.0.2:22"`, `"tcp/[2001:db8:2::2]:22"`): the
//   knocker may reach the inner service through this host, untranslated
//   (the natural IPv6 case);
// - **redirect** (`"tcp/2222 -> 22"`): this host's port 2222 goes to its
//   own port 22 (fwknop's "local NAT").
//
// Inner services named by a DNAT or route forward are closed in the
// forward path unless granted, as protected local services are.
//

/// One forward a door opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Forward {
    /// This host's `proto/public_port` is translated to `inner`.
    Dnat {
        /// Protocol.
        proto: Proto,
        /// The port the knocker connects to on this host.
        public_port: u16,
        /// The inner service.
        inner: SocketAddr,
        /// The inner host sees this host as the source (for inner hosts
        /// that do not route their answers through it).
        masquerade: bool,
    },
    /// The knocker may reach `inner` through this host, untranslated.
    Route {
        /// Protocol.
        proto: Proto,
        /// The inner service.
        inner: SocketAddr,
        /// As for [`Forward::Dnat`].
        masquerade: bool,
    },
    /// This host's `proto/public_port` is redirected to its own
    /// `local_port`.
    Redirect {
        /// Protocol.
        proto: Proto,
        /// The port the knocker connects to.
        public_port: u16,
        /// The local port it reaches.
        local_port: u16,
    },
}

impl Forward {
    /// Whether a grant for `addr` can use this forward: DNAT and route
    /// forwards stay within one address family (no NAT64); a redirect
    /// works for both.
    pub fn applies_to(&self, addr: IpAddr) -> bool {
        match self {
            Forward::Dnat { inner, .. } | Forward::Route { inner, .. } => {
                inner.is_ipv4() == addr.is_ipv4()
            }
            Forward::Redirect { .. } => true,
        }
    }

    /// The service the knocker connects to on this host (DNAT, redirect):
    /// closed to everyone else, as a protected service is.
    pub fn public_service(&self) -> Option<Service> {
        match *self {
            Forward::Dnat {
                proto, public_port, ..
            }
            | Forward::Redirect {
                proto, public_port, ..
            } => Some(Service {
                proto,
                port: public_port,
            }),
            Forward::Route { .. } => None,
        }
    }

    /// The local service a redirect reaches: the grant must let the
    /// knocker in there too (as fwknop's local NAT does).
    pub fn local_service(&self) -> Option<Service> {
        match *self {
            Forward::Redirect {
                proto, local_port, ..
            } => Some(Service {
                proto,
                port: local_port,
            }),
            _ => None,
        }
    }

    /// The inner service (DNAT, route): closed in the forward path unless
    /// granted.
    pub fn inner_service(&self) -> Option<(Proto, SocketAddr)> {
        match *self {
            Forward::Dnat { proto, inner, .. } | Forward::Route { proto, inner, .. } => {
                Some((proto, inner))
            }
            Forward::Redirect { .. } => None,
        }
    }
}

impl Forward {
    /// Whether the inner host sees this host as the source.
    pub fn masquerade(&self) -> bool {
        match *self {
            Forward::Dnat { masquerade, .. } | Forward::Route { masquerade, .. } => masquerade,
            Forward::Redirect { .. } => false,
        }
    }
}

impl fmt::Display for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let masq = if self.masquerade() { " masquerade" } else { "" };
        match self {
            Forward::Dnat {
                proto,
                public_port,
                inner,
                ..
            } => write!(f, "{proto}/{public_port} -> {inner}{masq}"),
            Forward::Route { proto, inner, .. } => write!(f, "{proto}/{inner}{masq}"),
            Forward::Redirect {
                proto,
                public_port,
                local_port,
            } => write!(f, "{proto}/{public_port} -> {local_port}"),
        }
    }
}

fn bad(text: &str, why: &str) -> DoorError {
    DoorError::BadForward {
        forward: text.to_string(),
        reason: why.to_string(),
    }
}

fn inner_addr(text: &str, s: &str) -> Result<SocketAddr, DoorError> {
    let inner: SocketAddr = s.trim().parse().map_err(|_| {
        bad(
            text,
            "expected an inner service as ADDR:PORT or [IPv6]:PORT",
        )
    })?;
    if inner.port() == 0 {
        return Err(bad(text, "port 0"));
    }
    let ip = inner.ip();
    if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
        return Err(bad(
            text,
            "the inner host must be a unicast address other than loopback",
        ));
    }
    Ok(inner)
}

impl FromStr for Forward {
    type Err = DoorError;

    /// `"PROTO/PORT -> ADDR:PORT"` (DNAT), `"PROTO/ADDR:PORT"` (route) or
    /// `"PROTO/PORT -> PORT"` (redirect); IPv6 addresses in brackets. A
    /// DNAT or route forward may end in `masquerade`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let (body, masquerade) = match trimmed.rsplit_once(char::is_whitespace) {
            Some((body, word)) if word.eq_ignore_ascii_case("masquerade") => (body, true),
            _ => (trimmed, false),
        };
        let (proto, rest) = body
            .trim()
            .split_once('/')
            .ok_or_else(|| bad(text, "expected PROTO/... (tcp or udp)"))?;
        let proto: Proto = proto
            .trim()
            .parse()
            .map_err(|_| bad(text, "the protocol must be tcp or udp"))?;
        let port = |s: &str| -> Result<u16, DoorError> {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| bad(text, "ports are 1 to 65535"))
        };
        match rest.split_once("->") {
            Some((public, target)) => {
                let public_port = port(public)?;
                if target.contains(':') {
                    Ok(Forward::Dnat {
                        proto,
                        public_port,
                        inner: inner_addr(text, target)?,
                        masquerade,
                    })
                } else if masquerade {
                    Err(bad(
                        text,
                        "a redirect stays on this host: masquerade is for DNAT and route forwards",
                    ))
                } else {
                    Ok(Forward::Redirect {
                        proto,
                        public_port,
                        local_port: port(target)?,
                    })
                }
            }
            None => Ok(Forward::Route {
                proto,
                inner: inner_addr(text, rest)?,
                masquerade,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knock_syntax_matches_knockd_and_rejects_junk() {
        assert_eq!(
            "7000".parse::<Knock>().unwrap(),
            Knock {
                port: 7000,
                proto: Proto::Tcp
            }
        );
        assert_eq!(
            "8000:UDP".parse::<Knock>().unwrap(),
            Knock {
                port: 8000,
                proto: Proto::Udp
            }
        );
        assert!(matches!(
            "70x0".parse::<Knock>(),
            Err(DoorError::BadPort(_))
        ));
        assert!(matches!("0".parse::<Knock>(), Err(DoorError::BadPort(_))));
        assert!(matches!(
            "65536".parse::<Knock>(),
            Err(DoorError::BadPort(_))
        ));
        assert!(matches!(
            "1:icmp".parse::<Knock>(),
            Err(DoorError::BadProto(_))
        ));
    }

    #[test]
    fn service_syntax() {
        let ssh = Service::tcp(22);
        assert_eq!("tcp/22".parse::<Service>().unwrap(), ssh);
        assert_eq!("22/tcp".parse::<Service>().unwrap(), ssh);
        assert_eq!("22".parse::<Service>().unwrap(), ssh);
        assert!("udp/".parse::<Service>().is_err());
        assert!("sctp/5".parse::<Service>().is_err());
    }

    #[test]
    fn tcp_flags_round_trip_and_match() {
        let f: TcpFlags = "syn,!ack".parse().unwrap();
        assert_eq!(f, TcpFlags::SYN_NOT_ACK);
        assert_eq!(f.to_string(), "syn,!ack");
        assert!(f.matches(tcp_flag::SYN));
        assert!(!f.matches(tcp_flag::SYN | tcp_flag::ACK));
        assert!(!f.matches(tcp_flag::FIN));
        assert!("syn,bogus".parse::<TcpFlags>().is_err());
        assert!("syn,!syn".parse::<TcpFlags>().is_err());
    }

    #[test]
    fn command_rendering_substitutes_every_placeholder() {
        let cmd = CommandTemplate {
            argv: vec!["echo".into(), "%DOOR% %IP% %PROTO%/%PORT%".into()],
        };
        let argv = cmd.render(
            "2001:db8::1".parse().unwrap(),
            "ssh",
            Some(Service::tcp(22)),
        );
        assert_eq!(argv, vec!["echo", "ssh 2001:db8::1 tcp/22"]);
    }
}

#[cfg(test)]
mod forward_tests {
    use super::*;

    #[test]
    fn forwards_parse_print_and_refuse_nonsense() {
        for text in [
            "tcp/2222 -> 10.2.0.2:22",
            "udp/51820 -> [2001:db8:2::2]:51820",
            "tcp/10.2.0.2:22",
            "tcp/[2001:db8:2::2]:22",
            "tcp/2222 -> 22",
            "tcp/2222 -> 10.2.0.2:22 masquerade",
            "tcp/10.2.0.2:22 masquerade",
        ] {
            let f: Forward = text.parse().unwrap();
            assert_eq!(f.to_string(), text);
        }
        assert!("tcp/2222 -> 10.2.0.2:22 MASQUERADE"
            .parse::<Forward>()
            .unwrap()
            .masquerade());
        let dnat: Forward = "tcp/2222 -> 10.2.0.2:22".parse().unwrap();
        assert!(dnat.applies_to("198.51.100.7".parse().unwrap()));
        assert!(!dnat.applies_to("2001:db8::7".parse().unwrap()));
        assert_eq!(dnat.public_service(), Some(Service::tcp(2222)));
        let redirect: Forward = "tcp/2222 -> 22".parse().unwrap();
        assert_eq!(redirect.local_service(), Some(Service::tcp(22)));
        assert!(redirect.applies_to("2001:db8::7".parse().unwrap()));
        for (text, needle) in [
            ("2222 -> 10.2.0.2:22", "PROTO/"),
            ("icmp/2222 -> 10.2.0.2:22", "tcp or udp"),
            ("tcp/0 -> 10.2.0.2:22", "1 to 65535"),
            ("tcp/2222 -> 10.2.0.2:0", "port 0"),
            ("tcp/2222 -> 127.0.0.1:22", "loopback"),
            ("tcp/2222 -> 2001:db8::2:22", "ADDR:PORT"),
            ("tcp/host.example:22", "ADDR:PORT"),
            ("tcp/2222 -> 22 masquerade", "stays on this host"),
        ] {
            let err = text.parse::<Forward>().unwrap_err().to_string();
            assert!(err.contains(needle) && err.contains(text), "{text}: {err}");
        }
    }
}
