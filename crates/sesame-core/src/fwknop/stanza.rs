//! The data model of an fwknop-compatible door: access.conf stanzas with
//! fwknop's meaning, as the engine applies them (see [`crate::engine`]).
//! The importers that write it live in `sesame-config`.

use super::encoding::{DigestType, EncMode};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::Service;

/// Default grant lifetime (`FW_ACCESS_TIMEOUT`).
pub const DEFAULT_ACCESS_TIMEOUT: Duration = Duration::from_secs(30);
/// fwknopd's cap on a client-requested timeout when a stanza has no
/// `MAX_FW_TIMEOUT`.
pub const DEFAULT_MAX_FW_TIMEOUT: Duration = Duration::from_secs(300);

/// An fwknop-compatible SPA door: one UDP port, the access.conf stanzas in
/// file order (the first stanza whose SOURCE matches and whose keys verify
/// the packet wins, as in fwknopd).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FwknopDoor {
    /// UDP port packets are sent to (observed, never bound).
    pub port: u16,
    /// Accepted clock difference, either way.
    pub max_age: Duration,
    /// Stanzas in file order.
    pub stanzas: Vec<FwknopStanza>,
    /// NAT access requests: what fwknopd.conf enables, and where they may
    /// lead.
    pub nat: FwknopNat,
}

/// fwknop's NAT access, with an allow-list fwknop does not have.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FwknopNat {
    /// `ENABLE_IPT_FORWARDING`: NAT access messages (types 2 and 4) and
    /// `FORCE_NAT` are honoured.
    pub forwarding: bool,
    /// `ENABLE_IPT_LOCAL_NAT`: local NAT messages (types 5 and 6) are.
    pub local: bool,
    /// The inner hosts a NAT access message may name (networks); empty
    /// allows none. A client can never name an arbitrary internal address.
    pub hosts: Vec<(IpAddr, u8)>,
}

impl FwknopNat {
    /// Whether any NAT is enabled (the firewall then needs its gateway
    /// chains).
    pub fn enabled(&self) -> bool {
        self.forwarding || self.local
    }
}

impl FwknopDoor {
    /// The longest grant any stanza can give: the largest of every
    /// stanza's `FW_ACCESS_TIMEOUT` and (effective) `MAX_FW_TIMEOUT`.
    pub fn longest_grant(&self) -> Duration {
        self.stanzas
            .iter()
            .map(|s| s.access_timeout.max(s.effective_max_timeout()))
            .max()
            .unwrap_or(DEFAULT_ACCESS_TIMEOUT)
    }

    /// Every stanza's `OPEN_PORTS`, without duplicates, in first-seen order:
    /// the services the door protects.
    pub fn services(&self) -> Vec<Service> {
        let mut out: Vec<Service> = Vec::new();
        for s in self.stanzas.iter().flat_map(|st| &st.open_ports) {
            if !out.contains(s) {
                out.push(*s);
            }
        }
        out
    }
}

/// A secret from access.conf; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// One `SOURCE` stanza.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FwknopStanza {
    /// Line of the SOURCE keyword (for logs). For a stanza read from
    /// Sesame's TOML, the line of its `[[door.NAME.stanzas]]` header.
    pub line: usize,
    /// Networks allowed to use it: (address, prefix length); empty = ANY.
    /// Addresses are stored with their host bits cleared.
    pub source: Vec<(IpAddr, u8)>,
    /// `OPEN_PORTS`: services opened; a request must stay within them.
    /// Empty = whatever the request asks for (minus RESTRICT_PORTS). The
    /// loaders in this crate never produce an empty list: Sesame protects
    /// only listed services, so access.conf stanzas must list them.
    pub open_ports: Vec<Service>,
    /// `RESTRICT_PORTS`: services never opened.
    pub restrict_ports: Vec<Service>,
    /// `KEY` (raw passphrase bytes) or `KEY_BASE64` (decoded).
    pub key: Secret,
    /// `HMAC_KEY` / `HMAC_KEY_BASE64`, if any.
    pub hmac_key: Option<Secret>,
    /// `HMAC_DIGEST_TYPE`; default SHA-256.
    pub hmac_digest: DigestType,
    /// `ENCRYPTION_MODE`; default CBC.
    pub encryption_mode: EncMode,
    /// `FW_ACCESS_TIMEOUT`.
    pub access_timeout: Duration,
    /// `MAX_FW_TIMEOUT`: cap on a client-requested timeout. `None` means
    /// fwknopd's default, [`DEFAULT_MAX_FW_TIMEOUT`] (see
    /// [`FwknopStanza::effective_max_timeout`]).
    pub max_timeout: Option<Duration>,
    /// `REQUIRE_USERNAME`.
    pub require_username: Option<String>,
    /// `REQUIRE_SOURCE_ADDRESS`: refuse `0.0.0.0` (use-source) requests.
    pub require_source_address: bool,
    /// `ENABLE_CMD_EXEC`: command messages are refused unless set.
    pub enable_cmd_exec: bool,
    /// `CMD_EXEC_USER`: command messages run as this user (sesamed must run
    /// as root to switch to it).
    pub cmd_exec_user: Option<String>,
    /// `CMD_EXEC_GROUP`: and with this group (default: the user's own).
    pub cmd_exec_group: Option<String>,
    /// `DESTINATION`: the addresses (networks) the SPA packet must be sent
    /// to, as fwknopd checks them; empty is `ANY`.
    pub destination: Vec<(IpAddr, u8)>,
    /// `ACCESS_EXPIRE_EPOCH`: Unix time (seconds) from which the stanza no
    /// longer matches any packet. `None`: it never expires.
    pub access_expire: Option<u64>,
    /// `FORCE_NAT IP PORT`: every request is forwarded to this inner
    /// service (needs `ENABLE_IPT_FORWARDING`).
    pub force_nat: Option<SocketAddr>,
    /// `DISABLE_DNAT`: NAT requests are routed to the inner service,
    /// untranslated, instead of DNAT'd.
    pub disable_dnat: bool,
    /// `FORCE_MASQUERADE`: forwarded flows leave with this host's address.
    pub force_masquerade: bool,
}

impl FwknopStanza {
    /// A stanza with fwknopd's defaults around `key` and `hmac_key`:
    /// SOURCE ANY, no port named, HMAC-SHA256, CBC,
    /// [`DEFAULT_ACCESS_TIMEOUT`], nothing required, no commands, no
    /// DESTINATION and no expiry. Change the rest with struct update syntax.
    pub fn new(key: Secret, hmac_key: Option<Secret>) -> FwknopStanza {
        FwknopStanza {
            line: 0,
            source: Vec::new(),
            open_ports: Vec::new(),
            restrict_ports: Vec::new(),
            key,
            hmac_key,
            hmac_digest: DigestType::Sha256,
            encryption_mode: EncMode::Cbc,
            access_timeout: DEFAULT_ACCESS_TIMEOUT,
            max_timeout: None,
            require_username: None,
            require_source_address: false,
            enable_cmd_exec: false,
            cmd_exec_user: None,
            cmd_exec_group: None,
            destination: Vec::new(),
            access_expire: None,
            force_nat: None,
            disable_dnat: false,
            force_masquerade: false,
        }
    }

    /// The cap on a client-requested timeout: `MAX_FW_TIMEOUT`, or
    /// fwknopd's default of 300 s.
    pub fn effective_max_timeout(&self) -> Duration {
        self.max_timeout.unwrap_or(DEFAULT_MAX_FW_TIMEOUT)
    }
}
