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
mod encoding;
mod fields;
mod message;
pub mod stanza;

pub use encoding::*;
use encoding::{b64_encode, SALTED_MAGIC};
pub use message::*;

use std::fmt;
use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use fields::Fields;

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
    if now_unix > f.request.timestamp && now_unix - f.request.timestamp > max_age_secs {
        return Err(FwknopError::Stale {
            timestamp: f.request.timestamp,
            age: now_unix - f.request.timestamp,
            max_age: max_age_secs,
        });
    }
    if f.request.timestamp > now_unix && f.request.timestamp - now_unix > max_age_secs {
        return Err(FwknopError::Future {
            timestamp: f.request.timestamp,
            ahead: f.request.timestamp - now_unix,
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
        version: f.version,
        request: FwknopRequest {
            digest_type,
            ..f.request
        },
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
        version: PROTOCOL_VERSION.to_string(),
        request: req.clone(),
    };
    if matches!(req.access_ip, Some(IpAddr::V6(_))) {
        return Err(FwknopEncodeError::Invalid(Malformed::AccessIp));
    }
    let encoded = Zeroizing::new(fields::build(&f));
    // Everything the decoder checks, checked here: the result must parse
    // back to the same fields.
    let mut back = fields::split(&encoded)
        .and_then(|(parts, t)| fields::validate(&parts, t))
        .map_err(FwknopEncodeError::Invalid)?;
    // The digest type is not a field of the message.
    back.request.digest_type = req.digest_type;
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
