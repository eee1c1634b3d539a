//! fwknop-compatible single-packet authorization: a codec for FKO protocol
//! 3.0.0 packets, the format of the fwknop client (2.6.x) in its Rijndael
//! (AES) modes.
//!
//! Written from the format description (see `docs/fwknop.md`), not from
//! fwknop's code. Like the rest of this crate it is sans-IO: [`decode`]
//! takes the current time, [`encode`] takes its randomness (random value and
//! salt) as arguments.
//!
//! # Wire format
//!
//! ```text
//! packet    = body || B64(HMAC(hmac_key, "U2FsdGVkX1" || body))      (HMAC optional)
//! body      = B64("Salted__" || salt[8] || AES-256(key, iv, PKCS7(plaintext)))
//!             without its first 10 characters ("U2FsdGVkX1")
//! plaintext = encoded ":" B64(digest(encoded))
//! encoded   = random16 ":" B64(user) ":" timestamp ":" version ":" type ":" B64(message)
//!             [":" B64(nat_access)] [":" B64(server_auth)] [":" client_timeout]
//! ```
//!
//! B64 is standard base64 with every `=` removed. Key and IV come from
//! OpenSSL's `EVP_BytesToKey` (MD5, one iteration) over the passphrase and
//! salt. Neither the cipher mode nor the HMAC type is on the wire: both are
//! configuration ([`FwknopKeys`]). The inner digest type is found from its
//! length.
//!
//! # Order of checks in [`decode`]
//!
//! Each failure has its own [`FwknopError`] variant and
//! [`reason`](FwknopError::reason) label.
//!
//! 1. length: under [`MIN_PACKET_LEN`] bytes is `too_short`, over
//!    [`MAX_PACKET_LEN`] is `oversized`;
//! 2. only the base64 alphabet `A–Z a–z 0–9 + /` (no `=`): `bad_base64`;
//! 3. a packet that itself starts with `U2FsdGVkX1` is refused
//!    (`salted_prefix`): a genuine client always strips it, and accepting it
//!    would give one request two wire forms;
//! 4. [`GPG_MIN_LEN`] or more base64 characters once the configured HMAC is
//!    removed means GPG, which is not supported: `gpg_unsupported`;
//! 5. **the HMAC, first and in constant time**, when configured: the last
//!    N characters (N from the configured type) are the tag; before anything
//!    is decrypted, the rest must be the base64 of `Salted__`, a salt and
//!    whole AES blocks, and the tag must match. A failure is
//!    `hmac_type_mismatch` when the tag verifies under another HMAC type with
//!    the configured key (a configuration mistake), `hmac_missing` when the
//!    packet is well formed only without a tag, `bad_length` when it is not
//!    well formed either way (truncated or extended), and `bad_hmac`
//!    otherwise (tampered, wrong HMAC key). Without HMAC, a packet that is not
//!    well formed is `bad_length`;
//! 6. base64 decoding (with `U2FsdGVkX1` put back), strict: non-zero
//!    trailing bits are `non_canonical`; the blob must start with
//!    `Salted__`: `not_salted`;
//! 7. key derivation and decryption in the configured mode; the result must
//!    start with 16 digits and a `:` ("decrypted OK"): `decrypt_failed`
//!    (wrong encryption key, wrong mode). Valid PKCS#7 padding is removed;
//!    invalid padding is left in place, as fwknop does;
//! 8. every byte printable ASCII, the field split and the per-type field
//!    count, the message type: `malformed`;
//! 9. the inner digest: type from its length (MD5, SHA-1, SHA-256 or
//!    SHA3-256, SHA-384, SHA-512 or SHA3-512), compared in constant time:
//!    `malformed` for an unknown length, `bad_digest` for a mismatch;
//! 10. field validation (username, timestamp, version, message, NAT access,
//!     server auth, client timeout): `malformed` (see [`Malformed`]);
//! 11. the age window: more than `max_age` seconds old is `stale`, more than
//!     `max_age` ahead is `future`.
//!
//! Steps 1–5 read no secret but the HMAC key and decrypt nothing; they cost
//! one HMAC, or at most one per HMAC type (seven) when the tag does not
//! match and the reason is being diagnosed. Replay detection and server
//! policy (ports, usernames, commands, NAT) are the caller's:
//! [`FwknopMessage::replay_key`] gives the replay-cache key, taken from the
//! inner digest, so re-encrypting or re-encoding a captured request does not
//! make it new.

mod crypto;
mod fields;
pub mod stanza;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::door::Service;
use crate::replay::ReplayKey;

use fields::Fields;

/// Default UDP port of fwknop SPA packets.
pub const DEFAULT_PORT: u16 = 62201;
/// Protocol version the encoder writes (the decoder accepts any version
/// string of 1–8 characters, as fwknop does).
pub const PROTOCOL_VERSION: &str = "3.0.0";
/// Shortest packet accepted (fwknopd's `MIN_SPA_DATA_SIZE`).
pub const MIN_PACKET_LEN: usize = 140;
/// Longest packet accepted.
pub const MAX_PACKET_LEN: usize = 1500;
/// Base64 characters (without the HMAC) from which a packet is GPG.
pub const GPG_MIN_LEN: usize = 400;
/// Default age window, either way (fwknopd's `MAX_SPA_PACKET_AGE`).
pub const DEFAULT_MAX_AGE_SECS: u64 = 120;
/// Longest encryption passphrase or key (`RIJNDAEL_MAX_KEYSIZE`).
pub const MAX_KEY_LEN: usize = 32;
/// Longest HMAC key (`MAX_DIGEST_BLOCK_LEN`).
pub const MAX_HMAC_KEY_LEN: usize = 136;
/// Base64 of the first 7.5 bytes of `Salted__`, stripped from the wire.
pub const SALTED_B64_PREFIX: &str = "U2FsdGVkX1";
/// The OpenSSL salt header.
const SALTED_MAGIC: &[u8; 8] = b"Salted__";

/// Encoder: standard alphabet, no `=`.
fn b64_encode(bytes: &[u8]) -> String {
    STANDARD_NO_PAD.encode(bytes)
}

/// Decoder of the base64 fields inside the plaintext: standard alphabet,
/// `=` optional, non-zero trailing bits allowed (the inner digest and the
/// HMAC cover the text as sent). The outer layer is decoded strictly.
const B64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    B64_LENIENT.decode(s).ok()
}

/// AES mode, fwknop's `ENCRYPTION_MODE` / client `-M`. Not on the wire: the
/// server tries only the configured one.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EncMode {
    /// CBC, the default.
    Cbc,
    /// CTR: a 128-bit big-endian counter starting at the IV.
    Ctr,
    /// CFB with 128-bit feedback.
    Cfb,
    /// OFB.
    Ofb,
    /// ECB (the IV is derived but unused).
    Ecb,
    /// `legacy`: CBC, but a passphrase shorter than 16 bytes is first padded
    /// with ASCII `'0'` to 16 bytes (fwknop before 2.5).
    CbcLegacyIv,
}

impl EncMode {
    /// Every mode.
    pub const ALL: [EncMode; 6] = [
        EncMode::Cbc,
        EncMode::Ctr,
        EncMode::Cfb,
        EncMode::Ofb,
        EncMode::Ecb,
        EncMode::CbcLegacyIv,
    ];

    /// fwknop's name, as `ENCRYPTION_MODE` takes it.
    pub const fn name(self) -> &'static str {
        match self {
            EncMode::Cbc => "CBC",
            EncMode::Ctr => "CTR",
            EncMode::Cfb => "CFB",
            EncMode::Ofb => "OFB",
            EncMode::Ecb => "ECB",
            EncMode::CbcLegacyIv => "legacy",
        }
    }

    /// fwknop's enum value (`fko_encryption_mode_t`), as its client prints
    /// it: ECB 1, CBC 2, CFB 3, OFB 5, CTR 6, legacy 8.
    pub const fn number(self) -> u8 {
        match self {
            EncMode::Ecb => 1,
            EncMode::Cbc => 2,
            EncMode::Cfb => 3,
            EncMode::Ofb => 5,
            EncMode::Ctr => 6,
            EncMode::CbcLegacyIv => 8,
        }
    }
}

impl fmt::Display for EncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses fwknop's names, case-insensitively: `CBC`, `CTR`, `CFB`, `OFB`,
/// `ECB`, `legacy` (also `CBC_LEGACY_IV`). PCBC, which fwknop lists but does
/// not support, is refused.
impl FromStr for EncMode {
    type Err = FwknopKeyError;
    fn from_str(s: &str) -> Result<Self, FwknopKeyError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cbc" => Ok(EncMode::Cbc),
            "ctr" => Ok(EncMode::Ctr),
            "cfb" => Ok(EncMode::Cfb),
            "ofb" => Ok(EncMode::Ofb),
            "ecb" => Ok(EncMode::Ecb),
            "legacy" | "cbc_legacy_iv" => Ok(EncMode::CbcLegacyIv),
            _ => Err(FwknopKeyError::UnknownMode(s.to_string())),
        }
    }
}

/// A hash algorithm, for the inner digest and for the HMAC (fwknop uses the
/// same set and the same numbers for both).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DigestType {
    /// MD5 (16 bytes, 22 base64 characters).
    Md5,
    /// SHA-1 (20 bytes, 27 characters).
    Sha1,
    /// SHA-256 (32 bytes, 43 characters): the default for both.
    Sha256,
    /// SHA-384 (48 bytes, 64 characters).
    Sha384,
    /// SHA-512 (64 bytes, 86 characters).
    Sha512,
    /// SHA3-256 (32 bytes, 43 characters).
    Sha3_256,
    /// SHA3-512 (64 bytes, 86 characters).
    Sha3_512,
}

/// The HMAC algorithm: fwknop's `HMAC_DIGEST_TYPE`. Same set as
/// [`DigestType`].
pub type HmacType = DigestType;

impl DigestType {
    /// Every type.
    pub const ALL: [DigestType; 7] = [
        DigestType::Md5,
        DigestType::Sha1,
        DigestType::Sha256,
        DigestType::Sha384,
        DigestType::Sha512,
        DigestType::Sha3_256,
        DigestType::Sha3_512,
    ];

    /// fwknop's name: `MD5`, `SHA1`, `SHA256`, `SHA384`, `SHA512`,
    /// `SHA3_256`, `SHA3_512`.
    pub const fn name(self) -> &'static str {
        match self {
            DigestType::Md5 => "MD5",
            DigestType::Sha1 => "SHA1",
            DigestType::Sha256 => "SHA256",
            DigestType::Sha384 => "SHA384",
            DigestType::Sha512 => "SHA512",
            DigestType::Sha3_256 => "SHA3_256",
            DigestType::Sha3_512 => "SHA3_512",
        }
    }

    /// fwknop's enum value, 1 (MD5) to 7 (SHA3-512).
    pub const fn number(self) -> u8 {
        match self {
            DigestType::Md5 => 1,
            DigestType::Sha1 => 2,
            DigestType::Sha256 => 3,
            DigestType::Sha384 => 4,
            DigestType::Sha512 => 5,
            DigestType::Sha3_256 => 6,
            DigestType::Sha3_512 => 7,
        }
    }

    /// Output length in bytes.
    pub const fn digest_len(self) -> usize {
        match self {
            DigestType::Md5 => 16,
            DigestType::Sha1 => 20,
            DigestType::Sha256 | DigestType::Sha3_256 => 32,
            DigestType::Sha384 => 48,
            DigestType::Sha512 | DigestType::Sha3_512 => 64,
        }
    }

    /// Output length in base64 characters without `=`.
    pub const fn b64_len(self) -> usize {
        (self.digest_len() * 4).div_ceil(3)
    }
}

impl fmt::Display for DigestType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses fwknop's names case-insensitively (`sha3_256` and `SHA3-256` both
/// work).
impl FromStr for DigestType {
    type Err = FwknopKeyError;
    fn from_str(s: &str) -> Result<Self, FwknopKeyError> {
        let norm = s.trim().to_ascii_uppercase().replace('-', "_");
        DigestType::ALL
            .into_iter()
            .find(|t| t.name() == norm)
            .ok_or_else(|| FwknopKeyError::UnknownDigest(s.to_string()))
    }
}

/// Why [`FwknopKeys`] could not be made, or a mode or type name is unknown.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FwknopKeyError {
    /// The encryption key is empty.
    #[error("the fwknop encryption key (KEY / KEY_BASE64) is empty")]
    EmptyKey,
    /// The encryption key is longer than 32 bytes.
    #[error("the fwknop encryption key is {0} bytes, at most 32 allowed")]
    KeyTooLong(usize),
    /// The HMAC key is empty.
    #[error("the fwknop HMAC key (HMAC_KEY / HMAC_KEY_BASE64) is empty")]
    EmptyHmacKey,
    /// The HMAC key is longer than 136 bytes.
    #[error("the fwknop HMAC key is {0} bytes, at most 136 allowed")]
    HmacKeyTooLong(usize),
    /// Not one of fwknop's encryption mode names.
    #[error("unknown fwknop encryption mode {0:?} (expected CBC, CTR, CFB, OFB, ECB or legacy)")]
    UnknownMode(String),
    /// Not one of fwknop's digest/HMAC type names.
    #[error("unknown fwknop digest type {0:?} (expected MD5, SHA1, SHA256, SHA384, SHA512, SHA3_256 or SHA3_512)")]
    UnknownDigest(String),
}

/// The secrets and settings of one access.conf stanza (or one client
/// profile): the encryption key and mode, and the HMAC key and type if any.
/// Wiped when dropped; `Debug` shows no key material.
#[derive(Clone)]
pub struct FwknopKeys {
    enc_key: Zeroizing<Vec<u8>>,
    mode: EncMode,
    hmac: Option<(Zeroizing<Vec<u8>>, HmacType)>,
}

impl FwknopKeys {
    /// `enc_key`: the raw bytes of `KEY`, or the decoded bytes of
    /// `KEY_BASE64` (1–32 bytes). `hmac`: the raw or decoded HMAC key
    /// (1–136 bytes) and its type, or `None` for no HMAC (fwknop's default
    /// without `--use-hmac`; not recommended: nothing then authenticates the
    /// packet before decryption).
    ///
    /// The fwknop client refuses [`EncMode::CbcLegacyIv`] together with an
    /// HMAC; this codec allows it.
    pub fn new(
        enc_key: &[u8],
        mode: EncMode,
        hmac: Option<(&[u8], HmacType)>,
    ) -> Result<Self, FwknopKeyError> {
        if enc_key.is_empty() {
            return Err(FwknopKeyError::EmptyKey);
        }
        if enc_key.len() > MAX_KEY_LEN {
            return Err(FwknopKeyError::KeyTooLong(enc_key.len()));
        }
        let hmac = match hmac {
            None => None,
            Some(([], _)) => return Err(FwknopKeyError::EmptyHmacKey),
            Some((k, _)) if k.len() > MAX_HMAC_KEY_LEN => {
                return Err(FwknopKeyError::HmacKeyTooLong(k.len()))
            }
            Some((k, t)) => Some((Zeroizing::new(k.to_vec()), t)),
        };
        Ok(FwknopKeys {
            enc_key: Zeroizing::new(enc_key.to_vec()),
            mode,
            hmac,
        })
    }

    /// The encryption mode.
    pub fn mode(&self) -> EncMode {
        self.mode
    }

    /// The HMAC type, if an HMAC is required.
    pub fn hmac_type(&self) -> Option<HmacType> {
        self.hmac.as_ref().map(|(_, t)| *t)
    }
}

impl fmt::Debug for FwknopKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FwknopKeys")
            .field("enc_key", &format_args!("<{} bytes>", self.enc_key.len()))
            .field("mode", &self.mode)
            .field(
                "hmac",
                &self
                    .hmac
                    .as_ref()
                    .map(|(k, t)| format!("<{} bytes> {t}", k.len())),
            )
            .finish()
    }
}

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

/// A decoded, authenticated fwknop request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FwknopMessage {
    /// The 16-digit random value.
    pub random: String,
    /// The username (1–64 printable ASCII characters, some forbidden).
    /// Claimed by the client: `REQUIRE_USERNAME` compares it, it proves
    /// nothing by itself.
    pub username: String,
    /// When the client made the packet (Unix seconds).
    pub timestamp: u64,
    /// The protocol version string the client sent (`3.0.0` for 2.6.x).
    pub version: String,
    /// The message type.
    pub msg_type: MsgType,
    /// The address to open for; `None` when the client sent `0.0.0.0`
    /// (`-s`: "use the packet's source address"). Always IPv4 when set.
    pub access_ip: Option<IpAddr>,
    /// The requested ports (empty for a command message).
    pub access: Vec<AccessPort>,
    /// The command of a [`MsgType::Command`] message.
    pub command: Option<String>,
    /// NAT access `host,port` (types 2, 4, 5, 6).
    pub nat_access: Option<(String, u16)>,
    /// The legacy server-auth field, if present (the 2.6 client never sets
    /// it).
    pub server_auth: Option<String>,
    /// The client-requested timeout in seconds (types 3, 4, 6).
    pub client_timeout: Option<u32>,
    /// The inner digest's algorithm, found from its length.
    pub digest_type: DigestType,
    /// The inner digest (raw bytes): the replay-cache key material.
    pub digest: Vec<u8>,
}

impl FwknopMessage {
    /// The message string as the fwknop client prints it, e.g.
    /// `10.77.0.2,tcp/22` or `10.77.0.2,touch /tmp/x`.
    pub fn message_string(&self) -> String {
        fields::message_string(self.access_ip, &self.access, self.command.as_deref())
    }

    /// The replay-cache key of this request: [`ReplayKey::fwknop`] of the
    /// inner digest.
    pub fn replay_key(&self) -> ReplayKey {
        ReplayKey::fwknop(&self.digest)
    }

    /// The last Unix second at which this request passes the age window
    /// `max_age_secs`: the expiry to store with its replay key.
    pub fn replay_expiry(&self, max_age_secs: u64) -> u64 {
        self.timestamp.saturating_add(max_age_secs)
    }

    /// The request that would encode to this message (with its digest type).
    pub fn request(&self) -> FwknopRequest {
        FwknopRequest {
            username: self.username.clone(),
            timestamp: self.timestamp,
            msg_type: self.msg_type,
            access_ip: self.access_ip,
            access: self.access.clone(),
            command: self.command.clone(),
            nat_access: self.nat_access.clone(),
            server_auth: self.server_auth.clone(),
            client_timeout: self.client_timeout,
            digest_type: self.digest_type,
        }
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

/// Why [`decode`] refused a packet, in the order the checks run (see the
/// module docs). Each variant has its own [`reason`](FwknopError::reason);
/// none carries secret material.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FwknopError {
    /// Shorter than [`MIN_PACKET_LEN`].
    #[error("too short: {len} bytes, at least {min}")]
    TooShort {
        /// Bytes received.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// Longer than [`MAX_PACKET_LEN`].
    #[error("oversized: {len} bytes, at most {max}")]
    Oversized {
        /// Bytes received.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A byte outside the base64 alphabet (`=` included: never on the wire).
    #[error("not base64: byte 0x{byte:02x} at offset {at}")]
    BadBase64 {
        /// Offset of the first bad byte.
        at: usize,
        /// The byte.
        byte: u8,
    },
    /// The packet itself starts with `U2FsdGVkX1`, which genuine clients
    /// strip: refused, as fwknopd does.
    #[error("refused: packet starts with the U2FsdGVkX1 (Salted__) prefix")]
    SaltedPrefix,
    /// GPG-sized ([`GPG_MIN_LEN`] or more characters without the HMAC):
    /// GPG mode is not supported.
    #[error("GPG-encrypted fwknop packets are not supported ({len} base64 characters)")]
    GpgUnsupported {
        /// Base64 characters without the HMAC.
        len: usize,
    },
    /// Not the base64 of `Salted__`, a salt and whole AES blocks (after the
    /// configured HMAC is removed): truncated, extended, or not fwknop.
    #[error("bad length: {len} characters is not a whole number of AES blocks")]
    BadLength {
        /// Characters of the body (without HMAC).
        len: usize,
    },
    /// An HMAC is configured, but the packet is well formed only without
    /// one: the client did not use `--use-hmac`.
    #[error("HMAC missing: the packet carries no {expected} HMAC")]
    HmacMissing {
        /// The configured type.
        expected: HmacType,
    },
    /// The tag verifies with the configured key, but under another HMAC type:
    /// client and server disagree on `HMAC_DIGEST_TYPE`.
    #[error("HMAC type mismatch: the packet uses {actual}, {configured} is configured")]
    HmacTypeMismatch {
        /// The configured type.
        configured: HmacType,
        /// The type the tag verifies under.
        actual: HmacType,
    },
    /// The HMAC does not match: tampered with, or another HMAC key.
    #[error("HMAC mismatch ({hmac_type}): tampered or wrong HMAC key")]
    BadHmac {
        /// The configured type.
        hmac_type: HmacType,
    },
    /// The body is not canonical base64 (non-zero unused bits in its last
    /// character). No base64 encoder makes this; refused so that every
    /// accepted packet has exactly one wire form.
    #[error("non-canonical base64 (non-zero trailing bits)")]
    NonCanonical,
    /// The decoded blob does not start with `Salted__`.
    #[error("not an OpenSSL salted blob")]
    NotSalted,
    /// Decryption did not yield 16 digits and `:`: wrong encryption key or
    /// mode (or, without HMAC, a modified packet).
    #[error("decryption failed ({mode}): wrong key or mode")]
    DecryptFailed {
        /// The configured mode.
        mode: EncMode,
    },
    /// The decrypted message does not parse.
    #[error("malformed: {0}")]
    Malformed(Malformed),
    /// The inner digest does not match the message.
    #[error("inner digest mismatch ({digest_type})")]
    BadDigest {
        /// The type the digest's length names.
        digest_type: DigestType,
    },
    /// Made more than `max_age` seconds ago.
    #[error("stale: made at {timestamp}, {age} s ago (window {max_age} s)")]
    Stale {
        /// The packet's timestamp.
        timestamp: u64,
        /// Seconds before now.
        age: u64,
        /// The window.
        max_age: u64,
    },
    /// Dated more than `max_age` seconds ahead.
    #[error("future: dated {timestamp}, {ahead} s ahead (window {max_age} s)")]
    Future {
        /// The packet's timestamp.
        timestamp: u64,
        /// Seconds after now.
        ahead: u64,
        /// The window.
        max_age: u64,
    },
}

impl FwknopError {
    /// A short stable name for the reason, for structured logs and counters.
    pub fn reason(&self) -> &'static str {
        match self {
            FwknopError::TooShort { .. } => "too_short",
            FwknopError::Oversized { .. } => "oversized",
            FwknopError::BadBase64 { .. } => "bad_base64",
            FwknopError::SaltedPrefix => "salted_prefix",
            FwknopError::GpgUnsupported { .. } => "gpg_unsupported",
            FwknopError::BadLength { .. } => "bad_length",
            FwknopError::HmacMissing { .. } => "hmac_missing",
            FwknopError::HmacTypeMismatch { .. } => "hmac_type_mismatch",
            FwknopError::BadHmac { .. } => "bad_hmac",
            FwknopError::NonCanonical => "non_canonical",
            FwknopError::NotSalted => "not_salted",
            FwknopError::DecryptFailed { .. } => "decrypt_failed",
            FwknopError::Malformed(_) => "malformed",
            FwknopError::BadDigest { .. } => "bad_digest",
            FwknopError::Stale { .. } => "stale",
            FwknopError::Future { .. } => "future",
        }
    }
}

impl From<Malformed> for FwknopError {
    fn from(m: Malformed) -> Self {
        FwknopError::Malformed(m)
    }
}

/// True when `chars` base64 characters (without `=`) after the re-added
/// `U2FsdGVkX1` are exactly the encoding of `Salted__`, an 8-byte salt and
/// one or more AES blocks.
fn well_formed_body(chars: usize) -> bool {
    let total = chars + SALTED_B64_PREFIX.len();
    let bytes = total * 3 / 4;
    (bytes * 4).div_ceil(3) == total && bytes >= 32 && bytes % 16 == 0
}

/// Constant-time check of a base64 HMAC tag over `U2FsdGVkX1 || body`.
fn hmac_matches(t: HmacType, key: &[u8], body: &[u8], tag: &[u8]) -> bool {
    let mac = crypto::hmac(t, key, &[SALTED_B64_PREFIX.as_bytes(), body]);
    let expected = b64_encode(&mac);
    expected.len() == tag.len() && bool::from(expected.as_bytes().ct_eq(tag))
}

/// Decodes and authenticates one fwknop SPA packet (the UDP payload) with
/// one stanza's keys, at `now_unix`, accepting timestamps within
/// `max_age_secs` either way. See the module docs for the order of checks;
/// replay and policy checks are the caller's.
pub fn decode(
    packet: &[u8],
    keys: &FwknopKeys,
    now_unix: u64,
    max_age_secs: u64,
) -> Result<FwknopMessage, FwknopError> {
    // 1. Length.
    let len = packet.len();
    if len < MIN_PACKET_LEN {
        return Err(FwknopError::TooShort {
            len,
            min: MIN_PACKET_LEN,
        });
    }
    if len > MAX_PACKET_LEN {
        return Err(FwknopError::Oversized {
            len,
            max: MAX_PACKET_LEN,
        });
    }
    // 2. Alphabet.
    if let Some(at) = packet
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'+' || b == b'/'))
    {
        return Err(FwknopError::BadBase64 {
            at,
            byte: packet[at],
        });
    }
    // 3. A re-added prefix.
    if packet.starts_with(SALTED_B64_PREFIX.as_bytes()) {
        return Err(FwknopError::SaltedPrefix);
    }
    // 4. GPG.
    let tag_len = keys.hmac.as_ref().map_or(0, |(_, t)| t.b64_len());
    let body_len = len - tag_len;
    if body_len >= GPG_MIN_LEN {
        return Err(FwknopError::GpgUnsupported { len: body_len });
    }
    // 5. HMAC, before anything is decoded or decrypted.
    let body = match &keys.hmac {
        None => {
            if !well_formed_body(len) {
                return Err(FwknopError::BadLength { len });
            }
            packet
        }
        Some((key, configured)) => {
            let (body, tag) = packet.split_at(body_len);
            let formed = well_formed_body(body_len);
            if formed && hmac_matches(*configured, key, body, tag) {
                body
            } else {
                // Diagnose: another HMAC type (same key), no HMAC at all, or
                // a malformed or tampered packet.
                let other = HmacType::ALL.into_iter().find(|&t| {
                    t != *configured
                        && len > t.b64_len()
                        && well_formed_body(len - t.b64_len())
                        && {
                            let (b, tag) = packet.split_at(len - t.b64_len());
                            hmac_matches(t, key, b, tag)
                        }
                });
                return Err(match other {
                    Some(actual) => FwknopError::HmacTypeMismatch {
                        configured: *configured,
                        actual,
                    },
                    None if formed => FwknopError::BadHmac {
                        hmac_type: *configured,
                    },
                    None if well_formed_body(len) => FwknopError::HmacMissing {
                        expected: *configured,
                    },
                    None => FwknopError::BadLength { len: body_len },
                });
            }
        }
    };
    // 6. Base64 with the prefix put back; the salt.
    let mut text = String::with_capacity(SALTED_B64_PREFIX.len() + body.len());
    text.push_str(SALTED_B64_PREFIX);
    text.push_str(std::str::from_utf8(body).expect("checked: base64 alphabet"));
    let blob = Zeroizing::new(
        STANDARD_NO_PAD
            .decode(&text)
            .map_err(|_| FwknopError::NonCanonical)?,
    );
    if blob.len() < 16 || &blob[..8] != SALTED_MAGIC {
        return Err(FwknopError::NotSalted);
    }
    let salt: [u8; crypto::SALT_LEN] = blob[8..16].try_into().expect("8 bytes");
    // 7. Decrypt.
    let mut plain = Zeroizing::new(blob[16..].to_vec());
    let decrypt_failed = FwknopError::DecryptFailed { mode: keys.mode };
    if !crypto::decrypt(&keys.enc_key, &salt, keys.mode, &mut plain) {
        return Err(decrypt_failed);
    }
    let ok = plain.len() > fields::RANDOM_LEN
        && plain[..fields::RANDOM_LEN].iter().all(u8::is_ascii_digit)
        && plain[fields::RANDOM_LEN] == b':';
    if !ok {
        return Err(decrypt_failed);
    }
    let plain_len = crypto::unpadded_len(&plain);
    let plain = &plain[..plain_len];
    // 8. Printable, split, field counts.
    if let Some(at) = plain.iter().position(|b| !(0x20..=0x7e).contains(b)) {
        return Err(Malformed::NotPrintable { at }.into());
    }
    let plain = std::str::from_utf8(plain).expect("checked: printable ASCII");
    let (encoded, digest_b64) = plain.rsplit_once(':').expect("checked: a ':' at 16");
    let (parts, msg_type) = fields::split(encoded)?;
    // 9. Inner digest.
    let (digest_type, digest) = verify_digest(encoded, digest_b64)?;
    // 10. Fields.
    let f = fields::validate(&parts, msg_type)?;
    // 11. Age.
    if now_unix > f.timestamp && now_unix - f.timestamp > max_age_secs {
        return Err(FwknopError::Stale {
            timestamp: f.timestamp,
            age: now_unix - f.timestamp,
            max_age: max_age_secs,
        });
    }
    if f.timestamp > now_unix && f.timestamp - now_unix > max_age_secs {
        return Err(FwknopError::Future {
            timestamp: f.timestamp,
            ahead: f.timestamp - now_unix,
            max_age: max_age_secs,
        });
    }
    Ok(message(f, digest_type, digest))
}

/// Finds the digest type from the length of its base64 and checks it in
/// constant time (a 43- or 86-character digest is SHA-2 or else SHA-3). The
/// base64 text is compared, so only the canonical encoding passes.
fn verify_digest(encoded: &str, digest_b64: &str) -> Result<(DigestType, Vec<u8>), FwknopError> {
    let candidates: &[DigestType] = match digest_b64.len() {
        22 => &[DigestType::Md5],
        27 => &[DigestType::Sha1],
        43 => &[DigestType::Sha256, DigestType::Sha3_256],
        64 => &[DigestType::Sha384],
        86 => &[DigestType::Sha512, DigestType::Sha3_512],
        n => return Err(Malformed::DigestLength(n).into()),
    };
    for &t in candidates {
        let want = crypto::digest(t, encoded.as_bytes());
        let want_b64 = b64_encode(&want);
        if bool::from(want_b64.as_bytes().ct_eq(digest_b64.as_bytes())) {
            return Ok((t, want));
        }
    }
    Err(FwknopError::BadDigest {
        digest_type: candidates[0],
    })
}

fn message(f: Fields, digest_type: DigestType, digest: Vec<u8>) -> FwknopMessage {
    FwknopMessage {
        random: f.random,
        username: f.username,
        timestamp: f.timestamp,
        version: f.version,
        msg_type: f.msg_type,
        access_ip: f.access_ip,
        access: f.access,
        command: f.command,
        nat_access: f.nat_access,
        server_auth: f.server_auth,
        client_timeout: f.client_timeout,
        digest_type,
        digest,
    }
}

/// Why [`encode`] could not make a packet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FwknopEncodeError {
    /// The request's fields disagree with its message type.
    #[error("inconsistent fwknop request: {0}")]
    Inconsistent(&'static str),
    /// A field the decoder would refuse.
    #[error("invalid fwknop request: {0}")]
    Invalid(Malformed),
    /// The packet would be outside the lengths a server accepts (too short,
    /// or long enough to be taken for GPG).
    #[error("the fwknop packet would be {len} characters ({body} without HMAC); servers accept {MIN_PACKET_LEN} to {MAX_PACKET_LEN}, and under {GPG_MIN_LEN} without HMAC")]
    PacketLength {
        /// The packet's length.
        len: usize,
        /// Without the HMAC.
        body: usize,
    },
}

/// Makes a packet as the fwknop client does: the fields, the inner digest
/// (`req.digest_type`, SHA-256 by default), AES-256 in the configured mode
/// with the `Salted__` key derivation, base64 without `=` and without the
/// `U2FsdGVkX1` prefix, then the HMAC if configured.
///
/// `random` is any random `u64`; it is reduced to 16 decimal digits
/// (zero-padded). `salt` must be 8 fresh random bytes.
pub fn encode(
    req: &FwknopRequest,
    keys: &FwknopKeys,
    random: u64,
    salt: [u8; 8],
) -> Result<String, FwknopEncodeError> {
    check_consistent(req)?;
    let f = Fields {
        random: format!("{:016}", random % 10_000_000_000_000_000),
        username: req.username.clone(),
        timestamp: req.timestamp,
        version: PROTOCOL_VERSION.to_string(),
        msg_type: req.msg_type,
        access_ip: req.access_ip,
        access: req.access.clone(),
        command: req.command.clone(),
        nat_access: req.nat_access.clone(),
        server_auth: req.server_auth.clone(),
        client_timeout: req.client_timeout,
    };
    if matches!(req.access_ip, Some(IpAddr::V6(_))) {
        return Err(FwknopEncodeError::Invalid(Malformed::AccessIp));
    }
    let encoded = Zeroizing::new(fields::build(&f));
    // Everything the decoder checks, checked here: the result must parse
    // back to the same fields.
    let back = fields::split(&encoded)
        .and_then(|(parts, t)| fields::validate(&parts, t))
        .map_err(FwknopEncodeError::Invalid)?;
    if back != f {
        return Err(FwknopEncodeError::Inconsistent(
            "a field does not survive encoding (e.g. `:` in a raw field)",
        ));
    }
    let digest = crypto::digest(req.digest_type, encoded.as_bytes());
    let mut plain = Zeroizing::new(Vec::with_capacity(encoded.len() + 100));
    plain.extend_from_slice(encoded.as_bytes());
    plain.push(b':');
    plain.extend_from_slice(b64_encode(&digest).as_bytes());
    let packet = seal(&plain, keys, salt);
    let body = packet.len() - keys.hmac.as_ref().map_or(0, |(_, t)| t.b64_len());
    if packet.len() < MIN_PACKET_LEN || packet.len() > MAX_PACKET_LEN || body >= GPG_MIN_LEN {
        return Err(FwknopEncodeError::PacketLength {
            len: packet.len(),
            body,
        });
    }
    Ok(packet)
}

/// The outer layers alone, around an arbitrary `plaintext` (normally
/// `encoded ":" B64(digest)`): PKCS#7 padding, AES-256 in the configured
/// mode under the `Salted__` key derivation with `salt`, base64 without `=`
/// and without `U2FsdGVkX1`, then the HMAC if configured. [`encode`] is the
/// fields, the digest and this; tests and fuzzers use it to reach the checks
/// behind the HMAC. No length is checked.
pub fn seal(plaintext: &[u8], keys: &FwknopKeys, salt: [u8; 8]) -> String {
    let mut plain = Zeroizing::new(plaintext.to_vec());
    crypto::pad(&mut plain);
    crypto::encrypt(&keys.enc_key, &salt, keys.mode, &mut plain);
    let mut blob = Vec::with_capacity(16 + plain.len());
    blob.extend_from_slice(SALTED_MAGIC);
    blob.extend_from_slice(&salt);
    blob.extend_from_slice(&plain);
    let full = b64_encode(&blob);
    let mut packet = full
        .strip_prefix(SALTED_B64_PREFIX)
        .expect("Salted__ always encodes to U2FsdGVkX1")
        .to_string();
    if let Some((key, t)) = &keys.hmac {
        let mac = crypto::hmac(*t, key, &[full.as_bytes()]);
        packet.push_str(&b64_encode(&mac));
    }
    packet
}

/// The base64 (without `=`) of `t`'s digest of `encoded`: what follows the
/// last `:` of a plaintext (for building plaintexts to [`seal`]).
pub fn digest_b64(t: DigestType, encoded: &[u8]) -> String {
    b64_encode(&crypto::digest(t, encoded))
}

/// The type/field agreement fwknop's per-type field counts imply.
fn check_consistent(req: &FwknopRequest) -> Result<(), FwknopEncodeError> {
    let t = req.msg_type;
    let bad = FwknopEncodeError::Inconsistent;
    if (t == MsgType::Command) != req.command.is_some() {
        return Err(bad("a command goes with message type 0, and only there"));
    }
    if t == MsgType::Command && !req.access.is_empty() {
        return Err(bad("a command message carries no ports"));
    }
    if t != MsgType::Command && req.access.is_empty() {
        return Err(bad("an access message needs at least one port"));
    }
    if t.has_nat_access() != req.nat_access.is_some() {
        return Err(bad(
            "NAT access goes with message types 2, 4, 5 and 6, and only there",
        ));
    }
    if t.has_client_timeout() != req.client_timeout.is_some() {
        return Err(bad(
            "a client timeout goes with message types 3, 4 and 6, and only there",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_lengths() {
        // 161 = a 128-byte blob (Salted__, salt, 7 blocks) less the prefix.
        assert!(well_formed_body(161));
        assert!(!well_formed_body(160) && !well_formed_body(162));
        let good: Vec<usize> = (0..200).filter(|&n| well_formed_body(n)).collect();
        assert_eq!(good[..4], [33, 54, 76, 97]);
        for n in good {
            let bytes = (n + 10) * 3 / 4;
            assert_eq!(bytes % 16, 0);
            assert_eq!(b64_encode(&vec![0; bytes]).len(), n + 10);
        }
    }

    #[test]
    fn names_parse_case_insensitively() {
        for m in EncMode::ALL {
            assert_eq!(m.name().parse::<EncMode>(), Ok(m));
            assert_eq!(m.name().to_lowercase().parse::<EncMode>(), Ok(m));
        }
        assert_eq!("Legacy".parse::<EncMode>(), Ok(EncMode::CbcLegacyIv));
        assert_eq!(
            "PCBC".parse::<EncMode>(),
            Err(FwknopKeyError::UnknownMode("PCBC".into()))
        );
        for t in DigestType::ALL {
            assert_eq!(t.name().parse::<DigestType>(), Ok(t));
            assert_eq!(t.name().to_lowercase().parse::<HmacType>(), Ok(t));
        }
        assert_eq!("sha3-512".parse::<HmacType>(), Ok(DigestType::Sha3_512));
        let err = "SHA224".parse::<HmacType>().unwrap_err();
        assert!(err.to_string().contains("\"SHA224\""), "{err}");
        assert_eq!(
            [22, 27, 43, 64, 86, 43, 86],
            DigestType::ALL.map(DigestType::b64_len)
        );
    }

    #[test]
    fn keys_are_bounded_and_redacted() {
        let m = EncMode::Cbc;
        assert_eq!(
            FwknopKeys::new(b"", m, None).unwrap_err(),
            FwknopKeyError::EmptyKey
        );
        assert_eq!(
            FwknopKeys::new(&[1; 33], m, None).unwrap_err(),
            FwknopKeyError::KeyTooLong(33)
        );
        assert!(FwknopKeys::new(&[1; 32], m, Some((&[2; 136], HmacType::Sha256))).is_ok());
        assert_eq!(
            FwknopKeys::new(&[1; 32], m, Some((&[2; 137], HmacType::Sha256))).unwrap_err(),
            FwknopKeyError::HmacKeyTooLong(137)
        );
        assert_eq!(
            FwknopKeys::new(&[1; 32], m, Some((b"", HmacType::Sha256))).unwrap_err(),
            FwknopKeyError::EmptyHmacKey
        );
        let k = FwknopKeys::new(
            b"sekrit-passphrase",
            m,
            Some((b"hmac-sekrit", HmacType::Sha1)),
        )
        .unwrap();
        let dbg = format!("{k:?}");
        assert!(!dbg.contains("sekrit"), "{dbg}");
        assert!(dbg.contains("17 bytes") && dbg.contains("SHA1"), "{dbg}");
    }
}
