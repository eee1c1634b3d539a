//! Authenticated doors: SPA verifiers and TOTP slot bookkeeping, and the
//! persisted replay cache they share.
//!
//! Key material is read here (at start-up and by `--check-config`), never
//! logged, and wiped on drop by the core types.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sesame_core::replay::{ReplayCache, ReplayKey};
use sesame_core::spa::{Credential, UserPolicy, Verifier};
use sesame_core::totp::{steps_at, TotpSecret, TotpSpec};
use sesame_core::tracker::DoorId;
use sesame_core::{Door, Knock};

use sesame_core::fwknop::{DigestType, EncMode, FwknopKeyError, FwknopKeys};

use crate::config::{Config, CredentialSource, DoorKind};
use crate::fwknop_conf::FwknopStanza;
use crate::keys;

/// Name of the replay cache file in the state directory.
pub const REPLAY_FILE: &str = "replay.bin";
/// Widest time window the saved image was made under (decimal seconds).
pub const WINDOW_FILE: &str = "replay.window";
/// Kernel boot id the image was written under.
pub const BOOT_FILE: &str = "replay.boot";
/// Where Linux publishes the current boot id.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// Why the authenticated doors could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A key file or inline key is unusable.
    #[error("door {door:?} user {user:?}: {source}")]
    Key {
        /// Door.
        door: String,
        /// User.
        user: String,
        /// Cause (names the file).
        source: keys::KeyFileError,
    },
    /// The server key is unusable.
    #[error("daemon.server_key: {0}")]
    ServerKey(keys::KeyFileError),
    /// A public-key SPA user needs the server's X25519 key.
    #[error("door {door:?} user {user:?} uses an identity (public-key SPA) but [daemon] server_key is not set; create one with `sesame keygen server FILE`")]
    NoServerKey {
        /// Door.
        door: String,
        /// User.
        user: String,
    },
    /// The verifier refused a user (duplicate key, ...).
    #[error("door {door:?}: {source}")]
    Policy {
        /// Door.
        door: String,
        /// Cause.
        source: sesame_core::spa::SpaConfigError,
    },
    /// An fwknop stanza's keys or settings are unusable.
    #[error("door {door:?} (access.conf stanza at line {line}): {what}")]
    Fwknop {
        /// Door.
        door: String,
        /// Line of the SOURCE keyword.
        line: usize,
        /// What is wrong (never key material).
        what: String,
    },
    /// Two SPA doors on one port.
    #[error("doors {a:?} and {b:?} both use SPA port {port}")]
    PortClash {
        /// First door.
        a: String,
        /// Second door.
        b: String,
        /// The port.
        port: u16,
    },
    /// The state directory or replay file could not be used.
    #[error("replay cache {path}: {source}")]
    State {
        /// File or directory.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// Writes `bytes` to `path` durably (start-up files only).
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// One SPA door, ready to verify packets.
pub struct SpaDoorState {
    /// The door (index into the tracker's doors).
    pub door: DoorId,
    /// Its users.
    pub verifier: Verifier,
}

/// One TOTP door: per user, three tracker slots holding the sequences of
/// the previous, current and next step (`step % 3`).
pub struct TotpDoorState {
    /// The door (index into the tracker's doors).
    pub door: DoorId,
    /// The door's name (part of its replay keys).
    pub name: String,
    /// Shape of its sequences.
    pub spec: TotpSpec,
    /// Users, by index.
    pub users: Vec<(String, TotpSecret)>,
    /// `slots[user][step % 3]` = (tracker door id, step it holds).
    pub slots: Vec<[(DoorId, Option<u64>); 3]>,
}

/// One fwknop-compatible door: its stanzas with their keys, in file order.
pub struct FwknopDoorState {
    /// The door (index into the tracker's doors).
    pub door: DoorId,
    /// Accepted clock difference, either way (seconds).
    pub max_age: u64,
    /// Stanzas and their keys.
    pub stanzas: Vec<(FwknopStanza, FwknopKeys)>,
}

/// fwknop's digest/HMAC type from its name (`SHA256`, `sha3_256`, ...).
fn digest_type(name: &str) -> Option<DigestType> {
    [
        DigestType::Md5,
        DigestType::Sha1,
        DigestType::Sha256,
        DigestType::Sha384,
        DigestType::Sha512,
        DigestType::Sha3_256,
        DigestType::Sha3_512,
    ]
    .into_iter()
    .find(|d| {
        d.name().eq_ignore_ascii_case(name) || d.name().replace('-', "_").eq_ignore_ascii_case(name)
    })
}

/// What a TOTP slot stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotOwner {
    /// Index into the TOTP door list.
    pub totp: usize,
    /// User index within that door.
    pub user: usize,
    /// Slot (step % 3).
    pub slot: usize,
}

/// Keys and state for every SPA and TOTP door.
#[derive(Default)]
pub struct AuthDoors {
    /// SPA doors by UDP port.
    pub spa: HashMap<u16, SpaDoorState>,
    /// TOTP doors.
    pub totp: Vec<TotpDoorState>,
    /// Tracker slot door → owner.
    pub slot_owner: HashMap<DoorId, SlotOwner>,
    /// fwknop doors by UDP port.
    pub fwknop: HashMap<u16, FwknopDoorState>,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads every key the config names, without touching the firewall.
/// `--check-config` runs this too, so bad key files are found before a start.
pub fn load(config: &Config) -> Result<AuthDoors, AuthError> {
    let mut out = AuthDoors::default();
    let server = match &config.daemon.server_key {
        Some(path) => Some(keys::load_server_key(path).map_err(AuthError::ServerKey)?),
        None => None,
    };
    for (id, door) in config.doors.iter().enumerate() {
        match config.kinds.get(&door.name) {
            None => {}
            Some(DoorKind::Fwknop(f)) => {
                let mut stanzas = Vec::new();
                for stanza in &f.stanzas {
                    let bad = |what: String| AuthError::Fwknop {
                        door: door.name.clone(),
                        line: stanza.line,
                        what,
                    };
                    let mode: EncMode = stanza
                        .encryption_mode
                        .parse()
                        .map_err(|e: FwknopKeyError| bad(e.to_string()))?;
                    let hmac = match &stanza.hmac_key {
                        None => None,
                        Some(key) => {
                            let t = digest_type(&stanza.hmac_digest).ok_or_else(|| {
                                bad(format!("unknown HMAC_DIGEST_TYPE {:?}", stanza.hmac_digest))
                            })?;
                            Some((key.0.as_slice(), t))
                        }
                    };
                    let keys = FwknopKeys::new(&stanza.key.0, mode, hmac)
                        .map_err(|e| bad(e.to_string()))?;
                    stanzas.push((stanza.clone(), keys));
                }
                let clash = out
                    .spa
                    .get(&f.port)
                    .map(|s| s.door)
                    .or(out.fwknop.get(&f.port).map(|s| s.door));
                if let Some(other) = clash {
                    return Err(AuthError::PortClash {
                        a: config.doors[other].name.clone(),
                        b: door.name.clone(),
                        port: f.port,
                    });
                }
                out.fwknop.insert(
                    f.port,
                    FwknopDoorState {
                        door: id,
                        max_age: f.max_age.as_secs(),
                        stanzas,
                    },
                );
            }
            Some(DoorKind::Spa(spa)) => {
                let mut verifier = Verifier::new(spa.window.as_secs(), server.clone());
                for user in &spa.users {
                    let key_err = |source| AuthError::Key {
                        door: door.name.clone(),
                        user: user.name.clone(),
                        source,
                    };
                    let credential = match &user.credential {
                        CredentialSource::SymmetricKeyFile(path) => {
                            Credential::Symmetric(keys::load_spa_key(path).map_err(key_err)?)
                        }
                        CredentialSource::Identity(text) => {
                            if server.is_none() {
                                return Err(AuthError::NoServerKey {
                                    door: door.name.clone(),
                                    user: user.name.clone(),
                                });
                            }
                            Credential::Public(keys::identity_public(text).map_err(key_err)?)
                        }
                    };
                    let policy = UserPolicy {
                        services: user.services.clone(),
                        max_duration: u32::try_from(door.open_for.as_secs())
                            .unwrap_or(u32::MAX)
                            .max(1),
                        allow_address: user.allow_address,
                    };
                    verifier
                        .add_user(&user.name, credential, policy)
                        .map_err(|source| AuthError::Policy {
                            door: door.name.clone(),
                            source,
                        })?;
                }
                let clash = out
                    .spa
                    .get(&spa.port)
                    .map(|s| s.door)
                    .or(out.fwknop.get(&spa.port).map(|s| s.door));
                if let Some(other) = clash {
                    return Err(AuthError::PortClash {
                        a: config.doors[other].name.clone(),
                        b: door.name.clone(),
                        port: spa.port,
                    });
                }
                out.spa
                    .insert(spa.port, SpaDoorState { door: id, verifier });
            }
            Some(DoorKind::Totp(t)) => {
                let mut users = Vec::new();
                for (name, path) in &t.users {
                    let secret = keys::load_totp_secret(path).map_err(|source| AuthError::Key {
                        door: door.name.clone(),
                        user: name.clone(),
                        source,
                    })?;
                    users.push((name.clone(), secret));
                }
                out.totp.push(TotpDoorState {
                    door: id,
                    name: door.name.clone(),
                    spec: TotpSpec {
                        len: t.length,
                        ports: t.ports.clone(),
                        proto: t.proto,
                        period: t.period.as_secs(),
                    },
                    users,
                    slots: Vec::new(),
                });
            }
        }
    }
    Ok(out)
}

impl AuthDoors {
    /// The doors to give the tracker: `doors` with SPA and TOTP doors
    /// emptied (they never match a plain sequence), followed by three empty
    /// slot doors per TOTP user, filled by [`AuthDoors::roll`].
    pub fn tracker_doors(&mut self, doors: &[Door]) -> Vec<Door> {
        let mut out: Vec<Door> = doors.to_vec();
        for spa in self.spa.values() {
            out[spa.door].sequence.clear();
        }
        for f in self.fwknop.values() {
            out[f.door].sequence.clear();
        }
        for (t, totp) in self.totp.iter_mut().enumerate() {
            out[totp.door].sequence.clear();
            let template = out[totp.door].clone();
            totp.slots.clear();
            for user in 0..totp.users.len() {
                let mut slots = [(0, None); 3];
                for (slot, entry) in slots.iter_mut().enumerate() {
                    let id = out.len();
                    out.push(template.clone());
                    *entry = (id, None);
                    self.slot_owner.insert(
                        id,
                        SlotOwner {
                            totp: t,
                            user,
                            slot,
                        },
                    );
                }
                totp.slots.push(slots);
            }
        }
        out
    }

    /// Brings every TOTP slot to the steps valid at `now_unix`; returns the
    /// new sequences to install, as `(slot door, sequence)`. A sequence that
    /// was already used (in `replay`) stays disabled (empty).
    pub fn roll(&mut self, now_unix: u64, replay: &ReplayCache) -> Vec<(DoorId, Vec<Knock>)> {
        let mut changes = Vec::new();
        for totp in &mut self.totp {
            for (user, (_, secret)) in totp.users.iter().enumerate() {
                for step in steps_at(now_unix, totp.spec.period) {
                    let slot = (step % 3) as usize;
                    let (id, held) = totp.slots[user][slot];
                    if held == Some(step) {
                        continue;
                    }
                    totp.slots[user][slot].1 = Some(step);
                    let sequence = totp.spec.sequence(secret, step).unwrap_or_default();
                    let used = replay.contains(&ReplayKey::totp(&totp.name, step, &sequence));
                    changes.push((id, if used { Vec::new() } else { sequence }));
                }
            }
        }
        changes
    }

    /// The replay key and expiry of the sequence a slot holds.
    pub fn slot_credential(&self, owner: SlotOwner) -> Option<(ReplayKey, u64, u64, String)> {
        let totp = self.totp.get(owner.totp)?;
        let (_, step) = totp.slots.get(owner.user)?[owner.slot];
        let step = step?;
        let (user, secret) = &totp.users[owner.user];
        let sequence = totp.spec.sequence(secret, step).ok()?;
        let key = ReplayKey::totp(&totp.name, step, &sequence);
        Some((key, totp.spec.replay_expires(step), step, user.clone()))
    }

    /// The widest time window any door accepts, in seconds (for the
    /// replay floor after a lost image).
    pub fn widest_window(&self) -> u64 {
        let spa = self.spa.values().map(|s| s.verifier.window_secs());
        let totp = self.totp.iter().map(|t| 2 * t.spec.period);
        let fwknop = self.fwknop.values().map(|f| f.max_age);
        spa.chain(totp).chain(fwknop).max().unwrap_or(0)
    }

    /// True when no door needs the replay cache.
    pub fn is_empty(&self) -> bool {
        self.spa.is_empty() && self.totp.is_empty() && self.fwknop.is_empty()
    }

    /// Seconds until the next TOTP step boundary, if any TOTP door exists.
    pub fn next_roll_in(&self, now_unix: u64) -> Option<Duration> {
        self.totp
            .iter()
            .map(|t| {
                let p = t.spec.period.max(1);
                Duration::from_secs(p - now_unix % p)
            })
            .min()
    }
}

/// The replay cache, persisted atomically in the state directory.
pub struct PersistentReplay {
    /// The cache.
    pub cache: ReplayCache,
    path: PathBuf,
}

impl PersistentReplay {
    /// Loads `state_dir/replay.bin` and writes it back at once (so every
    /// later start finds one). When the state directory does not exist yet
    /// or is empty, this is a first start and the cache starts empty. When the directory
    /// exists but the image is missing or unreadable, it fails closed: every
    /// credential still valid at start-up is refused (`raise_floor(now +
    /// widest window)`), so nothing captured before the restart can be
    /// replayed; the returned warning says so.
    pub fn open(
        state_dir: &Path,
        capacity: usize,
        widest_window: u64,
        now_unix: u64,
    ) -> Result<(Self, Option<String>), AuthError> {
        let state = |source, path: &Path| AuthError::State {
            path: path.display().to_string(),
            source,
        };
        // Nothing ever written there (no directory, or an empty one): a first
        // start, not a lost image.
        let first_start = std::fs::read_dir(state_dir).map_or(true, |mut d| d.next().is_none());
        std::fs::create_dir_all(state_dir).map_err(|e| state(e, state_dir))?;
        let path = state_dir.join(REPLAY_FILE);
        let (cache, warning) = match std::fs::read(&path) {
            Ok(bytes) => match ReplayCache::from_bytes(&bytes, capacity) {
                Ok(cache) => (cache, None),
                Err(e) => {
                    let mut cache = ReplayCache::new(capacity);
                    cache.raise_floor(now_unix + widest_window);
                    (
                        cache,
                        Some(format!(
                            "{} is unusable ({e}); refusing every credential made before now",
                            path.display()
                        )),
                    )
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && first_start => {
                (ReplayCache::new(capacity), None)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut cache = ReplayCache::new(capacity);
                cache.raise_floor(now_unix + widest_window);
                (
                    cache,
                    Some(format!(
                        "{} is missing from an existing state directory; refusing every credential still valid now",
                        path.display()
                    )),
                )
            }
            Err(e) => return Err(state(e, &path)),
        };
        let (mut cache, mut warning) = (cache, warning);
        // The image is written without fsync (that would cost ~1 ms per
        // grant): a process crash or restart keeps it (same page cache), but
        // a host crash may lose the last writes. So an image from another
        // boot cannot vouch for recent credentials: fail closed.
        let boot_path = state_dir.join(BOOT_FILE);
        let boot_now = std::fs::read_to_string(BOOT_ID).unwrap_or_default();
        let boot_then = std::fs::read_to_string(&boot_path).ok();
        if !first_start && boot_then.as_deref() != Some(boot_now.as_str()) {
            cache.raise_floor(now_unix + widest_window);
            warning.get_or_insert_with(|| {
                "the host rebooted since the replay image was written; refusing every credential still valid now".to_string()
            });
        }
        write_synced(&boot_path, boot_now.as_bytes()).map_err(|e| state(e, &boot_path))?;
        // Stored expiries were computed with the old window: a wider one
        // would let credentials outlive their entries, so fail closed.
        let window_path = state_dir.join(WINDOW_FILE);
        let old_window = std::fs::read_to_string(&window_path)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok());
        if old_window.is_some_and(|old| widest_window > old) {
            cache.raise_floor(now_unix + widest_window);
            warning.get_or_insert_with(|| {
                format!("the time window grew to {widest_window}s since the last run; refusing every credential still valid now")
            });
        }
        std::fs::write(&window_path, format!("{widest_window}\n"))
            .map_err(|e| state(e, &window_path))?;
        let this = PersistentReplay { cache, path };
        this.save()?;
        Ok((this, warning))
    }

    /// Writes the image: temporary file, then rename, so a crash of the
    /// daemon leaves either the old or the new image. Not fsynced: see the
    /// boot-id check in [`PersistentReplay::open`] for host crashes.
    pub fn save(&self) -> Result<(), AuthError> {
        let tmp = self.path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&self.cache.to_bytes())?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|source| AuthError::State {
            path: self.path.display().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sesame-replay-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn replay_state_survives_a_restart_and_fails_closed_when_lost() {
        let d = dir("state");
        let now = 1_800_000_000;
        let (mut r, warning) = PersistentReplay::open(&d, 16, 60, now).unwrap();
        assert!(warning.is_none(), "a first start is not suspicious");
        assert!(
            d.join(REPLAY_FILE).exists(),
            "the image is written at start"
        );
        let key = ReplayKey::spa([1; 16]);
        r.cache.check_and_insert(key, now + 60, now).unwrap();
        r.save().unwrap();

        // Restart: the used credential is still refused.
        let (r2, warning) = PersistentReplay::open(&d, 16, 60, now + 1).unwrap();
        assert!(warning.is_none());
        assert!(r2.cache.contains(&key));

        // Image lost from an existing directory: everything valid now is refused.
        std::fs::remove_file(d.join(REPLAY_FILE)).unwrap();
        let (mut r3, warning) = PersistentReplay::open(&d, 16, 60, now + 2).unwrap();
        assert!(warning.unwrap().contains("missing"));
        assert!(r3
            .cache
            .check_and_insert(ReplayKey::spa([2; 16]), now + 61, now + 2)
            .is_err());

        // Corrupt image: the same.
        std::fs::write(d.join(REPLAY_FILE), b"junk").unwrap();
        let (mut r4, warning) = PersistentReplay::open(&d, 16, 60, now + 3).unwrap();
        assert!(warning.unwrap().contains("unusable"));
        assert!(r4
            .cache
            .check_and_insert(ReplayKey::spa([3; 16]), now + 62, now + 3)
            .is_err());
        // An image from another boot fails closed too.
        std::fs::write(d.join(BOOT_FILE), "another-boot\n").unwrap();
        let (mut r6, warning) = PersistentReplay::open(&d, 16, 60, now + 4).unwrap();
        assert!(warning.unwrap().contains("rebooted"));
        assert!(r6
            .cache
            .check_and_insert(ReplayKey::spa([5; 16]), now + 64, now + 4)
            .is_err());

        // A wider window than last time also fails closed.
        let (mut r5, warning) = PersistentReplay::open(&d, 16, 120, now + 4).unwrap();
        assert!(warning.unwrap().contains("window grew"));
        assert!(r5
            .cache
            .check_and_insert(ReplayKey::spa([4; 16]), now + 64, now + 4)
            .is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
