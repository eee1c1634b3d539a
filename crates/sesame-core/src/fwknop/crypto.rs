//! The cryptography of FKO 3.0.0: OpenSSL's `EVP_BytesToKey` (MD5, one
//! iteration) key derivation, AES-256 in the six modes the fwknop client
//! offers, PKCS#7 padding, the inner digests and the outer HMAC.
//!
//! Written from the format description in `docs/fwknop.md`; everything here
//! works on byte slices and never fails on hostile input (lengths are checked
//! by the caller, and every function here tolerates any length anyway).

use aes::cipher::block_padding::NoPadding;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{
    AsyncStreamCipher, BlockDecryptMut, BlockEncryptMut, KeyInit, KeyIvInit, StreamCipher,
};
use aes::Aes256;
use hmac::{Hmac, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};
use sha3::{Sha3_256, Sha3_512};
use zeroize::Zeroizing;

use super::encoding::{DigestType, EncMode};

/// AES block length.
pub(super) const BLOCK: usize = 16;
/// Length of the OpenSSL salt.
pub(super) const SALT_LEN: usize = 8;
/// AES-256 key and IV, as `EVP_BytesToKey` lays them out.
const KEY_IV_LEN: usize = 32 + BLOCK;

/// `EVP_BytesToKey(MD5, 1 iteration)`: `D1 = MD5(pass || salt)`,
/// `Di = MD5(Di-1 || pass || salt)`; key = D1 || D2, IV = D3.
///
/// In [`EncMode::CbcLegacyIv`] a passphrase shorter than 16 bytes is first
/// right-padded with ASCII `'0'` to 16 bytes.
fn key_iv(pass: &[u8], salt: &[u8; SALT_LEN], mode: EncMode) -> Zeroizing<[u8; KEY_IV_LEN]> {
    let mut padded = Zeroizing::new(pass.to_vec());
    if mode == EncMode::CbcLegacyIv && padded.len() < 16 {
        padded.resize(16, b'0');
    }
    let mut out = Zeroizing::new([0u8; KEY_IV_LEN]);
    let mut prev: Option<Zeroizing<[u8; 16]>> = None;
    for chunk in out.chunks_mut(16) {
        let mut h = Md5::new();
        if let Some(p) = &prev {
            h.update(p.as_slice());
        }
        h.update(padded.as_slice());
        h.update(salt);
        let d = Zeroizing::new(<[u8; 16]>::from(h.finalize()));
        chunk.copy_from_slice(d.as_slice());
        prev = Some(d);
    }
    out
}

/// Encrypts `buf` (whose length must be a multiple of [`BLOCK`], already
/// padded) in place.
pub(super) fn encrypt(pass: &[u8], salt: &[u8; SALT_LEN], mode: EncMode, buf: &mut [u8]) {
    debug_assert_eq!(buf.len() % BLOCK, 0);
    let kiv = key_iv(pass, salt, mode);
    let key = GenericArray::from_slice(&kiv[..32]);
    let iv = GenericArray::from_slice(&kiv[32..]);
    let len = buf.len();
    match mode {
        EncMode::Cbc | EncMode::CbcLegacyIv => {
            cbc::Encryptor::<Aes256>::new(key, iv)
                .encrypt_padded_mut::<NoPadding>(buf, len)
                .expect("block-aligned buffer");
        }
        EncMode::Ecb => {
            ecb::Encryptor::<Aes256>::new(key)
                .encrypt_padded_mut::<NoPadding>(buf, len)
                .expect("block-aligned buffer");
        }
        EncMode::Cfb => cfb_mode::Encryptor::<Aes256>::new(key, iv).encrypt(buf),
        EncMode::Ofb => ofb::Ofb::<Aes256>::new(key, iv).apply_keystream(buf),
        EncMode::Ctr => ctr::Ctr128BE::<Aes256>::new(key, iv).apply_keystream(buf),
    }
}

/// Decrypts `buf` in place. Returns `false` (and leaves `buf` in an
/// unspecified state) when its length is not a multiple of [`BLOCK`].
pub(super) fn decrypt(pass: &[u8], salt: &[u8; SALT_LEN], mode: EncMode, buf: &mut [u8]) -> bool {
    if buf.len() % BLOCK != 0 {
        return false;
    }
    let kiv = key_iv(pass, salt, mode);
    let key = GenericArray::from_slice(&kiv[..32]);
    let iv = GenericArray::from_slice(&kiv[32..]);
    match mode {
        EncMode::Cbc | EncMode::CbcLegacyIv => cbc::Decryptor::<Aes256>::new(key, iv)
            .decrypt_padded_mut::<NoPadding>(buf)
            .is_ok(),
        EncMode::Ecb => ecb::Decryptor::<Aes256>::new(key)
            .decrypt_padded_mut::<NoPadding>(buf)
            .is_ok(),
        EncMode::Cfb => {
            cfb_mode::Decryptor::<Aes256>::new(key, iv).decrypt(buf);
            true
        }
        EncMode::Ofb => {
            ofb::Ofb::<Aes256>::new(key, iv).apply_keystream(buf);
            true
        }
        EncMode::Ctr => {
            ctr::Ctr128BE::<Aes256>::new(key, iv).apply_keystream(buf);
            true
        }
    }
}

/// Appends PKCS#7 padding to a whole number of blocks (1 to 16 bytes, always
/// at least one, in every mode).
pub(super) fn pad(buf: &mut Vec<u8>) {
    let n = BLOCK - buf.len() % BLOCK;
    buf.resize(buf.len() + n, n as u8);
}

/// The length of `buf` without its PKCS#7 padding when that padding is
/// valid; otherwise the whole length (fwknop's decoder is lenient: invalid
/// padding is left in place, and the printable check refuses it later).
pub(super) fn unpadded_len(buf: &[u8]) -> usize {
    let Some(&last) = buf.last() else {
        return 0;
    };
    let n = usize::from(last);
    if (1..=BLOCK).contains(&n) && n <= buf.len() && buf[buf.len() - n..].iter().all(|&b| b == last)
    {
        buf.len() - n
    } else {
        buf.len()
    }
}

/// The hash of `data` with `t`.
pub(super) fn digest(t: DigestType, data: &[u8]) -> Vec<u8> {
    match t {
        DigestType::Md5 => Md5::digest(data).to_vec(),
        DigestType::Sha1 => Sha1::digest(data).to_vec(),
        DigestType::Sha256 => Sha256::digest(data).to_vec(),
        DigestType::Sha384 => Sha384::digest(data).to_vec(),
        DigestType::Sha512 => Sha512::digest(data).to_vec(),
        DigestType::Sha3_256 => Sha3_256::digest(data).to_vec(),
        DigestType::Sha3_512 => Sha3_512::digest(data).to_vec(),
    }
}

fn mac<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = <M as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

/// HMAC-`t` of the concatenation of `parts` under `key` (standard HMAC:
/// a key longer than the hash's block is hashed first).
pub(super) fn hmac(t: DigestType, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    match t {
        DigestType::Md5 => mac::<Hmac<Md5>>(key, parts),
        DigestType::Sha1 => mac::<Hmac<Sha1>>(key, parts),
        DigestType::Sha256 => mac::<Hmac<Sha256>>(key, parts),
        DigestType::Sha384 => mac::<Hmac<Sha384>>(key, parts),
        DigestType::Sha512 => mac::<Hmac<Sha512>>(key, parts),
        DigestType::Sha3_256 => mac::<Hmac<Sha3_256>>(key, parts),
        DigestType::Sha3_512 => mac::<Hmac<Sha3_512>>(key, parts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The derivation, recomputed from its definition.
    #[test]
    fn key_derivation_follows_its_definition() {
        let salt = [1, 2, 3, 4, 5, 6, 7, 8];
        let kiv = key_iv(b"secret", &salt, EncMode::Cbc);
        let d1 = Md5::digest([&b"secret"[..], &salt].concat());
        let d2 = Md5::digest([&d1[..], b"secret", &salt].concat());
        let d3 = Md5::digest([&d2[..], b"secret", &salt].concat());
        assert_eq!(&kiv[..16], &d1[..]);
        assert_eq!(&kiv[16..32], &d2[..]);
        assert_eq!(&kiv[32..], &d3[..]);
        // Legacy IV mode pads a short passphrase with '0' to 16 bytes.
        let legacy = key_iv(b"secret", &salt, EncMode::CbcLegacyIv);
        let padded = key_iv(b"secret0000000000", &salt, EncMode::Cbc);
        assert_eq!(&legacy[..], &padded[..]);
        // ... but leaves a 16-byte or longer one alone.
        let long = b"0123456789abcdefXYZ";
        assert_eq!(
            &key_iv(long, &salt, EncMode::CbcLegacyIv)[..],
            &key_iv(long, &salt, EncMode::Cbc)[..]
        );
    }

    #[test]
    fn every_mode_round_trips() {
        for mode in EncMode::ALL {
            let mut buf = b"1234567890123456:the plaintext".to_vec();
            pad(&mut buf);
            assert_eq!(buf.len(), 32);
            let orig = buf.clone();
            encrypt(b"k", &[9; 8], mode, &mut buf);
            assert_ne!(buf, orig, "{mode:?}");
            assert!(decrypt(b"k", &[9; 8], mode, &mut buf));
            assert_eq!(buf, orig, "{mode:?}");
            assert_eq!(unpadded_len(&buf), 30);
        }
    }

    #[test]
    fn padding_is_lenient() {
        assert_eq!(unpadded_len(&[]), 0);
        assert_eq!(unpadded_len(&[b'a'; 16]), 16);
        assert_eq!(unpadded_len(&[16; 16]), 0);
        assert_eq!(unpadded_len(&[1, 3, 3, 3]), 1);
        assert_eq!(unpadded_len(&[1, 2, 3, 3]), 4); // invalid: kept
        assert_eq!(unpadded_len(&[1, 2, 4, 3]), 4); // invalid: kept
        assert_eq!(unpadded_len(&[0; 16]), 16); // 0 is never valid padding
        assert_eq!(unpadded_len(&[17; 32]), 32); // more than a block
        let mut v = vec![b'x'; 16];
        pad(&mut v);
        assert_eq!(v.len(), 32);
        assert_eq!(unpadded_len(&v), 16);
    }

    #[test]
    fn unaligned_ciphertext_is_refused() {
        let mut buf = [0u8; 17];
        for mode in EncMode::ALL {
            assert!(!decrypt(b"k", &[0; 8], mode, &mut buf));
        }
    }

    #[test]
    fn hmac_and_digest_lengths() {
        for t in DigestType::ALL {
            assert_eq!(digest(t, b"x").len(), t.digest_len(), "{t:?}");
            assert_eq!(hmac(t, b"key", &[b"x"]).len(), t.digest_len(), "{t:?}");
            // The parts are concatenated.
            assert_eq!(hmac(t, b"key", &[b"ab", b"c"]), hmac(t, b"key", &[b"abc"]));
        }
        // RFC 4231 test case 2.
        let tag = hmac(
            DigestType::Sha256,
            b"Jefe",
            &[b"what do ya want for nothing?"],
        );
        assert_eq!(
            tag[..4],
            [0x5b, 0xdc, 0xc1, 0x46],
            "HMAC-SHA-256 RFC 4231 #2"
        );
    }
}
