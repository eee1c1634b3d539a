//! Checking packets (the server side): the verifier and why it refuses.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signature, VerifyingKey};
use subtle::ConstantTimeEq;
use x25519_dalek::PublicKey as X25519Public;

use crate::door::Service;
use crate::replay::{ReplayCache, ReplayError, ReplayKey};
use crate::table::SeededState;

use super::encode::*;
use super::format::*;
use super::keys::*;
use super::payload::*;

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
    /// Authentic and fresh, but made with a credential retired by a key
    /// rotation whose grace period is over.
    #[error("key of {user} was retired at {retired_after} (Unix time): its rotation is over")]
    Retired {
        /// Authenticated user.
        user: Arc<str>,
        /// When the credential stopped being accepted.
        retired_after: u64,
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
            SpaError::Retired { .. } => "key_retired",
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
    /// For the old credential of a key rotation: the Unix time after which
    /// it is refused ([`SpaError::Retired`]). Until then old and new keys
    /// both work, so devices can move over one by one.
    pub retired_after: Option<u64>,
}

pub(super) enum Check {
    /// The AEAD, keyed once with the derived key (wiped on drop).
    Symmetric(XChaCha20Poly1305),
    Public(VerifyingKey),
}

pub(super) struct UserEntry {
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

        // 7. Policy. A retired credential is judged by the server's clock,
        //    not by the timestamp the sender chose.
        let policy = &user.policy;
        if let Some(retired_after) = policy.retired_after {
            if now_unix > retired_after {
                return Err(SpaError::Retired {
                    user: claimed(),
                    retired_after,
                });
            }
        }
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
