//! A bounded replay cache for single-use credentials.
//!
//! Remembers which SPA packets (by their 16-byte payload nonce), which TOTP
//! sequences (by door, time step and sequence) and which fwknop requests (by
//! their inner digest) have already opened a door, for as long as they would
//! otherwise still be accepted. Every entry carries an *expiry*: the last
//! unix second at which the credential it stands for would pass the time
//! check. After that second, the time check alone refuses it,
//! so the entry can go.
//!
//! # Safety over availability: the floor
//!
//! The cache never forgets an entry without also refusing everything that
//! entry could match. It keeps a **floor**: every credential whose expiry is
//! at or below the floor is refused ([`ReplayError::Forgotten`]), whether or
//! not it was ever seen. Whenever an entry leaves the cache, the floor rises
//! to that entry's expiry:
//!
//! - *purged because expired* (`expiry < now`): in normal operation the floor
//!   stays below `now`, and every credential that passes the time check has an
//!   expiry of at least `now`, so this costs nothing. It matters when the wall
//!   clock steps back: a credential whose entry was purged stays refused.
//! - *evicted because the cache is full*: only authenticated credentials are
//!   ever inserted, so this takes more legitimate openings within one time
//!   window than the capacity. The entry with the smallest expiry is evicted
//!   and the floor rises to its expiry, which amounts to shrinking the time
//!   window for older credentials: they are refused, fresh ones still pass.
//!   When the new credential's expiry is not above that smallest expiry,
//!   nothing is evicted and the new credential is refused
//!   ([`ReplayError::Full`]).
//!
//! Either way a replay is never accepted because the cache ran out of room.
//!
//! # Persistence
//!
//! [`ReplayCache::to_bytes`] produces a small versioned binary image with a
//! SHA-256 checksum (layout in `docs/spa-protocol.md`); the daemon writes it
//! atomically (temporary file, rename) and reads it back with
//! [`ReplayCache::from_bytes`] on start, so a packet captured before a restart
//! is still refused after it. When the image is missing or unreadable, the
//! daemon should call [`ReplayCache::raise_floor`] with `now + window` (the
//! largest expiry any credential accepted before the restart can have): every
//! credential made before the restart is then refused, fresh ones pass. The
//! same applies when the time window grows between runs: entries were stored
//! with expiries computed from the old window.
//!
//! # Journal
//!
//! Rewriting the whole image for every accepted credential costs hundreds of
//! microseconds (milliseconds for a large cache) on the path to the door. So
//! the daemon appends one fixed-size record per accepted credential
//! ([`journal_record`], [`JOURNAL_RECORD_LEN`] bytes) to a journal next to the
//! image, before opening the door, and from time to time compacts: writes the
//! image, then empties the journal down to its [`JOURNAL_HEADER`]. On start it
//! loads the image, then replays the journal on top of it with
//! [`ReplayCache::apply_journal`]. Replaying a record is idempotent and only
//! ever makes the cache refuse more ([`ReplayCache::remember`]), so a journal
//! that still holds records already in the image (a crash between the two
//! steps of a compaction) is harmless.
//!
//! Ordering uses [`BTreeMap`]/[`BTreeSet`]: deterministic (no hash seed, and
//! [`ReplayCache::to_bytes`] is byte-for-byte reproducible) and O(log n).
//! [`crate::table::Table`] does not fit here: it orders entries by insertion
//! time on a monotonic clock, while replay entries are ordered by an expiry
//! taken from the credential itself, which arrives out of order.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use sha2::{Digest, Sha256};

use crate::door::Knock;

/// Kind byte of an SPA replay key.
const KIND_SPA: u8 = 1;
/// Kind byte of a TOTP replay key.
const KIND_TOTP: u8 = 2;
/// Kind byte of an fwknop replay key.
const KIND_FWKNOP: u8 = 3;

/// Identifies one single-use credential: an SPA packet, a TOTP sequence or an
/// fwknop request.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplayKey {
    kind: u8,
    /// Whose credential it is (see [`ReplayKey::owner_id`]); 0 when
    /// unattributed. The cache gives each owner a fair share.
    owner: u32,
    id: [u8; 16],
}

impl ReplayKey {
    /// Length of [`ReplayKey::to_bytes`].
    pub const LEN: usize = 21;

    /// The key of an SPA packet: its 16-byte payload nonce.
    pub const fn spa(nonce: [u8; 16]) -> Self {
        ReplayKey {
            kind: KIND_SPA,
            owner: 0,
            id: nonce,
        }
    }

    /// This key, attributed to `owner` (see [`ReplayKey::owner_id`]).
    pub const fn with_owner(mut self, owner: u32) -> Self {
        self.owner = owner;
        self
    }

    /// The owner the key is attributed to (0: none).
    pub const fn owner(&self) -> u32 {
        self.owner
    }

    /// A stable owner id for the credential holder `who` within `scope`
    /// (e.g. an SPA key id, or a door and user name): the first 4 bytes of
    /// SHA-256 over both, never 0.
    pub fn owner_id(scope: &[u8], who: &[u8]) -> u32 {
        let mut h = Sha256::new();
        h.update(b"sesame-replay-owner-v1");
        h.update((scope.len() as u64).to_be_bytes());
        h.update(scope);
        h.update(who);
        let d = h.finalize();
        u32::from_be_bytes([d[0], d[1], d[2], d[3]]).max(1)
    }

    /// The key of a TOTP sequence that opened `door` in time step `step`:
    /// the first 16 bytes of SHA-256 over a domain-separated encoding of the
    /// three. The hash is one-way, so the cache (and its file) never holds a
    /// sequence in the clear.
    pub fn totp(door: &str, step: u64, sequence: &[Knock]) -> Self {
        let mut h = Sha256::new();
        h.update(b"sesame-totp-replay-v1");
        h.update((door.len() as u64).to_be_bytes());
        h.update(door.as_bytes());
        h.update(step.to_be_bytes());
        h.update((sequence.len() as u64).to_be_bytes());
        for knock in sequence {
            h.update([knock.proto.number()]);
            h.update(knock.port.to_be_bytes());
        }
        let digest = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        ReplayKey {
            kind: KIND_TOTP,
            owner: 0,
            id,
        }
    }

    /// The key of an fwknop SPA request: the first 16 bytes of SHA-256 over
    /// a domain tag, the digest's length and the request's inner digest
    /// (`crate::fwknop::FwknopMessage::digest`). The inner digest covers the
    /// whole plaintext (random value, user, timestamp, message), so the key
    /// does not change when a captured request is re-encrypted, re-encoded
    /// or has `U2FsdGVkX1` put back.
    pub fn fwknop(digest: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"sesame-fwknop-replay-v1");
        h.update((digest.len() as u64).to_be_bytes());
        h.update(digest);
        let digest = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        ReplayKey {
            kind: KIND_FWKNOP,
            owner: 0,
            id,
        }
    }

    /// Binary form: the kind byte (1 = SPA, 2 = TOTP, 3 = fwknop), the
    /// owner (big-endian u32), then the 16-byte id.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[0] = self.kind;
        out[1..5].copy_from_slice(&self.owner.to_be_bytes());
        out[5..].copy_from_slice(&self.id);
        out
    }

    /// Parses [`ReplayKey::to_bytes`]; `None` for an unknown kind.
    pub fn from_bytes(bytes: &[u8; Self::LEN]) -> Option<Self> {
        if !matches!(bytes[0], KIND_SPA | KIND_TOTP | KIND_FWKNOP) {
            return None;
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes[5..]);
        Some(ReplayKey {
            kind: bytes[0],
            owner: u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]),
            id,
        })
    }
}

impl fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            KIND_SPA => "spa",
            KIND_TOTP => "totp",
            KIND_FWKNOP => "fwknop",
            _ => "?",
        };
        write!(f, "ReplayKey({kind}:{:08x}:", self.owner)?;
        for b in self.id {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// Why [`ReplayCache::check_and_insert`] refused a credential.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The credential is in the cache: it was used before.
    #[error("replayed: this credential was already used")]
    Replayed,
    /// The credential's expiry is at or below the floor (or already past):
    /// the cache can no longer vouch that it was not used, so it is refused.
    #[error("refused: the replay cache no longer remembers credentials expiring at or before {floor} (restart without state, clock step or full cache)")]
    Forgotten {
        /// The floor at the time of the refusal.
        floor: u64,
    },
    /// The cache is full of entries that expire no sooner than this one.
    #[error("refused: the replay cache is full ({capacity} entries within the time window)")]
    Full {
        /// The cache's capacity.
        capacity: usize,
    },
    /// This credential's owner holds its whole share of the cache: its
    /// own earlier credentials, still valid. Only that owner is refused.
    #[error("refused: this user's share of the replay cache is full ({quota} credentials still within the time window)")]
    OwnerFull {
        /// The owner's share.
        quota: usize,
    },
}

/// Why [`ReplayCache::from_bytes`] rejected an image.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplayStateError {
    /// Shorter than the fixed header and checksum.
    #[error("replay cache image truncated ({0} bytes)")]
    Truncated(usize),
    /// Does not start with `SSMR`.
    #[error("not a replay cache image (bad magic)")]
    BadMagic,
    /// A format version this code does not read.
    #[error("unsupported replay cache image version {0}")]
    UnsupportedVersion(u8),
    /// The length does not match the entry count.
    #[error("replay cache image length {len} does not match its {count} entries")]
    LengthMismatch {
        /// Bytes in the image.
        len: usize,
        /// Entry count in the header.
        count: u32,
    },
    /// The SHA-256 checksum does not match: corrupt or partly written.
    #[error("replay cache image checksum mismatch")]
    BadChecksum,
    /// An entry with an unknown key kind.
    #[error("replay cache image entry {0} is invalid")]
    BadEntry(usize),
    /// The same key appears twice.
    #[error("replay cache image entry {0} is a duplicate")]
    DuplicateEntry(usize),
}

/// Magic of the persisted image.
const STATE_MAGIC: [u8; 4] = *b"SSMR";
/// Version of the persisted image.
const STATE_VERSION: u8 = 2;
/// Magic, version, floor, count.
const STATE_HEADER_LEN: usize = 4 + 1 + 8 + 4;
/// Key and expiry.
const STATE_ENTRY_LEN: usize = ReplayKey::LEN + 8;

/// One entry as the image and the journal store it: key, then expiry
/// (big-endian unix seconds).
fn encode_entry(key: &ReplayKey, expires: u64) -> [u8; STATE_ENTRY_LEN] {
    let mut out = [0u8; STATE_ENTRY_LEN];
    out[..ReplayKey::LEN].copy_from_slice(&key.to_bytes());
    out[ReplayKey::LEN..].copy_from_slice(&expires.to_be_bytes());
    out
}

/// Reads an entry written by [`encode_entry`]; None for an unknown key kind
/// (or a slice of the wrong length).
fn decode_entry(bytes: &[u8]) -> Option<(ReplayKey, u64)> {
    let (key, expires) = bytes.split_at_checked(ReplayKey::LEN)?;
    let key = ReplayKey::from_bytes(key.try_into().ok()?)?;
    Some((key, u64::from_be_bytes(expires.try_into().ok()?)))
}
/// SHA-256.
const STATE_CHECKSUM_LEN: usize = 32;

/// First bytes of a replay journal: magic `SSMJ`, version 2, three zero
/// bytes.
pub const JOURNAL_HEADER: [u8; 8] = *b"SSMJ\x02\0\0\0";
/// Length of one journal record: key (21), expiry (8, big-endian), check (8).
pub const JOURNAL_RECORD_LEN: usize = STATE_ENTRY_LEN + JOURNAL_CHECK_LEN;
/// Bytes of SHA-256 kept as a record's check.
const JOURNAL_CHECK_LEN: usize = 8;
/// Domain tag of a record's check.
const JOURNAL_CHECK_TAG: &[u8] = b"sesame-replay-journal-v1";

/// The check of a record's first 29 bytes.
fn journal_check(body: &[u8]) -> [u8; JOURNAL_CHECK_LEN] {
    let mut h = Sha256::new();
    h.update(JOURNAL_CHECK_TAG);
    h.update(body);
    let digest = h.finalize();
    let mut out = [0u8; JOURNAL_CHECK_LEN];
    out.copy_from_slice(&digest[..JOURNAL_CHECK_LEN]);
    out
}

/// One journal record: `key` was accepted and must be refused until
/// `expires` (inclusive). Layout: [`ReplayKey::to_bytes`], the expiry
/// (big-endian u64), then the first 8 bytes of
/// `SHA-256("sesame-replay-journal-v1" || key || expiry)`.
pub fn journal_record(key: &ReplayKey, expires: u64) -> [u8; JOURNAL_RECORD_LEN] {
    let mut out = [0u8; JOURNAL_RECORD_LEN];
    out[..STATE_ENTRY_LEN].copy_from_slice(&encode_entry(key, expires));
    let check = journal_check(&out[..STATE_ENTRY_LEN]);
    out[STATE_ENTRY_LEN..].copy_from_slice(&check);
    out
}

/// What [`ReplayCache::apply_journal`] found.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalSummary {
    /// Complete records replayed.
    pub records: usize,
    /// Bytes at the end that form no complete record (or no complete
    /// header): an append cut short by a crash. They were ignored.
    pub torn_bytes: usize,
}

/// Why [`ReplayCache::apply_journal`] rejected a journal.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplayJournalError {
    /// Does not start with `SSMJ`.
    #[error("not a replay journal (bad magic)")]
    BadMagic,
    /// A format version this code does not read.
    #[error("unsupported replay journal version {0}")]
    UnsupportedVersion(u8),
    /// A complete record whose check does not match: corrupt.
    #[error("replay journal record {0} is corrupt (check mismatch)")]
    BadChecksum(usize),
    /// A complete record with an unknown key kind.
    #[error("replay journal record {0} is invalid")]
    BadRecord(usize),
}

/// The bounded replay cache. See the module docs.
#[derive(Clone, PartialEq, Eq)]
pub struct ReplayCache {
    capacity: usize,
    /// Key → expiry.
    entries: BTreeMap<ReplayKey, u64>,
    /// (expiry, key), soonest first.
    by_expiry: BTreeSet<(u64, ReplayKey)>,
    /// Every credential with an expiry at or below this is refused.
    floor: u64,
    /// Most live entries one owner may hold ([`ReplayCache::set_owners`]).
    quota: usize,
    /// Live entries per owner.
    owned: BTreeMap<u32, usize>,
}

/// The smallest share of the cache an owner gets, however many owners
/// there are: credentials a busy user may use within one time window.
pub const MIN_OWNER_QUOTA: usize = 256;

impl fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayCache")
            .field("len", &self.entries.len())
            .field("capacity", &self.capacity)
            .field("floor", &self.floor)
            .finish()
    }
}

impl ReplayCache {
    /// Default capacity: credentials accepted within one time window.
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// An empty cache holding at most `capacity` entries (0 is taken as 1),
    /// with a floor of 0.
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            capacity: capacity.max(1),
            entries: BTreeMap::new(),
            by_expiry: BTreeSet::new(),
            floor: 0,
            quota: capacity.max(1),
            owned: BTreeMap::new(),
        }
    }

    /// Shares the cache fairly among `owners` credential holders: each may
    /// hold at most `capacity / owners` live entries (at least
    /// [`MIN_OWNER_QUOTA`]), so one key holder who floods valid requests
    /// fills only their own share and is refused alone
    /// ([`ReplayError::OwnerFull`]), never evicting or blocking anyone
    /// else's. The capacity grows to `owners · MIN_OWNER_QUOTA` if that is
    /// larger, so that the shares always fit.
    pub fn set_owners(&mut self, owners: usize) {
        let owners = owners.max(1);
        self.capacity = self.capacity.max(owners.saturating_mul(MIN_OWNER_QUOTA));
        self.quota = (self.capacity / owners).max(MIN_OWNER_QUOTA);
    }

    /// The share of one owner (see [`ReplayCache::set_owners`]).
    pub fn quota(&self) -> usize {
        self.quota
    }

    fn insert_entry(&mut self, key: ReplayKey, expires: u64) {
        if self.entries.insert(key, expires).is_none() {
            *self.owned.entry(key.owner).or_default() += 1;
        }
        self.by_expiry.insert((expires, key));
    }

    fn forget_entry(&mut self, key: &ReplayKey) {
        if self.entries.remove(key).is_some() {
            if let Some(n) = self.owned.get_mut(&key.owner) {
                *n -= 1;
                if *n == 0 {
                    self.owned.remove(&key.owner);
                }
            }
        }
    }

    /// Number of remembered credentials.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Most entries kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Every credential with an expiry at or below this is refused.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// True when `key` is remembered.
    pub fn contains(&self, key: &ReplayKey) -> bool {
        self.entries.contains_key(key)
    }

    /// Refuses every credential with an expiry at or below `floor` from now
    /// on (the floor never goes down). For a restart whose saved image was
    /// lost: `raise_floor(now + window)`.
    pub fn raise_floor(&mut self, floor: u64) {
        self.floor = self.floor.max(floor);
        while let Some(&(expiry, key)) = self.by_expiry.first() {
            if expiry > self.floor {
                break;
            }
            self.by_expiry.pop_first();
            self.forget_entry(&key);
        }
    }

    /// Forgets entries whose expiry is before `now`, raising the floor to the
    /// latest of them. Returns how many went.
    pub fn purge(&mut self, now: u64) -> usize {
        let mut purged = 0;
        while let Some(&(expiry, key)) = self.by_expiry.first() {
            if expiry >= now {
                break;
            }
            self.by_expiry.pop_first();
            self.forget_entry(&key);
            self.floor = self.floor.max(expiry);
            purged += 1;
        }
        purged
    }

    /// Records the use of the credential `key`, valid until `expires` (unix
    /// seconds, inclusive), at time `now`, unless it was used before or the
    /// cache cannot vouch for it. Purges expired entries first.
    ///
    /// Call this only for credentials that passed every other check, so that
    /// nobody without a key can fill the cache.
    pub fn check_and_insert(
        &mut self,
        key: ReplayKey,
        expires: u64,
        now: u64,
    ) -> Result<(), ReplayError> {
        self.purge(now);
        if self.entries.contains_key(&key) {
            return Err(ReplayError::Replayed);
        }
        if expires <= self.floor || expires < now {
            return Err(ReplayError::Forgotten { floor: self.floor });
        }
        if key.owner != 0 && self.owned.get(&key.owner).copied().unwrap_or(0) >= self.quota {
            return Err(ReplayError::OwnerFull { quota: self.quota });
        }
        if self.entries.len() >= self.capacity {
            let Some(&(soonest, old)) = self.by_expiry.first() else {
                return Err(ReplayError::Full {
                    capacity: self.capacity,
                });
            };
            if expires <= soonest {
                return Err(ReplayError::Full {
                    capacity: self.capacity,
                });
            }
            self.by_expiry.pop_first();
            self.forget_entry(&old);
            self.floor = self.floor.max(soonest);
        }
        self.insert_entry(key, expires);
        Ok(())
    }

    /// Remembers that `key` was accepted with expiry `expires`, without the
    /// checks of [`ReplayCache::check_and_insert`]: for entries replayed
    /// from a journal at start-up. It only ever makes the cache refuse more:
    /// an expiry at or below the floor is refused already and is skipped; a
    /// key held already keeps the later of the two expiries; when the cache
    /// is over capacity the soonest entry goes and the floor rises to its
    /// expiry, as when loading a large image into a small cache.
    pub fn remember(&mut self, key: ReplayKey, expires: u64) {
        if expires <= self.floor {
            return;
        }
        if let Some(old) = self.entries.get(&key).copied() {
            if old >= expires {
                return;
            }
            self.by_expiry.remove(&(old, key));
        }
        self.insert_entry(key, expires);
        self.shrink_to_capacity();
    }

    /// Over capacity, forgets the soonest entries and raises the floor past
    /// them (as an eviction does), so what is forgotten is still refused.
    fn shrink_to_capacity(&mut self) {
        while self.entries.len() > self.capacity {
            let Some((expiry, old)) = self.by_expiry.pop_first() else {
                break;
            };
            self.forget_entry(&old);
            self.floor = self.floor.max(expiry);
        }
    }

    /// Replays a journal (see the module docs) on top of this cache with
    /// [`ReplayCache::remember`]. The whole journal is checked before
    /// anything is applied, so on an error the cache is unchanged.
    ///
    /// An empty journal, or a trailing part shorter than a record (or than
    /// the header), is not an error: it is counted in
    /// [`JournalSummary::torn_bytes`] and ignored. The daemon appends each
    /// record with one write before it opens the door, so a record that is
    /// not complete belongs to a write that never completed, and that
    /// credential opened nothing. A complete record that fails its check is
    /// corruption, not a torn append: the caller should fail closed.
    pub fn apply_journal(&mut self, bytes: &[u8]) -> Result<JournalSummary, ReplayJournalError> {
        let header = JOURNAL_HEADER.len();
        if bytes.len() < header {
            if JOURNAL_HEADER.starts_with(bytes) {
                return Ok(JournalSummary {
                    records: 0,
                    torn_bytes: bytes.len(),
                });
            }
            return Err(ReplayJournalError::BadMagic);
        }
        if bytes[..4] != JOURNAL_HEADER[..4] {
            return Err(ReplayJournalError::BadMagic);
        }
        if bytes[4..header] != JOURNAL_HEADER[4..] {
            return Err(ReplayJournalError::UnsupportedVersion(bytes[4]));
        }
        let records = bytes[header..].chunks_exact(JOURNAL_RECORD_LEN);
        let torn_bytes = records.remainder().len();
        let mut parsed = Vec::with_capacity(records.len());
        for (i, record) in records.enumerate() {
            let (body, check) = record.split_at(STATE_ENTRY_LEN);
            if journal_check(body) != check {
                return Err(ReplayJournalError::BadChecksum(i));
            }
            parsed.push(decode_entry(body).ok_or(ReplayJournalError::BadRecord(i))?);
        }
        for &(key, expires) in &parsed {
            self.remember(key, expires);
        }
        Ok(JournalSummary {
            records: parsed.len(),
            torn_bytes,
        })
    }

    /// The persisted image: see `docs/spa-protocol.md`. Entries are written
    /// soonest expiry first, so equal caches give equal bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            STATE_HEADER_LEN + self.entries.len() * STATE_ENTRY_LEN + STATE_CHECKSUM_LEN,
        );
        out.extend_from_slice(&STATE_MAGIC);
        out.push(STATE_VERSION);
        out.extend_from_slice(&self.floor.to_be_bytes());
        let count = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for (expiry, key) in self.by_expiry.iter().take(count as usize) {
            out.extend_from_slice(&encode_entry(key, *expiry));
        }
        let checksum = Sha256::digest(&out);
        out.extend_from_slice(&checksum);
        out
    }

    /// Reads an image made by [`ReplayCache::to_bytes`] into a cache of
    /// `capacity` entries. When the image holds more, the entries with the
    /// latest expiries are kept and the floor rises past the others, as for
    /// an eviction.
    pub fn from_bytes(bytes: &[u8], capacity: usize) -> Result<Self, ReplayStateError> {
        let len = bytes.len();
        if len < STATE_HEADER_LEN + STATE_CHECKSUM_LEN {
            return Err(ReplayStateError::Truncated(len));
        }
        if bytes[..4] != STATE_MAGIC {
            return Err(ReplayStateError::BadMagic);
        }
        if bytes[4] != STATE_VERSION {
            return Err(ReplayStateError::UnsupportedVersion(bytes[4]));
        }
        let floor = u64::from_be_bytes(bytes[5..13].try_into().expect("8 bytes"));
        let count = u32::from_be_bytes(bytes[13..17].try_into().expect("4 bytes"));
        let expected = (count as usize)
            .checked_mul(STATE_ENTRY_LEN)
            .and_then(|n| n.checked_add(STATE_HEADER_LEN + STATE_CHECKSUM_LEN));
        if expected != Some(len) {
            return Err(ReplayStateError::LengthMismatch { len, count });
        }
        let (body, checksum) = bytes.split_at(len - STATE_CHECKSUM_LEN);
        if Sha256::digest(body).as_slice() != checksum {
            return Err(ReplayStateError::BadChecksum);
        }
        let mut cache = ReplayCache::new(capacity);
        cache.floor = floor;
        for (i, entry) in body[STATE_HEADER_LEN..]
            .chunks_exact(STATE_ENTRY_LEN)
            .enumerate()
        {
            let (key, expiry) = decode_entry(entry).ok_or(ReplayStateError::BadEntry(i))?;
            if cache.entries.contains_key(&key) {
                return Err(ReplayStateError::DuplicateEntry(i));
            }
            cache.insert_entry(key, expiry);
        }
        // Entries at or below the floor are refused anyway.
        cache.raise_floor(floor);
        cache.shrink_to_capacity();
        Ok(cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::door::Proto;

    fn key(n: u8) -> ReplayKey {
        ReplayKey::spa([n; 16])
    }

    #[test]
    fn second_use_is_refused() {
        let mut cache = ReplayCache::new(10);
        assert_eq!(cache.check_and_insert(key(1), 160, 100), Ok(()));
        assert_eq!(
            cache.check_and_insert(key(1), 160, 101),
            Err(ReplayError::Replayed)
        );
        assert_eq!(cache.check_and_insert(key(2), 160, 101), Ok(()));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn expired_entries_go_and_stay_refused() {
        let mut cache = ReplayCache::new(10);
        cache.check_and_insert(key(1), 160, 100).unwrap();
        // Still remembered on its last valid second.
        assert_eq!(cache.purge(160), 0);
        assert!(cache.contains(&key(1)));
        assert_eq!(cache.purge(161), 1);
        assert!(cache.is_empty());
        assert_eq!(cache.floor(), 160);
        // A clock stepped back cannot bring it back.
        assert_eq!(
            cache.check_and_insert(key(1), 160, 120),
            Err(ReplayError::Forgotten { floor: 160 })
        );
        // Fresh credentials still pass.
        assert_eq!(cache.check_and_insert(key(2), 161, 120), Ok(()));
    }

    #[test]
    fn already_expired_credential_is_refused() {
        let mut cache = ReplayCache::new(10);
        assert_eq!(
            cache.check_and_insert(key(1), 99, 100),
            Err(ReplayError::Forgotten { floor: 0 })
        );
        assert!(cache.is_empty());
    }

    #[test]
    fn full_cache_evicts_soonest_and_raises_floor() {
        let mut cache = ReplayCache::new(3);
        cache.check_and_insert(key(1), 150, 100).unwrap();
        cache.check_and_insert(key(2), 140, 100).unwrap();
        cache.check_and_insert(key(3), 160, 100).unwrap();
        // Full: key 2 (expiry 140) goes and the floor rises to 140.
        assert_eq!(cache.check_and_insert(key(4), 170, 100), Ok(()));
        assert_eq!(cache.len(), 3);
        assert!(!cache.contains(&key(2)));
        assert_eq!(cache.floor(), 140);
        // Key 2 is still refused, though no longer remembered.
        assert_eq!(
            cache.check_and_insert(key(2), 140, 100),
            Err(ReplayError::Forgotten { floor: 140 })
        );
        // Not newer than anything held: refused, nothing evicted.
        assert_eq!(
            cache.check_and_insert(key(5), 150, 100),
            Err(ReplayError::Full { capacity: 3 })
        );
        assert!(cache.contains(&key(1)));
        // Replays of held entries are still replays.
        assert_eq!(
            cache.check_and_insert(key(4), 170, 100),
            Err(ReplayError::Replayed)
        );
    }

    #[test]
    fn bytes_round_trip_still_refuses() {
        let mut cache = ReplayCache::new(10);
        cache.check_and_insert(key(1), 160, 100).unwrap();
        cache.check_and_insert(key(2), 150, 100).unwrap();
        let totp = ReplayKey::totp(
            "ssh",
            7,
            &[Knock {
                port: 4000,
                proto: Proto::Tcp,
            }],
        );
        cache.check_and_insert(totp, 155, 100).unwrap();
        cache.raise_floor(20);
        let bytes = cache.to_bytes();
        assert_eq!(bytes.len(), 17 + 3 * 29 + 32);
        let mut back = ReplayCache::from_bytes(&bytes, 10).unwrap();
        assert_eq!(back, cache);
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(back.floor(), 20);
        assert_eq!(
            back.check_and_insert(key(1), 160, 101),
            Err(ReplayError::Replayed)
        );
        assert_eq!(
            back.check_and_insert(totp, 155, 101),
            Err(ReplayError::Replayed)
        );
        assert_eq!(back.check_and_insert(key(3), 160, 101), Ok(()));
    }

    #[test]
    fn each_owner_fills_only_its_own_share() {
        let mut cache = ReplayCache::new(1_000);
        cache.set_owners(2);
        assert_eq!(cache.quota(), 500);
        let (a, b) = (
            ReplayKey::owner_id(b"t", b"a"),
            ReplayKey::owner_id(b"t", b"b"),
        );
        let k = |owner: u32, i: u32| {
            let mut n = [0u8; 16];
            n[..4].copy_from_slice(&i.to_be_bytes());
            ReplayKey::spa(n).with_owner(owner)
        };
        // A floods with credentials that expire late.
        for i in 0..500 {
            cache.check_and_insert(k(a, i), 215, 100).unwrap();
        }
        assert_eq!(
            cache.check_and_insert(k(a, 500), 215, 100),
            Err(ReplayError::OwnerFull { quota: 500 })
        );
        // B, with a credential that expires sooner than all of A's, is
        // still accepted, and nothing of A's was evicted for it.
        cache.check_and_insert(k(b, 0), 160, 100).unwrap();
        assert_eq!(cache.len(), 501);
        assert_eq!(cache.floor(), 0);
        // Counts survive the image.
        let mut back = ReplayCache::from_bytes(&cache.to_bytes(), 1_000).unwrap();
        back.set_owners(2);
        assert_eq!(
            back.check_and_insert(k(a, 501), 215, 100),
            Err(ReplayError::OwnerFull { quota: 500 })
        );
        back.check_and_insert(k(b, 1), 160, 100).unwrap();
    }

    #[test]
    fn image_layout_is_fixed() {
        let mut cache = ReplayCache::new(10);
        cache
            .check_and_insert(key(0xab).with_owner(0x0a0b_0c0d), 0x0102, 1)
            .unwrap();
        let bytes = cache.to_bytes();
        let mut expected = Vec::new();
        expected.extend_from_slice(b"SSMR\x02");
        expected.extend_from_slice(&[0; 8]); // floor
        expected.extend_from_slice(&[0, 0, 0, 1]); // count
        expected.push(1); // SPA key
        expected.extend_from_slice(&[0x0a, 0x0b, 0x0c, 0x0d]); // owner
        expected.extend_from_slice(&[0xab; 16]);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(&bytes[..bytes.len() - 32], &expected[..]);
        assert_eq!(&bytes[bytes.len() - 32..], &Sha256::digest(&expected)[..]);
    }

    #[test]
    fn loading_into_a_smaller_cache_keeps_the_latest() {
        let mut cache = ReplayCache::new(10);
        for i in 0..5u8 {
            cache
                .check_and_insert(key(i), 200 + u64::from(i), 100)
                .unwrap();
        }
        let small = ReplayCache::from_bytes(&cache.to_bytes(), 2).unwrap();
        assert_eq!(small.len(), 2);
        assert!(small.contains(&key(3)) && small.contains(&key(4)));
        assert_eq!(small.floor(), 202);
        let mut small = small;
        assert_eq!(
            small.check_and_insert(key(0), 200, 100),
            Err(ReplayError::Forgotten { floor: 202 })
        );
    }

    #[test]
    fn corrupt_images_are_rejected() {
        let mut cache = ReplayCache::new(10);
        cache.check_and_insert(key(1), 160, 100).unwrap();
        let good = cache.to_bytes();
        assert_eq!(
            ReplayCache::from_bytes(&good[..10], 10),
            Err(ReplayStateError::Truncated(10))
        );
        assert_eq!(
            ReplayCache::from_bytes(&good[..good.len() - 1], 10),
            Err(ReplayStateError::LengthMismatch {
                len: good.len() - 1,
                count: 1
            })
        );
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(
            ReplayCache::from_bytes(&bad, 10),
            Err(ReplayStateError::BadMagic)
        );
        let mut bad = good.clone();
        bad[4] = 1;
        assert_eq!(
            ReplayCache::from_bytes(&bad, 10),
            Err(ReplayStateError::UnsupportedVersion(1))
        );
        for i in 5..good.len() {
            if (13..17).contains(&i) {
                continue; // count: caught as a length mismatch
            }
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert_eq!(
                ReplayCache::from_bytes(&bad, 10),
                Err(ReplayStateError::BadChecksum),
                "byte {i}"
            );
        }
        // A well-formed image with an unknown key kind or a duplicate.
        let forge = |entries: &[[u8; 29]]| {
            let mut body = b"SSMR\x02".to_vec();
            body.extend_from_slice(&[0; 8]);
            body.extend_from_slice(&(entries.len() as u32).to_be_bytes());
            for e in entries {
                body.extend_from_slice(e);
            }
            let sum = Sha256::digest(&body);
            body.extend_from_slice(&sum);
            body
        };
        let mut entry = [0u8; 29];
        entry[0] = 9;
        assert_eq!(
            ReplayCache::from_bytes(&forge(&[entry]), 10),
            Err(ReplayStateError::BadEntry(0))
        );
        entry[0] = 1;
        entry[28] = 5;
        assert_eq!(
            ReplayCache::from_bytes(&forge(&[entry, entry]), 10),
            Err(ReplayStateError::DuplicateEntry(1))
        );
    }

    fn journal(records: &[(ReplayKey, u64)]) -> Vec<u8> {
        let mut out = JOURNAL_HEADER.to_vec();
        for (k, e) in records {
            out.extend_from_slice(&journal_record(k, *e));
        }
        out
    }

    #[test]
    fn journal_record_layout_is_fixed() {
        let record = journal_record(&key(0xab).with_owner(7), 0x0102);
        let mut body = vec![1, 0, 0, 0, 7];
        body.extend_from_slice(&[0xab; 16]);
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(record.len(), 37);
        assert_eq!(&record[..29], &body[..]);
        let mut h = Sha256::new();
        h.update(b"sesame-replay-journal-v1");
        h.update(&body);
        assert_eq!(&record[29..], &h.finalize()[..8]);
        assert_eq!(&JOURNAL_HEADER, b"SSMJ\x02\0\0\0");
    }

    #[test]
    fn journal_on_top_of_an_image_still_refuses() {
        let mut cache = ReplayCache::new(10);
        cache.check_and_insert(key(1), 160, 100).unwrap();
        let image = cache.to_bytes();
        // Accepted after the image was written: journalled only.
        cache.check_and_insert(key(2), 170, 101).unwrap();
        cache.check_and_insert(key(3), 150, 101).unwrap();
        let bytes = journal(&[(key(2), 170), (key(3), 150)]);

        let mut back = ReplayCache::from_bytes(&image, 10).unwrap();
        assert!(!back.contains(&key(2)));
        let summary = back.apply_journal(&bytes).unwrap();
        assert_eq!(
            summary,
            JournalSummary {
                records: 2,
                torn_bytes: 0
            }
        );
        assert_eq!(back, cache);
        for (k, e) in [(key(1), 160), (key(2), 170), (key(3), 150)] {
            assert_eq!(
                back.check_and_insert(k, e, 102),
                Err(ReplayError::Replayed),
                "{k:?}"
            );
        }
        // Replaying records the image already holds changes nothing.
        let again = back.clone();
        back.apply_journal(&journal(&[(key(1), 160), (key(2), 170)]))
            .unwrap();
        assert_eq!(back, again);
    }

    #[test]
    fn torn_journal_tail_is_ignored_and_complete_records_kept() {
        let full = journal(&[(key(1), 160), (key(2), 170)]);
        for cut in 1..JOURNAL_RECORD_LEN {
            let mut cache = ReplayCache::new(10);
            let summary = cache.apply_journal(&full[..full.len() - cut]).unwrap();
            assert_eq!(summary.records, 1, "cut {cut}");
            assert_eq!(summary.torn_bytes, JOURNAL_RECORD_LEN - cut);
            assert!(cache.contains(&key(1)));
            assert!(!cache.contains(&key(2)));
        }
        // An empty journal, or a header cut short, holds nothing.
        for cut in 0..JOURNAL_HEADER.len() {
            let mut cache = ReplayCache::new(10);
            let summary = cache.apply_journal(&full[..cut]).unwrap();
            assert_eq!(
                summary,
                JournalSummary {
                    records: 0,
                    torn_bytes: cut
                }
            );
            assert!(cache.is_empty());
        }
    }

    #[test]
    fn corrupt_journals_are_rejected_and_change_nothing() {
        let good = journal(&[(key(1), 160), (key(2), 170)]);
        let mut cache = ReplayCache::new(10);
        cache.check_and_insert(key(9), 200, 100).unwrap();
        let before = cache.clone();
        let mut check = |bad: &[u8], want: ReplayJournalError| {
            assert_eq!(cache.apply_journal(bad), Err(want));
            assert_eq!(cache, before);
        };
        check(b"XYZ", ReplayJournalError::BadMagic);
        let mut bad = good.clone();
        bad[0] = b'X';
        check(&bad, ReplayJournalError::BadMagic);
        let mut bad = good.clone();
        bad[4] = 1;
        check(&bad, ReplayJournalError::UnsupportedVersion(1));
        // Every byte of the second record, flipped.
        for i in 8 + JOURNAL_RECORD_LEN..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            check(&bad, ReplayJournalError::BadChecksum(1));
        }
        // A record with a valid check but an unknown key kind.
        let mut forged = journal_record(&key(3), 180);
        forged[0] = 9;
        let check_bytes = journal_check(&forged[..STATE_ENTRY_LEN]);
        forged[STATE_ENTRY_LEN..].copy_from_slice(&check_bytes);
        let mut bad = good.clone();
        bad.extend_from_slice(&forged);
        check(&bad, ReplayJournalError::BadRecord(2));
    }

    #[test]
    fn remember_only_ever_refuses_more() {
        let mut cache = ReplayCache::new(2);
        cache.raise_floor(100);
        // At or below the floor: refused already, not stored.
        cache.remember(key(1), 100);
        assert!(cache.is_empty());
        cache.remember(key(2), 150);
        // A repeated key keeps the later expiry.
        cache.remember(key(2), 140);
        cache.remember(key(3), 160);
        assert_eq!(cache.len(), 2);
        // Over capacity: the soonest goes and the floor covers it.
        cache.remember(key(4), 170);
        assert_eq!(cache.len(), 2);
        assert!(!cache.contains(&key(2)));
        assert_eq!(cache.floor(), 150);
        assert_eq!(
            cache.check_and_insert(key(2), 150, 120),
            Err(ReplayError::Forgotten { floor: 150 })
        );
        // Older than everything held: only the floor rises.
        cache.remember(key(5), 155);
        assert!(!cache.contains(&key(5)));
        assert_eq!(cache.floor(), 155);
        assert!(cache.contains(&key(3)) && cache.contains(&key(4)));
    }

    #[test]
    fn totp_keys_separate_doors_steps_and_sequences() {
        let seq = [Knock {
            port: 1000,
            proto: Proto::Udp,
        }];
        let other = [Knock {
            port: 1001,
            proto: Proto::Udp,
        }];
        let k = ReplayKey::totp("a", 1, &seq);
        assert_eq!(k, ReplayKey::totp("a", 1, &seq));
        assert_ne!(k, ReplayKey::totp("b", 1, &seq));
        assert_ne!(k, ReplayKey::totp("a", 2, &seq));
        assert_ne!(k, ReplayKey::totp("a", 1, &other));
        assert_ne!(k, ReplayKey::spa(k.id));
        assert!(format!("{k:?}").starts_with("ReplayKey(totp:"));
    }

    #[test]
    fn fwknop_keys_persist_and_stay_distinct() {
        let k = ReplayKey::fwknop(&[7; 32]);
        assert_eq!(k, ReplayKey::fwknop(&[7; 32]));
        assert_ne!(k, ReplayKey::fwknop(&[7; 31]));
        assert_ne!(k, ReplayKey::fwknop(&[8; 32]));
        assert_ne!(k, ReplayKey::spa(k.id));
        assert_eq!(k.to_bytes()[0], 3);
        assert_eq!(ReplayKey::from_bytes(&k.to_bytes()), Some(k));
        assert!(format!("{k:?}").starts_with("ReplayKey(fwknop:"));
        let mut cache = ReplayCache::new(10);
        cache.check_and_insert(k, 160, 100).unwrap();
        let mut back = ReplayCache::from_bytes(&cache.to_bytes(), 10).unwrap();
        assert_eq!(
            back.check_and_insert(k, 160, 101),
            Err(ReplayError::Replayed)
        );
    }
}
