//! The keys: users' symmetric and identity keys, the server's X25519 key.

use std::fmt;

use ed25519_dalek::{SigningKey, VerifyingKey};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::format::*;

/// A user's symmetric SPA key (32 bytes). Wiped when dropped; compared in
/// constant time; `Debug` shows only its key id.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SpaKey(pub(super) [u8; 32]);

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
    pub(super) fn derive(&self) -> (KeyId, Zeroizing<[u8; 32]>) {
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
pub struct IdentityKey(pub(super) SigningKey);

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

    /// An Ed25519 signature of `message` (fleet grants; callers put a
    /// context label in the message so that no signature means two things).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.0.sign(message).to_bytes()
    }
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityKey {{ id: {} }}", self.public().key_id())
    }
}

/// A user's Ed25519 public key, as the server lists it.
#[derive(Copy, Clone, PartialEq, Eq)]
pub struct IdentityPublic(pub(super) VerifyingKey);

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

    /// Whether `signature` is this key's signature of `message` (strict
    /// verification: no malleable or small-order forms).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        self.0.verify_strict(message, &signature).is_ok()
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
    pub(super) secret: StaticSecret,
    pub(super) public: X25519Public,
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
