//! Making packets (the client side).

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::Signer;
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};
use zeroize::Zeroizing;

use super::format::*;
use super::keys::*;
use super::payload::*;

pub(super) fn header_prefix(
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

pub(super) fn seal(out: &mut Vec<u8>, header_len: usize, key: &[u8; 32], nonce: &[u8; NONCE_LEN]) {
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
pub(super) fn seal_symmetric(
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

/// A public-key packet of `version` (1: no `mac1`, for servers that
/// predate version 2; 2: [`encode_public`]).
pub fn encode_public_version(
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
pub(super) fn seal_public(
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
pub(super) fn public_aead_key(
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
pub(super) fn signed_message(server: &[u8; 32], header: &[u8], payload: &[u8]) -> [u8; SIGNED_LEN] {
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
