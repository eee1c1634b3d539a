//! Fleet mode: what gateways sharing a store say to each other, without
//! the store.
//!
//! Two things travel between the gateways of a fleet:
//!
//! - **spends**: before a fleet door opens, the credential that opened it is
//!   recorded fleet-wide, by a [`spend_token`] (a hash, never the
//!   credential), with an insert-if-absent. A credential spent anywhere is
//!   refused everywhere, so a packet captured on its way to one gateway
//!   cannot open another.
//! - **entries**: a grant (or a revoke) made at one gateway for the others
//!   of a door's group, as one line of text ([`FleetEntry::encode`]) signed
//!   with the accepting gateway's Ed25519 key ([`sign`]). A receiver trusts
//!   an entry only once [`Signers::verify`] has checked it against its own
//!   allow-list of gateway keys, which yields a [`VerifiedEntry`]: a store
//!   that is compromised can drop or spoil entries, never write one a
//!   gateway installs.
//!
//! Times in entries are unix milliseconds, stamped by the sender's adapter;
//! receivers give a grant only the time it has left (and never more than
//! their own door's `open_for`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::replay::ReplayKey;
use crate::spa::{IdentityKey, IdentityPublic};
use crate::Service;

/// Domain label of spend tokens and of entry signatures.
const LABEL: &str = "sesame-fleet-v1";

/// Longest gateway, group or door name in an entry.
pub const MAX_NAME_LEN: usize = 64;

/// Whether `name` may name a gateway or a group: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// What a fleet door does when the store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreDown {
    /// Refuse the credential (fail closed; the default).
    #[default]
    Deny,
    /// Accept it with single use on this gateway only (its own replay
    /// cache), and tell no other gateway.
    Local,
}

/// This gateway's place in a fleet, as the engine needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetPolicy {
    /// This gateway's name (what entries it signs say in `from`).
    pub name: String,
    /// The fleet's group: spend tokens and signatures are bound to it.
    pub group: String,
    /// What fleet doors do when the store is down.
    pub on_store_down: StoreDown,
    /// How long a spend may wait for the store.
    pub timeout: Duration,
}

/// Which gateways a fleet door's grants open on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// Every gateway of the group.
    Group,
    /// These gateways (by name).
    Members(Vec<String>),
}

impl Targets {
    /// Whether `gateway` is one of them.
    pub fn includes(&self, gateway: &str) -> bool {
        match self {
            Targets::Group => true,
            Targets::Members(m) => m.iter().any(|g| g == gateway),
        }
    }
}

/// A door's fleet settings (`fleet = true`, `"group"` or a list of gateways).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoorFleet {
    /// Where its grants also open; `None`: the credential is single-use
    /// fleet-wide, and the grant stays on the gateway that accepted it.
    pub open_on: Option<Targets>,
}

/// The answer to a spend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpendAnswer {
    /// Recorded: no gateway had spent it.
    Spent,
    /// Already spent, by this gateway (when known).
    SpentElsewhere {
        /// The gateway that spent it first (`"?"` when unknown).
        by: String,
    },
    /// The store did not answer: the door's `on_store_down` decides.
    Unavailable(String),
}

/// The fleet-wide name of a spent credential: SHA-256 over a label, the
/// group, the door and the credential's kind and id. The id is already a
/// hash or a nonce (never a secret), and the gateway-local owner of the
/// replay key is left out, so every gateway of the group computes the same
/// token for the same credential.
pub fn spend_token(group: &str, door: &str, key: &ReplayKey) -> [u8; 32] {
    let bytes = key.to_bytes();
    token_hash(group, door)
        .chain_update([bytes[0]])
        .chain_update(&bytes[5..])
        .finalize()
        .into()
}

/// SHA-256 over the label, the group and the door: what every token of a
/// door starts with.
fn token_hash(group: &str, door: &str) -> Sha256 {
    Sha256::new()
        .chain_update(LABEL)
        .chain_update([0])
        .chain_update(group)
        .chain_update([0])
        .chain_update(door)
        .chain_update([0])
}

/// The fleet-wide name of a used one-time sequence of `door`: gateways
/// that share the door's sequence file compute the same token.
pub fn one_time_token(group: &str, door: &str, sequence: &[crate::Knock]) -> [u8; 32] {
    let mut h = token_hash(group, door).chain_update(b"one-time");
    for k in sequence {
        h.update(k.port.to_be_bytes());
        h.update([k.proto as u8]);
    }
    h.finalize().into()
}

/// How long the fleet remembers a used one-time sequence (they never
/// expire on their own): ten years.
pub const ONE_TIME_SPEND_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Grant or revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Open the door for the address.
    Grant,
    /// Close it now.
    Revoke,
}

/// What the engine asks the fleet adapter to publish; the adapter stamps
/// it with the time and its name ([`Outgoing::stamp`]) and signs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Grant or revoke.
    pub kind: EntryKind,
    /// The door (by name: gateways share door names).
    pub door: String,
    /// Whose grant.
    pub addr: IpAddr,
    /// What it opens.
    pub services: Vec<Service>,
    /// Which gateways it is for.
    pub to: Targets,
    /// How long it lasts from now.
    pub lasts: Duration,
}

impl Outgoing {
    /// The entry, made by gateway `from` at unix millisecond `now_ms`.
    pub fn stamp(self, from: &str, now_ms: u64) -> FleetEntry {
        FleetEntry {
            kind: self.kind,
            from: from.to_string(),
            door: self.door,
            addr: self.addr,
            services: self.services,
            to: self.to,
            made_ms: now_ms,
            expires_ms: now_ms.saturating_add(self.lasts.as_millis() as u64),
        }
    }
}

/// A grant or revoke made by one gateway for others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetEntry {
    /// Grant or revoke.
    pub kind: EntryKind,
    /// The gateway that made it.
    pub from: String,
    /// The door's name.
    pub door: String,
    /// Whose grant.
    pub addr: IpAddr,
    /// What it opens (receivers open only what their own door protects).
    pub services: Vec<Service>,
    /// Which gateways it is for.
    pub to: Targets,
    /// When it was made (unix ms).
    pub made_ms: u64,
    /// When the grant ends (unix ms); a revoke's tells how long it matters.
    pub expires_ms: u64,
}

/// Why an entry was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The text is not an entry.
    #[error("malformed fleet entry: {0}")]
    Malformed(String),
    /// Signed by no gateway of the allow-list.
    #[error("fleet entry from {0:?}, which is not an allowed signer")]
    UnknownSigner(String),
    /// The signature does not verify.
    #[error("fleet entry from {0:?} has a bad signature")]
    BadSignature(String),
}

impl EntryError {
    /// A stable label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            EntryError::Malformed(_) => "malformed",
            EntryError::UnknownSigner(_) => "unknown_signer",
            EntryError::BadSignature(_) => "bad_signature",
        }
    }
}

impl FleetEntry {
    /// One line: `v1 grant from=A door=D addr=IP services=tcp/22,udp/53
    /// to=*|gw-b,gw-c made=MS expires=MS`.
    pub fn encode(&self) -> String {
        let kind = match self.kind {
            EntryKind::Grant => "grant",
            EntryKind::Revoke => "revoke",
        };
        let services: Vec<String> = self.services.iter().map(|s| s.to_string()).collect();
        let to = match &self.to {
            Targets::Group => "*".to_string(),
            Targets::Members(m) => m.join(","),
        };
        format!(
            "v1 {kind} from={} door={} addr={} services={} to={to} made={} expires={}",
            self.from,
            self.door,
            self.addr,
            services.join(","),
            self.made_ms,
            self.expires_ms
        )
    }

    /// Parses [`FleetEntry::encode`]'s line; every field must be present
    /// once, and names must be valid.
    pub fn decode(text: &str) -> Result<FleetEntry, EntryError> {
        let bad = |what: &str| EntryError::Malformed(what.to_string());
        let mut words = text.split(' ');
        if words.next() != Some("v1") {
            return Err(bad("not version 1"));
        }
        let kind = match words.next() {
            Some("grant") => EntryKind::Grant,
            Some("revoke") => EntryKind::Revoke,
            _ => return Err(bad("kind is neither grant nor revoke")),
        };
        let mut fields: HashMap<&str, &str> = HashMap::new();
        for word in words {
            let (k, v) = word.split_once('=').ok_or_else(|| bad(word))?;
            if fields.insert(k, v).is_some() {
                return Err(bad(&format!("{k} given twice")));
            }
        }
        let mut take = |k: &str| fields.remove(k).ok_or_else(|| bad(&format!("no {k}")));
        let name = |v: &str, what: &str| match valid_name(v) {
            true => Ok(v.to_string()),
            false => Err(bad(&format!("invalid {what} {v:?}"))),
        };
        let from = name(take("from")?, "gateway")?;
        let door = name(take("door")?, "door")?;
        let addr = take("addr")?
            .parse()
            .map_err(|_| bad("addr is not an IP address"))?;
        let services = match take("services")? {
            "" => Vec::new(),
            list => list
                .split(',')
                .map(|s| s.parse().map_err(|_| bad(&format!("bad service {s:?}"))))
                .collect::<Result<Vec<Service>, _>>()?,
        };
        let to = match take("to")? {
            "*" => Targets::Group,
            list => Targets::Members(
                list.split(',')
                    .map(|g| name(g, "gateway"))
                    .collect::<Result<_, _>>()?,
            ),
        };
        let number = |v: &str, what: &str| v.parse::<u64>().map_err(|_| bad(what));
        let made_ms = number(take("made")?, "made is not a number")?;
        let expires_ms = number(take("expires")?, "expires is not a number")?;
        if let Some(k) = fields.keys().next() {
            return Err(bad(&format!("unknown field {k}")));
        }
        Ok(FleetEntry {
            kind,
            from,
            door,
            addr,
            services,
            to,
            made_ms,
            expires_ms,
        })
    }
}

/// The bytes a signature covers: the label, the group and the entry line.
fn signed_bytes(group: &str, line: &str) -> Vec<u8> {
    format!("{LABEL}\n{group}\n{line}").into_bytes()
}

/// Signs an entry line for `group` with this gateway's key.
pub fn sign(key: &IdentityKey, group: &str, line: &str) -> [u8; 64] {
    key.sign(&signed_bytes(group, line))
}

/// An entry whose signature was checked against the allow-list; only
/// [`Signers::verify`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEntry(FleetEntry);

impl VerifiedEntry {
    /// The entry.
    pub fn entry(&self) -> &FleetEntry {
        &self.0
    }

    /// For in-memory tests of the engine: an entry taken as verified.
    #[doc(hidden)]
    pub fn assume_verified_for_tests(entry: FleetEntry) -> Self {
        VerifiedEntry(entry)
    }
}

/// The gateways whose entries are installed, by name, with their keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signers(HashMap<String, IdentityPublic>);

impl Signers {
    /// The allow-list.
    pub fn new(members: impl IntoIterator<Item = (String, IdentityPublic)>) -> Self {
        Signers(members.into_iter().collect())
    }

    /// The gateways' names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.0.keys().cloned().collect();
        names.sort();
        names
    }

    /// Parses `line` and checks that its `from` gateway is allowed and
    /// signed it for `group`.
    pub fn verify(
        &self,
        group: &str,
        line: &str,
        signature: &[u8; 64],
    ) -> Result<VerifiedEntry, EntryError> {
        let entry = FleetEntry::decode(line)?;
        let key = self
            .0
            .get(&entry.from)
            .ok_or_else(|| EntryError::UnknownSigner(entry.from.clone()))?;
        if !key.verify(&signed_bytes(group, line), signature) {
            return Err(EntryError::BadSignature(entry.from));
        }
        Ok(VerifiedEntry(entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> FleetEntry {
        FleetEntry {
            kind: EntryKind::Grant,
            from: "gw-a".into(),
            door: "ssh".into(),
            addr: "2001:db8::7".parse().unwrap(),
            services: vec!["tcp/22".parse().unwrap(), "udp/53".parse().unwrap()],
            to: Targets::Members(vec!["gw-b".into(), "gw-c".into()]),
            made_ms: 1_800_000_000_000,
            expires_ms: 1_800_000_030_000,
        }
    }

    #[test]
    fn entries_round_trip_and_refuse_damage() {
        let e = entry();
        assert_eq!(FleetEntry::decode(&e.encode()).unwrap(), e);
        let group = FleetEntry {
            to: Targets::Group,
            services: Vec::new(),
            kind: EntryKind::Revoke,
            ..entry()
        };
        assert_eq!(FleetEntry::decode(&group.encode()).unwrap(), group);
        let line = e.encode();
        for damaged in [
            line.replace("v1 ", "v2 "),
            line.replace("grant", "open"),
            line.replace("addr=2001:db8::7", "addr=host"),
            line.replace("from=gw-a", "from=gw a"),
            line.replace(" made=", " made=x"),
            format!("{line} extra=1"),
            format!("{line} door=x"),
            line.replace(" to=gw-b,gw-c", ""),
            line.replace("tcp/22", "tcp/99999"),
        ] {
            assert!(FleetEntry::decode(&damaged).is_err(), "{damaged}");
        }
    }

    #[test]
    fn only_allowed_signers_of_the_group_verify() {
        let a = IdentityKey::from_seed(&[1; 32]);
        let b = IdentityKey::from_seed(&[2; 32]);
        let signers = Signers::new([("gw-a".to_string(), a.public())]);
        let line = entry().encode();
        let sig = sign(&a, "edge", &line);
        assert_eq!(
            signers.verify("edge", &line, &sig).unwrap().entry(),
            &entry()
        );
        // Another group, another line, another key: refused.
        assert_eq!(
            signers.verify("core", &line, &sig).unwrap_err().reason(),
            "bad_signature"
        );
        let longer = line.replace("expires=1800000030000", "expires=1900000030000");
        assert_eq!(
            signers.verify("edge", &longer, &sig).unwrap_err().reason(),
            "bad_signature"
        );
        let forged = sign(&b, "edge", &line);
        assert_eq!(
            signers.verify("edge", &line, &forged).unwrap_err().reason(),
            "bad_signature"
        );
        let c = line.replace("from=gw-a", "from=gw-c");
        assert_eq!(
            signers
                .verify("edge", &c, &sign(&b, "edge", &c))
                .unwrap_err()
                .reason(),
            "unknown_signer"
        );
    }

    #[test]
    fn spend_tokens_ignore_the_local_owner_and_bind_group_and_door() {
        let key = ReplayKey::spa([7; 16]);
        let owned = key.with_owner(42);
        assert_eq!(
            spend_token("edge", "ssh", &key),
            spend_token("edge", "ssh", &owned)
        );
        assert_ne!(
            spend_token("edge", "ssh", &key),
            spend_token("core", "ssh", &key)
        );
        assert_ne!(
            spend_token("edge", "ssh", &key),
            spend_token("edge", "vpn", &key)
        );
    }
}
