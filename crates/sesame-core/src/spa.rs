//! Sesame's single-packet authorization (SPA) format, version 1.
//!
//! One UDP datagram carries an encrypted, authenticated request: "open these
//! services for this long". The full specification, with byte layouts, the
//! key derivations, the order of checks and worked examples, is
//! `docs/spa-protocol.md`; this module is its reference implementation.
//!
//! Two modes share one header and one payload:
//!
//! - **symmetric** ([`Mode::Symmetric`]): each user has a 32-byte [`SpaKey`]
//!   shared with the server; the AEAD key is derived from it with HKDF.
//! - **public key** ([`Mode::Public`]): each user has an Ed25519
//!   [`IdentityKey`]; the server holds only the users' [`IdentityPublic`]
//!   keys (as `authorized_keys` does) and its own X25519 [`ServerKey`]. The
//!   client encrypts to the server with an ephemeral X25519 key and signs
//!   the request with its identity key.
//!
//! Encoding takes its randomness (nonces, ephemeral key) as arguments and
//! verification takes the time as an argument: nothing here reads a clock or
//! an RNG.
//!
//! ```text
//! symmetric (124 bytes): "SSM" 01 00 key_id[8] nonce[24] | ciphertext(payload[71]) tag[16]
//! public    (220 bytes): "SSM" 01 01 key_id[8] nonce[24] ephemeral[32] | ciphertext(payload[71] sig[64]) tag[16]
//! ```

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::door::{Proto, Service};
use crate::replay::{ReplayCache, ReplayError, ReplayKey};
use crate::table::SeededState;

/// First bytes of every packet.
pub const MAGIC: [u8; 3] = *b"SSM";
/// Protocol version carried in byte 3 of symmetric packets (and of legacy
/// public-key packets).
pub const VERSION: u8 = 1;
/// Protocol version of public-key packets: version 1's layout followed by
/// `mac1`, a MAC keyed by the server's public key that the server checks
/// before any public-key work.
pub const VERSION_2: u8 = 2;
/// Length of `mac1`.
pub const MAC1_LEN: usize = 16;
/// Version byte at the start of the payload.
pub const PAYLOAD_VERSION: u8 = 1;
/// Length of a key id.
pub const KEY_ID_LEN: usize = 8;
/// Length of the XChaCha20-Poly1305 nonce.
pub const NONCE_LEN: usize = 24;
/// Length of the Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Length of the (fixed-size) payload.
pub const PAYLOAD_LEN: usize = 71;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of an X25519 public key.
pub const EPHEMERAL_LEN: usize = 32;
/// Most services one request names.
pub const MAX_SERVICES: usize = 8;
/// Length of the header in symmetric mode.
pub const SYMMETRIC_HEADER_LEN: usize = 5 + KEY_ID_LEN + NONCE_LEN;
/// Length of the header in public-key mode.
pub const PUBLIC_HEADER_LEN: usize = SYMMETRIC_HEADER_LEN + EPHEMERAL_LEN;
/// Length of every symmetric-mode packet.
pub const SYMMETRIC_PACKET_LEN: usize = SYMMETRIC_HEADER_LEN + PAYLOAD_LEN + TAG_LEN;
/// Length of every public-key-mode packet.
pub const PUBLIC_PACKET_LEN: usize = PUBLIC_HEADER_LEN + PAYLOAD_LEN + SIGNATURE_LEN + TAG_LEN;
/// Length of every version 2 public-key packet.
pub const PUBLIC_V2_PACKET_LEN: usize = PUBLIC_PACKET_LEN + MAC1_LEN;
/// Longest valid packet.
pub const MAX_PACKET_LEN: usize = PUBLIC_V2_PACKET_LEN;
/// Default time window: a packet's timestamp may differ from the server's
/// clock by this many seconds either way.
pub const DEFAULT_WINDOW_SECS: u64 = 60;

/// Bytes needed to read magic, version and mode.
const PREFIX_LEN: usize = 5;
const OFF_KEY_ID: usize = 5;
const OFF_NONCE: usize = OFF_KEY_ID + KEY_ID_LEN;
const OFF_EPHEMERAL: usize = OFF_NONCE + NONCE_LEN;

/// HKDF salt of every derivation.
const KDF_SALT: &[u8] = b"sesame-spa-v1";
/// HKDF info of a symmetric key's id.
const INFO_KEY_ID: &[u8] = b"sesame-spa-v1 key id";
/// HKDF info of a symmetric key's AEAD key.
const INFO_SYMMETRIC_AEAD: &[u8] = b"sesame-spa-v1 symmetric aead key";
/// HKDF info prefix of a public-key-mode AEAD key.
const INFO_PUBLIC_AEAD: &[u8] = b"sesame-spa-v1 x25519 aead key";
/// Hash prefix of an Ed25519 key's id.
const LABEL_ED25519_KEY_ID: &[u8] = b"sesame-spa-v1 ed25519 key id";
/// Hash prefix of the `mac1` key (version 2).
const LABEL_MAC1: &[u8] = b"sesame-spa-v2 mac1";
/// Prefix of the signed message.
const LABEL_SIGNATURE: &[u8] = b"sesame-spa-v1 signature";
const SIGNED_LEN: usize = LABEL_SIGNATURE.len() + 32 + PUBLIC_HEADER_LEN + PAYLOAD_LEN;

// Payload offsets.
const P_TIMESTAMP: usize = 1;
const P_NONCE: usize = 9;
const P_DURATION: usize = 25;
const P_ADDR_KIND: usize = 29;
const P_ADDR: usize = 30;
const P_COUNT: usize = 46;
const P_SERVICES: usize = 47;

/// Packet mode: how the AEAD key is obtained and how the user is identified.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// Per-user symmetric key (mode byte 0).
    Symmetric,
    /// X25519 to the server plus an Ed25519 signature (mode byte 1).
    Public,
}

impl Mode {
    /// The mode byte.
    pub const fn byte(self) -> u8 {
        match self {
            Mode::Symmetric => 0,
            Mode::Public => 1,
        }
    }

    /// The mode of a mode byte, if known.
    pub const fn from_byte(b: u8) -> Option<Mode> {
        match b {
            0 => Some(Mode::Symmetric),
            1 => Some(Mode::Public),
            _ => None,
        }
    }

    /// Header length (the AEAD's associated data).
    pub const fn header_len(self) -> usize {
        match self {
            Mode::Symmetric => SYMMETRIC_HEADER_LEN,
            Mode::Public => PUBLIC_HEADER_LEN,
        }
    }

    /// Exact packet length.
    pub const fn packet_len(self) -> usize {
        match self {
            Mode::Symmetric => SYMMETRIC_PACKET_LEN,
            Mode::Public => PUBLIC_PACKET_LEN,
        }
    }

    /// Lower-case name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Symmetric => "symmetric",
            Mode::Public => "public-key",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The 8-byte key id in the header: names the user's key without revealing
/// it, so the server finds the key with one table lookup. Derived one-way
/// from the key (see `docs/spa-protocol.md`).
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

/// A user's symmetric SPA key (32 bytes). Wiped when dropped; compared in
/// constant time; `Debug` shows only its key id.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SpaKey([u8; 32]);

impl SpaKey {
    /// Length in bytes.
    pub const LEN: usize = 32;

    /// A key from 32 random bytes (the caller's RNG; it should wipe its copy).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        SpaKey(*bytes)
    }

    /// The key bytes, for writing a key file.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key id that packets made with this key carry.
    pub fn key_id(&self) -> KeyId {
        self.derive().0
    }

    /// The key id and the AEAD key.
    fn derive(&self) -> (KeyId, Zeroizing<[u8; 32]>) {
        let hk = Hkdf::<Sha256>::new(Some(KDF_SALT), &self.0);
        let mut id = [0u8; KEY_ID_LEN];
        hk.expand(INFO_KEY_ID, &mut id)
            .expect("8 bytes is a valid HKDF length");
        let mut aead = Zeroizing::new([0u8; 32]);
        hk.expand(INFO_SYMMETRIC_AEAD, aead.as_mut())
            .expect("32 bytes is a valid HKDF length");
        (KeyId(id), aead)
    }
}

impl PartialEq for SpaKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for SpaKey {}

impl fmt::Debug for SpaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpaKey {{ id: {} }}", self.key_id())
    }
}

/// A client's Ed25519 identity (secret) key. Wiped when dropped; `Debug`
/// shows only its key id.
#[derive(Clone)]
pub struct IdentityKey(SigningKey);

impl IdentityKey {
    /// The key from its 32-byte seed (the caller's RNG; it should wipe its
    /// copy).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        IdentityKey(SigningKey::from_bytes(seed))
    }

    /// The seed, for writing a key file.
    pub fn to_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public half, for the server's list of users.
    pub fn public(&self) -> IdentityPublic {
        IdentityPublic(self.0.verifying_key())
    }
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityKey {{ id: {} }}", self.public().key_id())
    }
}

/// A user's Ed25519 public key, as the server lists it.
#[derive(Copy, Clone, PartialEq, Eq)]
pub struct IdentityPublic(VerifyingKey);

impl IdentityPublic {
    /// Parses a 32-byte Ed25519 public key. Invalid points and weak
    /// (small-order) keys are refused.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::InvalidIdentityKey)?;
        if key.is_weak() {
            return Err(KeyError::WeakIdentityKey);
        }
        Ok(IdentityPublic(key))
    }

    /// The 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The key id that this user's packets carry.
    pub fn key_id(&self) -> KeyId {
        let digest = Sha256::new()
            .chain_update(LABEL_ED25519_KEY_ID)
            .chain_update(self.0.as_bytes())
            .finalize();
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        KeyId(id)
    }
}

impl fmt::Debug for IdentityPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentityPublic(")?;
        write_hex(f, self.0.as_bytes())?;
        f.write_str(")")
    }
}

/// The server's X25519 key pair. Wiped when dropped; `Debug` shows only the
/// public half.
#[derive(Clone)]
pub struct ServerKey {
    secret: StaticSecret,
    public: X25519Public,
}

impl ServerKey {
    /// The key pair from 32 secret bytes (the caller's RNG; it should wipe
    /// its copy).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        let secret = StaticSecret::from(*bytes);
        let public = X25519Public::from(&secret);
        ServerKey { secret, public }
    }

    /// The secret bytes, for writing a key file.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_bytes())
    }

    /// The public half, for the clients.
    pub fn public(&self) -> ServerPublic {
        ServerPublic(self.public.to_bytes())
    }
}

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerKey {{ public: {:?} }}", self.public())
    }
}

/// The server's X25519 public key, as clients know it.
#[derive(Copy, Clone, PartialEq, Eq, Hash)]
pub struct ServerPublic(pub [u8; 32]);

impl ServerPublic {
    /// The 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }
}

impl fmt::Debug for ServerPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerPublic(")?;
        write_hex(f, &self.0)?;
        f.write_str(")")
    }
}

/// Why a key is unusable.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not a valid Ed25519 point.
    #[error("not a valid Ed25519 public key")]
    InvalidIdentityKey,
    /// A small-order Ed25519 key, which signs anything.
    #[error("weak (small-order) Ed25519 public key")]
    WeakIdentityKey,
}

/// What a request asks for: the plaintext of a packet.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Payload {
    /// When the client made the packet (unix seconds).
    pub timestamp: u64,
    /// 16 random bytes: the replay cache's key.
    pub nonce: [u8; 16],
    /// Services to open, at most [`MAX_SERVICES`], no duplicates, no port 0.
    /// Empty asks for every service the user may open.
    pub services: Vec<Service>,
    /// Seconds to keep them open; 0 asks for the user's maximum. The server
    /// caps it at the user's maximum.
    pub duration: u32,
    /// The address to open for, when the client is behind NAT and knows its
    /// public address. `None` (the default) means the packet's observed
    /// source. Servers refuse it unless allowed for the user.
    pub address: Option<IpAddr>,
}

/// Why a decrypted payload is malformed. Only an authenticated sender can
/// produce one of these, so they point at a client bug or version mismatch.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MalformedPayload {
    /// Not [`PAYLOAD_LEN`] bytes.
    #[error("payload is {0} bytes, expected 71")]
    Length(usize),
    /// Unknown payload version.
    #[error("unsupported payload version {0}")]
    Version(u8),
    /// Address kind other than 0, 4 or 6.
    #[error("unknown address kind {0}")]
    AddressKind(u8),
    /// Unspecified, multicast or broadcast address.
    #[error("unusable address {0}")]
    Address(IpAddr),
    /// Non-zero bytes where zeros are required.
    #[error("non-zero padding")]
    Padding,
    /// More than [`MAX_SERVICES`] services.
    #[error("{0} services, at most 8 allowed")]
    ServiceCount(u8),
    /// Protocol number other than 6 (TCP) or 17 (UDP).
    #[error("unknown protocol number {0}")]
    Proto(u8),
    /// Port 0.
    #[error("service port 0")]
    Port,
    /// A service named twice.
    #[error("service {0} named twice")]
    DuplicateService(Service),
}

impl Payload {
    /// The payload's 71-byte encoding; see `docs/spa-protocol.md`.
    pub fn encode(&self) -> Result<[u8; PAYLOAD_LEN], EncodeError> {
        if self.services.len() > MAX_SERVICES {
            return Err(EncodeError::TooManyServices(self.services.len()));
        }
        let mut out = [0u8; PAYLOAD_LEN];
        out[0] = PAYLOAD_VERSION;
        out[P_TIMESTAMP..P_NONCE].copy_from_slice(&self.timestamp.to_be_bytes());
        out[P_NONCE..P_DURATION].copy_from_slice(&self.nonce);
        out[P_DURATION..P_ADDR_KIND].copy_from_slice(&self.duration.to_be_bytes());
        match self.address {
            None => {}
            Some(addr) if !usable_address(addr) => return Err(EncodeError::BadAddress(addr)),
            Some(IpAddr::V4(a)) => {
                out[P_ADDR_KIND] = 4;
                out[P_ADDR..P_ADDR + 4].copy_from_slice(&a.octets());
            }
            Some(IpAddr::V6(a)) => {
                out[P_ADDR_KIND] = 6;
                out[P_ADDR..P_COUNT].copy_from_slice(&a.octets());
            }
        }
        out[P_COUNT] = self.services.len() as u8;
        for (i, s) in self.services.iter().enumerate() {
            if s.port == 0 {
                return Err(EncodeError::ZeroPort);
            }
            if self.services[..i].contains(s) {
                return Err(EncodeError::DuplicateService(*s));
            }
            let at = P_SERVICES + 3 * i;
            out[at] = s.proto.number();
            out[at + 1..at + 3].copy_from_slice(&s.port.to_be_bytes());
        }
        Ok(out)
    }

    /// Parses a 71-byte payload, strictly: every reserved byte must be zero,
    /// so each payload has exactly one encoding.
    pub fn decode(bytes: &[u8]) -> Result<Payload, MalformedPayload> {
        let b: &[u8; PAYLOAD_LEN] = bytes
            .try_into()
            .map_err(|_| MalformedPayload::Length(bytes.len()))?;
        if b[0] != PAYLOAD_VERSION {
            return Err(MalformedPayload::Version(b[0]));
        }
        let timestamp = u64::from_be_bytes(b[P_TIMESTAMP..P_NONCE].try_into().expect("8"));
        let nonce: [u8; 16] = b[P_NONCE..P_DURATION].try_into().expect("16");
        let duration = u32::from_be_bytes(b[P_DURATION..P_ADDR_KIND].try_into().expect("4"));
        let addr = &b[P_ADDR..P_COUNT];
        let address = match b[P_ADDR_KIND] {
            0 => {
                if addr.iter().any(|&x| x != 0) {
                    return Err(MalformedPayload::Padding);
                }
                None
            }
            4 => {
                if addr[4..].iter().any(|&x| x != 0) {
                    return Err(MalformedPayload::Padding);
                }
                let o: [u8; 4] = addr[..4].try_into().expect("4");
                Some(IpAddr::V4(Ipv4Addr::from(o)))
            }
            6 => {
                let o: [u8; 16] = addr.try_into().expect("16");
                Some(IpAddr::V6(Ipv6Addr::from(o)))
            }
            k => return Err(MalformedPayload::AddressKind(k)),
        };
        if let Some(a) = address {
            if !usable_address(a) {
                return Err(MalformedPayload::Address(a));
            }
        }
        let count = b[P_COUNT];
        if usize::from(count) > MAX_SERVICES {
            return Err(MalformedPayload::ServiceCount(count));
        }
        let mut services = Vec::with_capacity(usize::from(count));
        for (i, slot) in b[P_SERVICES..].chunks_exact(3).enumerate() {
            if i >= usize::from(count) {
                if slot != [0, 0, 0] {
                    return Err(MalformedPayload::Padding);
                }
                continue;
            }
            let proto = match slot[0] {
                6 => Proto::Tcp,
                17 => Proto::Udp,
                n => return Err(MalformedPayload::Proto(n)),
            };
            let port = u16::from_be_bytes([slot[1], slot[2]]);
            if port == 0 {
                return Err(MalformedPayload::Port);
            }
            let service = Service { proto, port };
            if services.contains(&service) {
                return Err(MalformedPayload::DuplicateService(service));
            }
            services.push(service);
        }
        Ok(Payload {
            timestamp,
            nonce,
            services,
            duration,
            address,
        })
    }
}

/// False for addresses no grant should ever go to, wherever the server
/// runs: unspecified, multicast, broadcast, loopback and link-local (an
/// IPv4-mapped IPv6 address is judged as IPv4). The host's own addresses
/// are the daemon's to refuse: only it knows them.
pub fn usable_address(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => {
            !(a.is_unspecified()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_loopback()
                || a.is_link_local()
                || a.octets()[0] == 0)
        }
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => usable_address(IpAddr::V4(v4)),
            None => {
                !(a.is_unspecified()
                    || a.is_multicast()
                    || a.is_loopback()
                    || a.is_unicast_link_local())
            }
        },
    }
}

/// Why a packet could not be made.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// More than [`MAX_SERVICES`] services.
    #[error("{0} services requested; one packet carries at most 8")]
    TooManyServices(usize),
    /// A service with port 0.
    #[error("service port 0")]
    ZeroPort,
    /// A service listed twice.
    #[error("service {0} listed twice")]
    DuplicateService(Service),
    /// An explicit address no grant may go to (see [`usable_address`]).
    #[error(
        "{0} cannot be granted access (unspecified, multicast, broadcast, loopback or link-local)"
    )]
    BadAddress(IpAddr),
    /// The server public key is a small-order point (no shared secret).
    #[error("the server public key is invalid (small-order point)")]
    WeakServerKey,
}

fn header_prefix(
    out: &mut Vec<u8>,
    version: u8,
    mode: Mode,
    key_id: KeyId,
    nonce: &[u8; NONCE_LEN],
) {
    out.extend_from_slice(&MAGIC);
    out.push(version);
    out.push(mode.byte());
    out.extend_from_slice(&key_id.0);
    out.extend_from_slice(nonce);
}

fn seal(out: &mut Vec<u8>, header_len: usize, key: &[u8; 32], nonce: &[u8; NONCE_LEN]) {
    let cipher = XChaCha20Poly1305::new(key.into());
    let (header, body) = out.split_at_mut(header_len);
    let tag = cipher
        .encrypt_in_place_detached(XNonce::from_slice(nonce), header, body)
        .expect("plaintext length is fixed and far below the AEAD limit");
    out.extend_from_slice(&tag);
}

/// Makes a symmetric-mode packet ([`SYMMETRIC_PACKET_LEN`] bytes). `nonce`
/// must be fresh random bytes for every packet.
pub fn encode_symmetric(
    key: &SpaKey,
    payload: &Payload,
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>, EncodeError> {
    let plaintext = Zeroizing::new(payload.encode()?);
    let (key_id, aead_key) = key.derive();
    Ok(seal_symmetric(&aead_key, key_id, &plaintext, &nonce))
}

/// The symmetric packet of an already encoded payload under an explicit key
/// id (tests craft wrong-user packets with it).
fn seal_symmetric(
    aead_key: &[u8; 32],
    key_id: KeyId,
    plaintext: &[u8; PAYLOAD_LEN],
    nonce: &[u8; NONCE_LEN],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(SYMMETRIC_PACKET_LEN);
    header_prefix(&mut out, VERSION, Mode::Symmetric, key_id, nonce);
    out.extend_from_slice(plaintext);
    seal(&mut out, SYMMETRIC_HEADER_LEN, aead_key, nonce);
    debug_assert_eq!(out.len(), SYMMETRIC_PACKET_LEN);
    out
}

/// Makes a public-key-mode packet ([`PUBLIC_PACKET_LEN`] bytes) from
/// `identity` to the server `server`. `ephemeral_secret` and `nonce` must be
/// fresh random bytes for every packet.
pub fn encode_public(
    identity: &IdentityKey,
    server: &ServerPublic,
    payload: &Payload,
    ephemeral_secret: &[u8; 32],
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>, EncodeError> {
    encode_public_version(
        VERSION_2,
        identity,
        server,
        payload,
        ephemeral_secret,
        nonce,
    )
}

/// A version 1 public-key packet (no `mac1`), for servers that predate
/// version 2. A version 2 server accepts it only where configured to.
pub fn encode_public_v1(
    identity: &IdentityKey,
    server: &ServerPublic,
    payload: &Payload,
    ephemeral_secret: &[u8; 32],
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>, EncodeError> {
    encode_public_version(VERSION, identity, server, payload, ephemeral_secret, nonce)
}

fn encode_public_version(
    version: u8,
    identity: &IdentityKey,
    server: &ServerPublic,
    payload: &Payload,
    ephemeral_secret: &[u8; 32],
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>, EncodeError> {
    let plaintext = Zeroizing::new(payload.encode()?);
    seal_public(
        version,
        identity,
        identity.public().key_id(),
        server,
        &plaintext,
        ephemeral_secret,
        &nonce,
    )
}

/// The key of `mac1`: `SHA-256("sesame-spa-v2 mac1" || S_pub)`. Whoever
/// knows the server's public key can compute it; a blind attacker cannot,
/// and is refused before any public-key work.
pub fn mac1_key(server: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(LABEL_MAC1);
    h.update(server);
    h.finalize().into()
}

/// `mac1` of `body` (everything before it): the first 16 bytes of
/// HMAC-SHA-256 under [`mac1_key`].
pub fn mac1(key: &[u8; 32], body: &[u8]) -> [u8; MAC1_LEN] {
    use hmac::Mac;
    let mut m = <hmac::Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    m.update(body);
    let full = m.finalize().into_bytes();
    let mut out = [0u8; MAC1_LEN];
    out.copy_from_slice(&full[..MAC1_LEN]);
    out
}

/// The public-key packet of an already encoded payload under an explicit
/// key id (tests craft wrong-user packets with it).
fn seal_public(
    version: u8,
    identity: &IdentityKey,
    key_id: KeyId,
    server: &ServerPublic,
    plaintext: &[u8; PAYLOAD_LEN],
    ephemeral_secret: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
) -> Result<Vec<u8>, EncodeError> {
    let ephemeral = StaticSecret::from(*ephemeral_secret);
    let ephemeral_public = X25519Public::from(&ephemeral);
    let shared = ephemeral.diffie_hellman(&X25519Public::from(server.0));
    if !shared.was_contributory() {
        return Err(EncodeError::WeakServerKey);
    }
    let aead_key = public_aead_key(shared.as_bytes(), ephemeral_public.as_bytes(), &server.0);
    let mut out = Vec::with_capacity(PUBLIC_PACKET_LEN);
    header_prefix(&mut out, version, Mode::Public, key_id, nonce);
    out.extend_from_slice(ephemeral_public.as_bytes());
    let signed = signed_message(&server.0, &out, plaintext);
    let signature = identity.0.sign(&signed);
    out.extend_from_slice(plaintext);
    out.extend_from_slice(&signature.to_bytes());
    seal(&mut out, PUBLIC_HEADER_LEN, &aead_key, nonce);
    debug_assert_eq!(out.len(), PUBLIC_PACKET_LEN);
    if version == VERSION_2 {
        let tag = mac1(&mac1_key(&server.0), &out);
        out.extend_from_slice(&tag);
    }
    Ok(out)
}

/// HKDF-SHA-256(salt, shared, info || ephemeral public || server public).
fn public_aead_key(
    shared: &[u8; 32],
    ephemeral: &[u8; 32],
    server: &[u8; 32],
) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(KDF_SALT), shared);
    let mut key = Zeroizing::new([0u8; 32]);
    hk.expand_multi_info(&[INFO_PUBLIC_AEAD, ephemeral, server], key.as_mut())
        .expect("32 bytes is a valid HKDF length");
    key
}

/// label || server public || header || payload.
fn signed_message(server: &[u8; 32], header: &[u8], payload: &[u8]) -> [u8; SIGNED_LEN] {
    let mut m = [0u8; SIGNED_LEN];
    let parts: [&[u8]; 4] = [LABEL_SIGNATURE, server, header, payload];
    let mut at = 0;
    for p in parts {
        m[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    debug_assert_eq!(at, SIGNED_LEN);
    m
}

/// Why a packet was refused, in the order the checks run. Each variant is a
/// distinct log reason; none carries secret material. `user` is the
/// configured name of the key the packet's key id names; before the tag or
/// signature check passes that is only what the packet *claims*.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpaError {
    /// Longer than any valid packet (checked first), or longer than the
    /// exact length of its mode.
    #[error("oversized: {len} bytes, at most {max}")]
    Oversized {
        /// Bytes received.
        len: usize,
        /// Length expected.
        max: usize,
    },
    /// Too short to hold the header prefix, or shorter than the exact length
    /// of its mode.
    #[error("truncated: {len} bytes, expected {expected}")]
    Truncated {
        /// Bytes received.
        len: usize,
        /// Length expected.
        expected: usize,
    },
    /// Does not start with `SSM`: not a Sesame packet.
    #[error("not an SPA packet (bad magic)")]
    BadMagic,
    /// A protocol version this server does not speak.
    #[error("unsupported SPA version {0}")]
    UnsupportedVersion(u8),
    /// A version 1 public-key packet, refused: version 1 lacks `mac1`, so
    /// it costs an X25519 before it can be refused. Accepted only where the
    /// door allows legacy clients.
    #[error("version 1 public-key packet refused (no mac1; update the client, or set spa_accept_v1 on the door)")]
    LegacyPublic,
    /// A version 2 packet whose `mac1` is wrong: not made with this server's
    /// public key. Refused before any public-key work.
    #[error("bad mac1: not made for this server's public key")]
    BadMac1,
    /// A mode byte other than 0 or 1.
    #[error("unsupported SPA mode {0}")]
    UnsupportedMode(u8),
    /// No user has this key id in this mode: a key this server does not know
    /// (wrong key, revoked user, another server's key) or a corrupted id.
    /// Rejected before any cryptography.
    #[error("unknown {mode} key id {key_id} (wrong key or unknown user)")]
    UnknownKey {
        /// The packet's mode.
        mode: Mode,
        /// The key id the packet carries.
        key_id: KeyId,
    },
    /// Public-key mode: the ephemeral key is a small-order point. Only a
    /// crafted packet does this.
    #[error("forged: invalid ephemeral key in a packet claiming to be from {user}")]
    BadEphemeral {
        /// Claimed user.
        user: Arc<str>,
    },
    /// The AEAD tag does not verify under the key its key id names: the
    /// packet was modified in transit (any header or ciphertext byte), or
    /// forged by someone who knows the key id but not the key.
    #[error("tampered or forged: authentication tag invalid for {user}'s key")]
    BadTag {
        /// Claimed user.
        user: Arc<str>,
    },
    /// Public-key mode: the packet decrypts, but the signature is not the
    /// user's. Whoever made it knows the server's public key but not the
    /// user's identity key: a forgery or a wrong identity key.
    #[error("forged: signature invalid for {user}'s identity key")]
    BadSignature {
        /// Claimed user.
        user: Arc<str>,
    },
    /// Authentic, but the payload does not parse (client bug or version
    /// mismatch).
    #[error("malformed payload from {user}: {reason}")]
    Malformed {
        /// Authenticated user.
        user: Arc<str>,
        /// What is wrong.
        reason: MalformedPayload,
    },
    /// Authentic, but made more than the window ago (an old capture, or the
    /// client's clock is behind).
    #[error(
        "stale: packet from {user} made at {timestamp}, {age} s before now (window {window} s)"
    )]
    Stale {
        /// Authenticated user.
        user: Arc<str>,
        /// The packet's timestamp.
        timestamp: u64,
        /// Seconds before now.
        age: u64,
        /// The window.
        window: u64,
    },
    /// Authentic, but dated more than the window ahead (the client's clock
    /// is ahead).
    #[error(
        "future: packet from {user} dated {timestamp}, {ahead} s after now (window {window} s)"
    )]
    Future {
        /// Authenticated user.
        user: Arc<str>,
        /// The packet's timestamp.
        timestamp: u64,
        /// Seconds after now.
        ahead: u64,
        /// The window.
        window: u64,
    },
    /// Authentic, but asks for a service this user may not open (wrong user
    /// for this door, or a client profile out of date).
    #[error("{user} may not open {service}")]
    ServiceNotAllowed {
        /// Authenticated user.
        user: Arc<str>,
        /// The first refused service.
        service: Service,
    },
    /// Authentic, but names an explicit address and this user may not.
    #[error("{user} may not name an explicit address ({address})")]
    AddressNotAllowed {
        /// Authenticated user.
        user: Arc<str>,
        /// The address named.
        address: IpAddr,
    },
    /// Authentic and fresh, but already used: a replay.
    #[error("replay: packet from {user} was already used")]
    Replay {
        /// Authenticated user.
        user: Arc<str>,
    },
    /// Authentic and fresh, but the replay cache cannot vouch for it (it
    /// restarted without its state, the clock stepped, or it was full), so
    /// it is refused for safety.
    #[error("refused for safety: replay cache cannot vouch for packet from {user}: {reason}")]
    ReplayUnverifiable {
        /// Authenticated user.
        user: Arc<str>,
        /// The cache's reason.
        reason: ReplayError,
    },
}

impl SpaError {
    /// A short stable name for the reason, for structured logs and counters.
    pub fn reason(&self) -> &'static str {
        match self {
            SpaError::Oversized { .. } => "oversized",
            SpaError::Truncated { .. } => "truncated",
            SpaError::BadMagic => "bad_magic",
            SpaError::UnsupportedVersion(_) => "unsupported_version",
            SpaError::LegacyPublic => "v1_public_refused",
            SpaError::BadMac1 => "bad_mac1",
            SpaError::UnsupportedMode(_) => "unsupported_mode",
            SpaError::UnknownKey { .. } => "unknown_key",
            SpaError::BadEphemeral { .. } => "bad_ephemeral",
            SpaError::BadTag { .. } => "bad_tag",
            SpaError::BadSignature { .. } => "bad_signature",
            SpaError::Malformed { .. } => "malformed",
            SpaError::Stale { .. } => "stale",
            SpaError::Future { .. } => "future",
            SpaError::ServiceNotAllowed { .. } => "service_not_allowed",
            SpaError::AddressNotAllowed { .. } => "address_not_allowed",
            SpaError::Replay { .. } => "replay",
            SpaError::ReplayUnverifiable { .. } => "replay_unverifiable",
        }
    }
}

/// Why a user could not be added to a [`Verifier`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpaConfigError {
    /// Two credentials have the same key id (the same key listed twice, or
    /// a 64-bit collision).
    #[error("SPA user {user}: key id {key_id} is already used by {other}")]
    DuplicateKey {
        /// The user being added.
        user: String,
        /// The user holding that key id.
        other: String,
        /// The key id.
        key_id: KeyId,
    },
    /// A public-key user, but the verifier has no server key.
    #[error("SPA user {0} has a public key but the door has no server key")]
    NoServerKey(String),
    /// The policy allows no service.
    #[error("SPA user {0} may open no service")]
    NoServices(String),
    /// The policy allows a zero duration.
    #[error("SPA user {0} has a maximum duration of zero")]
    ZeroDuration(String),
}

/// How a user proves who they are.
#[derive(Clone, Debug)]
pub enum Credential {
    /// A shared symmetric key.
    Symmetric(SpaKey),
    /// An Ed25519 public key (the user holds the secret half).
    Public(IdentityPublic),
}

impl Credential {
    /// The key id packets from this credential carry.
    pub fn key_id(&self) -> KeyId {
        match self {
            Credential::Symmetric(k) => k.key_id(),
            Credential::Public(k) => k.key_id(),
        }
    }

    /// The mode packets from this credential use.
    pub fn mode(&self) -> Mode {
        match self {
            Credential::Symmetric(_) => Mode::Symmetric,
            Credential::Public(_) => Mode::Public,
        }
    }
}

/// What a user may open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserPolicy {
    /// Services the user may open (at least one).
    pub services: Vec<Service>,
    /// Longest grant, in seconds (typically the door's `open_for`).
    pub max_duration: u32,
    /// Whether the user's packets may name an explicit address (for NAT).
    /// Off by default: grants go to the packet's observed source.
    pub allow_address: bool,
}

enum Check {
    /// The AEAD, keyed once with the derived key (wiped on drop).
    Symmetric(XChaCha20Poly1305),
    Public(VerifyingKey),
}

struct UserEntry {
    name: Arc<str>,
    check: Check,
    policy: UserPolicy,
}

/// A request that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The user's configured name.
    pub user: Arc<str>,
    /// The packet's mode.
    pub mode: Mode,
    /// The key id of the user's credential.
    pub key_id: KeyId,
    /// The decrypted request.
    pub payload: Payload,
    /// Services to open: those requested, or all the user may open when
    /// none were named.
    pub services: Vec<Service>,
    /// How long to open them: the request capped at the user's maximum (the
    /// maximum when the request says 0).
    pub duration: Duration,
    /// The replay cache key of this packet.
    pub replay_key: ReplayKey,
    /// The last second at which this packet passes the time check: its
    /// replay cache expiry.
    pub replay_expires: u64,
}

/// The server side: the users of one SPA door and their policies.
///
/// Users are found by key id with one hash lookup (hashed with a fixed seed:
/// the table is fixed at configuration time, so packets cannot make it
/// degrade). A user may hold several credentials, one per device, each
/// added with [`Verifier::add_user`] under the same name.
pub struct Verifier {
    window: u64,
    server: Option<ServerKey>,
    /// [`mac1_key`] of the server's public key.
    mac1_key: Option<[u8; 32]>,
    /// Whether version 1 public-key packets (no `mac1`) are accepted.
    accept_v1_public: bool,
    users: Vec<UserEntry>,
    index: HashMap<(Mode, KeyId), usize, SeededState>,
}

/// What verifying a packet that passed [`Verifier::precheck`] will cost.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Cost {
    /// Symmetric mode: an AEAD over ~110 bytes (about a microsecond).
    Cheap,
    /// Public-key mode: an X25519 and an Ed25519 verification (tens of
    /// microseconds): worth a per-source budget.
    PublicKey,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("window", &self.window)
            .field("server", &self.server)
            .field("credentials", &self.users.len())
            .finish()
    }
}

impl Verifier {
    /// A verifier with no users. `window_secs` is the accepted clock
    /// difference either way ([`DEFAULT_WINDOW_SECS`] by default);
    /// `server` is needed for public-key users.
    pub fn new(window_secs: u64, server: Option<ServerKey>) -> Self {
        let mac1_key = server.as_ref().map(|s| mac1_key(&s.public().0));
        Verifier {
            window: window_secs,
            server,
            mac1_key,
            accept_v1_public: false,
            users: Vec::new(),
            index: HashMap::with_hasher(SeededState::new([0x5e5a_3e00, 0x5ba1])),
        }
    }

    /// Accepts (or not, the default) version 1 public-key packets, which
    /// lack `mac1` and so cost an X25519 before they can be refused. For
    /// clients that predate version 2.
    pub fn accept_v1_public(&mut self, accept: bool) {
        self.accept_v1_public = accept;
    }

    /// The time window in seconds.
    pub fn window_secs(&self) -> u64 {
        self.window
    }

    /// The server's public key, if any.
    pub fn server_public(&self) -> Option<ServerPublic> {
        self.server.as_ref().map(ServerKey::public)
    }

    /// Number of credentials.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when no credential is configured.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Adds a credential for user `name`; returns its key id.
    pub fn add_user(
        &mut self,
        name: &str,
        credential: Credential,
        policy: UserPolicy,
    ) -> Result<KeyId, SpaConfigError> {
        if policy.services.is_empty() {
            return Err(SpaConfigError::NoServices(name.to_string()));
        }
        if policy.max_duration == 0 {
            return Err(SpaConfigError::ZeroDuration(name.to_string()));
        }
        let mode = credential.mode();
        let (key_id, check) = match &credential {
            Credential::Symmetric(key) => {
                let (id, aead) = key.derive();
                let cipher = XChaCha20Poly1305::new(aead.as_ref().into());
                (id, Check::Symmetric(cipher))
            }
            Credential::Public(key) => {
                if self.server.is_none() {
                    return Err(SpaConfigError::NoServerKey(name.to_string()));
                }
                (key.key_id(), Check::Public(key.0))
            }
        };
        if let Some(&other) = self.index.get(&(mode, key_id)) {
            return Err(SpaConfigError::DuplicateKey {
                user: name.to_string(),
                other: self.users[other].name.to_string(),
                key_id,
            });
        }
        let name: Arc<str> = self
            .users
            .iter()
            .find(|u| &*u.name == name)
            .map_or_else(|| Arc::from(name), |u| u.name.clone());
        self.index.insert((mode, key_id), self.users.len());
        self.users.push(UserEntry {
            name,
            check,
            policy,
        });
        Ok(key_id)
    }

    /// The checks that need no secret and cost about a microsecond: length,
    /// magic, version, mode, `mac1` (version 2) and the key id. A daemon
    /// runs this first and spends a per-source budget on what it returns as
    /// [`Cost::PublicKey`] before calling [`Verifier::verify`].
    pub fn precheck(&self, datagram: &[u8]) -> Result<Cost, SpaError> {
        let (mode, ..) = self.prelude(datagram)?;
        Ok(match mode {
            Mode::Symmetric => Cost::Cheap,
            Mode::Public => Cost::PublicKey,
        })
    }

    /// Steps 1-2 of the check order: returns the mode, the key id, the
    /// user's index and the packet without `mac1`.
    fn prelude<'a>(&self, datagram: &'a [u8]) -> Result<(Mode, KeyId, usize, &'a [u8]), SpaError> {
        // 1. Length, magic, version, mode: no key, no cryptography.
        let len = datagram.len();
        if len > MAX_PACKET_LEN {
            return Err(SpaError::Oversized {
                len,
                max: MAX_PACKET_LEN,
            });
        }
        if len < PREFIX_LEN {
            return Err(SpaError::Truncated {
                len,
                expected: PREFIX_LEN,
            });
        }
        if datagram[..3] != MAGIC {
            return Err(SpaError::BadMagic);
        }
        let version = datagram[3];
        let mode = Mode::from_byte(datagram[4]).ok_or(SpaError::UnsupportedMode(datagram[4]))?;
        let expected = match (version, mode) {
            (VERSION, Mode::Symmetric) => SYMMETRIC_PACKET_LEN,
            (VERSION, Mode::Public) if self.accept_v1_public => PUBLIC_PACKET_LEN,
            (VERSION, Mode::Public) => return Err(SpaError::LegacyPublic),
            (VERSION_2, Mode::Public) => PUBLIC_V2_PACKET_LEN,
            (v, _) => return Err(SpaError::UnsupportedVersion(v)),
        };
        if len < expected {
            return Err(SpaError::Truncated { len, expected });
        }
        if len > expected {
            return Err(SpaError::Oversized { len, max: expected });
        }
        // 2. mac1 (version 2): one HMAC, before anything that costs more.
        let body = if version == VERSION_2 {
            let (body, tag) = datagram.split_at(PUBLIC_PACKET_LEN);
            let key = self.mac1_key.as_ref().ok_or(SpaError::BadMac1)?;
            if !bool::from(mac1(key, body).ct_eq(tag)) {
                return Err(SpaError::BadMac1);
            }
            body
        } else {
            datagram
        };
        // 3. Key id: one lookup, before any cryptography.
        let key_id = KeyId(body[OFF_KEY_ID..OFF_NONCE].try_into().expect("8 bytes"));
        let &index = self
            .index
            .get(&(mode, key_id))
            .ok_or(SpaError::UnknownKey { mode, key_id })?;
        Ok((mode, key_id, index, body))
    }

    /// Runs every check but the replay check on `datagram` (the UDP payload)
    /// received at `now_unix` (unix seconds). See [`SpaError`] for the order.
    /// Use [`Verifier::verify_and_record`] to open doors.
    pub fn verify(&self, datagram: &[u8], now_unix: u64) -> Result<Verified, SpaError> {
        let (mode, key_id, index, datagram) = self.prelude(datagram)?;
        let user = &self.users[index];
        let claimed = || user.name.clone();

        // 3. AEAD tag, then decryption.
        let header_len = mode.header_len();
        let (header, rest) = datagram.split_at(header_len);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        let nonce = XNonce::from_slice(&header[OFF_NONCE..OFF_EPHEMERAL]);
        let tag = Tag::from_slice(tag);
        let mut buf = [0u8; PAYLOAD_LEN + SIGNATURE_LEN];
        let plaintext = &mut buf[..ciphertext.len()];
        plaintext.copy_from_slice(ciphertext);
        match &user.check {
            Check::Symmetric(cipher) => cipher
                .decrypt_in_place_detached(nonce, header, plaintext, tag)
                .map_err(|_| SpaError::BadTag { user: claimed() })?,
            Check::Public(identity) => {
                let server = self
                    .server
                    .as_ref()
                    .expect("public-key users exist only with a server key");
                let ephemeral: [u8; 32] = header[OFF_EPHEMERAL..PUBLIC_HEADER_LEN]
                    .try_into()
                    .expect("32 bytes");
                let shared = server.secret.diffie_hellman(&X25519Public::from(ephemeral));
                if !shared.was_contributory() {
                    return Err(SpaError::BadEphemeral { user: claimed() });
                }
                let key = public_aead_key(shared.as_bytes(), &ephemeral, server.public.as_bytes());
                XChaCha20Poly1305::new(key.as_ref().into())
                    .decrypt_in_place_detached(nonce, header, plaintext, tag)
                    .map_err(|_| SpaError::BadTag { user: claimed() })?;
                // 4. Signature (before parsing, so that every later error
                //    concerns an authenticated sender).
                let signature =
                    Signature::from_bytes(plaintext[PAYLOAD_LEN..].try_into().expect("64 bytes"));
                let signed =
                    signed_message(server.public.as_bytes(), header, &plaintext[..PAYLOAD_LEN]);
                identity
                    .verify_strict(&signed, &signature)
                    .map_err(|_| SpaError::BadSignature { user: claimed() })?;
            }
        }

        // 5. Payload.
        let payload =
            Payload::decode(&plaintext[..PAYLOAD_LEN]).map_err(|reason| SpaError::Malformed {
                user: claimed(),
                reason,
            })?;

        // 6. Time window.
        let window = self.window;
        if payload.timestamp < now_unix.saturating_sub(window) {
            return Err(SpaError::Stale {
                user: claimed(),
                timestamp: payload.timestamp,
                age: now_unix - payload.timestamp,
                window,
            });
        }
        if payload.timestamp > now_unix.saturating_add(window) {
            return Err(SpaError::Future {
                user: claimed(),
                timestamp: payload.timestamp,
                ahead: payload.timestamp - now_unix,
                window,
            });
        }

        // 7. Policy.
        let policy = &user.policy;
        if let Some(&service) = payload
            .services
            .iter()
            .find(|s| !policy.services.contains(s))
        {
            return Err(SpaError::ServiceNotAllowed {
                user: claimed(),
                service,
            });
        }
        if let Some(address) = payload.address {
            if !policy.allow_address {
                return Err(SpaError::AddressNotAllowed {
                    user: claimed(),
                    address,
                });
            }
        }
        let services = if payload.services.is_empty() {
            policy.services.clone()
        } else {
            payload.services.clone()
        };
        let seconds = match payload.duration {
            0 => policy.max_duration,
            d => d.min(policy.max_duration),
        };
        Ok(Verified {
            user: claimed(),
            mode,
            key_id,
            services,
            duration: Duration::from_secs(u64::from(seconds)),
            // Each key gets its own share of the replay cache.
            replay_key: ReplayKey::spa(payload.nonce)
                .with_owner(ReplayKey::owner_id(b"spa-key", &key_id.0)),
            replay_expires: payload.timestamp.saturating_add(window),
            payload,
        })
    }

    /// [`Verifier::verify`], then the replay check: records the packet in
    /// `cache`, or refuses it as [`SpaError::Replay`] /
    /// [`SpaError::ReplayUnverifiable`]. This is the call that decides
    /// whether a door opens.
    pub fn verify_and_record(
        &self,
        datagram: &[u8],
        now_unix: u64,
        cache: &mut ReplayCache,
    ) -> Result<Verified, SpaError> {
        let verified = self.verify(datagram, now_unix)?;
        match cache.check_and_insert(verified.replay_key, verified.replay_expires, now_unix) {
            Ok(()) => Ok(verified),
            Err(ReplayError::Replayed) => Err(SpaError::Replay {
                user: verified.user,
            }),
            Err(reason) => Err(SpaError::ReplayUnverifiable {
                user: verified.user,
                reason,
            }),
        }
    }

    /// Number of keys (users' credentials) this verifier knows: what the
    /// replay cache shares itself among ([`ReplayCache::set_owners`]).
    pub fn key_count(&self) -> usize {
        self.users.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn tcp(port: u16) -> Service {
        Service {
            proto: Proto::Tcp,
            port,
        }
    }

    fn udp(port: u16) -> Service {
        Service {
            proto: Proto::Udp,
            port,
        }
    }

    fn seq_bytes<const N: usize>(start: u8) -> [u8; N] {
        std::array::from_fn(|i| start.wrapping_add(i as u8))
    }

    fn alice_key() -> SpaKey {
        SpaKey::from_bytes(&seq_bytes(0x00))
    }

    fn bob_key() -> SpaKey {
        SpaKey::from_bytes(&[0x42; 32])
    }

    fn carol_identity() -> IdentityKey {
        IdentityKey::from_seed(&seq_bytes(0x20))
    }

    fn dave_identity() -> IdentityKey {
        IdentityKey::from_seed(&[0x77; 32])
    }

    fn server_key() -> ServerKey {
        ServerKey::from_bytes(&seq_bytes(0x40))
    }

    fn payload() -> Payload {
        Payload {
            timestamp: NOW,
            nonce: seq_bytes(0x80),
            services: vec![tcp(22)],
            duration: 30,
            address: None,
        }
    }

    fn policy() -> UserPolicy {
        UserPolicy {
            services: vec![tcp(22), udp(51820)],
            max_duration: 60,
            allow_address: false,
        }
    }

    /// alice: symmetric; bob: symmetric with explicit addresses allowed;
    /// carol: public key. dave is unknown to the server.
    fn verifier() -> Verifier {
        let mut v = Verifier::new(DEFAULT_WINDOW_SECS, Some(server_key()));
        v.accept_v1_public(true);
        v.add_user("alice", Credential::Symmetric(alice_key()), policy())
            .unwrap();
        let mut bob = policy();
        bob.allow_address = true;
        bob.services = vec![tcp(443)];
        v.add_user("bob", Credential::Symmetric(bob_key()), bob)
            .unwrap();
        v.add_user(
            "carol",
            Credential::Public(carol_identity().public()),
            policy(),
        )
        .unwrap();
        v
    }

    fn sym(p: &Payload) -> Vec<u8> {
        encode_symmetric(&alice_key(), p, seq_bytes(0xc0)).unwrap()
    }

    /// A version 1 public-key packet: the tests of the checks behind `mac1`
    /// use it (the verifier accepts v1); version 2 has tests of its own.
    fn public(p: &Payload) -> Vec<u8> {
        encode_public_v1(
            &carol_identity(),
            &server_key().public(),
            p,
            &seq_bytes(0x60),
            seq_bytes(0xc0),
        )
        .unwrap()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn user(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    // Test vectors: fixed keys, nonces and payload give fixed bytes, so the
    // wire format cannot drift unnoticed. Cross-checked against an
    // independent implementation of docs/spa-protocol.md.
    const SYMMETRIC_KEY_ID: &str = "0ae0d2a67a148471";
    const SYMMETRIC_VECTOR: &str = concat!(
        "53534d01000ae0d2a67a148471c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2",
        "d3d4d5d6d718268764f9b99cbaf5ad241a63392df5aef961d0d7e0adb52b3258",
        "96d273ce945a2c13c8c7ee06bde85082fe7daef89190a9aa2881f39ec4aac5d2",
        "90eeeeb73f4b8d308d73dbf03a3a729423c32c1fe0beaaa91f63b714",
    );
    const PUBLIC_KEY_ID: &str = "31f14ed720794cad";
    const PUBLIC_VECTOR: &str = concat!(
        "53534d010131f14ed720794cadc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2",
        "d3d4d5d6d7675dd574ed7789310b3d2e7681f3790b466c773b1521fecf365779",
        "58371ea52f638049aef1886829d041a33e9f885837dc479cdc484b11bb1c30b6",
        "38358d56872449e062d4e9cfec70e073b0b831f27da047842a2c26536492162a",
        "8e3e795a1527e9d3fd0bdc008ceac2eae971a06f289bd4ea88ac5cfab63b73f0",
        "0987aa93e6c6ce5d877a6d5fa5f43e5c07ffe3848ebc1db720d20bfdfdbe4f63",
        "c796cd26ec8fe4be152eb8d994a3172b47982440bb2f7e9c107e45ad",
    );

    const PUBLIC_V2_VECTOR: &str = concat!(
        "53534d020131f14ed720794cadc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2",
        "d3d4d5d6d7675dd574ed7789310b3d2e7681f3790b466c773b1521fecf365779",
        "58371ea52f638049aef1886829d041a33e9f885837dc479cdc484b11bb1c30b6",
        "38358d56872449e062d4e9cfec70e073b0b831f27da047842a2c26536492162a",
        "8e3e795a1527e9d3fd0bdc005eb629abb20eb89b9de986e9ae034ebe2dbbfa12",
        "b70c2f191845db3add247cccf45cebfb409b6c62246d50843ae66ec4a1e4e5e8",
        "4b269bc94aab6531dc1042dcfc5cd8e0b55c10288b9e06a9c54773fcf28f102f",
        "90e1dbdd83c88398449e5dc3",
    );

    #[test]
    fn test_vectors() {
        assert_eq!(alice_key().key_id().to_string(), SYMMETRIC_KEY_ID);
        assert_eq!(
            carol_identity().public().key_id().to_string(),
            PUBLIC_KEY_ID
        );
        let packet = sym(&payload());
        assert_eq!(packet.len(), SYMMETRIC_PACKET_LEN);
        assert_eq!(hex(&packet), SYMMETRIC_VECTOR);
        let packet = public(&payload());
        assert_eq!(packet.len(), PUBLIC_PACKET_LEN);
        assert_eq!(hex(&packet), PUBLIC_VECTOR);
        // Version 2: the same bytes but for the version byte (so a new
        // tag and signature), then mac1.
        let packet = public_v2(&payload());
        assert_eq!(packet.len(), PUBLIC_V2_PACKET_LEN);
        assert_eq!(hex(&packet), PUBLIC_V2_VECTOR);
    }

    #[test]
    fn payload_layout_is_fixed() {
        let p = Payload {
            timestamp: 0x0102_0304_0506_0708,
            nonce: [0xaa; 16],
            services: vec![tcp(22), udp(0x1234)],
            duration: 0x0a0b_0c0d,
            address: Some("192.0.2.7".parse().unwrap()),
        };
        let mut expected = vec![1, 1, 2, 3, 4, 5, 6, 7, 8];
        expected.extend_from_slice(&[0xaa; 16]);
        expected.extend_from_slice(&[0x0a, 0x0b, 0x0c, 0x0d, 4, 192, 0, 2, 7]);
        expected.extend_from_slice(&[0; 12]);
        expected.extend_from_slice(&[2, 6, 0, 22, 17, 0x12, 0x34]);
        expected.extend_from_slice(&[0; 18]);
        assert_eq!(p.encode().unwrap().to_vec(), expected);
        assert_eq!(Payload::decode(&expected), Ok(p));
    }

    #[test]
    fn round_trip_symmetric() {
        let v = verifier();
        let ok = v.verify(&sym(&payload()), NOW).unwrap();
        assert_eq!(ok.user, user("alice"));
        assert_eq!(ok.mode, Mode::Symmetric);
        assert_eq!(ok.key_id, alice_key().key_id());
        assert_eq!(ok.payload, payload());
        assert_eq!(ok.services, vec![tcp(22)]);
        assert_eq!(ok.duration, Duration::from_secs(30));
        assert_eq!(
            ok.replay_key.owner(),
            ReplayKey::owner_id(b"spa-key", &ok.key_id.0)
        );
        assert_eq!(ok.replay_expires, NOW + 60);
    }

    #[test]
    fn round_trip_public() {
        let v = verifier();
        let mut p = payload();
        p.services = vec![udp(51820), tcp(22)];
        p.duration = 0;
        let ok = v.verify(&public(&p), NOW).unwrap();
        assert_eq!(ok.user, user("carol"));
        assert_eq!(ok.mode, Mode::Public);
        assert_eq!(ok.payload, p);
        assert_eq!(ok.services, vec![udp(51820), tcp(22)]);
        assert_eq!(ok.duration, Duration::from_secs(60));
    }

    #[test]
    fn explicit_address_round_trips_when_allowed() {
        let v = verifier();
        for addr in ["203.0.113.9", "2001:db8::77"] {
            let mut p = payload();
            p.services = vec![tcp(443)];
            p.address = Some(addr.parse().unwrap());
            let packet = encode_symmetric(&bob_key(), &p, [9; 24]).unwrap();
            let ok = v.verify(&packet, NOW).unwrap();
            assert_eq!(ok.user, user("bob"));
            assert_eq!(ok.payload.address, p.address);
        }
    }

    #[test]
    fn explicit_address_is_refused_by_default() {
        let v = verifier();
        let mut p = payload();
        p.address = Some("203.0.113.9".parse().unwrap());
        assert_eq!(
            v.verify(&sym(&p), NOW),
            Err(SpaError::AddressNotAllowed {
                user: user("alice"),
                address: p.address.unwrap()
            })
        );
    }

    #[test]
    fn empty_request_means_everything_allowed_and_duration_is_capped() {
        let v = verifier();
        let mut p = payload();
        p.services.clear();
        p.duration = 3600;
        let ok = v.verify(&sym(&p), NOW).unwrap();
        assert_eq!(ok.services, policy().services);
        assert_eq!(ok.duration, Duration::from_secs(60));
    }

    #[test]
    fn every_tampered_byte_is_rejected_symmetric() {
        let v = verifier();
        let good = sym(&payload());
        let id = alice_key().key_id();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x80;
            let err = v.verify(&bad, NOW).unwrap_err();
            let expected = match i {
                0..=2 => SpaError::BadMagic,
                3 => SpaError::UnsupportedVersion(VERSION ^ 0x80),
                4 => SpaError::UnsupportedMode(0x80),
                5..=12 => {
                    let mut key_id = id;
                    key_id.0[i - 5] ^= 0x80;
                    SpaError::UnknownKey {
                        mode: Mode::Symmetric,
                        key_id,
                    }
                }
                _ => SpaError::BadTag {
                    user: user("alice"),
                },
            };
            assert_eq!(err, expected, "byte {i}");
        }
    }

    #[test]
    fn every_tampered_byte_is_rejected_public() {
        let v = verifier();
        let good = public(&payload());
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            let reason = v.verify(&bad, NOW).unwrap_err().reason();
            let expected = match i {
                0..=2 => "bad_magic",
                3 => "unsupported_version",
                // Mode 1 -> 0: a 220-byte packet is too long for mode 0.
                4 => "oversized",
                5..=12 => "unknown_key",
                _ => "bad_tag",
            };
            assert_eq!(reason, expected, "byte {i}");
        }
    }

    fn public_v2(p: &Payload) -> Vec<u8> {
        encode_public(
            &carol_identity(),
            &server_key().public(),
            p,
            &seq_bytes(0x60),
            seq_bytes(0xc0),
        )
        .unwrap()
    }

    #[test]
    fn version_2_round_trips_and_every_tampered_byte_fails_mac1() {
        let mut v = verifier();
        v.accept_v1_public(false);
        let good = public_v2(&payload());
        assert_eq!(good.len(), PUBLIC_V2_PACKET_LEN);
        assert_eq!(good[3], VERSION_2);
        assert_eq!(v.precheck(&good), Ok(Cost::PublicKey));
        assert_eq!(v.precheck(&sym(&payload())), Ok(Cost::Cheap));
        assert!(v.verify(&good, NOW).is_ok());
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            let reason = v.precheck(&bad).unwrap_err().reason();
            let expected = match i {
                0..=2 => "bad_magic",
                // 2 -> 3; mode 1 -> 0 (version 2 has no symmetric mode).
                3 | 4 => "unsupported_version",
                _ => "bad_mac1",
            };
            assert_eq!(reason, expected, "byte {i}");
        }
        // Version 1 public-key packets are refused unless allowed.
        let v1 = public(&payload());
        assert_eq!(v.precheck(&v1), Err(SpaError::LegacyPublic));
        v.accept_v1_public(true);
        assert!(v.verify(&v1, NOW).is_ok());
        // A server without a public key cannot check mac1.
        let bare = Verifier::new(DEFAULT_WINDOW_SECS, None);
        assert_eq!(bare.precheck(&good), Err(SpaError::BadMac1));
    }

    #[test]
    fn mac1_holders_still_meet_every_inner_check() {
        // Someone who knows the server's public key passes mac1, and then
        // meets the same checks as in version 1.
        let v = verifier();
        let mut packet = public_v2(&payload());
        packet[OFF_EPHEMERAL..PUBLIC_HEADER_LEN].fill(0);
        let tag = mac1(
            &mac1_key(&server_key().public().0),
            &packet[..PUBLIC_PACKET_LEN],
        );
        packet[PUBLIC_PACKET_LEN..].copy_from_slice(&tag);
        assert_eq!(
            v.verify(&packet, NOW),
            Err(SpaError::BadEphemeral {
                user: user("carol")
            })
        );
    }

    #[test]
    fn stale_and_future_are_distinct_with_inclusive_window() {
        let v = verifier();
        let packet = sym(&payload());
        assert!(v.verify(&packet, NOW + 60).is_ok());
        assert!(v.verify(&packet, NOW - 60).is_ok());
        assert_eq!(
            v.verify(&packet, NOW + 61),
            Err(SpaError::Stale {
                user: user("alice"),
                timestamp: NOW,
                age: 61,
                window: 60
            })
        );
        assert_eq!(
            v.verify(&packet, NOW - 61),
            Err(SpaError::Future {
                user: user("alice"),
                timestamp: NOW,
                ahead: 61,
                window: 60
            })
        );
        // A configurable window.
        let mut narrow = Verifier::new(5, None);
        narrow
            .add_user("alice", Credential::Symmetric(alice_key()), policy())
            .unwrap();
        assert!(narrow.verify(&packet, NOW + 5).is_ok());
        assert_eq!(
            narrow.verify(&packet, NOW + 6).unwrap_err().reason(),
            "stale"
        );
        assert_eq!(
            narrow.verify(&packet, NOW - 6).unwrap_err().reason(),
            "future"
        );
        // Time near the ends of the u64 range does not overflow.
        let mut p = payload();
        p.timestamp = u64::MAX;
        assert_eq!(v.verify(&sym(&p), 0).unwrap_err().reason(), "future");
        p.timestamp = 0;
        assert_eq!(v.verify(&sym(&p), u64::MAX).unwrap_err().reason(), "stale");
        assert!(v.verify(&sym(&p), 0).is_ok());
    }

    #[test]
    fn wrong_key_is_unknown() {
        let v = verifier();
        let stranger = SpaKey::from_bytes(&[0xee; 32]);
        let packet = encode_symmetric(&stranger, &payload(), [1; 24]).unwrap();
        assert_eq!(
            v.verify(&packet, NOW),
            Err(SpaError::UnknownKey {
                mode: Mode::Symmetric,
                key_id: stranger.key_id()
            })
        );
        let packet = encode_public(
            &dave_identity(),
            &server_key().public(),
            &payload(),
            &[3; 32],
            [1; 24],
        )
        .unwrap();
        assert_eq!(v.verify(&packet, NOW).unwrap_err().reason(), "unknown_key");
        // A symmetric key id is not found among public keys and vice versa.
        let mut packet = sym(&payload());
        packet[4] = Mode::Public.byte();
        packet.resize(PUBLIC_PACKET_LEN, 0);
        assert_eq!(v.verify(&packet, NOW).unwrap_err().reason(), "unknown_key");
    }

    #[test]
    fn wrong_user_is_distinct() {
        let v = verifier();
        // Alice's key id on a packet sealed with Bob's key: the id is known,
        // the tag is not Alice's.
        let (_, bob_aead) = bob_key().derive();
        let packet = seal_symmetric(
            &bob_aead,
            alice_key().key_id(),
            &payload().encode().unwrap(),
            &[5; 24],
        );
        assert_eq!(
            v.verify(&packet, NOW),
            Err(SpaError::BadTag {
                user: user("alice")
            })
        );
        // Dave signs a packet claiming to be Carol: it decrypts (anyone can
        // encrypt to the server) but the signature is not Carol's.
        let packet = seal_public(
            VERSION_2,
            &dave_identity(),
            carol_identity().public().key_id(),
            &server_key().public(),
            &payload().encode().unwrap(),
            &[6; 32],
            &[5; 24],
        )
        .unwrap();
        assert_eq!(
            v.verify(&packet, NOW),
            Err(SpaError::BadSignature {
                user: user("carol")
            })
        );
        // Bob is authentic but asks for what only Alice may open.
        let packet = encode_symmetric(&bob_key(), &payload(), [7; 24]).unwrap();
        assert_eq!(
            v.verify(&packet, NOW),
            Err(SpaError::ServiceNotAllowed {
                user: user("bob"),
                service: tcp(22)
            })
        );
    }

    #[test]
    fn packet_for_another_server_is_refused() {
        let v = verifier();
        let other = ServerKey::from_bytes(&[0x99; 32]);
        let packet = encode_public_v1(
            &carol_identity(),
            &other.public(),
            &payload(),
            &[3; 32],
            [1; 24],
        )
        .unwrap();
        assert_eq!(
            v.verify(&packet, NOW),
            Err(SpaError::BadTag {
                user: user("carol")
            })
        );
        // Version 2: refused by mac1, before any public-key work.
        let packet = encode_public(
            &carol_identity(),
            &other.public(),
            &payload(),
            &[3; 32],
            [1; 24],
        )
        .unwrap();
        assert_eq!(v.verify(&packet, NOW), Err(SpaError::BadMac1));
    }

    #[test]
    fn small_order_ephemeral_is_refused() {
        let v = verifier();
        let mut packet = public(&payload());
        packet[OFF_EPHEMERAL..PUBLIC_HEADER_LEN].fill(0);
        assert_eq!(
            v.verify(&packet, NOW),
            Err(SpaError::BadEphemeral {
                user: user("carol")
            })
        );
        assert_eq!(
            encode_public(
                &carol_identity(),
                &ServerPublic([0; 32]),
                &payload(),
                &[3; 32],
                [1; 24]
            ),
            Err(EncodeError::WeakServerKey)
        );
    }

    #[test]
    fn truncated_oversized_and_bad_header() {
        let v = verifier();
        let good = sym(&payload());
        for len in [0, 1, 4] {
            assert_eq!(
                v.verify(&good[..len], NOW),
                Err(SpaError::Truncated { len, expected: 5 })
            );
        }
        for len in [5, 36, 123] {
            assert_eq!(
                v.verify(&good[..len], NOW),
                Err(SpaError::Truncated { len, expected: 124 })
            );
        }
        let good_public = public(&payload());
        assert_eq!(
            v.verify(&good_public[..219], NOW),
            Err(SpaError::Truncated {
                len: 219,
                expected: 220
            })
        );
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            v.verify(&long, NOW),
            Err(SpaError::Oversized { len: 125, max: 124 })
        );
        let mut long = good_public.clone();
        long.push(0);
        assert_eq!(
            v.verify(&long, NOW),
            Err(SpaError::Oversized { len: 221, max: 220 })
        );
        // Oversized is checked before anything else.
        assert_eq!(
            v.verify(&[0; 1500], NOW),
            Err(SpaError::Oversized {
                len: 1500,
                max: 236
            })
        );
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(v.verify(&bad, NOW), Err(SpaError::BadMagic));
        let mut bad = good.clone();
        bad[3] = 2;
        assert_eq!(v.verify(&bad, NOW), Err(SpaError::UnsupportedVersion(2)));
        let mut bad = good.clone();
        bad[4] = 7;
        assert_eq!(v.verify(&bad, NOW), Err(SpaError::UnsupportedMode(7)));
    }

    #[test]
    fn malformed_payloads_are_reported_after_authentication() {
        let v = verifier();
        let (id, aead) = alice_key().derive();
        let good = payload().encode().unwrap();
        let cases: [(usize, u8, MalformedPayload); 8] = [
            (0, 2, MalformedPayload::Version(2)),
            (P_ADDR_KIND, 5, MalformedPayload::AddressKind(5)),
            (P_ADDR + 3, 1, MalformedPayload::Padding),
            (P_COUNT, 9, MalformedPayload::ServiceCount(9)),
            (P_SERVICES, 1, MalformedPayload::Proto(1)),
            (P_SERVICES + 2, 0, MalformedPayload::Port),
            (P_SERVICES + 23, 1, MalformedPayload::Padding),
            (
                P_ADDR_KIND,
                4,
                MalformedPayload::Address(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            ),
        ];
        for (at, value, reason) in cases {
            let mut p = good;
            p[at] = value;
            let packet = seal_symmetric(&aead, id, &p, &[1; 24]);
            assert_eq!(
                v.verify(&packet, NOW),
                Err(SpaError::Malformed {
                    user: user("alice"),
                    reason
                }),
                "offset {at}"
            );
        }
        // A key holder allowed explicit addresses still cannot aim a grant
        // at loopback, link-local or mapped forms of them.
        for (kind, bytes) in [
            (4u8, vec![127, 0, 0, 1]),
            (4, vec![169, 254, 1, 1]),
            (6, Ipv6Addr::LOCALHOST.octets().to_vec()),
            (6, "fe80::1".parse::<Ipv6Addr>().unwrap().octets().to_vec()),
            (
                6,
                "::ffff:127.0.0.1"
                    .parse::<Ipv6Addr>()
                    .unwrap()
                    .octets()
                    .to_vec(),
            ),
        ] {
            let mut p = good;
            p[P_ADDR_KIND] = kind;
            p[P_ADDR..P_ADDR + bytes.len()].copy_from_slice(&bytes);
            let packet = seal_symmetric(&aead, id, &p, &[1; 24]);
            assert!(
                matches!(
                    v.verify(&packet, NOW),
                    Err(SpaError::Malformed {
                        reason: MalformedPayload::Address(_),
                        ..
                    })
                ),
                "{bytes:?}"
            );
        }
        let mut p = good;
        p[P_COUNT] = 2;
        p[P_SERVICES + 3..P_SERVICES + 6].copy_from_slice(&[6, 0, 22]);
        let packet = seal_symmetric(&aead, id, &p, &[1; 24]);
        assert_eq!(
            v.verify(&packet, NOW).unwrap_err(),
            SpaError::Malformed {
                user: user("alice"),
                reason: MalformedPayload::DuplicateService(tcp(22))
            }
        );
        assert_eq!(
            Payload::decode(&good[..70]),
            Err(MalformedPayload::Length(70))
        );
    }

    #[test]
    fn encoder_refuses_bad_payloads() {
        let mut p = payload();
        p.services = (1..=9).map(tcp).collect();
        assert_eq!(p.encode(), Err(EncodeError::TooManyServices(9)));
        p.services = vec![tcp(0)];
        assert_eq!(p.encode(), Err(EncodeError::ZeroPort));
        p.services = vec![tcp(22), tcp(22)];
        assert_eq!(p.encode(), Err(EncodeError::DuplicateService(tcp(22))));
        p.services = vec![tcp(22)];
        for bad in [
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::",
            "ff02::1",
            "127.0.0.1",
            "::1",
            "169.254.0.7",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            p.address = Some(bad.parse().unwrap());
            assert!(
                matches!(p.encode(), Err(EncodeError::BadAddress(_))),
                "{bad}"
            );
        }
    }

    /// Audit item 6: one key holder sent more valid packets, dated near
    /// the end of the window, than the replay cache holds; everyone else
    /// was refused as unverifiable for two minutes. Now the flood fills
    /// only the sender's share.
    #[test]
    fn one_key_holder_cannot_fill_the_replay_cache_for_everyone() {
        let v = verifier();
        let mut cache = ReplayCache::new(2_000);
        cache.set_owners(v.key_count());
        let quota = cache.quota();
        let mut refused_own = 0;
        for i in 0..(2_000 + 500u32) {
            let mut p = payload();
            p.timestamp = NOW + 55;
            p.nonce[..4].copy_from_slice(&i.to_be_bytes());
            let packet = encode_symmetric(&alice_key(), &p, seq_bytes(i as u8)).unwrap();
            match v.verify_and_record(&packet, NOW, &mut cache) {
                Ok(_) => {}
                Err(SpaError::ReplayUnverifiable {
                    reason: ReplayError::OwnerFull { .. },
                    ..
                }) => refused_own += 1,
                Err(e) => panic!("packet {i}: {e}"),
            }
        }
        assert_eq!(refused_own, 2_500 - quota, "alice fills exactly her share");
        // Bob, with a packet dated now, is still accepted; so is carol.
        let mut p = payload();
        p.services = vec![tcp(443)];
        let bob = encode_symmetric(&bob_key(), &p, seq_bytes(0x11)).unwrap();
        v.verify_and_record(&bob, NOW, &mut cache).unwrap();
        v.verify_and_record(&public(&payload()), NOW, &mut cache)
            .unwrap();
    }

    #[test]
    fn replay_is_refused_also_after_a_restart() {
        let v = verifier();
        let mut cache = ReplayCache::new(16);
        let packet = sym(&payload());
        assert!(v.verify_and_record(&packet, NOW, &mut cache).is_ok());
        assert_eq!(
            v.verify_and_record(&packet, NOW + 1, &mut cache),
            Err(SpaError::Replay {
                user: user("alice")
            })
        );
        // Same payload, re-encrypted under a new nonce by someone holding the
        // key: same replay id, still refused.
        let again = encode_symmetric(&alice_key(), &payload(), [0x33; 24]).unwrap();
        assert_eq!(
            v.verify_and_record(&again, NOW + 1, &mut cache)
                .unwrap_err()
                .reason(),
            "replay"
        );
        let public_packet = public(&payload());
        // Same nonce as Alice's packet, but another key: another credential
        // (the replay key is the key's owner id and the payload nonce).
        assert!(v.verify_and_record(&public_packet, NOW, &mut cache).is_ok());
        assert_eq!(
            v.verify_and_record(&public_packet, NOW, &mut cache)
                .unwrap_err()
                .reason(),
            "replay"
        );
        let mut p = payload();
        p.nonce = [0x11; 16];
        let public_packet = public(&p);
        assert!(v.verify_and_record(&public_packet, NOW, &mut cache).is_ok());

        // Restart: the cache goes through its bytes.
        let mut restored = ReplayCache::from_bytes(&cache.to_bytes(), 16).unwrap();
        for packet in [&packet, &public_packet] {
            assert_eq!(
                v.verify_and_record(packet, NOW + 30, &mut restored)
                    .unwrap_err()
                    .reason(),
                "replay"
            );
        }
        // Restart without state: the floor refuses everything older.
        let mut lost = ReplayCache::new(16);
        lost.raise_floor(NOW + 10 + v.window_secs());
        assert!(matches!(
            v.verify_and_record(&packet, NOW + 10, &mut lost),
            Err(SpaError::ReplayUnverifiable {
                reason: ReplayError::Forgotten { .. },
                ..
            })
        ));
        let mut fresh = payload();
        fresh.timestamp = NOW + 11;
        fresh.nonce = [0x22; 16];
        assert!(v
            .verify_and_record(&sym(&fresh), NOW + 11, &mut lost)
            .is_ok());
    }

    #[test]
    fn check_order_rejects_forgeries_before_time() {
        // A stale packet whose tag is also broken is reported as tampered;
        // an old packet from an unknown key as unknown.
        let v = verifier();
        let mut packet = sym(&payload());
        let last = packet.len() - 1;
        packet[last] ^= 1;
        assert_eq!(
            v.verify(&packet, NOW + 1000).unwrap_err().reason(),
            "bad_tag"
        );
        let stranger = SpaKey::from_bytes(&[0xee; 32]);
        let packet = encode_symmetric(&stranger, &payload(), [1; 24]).unwrap();
        assert_eq!(
            v.verify(&packet, NOW + 1000).unwrap_err().reason(),
            "unknown_key"
        );
    }

    #[test]
    fn config_errors() {
        let mut v = Verifier::new(60, None);
        assert_eq!(
            v.add_user(
                "carol",
                Credential::Public(carol_identity().public()),
                policy()
            ),
            Err(SpaConfigError::NoServerKey("carol".into()))
        );
        let id = v
            .add_user("alice", Credential::Symmetric(alice_key()), policy())
            .unwrap();
        assert_eq!(id, alice_key().key_id());
        assert_eq!(
            v.add_user("eve", Credential::Symmetric(alice_key()), policy()),
            Err(SpaConfigError::DuplicateKey {
                user: "eve".into(),
                other: "alice".into(),
                key_id: id
            })
        );
        let mut p = policy();
        p.services.clear();
        assert_eq!(
            v.add_user("x", Credential::Symmetric(bob_key()), p),
            Err(SpaConfigError::NoServices("x".into()))
        );
        let mut p = policy();
        p.max_duration = 0;
        assert_eq!(
            v.add_user("x", Credential::Symmetric(bob_key()), p),
            Err(SpaConfigError::ZeroDuration("x".into()))
        );
        // Several credentials for one user.
        v.add_user("alice", Credential::Symmetric(bob_key()), policy())
            .unwrap();
        assert_eq!(v.len(), 2);
        let packet = encode_symmetric(&bob_key(), &payload(), [1; 24]).unwrap();
        assert_eq!(v.verify(&packet, NOW).unwrap().user, user("alice"));
    }

    #[test]
    fn keys_round_trip_and_refuse_weak_points() {
        let id = carol_identity();
        assert_eq!(IdentityKey::from_seed(&id.to_seed()).public(), id.public());
        let public = IdentityPublic::from_bytes(&id.public().to_bytes()).unwrap();
        assert_eq!(public, id.public());
        // The identity point (small order).
        let mut weak = [0u8; 32];
        weak[0] = 1;
        assert_eq!(
            IdentityPublic::from_bytes(&weak),
            Err(KeyError::WeakIdentityKey)
        );
        let server = server_key();
        assert_eq!(
            ServerKey::from_bytes(&server.to_bytes()).public(),
            server.public()
        );
        assert_eq!(alice_key(), SpaKey::from_bytes(alice_key().as_bytes()));
        assert_ne!(alice_key(), bob_key());
    }

    #[test]
    fn debug_never_prints_secrets() {
        let secret_hex = [
            hex(alice_key().as_bytes()),
            hex(&carol_identity().to_seed()[..]),
            hex(&server_key().to_bytes()[..]),
        ];
        let shown = format!(
            "{:?} {:?} {:?} {:?} {:?}",
            alice_key(),
            carol_identity(),
            server_key(),
            Credential::Symmetric(alice_key()),
            verifier()
        );
        for secret in &secret_hex {
            assert!(!shown.contains(&secret[..16]), "{shown}");
        }
        assert!(shown.contains(&alice_key().key_id().to_string()));
    }

    #[test]
    fn reasons_are_distinct() {
        let all = [
            SpaError::Oversized { len: 0, max: 0 },
            SpaError::Truncated {
                len: 0,
                expected: 0,
            },
            SpaError::BadMagic,
            SpaError::UnsupportedVersion(0),
            SpaError::LegacyPublic,
            SpaError::BadMac1,
            SpaError::UnsupportedMode(0),
            SpaError::UnknownKey {
                mode: Mode::Symmetric,
                key_id: KeyId([0; 8]),
            },
            SpaError::BadEphemeral { user: user("u") },
            SpaError::BadTag { user: user("u") },
            SpaError::BadSignature { user: user("u") },
            SpaError::Malformed {
                user: user("u"),
                reason: MalformedPayload::Port,
            },
            SpaError::Stale {
                user: user("u"),
                timestamp: 0,
                age: 0,
                window: 0,
            },
            SpaError::Future {
                user: user("u"),
                timestamp: 0,
                ahead: 0,
                window: 0,
            },
            SpaError::ServiceNotAllowed {
                user: user("u"),
                service: tcp(1),
            },
            SpaError::AddressNotAllowed {
                user: user("u"),
                address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            },
            SpaError::Replay { user: user("u") },
            SpaError::ReplayUnverifiable {
                user: user("u"),
                reason: ReplayError::Full { capacity: 1 },
            },
        ];
        let mut reasons: Vec<_> = all.iter().map(SpaError::reason).collect();
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), all.len());
        let mut messages: Vec<_> = all.iter().map(ToString::to_string).collect();
        messages.sort_unstable();
        messages.dedup();
        assert_eq!(messages.len(), all.len());
    }
}
