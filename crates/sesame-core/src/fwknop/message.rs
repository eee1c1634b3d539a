//! What a decoded request says: its type, the access it asks for, and why
//! its decrypted text can be malformed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use crate::door::Service;
use crate::replay::ReplayKey;

use super::encoding::DigestType;

/// Message type (`fko_message_type_t`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MsgType {
    /// 0: run a command on the server.
    Command,
    /// 1: open ports (the default).
    Access,
    /// 2: open ports forwarded to an internal host.
    NatAccess,
    /// 3: open ports for a client-chosen time.
    ClientTimeoutAccess,
    /// 4: NAT access for a client-chosen time.
    ClientTimeoutNatAccess,
    /// 5: NAT access to the server itself (`--nat-local`).
    LocalNatAccess,
    /// 6: local NAT access for a client-chosen time.
    ClientTimeoutLocalNatAccess,
}

impl MsgType {
    /// Every type, by number.
    pub const ALL: [MsgType; 7] = [
        MsgType::Command,
        MsgType::Access,
        MsgType::NatAccess,
        MsgType::ClientTimeoutAccess,
        MsgType::ClientTimeoutNatAccess,
        MsgType::LocalNatAccess,
        MsgType::ClientTimeoutLocalNatAccess,
    ];

    /// The number on the wire, 0–6.
    pub const fn number(self) -> u8 {
        match self {
            MsgType::Command => 0,
            MsgType::Access => 1,
            MsgType::NatAccess => 2,
            MsgType::ClientTimeoutAccess => 3,
            MsgType::ClientTimeoutNatAccess => 4,
            MsgType::LocalNatAccess => 5,
            MsgType::ClientTimeoutLocalNatAccess => 6,
        }
    }

    /// The type of a wire number.
    pub const fn from_number(n: u8) -> Option<MsgType> {
        match n {
            0 => Some(MsgType::Command),
            1 => Some(MsgType::Access),
            2 => Some(MsgType::NatAccess),
            3 => Some(MsgType::ClientTimeoutAccess),
            4 => Some(MsgType::ClientTimeoutNatAccess),
            5 => Some(MsgType::LocalNatAccess),
            6 => Some(MsgType::ClientTimeoutLocalNatAccess),
            _ => None,
        }
    }

    /// The name the fwknop client prints, e.g. `Access msg`.
    pub const fn name(self) -> &'static str {
        match self {
            MsgType::Command => "Command msg",
            MsgType::Access => "Access msg",
            MsgType::NatAccess => "NAT access msg",
            MsgType::ClientTimeoutAccess => "Client timeout access msg",
            MsgType::ClientTimeoutNatAccess => "Client timeout NAT access msg",
            MsgType::LocalNatAccess => "Local NAT access msg",
            MsgType::ClientTimeoutLocalNatAccess => "Client timeout local NAT access msg",
        }
    }

    /// True for the types that carry a NAT access field (2, 4, 5, 6).
    pub const fn has_nat_access(self) -> bool {
        matches!(
            self,
            MsgType::NatAccess
                | MsgType::ClientTimeoutNatAccess
                | MsgType::LocalNatAccess
                | MsgType::ClientTimeoutLocalNatAccess
        )
    }

    /// True for the types that carry a client timeout (3, 4, 6).
    pub const fn has_client_timeout(self) -> bool {
        matches!(
            self,
            MsgType::ClientTimeoutAccess
                | MsgType::ClientTimeoutNatAccess
                | MsgType::ClientTimeoutLocalNatAccess
        )
    }

    /// The type with a client timeout added, as the client's `-f` switches
    /// it: 1→3, 2→4, 5→6 (others unchanged).
    pub const fn with_client_timeout(self) -> MsgType {
        match self {
            MsgType::Access => MsgType::ClientTimeoutAccess,
            MsgType::NatAccess => MsgType::ClientTimeoutNatAccess,
            MsgType::LocalNatAccess => MsgType::ClientTimeoutLocalNatAccess,
            t => t,
        }
    }
}

impl fmt::Display for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.number(), self.name())
    }
}

/// One `proto/port` of an access message.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccessPort {
    /// `tcp/N` or `udp/N`.
    Service(Service),
    /// `icmp/N`: accepted on the wire; Sesame cannot grant it.
    Icmp(u16),
    /// `none/N`: accepted on the wire; Sesame cannot grant it.
    Unspecified(u16),
}

impl AccessPort {
    /// The TCP or UDP service, if it is one.
    pub const fn service(self) -> Option<Service> {
        match self {
            AccessPort::Service(s) => Some(s),
            _ => None,
        }
    }
}

impl From<Service> for AccessPort {
    fn from(s: Service) -> Self {
        AccessPort::Service(s)
    }
}

/// fwknop's syntax: `tcp/22`, `udp/53`, `icmp/0`, `none/7`.
impl fmt::Display for AccessPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessPort::Service(s) => write!(f, "{}/{}", s.proto, s.port),
            AccessPort::Icmp(p) => write!(f, "icmp/{p}"),
            AccessPort::Unspecified(p) => write!(f, "none/{p}"),
        }
    }
}

/// A decoded, authenticated fwknop request: what the client asked for
/// ([`FwknopRequest`], whose fields a server's policy reads) and what only
/// a received packet has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FwknopMessage {
    /// The 16-digit random value.
    pub random: String,
    /// The protocol version string the client sent (`3.0.0` for 2.6.x).
    pub version: String,
    /// The request, as the client made it. Its username is claimed by the
    /// client: `REQUIRE_USERNAME` compares it, it proves nothing by itself.
    /// Its `access_ip` is `None` when the client sent `0.0.0.0` (`-s`: "use
    /// the packet's source address"), and always IPv4 when set. Its
    /// `digest_type` was found from the inner digest's length.
    pub request: FwknopRequest,
    /// The inner digest (raw bytes): the replay-cache key material.
    pub digest: Vec<u8>,
}

impl FwknopMessage {
    /// The message string as the fwknop client prints it, e.g.
    /// `10.77.0.2,tcp/22` or `10.77.0.2,touch /tmp/x`.
    pub fn message_string(&self) -> String {
        let r = &self.request;
        message_string(r.access_ip, &r.access, r.command.as_deref())
    }

    /// The replay-cache key of this request: [`ReplayKey::fwknop`] of the
    /// inner digest.
    pub fn replay_key(&self) -> ReplayKey {
        ReplayKey::fwknop(&self.digest)
    }

    /// The last Unix second at which this request passes the age window
    /// `max_age_secs`: the expiry to store with its replay key.
    pub fn replay_expiry(&self, max_age_secs: u64) -> u64 {
        self.request.timestamp.saturating_add(max_age_secs)
    }
}

/// What [`encode`] puts in a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FwknopRequest {
    /// Username (1–64 printable ASCII characters, none of
    /// `" / \ [ ] : ; | = , + * ? < >`).
    pub username: String,
    /// Unix seconds: the caller's clock, plus any offset.
    pub timestamp: u64,
    /// Must agree with the fields below.
    pub msg_type: MsgType,
    /// IPv4 address to open for, or `None` for `0.0.0.0` ("use the packet's
    /// source"; the only choice for an IPv6 client).
    pub access_ip: Option<IpAddr>,
    /// Ports to open; at least one unless it is a command message.
    pub access: Vec<AccessPort>,
    /// The command of a [`MsgType::Command`] message, `None` otherwise.
    pub command: Option<String>,
    /// NAT access (`host`, `port`) for the NAT types.
    pub nat_access: Option<(String, u16)>,
    /// Legacy server-auth field; normally `None`.
    pub server_auth: Option<String>,
    /// Requested timeout for the client-timeout types.
    pub client_timeout: Option<u32>,
    /// Inner digest algorithm; SHA-256 by default.
    pub digest_type: DigestType,
}

impl FwknopRequest {
    /// An access request (type 1) with SHA-256 as the inner digest, as
    /// `fwknop -A ports -a ip` (or `-s` for `access_ip: None`) sends it.
    pub fn access(
        username: &str,
        timestamp: u64,
        access_ip: Option<IpAddr>,
        access: Vec<AccessPort>,
    ) -> Self {
        FwknopRequest {
            username: username.to_string(),
            timestamp,
            msg_type: MsgType::Access,
            access_ip,
            access,
            command: None,
            nat_access: None,
            server_auth: None,
            client_timeout: None,
            digest_type: DigestType::Sha256,
        }
    }

    /// Adds a client timeout, switching the type as the client's `-f` does
    /// (1→3, 2→4, 5→6).
    pub fn with_client_timeout(mut self, secs: u32) -> Self {
        self.msg_type = self.msg_type.with_client_timeout();
        self.client_timeout = Some(secs);
        self
    }
}

/// Why a decrypted message is malformed (the `malformed` reason). With an
/// HMAC configured only a key holder can cause these: a client bug or an
/// incompatible client.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Malformed {
    /// A byte outside printable ASCII in the decrypted text.
    #[error("non-printable byte at offset {at} of the plaintext")]
    NotPrintable {
        /// Offset of the first such byte.
        at: usize,
    },
    /// Too few or too many `:`-separated fields for the message type.
    #[error("{fields} fields before the digest, wrong for the message type")]
    FieldCount {
        /// Fields before the digest.
        fields: usize,
    },
    /// The digest's length matches no digest type.
    #[error("inner digest of {0} base64 characters matches no digest type")]
    DigestLength(usize),
    /// The random value is not 16 digits.
    #[error("random value is not 16 digits")]
    Random,
    /// Username not base64, empty, too long or with a forbidden character.
    #[error("invalid username")]
    Username,
    /// Timestamp not 1–12 digits.
    #[error("invalid timestamp")]
    Timestamp,
    /// Version empty or longer than 8 characters.
    #[error("invalid version")]
    Version,
    /// Message type not 0–6.
    #[error("invalid message type")]
    MessageType,
    /// Message not base64, too long, or without `IP,`.
    #[error("invalid message")]
    Message,
    /// The message's IP is not a dotted IPv4 address.
    #[error("invalid access IP")]
    AccessIp,
    /// A `proto/port` that is not tcp, udp, icmp or none with a port 1–65535.
    #[error("invalid proto/port in the access message")]
    AccessPort,
    /// A command message without a command.
    #[error("empty command")]
    Command,
    /// NAT access not `host,port`.
    #[error("invalid NAT access")]
    NatAccess,
    /// Server auth field not base64 text.
    #[error("invalid server auth field")]
    ServerAuth,
    /// Client timeout not a 32-bit decimal number.
    #[error("invalid client timeout")]
    ClientTimeout,
}

/// The message string: `IP,proto/port,...` or `IP,command`, with `0.0.0.0`
/// for "use the packet's source".
pub(super) fn message_string(
    access_ip: Option<IpAddr>,
    access: &[AccessPort],
    command: Option<&str>,
) -> String {
    let ip = match access_ip {
        Some(ip) => ip.to_string(),
        None => Ipv4Addr::UNSPECIFIED.to_string(),
    };
    let mut s = ip;
    if let Some(cmd) = command {
        s.push(',');
        s.push_str(cmd);
    }
    for a in access {
        s.push(',');
        s.push_str(&a.to_string());
    }
    s
}
