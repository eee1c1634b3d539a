//! The packet format: lengths, offsets, labels, the mode byte and the key id.

use std::fmt;

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
pub(super) const PREFIX_LEN: usize = 5;
pub(super) const OFF_KEY_ID: usize = 5;
pub(super) const OFF_NONCE: usize = OFF_KEY_ID + KEY_ID_LEN;
pub(super) const OFF_EPHEMERAL: usize = OFF_NONCE + NONCE_LEN;

/// HKDF salt of every derivation.
pub(super) const KDF_SALT: &[u8] = b"sesame-spa-v1";
/// HKDF info of a symmetric key's id.
pub(super) const INFO_KEY_ID: &[u8] = b"sesame-spa-v1 key id";
/// HKDF info of a symmetric key's AEAD key.
pub(super) const INFO_SYMMETRIC_AEAD: &[u8] = b"sesame-spa-v1 symmetric aead key";
/// HKDF info prefix of a public-key-mode AEAD key.
pub(super) const INFO_PUBLIC_AEAD: &[u8] = b"sesame-spa-v1 x25519 aead key";
/// Hash prefix of an Ed25519 key's id.
pub(super) const LABEL_ED25519_KEY_ID: &[u8] = b"sesame-spa-v1 ed25519 key id";
/// Hash prefix of the `mac1` key (version 2).
pub(super) const LABEL_MAC1: &[u8] = b"sesame-spa-v2 mac1";
/// Prefix of the signed message.
pub(super) const LABEL_SIGNATURE: &[u8] = b"sesame-spa-v1 signature";
pub(super) const SIGNED_LEN: usize = LABEL_SIGNATURE.len() + 32 + PUBLIC_HEADER_LEN + PAYLOAD_LEN;

// Payload offsets.
pub(super) const P_TIMESTAMP: usize = 1;
pub(super) const P_NONCE: usize = 9;
pub(super) const P_DURATION: usize = 25;
pub(super) const P_ADDR_KIND: usize = 29;
pub(super) const P_ADDR: usize = 30;
pub(super) const P_COUNT: usize = 46;
pub(super) const P_SERVICES: usize = 47;

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

pub(super) fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}
