//! The replay store on one host: the spent set persisted in the state
//! directory as an image plus a journal, so a credential accepted once is
//! refused after a restart too. It implements the core's
//! [`sesame_core::ports::ReplayStore`] seam (answering at once).

use std::io::Write;
use std::path::{Path, PathBuf};

use sesame_core::ports::{PortError, ReplayStore, Reservation, Ticket};
use sesame_core::replay::{journal_record, ReplayCache, ReplayKey, JOURNAL_HEADER};

/// Why the replay state cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("replay cache {path}: {source}")]
pub struct ReplayFileError {
    /// File or directory.
    pub path: String,
    /// Cause.
    pub source: std::io::Error,
}

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
    ) -> Result<(Self, Option<String>), ReplayFileError> {
        let unsafe_state = |e: crate::safe_fs::SafeFsError| ReplayFileError {
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
    #[cfg(test)]
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
    pub fn record(&mut self, key: ReplayKey, expires: u64) -> Result<(), ReplayFileError> {
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
    pub fn compact_if_due(&mut self) -> Result<bool, ReplayFileError> {
        if self.journal_records < COMPACT_MIN_RECORDS.max(self.cache.len()) {
            return Ok(false);
        }
        self.compact().map(|()| true)
    }

    /// Writes the image, then empties the journal down to its header. A
    /// crash between the two leaves records that the new image holds too:
    /// replaying them changes nothing. Not fsynced: see the boot-id check
    /// in [`PersistentReplay::open`].
    pub fn compact(&mut self) -> Result<(), ReplayFileError> {
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
    fn write_image(&self) -> Result<(), ReplayFileError> {
        self.dir
            .write_atomic(REPLAY_FILE, &self.cache.to_bytes(), false)
            .map_err(|e| ReplayFileError {
                path: self.path.display().to_string(),
                source: e.into_io(),
            })
    }

    fn journal_error(&self, source: std::io::Error) -> ReplayFileError {
        ReplayFileError {
            path: self.journal_path.display().to_string(),
            source,
        }
    }
}

impl ReplayStore for PersistentReplay {
    fn spent(&self) -> &ReplayCache {
        &self.cache
    }
    fn spent_mut(&mut self) -> &mut ReplayCache {
        &mut self.cache
    }
    fn not_before(&self) -> Option<u64> {
        self.not_before
    }
    /// One journal record, written before the door opens.
    fn reserve(&mut self, _ticket: Ticket, key: ReplayKey, expires: u64) -> Reservation {
        Reservation::Done(self.record(key, expires).map_err(PortError::from_display))
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
