//! The packet's encodings: fwknop's base64 flavour, its cipher modes and
//! digest types, and the size limits of a packet.

use std::fmt;
use std::str::FromStr;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine;

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
pub(super) const SALTED_MAGIC: &[u8; 8] = b"Salted__";

/// Encoder: standard alphabet, no `=`.
pub(super) fn b64_encode(bytes: &[u8]) -> String {
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

pub(super) fn b64_decode(s: &str) -> Option<Vec<u8>> {
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
