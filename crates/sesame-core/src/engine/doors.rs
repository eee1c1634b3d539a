//! Door types: one sum type, each variant carrying its own settings and
//! loaded keys. Adding a door type adds a variant here; the compiler then
//! lists every `match` that must learn it.

use std::time::Duration;

use crate::fwknop::stanza::FwknopStanza;
use crate::fwknop::FwknopKeys;
use crate::spa::Verifier;
use crate::totp::{TotpSecret, TotpSpec};
use crate::{Door, Knock, Proto};

/// A configured door: what every door has (name, services, lifetime,
/// commands), and what its type adds.
pub struct EngineDoor {
    /// Name, services, grant lifetime, commands, knock settings. For a plain
    /// or one-time door, `sequence` is the sequence to knock (a one-time
    /// door's first unused one); other types ignore it.
    pub door: Door,
    /// How it is opened.
    pub kind: DoorKind,
    /// Fleet mode: its credentials are single-use fleet-wide, and its
    /// grants may open on other gateways too.
    pub fleet: Option<crate::fleet::DoorFleet>,
}

/// How a door is opened.
pub enum DoorKind {
    /// A fixed knock sequence (knockd).
    Sequence,
    /// knockd's one-time sequences: each is used once, then the next one of
    /// the door's file applies (see [`crate::ports::OneTimeStore`]).
    OneTime,
    /// Sesame SPA on a UDP port.
    Spa(SpaDoor),
    /// Rotating, single-use knock sequences from per-user TOTP secrets.
    Totp(TotpDoor),
    /// fwknop-compatible SPA with access.conf stanzas.
    Fwknop(FwknopDoor),
}

/// A Sesame SPA door.
pub struct SpaDoor {
    /// UDP port the packet is sent to (observed, never bound).
    pub port: u16,
    /// Its users, their keys and policies.
    pub verifier: Verifier,
    /// Roaming: a user's grant follows them. When a user's packet opens
    /// the door for a new address, the grant of the address they knocked
    /// from before is revoked, so a phone that moves from Wi-Fi to 4G does
    /// not leave the door open behind it.
    pub roaming: bool,
}

/// A TOTP door.
pub struct TotpDoor {
    /// Shape of its sequences.
    pub spec: TotpSpec,
    /// Users and their secrets.
    pub users: Vec<(String, TotpSecret)>,
}

/// An fwknop-compatible door.
pub struct FwknopDoor {
    /// UDP port packets are sent to.
    pub port: u16,
    /// Accepted clock difference, either way (seconds).
    pub max_age: u64,
    /// Stanzas in file order, with their keys.
    pub stanzas: Vec<LoadedStanza>,
    /// NAT access requests.
    pub nat: crate::fwknop::stanza::FwknopNat,
}

/// One access.conf stanza and what was loaded for it.
pub struct LoadedStanza {
    /// The stanza.
    pub stanza: FwknopStanza,
    /// Its keys.
    pub keys: FwknopKeys,
    /// `CMD_EXEC_USER` / `CMD_EXEC_GROUP`, resolved at load: (uid, gid).
    pub run_as: Option<(u32, u32)>,
}

impl DoorKind {
    /// The type's name, as `sesame status` shows it.
    pub fn name(&self) -> &'static str {
        match self {
            DoorKind::Sequence => "knock",
            DoorKind::OneTime => "one_time",
            DoorKind::Spa(_) => "spa",
            DoorKind::Totp(_) => "totp",
            DoorKind::Fwknop(_) => "fwknop",
        }
    }

    /// The UDP port single packets are read from (SPA and fwknop doors).
    pub fn datagram_port(&self) -> Option<u16> {
        match self {
            DoorKind::Spa(s) => Some(s.port),
            DoorKind::Fwknop(f) => Some(f.port),
            _ => None,
        }
    }

    /// Whether the door's knocks are matched by the tracker as they are
    /// (plain and one-time sequences; TOTP doors use slots of their own).
    pub fn is_sequence(&self) -> bool {
        matches!(self, DoorKind::Sequence | DoorKind::OneTime)
    }

    /// The widest clock window the door accepts, in seconds (for the replay
    /// floor after a lost image); 0 for doors without credentials.
    pub fn window_secs(&self) -> u64 {
        match self {
            DoorKind::Spa(s) => s.verifier.window_secs(),
            DoorKind::Totp(t) => 2 * t.spec.period,
            DoorKind::Fwknop(f) => f.max_age,
            DoorKind::Sequence | DoorKind::OneTime => 0,
        }
    }

    /// How many credential holders share the replay cache through this door.
    pub fn credential_owners(&self) -> usize {
        match self {
            DoorKind::Spa(s) => s.verifier.key_count(),
            DoorKind::Totp(t) => t.users.len(),
            DoorKind::Fwknop(f) => f.stanzas.len(),
            DoorKind::Sequence | DoorKind::OneTime => 0,
        }
    }
}

impl EngineDoor {
    /// Every knock the kernel must observe for this door, given its current
    /// sequence (a one-time door's moves on).
    pub fn observed_knocks(&self, current: &[Knock]) -> Vec<Knock> {
        match &self.kind {
            DoorKind::Sequence | DoorKind::OneTime => current.to_vec(),
            DoorKind::Spa(SpaDoor { port, .. }) | DoorKind::Fwknop(FwknopDoor { port, .. }) => {
                vec![Knock {
                    port: *port,
                    proto: Proto::Udp,
                }]
            }
            DoorKind::Totp(t) => t
                .spec
                .ports
                .clone()
                .map(|port| Knock {
                    port,
                    proto: t.spec.proto,
                })
                .collect(),
        }
    }

    /// One line saying how the door is opened, for the start-up log.
    pub fn describe(&self) -> String {
        let d = &self.door;
        match &self.kind {
            DoorKind::Sequence | DoorKind::OneTime => format!(
                "sequence {} within {:?}",
                d.sequence
                    .iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                d.seq_timeout
            ),
            DoorKind::Spa(spa) => format!(
                "SPA on udp/{} ({} user(s), window ±{:?})",
                spa.port,
                spa.verifier.key_count(),
                Duration::from_secs(spa.verifier.window_secs())
            ),
            DoorKind::Totp(t) => format!(
                "TOTP sequences of {} {} knock(s) in {}-{} every {:?} ({} user(s))",
                t.spec.len,
                t.spec.proto,
                t.spec.ports.start(),
                t.spec.ports.end(),
                Duration::from_secs(t.spec.period),
                t.users.len()
            ),
            DoorKind::Fwknop(f) => format!(
                "fwknop SPA on udp/{} ({} stanza(s), max age ±{:?})",
                f.port,
                f.stanzas.len(),
                Duration::from_secs(f.max_age)
            ),
        }
    }
}
