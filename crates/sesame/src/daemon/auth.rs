//! Authenticated doors: SPA verifiers and TOTP slot bookkeeping, and the
//! persisted replay cache they share.
//!
//! Key material is read here (at start-up and by `--check-config`), never
//! logged, and wiped on drop by the core types.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sesame_core::replay::{journal_record, ReplayCache, ReplayKey, JOURNAL_HEADER};
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
/// Name of the replay journal (credentials accepted since the image was
/// written) in the state directory.
pub const JOURNAL_FILE: &str = "replay.journal";
/// The journal is compacted into the image once it holds this many records,
/// or as many as the cache holds entries if that is more: the image rewrite
/// then costs O(1) image bytes per accepted credential, amortized, and the
/// journal stays below 33 B × max(4096, capacity).
const COMPACT_MIN_RECORDS: usize = 4096;
/// Widest time window the saved image was made under (decimal seconds).
pub const WINDOW_FILE: &str = "replay.window";
/// Kernel boot id the image was written under.
pub const BOOT_FILE: &str = "replay.boot";
/// The unix second of the last first start (a missing or empty state
/// directory), kept while credentials made before it could still be valid.
pub const FIRST_START_FILE: &str = "replay.first_start";
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
    /// `CMD_EXEC_USER` / `CMD_EXEC_GROUP` of a stanza (by its line),
    /// resolved at load: (uid, gid).
    pub run_as: HashMap<usize, (u32, u32)>,
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

/// The replay key of a TOTP sequence, attributed to its user so that each
/// user gets a fair share of the replay cache.
pub fn totp_key(door: &str, user: &str, step: u64, sequence: &[Knock]) -> ReplayKey {
    ReplayKey::totp(door, step, sequence).with_owner(ReplayKey::owner_id(
        b"totp",
        format!("{door}/{user}").as_bytes(),
    ))
}

/// `CMD_EXEC_USER` / `CMD_EXEC_GROUP` as (uid, gid), looked up now so the
/// packet loop never reads the user database. Switching user needs root:
/// a daemon that runs unprivileged (`[daemon] user`, or started as a user,
/// as the packaged unit does) refuses the stanza.
fn command_identity(config: &Config, stanza: &FwknopStanza) -> Result<Option<(u32, u32)>, String> {
    if stanza.cmd_exec_user.is_none() && stanza.cmd_exec_group.is_none() {
        return Ok(None);
    }
    let me = nix::unistd::geteuid();
    if !me.is_root() || config.daemon.user.is_some() {
        return Err(format!(
            "CMD_EXEC_USER/CMD_EXEC_GROUP need sesamed to run as root (as fwknopd does); it runs as {}. Remove them (commands then run as sesamed's user) or run sesamed as root",
            config.daemon.user.clone().unwrap_or_else(|| format!("uid {me}"))
        ));
    }
    let (mut uid, mut gid) = (0, 0);
    if let Some(name) = &stanza.cmd_exec_user {
        let t = crate::privilege::lookup(name).map_err(|e| format!("CMD_EXEC_USER: {e}"))?;
        (uid, gid) = (t.uid.as_raw(), t.gid.as_raw());
    }
    if let Some(name) = &stanza.cmd_exec_group {
        let g = nix::unistd::Group::from_name(name)
            .map_err(|e| format!("CMD_EXEC_GROUP {name:?}: {e}"))?
            .ok_or_else(|| format!("CMD_EXEC_GROUP {name:?}: no such group"))?;
        gid = g.gid.as_raw();
    }
    Ok(Some((uid, gid)))
}

/// The replay key of an fwknop request accepted by stanza `line` of `door`
/// (a stanza holds one user's keys).
pub fn fwknop_key(door: &str, line: usize, msg: &sesame_core::fwknop::FwknopMessage) -> ReplayKey {
    msg.replay_key().with_owner(ReplayKey::owner_id(
        b"fwknop",
        format!("{door}/{line}").as_bytes(),
    ))
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
                let mut run_as = HashMap::new();
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
                            let t = stanza.hmac_digest.parse::<DigestType>().map_err(|_| {
                                bad(format!("unknown HMAC_DIGEST_TYPE {:?}", stanza.hmac_digest))
                            })?;
                            Some((key.0.as_slice(), t))
                        }
                    };
                    let keys = FwknopKeys::new(&stanza.key.0, mode, hmac)
                        .map_err(|e| bad(e.to_string()))?;
                    if let Some(ids) = command_identity(config, stanza).map_err(bad)? {
                        run_as.insert(stanza.line, ids);
                    }
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
                        run_as,
                    },
                );
            }
            Some(DoorKind::Spa(spa)) => {
                let mut verifier = Verifier::new(spa.window.as_secs(), server.clone());
                verifier.accept_v1_public(spa.accept_v1);
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
                    let used = replay.contains(&totp_key(
                        &totp.name,
                        &totp.users[user].0,
                        step,
                        &sequence,
                    ));
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
        let key = totp_key(&totp.name, user, step, &sequence);
        Some((key, totp.spec.replay_expires(step), step, user.clone()))
    }

    /// How many credential holders share the replay cache: SPA keys, TOTP
    /// users and fwknop stanzas (see [`ReplayCache::set_owners`]).
    pub fn owner_count(&self) -> usize {
        let spa: usize = self.spa.values().map(|s| s.verifier.key_count()).sum();
        let totp: usize = self.totp.iter().map(|t| t.users.len()).sum();
        let fwknop: usize = self.fwknop.values().map(|f| f.stanzas.len()).sum();
        spa + totp + fwknop
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

/// The replay cache, persisted in the state directory as an image
/// (`replay.bin`, rewritten atomically) plus a journal (`replay.journal`)
/// of the credentials accepted since the image was written.
///
/// Every accepted credential costs one `write(2)` of a 33-byte record to the
/// journal ([`PersistentReplay::record`]), made before the door opens; the
/// image is rewritten only when the journal has grown
/// ([`PersistentReplay::compact_if_due`], called after the door opened) and
/// at start-up. Nothing is fsynced: a daemon crash or restart keeps every
/// completed write (same page cache), and a host crash is caught by the
/// boot-id check in [`PersistentReplay::open`].
pub struct PersistentReplay {
    /// The cache.
    pub cache: ReplayCache,
    path: PathBuf,
    journal_path: PathBuf,
    /// Opened with `O_APPEND`: each record lands at the end in one write.
    journal: std::fs::File,
    /// Records appended since the last compaction.
    journal_records: usize,
    /// An append failed, possibly after writing part of a record: the next
    /// record would be misaligned behind it, so compact first.
    journal_dirty: bool,
    /// After a first start: credentials made before this unix second are
    /// refused (see [`PersistentReplay::not_before`]).
    not_before: Option<u64>,
    /// The state directory, checked and held open.
    dir: crate::safe_fs::CheckedDir,
}

impl PersistentReplay {
    /// Loads `state_dir/replay.bin`, replays `state_dir/replay.journal` on
    /// top of it and compacts at once (so every later start finds an
    /// image). When the state directory does not exist yet or is empty,
    /// this is a first start and the cache starts empty. When the directory
    /// exists but the image is missing or unreadable, or the journal is
    /// corrupt, it fails closed: every credential still valid at start-up
    /// is refused (`raise_floor(now + widest window)`), so nothing captured
    /// before the restart can be replayed; the returned warning says so.
    pub fn open(
        state_dir: &Path,
        capacity: usize,
        widest_window: u64,
        now_unix: u64,
    ) -> Result<(Self, Option<String>), AuthError> {
        let unsafe_state = |e: crate::safe_fs::SafeFsError| AuthError::State {
            path: state_dir.display().to_string(),
            source: e.into_io(),
        };
        // Nothing ever written there (no directory, or an empty one): a first
        // start, not a lost image.
        let existed = std::fs::symlink_metadata(state_dir).is_ok();
        // Every file below is reached through this descriptor, never by
        // path: the directory may belong to the daemon user, who must not be
        // able to redirect a write made as root with a planted link.
        let dir =
            crate::safe_fs::CheckedDir::open(state_dir, true, crate::privilege::trusted_owner)
                .map_err(unsafe_state)?;
        let first_start = !existed || dir.names().map_err(unsafe_state)?.is_empty();
        let path = state_dir.join(REPLAY_FILE);
        let (cache, warning) = match dir.read(REPLAY_FILE).map_err(unsafe_state)? {
            Some(bytes) => match ReplayCache::from_bytes(&bytes, capacity) {
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
            None if first_start => (ReplayCache::new(capacity), None),
            None => {
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
        };
        let (mut cache, mut warning) = (cache, warning);
        // The journal holds what was accepted since the image was written.
        // A missing one is normal (first start, or a state directory from a
        // version without journal, which rewrote the image per credential).
        let journal_path = state_dir.join(JOURNAL_FILE);
        let mut torn = None;
        if let Some(bytes) = dir.read(JOURNAL_FILE).map_err(unsafe_state)? {
            match cache.apply_journal(&bytes) {
                Ok(summary) if summary.torn_bytes > 0 => {
                    torn = Some(format!(
                        "ignored the last {} bytes of {}: an append cut short by a crash (its credential opened nothing)",
                        summary.torn_bytes,
                        journal_path.display()
                    ));
                }
                Ok(_) => {}
                Err(e) => {
                    cache.raise_floor(now_unix + widest_window);
                    warning.get_or_insert_with(|| {
                        format!(
                            "{} is unusable ({e}); refusing every credential still valid now",
                            journal_path.display()
                        )
                    });
                }
            }
        }
        // Neither file is fsynced (that would cost ~1 ms per grant): a
        // process crash or restart keeps them (same page cache), but a host
        // crash may lose the last writes. So state from another boot cannot
        // vouch for recent credentials: fail closed.
        let boot_now = std::fs::read_to_string(BOOT_ID).unwrap_or_default();
        let boot_then = dir
            .read(BOOT_FILE)
            .map_err(unsafe_state)?
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        if !first_start && boot_then.as_deref() != Some(boot_now.as_str()) {
            cache.raise_floor(now_unix + widest_window);
            warning.get_or_insert_with(|| {
                "the host rebooted since the replay image was written; refusing every credential still valid now".to_string()
            });
        }
        dir.write_atomic(BOOT_FILE, boot_now.as_bytes(), true)
            .map_err(unsafe_state)?;
        // Stored expiries were computed with the old window: a wider one
        // would let credentials outlive their entries, so fail closed.
        let old_window = dir
            .read(WINDOW_FILE)
            .map_err(unsafe_state)?
            .and_then(|t| String::from_utf8_lossy(&t).trim().parse::<u64>().ok());
        if old_window.is_some_and(|old| widest_window > old) {
            cache.raise_floor(now_unix + widest_window);
            warning.get_or_insert_with(|| {
                format!("the time window grew to {widest_window}s since the last run; refusing every credential still valid now")
            });
        }
        dir.write_atomic(WINDOW_FILE, format!("{widest_window}\n").as_bytes(), false)
            .map_err(unsafe_state)?;
        // Not truncated here: until the compaction below has written the
        // image, the journal's records exist nowhere else.
        let journal = dir.open_append(JOURNAL_FILE).map_err(unsafe_state)?;
        // A first start cannot tell a fresh install from a lost state
        // directory, whose credentials may have been captured: refuse
        // everything made before now, for as long as any of it could still
        // be valid, also across the restarts in between.
        let not_before = if first_start {
            dir.write_atomic(FIRST_START_FILE, format!("{now_unix}\n").as_bytes(), true)
                .map_err(unsafe_state)?;
            Some(now_unix)
        } else {
            let kept = dir
                .read(FIRST_START_FILE)
                .map_err(unsafe_state)?
                .and_then(|t| String::from_utf8_lossy(&t).trim().parse::<u64>().ok())
                .filter(|&t| now_unix < t.saturating_add(widest_window));
            if kept.is_none() {
                let _ = dir.remove(FIRST_START_FILE);
            }
            kept
        };
        let mut this = PersistentReplay {
            cache,
            path,
            journal_path,
            journal,
            journal_records: 0,
            journal_dirty: false,
            not_before,
            dir,
        };
        this.write_image()?;
        // From here on the journal always starts with a valid header:
        // compactions cut it back to the header, appends add after it.
        let reset = |f: &mut std::fs::File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.write_all(&JOURNAL_HEADER)
        };
        reset(&mut this.journal).map_err(|e| this.journal_error(e))?;
        Ok((this, warning.or(torn)))
    }

    /// After a first start (no state directory, or an empty one), the unix
    /// second it happened, while a credential made before it could still
    /// be valid: such credentials are refused (reason `before_first_start`),
    /// since the state that would have caught their replay may have been
    /// lost. `None` otherwise.
    pub fn not_before(&self) -> Option<u64> {
        self.not_before
    }

    /// True when a credential made at unix second `made` is refused by
    /// [`PersistentReplay::not_before`].
    pub fn before_first_start(&self, made: u64) -> bool {
        self.not_before.is_some_and(|t| made < t)
    }

    /// Persists `key`, just inserted into [`PersistentReplay::cache`] with
    /// expiry `expires`: one record appended to the journal with a single
    /// `write(2)`. Call it before opening the door, and do not open it on an
    /// error (fail closed).
    ///
    /// A crash during the write leaves at most a partial trailing record,
    /// which [`PersistentReplay::open`] ignores: that is safe because the
    /// write did not complete, so the door was not opened for it. After a
    /// failed write, the journal is compacted before the next record, so
    /// that a partial record is never followed by complete ones.
    pub fn record(&mut self, key: ReplayKey, expires: u64) -> Result<(), AuthError> {
        if self.journal_dirty {
            self.compact()?;
        }
        let record = journal_record(&key, expires);
        let written = loop {
            match self.journal.write(&record) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match written {
            Ok(n) if n == record.len() => {
                self.journal_records += 1;
                Ok(())
            }
            Ok(n) => {
                self.journal_dirty = true;
                Err(self.journal_error(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    format!("short write: {n} of {} bytes", record.len()),
                )))
            }
            Err(e) => {
                self.journal_dirty = true;
                Err(self.journal_error(e))
            }
        }
    }

    /// Compacts when the journal holds enough records (see
    /// `COMPACT_MIN_RECORDS`); returns whether it did. Call it off the path
    /// to the door (after opening it): it rewrites the whole image. An
    /// error is not fatal: the journal keeps every record, and the next
    /// call tries again.
    pub fn compact_if_due(&mut self) -> Result<bool, AuthError> {
        if self.journal_records < COMPACT_MIN_RECORDS.max(self.cache.len()) {
            return Ok(false);
        }
        self.compact().map(|()| true)
    }

    /// Writes the image, then empties the journal down to its header. A
    /// crash between the two leaves records that the new image holds too:
    /// replaying them changes nothing. Not fsynced: see the boot-id check
    /// in [`PersistentReplay::open`].
    pub fn compact(&mut self) -> Result<(), AuthError> {
        self.write_image()?;
        // ftruncate is atomic: a crash leaves the old journal (whose records
        // the image now holds) or the bare header, never a part of a record.
        // It also drops a partial record left by a failed append. Cut to the
        // header, not to zero: ext4 (auto_da_alloc) flushes a file truncated
        // to zero to disk, which costs milliseconds.
        self.journal_dirty = true;
        self.journal
            .set_len(JOURNAL_HEADER.len() as u64)
            .map_err(|e| self.journal_error(e))?;
        self.journal_records = 0;
        self.journal_dirty = false;
        Ok(())
    }

    /// Writes the image: temporary file, then rename, so a crash of the
    /// daemon leaves either the old or the new image.
    fn write_image(&self) -> Result<(), AuthError> {
        self.dir
            .write_atomic(REPLAY_FILE, &self.cache.to_bytes(), false)
            .map_err(|e| AuthError::State {
                path: self.path.display().to_string(),
                source: e.into_io(),
            })
    }

    fn journal_error(&self, source: std::io::Error) -> AuthError {
        AuthError::State {
            path: self.journal_path.display().to_string(),
            source,
        }
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
    fn a_first_start_refuses_credentials_made_before_it_across_restarts() {
        let d = dir("first");
        let now = 1_800_000_000;
        let (r, _) = PersistentReplay::open(&d, 16, 60, now).unwrap();
        assert!(r.before_first_start(now - 1), "captured before the loss");
        assert!(!r.before_first_start(now));
        drop(r);
        // A restart 10 s later still knows: the capture is still in window.
        let (r, _) = PersistentReplay::open(&d, 16, 60, now + 10).unwrap();
        assert!(r.before_first_start(now - 1));
        drop(r);
        // Once nothing made before it can be valid, it is forgotten.
        let (r, _) = PersistentReplay::open(&d, 16, 60, now + 60).unwrap();
        assert_eq!(r.not_before(), None);
        assert!(!d.join(FIRST_START_FILE).exists());
        drop(r);
        // Losing the whole directory is a first start again.
        std::fs::remove_dir_all(&d).unwrap();
        let (r, _) = PersistentReplay::open(&d, 16, 60, now + 100).unwrap();
        assert!(r.before_first_start(now + 99));
        std::fs::remove_dir_all(&d).unwrap();
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
        r.record(key, now + 60).unwrap();

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

    fn journal_len(d: &Path) -> u64 {
        std::fs::metadata(d.join(JOURNAL_FILE)).unwrap().len()
    }

    fn image(d: &Path) -> ReplayCache {
        ReplayCache::from_bytes(&std::fs::read(d.join(REPLAY_FILE)).unwrap(), 16).unwrap()
    }

    /// Inserts and records `n` fresh keys (ids `base..base + n`).
    fn accept(r: &mut PersistentReplay, base: u8, n: u8, expires: u64, now: u64) -> Vec<ReplayKey> {
        (base..base + n)
            .map(|i| {
                let key = ReplayKey::spa([i; 16]);
                r.cache.check_and_insert(key, expires, now).unwrap();
                r.record(key, expires).unwrap();
                key
            })
            .collect()
    }

    const RECORD: u64 = sesame_core::replay::JOURNAL_RECORD_LEN as u64;
    const HEADER: u64 = JOURNAL_HEADER.len() as u64;

    #[test]
    fn journalled_credentials_are_refused_after_a_restart() {
        let d = dir("journal");
        let now = 1_800_000_000;
        let (mut r, _) = PersistentReplay::open(&d, 16, 60, now).unwrap();
        assert_eq!(journal_len(&d), HEADER, "open leaves an empty journal");
        let keys = accept(&mut r, 1, 3, now + 60, now);
        // One record per credential; the image is not rewritten.
        assert_eq!(journal_len(&d), HEADER + 3 * RECORD);
        assert!(image(&d).is_empty());
        drop(r); // as a crash: no compaction on the way out

        let (mut r2, warning) = PersistentReplay::open(&d, 16, 60, now + 1).unwrap();
        assert_eq!(warning, None);
        for key in &keys {
            assert_eq!(
                r2.cache.check_and_insert(*key, now + 60, now + 1),
                Err(sesame_core::replay::ReplayError::Replayed),
                "{key:?}"
            );
        }
        // Open compacted: the image holds them, the journal is empty again.
        assert!(keys.iter().all(|k| image(&d).contains(k)));
        assert_eq!(journal_len(&d), HEADER);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn torn_trailing_journal_record_is_ignored() {
        let d = dir("torn");
        let now = 1_800_000_000;
        let (mut r, _) = PersistentReplay::open(&d, 16, 60, now).unwrap();
        let keys = accept(&mut r, 1, 2, now + 60, now);
        drop(r);
        // A crash in the middle of the third append: 10 of its 33 bytes.
        let torn = ReplayKey::spa([3; 16]);
        let record = sesame_core::replay::journal_record(&torn, now + 60);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(d.join(JOURNAL_FILE))
            .unwrap();
        f.write_all(&record[..10]).unwrap();
        drop(f);

        let (mut r2, warning) = PersistentReplay::open(&d, 16, 60, now + 1).unwrap();
        let warning = warning.unwrap();
        assert!(warning.contains("last 10 bytes"), "{warning}");
        assert!(keys.iter().all(|k| r2.cache.contains(k)));
        // Its write never completed, so it opened nothing: not refused.
        assert!(!r2.cache.contains(&torn));
        assert_eq!(
            r2.cache.floor(),
            0,
            "a torn append is no reason to fail closed"
        );
        // The partial record is gone: the next record is read back whole.
        assert_eq!(journal_len(&d), HEADER);
        let more = accept(&mut r2, 4, 1, now + 61, now + 1);
        drop(r2);
        let (r3, warning) = PersistentReplay::open(&d, 16, 60, now + 2).unwrap();
        assert_eq!(warning, None);
        assert!(r3.cache.contains(&more[0]));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn compaction_keeps_entries_and_empties_the_journal() {
        let d = dir("compact");
        let now = 1_800_000_000;
        let (mut r, _) = PersistentReplay::open(&d, 16, 60, now).unwrap();
        let keys = accept(&mut r, 1, 3, now + 60, now);
        assert!(!r.compact_if_due().unwrap(), "3 records are not enough");
        assert_eq!(journal_len(&d), HEADER + 3 * RECORD);
        r.compact().unwrap();
        assert_eq!(journal_len(&d), HEADER);
        assert!(keys.iter().all(|k| image(&d).contains(k)));
        // Appends after a compaction go after the header again.
        let more = accept(&mut r, 4, 1, now + 60, now);
        assert_eq!(journal_len(&d), HEADER + RECORD);
        drop(r);
        let (r2, warning) = PersistentReplay::open(&d, 16, 60, now + 1).unwrap();
        assert_eq!(warning, None);
        assert!(keys.iter().chain(&more).all(|k| r2.cache.contains(k)));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn compaction_is_due_after_enough_records() {
        let d = dir("due");
        let now = 1_800_000_000;
        let (mut r, _) = PersistentReplay::open(&d, 8, 60, now).unwrap();
        let key = ReplayKey::spa([1; 16]);
        r.cache.check_and_insert(key, now + 60, now).unwrap();
        // The same record over and over: only the count matters here.
        for _ in 0..COMPACT_MIN_RECORDS - 1 {
            r.record(key, now + 60).unwrap();
        }
        assert!(!r.compact_if_due().unwrap());
        r.record(key, now + 60).unwrap();
        assert!(r.compact_if_due().unwrap());
        assert_eq!(journal_len(&d), HEADER);
        assert!(image(&d).contains(&key));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn corrupt_journal_fails_closed() {
        let d = dir("corrupt-journal");
        let now = 1_800_000_000;
        let (mut r, _) = PersistentReplay::open(&d, 16, 60, now).unwrap();
        accept(&mut r, 1, 2, now + 60, now);
        drop(r);
        // A bit flip in the first, complete record: not a torn append.
        let path = d.join(JOURNAL_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER as usize + 5] ^= 1;
        std::fs::write(&path, &bytes).unwrap();

        let (mut r2, warning) = PersistentReplay::open(&d, 16, 60, now + 1).unwrap();
        let warning = warning.unwrap();
        assert!(warning.contains("replay.journal is unusable"), "{warning}");
        // Whatever the journal held, it was valid no later than now + window.
        assert!(r2
            .cache
            .check_and_insert(ReplayKey::spa([9; 16]), now + 61, now + 1)
            .is_err());
        assert!(r2
            .cache
            .check_and_insert(ReplayKey::spa([9; 16]), now + 62, now + 1)
            .is_ok());
        // A bad magic is treated the same way.
        drop(r2);
        std::fs::write(&path, b"not a journal at all, and long enough").unwrap();
        let (_, warning) = PersistentReplay::open(&d, 16, 60, now + 2).unwrap();
        assert!(warning.unwrap().contains("bad magic"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn failed_append_refuses_and_compacts_before_the_next() {
        let d = dir("failed-append");
        let now = 1_800_000_000;
        let (mut r, _) = PersistentReplay::open(&d, 16, 60, now).unwrap();
        let path = d.join(JOURNAL_FILE);
        // A handle that cannot write: the append fails.
        let good = std::mem::replace(&mut r.journal, std::fs::File::open(&path).unwrap());
        let first = ReplayKey::spa([1; 16]);
        r.cache.check_and_insert(first, now + 60, now).unwrap();
        let err = r.record(first, now + 60).unwrap_err();
        assert!(err.to_string().contains("replay.journal"), "{err}");
        // As if part of the record had reached the file.
        r.journal = good;
        r.journal.write_all(&[0xee; 7]).unwrap();

        // The next record compacts first, so it is not misaligned behind
        // the partial one.
        let second = accept(&mut r, 2, 1, now + 60, now);
        assert_eq!(journal_len(&d), HEADER + RECORD);
        drop(r);
        let (r2, warning) = PersistentReplay::open(&d, 16, 60, now + 1).unwrap();
        assert_eq!(warning, None);
        assert!(r2.cache.contains(&first) && r2.cache.contains(&second[0]));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
