//! knockd's one-time sequence files (`One_Time_Sequences = /path/file`).
//!
//! The format, as knockd defines it:
//! - one knock sequence per line, in the `Sequence` syntax
//!   (`7000,8000:udp,9000`, whitespace allowed around items);
//! - a line whose first non-blank character is `#` is a comment or a sequence
//!   already used; blank lines are skipped;
//! - a sequence is used up by overwriting the **first byte** of its line with
//!   `#`, in place. That is why knockd's manual recommends starting every line
//!   with a space: the overwrite then does not eat the first digit.
//!
//! Unlike knockd, every unused line is validated when the file is opened (junk
//! is an error naming `file:line`, never port 0), and before a line is marked
//! used the whole line is compared with what was read (knockd compared only
//! half of the sequence), so a file edited behind our back is detected instead
//! of the wrong line being consumed.

use sesame_client::located::{FileError, Located, ReadError};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use sesame_core::{DoorError, Knock, Proto, MAX_SEQUENCE_LEN};

/// Why a knockd sequence (`7000,8000:udp,9000`) is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    /// No item at all.
    #[error("the sequence is empty")]
    Empty,
    /// More than [`MAX_SEQUENCE_LEN`] items.
    #[error("the sequence has {0} ports; at most 32 are allowed")]
    TooLong(usize),
    /// One item is not `port[:tcp|udp]`.
    #[error("item {index} {item:?}: {reason}")]
    BadItem {
        /// 1-based position in the sequence.
        index: usize,
        /// The item as written (trimmed).
        item: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Parses knockd's sequence syntax: comma-separated `port[:tcp|udp]` items,
/// 1 to 32 of them, whitespace allowed around items and around the colon,
/// protocol case-insensitive, TCP by default. Unlike knockd, a port that is
/// not a clean integer from 1 to 65535 and an unknown protocol are errors.
pub fn parse_sequence(text: &str) -> Result<Vec<Knock>, SequenceError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(SequenceError::Empty);
    }
    let items: Vec<&str> = text.split(',').map(str::trim).collect();
    if items.len() > MAX_SEQUENCE_LEN {
        return Err(SequenceError::TooLong(items.len()));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            parse_knock(item).map_err(|reason| SequenceError::BadItem {
                index: i + 1,
                item: item.to_string(),
                reason,
            })
        })
        .collect()
}

fn parse_knock(item: &str) -> Result<Knock, String> {
    if item.is_empty() {
        return Err("empty item (two commas in a row, or a trailing comma)".to_string());
    }
    let (port, proto) = match item.split_once(':') {
        Some((port, proto)) => (port.trim(), Some(proto.trim())),
        None => (item, None),
    };
    let bad_port = || {
        format!(
            "{} (knockd would silently knock on port 0)",
            DoorError::BadPort(port.to_string())
        )
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_port());
    }
    let port = match port.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => p as u16,
        _ => return Err(bad_port()),
    };
    let proto = match proto {
        None => Proto::Tcp,
        Some(p) => p
            .parse::<Proto>()
            .map_err(|e| format!("{e} (knockd would silently use tcp)"))?,
    };
    Ok(Knock { port, proto })
}

/// Why a one-time sequence file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum OneTimeError {
    /// The file is unusable: permissions, reading, or an item in it.
    #[error(transparent)]
    File(FileError),
    /// The line about to be marked used no longer holds what was read.
    #[error(
        "{path}:{line}: the file changed since it was read (expected {expected:?}); \
         not marking any line used"
    )]
    Changed {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// The line as it was read.
        expected: String,
    },
    /// Marking a line used failed.
    #[error("{path}:{line}: cannot mark the sequence used: {source}")]
    Write {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// Underlying error.
        source: std::io::Error,
    },
}

sesame_client::file_error_conversions!(OneTimeError);

/// One unused line of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    /// Byte offset of the line's first byte.
    offset: u64,
    /// 1-based line number.
    line: usize,
    /// The line's bytes, without the newline.
    raw: Vec<u8>,
    /// The parsed sequence.
    knocks: Vec<Knock>,
}

/// A one-time sequence file: the unused sequences, in file order, and which
/// one is current.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OneTimeFile {
    path: PathBuf,
    entries: Vec<Entry>,
    next: usize,
}

impl OneTimeFile {
    /// Reads `path` and validates every unused line. Errors name `file:line`
    /// and the offending item.
    pub fn open(path: &Path) -> Result<Self, OneTimeError> {
        let shown = path.display().to_string();
        sesame_client::secure_file::check_not_writable_by_others(path)?;
        let bytes = std::fs::read(path).map_err(ReadError::of(path, "one-time sequence file"))?;
        let mut entries = Vec::new();
        let mut offset = 0u64;
        for (index, raw) in bytes.split(|b| *b == b'\n').enumerate() {
            let line = index + 1;
            let start = offset;
            offset += raw.len() as u64 + 1;
            let invalid = |item: String, message: String| {
                OneTimeError::from(Located {
                    path: shown.clone(),
                    line,
                    column: None,
                    item,
                    message,
                })
            };
            let text = std::str::from_utf8(raw).map_err(|_| {
                invalid(
                    String::from_utf8_lossy(raw).trim().to_string(),
                    "the line is not valid UTF-8".to_string(),
                )
            })?;
            let trimmed = text.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let knocks = parse_sequence(trimmed)
                .map_err(|e| invalid(format!("sequence {trimmed:?}"), e.to_string()))?;
            entries.push(Entry {
                offset: start,
                line,
                raw: raw.to_vec(),
                knocks,
            });
        }
        Ok(OneTimeFile {
            path: path.to_path_buf(),
            entries,
            next: 0,
        })
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The first unused sequence, or `None` when the file is used up.
    pub fn current(&self) -> Option<&[Knock]> {
        self.entries.get(self.next).map(|e| e.knocks.as_slice())
    }

    /// 1-based line number of the current sequence.
    pub fn current_line(&self) -> Option<usize> {
        self.entries.get(self.next).map(|e| e.line)
    }

    /// Number of unused sequences, the current one included.
    pub fn remaining(&self) -> usize {
        self.entries.len() - self.next
    }

    /// Position (0 = current) of the first unused sequence equal to `knocks`,
    /// comparing every element of both sequences.
    pub fn position_of(&self, knocks: &[Knock]) -> Option<usize> {
        self.entries[self.next..]
            .iter()
            .position(|e| e.knocks.as_slice() == knocks)
    }

    /// Marks the current sequence used: writes `#` over the first byte of its
    /// line, in place, and syncs the file to disk. Returns the next unused
    /// sequence, or `None` when the file is now used up (or already was, in
    /// which case nothing is written).
    ///
    /// The line is re-read first and must be unchanged; otherwise nothing is
    /// written and [`OneTimeError::Changed`] is returned.
    pub fn consume(&mut self) -> Result<Option<Vec<Knock>>, OneTimeError> {
        let Some(entry) = self.entries.get(self.next) else {
            return Ok(None);
        };
        let shown = self.path.display().to_string();
        let write_err = |source| OneTimeError::Write {
            path: shown.clone(),
            line: entry.line,
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(write_err)?;
        let mut on_disk = vec![0u8; entry.raw.len()];
        let unchanged = match positioned::read_exact_at(&file, &mut on_disk, entry.offset) {
            Ok(()) => on_disk == entry.raw,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => false,
            Err(e) => return Err(write_err(e)),
        };
        if !unchanged {
            return Err(OneTimeError::Changed {
                path: shown.clone(),
                line: entry.line,
                expected: String::from_utf8_lossy(&entry.raw).into_owned(),
            });
        }
        positioned::write_all_at(&file, b"#", entry.offset).map_err(write_err)?;
        file.sync_all().map_err(write_err)?;
        self.next += 1;
        Ok(self.current().map(<[Knock]>::to_vec))
    }
}

/// Reads and writes at an offset, on each platform's terms (Windows moves
/// the file cursor as it goes; nothing here uses the cursor).
mod positioned {
    use std::fs::File;
    use std::io;

    #[cfg(unix)]
    pub(super) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }

    #[cfg(unix)]
    pub(super) fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
    }

    #[cfg(windows)]
    pub(super) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
        use std::os::windows::fs::FileExt;
        let mut done = 0;
        while done < buf.len() {
            match file.seek_read(&mut buf[done..], offset + done as u64)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => done += n,
            }
        }
        Ok(())
    }

    #[cfg(windows)]
    pub(super) fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        use std::os::windows::fs::FileExt;
        let mut done = 0;
        while done < buf.len() {
            match file.seek_write(&buf[done..], offset + done as u64)? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => done += n,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sequences_file_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("sesame-otperm-{}", std::process::id()));
        std::fs::write(&path, "7000,8000,9000\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o646)).unwrap();
        let Err(e) = OneTimeFile::open(&path) else {
            panic!("a file others can write was accepted")
        };
        assert!(e.to_string().contains("writable by others"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(OneTimeFile::open(&path).is_ok());
        std::fs::remove_file(&path).unwrap();
    }
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A file in the temp dir with a name unique to this process and test.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(contents: &str) -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "sesame-one-time-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&path, contents).unwrap();
            TempFile(path)
        }
        fn read(&self) -> String {
            std::fs::read_to_string(&self.0).unwrap()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            std::fs::remove_file(&self.0).ok();
        }
    }

    #[test]
    fn reads_unused_lines_and_skips_comments_used_and_blank() {
        let f = TempFile::new(
            "# my pad\n#000,2000\n\n 1000:udp, 2000 ,3000:TCP\n   \n\t4000\n  # indented comment\n",
        );
        let otf = OneTimeFile::open(&f.0).unwrap();
        assert_eq!(otf.remaining(), 2);
        assert_eq!(
            otf.current(),
            Some(&[Knock::udp(1000), Knock::tcp(2000), Knock::tcp(3000)][..])
        );
        assert_eq!(otf.current_line(), Some(4));
        assert_eq!(otf.path(), f.0.as_path());
    }

    #[test]
    fn consume_marks_the_first_byte_in_place_and_advances() {
        let original = " 1000,2000\n 3000:udp\r\n4000,5000\n";
        let f = TempFile::new(original);
        let mut otf = OneTimeFile::open(&f.0).unwrap();
        assert_eq!(otf.consume().unwrap(), Some(vec![Knock::udp(3000)]));
        assert_eq!(f.read(), "#1000,2000\n 3000:udp\r\n4000,5000\n");
        assert_eq!(otf.remaining(), 2);
        assert_eq!(
            otf.consume().unwrap(),
            Some(vec![Knock::tcp(4000), Knock::tcp(5000)])
        );
        // Without a leading space the first digit is lost, as in knockd.
        assert_eq!(otf.consume().unwrap(), None);
        assert_eq!(f.read(), "#1000,2000\n#3000:udp\r\n#000,5000\n");
        assert_eq!(f.read().len(), original.len());
        assert_eq!(otf.remaining(), 0);
        assert_eq!(otf.current(), None);
        // Exhausted: nothing more is written.
        assert_eq!(otf.consume().unwrap(), None);
        assert_eq!(f.read(), "#1000,2000\n#3000:udp\r\n#000,5000\n");
        // A fresh open agrees.
        assert_eq!(OneTimeFile::open(&f.0).unwrap().remaining(), 0);
    }

    #[test]
    fn a_reopened_file_starts_at_the_next_unused_line() {
        let f = TempFile::new(" 1,2\n 3,4\n");
        OneTimeFile::open(&f.0).unwrap().consume().unwrap();
        let otf = OneTimeFile::open(&f.0).unwrap();
        assert_eq!(otf.current(), Some(&[Knock::tcp(3), Knock::tcp(4)][..]));
        assert_eq!(otf.current_line(), Some(2));
    }

    #[test]
    fn whole_sequences_are_compared() {
        // knockd compared only the first half; these share it.
        let f = TempFile::new(" 1,2,3,4\n 1,2,3,5\n");
        let otf = OneTimeFile::open(&f.0).unwrap();
        assert_eq!(
            otf.position_of(&[Knock::tcp(1), Knock::tcp(2), Knock::tcp(3), Knock::tcp(5)]),
            Some(1)
        );
        assert_eq!(
            otf.position_of(&[Knock::tcp(1), Knock::tcp(2), Knock::tcp(3), Knock::tcp(4)]),
            Some(0)
        );
        assert_eq!(
            otf.position_of(&[Knock::tcp(1), Knock::tcp(2), Knock::tcp(3), Knock::tcp(6)]),
            None
        );
        assert_eq!(otf.position_of(&[Knock::tcp(1), Knock::tcp(2)]), None);
    }

    #[test]
    fn junk_is_rejected_with_file_line_and_item() {
        for (text, line, needle) in [
            (" 1000\n 70x0,2000\n", 2, "\"70x0\""),
            ("\n\n 1000:icmp\n", 3, "\"1000:icmp\""),
            (" 1000,,2000\n", 1, "empty"),
            (" 0\n", 1, "\"0\""),
            (" 65536\n", 1, "\"65536\""),
        ] {
            let f = TempFile::new(text);
            let msg = OneTimeFile::open(&f.0).unwrap_err().to_string();
            let prefix = format!("{}:{line}: ", f.0.display());
            assert!(msg.starts_with(&prefix), "{text:?} gave {msg}");
            assert!(msg.contains(needle), "{text:?} gave {msg}");
        }
        let long: Vec<String> = (1..=33).map(|p| p.to_string()).collect();
        let f = TempFile::new(&format!(" {}\n", long.join(",")));
        let msg = OneTimeFile::open(&f.0).unwrap_err().to_string();
        assert!(msg.contains("at most 32"), "{msg}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let path = std::env::temp_dir().join("sesame-one-time-does-not-exist");
        let msg = OneTimeFile::open(&path).unwrap_err().to_string();
        assert!(msg.starts_with(&path.display().to_string()), "{msg}");
    }

    #[test]
    fn a_file_edited_behind_our_back_is_not_marked() {
        let f = TempFile::new(" 1000,2000\n 3000\n");
        let mut otf = OneTimeFile::open(&f.0).unwrap();
        std::fs::write(&f.0, " 1000,2001\n 3000\n").unwrap();
        let err = otf.consume().unwrap_err();
        assert!(
            matches!(err, OneTimeError::Changed { line: 1, .. }),
            "{err}"
        );
        assert_eq!(f.read(), " 1000,2001\n 3000\n");
        assert_eq!(otf.remaining(), 2);
        std::fs::write(&f.0, "").unwrap();
        assert!(matches!(
            otf.consume().unwrap_err(),
            OneTimeError::Changed { .. }
        ));
    }
}
